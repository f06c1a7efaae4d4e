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


def test_streamed_and_limited_reads_agree():
    """A SELECT without ORDER BY is read as it streams, one with ORDER BY through a LIMIT
    over it (DuckDB then keeps only the top rows): both give the same first rows, and the
    connection is free for the next statement either way (the stream was cancelled)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT range AS x, 'v' || range AS y FROM range(100000)")
    streamed = "SELECT x, y FROM t WHERE x < 70"
    ordered = "SELECT x, y FROM t WHERE x < 70 ORDER BY x"
    a = fetch(con.sql(streamed), 50, None, (con, _parsed(streamed), None))
    assert con.execute("SELECT 1").fetchall() == [(1,)]
    b = fetch(con.sql(ordered), 50, None, (con, _parsed(ordered), None))
    assert sorted(a.rows, key=lambda r: int(r[0])) == b.rows
    assert len(b.rows) == 50 and not a.complete and not b.complete
    whole = fetch(con.sql(streamed), 100, None, (con, _parsed(streamed), None))
    assert len(whole.rows) == 70 and whole.complete


def _parsed(query: str):
    return duckdb.extract_statements(query)[0]
