"""`-- @chart bar|line|scatter|area x=COL y=COL [color=COL]`: a result as a Vega-Lite chart.

The chart travels as `application/vnd.vegalite.v5+json`, which JupyterLab draws natively,
next to the table as text/plain, which every other front end can show.
"""

from rssd_kernel.errors import RssdError
from rssd_kernel.results import Result

MIME = "application/vnd.vegalite.v5+json"
MARKS = {"bar": "bar", "line": "line", "scatter": "point", "area": "area"}
CHANNELS = ("x", "y", "color")
USAGE = "-- @chart bar|line|scatter|area x=COLUMN y=COLUMN [color=COLUMN]"
_NUMBERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
            "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")  # fmt: skip
_TIMES = ("DATE", "TIMESTAMP", "TIME")


class ChartError(RssdError):
    ename = "Chart Error"


def parse(argument: str) -> dict:
    """{'kind': 'bar', 'x': 'col', 'y': 'col', 'color': None} from the directive's text."""
    words = argument.split()
    if not words or words[0] not in MARKS:
        raise ChartError(f"'-- @chart' needs a kind first ({', '.join(MARKS)}); got {argument!r}.",
                         f"Usage: {USAGE}")  # fmt: skip
    chart = {"kind": words[0], "x": None, "y": None, "color": None}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or key not in CHANNELS or not value:
            raise ChartError(
                f"'-- @chart' takes x=, y= and color=; got {word!r}.", f"Usage: {USAGE}"
            )
        chart[key] = value
    if not chart["x"] or not chart["y"]:
        raise ChartError("'-- @chart' needs both x=COLUMN and y=COLUMN.", f"Usage: {USAGE}")
    return chart


def attach(bundle: dict, chart_spec: dict) -> None:
    """Put the chart in a result's bundle. JupyterLab prefers text/html to Vega-Lite, so the
    HTML table goes; the plain-text table stays as the fallback for other front ends."""
    bundle.pop("text/html", None)
    bundle[MIME] = chart_spec


def _kind(type_name: str) -> str:
    if type_name.startswith(_NUMBERS):
        return "quantitative"
    if type_name.startswith(_TIMES):
        return "temporal"
    return "nominal"


def _value(text, kind: str):
    if text is None or kind != "quantitative":
        return text
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def spec(chart: dict, result: Result | None) -> dict:
    """The Vega-Lite spec for `result`; ChartError names the result's columns if one is missing."""
    if result is None or not result.columns:
        raise ChartError("The cell's last statement returns no rows to chart.")
    positions = {name: index for index, name in enumerate(result.columns)}
    for channel in CHANNELS:
        column = chart.get(channel)
        if column is not None and column not in positions:
            raise ChartError(
                f"The chart's {channel}={column} is not a column of the result. "
                f"Its columns are: {', '.join(result.columns)}.",
                f"Usage: {USAGE}",
            )
    used = {
        c: _kind(result.types[positions[c]]) for c in (chart["x"], chart["y"], chart["color"]) if c
    }
    values = [{c: _value(row[positions[c]], used[c]) for c in used} for row in result.rows]
    encoding = {
        channel: {"field": chart[channel], "type": used[chart[channel]]}
        for channel in CHANNELS
        if chart.get(channel)
    }
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": values},
        "mark": {"type": MARKS[chart["kind"]], "tooltip": True},
        "encoding": encoding,
    }
