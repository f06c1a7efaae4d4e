"""Which statements change the database: the prediction that comes before DuckDB's check.

What "stateful" means, in one place:

    A statement is stateful when it changes a persistent database (the kernel's file, or
    a database the session ATTACHed), or writes something that outlives the session
    outside any database (a PERSISTENT SECRET). A cell is stateful when any of its
    statements is. Everything else (reading, SET, SET VARIABLE, TEMP objects, PREPARE,
    ATTACH, USE, COPY ... TO a file) only changes the session and runs every time.

DuckDB decides, not this module. A cell that is not predicted stateful runs each statement
inside `BEGIN TRANSACTION READ ONLY` (the "net", see `transaction.py`); DuckDB refuses any
write to a persistent database there, and the refused statement and the rest of the cell
then run as a stateful cell. So a wrong "not stateful" guess here costs one refused try,
never a second application. A wrong "stateful" guess would make a session cell run once,
so STATEFUL is predicted only when it is certain:

- the statement's grammar says it writes a persistent object (CREATE without TEMP, or an
  INSERT, UPDATE, DELETE, TRUNCATE, MERGE, DROP, ALTER or COPY FROM whose target, read
  from DuckDB's tokens by the small grammar below, cannot be a temporary object);
- IMPORT DATABASE, COPY FROM DATABASE and CREATE PERSISTENT SECRET (the last writes
  outside the database, where the net cannot see it);
- a statement type DuckDB's Python client cannot even name (fails closed).

DuckDB gives Python a parse tree only for SELECT, so targets come from its tokenizer: the
name at the grammar's position (`INSERT [OR ...] INTO name`, `CREATE [OR REPLACE] [TEMP]
TABLE [IF NOT EXISTS] name`, ...), never a word found somewhere in the text.
"""

from dataclasses import dataclass

import duckdb

from rssd_kernel.tokens import positions as token_positions

STATEFUL = "stateful"  # changes a persistent database: runs once per database
SESSION = "session"  # settings or temporary objects: runs every time
READ = "read"  # only reads: runs every time
TRANSACTION = "transaction"  # BEGIN, COMMIT, ROLLBACK
NO_TRANSACTION = "no-transaction"  # cannot run in a transaction (PostgreSQL's VACUUM, say)

_T = duckdb.StatementType
_READ_TYPES = {_T.SELECT, _T.EXPLAIN, _T.EXPORT, _T.CALL, _T.MULTI}
_SESSION_TYPES = {_T.SET, _T.PREPARE, _T.ATTACH, _T.DETACH, _T.LOAD}
DML_TYPES = {_T.INSERT, _T.UPDATE, _T.DELETE, _T.MERGE_INTO, _T.DROP, _T.ALTER}
# Words that may stand between a statement's verb and its object, for confirmations.
_LEADING = {
    "insert", "or", "replace", "ignore", "into", "update", "delete", "from", "merge", "drop",
    "alter", "table", "view", "sequence", "macro", "function", "schema", "type", "index",
    "if", "exists", "comment", "on", "column", "copy", "only", "unique", "materialized",
    "secret", "persistent", "temp", "temporary", "truncate", "not",
}  # fmt: skip
_OBJECTS = {"table", "view", "sequence", "macro", "function", "type", "schema", "index", "secret"}
# A SELECT made only of these (and constants and operators) names no table, view, function
# or sequence, so it cannot write anything: it is the one kind that skips the net.
_CONSTANT_WORDS = {"select", "null", "true", "false", "and", "or", "not", "is", "as"}


@dataclass(frozen=True)
class Target:
    """A qualified object name, lower-cased (DuckDB matches names case-insensitively)."""

    name: str
    schema: str | None = None
    catalog: str | None = None

    def __str__(self) -> str:
        return ".".join(p for p in (self.catalog, self.schema, self.name) if p)

    def is_temp_catalog(self) -> bool:
        return self.catalog == "temp" or (self.catalog is None and self.schema == "temp")

    def may_be_temp(self, temp_names: set[str]) -> bool:
        """Whether this name can resolve to a temporary object of the session, or to an
        in-memory database the session attached (listed in `temp_names` as `catalog.`)."""
        if self.is_temp_catalog():
            return True
        catalog = self.catalog or (self.schema if self.schema != "main" else None)
        if catalog is not None and f"{catalog}." in temp_names:
            return True
        unqualified = self.catalog is None and self.schema in (None, "main")
        return unqualified and self.name in temp_names


