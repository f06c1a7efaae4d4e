"""The exec journal: how execution records reach the RSSD without slowing every cell.

Writing a cell's exec, statement, log and issue rows into DuckDB costs several
milliseconds (mostly the commit), several times what the cell itself takes. So the runner
hands the rows, already redacted, to a `Writer`: it appends them as one record to a journal
file beside the database before the kernel replies, and a background thread writes them
into the RSSD, many cells per transaction, then empties the journal once everything in it
is committed.

Each process has a journal of its own (`<database>.rssd-journal.p<pid>-<random>`: no two
processes append to one file), and holds an exclusive flock on it for its whole life. That
lock, not the PID (which the system can reuse), tells a live owner: whoever takes the
database recovers every journal whose lock it can take, that is, those of processes that
died, and never one whose process lives.

A record is a header line (`RSSD-JOURNAL-1 <length> <crc32>`) and the batch as one line of
JSON, preceded by an empty line so that a record torn by a crash or a full disk cannot hide
the header of the next one: whoever reads the journal skips a bad record and goes on. The
record is written whole (write(2) may write less than asked) to a file opened O_APPEND,
without fsync: it is in the operating system's page cache as soon as the call returns, so
it survives the kernel being killed (kill -9), though not the machine losing power. If the
append fails, the batch stays in memory for the writer and `take_warning()` says so.

Whoever takes the database next first writes what a crashed kernel left in its journal
(`recover`), skipping rows that had already arrived. Records it must not write,
because their session is not in this database (the file was deleted or replaced after the
crash) or because they are damaged, are never dropped: the journal is moved aside with a
note saying where and what to do. Journals of rssd-kernel 0.1 (plain JSON lines) are read too.

A stateful cell that read files also leaves batches of lineage digests to make (see
digests.py): the writer makes them outside any transaction and fills them in, and recovery
does the same for a process that died first (or hands them to the live writer: `defer`).

The writer keeps at most MAX_PENDING batches (MAX_PENDING_BYTES) in memory; past that, they
are only in the journal and the writer reads them back from it, so a database that cannot be
written for a long time costs disk, not memory. A failed write is reported by
`take_error()` and retried, after a growing pause (RETRY_MIN to RETRY_MAX seconds) or as
soon as the error is taken. Reading the RSSD from a cell waits for the writer first (with a
time limit), so a cell sees every earlier cell's records.
"""

import fcntl
import glob
import json
import os
import re
import secrets
import time
import zlib
from dataclasses import dataclass, field

import orjson

from rssd_kernel import digests
from rssd_kernel.digests import DIGESTS

SUFFIX = ".rssd-journal"
MAGIC = b"RSSD-JOURNAL-1"
PAUSE = 0.05  # seconds without a new cell before the writer writes
MAX_AGE = 0.5  # seconds a record may wait at most
MAX_PENDING = 1000  # batches kept in memory at most; the journal holds the rest
MAX_PENDING_BYTES = 64 * 1024 * 1024
RETRY_MIN, RETRY_MAX = 1.0, 30.0  # seconds before a failed write is retried (doubling)
TABLES = ("orchestration_session_exec", "orchestration_session_log", "orchestration_session_issue")
# Records about the session, not batches of rows: a process journals its session's start
# first (so recovery can write the session of a process that never held the file), and
# notes when the session's rows are in the file it held (records of such a session whose
# session is missing belong to another file: set aside, never replayed into this one).
SESSION_START, SESSION_ATTACHED = "session_start", "session_attached"
_CHUNK = 500


def journal_path(database: str) -> str | None:
    """The journal rssd-kernel 0.1 shared between the processes of one database (read by
    recovery only)."""
    return None if database == ":memory:" else os.path.abspath(database) + SUFFIX


def own_journal_path(database: str) -> str | None:
    """A new journal for this process: no other process ever appends to it."""
    if database == ":memory:":
        return None
    return f"{os.path.abspath(database)}{SUFFIX}.p{os.getpid()}-{secrets.token_hex(4)}"


