"""The Jupyter protocol for the rssd kernel, and nothing else: the work is in runner.py."""

import asyncio
import concurrent.futures
import html
import importlib.util
import os
import signal
import threading
import time
import uuid

from ipykernel._version import kernel_protocol_version
from ipykernel.kernelbase import Kernel

from rssd_kernel import __version__
from rssd_kernel.settings import Settings


def _duckdb_version() -> str:
    """DuckDB's version without importing DuckDB or importlib.metadata (together they add
    about 150 ms to start-up): the name of its .dist-info folder."""
    spec = importlib.util.find_spec("duckdb")
    if spec and spec.origin:
        site = os.path.dirname(os.path.dirname(spec.origin))
        for name in os.listdir(site):
            if name.startswith("duckdb-") and name.endswith(".dist-info"):
                return name[len("duckdb-") : -len(".dist-info")]
    return "unknown"


DUCKDB_VERSION = _duckdb_version()
PROGRESS_AFTER = 1.0  # seconds a cell runs before its progress is shown
PROGRESS_EVERY = 0.25  # seconds between two updates of the progress display


def progress_bundle(percent, elapsed: float, done: bool = False, ended=None) -> dict:
    """The progress display: a bar while DuckDB reports progress, the timing once done
    (`ended` says "stopped" or "failed" when the cell did not complete)."""
    if done:
        text = f"✗ {ended} after {elapsed:.1f} s" if ended else f"✓ ran in {elapsed:.1f} s"
        return {
            "text/plain": text,
            "text/html": f"<span style='color:#666'>{html.escape(text)}</span>",
        }
    if isinstance(percent, str):  # waiting for the database file (lease.py)
        text = f"{percent} · {elapsed:.1f} s; the stop button stops waiting"
        return {"text/plain": text, "text/html": f"<span>{html.escape(text)}</span>"}
    if percent is None or percent < 0:
        text = f"running… {elapsed:.1f} s"
        return {"text/plain": text, "text/html": f"<span>{html.escape(text)}</span>"}
    filled = int(percent // 5)
    text = f"[{'#' * filled}{'.' * (20 - filled)}] {percent:.0f}% · {elapsed:.1f} s"
    return {
        "text/plain": text,
        "text/html": (
            f"<progress value='{percent:.0f}' max='100'></progress> "
            f"{percent:.0f}% · {elapsed:.1f} s"
        ),
    }


def _final_bundle(outcome, elapsed: float) -> dict:
    """The progress display's last state; `outcome` None: the runner itself failed."""
    if outcome is None or outcome.error:
        ended = "stopped" if outcome is not None and outcome.interrupted else "failed"
    else:
        ended = None
    return progress_bundle(None, elapsed, done=True, ended=ended)


class CellProgress:
    """The progress display of a cell that runs on the main thread, sent from a thread of
    its own (the event loop cannot run meanwhile). The thread looks every PROGRESS_EVERY
    seconds; it shows nothing for a cell shorter than PROGRESS_AFTER, and nothing once
    `end` returned (sending and `end` share a lock), so the final update comes last."""

    def __init__(self, kernel):
        self._kernel = kernel
        self._lock = threading.Lock()
        self._started: float | None = None  # the running cell's start (monotonic)
        self._silent = False
        self._parent: dict = {}
        self._display_id: str | None = None
        self._thread: threading.Thread | None = None

    def begin(self, silent: bool, parent: dict) -> None:
        with self._lock:
            self._started, self._silent, self._parent = time.monotonic(), silent, parent
            self._display_id = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="rssd-progress",
                                                daemon=True)  # fmt: skip
                self._thread.start()

    def end(self) -> tuple[float, str | None]:
        """(when the cell started, its display id if one was shown)."""
        with self._lock:
            started, self._started = self._started, None
            return started, self._display_id

    def _loop(self) -> None:
        while True:
            time.sleep(PROGRESS_EVERY)  # a poll: a cell's start costs no wake-up
            with self._lock:
                if self._started is None or self._silent:
                    continue
                elapsed = time.monotonic() - self._started
                if elapsed < PROGRESS_AFTER:
                    continue
                try:
                    bundle = progress_bundle(self._kernel._runner.progress(), elapsed)
                    self._display_id = self._kernel._show(bundle, self._display_id,
                                                          self._parent)  # fmt: skip
                except Exception:  # a display is never worth a cell
                    self._kernel.log.debug("rssd: progress display failed", exc_info=True)


