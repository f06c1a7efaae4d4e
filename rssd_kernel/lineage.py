"""Ingestion lineage: the files a stateful cell reads, found by DuckDB itself.

DuckDB's FileSystem log records every file its readers open (read_csv, read_parquet,
read_json, COPY ... FROM, globs expanded to the files they matched). While a stateful cell
runs, that log is on; after each statement, the files it read (and did not write) become
orchestration_session_entry rows, in the cell's own transaction.

Hashing a file is left until after the cell: hashing 214 MB took a tenth of the ingest's
time, and a thread that hashed while DuckDB read still stretched the ingest by 5 to 8%, on
cores DuckDB keeps busy. So the entry is written with the file's size, modification time and
`digest_pending`, and a request for its digest (its path and signature: size, modification
time, inode, device) goes to the record writer with the cell's records, journaled as they are.
The writer hashes the file between cells and fills the digest in (`complete`); a file that
changed meanwhile gets a `digest_error` instead, never a digest of other content. A cell that
reads the RSSD waits for it, and a crashed kernel's journal has it made by whoever takes the
database next (see journal.py).

A remote source (`https://...`, `s3://...`) stays a URL: os.path.abspath would make
'https://user:pw@host/x' into '/cwd/https:/user:pw@host/x', which is neither the source nor
safe to scrub. Whatever is recorded of a path goes through `recordable` (or `describe`),
which masks URL credentials and presigned-URL query tokens (see redact.py).
"""

import os
import re
import stat as stat_mode
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
_BLOCK = 1 << 20  # bytes hashed between two looks at the stop button


def _signature(stat: os.stat_result) -> list:
    """What tells whether a file is still the one that was read: a file replaced or
    rewritten since has another size, modification time or inode."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev]


def file_digest(path: str, check_stop=None, signature: list | None = None) -> str | None:
    """The BLAKE3 digest of a file, hex, read in blocks, with a look at the stop button
    (`check_stop`, which raises) between blocks. With `signature` (see _signature): None if
    the file is no longer the one it describes, before or after hashing."""
    hasher = blake3.blake3()
    # O_NONBLOCK: a FIFO put where the file was must not block the open (it fails the check)
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        opened = os.fstat(handle.fileno())
        if not stat_mode.S_ISREG(opened.st_mode):
            raise OSError(f"{path} is not a regular file")
        if signature is not None and _signature(opened) != signature:
            return None
        for block in iter(lambda: handle.read(_BLOCK), b""):
            hasher.update(block)
            if check_stop is not None:
                check_stop()
        if signature is not None and _signature(os.fstat(handle.fileno())) != signature:
            return None
    return hasher.hexdigest()


def describe(path: str, secrets: set[str] = frozenset(), check_stop=None) -> tuple[dict, dict]:
    """What to record of a source that was read, and what is left to do: (elaboration,
    digest to make later, or None).

    A URL is recorded as itself (its content is not fetched again to hash it). A local file:
    its resolved path, size and modification time, and its BLAKE3 digest (`digest`, named
    by `digest_algorithm`). The digest is made after the cell, not in it (see `complete`):
    the elaboration says `digest_pending` and the second value is the request, which holds
    the file's real path. A file whose path holds a credential is hashed now instead
    (`check_stop` may stop that), so that no unscrubbed path is ever journaled. Every string
    recorded is already scrubbed (see recordable)."""
    if is_url(path):
        return {"resolved_path": recordable(path, secrets), "source_kind": "url"}, None
    resolved = _local(path)
    shown = recordable(resolved, secrets)
    info = {"resolved_path": shown, "source_kind": "file"}
    try:
        stat = os.stat(resolved)
        regular = stat_mode.S_ISREG(stat.st_mode)  # a FIFO or a device: reading it again hangs
        digest = file_digest(resolved, check_stop) if regular and shown != resolved else None
    except OSError as error:
        info["error"] = recordable(str(error), secrets)
        return info, None
    info.update(
        size=stat.st_size,
        modified_at=datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(),
        digest=digest,
        digest_algorithm=DIGEST,
    )
    if not regular:
        info["digest_error"] = NOT_REGULAR
    if digest is not None or not regular:
        return info, None
    info["digest_pending"] = True
    return info, {"path": resolved, "signature": _signature(stat)}


CHANGED = "the file changed after the cell read it, before its digest was made"
NOT_REGULAR = "not a regular file (a FIFO or a device): it cannot be read again to hash it"


def complete(request: dict) -> dict:
    """The elaboration of a lineage entry whose digest was left for later (see describe),
    with the digest made now: `request` holds the entry's id and elaboration, and the file's
    path and signature when the cell read it. A file that changed or went away since gets
    no digest but a `digest_error` that says why."""
    done = _without_pending(request)
    try:
        digest = file_digest(request["path"], signature=request["signature"])
    except OSError as error:
        why = f"the file could not be read after the cell read it ({error})"
        digest, done["digest_error"] = None, recordable(why)
    else:
        if digest is None:
            done["digest_error"] = CHANGED
    done["digest"] = digest
    return done


def failed(request: dict, error: Exception) -> dict:
    """The elaboration of an entry whose digest could not be made at all (a bug of ours):
    no digest, and why."""
    done = _without_pending(request)
    done.update(digest=None, digest_error=f"rssd could not make the digest: {error!r}")
    return done


def _without_pending(request: dict) -> dict:
    return {k: v for k, v in request["elaboration"].items() if k != "digest_pending"}
