"""Statement results as DuckDB gives them, and their JSON form in `transition_result`.

Values travel as DuckDB's own text rendering (`CAST(value AS VARCHAR)`) next to the
column's DuckDB type, because `CAST(text AS type)` gives the value back exactly: DECIMAL
scale, DATE, TIMESTAMP, INTERVAL months, BLOB bytes and nested types included. UNION
values also keep their tag, which their text loses.
"""

import functools
import json
import re
from dataclasses import dataclass, field

import duckdb

from rssd_kernel.tokens import positions as token_positions

ENCODING = "duckdb-varchar-v1"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Result:
    """The rows of one statement: names, DuckDB types, and values as DuckDB's text.

    `rows` holds at most the rows fetched; `complete` says whether that is all of them.
    A UNION cell is a [tag, text] pair.
    """

    columns: list[str]
    types: list[str]
    rows: list[list] = field(default_factory=list)
    complete: bool = True
    total_columns: int | None = None  # when only the first columns were fetched
    fetched: bool = True  # False: the statement ran, its rows were not read

    @property
    def narrowed(self) -> bool:
        return self.total_columns is not None and self.total_columns > len(self.columns)

    def to_json(self) -> dict:
        return {
            "encoding": ENCODING,
            "columns": [{"name": n, "type": t} for n, t in zip(self.columns, self.types)],
            "rows": self.rows,
            "row_count": len(self.rows),
            "complete": self.complete,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Result":
        return cls(
            columns=[c["name"] for c in data["columns"]],
            types=[c["type"] for c in data["columns"]],
            rows=data["rows"],
            complete=data.get("complete", True),
        )


def is_union(type_name: str) -> bool:
    return type_name.startswith("UNION(")


def fetch(relation, limit: int, max_columns: int | None = None, source=None) -> Result:
    """Fetch up to `limit` rows of a DuckDB relation as text; never more than limit + 1,
    and only the first `max_columns` columns.

    For a lazy SELECT only those rows are computed, so time and memory follow `limit`,
    not the size of the result. `source`, a (connection, parsed SELECT, parameters) triple
    for the same query, lets the rows be read by one plain query over it: the relation
    API's select and limit bind the query twice more, which costs more than a small
    query itself. The names and types are the relation's either way.
    """
    columns = list(relation.columns)
    types = [str(t) for t in relation.types]
    if not columns:
        return Result([], [])
    raw = None
    if source is not None and set(types[:max_columns]) <= _PLAIN:
        # Python's text of these values is DuckDB's, so the rows are read as they are,
        # with no CAST in the query. Read whole (LIMIT, then fetchall): a streaming result
        # left open would keep the database file attached underneath (lease.py), and one
        # cancelled after the rows shown would compute (and fail on) rows never shown.
        raw = _rows_of(source, "*", limit + 1)
    return _as_text_result(columns, types, raw, limit, max_columns, source, relation)


def fetch_constant(con, statement, params, limit: int, max_columns: int | None) -> Result:
    """The row of a SELECT of constants (classify.py: it names no table, function or
    sequence, so it gives exactly one row and costs nothing to run). It runs as it is: the
    result's description gives the names and types, so the statement is neither bound
    first nor wrapped in a LIMIT, one call into DuckDB where a table's SELECT takes two.
    Values of a type whose Python text is not DuckDB's are read again as text (a CAST per
    column, as `fetch` does)."""
    raw = con.execute(statement, params).fetchmany(limit + 1)
    description = con.description or []
    columns = [d[0] for d in description]
    types = [str(d[1]) for d in description]
    if not columns:
        return Result([], [])
    if not set(types[:max_columns]) <= _PLAIN:
        raw = None
    return _as_text_result(columns, types, raw, limit, max_columns, (con, statement, params))


def _as_text_result(columns, types, raw, limit, max_columns, source, relation=None) -> Result:
    """The Result of the first `max_columns` columns: from `raw`, rows of plain types
    already read, or else read as DuckDB's text by a query with a CAST per column, over
    `source` or, when the query cannot stand as a subquery, `relation` (by default the
    source's)."""
    total = len(columns)
    if max_columns is not None and total > max_columns:
        columns, types = columns[:max_columns], types[:max_columns]
    if raw is not None:
        rows = [[_plain(value) for value in row[: len(columns)]] for row in raw[:limit]]
    else:
        select = ", ".join(_as_text(index, t) for index, t in enumerate(types, start=1))
        raw = _rows_of(source, select, limit + 1) if source else None
        if raw is None:  # the query cannot stand as a subquery: the relation API reads it
            if relation is None:
                con, statement, params = source
                relation = con.sql(statement, params=params)
            raw = relation.select(select).limit(limit + 1).fetchall()
        rows = [list(row) for row in raw[:limit]]
    return Result(columns, types, rows, complete=len(raw) <= limit, total_columns=total)


# Types whose Python value's str() is exactly DuckDB's CAST(value AS VARCHAR).
_PLAIN = {
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "VARCHAR", "BOOLEAN",
}  # fmt: skip


def _plain(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_text(index: int, type_name: str) -> str:
    if is_union(type_name):
        return (
            f"CASE WHEN #{index} IS NULL THEN NULL ELSE "
            f"[union_tag(#{index})::VARCHAR, #{index}::VARCHAR] END"
        )
    return f"CAST(#{index} AS VARCHAR)"


def _rows_of(source, select: str, limit: int) -> list | None:
    """The rows of `SELECT select FROM (query) LIMIT limit`; None when the query cannot
    stand as a subquery (the caller then uses the relation API)."""
    con, statement, params = source
    wrapped = _wrapped(statement.query, select, limit)
    if wrapped is None:
        return None  # the query itself parsed: the wrapping did not
    try:
        return con.execute(wrapped, params).fetchall()
    except duckdb.Error as error:
        found = LINE_MARK.search(str(error))  # the wrapper's first line is not the query's
        text = relabel(str(error), int(found.group(1)) - 1) if found else str(error)
        try:
            shifted = type(error)(text) if text != str(error) else None
        except Exception:  # an error class that takes more than a message: keep it as is
            shifted = None
        if shifted is None:
            raise
        raise shifted from None


@functools.lru_cache(maxsize=256)
def _wrapped(query: str, select: str, limit: int):
    """`SELECT select FROM (query) LIMIT limit`, parsed once per query text (a cell run
    again, or the same SELECT in many cells, skips DuckDB's parser); None if it does not
    parse. The query starts on a line of its own, so DuckDB's 'LINE n' markers in errors
    are off by exactly one, and a trailing comment cannot hide the closing parenthesis."""
    text = f"SELECT {select} FROM (\n{_without_terminator(query)}\n) LIMIT {limit}"
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.ParserException:
        return None
    return statements[0] if len(statements) == 1 else None


LINE_MARK = re.compile(r"LINE (\d+):(.*)\n(\s*)\^")  # DuckDB's excerpt and its caret


def relabel(message: str, line: int | None) -> str:
    """DuckDB's message with its 'LINE n:' marker (a line of the statement) made `line`,
    and the caret under it moved by as many characters as the label grew or shrank."""
    match = LINE_MARK.search(message)
    if not match or line is None:
        return message
    shift = len(str(line)) - len(match.group(1))
    spaces = " " * max(0, len(match.group(3)) + shift)
    head, tail = message[: match.start()], message[match.end() :]
    return f"{head}LINE {line}:{match.group(2)}\n{spaces}^{tail}"


def _without_terminator(query: str) -> str:
    """The statement's text up to its terminating semicolon (DuckDB's tokens tell which)."""
    for start, kind in reversed(token_positions(query)):
        if str(kind).endswith("comment"):
            continue
        if query.startswith(";", start):
            return query[:start]
        break
    return query


def restore_sql(result: Result) -> tuple[str, list]:
    """A SELECT (and its one parameter) that gives the result back with its types."""
    select = []
    for index, (name, type_name) in enumerate(zip(result.columns, result.types)):
        cell = f"json_extract(r, '$[{index}]')"
        if is_union(type_name):
            select.append(_union_restore(cell, type_name, name))
        else:
            select.append(
                f"CAST(json_extract_string({cell}, '$') AS {type_name}) AS {quote_ident(name)}"
            )
    sql = (
        f"SELECT {', '.join(select)} FROM "
        "(SELECT unnest(CAST(json_extract(CAST(? AS JSON), '$[*]') AS JSON[])) AS r)"
    )
    return sql, [json.dumps(result.rows)]


def _union_restore(cell: str, type_name: str, name: str) -> str:
    members = [m for m in duckdb.sqltype(type_name).children if m[0]]  # [0] is the tag
    cases = " ".join(
        f"WHEN '{tag}' THEN union_value({quote_ident(tag)} := "
        f"CAST(json_extract_string({cell}, '$[1]') AS {member}))::{type_name}"
        for tag, member in members
    )
    return f"CASE json_extract_string({cell}, '$[0]') {cases} END AS {quote_ident(name)}"


def scalar(con, result: Result):
    """The one value of a one-row, one-column result, as a typed Python value."""
    sql, params = restore_sql(result)
    return con.execute(sql, params).fetchall()[0][0]
