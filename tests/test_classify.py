"""Unit tests for the prediction in classify.py (no kernel). DuckDB's read-only net checks
every statement that is not predicted stateful, so the rule tested here is: STATEFUL only
when certain, and the target read at the grammar's position, never a word found elsewhere."""

import duckdb
import pytest

from rssd_kernel import classify
from rssd_kernel.classify import READ, SESSION, STATEFUL, TRANSACTION

TEMP = {"staging", "scratch"}

CASES = [
    # sql, kind, net, target
    ("CREATE TABLE weather (temp DOUBLE, city VARCHAR)", STATEFUL, False, "weather"),
    ("CREATE TABLE vault (secret VARCHAR)", STATEFUL, False, "vault"),
    ("CREATE TABLE s.temp (x INT)", STATEFUL, False, "s.temp"),
    ("CREATE TABLE temp (x INT)", STATEFUL, False, "temp"),
    ("CREATE TABLE year (x INT)", STATEFUL, False, "year"),
    ('CREATE TABLE "Select" (x INT)', STATEFUL, False, "select"),
    ("CREATE OR REPLACE TABLE t AS SELECT 1", STATEFUL, False, "t"),
    ("CREATE TABLE IF NOT EXISTS t (x INT)", STATEFUL, False, "t"),
    ("CREATE TEMP TABLE t (x INT)", SESSION, True, "t"),
    ("CREATE TEMPORARY VIEW v AS SELECT 1", SESSION, True, "v"),
    ("CREATE OR REPLACE TEMP TABLE t AS SELECT 1", SESSION, True, "t"),
    ("CREATE TABLE temp.t (x INT)", SESSION, True, "temp.t"),
    ("CREATE TABLE temp.main.t (x INT)", SESSION, True, "temp.main.t"),
    ("CREATE TABLE mydb.main.t (x INT)", STATEFUL, False, "mydb.main.t"),
    ("CREATE SEQUENCE seq", STATEFUL, False, "seq"),
    ("CREATE TEMP SEQUENCE seq", SESSION, True, "seq"),
    ("CREATE MACRO m(x) AS x + 1", STATEFUL, False, "m"),
    ("CREATE TEMP MACRO m(x) AS x + 1", SESSION, True, "m"),
    ("CREATE TYPE mood AS ENUM ('a', 'b')", STATEFUL, False, "mood"),
    ("CREATE SCHEMA s", STATEFUL, False, "s"),
    ("CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')", SESSION, True, None),
    ("CREATE PERSISTENT SECRET s (TYPE s3)", STATEFUL, False, "s"),
    ("CREATE INDEX i ON t (x)", SESSION, True, "t"),
    ("INSERT INTO t VALUES (1)", STATEFUL, False, "t"),
    ("INSERT INTO staging VALUES (1)", SESSION, True, "staging"),
    ("INSERT INTO mydb.main.staging VALUES (1)", STATEFUL, False, "mydb.main.staging"),
    ("INSERT INTO main.staging VALUES (1)", SESSION, True, "main.staging"),
    ("INSERT INTO other.staging VALUES (1)", STATEFUL, False, "other.staging"),
    ("INSERT INTO temp.staging VALUES (1)", SESSION, True, "temp.staging"),
    ("INSERT OR REPLACE INTO t VALUES (1)", STATEFUL, False, "t"),
    ("INSERT INTO s.temp VALUES (1)", STATEFUL, False, "s.temp"),
    ("WITH q AS (SELECT 1) INSERT INTO staging SELECT * FROM q", SESSION, True, "staging"),
    ("WITH q AS (SELECT 1) INSERT INTO t SELECT * FROM q", STATEFUL, False, "t"),
    ("UPDATE t SET x = 1", STATEFUL, False, "t"),
    ("UPDATE scratch SET x = 1", SESSION, True, "scratch"),
    ("DELETE FROM t", STATEFUL, False, "t"),
    ("TRUNCATE t", STATEFUL, False, "t"),
    ("TRUNCATE TABLE staging", SESSION, True, "staging"),
    ("MERGE INTO t USING s ON t.x = s.x WHEN MATCHED THEN DELETE", STATEFUL, False, "t"),
    ("DROP TABLE t", STATEFUL, False, "t"),
    ("DROP TABLE IF EXISTS staging", SESSION, True, "staging"),
    ("DROP VIEW temp.v", SESSION, True, "temp.v"),
    ("DEALLOCATE p", SESSION, True, None),
    ("DROP SECRET s", STATEFUL, False, "s"),
    ("DROP TEMPORARY SECRET s", SESSION, True, "s"),
    ("ALTER TABLE t ADD COLUMN y INT", STATEFUL, False, "t"),
    ("ALTER TABLE staging ADD COLUMN y INT", SESSION, True, "staging"),
    ("COMMENT ON TABLE t IS 'x'", SESSION, True, None),
    ("COPY t FROM 'f.csv'", STATEFUL, False, "t"),
    ("COPY staging FROM 'f.csv'", SESSION, True, "staging"),
    ("COPY t TO 'f.csv'", READ, True, "t"),
    ("COPY (SELECT 1) TO 'f.csv'", READ, True, None),
    ("COPY FROM DATABASE a TO b", STATEFUL, False, None),
    ("PRAGMA import_database('x')", STATEFUL, False, None),
    ("IMPORT DATABASE 'x'", STATEFUL, False, None),
    ("PRAGMA version", SESSION, True, None),
    ("SELECT 42", READ, False, None),
    ("SELECT 1 + 2, 'a' || 'b', NULL IS NULL", READ, False, None),
    ("SELECT 1 AS a, 'x' AS \"b c\"", READ, False, None),  # aliases name no object
    ("SELECT nextval('seq')", READ, True, None),
    ("SELECT nextval AS x", READ, True, None),  # a column named nextval, not an alias
    ("SELECT 1 AS a FROM t", READ, True, None),
    ("SELECT 1 AS a, b", READ, True, None),
    ("SELECT * FROM t", READ, True, None),
    ("FROM t", READ, True, None),
    ("SUMMARIZE t", READ, True, None),
    ("PIVOT t ON x", READ, True, None),
    ("CREATE TABLE p AS PIVOT t ON x", READ, True, None),
    ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", READ, True, None),
    ("CALL checkpoint()", READ, True, None),
    ("EXECUTE p", SESSION, True, None),
    ("PREPARE p AS INSERT INTO t VALUES (1)", SESSION, True, None),
    ("SET threads = 2", SESSION, True, None),
    ("SET VARIABLE x = 1", SESSION, True, None),
    ("USE other", SESSION, True, None),
    ("ATTACH 'x.duckdb' AS x", SESSION, True, None),
    ("DETACH x", SESSION, True, None),
    ("LOAD json", SESSION, True, None),
    ("BEGIN", TRANSACTION, False, None),
    ("COMMIT", TRANSACTION, False, None),
    ("UPDATE EXTENSIONS", STATEFUL, False, None),  # a type the client cannot name
]


