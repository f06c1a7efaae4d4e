"""Lineage digests made after the cell: the entry is written in the cell's transaction with
`digest_pending`, and the record writer (or, after a crash, whoever takes the database
next) makes the digest and fills it in (lineage.describe and complete, journal, writer)."""

import json
import os
import threading
import time

import blake3
import pytest
from conftest import read_db

from rssd_kernel import digests, journal, lineage
from rssd_kernel.database import open_database
from rssd_kernel.digests import DIGESTS
from rssd_kernel.journal import SUFFIX, frame, read_records, recover
from rssd_kernel.recorder import Exec, Recorder, insert_entry
from rssd_kernel.writer import Writer

WAIT = 20  # seconds any wait in these tests may take at most


def _csv(path, rows: int = 1000) -> bytes:
    data = b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(rows))
    path.write_bytes(data)
    return data


def _request(path, entry_id: str = "entry-1") -> dict:
    """What the cell leaves for the writer, as transaction.py makes it."""
    info, later = lineage.describe(str(path))
    return {**later, "entry_id": entry_id, "elaboration": {"kind": "ingest", **info}}


# -- lineage.complete -----------------------------------------------------------------------


def test_complete_makes_the_digest_of_the_file_the_cell_read(tmp_path):
    data = _csv(tmp_path / "a.csv")
    done = lineage.complete(_request(tmp_path / "a.csv"))
    assert done["digest"] == blake3.blake3(data).hexdigest()
    assert done["digest_algorithm"] == "blake3" and done["size"] == len(data)
    assert "digest_pending" not in done and "digest_error" not in done


@pytest.mark.parametrize("change", ["rewritten", "replaced", "appended"])
def test_a_file_changed_after_the_cell_gets_no_digest_but_says_why(tmp_path, change):
    """The digest is of what the cell read, or none: never of other content."""
    path = tmp_path / "a.csv"
    _csv(path)
    request = _request(path)
    if change == "rewritten":  # same size, new content
        path.write_bytes(path.read_bytes().replace(b"n1", b"m1"))
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    elif change == "replaced":  # the same bytes in a new file (another inode)
        other = tmp_path / "b.csv"
        other.write_bytes(path.read_bytes())
        os.replace(other, path)
    else:
        with open(path, "ab") as handle:
            handle.write(b"9999,n9999\n")
    done = lineage.complete(request)
    assert done["digest"] is None and done["digest_error"] == lineage.CHANGED


def test_a_file_gone_after_the_cell_gets_no_digest_but_says_why(tmp_path):
    request = _request(tmp_path / "a.csv") if _csv(tmp_path / "a.csv") else None
    os.unlink(tmp_path / "a.csv")
    done = lineage.complete(request)
    assert done["digest"] is None and "No such file" in done["digest_error"]


def test_a_digest_batch_is_framed_and_read_back_and_a_malformed_one_is_damaged(tmp_path):
    _csv(tmp_path / "a.csv")
    good = {DIGESTS: [_request(tmp_path / "a.csv")]}
    bad = {DIGESTS: [{"entry_id": 1}]}
    path = tmp_path / "j"
    path.write_bytes(frame(good) + frame(bad))
    with open(path, "rb") as handle:
        assert [batch for batch, _ in read_records(handle)] == [good, None]


# -- the writer and recovery ----------------------------------------------------------------


def _session(tmp_path):
    """A database with an RSSD session and one ingest entry of `a.csv` whose digest is
    pending, as a stateful cell leaves it; returns (db, con, recorder, the request, data)."""
    db = str(tmp_path / "a.duckdb")
    con = open_database(db)
    recorder = Recorder(con.cursor())
    recorder.start_session({}, None, ":memory:")
    recorder.writer.close()
    data = _csv(tmp_path / "a.csv")
    request = _request(tmp_path / "a.csv")
    request["entry_id"] = insert_entry(
        con, recorder.session_id, "a.csv", "t", request["elaboration"]
    )
    return db, con, recorder, request, data


def _ingest(recorder, request) -> None:
    """Hand the writer an ingest cell's records and its digest request, as a cell does."""
    recorder.writer.submit({DIGESTS: [request]})
    recorder.record(Exec(nature="SQL", code="CREATE TABLE t AS ..."))


