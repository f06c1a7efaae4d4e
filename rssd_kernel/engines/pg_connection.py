"""PostgreSQL connections: the connection string (and its password, never recorded),
psycopg connections with the DuckDB-like surface the RSSD code uses, and the RSSD schema."""

import getpass
import hashlib
import os
import re
import select
import threading
from urllib.parse import quote, unquote

import psycopg
from psycopg import pq
from psycopg.adapt import Loader

from rssd_kernel.errors import DatabaseUnavailable
from rssd_kernel.results import quote_ident

DEFAULT_SCHEMA = "rssd"
ENCODING = "postgres-text-v1"
CONNECT_TIMEOUT = 10
Error = psycopg.Error


# -- the connection string -------------------------------------------------------------------


def conninfo(target: str) -> dict:
    """The libpq parameters of a URL or connection string (libpq's environment variables
    and .pgpass apply on connect as usual)."""
    try:
        return psycopg.conninfo.conninfo_to_dict(target)
    except psycopg.Error as error:
        text, secret = _first_line(error), password_of(target)
        if secret:
            text = text.replace(target, masked(target)).replace(secret, "***")
        raise DatabaseUnavailable(
            f"The PostgreSQL connection string is not valid: {text}.",
            "Write it as postgresql://user@host:5432/dbname (or as libpq's key=value pairs).",
        ) from None


_URL_PASSWORD = re.compile(r"^(postgres(?:ql)?://[^:/@?#]*):([^@/?#]*)@")
_PARAM_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)")


def password_of(target: str) -> str | None:
    """The password `target` holds (in the URL, as a parameter, or key=value), if any; found
    even in a string libpq cannot parse, so that it can be masked everywhere."""
    try:
        value = psycopg.conninfo.conninfo_to_dict(target).get("password")
        if value:
            return str(value)
    except psycopg.Error:
        pass
    found = _URL_PASSWORD.match(target) or _PARAM_PASSWORD.search(target)
    if not found:
        return None
    value = unquote(found.group(2)).strip("'")
    return value or None


def masked(target: str) -> str:
    """`target` without its password: what rssd records and shows."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + "@", target)
    return _PARAM_PASSWORD.sub(lambda m: m.group(1) + "***", text)


def describe(target: str) -> str:
    """'database "d" on host:port as user u', from the parameters libpq would use."""
    params = conninfo(target)
    env = os.environ
    host = params.get("host") or params.get("hostaddr") or env.get("PGHOST") or "localhost"
    port = params.get("port") or env.get("PGPORT") or "5432"
    user = params.get("user") or env.get("PGUSER") or _login()
    dbname = params.get("dbname") or env.get("PGDATABASE") or user
    return f'database "{dbname}" on {host}:{port} as user {user}'


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name known to the system
        return "(your login)"


def secrets_of(target: str) -> set[str]:
    """The password `target` holds, as written in a URL and decoded: either may show up in
    a message, and neither may be recorded."""
    password = password_of(target)
    return {password, quote(password, safe="")} if password else set()


def state_folder() -> str:
    """Where journals of PostgreSQL sessions are kept (there is no file to put them
    beside): $XDG_STATE_HOME/rssd-kernel/journals, else ~/.local/state/..."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "rssd-kernel", "journals")


# -- connections ---------------------------------------------------------------------------------


class _Text(Loader):
    """Every value as PostgreSQL's own text (what `CAST(text AS type)` reads back)."""

    def load(self, data):
        return bytes(data).decode("utf-8", "replace")


_TEXT_ADAPTERS = psycopg.adapt.AdaptersMap(psycopg.adapters)
for _info in psycopg.postgres.types:
    for _oid in (_info.oid, _info.array_oid):
        if _oid:
            _TEXT_ADAPTERS.register_loader(_oid, _Text)


