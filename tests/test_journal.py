"""The exec journal without a kernel: framing, recovery, set-aside journals, the writer."""

import glob
import io
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from rssd_kernel import journal
from rssd_kernel.database import open_database
from rssd_kernel.journal import SUFFIX, TABLES, frame, read_records, recover
from rssd_kernel.recorder import Exec, Recorder
from rssd_kernel.writer import Writer

WAIT = 20  # seconds any wait in these tests may take at most


class Capture:
    """Stands in for a recorder's writer: keeps the batches it is handed."""

    def __init__(self):
        self.batches = []

    def submit(self, batch):
        self.batches.append(batch)


def start(db: str):
    """Open `db`, start an RSSD session in it; return the connection and a function that
    makes record batches of that session (as the runner hands them to the writer)."""
    con = open_database(db)
    recorder = Recorder(con.cursor())
    recorder.start_session({}, None, ":memory:")
    recorder.writer.close()
    recorder.writer = capture = Capture()

    def batches(count: int) -> list[dict]:
        for index in range(count):
            recorder.record(Exec(nature="SQL", code=f"SELECT {index}"))
        made, capture.batches = capture.batches, []
        return made

    return con, batches


def exec_id(batch: dict) -> str:
    return batch[TABLES[0]][0][0]


def exec_ids(con) -> list[str]:
    sql = "SELECT orchestration_session_exec_id FROM orchestration_session_exec"
    return sorted(row[0] for row in con.execute(sql).fetchall())


def journal_ids(path: str) -> list[str]:
    with open(path, "rb") as handle:
        return sorted(exec_id(batch) for batch, _ in read_records(handle) if batch)


@pytest.fixture
def faulty(monkeypatch):
    """Make write_batches raise while fault["on"]; every call is noted in fault["calls"]."""
    real = journal.write_batches
    fault = {"on": True, "calls": [], "written": threading.Event()}

    def write_batches(con, batches):
        fault["calls"].append(time.monotonic())
        if fault["on"]:
            raise RuntimeError("the disk is on holiday")
        real(con, batches)
        fault["written"].set()

    monkeypatch.setattr(journal, "write_batches", write_batches)
    return fault


# -- recovery ---------------------------------------------------------------------------


def _cut_in_header(record: bytes) -> bytes:
    return record[: record.index(b" ", 2)]


def _cut_after_header(record: bytes) -> bytes:
    return record[: record.index(b"\n", 1) + 1]


