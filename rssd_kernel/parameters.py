"""Notebook parameters as DuckDB variables: `SET VARIABLE name = <literal>;`.

Used by `rssd run -p` and by papermill (through the translator registered in
papermill_engine.py). Values are rendered as SQL literals, never pasted unquoted, so a
parameter is always data. Later cells read them with `getvariable('name')`.
"""

import datetime
import decimal
import json
import math

DIRECTIVE = "-- @parameters"


class ParameterError(ValueError):
    pass


def _string(text: str) -> str:
    if "\x00" in text:
        raise ParameterError("a parameter value cannot hold a NUL character")
    return "'" + text.replace("'", "''") + "'"


def literal(value) -> str:
    """A DuckDB SQL literal for a Python value papermill may pass."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return f"CAST({_string(str(value))} AS DOUBLE)"
        return f"CAST({value!r} AS DOUBLE)"
    if isinstance(value, decimal.Decimal):
        return f"CAST({_string(str(value))} AS DECIMAL(38, {max(0, -value.as_tuple().exponent)}))"
    if isinstance(value, datetime.datetime):
        return f"CAST({_string(value.isoformat())} AS TIMESTAMP{'TZ' if value.tzinfo else ''})"
    if isinstance(value, datetime.date):
        return f"DATE {_string(value.isoformat())}"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "MAP {}"
        items = ", ".join(f"{_string(str(k))}: {literal(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise ParameterError(f"cannot pass a {type(value).__name__} as a parameter")


def check_name(name: str) -> str:
    if not name.isidentifier():
        raise ParameterError(f"parameter names must be identifiers; got {name!r}")
    return name


def assignment(name: str, value) -> str:
    return f"SET VARIABLE {check_name(name)} = {literal(value)};"


def cell_source(parameters: dict) -> str:
    """The source of an injected parameters cell."""
    lines = [DIRECTIVE, "-- Parameters"]
    lines += [assignment(name, value) for name, value in parameters.items()]
    return "\n".join(lines)


def parse_cli_value(text: str):
    """`rssd run -p NAME VALUE`: JSON when it parses (numbers, true, lists...), else a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text
