"""Completion (Tab), inspection (Shift-Tab) and is_complete, from DuckDB's catalog and the RSSD.

The catalog (tables, views, schemas, databases and their columns) is read once after each
cell, when the next completion asks for it; DuckDB's functions and keywords once per
session. A completion is then string matching in memory.
"""

import re
from dataclasses import dataclass, field

import duckdb

from rssd_kernel import classify, commands, directives
from rssd_kernel.tokens import positions as token_positions

_WORD = re.compile(r'[\w"]+(?:\.[\w"]*)*$')
_DIRECTIVE = re.compile(r"--\s*@(\w*)$")


@dataclass
class Catalog:
    relations: dict[str, str] = field(default_factory=dict)  # lower name -> "table" | "view"
    names: dict[str, str] = field(default_factory=dict)  # lower name -> name as written
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # lower table -> cols
    schemas: set[str] = field(default_factory=set)
    databases: set[str] = field(default_factory=set)


def load_catalog(con) -> Catalog:
    catalog = Catalog()
    for name, kind in con.execute(
        "SELECT table_name, 'table' FROM duckdb_tables() "
        "UNION ALL SELECT view_name, 'view' FROM duckdb_views() WHERE NOT internal"
    ).fetchall():
        catalog.relations[name.lower()] = kind
        catalog.names[name.lower()] = name
    for table, column, data_type in con.execute(
        "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal "
        "ORDER BY table_name, column_index"
    ).fetchall():
        catalog.columns.setdefault(table.lower(), []).append((column, data_type))
    catalog.schemas = {
        s for (s,) in con.execute("SELECT DISTINCT schema_name FROM duckdb_schemas()").fetchall()
    }
    catalog.databases = {
        d for (d,) in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()
    }
    return catalog


def load_functions(con) -> tuple[list[str], list[str]]:
    functions = sorted({f for (f,) in con.execute(
        "SELECT DISTINCT function_name FROM duckdb_functions() "
        "WHERE NOT starts_with(function_name, '__')").fetchall()})  # fmt: skip
    keywords = sorted(
        k.upper() for (k,) in con.execute("SELECT keyword_name FROM duckdb_keywords()").fetchall()
    )
    return functions, keywords


def _statement_around(code: str, cursor: int) -> str:
    start = code.rfind(";", 0, cursor) + 1
    end = code.find(";", cursor)
    return code[start : end if end >= 0 else len(code)]


def _aliases(statement: str, catalog: Catalog, named: set[str]) -> dict[str, str]:
    """alias (or table name) -> table, for the relations a statement mentions."""
    try:
        tokens = classify.words(statement)
    except Exception:  # half-typed SQL the tokenizer rejects
        tokens = statement.split()
    found: dict[str, str] = {}
    for index, token in enumerate(tokens):
        name = token.strip('"').split(".")[-1].lower()
        if name not in catalog.relations and name not in named:
            continue
        found[name] = name
        rest = tokens[index + 1 : index + 3]
        if rest and rest[0].lower() == "as" and len(rest) > 1:
            found[rest[1].strip('"').lower()] = name
        elif rest and rest[0].isidentifier() and rest[0].lower() not in _NOT_ALIASES:
            found[rest[0].strip('"').lower()] = name
    return found


_NOT_ALIASES = {
    "where", "join", "left", "right", "inner", "outer", "full", "cross", "on", "using", "group",
    "order", "limit", "union", "except", "intersect", "natural", "select", "set", "values",
    "having", "window", "qualify", "returning", "positional", "asof", "anti", "semi", "lateral",
}  # fmt: skip


def complete(code: str, cursor: int, catalog: Catalog, functions: list[str], keywords: list[str],
             named: dict[str, list[tuple[str, str]]]) -> tuple[list[str], int]:  # fmt: skip
    """Matches for the text before `cursor`, and where the replaced text starts."""
    line = code[code.rfind("\n", 0, cursor) + 1 : cursor]
    directive = _DIRECTIVE.search(line)
    if directive:
        prefix = directive.group(1)
        return sorted(d for d in directives.KNOWN if d.startswith(prefix)), cursor - len(prefix)
    stripped = code[:cursor].lstrip()
    if stripped.startswith("%") and " " not in stripped and "\n" not in stripped:
        prefix = stripped[1:]
        return [f"%{c}" for c in commands.COMMANDS if c.startswith(prefix)], cursor - len(
            prefix
        ) - 1
    match = _WORD.search(line)
    word = match.group() if match else ""
    if "." in word:
        qualifier, prefix = word.rsplit(".", 1)
        qualifier = qualifier.strip('"').split(".")[-1].lower()
        aliases = _aliases(_statement_around(code, cursor), catalog, set(named))
        table = aliases.get(qualifier, qualifier)
        candidates = [c for c, _ in catalog.columns.get(table, named.get(table, []))]
        if qualifier in {s.lower() for s in catalog.schemas} | {
            d.lower() for d in catalog.databases
        }:
            candidates += list(catalog.names.values()) + sorted(catalog.schemas)
        return _matching(candidates, prefix), cursor - len(prefix)
    prefix = word.strip('"')
    aliases = _aliases(_statement_around(code, cursor), catalog, set(named))
    columns = [c for table in dict.fromkeys(aliases.values())
               for c, _ in catalog.columns.get(table, named.get(table, []))]  # fmt: skip
    candidates = (columns + list(catalog.names.values()) + sorted(named) + sorted(catalog.schemas)
                  + sorted(catalog.databases) + functions + keywords)  # fmt: skip
    return _matching(candidates, prefix), cursor - len(word)