def _entry(con, entry_id: str) -> dict:
    sql = "SELECT elaboration FROM orchestration_session_entry WHERE orchestration_session_entry_id = ?"
    return json.loads(con.execute(sql, [entry_id]).fetchall()[0][0])


def _execs(con) -> int:
    return con.execute("SELECT count(*) FROM orchestration_session_exec").fetchall()[0][0]


def test_the_cells_rows_are_written_before_its_digest_is_made(tmp_path, monkeypatch):
    """A cell's exec rows do not wait for the hashing of a large file; the digest is filled in
    when it is made, and flush waits for it (a cell that reads the RSSD sees it)."""
    db, con, recorder, request, data = _session(tmp_path)
    real, release, hashing = digests.make, threading.Event(), threading.Event()

    def slow(batches):
        hashing.set()
        release.wait(WAIT)
        real(batches)

    monkeypatch.setattr(digests, "make", slow)
    recorder.writer = writer = Writer(con.cursor(), db)
    _ingest(recorder, request)
    assert hashing.wait(WAIT)
    assert writer.flush(timeout=WAIT, digests=False) is True
    assert writer.flush(timeout=0.2) is False  # the digest is being made
    assert _execs(con) == 1  # the ingest's exec is in, before its digest
    assert _entry(con, request["entry_id"])["digest_pending"] is True
    release.set()
    assert writer.flush(timeout=WAIT) is True
    entry = _entry(con, request["entry_id"])
    assert entry["digest"] == blake3.blake3(data).hexdigest() and "digest_pending" not in entry
    assert os.path.getsize(writer.path) == 0  # everything is in: the journal is emptied
    writer.close()


def test_a_request_held_over_a_commit_is_kept_in_the_journal_and_made_after(tmp_path, monkeypatch):
    """A cell journals its digest requests before its commit (held): the journal keeps them
    while other rows are written (a writer still busy with earlier cells'), and they are made
    only once the cell's own records come."""
    db, con, recorder, request, data = _session(tmp_path)
    made = []
    real = digests.make
    monkeypatch.setattr(digests, "make", lambda b: (made.append(1), real(b)))
    recorder.writer = writer = Writer(con.cursor(), db)
    later = {DIGESTS: [request]}
    real_write, entered, go_on = journal.write_batches, threading.Event(), threading.Event()

    def slow_write(con, batches):
        entered.set()
        go_on.wait(WAIT)
        real_write(con, batches)

    monkeypatch.setattr(journal, "write_batches", slow_write)
    recorder.record(Exec(nature="SQL", code="SELECT 1"))  # an earlier cell's, being written
    assert entered.wait(WAIT)
    writer.submit(later, held=True)  # the ingest cell, about to commit
    go_on.set()
    assert writer.flush(timeout=WAIT, digests=False) is True and _execs(con) == 1
    assert writer.flush(timeout=WAIT) is True  # nothing waits for a held one
    with open(writer.path, "rb") as handle:
        assert [b for b, _ in read_records(handle) if b and DIGESTS in b] == [later]
    assert made == [] and _entry(con, request["entry_id"])["digest_pending"] is True
    recorder.record(Exec(nature="SQL", code="CREATE TABLE t AS ..."))  # the cell's records
    assert writer.flush(timeout=WAIT, digests=False) is True and made == []
    writer.release_held()  # the runner, once the cell is recorded
    assert writer.flush(timeout=WAIT) is True and made == [1] and _execs(con) == 2
    assert _entry(con, request["entry_id"])["digest"] == blake3.blake3(data).hexdigest()
    assert os.path.getsize(writer.path) == 0
    assert writer.close(timeout=WAIT) is True


def test_a_wait_for_a_digest_stops_at_the_stop_button(tmp_path, monkeypatch):
    db, con, recorder, request, _ = _session(tmp_path)
    real, release = digests.make, threading.Event()
    monkeypatch.setattr(digests, "make", lambda b: (release.wait(WAIT), real(b)))
    recorder.writer = writer = Writer(con.cursor(), db)
    _ingest(recorder, request)
    looked = []

    def stop():
        looked.append(1)
        if len(looked) == 3:
            raise KeyboardInterrupt

    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        writer.flush(timeout=WAIT, check_stop=stop)
    assert time.monotonic() - began < WAIT / 2
    release.set()
    assert writer.close(timeout=WAIT) is True


