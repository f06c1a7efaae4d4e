"""Faults: crashes, a full disk, unusable files, a second kernel, concurrent requests."""

import hashlib
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import duckdb
import pytest
from conftest import TIMEOUT, Kernel, read_db
from jupyter_client.manager import KernelManager

from rssd_kernel.database import prepare
from rssd_kernel.lease import open_waiting


def _integrity(db: str) -> duckdb.DuckDBPyConnection:
    """Open the file as the next kernel would (which first writes what a crashed kernel left
    in its journal) and check what the DDL's constraints and our conventions promise."""
    con = open_waiting(db, wait_s=TIMEOUT)  # another kernel on the file lets it go for us
    prepare(con, db)
    checks = {
        "exec without session": """SELECT count(*) FROM orchestration_session_exec e
            WHERE NOT EXISTS (SELECT 1 FROM orchestration_session s
                              WHERE s.orchestration_session_id = e.session_id)""",
        "statement without cell": """SELECT count(*) FROM orchestration_session_exec c
            WHERE parent_exec_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM orchestration_session_exec p
                WHERE p.orchestration_session_exec_id = c.parent_exec_id)""",
        "exec without log header": """SELECT count(*) FROM orchestration_session_exec e
            WHERE NOT EXISTS (SELECT 1 FROM orchestration_session_log l
                WHERE CAST(l.orchestration_session_log_id AS VARCHAR) = e.orchestration_session_exec_id)""",
        "state without session": """SELECT count(*) FROM orchestration_session_state t
            WHERE NOT EXISTS (SELECT 1 FROM orchestration_session s
                              WHERE s.orchestration_session_id = t.session_id)""",
        "invalid json": """SELECT count(*) FROM orchestration_session_exec
            WHERE NOT json_valid(elaboration) OR NOT json_valid(output_nature)""",
    }
    for name, sql in checks.items():
        assert con.execute(sql).fetchall() == [(0,)], name
    return con


