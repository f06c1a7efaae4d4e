"""Opening the DuckDB file that holds both the user's data and the RSSD.

`open_database` either returns a connection whose RSSD schema is installed and checked,
or raises a `DatabaseUnavailable` subclass whose message names the file and the ways out.
"""

import functools
import os
import re
from importlib import resources

import duckdb

from rssd_kernel import __version__
from rssd_kernel.errors import DatabaseLocked, DatabaseUnavailable, SchemaMismatch
from rssd_kernel.journal import recover

SCHEMA_VERSION = 2
# Tables a file of an older schema version lacks, added in place by `_migrate`.
ADDED_IN = {"rssd_change_counter": 2}
DEFAULT_FILE = "rssd.duckdb"
WAYS_OUT = (
    "Use another file with `%open other.duckdb` in a cell, or start the kernel with the "
    "environment variable RSSD_DATABASE set to another path (or to :memory:)."
)


def default_path() -> str:
    """The file a new kernel opens: $RSSD_DATABASE, else rssd.duckdb in the working directory."""
    return os.environ.get("RSSD_DATABASE") or DEFAULT_FILE


def schema_sql() -> str:
    """The RSSD DDL shipped with the package (rssd_kernel/schema.sql)."""
    return resources.files("rssd_kernel").joinpath("schema.sql").read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def expected_columns() -> dict[str, list[tuple[str, str]]]:
    """Each RSSD table's (column, type) list, as DuckDB creates them from schema.sql."""
    con = duckdb.connect(":memory:")
    try:
        for statement in duckdb.extract_statements(schema_sql()):
            con.execute(statement)
        return _columns(con)
    finally:
        con.close()


def rssd_tables() -> list[str]:
    return sorted(expected_columns())


def _columns(con, tables: list[str] | None = None) -> dict[str, list[tuple[str, str]]]:
    sql = (
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = 'main'"
    )
    params: list = []
    if tables is not None:
        sql += " AND table_name IN (SELECT unnest(?::VARCHAR[]))"
        params.append(tables)
    found: dict[str, list[tuple[str, str]]] = {}
    for table, column, data_type in con.execute(
        sql + " ORDER BY table_name, ordinal_position", params
    ).fetchall():
        found.setdefault(table, []).append((column, data_type))
    return found


def describe_open_error(path: str, error: Exception) -> DatabaseUnavailable:
    """Turn DuckDB's error on connect into one that says what happened and what to do."""
    text = str(error)
    if "Could not set lock" in text or "Conflicting lock" in text:
        pid = re.search(r"\(PID (\d+)\)", text)
        holder = f"process {pid.group(1)}" if pid else "another process"
        return DatabaseLocked(
            f"The database {path} is locked by {holder}; DuckDB lets one process at a time "
            "open a file.",
            f"Stop that process, or: {WAYS_OUT}",
        )
    if "not a valid DuckDB database" in text or "database file" in text and "corrupt" in text:
        return DatabaseUnavailable(
            f"{path} is not a DuckDB database file, so rssd will not touch it.",
            WAYS_OUT,
        )
    if "Permission denied" in text or "Read-only" in text or "read-only" in text:
        return DatabaseUnavailable(
            f"{path} cannot be opened for writing ({text.splitlines()[0]}). rssd records every "
            "execution in the database file, so it does not run cells on a read-only one.",
            "Make the file and its folder writable, or copy the file somewhere writable and "
            f"open the copy. To read its RSSD without writing, use `rssd sessions` and `rssd "
            f"log` (they open it read-only). {WAYS_OUT}",
        )
    first_line = text.splitlines()[0] if text else type(error).__name__
    return DatabaseUnavailable(f"{path} cannot be opened: {first_line}", WAYS_OUT)


def open_database(path: str, notes: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    """Connect to `path` (a file or :memory:) and make sure its RSSD schema is current.

    Raises DatabaseLocked when another process holds the file, SchemaMismatch when the
    RSSD tables come from a newer release or were altered, DatabaseUnavailable otherwise.
    Records a crashed kernel left in the journal beside the file are written first; what the
    user should know about them (a journal moved aside, say) is appended to `notes` as
    sentences.
    """
    try:
        con = duckdb.connect(path)
    except duckdb.Error as error:
        raise describe_open_error(path, error) from None
    try:
        prepare(con, path, notes)
    except BaseException:
        con.close()
        raise
    return con


def prepare(
    con, path: str, notes: list[str] | None = None, own_journal: str | None = None, defer=None
):
    """Check (install, migrate) the RSSD schema of the database `con` uses by default, then
    recover the journals of processes that died (never `own_journal`; lineage digests they
    left to make go to `defer`, see journal.replay). What the user should know (a journal
    moved aside, say) is appended to `notes`."""
    ensure_schema(con, path)
    if path != ":memory:":
        recovery = recover(con, path, own_journal, defer)  # never raises (a bad one is set aside)
        if notes is not None:
            notes.extend(recovery.notes)


def check_version(con, path: str) -> None:
    """Refuse a file that a newer release has migrated meanwhile (cheap: one query)."""
    ((version,),) = con.execute("SELECT max(version) FROM rssd_schema_version").fetchall()
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{path} was migrated by a newer rssd-kernel (RSSD schema version {version}; "
            f"this is {__version__}, which knows version {SCHEMA_VERSION}).",
            "Upgrade rssd-kernel (pip install -U rssd-kernel) in every environment that "
            "opens this file.",
        )


def ensure_schema(con, path: str) -> None:
    """Install the RSSD schema in an empty file, or check an existing one. Idempotent."""
    expected = expected_columns()
    found = _columns(con, list(expected))
    version = None
    if "rssd_schema_version" in found:
        ((version,),) = con.execute("SELECT max(version) FROM rssd_schema_version").fetchall()
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaMismatch(
                f"{path} was written by a newer rssd-kernel (RSSD schema version {version}; "
                f"this is {__version__}, which knows version {SCHEMA_VERSION}).",
                "Upgrade rssd-kernel (pip install -U rssd-kernel), or open another file.",
            )
    if not found:
        _install(con)
        return
    missing = [t for t, v in ADDED_IN.items() if t not in found and (version or 1) < v]
    differences = [
        table
        for table, columns in expected.items()
        if table != "rssd_schema_version" and table not in missing and found.get(table) != columns
    ]
    if differences:
        raise SchemaMismatch(
            f"The RSSD tables in {path} do not match what rssd-kernel {__version__} expects "
            f"(different: {', '.join(differences)}); they may have been altered by hand. "
            "Nothing was changed.",
            "Restore the tables (or the file from a backup), or open another file.",
        )
    if "rssd_schema_version" not in found:
        # RSSD tables made elsewhere with exactly our columns: adopt them.
        _install(con, only=["rssd_schema_version", *missing])
    elif missing:
        _install(con, only=missing)  # a file of an older release: migrated in place


def _install(con, only: list[str] | None = None) -> None:
    con.begin()
    try:
        for statement in duckdb.extract_statements(schema_sql()):
            if only is None or any(f'"{name}"' in statement.query for name in only):
                con.execute(statement)
        con.execute(
            "INSERT INTO rssd_schema_version (version, package_version) VALUES (?, ?)",
            [SCHEMA_VERSION, __version__],
        )
        if only is None or "rssd_change_counter" in only:
            con.execute("INSERT INTO rssd_change_counter (counter) VALUES (0)")
        con.commit()
    except BaseException:
        con.rollback()
        raise