def test_recovery_makes_the_digest_a_crashed_process_left_once(tmp_path):
    """A journal left by a process that died before it made the digest: whoever takes the
    database next makes it. Recovered again (a copy of the journal, say), a completed entry
    is not touched, even if the file changed since."""
    db, con, recorder, request, data = _session(tmp_path)
    dead = db + SUFFIX + ".p222-bbbbbbbb"
    record = frame({DIGESTS: [request]})
    with open(dead, "wb") as handle:
        handle.write(record)
    recover(con, db)
    assert _entry(con, request["entry_id"])["digest"] == blake3.blake3(data).hexdigest()
    assert not os.path.exists(dead)
    (tmp_path / "a.csv").write_bytes(b"other\n")
    with open(dead, "wb") as handle:
        handle.write(record)
    recover(con, db)
    assert _entry(con, request["entry_id"])["digest"] == blake3.blake3(data).hexdigest()


@pytest.mark.parametrize("journaled", [True, False])
def test_recovery_hands_a_dead_processs_digests_to_the_live_writer(tmp_path, journaled):
    """Taking the file, a kernel hands the digests a dead kernel left to its own writer (made
    in the background, not in the cell that took the file): only those still pending, and
    only once they are in its own journal; one its journal cannot take is made at once."""
    db, con, recorder, request, data = _session(tmp_path)
    _csv(tmp_path / "b.csv")
    filled = _request(tmp_path / "b.csv")
    filled["entry_id"] = insert_entry(con, recorder.session_id, "b.csv", "t", {"digest": "x"})
    dead = db + SUFFIX + ".p444-dddddddd"
    with open(dead, "wb") as handle:
        handle.write(frame({DIGESTS: [request]}) + frame({DIGESTS: [filled]}))
    handed = []

    def defer(batch):
        handed.append(batch)
        return journaled

    recover(con, db, defer=defer)
    assert handed == [{DIGESTS: [request]}] and not os.path.exists(dead)  # to make, as it was
    entry = _entry(con, request["entry_id"])
    if journaled:  # made by the live writer later
        assert entry["digest_pending"] is True
    else:
        assert entry["digest"] == blake3.blake3(data).hexdigest()
    assert _entry(con, filled["entry_id"]) == {"digest": "x"}


def test_a_request_for_an_entry_never_committed_is_not_hashed(tmp_path, monkeypatch):
    """Requests are journaled before the commit: the cell may have failed after (its entry
    rolled back). Read back from a journal, such a request makes no digest and no change."""
    db, con, _, request, _ = _session(tmp_path)
    before = con.execute("SELECT * FROM orchestration_session_entry ORDER BY 1").fetchall()
    hashed = []
    monkeypatch.setattr(lineage, "complete", lambda r: hashed.append(r) or {})
    dead = db + SUFFIX + ".p333-cccccccc"
    with open(dead, "wb") as handle:
        handle.write(frame({DIGESTS: [{**request, "entry_id": "never-committed"}]}))
    recover(con, db)
    assert hashed == [] and not os.path.exists(dead)
    assert con.execute("SELECT * FROM orchestration_session_entry ORDER BY 1").fetchall() == before


def test_later_cells_rows_do_not_wait_for_a_digest_and_the_file_can_be_let_go(
    tmp_path, monkeypatch
):
    """While a large file is hashed, later cells' rows are written, and the writer does not
    pin the file (another process may take it; it is taken again to fill the digest in)."""
    db, con, recorder, request, data = _session(tmp_path)
    real, release = digests.make, threading.Event()
    monkeypatch.setattr(digests, "make", lambda b: (release.wait(WAIT), real(b)))
    recorder.writer = writer = Writer(con.cursor(), db)
    _ingest(recorder, request)
    recorder.record(Exec(nature="SQL", code="SELECT 1"))
    assert writer.flush(timeout=WAIT, digests=False) is True
    assert _execs(con) == 2 and not writer.has_work()
    assert _entry(con, request["entry_id"])["digest_pending"] is True
    release.set()
    assert writer.flush(timeout=WAIT) is True
    assert _entry(con, request["entry_id"])["digest"] == blake3.blake3(data).hexdigest()
    assert writer.close(timeout=WAIT) is True


