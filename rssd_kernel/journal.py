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

The writer keeps at most MAX_PENDING batches (MAX_PENDING_BYTES) in memory; past that, they
are only in the journal and the writer reads them back from it, so a database that cannot be
written for a long time costs disk, not memory. A failed write is reported by
`take_error()` and retried, after a growing pause (RETRY_MIN to RETRY_MAX seconds) or as
soon as the error is taken. Reading the RSSD from a cell waits for the writer first (with a
time limit), so a cell sees every earlier cell's records.
"""

import contextlib
import fcntl
import glob
import json
import os
import re
import secrets
import threading
import time
import zlib
from dataclasses import dataclass, field

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


def frame(batch: dict) -> bytes:
    """A batch as a journal record: empty line, header line, JSON line. json.dumps escapes
    newlines and non-ASCII characters, so the payload is one ASCII line."""
    payload = json.dumps(batch, default=str).encode("ascii")
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
    execs = [r for b in batches for r in b["orchestration_session_exec"]]
    logs = [r for b in batches for r in b["orchestration_session_log"]]
    issues = [r for b in batches for r in b["orchestration_session_issue"]]
    con.begin()
    try:
        for table, rows, parent in ((TABLES[0], execs, 4), (TABLES[1], logs, 2)):
            insert_rows(con, table, [r for r in rows if r[parent] is None])
            insert_rows(con, table, [r for r in rows if r[parent] is not None])
        insert_rows(con, TABLES[2], issues)
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _existing(con, table: str, column: str, values: list) -> set:
    sql = f"SELECT {column} FROM {table} WHERE {column} IN (SELECT unnest(?::VARCHAR[]))"
    return {row[0] for row in con.execute(sql, [sorted(set(values))]).fetchall()}


def _absent(con, batches: list[dict]) -> list[dict]:
    """The batches whose cell is not in the RSSD yet."""
    ids = [b[TABLES[0]][0][0] for b in batches]
    present = _existing(con, TABLES[0], "orchestration_session_exec_id", ids)
    return [b for b in batches if b[TABLES[0]][0][0] not in present]


def _write_chunk(con, batches: list[dict], starts=None, attached=()) -> tuple[int, int]:
    """Write the batches that are missing and whose sessions are in this database (every
    exec row names its session at index 2); return (written, orphaned). A session that is
    missing but whose start is in `starts` and that never held a file (not in `attached`)
    is written first."""
    sessions = [row[2] for b in batches for row in b[TABLES[0]]]
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
    ours = [b for b in batches if all(row[2] in known for row in b[TABLES[0]])]
    missing = _absent(con, ours) if ours else []
    if missing:
        write_batches(con, missing)
    return len(missing), len(batches) - len(ours)


def replay(con, path: str) -> tuple[int, int, int]:
    """Write what the journal at `path` holds and the RSSD lacks, a bounded chunk at a time;
    return how many cells were (written, orphaned: their session is not in this database,
    damaged: unreadable). Raises OSError or duckdb.Error when it cannot read or write."""
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
            chunk = [b for b in chunk if TABLES[0] in b]
            done, foreign = _write_chunk(con, chunk, starts, attached) if chunk else (0, 0)
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


def recover(con, database: str, own: str | None = None) -> Recovery:
    """Recover every journal beside `database` whose process has ended (its lock can be
    taken), except `own`. Never raises."""
    total = Recovery()
    for path in journals(database):
        if path == own:
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue  # gone meanwhile: recovered by another process
        except OSError:  # not a file we can open: set it aside, with a note
            found = recover_file(con, database, path)
            total.count, total.notes = total.count + found.count, total.notes + found.notes
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its process lives and writes it itself
            found = recover_file(con, database, path)
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


def recover_file(con, database: str, path: str) -> Recovery:
    """Write what the journal at `path` (left by an ended process) holds and the RSSD lacks,
    then empty it; if some of it could not be written (sessions of another database,
    damaged records, an error), move it aside instead and say so in `notes`. Never raises."""
    try:
        if not path or os.path.getsize(path) == 0:
            return Recovery()
    except OSError:
        return Recovery()  # no journal
    try:
        written, orphaned, damaged = replay(con, path)
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


def _no_lease(**_):
    return contextlib.nullcontext()


class Writer:
    """Journals record batches and writes them into the RSSD from a background thread."""

    def __init__(self, con, database: str, hold=None):
        # `con` may be a function that makes the connection: called by the writer thread,
        # holding the file, when it first writes.
        self._connect = con if callable(con) else None
        self.con = None if callable(con) else con
        self.hold = hold or _no_lease  # takes the database file while writing (lease.py)
        self.path = own_journal_path(database)
        self.fd: int | None = None
        self.warning: str | None = None
        self.keep = False  # the journal held records before we opened it: never truncate it
        if self.path:
            try:
                # Made and locked under a name recovery does not look at, then renamed: a
                # journal is never seen unlocked while its process lives.
                making = self.path + ".new"
                self.fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                fcntl.flock(self.fd, fcntl.LOCK_EX)  # alive: nobody else recovers it
                os.rename(making, self.path)
                self.keep = os.fstat(self.fd).st_size > 0
            except OSError as error:
                self.warning = self._lost_warning(error)
        self.pending: list[tuple[dict, int, bool]] = []  # (batch, size, in the journal)
        self.pending_bytes = 0
        self.spilled = False  # batches are in the journal only: read them back from it
        self.spills = 0
        self.last_submit = 0.0
        self.urgent = False  # someone waits in flush(): write now
        self.busy = False
        self.error: Exception | None = None
        self.retry_at = 0.0
        self.delay = RETRY_MIN
        self.closed = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="rssd-writer", daemon=True)
        self.thread.start()

    def _lost_warning(self, error: OSError) -> str:
        return (
            f"rssd: the journal {self.path} cannot be written ({error}); records are kept in "
            "memory until they are in the database, so a crash of the kernel before then "
            "would lose them."
        )

    def submit(self, batch: dict) -> None:
        """Journal the batch (durable against a crash of this process), then queue it."""
        record = frame(batch)
        with self.cond:
            idle = not self.pending and not self.spilled
            journaled = self._append(record)
            full = (
                len(self.pending) >= MAX_PENDING
                or self.pending_bytes + len(record) > MAX_PENDING_BYTES
            )
            if journaled and (self.spilled or full):
                self.spilled, self.spills = True, self.spills + 1
            else:  # one that is not in the journal stays in memory, whatever the bound
                self.pending.append((batch, len(record), journaled))
                self.pending_bytes += len(record)
            self.last_submit = time.monotonic()
            if idle:
                # Only an idle writer needs waking; one waiting for a pause between cells
                # looks at last_submit when its wait ends. (A wake-up per cell would take
                # the GIL from the cell's reply.)
                self.cond.notify_all()

    def _append(self, record: bytes) -> bool:
        """Write the whole record to the journal (write(2) may write less than asked)."""
        if self.fd is None:
            return False
        view = memoryview(record)
        try:
            while view:
                written = os.write(self.fd, view)
                if written <= 0:
                    raise OSError("the journal took no bytes")
                view = view[written:]
        except OSError as error:
            self.warning = self._lost_warning(error)
            return False
        return True

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait at most `timeout` seconds until everything submitted is in the RSSD; True if
        it is, False on timeout or when a write failed (see take_error)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            self.urgent = True
            self.cond.notify_all()
            while (self.pending or self.spilled or self.busy) and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return not (self.pending or self.spilled or self.busy)

    def note(self, record: dict) -> None:
        """Append a session record (not rows) to the journal only."""
        with self.cond:
            self._append(frame(record))

    def overloaded(self) -> bool:
        """Whether MAX_PENDING records wait in memory only (neither the journal nor the
        database could take them): the runner then refuses cells until they can."""
        with self.cond:
            return sum(not journaled for _, _, journaled in self.pending) >= MAX_PENDING

    def has_work(self) -> bool:
        """Whether records wait to be written (the file must not be let go before)."""
        with self.cond:
            return bool(self.pending or self.spilled or self.busy)

    def hurry(self) -> None:
        """Write what is pending now, without waiting for a pause between cells."""
        with self.cond:
            self.urgent = True
            self.cond.notify_all()

    def take_error(self) -> Exception | None:
        """The error of the last failed write, if it has not been retried successfully yet;
        taking it makes the writer retry now."""
        with self.cond:
            error, self.error = self.error, None
            if error is not None:
                self.retry_at = 0.0
                self.cond.notify_all()
            return error

    def take_warning(self) -> str | None:
        """A sentence to show the user when the journal could not be written, once."""
        with self.cond:
            warning, self.warning = self.warning, None
            return warning

    def _wait_for_work(self) -> bool:
        """Holding the lock, wait until something is due to be written; False: stop."""
        while True:
            work = self.pending or self.spilled
            if self.closed and (not work or self.error is not None):
                return False
            delay = self.retry_at - time.monotonic()
            if work and delay <= 0:
                return True
            self.cond.wait(delay if work else None)

    def _loop(self) -> None:
        while True:
            with self.cond:
                if not self._wait_for_work():
                    return
                # Wait for a pause between cells (or at most MAX_AGE) before writing, so the
                # write neither competes with the reply of the cell that just ran nor costs a
                # commit per cell when cells come back to back.
                first = time.monotonic()
                while not self.urgent and not self.closed:
                    remaining = min(self.last_submit + PAUSE, first + MAX_AGE) - time.monotonic()
                    if remaining <= 0:
                        break
                    self.cond.wait(remaining)
                self.urgent = False
                batches = [batch for batch, _, _ in self.pending]
                from_file, spills, self.busy = self.spilled, self.spills, True
            try:
                with self.hold(wait_s=float("inf")):  # records wait as long as it takes
                    if self.con is None:
                        self.con = self._connect()
                    orphaned = replay(self.con, self.path)[1] if from_file else 0
                    missing = _absent(self.con, batches) if batches else []
                    if missing:
                        write_batches(self.con, missing)
                failure = None
            except Exception as error:  # disk full, say: keep the batches, report, retry
                failure = error
            with self.cond:
                self.busy = False
                if failure is None:
                    self._written(len(batches), from_file and spills == self.spills, orphaned)
                else:
                    self.error = failure
                    self.retry_at = time.monotonic() + self.delay
                    self.delay = min(self.delay * 2, RETRY_MAX)
                self.cond.notify_all()

    def _written(self, count: int, file_done: bool, orphaned: int) -> None:
        """Holding the lock: forget what was written; empty the journal if it holds nothing
        else (records appended meanwhile are pending, or spilled since the pass began)."""
        self.pending_bytes -= sum(size for _, size, _ in self.pending[:count])
        del self.pending[:count]
        self.spilled = self.spilled and not file_done
        self.keep = self.keep or orphaned > 0
        self.error, self.delay = None, RETRY_MIN
        if not self.pending and not self.spilled and self.fd is not None and not self.keep:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass  # the next recovery skips what is already in the RSSD

    def close(self, timeout: float = 30.0) -> bool:
        """Write what is pending (for at most about `timeout` seconds) and stop the thread.
        Whatever is not written stays in the journal for the next kernel's recovery.
        True when everything was written."""
        deadline = time.monotonic() + timeout
        done = self.flush(timeout)
        with self.cond:
            self.closed = True
            for index, (batch, size, journaled) in enumerate(self.pending):
                if not journaled and self._append(frame(batch)):  # the disk may have room now
                    self.pending[index] = (batch, size, True)
            self.cond.notify_all()
        self.thread.join(max(0.0, deadline - time.monotonic()))
        with self.cond:
            fd, self.fd = self.fd, None
        if not self.thread.is_alive() and self.con is not None:  # else it is stuck in a write
            self.con.close()
        if fd is not None:
            os.close(fd)
            try:
                if os.path.getsize(self.path) == 0:
                    os.unlink(self.path)
            except OSError:
                pass
        return done
