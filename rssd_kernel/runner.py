"""The cell runner: from a cell's source to DuckDB, RSSD records and Jupyter outputs.

request -> plan (directives, statements, kinds, key: plan.py) -> replay, or named results
bound -> statements under the read-only net or in a stateful transaction (transaction.py)
-> state transition -> exec records -> outputs.

Everything here is plain Python with no Jupyter in it; `kernel.py` only speaks the
protocol. One lock serialises all work on the connection, so requests arriving on
several shell channels (ipykernel subshells) run one after another. `run` never raises:
whatever fails, the cell gets an error reply and an exec row.
"""

import contextlib
import json
import logging
import os
import platform
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb

from rssd_kernel import __version__, charts, classify, complete, redact, render
from rssd_kernel.database import check_version, default_path, open_database, prepare
from rssd_kernel.errors import (
    DatabaseLocked,
    DatabaseUnavailable,
    InvalidInput,
    RssdError,
    StatefulCellError,
)
from rssd_kernel.journal import MAX_PENDING, recover
from rssd_kernel.keys import Keys
from rssd_kernel.lease import Lease, session_instance
from rssd_kernel.named import NamedResults
from rssd_kernel.plan import make as make_plan
from rssd_kernel.recorder import (
    STATUS_ERROR,
    STATUS_INTERRUPTED,
    Exec,
    Issue,
    Recorder,
)
from rssd_kernel.results import Result, quote_ident
from rssd_kernel.settings import Settings
from rssd_kernel.state import StateStore, result_of
from rssd_kernel.statements import Failure, run_statement, split_duckdb_error
from rssd_kernel.transaction import CellExecution

log = logging.getLogger("rssd_kernel")
START_WAIT = 2.0  # seconds the kernel waits for a held file at start; then the first cell
COMPLETE_WAIT = 0.5  # a completion does not wait long for a file another process holds
CLOSE_WAIT = 3.0  # at shutdown, for the session's last rows (else the journal keeps them)


@dataclass
class Outcome:
    """What the kernel sends for a cell: outputs in order, then the reply status."""

    outputs: list[tuple[str, dict]] = field(default_factory=list)  # (msg_type, bundle)
    error: tuple[str, str, list[str]] | None = None  # ename, evalue, traceback lines
    interrupted: bool = False
    metadata: dict = field(default_factory=dict)  # sent with the result, under "rssd"

    @property
    def status(self) -> str:
        return "error" if self.error else "ok"


