"""Running one statement on PostgreSQL, with a bounded fetch; its errors; the session's
temporary objects and the catalog.

Rows are read through a cursor (DECLARE ... FETCH): only the rows shown are computed and
sent. Values travel as PostgreSQL's own text, next to the type's name, so that
`CAST(text AS type)` brings them back (`restore_sql`).
"""

import json

import psycopg
from psycopg import pq

from rssd_kernel.engines.pg_connection import Connection, _first_line
from rssd_kernel.engines.pg_statements import Statement
from rssd_kernel.errors import RssdError
from rssd_kernel.results import Result, quote_ident

# -- running a statement -------------------------------------------------------------------

_ROW_KINDS = {"SelectStmt"}
DECLARE = "DECLARE rssd_cell NO SCROLL CURSOR FOR\n"
_COUNTED = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "CopyStmt",
            "CreateTableAsStmt"}  # fmt: skip


def run_statement(con: Connection, statement: Statement, params: dict, limit: int,
                  is_last: bool, max_columns: int, types: "TypeNames",
                  stop_early: bool = False):  # fmt: skip
    """Run one statement: (its Result, whether it returns rows to show). A SELECT runs
    through a cursor, so only `limit` + 1 rows are sent. Only when `stop_early` (the caller
    knows the query can write nothing) are only those rows computed; otherwise the query
    runs to its end on the server (MOVE ALL), so that whatever it does is done whole.
    Another statement's rows (RETURNING, SHOW, EXPLAIN) are read up to the same bound."""
    sql, args = statement.executable(params)
    raw = con.raw
    cursor = psycopg.RawCursor(raw)
    if _declared(statement):
        own = raw.info.transaction_status == pq.TransactionStatus.IDLE
        if own:  # a cursor needs a transaction (an '@always' cell's SELECT, say)
            raw.execute("BEGIN")
        try:
            if stop_early and (statement.functions or statement.relations):
                # Only the rows shown are computed: compiling the plan for the whole result
                # (PostgreSQL's JIT, which loads LLVM the first time) is time lost. LOCAL:
                # the session's own setting is back at the end of the transaction.
                raw.execute("SET LOCAL jit = off")
            cursor.execute(DECLARE + sql, args or None)
            description, rows = None, []
            if is_last:
                cursor.execute(f"FETCH FORWARD {limit + 1} FROM rssd_cell")
                description, rows = cursor.description, cursor.fetchall()
            if not (is_last and stop_early):  # the rest runs on the server; no row travels
                cursor.execute("MOVE ALL IN rssd_cell")
            cursor.execute("CLOSE rssd_cell")
            if own:
                raw.execute("COMMIT")
        except BaseException:
            if own and raw.info.transaction_status != pq.TransactionStatus.IDLE:
                try:
                    raw.execute("ROLLBACK")
                except psycopg.Error:
                    pass
            raise
        if not is_last:
            return Result([], [], complete=False, fetched=False), False
        return _result(description, rows, limit, max_columns, types, con), True
    cursor.execute(sql, args or None)
    if cursor.description is None:
        if statement.kind in _COUNTED or (statement.kind == "SelectStmt"):
            count = cursor.rowcount if cursor.rowcount >= 0 else 0
            return Result(["Count"], ["bigint"], [[str(count)]]), False
        return Result([], []), False
    rows = cursor.fetchmany(limit + 1)
    return _result(cursor.description, rows, limit, max_columns, types, con), True


def _result(description, rows, limit, max_columns, types, con) -> Result:
    names = [d.name for d in description]
    oids = [d.type_code for d in description]
    total = len(names)
    if max_columns is not None and total > max_columns:
        names, oids = names[:max_columns], oids[:max_columns]
    type_names = types.names(con, oids)
    shown = [list(row[: len(names)]) for row in rows[:limit]]
    return Result(names, type_names, shown, complete=len(rows) <= limit, total_columns=total)


class TypeNames:
    """PostgreSQL's names of result column types (format_type), cached per OID."""

    def __init__(self):
        self.known: dict[int, str] = {}
        for info in psycopg.postgres.types:
            if info.regtype:
                self.known[info.oid] = info.regtype
                if info.array_oid:
                    self.known[info.array_oid] = info.regtype + "[]"

    def names(self, con: Connection, oids: list[int]) -> list[str]:
        missing = sorted({o for o in oids if o not in self.known})
        if missing:
            try:
                rows = con.raw.execute(
                    "SELECT oid::int8, format_type(oid, NULL) FROM pg_type WHERE oid = ANY(%s)",
                    [missing],
                ).fetchall()
                for oid, name in rows:
                    self.known[int(oid)] = name
            except psycopg.Error:
                pass  # an aborted transaction: the OID stands in for the name
        return [self.known.get(o, f"oid {o}") for o in oids]


# -- errors ----------------------------------------------------------------------------------


