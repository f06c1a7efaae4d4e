"""PostgreSQL's statements: split and classified by PostgreSQL's own parser (pglast).

`$name` is not PostgreSQL syntax: it is parsed as a parameter here (dollar quotes and
comments are left alone), and `Statement.executable` sends it as a positional `$1`, typed
with the named result's type. Classification follows the rule in classify.py: STATEFUL
only when the parse tree says the statement writes a permanent object. TEMP DDL is SESSION
and runs outside the read-only net (PostgreSQL refuses every CREATE, DROP and ALTER in a
read-only transaction, TEMP ones included); everything else runs under the net, where the
server decides.
"""

import re
from dataclasses import dataclass, field

from pglast import ast
from pglast import parser as pg_parser

from rssd_kernel import classify
from rssd_kernel.errors import AuditTrailError, InvalidInput

# -- statements ----------------------------------------------------------------------------------


@dataclass
class Statement:
    """One statement of a cell as PostgreSQL's parser found it."""

    query: str  # its text in the cell
    node: object  # pglast's parse tree
    sites: list[tuple[int, int, str]] = field(default_factory=list)  # $name: start, end, name
    words: list[str] = field(default_factory=list)  # its tokens' text (for the verb)

    @property
    def named_parameters(self) -> list[str]:
        return list(dict.fromkeys(name for _, _, name in self.sites))

    @property
    def functions(self) -> set[str]:
        """The names of the functions the statement calls (their last part, lower-cased)."""
        return {
            str(f.funcname[-1].sval).lower()
            for f in walk(self.node)
            if isinstance(f, ast.FuncCall) and f.funcname
        }

    @property
    def relations(self) -> list[str]:
        """The relations it names, qualified as written (CTE names included)."""
        return [_target(r) for r in walk(self.node) if isinstance(r, ast.RangeVar)]

    @property
    def writing_ctes(self) -> list:
        """The INSERT, UPDATE, DELETE or MERGE statements in its WITH clause."""
        with_clause = getattr(self.node, "withClause", None)
        ctes = with_clause.ctes if with_clause is not None and with_clause.ctes else ()
        return [c.ctequery for c in ctes if type(c.ctequery).__name__ in _DML]

    @property
    def kind(self) -> str:
        return type(self.node).__name__

    def executable(self, params: dict) -> tuple[str, list]:
        """The text to send, with `$name` as `$1::type`, and the values in order."""
        if not self.sites:
            return self.query, []
        names = self.named_parameters
        parts, last = [], 0
        for start, end, name in self.sites:
            value, type_name = params[name]
            cast = f"::{type_name}" if type_name else ""
            parts += [self.query[last:start], f"${names.index(name) + 1}{cast}"]
            last = end
        parts.append(self.query[last:])
        return "".join(parts), [params[name][0] for name in names]

    def position(self, params: dict, position: int) -> int:
        """The 0-based offset in `query` of a 1-based position in `executable`'s text."""
        offset = position - 1
        shift = 0
        names = self.named_parameters
        for start, end, name in self.sites:
            type_name = params.get(name, (None, None))[1] if params else None
            written = len(f"${names.index(name) + 1}") + (len(type_name) + 2 if type_name else 0)
            if offset < start + shift + written:
                break
            shift += written - (end - start)
        return max(0, offset - shift)


class ParseFailure(Exception):
    def __init__(self, message: str, offset: int | None):
        super().__init__(message)
        self.offset = offset


def split(code: str) -> list[Statement]:
    """The cell's statements, as PostgreSQL's parser splits them. `$name` (not PostgreSQL
    syntax) is parsed as a parameter; dollar-quoted strings and comments are left alone."""
    tokens = _scan(code)
    sites, parse_text = [], code
    for (start, end, name, _), following in zip(tokens, tokens[1:]):
        if name == "ASCII_36" and following[0] == end and following[3] != "SCONST":
            word = code[following[0] : following[1]]
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word):
                sites.append((start, following[1], word))
    for start, end, _ in sites:  # same length, so offsets stay the cell's
        parse_text = parse_text[:start] + "$1".ljust(end - start) + parse_text[end:]
    try:
        raw = pg_parser.parse_sql(parse_text)
    except pg_parser.ParseError as error:
        message, location = (list(error.args) + [None, None])[:2]
        if not isinstance(location, int):
            location = None
        raise ParseFailure(str(message), _char(code, location)) from None
    out = []
    for item in raw:
        start = _char(code, item.stmt_location)
        end = len(code) if not item.stmt_len else _char(code, item.stmt_location + item.stmt_len)
        query = code[start:end]
        mine = [(s - start, e - start, n) for s, e, n in sites if start <= s < end]
        words = [code[s:e] for s, e, _, k in tokens if start <= s < end and k != "COMMENT"]
        out.append(Statement(query, item.stmt, mine, words))
    return out


