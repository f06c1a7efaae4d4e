"""orchestration_session_state: which cells were applied, and the results they passed on.

State rows are append-only: applying, forgetting and re-evaluating a cell each add a row.
A key's current state is its latest row. While a kernel holds the database file (DuckDB
lets one process at a time open it), no one else can add rows, so the latest transition of
every key is loaded when the kernel takes the file and someone else changed it since (see
lease.py), and kept up to date here: deciding whether a cell was applied costs a
dictionary look-up, whatever the size of the history, and is always made from what is in
the file now.
"""

import json
from dataclasses import dataclass

from rssd_kernel.ids import ulid
from rssd_kernel.results import Result

INITIAL = "INITIAL"
EXECUTED = "EXECUTED"  # a stateful cell was applied
EVALUATED = "EVALUATED"  # a named cell that runs every time recorded its result
FORGOTTEN = "FORGOTTEN"  # %forget: the next run applies the cell again


@dataclass
class Transition:
    state_id: str
    key: str
    from_state: str
    to_state: str
    transitioned_at: object
    session_id: str
    elaboration: dict
    has_result: bool

    @property
    def code_hash(self) -> str | None:
        return self.elaboration.get("code_hash")


_LATEST = """
SELECT orchestration_session_state_id, json_extract_string(elaboration, '$.key') AS key,
       from_state, to_state, transitioned_at, session_id, elaboration,
       transition_result IS NOT NULL AS has_result
FROM orchestration_session_state
WHERE json_extract_string(elaboration, '$.key') IS NOT NULL {where}
QUALIFY row_number() OVER (PARTITION BY key
                           ORDER BY transitioned_at DESC, orchestration_session_state_id DESC) = 1
"""


class StateStore:
    def __init__(
        self,
        con,
        table: str = "orchestration_session_state",
        counter_table: str = "rssd_change_counter",
    ):
        self.con = con
        self.table = table  # qualified with the RSSD's catalog (a cell may `USE` another)
        self.counter_table = counter_table
        self.horizon = None
        self.reload()

    def reload(self, since_last: bool = False) -> None:
        """Read every key's latest transition from the file (another process may have
        added some while this one did not hold the file). `since_last` reads only the
        rows from the latest time seen on (as fast as the rows that are new)."""
        con = self.con
        if not since_last or self.horizon is None:
            self.latest: dict[str, Transition] = {}
            self.with_result: dict[str, str] = {}  # key -> state id of its latest result
            self.horizon = None  # the latest transitioned_at read
        where = "" if self.horizon is None else "AND transitioned_at >= ?"
        params = [] if self.horizon is None else [self.horizon]
        for row in con.execute(_LATEST.format(where=where), params).fetchall():
            transition = Transition(*row[:6], json.loads(row[6]), row[7])
            known = self.latest.get(transition.key)
            if known is None or _order(transition) >= _order(known):
                self._remember(transition)
        with_result = _LATEST.format(where=where + " AND transition_result IS NOT NULL")
        for row in con.execute(with_result, params).fetchall():
            self.with_result[row[1]] = row[0]

    def _see(self, transition) -> None:
        moment = transition.transitioned_at
        if moment is not None and (self.horizon is None or moment > self.horizon):
            self.horizon = moment

    def _remember(self, transition: Transition) -> None:
        self._see(transition)
        self.latest[transition.key] = transition
        if transition.has_result:
            self.with_result[transition.key] = transition.state_id

    def applied(self, key: str) -> Transition | None:
        """The EXECUTED transition of `key` if it is currently applied, else None."""
        latest = self.latest.get(key)
        return latest if latest is not None and latest.to_state == EXECUTED else None

    def result_names(self) -> set[str]:
        return set(self.with_result)

    def result(self, key: str) -> dict | None:
        """The latest transition_result recorded for `key`, as JSON."""
        state_id = self.with_result.get(key)
        if state_id is None:
            return None
        (text,) = self.con.execute(
            "SELECT transition_result FROM orchestration_session_state "
            "WHERE orchestration_session_state_id = ?",
            [state_id],
        ).fetchall()[0]
        return json.loads(text)

    def record(
        self,
        con,
        key: str,
        to_state: str,
        reason: str,
        result: dict | None,
        elaboration: dict,
        session_id: str,
        entry_id: str | None,
    ) -> Transition:
        """Insert a transition through `con` (inside the caller's transaction, if any).

        Call `commit()` with the returned transition once that transaction has committed.
        """
        previous = self.latest.get(key)
        from_state = previous.to_state if previous else INITIAL
        state_id = ulid()
        elaboration = {"key": key, **elaboration}
        rows = con.execute(
            f"INSERT INTO {self.table} (orchestration_session_state_id, session_id, "
            "session_entry_id, from_state, to_state, transition_result, transition_reason, "
            "elaboration) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING transitioned_at",
            [
                state_id,
                session_id,
                entry_id,
                from_state,
                to_state,
                None if result is None else json.dumps(result),
                reason,
                json.dumps(elaboration),
            ],
        ).fetchall()
        # Tells other processes sharing the file that the state changed (lease.py); in the
        # caller's transaction, so a kill -9 right after its commit cannot hide the change.
        con.execute(f"UPDATE {self.counter_table} SET counter = counter + 1").fetchall()
        return Transition(state_id, key, from_state, to_state, rows[0][0], session_id,
                          elaboration, result is not None)  # fmt: skip

    def commit(self, transition: Transition) -> None:
        self._remember(transition)


def _order(transition: Transition) -> tuple:
    return (transition.transitioned_at, transition.state_id)


def result_of(data: dict) -> Result | None:
    """The Result inside a transition_result, or None when it was too large to record."""
    if not data or data.get("not_recorded") or "columns" not in data:
        return None
    return Result.from_json(data)