def split_error(error: Exception) -> tuple[str, str]:
    """(PostgreSQL's condition name, e.g. 'UndefinedTable', and its message)."""
    if isinstance(error, psycopg.errors.QueryCanceled):
        return "Interrupted", (
            "The statement was cancelled on the server; its changes were not kept (in a "
            "stateful cell, nothing of the cell was kept)."
        )
    name = type(error).__name__
    diag = getattr(error, "diag", None)
    message = (diag.message_primary if diag is not None else None) or _first_line(error)
    extra = [
        f"{label}: {value}"
        for label, value in (
            ("DETAIL", diag.message_detail if diag is not None else None),
            ("HINT", diag.message_hint if diag is not None else None),
        )
        if value
    ]
    if isinstance(error, psycopg.errors.InvalidTransactionTermination):
        extra.append(
            "rssd runs every cell in a transaction; a procedure that commits needs a cell of "
            "its own whose first line is '-- @always' (it then runs as written, every time)."
        )
    if isinstance(error, psycopg.OperationalError) and diag is not None and not diag.sqlstate:
        name = "ConnectionLost" if "closed" in message or "terminat" in message else name
    return name, "\n".join([message, *extra])


def locate(error: Exception, statement: Statement, params: dict, code: str, start: int):
    """(line, column) in the cell of the error's position, if the server gave one; `start`
    is where the statement begins in the cell `code`."""
    diag = getattr(error, "diag", None)
    position = diag.statement_position if diag is not None else None
    try:
        position = int(position) if position else None
    except ValueError:
        position = None
    if not position:
        return None, None
    if _declared(statement):
        position -= len(DECLARE)
    absolute = start + statement.position(params, position)
    line = code.count("\n", 0, absolute) + 1
    column = absolute - (code.rfind("\n", 0, absolute) + 1) + 1
    return line, column


def _declared(statement: Statement) -> bool:
    """Whether the statement runs through a cursor (a SELECT that creates nothing and has
    no INSERT, UPDATE, DELETE or MERGE in its WITH: DECLARE refuses those)."""
    return (
        statement.kind in _ROW_KINDS
        and getattr(statement.node, "intoClause", None) is None
        and not statement.writing_ctes
    )


def is_refused(error: Exception) -> bool:
    """The read-only net refused a write to a permanent object."""
    return isinstance(error, psycopg.errors.ReadOnlySqlTransaction)


def is_connection_lost(error: Exception, con: Connection) -> bool:
    return isinstance(error, psycopg.OperationalError) and (con.raw.broken or con.raw.closed)


# -- the session's objects and the catalog -------------------------------------------------

TEMP_NAMES = """
SELECT c.relname FROM pg_class c WHERE c.relnamespace = pg_my_temp_schema()
UNION SELECT t.typname FROM pg_type t WHERE t.typnamespace = pg_my_temp_schema()
"""


def temp_names(con: Connection) -> set[str]:
    try:
        return {name for (name,) in con.raw.execute(TEMP_NAMES).fetchall()}
    except psycopg.Error:
        return set()


def persistent_names(con: Connection, names: set[str]) -> set[str]:
    """Which of `names` are tables or views the cell's search path finds (not TEMP)."""
    if not names:
        return set()
    rows = con.raw.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relname = ANY(%s) AND c.relkind IN "
        "('r', 'v', 'm', 'p', 'f') AND c.relpersistence <> 't' "
        "AND c.relnamespace = ANY(current_schemas(false)::regnamespace[])",
        [sorted(names)],
    ).fetchall()
    return {name for (name,) in rows}


def restore_sql(result: Result) -> tuple[str, list]:
    """A SELECT (and its one parameter) that gives the result back with its types."""
    if "record" in result.types:
        column = result.columns[result.types.index("record")]
        raise RssdError(
            f"The column '{column}' holds values of an anonymous composite type (record), "
            "which PostgreSQL cannot read back from text, so later cells cannot use this "
            "result.",
            "Cast the column to a named type in the named cell (CREATE TYPE ... AS (...), "
            "then ROW(...)::that_type), or select its fields as columns.",
        )
    select = ", ".join(
        f"CAST(r->>{index} AS {type_name}) AS {quote_ident(name)}"
        for index, (name, type_name) in enumerate(zip(result.columns, result.types))
    )
    return f"SELECT {select} FROM json_array_elements(CAST($1 AS json)) AS r", [
        _json_rows(result.rows)
    ]


def _json_rows(rows: list) -> str:
    return json.dumps(rows)


def load_catalog(con: Connection):
    from rssd_kernel.complete import Catalog

    catalog = Catalog()
    raw = con.raw
    for schema, name, kind in raw.execute(
        "SELECT table_schema, table_name, CASE table_type WHEN 'VIEW' THEN 'view' "
        "ELSE 'table' END FROM information_schema.tables "
        "WHERE table_schema <> 'information_schema'"
    ).fetchall():
        catalog.relations[name.lower()] = kind
        catalog.names[name.lower()] = name
        catalog.schemas.add(schema)
    for table, column, data_type in raw.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema <> 'information_schema' "
        "ORDER BY table_name, ordinal_position"
    ).fetchall():
        catalog.columns.setdefault(table.lower(), []).append((column, data_type))
    catalog.databases = {d for (d,) in raw.execute("SELECT current_database()").fetchall()}
    return catalog


