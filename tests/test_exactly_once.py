"""Exactly-once through a real kernel: every kind of statement, run as a notebook cell
three times: once, again in the same kernel (JupyterLab's re-run: same cell ids), and once
more after a restart (nbclient-style: no cell ids, occurrences of each text). A persistent
change is applied exactly once, a re-run of a stateful cell never fails, and read and
session cells run every time."""

import pytest
from conftest import read_db

STATEFUL, SESSION, READ, REFUSED = "stateful", "session", "read", "refused"

# (cell, expected kind). Several texts appear twice on purpose: identical cells are
# separate cells. The refused ones fail the same way on every run and change nothing.
NOTEBOOK = [
    ("CREATE TABLE weather (temp DOUBLE, city VARCHAR)", STATEFUL),
    ("CREATE TABLE vault (secret VARCHAR)", STATEFUL),
    ("CREATE SCHEMA s", STATEFUL),
    ("CREATE TABLE s.temp (x INT)", STATEFUL),
    ("INSERT INTO weather VALUES (1.5, 'a'), (2.5, 'b')", STATEFUL),
    ("CREATE OR REPLACE TEMP TABLE staging (x INT)", SESSION),
    ("INSERT INTO staging VALUES (1)", SESSION),
    ("CREATE TABLE staging (x INT)", STATEFUL),
    ("INSERT INTO rssd.main.staging VALUES (1)", STATEFUL),
    ("CREATE TABLE log (msg VARCHAR)", STATEFUL),
    ("INSERT INTO log VALUES ('same')", STATEFUL),
    ("INSERT INTO log VALUES ('same')", STATEFUL),
    ("CREATE TABLE p AS PIVOT weather ON city USING count(*)", STATEFUL),
    ("PREPARE ins AS INSERT INTO log VALUES ('prepared')", SESSION),
    ("EXECUTE ins", STATEFUL),
    ("EXPLAIN ANALYZE INSERT INTO log VALUES ('explained')", STATEFUL),
    ("CREATE SEQUENCE seq", STATEFUL),
    ("SELECT nextval('seq') AS n", STATEFUL),
    ("WITH q AS (SELECT 'with' AS m) INSERT INTO log SELECT * FROM q", STATEFUL),
    ("WITH q AS (SELECT 2 AS x) INSERT INTO staging SELECT * FROM q", SESSION),
    ("TRUNCATE s.temp", STATEFUL),
    ("CREATE SEQUENCE seq2", STATEFUL),
    ("DROP SEQUENCE seq2", STATEFUL),
    ("CREATE SEQUENCE seq2", STATEFUL),
    ('CREATE TABLE "select" ("from" INT); INSERT INTO "select" VALUES (1)', STATEFUL),
    ("CREATE TABLE year (x INT)", STATEFUL),
    ("SET VARIABLE v = 42", SESSION),
    ("SELECT getvariable('v') AS v", READ),
    ("ATTACH IF NOT EXISTS 'other.duckdb' AS o", SESSION),
    ("-- @always\nCREATE TABLE IF NOT EXISTS o.main.src (x INT)", "always"),
    ("CREATE TABLE o.t AS SELECT 1 AS x", REFUSED),
    ("COPY FROM DATABASE o TO rssd", STATEFUL),
    ("USE o", SESSION),
    ("CREATE TABLE q (x INT)", REFUSED),
    ("USE rssd", SESSION),
    ("CREATE TEMP TABLE z AS SELECT 1 AS a; CREATE TABLE zz AS SELECT * FROM z", REFUSED),
    ("SELECT count(*) || ' staged' AS n FROM staging", READ),
    ("SELECT count(*) AS n FROM log", READ),
]

SNAPSHOT = """
SELECT table_catalog, table_schema, table_name FROM information_schema.tables
WHERE table_catalog = 'rssd' AND table_name NOT LIKE 'orchestration_%'
  AND table_name NOT IN ('device', 'rssd_schema_version', 'rssd_change_counter') ORDER BY ALL
"""


def _run(kernel, with_ids: bool) -> list:
    replies = []
    for index, (code, _) in enumerate(NOTEBOOK):
        cell_id = f"cell-{index}" if with_ids else None
        replies.append(kernel.execute(code, cell_id=cell_id))
    return replies


def _tables(path: str) -> dict:
    """Each user table of the file with its rows (as text, sorted), and each sequence."""
    found = {}
    for _catalog, schema, name in read_db(path, SNAPSHOT):
        rows = read_db(path, f'SELECT * FROM "{schema}"."{name}"')
        found[f"{schema}.{name}"] = sorted(map(str, rows))
    for name, value in read_db(path, "SELECT sequence_name, last_value FROM duckdb_sequences()"):
        found[f"sequence {name}"] = value
    return found


