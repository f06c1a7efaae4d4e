"""The `rssd` command on PostgreSQL: `rssd sessions|log|state|show` and `rssd export-rssd`
read the RSSD schema of a PostgreSQL database (a URL or libpq's key=value pairs), recover
what kernels that died journaled, never show a password, and fail with clean messages."""

import json
import os
import sqlite3
import subprocess
import sys
import uuid

import psycopg
import pytest
from psycopg import sql
from test_cli import make_notebook

from rssd_kernel.journal import SUFFIX, TABLES, frame

BIN = os.path.dirname(sys.executable)
RSSD = os.path.join(BIN, "rssd")
READERS = ("sessions", "log", "state", "show")
CELLS = ["CREATE TABLE t AS SELECT 1 AS a", "SELECT * FROM t", "SELECT * FROM nosuch"]


def rssd(*args, state, env=None, cwd=None, timeout=120):
    """The venv's `rssd` script, with journals in the test's own state folder."""
    command = [RSSD] if os.path.exists(RSSD) else [sys.executable, "-m", "rssd_kernel.cli"]
    clean = {k: v for k, v in os.environ.items() if k not in ("RSSD_DATABASE", "RSSD_PG_SCHEMA")}
    clean["XDG_STATE_HOME"] = str(state)
    return subprocess.run(
        [*command, *args], cwd=cwd, env={**clean, **(env or {})},
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def ok(result) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def refused(result) -> str:
    """A clean error: exit code 1, a message, no traceback."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("rssd: ") and "Traceback" not in result.stderr
    return result.stderr


def run_notebook(folder, url, state, env=None, cells=CELLS):
    """`rssd run` of a small notebook on `url`; its last cell fails (an error to count)."""
    make_notebook(folder / "nb.ipynb", cells)
    result = rssd("run", "nb.ipynb", "--database", url, state=state, env=env, cwd=folder)
    assert result.returncode == 1 and "nosuch" in result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def pg_rows(url: str, query: str, params=None) -> list:
    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(query, params).fetchall()


@pytest.fixture(scope="module")
def ran(pg_server, tmp_path_factory):
    """A database on which one notebook ran (3 cells, the last failing), and the state
    folder its kernel journaled in."""
    folder = tmp_path_factory.mktemp("pg_cli")
    url, state = pg_server.create_database(), folder / "state"
    run_notebook(folder, url, state)
    return url, state, folder


def test_the_readers_read_the_rssd_schema(ran, pg_server):
    url, state, folder = ran
    sessions = json.loads(ok(rssd("sessions", "--database", url, "--json", state=state)))
    assert len(sessions) == 1
    session = sessions[0]
    assert session["notebook"] == str(folder / "nb.ipynb")
    assert (session["cells"], session["errors"]) == (3, 1)
    assert session["started"].startswith("20") and session["finished"] is not None
    table = ok(rssd("sessions", "--database", url, state=state))
    assert table.splitlines()[0].split() == [
        "session", "started", "finished", "device", "notebook", "cells", "errors",
    ]  # fmt: skip
    assert session["session"] in table and "nb.ipynb" in table

    log = json.loads(ok(rssd("log", session["session"], "--database", url, "--json", state=state)))
    cells = [row for row in log if row["parent"] is None]
    assert [row["status"] for row in cells] == [0, 0, 1]
    assert all(row["nature"] == "SQL-statement" for row in log if row["parent"] is not None)
    assert "nosuch" in cells[2]["what"] and isinstance(cells[0]["ms"], float)
    assert cells[0]["exec"] in ok(rssd("log", session["session"], "--database", url, state=state))

    show = ok(rssd("show", cells[0]["exec"], "--database", url, state=state))
    assert "code:\nCREATE TABLE t AS SELECT 1 AS a\n" in show
    assert f"session: {session['session']}" in show
    shown = json.loads(ok(rssd("show", cells[2]["exec"], "--database", url, "--json", state=state)))
    assert shown[0]["status"] == 1 and "nosuch" in shown[0]["error"]

    state_rows = json.loads(ok(rssd("state", "--database", url, "--json", state=state)))
    assert [(r["state"], r["session"]) for r in state_rows] == [("EXECUTED", session["session"])]
    assert state_rows[0]["key"] and state_rows[0]["transitioned_at"].startswith("20")

    # $RSSD_DATABASE, and libpq's key=value pairs, name the database too
    by_env = rssd("sessions", "--json", state=state, env={"RSSD_DATABASE": url})
    assert json.loads(ok(by_env)) == sessions
    conninfo = f"host=127.0.0.1 port={pg_server.port} dbname={url.rsplit('/', 1)[1]} user=postgres"
    assert json.loads(ok(rssd("sessions", "--database", conninfo, "--json", state=state))) == (
        sessions
    )

    missing = refused(rssd("show", "no-such-exec", "--database", url, state=state))
    assert "No exec no-such-exec in PostgreSQL database" in missing


def test_export_rssd_from_postgres_twice(ran, tmp_path):
    url, state, _ = ran
    out = str(tmp_path / "rssd.sqlite")
    for _ in range(2):  # the second export adds nothing and duplicates nothing
        said = ok(rssd("export-rssd", out, "--database", url, state=state))
        assert said.startswith("Exported the RSSD of PostgreSQL database")
        assert "orchestration_session_exec " in said
        lite = sqlite3.connect(out)
        try:
            for table, key in (
                ("device", "device_id"),
                ("orchestration_session", "orchestration_session_id"),
                ("orchestration_session_entry", "orchestration_session_entry_id"),
                ("orchestration_session_exec", "orchestration_session_exec_id"),
                ("orchestration_session_log", "orchestration_session_log_id"),
                ("orchestration_session_issue", "orchestration_session_issue_id"),
                ("orchestration_session_state", "orchestration_session_state_id"),
            ):
                query = f'SELECT CAST("{key}" AS TEXT) FROM rssd."{table}"'
                expected = sorted(str(k) for (k,) in pg_rows(url, query))
                exported = sorted(k for (k,) in lite.execute(f'SELECT "{key}" FROM "{table}"'))
                assert exported == expected and expected, table
            assert lite.execute("PRAGMA foreign_key_check").fetchall() == []
            codes = lite.execute(
                "SELECT exec_code, exec_status FROM orchestration_session_exec "
                "WHERE parent_exec_id IS NULL ORDER BY exec_code"
            ).fetchall()
            assert codes == [(CELLS[0], 0), (CELLS[2], 1), (CELLS[1], 0)]
            started, finished = lite.execute(
                "SELECT orch_started_at, orch_finished_at FROM orchestration_session"
            ).fetchone()
        finally:
            lite.close()
        # timestamps as ISO text, UUIDs as text (SQLite's side of the RSSD is text)
        assert isinstance(started, str) and started[4] == "-" and started[10] == " "
        assert finished >= started


def test_a_password_is_never_shown(pg_server, tmp_path):
    """A role with a password runs a notebook (the kernel makes the RSSD schema, its own)
    and reads and exports its RSSD; a role without rights, a wrong password and an
    unreachable server fail: the password shows nowhere."""
    admin = pg_server.create_database()
    name = admin.rsplit("/", 1)[1]
    state, secret = tmp_path / "state", f"pw-{uuid.uuid4().hex[:10]}"
    writer, stranger = f"w_{uuid.uuid4().hex[:8]}", f"s_{uuid.uuid4().hex[:8]}"
    pg_server.create_role(writer, secret, database=name)
    pg_server.create_role(stranger, secret)
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(
            sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(writer)
            )
        )
    url = pg_server.url(name, writer, secret)
    outputs = [run_notebook(tmp_path, url, state)]
    assert f"database postgresql://{writer}@127.0.0.1:{pg_server.port}/{name}" in (
        outputs[0].stderr
    )  # the run's summary names the database without its password
    outputs.append(rssd("sessions", "--database", url, state=state))
    lines = ok(outputs[-1]).splitlines()
    assert len(lines) == 2  # the header and the one session
    session = lines[1].split()[0]
    outputs.append(rssd("log", session, "--database", url, "--json", state=state))
    execs = json.loads(ok(outputs[-1]))
    assert len(execs) == 6  # three cells, each with its statement
    out = str(tmp_path / "rssd.sqlite")
    outputs += [
        rssd("show", execs[0]["exec"], "--database", url, state=state),
        rssd("state", "--database", url, "--json", state=state),
        rssd("export-rssd", out, "--database", url, state=state),
    ]
    assert all(r.returncode == 0 for r in outputs[1:]), outputs
    outputs.append(rssd("show", "nosuch", "--database", url, state=state))
    assert "No exec nosuch in PostgreSQL database" in refused(outputs[-1])
    wrong = pg_server.url(name, writer, secret + "x")
    outputs += [
        rssd("sessions", "--database", pg_server.url(name, stranger, secret), state=state),
        rssd("sessions", "--database", wrong, state=state),
        rssd("export-rssd", out, "--database", wrong, state=state),
        rssd("sessions", "--database", f"postgresql://{writer}:{secret}@127.0.0.1:1/x",
             state=state),
    ]  # fmt: skip
    assert f"The role {stranger} may not read the RSSD of" in refused(outputs[-4])
    assert "password authentication failed" in refused(outputs[-3])
    for result in outputs:
        assert secret not in result.stdout + result.stderr, result
        assert "Traceback" not in result.stderr
    assert secret not in (tmp_path / "nb.ipynb").read_text()
    with open(out, "rb") as handle:
        assert secret.encode() not in handle.read()


def test_an_unreachable_server_is_a_clean_error(tmp_path):
    url = "postgresql://someone:hunter2-secret@127.0.0.1:1/nothing"
    for args in (*([reader] for reader in ("sessions", "state")), ["log", "x"], ["show", "x"]):
        message = refused(rssd(*args, "--database", url, state=tmp_path))
        assert 'Cannot connect to PostgreSQL, database "nothing" on 127.0.0.1:1' in message
        assert "hunter2" not in message and "%open" not in message
    message = refused(rssd("export-rssd", str(tmp_path / "o.sqlite"), "--database", url,
                           state=tmp_path))  # fmt: skip
    assert "Cannot connect to PostgreSQL" in message and "hunter2" not in message
    assert not (tmp_path / "o.sqlite").exists()


def test_a_url_libpq_cannot_parse_is_a_clean_error(tmp_path):
    """libpq quotes a URL it cannot parse in its error, password and all: not shown."""
    url = "postgresql://someone:hunter2-secret@[::1/nothing"
    for args in (["sessions"], ["export-rssd", str(tmp_path / "o.sqlite")]):
        message = refused(rssd(*args, "--database", url, state=tmp_path))
        assert "connection string is not valid" in message and "hunter2" not in message
    make_notebook(tmp_path / "nb.ipynb", ["SELECT 1"])
    run = rssd("run", "nb.ipynb", "--database", url, state=tmp_path, cwd=tmp_path)
    assert run.returncode == 1 and "connection string is not valid" in run.stderr
    assert "hunter2" not in run.stdout + run.stderr and "Traceback" not in run.stderr


def test_a_database_without_rssd_tables_is_a_clean_error(pg_url, tmp_path):
    for args in (["sessions"], ["state"], ["log", "x"], ["show", "x"]):
        message = refused(rssd(*args, "--database", pg_url, state=tmp_path))
        assert "(RSSD schema rssd) holds no RSSD tables; run a notebook on it first." in message
    out = str(tmp_path / "o.sqlite")
    message = refused(rssd("export-rssd", out, "--database", pg_url, state=tmp_path))
    assert "holds no RSSD tables; nothing to export." in message


def test_the_rssd_schema_is_named_by_rssd_pg_schema(pg_url, tmp_path):
    state, env = tmp_path / "state", {"RSSD_PG_SCHEMA": "audit"}
    run_notebook(tmp_path, pg_url, state, env=env)
    assert pg_rows(pg_url, "SELECT count(*) FROM audit.orchestration_session") == [(1,)]
    sessions = json.loads(ok(rssd("sessions", "--database", pg_url, "--json", state=state,
                                  env=env)))  # fmt: skip
    assert len(sessions) == 1 and sessions[0]["cells"] == 3
    message = refused(rssd("sessions", "--database", pg_url, state=state))  # schema rssd
    assert "(RSSD schema rssd) holds no RSSD tables" in message


def test_what_a_dead_kernel_journaled_is_read(pg_url, tmp_path, monkeypatch):
    """A kernel that died left a cell's record in its journal (in the state folder, not in
    the database): the readers write it into the RSSD first, and the journal is gone."""
    state = tmp_path / "state"
    run_notebook(tmp_path, pg_url, state)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.delenv("RSSD_PG_SCHEMA", raising=False)
    from rssd_kernel.engines.postgres import PostgresEngine
    from rssd_kernel.settings import Settings

    base = PostgresEngine(pg_url, Settings(), None).journal_base
    row = list(pg_rows(pg_url, "SELECT * FROM rssd.orchestration_session_exec "
                               "WHERE parent_exec_id IS NULL LIMIT 1")[0])  # fmt: skip
    row[0], row[7] = str(uuid.uuid4()), "SELECT 'journaled by a kernel that died'"
    journal = f"{base}{SUFFIX}.p999999-0badf00d"  # no live process holds its lock
    os.makedirs(os.path.dirname(journal), exist_ok=True)
    with open(journal, "wb") as handle:
        handle.write(frame({TABLES[0]: [row], TABLES[1]: [], TABLES[2]: []}))

    shown = ok(rssd("show", row[0], "--database", pg_url, state=state))
    assert "SELECT 'journaled by a kernel that died'" in shown
    assert not os.path.exists(journal)
    session = json.loads(ok(rssd("sessions", "--database", pg_url, "--json", state=state)))[0]
    assert session["cells"] == 4


def test_without_psycopg_the_install_command_is_named(tmp_path):
    code = (
        "import sys; sys.modules['psycopg'] = None; from rssd_kernel.cli import main; "
        "sys.exit(main(sys.argv[1:]))"
    )
    for args in (["sessions"], ["export-rssd", str(tmp_path / "o.sqlite")]):
        result = subprocess.run(
            [sys.executable, "-c", code, *args, "--database", "postgresql://u:pw@h/d"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        message = refused(result)
        assert "need psycopg 3 and pglast" in message and "pip install" in message
