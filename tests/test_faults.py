"""Faults: crashes, a full disk, unusable files, a second kernel, concurrent requests."""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import duckdb
import pytest
from conftest import TIMEOUT, Kernel, read_db
from jupyter_client.manager import KernelManager

from rssd_kernel.database import open_database


def _integrity(db: str) -> duckdb.DuckDBPyConnection:
    """Open the file as the next kernel would (which first writes what a crashed kernel left
    in its journal) and check what the DDL's constraints and our conventions promise."""
    open_database(db).close()
    con = duckdb.connect(db)
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


def test_kill_9_at_random_moments(tmp_path):
    """50 crashes across plain cells, stateful cells and RSSD writes: afterwards the file
    opens, constraints hold, no stateful cell is half-applied, and every exec whose reply
    reached the client is recorded."""
    db = str(tmp_path / "crash.duckdb")
    rng = random.Random(20261123)
    replied: list[str] = []
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
            sent[kernel.kc.execute(code)] = (marker, choice)
        time.sleep(rng.uniform(0.0, 0.6))  # the moment of the crash is the trial's input
        process = kernel.km.provisioner.process
        process.kill()
        process.wait(timeout=TIMEOUT)
        while True:  # replies that reached the client before the crash
            try:
                msg = kernel.kc.shell_channel.get_msg(timeout=0.05)
            except Exception:
                break
            parent = msg["parent_header"].get("msg_id")
            if msg["msg_type"] == "execute_reply" and parent in sent:
                replied.append(sent[parent][0])
        kernel.kill()  # release the channels and the connection file
        con = _integrity(db)
        tables = {
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 't%c%'"
            ).fetchall()
        }
        applied = {
            json.loads(e)["key"]
            for (e,) in con.execute(
                "SELECT elaboration FROM orchestration_session_state WHERE to_state = 'EXECUTED'"
            ).fetchall()
        }
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
        # A table exists exactly when its cell's state row does.
        assert len(tables) == len([k for k in applied if k.startswith("cell-")]), (tables, applied)
        for marker in replied:
            assert any(f"-- {marker}\n" in c or f"@name {marker}\n" in c for c in codes), marker
    assert replied, "no reply ever arrived: the trials tested nothing"
    con = duckdb.connect(db, read_only=True)
    (applied,) = con.execute("SELECT count(*) FROM orchestration_session_state").fetchone()
    (cells,) = con.execute(
        "SELECT count(*) FROM orchestration_session_exec WHERE parent_exec_id IS NULL"
    ).fetchone()
    con.close()
    assert applied > 0 and cells > len(replied) / 2, (applied, cells, len(replied))
    print(
        f"{len(replied)} replies reached the client; {cells} cells and {applied} state rows recorded"
    )


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


def test_a_second_kernel_gets_the_lock_error_and_the_first_goes_on(kernel_factory):
    first = kernel_factory()
    first.ok("CREATE TABLE shared AS SELECT 1 AS a")
    second = kernel_factory()
    reply = second.execute("SELECT * FROM shared")
    assert reply.content["ename"] == "Database Locked"
    assert str(first.km.provisioner.process.pid) in reply.content["evalue"]
    assert "<td>1</td>" in first.ok("SELECT count(*) AS n FROM shared").html


def test_concurrent_requests_on_subshells_are_serialised(kernel, tmp_path):
    control = kernel.kc.control_channel
    msg = kernel.kc.session.msg("create_subshell_request", {})
    control.send(msg)
    reply = control.get_msg(timeout=TIMEOUT)
    subshell = reply["content"]["subshell_id"]
    long_id = kernel.kc.execute(
        "SELECT count(*) AS n FROM range(300000000) a WHERE hash(a.range) % 7 = 1"
    )
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
    kernel.kc.shell_channel.send(request)
    replies = {}
    deadline = time.monotonic() + TIMEOUT
    while len(replies) < 2 and time.monotonic() < deadline:
        msg = kernel.kc.get_shell_msg(timeout=TIMEOUT)
        replies[msg["parent_header"]["msg_id"]] = msg["content"]["status"]
    assert replies == {long_id: "ok", request["header"]["msg_id"]: "ok"}
    kernel.shutdown()
    rows = read_db(
        str(tmp_path / "rssd.duckdb"),
        """SELECT count(*) FROM orchestration_session_exec
        WHERE parent_exec_id IS NULL AND exec_status = 0""",
    )
    assert rows == [(2,)]
