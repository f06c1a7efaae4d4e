"""A cell's plan: its directives, its statements as DuckDB parses them, each statement's
predicted kind (classify.py), the cell's kind and its key (keys.py). Nothing runs here."""

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from rssd_kernel import classify, directives
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


def make(code: str, cell_id: str | None, keys: Keys, temp_names: Callable[[], set]) -> Plan:
    """Plan `code`. `temp_names` lists the session's temporary tables and views; it is
    called only when a statement writes a target that could be one."""
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
    kind = classify.cell_kind(classified)
    if found.once and statements:
        kind = classify.STATEFUL
    elif found.always:
        kind = ALWAYS
    digest = code_hash(code)
    key = found.name or keys.key(digest, cell_id)
    return Plan(code, found, statements, classified, kind, key, digest, cell_id)


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
