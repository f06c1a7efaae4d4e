"""Reading the RSSD of a database: the queries behind `rssd sessions|log|state|show`.

The database is a DuckDB file, or a PostgreSQL database (a `postgresql://` URL or a libpq
connection string) whose RSSD lives in a schema of its own (`rssd`, or $RSSD_PG_SCHEMA).
The queries read the same on both engines (PostgreSQL's RSSD schema has the
`json_extract_string` the kernel installs there).
"""

import os
import re

import duckdb

from rssd_kernel.engines import is_postgres, load_postgres
from rssd_kernel.errors import DatabaseLocked, DatabaseUnavailable, RssdError
from rssd_kernel.journal import recover
from rssd_kernel.lease import open_waiting
from rssd_kernel.results import quote_ident
from rssd_kernel.state import LATEST_RANK


class NoRssdTables(RssdError):
    """The database holds no RSSD tables (no notebook ran on it)."""

    def __init__(self, where: str):
        super().__init__(f"{where} holds no RSSD tables; run a notebook on it first.")
        self.where = where


QUERIES = {
    "sessions": """
        SELECT s.orchestration_session_id AS session, CAST(s.orch_started_at AS VARCHAR) AS started,
               CAST(s.orch_finished_at AS VARCHAR) AS finished, d.name AS device,
               json_extract_string(s.args_json, '$.notebook') AS notebook,
               (SELECT count(*) FROM orchestration_session_exec e
                 WHERE e.session_id = s.orchestration_session_id
                   AND e.parent_exec_id IS NULL) AS cells,
               (SELECT count(*) FROM orchestration_session_exec e
                 WHERE e.session_id = s.orchestration_session_id AND e.parent_exec_id IS NULL
                   AND e.exec_status = 1) AS errors
        FROM orchestration_session s JOIN device d USING (device_id)
        ORDER BY s.orchestration_session_id DESC LIMIT ?""",
    "log": """
        SELECT orchestration_session_exec_id AS exec, parent_exec_id AS parent,
               exec_status AS status, exec_nature AS nature,
               CAST(json_extract_string(elaboration, '$.duration_ms') AS DOUBLE PRECISION) AS ms,
               narrative_md AS what
        FROM orchestration_session_exec WHERE session_id = ?
        ORDER BY coalesce(parent_exec_id, orchestration_session_exec_id),
                 parent_exec_id NULLS FIRST, orchestration_session_exec_id""",
    "state": f"""
        SELECT key, state, transitioned_at, session FROM (
            SELECT json_extract_string(elaboration, '$.key') AS key, to_state AS state,
                   CAST(transitioned_at AS VARCHAR) AS transitioned_at, session_id AS session,
                   transitioned_at AS t, {LATEST_RANK} AS n
            FROM orchestration_session_state) AS latest
        WHERE n = 1 ORDER BY t DESC""",
    "show": """
        SELECT orchestration_session_exec_id AS exec, session_id AS session, exec_status AS status,
               exec_code AS code, output_text AS output, exec_error_text AS error
        FROM orchestration_session_exec WHERE orchestration_session_exec_id = ?""",
}