def test_a_digest_that_fails_unexpectedly_is_recorded_as_failed_and_the_writer_goes_on(
    tmp_path, monkeypatch
):
    db, con, recorder, request, _ = _session(tmp_path)

    def broken(request):
        raise ValueError("a bug")

    monkeypatch.setattr(lineage, "complete", broken)
    recorder.writer = writer = Writer(con.cursor(), db)
    _ingest(recorder, request)
    assert writer.flush(timeout=WAIT) is True
    entry = _entry(con, request["entry_id"])
    assert entry["digest"] is None and "a bug" in entry["digest_error"]
    recorder.record(Exec(nature="SQL", code="SELECT 1"))
    assert writer.flush(timeout=WAIT) is True and _execs(con) == 2
    assert writer.close(timeout=WAIT) is True


def test_a_fifo_gets_no_digest_and_nothing_waits_for_one(tmp_path):
    """Reading a FIFO again would block: it is recorded without a digest, and no request
    is left for the writer."""
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    info, later = lineage.describe(str(fifo))
    assert later is None and info["digest"] is None
    assert info["digest_error"] == lineage.NOT_REGULAR and info["digest_algorithm"] == "blake3"
    _csv(tmp_path / "a.csv")
    request = _request(tmp_path / "a.csv")
    os.unlink(tmp_path / "a.csv")
    os.mkfifo(tmp_path / "a.csv")  # put where the file was: the open must not block
    done = lineage.complete(request)
    assert done["digest"] is None and "not a regular file" in done["digest_error"]


# -- through the kernel -----------------------------------------------------------------------


def test_an_ingest_records_the_digest_before_a_cell_reads_the_rssd(kernel_factory, tmp_path):
    """The digest takes a second to make here (a hook slows it, as a large file would): the
    cell that reads the RSSD right after the ingest waits for it."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import time\nfrom rssd_kernel import lineage\nreal = lineage.complete\n"
        "lineage.complete = lambda request: (time.sleep(1.0), real(request))[1]\n"
    )
    kernel = kernel_factory(env={"PYTHONPATH": str(hook)})
    path = tmp_path / "wide.csv"
    data = _csv(path, 200_000)
    kernel.ok(f"CREATE TABLE wide AS SELECT * FROM read_csv('{path}')")
    digest = blake3.blake3(data).hexdigest()
    found = kernel.ok(
        "SELECT count(*) AS found FROM orchestration_session_entry WHERE "
        f"json_extract_string(elaboration, '$.digest') = '{digest}' AND "
        "json_extract_string(elaboration, '$.digest_algorithm') = 'blake3' AND "
        "json_extract_string(elaboration, '$.digest_pending') IS NULL AND "
        "ingest_table_name = 'wide'"
    ).text
    assert "\n1\n" in found, found


HOOKS = {
    # the writer is about to make the digest (after the cell replied)
    "before the digest": "import rssd_kernel.digests as digests\n"
    "digests.make = lambda *args: os._exit(9)\n",
    # the cell committed, and its records are not journaled yet
    "after the commit": "from rssd_kernel.recorder import Recorder\n"
    "real = Recorder.record\n"
    "Recorder.record = lambda self, cell, *a: os._exit(9) if cell.code.startswith('CREATE TABLE t ') else "
    "real(self, cell, *a)\n",
}


@pytest.mark.parametrize("moment", HOOKS)
def test_a_kernel_killed_before_the_digest_leaves_it_to_the_next(kernel_factory, tmp_path, moment):
    """The kernel dies (os._exit, as a kill -9 would) before the digest is in: the next
    kernel on the file makes it from the journal, and the ingest is applied once."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("import os\n" + HOOKS[moment])
    data = _csv(tmp_path / "in.csv", 20_000)
    db = str(tmp_path / "rssd.duckdb")
    dying = kernel_factory(db, env={"PYTHONPATH": str(hook)})
    dying.kc.execute("CREATE TABLE t AS SELECT * FROM read_csv('in.csv')")  # no reply waited
    assert dying.km.provisioner.process.wait(timeout=WAIT) == 9
    assert read_db(db, "SELECT count(*) FROM t") == [(20_000,)]
    pending = read_db(
        db, "SELECT elaboration FROM orchestration_session_entry WHERE ingest_table_name = 't'"
    )
    assert json.loads(pending[0][0])["digest_pending"] is True
    kernel = kernel_factory(db)
    kernel.ok("-- @always\nSELECT 1")
    kernel.shutdown()
    rows = read_db(
        db, "SELECT elaboration FROM orchestration_session_entry WHERE ingest_table_name = 't'"
    )
    assert len(rows) == 1
    entry = json.loads(rows[0][0])
    assert entry["digest"] == blake3.blake3(data).hexdigest() and "digest_pending" not in entry
    applied = read_db(
        db, "SELECT count(*) FROM orchestration_session_state WHERE to_state = 'EXECUTED'"
    )
    assert applied == [(1,)]  # applied once, recorded as applied
    if moment == "before the digest":  # the exec records were journaled before the reply
        execs = read_db(
            db,
            "SELECT count(*) FROM orchestration_session_exec "
            "WHERE exec_nature = 'SQL' AND exec_code LIKE 'CREATE TABLE t %'",
        )
        assert execs == [(1,)]


