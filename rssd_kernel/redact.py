"""Secrets never reach the RSSD or an error message: what gets redacted, and how.

- The string (or number) value given to a name that denotes a credential, found with
  DuckDB's tokenizer: `KEY 'value'` and `KEY = 'value'` pairs of CREATE SECRET, `SET VARIABLE
  openai_api_key = '...'`, `SET s3_access_key_id TO '...'`, `{'password': '...'}`. A name
  denotes a credential when it is one of SECRET_KEYS, holds `password`, `secret` or `token`,
  or ends in one of SECRET_SUFFIXES (`_key`, `key_id`, ...; see is_secret_name).
- Inside any string or text: `password=...`, `db_password: ...`, `token=...`, `sig=...`,
  `X-Amz-Signature=...` and similar pairs of connection strings and URL queries (presigned
  URLs included), and the password of `scheme://user:password@host`.

Every secret value found in a cell is also scrubbed wherever it appears later in that cell's
records and messages (an error that echoes it, say). The user's statement still runs as
written; only what is recorded or shown is redacted. `holds_secret` tells whether a text
would be changed by scrubbing: a result that holds a credential is not recorded at all, so
that a later `$name` never gets a masked value as if it were the real one.
"""

import re

from rssd_kernel.tokens import positions as token_positions

MASK = "***"
SECRET_KEYS = {
    "secret", "key_id", "token", "session_token", "password", "passwd", "pwd",
    "account_key", "connection_string", "client_secret", "api_key", "apikey", "access_key",
    "access_key_id", "secret_key", "secret_access_key", "bearer_token", "refresh_token",
    "sas_token", "private_key", "credential", "credentials",
}  # fmt: skip
# Variable, setting and key names ending in these (any case) are credentials too:
# openai_api_key, aws_access_key_id, github_token, db_password, KEY_ID.
SECRET_SUFFIXES = (
    "_key", "key_id", "api_key", "access_key", "secret_access_key", "token", "password",
)  # fmt: skip

# The name of a `name=value` / `name: value` pair whose value is a credential. A prefix of
# words joined by `_` or `-` may come first (openai_api_key, aws_secret_access_key,
# X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token, access_token, db_password).
# Generic `..._key` names are not matched in free text (sort_key=3 is data); `key=` only as
# a URL query parameter (`?key=...`, Google API keys).
_PAIR_NAME = (
    r"(?:[a-z0-9]+[_-]){0,6}?"
    r"(?:password|passwd|pwd|token|secret|credentials?|signature|api[_-]?key"
    r"|access[_-]?key(?:[_-]?id)?|secret[_-]?(?:access[_-]?)?key|key[_-]?id|account[_-]?key"
    r"|private[_-]?key)"
    r"|sig|apikey|accountkey|sharedaccesssignature|(?<=[?&])key"
)
# The name may be quoted, as a JSON or a dict's key is ({"password": "..."}), but not cast
# ('token'::VARCHAR). A quoted value runs to its closing quote (JSON's \" and SQL's '' do not
# close it), and one inside JSON text (\"...\", where its own quotes read \\\") to its
# closing \"; a bare one stops at a bracket or brace that closes what holds the pair, and
# at a \" (the end of the JSON string it is in).
_PAIR_VALUE = (
    r"'(?:[^']|'')*'"  # SQL's string
    r'|"(?:[^"\\]|\\.)*"'  # JSON's string
    r'|\\"(?:[^"\\]|\\\\\\"|\\\\\\\\|\\[^"\\])*\\"'  # a string inside JSON text
    r'|(?:[^\s;&\'",)\]}\\]|\\[^"\s])+'  # bare: a backslash goes with what it escapes
)
_PAIR = re.compile(
    r"(?i)(?P<open>\\\"|['\"]|)\b(?P<name>" + _PAIR_NAME + r")(?P=open)"
    r"(?P<sep>\s*(?:=|:(?!:))\s*)(?P<value>" + _PAIR_VALUE + ")"
)
# `scheme://user:password@host` (the user may be empty; the password runs to the last `@`
# before the path). One slash also counts: a URL that went through os.path.abspath or a
# path normaliser reads 'https:/user:password@host/...'.
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}:/{1,2}[^\s:/@'\"]*):([^\s/'\"]+)@")
# `Authorization: Bearer <token>` (HTTP headers in a secret, a URL's query or an error).
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/=-]{8,})")
# Every pattern above holds one of these words, in any case; text without any of them is
# left as it is, fast.
_HINT_WORDS = ("secret", "passw", "pwd", "token", "key", "sig", "credential", ":/", "bearer",
               "basic")  # fmt: skip
