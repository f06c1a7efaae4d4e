"""Secrets never reach the RSSD or an error message: what gets redacted, and how.

- In CREATE SECRET (and any `KEY 'value'` / `KEY = 'value'` pair), the string value of a key
  that names a credential (SECRET, KEY_ID, TOKEN, PASSWORD, ...), found with DuckDB's tokenizer.
- Inside any string or text: `password=...`, `token=...`, `sig=...` and similar pairs of
  connection strings and URL queries, and the password of `scheme://user:password@host`.

Every secret value found in a cell is also scrubbed wherever it appears later in that cell's
records and messages (an error that echoes it, say). The user's statement still runs as
written; only what is recorded or shown is redacted.
"""

import re

import duckdb

MASK = "***"
SECRET_KEYS = {
    "secret", "key_id", "token", "session_token", "password", "passwd", "pwd",
    "account_key", "connection_string", "client_secret", "api_key", "apikey", "access_key",
    "access_key_id", "secret_key", "secret_access_key", "bearer_token", "refresh_token",
    "sas_token", "private_key", "credential", "credentials",
}  # fmt: skip
_PAIR = re.compile(
    r"(?i)\b(password|passwd|pwd|token|access_token|auth_token|secret|client_secret|api[_-]?key"
    r"|access[_-]?key(?:[_-]?id)?|secret[_-]?(?:access[_-]?)?key|sig|signature|session[_-]?token"
    r"|sas[_-]?token|accountkey|sharedaccesssignature)(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s;&'\",)]+)"
)
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@'\"]+):([^\s@/'\"]+)@")


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == "'" and token[-1] == "'":
        return token[1:-1].replace("''", "'")
    return token


def secrets_in(code: str) -> set[str]:
    """The secret values written in a cell's SQL."""
    found: set[str] = set()
    try:
        positions = duckdb.tokenize(code)
    except Exception:  # a cell DuckDB cannot even tokenize: only the patterns apply
        positions = []
    previous = None
    for index, (start, kind) in enumerate(positions):
        end = positions[index + 1][0] if index + 1 < len(positions) else len(code)
        text = code[start:end].strip()
        kind = str(kind)
        if kind.endswith("comment"):
            continue
        if kind.endswith("string_const"):
            value = _unquote(text)
            if previous and is_secret_name(previous.strip(chr(34))):
                found.add(value)
            found.update(m.group(3).strip("'\"") for m in _PAIR.finditer(value))
            found.update(m.group(2) for m in _URL_PASSWORD.finditer(value))
        if text not in ("=", ":"):
            previous = text
    # Short values ('1', 'abc') would mask unrelated text everywhere; patterns still cover them.
    return {value for value in found if len(value) >= 4 and value != MASK}


def scrub(text: str | None, secrets: set[str] = frozenset()) -> str | None:
    """`text` with every known secret value and every credential pattern masked."""
    if not text:
        return text
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, MASK)
    if not might_hold_secrets(text):  # every pattern below holds one of the hint words
        return text
    text = _PAIR.sub(lambda m: m.group(1) + m.group(2) + _masked(m.group(3)), text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


def is_secret_name(name: str) -> bool:
    """A parameter or key whose value is a credential, by its name."""
    lowered = name.lower()
    return lowered in SECRET_KEYS or any(w in lowered for w in ("password", "secret", "token"))


_HINT = re.compile(r"(?i)secret|passw|pwd|token|key|sig|credential|://")


def might_hold_secrets(text: str) -> bool:
    """A cheap test that lets cells without any credential word skip the tokenizer."""
    return bool(_HINT.search(text))


def _masked(value: str) -> str:
    if value[:1] in ("'", '"'):
        return value[0] + MASK + value[0]
    return MASK
