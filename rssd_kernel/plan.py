"""A cell's plan: its directives, its statements as DuckDB parses them, each statement's
predicted kind (classify.py), the cell's kind and its key (keys.py). Nothing runs here."""

import re
from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from rssd_kernel import classify, directives
from rssd_kernel.database import rssd_tables
from rssd_kernel.errors import AuditTrailError
from rssd_kernel.keys import Keys, code_hash
from rssd_kernel.statements import Failure, locate, split_duckdb_error

ALWAYS = "always"  # `-- @always`: runs every time as written, with no net and no state
_WRITES = classify.DML_TYPES | {duckdb.StatementType.COPY}


@dataclass
class Plan:
    code: str
    directives: directives.Directives
    statements: list
    classified: list[classify.Classified]
    kind: str  # STATEFUL (predicted or -- @once), SESSION, READ or ALWAYS
    key: str
    digest: str
    cell_id: str | None

    @property
    def name(self) -> str | None:
        return self.directives.name

    @property
    def always(self) -> bool:
        return self.kind == ALWAYS


def make(
    code: str,
    cell_id: str | None,
    keys: Keys | None,
    temp_names: Callable[[], set],
    catalog: str = "memory",
) -> Plan:
    """Plan `code`. `temp_names` lists the session's temporary objects (see NamedResults);
    it is called only when a statement writes a target that could be one. `catalog` is the
    RSSD's database: a cell that would change the RSSD's own tables is refused."""
    found = directives.parse(code)
    statements = _parse(code)
    temp: set[str] = set()
    if any(_type(s) in _WRITES for s in statements):
        temp = set(temp_names())
    classified = []
    for statement in statements:
        classes = classify.classify(statement, temp)
        if classes.creates_temp:
            temp.add(classes.creates_temp)
        classified.append(classes)
    _protect(statements, classified, catalog)
    kind = classify.cell_kind(classified)
    if found.once and statements:
        kind = classify.STATEFUL
    elif found.always:
        kind = ALWAYS
    digest = code_hash(code)
    # Without `keys` the key is left to the caller (keys.Keys.key takes an occurrence).
    key = found.name or (keys.key(digest, cell_id) if keys is not None else "")
    return Plan(code, found, statements, classified, kind, key, digest, cell_id)


_WRITES_TARGET = {"CREATE", "INSERT", "UPDATE", "DELETE", "MERGE_INTO", "DROP", "ALTER", "COPY"}
_PREPARE = re.compile(r"(?is)^\s*prepare\s+\S+\s+as\s+(.*)$")


def _protect(statements, classified, catalog: str) -> None:
    """Refuse a cell that would change the RSSD's tables (the audit trail is append-only
    and only rssd writes it) or detach the RSSD's database."""
    protected = set(rssd_tables())
    for number, (statement, classes) in enumerate(zip(statements, classified), start=1):
        targets = []
        if classes.statement_type in _WRITES_TARGET and classes.kind != classify.READ:
            if not classes.session_effect:  # a TEMP object may share a name: that is fine
                targets.append((classes.target, classes.verb))
        elif classes.statement_type == "PREPARE":
            inner = _PREPARE.match(statement.query)
            for prepared in _parse(inner.group(1)) if inner else []:
                c = classify.classify(prepared)
                if c.statement_type in _WRITES_TARGET and not c.session_effect:
                    targets.append((c.target, f"PREPARE of {c.verb}"))
        elif classes.statement_type == "DETACH":
            words = [w.lower().strip('"') for w in classify.words(statement.query)]
            name = next((w for w in words[1:] if w not in ("database", "if", "exists")), "")
            if name == catalog.lower():
                raise AuditTrailError(
                    f"Statement {number} would detach {catalog}, the database that holds this "
                    "session's RSSD.",
                    f"Keep {catalog} attached; detach only databases you attached yourself.",
                )
        for target, verb in targets:
            parts = (target or "").split(".")
            home = (
                len(parts) == 1
                or (len(parts) == 2 and parts[0] in ("main", catalog.lower()))
                or (len(parts) == 3 and parts[0] == catalog.lower() and parts[1] == "main")
            )
            if parts[-1] in protected and home:
                raise AuditTrailError(
                    f"Statement {number} ({verb}) would change {parts[-1]}, one of the RSSD "
                    "tables that rssd keeps as an append-only audit trail; cells may read "
                    "them, not change them.",
                    "Read them with SELECT. To apply a stateful cell again, run `%forget "
                    "KEY` (see %state).",
                )


def _type(statement):
    try:
        return statement.type
    except ValueError:  # a type this client cannot name
        return None


def _parse(code: str) -> list:
    try:
        return duckdb.extract_statements(code)
    except duckdb.Error as error:
        ename, evalue = split_duckdb_error(error)
        line, column = locate(str(error), 1)
        raise Failure(ename, evalue, "the cell (while parsing it)", line, column) from None
