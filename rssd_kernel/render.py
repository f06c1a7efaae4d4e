"""Rendering results into Jupyter mime bundles.

Every value is HTML-escaped; SQL NULL is shown as an italic `NULL` in HTML and as `∅` in
plain text, so it never looks like the string 'NULL'. Long values are cut for display only.
"""

import html

from rssd_kernel.results import Result

NULL_TEXT = "∅"
MAX_VALUE_CHARS = 500
MAX_PLAIN_WIDTH = 40
_STYLE = (
    "<style>.rssd-table td,.rssd-table th{text-align:left;white-space:pre-wrap;"
    "font-family:monospace}.rssd-null{color:#888;font-style:italic}"
    ".rssd-type{color:#888;font-weight:normal;font-size:smaller}"
    ".rssd-caption{color:#666;font-size:smaller}</style>"
)


def _shown(value) -> str:
    if isinstance(value, list):  # UNION cells are [tag, text]
        value = value[1]
    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        text = text[:MAX_VALUE_CHARS] + f"… ({len(text):,} characters)"
    return text


def row_caption(result: Result, shown: int) -> str:
    if not result.fetched:
        return "rows not read (only the last statement's rows are shown)"
    if result.narrowed:
        columns = f"first {len(result.columns)} of {result.total_columns:,} columns"
        return f"{_rows(result, shown)}; {columns}"
    return _rows(result, shown)


def _rows(result: Result, shown: int) -> str:
    if result.complete:
        total = len(result.rows)
        if shown < total:
            return f"first {shown} of {total} rows"
        return f"{total} row" + ("" if total == 1 else "s")
    return f"first {shown} rows of {shown}+ (the rest not counted)"


def table_bundle(result: Result, max_rows: int, caption_lines: list[str], text=None) -> dict:
    """text/html and text/plain for a result, showing at most `max_rows` rows. `text`: the
    text/plain made already (`table_text`, when there are no caption lines)."""
    rows = result.rows[:max_rows]
    summary = row_caption(result, len(rows))
    captions = [*caption_lines, summary]
    return {
        "text/html": _html(result, rows, captions),
        "text/plain": text if text is not None else _plain(result, rows, captions),
    }


def table_text(result: Result, max_rows: int) -> str:
    """The text/plain of `table_bundle` without captions, as a statement's record holds it."""
    rows = result.rows[:max_rows]
    return _plain(result, rows, [row_caption(result, len(rows))])


def _html(result: Result, rows: list, captions: list[str]) -> str:
    head = "".join(
        f"<th>{html.escape(name)}<br><span class='rssd-type'>{html.escape(type_name)}</span></th>"
        for name, type_name in zip(result.columns, result.types)
    )
    body = []
    for row in rows:
        cells = "".join(
            "<td class='rssd-null'>NULL</td>"
            if value is None
            else f"<td>{html.escape(_shown(value))}</td>"
            for value in row
        )
        body.append(f"<tr>{cells}</tr>")
    caption = "".join(f"<div class='rssd-caption'>{html.escape(line)}</div>" for line in captions)
    return (
        f"{_STYLE}<table class='rssd-table'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{caption}"
    )


def _plain(result: Result, rows: list, captions: list[str]) -> str:
    def cut(text: str) -> str:
        text = text.replace("\n", "\\n")
        return text if len(text) <= MAX_PLAIN_WIDTH else text[: MAX_PLAIN_WIDTH - 1] + "…"

    grid = [[cut(n) for n in result.columns], [cut(t) for t in result.types]]
    grid += [[NULL_TEXT if v is None else cut(_shown(v)) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(result.columns))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in grid]
    lines.insert(2, "-+-".join("-" * w for w in widths))
    return "\n".join([*lines, *captions])


def message_bundle(lines: list[str]) -> dict:
    text = "\n".join(lines)
    return {
        "text/plain": text,
        "text/html": f"{_STYLE}<pre class='rssd-caption'>{html.escape(text)}</pre>",
    }
