"""Bad input: every cell gets a result or a clear error, the kernel stays alive, the RSSD
stays consistent. A hypothesis fuzz test drives random fragments through the kernel."""

import json

import duckdb
import pytest
from conftest import Kernel, read_db
from hypothesis import given, settings
from hypothesis import strategies as st


def _send_raw(kernel, code: str) -> str:
    """Send an execute_request whose JSON escapes every non-ASCII character, so that even a
    lone surrogate (which jupyter_client refuses to encode) reaches the kernel."""
    session = kernel.kc.session
    msg = session.msg(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        },
    )
    packer = session.pack
    session.pack = lambda obj: json.dumps(obj, ensure_ascii=True, default=str).encode("ascii")
    try:
        kernel.kc.shell_channel.send(msg)
    finally:
        session.pack = packer
    return msg["header"]["msg_id"]


CASES = {
    "empty": ("", "ok"),
    "blank": ("  \n\t\n", "ok"),
    "comments only": ("-- one\n/* two */\n-- three", "ok"),
    "5 MB cell": ("SELECT '" + "x" * 5_000_000 + "' AS s", "ok"),
    "10,000 statements": ("SELECT 1;\n" * 10_000, "ok"),
    "NUL byte": ("SELECT 'a\x00b' AS s", "ok"),
    "unknown directive": ("-- @frobnicate\nSELECT 1", "error"),
    "malformed directive": ("-- @name 9lives\nSELECT 1", "error"),
    "unicode identifiers": (
        'CREATE TABLE "données" (été INTEGER); INSERT INTO "données" VALUES (1); '
        'SELECT été AS "résultat" FROM "données"',
        "ok",
    ),
    "unicode name": ("-- @name naïve\nSELECT 1 AS ü", "ok"),
    "10,000 columns": ("SELECT " + ", ".join(f"{i} AS c{i}" for i in range(10_000)), "ok"),
    "deeply nested": ("SELECT " + "[" * 200 + "1" + "]" * 200 + " AS deep", "ok"),
    "10 MB string": ("SELECT repeat('x', 10000000) AS big", "ok"),
    "missing $name": ("SELECT $does_not_exist", "error"),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    kernel = Kernel(str(folder / "rssd.duckdb"), str(folder))
    yield kernel, str(folder / "rssd.duckdb")
    kernel.shutdown()


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_result_or_a_clear_error(shared, name):
    kernel, _ = shared
    code, expected = CASES[name]
    reply = kernel.execute(code, timeout=120)
    assert reply.status == expected, reply.content
    if expected == "error":
        assert reply.content["ename"] and reply.content["evalue"]
        assert "Traceback" not in "\n".join(reply.content["traceback"])
    assert kernel.ok("SELECT 42 AS alive").result


def test_wide_and_long_results_are_bounded(shared):
    kernel, _ = shared
    reply = kernel.ok(CASES["10,000 columns"][0])
    assert "first 100 of 10,000 columns" in reply.text and len(reply.html) < 100_000
    reply = kernel.ok(CASES["10 MB string"][0])
    assert "10,000,000 characters" in reply.html and len(reply.html) < 10_000


def test_invalid_surrogates_are_a_clear_error(shared):
    kernel, _ = shared
    reply = kernel.collect(_send_raw(kernel, "SELECT '\ud800' AS s"))
    assert reply.status == "error" and reply.content["ename"] == "Invalid Input"
    assert "line 1, column 9" in reply.content["evalue"]
    assert kernel.ok("SELECT 1").result


fragments = st.sampled_from(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "1",
        "'x'",
        "(",
        ")",
        ",",
        ";",
        "*",
        "range(3)",
        "t",
        "$v",
        "CREATE TABLE",
        "INSERT INTO",
        "VALUES",
        "--",
        "/*",
        "*/",
        "-- @name f",
        "-- @once",
        "-- @always",
        "-- @bogus",
        "%help",
        "%forget",
        "BEGIN",
        "ROLLBACK",
        "NULL",
        "\n",
        "'",
        '"',
        "\x00",
        "é",
        "DROP TABLE",
        "AS",
        "UNION ALL",
        "::INTEGER",
        "SET VARIABLE v = 1",
    ]
)


def test_fuzz_one_reply_and_one_exec_row_per_cell(tmp_path):
    """Random fragments and directives through the execute path: always exactly one reply
    (collected by Kernel.execute, which fails on none), status ok or error, the kernel alive,
    and afterwards one exec row per cell sent."""
    db = str(tmp_path / "rssd.duckdb")
    kernel = Kernel(db, str(tmp_path))
    sent = []

    @settings(max_examples=120, deadline=None)
    @given(parts=st.lists(fragments, max_size=12))
    def fuzz(parts):
        reply = kernel.execute(" ".join(parts), timeout=60)
        assert reply.status in ("ok", "error")
        assert not [o for o in reply.outputs if o["msg_type"] == "execute_reply"]
        sent.append(1)

    try:
        fuzz()
        kernel.execute("ROLLBACK")  # a fuzz cell may have left a transaction open
    finally:
        kernel.shutdown()
    (count,) = read_db(
        db, "SELECT count(*) FROM orchestration_session_exec WHERE parent_exec_id IS NULL"
    )[0]
    assert count == len(sent) + 1
    con = duckdb.connect(db, read_only=True)
    assert con.execute("""SELECT count(*) FROM orchestration_session_exec
        WHERE NOT json_valid(elaboration)""").fetchall() == [(0,)]
    con.close()