def test_closing_waits_briefly_for_digests_and_leaves_the_rest_to_the_journal(
    tmp_path, monkeypatch
):
    """A shutting-down kernel must end its session before Jupyter's client stops it: the
    writer waits for a digest only `digests_s`, and the request stays in the journal."""
    db, con, recorder, request, data = _session(tmp_path)
    real, release = digests.make, threading.Event()
    monkeypatch.setattr(digests, "make", lambda b: (release.wait(WAIT), real(b)))
    recorder.writer = writer = Writer(con.cursor(), db)
    _ingest(recorder, request)
    began = time.monotonic()
    assert writer.close(timeout=WAIT, digests_s=0.3) is False
    assert time.monotonic() - began < WAIT / 2 and _execs(con) == 1
    with open(writer.path, "rb") as handle:
        assert [b for b, _ in read_records(handle) if b and DIGESTS in b] == [{DIGESTS: [request]}]
    release.set()
    monkeypatch.setattr(digests, "make", real)
    recover(con, db)  # its lock is free: the next kernel makes the digest
    assert _entry(con, request["entry_id"])["digest"] == blake3.blake3(data).hexdigest()


def _slow_digests(folder, seconds: float) -> dict:
    """A kernel environment whose lineage digests take `seconds` more (a large file's)."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import time\nfrom rssd_kernel import lineage\nreal = lineage.complete\n"
        f"lineage.complete = lambda request: (time.sleep({seconds}), real(request))[1]\n"
    )
    return {"PYTHONPATH": str(folder)}


def test_a_slow_digest_at_shutdown_is_made_by_the_next_kernel_in_the_background(
    kernel_factory, tmp_path
):
    """The first kernel ends its session without the digest (it takes longer than a
    shutdown may wait); the next kernel on the file makes it in the background: its first
    cell does not wait for it, a cell reading the RSSD does."""
    data = _csv(tmp_path / "in.csv", 20_000)
    db = str(tmp_path / "rssd.duckdb")
    first = kernel_factory(db, env=_slow_digests(tmp_path / "hook1", 4.0))
    first.ok("CREATE TABLE t AS SELECT * FROM read_csv('in.csv')")
    first.shutdown()
    entry_sql = "SELECT elaboration FROM orchestration_session_entry WHERE ingest_table_name = 't'"
    assert json.loads(read_db(db, entry_sql)[0][0])["digest_pending"] is True
    finished = read_db(
        db, "SELECT count(*) FROM orchestration_session WHERE orch_finished_at IS NULL"
    )
    assert finished == [(0,)]  # the session's end was written before the kernel stopped
    second = kernel_factory(db, env=_slow_digests(tmp_path / "hook2", 10.0))
    began = time.monotonic()
    second.ok("SELECT 42")
    assert time.monotonic() - began < 5.0  # the digest is made meanwhile, not in this cell
    shown = second.ok(
        "SELECT json_extract_string(elaboration, '$.digest') AS d FROM orchestration_session_entry "
        "WHERE ingest_table_name = 't'"
    ).html  # (the plain-text table cuts long values)
    assert blake3.blake3(data).hexdigest() in shown


def test_a_cell_whose_record_failed_still_gets_its_digest(kernel_factory, tmp_path):
    """The cell's records could not be handed over (an error of ours): its digest requests,
    held over its commit, are let go all the same, so the next cell reading the RSSD gets
    the digest rather than waiting for nothing."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "from rssd_kernel.recorder import Recorder\nreal = Recorder.record\n"
        "def record(self, cell, *args):\n"
        "    if cell.code.startswith('CREATE TABLE t '):\n"
        "        raise OSError('no record')\n"
        "    return real(self, cell, *args)\n"
        "Recorder.record = record\n"
    )
    data = _csv(tmp_path / "in.csv", 20_000)
    kernel = kernel_factory(env={"PYTHONPATH": str(hook)})
    kernel.ok("CREATE TABLE t AS SELECT * FROM read_csv('in.csv')")
    began = time.monotonic()
    shown = kernel.ok(
        "SELECT json_extract_string(elaboration, '$.digest') AS d FROM orchestration_session_entry "
        "WHERE ingest_table_name = 't'"
    ).html
    assert blake3.blake3(data).hexdigest() in shown and time.monotonic() - began < WAIT


