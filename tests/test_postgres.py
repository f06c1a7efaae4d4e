"""The kernel on PostgreSQL, through the Jupyter protocol: results and types, stateful
cells verified by the server's read-only transactions, named results, PostgreSQL's own
rules ($name, VACUUM, TEMP DDL, anonymous records), errors and the RSSD in its schema."""

import json

import psycopg
import pytest


def read_pg(url: str, sql: str, params=None) -> list:
    with psycopg.connect(url, autocommit=True) as con:
        cursor = con.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture
def pg(kernel_factory, pg_url, tmp_path):
    """A kernel on a fresh PostgreSQL database (journals in the test's own state folder)."""
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    return kernel_factory(database=pg_url, env=env)


TYPES = {
    "numeric": ("1.50::numeric", "1.50"),
    "timestamp with time zone": ("'2024-01-02 03:04:05+00'::timestamptz", "2024-01-02 03:04:05+00"),
    "interval": ("interval '1 mon 2 days 03:00:00'", "1 mon 2 days 03:00:00"),
    "date": ("date '2024-01-02'", "2024-01-02"),
    "time without time zone": ("time '12:34:56.789'", "12:34:56.789"),
    "jsonb": ("'{\"k\": [1, 2]}'::jsonb", '{"k": [1, 2]}'),
    "json": ("'{\"k\":1}'::json", '{"k":1}'),
    "integer[]": ("'{1,2,NULL}'::int[]", "{1,2,NULL}"),
    "uuid": (
        "'12345678-1234-5678-1234-567812345678'::uuid",
        "12345678-1234-5678-1234-567812345678",
    ),
    "bytea": ("'\\x00ff'::bytea", "\\x00ff"),
    "inet": ("'10.0.0.1/8'::inet", "10.0.0.1/8"),
    "mood": ("'ok'::mood", "ok"),
    "int4range": ("int4range(1, 5)", "[1,5)"),
    "pair": ("ROW(1, 'x y')::pair", '(1,"x y")'),
    "text": ("NULL::text", None),
}


def test_results_keep_postgresql_types(pg, pg_url):
    reply = pg.ok("SELECT 42 AS answer")
    assert "42" in reply.text and "integer" in reply.text
    pg.ok("CREATE TYPE mood AS ENUM ('sad', 'ok');\nCREATE TYPE pair AS (a int, b text)")
    columns = ", ".join(f'{value} AS "{name}"' for name, (value, _) in TYPES.items())
    pg.ok(f"-- @name typed\nSELECT {columns}")
    state = read_pg(
        pg_url,
        "SELECT transition_result FROM rssd.orchestration_session_state "
        "WHERE rssd.json_extract_string(elaboration, '$.key') = 'typed'",
    )
    recorded = json.loads(state[0][0])
    assert [c["type"] for c in recorded["columns"]] == list(TYPES)
    assert recorded["rows"] == [[text for _, text in TYPES.values()]]
    # CAST(text AS type) brings every value back: compared on the server, with its types.
    # (json has no equality: compared as text, its type checked by pg_typeof below)
    checks = " AND ".join(
        f'"{name}"::text = {value}::text' if name == "json"
        else f'"{name}" IS NOT DISTINCT FROM {value}'
        for name, (value, _) in TYPES.items()
    )  # fmt: skip
    types = " || ',' || ".join(f'pg_typeof("{name}")::text' for name in TYPES)
    assert "true" in pg.ok(f"SELECT ({checks})::text AS same FROM typed").text
    assert ",".join(TYPES) in pg.ok(f"SELECT {types} AS types FROM typed").html