class Connection:
    """A psycopg connection with the small DuckDB-like surface the RSSD code uses
    (`execute(sql, params).fetchall()`, `begin`, `commit`, `rollback`, `cursor`), so that
    the recorder, the journal and the state store read the same on both engines. Our own
    SQL uses `?` placeholders; here they become psycopg's `%s`.

    `raw` is the psycopg connection, in autocommit mode: transactions are opened with an
    explicit BEGIN, as on DuckDB. `search_path` is set for the RSSD's connections (the
    cell's connection keeps the user's)."""

    def __init__(
        self, target: str, search_path: str | None = None, text: bool = False,
        reconnect: bool = True,
    ):  # fmt: skip
        self.target, self.search_path, self.text = target, search_path, text
        self.reconnect = reconnect  # the RSSD's connections; never the cell's (its session)
        self.raw = None
        self.reopen()

    def reopen(self) -> None:
        """Connect (again): a new server session."""
        if self.raw is not None:
            try:
                self.raw.close()
            except Exception:  # noqa: BLE001 - it is gone already
                pass
        self.raw = _connect(self.target, _TEXT_ADAPTERS if self.text else None)
        if self.search_path:
            self.raw.execute(f"SET search_path TO {self.search_path}")

    def execute(self, sql: str, params=None) -> "_Rows":
        if self.reconnect and (self.raw.closed or self.raw.broken):
            self.reopen()
        if params is not None:
            sql = sql.replace("%", "%%").replace("?", "%s")
        cursor = self.raw.cursor()
        cursor.execute(sql, params)
        return _Rows(cursor)

    def begin(self) -> None:
        self.execute("BEGIN")

    def commit(self) -> None:
        self.raw.execute("COMMIT")

    def rollback(self) -> None:
        if not self.raw.closed and not self.raw.broken:
            self.raw.execute("ROLLBACK")

    def cursor(self) -> "Connection":
        return Connection(self.target, self.search_path, self.text, self.reconnect)

    def close(self) -> None:
        self.raw.close()

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != pq.TransactionStatus.IDLE

    def lost(self) -> bool:
        """Whether the server ended this connection (restarted, say) while it was idle. An
        idle connection's socket reads as ready only when the server sent something on
        its own (a notice that it shuts down, or the end); a query then tells."""
        raw = self.raw
        if raw.closed or raw.broken:
            return True
        try:
            ready, _, _ = select.select([raw.fileno()], [], [], 0)
        except (OSError, ValueError):
            return True
        if ready:
            try:
                raw.execute("SELECT 1")
            except psycopg.OperationalError:
                return True
            except psycopg.Error:
                pass  # an aborted transaction of the user's: still connected
        return raw.closed or raw.broken

    def cancel(self) -> None:
        """Cancel the running statement on the server (from another thread: a signal
        handler must not wait for the server)."""
        threading.Thread(target=self._cancel, daemon=True).start()

    def _cancel(self) -> None:
        try:
            self.raw.cancel_safe(timeout=5)
        except Exception:  # noqa: BLE001 - nothing runs, or the server is gone
            pass


class _Rows:
    def __init__(self, cursor):
        self.cursor = cursor

    def fetchall(self) -> list:
        return self.cursor.fetchall() if self.cursor.description is not None else []

    @property
    def description(self):
        return self.cursor.description


def _connect(target: str, context=None):
    kwargs = {"autocommit": True, "application_name": "rssd-kernel", "context": context}
    if "connect_timeout" not in conninfo(target) and not os.environ.get("PGCONNECT_TIMEOUT"):
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    try:
        return psycopg.connect(target, **kwargs)
    except psycopg.Error as error:
        secret = password_of(target)
        text = _first_line(error)
        if secret:
            text = text.replace(secret, "***")
        raise DatabaseUnavailable(
            f"Cannot connect to PostgreSQL, {describe(target)}: {text}",
            "Check that the server runs and accepts connections from here, and the user, "
            "password and database name (libpq's PG* variables and ~/.pgpass apply). Or "
            "open another database with `%open`.",
        ) from None


def _first_line(error) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# -- the RSSD schema ---------------------------------------------------------------------------

_COMPAT = """
CREATE OR REPLACE FUNCTION {schema}.json_valid(t text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $rssd$
BEGIN
    PERFORM t::json;
    RETURN true;
EXCEPTION WHEN others THEN
    RETURN false;
END
$rssd$;
CREATE OR REPLACE FUNCTION {schema}.json_extract_string(t text, path text) RETURNS text
LANGUAGE sql IMMUTABLE AS $rssd$
    SELECT t::jsonb #>> string_to_array(regexp_replace(path, '^\\$\\.?', ''), '.')
$rssd$;
"""


def grants_needed(schema: str, user: str) -> str:
    s = quote_ident(schema)
    return (
        f"A database owner can grant them: GRANT USAGE, CREATE ON SCHEMA {s} TO {user}; "
        f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {s} TO {user}; (and, for a "
        f"new database, GRANT CREATE ON DATABASE ... TO {user} so rssd can create the schema)."
    )


def install(
    con: Connection, schema: str, schema_sql: str, statements, schema_version: int,
    package_version: str,
) -> bool:  # fmt: skip
    """Create the RSSD schema and its tables unless they exist (under a lock, so that
    kernels starting together install it once). True when it was installed now."""
    quoted = quote_ident(schema)
    con.begin()
    try:
        con.execute("SELECT pg_advisory_xact_lock(?)", [lock_id(f"install {schema}")])
        found = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ?", [schema]
        ).fetchall()[0][0]
        if found:
            con.rollback()
            return False
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        con.execute(_COMPAT.format(schema=quoted))
        con.execute(f"SET LOCAL search_path TO {quoted}")
        for statement in statements(schema_sql):
            con.execute(statement)
        con.execute(
            "INSERT INTO rssd_schema_version (version, package_version) VALUES (?, ?)",
            [schema_version, package_version],
        )
        con.execute("INSERT INTO rssd_change_counter (counter) VALUES (0)")
        con.commit()
        return True
    except BaseException:
        con.rollback()
        raise


def columns(con: Connection, schema: str, tables: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for table, column in con.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ANY(?) ORDER BY table_name, ordinal_position",
        [schema, tables],
    ).fetchall():
        found.setdefault(table, []).append(column)
    return found


def lock_id(text: str) -> int:
    """A stable signed 64-bit number for an advisory lock."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)