@dataclass(frozen=True)
class Classified:
    kind: str  # STATEFUL (certain), SESSION, READ or TRANSACTION (the net checks these)
    statement_type: str  # DuckDB's StatementType name, e.g. "CREATE"
    verb: str  # the statement's leading keywords, e.g. "CREATE TABLE"
    target: str | None = None  # the object a CREATE, INSERT, COPY ... writes
    net: bool = True  # run inside the read-only net (False: stateful, transaction, constant)
    creates_temp: str | None = None  # a temporary object this statement creates
    session_effect: bool = False  # surely changes the session (SET, TEMP, ATTACH, USE, ...)
    constant: bool = False  # a SELECT of constants: names no table, function or sequence


def tokens(query: str) -> list[tuple[str, str]]:
    """(text, kind) of each DuckDB token, without comments; kind is 'keyword',
    'identifier', 'operator', 'string_const' or 'numeric_const'."""
    positions = token_positions(query)
    out = []
    for index, (start, kind) in enumerate(positions):
        kind = str(kind).rsplit(".", 1)[-1]
        if kind == "comment":
            continue
        end = positions[index + 1][0] if index + 1 < len(positions) else len(query)
        out.append((query[start:end].strip(), kind))
    return out


def words(query: str) -> list[str]:
    """The statement's tokens as text (DuckDB's tokenizer), without comments."""
    return [text for text, _ in tokens(query)]


def verb(texts: list[str]) -> str:
    """The leading keywords of a statement, for confirmations such as 'CREATE TABLE'."""
    lead = []
    for token in texts[:6]:
        if not token.isalpha() or (lead and token.lower() not in _LEADING):
            break
        lead.append(token.upper())
    return " ".join(lead) or "OK"


def _unquote(part: str) -> str:
    if len(part) >= 2 and part[0] == part[-1] == '"':
        part = part[1:-1].replace('""', '"')
    return part.lower()


def _name_at(toks: list[tuple[str, str]], index: int) -> Target | None:
    """The (up to three-part) name starting at toks[index], or None if there is none."""
    parts: list[str] = []
    while index < len(toks):
        text, kind = toks[index]
        if kind not in ("identifier", "keyword") or not text:
            break
        parts.append(_unquote(text))
        if index + 1 < len(toks) and toks[index + 1][0] == ".":
            index += 2
            continue
        break
    if not parts or len(parts) > 3:
        return None
    catalog, schema = (None, None) if len(parts) == 1 else (None, parts[0])
    if len(parts) == 3:
        catalog, schema = parts[0], parts[1]
    elif len(parts) == 2 and parts[0] == "temp":
        catalog, schema = "temp", None
    return Target(parts[-1], schema, catalog)


def _skip(lowered: list[str], index: int, *optional: tuple[str, ...]) -> int:
    """Step over each optional word sequence that appears at `index`, in order."""
    for words_ in optional:
        if lowered[index : index + len(words_)] == list(words_):
            index += len(words_)
    return index


def _top_level(lowered: list[str], word: str, start: int = 0) -> int:
    """Index of `word` outside any parentheses, at or after `start`; -1 if absent."""
    depth = 0
    for index, token in enumerate(lowered):
        if index >= start and depth == 0 and token == word:
            return index
        depth += token.count("(") - token.count(")")
    return -1


def _write(target: Target | None, temp_names: set[str]) -> dict:
    """The kind of a statement that writes `target`, as Classified's keyword arguments."""
    if target is None:
        return {"kind": SESSION}  # unreadable target: the net decides
    if target.may_be_temp(temp_names):
        return {"kind": SESSION, "session_effect": True}
    return {"kind": STATEFUL, "net": False}