def _matching(candidates: list[str], prefix: str) -> list[str]:
    lowered = prefix.lower()
    return list(dict.fromkeys(c for c in candidates if c.lower().startswith(lowered)))


def word_at(code: str, cursor: int) -> str:
    """The identifier (possibly qualified) under or just before the cursor."""
    start = cursor
    while start > 0 and (code[start - 1].isalnum() or code[start - 1] in "_."):
        start -= 1
    end = cursor
    while end < len(code) and (code[end].isalnum() or code[end] == "_"):
        end += 1
    return code[start:end].split(".")[-1]


_CARET = re.compile(r"LINE (\d+): (.*)\n(\s*)\^")


def is_complete(code: str) -> dict:
    """'complete', 'incomplete' (with an indent) or 'invalid', decided with DuckDB's parser:
    a parse error is 'incomplete' when the statement is cut short (an unterminated string,
    an unclosed parenthesis, or an error at a last token that needs something after it)."""
    incomplete = {"status": "incomplete", "indent": "    "}
    if not code.strip() or code.lstrip().startswith("%"):  # a kernel command is one line
        return {"status": "complete"}
    try:
        duckdb.extract_statements(code)
        return {"status": "complete"}
    except duckdb.Error as error:
        text = str(error)
    if "unterminated" in text.lower() or "end of input" in text:
        return incomplete
    positions = token_positions(code)
    tokens = [
        (start, code[start : positions[i + 1][0] if i + 1 < len(positions) else len(code)].strip(),
         str(kind))
        for i, (start, kind) in enumerate(positions) if not str(kind).endswith("comment")
    ]  # fmt: skip
    depth = sum((t == "(") - (t == ")") for _, t, k in tokens if k.endswith("operator"))
    if depth > 0:
        return incomplete
    caret = _CARET.search(text)
    if caret and tokens:
        line = int(caret.group(1))
        line_start = sum(len(x) + 1 for x in code.split("\n")[: line - 1])
        shown = caret.group(2)
        offset = line_start + len(caret.group(3)) - len(f"LINE {line}: ")
        if not shown.startswith("...") and offset >= tokens[-1][0]:
            last, kind = tokens[-1][1], tokens[-1][2]
            if kind.endswith("keyword") or (kind.endswith("operator") and last not in (")", ";")):
                return incomplete
    return {"status": "invalid"}


def inspect(con, state, name: str) -> str | None:
    """What Shift-Tab shows for a table, view, named result or function; None if unknown."""
    lowered = name.lower()
    tables = con.execute(
        "SELECT database_name, schema_name, table_name, 'table', estimated_size "
        "FROM duckdb_tables() WHERE lower(table_name) = ? UNION ALL "
        "SELECT database_name, schema_name, view_name, 'view', NULL "
        "FROM duckdb_views() WHERE NOT internal AND lower(view_name) = ?",
        [lowered, lowered],
    ).fetchall()
    if tables:
        database, schema, table, kind, estimate = tables[0]
        qualified = ".".join(f'"{p}"' for p in (database, schema, table))
        if kind == "view" or (estimate or 0) < 1_000_000:
            rows = f"{con.execute(f'SELECT count(*) FROM {qualified}').fetchall()[0][0]:,} rows"
        else:
            rows = f"about {estimate:,} rows (estimate)"
        columns = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = ? AND "
            "schema_name = ? AND table_name = ? ORDER BY column_index",
            [database, schema, table],
        ).fetchall()
        lines = [f"{kind} {database}.{schema}.{table}: {rows}", ""]
        lines += [f"  {column}  {data_type}" for column, data_type in columns]
        made = con.execute(
            """SELECT p.exec_identity, p.session_id,
                      json_extract_string(p.elaboration, '$.started_at')
               FROM orchestration_session_exec c JOIN orchestration_session_exec p
                 ON p.orchestration_session_exec_id = c.parent_exec_id
               WHERE lower(json_extract_string(c.elaboration, '$.target')) = ?
                 AND json_extract_string(c.elaboration, '$.statement_type') = 'CREATE'
                 AND c.exec_status = 0
               ORDER BY c.orchestration_session_exec_id DESC LIMIT 1""",
            [lowered],
        ).fetchall()
        if made:
            key, session, started = made[0]
            lines += ["", f"created by cell {key} in session {session} at {started}"]
        return "\n".join(lines)
    named = describe_named(state, name)
    if named:
        return named
    functions = con.execute(
        "SELECT function_type, return_type, parameters, parameter_types, description "
        "FROM duckdb_functions() WHERE lower(function_name) = ? LIMIT 12",
        [lowered],
    ).fetchall()
    if functions:
        lines = [f"function {name}", ""]
        for kind, returns, params, types, _ in functions:
            args = ", ".join(f"{p} {t}" for p, t in zip(params or [], types or []))
            lines.append(f"  {name}({args}) -> {returns}  [{kind}]")
        description = next((f[4] for f in functions if f[4]), None)
        if description:
            lines += ["", description]
        return "\n".join(lines)
    return None


def describe_named(state, name: str) -> str | None:
    """What Shift-Tab shows for a named result (any engine); None if there is none."""
    if name not in state.result_names():
        return None
    data = state.result(name)
    latest = state.latest.get(name)
    rows = data.get("row_count", len(data.get("rows", [])))
    shape = f"{rows} rows × {len(data.get('columns', []))} columns"
    lines = [f"named result {name}: {shape}", ""]
    lines += [f"  {c['name']}  {c['type']}" for c in data.get("columns", [])]
    if latest:
        lines += ["", f"recorded {latest.transitioned_at} in session {latest.session_id}"]
    if data.get("not_recorded"):
        lines += [f"not recorded for later cells: {data['not_recorded']}"]
    return "\n".join(lines)
