"""The exec journal: how execution records reach the RSSD without slowing every cell.

Writing a cell's exec, statement, log and issue rows into DuckDB costs several
milliseconds (mostly the commit), several times what the cell itself takes. So the runner
hands the rows, already redacted, to a `Writer`: it appends them as one JSON line to a
journal file beside the database (`<database>.rssd-journal`) before the kernel replies, and
a background thread writes them into the RSSD, many cells per transaction, then empties the
journal once everything in it is committed.

The append is a single write(2) to a file opened O_APPEND, without fsync: the line is in the
operating system's page cache as soon as the call returns, so it survives the kernel being
killed (kill -9), though not the machine losing power. Whoever opens the database next
(`open_database`) first writes what a crashed kernel left in the journal, skipping rows that
had already arrived. Reading the RSSD from a cell waits for the writer first, so a cell
always sees every earlier cell's records.
"""

import json
import os
import threading
import time

import duckdb

SUFFIX = ".rssd-journal"
PAUSE = 0.05  # seconds without a new cell before the writer writes
MAX_AGE = 0.5  # seconds a record may wait at most
TABLES = ("orchestration_session_exec", "orchestration_session_log", "orchestration_session_issue")
_CHUNK = 500


def journal_path(database: str) -> str | None:
    return None if database == ":memory:" else os.path.abspath(database) + SUFFIX


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


def recover(con, database: str) -> int:
    """Write what a journal left by an ended kernel holds and is not in the RSSD yet; empty
    the journal. Returns how many cells were recovered."""
    path = journal_path(database)
    if not path or not os.path.exists(path) or os.path.getsize(path) == 0:
        return 0
    batches = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                batches.append(json.loads(line))
            except ValueError:
                break  # a line torn by the crash: the kernel never replied for it
    ids = [
        b["orchestration_session_exec"][0][0] for b in batches if b["orchestration_session_exec"]
    ]
    present = {
        row[0]
        for row in con.execute(
            "SELECT orchestration_session_exec_id FROM orchestration_session_exec "
            "WHERE orchestration_session_exec_id IN (SELECT unnest(?::VARCHAR[]))",
            [ids],
        ).fetchall()
    }
    missing = [b for b in batches if b["orchestration_session_exec"][0][0] not in present]
    if missing:
        write_batches(con, missing)
    os.truncate(path, 0)
    return len(missing)


class Writer:
    """Journals record batches and writes them into the RSSD from a background thread."""

    def __init__(self, con, database: str):
        self.con = con
        self.path = journal_path(database)
        self.fd = (
            os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if self.path else None
        )
        self.pending: list[dict] = []
        self.last_submit = 0.0
        self.urgent = False  # someone waits in flush(): write now
        self.busy = False
        self.error: Exception | None = None
        self.closed = False
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="rssd-writer", daemon=True)
        self.thread.start()

    def submit(self, batch: dict) -> None:
        """Journal the batch (durable against a crash of this process), then queue it."""
        line = (json.dumps(batch, default=str) + "\n").encode("utf-8", "backslashreplace")
        with self.cond:
            if self.fd is not None:
                os.write(self.fd, line)
            self.pending.append(batch)
            self.last_submit = time.monotonic()
            if len(self.pending) == 1:
                # Only an idle writer needs waking; one waiting for a pause between cells
                # looks at last_submit when its wait ends. (A wake-up per cell would take
                # the GIL from the cell's reply.)
                self.cond.notify_all()

    def flush(self) -> None:
        """Wait until everything submitted is in the RSSD (or failed to be written)."""
        with self.cond:
            self.urgent = True
            self.cond.notify_all()
            while (self.pending or self.busy) and self.error is None:
                self.cond.wait(timeout=1)

    def take_error(self) -> Exception | None:
        with self.cond:
            error, self.error = self.error, None
            if error is not None:
                self.cond.notify_all()  # the writer retries what failed
            return error

    def _loop(self) -> None:
        while True:
            with self.cond:
                while (not self.pending or self.error is not None) and not self.closed:
                    self.cond.wait()
                if self.closed and (not self.pending or self.error is not None):
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
                batches, self.busy = list(self.pending), True
            try:
                write_batches(self.con, batches)
                failure = None
            except duckdb.Error as error:  # disk full, say: keep the batches, report, retry
                failure = error
            with self.cond:
                self.busy = False
                if failure is None:
                    del self.pending[: len(batches)]
                    if not self.pending and self.fd is not None:
                        os.ftruncate(self.fd, 0)
                else:
                    self.error = failure
                self.cond.notify_all()

    def close(self) -> None:
        """Write what is pending, stop the thread; the journal keeps anything unwritten."""
        self.flush()
        with self.cond:
            self.closed = True
            self.cond.notify_all()
        self.thread.join(timeout=30)
        self.con.close()
        if self.fd is not None:
            os.close(self.fd)
            if not self.pending and os.path.exists(self.path) and os.path.getsize(self.path) == 0:
                os.unlink(self.path)
