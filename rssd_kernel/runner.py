"""The cell runner: from a cell's source to DuckDB, RSSD records and Jupyter outputs.

request -> directives -> statements (DuckDB's parser) -> classification -> key and state
-> named results bound -> DuckDB -> state transition -> exec records -> outputs.

Everything here is plain Python with no Jupyter in it; `kernel.py` only speaks the
protocol. One lock serialises all work on the connection, so requests arriving on
several shell channels (ipykernel subshells) run one after another.
"""

import hashlib
import json
import os
import platform
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb

from rssd_kernel import (
    __version__,
    charts,
    classify,
    complete,
    directives,
    lineage,
    redact,
    render,
)
from rssd_kernel.database import default_path, open_database
from rssd_kernel.errors import (
    DatabaseUnavailable,
    InvalidInput,
    RssdError,
    StatefulCellError,
)
from rssd_kernel.named import NamedResults
from rssd_kernel.recorder import (
    STATUS_ERROR,
    STATUS_INTERRUPTED,
    Exec,
    Issue,
    Recorder,
    insert_entry,
)
from rssd_kernel.results import Result
from rssd_kernel.settings import Settings
from rssd_kernel.state import EVALUATED, EXECUTED, StateStore, result_of
from rssd_kernel.statements import (
    Failure,
    confirmation,
    locate,
    locate_error,
    nature,
    run_statement,
    split_duckdb_error,
)


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


