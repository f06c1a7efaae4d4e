"""The cell runner: from a cell's source to the engine, RSSD records and Jupyter outputs.

request -> plan (directives, statements, kinds, key: plan.py) -> replay (outputs.py), or
named results bound (named.py) -> statements under the read-only net or in a stateful
transaction (transaction.py) -> state transition -> exec records -> outputs.

The session, its records and its engine are session.py's; everything that depends on the
database goes through the engine (engines/: DuckDB by default, PostgreSQL for a
postgresql:// database). Everything here is plain Python with no Jupyter in it;
`kernel.py` only speaks the protocol. `run` never raises: whatever fails, the cell gets an
error reply and an exec row.
"""

import contextlib
import json
import logging
import re
import time
from datetime import datetime, timezone

from rssd_kernel import charts, outputs, redact
from rssd_kernel.errors import (
    DatabaseLocked,
    DatabaseUnavailable,
    InvalidInput,
    RssdError,
    StatefulCellError,
)
from rssd_kernel.journal import MAX_PENDING
from rssd_kernel.outputs import Outcome, error_outcome, stderr, traceback_of, when
from rssd_kernel.plan import make as make_plan
from rssd_kernel.recorder import STATUS_ERROR, STATUS_INTERRUPTED, Exec, Issue
from rssd_kernel.session import Session
from rssd_kernel.statements import Failure
from rssd_kernel.transaction import AppliedMeanwhile, CellExecution

log = logging.getLogger("rssd_kernel")


