"""`rssd export-rssd OUT.sqlite`: the RSSD tables of a DuckDB file or of a PostgreSQL
database's RSSD schema, copied into SQLite.

SQLite is the RSSD's home format and surveilr's tools read it. The tables are created with
schema.sql as written (the seed documents' DDL), and rows are upserted by primary key in one
SQLite transaction with foreign keys on: exporting again into the same file adds what is new,
updates what changed (a session that has finished since) and duplicates nothing.

The rows are read with SQL both engines speak: UUIDs and timestamps as text (timestamps in
ISO form, `2024-05-01 12:00:00.123456+00`), the rest as they are (text and integers). On
PostgreSQL they are read in one REPEATABLE READ transaction, so that kernels writing
meanwhile cannot make a child row arrive without its parent.
"""

import sqlite3

import duckdb

from rssd_kernel.database import expected_columns, schema_sql
from rssd_kernel.engines import is_postgres
from rssd_kernel.errors import RssdError
from rssd_kernel.provenance import NoRssdTables, connect, failure, postgres_error

# Parents before children; within the exec and log tables, parent rows first.
ORDER = [
    ("device", "device_id"),
    ("orchestration_nature", "orchestration_nature_id"),
    ("orchestration_session", "orchestration_session_id"),
    ("orchestration_session_entry", "orchestration_session_entry_id"),
    ("orchestration_session_exec", "parent_exec_id NULLS FIRST, orchestration_session_exec_id"),
    ("orchestration_session_log", "parent_exec_id NULLS FIRST, orchestration_session_log_id"),
    ("orchestration_session_issue", "orchestration_session_issue_id"),
    ("orchestration_session_state", "orchestration_session_state_id"),
    ("rssd_schema_version", "version"),
]
# Columns (by their DuckDB type, see expected_columns) read as text: CAST(... AS VARCHAR)
# is the same on PostgreSQL, whose UUID and TIMESTAMPTZ columns these are too.
_TEXT_TYPES = ("UUID", "TIMESTAMP WITH TIME ZONE")


class ExportError(RssdError):
    ename = "Export Error"


def export(database: str, out: str, wait_s: float = 600.0, on_wait=None) -> dict[str, int]:
    """Copy every RSSD table of `database` into the SQLite file `out`; rows per table."""
    try:
        con = connect(database, wait_s, on_wait)
    except NoRssdTables as error:
        raise ExportError(f"{error.where} holds no RSSD tables; nothing to export.") from None
    try:
        lite = sqlite3.connect(out)
    except sqlite3.Error as error:
        con.close()
        raise ExportError(f"Cannot write {out}: {error}.") from None
    counts = {}
    try:
        lite.execute("PRAGMA foreign_keys = ON")
        existing = {
            r[0] for r in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if is_postgres(database):  # one snapshot of all the tables
            con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        with lite:
            for statement in duckdb.extract_statements(schema_sql()):
                table = next(
                    (t for t, _ in ORDER if f'CREATE TABLE "{t}"' in statement.query), None
                )
                if table and table not in existing:
                    lite.execute(statement.query)
            for table, order in ORDER:
                counts[table] = _copy(con, lite, table, order)
    except duckdb.CatalogException:
        raise ExportError(f"{database} holds no RSSD tables; nothing to export.") from None
    except postgres_error() as error:
        raise failure(database, error) from None
    except sqlite3.Error as error:
        raise ExportError(
            f"{out} could not take the RSSD rows ({error}); it was left as it was.",
            "Export into a new file, or into one written by `rssd export-rssd` before.",
        ) from None
    finally:
        con.close()
        lite.close()
    return counts


def _copy(con, lite, table: str, order: str) -> int:
    columns = expected_columns()[table]
    names = [name for name, _ in columns]
    select = ", ".join(
        f'CAST("{name}" AS VARCHAR)' if kind in _TEXT_TYPES else f'"{name}"'
        for name, kind in columns
    )
    rows = con.execute(f'SELECT {select} FROM "{table}" ORDER BY {order}').fetchall()
    key = names[0]
    updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names[1:])
    lite.executemany(
        f'INSERT INTO "{table}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
        f'VALUES ({", ".join("?" for _ in names)}) ON CONFLICT ("{key}") DO UPDATE SET {updates}',
        rows,
    )
    return len(rows)