def test_stateful_cells_apply_once_across_runs_and_restarts(pg, pg_url):
    create = "CREATE TABLE t (n int);\nINSERT INTO t VALUES (1), (2)"
    first = pg.ok(create, cell_id="a")
    assert first.rssd["kind"] == "stateful" and not first.rssd["replayed"]
    assert pg.ok(create, cell_id="a").rssd["replayed"] is True
    pg.restart()
    again = pg.ok(create)
    assert again.rssd["replayed"] is True and "2 rows inserted" in again.text
    assert read_pg(pg_url, "SELECT count(*) FROM t") == [(2,)]
    states = read_pg(pg_url, "SELECT from_state, to_state FROM rssd.orchestration_session_state")
    assert states == [("INITIAL", "EXECUTED")]


def test_the_server_decides_what_is_stateful(pg, pg_url):
    """A write the parse tree cannot see (in a function) is refused by the read-only net
    and runs as a stateful cell, once."""
    pg.ok(
        "CREATE TABLE hits (n int);\n"
        "CREATE FUNCTION hit() RETURNS int LANGUAGE sql AS "
        "$$ INSERT INTO hits VALUES (1) RETURNING n $$"
    )
    first = pg.ok("SELECT hit() AS n", cell_id="h")
    assert first.rssd["kind"] == "stateful"
    assert pg.ok("SELECT hit() AS n", cell_id="h").rssd["replayed"] is True
    assert read_pg(pg_url, "SELECT count(*) FROM hits") == [(1,)]
    # Reads and TEMP writes pass the net and run every time.
    for _ in range(2):
        assert pg.ok("SELECT count(*) FROM hits", cell_id="r").rssd["kind"] == "read"
        reply = pg.ok(
            "CREATE TEMP TABLE IF NOT EXISTS scratch (n int);\nINSERT INTO scratch VALUES (1)",
            cell_id="s",
        )
        assert reply.rssd["kind"] == "session"
    assert "2" in pg.ok("SELECT count(*) FROM scratch").text
    pg.ok("DROP TABLE scratch", cell_id="d")
    pg.shutdown()  # its records are written
    record = read_pg(
        pg_url,
        "SELECT elaboration FROM rssd.orchestration_session_exec WHERE parent_exec_id IS NOT "
        "NULL AND exec_code = 'SELECT count(*) FROM hits'",
    )
    assert json.loads(record[0][0])["check"] == "verified"


def test_named_results_and_dollar_parameters(pg, kernel_factory, pg_url, tmp_path):
    pg.ok("-- @name n\nSELECT 41::bigint AS n")
    reply = pg.ok("SELECT $n + 1 AS m, pg_typeof($n)::text AS t, $tag$ $n $tag$ AS q")
    assert "42" in reply.text and "bigint" in reply.text and "$n" in reply.text
    assert "41" in pg.ok("SELECT * FROM n").text
    # Another kernel of the same database uses them too.
    other = kernel_factory(database=pg_url, env={"XDG_STATE_HOME": str(tmp_path / "s2")})
    assert "42" in other.ok("SELECT $n + 1 AS m").text
    pg.ok("-- @name n\nSELECT 99::bigint AS n")  # a new value: the other kernel is told
    assert "100" in other.ok("SELECT $n + 1 AS m").text
    missing = pg.execute("SELECT $nope")
    assert missing.error["ename"] == "Named Result Error" and "nope" in missing.error["evalue"]


def test_postgresql_rules_have_messages(pg, pg_url):
    pg.ok("CREATE TABLE v (n int)")
    refused = pg.execute("VACUUM v")
    assert refused.error["ename"] == "Stateful Cell Error"
    assert "@always" in refused.error["evalue"]
    pg.ok("-- @always\nVACUUM v")
    pg.ok("-- @always\nCREATE INDEX CONCURRENTLY IF NOT EXISTS v_n ON v (n)")
    record = pg.execute("-- @name r\nSELECT ROW(1, 'a') AS pair")
    assert record.status == "ok" and "anonymous composite" in json.dumps(record.outputs)
    used = pg.execute("SELECT * FROM r")
    assert used.error is not None and "anonymous composite" in used.error["evalue"]
    audit = pg.execute("DELETE FROM rssd.orchestration_session_exec")
    assert audit.error["ename"] == "Audit Trail Error"
    assert read_pg(pg_url, "SELECT count(*) > 0 FROM rssd.orchestration_session_exec") == [(True,)]