class Runner(Session):
    """Runs cells in the session (see module docstring)."""

    # -- cells --------------------------------------------------------------------------

    def run(
        self,
        code: str,
        cell_id: str | None = None,
        execution_count: int | None = None,
        commands=None,
    ) -> Outcome:
        """Run one cell and record it. Never raises for anything a cell can contain."""
        with self._lock:
            began = time.perf_counter()
            code, invalid = _valid_text(code)
            is_command = code.lstrip().startswith("%") and not invalid
            offline = is_command and commands.works_offline(code)
            if self.con is None:
                try:
                    self._connect()  # the database may have become usable since
                except Exception as error:  # noqa: BLE001 - answered, never raised
                    log.exception("rssd: could not open the database")
                    self.unavailable = self.unavailable or DatabaseUnavailable(str(error))
                if self.con is None and not offline:
                    return error_outcome(self.unavailable)
            notes = self._writer_notes()
            writer = self.recorder.writer if self.recorder is not None else None
            if writer is not None and writer.overloaded():
                return error_outcome(RssdError(
                    "rssd cannot record executions right now: neither the journal nor the "
                    "database can be written (is the disk full, or the server down?), and "
                    f"{MAX_PENDING:,} executions already wait in memory. This cell did not run.",
                    "Free some disk space (or bring the server back), then run the cell again; "
                    "the waiting records are written first.",
                ))  # fmt: skip
            started = time.time()
            cell = Exec(nature="SQL", code=code)
            cell.elaboration = {"cell_id": cell_id, "execution_count": execution_count,
                                "started_at": _iso(started)}  # fmt: skip
            if is_command:
                cell.nature = "kernel-command"
            hints = redact.might_hold_secrets(code)
            if hints:
                self.secrets |= redact.secrets_in(code)
            self._running, self._stop = True, False
            self.phases = {}
            engine_error = self.engine.Error if self.engine is not None else Exception
            # The database stays held until the cell is recorded: its secrets are read from
            # the session while the file (the connection's default database) is there.
            held = contextlib.ExitStack()
            try:
                if not offline and self.engine is not None and writer is not None:
                    notes += [stderr(n) for n in self.engine.before_cell(writer)]
                if invalid:
                    raise invalid
                if offline:  # %open, %config, %help: no database needed (%open changes it)
                    outcome = commands.run(self, code.strip(), cell)
                else:
                    with self.phase("hold"):
                        held.enter_context(self.hold(self.check_stop))
                    if is_command or _reads_rssd(code):
                        with self.phase("flush"):  # a cell reading the RSSD sees it all
                            if not writer.flush(
                                FLUSH_WAIT, self.check_stop_waiting, digests=not is_command
                            ):  # a write failed (said now), or it takes longer
                                failed = writer.error is not None
                                notes += (
                                    self._writer_notes()
                                    if failed
                                    else [stderr(_STILL_WRITING.format(FLUSH_WAIT))]
                                )
                    if is_command:
                        outcome = commands.run(self, code.strip(), cell)
                    else:
                        outcome = self._run_sql(code, cell, cell_id)
            except RssdError as error:
                outcome = error_outcome(error)
                cell.status = STATUS_ERROR
                cell.error_text = str(error)
                cell.issue = Issue(error.ename, error.message, error.remediation)
            except Failure as failure:
                outcome = Outcome(error=(failure.ename, failure.evalue, traceback_of(failure)))
                outcome.interrupted = failure.interrupted
                cell.status = STATUS_INTERRUPTED if failure.interrupted else STATUS_ERROR
                cell.error_text = f"{failure.ename}: {failure.evalue}"
                cell.issue = Issue(
                    failure.ename, failure.evalue, None, failure.line, failure.column
                )
            except engine_error as error:  # outside a statement: a named result, the RSSD
                ename, evalue = self.engine.split_error(error)
                outcome = Outcome(error=(ename, evalue, [f"{ename}: {evalue}"]))
                outcome.interrupted = self.engine.is_interrupt(error)
                cell.status = STATUS_INTERRUPTED if outcome.interrupted else STATUS_ERROR
                cell.error_text = f"{ename}: {evalue}"
                cell.issue = Issue(ename, evalue)
            except Exception as error:  # a bug of ours: the cell still gets a reply and a record
                log.exception("rssd: unexpected error while running a cell")
                message = (
                    f"rssd-kernel failed unexpectedly while running this cell: {error!r}. "
                    "The execution is recorded; the kernel carries on. Please report it."
                )
                outcome = Outcome(error=("Internal Error", message, [message]))
                cell.status, cell.error_text = STATUS_ERROR, message
                cell.issue = Issue("Internal Error", message)
            finally:
                self._running = False
            finished = time.time()
            cell.elaboration.update(
                finished_at=_iso(finished), duration_ms=round((finished - started) * 1000, 3)
            )
            self.counts["cells"] += 1
            self.counts["errors"] += outcome.status == "error" and not outcome.interrupted
            self.counts["interrupts"] += outcome.interrupted
            if hints and self.con is not None:
                self._remember_secret_variables()
            secrets = self.secrets
            if outcome.error:  # error messages may echo a secret: show them masked too
                ename, evalue, traceback = outcome.error
                outcome.error = (ename, redact.scrub(evalue, secrets),
                                 [redact.scrub(line, secrets) for line in traceback])  # fmt: skip
            try:
                if self.recorder is not None:  # %open to a bad file leaves nothing to record in
                    with self.phase("record"):
                        self._record(cell, outcome, secrets)
            except Exception as error:  # the journal keeps what it could take
                log.exception("rssd: could not record a cell")
                notes.append(stderr(f"rssd: this execution could not be recorded: {error}"))
            finally:
                if writer is not None:
                    writer.release_held()  # lineage digests of this cell may now be made
                held.close()
            outcome.outputs[:0] = notes
            if outcome.outputs:
                phases = {k: round(v, 3) for k, v in self.phases.items()}
                # The cell's bookkeeping between phases (its exec, statuses, notes)
                whole = (time.perf_counter() - began) * 1000
                phases["other"] = round(max(0.0, whole - sum(self.phases.values())), 3)
                outcome.metadata["phases_ms"] = phases
            self._catalog = None  # the cell may have changed it
            self._named_columns.clear()
            return outcome

    def _remember_secret_variables(self) -> None:
        """Values of credential-named variables (SET VARIABLE openai_api_key = ...) are
        masked wherever they show up later in this session: in a result, an error, a name."""
        self.secrets |= {
            value
            for name, value in self.engine.secret_variables()
            if redact.is_secret_name(name) and len(value or "") >= 4
        }

    def _writer_notes(self) -> list:
        """stderr lines for what the user should know from outside this cell: records that
        could not be written yet (disk full, say), a journal set aside when the file opened."""
        notes = [stderr(note) for note in self.notes]
        self.notes.clear()
        warning = self.recorder.writer.take_warning() if self.recorder else None
        if warning:
            notes.append(stderr(f"rssd: {warning}"))
        error = self.recorder.writer.take_error() if self.recorder else None
        if error is not None and not isinstance(error, DatabaseLocked):
            notes.append(stderr(
                f"rssd: earlier executions could not be written to the RSSD yet ({error}); "
                "they are kept in the journal and written when possible."
            ))  # fmt: skip
        return notes

    def _record(self, cell: Exec, outcome: Outcome, secrets: set[str]) -> None:
        if not cell.narrative:
            cell.narrative = (
                "Failed: " + outcome.error[1].splitlines()[0] if outcome.error else "Ran."
            )
        if outcome.error:
            cell.log.append(("error", f"{outcome.error[0]}: {outcome.error[1]}"))
        self.recorder.record(cell, secrets)

    def _plan(self, code: str, cell_id: str | None):
        with self.phase("plan"):
            plan = make_plan(code, cell_id, None, self.engine, self.named.temp_names)
        created = {
            c.target.split(".")[-1]
            for c in plan.classified
            if c.statement_type == "CREATE" and c.kind == "stateful" and c.target
        }
        if self.named.drop_shadowing(created):  # a named result's TEMP table of that name
            plan = make_plan(code, cell_id, None, self.engine, self.named.temp_names)
        return plan, created

    def _run_sql(self, code: str, cell: Exec, cell_id: str | None) -> Outcome:
        plan, created = self._plan(code, cell_id)
        plan.key = plan.name or self.keys.key(plan.digest, cell_id)
        cell.identity = plan.key
        cell.elaboration.update(
            kind=plan.kind,
            key=plan.key,
            name=plan.name,
            code_hash=plan.digest,
            statement_types=[c.statement_type for c in plan.classified],
        )
        self.counts["statements"] += len(plan.statements)
        if not plan.statements:
            cell.narrative = "An empty cell: nothing to run."
            cell.output_nature = {"kind": plan.kind, "statements": 0}
            return Outcome()
        self.state.refresh()  # other kernels of a PostgreSQL database write state too
        applied = None if plan.always else self.state.applied(plan.key)
        if applied is None:
            with self.phase("bind"):  # named results: the name, then the cell's references
                if plan.name:
                    self.named.check_name_free(plan.name)
                params = self.named.bind(code, plan.statements, cell, created)
            try:
                return self._ran(cell, plan, CellExecution(self, plan, cell, params).run(),
                                 cell_id)  # fmt: skip
            except AppliedMeanwhile:  # another kernel applied it first: replay theirs
                cell.children.clear()
                self.state.reload()
                applied = self.state.applied(plan.key)
                if applied is None:  # cannot happen: the lock's holder committed it
                    raise StatefulCellError(f"The cell '{plan.key}' changed state meanwhile; "
                                            "run it again.") from None  # fmt: skip
        if applied.code_hash != plan.digest:
            raise StatefulCellError(
                f"The cell '{plan.key}' was applied on {when(applied.transitioned_at)} in "
                f"session {applied.session_id} with different code; it was neither run "
                "nor skipped.",
                f"To apply the new code, run `%forget {plan.key}` and run the cell again "
                "(undo the old effects first if they are in the way). To keep the old "
                "state, restore the cell's code.",
            )
        self.counts["replayed"] += 1
        outcome = outputs.replay(self, cell, applied, plan.key)
        self.keys.ran(plan.digest, cell_id)
        if plan.directives.chart and outcome.metadata.get("result") is not None:
            spec = charts.spec(plan.directives.chart, outcome.metadata.pop("result"))
            charts.attach(outcome.outputs[-1][1], spec)
        outcome.metadata.pop("result", None)
        return outcome

    def _ran(self, cell: Exec, plan, ran, cell_id: str | None) -> Outcome:
        self.keys.ran(plan.digest, cell_id)
        cell.elaboration["kind"] = ran.kind
        if ran.transition is not None:
            self.state.commit(ran.transition)
        with self.phase("outputs"):
            outcome = outputs.of_cell(self, cell, plan, ran)
        if ran.chart is not None:
            charts.attach(outcome.outputs[-1][1], ran.chart)
        if plan.directives.parameters:
            self._record_parameters(cell, plan)
        return outcome

    def _record_parameters(self, cell: Exec, plan) -> None:
        """Parameters (SET VARIABLE cells from rssd run -p or papermill) go into the exec's
        input_text and the session's args_json: only the variables this cell set, with the
        values of credential-named ones masked."""
        names = {name.lower() for name in redact.variables_set(plan.code)}
        self.parameters = {
            name: {
                "value": redact.MASK if redact.is_secret_name(name) else redact.scrub(value),
                "type": kind,
            }  # fmt: skip
            for name, value, kind in self.engine.variables()
            if name.lower() in names
        }
        cell.input_text = json.dumps({"parameters": self.parameters})
        self.recorder.con.execute(
            "UPDATE orchestration_session SET args_json = ? WHERE orchestration_session_id = ?",
            [json.dumps(self.session_args(), default=str), self.session_id],
        ).fetchall()