class Runner:
    """Owns the DuckDB connection, the RSSD session and the running of cells."""

    def __init__(self, settings: Settings | None = None, notebook: str | None = None):
        self.settings = settings or Settings()
        self.notebook = notebook or os.environ.get("JPY_SESSION_NAME") or None
        self.parameters: dict[str, str] = {}
        self.path = default_path()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.unavailable: DatabaseUnavailable | None = None
        self.recorder: Recorder | None = None
        self.state: StateStore | None = None
        self.named: NamedResults | None = None
        self._lock = threading.RLock()
        self._catalog = None  # read for completion after each cell
        self._functions = None
        self._named_columns: dict[str, list] = {}
        self._running = False  # a cell is running: the stop button interrupts DuckDB
        self._stop = False  # the stop button was pressed during this cell
        self.catalog = "memory"  # the RSSD's database as DuckDB names it (rssd for rssd.duckdb)
        self.notes: list[str] = []  # warnings for the next cell's output (journal recovery)
        self.keys = Keys()
        self.in_user_transaction = False  # a BEGIN of the user's is open on the connection
        self.secrets: set[str] = set()  # credential values seen this session: never recorded
        self._reset_diagnostics()
        self._connect()

    # -- the database and the session -------------------------------------------------

    def _reset_diagnostics(self) -> None:
        self.counts = {"cells": 0, "statements": 0, "errors": 0, "interrupts": 0, "replayed": 0}
        self.started = time.time()

    def _connect(self) -> None:
        """Set up the session (see lease.py), and take the file if it is free now: a file
        another process holds is waited for by the first cell, visibly and interruptibly."""
        self.keys = Keys()
        self.in_user_transaction = False
        self.state = self.named = None
        self.unavailable = None
        if self.path == ":memory:":
            self.lease = None
            try:
                con = open_database(self.path, self.notes)
            except DatabaseUnavailable as error:
                self.unavailable, self.con, self.recorder = error, None, None
                return
            self._settings_on(con)
            self.con, self.catalog, self._meta_con = con, "memory", con.cursor()
            self.recorder = Recorder(con.cursor())
            self._start_session(self.recorder.con)
            return
        instance = session_instance()
        lease = Lease(self.path, instance, self.settings)
        lease.notebook = self.notebook
        lease.on_attach = self._on_attach
        lease.pinned = self._pinned
        self.lease, self.con, self._meta_con = lease, instance.cursor(), instance.cursor()
        self._settings_on(self.con)
        self.recorder = Recorder(None, self._cursor, lease.hold, self.path)
        self.recorder.announce(self.session_args(), self.notebook)
        try:
            with lease.hold(wait_s=START_WAIT):
                pass
        except DatabaseLocked:
            pass  # the first cell waits for it, visibly
        except DatabaseUnavailable as error:
            self._drop_lease(error)
        except duckdb.Error:  # a disk that is full right now, say: the first cell tries again
            log.exception("rssd: the database could not be taken at start")

    def _drop_lease(self, error: DatabaseUnavailable) -> None:
        """The file cannot be used at all (not DuckDB, read-only, newer schema...)."""
        self.unavailable = error
        lease, self.lease = self.lease, None
        recorder, self.recorder = self.recorder, None
        if recorder is not None and recorder.writer is not None:
            recorder.writer.close(timeout=0)  # nothing can be written: the journal keeps it
        if lease is not None:
            lease.close()
        self.con = None

    @staticmethod
    def _settings_on(con) -> None:
        # DuckDB would draw its own progress bar on the kernel's stdout (a terminal's, not
        # the notebook's); query_progress() keeps working without it.
        con.execute("SET enable_progress_bar_print = false").fetchall()
        # DuckDB's Python client would let `FROM name` read a Python variable of the kernel's
        # own code (a "replacement scan"); in a SQL kernel a missing table is a missing table.
        con.execute("SET python_enable_replacements = false").fetchall()

    def _cursor(self):
        """A new connection of this session whose default database is the file."""
        cursor = self.lease.instance.cursor()
        cursor.execute(f"USE {quote_ident(self.catalog)}").fetchall()
        return cursor

    def _on_attach(self) -> None:
        """The file was just taken (lease.py). The first time: check its schema, recover
        dead processes' journals, start the RSSD session. Later: recover dead processes'
        journals (a glob and a lock try each), and read the state and catalog again only
        when another process changed the file since this one let it go."""
        lease = self.lease
        if self.state is None:
            self.catalog = lease.alias
            self.con.execute(f"USE {quote_ident(self.catalog)}").fetchall()
            self._lease_con = self._cursor()
            prepare(self._lease_con, self.path, self.notes, self.recorder.writer.path)
            self._start_session(self._cursor())
            self._seen_counter = self._read_counter()
            return
        self.notes += recover(self._lease_con, self.path, self.recorder.writer.path).notes
        counter = self._read_counter()
        ours = [c for c in (self._seen_counter, self.state.last_counter) if c is not None]
        if ours and counter == max(ours) and lease.unchanged_since_release:
            return  # nobody else changed the file: nothing to read again
        check_version(self._lease_con, self.path)
        self.state.reload()  # every key's latest row (the clock orders rows, not processes)
        self._catalog = None
        self._named_columns.clear()
        self._seen_counter = counter

    def _start_session(self, recorder_con) -> None:
        self.recorder.start_session(self.session_args(), self.notebook, self.path, recorder_con)
        self.state = StateStore(recorder_con, self.rssd_table("orchestration_session_state"),
                                self.rssd_table("rssd_change_counter"))  # fmt: skip
        self.named = NamedResults(self.con, self.state, self.catalog)

    def _read_counter(self):
        rows = self._lease_con.execute("SELECT max(counter) FROM rssd_change_counter").fetchall()
        return rows[0][0]

    def _pinned(self) -> str | None:
        """Why the file must not be let go now, or None."""
        if self.in_user_transaction:
            return "a transaction opened in a cell is still open"
        writer = self.recorder.writer if self.recorder else None
        if writer is not None and writer.has_work():
            writer.hurry()
            return "execution records are being written"
        return None

    def hold(self, check_stop=None, wait_s: float | None = None):
        """Hold the database file for a block (taking it again if it was let go)."""
        if self.lease is None:
            return contextlib.nullcontext()
        return self.lease.hold(check_stop, wait_s)

    def session_args(self) -> dict:
        return {
            "database": os.path.abspath(self.path) if self.path != ":memory:" else ":memory:",
            "duckdb_version": duckdb.__version__,
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
        """End the session (orch_finished_at, diagnostics) and let the file go."""
        with self._lock:
            if self.recorder is None:
                return
            try:
                with self.hold(wait_s=CLOSE_WAIT):
                    if self.state is not None:
                        self.recorder.finish_session(*self.diagnostics())
                    else:  # the file was never taken: the journal keeps what ran
                        self.recorder.writer.close(timeout=0)
            except (duckdb.Error, RssdError):
                pass  # the journal keeps the records; the session row keeps its start
            finally:
                writer = self.recorder.writer
                if writer is not None and not writer.closed:
                    writer.close(timeout=0)  # unlocks its journal: recovered by the next
                lease, self.lease = self.lease, None
                if lease is not None:
                    lease.close()
                cons = [self.recorder.con, self.con, getattr(self, "_lease_con", None)]
                cons += [getattr(self, "_meta_con", None), lease.instance if lease else None]
                for con in cons:
                    if con is not None:
                        with contextlib.suppress(duckdb.Error):
                            con.close()
                self.con = self.recorder = self.state = self._lease_con = None

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
        with self._lock:
            if self.con is None or self.state is None:
                return [], cursor
            cached = self._catalog is not None and self._functions is not None
            if cached and set(self.state.result_names()) <= set(self._named_columns):
                return self._complete(code, cursor)  # all in memory: the file is not needed
            try:
                with self.hold(wait_s=COMPLETE_WAIT):
                    return self._complete(code, cursor)
            except (duckdb.Error, RssdError):
                return [], cursor  # the file is busy elsewhere: no completion this time

    def _complete(self, code: str, cursor: int) -> tuple[list[str], int]:
        if self._catalog is None:
            self._catalog = complete.load_catalog(self.con)
        if self._functions is None:
            self._functions = complete.load_functions(self.con)
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
        name = complete.word_at(code, cursor)
        if not name:
            return None
        with self._lock:
            if self.con is None or self.state is None:
                return None
            try:
                with self.hold(wait_s=COMPLETE_WAIT):
                    self.recorder.writer.flush()  # "created by" reads the exec records
                    return complete.inspect(self.con, self.state, name)
            except (duckdb.Error, RssdError):
                return None

    def progress(self) -> float | str | None:
        """DuckDB's progress of the running query in percent (None or -1 when unknown), or
        what the cell waits for (another process holds the file)."""
        waiting = self.lease.waiting_for if self.lease is not None else None
        if waiting:
            return waiting
        if self._running and self.con is not None:
            try:
                return self.con.query_progress()
            except duckdb.Error:
                return None
        return None

    def interrupt(self) -> None:
        """Stop the running cell: cancel its DuckDB query, and have it stop before its next
        step (statement, lineage hash). Safe to call from a signal handler."""
        if self._running and self.con is not None:
            self._stop = True
            self.con.interrupt()

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
                    self._connect()  # the file may have become usable since
                except Exception as error:  # noqa: BLE001 - answered, never raised
                    log.exception("rssd: could not open the database")
                    self.unavailable = self.unavailable or DatabaseUnavailable(str(error))
                if self.con is None and not offline:
                    return _error_outcome(self.unavailable)
            notes = self._writer_notes()
            writer = self.recorder.writer if self.recorder is not None else None
            if writer is not None and writer.overloaded():
                return _error_outcome(RssdError(
                    "rssd cannot record executions right now: neither the journal beside the "
                    "database nor the database can be written (is the disk full?), and "
                    f"{MAX_PENDING:,} executions already wait in memory. This cell did not run.",
                    "Free some disk space, then run the cell again; the waiting records are "
                    "written first.",
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
            if not offline and self.lease is not None:
                self._yield_to_waiters()
            # The file stays held until the cell is recorded: its secrets are read from the
            # session while the file (the connection's default database) is there.
            held = contextlib.ExitStack()
            try:
                if invalid:
                    raise invalid
                if offline:  # %open, %config, %help: no file needed (%open changes it)
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
                outcome = _error_outcome(error)
                cell.status = STATUS_ERROR
                cell.error_text = str(error)
                cell.issue = Issue(error.ename, error.message, error.remediation)
            except Failure as failure:
                outcome = Outcome(error=(failure.ename, failure.evalue, _traceback(failure)))
                outcome.interrupted = failure.interrupted
                cell.status = STATUS_INTERRUPTED if failure.interrupted else STATUS_ERROR
                cell.error_text = f"{failure.ename}: {failure.evalue}"
                cell.issue = Issue(
                    failure.ename, failure.evalue, None, failure.line, failure.column
                )
            except duckdb.Error as error:  # outside a statement: a named result, the RSSD
                ename, evalue = split_duckdb_error(error)
                outcome = Outcome(error=(ename, evalue, [f"{ename}: {evalue}"]))
                outcome.interrupted = isinstance(error, duckdb.InterruptException)
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
                if self.con is not None:  # %open to a bad file leaves nothing to record in
                    self._record(cell, outcome, secrets)
            except Exception as error:  # the journal keeps what it could take
                log.exception("rssd: could not record a cell")
                notes.append(_stderr(f"rssd: this execution could not be recorded: {error}"))
            finally:
                held.close()
            outcome.outputs[:0] = notes
            self._catalog = None  # the cell may have changed it
            self._named_columns.clear()
            return outcome

    def _yield_to_waiters(self) -> None:
        """Between cells, let another process that waits for the file have it first (else
        cells that come back to back would keep it forever): write what is pending, then
        let go; the hold that follows gives the waiter a moment to take it."""
        lease = self.lease
        if lease.attached and lease.someone_waits and not self.in_user_transaction:
            self.recorder.writer.flush(timeout=2.0)
            lease.yield_to_waiters()

    def _remember_secret_variables(self) -> None:
        """Values of credential-named variables (SET VARIABLE openai_api_key = ...) are
        masked wherever they show up later in this session: in a result, an error, a name."""
        try:
            rows = self.con.execute(
                "SELECT name, CAST(value AS VARCHAR) FROM duckdb_variables()"
            ).fetchall()
        except duckdb.Error:
            return  # an aborted transaction of the user's: the cell's own secrets still apply
        self.secrets |= {
            value for name, value in rows if redact.is_secret_name(name) and len(value or "") >= 4
        }

    def _writer_notes(self) -> list:
        """stderr lines for what the user should know from outside this cell: records that
        could not be written yet (disk full, say), a journal set aside when the file opened."""
        notes = [_stderr(note) for note in self.notes]
        self.notes.clear()
        warning = self.recorder.writer.take_warning() if self.recorder else None
        if warning:
            notes.append(_stderr(f"rssd: {warning}"))
        error = self.recorder.writer.take_error() if self.recorder else None
        if error is not None and not isinstance(error, DatabaseLocked):
            notes.append(_stderr(
                f"rssd: earlier executions could not be written to the RSSD yet ({error}); "
                "they are kept in the journal beside the database and written when possible."
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

    def _run_sql(self, code: str, cell: Exec, cell_id: str | None) -> Outcome:
        plan = make_plan(code, cell_id, None, self.named.temp_names, self.catalog)
        created = {
            c.target.split(".")[-1]
            for c in plan.classified
            if c.statement_type == "CREATE" and c.kind == classify.STATEFUL and c.target
        }
        if self.named.drop_shadowing(created):  # a named result's TEMP table of that name
            plan = make_plan(code, cell_id, None, self.named.temp_names, self.catalog)
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
        applied = None if plan.always else self.state.applied(plan.key)
        if applied is not None:
            if applied.code_hash != plan.digest:
                raise StatefulCellError(
                    f"The cell '{plan.key}' was applied on {_when(applied.transitioned_at)} in "
                    f"session {applied.session_id} with different code; it was neither run "
                    "nor skipped.",
                    f"To apply the new code, run `%forget {plan.key}` and run the cell again "
                    "(undo the old effects first if they are in the way). To keep the old "
                    "state, restore the cell's code.",
                )
            outcome = self._replay(cell, applied, plan.key)
            self.keys.ran(plan.digest, cell_id)
            if plan.directives.chart and outcome.metadata.get("result") is not None:
                spec = charts.spec(plan.directives.chart, outcome.metadata.pop("result"))
                charts.attach(outcome.outputs[-1][1], spec)
            outcome.metadata.pop("result", None)
            return outcome
        if plan.name:
            self.named.check_name_free(plan.name)
        params = self.named.bind(code, plan.statements, cell, created)
        ran = CellExecution(self, plan, cell, params).run()
        self.keys.ran(plan.digest, cell_id)
        cell.elaboration["kind"] = ran.kind
        if ran.transition is not None:
            self.state.commit(ran.transition)
        outcome = self._outputs(cell, plan, ran)
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
        rows = self.con.execute(
            "SELECT name, CAST(value AS VARCHAR), CAST(type AS VARCHAR) FROM duckdb_variables()"
        ).fetchall()
        self.parameters = {
            name: {
                "value": redact.MASK if redact.is_secret_name(name) else redact.scrub(value),
                "type": kind,
            }  # fmt: skip
            for name, value, kind in rows
            if name.lower() in names
        }
        cell.input_text = json.dumps({"parameters": self.parameters})
        self.recorder.con.execute(
            f"UPDATE {self.rssd_table('orchestration_session')} SET args_json = ? "
            "WHERE orchestration_session_id = ?",
            [json.dumps(self.session_args(), default=str), self.session_id],
        ).fetchall()

    # -- what CellExecution uses of the session -----------------------------------------

    def rssd_table(self, name: str) -> str:
        """An RSSD table's name qualified with the RSSD's catalog: `USE other` in a cell
        must not send the RSSD's own writes elsewhere."""
        return f"{quote_ident(self.catalog)}.main.{name}"

    def run_statement(self, statement, params, limit: int, is_last: bool):
        return run_statement(self.con, statement, params, limit, is_last,
                             self.settings.max_columns)  # fmt: skip

    def probe_transaction(self) -> None:
        """Learn whether a transaction of the user's is open, after a statement that may have
        opened or ended one. Outside a transaction every query gets a new transaction id;
        inside one they share it (and inside an aborted one they fail)."""
        try:
            query = "SELECT txid_current()"
            first, second = (self.con.execute(query).fetchall() for _ in range(2))
            self.in_user_transaction = first == second
        except duckdb.Error:
            self.in_user_transaction = True

    def in_memory(self, database: str) -> bool:
        """Whether `database` is an in-memory database the session attached (not the
        RSSD's): writing it changes only the session."""
        if database == self.catalog:
            return False
        # Not the cell's connection: its transaction may be the failed one.
        rows = self._meta_con.execute(
            "SELECT path IS NULL FROM duckdb_databases() WHERE database_name = ?", [database]
        ).fetchall()
        return bool(rows and rows[0][0])

    def check_stop(self) -> None:
        """Raise if the stop button was pressed while no DuckDB query ran (between
        statements, while hashing a file for lineage)."""
        if self._stop:
            waiting = self.lease.waiting_for if self.lease is not None else None
            if waiting:
                raise Failure("Interrupted", f"The cell was stopped while {waiting}; it did "
                              "not run.", "the cell", interrupted=True)  # fmt: skip
            raise Failure("Interrupted", "The cell was interrupted; nothing it did after "
                          "the last completed statement was kept.", "the cell",
                          interrupted=True)  # fmt: skip

    # -- outputs ------------------------------------------------------------------------

    def _outputs(self, cell: Exec, plan, ran) -> Outcome:
        kind, key = ran.kind, plan.key
        caption = [_kind_line(kind, key, plan.name)] if kind == classify.STATEFUL else []
        warnings = [c for k, c in cell.log if k == "warning"]
        outcome = Outcome(
            metadata={"kind": kind, "key": key, "replayed": False, "session_id": self.session_id}
        )
        for warning in warnings:
            outcome.outputs.append(("stream", {"name": "stderr", "text": warning + "\n"}))
        bundle = self._bundle(ran.last, ran.last_rows, ran.messages, caption)
        outcome.outputs.append(("execute_result", bundle))
        cell.output_text = bundle["text/plain"]
        cell.output_nature = {
            "kind": kind, "statements": len(cell.children),
            **(cell.children[-1].output_nature or {}),
        }  # fmt: skip
        rows = f"; the last returned {self._caption(ran.last)}" if ran.last_rows else ""
        count = len(cell.children)
        cell.narrative = f"Ran {count} statement{'s' if count != 1 else ''} ({kind}){rows}."
        return outcome

    def _caption(self, result: Result) -> str:
        return render.row_caption(result, min(len(result.rows), self.settings.max_rows))

    def _bundle(self, result, rows, messages, caption) -> dict:
        if rows and result is not None:
            return render.table_bundle(result, self.settings.max_rows, caption)
        shown = (
            messages
            if len(messages) <= 20
            else [*messages[:20], f"… and {len(messages) - 20} more"]
        )
        return render.message_bundle(caption + shown)

    def _replay(self, cell: Exec, applied, key: str) -> Outcome:
        self.counts["replayed"] += 1
        data = self.state.result(key) if applied.has_result else None
        banner = (
            f"replayed: applied {_when(applied.transitioned_at)} in session "
            f"{applied.session_id}; run `%forget {key}` and this cell again to apply it again."
        )
        result = result_of(data) if data else None
        if result is None and data and data.get("columns"):
            result = Result.from_json(data)  # shown rows of a result too large to record
        bundle = self._bundle(result, bool(data and data.get("rows_are_result")),
                              (data or {}).get("messages", []), [banner])  # fmt: skip
        cell.elaboration.update(replayed=True, applied_state_id=applied.state_id)
        cell.output_text = bundle["text/plain"]
        cell.output_nature = {"kind": classify.STATEFUL, "replayed": True, "statements": 0}
        cell.narrative = f"Replayed: '{key}' was already applied; nothing ran."
        return Outcome(
            outputs=[("execute_result", bundle)],
            metadata={
                "result": result if data and data.get("rows_are_result") else None,
                "kind": classify.STATEFUL,
                "key": key,
                "replayed": True,
                "session_id": self.session_id,
            },
        )


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


def _stderr(text: str) -> tuple[str, dict]:
    return ("stream", {"name": "stderr", "text": text.rstrip("\n") + "\n"})


def _kind_line(kind: str, key: str, name: str | None) -> str:
    label = f"'{name}'" if name else f"key {key}"
    return f"✓ stateful cell {label} applied now; later runs replay it."


def _traceback(failure: Failure) -> list[str]:
    where = failure.where
    if failure.line is not None:
        where += f", at line {failure.line}" + (
            f", column {failure.column}" if failure.column else ""
        )
    return [f"{failure.ename} in {where}:", failure.evalue]


def _error_outcome(error: RssdError) -> Outcome:
    return Outcome(error=(error.ename, str(error), [f"{error.ename}: {error}"]))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


def _when(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)
