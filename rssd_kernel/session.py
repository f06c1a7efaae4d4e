"""The RSSD session on one database: its engine (engines/), its records (recorder.py, the
journal), its state (state.py) and named results; completion, inspection, progress and the
stop button. `Runner` (runner.py) adds the running of cells.

The engine calls back `announce`, `start_records`, `database_changed`, `pinned` and
`journal_path`: the database side (connections, the file's lease, reconnecting) is the
engine's; the records side is this module's.
"""

import contextlib
import logging
import os
import platform
import threading
import time

from rssd_kernel import __version__, redact
from rssd_kernel.database import default_path
from rssd_kernel.engines import is_postgres, load_postgres
from rssd_kernel.engines.duckdb import DuckDBEngine
from rssd_kernel.errors import DatabaseUnavailable, RssdError
from rssd_kernel.keys import Keys
from rssd_kernel.named import NamedResults
from rssd_kernel.recorder import Recorder
from rssd_kernel.settings import Settings
from rssd_kernel.state import StateStore
from rssd_kernel.statements import Failure

log = logging.getLogger("rssd_kernel")
COMPLETE_WAIT = 0.5  # a completion does not wait long for a file another process holds
CLOSE_WAIT = 3.0  # at shutdown, for the session's last rows (else the journal keeps them)


class Session:
    """The RSSD session on one database (module docstring). One lock serialises all work
    on the connection, so requests arriving on several shell channels (ipykernel
    subshells) run one after another."""

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
        self.phases: dict[str, float] = {}  # the running cell's time per phase (ms)
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
        except Exception as error:  # noqa: BLE001 - a database that refuses us mid-way
            log.exception("rssd: the session could not start")
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            text = redact.scrub(first, self.secrets)
            self._drop(DatabaseUnavailable(
                f"The session could not start on this database: {text}",
                "Check the database and your rights on it, then run the cell again, or "
                "open another database with `%open`.",
            ))  # fmt: skip

    def _drop(self, error: DatabaseUnavailable) -> None:
        """The database cannot be used at all (not DuckDB, read-only, newer schema...)."""
        self.unavailable = error
        recorder, self.recorder = self.recorder, None
        if recorder is not None and recorder.writer is not None:
            recorder.writer.close(timeout=0)  # nothing can be written: the journal keeps it
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()

    def phase(self, name: str) -> "_Phase":
        """Time a block of the running cell: `phases` (milliseconds per phase: plan, bind,
        net, run, state, outputs, record...) goes out with the cell's outputs, so that the
        bench shows where a cell's time goes."""
        return _Phase(self.phases, name)

    # Called by the engine:

    def announce(self, cursor, hold, journal_base: str) -> None:
        """Make the recorder before the database is first held, and journal the session's
        start, so that a cell that ends before (interrupted while waiting) is recorded."""
        self.recorder = Recorder(None, cursor, hold, journal_base)
        self.recorder.announce(self.session_args(), self.notebook)

    def journal_path(self) -> str | None:
        writer = self.recorder.writer if self.recorder else None
        return writer.path if writer is not None else None

    def deferral(self):
        """Where lineage digests a dead process left (journal.recover) go: this session's
        writer, which journals them and makes them in the background, not in the cell that
        took the file; None without a writer (they are then made at once, as is any its journal
        cannot take: see journal.replay)."""
        writer = self.recorder.writer if self.recorder else None
        if writer is None or writer.closed:
            return None
        return lambda batch: writer.submit(batch, journaled_only=True)

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
                    # "created by" reads the exec records (not lineage digests)
                    self.recorder.writer.flush(digests=False)
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

    def check_stop_waiting(self) -> None:
        """As check_stop, for a cell that waits for earlier cells' records before it runs."""
        if self._stop:
            raise Failure("Interrupted", "The cell was stopped while it waited for earlier "
                          "cells' records (and the digests of files they read) to be written; "
                          "it did not run. They are still written, in the background.",
                          "the cell", interrupted=True)  # fmt: skip


class _Phase:
    """`with session.phase(name):` adds the block's milliseconds to phases[name]. A class,
    not a generator-based context manager: a cell goes through about a dozen of them, and
    this one costs a third of one."""

    __slots__ = ("phases", "name", "started")

    def __init__(self, phases: dict, name: str):
        self.phases, self.name = phases, name

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc) -> None:
        elapsed = (time.perf_counter() - self.started) * 1000
        self.phases[self.name] = self.phases.get(self.name, 0.0) + elapsed
