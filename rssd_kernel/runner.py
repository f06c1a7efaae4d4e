"""The cell runner: from a cell's source to the engine, RSSD records and Jupyter outputs.

request -> plan (directives, statements, kinds, key: plan.py) -> replay (outputs.py), or
named results bound (named.py) -> statements under the read-only net or in a stateful
transaction (transaction.py) -> state transition -> exec records -> outputs.

Everything that depends on the database goes through the session's engine (engines/:
DuckDB by default, PostgreSQL for a postgresql:// database). Everything here is plain
Python with no Jupyter in it; `kernel.py` only speaks the protocol. One lock serialises
all work on the connection, so requests arriving on several shell channels (ipykernel
subshells) run one after another. `run` never raises: whatever fails, the cell gets an
error reply and an exec row.
"""

import contextlib
import json
import logging
import os
import platform
import re
import threading
import time
from datetime import datetime, timezone

from rssd_kernel import __version__, charts, outputs, redact
from rssd_kernel.database import default_path
from rssd_kernel.engines import is_postgres, load_postgres
from rssd_kernel.engines.duckdb import DuckDBEngine
from rssd_kernel.errors import (
    DatabaseLocked,
    DatabaseUnavailable,
    InvalidInput,
    RssdError,
    StatefulCellError,
)
from rssd_kernel.journal import MAX_PENDING
from rssd_kernel.keys import Keys
from rssd_kernel.named import NamedResults
from rssd_kernel.outputs import Outcome, error_outcome, stderr, traceback_of, when
from rssd_kernel.plan import make as make_plan
from rssd_kernel.recorder import STATUS_ERROR, STATUS_INTERRUPTED, Exec, Issue, Recorder
from rssd_kernel.settings import Settings
from rssd_kernel.state import StateStore
from rssd_kernel.statements import Failure
from rssd_kernel.transaction import AppliedMeanwhile, CellExecution

log = logging.getLogger("rssd_kernel")
COMPLETE_WAIT = 0.5  # a completion does not wait long for a file another process holds
CLOSE_WAIT = 3.0  # at shutdown, for the session's last rows (else the journal keeps them)


