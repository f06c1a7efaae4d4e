"""A cell's plan: its directives, its statements as the engine's parser splits them, each
statement's predicted kind (classify.py; engines/), the cell's kind and its key (keys.py).
Nothing runs here."""

from collections.abc import Callable
from dataclasses import dataclass

from rssd_kernel import classify, directives
from rssd_kernel.keys import Keys, code_hash

ALWAYS = "always"  # `-- @always`: runs every time as written, with no net and no state


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
    engine,
    temp_names: Callable[[], set],
) -> Plan:
    """Plan `code` with `engine`'s parser. `temp_names` lists the session's temporary
    objects; it is called only when a statement writes a target that could be one. A cell
    that would change the RSSD's own tables is refused (AuditTrailError)."""
    found = directives.parse(code)
    cache_key = (type(engine).__name__, engine.catalog, code)
    cached = _CACHE.get(cache_key)
    if cached is not None:
        statements, classified = cached
        if engine.protect_again:  # PostgreSQL asks the server: never cached
            engine.protect(statements, classified)
    else:
        statements, classified = _parse_and_classify(code, engine, temp_names)
    kind = classify.cell_kind(classified)
    if found.once and statements:
        kind = classify.STATEFUL
    elif found.always:
        kind = ALWAYS
    digest = code_hash(code)  # (cached by keys.py)
    # Without `keys` the key is left to the caller (keys.Keys.key takes an occurrence).
    key = found.name or (keys.key(digest, cell_id) if keys is not None else "")
    return Plan(code, found, statements, classified, kind, key, digest, cell_id)


# A cell run again (the same text, on the same kind of engine) is parsed and classified
# once, when no statement of it depends on the session's temporary objects.
_CACHE: dict[tuple, tuple[list, list]] = {}
_CACHE_SIZE = 256


def _parse_and_classify(code: str, engine, temp_names) -> tuple[list, list]:
    statements = engine.split(code)
    temp: set[str] = set()
    depends = engine.needs_temp_names(statements)
    if depends:
        temp = set(temp_names())
    classified = []
    for statement in statements:
        classes = engine.classify(statement, temp)
        if classes.creates_temp:
            temp.add(classes.creates_temp)
        classified.append(classes)
    engine.protect(statements, classified)
    if not depends:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[(type(engine).__name__, engine.catalog, code)] = (statements, classified)
    return statements, classified