_LIVE_NAME = re.compile(re.escape(SUFFIX) + r"(\.p\d+-[0-9a-f]+)?$")


def journals(database: str) -> list[str]:
    """Every journal beside `database` that may hold records (not the ones set aside)."""
    base = os.path.abspath(database)
    found = glob.glob(glob.escape(base + SUFFIX) + "*")
    return sorted(p for p in found if _LIVE_NAME.search(p[len(base) :]))


def dumps(value) -> bytes:
    """`value` as JSON in UTF-8, with no newline outside its strings (which escape theirs).
    orjson (a fifth of json's time on a cell's records); json where orjson refuses the value
    (an integer past 64 bits, a lone surrogate in a file name). Objects neither knows are
    written as their str(), dates and times too (as json's default=str would)."""
    try:
        return orjson.dumps(value, default=str, option=_ORJSON)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, default=str).encode("ascii")


_ORJSON = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def frame(batch: dict) -> bytes:
    """A batch as a journal record: empty line, header line, JSON line (see dumps: the
    payload is one line)."""
    payload = dumps(batch)
    return b"\n%s %d %08x\n%s\n" % (MAGIC, len(payload), zlib.crc32(payload), payload)


def read_records(handle):
    """Yield (batch, size) for each record of a journal opened in binary mode; batch is None
    for a record that is torn or corrupt. Lines without a header are the 0.1 format."""
    line = handle.readline()
    while line:
        following = handle.readline()
        if line.startswith(MAGIC):
            # A header torn by a crash is followed directly by the next record's header.
            payload = b"" if following.startswith(MAGIC) else following
            yield _checked(line, payload), len(line) + len(payload)
            if payload:
                following = handle.readline()
        elif line.strip():
            yield _batch(line), len(line)
        line = following


def _checked(header: bytes, payload: bytes) -> dict | None:
    fields = header.split()
    payload = payload.rstrip(b"\n")
    if len(fields) != 3 or fields[1] != b"%d" % len(payload):
        return None
    return _batch(payload) if fields[2] == b"%08x" % zlib.crc32(payload) else None


def _batch(text: bytes) -> dict | None:
    try:
        batch = json.loads(text)
    except ValueError:
        return None
    if isinstance(batch, dict) and isinstance(batch.get(SESSION_START), dict):
        return batch if isinstance(batch[SESSION_START].get("session_id"), str) else None
    if isinstance(batch, dict) and isinstance(batch.get(SESSION_ATTACHED), str):
        return batch
    if isinstance(batch, dict) and isinstance(batch.get(DIGESTS), list):
        return batch if all(digests.is_request(r) for r in batch[DIGESTS]) else None
    if not isinstance(batch, dict) or not all(isinstance(batch.get(t), list) for t in TABLES):
        return None
    execs = batch[TABLES[0]]
    if not execs or not all(
        isinstance(row, list)
        and len(row) > 4
        and isinstance(row[0], str)
        and isinstance(row[2], str)
        for row in execs
    ):
        return None
    return batch


def insert_rows(con, table: str, rows: list[list]) -> None:
    """Insert rows with multi-row VALUES statements (DuckDB's executemany runs one
    statement per row)."""
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        row = "(" + ", ".join("?" for _ in chunk[0]) + ")"
        values = [value for item in chunk for value in item]
        con.execute(
            f"INSERT INTO {table} VALUES {', '.join(row for _ in chunk)}", values
        ).fetchall()


def write_batches(con, batches: list[dict]) -> None:
    """Write record batches (each {table: rows}) in one transaction. Foreign keys are
    checked per statement, so parent rows (no parent id) go in before their children."""
    execs = [r for b in batches for r in b.get(TABLES[0], ())]
    logs = [r for b in batches for r in b.get(TABLES[1], ())]
    issues = [r for b in batches for r in b.get(TABLES[2], ())]
    con.begin()
    try:
        for table, rows, parent in ((TABLES[0], execs, 4), (TABLES[1], logs, 2)):
            insert_rows(con, table, [r for r in rows if r[parent] is None])
            insert_rows(con, table, [r for r in rows if r[parent] is not None])
        insert_rows(con, TABLES[2], issues)
        for request in (r for b in batches for r in b.get(DIGESTS, ())):
            digests.fill_in(con, request)
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _existing(con, table: str, column: str, values: list) -> set:
    sql = f"SELECT {column} FROM {table} WHERE {column} IN (SELECT unnest(?::VARCHAR[]))"
    return {row[0] for row in con.execute(sql, [sorted(set(values))]).fetchall()}