# Searched in the case-folded text: a case-insensitive regex takes ten times as long.
_RSSD_WORDS = re.compile(r"orchestration_|\bdevice\b|rssd_schema_version")


FLUSH_WAIT = 30.0  # seconds a cell that reads the RSSD waits for earlier cells' records
_STILL_WRITING = (
    "rssd: earlier cells' records are still being written (the lineage digests of large "
    "files, say), after {:g} seconds of waiting; this cell may not show them all. They go "
    "on in the background: run it again later to see them."
)


def _reads_rssd(code: str) -> bool:
    """Whether the cell may read the RSSD's tables (it names one, in any case)."""
    return bool(_RSSD_WORDS.search(redact.casefolded(code)))


def _valid_text(code: str) -> tuple[str, InvalidInput | None]:
    """The cell as valid UTF-8 (lone surrogates escaped, so it can be recorded), and an
    error to answer with when it was not."""
    try:
        code.encode("utf-8")
        return code, None
    except UnicodeEncodeError as error:
        before = code[: error.start]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        safe = code.encode("utf-8", "backslashreplace").decode("utf-8")
        return safe, InvalidInput(
            f"The cell holds text that is not valid Unicode (a lone surrogate, "
            f"{safe[error.start : error.start + 6]}, at line {line}, column {column}).",
            "Remove or retype that character and run the cell again.",
        )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()
