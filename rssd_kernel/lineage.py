"""Ingestion lineage: the files a stateful cell reads, found by DuckDB itself.

DuckDB's FileSystem log records every file its readers open (read_csv, read_parquet,
read_json, COPY ... FROM, globs expanded to the files they matched). While a stateful cell
runs, that log is on; after each statement, the files it read (and did not write) become
orchestration_session_entry rows, in the cell's own transaction.
"""

import hashlib
import os
from datetime import datetime, timezone

_FILES = """
SELECT path FROM (
    SELECT json_extract_string(message, '$.path') AS path,
           bool_or(json_extract_string(message, '$.op') = 'READ') AS read,
           bool_or(json_extract_string(message, '$.op') = 'WRITE') AS written,
           min(timestamp) AS first_seen
    FROM duckdb_logs() WHERE type = 'FileSystem' GROUP BY path)
WHERE read AND NOT written ORDER BY first_seen
"""


def start(con) -> None:
    con.execute("CALL enable_logging('FileSystem')").fetchall()
    con.execute("CALL truncate_duckdb_logs()").fetchall()


def stop(con) -> None:
    con.execute("CALL disable_logging()").fetchall()


def files_read(con, database: str) -> list[str]:
    """Paths (as DuckDB opened them) read since the last call, without the database's own."""
    own = os.path.abspath(database) if database != ":memory:" else None
    paths = [p for (p,) in con.execute(_FILES).fetchall() if p]
    con.execute("CALL truncate_duckdb_logs()").fetchall()
    return [p for p in paths if not own or not os.path.abspath(p).startswith(own)]


def describe(path: str) -> dict:
    """Resolved path, size, modification time and sha256 of a file that was read."""
    resolved = os.path.abspath(path)
    info = {"resolved_path": resolved}
    try:
        stat = os.stat(resolved)
        digest = hashlib.sha256()
        with open(resolved, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as error:
        info["error"] = str(error)
        return info
    info.update(
        size=stat.st_size,
        modified_at=datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(),
        sha256=digest.hexdigest(),
    )
    return info