def _absent(con, batches: list[dict]) -> list[dict]:
    """The batches whose cell is not in the RSSD yet, and the digest batches (filling a
    digest in is done once whatever the batch: see digests.fill_in)."""
    ids = [b[TABLES[0]][0][0] for b in batches if TABLES[0] in b]
    present = _existing(con, TABLES[0], "orchestration_session_exec_id", ids) if ids else ()
    return [b for b in batches if TABLES[0] not in b or b[TABLES[0]][0][0] not in present]


def _write_chunk(con, batches: list[dict], starts=None, attached=(), defer=None) -> tuple[int, int]:
    """Write the batches that are missing and whose sessions are in this database (every
    exec row names its session at index 2); return (written, orphaned). A session that is
    missing but whose start is in `starts` and that never held a file (not in `attached`)
    is written first."""
    sessions = [row[2] for b in batches for row in b.get(TABLES[0], ())]
    known = _existing(con, "orchestration_session", "orchestration_session_id", sessions)
    never_held = [s for s in dict.fromkeys(sessions) if s not in known and s in (starts or {})
                  and s not in attached]  # fmt: skip
    if never_held:
        from rssd_kernel.recorder import insert_session  # the recorder writes through us

        con.begin()
        try:
            for session in never_held:
                insert_session(con, starts[session])
            con.commit()
        except BaseException:
            con.rollback()
            raise
        known |= set(never_held)
    ours = [b for b in batches if all(row[2] in known for row in b.get(TABLES[0], ()))]
    missing = _absent(con, ours) if ours else []
    if missing and defer is not None:  # digests still to make go to the caller's writer
        later = [b for b in missing if DIGESTS in b]
        digests.make(later, con, only_filter=True)
        for request in (r for b in later for r in b[DIGESTS] if "done" not in r):
            if defer({DIGESTS: [dict(request)]}):  # (a copy) in its journal: made there
                request["done"] = None
        missing = [b for b in missing if DIGESTS not in b or not digests.made(b)]
    rows = [b for b in missing if DIGESTS not in b]
    if rows:
        write_batches(con, rows)
    for batch in (b for b in missing if DIGESTS in b):  # each written once made: a stop
        digests.make([batch], con)  # (Ctrl-C) mid-way keeps the digests made before it
        write_batches(con, [batch])
    return len(rows), len(batches) - len(ours)


def replay(con, path: str, with_digests: bool = True, defer=None) -> tuple[int, int, int]:
    """Write what the journal at `path` holds and the RSSD lacks, a bounded chunk at a time
    (lineage digests too, unless not `with_digests`; with `defer`, a function, each digest still
    to make is handed to it as a batch instead: a live writer's submit, which journals it
    and makes it in the background); return how many cells were (written, orphaned: their
    session is not in this database, damaged: unreadable). Raises OSError or duckdb.Error
    when it cannot read or write."""
    written = orphaned = damaged = 0
    starts, attached = {}, set()
    with open(path, "rb") as handle:
        for batch, _ in read_records(handle):  # the session records first (a small pass)
            if batch and SESSION_START in batch:
                starts[batch[SESSION_START]["session_id"]] = batch[SESSION_START]
            elif batch and SESSION_ATTACHED in batch:
                attached.add(batch[SESSION_ATTACHED])
    with open(path, "rb") as handle:
        for chunk, bad in _chunks(read_records(handle)):
            chunk = [b for b in chunk if TABLES[0] in b or (with_digests and DIGESTS in b)]
            done, foreign = _write_chunk(con, chunk, starts, attached, defer) if chunk else (0, 0)
            written, orphaned, damaged = written + done, orphaned + foreign, damaged + bad
    return written, orphaned, damaged