# After casefold: the two i's that the patterns' IGNORECASE also takes for an i.
_FOLD_I = str.maketrans({"\u0131": "i", "\u0307": None})
_ASSIGN = {"=", ":", "TO", ":="}  # between a name and its value


# CREATE SECRET options whose values are not credentials; any other value in a CREATE
# SECRET (a header map's 'Bearer ...', an option this list does not know) is masked.
_SECRET_OPTIONS_IN_CLEAR = {
    "type", "provider", "scope", "region", "endpoint", "url_style", "use_ssl", "chain",
    "url_compatibility_mode", "account_name", "validation", "kms_key_id", "in", "storage",
    "http_proxy", "verify_ssl", "requester_pays", "profile", "tenant_id", "client_id",
}  # fmt: skip


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in ("'", '"'):
        return token[1:-1].replace(token[0] * 2, token[0])
    return token


def _aliased_as_secret(code: str, positions: list, index: int) -> bool:
    """Whether the constant at `index` is followed by `AS name`, a column name that only a
    credential has (`SELECT 'x' AS password`; not `AS max_tokens` or `AS sort_key`, which
    is_secret_name takes for a variable's)."""
    following = []
    for at in range(index + 1, min(index + 6, len(positions))):
        start, kind = positions[at]
        if str(kind).endswith("comment"):
            continue
        end = positions[at + 1][0] if at + 1 < len(positions) else len(code)
        following.append(code[start:end].strip())
        if len(following) == 2:
            break
    if len(following) < 2 or following[0].upper() != "AS":
        return False
    name = _unquote(following[1]).lower()
    return name in ("pwd", "token") or name.endswith(_CREDENTIAL_COLUMN_ENDS)


_CREDENTIAL_COLUMN_ENDS = (
    "password", "passwd", "_pwd", "secret", "api_key", "apikey", "access_token", "auth_token",
    "refresh_token", "private_key", "secret_key",
)  # fmt: skip


def secrets_in(code: str) -> set[str]:
    """The secret values written in a cell's SQL."""
    found: set[str] = set()
    try:
        positions = token_positions(code)
    except Exception:  # a cell DuckDB cannot even tokenize: only the patterns apply
        positions = []
    previous = None
    setting = None  # in `SET [VARIABLE] name = <value>`: whether the name is a credential's
    secret_ddl = False  # inside CREATE [PERSISTENT] SECRET (...)
    words: list[str] = []
    for index, (start, kind) in enumerate(positions):
        end = positions[index + 1][0] if index + 1 < len(positions) else len(code)
        text = code[start:end].strip()
        kind = str(kind)
        if kind.endswith("comment"):
            continue
        if text != ";":
            words.append(text.upper())
            if words[:1] == ["CREATE"] and "SECRET" in words[:5]:
                secret_ddl = True
        if text == ";":
            setting, secret_ddl, words = None, False, []
        elif setting is None and text.upper() == "SET" and previous in (None, ";"):
            setting = False
        elif setting is False and kind.endswith("identifier"):
            setting = is_secret_name(_unquote(text))
        if kind.endswith(("string_const", "numeric_const")):
            value = _unquote(text)
            # Every literal of `SET VARIABLE db_password = CAST(... AS ...)` is the secret.
            if setting or (previous and is_secret_name(previous)):
                found.add(value)
            elif kind.endswith("string_const") and _aliased_as_secret(code, positions, index):
                found.add(value)
            elif secret_ddl and (previous or "").lower() not in _SECRET_OPTIONS_IN_CLEAR:
                # CREATE SECRET: every value but the known plain options and map keys.
                if not code[end:].lstrip().startswith(":"):
                    found.add(value)
            found.update(_pair_secret(m) for m in _PAIR.finditer(value))
            found.update(m.group(2) for m in _URL_PASSWORD.finditer(value))
        if text.upper() not in _ASSIGN:
            # The name a value is given to: an identifier ("quoted" or not), a keyword of
            # CREATE SECRET (KEY_ID, SECRET), or a struct or map key ('password').
            previous = _unquote(text)
    # Short values ('1', 'abc') would mask unrelated text everywhere; patterns still cover them.
    return {value for value in found if len(value) >= 4 and value != MASK}