def _scan(code: str) -> list[tuple[int, int, str, str]]:
    """(start, end, token name, kind) in characters; COMMENT for comments."""
    try:
        found = pg_parser.scan(code)
    except pg_parser.ParseError:
        return []
    out = []
    for token in found:
        start, end = _char(code, token.start), _char(code, token.end + 1)
        kind = "COMMENT" if token.name in ("SQL_COMMENT", "C_COMMENT") else token.name
        out.append((start, end, token.name, kind))
    return out


def _char(code: str, offset: int | None) -> int | None:
    """pglast gives offsets in characters (libpg_query's byte offsets converted)."""
    return None if offset is None or offset < 0 else offset


def walk(node):
    """Every node of a parse tree, depth first."""
    if isinstance(node, (tuple, list)):
        for item in node:
            yield from walk(item)
    elif isinstance(node, ast.Node):
        yield node
        for name in node.__slots__:
            yield from walk(getattr(node, name, None))


# -- classification ------------------------------------------------------------------------

_TYPES = {
    "SelectStmt": "SELECT", "InsertStmt": "INSERT", "UpdateStmt": "UPDATE",
    "DeleteStmt": "DELETE", "MergeStmt": "MERGE_INTO", "CopyStmt": "COPY",
    "DropStmt": "DROP", "TruncateStmt": "DELETE", "TransactionStmt": "TRANSACTION",
    "VariableSetStmt": "SET", "VariableShowStmt": "SHOW", "PrepareStmt": "PREPARE",
    "ExecuteStmt": "EXECUTE", "ExplainStmt": "EXPLAIN", "CallStmt": "CALL", "DoStmt": "CALL",
    "VacuumStmt": "VACUUM",
}  # fmt: skip
_DML = {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}
# Functions that write outside what a read-only transaction guards (PostgreSQL 15 lets
# large-object writes through it; dblink writes through another connection).
OUTSIDE_THE_NET = {
    "lo_create", "lo_creat", "lo_import", "lo_put", "lo_unlink", "lo_from_bytea", "lowrite",
    "lo_truncate", "lo_truncate64", "lo_export", "dblink_exec", "dblink",
}  # fmt: skip
_SESSION_ONLY = {
    "VariableSetStmt", "DiscardStmt", "DeallocateStmt", "ListenStmt", "UnlistenStmt",
    "NotifyStmt", "LoadStmt", "PrepareStmt",
}  # fmt: skip
_DDL_PREFIXES = ("Create", "Alter", "Drop", "Grant", "Revoke", "Comment", "Rename", "Refresh",
                 "Cluster", "Import", "Sec", "Reassign", "Rule", "Define", "CompositeType",
                 "View", "Index", "Reindex", "Truncate", "Lock")  # fmt: skip