def test_errors_carry_the_condition_and_the_place(pg):
    reply = pg.execute("SELECT 1;\nSELECT *\n  FROM nosuch")
    assert reply.error["ename"] == "UndefinedTable"
    assert 'relation "nosuch" does not exist' in reply.error["evalue"]
    assert "line 3, column 8" in reply.error["traceback"][0]
    syntax = pg.execute("SELECT 1;\nSELEC 2")
    assert syntax.error["ename"] == "SyntaxError" and "line 2" in syntax.error["traceback"][0]


def test_the_rssd_lives_in_its_schema(pg, pg_url):
    pg.ok("SELECT 1")
    pg.shutdown()
    tables = {
        t
        for (t,) in read_pg(
            pg_url,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rssd'",
        )
    }
    assert {"orchestration_session", "orchestration_session_exec", "device"} <= tables
    assert read_pg(pg_url, "SELECT count(*) FROM rssd.orchestration_session") == [(1,)]
    args = json.loads(read_pg(pg_url, "SELECT args_json FROM rssd.orchestration_session")[0][0])
    assert args["engine"] == "postgresql" and args["database"].startswith("postgresql://")
    finished = read_pg(
        pg_url, "SELECT orch_finished_at IS NOT NULL FROM rssd.orchestration_session"
    )
    assert finished == [(True,)]


def test_a_newer_schema_is_refused(pg, kernel_factory, pg_url, tmp_path):
    pg.ok("SELECT 1")
    read_pg(
        pg_url, "INSERT INTO rssd.rssd_schema_version (version, package_version) VALUES (99, 'x')"
    )
    other = kernel_factory(database=pg_url, env={"XDG_STATE_HOME": str(tmp_path / "s2")})
    reply = other.execute("SELECT 1")
    assert reply.error["ename"] == "Schema Mismatch" and "newer" in reply.error["evalue"]


def test_secrets_in_cells_reach_no_rssd_table(pg, pg_url):
    reply = pg.ok("-- @name leak\nSELECT 'password=S3cr3tValueA' AS conn")
    assert "S3cr3tValueA" in reply.text  # the user sees it; the RSSD does not keep it
    pg.ok("CREATE TABLE creds AS SELECT 'token=S3cr3tValueB' AS t", cell_id="c")
    assert "S3cr3tValueB" in pg.ok("SELECT t FROM creds").text
    failing = pg.execute("SELECT 'Authorization: Bearer S3cr3tValueC'::int")
    assert failing.status == "error" and "S3cr3tValueC" not in json.dumps(failing.content)
    pg.shutdown()
    tables = read_pg(
        pg_url, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rssd'"
    )
    for (table,) in tables:
        text = "\n".join(
            r[0] for r in read_pg(pg_url, f"SELECT CAST(t AS text) FROM rssd.{table} t")
        )
        assert "S3cr3tValue" not in text, table


def test_completion_and_inspection_from_the_catalog(pg):
    pg.ok("CREATE TABLE customers (customer_id int, region text)")
    pg.ok("-- @name top\nSELECT 1 AS n")
    code = "SELECT customer_ FROM customers"
    msg_id = pg.kc.complete(code, len("SELECT customer_"))
    reply = pg.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    assert "customer_id" in reply["content"]["matches"]
    msg_id = pg.kc.complete("SELECT * FROM cust", len("SELECT * FROM cust"))
    assert "customers" in pg.kc.get_shell_msg(timeout=30)["content"]["matches"]
    pg.kc.inspect("customers", 3)
    found = pg.kc.get_shell_msg(timeout=30)["content"]
    assert found["found"] and "region" in found["data"]["text/plain"]
    pg.kc.inspect("top", 1)
    assert "named result top" in pg.kc.get_shell_msg(timeout=30)["content"]["data"]["text/plain"]
