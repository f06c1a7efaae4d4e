"""Several kernels, the CLI and headless runs share one database file (lease.py): each
kernel holds the file only while it works, and lets it go when another process waits."""

import os
import queue
import subprocess
import sys
import threading
import time

import nbformat
import pytest
from conftest import TIMEOUT, held_by_another_program, read_db

RSSD = os.path.join(os.path.dirname(sys.executable), "rssd")


def _both(kernels, code, cell_id=None):
    """Send `code` to every kernel at the same moment; their replies, in order."""
    ids = []
    for kernel in kernels:
        if cell_id is None:
            ids.append(kernel.kc.execute(code))
        else:
            msg = kernel.kc.session.msg("execute_request", {"code": code, "silent": False})
            msg["metadata"]["cellId"] = cell_id
            kernel.kc.shell_channel.send(msg)
            ids.append(msg["header"]["msg_id"])
    return [kernel.collect(msg_id) for kernel, msg_id in zip(kernels, ids)]


def test_two_kernels_in_one_folder(kernel_factory, tmp_path):
    a, b = kernel_factory(), kernel_factory()
    # Each keeps its own session while the other writes.
    a.ok("CREATE TEMP TABLE mine AS SELECT 'a' AS who")
    b.ok("CREATE TEMP TABLE mine AS SELECT 'b' AS who")
    a.ok("SET VARIABLE me = 'alice'")
    b.ok("SET VARIABLE me = 'bob'")
    a.ok("CREATE TABLE shared (n INT)")
    for n in range(3):  # alternately
        a.ok(f"INSERT INTO shared VALUES ({n})")
        b.ok(f"INSERT INTO shared VALUES ({10 + n})")
    assert "a alice" in a.ok("SELECT who || ' ' || getvariable('me') AS x FROM mine").text
    assert "b bob" in b.ok("SELECT who || ' ' || getvariable('me') AS x FROM mine").text
    # At the same moment: reads, and one stateful cell sent to both: applied once.
    replies = _both([a, b], "SELECT count(*) || ' rows' AS n FROM shared")
    assert all(r.status == "ok" and "6 rows" in r.text for r in replies)
    replies = _both([a, b], "CREATE TABLE once_only AS SELECT 42 AS x")
    assert [r.status for r in replies] == ["ok", "ok"], [r.content for r in replies]
    assert sorted(r.rssd["replayed"] for r in replies) == [False, True]
    # A named result made in one is used in the other.
    a.ok("-- @name answer\nSELECT 41 AS answer")
    assert "42" in b.ok("SELECT $answer + 1 AS x").text
    assert "41" in b.ok("SELECT answer FROM answer").text
    a.shutdown()
    b.shutdown()
    db = str(tmp_path / "rssd.duckdb")
    assert read_db(db, "SELECT count(*) FROM shared") == [(6,)]
    assert read_db(db, "SELECT count(*) FROM once_only") == [(1,)]
    sessions = read_db(db, "SELECT count(*), count(orch_finished_at) FROM orchestration_session")
    assert sessions == [(2, 2)]


