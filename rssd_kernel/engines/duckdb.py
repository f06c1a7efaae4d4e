"""DuckDB: the default engine. The session lives in an in-memory DuckDB of its own, and the
database file is ATTACHed only while the kernel works, so that several processes share it
(lease.py). Statements are split by DuckDB's `extract_statements` and predicted by
classify.py; DuckDB's read-only transactions verify the prediction (transaction.py)."""

import contextlib
import logging
import os
import re

import duckdb

from rssd_kernel import classify, lineage
from rssd_kernel.database import check_version, open_database, prepare
from rssd_kernel.engines import duckdb_statements
from rssd_kernel.engines.base import Engine
from rssd_kernel.errors import DatabaseLocked, DatabaseUnavailable
from rssd_kernel.journal import recover
from rssd_kernel.lease import Lease, session_instance
from rssd_kernel.results import quote_ident, relabel, restore_sql, scalar
from rssd_kernel.state import StateStore
from rssd_kernel.statements import (
    first_character,
    locate_error,
    run_statement,
    split_duckdb_error,
)

log = logging.getLogger("rssd_kernel")
START_WAIT = 2.0  # seconds the kernel waits for a held file at start; then the first cell
# DuckDB's wording (bounded to the duckdb versions the tests cover, in pyproject.toml).
_REFUSED = re.compile(r'Cannot write to database "(.+?)" - transaction is launched in read-only')
_OTHER_DATABASE = re.compile(r'Attempting to write to database "(.+?)" in a transaction that')

_SESSION_OBJECTS = """
SELECT lower(table_name) FROM duckdb_tables() WHERE temporary
UNION SELECT lower(view_name) FROM duckdb_views() WHERE temporary AND NOT internal
UNION SELECT lower(sequence_name) FROM duckdb_sequences() WHERE temporary
UNION SELECT lower(function_name) FROM duckdb_functions()
      WHERE database_name = 'temp' AND NOT internal
UNION SELECT lower(type_name) FROM duckdb_types() WHERE database_name = 'temp' AND NOT internal
UNION SELECT lower(database_name) || '.' FROM duckdb_databases()
      WHERE path IS NULL AND NOT internal AND database_name <> 'rssd_session'
        AND database_name <> ?
"""
TABLES_SQL = """SELECT database_name AS database, schema_name AS schema, table_name AS name,
       'table' AS kind, estimated_size AS rows FROM duckdb_tables()
 WHERE NOT list_contains(?, table_name) OR schema_name <> 'main'
UNION ALL
SELECT database_name, schema_name, view_name, 'view', NULL FROM duckdb_views()
 WHERE NOT internal
ORDER BY 1, 2, 3"""


_BEGIN_READ_ONLY = duckdb.extract_statements("BEGIN TRANSACTION READ ONLY")[0]  # parsed once


