"""Result values as DuckDB's own text: the fast path (Python's text of plain values) gives
exactly what `CAST(value AS VARCHAR)` gives, and a lazy SELECT still computes only the rows
it shows."""

import time

import duckdb

from rssd_kernel.results import fetch

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
