"""Running a notebook headless with the rssd kernel, through nbclient (`rssd run`)."""

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field

import nbclient
import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from rssd_kernel import KERNEL_NAME
from rssd_kernel.engines import is_postgres
from rssd_kernel.errors import RssdError
from rssd_kernel.parameters import cell_source
from rssd_kernel.provenance import without_password


class RunFailed(RssdError):
    ename = "Run Failed"


@dataclass
class Summary:
    ran: int = 0
    replayed: int = 0
    failed: int = 0
    seconds: float = 0.0
    session_id: str | None = None
    database: str | None = None
    failure: str | None = None
    cells: list[dict] = field(default_factory=list)


def inject_parameters(nb, parameters: dict) -> None:
    """Insert a cell of SET VARIABLE statements after the cell tagged 'parameters' (or first),
    replacing one injected by an earlier run, as papermill does."""
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    position = 0
    for index, cell in enumerate(nb.cells):
        if "parameters" in cell.metadata.get("tags", []):
            position = index + 1
            break
    cell = nbformat.v4.new_code_cell(cell_source(parameters))
    cell.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(position, cell)


def _rssd_meta(cell) -> dict:
    for output in cell.get("outputs", []):
        meta = output.get("metadata", {}).get("rssd")
        if meta:
            return meta
    return {}


def _error_of(cell) -> str:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output['ename']}: {output['evalue']}"
    return "unknown error"


def run_notebook(
    path: str,
    output: str | None = None,
    database: str | None = None,
    parameters: dict | None = None,
    timeout: float | None = None,
    progress=None,
) -> Summary:
    """Execute the notebook at `path`; write it back (or to `output`); return a Summary.

    Stops at the first failing cell and raises RunFailed, after writing the notebook so far.
    """
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise RunFailed(f"No notebook at {path}.") from None
    except Exception as error:
        raise RunFailed(f"{path} is not a readable notebook: {error}") from None
    # Checked first: the notebook is written only after its cells ran (and applied).
    target = os.path.dirname(os.path.abspath(output or path))
    if os.path.isdir(output or path):
        raise RunFailed(f"{output} is a folder: --output names the executed notebook's file. "
                        "Nothing ran.", "Give a file name, such as out.ipynb.")  # fmt: skip
    if not os.path.isdir(target) or not os.access(target, os.W_OK):
        raise RunFailed(
            f"Cannot write the executed notebook to {output or path}: the folder {target} "
            "does not exist or cannot be written. Nothing ran.",
            "Create the folder, or choose another --output.",
        )
    if parameters:
        inject_parameters(nb, parameters)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    summary = Summary()
    env = {**os.environ, "JPY_SESSION_NAME": os.path.abspath(path)}
    if database:
        env["RSSD_DATABASE"] = database
    folder = os.path.dirname(os.path.abspath(path))
    started = time.perf_counter()
    cell_started = [0.0]
    current = ["the first cell"]

    def on_start(cell, cell_index, **_):
        cell_started[0] = time.perf_counter()
        if cell not in code_cells:
            return
        number = code_cells.index(cell) + 1
        current[0] = f"cell {number} of {len(code_cells)}"
        if progress:
            progress({"cell": number, "of": len(code_cells), "status": "running", "seconds": 0.0})

    def on_executed(cell, cell_index, execute_reply, **_):
        if cell.cell_type != "code":
            return
        meta = _rssd_meta(cell)
        ok = execute_reply["content"]["status"] == "ok"
        what = "failed" if not ok else ("replayed" if meta.get("replayed") else "ran")
        summary.ran += what == "ran"
        summary.replayed += what == "replayed"
        summary.failed += what == "failed"
        number = code_cells.index(cell) + 1 if cell in code_cells else cell_index + 1
        record = {"cell": number, "of": len(code_cells), "status": what,
                  "seconds": round(time.perf_counter() - cell_started[0], 3)}  # fmt: skip
        summary.cells.append(record)
        if progress:
            progress(record)

    def on_waiting(text: str) -> None:
        if progress:
            progress({"cell": current[0], "status": "waiting", "text": text})

    client = _Client(
        nb, kernel_name=KERNEL_NAME, timeout=timeout, interrupt_on_timeout=True,
        resources={"metadata": {"path": folder}}, on_cell_start=on_start,
        on_cell_executed=on_executed,
    )  # fmt: skip
    client.on_waiting = on_waiting
    # The kernel's own log (ipykernel's warnings, and its tracebacks should it fail) goes to a
    # file, not into the run's output; it is shown only if the kernel dies.
    kernel_log = tempfile.TemporaryFile(mode="w+", prefix="rssd-kernel-", suffix=".log")
    try:
        client.execute(env=env, cwd=folder, stderr=kernel_log)
    except CellExecutionError as error:
        failed = next((c for c in summary.cells if c["status"] == "failed"), None)
        cell = code_cells[failed["cell"] - 1] if failed else None
        where = f"cell {failed['cell']} of {len(code_cells)}" if failed else "a cell"
        summary.failure = f"{where} failed: {_error_of(cell) if cell else error}"
        if timeout and failed and "Interrupted" in summary.failure:
            summary.failure += f" (it ran longer than --timeout {timeout:g} s)"
    except CellTimeoutError:
        summary.failure = f"a cell ran longer than --timeout {timeout} s and was interrupted"
        summary.failed += 1
    except DeadKernelError:
        summary.failure = f"the rssd kernel died while running {current[0]}" + _tail(kernel_log)
        summary.failed += 1
    except nbclient.exceptions.CellControlSignal as error:  # pragma: no cover - defensive
        summary.failure = str(error)
    finally:
        kernel_log.close()
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.database = env.get("RSSD_DATABASE") or os.path.join(folder, "rssd.duckdb")
    if is_postgres(summary.database):  # shown without the password, and so is what failed
        summary.database = without_password(summary.database)
        summary.failure = summary.failure and without_password(summary.failure)
    elif summary.database != ":memory:":
        summary.database = os.path.abspath(summary.database if os.path.isabs(summary.database)
                                           else os.path.join(folder, summary.database))  # fmt: skip
    summary.session_id = _session_of(nb)
    nbformat.write(nb, output or path)
    if summary.failure:
        raise RunFailed(summary.failure, _summary_line(summary))
    return summary