def load_functions(con: Connection) -> tuple[list[str], list[str]]:
    raw = con.raw
    functions = sorted(
        {f for (f,) in raw.execute("SELECT DISTINCT proname FROM pg_proc").fetchall()}
    )
    keywords = sorted(w.upper() for (w,) in raw.execute("SELECT word FROM pg_get_keywords()"))
    return functions, keywords


def inspect(con: Connection, state, name: str) -> str | None:
    """What Shift-Tab shows for a table, view, named result or function; None if unknown."""
    from rssd_kernel.complete import describe_named

    raw = con.raw
    found = raw.execute(
        "SELECT table_schema, table_name, lower(table_type) FROM information_schema.tables "
        "WHERE table_name = %s OR lower(table_name) = lower(%s) ORDER BY table_schema LIMIT 1",
        [name, name],
    ).fetchall()
    if found:
        schema, table, kind = found[0]
        qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
        estimate = raw.execute(
            "SELECT reltuples::int8 FROM pg_class WHERE oid = to_regclass(%s)", [qualified]
        ).fetchall()
        estimate = int(estimate[0][0]) if estimate and estimate[0][0] is not None else -1
        if estimate < 1_000_000:
            count = raw.execute(f"SELECT count(*) FROM {qualified}").fetchall()[0][0]
            rows = f"{int(count):,} rows"
        else:
            rows = f"about {estimate:,} rows (estimate)"
        columns = raw.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
        lines = [f"{kind} {schema}.{table}: {rows}", ""]
        lines += [f"  {column}  {data_type}" for column, data_type in columns]
        return "\n".join(lines)
    named = describe_named(state, name)
    if named:
        return named
    functions = raw.execute(
        "SELECT pg_get_function_identity_arguments(oid), pg_get_function_result(oid) "
        "FROM pg_proc WHERE proname = lower(%s) LIMIT 12",
        [name],
    ).fetchall()
    if functions:
        lines = [f"function {name}", ""]
        lines += [f"  {name}({args}) -> {returns}" for args, returns in functions]
        return "\n".join(lines)
    return None


# VOLATILE built-ins that write nothing: a TEMP table may be made from them.
_HARMLESS = {"random", "random_normal", "clock_timestamp", "timeofday", "gen_random_uuid"}


def may_write(con: Connection, statement: Statement) -> bool:
    """Whether running the statement further could write: it calls a VOLATILE function
    (nextval, a function of the user's; a few harmless built-ins such as random() aside)
    or reads a view (which may call one). Asked of the catalog on the cell's connection,
    so that its search path and TEMP objects count, each time (a function may be replaced
    by a VOLATILE one); when in doubt, True. The connection reads values as text."""
    names, relations = sorted(statement.functions), statement.relations
    if not names and not relations:
        return False
    try:
        raw = con.raw
        if names:
            ((volatile,),) = raw.execute(
                "SELECT coalesce(bool_or(p.provolatile = 'v' AND NOT (n.nspname = "
                "'pg_catalog' AND p.proname = ANY(%s))), false) FROM pg_proc p JOIN "
                "pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = ANY(%s)",
                [sorted(_HARMLESS), names],
            ).fetchall()
            if volatile in ("t", True):
                return True
        if relations:
            ((view,),) = raw.execute(
                "SELECT coalesce(bool_or(c.relkind NOT IN ('r', 'p', 'm', 'f', 't')), false) "
                "FROM unnest(%s::text[]) AS t(name) JOIN pg_class c ON c.oid = to_regclass(t.name)",
                [relations],
            ).fetchall()
            return view in ("t", True)
    except psycopg.Error:
        return True
    return False


def any_permanent(con: Connection, names: list[str]) -> bool:
    """Whether any of `names`, resolved through the cell's search path, is a permanent
    relation (not one of the session's TEMP objects)."""
    rows = con.raw.execute(
        "SELECT c.relpersistence FROM unnest(%s::text[]) AS t(name) "
        "JOIN pg_class c ON c.oid = to_regclass(t.name)",
        [names],
    ).fetchall()
    return any(persistence != "t" for (persistence,) in rows)


def schemas_of(con: Connection, names: list[str]) -> set[str]:
    """The schemas `names` resolve to through the cell's search path (those that exist)."""
    rows = con.raw.execute(
        "SELECT n.nspname FROM unnest(%s::text[]) AS t(name) JOIN pg_class c "
        "ON c.oid = to_regclass(t.name) JOIN pg_namespace n ON n.oid = c.relnamespace",
        [names],
    ).fetchall()
    return {schema for (schema,) in rows}