def variables_set(code: str) -> list[str]:
    """The names a cell assigns with `SET VARIABLE name = ...`, in order, without
    duplicates (DuckDB compares variable names case-insensitively): what a parameters cell
    itself set, as opposed to variables earlier cells left behind."""
    try:
        positions = token_positions(code)
    except Exception:
        return []
    tokens = []
    for index, (start, kind) in enumerate(positions):
        end = positions[index + 1][0] if index + 1 < len(positions) else len(code)
        if not str(kind).endswith("comment"):
            tokens.append((code[start:end].strip(), str(kind)))
    names: dict[str, str] = {}
    for index in range(len(tokens) - 2):
        (set_, _), (variable, _), (name, kind) = tokens[index : index + 3]
        previous = tokens[index - 1][0] if index else ";"
        if (
            set_.upper() == "SET"
            and variable.upper() == "VARIABLE"
            and previous in (";", "")
            and kind.endswith("identifier")
        ):
            names.setdefault(_unquote(name).lower(), _unquote(name))
    return list(names.values())


def scrub(text: str | None, secrets: set[str] = frozenset()) -> str | None:
    """`text` with every known secret value and every credential pattern masked."""
    if not text:
        return text
    for value in sorted(secrets, key=len, reverse=True):
        text = text.replace(value, MASK)
    if not might_hold_secrets(text):  # every pattern below holds one of the hint words
        return text
    text = _PAIR.sub(pair_masked, text)
    text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


def holds_secret(text: str | None, secrets: set[str] = frozenset()) -> bool:
    """Whether scrub(text, secrets) would change `text`: it holds a known secret value or a
    credential pattern that is not masked yet. (Exactly that, without building the text.)"""
    if not text:
        return False
    if any(value and value != MASK and value in text for value in secrets):
        return True
    if not might_hold_secrets(text):
        return False
    if any(pair_value(m) != m.group("value") for m in _PAIR.finditer(text)):
        return True
    if any(m.group(3) != MASK for m in _BEARER.finditer(text)):
        return True
    # No pair or header changes, so scrub runs the URL pattern over `text` itself.
    return any(m.group(2) != MASK for m in _URL_PASSWORD.finditer(text))


def is_secret_name(name: str) -> bool:
    """A parameter, variable, setting or key whose value is a credential, by its name."""
    lowered = name.lower()
    return (
        lowered in SECRET_KEYS
        or any(w in lowered for w in ("password", "secret", "token"))
        or lowered.endswith(SECRET_SUFFIXES)
    )


def might_hold_secrets(text: str) -> bool:
    """A cheap test that lets cells without any credential word skip the tokenizer."""
    folded = casefolded(text)
    return any(word in folded for word in _HINT_WORDS)


def casefolded(text: str) -> str:
    """`text` folded so that an ASCII word is in it wherever a case-insensitive regex
    (re.IGNORECASE) would find it: faster by ten times than such a regex on a cell's text."""
    folded = text.casefold()
    return folded if folded.isascii() else folded.translate(_FOLD_I)


def pair_masked(match: re.Match) -> str:
    """A _PAIR match with its value masked (see pair_value)."""
    return match.group(0)[: match.start("value") - match.start()] + pair_value(match)


def pair_value(match: re.Match) -> str:
    """The value of a _PAIR match, masked. Under a quoted name (a JSON or dict key) a bare
    value is masked as a string, so that JSON stays JSON, and JSON's true, false and null
    are no secrets; an object or a list is left to its own members' names."""
    value = match.group("value")
    if value[:1] in ("'", '"'):
        return value[0] + MASK + value[0]
    if value[:2] == '\\"':  # a string inside JSON text
        return f'\\"{MASK}\\"'
    if not match.group("open"):
        return MASK
    if value[:1] in ("{", "[") or value.lower() in _JSON_WORDS:
        return value
    quote = match.group("open") if match.group("open") == '\\"' else '"'  # JSON in JSON
    return f"{quote}{MASK}{quote}"


_JSON_WORDS = ("true", "false", "null")


def _pair_secret(match: re.Match) -> str:
    """The secret value of a _PAIR match found in a cell (masked wherever it shows up later):
    a quoted value, or a bare one under a bare name (`password=hunter2`)."""
    value = match.group("value")
    if value[:1] == "'":
        return value[1:-1].replace("''", "'")
    if value[:1] == '"':
        return value[1:-1].replace('\\"', '"')
    if value[:2] == '\\"':
        return value[2:-2]
    return "" if match.group("open") else value
