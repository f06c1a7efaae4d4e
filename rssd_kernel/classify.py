"""Which cells are stateful: DuckDB's statement types, plus what they cannot tell.

DuckDB's parser gives each statement a type. It cannot tell whether a CREATE, DROP or
INSERT touches a temporary object, nor whether a COPY reads or writes, nor that IMPORT
DATABASE (a PRAGMA to it) changes the database; for those we look at DuckDB's own tokens
and at the catalog's temporary objects.
"""

from dataclasses import dataclass

import duckdb

STATEFUL = "stateful"  # changes the database: runs once per database
SESSION = "session"  # settings or temporary objects: runs every time
READ = "read"  # only reads: runs every time
TRANSACTION = "transaction"  # BEGIN, COMMIT, ROLLBACK

_T = duckdb.StatementType
_READ_TYPES = {_T.SELECT, _T.EXPLAIN, _T.EXPORT, _T.CALL}
_SESSION_TYPES = {_T.SET, _T.ATTACH, _T.DETACH, _T.LOAD, _T.VACUUM, _T.PREPARE, _T.EXECUTE}
DML_TYPES = {_T.INSERT, _T.UPDATE, _T.DELETE, _T.MERGE_INTO, _T.DROP, _T.ALTER}
# Words that may stand between a statement's verb and the object it targets.
_LEADING = {
    "insert", "or", "replace", "ignore", "into", "update", "delete", "from", "merge", "drop",
    "alter", "table", "view", "sequence", "macro", "function", "schema", "type", "index",
    "if", "exists", "comment", "on", "column", "copy", "only", "unique", "materialized",
    "secret", "persistent",
}  # fmt: skip


@dataclass(frozen=True)
class Classified:
    kind: str  # STATEFUL, SESSION, READ or TRANSACTION
    statement_type: str  # DuckDB's StatementType name, e.g. "CREATE"
    verb: str  # the statement's leading keywords, e.g. "CREATE TABLE"
    target: str | None = None  # the object a CREATE, INSERT, COPY ... writes, unquoted


def words(query: str) -> list[str]:
    """The statement's tokens as text (DuckDB's tokenizer), without comments."""
    positions = duckdb.tokenize(query)
    out = []
    for index, (start, kind) in enumerate(positions):
        if str(kind).endswith("comment"):
            continue
        end = positions[index + 1][0] if index + 1 < len(positions) else len(query)
        out.append(query[start:end].strip())
    return out


def verb(tokens: list[str]) -> str:
    """The leading keywords of a statement, for confirmations such as 'CREATE TABLE'."""
    lead = []
    for token in tokens[:6]:
        if not token.isalpha() or (lead and token.lower() not in _LEADING | {"temp", "temporary"}):
            break
        lead.append(token.upper())
    return " ".join(lead) or "OK"


def _target(tokens: list[str]) -> str | None:
    """The object named after the leading keywords, unquoted (`schema.name` gives name)."""
    skip = _LEADING | {"temp", "temporary", "create", "not"}
    index = 0
    while index < len(tokens) and tokens[index].lower() in skip:
        if index + 1 < len(tokens) and tokens[index + 1].startswith("."):
            break  # `temp.name`: temp is a schema here
        index += 1
    if index >= len(tokens):
        return None
    name = tokens[index]
    rest = tokens[index + 1 :]
    # The tokenizer splits a qualified name as `schema` `.name`, or `schema` `.` `"name"`.
    while rest and rest[0].startswith("."):
        if rest[0] == "." and len(rest) > 1:
            name, rest = rest[1], rest[2:]
        else:
            name, rest = rest[0][1:], rest[1:]
    return name.strip('"') or None


def _is_temp(target: str | None, temp_names: set[str]) -> bool:
    return target is not None and target.lower() in temp_names


def _qualified_temp(tokens: list[str]) -> bool:
    return any(
        token.lower() == "temp" and index + 1 < len(tokens) and tokens[index + 1].startswith(".")
        for index, token in enumerate(tokens)
    )


def classify(statement, temp_names: set[str]) -> Classified:
    """Classify one parsed statement. `temp_names` are the session's temporary objects."""
    kind_name = statement.type.name
    tokens = words(statement.query)
    lowered = [t.lower() for t in tokens]
    lead = verb(tokens)
    if statement.type == _T.TRANSACTION:
        return Classified(TRANSACTION, kind_name, lead)
    if statement.type in _READ_TYPES:
        return Classified(READ, kind_name, lead)
    if statement.type == _T.MULTI and lowered[:1] in (["pivot"], ["unpivot"]):
        return Classified(READ, kind_name, lead)
    if statement.type == _T.PRAGMA:
        stateful = lowered[:2] == ["import", "database"]
        return Classified(STATEFUL if stateful else SESSION, kind_name, lead)
    if statement.type in _SESSION_TYPES:
        return Classified(SESSION, kind_name, lead)
    if statement.type == _T.CREATE:
        head = lowered[: lowered.index("as")] if "as" in lowered else lowered[:8]
        temporary = "temp" in head[:5] or "temporary" in head[:5] or "secret" in head[:6]
        temporary = temporary or _qualified_temp(tokens[:8])
        target = _target(tokens[1:])
        return Classified(SESSION if temporary else STATEFUL, kind_name, lead, target)
    if statement.type == _T.COPY:
        depth = 0
        for token in lowered[1:]:
            depth += token.count("(") - token.count(")")
            if depth == 0 and token in ("from", "to"):
                if token == "to":
                    return Classified(READ, kind_name, "COPY TO")
                break
        target = _target(tokens)
        temporary = _is_temp(target, temp_names) or _qualified_temp(tokens)
        return Classified(SESSION if temporary else STATEFUL, kind_name, "COPY FROM", target)
    if statement.type in DML_TYPES:
        target = _target(tokens)
        temporary = _qualified_temp(tokens[:8]) or _is_temp(target, temp_names)
        return Classified(SESSION if temporary else STATEFUL, kind_name, lead, target)
    return Classified(SESSION, kind_name, lead)


def cell_kind(classified: list[Classified]) -> str:
    """A cell with any stateful statement is stateful; else it runs every time."""
    kinds = {c.kind for c in classified}
    if STATEFUL in kinds:
        return STATEFUL
    if kinds and kinds <= {READ}:
        return READ
    return SESSION
