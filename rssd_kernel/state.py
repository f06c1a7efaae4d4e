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


# Every key's latest row: by the file's change counter (DuckDB), then by the time (on
# PostgreSQL the server's clock_timestamp(), one clock for every kernel). Plain SQL that
# both engines read (PostgreSQL gets json_extract_string in the RSSD's schema).
# A key's rows ranked, latest first (n = 1): the one ordering every reader of the state uses.
LATEST_RANK = """row_number() OVER (PARTITION BY json_extract_string(elaboration, '$.key')
    ORDER BY coalesce(CAST(json_extract_string(elaboration, '$.change') AS BIGINT), -1) DESC,
             transitioned_at DESC, orchestration_session_state_id DESC)"""
_LATEST = """
SELECT orchestration_session_state_id, key, from_state, to_state, transitioned_at,
       session_id, elaboration, has_result FROM (
    SELECT orchestration_session_state_id, json_extract_string(elaboration, '$.key') AS key,
           from_state, to_state, transitioned_at, session_id, elaboration,
           transition_result IS NOT NULL AS has_result,
           {rank} AS n
    FROM orchestration_session_state
    WHERE json_extract_string(elaboration, '$.key') IS NOT NULL {where}
) AS latest WHERE n = 1
"""


class StateStore:
    def __init__(
        self,
        con,
        table: str = "orchestration_session_state",
        counter_table: str | None = "rssd_change_counter",
        clock: str | None = None,
        changed=None,
        announce=None,
    ):
        self.con = con
        self.table = table  # qualified with the RSSD's catalog (a cell may `USE` another)
        self.counter_table = counter_table  # None: rows are ordered by `clock` alone
        self.clock = clock  # an SQL expression for transitioned_at (else the column default)
        self.changed = changed  # () -> whether others wrote state rows since the last call
        self.announce = announce  # (con) -> tells the others, in the row's transaction
        self.last_counter = None  # the file's change counter after this process's last write
        self.reload()

    def refresh(self) -> None:
        """Read the state again if another kernel wrote state rows since: on PostgreSQL,
        which many kernels use at once, `changed` says so (engines/postgres.py). A DuckDB
        file is re-read when it is taken again (engines/duckdb.py)."""
        if self.changed is not None and self.changed():
            self.reload()

    def reload(self) -> None:
        """Read every key's latest transition from the file (another process may have
        added some while this one did not hold the file)."""
        con = self.con
        self.latest: dict[str, Transition] = {}
        self.with_result: dict[str, str] = {}  # key -> state id of its latest recorded result
        for row in con.execute(_LATEST.format(where="", rank=LATEST_RANK)).fetchall():
            self._remember(Transition(*row[:6], json.loads(row[6]), row[7]))
        for row in con.execute(
            _LATEST.format(where="AND transition_result IS NOT NULL", rank=LATEST_RANK)
        ).fetchall():
            self.with_result[row[1]] = row[0]

    def _remember(self, transition: Transition) -> None:
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
        # The file's change counter, bumped in the caller's transaction: it tells other
        # processes sharing the file that the state changed (a kill -9 right after the commit
        # cannot hide it), and it orders a key's rows whatever the clocks of the processes
        # that wrote them say (`change` in the elaboration; rows of 0.1 have none).
        if self.counter_table is not None:
            ((self.last_counter,),) = con.execute(
                f"UPDATE {self.counter_table} SET counter = counter + 1 RETURNING counter"
            ).fetchall()
            elaboration = {"key": key, "change": self.last_counter, **elaboration}
        else:
            elaboration = {"key": key, **elaboration}
        clock = (", transitioned_at", f", {self.clock}") if self.clock else ("", "")
        rows = con.execute(
            f"INSERT INTO {self.table} (orchestration_session_state_id, session_id, "
            "session_entry_id, from_state, to_state, transition_result, transition_reason, "
            f"elaboration{clock[0]}) VALUES (?, ?, ?, ?, ?, ?, ?, ?{clock[1]}) "
            "RETURNING transitioned_at",
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
        if self.announce is not None:
            self.announce(con)
        return Transition(state_id, key, from_state, to_state, rows[0][0], session_id,
                          elaboration, result is not None)  # fmt: skip

    def commit(self, transition: Transition) -> None:
        self._remember(transition)


def result_of(data: dict) -> Result | None:
    """The Result inside a transition_result, or None when it was too large to record."""
    if not data or data.get("not_recorded") or "columns" not in data:
        return None
    return Result.from_json(data)