def _iopub_until(kernel, wanted, timeout: float = TIMEOUT) -> dict:
    """The first iopub message for which `wanted(msg)` holds; TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the awaited iopub message did not come")
        try:
            msg = kernel.kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            continue
        if wanted(msg):
            return msg


def _running(msg_id: str):
    """Matches the progress display of request `msg_id`: the kernel shows it once the cell
    has run for a second without finishing, so the cell is running when it arrives."""
    return lambda msg: (
        msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "display_data"
    )


def _drain(get_msg) -> list:
    """The messages a channel still holds (its last ones came before the kernel died)."""
    msgs = []
    while True:
        try:
            msgs.append(get_msg(timeout=0.05))
        except queue.Empty:
            return msgs


def test_kill_9_at_random_moments(tmp_path):
    """50 crashes across plain cells, stateful cells and RSSD writes, with a second kernel
    on the same file all along: afterwards the file opens, constraints hold, no stateful
    cell is half-applied, every exec whose reply reached the client is recorded, and the
    other kernel carries on."""
    db = str(tmp_path / "crash.duckdb")
    rng = random.Random(20261123)
    replied: list[str] = []
    cut_short = 0  # trials whose kill landed while a cell was in progress
    # A second kernel on the same file all along: it carries on after every crash (and
    # takes the file in turn, recovering the dead kernel's journal).
    witness = Kernel(db, str(tmp_path))
    witness.ok("%config hold_s=0")
    for trial in range(50):
        kernel = Kernel(db, str(tmp_path))
        sent = {}
        for index in range(6):
            marker = f"t{trial}c{index}"
            choice = rng.choice(["plain", "stateful", "named", "big"])
            code = {
                "plain": f"-- {marker}\nSELECT {index} AS v",
                "stateful": f"-- {marker}\nCREATE TABLE {marker} AS SELECT range AS v FROM range(1000)",
                "named": f"-- @name {marker}\nSELECT {index} AS v",
                "big": f"-- {marker}\nCREATE TABLE {marker} AS SELECT range AS v FROM range(3000000)",
            }[choice]
            if choice in ("stateful", "big"):  # its state row's transition_result names it
                code += f";\nSELECT '{marker}' AS created"
            sent[kernel.kc.execute(code)] = (marker, choice)
        time.sleep(rng.uniform(0.0, 0.6))  # the moment of the crash is the trial's input
        process = kernel.km.provisioner.process
        process.kill()
        process.wait(timeout=TIMEOUT)
        answered = {  # replies that reached the client before the crash
            msg["parent_header"].get("msg_id")
            for msg in _drain(kernel.kc.shell_channel.get_msg)
            if msg["msg_type"] == "execute_reply"
        } & set(sent)
        replied.extend(sent[msg_id][0] for msg_id in answered)
        started = {
            msg["parent_header"].get("msg_id")
            for msg in _drain(kernel.kc.iopub_channel.get_msg)
            if msg["msg_type"] == "execute_input"
        } & set(sent)
        cut_short += bool(started - answered)  # a cell begun, not answered, when killed
        kernel.kill()  # release the channels and the connection file
        assert witness.ok("SELECT count(*) AS n FROM duckdb_tables()").status == "ok"
        con = _integrity(db)
        tables = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 't%c%'"
            ).fetchall()
        }
        applied = [  # the tables that the applied stateful cells say they created
            json.loads(result)["rows"]
            for (result,) in con.execute(
                """SELECT transition_result FROM orchestration_session_state
                WHERE to_state = 'EXECUTED' AND json_extract_string(elaboration, '$.key')
                LIKE 'cell-%'"""
            ).fetchall()
        ]
        codes = {
            code
            for (code,) in con.execute(
                "SELECT exec_code FROM orchestration_session_exec WHERE parent_exec_id IS NULL"
            ).fetchall()
        }
        for table in tables:
            (rows,) = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert rows in (1000, 3000000), table
        con.close()
        # A table exists exactly when its cell's state row does, and no cell applied twice.
        assert all(len(rows) == 1 and len(rows[0]) == 1 for rows in applied), applied
        created = sorted(rows[0][0] for rows in applied)
        assert len(created) == len(set(created)), created
        assert tables == set(created), (tables ^ set(created), trial)
        for marker in replied:
            assert any(f"-- {marker}\n" in c or f"@name {marker}\n" in c for c in codes), marker
    witness.shutdown()
    assert replied, "no reply ever arrived: the trials tested nothing"
    assert cut_short, "no kill landed while a cell ran: the trials tested nothing"
    con = duckdb.connect(db, read_only=True)
    (applied,) = con.execute("SELECT count(*) FROM orchestration_session_state").fetchone()
    (cells,) = con.execute(
        "SELECT count(*) FROM orchestration_session_exec WHERE parent_exec_id IS NULL"
    ).fetchone()
    con.close()
    assert applied > 0 and cells > len(replied) / 2, (applied, cells, len(replied))
    print(
        f"{len(replied)} replies reached the client; {cells} cells and {applied} state rows "
        f"recorded; {cut_short} of 50 kills landed while a cell ran"
    )


def test_kill_9_while_a_stateful_cell_runs(kernel_factory, tmp_path):
    """kill -9 while a stateful cell runs (not before it starts, not after it ends), its
    first statement done and its second running: afterwards the file opens, the cell left
    neither its table nor a state row, and what was applied before is intact."""
    db = str(tmp_path / "rssd.duckdb")
    kernel = kernel_factory()
    kernel.ok("CREATE TABLE before_crash AS SELECT 1 AS a")
    msg_id = kernel.kc.execute(  # its second statement runs for minutes: no end before the kill
        "CREATE TABLE during_crash AS SELECT 1 AS n;\n"
        "INSERT INTO during_crash "
        "SELECT count(*) FROM range(100000000000) a WHERE hash(a.range) % 7 = 1"
    )
    _iopub_until(kernel, _running(msg_id))
    process = kernel.km.provisioner.process
    process.kill()
    process.wait(timeout=TIMEOUT)
    answered = [
        msg for msg in _drain(kernel.kc.shell_channel.get_msg)
        if msg["parent_header"].get("msg_id") == msg_id
    ]  # fmt: skip
    kernel.kill()
    assert not answered, "the cell ended before the kill: the test tested nothing"
    con = _integrity(db)
    tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "before_crash" in tables and "during_crash" not in tables, tables
    assert con.execute("SELECT a FROM before_crash").fetchall() == [(1,)]
    applied = con.execute(
        "SELECT transition_result FROM orchestration_session_state WHERE to_state = 'EXECUTED'"
    ).fetchall()
    assert len(applied) == 1 and "during_crash" not in applied[0][0], applied
    con.close()


@pytest.fixture
def limited_kernel_name(tmp_path, monkeypatch):
    """A kernelspec whose kernel may write files of at most 6 MB (as on a full disk)."""
    folder = tmp_path / "kernels" / "rssd-limited"
    folder.mkdir(parents=True)
    command = f"ulimit -f 6144; exec {sys.executable} -m rssd_kernel -f $0"
    spec = {
        "argv": ["bash", "-c", command, "{connection_file}"],
        "display_name": "limited",
        "language": "sql",
    }
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv(
        "JUPYTER_PATH", str(tmp_path) + os.pathsep + os.environ.get("JUPYTER_PATH", "")
    )
    return "rssd-limited"


def test_disk_full_is_a_clear_error_and_nothing_is_lost(tmp_path, limited_kernel_name):
    db = str(tmp_path / "full.duckdb")
    km = KernelManager(kernel_name=limited_kernel_name)
    km.start_kernel(cwd=str(tmp_path), env={**os.environ, "RSSD_DATABASE": db})
    kernel = Kernel.__new__(Kernel)
    kernel.km, kernel.kc, kernel.database = km, km.client(), db
    kernel.kc.start_channels()
    kernel.kc.wait_for_ready(timeout=TIMEOUT)
    try:
        kernel.ok("CREATE TABLE small AS SELECT 1 AS a")
        reply = kernel.execute(
            "CREATE TABLE huge AS SELECT range, md5(range::VARCHAR) AS h FROM range(3000000)"
        )
        assert reply.status == "error"
        assert "disk is full" in reply.content["evalue"] and "Traceback" not in str(
            reply.content["traceback"]
        )
        assert (
            "<td>1</td>" in kernel.ok("SELECT count(*) AS n FROM small").html
        )  # alive, data intact
    finally:
        kernel.shutdown()
    con = _integrity(db)
    assert con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'huge'"
    ).fetchall() == [(0,)]
    con.close()


def _can_mount() -> bool:
    """Whether this process may mount a tmpfs (root in CI and on developers' machines)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = tempfile.mkdtemp()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", probe],
                             capture_output=True).returncode == 0  # fmt: skip
    if mounted:
        subprocess.run(["umount", probe], capture_output=True)
    os.rmdir(probe)
    return mounted