def classify_statement(statement: Statement, temp_names: set[str]) -> classify.Classified:
    """Predict what the statement does (see classify.py for the rule). STATEFUL only when
    the parse tree says it writes a permanent object; temporary DDL is SESSION and runs
    outside the net (PostgreSQL refuses all DDL in a read-only transaction); what is left
    runs under the net, where the server decides."""
    node, kind = statement.node, statement.kind
    verb = classify.verb(statement.words)
    stype = _TYPES.get(kind) or ("CREATE" if kind.startswith(("Create", "View", "Index"))
                                 else "ALTER" if kind.startswith(("Alter", "Rename"))
                                 else kind.removesuffix("Stmt").upper())  # fmt: skip
    C = classify.Classified

    def write(relation, net_if_temp=True, creates=False, as_type=stype):
        target = _target(relation)
        if _is_temp(relation, temp_names, creates):
            return C(classify.SESSION, as_type, verb, target, net=net_if_temp,
                     creates_temp=relation.relname if creates else None,
                     session_effect=True)  # fmt: skip
        return C(classify.STATEFUL, as_type, verb, target, net=False)

    if kind == "TransactionStmt":
        return C(classify.TRANSACTION, stype, verb, net=False)
    if kind in ("VacuumStmt",) and node.is_vacuumcmd or _concurrent(node) or kind in (
        "CreatedbStmt", "DropdbStmt", "AlterSystemStmt", "CreateTableSpaceStmt",
        "DropTableSpaceStmt", "AlterDatabaseSetStmt",
    ):  # fmt: skip
        return C(classify.NO_TRANSACTION, stype, verb, net=False)
    if statement.functions & OUTSIDE_THE_NET:  # large objects, dblink: the net cannot see
        return C(classify.STATEFUL, stype, verb, net=False)
    if kind == "SelectStmt":
        if node.intoClause is not None:
            return write(node.intoClause.rel, net_if_temp=False, creates=True, as_type="CREATE")
        writing = statement.writing_ctes
        if writing:  # WITH x AS (INSERT ...) SELECT ...: the CTE's target decides
            return write(writing[0].relation, as_type=_TYPES[type(writing[0]).__name__])
        if node.lockingClause:  # FOR UPDATE / SHARE locks rows, which read-only refuses
            return C(classify.READ, stype, verb, net=False)
        return C(classify.READ, stype, verb)
    if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"):
        return write(node.relation)  # TEMP writes pass the net
    if kind == "CopyStmt":
        if node.is_from and node.relation is not None:
            return write(node.relation)
        return C(classify.READ, stype, verb)
    if kind == "CreateStmt":
        return write(node.relation, net_if_temp=False, creates=True)
    if kind == "CreateTableAsStmt":
        return write(node.into.rel, net_if_temp=False, creates=True)
    if kind == "ViewStmt":
        return write(node.view, net_if_temp=False, creates=True)
    if kind == "CreateSeqStmt":
        return write(node.sequence, net_if_temp=False, creates=True)
    if kind in ("AlterTableStmt", "IndexStmt", "AlterSeqStmt"):
        relation = node.relation if kind != "AlterSeqStmt" else node.sequence
        return write(relation, net_if_temp=False)
    if kind == "TruncateStmt":
        relations = list(node.relations or ())
        if relations and all(_is_temp(r, temp_names) for r in relations):
            return C(classify.SESSION, stype, verb, _target(relations[0]), net=False,
                     session_effect=True)  # fmt: skip
        return C(classify.STATEFUL, stype, verb, _target(relations[0]) if relations else None,
                 net=False)  # fmt: skip
    if kind == "DropStmt":
        names = [_dotted(obj) for obj in node.objects or ()]
        if names and all(_temp_name(n, temp_names) for n in names):
            return C(classify.SESSION, stype, verb, names[0], net=False, session_effect=True)
        return C(classify.STATEFUL, stype, verb, names[0] if names else None, net=False)
    if kind in _SESSION_ONLY:
        return C(classify.SESSION, stype, verb, net=kind == "PrepareStmt", session_effect=True)
    if kind == "VariableShowStmt":
        return C(classify.READ, stype, verb, net=False)
    if kind.startswith(_DDL_PREFIXES):
        return C(classify.STATEFUL, stype, verb, net=False)
    return C(classify.READ, stype, verb)  # EXPLAIN, CALL, DO, EXECUTE...: the server decides


def _concurrent(node) -> bool:
    if type(node).__name__ == "IndexStmt":
        return bool(node.concurrent)
    if type(node).__name__ == "ReindexStmt":
        return any(getattr(p, "defname", "") == "concurrently" for p in node.params or ())
    if type(node).__name__ == "DropStmt":
        return bool(node.concurrent)
    return False


def _target(relation) -> str | None:
    if relation is None:
        return None
    return ".".join(p for p in (relation.catalogname, relation.schemaname, relation.relname) if p)


def _is_temp(relation, temp_names: set[str], creates: bool = False) -> bool:
    if relation is None:
        return False
    if relation.schemaname == "pg_temp" or (relation.schemaname or "").startswith("pg_temp_"):
        return True
    if creates:
        return relation.relpersistence == "t"
    return relation.schemaname is None and relation.relname in temp_names


def _dotted(obj) -> str:
    parts = obj if isinstance(obj, tuple) else (obj,)
    return ".".join(str(getattr(p, "sval", p)) for p in parts)