def _create(toks, lowered, temp_names) -> tuple[str, Target | None, str | None]:
    """CREATE [OR REPLACE] [TEMP|TEMPORARY|PERSISTENT] [UNIQUE] object [IF NOT EXISTS] name."""
    index = _skip(lowered, 1, ("or", "replace"))
    temporary = persistent = False
    if index < len(lowered) and lowered[index] in ("temp", "temporary"):
        temporary, index = True, index + 1
    elif index < len(lowered) and lowered[index] == "persistent":
        persistent, index = True, index + 1
    index = _skip(lowered, index, ("unique",), ("materialized",))
    obj = lowered[index] if index < len(lowered) else ""
    index = _skip(lowered, index + 1, ("if", "not", "exists"))
    target = _name_at(toks, index)
    if obj == "secret":
        # A temporary secret, unless PERSISTENT or stored IN a storage other than memory:
        # such a secret lives outside the database, where the net cannot see it.
        at = _top_level(lowered, "in")
        storage = lowered[at + 1] if 0 < at < len(lowered) - 1 else "memory"
        outside = persistent or storage.strip('"') != "memory"
        return (STATEFUL if outside else SESSION), target, None
    if obj == "index":  # CREATE INDEX name ON table: the net decides
        on = _top_level(lowered, "on")
        table = _name_at(toks, on + 1) if on > 0 else None
        temp = table.name if table is not None and table.may_be_temp(temp_names) else None
        return SESSION, table, temp
    if obj not in _OBJECTS or target is None:
        return SESSION, target, None  # unknown shape: the net decides
    if obj == "schema" and target.schema is not None:  # CREATE SCHEMA catalog.schema
        target = Target(target.name, None, target.schema)
    if temporary or target.is_temp_catalog():
        return SESSION, target, target.name
    return STATEFUL, target, None


def classify(statement, temp_names: set[str] = frozenset()) -> Classified:
    """Predict one parsed statement's kind. `temp_names` are the session's temporary tables
    and views (lower-case), including those created by earlier statements of the cell."""
    toks = tokens(statement.query)
    texts = [t for t, _ in toks]
    lowered = [t.lower() for t in texts]
    lead = verb(texts)
    try:
        statement_type = statement.type
    except ValueError:  # a statement type newer than this DuckDB client's enum
        return Classified(STATEFUL, "UNKNOWN", lead, net=False)
    name = statement_type.name
    if statement_type == _T.TRANSACTION:
        return Classified(TRANSACTION, name, lead, net=False)
    if statement_type == _T.CREATE:
        kind, target, temp = _create(toks, lowered, temp_names)
        effect = temp is not None or (kind == SESSION and "secret" in lowered[:4])
        if kind == STATEFUL and target is not None and target.may_be_temp(temp_names):
            kind, effect = SESSION, True  # in a database the session attached in memory
        if lowered[1:2] == ["index"] or lowered[1:3] == ["unique", "index"]:
            temp = None  # an index on a TEMP table: a session effect, but no new table name
        return Classified(kind, name, lead, _str(target), kind != STATEFUL, temp, effect)
    if statement_type == _T.PRAGMA:
        imports = lowered[:2] in (["pragma", "import_database"], ["import", "database"])
        if imports or lowered[:3] == ["copy", "from", "database"]:
            return Classified(STATEFUL, name, lead, net=False)
        return Classified(SESSION, name, lead, session_effect=True)  # PRAGMA threads=4, ...
    if statement_type == _T.COPY:
        return _copy(toks, lowered, name, temp_names)
    if statement_type in DML_TYPES:
        return _dml(statement_type, toks, lowered, name, lead, temp_names)
    if statement_type == _T.ATTACH:
        return Classified(SESSION, name, lead, creates_temp=_memory_alias(toks, lowered),
                          session_effect=True)  # fmt: skip
    if statement_type in _SESSION_TYPES:
        return Classified(SESSION, name, lead, session_effect=True)
    if statement_type in _READ_TYPES:
        constant = statement_type == _T.SELECT and _constant(toks)
        return Classified(READ, name, lead, net=not constant, constant=constant)
    return Classified(SESSION, name, lead)


def _memory_alias(toks, lowered) -> str | None:
    """`name.` for ATTACH ':memory:' AS name: later statements of the cell that write it
    change only the session (see Target.may_be_temp)."""
    path = next((t for t, kind in toks if kind == "string_const"), "")
    if not path.strip("'").startswith(":memory:"):
        return None
    at = _top_level(lowered, "as")
    alias = _unquote(toks[at + 1][0]) if 0 < at < len(toks) - 1 else "memory"
    return f"{alias}."


def _str(target: Target | None) -> str | None:
    return None if target is None else str(target)