def _cut_in_payload(record: bytes) -> bytes:
    return record[: len(record) * 2 // 3]


def _flipped(record: bytes) -> bytes:
    at = len(record) - 10  # inside the payload: same length, another checksum
    return record[:at] + (b"X" if record[at : at + 1] != b"X" else b"Y") + record[at + 1 :]


@pytest.mark.parametrize(
    "value", ["é ✓ 中文", "two\nlines\r\u2028", "\udcff (a file name's lone surrogate)", 2**70]
)
def test_any_value_is_framed_on_one_line_and_read_back(value):
    """orjson writes UTF-8, json (when orjson refuses a value) ASCII; both one line."""
    batch = {TABLES[0]: [["e1", "SQL", "s1", value, None]], TABLES[1]: [], TABLES[2]: []}
    record = frame(batch)
    assert record.count(b"\n") == 3  # the empty line, the header's end, the payload's end
    ((read, size),) = list(read_records(io.BytesIO(record)))
    assert read == batch and size == len(record) - 1


@pytest.mark.parametrize("damage", [_cut_in_header, _cut_after_header, _cut_in_payload, _flipped])
def test_a_damaged_record_is_skipped_and_later_ones_recovered(tmp_path, damage):
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    made = batches(4)
    data = frame(made[0]) + damage(frame(made[1])) + frame(made[2]) + frame(made[3])
    with open(db + SUFFIX, "wb") as handle:
        handle.write(data)
    recovery = recover(con, db)
    assert recovery.count == 3
    assert exec_ids(con) == sorted(exec_id(b) for b in (made[0], made[2], made[3]))
    (note,) = recovery.notes
    assert "1 damaged record" in note
    (aside,) = glob.glob(db + SUFFIX + ".damaged-*")
    assert aside in note
    with open(aside, "rb") as handle:
        assert handle.read() == data  # kept as it was, for inspection
    assert not os.path.exists(db + SUFFIX)


def test_a_journal_of_release_0_1_is_recovered(tmp_path):
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    made = batches(3)
    with open(db + SUFFIX, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(batch, default=str) + "\n" for batch in made)
    recovery = recover(con, db)
    assert (recovery.count, recovery.notes) == (3, [])
    assert exec_ids(con) == sorted(exec_id(b) for b in made)
    assert os.path.getsize(db + SUFFIX) == 0
    assert recover(con, db).count == 0  # nothing twice


def test_records_of_another_database_are_set_aside_not_written(tmp_path):
    """A kernel crashed, then its database file was deleted: the journal left beside the
    path belongs to sessions the new file does not have."""
    con_a, batches_a = start(str(tmp_path / "a.duckdb"))
    foreign = batches_a(3)
    con_a.close()
    db = str(tmp_path / "b.duckdb")
    con, batches = start(db)
    own = batches(1)
    con.close()
    data = b"".join(frame(b) for b in foreign[:2] + own + foreign[2:])
    with open(db + SUFFIX, "wb") as handle:
        handle.write(data)

    notes: list[str] = []
    con = open_database(db, notes)
    assert exec_ids(con) == [exec_id(own[0])]  # its own record, none of the others
    (aside,) = glob.glob(db + SUFFIX + ".orphaned-*")
    with open(aside, "rb") as handle:
        assert handle.read() == data
    (note,) = notes
    assert aside in note and "3 cell record(s) of sessions that are not in" in note
    assert "rename" in note
    assert not os.path.exists(db + SUFFIX)

    # A second such journal goes to another file; the first stays as it was.
    with open(db + SUFFIX, "wb") as handle:
        handle.write(frame(foreign[0]))
    notes.clear()
    recovery = recover(con, db)
    assert recovery.count == 0 and len(recovery.notes) == 1
    assert len(glob.glob(db + SUFFIX + ".orphaned-*")) == 2
    with open(aside, "rb") as handle:
        assert handle.read() == data
    assert exec_ids(con) == [exec_id(own[0])]


@pytest.mark.parametrize("content", [b"\x00\xff garbage \x13\n" * 50, b"unreadable"])
def test_a_journal_that_cannot_be_read_is_set_aside(tmp_path, content):
    db = str(tmp_path / "a.duckdb")
    open_database(db).close()
    if content == b"unreadable":
        os.mkdir(db + SUFFIX)  # open() fails on it
        with open(os.path.join(db + SUFFIX, "x"), "wb") as handle:
            handle.write(content)
    else:
        with open(db + SUFFIX, "wb") as handle:
            handle.write(content)
    notes: list[str] = []
    open_database(db, notes).close()
    (aside,) = glob.glob(db + SUFFIX + ".*")
    (note,) = notes
    assert aside in note


def test_rows_the_database_refuses_set_the_journal_aside(tmp_path):
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    (batch,) = batches(1)
    batch[TABLES[0]][0] = batch[TABLES[0]][0][:6]  # too few columns: DuckDB refuses it
    with open(db + SUFFIX, "wb") as handle:
        handle.write(frame(batch))
    recovery = recover(con, db)
    assert recovery.count == 0 and exec_ids(con) == []
    (note,) = recovery.notes
    (aside,) = glob.glob(db + SUFFIX + ".unrecovered-*")
    assert aside in note and "rename it back" in note


# -- the writer -------------------------------------------------------------------------


def test_short_writes_still_make_a_recoverable_journal(tmp_path, monkeypatch, faulty):
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    made = batches(3)
    writer = Writer(con.cursor(), db)
    real_write = os.write

    def short_write(fd, data):
        return real_write(fd, bytes(data[:3])) if fd == writer.fd else real_write(fd, data)

    monkeypatch.setattr(os, "write", short_write)
    for batch in made:
        writer.submit(batch)
    assert writer.close(timeout=WAIT) is False  # the database refuses: the journal keeps them
    monkeypatch.undo()
    assert journal_ids(writer.path) == sorted(exec_id(b) for b in made)
    assert recover(con, db).count == 3
    assert exec_ids(con) == sorted(exec_id(b) for b in made)


def test_a_failed_append_keeps_the_batch_and_warns(tmp_path, monkeypatch, faulty):
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    first, second = batches(2)
    writer = Writer(con.cursor(), db)
    real_write = os.write

    def full_disk(fd, data):
        if fd == writer.fd:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    writer.submit(first)  # does not raise
    warning = writer.take_warning()
    assert "No space left on device" in warning and writer.take_warning() is None
    faulty["on"] = False
    writer.take_error()
    assert writer.flush(timeout=WAIT)
    assert exec_ids(con) == [exec_id(first)]

    # Not in the journal, not in the database: close() journals it once the disk has room.
    faulty["on"] = True
    writer.submit(second)
    monkeypatch.setattr(os, "write", real_write)
    assert writer.close(timeout=WAIT) is False
    assert journal_ids(writer.path) == [exec_id(second)]


def test_the_writer_survives_any_exception_and_reports_it(tmp_path, faulty):
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    (batch,) = batches(1)
    writer = Writer(con.cursor(), db)
    writer.submit(batch)
    assert writer.flush(timeout=WAIT) is False
    faulty["on"] = False
    error = writer.take_error()  # which makes the writer retry now
    assert isinstance(error, RuntimeError) and "holiday" in str(error)
    assert writer.thread.is_alive()
    assert writer.flush(timeout=WAIT)
    assert exec_ids(con) == [exec_id(batch)]
    assert writer.close(timeout=WAIT)
    assert not os.path.exists(writer.path)


def test_a_failed_write_is_retried_with_back_off(tmp_path, monkeypatch, faulty):
    """Nobody takes the error: the writer retries by itself, ever later, until it works."""
    monkeypatch.setattr(journal, "RETRY_MIN", 0.05)
    monkeypatch.setattr(journal, "RETRY_MAX", 0.1)
    real = journal.write_batches

    def fails_three_times(con, batches):
        if len(faulty["calls"]) == 3:
            faulty["on"] = False
        real(con, batches)

    monkeypatch.setattr(journal, "write_batches", fails_three_times)
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    (batch,) = batches(1)
    writer = Writer(con.cursor(), db)
    writer.submit(batch)
    assert faulty["written"].wait(WAIT)
    writer.close(timeout=WAIT)
    calls = faulty["calls"]
    gaps = [later - earlier for earlier, later in zip(calls, calls[1:])]
    assert len(gaps) == 3 and gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.1
    assert writer.error is None
    assert exec_ids(con) == [exec_id(batch)]


def test_flush_and_close_are_bounded_while_the_writer_is_stuck(tmp_path, monkeypatch):
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    (batch,) = batches(1)
    real, release, entered = journal.write_batches, threading.Event(), threading.Event()

    def stuck(con, batches):
        entered.set()
        release.wait(WAIT)
        real(con, batches)

    monkeypatch.setattr(journal, "write_batches", stuck)
    writer = Writer(con.cursor(), db)
    writer.submit(batch)
    began = time.monotonic()
    assert writer.flush(timeout=0.2) is False
    assert writer.close(timeout=0.2) is False
    assert time.monotonic() - began < 5
    assert entered.is_set()
    assert journal_ids(writer.path) == [exec_id(batch)]  # nothing lost
    release.set()
    writer.thread.join(WAIT)
    assert not writer.thread.is_alive()
    assert recover(con, db).count == 0  # it did arrive, once
    assert exec_ids(con) == [exec_id(batch)]


@pytest.mark.parametrize("bound", ["MAX_PENDING", "MAX_PENDING_BYTES"])
def test_pending_batches_in_memory_are_bounded(tmp_path, monkeypatch, faulty, bound):
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    made = batches(20)
    size = max(len(frame(b)) for b in made)
    monkeypatch.setattr(journal, bound, 3 if bound == "MAX_PENDING" else 3 * size)
    writer = Writer(con.cursor(), db)
    for batch in made:
        writer.submit(batch)
    assert len(writer.pending) <= 3 and writer.pending_bytes <= 3 * size
    assert writer.spilled
    assert journal_ids(writer.path) == sorted(exec_id(b) for b in made)
    faulty["on"] = False
    writer.take_error()
    assert writer.flush(timeout=WAIT)
    assert exec_ids(con) == sorted(exec_id(b) for b in made)  # each exactly once
    assert os.path.getsize(writer.path) == 0
    assert writer.close(timeout=WAIT)


def test_a_live_processs_journal_is_left_alone_and_a_dead_ones_recovered(tmp_path):
    """Each process journals to a file of its own and holds a lock on it while it lives:
    recovery takes only journals whose lock it can take (their process ended)."""
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    (live_batch, dead_batch) = batches(2)
    live = db + SUFFIX + ".p111-aaaaaaaa"
    dead = db + SUFFIX + ".p222-bbbbbbbb"
    for path, batch in ((live, live_batch), (dead, dead_batch)):
        with open(path, "wb") as handle:
            handle.write(frame(batch))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'ab'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()", live],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert recover(con, db).count == 1  # the dead one only
        assert exec_ids(con) == [exec_id(dead_batch)]
        assert not os.path.exists(dead) and journal_ids(live) == [exec_id(live_batch)]
    finally:
        holder.stdin.close()
        holder.wait(timeout=WAIT)
    assert recover(con, db).count == 1  # its process ended: now it is recovered
    assert exec_ids(con) == sorted([exec_id(dead_batch), exec_id(live_batch)])
    assert not os.path.exists(live)


def test_the_writer_is_overloaded_when_nothing_can_take_its_records(tmp_path, monkeypatch, faulty):
    """Neither the journal nor the database takes records: past MAX_PENDING the writer says
    it is overloaded (the runner then refuses cells), and recovers when the disk does."""
    db = str(tmp_path / "a.duckdb")
    con, batches = start(db)
    monkeypatch.setattr(journal, "MAX_PENDING", 5)
    writer = Writer(con.cursor(), db)
    monkeypatch.setattr(writer, "_append", lambda record: False)
    for batch in batches(5):
        assert not writer.overloaded()
        writer.submit(batch)
    assert writer.overloaded()
    faulty["on"] = False
    assert writer.flush(timeout=WAIT) and not writer.overloaded()
    writer.close()


@pytest.mark.parametrize("held_the_file", [False, True])
def test_a_session_that_never_held_the_file_is_written_by_recovery(tmp_path, held_the_file):
    """A process journals its session's start first. If it never held the file, recovery
    writes its session and its executions; if it did hold a file (its session rows went
    there), records whose session is missing here belong to another file: set aside."""
    db = str(tmp_path / "a.duckdb")
    con = open_database(db)
    recorder = Recorder(con.cursor(), database=db)
    recorder.announce({"notebook": None}, "never.ipynb")
    if held_the_file:
        recorder.writer.note({journal.SESSION_ATTACHED: recorder.session_id})
    recorder.record(Exec(nature="SQL", code="SELECT 'waited'"))
    path = recorder.writer.path
    with open(path, "rb") as handle:
        left = handle.read()
    recorder.writer.closed = True  # as if killed: nothing more is written
    os.remove(path)
    with open(db + SUFFIX + ".p999999-deadbeef", "wb") as handle:
        handle.write(left)
    recovery = recover(con, db)
    sessions = con.execute(
        "SELECT count(*) FROM orchestration_session WHERE orchestration_session_id = ?",
        [recorder.session_id],
    ).fetchall()
    if held_the_file:
        assert recovery.count == 0 and sessions == [(0,)]
        assert glob.glob(db + SUFFIX + ".p999999-deadbeef.orphaned-*")
    else:
        assert recovery.count == 1 and sessions == [(1,)]
        entry = con.execute(
            "SELECT ingest_src FROM orchestration_session_entry WHERE session_id = ?",
            [recorder.session_id],
        ).fetchall()
        assert entry == [("never.ipynb",)]


def test_the_change_counter_orders_a_keys_rows_whatever_the_clock(tmp_path):
    """A process whose clock stands behind another's: its later row for a key still wins,
    because rows are ordered by the file's change counter, not by transitioned_at."""
    from rssd_kernel.state import StateStore

    db = str(tmp_path / "a.duckdb")
    con = open_database(db)
    recorder = Recorder(con.cursor())
    recorder.start_session({}, None, ":memory:")
    state = StateStore(con)
    first = state.record(con, "k", "EXECUTED", "applied", None, {}, recorder.session_id, None)
    state.commit(first)
    later = state.record(con, "k", "FORGOTTEN", "forgotten", None, {}, recorder.session_id, None)
    con.execute(  # as if written by a process whose clock is an hour behind
        "UPDATE orchestration_session_state SET transitioned_at = transitioned_at - "
        "INTERVAL 1 HOUR WHERE orchestration_session_state_id = ?",
        [later.state_id],
    )
    assert StateStore(con).latest["k"].to_state == "FORGOTTEN"
    recorder.writer.close()