def test_the_cli_and_rssd_run_next_to_two_idle_kernels(kernel_factory, tmp_path):
    a, b = kernel_factory(), kernel_factory()
    a.ok("CREATE TABLE t AS SELECT 1 AS x")
    b.ok("SELECT count(*) FROM t")
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    for args in (["sessions"], ["state"]):
        done = subprocess.run([RSSD, *args], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)  # fmt: skip
        assert done.returncode == 0, done.stderr
    sessions = subprocess.run([RSSD, "sessions", "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
    assert sessions.stdout.count('"session"') >= 2
    session = a.ok("SELECT 1").rssd["session_id"]
    log = subprocess.run([RSSD, "log", session], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=TIMEOUT)  # fmt: skip
    assert log.returncode == 0 and "Ran 1 statement" in log.stdout, log.stdout + log.stderr
    state = subprocess.run([RSSD, "state"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=TIMEOUT)  # fmt: skip
    assert state.returncode == 0 and "EXECUTED" in state.stdout, state.stderr
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "rssd", "display_name": "rssd", "language": "sql"}}
    )
    nb.cells = [nbformat.v4.new_code_cell("INSERT INTO t VALUES (2)")]
    nbformat.write(nb, tmp_path / "report.ipynb")
    done = subprocess.run([RSSD, "run", "report.ipynb"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 rows" in a.ok("SELECT count(*) || ' rows' AS n FROM t").text
    assert "2 rows" in b.ok("SELECT count(*) || ' rows' AS n FROM t").text


def _progress_texts(kernel, msg_id, seen: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            msg = kernel.kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.put(msg)


def test_a_kernel_waits_visibly_and_can_stop_waiting(kernel_factory, tmp_path):
    a, b = kernel_factory(), kernel_factory()
    a.ok("CREATE TABLE t AS SELECT 1 AS x")
    b.ok("SELECT 1")
    long_query = "SELECT count(*) FROM range(20000000000) r WHERE hash(r.range) = 42"
    long_id = a.kc.execute(long_query)
    _wait_until_running(a, long_id)
    # b must wait: it shows who holds the file, and the stop button ends the wait.
    waiting_id = b.kc.execute("SELECT count(*) AS n FROM t")
    shown = _wait_for_text(b, waiting_id, "waiting for")
    assert f"PID {a.km.provisioner.process.pid}" in shown and "busy" in shown
    b.km.interrupt_kernel()
    stopped = b.collect(waiting_id)
    assert stopped.status == "error" and stopped.content["ename"] == "Interrupted"
    assert "stopped while waiting for" in stopped.content["evalue"]
    assert "did not run" in stopped.content["evalue"]
    # Waiting again, it carries on once the long query ends (interrupted here).
    again_id = b.kc.execute("SELECT count(*) || ' rows' AS n FROM t")
    _wait_for_text(b, again_id, "waiting for")
    a.km.interrupt_kernel()
    assert a.collect(long_id).status == "error"
    again = b.collect(again_id)
    assert again.status == "ok" and "1 rows" in again.text
    b.shutdown()
    a.shutdown()
    db = str(tmp_path / "rssd.duckdb")
    statuses = read_db(
        db,
        "SELECT exec_status FROM orchestration_session_exec WHERE parent_exec_id IS NULL "
        "AND exec_code = 'SELECT count(*) AS n FROM t'",
    )
    assert statuses == [(2,)]  # the interrupted wait has its exec row


def _wait_until_running(kernel, msg_id, timeout=TIMEOUT):
    """Until the kernel shows its progress display for the request (past a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kernel.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "display_data":
            return
    raise TimeoutError("the long query did not start")


def _wait_for_text(kernel, msg_id, text, timeout=TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kernel.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        data = msg["content"].get("data", {})
        if text in data.get("text/plain", ""):
            return data["text/plain"]
    raise TimeoutError(f"no {text!r} shown")


@pytest.mark.parametrize("moment", ["holding", "idle"])
def test_kill_9_of_one_kernel_leaves_the_others_going(kernel_factory, tmp_path, moment):
    a, b = kernel_factory(), kernel_factory()
    a.ok("CREATE TABLE t AS SELECT 1 AS x")
    marker = a.ok("SELECT 'from the killed kernel' AS m").rssd["session_id"]
    if moment == "holding":
        long_id = a.kc.execute("SELECT count(*) FROM range(20000000000) r WHERE hash(r.range) = 42")
        _wait_until_running(a, long_id)
    a.kill()
    assert "1 rows" in b.ok("SELECT count(*) || ' rows' AS n FROM t").text
    b.ok("INSERT INTO t VALUES (2)")
    b.shutdown()
    rows = read_db(
        str(tmp_path / "rssd.duckdb"),
        "SELECT exec_code FROM orchestration_session_exec WHERE session_id = ? "
        "AND parent_exec_id IS NULL",
        [marker],
    )
    assert ("SELECT 'from the killed kernel' AS m",) in rows


def test_four_kernels_interleaved_for_a_minute(kernel_factory, tmp_path):
    kernels = [kernel_factory() for _ in range(4)]
    kernels[0].ok("CREATE TABLE events (kernel INT, n INT)")
    sent = {i: 0 for i in range(4)}
    failures = []
    stop_at = time.monotonic() + 60

    def work(index):
        kernel = kernels[index]
        while time.monotonic() < stop_at:
            n = sent[index]
            code = (
                f"INSERT INTO events VALUES ({index}, {n})"
                if n % 2 == 0
                else f"SELECT count(*) FROM events WHERE kernel = {index}"
            )
            reply = kernel.execute(code)
            if reply.status != "ok":
                failures.append((index, code, reply.content))
            sent[index] = n + 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a kernel stopped answering"
    assert not failures, failures[:3]
    for kernel in kernels:
        kernel.shutdown()
    db = str(tmp_path / "rssd.duckdb")
    for index in range(4):
        inserted = read_db(db, "SELECT count(*) FROM events WHERE kernel = ?", [index])
        assert inserted == [((sent[index] + 1) // 2,)]
    execs = read_db(
        db,
        "SELECT count(*), count(DISTINCT orchestration_session_exec_id) FROM "
        "orchestration_session_exec WHERE parent_exec_id IS NULL AND exec_code LIKE '%events%'",
    )
    total = sum(sent.values()) + 1
    assert execs == [(total, total)]
    assert sum(sent.values()) > 400  # they really interleaved, several cells a second


def test_a_kernel_that_never_got_the_file_still_has_its_executions_recorded(
    kernel_factory, tmp_path
):
    """The session's start is journaled first: a kernel that only ever waited (and was then
    killed) still has its session and its executions in the RSSD once the file is free."""
    db = str(tmp_path / "rssd.duckdb")
    kernel_factory().shutdown()  # the RSSD exists
    with held_by_another_program(db):
        waiting = kernel_factory()
        waiting.ok("%config wait_s=1")
        reply = waiting.execute("SELECT 'it never ran' AS x")
        assert reply.status == "error" and reply.content["ename"] == "Database Locked"
        waiting.kill()
    reader = subprocess.run([RSSD, "sessions", "--json"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=TIMEOUT)  # fmt: skip
    assert reader.returncode == 0, reader.stderr  # it recovers the dead kernel's journal
    rows = read_db(
        db,
        "SELECT e.exec_status, s.orchestration_session_id IS NOT NULL "
        "FROM orchestration_session_exec e JOIN orchestration_session s "
        "ON e.session_id = s.orchestration_session_id "
        "WHERE e.exec_code = 'SELECT ''it never ran'' AS x'",
    )
    assert rows == [(1, True)]


def test_a_holder_in_a_transaction_is_named_as_such(kernel_factory, tmp_path):
    a, b = kernel_factory(), kernel_factory()
    a.ok("CREATE TABLE t AS SELECT 1 AS x")
    a.ok("BEGIN")
    b.ok("%config wait_s=1")
    reply = b.execute("SELECT count(*) FROM t")
    assert reply.status == "error" and "transaction" in reply.content["evalue"]
    a.ok("COMMIT")
    assert b.ok("SELECT count(*) || ' rows' AS n FROM t").text.count("1 rows") == 1


def test_kill_9_of_the_holder_while_another_waits_on_the_same_cell(kernel_factory, tmp_path):
    """A applies a stateful cell and is killed while it still holds the file; B, waiting
    to run the same cell, must replay it, and A's journal must reach the RSSD."""
    a, b = kernel_factory(), kernel_factory()
    b.ok("CREATE TABLE t (x INT)")  # b has read the state before a applies the cell
    cell = "INSERT INTO t VALUES (1)"
    assert a.ok(cell, cell_id="a-cell").rssd["replayed"] is False
    a_pid = a.km.provisioner.process.pid
    long_id = a.kc.execute("SELECT count(*) FROM range(20000000000) r WHERE hash(r.range) = 42")
    _wait_until_running(a, long_id)
    waiting_id = b.kc.execute(cell)
    _wait_for_text(b, waiting_id, "waiting for")
    a.kill()
    reply = b.collect(waiting_id)
    assert reply.status == "ok" and reply.rssd["replayed"] is True, reply.content
    assert "1 rows" in b.ok("SELECT count(*) || ' rows' AS n FROM t").text
    leftover = [p for p in os.listdir(tmp_path) if f".rssd-journal.p{a_pid}-" in p]
    assert leftover == []  # recovered by b when it took the file
    b.shutdown()
    rows = read_db(
        str(tmp_path / "rssd.duckdb"),
        "SELECT count(*) FROM orchestration_session_exec WHERE exec_code = ? "
        "AND parent_exec_id IS NULL",
        [cell],
    )
    assert rows == [(2,)]  # a's application and b's replay, both recorded


def test_rssd_run_says_what_it_waits_for(kernel_factory, tmp_path):
    a = kernel_factory()
    a.ok("CREATE TABLE t AS SELECT 1 AS x")
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "rssd", "display_name": "rssd", "language": "sql"}}
    )
    nb.cells = [nbformat.v4.new_code_cell("SELECT count(*) FROM t")]
    nbformat.write(nb, tmp_path / "report.ipynb")
    long_id = a.kc.execute("SELECT count(*) FROM range(20000000000) r WHERE hash(r.range) = 42")
    _wait_until_running(a, long_id)
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    run = subprocess.Popen([RSSD, "run", "report.ipynb"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in run.stderr], daemon=True).start()
    deadline = time.monotonic() + TIMEOUT
    seen = ""
    while "waiting for" not in seen and time.monotonic() < deadline:
        try:
            seen += lines.get(timeout=1)
        except queue.Empty:
            continue
    assert "cell 1 of 1: waiting for" in seen and "rssd.duckdb" in seen, seen
    a.km.interrupt_kernel()
    assert a.collect(long_id).status == "error"
    assert run.wait(timeout=TIMEOUT) == 0


def test_a_partly_shown_result_does_not_keep_the_file(kernel, tmp_path):
    """An '-- @always' SELECT shows 50 of a million rows; the file is still let go whole."""
    import duckdb

    db = str(tmp_path / "rssd.duckdb")
    kernel.ok("%config hold_s=0.2")
    kernel.ok("CREATE TABLE big AS SELECT range AS i FROM range(1000000)")
    kernel.ok("-- @always\nSELECT i FROM big")
    deadline = time.monotonic() + TIMEOUT
    while True:  # the kernel lets go of the file 0.2 s after its last use
        try:
            con = duckdb.connect(db)
            break
        except duckdb.Error:
            assert time.monotonic() < deadline, "the kernel never let go of the file"
            time.sleep(0.05)
    con.close()
    assert "1000000" in kernel.ok("SELECT count(*) FROM big").text