def _chunks(records):
    """Yield (batches, how many records were damaged) in chunks of bounded count and size."""
    chunk, size, bad = [], 0, 0
    for batch, length in records:
        if batch is None:
            bad += 1
            continue
        chunk.append(batch)
        size += length
        if len(chunk) >= MAX_PENDING or size >= MAX_PENDING_BYTES:
            yield chunk, bad
            chunk, size, bad = [], 0, 0
    yield chunk, bad


@dataclass
class Recovery:
    count: int = 0  # cells written into the RSSD
    notes: list[str] = field(default_factory=list)  # what the user should know, as sentences


def recover(con, database: str, own: str | None = None, defer=None) -> Recovery:
    """Recover every journal beside `database` whose process has ended (its lock can be
    taken), except `own`; lineage digests still to make go to `defer` if given (see
    replay). Never raises."""
    total = Recovery()
    for path in journals(database):
        if path == own:
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # gone meanwhile: recovered by another process
        except OSError:  # not a file we can open: set it aside, with a note
            found = recover_file(con, database, path, defer)
            total.count, total.notes = total.count + found.count, total.notes + found.notes
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its process lives and writes it itself
            found = recover_file(con, database, path, defer)
            total.count += found.count
            total.notes += found.notes
            if (
                os.path.exists(path)
                and os.path.getsize(path) == 0
                and path != journal_path(database)
            ):
                os.unlink(path)
        finally:
            os.close(fd)
    return total


def recover_file(con, database: str, path: str, defer=None) -> Recovery:
    """Write what the journal at `path` (left by an ended process) holds and the RSSD lacks,
    then empty it; if some of it could not be written (sessions of another database,
    damaged records, an error), move it aside instead and say so in `notes`. Never raises."""
    try:
        if not path or os.path.getsize(path) == 0:
            return Recovery()
    except OSError:
        return Recovery()  # no journal
    try:
        written, orphaned, damaged = replay(con, path, defer=defer)
    except Exception as error:  # unreadable, or the database refuses the rows
        why = f"could not be recovered into {database} ({error})"
        advice = f"To try again, rename it back to {path} and open the database with rssd."
        return Recovery(0, [_set_aside(path, "unrecovered", why, advice)])
    if not orphaned and not damaged:
        try:
            os.truncate(path, 0)
        except OSError:
            pass  # what is in it is in the RSSD: the next recovery skips it
        return Recovery(written)
    held = []
    if orphaned:
        held.append(
            f"{orphaned} cell record(s) of sessions that are not in {database} (was the "
            "database file deleted or replaced after a kernel crashed?)"
        )
    if damaged:
        held.append(f"{damaged} damaged record(s) (torn by a crash or a full disk, say)")
    why = "held " + " and ".join(held) + ", which were not written into the database"
    if written:
        why += f"; {written} other cell record(s) were recovered"
    advice = (
        "If the database those records belong to still exists, rename the file to that "
        "database's path followed by .rssd-journal and open that database with rssd; "
        "otherwise the file can be deleted."
        if orphaned
        else "The damaged records cannot be recovered; the file is kept for inspection and "
        "can be deleted."
    )
    return Recovery(written, [_set_aside(path, "orphaned" if orphaned else "damaged", why, advice)])


def _set_aside(path: str, reason: str, why: str, advice: str) -> str:
    """Rename the journal to a new file beside it; return the note that tells the user."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, number = f"{path}.{reason}-{stamp}", 1
    while os.path.exists(target):
        number += 1
        target = f"{path}.{reason}-{stamp}-{number}"
    try:
        os.rename(path, target)
    except OSError as error:
        return (
            f"rssd: the journal {path} {why}. It could not be moved aside ({error}), so it "
            f"stays where it is and nothing in it is lost. {advice}"
        )
    return f"rssd: the journal {path} {why}. It was moved to {target}. {advice}"
