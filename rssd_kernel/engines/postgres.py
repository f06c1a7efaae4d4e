"""PostgreSQL: what rssd does differently on a PostgreSQL server (through psycopg 3 and
PostgreSQL's own parser, pglast).

- Statements are split and classified from pglast's parse tree, never from words.
- The read-only net is `BEGIN READ ONLY`: PostgreSQL lets writes to TEMP tables and SET
  through and refuses writes to permanent tables (SQLSTATE 25006). It also refuses every
  CREATE, DROP and ALTER, TEMP ones included, so those are planned around the net from the
  parse tree (`relpersistence`, `pg_temp`, the session's temporary objects).
- The RSSD lives in a schema of its own (`rssd` by default), created from the same
  schema.sql, verbatim, once `json_valid(text)` exists there; rssd also puts
  `json_extract_string(text, text)` there so that the RSSD queries read the same on both
  engines.
- A stateful cell runs at READ COMMITTED holding `pg_advisory_xact_lock` on its key, and
  decides from what is committed after taking the lock: kernels on different machines
  apply it once. The server releases the lock if a client dies.
- `$name` is not PostgreSQL syntax: the kernel binds it as a positional parameter `$1`,
  typed with the named result's type; dollar quotes (`$tag$...$tag$`) are left alone.
- Rows are read through a cursor (DECLARE ... FETCH): only the rows shown are computed
  and sent. Values travel as PostgreSQL's own text, next to the type's name, so that
  `CAST(text AS type)` brings them back.
"""

import contextlib
import os
import re

import psycopg
from psycopg import pq

from rssd_kernel import __version__, classify
from rssd_kernel.database import SCHEMA_VERSION, check_version, expected_columns, schema_sql
from rssd_kernel.engines import pg_running as running
from rssd_kernel.engines import pg_statements as statements
from rssd_kernel.engines.base import Engine
from rssd_kernel.engines.pg_connection import (  # noqa: F401 - secrets_of: the session's
    DEFAULT_SCHEMA,
    Connection,
    conninfo,
    describe,
    grants_needed,
    install,
    lock_id,
    masked,
    password_of,
    secrets_of,
    state_folder,
)
from rssd_kernel.errors import (
    DatabaseUnavailable,
    InvalidInput,
    SchemaMismatch,
    StatefulCellError,
)
from rssd_kernel.journal import recover
from rssd_kernel.results import Result, quote_ident
from rssd_kernel.state import EXECUTED, StateStore

LOST = (
    "rssd: the connection to PostgreSQL was lost (the server restarted, or the network "
    "dropped it), and rssd connected again. This is a new server session: the TEMP tables, "
    "prepared statements and settings of earlier cells are gone; run the cells that made "
    "them again."
)


