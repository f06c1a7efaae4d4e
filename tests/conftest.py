"""Shared helpers: a real rssd kernel driven through jupyter_client, as a client would."""

import contextlib
import os
import queue
import subprocess
import sys
import time
from dataclasses import dataclass, field

import duckdb
import pytest
from jupyter_client.manager import KernelManager
from pg_server import PgNotInstalled, PgServer, find_bindir

TIMEOUT = 60


@dataclass
class Reply:
    status: str
    content: dict
    outputs: list = field(default_factory=list)

    @property
    def result(self) -> dict | None:
        """The execute_result, else a display_data that is not a progress display."""
        for out in self.outputs:
            if out["msg_type"] == "execute_result":
                return out["content"]
        for out in self.outputs:
            if out["msg_type"] == "display_data" and "transient" not in out["content"]:
                return out["content"]
        return None

    @property
    def text(self) -> str:
        result = self.result
        return result["data"]["text/plain"] if result else ""

    @property
    def html(self) -> str:
        result = self.result
        return result["data"]["text/html"] if result else ""

    @property
    def error(self) -> dict | None:
        for out in self.outputs:
            if out["msg_type"] == "error":
                return out["content"]
        return None

    @property
    def rssd(self) -> dict:
        result = self.result
        return result["metadata"].get("rssd", {}) if result else {}


class Kernel:
    """A running rssd kernel on `database`, in working directory `cwd`."""

    def __init__(self, database: str | None, cwd: str, env: dict | None = None):
        self.database = database
        self.cwd = cwd
        self.km = KernelManager(kernel_name="rssd")
        kernel_env = {**os.environ, **(env or {})}
        kernel_env.pop("RSSD_DATABASE", None)
        if database is not None:
            kernel_env["RSSD_DATABASE"] = database
        self.km.start_kernel(cwd=cwd, env=kernel_env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def execute(
        self, code: str, timeout: float = TIMEOUT, cell_id: str | None = None, **kwargs
    ) -> Reply:
        """Run `code`; with `cell_id`, as JupyterLab sends a notebook cell (its id in the
        request's metadata), so that running it again is a re-run of the same cell."""
        if cell_id is None:
            msg_id = self.kc.execute(code, **kwargs)
        else:
            content = {"code": code, "silent": False, "store_history": True,
                       "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}  # fmt: skip
            content.update(kwargs)
            msg = self.kc.session.msg("execute_request", content)
            msg["metadata"]["cellId"] = cell_id
            self.kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        return self.collect(msg_id, timeout)

    def collect(self, msg_id: str, timeout: float = TIMEOUT) -> Reply:
        deadline = time.monotonic() + timeout
        reply = None
        while reply is None:
            msg = self.kc.get_shell_msg(timeout=max(0.1, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == msg_id:
                reply = msg
        outputs = []
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("no idle status from the kernel") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            if msg["msg_type"] not in ("status", "execute_input"):
                outputs.append({"msg_type": msg["msg_type"], "content": msg["content"]})
        return Reply(reply["content"]["status"], reply["content"], outputs)

    def ok(self, code: str, **kwargs) -> Reply:
        reply = self.execute(code, **kwargs)
        assert reply.status == "ok", (code, reply.content, reply.outputs)
        return reply

    def restart(self) -> None:
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def kill(self) -> None:
        """kill -9 the kernel process, as a crash would."""
        process = self.km.provisioner.process
        process.kill()
        process.wait(timeout=TIMEOUT)
        self.kc.stop_channels()
        self.km.cleanup_resources()
        self.dead = True

    dead = False

    def shutdown(self) -> None:
        """Shut the kernel down as a client does (it ends its RSSD session); idempotent."""
        if self.km.has_kernel and not self.dead:
            self.kc.stop_channels()
            self.km.shutdown_kernel(now=False)


@pytest.fixture
def kernel_factory(tmp_path):
    started = []

    def start(database: str | None = "default", cwd=None, env=None) -> Kernel:
        db = str(tmp_path / "rssd.duckdb") if database == "default" else database
        kernel = Kernel(db, str(cwd or tmp_path), env)
        started.append(kernel)
        return kernel

    yield start
    for kernel in started:
        kernel.shutdown()


@pytest.fixture
def kernel(kernel_factory):
    return kernel_factory()


@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL server for the whole session, started by the first test that asks
    (see pg_server.py). Without PostgreSQL the test fails, unless RSSD_ALLOW_NO_PG=1 (then it
    is skipped): CI must run these tests."""
    try:
        bindir, missing = find_bindir(), ""
    except PgNotInstalled as e:
        bindir, missing = None, str(e)
    if bindir is None:
        if os.environ.get("RSSD_ALLOW_NO_PG") == "1":
            pytest.skip(f"{missing} (skipped: RSSD_ALLOW_NO_PG=1)")
        pytest.fail(f"{missing}; or set RSSD_ALLOW_NO_PG=1 to skip these tests", pytrace=False)
    server = PgServer(bindir)
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh database (owned by the superuser postgres) on the session's server."""
    return pg_server.create_database()


def read_db(path: str, sql: str, params=None) -> list:
    """Query a database file after its kernel has released it."""
    con = duckdb.connect(path, read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


@contextlib.contextmanager
def held_by_another_program(path: str):
    """A plain DuckDB connection in another process holds `path` for the block (it never
    lets go when idle, as DuckDB's CLI or an older rssd-kernel would not); yields its PID."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=TIMEOUT)