@pytest.mark.skipif(not _can_mount(), reason="requires permission to mount a tmpfs (root)")
def test_read_only_database_is_a_clear_error(tmp_path, kernel_factory):
    folder = tmp_path / "ro"
    folder.mkdir()
    assert (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16M", "tmpfs", str(folder)]).returncode
        == 0
    )
    try:
        db = str(folder / "data.duckdb")
        duckdb.connect(db).execute("CREATE TABLE t AS SELECT 1 AS a").fetchall()
        assert subprocess.run(["mount", "-o", "remount,ro", str(folder)]).returncode == 0
        kernel = kernel_factory(database=db)
        reply = kernel.execute("SELECT * FROM t")
        assert reply.status == "error" and reply.content["ename"] == "Database Unavailable"
        assert (
            "read-only" in reply.content["evalue"].lower()
            and "rssd sessions" in reply.content["evalue"]
        )
        kernel.shutdown()
    finally:
        subprocess.run(["umount", str(folder)])


def test_a_file_that_is_not_duckdb_is_left_alone(kernel_factory, tmp_path):
    path = tmp_path / "notes.duckdb"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    kernel = kernel_factory(database=str(path))
    reply = kernel.execute("SELECT 1")
    assert reply.status == "error" and "not a DuckDB database file" in reply.content["evalue"]
    kernel.shutdown()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_altered_rssd_tables_are_refused_and_untouched(kernel_factory, tmp_path):
    db = str(tmp_path / "rssd.duckdb")
    first = kernel_factory()
    first.ok("SELECT 1")
    first.shutdown()
    con = duckdb.connect(db)
    con.execute("ALTER TABLE orchestration_session_log ADD COLUMN note TEXT")
    count = con.execute("SELECT count(*) FROM orchestration_session").fetchall()
    con.close()
    second = kernel_factory()
    reply = second.execute("SELECT 1")
    assert reply.status == "error" and reply.content["ename"] == "Schema Mismatch"
    assert "orchestration_session_log" in reply.content["evalue"]
    second.shutdown()
    assert read_db(db, "SELECT count(*) FROM orchestration_session") == count