class PostgresEngine(Engine):
    name = "postgresql"
    Error = psycopg.Error

    def __init__(self, target: str, settings, notebook: str | None):
        self.target = target
        self.settings = settings
        self.notebook = notebook
        self.catalog = os.environ.get("RSSD_PG_SCHEMA") or DEFAULT_SCHEMA
        self.types = running.TypeNames()
        self.con = self.meta = None
        self.session = None
        self.server_version = None
        params = conninfo(target)
        place = "_".join(
            str(params.get(k) or os.environ.get(env) or "")
            for k, env in (
                ("host", "PGHOST"),
                ("port", "PGPORT"),
                ("dbname", "PGDATABASE"),
                ("user", "PGUSER"),
            )  # fmt: skip
        )
        self.journal_base = os.path.join(
            state_folder(), re.sub(r"[^A-Za-z0-9_.-]", "-", f"{place}_{self.catalog}")
        )

    def describe(self) -> dict:
        return {
            "database": masked(self.target),
            "engine": "postgresql",
            "postgresql_version": self.server_version,
            "psycopg_version": psycopg.__version__,
            "rssd_schema": self.catalog,
        }

    def rssd_table(self, name: str) -> str:
        return f"{quote_ident(self.catalog)}.{name}"

    # -- the session --------------------------------------------------------------------

    def start(self, session) -> None:
        """Connect (the cell's connection, and one for the RSSD), install or check the RSSD
        schema, recover journals of ended processes, and start the session's records."""
        self.session = session
        os.makedirs(state_folder(), mode=0o700, exist_ok=True)
        self.con = Connection(self.target, text=True, reconnect=False)
        self.server_version = self.con.raw.info.server_version
        self.meta = Connection(self.target, search_path=f"{quote_ident(self.catalog)}, public")
        self._listen()
        session.announce(self.meta.cursor, None, self.journal_base)
        self._prepare()
        try:
            session.start_records(self.meta)
        except psycopg.errors.InsufficientPrivilege as error:
            user = self.meta.raw.info.user
            raise DatabaseUnavailable(
                f"The role {user} may not write the RSSD schema {self.catalog} of "
                f"{describe(self.target)} ({running.split_error(error)[1].splitlines()[0]}); "
                "rssd records every execution there, so it runs no cell without that.",
                grants_needed(self.catalog, user),
            ) from None

    def _prepare(self) -> None:
        where = describe(self.target)
        try:
            install(self.meta, self.catalog, schema_sql(), _schema_statements, SCHEMA_VERSION,
                    __version__)  # fmt: skip
            check_version(self.meta, f"The RSSD schema {self.catalog} of {where}")
            expected = {t: [c for c, _ in cols] for t, cols in expected_columns().items()}
            from rssd_kernel.engines.pg_connection import columns

            found = columns(self.meta, self.catalog, list(expected))
            different = [t for t, c in expected.items() if found.get(t) != c]
            if different:
                raise SchemaMismatch(
                    f"The RSSD tables in schema {self.catalog} of {where} do not match what "
                    f"rssd-kernel {__version__} expects (schema version {SCHEMA_VERSION}; "
                    f"different: {', '.join(different)}). Nothing was changed.",
                    "Restore the tables, or use another schema (RSSD_PG_SCHEMA=...).",
                )
        except psycopg.errors.InsufficientPrivilege as error:
            user = self.meta.raw.info.user
            raise DatabaseUnavailable(
                f"The role {user} may not use the RSSD schema {self.catalog} of {where} "
                f"({running.split_error(error)[1].splitlines()[0]}).",
                grants_needed(self.catalog, user),
            ) from None
        except psycopg.Error as error:
            raise DatabaseUnavailable(
                f"The RSSD schema {self.catalog} of {where} could not be prepared: "
                f"{running.split_error(error)[1].splitlines()[0]}"
            ) from None
        self.session.notes += recover(
            self.meta, self.journal_base, self.session.journal_path()
        ).notes

    def waiting_for(self) -> str | None:
        return None

    # Other kernels' state rows: each stateful (or named) cell's transaction also sends a
    # NOTIFY on the schema's channel, delivered when it commits; every kernel LISTENs on its
    # RSSD connection and reads the state again before its next cell only when another
    # kernel's note came. This costs no query per cell, whatever the history's size. A note
    # that arrives late is harmless: a stateful cell decides under its key's lock from what
    # is committed (begin_stateful).

    @property
    def _channel(self) -> str:
        return quote_ident(f"rssd_state_{self.catalog}")

    def _listen(self) -> None:
        self.meta.raw.execute(f"LISTEN {self._channel}")
        self.meta.raw.add_notify_handler(self._noted)
        self._changed = True

    def _noted(self, notify) -> None:
        if self.session is None or notify.payload != self.session.session_id:
            self._changed = True

    def state_changed(self) -> bool:
        """Whether another kernel wrote state rows since the last call. A note waiting on
        the idle connection is read by `lost()`, which queries when the socket is ready."""
        if self.meta.lost():
            self.meta.reopen()
            self._listen()
        changed, self._changed = self._changed, False
        return changed

    def announce_state(self, con) -> None:
        con.execute("SELECT pg_notify(?, ?)", [self._channel.strip('"'), self.session.session_id])

    def before_cell(self, writer) -> list[str]:
        """A connection the server ended while idle (a restart) is made again, and the
        cell says so: the session's TEMP objects and settings are gone."""
        notes = []
        if self.meta.lost():
            self.meta.reopen()
            self._listen()
        stuck = self.con.raw.info.transaction_status == pq.TransactionStatus.ACTIVE
        if stuck or self.con.lost():  # gone, or left busy by a failure of ours
            self.con.reopen()
            self.in_user_transaction = False
            if self.session is not None and self.session.named is not None:
                self.session.named.materialized.clear()
            notes.append(LOST)
        return notes

    def close(self) -> None:
        for con in (self.con, self.meta):
            if con is not None:
                with contextlib.suppress(Exception):
                    con.close()
        self.con = self.meta = None

    def state_store(self, con) -> StateStore:
        # No change counter here: one row every kernel updates would serialise all stateful
        # cells. Rows are ordered by the server's clock_timestamp(), one clock for all.
        return StateStore(self.meta, self.rssd_table("orchestration_session_state"), None,
                          clock="clock_timestamp()", changed=self.state_changed,
                          announce=self.announce_state)  # fmt: skip

    # -- a cell's plan -------------------------------------------------------------------

    def split(self, code: str) -> list:
        try:
            return statements.split(code)
        except statements.ParseFailure as error:
            if _SET_VARIABLE.search(code):
                raise InvalidInput(
                    "SET VARIABLE is DuckDB's; PostgreSQL has no session variables of that "
                    "kind, so parameters (rssd run -p, papermill) work on DuckDB only for now.",
                    "Give the value a named cell instead: '-- @name region' on the first "
                    "line, then SELECT 'north' AS region; later cells read it as $region.",
                ) from None
            from rssd_kernel.statements import Failure

            line = column = None
            if error.offset is not None:
                line = code.count("\n", 0, error.offset) + 1
                column = error.offset - (code.rfind("\n", 0, error.offset) + 1) + 1
            raise Failure("SyntaxError", str(error), "the cell (while parsing it)", line,
                          column) from None  # fmt: skip

    def classify(self, statement, temp_names: set[str]):
        return statements.classify_statement(statement, temp_names)

    def needs_temp_names(self, found) -> bool:
        return any(s.kind in _MAY_BE_TEMP or s.writing_ctes for s in found)

    def protect(self, found, classified) -> None:
        """Refuse changes to the RSSD's tables: those qualified with its schema (from the
        parse tree), and unqualified names that the session's search path resolves to it
        (asked of the server: `SET search_path = rssd` must not open a way around)."""
        tables = list(expected_columns())
        statements.protect(found, classified, self.catalog, tables)
        for number, (statement, classes) in enumerate(zip(found, classified), start=1):
            if classes.kind == classify.READ and statement.kind != "SelectStmt":
                continue
            names = [n for n in statements.targets(statement) if n.split(".")[-1] in tables]
            if not names:
                continue
            if self.catalog in running.schemas_of(self.con, names):
                statements.refuse_audit_change(number, classes.verb, names[0])

    def is_complete(self, code: str) -> dict:
        return statements.is_complete(code)

    def words(self, code: str) -> list[str]:
        return [code[s:e] for s, e, _, kind in statements._scan(code) if kind != "COMMENT"]

    # -- running ---------------------------------------------------------------------------

    def run_statement(self, statement, params, limit: int, is_last: bool, constant=False):
        """Under the net, a SELECT that can write nothing stops after the rows shown;
        anything else runs to its end, so that the net sees every write and a stateful
        cell applies whole."""
        in_net, self._in_net = self._in_net, False
        stop_early = in_net and is_last and not self._may_write(statement)
        return running.run_statement(self.con, statement, params, limit, is_last,
                                     self.settings.max_columns, self.types,
                                     stop_early)  # fmt: skip

    _in_net = False

    def _may_write(self, statement) -> bool:
        return running.may_write(self.con, statement)

    def check_session_statement(self, statement, classes) -> bool:
        """Before a session statement that runs without the net (TEMP DDL): True when it
        turns out to change the database after all: a name taken for a TEMP object that is
        a permanent one now (dropped meanwhile, or found first by the search path). A TEMP
        DDL statement whose query or default may write (a VOLATILE function, a view) is
        refused: outside the net, that write could not be seen."""
        if self._may_write(statement):
            raise StatefulCellError(
                f"{classes.verb} makes a TEMP object from an expression that may write to the "
                "database (a VOLATILE function such as nextval, or a view), and PostgreSQL "
                "cannot check TEMP DDL in a read-only transaction, so rssd cannot tell "
                "whether it changes the database. Nothing of it ran.",
                "Create the TEMP table first (CREATE TEMP TABLE x (...)), then fill it in "
                "another statement (INSERT INTO x SELECT ...), which runs under the check; "
                "or make the write a stateful cell of its own.",
            )
        names = [n for n in statements.targets(statement) if not n.startswith("pg_temp")]
        if classes.creates_temp or not names:
            return False
        return running.any_permanent(self.con, names)

    def begin_read_only(self) -> None:
        self.con.raw.execute("BEGIN READ ONLY")
        self._in_net = True

    def refused(self, error) -> str | None:
        return self.catalog if running.is_refused(error) else None

    def begin_stateful(self, key: str, state):
        """Open the stateful transaction at READ COMMITTED, take the key's advisory lock
        (the server frees it if this client dies), then read the key's committed state:
        another kernel may have applied it while this one waited. Returns its row if so."""
        raw = self.con.raw
        self._in_net = False
        raw.execute("BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE")
        raw.execute("SELECT pg_advisory_xact_lock(%s)", [lock_id(f"{self.catalog} {key}")])
        schema = quote_ident(self.catalog)
        row = raw.execute(
            f"SELECT to_state FROM {schema}.orchestration_session_state "
            f"WHERE {schema}.json_extract_string(elaboration, '$.key') = %s "
            "ORDER BY transitioned_at DESC, orchestration_session_state_id DESC LIMIT 1",
            [key],
        ).fetchone()
        return row if row is not None and row[0] == EXECUTED else None

    @contextlib.contextmanager
    def key_locked(self, con, key: str):
        """A transaction of `con` holding the key's advisory lock (as a stateful cell's)."""
        con.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        try:
            con.execute("SELECT pg_advisory_xact_lock(?)", [lock_id(f"{self.catalog} {key}")])
            yield
        except BaseException:
            con.rollback()
            raise
        con.commit()

    def failure(self, error, statement, line: int, params, code: str = "", start: int = 0):
        ename, evalue = running.split_error(error)
        interrupted = isinstance(error, psycopg.errors.QueryCanceled)
        if running.is_connection_lost(error, self.con):
            ename = "ConnectionLost"
            evalue += (
                "\nThe connection to the server was lost while this statement ran: the "
                "server rolled back what it had not committed (a stateful cell: all of it). "
                "Run the cell again; rssd connects again first."
            )
        found = running.locate(error, statement, params, code, start) if code else (None, None)
        return ename, evalue, found[0] or line, found[1], interrupted

    def split_error(self, error) -> tuple[str, str]:
        return running.split_error(error)

    def is_interrupt(self, error) -> bool:
        return isinstance(error, psycopg.errors.QueryCanceled)

    def probe_transaction(self) -> None:
        self.in_user_transaction = self.con.in_transaction

    def interrupt(self) -> None:
        if self.con is not None:
            self.con.cancel()

    # -- the session's objects, for named results -----------------------------------------

    def temp_names(self) -> set[str]:
        return running.temp_names(self.con)

    def persistent_names(self, names: set[str]) -> set[str]:
        return running.persistent_names(self.con, names)

    def temp_table_exists(self, name: str) -> bool:
        return name in self.temp_names()

    def drop_temp(self, name: str) -> None:
        self.con.raw.execute(f"DROP TABLE IF EXISTS pg_temp.{quote_ident(name)}")

    def make_temp_table(self, name: str, result: Result) -> None:
        sql, params = running.restore_sql(result)
        self.drop_temp(name)
        cursor = psycopg.RawCursor(self.con.raw)
        cursor.execute(f"CREATE TEMP TABLE {quote_ident(name)} AS {sql}", params)

    def unrestorable(self, result: Result) -> str | None:
        if "record" not in result.types:
            return None
        column = result.columns[result.types.index("record")]
        return (
            f"has a column of an anonymous composite type ('{column}', a record), which "
            "PostgreSQL cannot read back from text: later cells cannot use it. Cast it to a "
            "named composite type (CREATE TYPE ... AS (...), then ROW(...)::that_type)."
        )

    def scalar(self, result: Result):
        """(text, type) of a one-value result: bound as `$1::type`."""
        running.restore_sql(result)  # refuses an anonymous composite, with a message
        return result.rows[0][0], result.types[0]

    # -- the catalog ---------------------------------------------------------------------

    def load_catalog(self):
        return running.load_catalog(self.con)

    def load_functions(self):
        return running.load_functions(self.con)

    def inspect(self, state, name: str):
        return running.inspect(self.con, state, name)

    def tables(self) -> tuple[str, list]:
        return (
            "SELECT table_schema AS schema, table_name AS name, lower(table_type) AS kind "
            "FROM information_schema.tables WHERE table_schema NOT IN "
            "('pg_catalog', 'information_schema') AND table_schema <> ? ORDER BY 1, 2",
            [self.catalog],
        )

    def query(self, sql: str, params=None) -> Result:
        """A result of the RSSD's connection, for `%` commands."""
        rows = self.meta.execute(sql, params)
        description = rows.description or []
        names = [d.name for d in description]
        types = self.types.names(self.meta, [d.type_code for d in description])
        values = [[None if v is None else str(v) for v in row] for row in rows.fetchall()]
        return Result(names, types, values[:10_000], complete=len(values) <= 10_000)


_SET_VARIABLE = re.compile(r"(?im)^\s*SET\s+VARIABLE\b")
_MAY_BE_TEMP = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt",
                "DropStmt", "AlterTableStmt", "IndexStmt", "TruncateStmt",
                "AlterSeqStmt"}  # fmt: skip


def _schema_statements(sql: str) -> list[str]:
    from pglast import parser as pg_parser

    return list(pg_parser.split(sql, with_parser=True))