class Runner:
    """The RSSD session on one database, and the running of cells."""

    def __init__(self, settings: Settings | None = None, notebook: str | None = None):
        self.settings = settings or Settings()
        self.notebook = notebook or os.environ.get("JPY_SESSION_NAME") or None
        self.parameters: dict[str, str] = {}
        self.path = default_path()
        self.engine = None
        self.unavailable: DatabaseUnavailable | None = None
        self.recorder: Recorder | None = None
        self.state: StateStore | None = None
        self.named: NamedResults | None = None
        self._lock = threading.RLock()
        self._catalog = None  # read for completion after each cell
        self._functions = None
        self._named_columns: dict[str, list] = {}
        self._running = False  # a cell is running: the stop button interrupts the engine
        self._stop = False  # the stop button was pressed during this cell
        self.notes: list[str] = []  # warnings for the next cell's output (journal recovery)
        self.keys = Keys()
        self.secrets: set[str] = set()  # credential values seen this session: never recorded
        self._reset_diagnostics()
        self._connect()

    # -- the database and the session -------------------------------------------------

    def _reset_diagnostics(self) -> None:
        self.counts = {"cells": 0, "statements": 0, "errors": 0, "interrupts": 0, "replayed": 0}
        self.started = time.time()

    @property
    def con(self):
        """The cell's connection (the engine's)."""
        return self.engine.con if self.engine is not None else None

    @con.setter
    def con(self, value) -> None:  # tests put a failing connection in its place
        self.engine.con = value

    @property
    def lease(self):
        return getattr(self.engine, "lease", None)

    @property
    def catalog(self) -> str:
        return self.engine.catalog if self.engine is not None else "memory"

    @property
    def in_user_transaction(self) -> bool:
        return bool(self.engine and self.engine.in_user_transaction)

    def _connect(self) -> None:
        """Start the session on `self.path` with its engine (engines/). A database that
        cannot be used leaves `unavailable` set; cells then answer with it."""
        self.keys = Keys()
        self.state = self.named = self.recorder = None
        self.unavailable = None
        self.engine = None
        try:
            if is_postgres(self.path):
                postgres = load_postgres()
                self.secrets |= postgres.secrets_of(self.path)  # masked wherever it shows
                engine = postgres.PostgresEngine(self.path, self.settings, self.notebook)
            else:
                engine = DuckDBEngine(self.path, self.settings, self.notebook)
            self.engine = engine
            engine.start(self)
        except DatabaseUnavailable as error:
            self._drop(error)

    def _drop(self, error: DatabaseUnavailable) -> None:
        """The database cannot be used at all (not DuckDB, read-only, newer schema...)."""
        self.unavailable = error
        recorder, self.recorder = self.recorder, None
        if recorder is not None and recorder.writer is not None:
            recorder.writer.close(timeout=0)  # nothing can be written: the journal keeps it
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    # Called by the engine:

    def announce(self, cursor, hold, journal_base: str) -> None:
        """Make the recorder before the database is first held, and journal the session's
        start, so that a cell that ends before (interrupted while waiting) is recorded."""
        self.recorder = Recorder(None, cursor, hold, journal_base)
        self.recorder.announce(self.session_args(), self.notebook)

    def journal_path(self) -> str | None:
        writer = self.recorder.writer if self.recorder else None
        return writer.path if writer is not None else None

    def start_records(self, con, cursor=None, hold=None) -> None:
        """The database is held for the first time: write the session's rows through
        `con`, and read the state."""
        if self.recorder is None:
            self.recorder = Recorder(con, cursor, hold)
        journal_base = self.engine.journal_base
        self.recorder.start_session(self.session_args(), self.notebook, journal_base, con)
        self.state = self.engine.state_store(con)
        self.named = NamedResults(self.engine, self.state)

    def database_changed(self) -> None:
        """Another process changed the database since this one last looked."""
        self.state.reload()
        self._catalog = None
        self._named_columns.clear()

    def pinned(self) -> str | None:
        """Why the database file must not be let go now, or None."""
        if self.in_user_transaction:
            return "a transaction opened in a cell is still open"
        writer = self.recorder.writer if self.recorder else None
        if writer is not None and writer.has_work():
            writer.hurry()
            return "execution records are being written"
        return None

    def hold(self, check_stop=None, wait_s: float | None = None):
        """Hold the database for a block (taking the file again if it was let go)."""
        if self.engine is None:
            return contextlib.nullcontext()
        return self.engine.hold(check_stop, wait_s)

    def session_args(self) -> dict:
        described = self.engine.describe() if self.engine is not None else {}
        return {
            **described,
            "python_version": platform.python_version(),
            "rssd_kernel_version": __version__,
            "notebook": self.notebook,
            "parameters": self.parameters or None,
            "options": self.settings.as_dict(),
            "pid": os.getpid(),
        }

    @property
    def session_id(self) -> str | None:
        return self.recorder.session_id if self.recorder else None

    def diagnostics(self) -> tuple[dict, str]:
        data = {**self.counts, "duration_s": round(time.time() - self.started, 3)}
        md = (
            f"rssd-kernel {__version__} session: {data['cells']} cells, "
            f"{data['statements']} statements, {data['errors']} errors, "
            f"{data['interrupts']} interrupts, {data['replayed']} replayed, "
            f"{data['duration_s']} s."
        )
        return data, md

    def close(self) -> None:
        """End the session (orch_finished_at, diagnostics) and let the database go."""
        with self._lock:
            if self.recorder is None:
                if self.engine is not None:
                    self.engine.close()
                return
            error = self.engine.Error if self.engine is not None else Exception
            try:
                with self.hold(wait_s=CLOSE_WAIT):
                    if self.state is not None:
                        self.recorder.finish_session(*self.diagnostics())
                    else:  # the database was never taken: the journal keeps what ran
                        self.recorder.writer.close(timeout=0)
            except (error, RssdError):
                pass  # the journal keeps the records; the session row keeps its start
            finally:
                writer = self.recorder.writer
                if writer is not None and not writer.closed:
                    writer.close(timeout=0)  # unlocks its journal: recovered by the next
                if self.recorder.con is not None:
                    with contextlib.suppress(Exception):
                        self.recorder.con.close()
                if self.engine is not None:
                    self.engine.close()
                self.recorder = self.state = None

    def open(self, path: str) -> None:
        """End the current session and start a new one on `path` (`%open`)."""
        with self._lock:
            self.close()
            self.path = path
            self._reset_diagnostics()
            self._connect()
            if self.unavailable:
                raise self.unavailable

    # -- completion and inspection --------------------------------------------------------

    def complete(self, code: str, cursor: int) -> tuple[list[str], int]:
        from rssd_kernel import complete

        with self._lock:
            if self.con is None or self.state is None:
                return [], cursor
            cached = self._catalog is not None and self._functions is not None
            try:
                if cached and set(self.state.result_names()) <= set(self._named_columns):
                    return self._complete(complete, code, cursor)  # the file is not needed
                with self.hold(wait_s=COMPLETE_WAIT):
                    return self._complete(complete, code, cursor)
            except (self.engine.Error, RssdError):
                return [], cursor  # the file is busy elsewhere: no completion this time

    def _complete(self, complete, code: str, cursor: int) -> tuple[list[str], int]:
        if self._catalog is None:
            self._catalog = self.engine.load_catalog()
        if self._functions is None:
            self._functions = self.engine.load_functions()
        named = {}
        for name in self.state.result_names():
            latest = self._named_columns.get(name)
            if latest is None:
                data = self.state.result(name) or {}
                latest = [(c["name"], c["type"]) for c in data.get("columns", [])]
                self._named_columns[name] = latest
            named[name] = latest
        return complete.complete(code, cursor, self._catalog, *self._functions, named)

    def inspect(self, code: str, cursor: int) -> str | None:
        from rssd_kernel import complete

        name = complete.word_at(code, cursor)
        if not name:
            return None
        with self._lock:
            if self.con is None or self.state is None:
                return None
            try:
                with self.hold(wait_s=COMPLETE_WAIT):
                    self.recorder.writer.flush()  # "created by" reads the exec records
                    return self.engine.inspect(self.state, name)
            except (self.engine.Error, RssdError):
                return None

    def progress(self) -> float | str | None:
        """The engine's progress of the running query in percent (None or -1 when
        unknown), or what the cell waits for (another process holds the file)."""
        engine = self.engine
        waiting = engine.waiting_for() if engine is not None else None
        if waiting:
            return waiting
        if self._running and self.con is not None:
            return engine.progress()
        return None

    def interrupt(self) -> None:
        """Stop the running cell: cancel its query, and have it stop before its next step
        (statement, lineage hash). Safe to call from a signal handler."""
        if self._running and self.con is not None:
            self._stop = True
            self.engine.interrupt()

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
                    held.enter_context(self.hold(self.check_stop))
                    if is_command or _reads_rssd(code):
                        self.recorder.writer.flush()  # a cell reading the RSSD sees it all
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
                    self._record(cell, outcome, secrets)
            except Exception as error:  # the journal keeps what it could take
                log.exception("rssd: could not record a cell")
                notes.append(stderr(f"rssd: this execution could not be recorded: {error}"))
            finally:
                held.close()
            outcome.outputs[:0] = notes
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

    # -- what CellExecution uses of the session -----------------------------------------

    def rssd_table(self, name: str) -> str:
        """An RSSD table's name as the cell's connection must write it: `USE other` in a
        cell must not send the RSSD's own writes elsewhere."""
        return self.engine.rssd_table(name)

    def check_stop(self) -> None:
        """Raise if the stop button was pressed while no query ran (between statements,
        while hashing a file for lineage)."""
        if self._stop:
            waiting = self.engine.waiting_for() if self.engine is not None else None
            if waiting:
                raise Failure("Interrupted", f"The cell was stopped while {waiting}; it did "
                              "not run.", "the cell", interrupted=True)  # fmt: skip
            raise Failure("Interrupted", "The cell was interrupted; nothing it did after "
                          "the last completed statement was kept.", "the cell",
                          interrupted=True)  # fmt: skip


_RSSD_WORDS = re.compile(r"(?i)orchestration_|\bdevice\b|rssd_schema_version")


def _reads_rssd(code: str) -> bool:
    return bool(_RSSD_WORDS.search(code))


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
