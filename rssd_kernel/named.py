"""Named results: a named cell's recorded rows, read back by later cells as `$name`
values (typed prepared-statement parameters) or as tables (TEMP tables made on demand)."""

import json

from rssd_kernel.errors import NamedResultError
from rssd_kernel.recorder import Exec
from rssd_kernel.results import Result
from rssd_kernel.state import StateStore, result_of


class NamedResults:
    def __init__(self, engine, state: StateStore):
        self.engine = engine
        self.state = state
        self.materialized: dict[str, str] = {}  # name -> state id held in its TEMP table

    def temp_names(self) -> set[str]:
        """The session's temporary objects (see the engine's `temp_names`)."""
        return self.engine.temp_names()

    def check_name_free(self, name: str) -> None:
        found = self.engine.persistent_names({name})
        if found:
            raise NamedResultError(
                f"The name '{name}' would hide the existing table or view '{name}' in later cells.",
                "Choose another '-- @name' for this cell.",
            )

    def get(self, name: str) -> Result:
        data = self.state.result(name)
        if data is None and name.isdigit():
            raise NamedResultError(
                f"${name} is a positional parameter, and a notebook cell has no values to bind "
                "to it.",
                "Write the value in the SQL, or name a cell '-- @name x' and use $x.",
            )
        if data is None:
            named = [n for n in self.state.result_names() if not n.startswith("cell-")]
            known = ", ".join(sorted(named)) or "none yet"
            raise NamedResultError(
                f"There is no named result '{name}'. Named results: {known}.",
                f"Run the cell marked '-- @name {name}' first, or check the spelling.",
            )
        result = result_of(data)
        if result is None:
            raise NamedResultError(
                f"The result '{name}' was not recorded ({data.get('not_recorded')}), so later "
                "cells cannot use it.",
                f"Materialise it as a table instead: CREATE TABLE {name}_table AS <its query>.",
            )
        return result

    def bind(self, code: str, statements: list, cell: Exec, created=frozenset()) -> dict:
        """The `$name` values of the cell, and named results it reads as tables made readable
        (not those the cell itself creates as real tables: theirs win)."""
        names = self.state.result_names()
        params: dict[str, object] = {}
        for statement in statements:
            for name in statement.named_parameters:
                if name in params:
                    continue
                result = self.get(name)
                if len(result.columns) != 1 or len(result.rows) != 1 or not result.complete:
                    raise NamedResultError(
                        f"${name} needs a single value, but the result '{name}' has "
                        f"{len(result.rows)}{'' if result.complete else '+'} rows and "
                        f"{len(result.columns)} columns.",
                        f"Use it as a table instead: SELECT ... FROM {name}.",
                    )
                params[name] = self.engine.scalar(result)
        if names:
            words = self.engine.words(code)
            used = {  # names read as tables (not as $name)
                word.strip('"')
                for index, word in enumerate(words)
                if word.strip('"') in names and (index == 0 or words[index - 1] != "$")
            }
            used -= set(created)
            real = {n.lower() for n in self.engine.persistent_names(used)}
            for name in sorted(used):
                if name.lower() in real:
                    self._drop_stale(name)  # a real table or view of that name wins
                else:
                    self.materialize(name)
        if params:
            cell.input_text = json.dumps({"named_results": sorted(params)})
        return params

    def drop_shadowing(self, names: set[str]) -> bool:
        """Before a cell creates real tables of these names: drop the TEMP tables made for
        named results of the same names, which would hide them. True if any was dropped."""
        stale = [n for n in list(self.materialized) if n.lower() in names]
        for name in stale:
            self._drop_stale(name)
        return bool(stale)

    def _drop_stale(self, name: str) -> None:
        """Drop the TEMP table made for a named result, which would hide a real table."""
        if self.materialized.pop(name, None) is not None:
            self.engine.drop_temp(name)

    def materialize(self, name: str) -> None:
        """Make a named result readable as a table: a TEMP table holding its rows."""
        state_id = self.state.with_result[name]
        if self.materialized.get(name) == state_id and name.lower() in self.temp_names():
            return
        if name not in self.materialized and self.engine.temp_table_exists(name):
            return  # a temp table of the user's of that name wins: leave it
        self.engine.make_temp_table(name, self.get(name))
        self.materialized[name] = state_id
