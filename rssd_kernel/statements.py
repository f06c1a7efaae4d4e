"""Running one statement on DuckDB, and describing what it did or why it failed."""

import re
from dataclasses import dataclass

import duckdb

from rssd_kernel.results import Result, fetch

_T = duckdb.StatementType
# Statement types whose 'Count' or 'Success' column is a confirmation, not rows to show.
CONFIRMING = {
    _T.CREATE, _T.INSERT, _T.UPDATE, _T.DELETE, _T.MERGE_INTO, _T.COPY, _T.DROP, _T.ALTER,
    _T.SET, _T.ATTACH, _T.DETACH, _T.LOAD, _T.TRANSACTION, _T.VACUUM, _T.EXPORT, _T.PRAGMA,
}  # fmt: skip
COUNT_WORDS = {
    "INSERT": "inserted", "UPDATE": "updated", "DELETE": "deleted", "MERGE_INTO": "merged",
}  # fmt: skip
_LINE = re.compile(r"LINE (\d+):(.*)\n(\s*)\^")


@dataclass
class Failure(Exception):
    """A statement failed: DuckDB's error, located in the cell."""

    ename: str
    evalue: str
    where: str
    line: int | None = None
    column: int | None = None
    interrupted: bool = False


_DISK_FULL = ("No space left", "File too large", "Disk quota exceeded")


def split_duckdb_error(error: Exception) -> tuple[str, str]:
    """('Catalog Error', 'Table with name x does not exist!...') from a DuckDB error."""
    text = str(error)
    if isinstance(error, duckdb.InterruptException):
        return "Interrupted", (
            "The statement was interrupted; its changes were not kept (in a stateful cell, "
            "nothing of the cell was kept)."
        )
    head, sep, rest = text.partition(": ")
    if not (sep and head.endswith("Error") and len(head) < 40):
        head, rest = type(error).__name__, text
    if "self-referencing foreign key" in rest and "orchestration_session_log" in rest:
        rest += ("\nThe RSSD's orchestration_session_log references itself (as surveilr's "
                 "schema declares it), which DuckDB's EXPORT DATABASE cannot export. Export "
                 "your tables one by one with COPY ... TO, and the RSSD with `rssd "
                 "export-rssd`.")  # fmt: skip
    if any(marker in rest for marker in _DISK_FULL):
        rest += ("\nThe disk is full, or a file-size limit was reached: this statement's "
                 "changes were not kept. Free some space, then run the cell again.")  # fmt: skip
    return head, rest


def locate(message: str, offset_line: int, code: str | None = None, start: int = 0):
    """The cell line and column of DuckDB's 'LINE n:' marker. With the cell's `code` and the
    statement's `start` in it, the line DuckDB shows is found in the cell itself (DuckDB
    numbers lines and columns within the statement, and not always from its first
    character: an INSERT's text is shown without its leading blank lines or indent);
    otherwise, or if it is not found, the marker's line is shifted by `offset_line`."""
    match = _LINE.search(message)
    if not match:
        return None, None
    number = int(match.group(1))
    line = offset_line + number - 1
    shown = match.group(2)[1:]
    if shown.lstrip().startswith("..."):
        return line, None  # DuckDB cut the line: the caret's column is not the cell's
    caret = len(match.group(3)) - len(f"LINE {match.group(1)}: ")
    found = _in_cell(code, start, shown.removesuffix("..."), caret, number) if code else None
    return found or (line, caret + 1)


def relabel(message: str, line: int | None) -> str:
    """DuckDB's message with its 'LINE n:' marker (a line of the statement) made the cell's
    `line`, and the caret under it moved by as many characters as the label grew."""
    match = _LINE.search(message)
    if not match or line is None:
        return message
    shift = len(str(line)) - len(match.group(1))
    spaces = " " * max(0, len(match.group(3)) + shift)
    return (
        f"{message[: match.start()]}LINE {line}:{match.group(2)}\n{spaces}^{message[match.end() :]}"
    )