class DuckDBEngine(Engine):
    name = "duckdb"
    Error = duckdb.Error

    def __init__(self, path: str, settings, notebook: str | None):
        self.path = path
        self.settings = settings
        self.notebook = notebook
        self.lease: Lease | None = None
        self.catalog = "memory"
        self.con = self.meta = None
        self.session = None
        self._seen_counter = None

    @property
    def journal_base(self) -> str:
        return self.path

    def describe(self) -> dict:
        return {"database": _abs(self.path), "duckdb_version": duckdb.__version__}

    # -- the session and the file ----------------------------------------------------------

    def start(self, session) -> None:
        """Set up the session (see lease.py), and take the file if it is free now: a file
        another process holds is waited for by the first cell, visibly and interruptibly.
        Raises DatabaseUnavailable for a file that cannot be used at all."""
        self.session = session
        if self.path == ":memory:":
            con = open_database(self.path, session.notes)
            _settings_on(con)
            self.con, self.catalog, self._meta_con = con, "memory", con.cursor()
            self.meta = con.cursor()
            session.start_records(self.meta, self.meta.cursor, None)
            return
        instance = session_instance()
        lease = Lease(self.path, instance, self.settings)
        lease.notebook = self.notebook
        lease.on_attach = self._on_attach
        lease.pinned = session.pinned
        self.lease, self.con, self._meta_con = lease, instance.cursor(), instance.cursor()
        _settings_on(self.con)
        session.announce(self._cursor, lease.hold, self.path)
        try:
            with lease.hold(wait_s=START_WAIT):
                pass
        except DatabaseLocked:
            pass  # the first cell waits for it, visibly
        except DatabaseUnavailable:
            self.close()
            raise
        except duckdb.Error:  # a disk that is full right now, say: the first cell tries again
            log.exception("rssd: the database could not be taken at start")

    def _cursor(self):
        """A new connection of this session whose default database is the file."""
        cursor = self.lease.instance.cursor()
        cursor.execute(f"USE {quote_ident(self.catalog)}").fetchall()
        return cursor

    def _on_attach(self) -> None:
        """The file was just taken (lease.py). The first time: check its schema, recover
        dead processes' journals, start the RSSD session. Later: recover dead processes'
        journals (a glob and a lock try each), and have the session read the state and
        catalog again only when another process changed the file since this one let it go."""
        lease, session = self.lease, self.session
        if self.meta is None:
            self.catalog = lease.alias
            self.con.execute(f"USE {quote_ident(self.catalog)}").fetchall()
            self.meta = self._cursor()
            prepare(self.meta, self.path, session.notes, session.journal_path(), session.deferral())
            session.start_records(self._cursor(), None, None)
            self._seen_counter = self._read_counter()
            return
        session.notes += recover(
            self.meta, self.path, session.journal_path(), session.deferral()
        ).notes
        counter = self._read_counter()
        ours = [c for c in (self._seen_counter, session.state.last_counter) if c is not None]
        if ours and counter == max(ours) and lease.unchanged_since_release:
            return  # nobody else changed the file: nothing to read again
        check_version(self.meta, self.path)
        session.database_changed()
        self._seen_counter = counter

    def _read_counter(self):
        return self.meta.execute("SELECT max(counter) FROM rssd_change_counter").fetchall()[0][0]

    def hold(self, check_stop=None, wait_s: float | None = None):
        """Hold the database file for a block (taking it again if it was let go)."""
        if self.lease is None:
            return contextlib.nullcontext()
        return self.lease.hold(check_stop, wait_s)

    def waiting_for(self) -> str | None:
        return self.lease.waiting_for if self.lease is not None else None

    def before_cell(self, writer) -> list[str]:
        """Between cells, let another process that waits for the file have it first (else
        cells that come back to back would keep it forever): write what is pending, then
        let go; the hold that follows gives the waiter a moment to take it."""
        lease = self.lease
        if lease and lease.attached and lease.someone_waits and not self.in_user_transaction:
            writer.flush(timeout=2.0, digests=False)  # a digest is made without the file
            lease.yield_to_waiters()
        return []

    def close(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.close()
        for con in (self.con, self.meta, getattr(self, "_meta_con", None),
                    lease.instance if lease else None):  # fmt: skip
            if con is not None:
                with contextlib.suppress(duckdb.Error):
                    con.close()
        self.con = self.meta = None

    def state_store(self, con) -> StateStore:
        return StateStore(con, self.rssd_table("orchestration_session_state"),
                          self.rssd_table("rssd_change_counter"))  # fmt: skip

    # -- a cell's plan ---------------------------------------------------------------------

    def split(self, code: str) -> list:
        return duckdb_statements.parse(code)

    def classify(self, statement, temp_names: set[str]) -> classify.Classified:
        return classify.classify(statement, temp_names)

    def needs_temp_names(self, statements) -> bool:
        return duckdb_statements.writes_any(statements)

    def protect(self, statements, classified) -> None:
        duckdb_statements.protect(statements, classified, self.catalog)

    protect_again = False  # a function of the statements and the catalog (plan.py's key)

    def is_complete(self, code: str) -> dict:
        from rssd_kernel.complete import is_complete

        return is_complete(code)

    def words(self, code: str) -> list[str]:
        return classify.words(code)

    # -- running ---------------------------------------------------------------------------

    def run_statement(self, statement, params, limit: int, is_last: bool, constant=False):
        return run_statement(self.con, statement, params, limit, is_last,
                             self.settings.max_columns, constant)  # fmt: skip

    def begin_read_only(self) -> None:
        self.con.execute(_BEGIN_READ_ONLY).fetchall()

    def refused(self, error) -> str | None:
        found = _REFUSED.search(str(error))
        return found.group(1) if found else None

    def other_database(self, error) -> str | None:
        found = _OTHER_DATABASE.search(str(error))
        return found.group(1) if found else None

    def begin_stateful(self, key: str, state) -> None:
        """Open the stateful transaction. It first touches the RSSD's own database (a write
        that changes no row), so a statement writing any other database fails at once:
        DuckDB writes one database per transaction. The file lease already serialises
        processes, so no other kernel can apply the key meanwhile."""
        con = self.con
        con.begin()
        con.execute(
            f"UPDATE {self.rssd_table('rssd_schema_version')} SET version = version WHERE false"
        ).fetchall()
        lineage.start(con)
        return None

    def end_stateful(self) -> None:
        try:
            lineage.stop(self.con)
        except duckdb.Error:
            pass  # logging stays on until the next stateful cell turns it off again

    def files_read(self) -> list[str]:
        return lineage.files_read(self.con, self.path)

    def failure(self, error, statement, line: int, params, code="", start=0) -> tuple:
        """(ename, evalue, line, column, interrupted) of a statement's error."""
        ename, evalue = split_duckdb_error(error)
        interrupted = isinstance(error, duckdb.InterruptException) or evalue == "Query interrupted"
        loc_line, loc_col = locate_error(
            self.con, error, statement, line, interrupted, code or None, start
        )
        if loc_line is None and code:  # no position: the line where the statement begins
            loc_line = code.count("\n", 0, first_character(code, start)) + 1
        elif code:
            evalue = relabel(evalue, loc_line)  # DuckDB's excerpt, labelled with the cell's line
        return ename, evalue, loc_line or line, loc_col, interrupted

    def split_error(self, error) -> tuple[str, str]:
        return split_duckdb_error(error)

    def is_interrupt(self, error) -> bool:
        return isinstance(error, duckdb.InterruptException)

    def probe_transaction(self) -> None:
        """Learn whether a transaction of the user's is open, after a statement that may have
        opened or ended one. Outside a transaction every query gets a new transaction id;
        inside one they share it (and inside an aborted one they fail)."""
        try:
            query = "SELECT txid_current()"
            first, second = (self.con.execute(query).fetchall() for _ in range(2))
            self.in_user_transaction = first == second
        except duckdb.Error:
            self.in_user_transaction = True

    def in_memory(self, database: str) -> bool:
        """Whether `database` is an in-memory database the session attached (not the
        RSSD's): writing it changes only the session."""
        if database == self.catalog:
            return False
        # Not the cell's connection: its transaction may be the failed one.
        rows = self._meta_con.execute(
            "SELECT path IS NULL FROM duckdb_databases() WHERE database_name = ?", [database]
        ).fetchall()
        return bool(rows and rows[0][0])

    def interrupt(self) -> None:
        if self.con is not None:
            self.con.interrupt()

    def progress(self):
        """DuckDB's progress of the running query in percent (None or -1 when unknown)."""
        try:
            return self.con.query_progress()
        except duckdb.Error:
            return None

    def secret_variables(self) -> list[tuple[str, str]]:
        """(name, value) of the session's variables (SET VARIABLE)."""
        try:
            return self.con.execute(
                "SELECT name, CAST(value AS VARCHAR) FROM duckdb_variables()"
            ).fetchall()
        except duckdb.Error:
            return []  # an aborted transaction of the user's

    def variables(self) -> list[tuple[str, str, str]]:
        return self.con.execute(
            "SELECT name, CAST(value AS VARCHAR), CAST(type AS VARCHAR) FROM duckdb_variables()"
        ).fetchall()

    # -- the session's objects, for named results -----------------------------------------

    def temp_names(self) -> set[str]:
        """The session's temporary tables, views, sequences, macros and types, lower-cased,
        and (as `name.`) the in-memory databases it attached: writes to them change only
        the session. Empty inside a transaction of the user's that an error aborted: the
        cell's own statement then fails there with DuckDB's message."""
        try:
            rows = self.con.execute(_SESSION_OBJECTS, [self.catalog]).fetchall()
        except duckdb.Error:
            return set()
        return {name for (name,) in rows}

    def persistent_names(self, names: set[str]) -> set[str]:
        """Which of `names` are persistent tables or views (in any attached database)."""
        if not names:
            return set()
        rows = self.con.execute(
            "SELECT lower(table_name) FROM duckdb_tables() WHERE NOT temporary "
            "AND lower(table_name) IN (SELECT lower(unnest(?::VARCHAR[]))) "
            "UNION SELECT lower(view_name) FROM duckdb_views() WHERE NOT temporary "
            "AND NOT internal AND lower(view_name) IN (SELECT lower(unnest(?::VARCHAR[])))",
            [sorted(names), sorted(names)],
        ).fetchall()
        return {name for (name,) in rows}

    def temp_table_exists(self, name: str) -> bool:
        return bool(self.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE temporary "
            "AND lower(table_name) = lower(?)", [name],
        ).fetchall()[0][0])  # fmt: skip

    def drop_temp(self, name: str) -> None:
        self.con.execute(f"DROP TABLE IF EXISTS temp.main.{quote_ident(name)}").fetchall()

    def make_temp_table(self, name: str, result) -> None:
        sql, params = restore_sql(result)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS {sql}", params
        ).fetchall()

    def scalar(self, result):
        """The one value of a one-row, one-column result, as a typed value to bind."""
        return scalar(self.con, result)

    # -- the catalog -----------------------------------------------------------------------

    def load_catalog(self):
        from rssd_kernel import complete

        return complete.load_catalog(self.con)

    def load_functions(self):
        from rssd_kernel import complete

        return complete.load_functions(self.con)

    def inspect(self, state, name: str):
        from rssd_kernel import complete

        return complete.inspect(self.con, state, name)

    def tables(self) -> tuple[str, list]:
        from rssd_kernel.database import rssd_tables

        return TABLES_SQL, [rssd_tables()]

    def query(self, sql: str, params=None):
        """A result of the RSSD's connection, for `%` commands."""
        from rssd_kernel.results import fetch

        return fetch(self.meta.sql(sql, params=params), 10_000)


def _settings_on(con) -> None:
    # query_progress() (the progress display) reports -1 unless DuckDB tracks progress;
    # DuckDB would also draw its own bar on the kernel's stdout (a terminal's, not the
    # notebook's) unless told not to print it.
    con.execute("SET enable_progress_bar = true").fetchall()
    con.execute("SET enable_progress_bar_print = false").fetchall()
    # DuckDB's Python client would let `FROM name` read a Python variable of the kernel's
    # own code (a "replacement scan"); in a SQL kernel a missing table is a missing table.
    con.execute("SET python_enable_replacements = false").fetchall()


def _abs(path: str) -> str:
    return os.path.abspath(path) if path != ":memory:" else ":memory:"