_URL_PASSWORD = re.compile(r"(?i)\b(postgres(?:ql)?://[^:/@\s\"']*):[^/\s\"']*@")
_PAIR_PASSWORD = re.compile(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|[^\s&\"']+)")


def without_password(text: str) -> str:
    """`text` (a PostgreSQL URL or connection string, or a message that quotes one) with
    every password in it masked: a URL's `user:password@`, `password=...` pairs and
    parameters. Works on strings libpq cannot parse too."""
    return _PAIR_PASSWORD.sub("password=***", _URL_PASSWORD.sub(r"\1@", text))


def where(target: str) -> str:
    """How messages name the database: its path, or for PostgreSQL its database, server and
    user (never the password) and the RSSD schema."""
    if not is_postgres(target):
        return target
    load_postgres()
    from rssd_kernel.engines.pg_connection import describe

    return f"PostgreSQL {describe(target)} (RSSD schema {_schema()})"


def connect(target: str, wait_s: float = 600.0, on_wait=None):
    """A connection to read the RSSD of `target`, waiting while another process holds the
    file (lease.py). When the database can be written, the journals of processes that died
    are recovered first, so that what they ran shows too; a read-only one is read as it is."""
    if is_postgres(target):
        return _connect_postgres(target)
    path = target
    if not os.path.exists(path):
        raise RssdError(f"{path} does not exist; run a notebook on it first.")
    try:
        con = open_waiting(path, wait_s=wait_s, on_wait=on_wait)
    except DatabaseLocked:
        raise
    except DatabaseUnavailable:
        return open_waiting(path, read_only=True, wait_s=wait_s, on_wait=on_wait)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "orchestration_session_exec" in tables:
        recover(con, path)  # never raises; a journal it cannot use is set aside
    return con


def read(
    target: str, what: str, params: list | None = None, wait_s: float = 600.0, on_wait=None
) -> tuple[list[str], list[tuple]]:
    """Column names and rows of one provenance query."""
    con = connect(target, wait_s, on_wait)
    try:
        cursor = con.execute(QUERIES[what], params or [])
        columns = [d[0] for d in cursor.description]  # DuckDB tuples, psycopg Columns
        return columns, cursor.fetchall()
    except duckdb.CatalogException:
        raise NoRssdTables(target) from None
    except postgres_error() as error:
        raise failure(target, error) from None
    finally:
        con.close()


# -- PostgreSQL ------------------------------------------------------------------------------


class _Never(Exception):
    """Raised by nothing: what `postgres_error()` is without psycopg."""


def postgres_error() -> type[Exception]:
    """psycopg's base error class (a class nothing raises when psycopg is not installed)."""
    try:
        import psycopg
    except ImportError:
        return _Never
    return psycopg.Error


def _schema() -> str:
    from rssd_kernel.engines.pg_connection import DEFAULT_SCHEMA

    return os.environ.get("RSSD_PG_SCHEMA") or DEFAULT_SCHEMA


CONNECT_ADVICE = (
    "Check that the server runs and accepts connections from here, and the user, password "
    "and database name (libpq's PG* variables and ~/.pgpass apply)."
)

# The RSSD tables, whether the role may read them, and whether it may write them (to recover
# journals), from the catalog: information_schema hides the tables a role may not use.
_TABLES = """
    SELECT c.relname,
           has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT'),
           has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'INSERT')
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = ? AND c.relkind IN ('r', 'p')"""


def _connect_postgres(target: str):
    """A connection to the RSSD schema of a PostgreSQL database, after recovering the
    journals that kernels which died left in this machine's state folder (only when the
    role may write the RSSD: recovery sets aside a journal it cannot write)."""
    module = load_postgres()  # a DatabaseUnavailable naming the install command
    from rssd_kernel.engines.pg_connection import Connection
    from rssd_kernel.settings import Settings

    try:
        engine = module.PostgresEngine(target, Settings(), None)  # parses, does not connect
    except DatabaseUnavailable as error:  # libpq quotes a URL it cannot parse, password too
        raise DatabaseUnavailable(without_password(error.message), error.remediation) from None
    try:
        con = Connection(target, search_path=f"{quote_ident(engine.catalog)}, public")
    except DatabaseUnavailable as error:  # the kernel's advice, without its `%open`
        raise DatabaseUnavailable(without_password(error.message), CONNECT_ADVICE) from None
    try:
        con.execute("SET DateStyle TO ISO")  # timestamps as text read as DuckDB writes them
        found = {name: (readable, writable) for name, readable, writable in
                 con.execute(_TABLES, [engine.catalog]).fetchall()}  # fmt: skip
        if "orchestration_session_exec" not in found:
            raise NoRssdTables(where(target))
        if not all(readable for readable, _ in found.values()):
            # (unqualified names would not even find the tables of a schema it may not use)
            raise _may_not_read(target, con.raw.info.user)
        if all(readable and writable for readable, writable in found.values()):
            recover(con, engine.journal_base)  # never raises
    except postgres_error() as error:
        con.close()
        raise failure(target, error) from None
    except BaseException:
        con.close()
        raise
    return con


def failure(target: str, error: Exception) -> RssdError:
    """A clean error for a PostgreSQL error met while reading the RSSD (the password, should
    the server's text hold it, masked)."""
    import psycopg

    from rssd_kernel.engines.pg_connection import password_of

    text = without_password((str(error).strip().splitlines() or [type(error).__name__])[0])
    secret = password_of(target)
    if secret:
        text = text.replace(secret, "***")
    place = where(target)
    if isinstance(
        error,
        (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedFunction,
         psycopg.errors.InvalidSchemaName),
    ):  # fmt: skip
        return NoRssdTables(place)
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return _may_not_read(target, None, text)
    return DatabaseUnavailable(f"Reading the RSSD of {place} failed: {text}")


def _may_not_read(target: str, role: str | None, why: str | None = None) -> DatabaseUnavailable:
    schema = quote_ident(_schema())
    who = quote_ident(role) if role else "<role>"
    return DatabaseUnavailable(
        f"{f'The role {role}' if role else 'This role'} may not read the RSSD of {where(target)}"
        + (f" ({why})." if why else "."),
        f"A database owner can grant it: GRANT USAGE ON SCHEMA {schema} TO {who}; "
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {who};",
    )