def _in_cell(code: str, start: int, shown: str, caret: int, number: int):
    """(line, column) in `code` of the `caret`-th character of `shown`, a line of the
    statement that starts at `start` (DuckDB's line `number` of it), or None."""
    if not shown.strip() or caret < 0:
        return None
    begin = first_character(code, start)
    at = begin
    for _ in range(number - 1):  # DuckDB's line `number`, counted from the statement's text
        newline = code.find("\n", at)
        if newline < 0:
            break
        at = newline + 1
    position = code.find(shown, at)
    if position < 0:
        position = code.find(shown, start)
    if position < 0:
        return None
    where = position + caret
    return code.count("\n", 0, where) + 1, where - code.rfind("\n", 0, where)


def first_character(code: str, start: int) -> int:
    """Where the statement that starts at `start` in `code` really begins: its first
    character that is not blank."""
    rest = code[start:]
    return start + len(rest) - len(rest.lstrip())


def locate_error(con, error, statement, line: int, interrupted: bool, code=None, start=0):
    """Where in the cell DuckDB's error points. The relation API drops DuckDB's 'LINE n:'
    marker, so a parse, bind or catalog error is reproduced by PREPARE, which binds the
    statement without running it."""
    found = locate(str(error), line, code, start)
    if found[0] is not None or interrupted:
        return found
    if not isinstance(error, (duckdb.ParserException, duckdb.BinderException,
                              duckdb.CatalogException)):  # fmt: skip
        return None, None
    try:
        con.execute("PREPARE rssd_locate AS\n" + statement.query).fetchall()
        con.execute("DEALLOCATE rssd_locate").fetchall()
    except duckdb.Error as again:
        return locate(str(again), line - 1, code, start)
    return None, None


def run_statement(con, statement, params, limit: int, is_last: bool, max_columns: int):
    """Run one statement: (its Result, whether it returns rows to show). The last statement's
    rows are fetched (only `limit` + 1 of them are ever computed); the others run to their
    end without their rows being read."""
    wanted = {k: params[k] for k in statement.named_parameters} or None
    try:
        kind = statement.type
    except ValueError:  # a statement type this client cannot name (UPDATE EXTENSIONS, say)
        return _run_through(con, statement.query, wanted, None), False
    if not is_last:
        result = _run_through(con, statement, wanted, kind)
    else:
        relation = con.sql(statement, params=wanted)
        if relation is None:
            return Result([], []), False
        # A lazy SELECT can be read by a query over its text. A SELECT that writes (through
        # nextval, say) has run already and is held: its text must not run again.
        lazy = kind == _T.SELECT and str(relation.type) == "QUERY_RELATION"
        source = (con, statement, wanted) if lazy else None
        result = fetch(relation, limit, max_columns, source)
    is_rows = not (kind in CONFIRMING and result.columns in (["Count"], ["Success"], []))
    return result, is_rows


def _run_through(con, statement, params, kind) -> Result:
    con.execute(statement, params)
    description = con.description or []
    columns = [d[0] for d in description]
    types = [str(d[1]) for d in description]
    if kind in CONFIRMING and columns in (["Count"], ["Success"]):
        rows = con.fetchall()
        return Result(columns, types, [[str(v) for v in row] for row in rows[:1]])
    con.complete()
    return Result(columns, types, [], complete=False, fetched=False)


def confirmation(statement, classes, result: Result) -> str:
    count = None
    if result.columns == ["Count"] and result.rows:
        count = int(result.rows[0][0])
    word = COUNT_WORDS.get(classes.statement_type)
    if word and count is not None:
        return f"{count:,} row{'s' if count != 1 else ''} {word}"
    if classes.statement_type == "COPY" and count is not None:
        return f"{classes.verb}: {count:,} row{'s' if count != 1 else ''}"
    if classes.statement_type == "CREATE" and count is not None:
        return f"{classes.verb} ({count:,} row{'s' if count != 1 else ''})"
    return classes.verb


def nature(result: Result, is_rows: bool, classes, elapsed_ms: float) -> dict:
    return {
        "statement_type": classes.statement_type,
        "kind": classes.kind,
        "columns": [{"name": n, "type": t} for n, t in zip(result.columns, result.types)]
        if is_rows
        else [],
        "rows_shown": len(result.rows) if is_rows else 0,
        "total_rows": len(result.rows) if is_rows and result.complete else None,
        "duration_ms": round(elapsed_ms, 3),
    }
