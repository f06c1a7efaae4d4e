"""DuckDB's statements: split by DuckDB's own parser (`extract_statements`), and the cell's
changes to the RSSD's own tables refused before anything runs. What each statement does is
predicted by classify.py."""

import re

import duckdb

from rssd_kernel import classify
from rssd_kernel.errors import AuditTrailError
from rssd_kernel.statements import Failure, locate, split_duckdb_error

WRITES = classify.DML_TYPES | {duckdb.StatementType.COPY}


def writes_any(statements) -> bool:
    """Whether a statement writes a target that may be one of the session's TEMP objects."""
    return any(_type(s) in WRITES for s in statements)


def _type(statement):
    try:
        return statement.type
    except ValueError:  # a type this client cannot name
        return None


def parse(code: str) -> list:
    """The cell's statements, as DuckDB's parser splits them. Each one after the first is
    parsed again from its own text: a statement parsed as part of the cell keeps positions
    in the cell, and DuckDB then points a run-time error's caret that far off in the
    statement's own text."""
    try:
        statements = duckdb.extract_statements(code)
        for index in range(1, len(statements)):
            alone = duckdb.extract_statements(statements[index].query)
            if len(alone) == 1:
                statements[index] = alone[0]
        return statements
    except duckdb.Error as error:
        ename, evalue = split_duckdb_error(error)
        line, column = locate(str(error), 1)
        raise Failure(ename, evalue, "the cell (while parsing it)", line, column) from None


_WRITES_TARGET = {"CREATE", "INSERT", "UPDATE", "DELETE", "MERGE_INTO", "DROP", "ALTER", "COPY"}
_PREPARE = re.compile(r"(?is)^\s*prepare\s+\S+\s+as\s+(.*)$")


def protect(statements, classified, catalog: str) -> None:
    """Refuse a cell that would change the RSSD's tables (the audit trail is append-only
    and only rssd writes it) or detach the RSSD's database."""
    from rssd_kernel.database import rssd_tables

    protected = set(rssd_tables())
    for number, (statement, classes) in enumerate(zip(statements, classified), start=1):
        targets = []
        if classes.statement_type in _WRITES_TARGET and classes.kind != classify.READ:
            if not classes.session_effect:  # a TEMP object may share a name: that is fine
                targets.append((classes.target, classes.verb))
        elif classes.statement_type == "PREPARE":
            inner = _PREPARE.match(statement.query)
            for prepared in parse(inner.group(1)) if inner else []:
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
