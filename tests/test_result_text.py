"""Result values as DuckDB's own text: the fast path (Python's text of plain values) gives
exactly what `CAST(value AS VARCHAR)` gives, a lazy SELECT still computes only the rows
it shows, and a SELECT of constants run as it is gives what the bound read gives."""

import time

import duckdb
import pytest

from rssd_kernel import classify
from rssd_kernel.results import fetch, fetch_constant

VALUES = [
    "170141183460469231731687303715884105727::HUGEINT",
    "(-170141183460469231731687303715884105727)::HUGEINT",
    "18446744073709551615::UBIGINT",
    "(-128)::TINYINT",
    "true",
    "false",
    "NULL::INTEGER",
    "'é ✓ \"q\" '''",
    "''",
]


def test_plain_values_read_as_duckdbs_text():
    con = duckdb.connect()
    query = "SELECT " + ", ".join(f"{v} AS c{i}" for i, v in enumerate(VALUES))
    fast = fetch(con.sql(query), 10, None, (con, _parsed(query), None))
    cast = ", ".join(f"CAST(c{i} AS VARCHAR)" for i in range(len(VALUES)))
    expected = con.execute(f"SELECT {cast} FROM ({query})").fetchall()
    assert fast.rows == [list(expected[0])]
    assert fast.types[:4] == ["HUGEINT", "HUGEINT", "UBIGINT", "TINYINT"]


def test_a_huge_lazy_select_computes_only_the_rows_shown():
    con = duckdb.connect()
    query = "SELECT * FROM range(1000000000)"
    started = time.perf_counter()
    result = fetch(con.sql(query), 50, None, (con, _parsed(query), None))
    assert time.perf_counter() - started < 5  # all of it would take minutes
    assert len(result.rows) == 50 and not result.complete and result.rows[0] == ["0"]


def test_only_the_rows_shown_are_computed_and_the_stream_is_closed(tmp_path):
    """A row past the ones shown is never computed, so an error there does not fail the
    cell; and the read leaves no result open on the connection (a file attached under it
    can be detached at once). Run twice: the second read comes from the parsed query kept
    for the text, with the same answer."""
    con = duckdb.connect()
    con.execute(f"ATTACH '{tmp_path / 'f.duckdb'}' AS f")
    con.execute("CREATE TABLE f.t AS SELECT range AS x FROM range(100000)")
    query = "SELECT CASE WHEN x < 10000 THEN x ELSE error('never shown') END AS v FROM f.t"
    for _ in range(2):
        result = fetch(con.sql(query), 50, None, (con, _parsed(query), None))
        assert len(result.rows) == 50 and not result.complete
        assert [int(v) for (v,) in result.rows] == list(range(50))
    con.execute("DETACH f")


def _parsed(query: str):
    return duckdb.extract_statements(query)[0]


CONSTANT_SELECTS = [
    "SELECT 42",
    "select 'x' AS s, NULL AS n, true AS b, 2 + 3 * 4 AS e",
    "SELECT 1 AS a, 2 AS a",  # a subquery would rename the second a_1
    "SELECT 1 AS A, 2 AS a_1, 3 AS a",
    "SELECT 1 AS a_1, 2 AS b",  # a name like a renamed one, and none renamed
    "SELECT 1, 1, 'x_1'",
    "SELECT 1.5 AS d, 1e300 AS f, 99999999999999999999999999 AS h",  # not plain: read as text
    "SELECT ['a'] AS l, x'00' AS b, {'k': 'v'} AS s",  # Python's text is not DuckDB's
    'SELECT \'é ✓\' AS "a b", \'\' AS """"',
    "SELECT 1 AS x; -- a comment after",
    "SELECT 1 AS x -- a comment with no end of line",
]


@pytest.mark.parametrize("query", CONSTANT_SELECTS)
@pytest.mark.parametrize("max_columns", [None, 2])
def test_a_select_of_constants_reads_as_its_bound_form(query, max_columns):
    con = duckdb.connect()
    statement = _parsed(query)
    assert classify.classify(statement).constant
    bound = fetch(con.sql(statement), 10, max_columns, (con, statement, None))
    direct = fetch_constant(con, statement, None, 10, max_columns)
    assert direct == bound
    assert direct.columns and direct.rows


def test_a_select_of_constants_reports_its_errors_where_the_bound_read_does():
    con = duckdb.connect()
    statement = _parsed("SELECT\n  1 +\n  'x'")
    with pytest.raises(duckdb.Error) as bound:
        fetch(con.sql(statement), 10, None, (con, statement, None))
    with pytest.raises(duckdb.Error) as direct:
        fetch_constant(con, statement, None, 10, None)
    assert type(direct.value) is type(bound.value)
    assert str(direct.value).splitlines()[0] == str(bound.value).splitlines()[0]
    assert "LINE 2:   1 +" in str(direct.value)
