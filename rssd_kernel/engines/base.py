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

import abc
import contextlib

from rssd_kernel.results import quote_ident


class Engine(abc.ABC):
    """The interface (module docstring). Methods with a body here are defaults an engine
    may keep; the abstract ones every engine implements (an engine lacking one cannot be
    made)."""

    name = "engine"
    Error: type[Exception] = Exception  # the engine's base exception class
    con = None  # the cell's connection
    meta = None  # the RSSD's connection
    catalog = ""  # the RSSD's database (DuckDB) or schema (PostgreSQL)
    journal_base = ""  # the path the journal files are named after
    in_user_transaction = False  # a BEGIN of the user's is open on the cell's connection

    # -- the session ------------------------------------------------------------------

    @abc.abstractmethod
    def start(self, session) -> None:
        """Connect, check or install the RSSD schema, recover dead processes' journals, and
        call back `session.start_records(con)` (raises DatabaseUnavailable)."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """What the session's args_json says of the database (never a password)."""

    @abc.abstractmethod
    def state_store(self, con):
        """The StateStore (state.py) of this database, reading through `con`."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def hold(self, check_stop=None, wait_s: float | None = None):
        """A block for which the database is held (DuckDB: the file is attached)."""
        return contextlib.nullcontext()

    def waiting_for(self) -> str | None:
        """What a cell waiting to hold the database shows, or None."""
        return None

    def key_locked(self, con, key: str):
        """A block in which no other kernel applies `key` (DuckDB: the file's lease)."""
        return contextlib.nullcontext()

    def before_cell(self, writer) -> list[str]:
        """Notes for the cell about to run (a lost session, say)."""
        return []

    # -- a cell's plan ---------------------------------------------------------------------

    @abc.abstractmethod
    def split(self, code: str) -> list:
        """The cell's statements, by the engine's own parser (raises Failure, located)."""

    @abc.abstractmethod
    def classify(self, statement, temp_names: set[str]):
        """The statement's predicted kind (classify.Classified; see classify.py's rule)."""

    @abc.abstractmethod
    def needs_temp_names(self, statements) -> bool:
        """Whether classifying these statements needs the session's temporary objects."""

    @abc.abstractmethod
    def protect(self, statements, classified) -> None:
        """Raise AuditTrailError for a change to the RSSD's own tables."""

    # Whether `protect` must run again for a cell planned before (plan.py's cache): it asks
    # more than the cell's text and the engine's catalog (PostgreSQL asks the server).
    protect_again = True

    @abc.abstractmethod
    def words(self, code: str) -> list[str]:
        """The cell's tokens as text, without comments (for named results read as tables)."""

    @abc.abstractmethod
    def is_complete(self, code: str) -> dict: ...

    # -- running ---------------------------------------------------------------------------

    @abc.abstractmethod
    def run_statement(self, statement, params: dict, limit: int, is_last: bool,
                      constant: bool = False):  # fmt: skip
        """Run one statement: (Result, whether it returns rows to show), reading at most
        `limit` + 1 rows. `constant`: the classifier found a SELECT of constants, which
        reads and writes nothing (an engine may read it more cheaply)."""

    @abc.abstractmethod
    def begin_read_only(self) -> None:
        """Open the net's read-only transaction on the cell's connection."""

    @abc.abstractmethod
    def refused(self, error) -> str | None:
        """The database the net refused a write to, if `error` is that refusal."""

    @abc.abstractmethod
    def begin_stateful(self, key: str, state):
        """Open the stateful transaction; return the key's committed EXECUTED row if
        another kernel applied it meanwhile (then the cell replays), else None."""

    @abc.abstractmethod
    def failure(self, error, statement, line: int, params, code: str = "", start: int = 0):
        """(ename, evalue, line, column, interrupted) of a statement's error."""

    @abc.abstractmethod
    def split_error(self, error) -> tuple[str, str]: ...

    @abc.abstractmethod
    def is_interrupt(self, error) -> bool: ...

    @abc.abstractmethod
    def probe_transaction(self) -> None:
        """Set `in_user_transaction` after a BEGIN, COMMIT or ROLLBACK of the user's."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Cancel the running statement (called from a signal handler: never waits)."""

    def rssd_table(self, name: str) -> str:
        """An RSSD table's name as the cell's connection must write it."""
        return f"{quote_ident(self.catalog)}.main.{name}"

    def in_memory(self, database: str) -> bool:
        """Whether `database` is an in-memory one the session attached (DuckDB)."""
        return False

    def other_database(self, error) -> str | None:
        """The other database a stateful transaction tried to write (DuckDB), or None."""
        return None

    def files_read(self) -> list[str]:
        """The files the last statement read, for lineage (DuckDB)."""
        return []

    def unrestorable(self, result) -> str | None:
        """Why later cells could not read a result back from its recorded text, or None."""
        return None

    def check_session_statement(self, statement, classes) -> bool:
        """Before a session statement that runs without the net: whether it changes the
        database after all (then it runs as a stateful statement)."""
        return False

    def end_stateful(self) -> None:  # noqa: B027 - a default engines may keep
        """After the stateful transaction (DuckDB: turn lineage logging off)."""

    def progress(self):
        """The running query's progress in percent, or None."""
        return None

    def secret_variables(self) -> list[tuple[str, str]]:
        """(name, value) of the session's variables, to mask credential-named ones."""
        return []

    def variables(self) -> list[tuple[str, str, str]]:
        """(name, value, type) of the session's variables (parameters cells)."""
        return []

    # -- the session's objects and the catalog ---------------------------------------------

    @abc.abstractmethod
    def temp_names(self) -> set[str]: ...

    @abc.abstractmethod
    def persistent_names(self, names: set[str]) -> set[str]: ...

    @abc.abstractmethod
    def temp_table_exists(self, name: str) -> bool: ...

    @abc.abstractmethod
    def drop_temp(self, name: str) -> None: ...

    @abc.abstractmethod
    def make_temp_table(self, name: str, result) -> None:
        """A TEMP table holding a named result's rows, with their types."""

    @abc.abstractmethod
    def scalar(self, result):
        """A one-value result as what `run_statement` binds for `$name`."""

    @abc.abstractmethod
    def load_catalog(self): ...

    @abc.abstractmethod
    def load_functions(self) -> tuple[list[str], list[str]]: ...

    @abc.abstractmethod
    def inspect(self, state, name: str) -> str | None: ...

    @abc.abstractmethod
    def tables(self) -> tuple[str, list]:
        """The SQL (and parameters) of `%tables`."""

    @abc.abstractmethod
    def query(self, sql: str, params=None):
        """A Result of the RSSD's connection, for `%` commands."""