@pytest.mark.parametrize("sql,kind,net,target", CASES)
def test_prediction(sql, kind, net, target):
    (statement,) = duckdb.extract_statements(sql)
    got = classify.classify(statement, TEMP)
    assert (got.kind, got.net, got.target) == (kind, net, target)


def test_temp_created_earlier_in_the_cell_is_known():
    (create,) = duckdb.extract_statements("CREATE TEMP TABLE fresh (x INT)")
    assert classify.classify(create, TEMP).creates_temp == "fresh"


SESSION_EFFECTS = {
    "SET threads = 2": True,
    "SET VARIABLE x = 1": True,
    "USE other": True,
    "ATTACH 'x.duckdb' AS x": True,
    "PREPARE p AS SELECT 1": True,
    "DEALLOCATE p": True,
    "CREATE TEMP TABLE t (x INT)": True,
    "INSERT INTO staging VALUES (1)": True,
    "CREATE SECRET (TYPE s3)": True,
    "CREATE INDEX i ON t (x)": False,
    "DROP INDEX i": False,
    "SELECT * FROM t": False,
    "EXECUTE p": False,
    "CREATE TABLE t (x INT)": False,
    "COMMENT ON TABLE t IS 'x'": False,
}


@pytest.mark.parametrize("sql,effect", SESSION_EFFECTS.items())
def test_session_effect(sql, effect):
    """A stateful cell refuses statements that surely change the session (a replay after a
    restart would leave them out); statements the net decides on are not refused."""
    (statement,) = duckdb.extract_statements(sql)
    assert classify.classify(statement, TEMP).session_effect is effect
