"""Stateful cells run once; named results reach later cells, across restarts."""

import json
import time

import duckdb
import pytest
from conftest import read_db

from rssd_kernel.database import open_database

TYPES = {
    "DECIMAL(10,2)": "1.10::DECIMAL(10,2)",
    "HUGEINT": "170141183460469231731687303715884105727::HUGEINT",
    "DATE": "DATE '2024-01-02'",
    "TIME": "TIME '12:34:56.789'",
    "TIMESTAMP": "TIMESTAMP '2024-01-02 03:04:05.123456'",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ '2024-01-02 03:04:05+02'",
    "INTERVAL": "INTERVAL '1 month 2 days 3 hours'",
    "BLOB": "'\\x00\\xFFab'::BLOB",
    "UUID": "UUID '12345678-1234-5678-1234-567812345678'",
    "ENUM('sad', 'ok')": "'ok'::ENUM('sad', 'ok')",
    "BIT": "'0101'::BIT",
    "VARCHAR[]": "['a,b', 'c''d', NULL, 'NULL']",
    "INTEGER[3]": "[1, 2, 3]::INTEGER[3]",
    "STRUCT(a INTEGER, b VARCHAR)": "{'a': 1, 'b': 'x y'}",
    "MAP(VARCHAR, INTEGER[])": "MAP {'k': [1, 2]}",
    "UNION(num INTEGER, str VARCHAR)": "union_value(str := '2')::UNION(num INTEGER, str VARCHAR)",
    "DOUBLE": "'nan'::DOUBLE",
    "FLOAT": "'-inf'::FLOAT",
    "VARCHAR": "NULL::VARCHAR",
}


def test_stateful_cell_runs_once_and_replays(kernel, tmp_path):
    code = "CREATE TABLE t AS SELECT range AS id FROM range(3);\nINSERT INTO t VALUES (99);"
    first = kernel.ok(code, cell_id="cell-a")
    assert first.rssd == {**first.rssd, "kind": "stateful", "replayed": False}
    assert "stateful" in first.text
    second = kernel.ok(code, cell_id="cell-a")  # the same notebook cell, run again
    assert second.rssd["replayed"] is True
    assert "replayed" in second.text and "%forget" in second.text
    assert "1 row inserted" in second.text
    assert "<td>4</td>" in kernel.ok("SELECT count(*) AS n FROM t").html
    kernel.restart()
    third = kernel.ok(code)
    assert third.rssd["replayed"] is True
    kernel.shutdown()
    db = str(tmp_path / "rssd.duckdb")
    assert read_db(db, "SELECT count(*) FROM t") == [(4,)]
    states = read_db(
        db,
        """SELECT from_state, to_state, elaboration, session_entry_id
                            FROM orchestration_session_state""",
    )
    assert [(s[0], s[1]) for s in states] == [("INITIAL", "EXECUTED")]
    elaboration = json.loads(states[0][2])
    assert elaboration["statement_types"] == ["CREATE", "INSERT"] and elaboration["code_hash"]
    assert states[0][3] is not None
    replays = read_db(
        db,
        """SELECT exec_status, json_extract(elaboration, '$.replayed')
                             FROM orchestration_session_exec WHERE exec_code = ? AND parent_exec_id IS NULL
                             ORDER BY orchestration_session_exec_id""",
        [code],
    )
    assert [r[0] for r in replays] == [0, 0, 0]
    assert [r[1] for r in replays][1:] == ["true", "true"]


def test_reads_and_session_cells_run_every_time(kernel):
    for code in [
        "SELECT 1",
        "SET VARIABLE x = 1",
        "CREATE OR REPLACE TEMP TABLE tt AS SELECT 1 AS a",
    ]:
        kernel.ok(code)
        assert kernel.ok(code).rssd["replayed"] is False


def test_failed_stateful_cell_rolls_back_and_can_run_again(kernel):
    code = "CREATE TABLE f (a INTEGER); INSERT INTO f VALUES (1); INSERT INTO f VALUES ('x');"
    reply = kernel.execute(code)
    assert reply.status == "error"
    assert (
        "<td>0</td>"
        in kernel.ok("SELECT count(*) AS n FROM duckdb_tables() WHERE table_name = 'f'").html
    )
    fixed = "CREATE TABLE f (a INTEGER); INSERT INTO f VALUES (1); INSERT INTO f VALUES (2);"
    kernel.ok(fixed)
    assert "<td>2</td>" in kernel.ok("SELECT count(*) AS n FROM f").html


