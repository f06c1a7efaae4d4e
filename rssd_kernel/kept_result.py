"""What a cell's result leaves in `transition_result`, for replays and named results.

The last statement's rows as DuckDB's text (results.py), unless they are too many, too wide
or too large (settings), or hold a credential (redact.py): then only the rows shown, or none
for a credential, and why the rest was not kept.
"""

import json

from rssd_kernel import redact
from rssd_kernel.results import Result


def kept(last: Result, messages: list[str], rows_are_result: bool, settings, secrets):
    """(the JSON to record, why the result itself was not kept, or None)."""
    recorded = {**last.to_json(), "messages": messages, "rows_are_result": rows_are_result}
    why = _why_not(last, recorded, settings, secrets)
    if why is None:
        return recorded, None
    shown = Result(last.columns, last.types, last.rows[: settings.max_rows], False)
    recorded = {
        **shown.to_json(),
        "messages": messages,
        "rows_are_result": rows_are_result,
        "not_recorded": why,
    }
    if "credential" in why:
        recorded["rows"], recorded["row_count"] = [], 0
        recorded["columns"] = [
            {**c, "name": redact.scrub(c["name"], secrets)} for c in recorded["columns"]
        ]
    return recorded, why


def _why_not(last: Result, recorded: dict, settings, secrets) -> str | None:
    if not last.complete:
        return f"more than {settings.result_max_rows} rows"
    if last.narrowed:
        return f"{last.total_columns:,} columns, over {settings.max_columns}"
    size = len(json.dumps(recorded))
    if size > settings.result_max_bytes:
        return f"{size:,} bytes, over {settings.result_max_bytes:,}"
    if redact.holds_secret(_texts(recorded), secrets):
        return "it holds a credential, which rssd never records"
    return None


def _texts(recorded: dict) -> str:
    """A recorded result's names, values and messages as one text, for the credential check:
    not its JSON, where a value's own quotes are escaped (\\"password\\": ...)."""
    parts = [column["name"] for column in recorded["columns"]] + list(recorded["messages"])
    for row in recorded["rows"]:
        for value in row:
            if isinstance(value, list):  # a UNION cell: [tag, text]
                parts.extend(str(v) for v in value if v is not None)
            elif value is not None:
                parts.append(str(value))
    return "\0".join(parts)