def _check(replies, run: int):
    for (code, kind), reply in zip(NOTEBOOK, replies):
        if kind == REFUSED:
            assert reply.status == "error", (run, code)
            assert reply.content["ename"] == "Stateful Cell Error", (run, code, reply.content)
            continue
        assert reply.status == "ok", (run, code, reply.content)
        if kind in ("always",):
            continue
        assert reply.rssd["kind"] == kind, (run, code, reply.rssd)
        assert reply.rssd["replayed"] is (kind == STATEFUL and run > 1), (run, code)


def test_every_kind_of_statement_applies_once(kernel_factory, tmp_path):
    path = str(tmp_path / "rssd.duckdb")
    kernel = kernel_factory()
    first = _run(kernel, with_ids=True)
    _check(first, 1)
    assert "2 staged" in first[-2].text  # the TEMP table got both session inserts
    second = _run(kernel, with_ids=True)
    _check(second, 2)
    assert "2 staged" in second[-2].text  # session cells ran again (the TEMP table replaced)
    kernel.shutdown()
    after_first = _tables(path)
    kernel = kernel_factory()
    third = _run(kernel, with_ids=False)
    _check(third, 3)
    assert "2 staged" in third[-2].text  # a new session: its TEMP table is new
    kernel.shutdown()
    assert _tables(path) == after_first
    assert after_first["main.log"] == sorted(
        map(str, [("same",), ("same",), ("prepared",), ("explained",), ("with",)])
    )
    assert after_first["main.staging"] == ["(1,)"]
    assert after_first["main.src"] == []  # copied from o, once
    assert after_first["sequence seq"] == 1
    assert "main.q" not in after_first and "main.zz" not in after_first
    states = read_db(
        path,
        "SELECT count(*), count(DISTINCT json_extract_string(elaboration, '$.key')) FROM orchestration_session_state",
    )
    applied = sum(kind == STATEFUL for _, kind in NOTEBOOK)
    assert states == [(applied, applied)]


def test_refused_cells_are_recorded_with_their_reason(kernel, tmp_path):
    kernel.ok("ATTACH 'other.duckdb' AS o")
    reply = kernel.execute("CREATE TABLE o.t AS SELECT 1 AS x")
    assert reply.status == "error"
    assert 'changes the database "o"' in reply.content["evalue"]
    assert "@always" in reply.content["evalue"]
    kernel.ok("USE o")
    reply = kernel.execute("CREATE TABLE t (x INT)")
    assert 'changes the database "o"' in reply.content["evalue"]
    kernel.ok("USE rssd")
    kernel.shutdown()
    rows = read_db(
        str(tmp_path / "rssd.duckdb"),
        "SELECT exec_code, exec_status FROM orchestration_session_exec "
        "WHERE parent_exec_id IS NULL AND exec_status <> 0 ORDER BY exec_code",
    )
    assert rows == [("CREATE TABLE o.t AS SELECT 1 AS x", 1), ("CREATE TABLE t (x INT)", 1)]
    issues = read_db(
        str(tmp_path / "rssd.duckdb"), "SELECT issue_type FROM orchestration_session_issue"
    )
    assert [i for (i,) in issues] == ["Stateful Cell Error"] * 2


def test_inside_a_users_transaction_cells_run_as_written(kernel):
    kernel.ok("CREATE SEQUENCE s")
    kernel.ok("BEGIN")
    reply = kernel.execute("CREATE TABLE inside (x INT)")
    assert reply.status == "error" and "still open" in reply.content["evalue"]
    kernel.execute("ROLLBACK")
    kernel.ok("BEGIN")
    assert kernel.ok("SELECT nextval('s') AS n").rssd["kind"] == "read"
    kernel.ok("COMMIT")
    # After COMMIT the net is back: the same text is now found to write, and is applied once.
    reply = kernel.ok("SELECT nextval('s') AS n")
    assert reply.rssd["kind"] == "stateful"


def test_a_real_table_wins_over_a_stale_named_result(kernel):
    kernel.ok("-- @name shadow\nSELECT 5 AS v")
    assert "5" in kernel.ok("SELECT v FROM shadow").text
    kernel.ok("CREATE TABLE shadow AS SELECT 100 AS v")
    assert "100" in kernel.ok("SELECT v FROM shadow").text
    reply = kernel.execute("-- @name shadow\nSELECT 6 AS v")
    assert reply.status == "error" and reply.content["ename"] == "Named Result Error"


