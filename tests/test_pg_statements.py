"""PostgreSQL's statements without a server: splitting with pglast, $name, the prediction
of what each statement does, is_complete, and connection strings without passwords."""

import pytest

from rssd_kernel import classify
from rssd_kernel.engines.pg_connection import masked, password_of
from rssd_kernel.engines.pg_statements import classify_statement, is_complete, split


def kinds(code: str, temp=frozenset()):
    out = []
    for statement in split(code):
        c = classify_statement(statement, set(temp))
        out.append((c.kind, c.statement_type, c.net, c.target))
    return out


def test_split_keeps_the_cells_text_and_finds_dollar_names():
    code = "SELECT $n, $tag$ $x $tag$ -- $y\n;\nSELECT 'é', $n + $m::int"
    first, second = split(code)
    assert first.query == "SELECT $n, $tag$ $x $tag$ -- $y\n"
    assert first.named_parameters == ["n"]
    assert second.query.strip() == "SELECT 'é', $n + $m::int"
    assert second.named_parameters == ["n", "m"]
    sql, values = second.executable({"n": ("41", "bigint"), "m": ("1", "integer")})
    assert sql.strip() == "SELECT 'é', $1::bigint + $2::integer::int" and values == ["41", "1"]


@pytest.mark.parametrize(
    "code, expected",
    [
        ("SELECT 1", (classify.READ, "SELECT", True, None)),
        ("CREATE TABLE t (a int)", (classify.STATEFUL, "CREATE", False, "t")),
        ("CREATE TEMP TABLE t (a int)", (classify.SESSION, "CREATE", False, "t")),
        ("SELECT 1 INTO TEMP z", (classify.SESSION, "CREATE", False, "z")),
        ("SELECT 1 INTO z", (classify.STATEFUL, "CREATE", False, "z")),
        ("INSERT INTO t VALUES (1)", (classify.STATEFUL, "INSERT", False, "t")),
        ("INSERT INTO pg_temp.t VALUES (1)", (classify.SESSION, "INSERT", True, "pg_temp.t")),
        ("UPDATE s.t SET a = 1", (classify.STATEFUL, "UPDATE", False, "s.t")),
        ("DROP TABLE t", (classify.STATEFUL, "DROP", False, "t")),
        ("SET search_path TO x", (classify.SESSION, "SET", False, None)),
        ("BEGIN", (classify.TRANSACTION, "TRANSACTION", False, None)),
        ("VACUUM", (classify.NO_TRANSACTION, "VACUUM", False, None)),
        ("CREATE INDEX CONCURRENTLY i ON t (a)", (classify.NO_TRANSACTION, "CREATE", False, None)),
        ("DO $$ BEGIN PERFORM 1; END $$", (classify.READ, "CALL", True, None)),
        ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
         (classify.STATEFUL, "CREATE", False, None)),
    ],
)  # fmt: skip
def test_the_prediction(code, expected):
    assert kinds(code) == [expected]


def test_writes_to_the_sessions_temporary_objects_are_session_changes():
    temp = {"scratch"}
    assert kinds("INSERT INTO scratch VALUES (1)", temp)[0][:3] == (
        classify.SESSION,
        "INSERT",
        True,
    )
    assert kinds("DROP TABLE scratch", temp)[0][:3] == (classify.SESSION, "DROP", False)
    assert kinds("ALTER TABLE scratch ADD b int", temp)[0][:3] == (classify.SESSION, "ALTER", False)
    assert kinds("DROP TABLE public.scratch", temp)[0][0] == classify.STATEFUL


@pytest.mark.parametrize(
    "code, status",
    [
        ("SELECT 1", "complete"), ("", "complete"), ("%help", "complete"),
        ("SELECT (1", "incomplete"), ("SELECT 'abc", "incomplete"),
        ("CREATE TABLE t (a int", "incomplete"), ("SELECT * FROM", "incomplete"),
        ("SELECT ) FROM", "invalid"),
    ],
)  # fmt: skip
def test_is_complete(code, status):
    assert is_complete(code)["status"] == status


@pytest.mark.parametrize(
    "target, shown, password",
    [
        ("postgresql://u:p%40ss@h:5/d", "postgresql://u@h:5/d", "p@ss"),
        ("postgres://u:pw@h/d?sslmode=require", "postgres://u@h/d?sslmode=require", "pw"),
        ("postgresql://u@h/d?password=x&a=b", "postgresql://u@h/d?password=***&a=b", "x"),
        ("host=h password='a b' dbname=d", "host=h password=*** dbname=d", "a b"),
        ("postgresql://u:pw@[bad/x", "postgresql://u@[bad/x", "pw"),
        ("postgresql://u@h/d", "postgresql://u@h/d", None),
    ],
)
def test_connection_strings_are_shown_without_their_password(target, shown, password):
    assert masked(target) == shown
    assert password_of(target) == password