def test_recovery_keeps_the_digests_made_before_a_stop(tmp_path, monkeypatch):
    """`rssd sessions` after a crash makes the dead kernel's digests; Ctrl-C half-way keeps
    those already made (each is written as soon as it is made)."""
    db, con, recorder, request, data = _session(tmp_path)
    _csv(tmp_path / "b.csv", 10)
    second = _request(tmp_path / "b.csv")
    second["entry_id"] = insert_entry(con, recorder.session_id, "b.csv", "t", second["elaboration"])
    dead = db + SUFFIX + ".p555-eeeeeeee"
    with open(dead, "wb") as handle:
        handle.write(frame({DIGESTS: [request]}) + frame({DIGESTS: [second]}))
    real = lineage.complete

    def stopped_at_the_second(r):
        if r["entry_id"] == second["entry_id"]:
            raise KeyboardInterrupt
        return real(r)

    monkeypatch.setattr(lineage, "complete", stopped_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        journal.recover_file(con, db, dead)
    assert _entry(con, request["entry_id"])["digest"] == blake3.blake3(data).hexdigest()
    assert _entry(con, second["entry_id"])["digest_pending"] is True and os.path.exists(dead)


def test_a_cell_that_waited_too_long_for_digests_says_so(kernel_factory, tmp_path):
    """Past the wait's bound, the cell runs with what is there, and says that more is
    still being written."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import time\nimport rssd_kernel.runner as runner\nfrom rssd_kernel import lineage\n"
        "runner.FLUSH_WAIT = 0.5\nreal = lineage.complete\n"
        "lineage.complete = lambda request: (time.sleep(5), real(request))[1]\n"
    )
    _csv(tmp_path / "in.csv", 1000)
    kernel = kernel_factory(env={"PYTHONPATH": str(hook)})
    kernel.ok("CREATE TABLE t AS SELECT * FROM read_csv('in.csv')")
    reply = kernel.ok("SELECT count(*) AS n FROM orchestration_session_entry")
    said = "".join(o["content"]["text"] for o in reply.outputs if o["msg_type"] == "stream")
    assert "still being written" in said and "0.5 seconds" in said


def test_a_request_the_journal_cannot_take_is_kept_by_the_caller(tmp_path):
    """Recovery hands a dead kernel's request over only if the live journal takes it; else
    the live writer does not queue it (recovery makes it at once, once)."""
    db, con, _, request, _ = _session(tmp_path)
    writer = Writer(con.cursor(), str(tmp_path / "missing-folder" / "x.duckdb"))  # no journal
    assert writer.fd is None
    assert writer.submit({DIGESTS: [request]}, journaled_only=True) is False
    assert writer.pending == []
    writer.close(timeout=WAIT)


def test_a_cell_reading_the_rssd_says_at_once_when_earlier_records_could_not_be_written(
    kernel_factory, tmp_path
):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import rssd_kernel.journal as journal\n"
        "def broken(con, batches):\n    raise OSError('disk on fire')\n"
        "journal.write_batches = broken\n"
    )
    kernel = kernel_factory(env={"PYTHONPATH": str(hook)})
    kernel.ok("SELECT 1")
    reply = kernel.ok("SELECT count(*) AS n FROM orchestration_session_exec")
    said = "".join(o["content"]["text"] for o in reply.outputs if o["msg_type"] == "stream")
    assert "could not be written to the RSSD yet (disk on fire)" in said, said