def code_hash(code: str) -> str:
    """sha256 of the cell's tokens without comments or layout: edits to whitespace,
    comments and directives leave it unchanged."""
    normalised = " ".join(classify.words(code))
    return hashlib.sha256(normalised.encode("utf-8", "surrogatepass")).hexdigest()


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
        self._running = False
        self._reset_diagnostics()
        self._connect()

    # -- the database and the session -------------------------------------------------

    def _reset_diagnostics(self) -> None:
        self.counts = {"cells": 0, "statements": 0, "errors": 0, "interrupts": 0, "replayed": 0}
        self.started = time.time()

    def _connect(self) -> None:
        try:
            con = open_database(self.path)
        except DatabaseUnavailable as error:
            self.unavailable = error
            return
        self.con, self.unavailable = con, None
        # DuckDB would draw its own progress bar on the kernel's stdout (a terminal's, not
        # the notebook's); query_progress() keeps working without it.
        con.execute("SET enable_progress_bar_print = false").fetchall()
        # DuckDB's Python client would let `FROM name` read a Python variable of the kernel's
        # own code (a "replacement scan"); in a SQL kernel a missing table is a missing table.
        con.execute("SET python_enable_replacements = false").fetchall()
        self.recorder = Recorder(con.cursor())
        self.recorder.start_session(self.session_args(), self.notebook, self.path)
        self.state = StateStore(self.recorder.con)
        self.named = NamedResults(con, self.state)

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
        """End the session (orch_finished_at, diagnostics) and release the file."""
        with self._lock:
            if self.con is None:
                return
            try:
                self.recorder.finish_session(*self.diagnostics())
            except duckdb.Error:
                pass  # the file is going away; the session row keeps its start
            try:
                self.recorder.con.close()
                self.con.close()
            finally:
                self.con = self.recorder = self.state = None

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
            if self.con is None:
                return [], cursor
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
            if self.con is None:
                return None
            self.recorder.writer.flush()  # "created by" reads the exec records
            return complete.inspect(self.con, self.state, name)

    def progress(self) -> float | None:
        """DuckDB's progress of the running query in percent; None or -1 when unknown."""
        if self._running and self.con is not None:
            try:
                return self.con.query_progress()
            except duckdb.Error:
                return None
        return None

    def interrupt(self) -> None:
        """Cancel the running query, if any; safe to call from a signal handler."""
        if self._running and self.con is not None:
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
            if self.con is None:
                self._connect()  # the file may have been released since
                if self.con is None and not (is_command and commands.works_offline(code)):
                    return _error_outcome(self.unavailable)
            notes = self._writer_notes()
            if self.con is not None and (is_command or _reads_rssd(code)):
                self.recorder.writer.flush()  # a cell that reads the RSSD sees every record
            started = time.time()
            cell = Exec(nature="SQL", code=code)
            cell.elaboration = {"cell_id": cell_id, "execution_count": execution_count,
                                "started_at": _iso(started)}  # fmt: skip
            if is_command:
                cell.nature = "kernel-command"
            try:
                if invalid:
                    raise invalid
                if is_command:
                    outcome = commands.run(self, code.strip(), cell)
                else:
                    outcome = self._run_sql(code, cell)
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
            finished = time.time()
            cell.elaboration.update(
                finished_at=_iso(finished), duration_ms=round((finished - started) * 1000, 3)
            )
            self.counts["cells"] += 1
            self.counts["errors"] += outcome.status == "error" and not outcome.interrupted
            self.counts["interrupts"] += outcome.interrupted
            secrets = redact.secrets_in(code) if redact.might_hold_secrets(code) else set()
            if outcome.error:  # error messages may echo a secret: show them masked too
                ename, evalue, traceback = outcome.error
                outcome.error = (ename, redact.scrub(evalue, secrets),
                                 [redact.scrub(line, secrets) for line in traceback])  # fmt: skip
            if self.con is not None:  # %open to an unavailable file leaves nothing to record in
                self._record(cell, outcome, secrets)
            outcome.outputs[:0] = notes
            self._catalog = None  # the cell may have changed it
            self._named_columns.clear()
            return outcome

    def _writer_notes(self) -> list:
        """A stderr line when earlier records could not be written yet (disk full, say)."""
        error = self.recorder.writer.take_error() if self.recorder else None
        if error is None:
            return []
        text = (
            f"rssd: earlier executions could not be written to the RSSD yet ({error}); they "
            "are kept in the journal beside the database and written when possible.\n"
        )
        return [("stream", {"name": "stderr", "text": text})]

    def _record(self, cell: Exec, outcome: Outcome, secrets: set[str]) -> None:
        if not cell.narrative:
            cell.narrative = (
                "Failed: " + outcome.error[1].splitlines()[0] if outcome.error else "Ran."
            )
        if outcome.error:
            cell.log.append(("error", f"{outcome.error[0]}: {outcome.error[1]}"))
        self.recorder.record(cell, secrets)

    def _run_sql(self, code: str, cell: Exec) -> Outcome:
        found = directives.parse(code)
        statements = self._parse(code)
        temp = (
            self.named.temp_names()
            if any(s.type in classify.DML_TYPES | {duckdb.StatementType.COPY} for s in statements)
            else set()
        )
        classified = [classify.classify(s, temp) for s in statements]
        kind = classify.cell_kind(classified)
        if found.once and statements:
            kind = classify.STATEFUL
        elif found.always:
            kind = "always"
        digest = code_hash(code)
        key = found.name or f"cell-{digest[:16]}"
        cell.identity = key
        cell.elaboration.update(kind=kind, key=key, name=found.name, code_hash=digest,
                                statement_types=[c.statement_type for c in classified])  # fmt: skip
        self.counts["statements"] += len(statements)
        if not statements:
            cell.narrative = "An empty cell: nothing to run."
            cell.output_nature = {"kind": kind, "statements": 0}
            return Outcome()
        if kind == classify.STATEFUL:
            if any(c.kind == classify.TRANSACTION for c in classified):
                raise StatefulCellError(
                    "This cell changes the database and also holds BEGIN, COMMIT or ROLLBACK. "
                    "rssd runs each stateful cell in a transaction of its own, so that its "
                    "effects and its state record commit together; it cannot nest yours.",
                    "Remove the transaction statements, or mark the cell '-- @always' to manage "
                    "transactions yourself (it then runs every time and records no state).",
                )
            applied = self.state.applied(key)
            if applied is not None:
                if applied.code_hash != digest:
                    raise StatefulCellError(
                        f"The cell '{key}' was applied on {_when(applied.transitioned_at)} in "
                        f"session {applied.session_id} with different code; it was neither run "
                        "nor skipped.",
                        f"To apply the new code, run `%forget {key}` and run the cell again "
                        "(undo the old effects first if they are in the way). To keep the old "
                        "state, restore the cell's code.",
                    )
                outcome = self._replay(cell, applied, key)
                if found.chart and outcome.metadata.get("result") is not None:
                    spec = charts.spec(found.chart, outcome.metadata.pop("result"))
                    charts.attach(outcome.outputs[-1][1], spec)
                outcome.metadata.pop("result", None)
                return outcome
        if found.name:
            self.named.check_name_free(found.name)
        params = self.named.bind(code, statements, cell)
        outcome = self._execute(
            cell, statements, classified, kind, key, found.name, params, digest, found.chart
        )
        if found.parameters:
            self._record_parameters(cell)
        return outcome

    def _record_parameters(self, cell: Exec) -> None:
        """Parameters (SET VARIABLE cells from rssd run -p or papermill) go into the exec's
        input_text and the session's args_json."""
        rows = self.con.execute(
            "SELECT name, CAST(value AS VARCHAR), CAST(type AS VARCHAR) FROM duckdb_variables()"
        ).fetchall()
        self.parameters = {
            name: {"value": redact.MASK if redact.is_secret_name(name) else value, "type": kind}
            for name, value, kind in rows
        }
        cell.input_text = json.dumps({"parameters": self.parameters})
        self.recorder.con.execute(
            "UPDATE orchestration_session SET args_json = ? WHERE orchestration_session_id = ?",
            [json.dumps(self.session_args(), default=str), self.session_id],
        ).fetchall()

    def _parse(self, code: str) -> list:
        try:
            return duckdb.extract_statements(code)
        except duckdb.Error as error:
            ename, evalue = split_duckdb_error(error)
            line, column = locate(str(error), 1)
            raise Failure(ename, evalue, "the cell (while parsing it)", line, column) from None

    # -- running statements -------------------------------------------------------------

    def _execute(
        self, cell, statements, classified, kind, key, name, params, digest, chart=None
    ) -> Outcome:
        stateful = kind == classify.STATEFUL
        if stateful:
            try:
                self.con.begin()
            except duckdb.TransactionException:
                raise StatefulCellError(
                    "A transaction opened by an earlier cell is still open, so this stateful "
                    "cell cannot get a transaction of its own.",
                    "Run COMMIT or ROLLBACK in a cell first.",
                ) from None
        messages: list[str] = []
        last: Result | None = None
        last_rows = False
        offset = 0
        stateful_open = stateful
        try:
            if stateful:
                lineage.start(self.con)
            for index, (statement, classes) in enumerate(zip(statements, classified), start=1):
                start = cell.code.find(statement.query, offset)
                offset = start + len(statement.query) if start >= 0 else offset
                line = cell.code.count("\n", 0, max(start, 0)) + 1
                child = Exec(nature="SQL-statement", code=statement.query.strip(), identity=key)
                cell.children.append(child)
                t0 = time.perf_counter()
                limit = self._fetch_limit(name, chart, index == len(statements))
                try:
                    result, is_rows = self._statement(
                        statement, params, limit, index == len(statements)
                    )
                except duckdb.Error as error:
                    ename, evalue = split_duckdb_error(error)
                    interrupted = (
                        isinstance(error, duckdb.InterruptException)
                        or evalue == "Query interrupted"
                    )
                    if stateful:
                        self._rollback()
                        stateful_open = False
                    loc_line, loc_col = locate_error(self.con, error, statement, line, interrupted)
                    where = f"statement {index} of {len(statements)}"
                    child.status = STATUS_INTERRUPTED if interrupted else STATUS_ERROR
                    child.error_text = f"{ename}: {evalue}"
                    child.narrative = f"Failed: {ename}."
                    raise Failure(
                        ename, evalue, where, loc_line or line, loc_col, interrupted
                    ) from None
                elapsed = (time.perf_counter() - t0) * 1000
                message = confirmation(statement, classes, result) if not is_rows else None
                if message:
                    messages.append(message)
                child.output_text = message or render.table_text(result, self.settings.max_rows)
                child.output_nature = nature(result, is_rows, classes, elapsed)
                child.narrative = message or f"{classes.verb} returned {self._caption(result)}."
                child.elaboration = {"kind": classes.kind, "statement_type": classes.statement_type,
                                     "target": classes.target, "line": line,
                                     "duration_ms": round(elapsed, 3)}  # fmt: skip
                last, last_rows = result, is_rows
                if stateful:
                    self._record_lineage(cell, classes, index)
            # Checked before anything commits: a bad chart fails the whole cell.
            spec = charts.spec(chart, last if last_rows else None) if chart else None
            transition = self._transition(
                cell, kind, key, name, digest, last, last_rows, messages, stateful
            )
            if stateful:
                self.con.commit()
                self.state.commit(transition)
        except BaseException:
            if stateful_open:
                self._rollback()
            raise
        finally:
            if stateful:
                lineage.stop(self.con)
        if transition is not None and not stateful:
            self.state.commit(transition)
        outcome = self._outputs(cell, kind, key, name, last, last_rows, messages, transition)
        if spec is not None:
            charts.attach(outcome.outputs[-1][1], spec)
        return outcome

    def _record_lineage(self, cell: Exec, classes, index: int) -> None:
        """One orchestration_session_entry per file the statement read, in the cell's
        transaction: ingest_src as DuckDB opened it, the table it went into, and the file's
        resolved path, size, modification time and hash."""
        writes = classes.statement_type in ("CREATE", "INSERT", "COPY", "MERGE_INTO")
        for path in lineage.files_read(self.con, self.path):
            elaboration = {"kind": "ingest", **lineage.describe(path), "exec_id": cell.exec_id,
                           "statement": index, "key": cell.identity}  # fmt: skip
            insert_entry(self.con, self.session_id, path, classes.target if writes else None,
                         elaboration)  # fmt: skip
            cell.log.append(("lineage", f"read {path}"))

    def _rollback(self) -> None:
        try:
            self.con.rollback()
        except duckdb.Error:
            pass  # DuckDB already ended the failed transaction

    def _fetch_limit(self, name, chart, is_last) -> int:
        limit = self.settings.max_rows
        if is_last and name:
            limit = max(limit, self.settings.result_max_rows)
        if is_last and chart:
            limit = max(limit, self.settings.chart_max_rows)
        return limit

    def _statement(self, statement, params, limit, is_last) -> tuple[Result, bool]:
        self._running = True
        try:
            return run_statement(self.con, statement, params, limit, is_last,
                                 self.settings.max_columns)  # fmt: skip
        finally:
            self._running = False

    def _transition(self, cell, kind, key, name, digest, last, last_rows, messages, stateful):
        """The state row for this run, written inside the stateful cell's transaction."""
        if not stateful and not name:
            return None
        recorded = None
        warning = None
        if last is not None:
            recorded = last.to_json()
            recorded["messages"] = messages
            recorded["rows_are_result"] = last_rows
            size = len(json.dumps(recorded))
            too_big = not last.complete or last.narrowed or size > self.settings.result_max_bytes
            if name and too_big:
                if not last.complete:
                    why = f"more than {self.settings.result_max_rows} rows"
                elif last.narrowed:
                    why = f"{last.total_columns:,} columns, over {self.settings.max_columns}"
                else:
                    why = f"{size:,} bytes, over {self.settings.result_max_bytes:,}"
                warning = (f"The result '{name}' was not recorded ({why}); later cells cannot "
                           f"use it. Materialise it as a table instead.")  # fmt: skip
                shown = Result(last.columns, last.types, last.rows[: self.settings.max_rows], False)
                recorded = {**shown.to_json(), "messages": messages, "rows_are_result": last_rows,
                            "not_recorded": why}  # fmt: skip
        if warning:
            cell.log.append(("warning", warning))
        elaboration = {
            "code_hash": digest, "name": name, "notebook": self.notebook, "exec_id": cell.exec_id,
            "statement_types": cell.elaboration.get("statement_types"),
        }  # fmt: skip
        reason = "stateful cell applied" if stateful else "named cell evaluated"
        con = self.con if stateful else self.recorder.con
        return self.state.record(con, key, EXECUTED if stateful else EVALUATED, reason, recorded,
                                 elaboration, self.session_id, self.recorder.entry_id)  # fmt: skip

    # -- outputs ------------------------------------------------------------------------

    def _outputs(self, cell, kind, key, name, last, last_rows, messages, transition) -> Outcome:
        caption = [_kind_line(kind, key, name)] if kind == classify.STATEFUL else []
        warnings = [c for k, c in cell.log if k == "warning"]
        outcome = Outcome(
            metadata={"kind": kind, "key": key, "replayed": False, "session_id": self.session_id}
        )
        for warning in warnings:
            outcome.outputs.append(("stream", {"name": "stderr", "text": warning + "\n"}))
        bundle = self._bundle(last, last_rows, messages, caption)
        outcome.outputs.append(("execute_result", bundle))
        cell.output_text = bundle["text/plain"]
        cell.output_nature = {
            "kind": kind, "statements": len(cell.children),
            **(cell.children[-1].output_nature or {}),
        }  # fmt: skip
        rows = f"; the last returned {self._caption(last)}" if last_rows else ""
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
