"""Kernel options: traitlets with help text, settable in Jupyter config files
(`c.Settings.max_rows = 100`) and at run time with `%config max_rows=100`."""

from traitlets import Float, Integer
from traitlets.config import Configurable


class Settings(Configurable):
    max_rows = Integer(50, min=1, config=True, help="Rows shown for a result.")
    max_columns = Integer(
        100, min=1, config=True,
        help="Columns shown (and recorded for a named cell) of a result; a wider named result "
        "is not recorded.",
    )  # fmt: skip
    chart_max_rows = Integer(
        5_000, min=1, config=True, help="Rows of a result drawn by '-- @chart'."
    )
    result_max_rows = Integer(
        10_000, min=1, config=True,
        help="Rows a named cell may record in transition_result; a larger result still "
        "runs and shows, but later cells cannot use it.",
    )  # fmt: skip
    result_max_bytes = Integer(
        4_000_000, min=1_000, config=True,
        help="Bytes of JSON a named cell may record in transition_result.",
    )  # fmt: skip

    hold_s = Float(
        10.0, min=0.0, config=True,
        help="Seconds the kernel keeps the database file after its last use when no other "
        "process has asked for it (a waiting rssd process gets it at once).",
    )  # fmt: skip
    wait_s = Float(
        3600.0, min=0.0, config=True,
        help="Seconds a cell waits at most for a database file another process holds.",
    )  # fmt: skip

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.trait_names(config=True)}

    def describe(self) -> list[tuple[str, object, str]]:
        traits = self.traits(config=True)
        return [(name, getattr(self, name), traits[name].help) for name in sorted(traits)]
