"""The directive parser and the statement classifier, checked with generated input."""

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rssd_kernel import classify, directives
from rssd_kernel.errors import DirectiveError

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
bodies = st.sampled_from(
    ["SELECT 1", "CREATE TABLE t (a INTEGER)", "", "-- plain comment\nSELECT 2"]
)


@given(name=identifiers, once=st.booleans(), body=bodies, spaces=st.sampled_from(["", " ", "  "]))
def test_known_directives_parse(name, once, body, spaces):
    lines = [f"--{spaces}@name {name}"] + (["-- @once"] if once else [])
    parsed = directives.parse("\n".join(lines) + "\n" + body)
    assert parsed.name == name and parsed.once == once and not parsed.always


@given(
    word=st.from_regex(r"[a-z]{1,12}", fullmatch=True).filter(lambda w: w not in directives.KNOWN)
)
def test_unknown_directives_list_the_known_ones(word):
    with pytest.raises(DirectiveError) as caught:
        directives.parse(f"-- @{word}\nSELECT 1")
    assert "@name" in str(caught.value) and "@once" in str(caught.value)


@given(bad=st.sampled_from(["", "1abc", "a b", "a-b", "x;DROP"]))
def test_malformed_names_are_errors(bad):
    with pytest.raises(DirectiveError):
        directives.parse(f"-- @name {bad}\nSELECT 1")


def test_conflicts_and_duplicates():
    with pytest.raises(DirectiveError, match="both"):
        directives.parse("-- @once\n-- @always\nSELECT 1")
    with pytest.raises(DirectiveError, match="twice"):
        directives.parse("-- @name a\n-- @name b\nSELECT 1")
    with pytest.raises(DirectiveError, match="no argument"):
        directives.parse("-- @once please\nSELECT 1")


def test_directives_after_sql_are_ordinary_comments():
    assert directives.parse("SELECT 1\n-- @bogus").name is None


tables = st.sampled_from(["orders", "t1", '"Mixed Case"', "main.orders"])
temp_tables = st.sampled_from(["scratch", "temp.scratch"])
STATEFUL_TEMPLATES = [
    "CREATE TABLE {t} (a INTEGER)", "CREATE OR REPLACE TABLE {t} AS SELECT 1", "CREATE VIEW {t} AS SELECT 1",
    "INSERT INTO {t} VALUES (1)", "INSERT OR REPLACE INTO {t} SELECT 1", "UPDATE {t} SET a = 1",
    "DELETE FROM {t} WHERE a = 1", "DROP TABLE {t}", "DROP TABLE IF EXISTS {t}",
    "ALTER TABLE {t} ADD COLUMN b INTEGER", "COPY {t} FROM 'x.csv'",
    "MERGE INTO {t} USING (SELECT 1 AS a) s ON {t}.a = s.a WHEN MATCHED THEN DELETE",
]  # fmt: skip
# Writes whose target the small grammar leaves to DuckDB's read-only net.
NET_TEMPLATES = ["COMMENT ON TABLE {t} IS 'x'", "CREATE INDEX i ON {t} (a)", "EXECUTE p"]
SESSION_TEMPLATES = [
    "CREATE TEMP TABLE {t} (a INTEGER)", "CREATE TEMPORARY VIEW {t} AS SELECT 1",
    "INSERT INTO {t} VALUES (1)", "UPDATE {t} SET a = 1", "DELETE FROM {t}", "DROP TABLE {t}",
]  # fmt: skip
READ_TEMPLATES = [
    "SELECT * FROM {t}", "FROM {t}", "WITH x AS (SELECT 1) SELECT * FROM x", "DESCRIBE {t}",
    "SUMMARIZE {t}", "SHOW TABLES", "EXPLAIN SELECT 1", "COPY {t} TO 'x.csv'",
    "COPY (SELECT 1) TO 'x.csv'", "PIVOT {t} ON a",
]  # fmt: skip
SETTINGS_STATEMENTS = [
    "SET threads = 2", "RESET threads", "PRAGMA threads = 2", "SET VARIABLE x = 1",
    "ATTACH ':memory:' AS m", "DETACH m", "USE memory", "LOAD json", "INSTALL json",
]  # fmt: skip


def _classify(sql: str) -> str:
    return classify.classify(duckdb.extract_statements(sql)[0], {"scratch"}).kind


@settings(max_examples=200)
@given(template=st.sampled_from(STATEFUL_TEMPLATES), table=tables)
def test_changes_to_the_database_are_stateful(template, table):
    assert _classify(template.format(t=table)) == classify.STATEFUL


@given(template=st.sampled_from(NET_TEMPLATES), table=tables)
def test_writes_the_grammar_cannot_place_run_under_the_net(template, table):
    classified = classify.classify(duckdb.extract_statements(template.format(t=table))[0], set())
    assert classified.net and classified.kind != classify.STATEFUL


@settings(max_examples=100)
@given(template=st.sampled_from(SESSION_TEMPLATES), table=temp_tables)
def test_temporary_objects_are_session(template, table):
    sql = template.format(t=table)
    if "CREATE" in sql and table.startswith("temp."):
        sql = sql.replace("TEMP TABLE", "TABLE").replace("TEMPORARY VIEW", "VIEW")
    assert _classify(sql) == classify.SESSION


@settings(max_examples=100)
@given(template=st.sampled_from(READ_TEMPLATES), table=tables)
def test_reads_are_reads(template, table):
    assert _classify(template.format(t=table)) == classify.READ


@given(sql=st.sampled_from(SETTINGS_STATEMENTS))
def test_settings_are_session(sql):
    assert _classify(sql) == classify.SESSION


@given(
    parts=st.lists(
        st.sampled_from(["SELECT 1", "SET threads = 2", "CREATE TABLE z (a INT)"]),
        min_size=1,
        max_size=5,
    )
)
def test_any_stateful_statement_makes_the_cell_stateful(parts):
    statements = duckdb.extract_statements(";\n".join(parts))
    kind = classify.cell_kind([classify.classify(s, set()) for s in statements])
    assert (kind == classify.STATEFUL) == any(p.startswith("CREATE") for p in parts)