def test_named_results_flow_as_values_and_tables_across_restart(kernel):
    kernel.ok(
        "CREATE TABLE sales AS SELECT range AS id, range * 1.5::DECIMAL(10,2) AS amount FROM range(10)"
    )
    kernel.ok("-- @name total\nSELECT sum(amount) AS total FROM sales")
    kernel.ok("-- @name top\nSELECT id, amount FROM sales ORDER BY amount DESC LIMIT 3")
    kernel.restart()
    reply = kernel.ok("SELECT $total AS t, typeof($total) AS ty")
    assert "67.50" in reply.html and "DECIMAL" in reply.html
    reply = kernel.ok(
        "SELECT count(*) AS n, sum(amount) AS s, typeof(any_value(amount)) AS ty FROM top"
    )
    assert "<td>3</td>" in reply.html and "DECIMAL(" in reply.html
    reply = kernel.ok("SELECT s.id FROM sales s JOIN top USING (id) ORDER BY 1")
    assert "<td>9</td>" in reply.html


def test_named_result_of_a_skipped_producer(kernel):
    producer = "-- @name made\nCREATE TABLE m AS SELECT 1 AS x; SELECT 41 AS v"
    kernel.ok(producer)
    kernel.restart()
    assert kernel.ok(producer).rssd["replayed"] is True
    assert "<td>42</td>" in kernel.ok("SELECT $made + 1 AS answer").html


def test_named_result_errors(kernel):
    kernel.ok("-- @name several\nSELECT * FROM range(3)")
    reply = kernel.execute("SELECT $several")
    assert (
        reply.content["ename"] == "Named Result Error" and "single value" in reply.content["evalue"]
    )
    reply = kernel.execute("SELECT $missing")
    assert (
        reply.content["ename"] == "Named Result Error"
        and "no named result 'missing'" in reply.content["evalue"]
    )
    kernel.ok("CREATE TABLE existing (a INTEGER)")
    reply = kernel.execute("-- @name existing\nSELECT 1")
    assert reply.content["ename"] == "Named Result Error" and "hide" in reply.content["evalue"]


def test_result_too_large_to_record(kernel):
    kernel.ok("%config result_max_rows=100")
    reply = kernel.ok("-- @name big\nSELECT * FROM range(1000)")
    assert any("not recorded" in o["content"].get("text", "") for o in reply.outputs)
    assert "first 50" in reply.text
    reply = kernel.execute("SELECT count(*) FROM big")
    assert reply.status == "error" and "Materialise" in reply.content["evalue"]


def test_drift_of_a_named_stateful_cell_is_refused(kernel):
    kernel.ok("-- @name load\nCREATE TABLE d AS SELECT 1 AS a")
    reply = kernel.execute("-- @name load\nCREATE TABLE d AS SELECT 2 AS a")
    assert reply.status == "error" and reply.content["ename"] == "Stateful Cell Error"
    assert "different code" in reply.content["evalue"] and "%forget load" in reply.content["evalue"]
    # Whitespace and comments are not changes.
    assert kernel.ok("-- @name load\n-- a comment\nCREATE  TABLE d AS\n SELECT 1 AS a").rssd[
        "replayed"
    ]


def test_forget_applies_again_and_state_is_append_only(kernel, tmp_path):
    kernel.ok("-- @name counter\nCREATE OR REPLACE TABLE c AS SELECT 1 AS n")
    state = kernel.ok("%state")
    assert "counter" in state.text and "EXECUTED" in state.text
    kernel.ok("%forget counter")
    assert (
        kernel.ok("-- @name counter\nCREATE OR REPLACE TABLE c AS SELECT 1 AS n").rssd["replayed"]
        is False
    )
    reply = kernel.execute("%forget nosuch")
    assert reply.status == "error" and "not applied" in reply.content["evalue"]
    kernel.shutdown()
    rows = read_db(
        str(tmp_path / "rssd.duckdb"),
        """SELECT from_state, to_state FROM orchestration_session_state
        ORDER BY transitioned_at, orchestration_session_state_id""",
    )
    assert rows == [("INITIAL", "EXECUTED"), ("EXECUTED", "FORGOTTEN"), ("FORGOTTEN", "EXECUTED")]


