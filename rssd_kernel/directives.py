"""Directives: `-- @...` comment lines at the top of a cell.

They are SQL comments, so a cell stays valid SQL for any other client. Parsing stops at the
first line that is neither blank nor a comment; ordinary comments may sit among directives.
"""

import re
from dataclasses import dataclass

from rssd_kernel.errors import DirectiveError, RssdError

KNOWN = {
    "name": "-- @name <identifier>   name the cell: its key, and its result for later cells",
    "once": "-- @once                make the cell stateful: it runs once per database",
    "always": "-- @always              make the cell run every time, whatever its statements",
    "parameters": "-- @parameters          parameters injected by rssd run -p or papermill",
    "chart": "-- @chart KIND x=COL y=COL [color=COL]   draw the result (bar, line, scatter, area)",
}
_DIRECTIVE = re.compile(r"--\s*@(\S*)(.*)$")


@dataclass(frozen=True)
class Directives:
    name: str | None = None
    once: bool = False
    always: bool = False
    parameters: bool = False
    chart: dict | None = None


def help_text() -> str:
    return "\n".join(KNOWN.values())


def parse(code: str) -> Directives:
    """Read the directives at the top of `code`; raise DirectiveError for a bad one."""
    found: dict[str, str] = {}
    for number, raw in enumerate(code.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if not line.startswith("--"):
            break
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        word, argument = match.group(1), match.group(2).strip()
        if word not in KNOWN:
            raise DirectiveError(
                f"Unknown directive '@{word}' on line {number}.",
                "Known directives:\n" + help_text(),
            )
        if word in found:
            raise DirectiveError(f"The directive '@{word}' appears twice (line {number}).")
        if word == "chart":
            from rssd_kernel.charts import parse as parse_chart

            try:
                found[word] = parse_chart(argument)
            except RssdError as error:
                raise DirectiveError(f"Line {number}: {error.message}", error.remediation) from None
            continue
        if word == "name":
            if not argument.isidentifier():
                raise DirectiveError(
                    f"'-- @name' on line {number} needs one identifier (letters, digits and "
                    f"underscores, not starting with a digit); got {argument!r}."
                )
        elif argument:
            raise DirectiveError(
                f"'-- @{word}' on line {number} takes no argument; got {argument!r}."
            )
        found[word] = argument
    if "once" in found and "always" in found:
        raise DirectiveError("A cell cannot be both '-- @once' and '-- @always'; keep one.")
    return Directives(
        name=found.get("name"),
        once="once" in found,
        always="always" in found,
        parameters="parameters" in found,
        chart=found.get("chart"),
    )
