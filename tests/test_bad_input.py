"""Bad input: every cell gets a result or a clear error, the kernel stays alive, the RSSD
stays consistent. A hypothesis fuzz test drives random fragments through the kernel."""

import json
import time

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


# What iopub may carry for an execute_request between its busy and idle status.
OUTPUT_TYPES = {"execute_result", "display_data", "update_display_data", "stream", "error"}


def _execute_checked(kernel, code: str, timeout: float) -> str:
    """Run `code`, check every message the kernel answers with, return the reply's status.

    Shell: exactly one execute_reply for the request, and no other message before the reply
    to a kernel_info_request sent right after it (the main shell answers in order, so a
    second or a stray reply would arrive before it). Iopub: busy, execute_input, then only
    outputs (an error among them exactly when the reply is an error), then idle."""
    msg_id = kernel.kc.execute(code)
    probe = kernel.kc.kernel_info()
    deadline = time.monotonic() + timeout
    replies, strays = [], []
    while True:
        msg = kernel.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
        parent = msg["parent_header"].get("msg_id")
        if parent == probe and msg["msg_type"] == "kernel_info_reply":
            break
        (replies if parent == msg_id else strays).append(msg)
    assert [r["msg_type"] for r in replies] == ["execute_reply"], code
    assert not strays, (code, [(m["msg_type"], m["parent_header"]) for m in strays])
    status = replies[0]["content"]["status"]
    seen = []
    while True:
        msg = kernel.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "status":
            kind = msg["content"]["execution_state"]
            if kind == "idle":
                break
        seen.append(kind)
    assert seen[:2] == ["busy", "execute_input"], (code, seen)
    assert set(seen[2:]) <= OUTPUT_TYPES, (code, seen)
    assert ("error" in seen) == (status == "error"), (code, status, seen)
    return status


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
    """Random fragments and directives through the execute path: always exactly one
    execute_reply on the shell channel and no unexpected message (see _execute_checked),
    status ok or error, the kernel alive, and afterwards one exec row per cell sent."""
    db = str(tmp_path / "rssd.duckdb")
    kernel = Kernel(db, str(tmp_path))
    sent = []

    @settings(max_examples=120, deadline=None)
    @given(parts=st.lists(fragments, max_size=12))
    def fuzz(parts):
        assert _execute_checked(kernel, " ".join(parts), timeout=60) in ("ok", "error")
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