class RssdKernel(Kernel):
    implementation = "rssd"
    implementation_version = __version__
    banner = (
        f"rssd-kernel {__version__} on DuckDB {DUCKDB_VERSION} (or PostgreSQL): SQL cells, "
        "stateful cells run once, every execution recorded in the RSSD. Type %help."
    )
    language_info = {
        "name": "sql",
        "version": DUCKDB_VERSION,
        "mimetype": "application/sql",
        "file_extension": ".sql",
        "codemirror_mode": "sql",
        "pygments_lexer": "sql",
    }
    help_links = [{"text": "rssd-kernel README", "url": "https://pypi.org/project/rssd-kernel/"}]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.settings = Settings(parent=self)
        # Importing DuckDB and opening the database take a few hundred milliseconds. They
        # start once the kernel has answered its first kernel_info (so they do not slow the
        # start-up a client waits for) and run in the background; the first cell waits only
        # for what is left.
        self._runner = None
        self._commands = None
        self._ready = threading.Event()
        # A cell of the main shell runs on the main thread (see do_execute); a subshell's
        # runs in this worker, one at a time, as the SIGINT handler must stay free to act.
        self._worker = concurrent.futures.ThreadPoolExecutor(1, "rssd-cell")
        self._progress = CellProgress(self)
        self._opening = threading.Lock()
        self._open_started = False

    def _start_opening(self):
        with self._opening:
            if not self._open_started:
                self._open_started = True
                threading.Thread(target=self._open, name="rssd-open", daemon=True).start()

    async def kernel_info_request(self, stream, ident, parent):
        await super().kernel_info_request(stream, ident, parent)
        # Let the reply leave the kernel's sending threads before the import holds the GIL;
        # a cell that comes sooner starts the opening itself.
        asyncio.get_running_loop().call_later(0.05, self._start_opening)

    async def _wait_ready(self):
        self._start_opening()
        if not self._ready.is_set():
            await asyncio.to_thread(self._ready.wait)

    def _open(self):
        try:
            from rssd_kernel import commands
            from rssd_kernel.runner import Runner

            self._commands = commands
            self._runner = Runner(self.settings)
        except BaseException:  # reported on the first cell, never lost
            self.log.exception("rssd: the runner could not start")
        finally:
            self._ready.set()

    @property
    def kernel_info(self):
        # Not the base class's: it imports ipykernel's debugger (and debugpy, ~70 ms on the
        # first reply) only to advertise a Python debugger this kernel does not have.
        features = ["kernel subshells"] if self._supports_kernel_subshells else []
        return {
            "protocol_version": kernel_protocol_version,
            "implementation": self.implementation,
            "implementation_version": self.implementation_version,
            "language_info": self.language_info,
            "banner": self.banner,
            "help_links": self.help_links,
            "supported_features": features,
        }

    # Interrupts: ipykernel makes SIGINT raise KeyboardInterrupt while a handler runs, which
    # can land anywhere (even between sending outputs and the reply) and lose the reply.
    # Instead, SIGINT only asks the engine to cancel (and the runner to stop before its next
    # step); the query then fails with the engine's own interrupt error and the cell replies
    # normally. The handler runs on the main thread, in the middle of whatever the cell does
    # there, so it never raises.
    def pre_handler_hook(self):
        self.saved_sigint_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def post_handler_hook(self):
        signal.signal(signal.SIGINT, self.saved_sigint_handler)

    def _on_sigint(self, signum, frame):
        try:
            if self._runner is not None:
                self._runner.interrupt()
        except Exception:  # a connection closed meanwhile (%open): nothing left to stop
            self.log.debug("rssd: interrupt failed", exc_info=True)

    def _publish_execute_input(self, code, parent, execution_count):
        # A request may carry a lone surrogate (valid escaped JSON, invalid UTF-8). ipykernel
        # re-broadcasts the code before do_execute and would fail to encode it, so that no
        # reply is ever sent; broadcast it escaped, and let the runner answer with an error.
        code = code.encode("utf-8", "backslashreplace").decode("utf-8")
        super()._publish_execute_input(code, parent, execution_count)

    async def do_execute(self, code, silent, store_history=True, user_expressions=None,
                         allow_stdin=False, *, cell_meta=None, cell_id=None):  # fmt: skip
        try:
            await self._wait_ready()
            if self._runner is None:
                raise RuntimeError("the rssd runner did not start; see the kernel's log")
            args = (code, cell_id, self.execution_count, self._commands)
            if threading.current_thread() is threading.main_thread():
                outcome = self._run_here(args, silent)
            else:  # a subshell's thread (see __init__)
                work = asyncio.wrap_future(self._worker.submit(self._runner.run, *args))
                outcome = await self._with_progress(work, silent)
        except BaseException as error:  # a bug of ours: still answer, never hang the client
            self.log.exception("rssd: unexpected error")
            return self._reply_error(
                "Internal Error",
                f"rssd-kernel failed unexpectedly: {error!r}. Please report it.",
                [],
            )
        if not silent:
            for msg_type, content in outcome.outputs:
                if msg_type == "stream":
                    self.send_response(self.iopub_socket, "stream", content)
                else:
                    message = {"data": content, "metadata": {"rssd": outcome.metadata}}
                    if msg_type == "execute_result":
                        message["execution_count"] = self.execution_count
                    self.send_response(self.iopub_socket, msg_type, message)
        if outcome.error:
            ename, evalue, traceback = outcome.error
            return self._reply_error(ename, evalue, traceback, silent)
        return {"status": "ok", "execution_count": self.execution_count,
                "payload": [], "user_expressions": {}}  # fmt: skip

    def _run_here(self, args, silent):
        """Run the cell on the main thread, which a thread hop would cost about a tenth of
        a millisecond per cell. The stop button still works: SIGINT's handler runs on this
        thread whenever DuckDB (and psycopg, every 0.1 s) looks for signals while a query
        runs, and between Python statements otherwise. The event loop waits meanwhile, so
        the progress display comes from CellProgress's thread."""
        self._progress.begin(silent, self.get_parent("shell"))
        outcome = None
        try:
            outcome = self._runner.run(*args)
        finally:
            started, display_id = self._progress.end()
            if display_id is not None:  # never a bar left running
                self._show(_final_bundle(outcome, time.monotonic() - started), display_id)
        return outcome

    async def _with_progress(self, work, silent):
        """Wait for the cell; past a second, show DuckDB's query progress as a bar that is
        updated in place and ends as the cell's timing (so no stale bar stays behind)."""
        started = time.monotonic()
        display_id = None
        while True:
            done, _ = await asyncio.wait({work}, timeout=PROGRESS_EVERY)
            if done:
                break
            elapsed = time.monotonic() - started
            if silent or elapsed < PROGRESS_AFTER:
                continue
            bundle = progress_bundle(self._runner.progress(), elapsed)
            display_id = self._show(bundle, display_id)
        outcome = work.result()
        if display_id is not None:
            self._show(_final_bundle(outcome, time.monotonic() - started), display_id)
        return outcome

    def _show(self, bundle, display_id, parent=None):
        """Show `bundle` as a new display, or in place of display `display_id`; `parent` is
        the request it belongs to (by default the one being handled)."""
        if display_id is None:
            display_id = uuid.uuid4().hex
            kind = "display_data"
        else:
            kind = "update_display_data"
        content = {"data": bundle, "metadata": {}, "transient": {"display_id": display_id}}
        if parent is None:
            self.send_response(self.iopub_socket, kind, content)
        else:
            self.session.send(self.iopub_socket, kind, content, parent)
        return display_id

    async def do_complete(self, code, cursor_pos):
        matches, start = [], cursor_pos
        await self._wait_ready()
        if self._runner is not None:
            try:
                matches, start = await asyncio.to_thread(self._runner.complete, code, cursor_pos)
            except Exception:  # a half-typed cell must never break the editor
                self.log.debug("rssd: completion failed", exc_info=True)
        return {"status": "ok", "matches": matches, "cursor_start": start,
                "cursor_end": cursor_pos, "metadata": {}}  # fmt: skip

    async def do_inspect(self, code, cursor_pos, detail_level=0, omit_sections=()):
        text = None
        await self._wait_ready()
        if self._runner is not None:
            try:
                text = await asyncio.to_thread(self._runner.inspect, code, cursor_pos)
            except Exception:
                self.log.debug("rssd: inspection failed", exc_info=True)
        data = {"text/plain": text} if text else {}
        return {"status": "ok", "found": bool(text), "data": data, "metadata": {}}

    async def do_is_complete(self, code):
        engine = self._runner.engine if self._runner is not None else None
        if engine is not None:
            return engine.is_complete(code)  # the engine's own parser decides
        from rssd_kernel.complete import is_complete

        return is_complete(code)

    def _reply_error(self, ename, evalue, traceback, silent=False):
        content = {
            "ename": ename,
            "evalue": evalue,
            "traceback": traceback or [f"{ename}: {evalue}"],
        }
        if not silent:
            self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}

    async def do_shutdown(self, restart):
        await self._wait_ready()
        if self._runner is not None:
            try:
                await asyncio.to_thread(self._runner.close)
            except Exception:  # the records stay in the journal; still let the kernel go
                self.log.exception("rssd: the session could not be closed cleanly")
        return {"status": "ok", "restart": restart}