# A process that takes the file as soon as it is free, and keeps it until stdin closes.
HOLD_WHEN_FREE = """
import sys, time, duckdb
deadline = time.monotonic() + 60
while True:
    try:
        con = duckdb.connect(sys.argv[1])
        break
    except duckdb.IOException:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_holder_that_never_lets_go_is_named_and_the_wait_is_bounded(kernel_factory, tmp_path):
    """Another rssd kernel lets the file go when idle (test_sharing); a process that never
    does (an older release, DuckDB's CLI) is named, and the configured limit ends the wait."""
    db = str(tmp_path / "rssd.duckdb")
    kernel = kernel_factory()
    kernel.ok("CREATE TABLE shared AS SELECT 1 AS a")
    kernel.ok("%config wait_s=2")
    kernel.ok("%config hold_s=0")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WHEN_FREE, db],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        reply = kernel.execute("SELECT * FROM shared")
    finally:
        holder.stdin.close()
        holder.wait(timeout=TIMEOUT)
    assert reply.status == "error" and reply.content["ename"] == "Database Locked"
    assert f"PID {holder.pid}" in reply.content["evalue"]
    assert "not an rssd kernel" in reply.content["evalue"]
    assert "<td>1</td>" in kernel.ok("SELECT count(*) AS n FROM shared").html


@pytest.mark.skipif(not _can_mount(), reason="requires permission to mount a tmpfs (root)")
def test_disk_full_at_commit_keeps_nothing_and_answers(tmp_path, kernel_factory):
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(folder)])
    assert mounted.returncode == 0
    try:
        db = str(folder / "rssd.duckdb")
        kernel = kernel_factory(database=db)
        kernel.ok("CREATE TABLE small AS SELECT 1 AS a")
        reply = kernel.execute(
            "CREATE TABLE big AS SELECT range AS id, md5(range::VARCHAR) AS h FROM range(80000)"
        )
        assert reply.status == "error", reply.content
        assert "disk is full" in reply.content["evalue"], reply.content
        assert reply.content["ename"] != "Internal Error"
        assert "<td>1</td>" in kernel.ok("SELECT count(*) AS n FROM small").html
        tables = kernel.ok("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 'big'")
        assert "<td>0</td>" in tables.html  # nothing of the cell was kept
        kernel.shutdown()
    finally:
        subprocess.run(["umount", str(folder)])


def test_concurrent_requests_on_subshells_are_serialised(kernel, tmp_path):
    """A request on a subshell, sent while a cell runs on the main shell, is dispatched at
    once (kernel subshells) but waits for the DuckDB connection: the RSSD's records of the
    two cells (elaboration started_at and finished_at) do not overlap."""
    control = kernel.kc.control_channel
    control.send(kernel.kc.session.msg("create_subshell_request", {}))
    reply = control.get_msg(timeout=TIMEOUT)
    assert reply["msg_type"] == "create_subshell_reply", reply
    subshell = reply["content"]["subshell_id"]
    long_code = "SELECT count(*) AS n FROM range(100000000000) a WHERE hash(a.range) % 7 = 1"
    long_id = kernel.kc.execute(long_code)  # runs for minutes unless interrupted
    _iopub_until(kernel, _running(long_id))
    request = kernel.kc.session.msg(
        "execute_request",
        {
            "code": "SELECT 2 AS two",
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )
    request["header"]["subshell_id"] = subshell
    short_id = request["header"]["msg_id"]
    kernel.kc.shell_channel.send(request)
    # The subshell takes the request while the long cell still runs ...
    _iopub_until(
        kernel,
        lambda msg: (
            msg["parent_header"].get("msg_id") == short_id and msg["msg_type"] == "execute_input"
        ),
    )
    kernel.km.interrupt_kernel()  # ... which then ends, so that the short one can run
    replies = {}
    deadline = time.monotonic() + TIMEOUT
    while len(replies) < 2 and time.monotonic() < deadline:
        try:
            msg = kernel.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if msg["msg_type"] == "execute_reply":
            replies[msg["parent_header"]["msg_id"]] = msg["content"]
    assert replies.get(short_id, {}).get("status") == "ok", replies
    assert replies.get(long_id, {}).get("ename") == "Interrupted", replies
    kernel.shutdown()
    rows = read_db(
        str(tmp_path / "rssd.duckdb"),
        """SELECT exec_code, exec_status, json_extract_string(elaboration, '$.started_at'),
                  json_extract_string(elaboration, '$.finished_at')
        FROM orchestration_session_exec WHERE parent_exec_id IS NULL""",
    )
    cells = {code: (status, start, end) for code, status, start, end in rows}
    assert set(cells) == {long_code, "SELECT 2 AS two"}, cells
    long_status, long_start, long_end = cells[long_code]
    short_status, short_start, short_end = cells["SELECT 2 AS two"]
    assert (long_status, short_status) == (2, 0)  # interrupted, ok
    moments = [datetime.fromisoformat(m) for m in (long_start, long_end, short_start, short_end)]
    assert moments == sorted(moments), cells  # one after the other, never both at once
