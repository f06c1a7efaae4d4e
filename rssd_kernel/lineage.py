"""Ingestion lineage: the files a stateful cell reads, found by DuckDB itself.

DuckDB's FileSystem log records every file its readers open (read_csv, read_parquet,
read_json, COPY ... FROM, globs expanded to the files they matched). While a stateful cell
runs, that log is on; after each statement, the files it read (and did not write) become
orchestration_session_entry rows, in the cell's own transaction.

A remote source (`https://...`, `s3://...`) stays a URL: os.path.abspath would make
'https://user:pw@host/x' into '/cwd/https:/user:pw@host/x', which is neither the source nor
safe to scrub. Whatever is recorded of a path goes through `recordable` (or `describe`),
which masks URL credentials and presigned-URL query tokens (see redact.py).
"""

import os
import re
from datetime import datetime, timezone

import blake3

from rssd_kernel import redact

_URL = re.compile(r"(?i)^[a-z][a-z0-9+.-]*://")
_FILE_URL = "file://"

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
    return [p for p in paths if not own or is_url(p) or not _local(p).startswith(own)]


def is_url(path: str) -> bool:
    """A remote source (scheme://...), not a local file (file:// URLs are local files)."""
    return bool(_URL.match(path)) and not path.lower().startswith(_FILE_URL)


def _local(path: str) -> str:
    if path.lower().startswith(_FILE_URL):
        path = path[len(_FILE_URL) :]
        if path.lower().startswith("localhost/"):
            path = path[len("localhost") :]
    return os.path.abspath(path)


def recordable(path: str, secrets: set[str] = frozenset()) -> str:
    """`path` as it may be recorded (ingest_src, log lines): as DuckDB opened it, URLs kept
    as URLs, with credentials masked: 'https://user:***@host/x?sig=***', and any of the
    cell's `secrets` (values found by redact.secrets_in) too."""
    return redact.scrub(path, secrets)


DIGEST = "blake3"  # recorded beside each digest
_BLOCK = 64 << 20  # bytes hashed between two looks at the stop button


def file_digest(path: str, size: int, check_stop=None) -> str:
    """The BLAKE3 digest of a file, hex. BLAKE3 is a cryptographic hash that uses every core
    (blake3's AUTO threads): on a file DuckDB just read, it takes a small fraction of the
    time DuckDB took, where sha256 took about a tenth of an ingest. Read in 64 MB blocks (a
    file that changes meanwhile is hashed as read, never a crash), with a look at the stop
    button between blocks."""
    digest = blake3.blake3(max_threads=blake3.blake3.AUTO)
    buffer = bytearray(min(_BLOCK, max(size, 1)))
    view = memoryview(buffer)
    with open(path, "rb") as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
            if check_stop is not None:
                check_stop()
    return digest.hexdigest()


def describe(path: str, secrets: set[str] = frozenset(), check_stop=None) -> dict:
    """What to record of a source that was read: a file's resolved path, size, modification
    time and BLAKE3 digest (`digest`, named by `digest_algorithm`); a URL as itself (its
    content is not fetched again to hash it). Every string is already scrubbed (see
    recordable). `check_stop` is called between blocks of a large file and raises to stop
    hashing (the stop button)."""
    if is_url(path):
        return {"resolved_path": recordable(path, secrets), "source_kind": "url"}
    resolved = _local(path)
    info = {"resolved_path": recordable(resolved, secrets), "source_kind": "file"}
    try:
        stat = os.stat(resolved)
        digest = file_digest(resolved, stat.st_size, check_stop)
    except OSError as error:
        info["error"] = recordable(str(error), secrets)
        return info
    info.update(
        size=stat.st_size,
        modified_at=datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(),
        digest=digest,
        digest_algorithm=DIGEST,
    )
    return info