def _copy(toks, lowered, name, temp_names) -> Classified:
    if len(lowered) > 1 and lowered[1] == "(":
        return Classified(READ, name, "COPY TO")  # COPY (query) TO file
    target = _name_at(toks, 1)
    to, from_ = _top_level(lowered, "to"), _top_level(lowered, "from")
    if to > 0 and (from_ < 0 or to < from_):
        return Classified(READ, name, "COPY TO", _str(target))
    return Classified(statement_type=name, verb="COPY FROM", target=_str(target),
                      **_write(target, temp_names))  # fmt: skip


def _dml(statement_type, toks, lowered, name, lead, temp_names) -> Classified:
    target = None
    if statement_type == _T.INSERT:
        at = _top_level(lowered, "insert")
        if at >= 0:
            at = _skip(lowered, at + 1, ("or", "replace"), ("or", "ignore"), ("into",))
            target = _name_at(toks, at)
        lead = "INSERT"
    elif statement_type == _T.UPDATE:
        at = _top_level(lowered, "update")
        target = _name_at(toks, _skip(lowered, at + 1, ("only",))) if at >= 0 else None
        lead = "UPDATE"
    elif statement_type == _T.DELETE:
        if lowered[:1] == ["truncate"]:
            target, lead = _name_at(toks, _skip(lowered, 1, ("table",))), "TRUNCATE"
        else:
            at = _top_level(lowered, "delete")
            target = _name_at(toks, _skip(lowered, at + 1, ("from",))) if at >= 0 else None
            lead = "DELETE"
    elif statement_type == _T.MERGE_INTO:
        target = _name_at(toks, _skip(lowered, 1, ("into",)))
    elif statement_type == _T.DROP:
        if lowered[:1] == ["deallocate"]:
            return Classified(SESSION, name, "DEALLOCATE", session_effect=True)
        return _drop(toks, lowered, name, lead, temp_names)
    elif statement_type == _T.ALTER:
        if lowered[:1] != ["alter"]:  # COMMENT ON ...: the net decides
            return Classified(SESSION, name, lead)
        obj = lowered[1] if len(lowered) > 1 else ""
        at = _skip(lowered, 2, ("if", "exists"))
        target = _name_at(toks, at) if obj in _OBJECTS else None
    return Classified(
        statement_type=name, verb=lead, target=_str(target), **_write(target, temp_names)
    )


def _drop(toks, lowered, name, lead, temp_names) -> Classified:
    """DROP [PERSISTENT|TEMPORARY] object [IF EXISTS] name."""
    index = 1
    scope = lowered[1] if len(lowered) > 1 else ""
    if scope in ("persistent", "temporary", "temp"):
        index = 2
    obj = lowered[index] if index < len(lowered) else ""
    target = _name_at(toks, _skip(lowered, index + 1, ("table",) if obj == "macro" else (),
                                  ("if", "exists")))  # fmt: skip
    if obj == "secret":  # may drop a persistent secret, outside the database: fail closed
        if scope in ("temporary", "temp"):
            return Classified(SESSION, name, lead, _str(target), session_effect=True)
        return Classified(STATEFUL, name, lead, _str(target), net=False)
    if obj in ("index", "schema") or obj not in _OBJECTS:
        return Classified(SESSION, name, lead, _str(target))  # the net decides
    return Classified(
        statement_type=name, verb=lead, target=_str(target), **_write(target, temp_names)
    )


def _constant(toks) -> bool:
    """Constants, operators, the words of _CONSTANT_WORDS, and names only right after AS
    (a column's alias): `SELECT 42`, `SELECT 'x' AS s, 1 + 2 AS "n"`."""
    return all(
        kind in ("numeric_const", "string_const")
        or (kind == "operator" and text not in (".", "::"))
        or (kind == "keyword" and text.lower() in _CONSTANT_WORDS)
        or (kind == "identifier" and index > 0 and toks[index - 1][0].lower() == "as")
        for index, (text, kind) in enumerate(toks)
    )


def cell_kind(classified: list[Classified]) -> str:
    """A cell with any stateful statement is stateful; else it runs every time."""
    kinds = {c.kind for c in classified}
    if STATEFUL in kinds:
        return STATEFUL
    if kinds and kinds <= {READ}:
        return READ
    return SESSION
