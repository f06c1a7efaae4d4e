"""Running one statement on DuckDB, and describing what it did or why it failed."""

import unicodedata
from dataclasses import dataclass

import duckdb

from rssd_kernel.results import LINE_MARK as _LINE
from rssd_kernel.results import Result, fetch, fetch_constant

_T = duckdb.StatementType
# Statement types whose 'Count' or 'Success' column is a confirmation, not rows to show.
CONFIRMING = {
    _T.CREATE, _T.INSERT, _T.UPDATE, _T.DELETE, _T.MERGE_INTO, _T.COPY, _T.DROP, _T.ALTER,
    _T.SET, _T.ATTACH, _T.DETACH, _T.LOAD, _T.TRANSACTION, _T.VACUUM, _T.EXPORT, _T.PRAGMA,
}  # fmt: skip
COUNT_WORDS = {
    "INSERT": "inserted", "UPDATE": "updated", "DELETE": "deleted", "MERGE_INTO": "merged",
}  # fmt: skip


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


def locate(
    message: str,
    offset_line: int,
    code: str | None = None,
    start: int = 0,
    end: int | None = None,
    extra: int = 0,
):
    """The cell line and column of DuckDB's 'LINE n:' marker (`extra`: lines of text DuckDB
    saw before the statement's own, as PREPARE's). With the cell's `code` and the
    statement's place in it (`start` to `end`), the line DuckDB shows is found in the cell
    itself: DuckDB counts lines from the statement's first character (execute, PREPARE,
    the wrapped query) or from its first non-blank one (the relation API), shows an INSERT
    without its leading blank lines or indent, and places its caret by display width.
    Otherwise, or if it is not found, the marker's line is shifted by `offset_line`."""
    match = _LINE.search(message)
    if not match:
        return None, None
    number = int(match.group(1)) - extra
    line = offset_line + number - 1
    shown = match.group(2)[1:]
    caret = len(match.group(3)) - len(f"LINE {match.group(1)}: ")
    if shown.startswith("..."):  # DuckDB cut the line's start: the rest is still the cell's
        shown, caret = shown[3:], caret - 3
    shown = shown.removesuffix("...")
    cut = caret < 0
    found = _in_cell(code, start, end, shown, max(caret, 0), number) if code else None
    if found:
        return (found[0], None) if cut else found
    return line, (None if cut else caret + 1)


def _in_cell(code: str, start: int, end: int | None, shown: str, caret: int, number: int):
    """(line, column) in `code` of the character under the caret in `shown`, DuckDB's line
    `number` of the statement at `start` to `end`, counted from its first character or its
    first non-blank one (whichever line of the cell shows it); None if neither does."""
    if not shown.strip():
        return None
    end = len(code) if end is None else end
    for origin in (start, first_character(code, start)):
        at = origin
        for _ in range(number - 1):
            newline = code.find("\n", at, end)
            if newline < 0:
                at = -1
                break
            at = newline + 1
        if at < 0:
            continue
        line_end = code.find("\n", at, end)
        position = code.find(shown, at, end if line_end < 0 else line_end + 1)
        if position >= 0:
            where = position + _char_index(shown, caret)
            return code.count("\n", 0, where) + 1, where - code.rfind("\n", 0, where)
    return None


def _char_index(shown: str, caret: int) -> int:
    """The index in `shown` of the character under DuckDB's caret, which DuckDB places by
    display width (a tab or a combining mark 0, a wide character 2)."""
    width = 0
    for index, char in enumerate(shown):
        char_width = _width(char)
        if width >= caret and char_width:
            return index
        width += char_width
    return len(shown)


def _width(char: str) -> int:
    if unicodedata.category(char) in ("Cc", "Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def first_character(code: str, start: int) -> int:
    """Where the statement that starts at `start` in `code` really begins: its first
    character that is not blank."""
    rest = code[start:]
    return start + len(rest) - len(rest.lstrip())


def locate_error(con, error, statement, line: int, interrupted: bool, code=None, start=0):
    """Where in the cell DuckDB's error points. The relation API drops DuckDB's 'LINE n:'
    marker, so a parse, bind or catalog error is reproduced by PREPARE, which binds the
    statement without running it."""
    end = start + len(statement.query) if code else None
    found = locate(str(error), line, code, start, end)
    if found[0] is not None or interrupted:
        return found
    if not isinstance(error, (duckdb.ParserException, duckdb.BinderException,
                              duckdb.CatalogException)):  # fmt: skip
        return None, None
    try:
        con.execute("PREPARE rssd_locate AS\n" + statement.query).fetchall()
        con.execute("DEALLOCATE rssd_locate").fetchall()
    except duckdb.Error as again:
        return locate(str(again), line, code, start, end, extra=1)
    return None, None


def run_statement(con, statement, params, limit: int, is_last: bool, max_columns: int,
                  constant: bool = False):  # fmt: skip
    """Run one statement: (its Result, whether it returns rows to show). The last statement's
    rows are fetched (only `limit` + 1 of them are ever computed); the others run to their
    end without their rows being read. `constant`: a SELECT of constants (classify.py),
    run as it is, without binding it first (results.fetch_constant)."""
    wanted = {k: params[k] for k in statement.named_parameters} or None
    try:
        kind = statement.type
    except ValueError:  # a statement type this client cannot name (UPDATE EXTENSIONS, say)
        return _run_through(con, statement.query, wanted, None), False
    if is_last and constant and kind == _T.SELECT:
        result = fetch_constant(con, statement, wanted, limit, max_columns)
    elif not is_last:
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