@pytest.mark.parametrize(
    "code,check",
    [
        ("SELECT 42", None),  # constants only: the one SELECT that skips the net
        ("SELECT * FROM range(3)", "verified"),
        ("SET VARIABLE x = 1", "verified"),
        ("CREATE TEMP TABLE tt AS SELECT 1 AS a", "verified"),
    ],
)
def test_session_and_read_cells_are_checked_by_the_net(kernel, tmp_path, code, check):
    reply = kernel.ok(code)
    assert reply.rssd["kind"] in (READ, SESSION) and reply.rssd["replayed"] is False
    kernel.shutdown()
    rows = read_db(
        str(tmp_path / "rssd.duckdb"),
        "SELECT json_extract_string(elaboration, '$.check') FROM orchestration_session_exec "
        "WHERE parent_exec_id IS NOT NULL AND exec_code = ?",
        [code],
    )
    assert rows == [(check,)]


def test_a_statement_that_sets_the_session_and_writes_is_refused(kernel, tmp_path):
    """A replay would lose its session part (the variable, the TEMP table)."""
    kernel.ok("CREATE SEQUENCE rs")
    for code in [
        "SET VARIABLE run_id = nextval('rs')",
        "CREATE TEMP TABLE tx AS SELECT nextval('rs') AS n",
    ]:
        reply = kernel.execute(code)
        assert reply.status == "error" and reply.content["ename"] == "Stateful Cell Error"
        assert "changes the session and also writes" in reply.content["evalue"]
    kernel.shutdown()
    db = str(tmp_path / "rssd.duckdb")
    assert read_db(db, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'tx'") == [(0,)]
    never = read_db(db, "SELECT last_value FROM duckdb_sequences() WHERE sequence_name = 'rs'")
    assert never == [(None,)]  # never advanced


def test_once_is_the_users_choice_even_for_session_statements(kernel):
    code = "-- @once\nSET VARIABLE started = 1"
    assert kernel.ok(code, cell_id="once").rssd["kind"] == STATEFUL
    assert kernel.ok(code, cell_id="once").rssd["replayed"] is True


def test_temporary_sequences_and_macros_run_every_time(kernel):
    cells = ["CREATE TEMP SEQUENCE ts", "DROP SEQUENCE ts", "CREATE TEMP MACRO tm() AS 1",
             "DROP MACRO tm"]  # fmt: skip
    for _ in range(2):
        for index, code in enumerate(cells):
            assert kernel.ok(code, cell_id=f"c{index}").rssd["kind"] == SESSION, code


def test_writes_to_an_attached_in_memory_database_are_session_changes(kernel):
    kernel.ok("ATTACH ':memory:' AS m")
    for _ in range(2):
        assert kernel.ok("CREATE OR REPLACE TABLE m.t AS SELECT 1 AS x").rssd["kind"] == SESSION
        kernel.ok("USE m")
        assert kernel.ok("CREATE OR REPLACE TABLE q (x INT)").rssd["kind"] == SESSION
        kernel.ok("USE rssd")
    reply = kernel.execute("CREATE TABLE m.u AS SELECT 1 AS x; CREATE TABLE kept (x INT)")
    assert reply.status == "error" and "changes the session" in reply.content["evalue"]
    both = "ATTACH ':memory:' AS scratch; CREATE TABLE scratch.s AS SELECT 1 AS x"
    assert kernel.ok(both).rssd["kind"] == SESSION  # attached and written in one cell


@pytest.mark.parametrize(
    "code",
    [
        "DROP TABLE orchestration_session_log",
        "DELETE FROM orchestration_session_state",
        "UPDATE rssd.main.orchestration_session SET args_json = NULL",
        "INSERT INTO device VALUES (NULL)",
        "ALTER TABLE orchestration_session_exec ADD COLUMN x INT",
        "PREPARE p AS DELETE FROM orchestration_session_state",
        "DETACH rssd",
    ],
)
def test_the_rssd_tables_cannot_be_changed_by_a_cell(kernel, code):
    reply = kernel.execute(code)
    assert reply.status == "error" and reply.content["ename"] == "Audit Trail Error", reply.content
    assert kernel.ok("SELECT count(*) FROM orchestration_session_state").status == "ok"


def test_reading_and_temp_tables_named_like_rssd_tables_are_fine(kernel, tmp_path):
    kernel.ok(f"COPY orchestration_session_exec TO '{tmp_path / 'x.csv'}'")
    kernel.ok("CREATE TEMP TABLE device AS SELECT 1 AS x")
    kernel.ok("INSERT INTO device VALUES (2)")


def test_a_table_made_in_the_same_cell_wins_over_a_named_result(kernel):
    kernel.ok("-- @name same\nSELECT 1 AS a")
    assert "1" in kernel.ok("SELECT a FROM same").text
    reply = kernel.ok("CREATE TABLE same AS SELECT 42 AS a; SELECT a || ' wins' AS w FROM same")
    assert "42 wins" in reply.text


def test_a_statement_type_the_client_cannot_name_is_a_clean_reply(kernel):
    reply = kernel.execute("UPDATE EXTENSIONS")
    assert reply.content.get("ename") != "Internal Error", reply.content
