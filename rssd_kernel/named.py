"""Named results: a named cell's recorded rows, read back by later cells as `$name`
values (typed prepared-statement parameters) or as tables (TEMP tables made on demand)."""

import json

import duckdb

from rssd_kernel import classify
from rssd_kernel.errors import NamedResultError
from rssd_kernel.recorder import Exec
from rssd_kernel.results import Result, quote_ident, restore_sql, scalar
from rssd_kernel.state import StateStore, result_of

_SESSION_OBJECTS = """
SELECT lower(table_name) FROM duckdb_tables() WHERE temporary
UNION SELECT lower(view_name) FROM duckdb_views() WHERE temporary AND NOT internal
UNION SELECT lower(sequence_name) FROM duckdb_sequences() WHERE temporary
UNION SELECT lower(function_name) FROM duckdb_functions()
      WHERE database_name = 'temp' AND NOT internal
UNION SELECT lower(type_name) FROM duckdb_types() WHERE database_name = 'temp' AND NOT internal
UNION SELECT lower(database_name) || '.' FROM duckdb_databases()
      WHERE path IS NULL AND NOT internal AND database_name <> 'rssd_session'
        AND database_name <> ?
"""


class NamedResults:
    def __init__(self, con, state: StateStore, catalog: str = "memory"):
        self.con = con
        self.catalog = catalog  # the RSSD's database: an in-memory one is still persistent
        self.state = state
        self.materialized: dict[str, str] = {}  # name -> state id held in its TEMP table

    def temp_names(self) -> set[str]:
        """The session's temporary tables, views, sequences, macros and types, lower-cased,
        and (as `name.`) the in-memory databases it attached: writes to them change only
        the session. Empty inside a transaction
        of the user's that an error aborted: the cell's own statement then fails there with
        DuckDB's message."""
        try:
            rows = self.con.execute(_SESSION_OBJECTS, [self.catalog]).fetchall()
        except duckdb.Error:
            return set()
        return {name for (name,) in rows}

    def check_name_free(self, name: str) -> None:
        rows = self.con.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE NOT temporary AND lower(table_name) = lower(?) "
            "UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT temporary AND NOT internal "
            "AND lower(view_name) = lower(?)",
            [name, name],
        ).fetchall()
        if rows:
            raise NamedResultError(
                f"The name '{name}' would hide the existing table or view '{rows[0][0]}' in "
                "later cells.",
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
                params[name] = scalar(self.con, result)
        if names:
            words = classify.words(code)
            used = {  # names read as tables (not as $name)
                word.strip('"')
                for index, word in enumerate(words)
                if word.strip('"') in names and (index == 0 or words[index - 1] != "$")
            }
            used -= set(created)
            real = self._real_names(used)
            for name in sorted(used):
                if name.lower() in real:
                    self._drop_stale(name)  # a real table or view of that name wins
                else:
                    self.materialize(name)
        if params:
            cell.input_text = json.dumps({"named_results": sorted(params)})
        return params

    def _real_names(self, names: set[str]) -> set[str]:
        """Which of `names` are persistent tables or views (in any attached database)."""
        if not names:
            return set()
        rows = self.con.execute(
            "SELECT lower(table_name) FROM duckdb_tables() WHERE NOT temporary "
            "AND lower(table_name) IN (SELECT lower(unnest(?::VARCHAR[]))) "
            "UNION SELECT lower(view_name) FROM duckdb_views() WHERE NOT temporary "
            "AND NOT internal AND lower(view_name) IN (SELECT lower(unnest(?::VARCHAR[])))",
            [sorted(names), sorted(names)],
        ).fetchall()
        return {name for (name,) in rows}

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
            self.con.execute(f"DROP TABLE IF EXISTS temp.main.{quote_ident(name)}").fetchall()

    def materialize(self, name: str) -> None:
        """Make a named result readable as a table: a TEMP table holding its rows."""
        state_id = self.state.with_result[name]
        if self.materialized.get(name) == state_id and name.lower() in self.temp_names():
            return
        if name not in self.materialized:
            # A temp table of the user's of that name wins: leave it.
            exists = self.con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE temporary "
                "AND lower(table_name) = lower(?)",
                [name],
            ).fetchall()[0][0]
            if exists:
                return
        result = self.get(name)
        sql, params = restore_sql(result)
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE {quote_ident(name)} AS {sql}", params
        ).fetchall()
        self.materialized[name] = state_id
