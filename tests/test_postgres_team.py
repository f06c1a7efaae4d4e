"""Many kernels on one PostgreSQL database, and what goes wrong between a kernel and its
server: interrupts, restarts, dropped connections, missing rights, passwords."""

import json
import time

import psycopg
import pytest
from conftest import TIMEOUT
from test_postgres import read_pg


def _env(tmp_path, name="state"):
    return {"XDG_STATE_HOME": str(tmp_path / name)}


def _at_once(kernels, code, cell_id):
    ids = []
    for kernel in kernels:
        msg = kernel.kc.session.msg("execute_request", {"code": code, "silent": False})
        msg["metadata"]["cellId"] = cell_id
        kernel.kc.shell_channel.send(msg)
        ids.append(msg["header"]["msg_id"])
    return [kernel.collect(msg_id) for kernel, msg_id in zip(kernels, ids)]


def _wait_for_sleep(url: str, timeout: float = 20) -> int:
    """The backend PID of the kernel's query sleeping in pg_sleep (bounded wait, polling
    the server's own view: the query may run as a cursor's FETCH)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as con:
        while time.monotonic() < deadline:
            rows = con.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND pid <> "
                "pg_backend_pid() AND datname = current_database()"
            ).fetchall()
            if rows:
                return rows[0][0]
            con.execute("SELECT pg_sleep(0.05)")
    raise TimeoutError("no pg_sleep started")


def test_two_kernels_apply_one_stateful_cell_once(kernel_factory, pg_url, tmp_path):
    a = kernel_factory(database=pg_url, env=_env(tmp_path, "a"))
    b = kernel_factory(database=pg_url, env=_env(tmp_path, "b"))
    a.ok("CREATE TABLE c (n int)")
    code = "INSERT INTO c SELECT 1 FROM pg_sleep(0.5)"
    replies = _at_once([a, b], code, "same-cell")
    assert all(r.status == "ok" for r in replies), [r.content for r in replies]
    assert sorted(r.rssd["replayed"] for r in replies) == [False, True]
    assert read_pg(pg_url, "SELECT count(*) FROM c") == [(1,)]


def test_four_kernels_with_interleaved_cells(kernel_factory, pg_url, tmp_path):
    kernels = [kernel_factory(database=pg_url, env=_env(tmp_path, str(n))) for n in range(4)]
    kernels[0].ok("CREATE TABLE log (who int, n int)")
    for n in range(3):
        for who, kernel in enumerate(kernels):
            kernel.ok(f"INSERT INTO log VALUES ({who}, {n})", cell_id=f"k{who}-{n}")
            kernel.ok(f"CREATE TEMP TABLE IF NOT EXISTS mine AS SELECT {who} AS who")
    _at_once(kernels, "INSERT INTO log VALUES (-1, -1)", "shared")
    for kernel in kernels:
        assert f"{kernels.index(kernel)}" in kernel.ok("SELECT who FROM mine").text
        kernel.shutdown()
    assert read_pg(pg_url, "SELECT count(*) FROM log") == [(13,)]
    assert read_pg(pg_url, "SELECT count(*) FROM rssd.orchestration_session") == [(4,)]
    assert read_pg(pg_url, "SELECT count(*) FROM rssd.device") == [(1,)]
    execs = read_pg(
        pg_url,
        "SELECT count(*) FROM rssd.orchestration_session_exec WHERE parent_exec_id IS NULL",
    )
    assert execs == [(1 + 4 * 3 * 2 + 4 + 4,)]


def test_the_stop_button_cancels_on_the_server(kernel_factory, pg_url, tmp_path):
    kernel = kernel_factory(database=pg_url, env=_env(tmp_path))
    kernel.ok("CREATE TEMP TABLE kept AS SELECT 1 AS n;\nSET application_name = 'mine'")
    msg_id = kernel.kc.execute("SELECT pg_sleep(60)")
    _wait_for_sleep(pg_url)
    started = time.monotonic()
    kernel.km.interrupt_kernel()
    reply = kernel.collect(msg_id, timeout=TIMEOUT)
    assert time.monotonic() - started < 2  # the issue: within a second (measured ~1 s)
    assert reply.error["ename"] == "Interrupted"
    assert "1" in kernel.ok("SELECT n FROM kept").text  # the session is intact
    assert "mine" in kernel.ok("SHOW application_name").text
    kernel.shutdown()
    status = read_pg(
        pg_url,
        "SELECT exec_status FROM rssd.orchestration_session_exec "
        "WHERE exec_code = 'SELECT pg_sleep(60)' AND parent_exec_id IS NULL",
    )
    assert status == [(2,)]


def test_a_server_restart_is_said_and_survived(kernel_factory, pg_server, pg_url, tmp_path):
    kernel = kernel_factory(database=pg_url, env=_env(tmp_path))
    kernel.ok("CREATE TEMP TABLE gone AS SELECT 1 AS n")
    kernel.ok("CREATE TABLE stays AS SELECT 1 AS n", cell_id="s")
    pg_server.restart()
    reply = kernel.ok("SELECT count(*) FROM stays")
    notes = "".join(o["content"].get("text", "") for o in reply.outputs)
    assert "connection to PostgreSQL was lost" in notes and "TEMP tables" in notes
    assert kernel.execute("SELECT * FROM gone").error["ename"] == "UndefinedTable"
    assert kernel.ok("CREATE TABLE stays AS SELECT 1 AS n", cell_id="s").rssd["replayed"] is True


def test_a_dropped_connection_during_a_stateful_cell(kernel_factory, pg_url, tmp_path):
    kernel = kernel_factory(database=pg_url, env=_env(tmp_path))
    code = "CREATE TABLE d AS SELECT 1 AS n FROM pg_sleep(30)"
    msg = kernel.kc.session.msg("execute_request", {"code": code, "silent": False})
    msg["metadata"]["cellId"] = "d"
    kernel.kc.shell_channel.send(msg)
    pid = _wait_for_sleep(pg_url)
    read_pg(pg_url, "SELECT pg_terminate_backend(%s)", [pid])
    reply = kernel.collect(msg["header"]["msg_id"])
    assert reply.error["ename"] == "ConnectionLost"
    assert "run the cell again" in reply.error["evalue"].lower()
    assert read_pg(pg_url, "SELECT to_regclass('d') IS NULL") == [(True,)]
    again = kernel.ok(code.replace("30", "0"), cell_id="d2")
    assert "connection to PostgreSQL was lost" in json.dumps(again.outputs)
    assert kernel.ok(code.replace("30", "0"), cell_id="d2").rssd["replayed"] is True
    assert read_pg(pg_url, "SELECT count(*) FROM d") == [(1,)]


def test_a_password_is_used_and_recorded_nowhere(kernel_factory, pg_server, pg_url, tmp_path):
    dbname = pg_url.rsplit("/", 1)[1]
    secret = "s3cret-Pa55word"
    pg_server.create_role("alice", secret, database=dbname)
    read_pg(pg_url, f'GRANT CREATE ON DATABASE "{dbname}" TO alice')
    url = pg_server.url(dbname, user="alice", password=secret)
    kernel = kernel_factory(database=url, env=_env(tmp_path))
    kernel.ok("CREATE TABLE a AS SELECT 1 AS n")
    failing = kernel.execute("SELECT * FROM nosuch")
    sessions = kernel.ok("%sessions")
    assert secret not in json.dumps(failing.content) + json.dumps(sessions.outputs)
    kernel.shutdown()
    tables = read_pg(
        pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rssd'"
    )
    for (table,) in tables:
        rows = read_pg(pg_url, f"SELECT CAST(t AS text) FROM rssd.{table} AS t")
        assert not [row for row in rows if secret in row[0]], table
    args = read_pg(pg_url, "SELECT args_json FROM rssd.orchestration_session")[0][0]
    assert "alice@127.0.0.1" in args


def test_a_role_without_rights_is_told_the_grants(kernel_factory, pg_server, pg_url, tmp_path):
    owner = kernel_factory(database=pg_url, env=_env(tmp_path, "owner"))
    owner.ok("SELECT 1")  # the RSSD schema exists now, owned by postgres
    dbname = pg_url.rsplit("/", 1)[1]
    pg_server.create_role("bob", "bobs-password", database=dbname)
    url = pg_server.url(dbname, user="bob", password="bobs-password")
    bob = kernel_factory(database=url, env=_env(tmp_path, "bob"))
    reply = bob.execute("SELECT 1")
    assert reply.error["ename"] == "Database Unavailable"
    assert "GRANT USAGE" in reply.error["evalue"] and "bob" in reply.error["evalue"]
    assert "bobs-password" not in json.dumps(reply.content)


def test_an_unreachable_server_is_named(kernel_factory, tmp_path):
    url = "postgresql://carol:hidden-pw@127.0.0.1:1/warehouse?connect_timeout=3"
    kernel = kernel_factory(database=url, env=_env(tmp_path))
    reply = kernel.execute("SELECT 1")
    assert reply.error["ename"] == "Database Unavailable"
    assert "127.0.0.1:1" in reply.error["evalue"] and "warehouse" in reply.error["evalue"]
    assert "hidden-pw" not in json.dumps(reply.content)


def test_records_wait_in_the_journal_while_the_server_is_down(
    kernel_factory, pg_server, pg_url, tmp_path
):
    kernel = kernel_factory(database=pg_url, env=_env(tmp_path))
    kernel.ok("SELECT 1")
    pg_server.stop()
    try:
        down = kernel.execute("SELECT 'while down'")
        assert down.error["ename"] == "Database Unavailable"
    finally:
        pg_server.start()
    kernel.ok("SELECT 2")
    kernel.shutdown()
    codes = [
        code
        for (code,) in read_pg(
            pg_url,
            "SELECT exec_code FROM rssd.orchestration_session_exec WHERE parent_exec_id IS NULL",
        )
    ]
    assert "SELECT 'while down'" in codes and "SELECT 2" in codes


@pytest.mark.parametrize("command", ["%tables", "%state", "%history", "%sessions"])
def test_commands_work_on_postgresql(kernel_factory, pg_url, tmp_path, command):
    kernel = kernel_factory(database=pg_url, env=_env(tmp_path))
    kernel.ok("CREATE TABLE listed AS SELECT 1 AS n", cell_id="x")
    reply = kernel.ok(command)
    expected = {"%tables": "listed", "%state": "EXECUTED", "%history": "CREATE TABLE listed",
                "%sessions": "1"}[command]  # fmt: skip
    assert expected in reply.text
    forget = kernel.ok("%forget " + kernel.ok("%state").text.split("\n")[3].split()[0])
    assert "Forgot" in forget.text


def test_a_role_that_may_only_read_the_rssd_is_told_the_grants(
    kernel_factory, pg_server, pg_url, tmp_path
):
    owner = kernel_factory(database=pg_url, env=_env(tmp_path, "owner"))
    owner.ok("SELECT 1")
    dbname = pg_url.rsplit("/", 1)[1]
    pg_server.create_role("reader", "readers-pw", database=dbname)
    read_pg(pg_url, "GRANT USAGE ON SCHEMA rssd TO reader")
    read_pg(pg_url, "GRANT SELECT ON ALL TABLES IN SCHEMA rssd TO reader")
    url = pg_server.url(dbname, user="reader", password="readers-pw")
    reader = kernel_factory(database=url, env=_env(tmp_path, "reader"))
    reply = reader.execute("SELECT 1")
    assert reply.error["ename"] == "Database Unavailable", reply.content
    assert "GRANT" in reply.error["evalue"] and "may not write" in reply.error["evalue"]


def test_open_takes_a_url_or_key_value_pairs(kernel_factory, pg_server, pg_url, tmp_path):
    kernel = kernel_factory(env=_env(tmp_path))  # on DuckDB
    dbname = pg_url.rsplit("/", 1)[1]
    pairs = f"host=127.0.0.1 port={pg_server.port} dbname={dbname} user=postgres"
    opened = kernel.ok(f"%open {pairs}")
    assert "Opened" in opened.text
    assert "integer" in kernel.ok("SELECT 1 AS n").text  # PostgreSQL's type name
    kernel.ok(f"%open {tmp_path / 'back.duckdb'}")
    assert "INTEGER" in kernel.ok("SELECT 1 AS n").text