def _tail(log, lines: int = 20) -> str:
    """The last lines of the kernel's log, to show after it died."""
    log.flush()
    log.seek(0)
    text = "".join(log.readlines()[-lines:]).strip()
    return f"; the kernel's last words:\n{text}" if text else ""


def _session_of(nb) -> str | None:
    for cell in nb.cells:
        meta = _rssd_meta(cell)
        if meta.get("session_id"):
            return meta["session_id"]
    return None


def _summary_line(summary: Summary) -> str:
    return (
        f"ran {summary.ran}, replayed {summary.replayed}, failed {summary.failed} in "
        f"{summary.seconds:.1f} s; session {summary.session_id or 'unknown'}; "
        f"database {summary.database}"
    )


class _Client(nbclient.NotebookClient):
    """nbclient's client, telling the run once per cell when the kernel waits for the
    database file (its progress display says so; see lease.py)."""

    on_waiting = None
    _told: set = set()

    def output(self, outs, msg, display_id, cell_index):
        text = msg.get("content", {}).get("data", {}).get("text/plain", "")
        if text.startswith("waiting for ") and cell_index not in self._told:
            self._told = {*self._told, cell_index}
            if self.on_waiting:
                self.on_waiting(text.split(" · ")[0])
        return super().output(outs, msg, display_id, cell_index)


def print_progress(record: dict, stream=None) -> None:
    """One line per cell; on a terminal, a bar redrawn in place that ends in the last line."""
    stream = stream or sys.stderr
    if record["status"] == "waiting":  # once per cell, the moment it starts to wait
        start = "\r\033[K" if stream.isatty() else ""
        stream.write(f"{start}{record['cell']}: {record['text']}…\n")
        stream.flush()
        return
    line = f"cell {record['cell']}/{record['of']}: {record['status']} ({record['seconds']:.2f} s)"
    if record["status"] == "running" and not stream.isatty():
        return
    if record["status"] == "running":
        line = f"cell {record['cell']}/{record['of']}: running…"
    if stream.isatty():
        width = 30
        finished = record["cell"] - (record["status"] == "running")
        done = width * finished // max(1, record["of"])
        end = "\n" if record["cell"] == record["of"] or record["status"] == "failed" else ""
        stream.write(f"\r\033[K[{'#' * done}{'.' * (width - done)}] {line}{end}")
    else:
        stream.write(line + "\n")
    stream.flush()
