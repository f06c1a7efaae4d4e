"""The engine interface: everything the runner needs of a database, in one place.

An engine is made per session (per `%open`) and owns its connections:

- `con`: the cell's connection (the user's session: TEMP tables, settings); `meta`: a
  connection for the RSSD's own reads and writes. Both have the small DuckDB-like surface
  `execute(sql, params).fetchall()`, `begin()`, `commit()`, `rollback()`, `cursor()`.
- the session: `start(session)` connects and calls back `session.attached(first)` each
  time the database is taken (DuckDB lets go of a shared file between cells, lease.py;
  PostgreSQL reconnects after a lost connection); `hold()` keeps it for a block; `close()`.
- a cell's plan: `split(code)` and `classify(statement, temp_names)` with the engine's own
  parser; `protect(...)` refuses changes to the RSSD's tables.
- running: `run_statement` with a bounded fetch; the read-only net (`begin_read_only`,
  `refused`); the stateful transaction (`begin_stateful`, which on PostgreSQL also takes
  the key's lock and says whether another kernel applied the key meanwhile); `failure`
  turns an engine error into a located one; `interrupt` and `progress`.
- the session's objects (for named results) and the catalog (for completion).

The methods are documented where they are implemented; `duckdb.py` is the reference.
"""

import contextlib

from rssd_kernel.results import quote_ident


class Engine:
    name = "engine"
    Error: type[Exception] = Exception
    con = None
    meta = None
    catalog = ""  # the RSSD's database (DuckDB) or schema (PostgreSQL)
    in_user_transaction = False  # a BEGIN of the user's is open on the cell's connection

    def hold(self, check_stop=None, wait_s: float | None = None):
        return contextlib.nullcontext()

    def key_locked(self, con, key: str):
        """A block in which no other kernel applies `key` (DuckDB: the file's lease)."""
        return contextlib.nullcontext()

    def before_cell(self, writer) -> list[str]:
        """Notes for the cell about to run (a lost session, say)."""
        return []

    def rssd_table(self, name: str) -> str:
        """An RSSD table's name as the cell's connection must write it."""
        return f"{quote_ident(self.catalog)}.main.{name}"

    def in_memory(self, database: str) -> bool:
        return False

    def other_database(self, error) -> str | None:
        return None

    def files_read(self) -> list[str]:
        return []

    def unrestorable(self, result) -> str | None:
        """Why later cells could not read a result back from its recorded text, or None."""
        return None

    def check_session_statement(self, statement, classes) -> bool:
        """Before a session statement that runs without the net: whether it changes the
        database after all (then it runs as a stateful statement)."""
        return False

    def end_stateful(self) -> None:
        pass

    def progress(self):
        return None

    def secret_variables(self) -> set[str]:
        return set()

    def variables(self, names: set[str]) -> dict:
        return {}
