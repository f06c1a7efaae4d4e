"""Ingestion lineage: the files a stateful cell reads, found by DuckDB itself.

DuckDB's FileSystem log records every file its readers open (read_csv, read_parquet,
read_json, COPY ... FROM, globs expanded to the files they matched). While a stateful cell
runs, that log is on; after each statement, the files it read (and did not write) become
orchestration_session_entry rows, in the cell's own transaction.

Hashing a large file takes a tenth of the time DuckDB takes to ingest it. So the files a
statement names (string constants that are local files) are hashed while it runs, by a thread
at the lowest priority (it uses the CPU DuckDB leaves idle: DuckDB's readers keep about 1.8 of
2 cores busy here); what DuckDB's log then says was read is what is recorded, and a digest made
beforehand is used only if the file is unchanged since (size, modification time, inode).

A remote source (`https://...`, `s3://...`) stays a URL: os.path.abspath would make
'https://user:pw@host/x' into '/cwd/https:/user:pw@host/x', which is neither the source nor
safe to scrub. Whatever is recorded of a path goes through `recordable` (or `describe`),
which masks URL credentials and presigned-URL query tokens (see redact.py).
"""

import os
import re
import stat as stat_mode
import sys
import threading
from datetime import datetime, timezone

import blake3

from rssd_kernel import redact
from rssd_kernel.classify import tokens

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
_BLOCK = 256 << 10  # bytes hashed between two looks at the stop button (or a hand-over)
AHEAD_MIN = 1 << 20  # files smaller than this are hashed after the statement, not during it


class _Hashing:
    """A file being hashed: where it stands (a hasher and how far it read), resumable. Its
    `signature` is the one of the file it first opened; opened again (a hand-over) and
    found different, it is `changed` and its digest must not be used."""

    def __init__(self, path: str):
        self.path = path
        self.signature: tuple | None = None
        self.hasher = blake3.blake3()  # one thread: the reads, not the hash, bound it here
        self.offset = 0
        self.done = False
        self.changed = False

    def advance(self, should_stop) -> None:
        """Read and hash the rest of the file, block by block, until `should_stop()` (called
        between blocks; it may also raise, as the stop button does) says to stop."""
        buffer = bytearray(_BLOCK)
        view = memoryview(buffer)
        with open(self.path, "rb") as handle:
            now = _signature(os.fstat(handle.fileno()))
            if self.signature is None:
                self.signature = now
            elif now != self.signature:  # replaced or rewritten since: not the same file
                self.changed = True
                return
            handle.seek(self.offset)
            while not self.done:
                count = handle.readinto(buffer)
                if not count:
                    self.done = True
                    break
                self.hasher.update(view[:count])
                self.offset += count
                if should_stop():
                    return


def _signature(stat: os.stat_result) -> tuple:
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_dev)


def file_digest(path: str, check_stop=None) -> str:
    """The BLAKE3 digest of a file, hex, read in blocks (a file that changes meanwhile is
    hashed as read, never a crash), with a look at the stop button between blocks."""
    hashing = _Hashing(path)
    hashing.advance(lambda: bool(check_stop and check_stop()))
    return hashing.hasher.hexdigest()


_NAMED_MAX_TEXT = 64 << 10  # a longer statement (an INSERT of many values) is not scanned
_NAMED_MAX_FILES = 16  # candidate strings looked up on disk, at most, per statement


def files_named(query: str, minimum: int = AHEAD_MIN) -> list[str]:
    """The resolved paths of the local regular files of at least `minimum` bytes that the
    statement's string constants name (DuckDB's tokens): the files it will likely read.
    Bounded, as it runs before the statement: a statement over 64 KB is not scanned, and
    only the first 16 strings that look like paths (a '.' or '/' in them) are looked up."""
    if len(query) > _NAMED_MAX_TEXT:
        return []
    found, looked_up = [], 0
    for text, kind in tokens(query):
        if kind != "string_const" or len(text) < 2 or text[0] != "'" or text[-1] != "'":
            continue
        text = text[1:-1].replace("''", "'")
        if not ("." in text or "/" in text) or len(text) > 4096 or is_url(text) or "\0" in text:
            continue
        looked_up += 1
        if looked_up > _NAMED_MAX_FILES:
            break
        path = _local(text)
        try:
            stat = os.stat(path)
        except (OSError, ValueError):
            continue
        if stat_mode.S_ISREG(stat.st_mode) and stat.st_size >= minimum and path not in found:
            found.append(path)
    return found


class Ahead:
    """Digests of the files a statement is expected to read, made while it runs by a thread
    at the lowest priority (nice 19: it takes the CPU the statement leaves idle, and little
    of it otherwise). `digest` hands a file over to the caller's thread when the statement is
    done: what is left of it is hashed there, at normal priority, so a busy machine can slow
    the thread down but never leave lineage waiting on it."""

    def __init__(self, paths: list[str]):
        self._files: dict[str, _Hashing] = {}
        self._handed_over = threading.Event()
        self._paths = paths
        self._thread = threading.Thread(target=self._run, name="rssd-lineage", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if sys.platform == "linux":  # where a thread's id names the thread alone
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            except OSError:
                pass  # it still works, at normal priority
        for path in self._paths:
            if self._handed_over.is_set():
                return
            hashing = _Hashing(path)
            self._files[path] = hashing
            try:
                hashing.advance(self._handed_over.is_set)
            except OSError:
                self._files.pop(path, None)

    def digest(self, path: str, stat: os.stat_result, check_stop=None) -> str | None:
        """The digest of `path` if it was being hashed and is unchanged since (its `stat`
        now), finished in this thread; None: hash it from the start."""
        self.stop(check_stop)
        hashing = self._files.get(path)
        if hashing is None or hashing.signature != _signature(stat):
            return None
        try:
            hashing.advance(lambda: bool(check_stop and check_stop()))
        except OSError:
            return None
        return hashing.hasher.hexdigest() if hashing.done and not hashing.changed else None

    def stop(self, check_stop=None) -> None:
        """Stop the thread (it ends within one block) and wait for it, looking at the stop
        button meanwhile."""
        self._handed_over.set()
        while self._thread.is_alive():
            self._thread.join(0.05)
            if check_stop is not None:
                check_stop()


def describe(path: str, secrets: set[str] = frozenset(), check_stop=None, ahead=None) -> dict:
    """What to record of a source that was read: a file's resolved path, size, modification
    time and BLAKE3 digest (`digest`, named by `digest_algorithm`); a URL as itself (its
    content is not fetched again to hash it). Every string is already scrubbed (see
    recordable). `check_stop` is called between blocks of a large file and raises to stop
    hashing (the stop button). `ahead`, an Ahead, may hold the digest begun while the
    statement ran."""
    if is_url(path):
        return {"resolved_path": recordable(path, secrets), "source_kind": "url"}
    resolved = _local(path)
    info = {"resolved_path": recordable(resolved, secrets), "source_kind": "file"}
    try:
        stat = os.stat(resolved)
        digest = ahead.digest(resolved, stat, check_stop) if ahead is not None else None
        if digest is None:
            digest = file_digest(resolved, check_stop)
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