def _temp_name(name: str, temp_names: set[str]) -> bool:
    parts = name.split(".")
    if len(parts) == 2 and (parts[0] == "pg_temp" or parts[0].startswith("pg_temp_")):
        return True
    return len(parts) == 1 and parts[0] in temp_names


def targets(statement: Statement) -> list[str]:
    """The objects a statement changes, qualified as written: every relation of a DROP or
    TRUNCATE, the target of an INSERT, UPDATE, DELETE, MERGE, COPY FROM, ALTER or CREATE
    INDEX, and those of a WITH clause's INSERT, UPDATE, DELETE or MERGE."""
    node, kind = statement.node, statement.kind
    if kind == "DropStmt":
        return [_dotted(o) for o in node.objects or () if isinstance(o, tuple)]
    if kind == "TruncateStmt":
        return [_target(r) for r in node.relations or ()]
    relation = getattr(node, "relation", None)
    found = [_target(relation)] if isinstance(relation, ast.RangeVar) else []
    found += [_target(cte.relation) for cte in statement.writing_ctes]
    return found


def refuse_audit_change(number: int, verb: str, table: str) -> None:
    raise AuditTrailError(
        f"Statement {number} ({verb}) would change {table.split('.')[-1]}, one of the RSSD "
        "tables that rssd keeps as an append-only audit trail; cells may read them, not "
        "change them.",
        "Read them with SELECT. To apply a stateful cell again, run `%forget KEY` (see %state).",
    )


def protect(statements: list[Statement], classified, schema: str, rssd_tables) -> None:
    """Refuse a cell that would change the RSSD's tables (qualified with its schema) or drop
    its schema, and statements a notebook cannot run (COPY from or to the client)."""
    protected = set(rssd_tables)
    for number, (statement, classes) in enumerate(zip(statements, classified), start=1):
        node = statement.node
        if statement.kind == "CopyStmt" and not node.filename and not node.is_program:
            raise InvalidInput(
                f"Statement {number} copies {'from' if node.is_from else 'to'} the client "
                f"(COPY ... {'FROM STDIN' if node.is_from else 'TO STDOUT'}), and a notebook "
                "cell has no client stream to give or take.",
                "Use COPY ... FROM 'file' or TO 'file' (a file on the server), or INSERT ... "
                "SELECT; to load a file on this machine, use psql's \\copy.",
            )
        if statement.kind == "DropStmt" and "SCHEMA" in classes.verb.upper().split():
            if schema in [_dotted(o) for o in node.objects or ()]:
                raise AuditTrailError(
                    f"Statement {number} would drop the schema {schema}, which holds the "
                    "RSSD, the audit trail rssd keeps append-only.",
                    "Keep it; drop only your own schemas.",
                )
        for target in targets(statement):
            parts = target.split(".")
            if len(parts) >= 2 and parts[-2] == schema and parts[-1] in protected:
                refuse_audit_change(number, classes.verb, target)


def is_complete(code: str) -> dict:
    """'complete', 'incomplete' (with an indent) or 'invalid', decided with PostgreSQL's
    parser: a parse error is 'incomplete' when the statement is cut short (an unterminated
    string or comment, an unclosed parenthesis, or an error at a last token that needs
    something after it)."""
    incomplete = {"status": "incomplete", "indent": "    "}
    if not code.strip() or code.lstrip().startswith("%"):  # a kernel command is one line
        return {"status": "complete"}
    try:
        split(code)
        return {"status": "complete"}
    except ParseFailure as error:
        message, offset = str(error), error.offset
    if "unterminated" in message or "end of input" in message:
        return incomplete
    tokens = [t for t in _scan(code) if t[3] != "COMMENT"]
    depth = sum((code[s:e] == "(") - (code[s:e] == ")") for s, e, _, _ in tokens)
    if depth > 0 or not tokens:
        return incomplete if depth > 0 else {"status": "invalid"}
    start, end, name, _ = tokens[-1]
    if offset is not None and offset >= start and code[start:end] not in (")", ";"):
        keyword = name.isupper() and name not in ("IDENT", "SCONST", "ICONST", "FCONST", "PARAM")
        if keyword or name.startswith("ASCII_") or name == "Op":
            return incomplete
    return {"status": "invalid"}