def test_unnamed_keys_are_shown_and_can_be_forgotten(kernel):
    reply = kernel.ok("CREATE TABLE u AS SELECT 1 AS a")
    key = reply.rssd["key"]
    assert key.startswith("cell-") and key in kernel.ok("%state").text
    kernel.ok(f"%forget {key}")


def test_transaction_control_in_a_stateful_cell_is_refused(kernel):
    reply = kernel.execute("BEGIN; CREATE TABLE x (a INTEGER); COMMIT;")
    assert reply.status == "error" and reply.content["ename"] == "Stateful Cell Error"
    assert "@always" in reply.content["evalue"]
    kernel.ok("-- @always\nBEGIN; CREATE TABLE x (a INTEGER); COMMIT;")
    kernel.ok("BEGIN")
    reply = kernel.execute("CREATE TABLE y (a INTEGER)")
    assert reply.status == "error" and "still open" in reply.content["evalue"]
    kernel.ok("ROLLBACK")
    kernel.ok("CREATE TABLE y (a INTEGER)")


def test_once_and_always_directives(kernel):
    once = "-- @once\nSELECT 7 AS seven"
    assert kernel.ok(once, cell_id="once").rssd["kind"] == "stateful"
    assert kernel.ok(once, cell_id="once").rssd["replayed"] is True
    kernel.ok("CREATE TABLE a (x INTEGER)")
    always = "-- @always\nINSERT INTO a VALUES (1)"
    kernel.ok(always)
    kernel.ok(always)
    assert "<td>2</td>" in kernel.ok("SELECT count(*) AS n FROM a").html


def test_typed_round_trip_through_transition_result(kernel):
    columns = ", ".join(f"{sql} AS c{i}" for i, sql in enumerate(TYPES.values()))
    kernel.ok(f"-- @name typed\nSELECT {columns}")
    kernel.restart()
    checks = " AND ".join(
        f"typeof(t.c{i}) = typeof(o.c{i}) AND (t.c{i} IS NOT DISTINCT FROM o.c{i} OR (isnan(TRY_CAST(t.c{i} AS DOUBLE)) AND isnan(TRY_CAST(o.c{i} AS DOUBLE))))"
        if name in ("DOUBLE", "FLOAT")
        else f"typeof(t.c{i}) = typeof(o.c{i}) AND t.c{i}::VARCHAR IS NOT DISTINCT FROM o.c{i}::VARCHAR"
        f" AND t.c{i} IS NOT DISTINCT FROM o.c{i}"
        for i, name in enumerate(TYPES)
    )
    reply = kernel.ok(f"SELECT {checks} AS same FROM typed t, (SELECT {columns}) o")
    assert "<td>true</td>" in reply.html, reply.text


@pytest.mark.parametrize("delay", [0.05, 0.3, 0.7, 1.2, 1.8, 4.0])
def test_kill_during_a_long_stateful_cell(kernel_factory, tmp_path, delay):
    """kill -9 at some moment: afterwards the effects and the state row agree."""
    kernel = kernel_factory()
    code = "CREATE TABLE big AS SELECT range AS id, hash(range) AS h FROM range(30000000)"
    kernel.kc.execute(code)
    time.sleep(delay)  # the moment of the kill is the test's input, not a synchronisation
    kernel.kill()
    db = str(tmp_path / "rssd.duckdb")
    # Open it as the next kernel would (a kill before the first open leaves no RSSD yet).
    open_database(db).close()
    con = duckdb.connect(db)
    tables = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'big'"
    ).fetchall()[0][0]
    states = con.execute(
        "SELECT count(*) FROM orchestration_session_state WHERE to_state = 'EXECUTED'"
    ).fetchall()[0][0]
    if tables:
        assert con.execute("SELECT count(*) FROM big").fetchall() == [(30000000,)]
    con.close()
    assert tables == states
