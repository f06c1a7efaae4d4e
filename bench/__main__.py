"""`python -m bench`: rssd side by side with the SQL kernels people use today.

Peers, each installed by this script into a virtual environment of its own under
bench/.peers (a peer that cannot be installed is reported as skipped):

- jupyter-duckdb: the `duckdb_kernel` wrapper kernel;
- ipython: IPython's kernel driving DuckDB's Python API (`con.sql(...)`);
- jupysql: jupysql's `%%sql` magic on DuckDB, in IPython's kernel.

On PostgreSQL (`--pg`, on by default; `--pg-only` for that part alone), the same server, a
throwaway one started as the tests start theirs (tests/pg_server.py), serves rssd and:

- ipython + psycopg: IPython's kernel driving psycopg 3 (`con.execute(...).fetchmany(50)`);
- jupysql: jupysql's `%%sql` on PostgreSQL through SQLAlchemy and psycopg.

Each kernel gets a database of its own, so that the server's statistics of a database are
those of one kernel: they tell what the RSSD records cost per cell on the server.

The machines are noisy, so kernels are alternated (A B C A B C ...), medians are taken over
many runs, and every result is also given as a ratio against a peer measured in the same run.
The tables go to stdout and to bench/RESULTS.md.

Measure 8, a stateful CSV ingest against DuckDB alone, reads a CSV of about 214 MB that is
made once and kept in bench/.data (RSSD_BENCH_DATA elsewhere); `--quick` reads the same file
(a small one would show the ingest's fixed costs, not what rssd adds to it), in 2 rounds.
`--only 1,8` takes some measures and leaves the others out.
"""

import argparse
import contextlib
import json
import os
import platform
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import duckdb
import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_DIR = os.environ.get("RSSD_BENCH_PEERS") or os.path.join(HERE, ".peers")
PEERS = ("ipython", "jupysql", "jupyter-duckdb")
HEAVY_SQL = "SELECT sum(hash(range % 1000003)) AS h FROM range({n})"
BIG_SELECT = "SELECT * FROM range(100000000)"
PG_BIG_SELECT = "SELECT generate_series(1, 100000000)"
PG_BIG_SECONDS = 120  # a peer still busy then is stopped and reported
PG_BIG_MAX_MB = 6000  # a peer that holds more is stopped: others share this machine
PHASES = (
    "hold",
    "plan",
    "bind",
    "net",
    "run",
    "lineage",
    "state",
    "commit",
    "outputs",
    "record",
    "other",
)  # rssd's order
DATA_DIR = os.environ.get("RSSD_BENCH_DATA") or os.path.join(HERE, ".data")
INGEST_ROWS = 3_500_000  # a CSV of about 214 MB
INGEST_CSV = (
    "COPY (SELECT range AS id, md5(range::VARCHAR) AS h, range % 97 AS k, 'some text ' || range "
    "AS t FROM range({n})) TO '{path}' (FORMAT csv, HEADER)"
)
MEASURES = range(1, 9)  # the numbers of the DuckDB table's measures (PG 1 and PG 3 by 1, 3)


# -- peers --------------------------------------------------------------------------------


def ensure_peer(name: str, packages: list[str]) -> str | None:
    """The python of a venv holding `packages`, made on first use; None if pip fails."""
    venv = os.path.join(PEERS_DIR, name)
    python = os.path.join(venv, "bin", "python")
    marker = os.path.join(venv, ".installed")
    if os.path.exists(marker):
        return python
    try:
        subprocess.run([sys.executable, "-m", "venv", venv], check=True, capture_output=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *packages], check=True,
                       capture_output=True, timeout=1200)  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
        stderr = (getattr(error, "stderr", b"") or b"").decode(errors="replace")
        why = "\n  ".join(stderr.strip().splitlines()[-3:]) or type(error).__name__
        print(f"bench: {name} could not be installed; it is reported as skipped:\n  {why}",
              file=sys.stderr)  # fmt: skip
        return None
    open(marker, "w").close()
    return python


class Flavour:
    """How to talk SQL to one kind of kernel."""

    def __init__(self, name, kernel_name, setup, wrap, env=None):
        self.name, self.kernel_name = name, kernel_name
        self.setup, self.wrap, self.env = setup, wrap, env or (lambda db: {})


def flavours(specs_dir: str, peers=PEERS) -> tuple[list[Flavour], list[str]]:
    """rssd and those of `peers` that could be installed; the names of those that could not."""
    found, skipped = [], []
    rssd = Flavour("rssd", "rssd", lambda db: [], lambda sql: sql,
                   env=lambda db: {"RSSD_DATABASE": db})  # fmt: skip
    found.append(rssd)
    duckdb_version = duckdb.__version__
    if "ipython" in peers or "jupysql" in peers:
        ipy = ensure_peer("ipython", ["ipykernel", f"duckdb=={duckdb_version}", "jupysql",
                                      "duckdb-engine"])  # fmt: skip
        if ipy:
            _spec(specs_dir, "bench-ipython",
                  [ipy, "-m", "ipykernel_launcher", "-f", "{connection_file}"])  # fmt: skip
        if ipy and "ipython" in peers:
            found.append(Flavour(
                "ipython + duckdb", "bench-ipython",
                lambda db: [f"import duckdb\ncon = duckdb.connect({db!r})"],
                lambda sql: f"con.sql({sql!r})",
            ))  # fmt: skip
        if ipy and "jupysql" in peers:
            found.append(Flavour(
                "jupysql", "bench-ipython",
                lambda db: ["%load_ext sql", f"%sql duckdb:///{db}",
                            "%config SqlMagic.displaylimit = 50"],  # fmt: skip
                lambda sql: f"%%sql\n{sql}",
            ))  # fmt: skip
        if not ipy:
            labels = {"ipython": "ipython + duckdb", "jupysql": "jupysql"}
            skipped += [label for peer, label in labels.items() if peer in peers]
    if "jupyter-duckdb" in peers:
        jd = ensure_peer("jupyter-duckdb", ["jupyter-duckdb"])
        if jd:
            _spec(specs_dir, "bench-jupyter-duckdb",
                  [jd, "-m", "duckdb_kernel", "-f", "{connection_file}"])  # fmt: skip
            found.append(Flavour("jupyter-duckdb", "bench-jupyter-duckdb",
                                 lambda db: [f"%CREATE {db}"], lambda sql: sql))  # fmt: skip
        else:
            skipped.append("jupyter-duckdb")
    return found, skipped


def pg_flavours(specs_dir: str, state_dir: str, peers=PEERS) -> tuple[list[Flavour], list[str]]:
    """As `flavours`, on PostgreSQL: a kernel's `db` is a postgresql:// URL. jupyter-duckdb
    has no PostgreSQL side. rssd keeps its journals under `state_dir`, not in $HOME."""
    import psycopg

    found, skipped = [], []
    rssd = Flavour("rssd", "rssd", lambda url: [], lambda sql: sql,
                   env=lambda url: {"RSSD_DATABASE": url, "XDG_STATE_HOME": state_dir})  # fmt: skip
    found.append(rssd)
    if "ipython" not in peers and "jupysql" not in peers:
        return found, skipped
    # The driver rssd uses, at the same version, so that the driver is not what differs
    ipy = ensure_peer("ipython-pg", ["ipykernel", f"psycopg[binary]=={psycopg.__version__}",
                                     "jupysql", "sqlalchemy"])  # fmt: skip
    if not ipy:
        labels = {"ipython": "ipython + psycopg", "jupysql": "jupysql"}
        return found, [label for peer, label in labels.items() if peer in peers]
    _spec(specs_dir, "bench-ipython-pg",
          [ipy, "-m", "ipykernel_launcher", "-f", "{connection_file}"])  # fmt: skip
    if "ipython" in peers:
        found.append(Flavour(
            "ipython + psycopg", "bench-ipython-pg",
            lambda url: [f"import psycopg\ncon = psycopg.connect({url!r}, autocommit=True)"],
            lambda sql: f"con.execute({sql!r}).fetchmany(50)",
        ))  # fmt: skip
    if "jupysql" in peers:
        found.append(Flavour(
            "jupysql", "bench-ipython-pg",
            lambda url: ["%load_ext sql",
                         "%sql " + url.replace("postgresql://", "postgresql+psycopg://", 1),
                         "%config SqlMagic.displaylimit = 50"],  # fmt: skip
            lambda sql: f"%%sql\n{sql}",
        ))  # fmt: skip
    return found, skipped


def _spec(specs_dir: str, name: str, argv: list[str]) -> None:
    folder = os.path.join(specs_dir, "kernels", name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "kernel.json"), "w") as handle:
        json.dump({"argv": argv, "display_name": name, "language": "python"}, handle)


# -- one kernel ---------------------------------------------------------------------------


class Running:
    def __init__(self, flavour: Flavour, db: str, cwd: str):
        self.flavour = flavour
        self.last_phases = None  # the last cell's phases_ms, from rssd's execute_result
        self.km = KernelManager(kernel_name=flavour.kernel_name)
        env = {**os.environ, **flavour.env(db)}
        started = time.perf_counter()
        self.km.start_kernel(cwd=cwd, env=env)
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)
        self.startup = time.perf_counter() - started
        for code in flavour.setup(db):
            self.run(code)

    def run(self, code: str, timeout: float = 600, cell_id=None) -> tuple[float, str]:
        """Seconds from the execute request to idle, and the reply status. With `cell_id`,
        the request carries it as JupyterLab does (running it again is a re-run). rssd's
        time per phase inside the kernel, from its execute_result, goes to `last_phases`
        (None for a peer, or a cell without a result): one look at a message already read."""
        self.last_phases = None
        started = time.perf_counter()
        if cell_id is None:
            msg_id = self.kc.execute(code)
        else:
            msg = self.kc.session.msg("execute_request", {"code": code, "silent": False})
            msg["metadata"]["cellId"] = cell_id
            self.kc.shell_channel.send(msg)
            msg_id = msg["header"]["msg_id"]
        status = None
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "error":
                status = "error: " + msg["content"]["evalue"][:200]
            elif msg["msg_type"] == "execute_result":
                metadata = msg["content"].get("metadata") or {}
                self.last_phases = (metadata.get("rssd") or {}).get("phases_ms")
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        elapsed = time.perf_counter() - started
        reply = self.kc.get_shell_msg(timeout=timeout)
        return elapsed, status or reply["content"]["status"]

    def sql(self, sql: str, cell_id=None) -> float:
        elapsed, status = self.run(self.flavour.wrap(sql), cell_id=cell_id)
        if status != "ok":
            raise RuntimeError(f"{self.flavour.name}: {status}")
        return elapsed

    def bounded(self, code: str, seconds: float, max_mb: float) -> tuple[float | None, str]:
        """As `run`, but a kernel still busy after `seconds`, or holding more than `max_mb`
        MB, is killed: (None, why). A peer that cannot answer must not stall the bench, nor
        take the memory of a machine others use."""
        started = time.perf_counter()
        msg_id = self.kc.execute(code)
        status = None
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                msg = None
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                if msg["msg_type"] == "error":
                    status = "error: " + msg["content"]["evalue"][:200]
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    break
            why = None
            if time.perf_counter() - started > seconds:
                why = f"still busy after {seconds:.0f} s"
            elif self._status_mb("VmRSS") > max_mb:
                why = f"over {max_mb:,.0f} MB"
            elif not self.km.is_alive():
                return None, "the kernel died"
            if why:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.km.provisioner.process.pid, signal.SIGKILL)
                return None, f"stopped: {why}"
        elapsed = time.perf_counter() - started
        reply = self.kc.get_shell_msg(timeout=60)
        return elapsed, status or reply["content"]["status"]

    def peak_rss_mb(self) -> float:
        return self._status_mb("VmHWM")

    def _status_mb(self, field: str) -> float:
        """A memory field of the kernel's /proc/PID/status, in MB (NaN if gone)."""
        try:
            with open(f"/proc/{self.km.provisioner.process.pid}/status") as status:
                for line in status:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


# -- measures -----------------------------------------------------------------------------


def alternate(kernels: dict, work, rounds: int) -> dict[str, list[float]]:
    """Run `work(kernel)` round after round, one kernel after another (A B C A B C)."""
    times = {name: [] for name in kernels}
    for _ in range(rounds):
        for name, kernel in kernels.items():
            times[name].append(work(kernel))
    return times


def p90(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]


def measure_round_trip(kernels, rounds):
    """`SELECT 42`: (median ms, p90 ms) per kernel, and rssd's phases_ms of each measured
    cell (see Running.run), taken in the same runs: where its round trip goes."""
    for kernel in kernels.values():
        for _ in range(10):
            kernel.sql("SELECT 42")
    phases = []

    def work(kernel):
        elapsed = kernel.sql("SELECT 42")
        if kernel.flavour.name == "rssd" and kernel.last_phases:
            phases.append(kernel.last_phases)
        return elapsed

    times = alternate(kernels, work, rounds)
    return {n: (statistics.median(t) * 1000, p90(t) * 1000) for n, t in times.items()}, phases


def measure_net(kernel, rounds):
    """What the read-only net costs a read cell: the same SELECT with the net, and as
    `-- @always` (no net, nothing else different), alternating, in the rssd kernel. Also
    the net cell's phases_ms, in which the net shows as a phase of its own."""
    kernel.run("CREATE TABLE IF NOT EXISTS bench_one AS SELECT 42 AS x")
    cells = {"net": "SELECT x FROM bench_one", "always": "-- @always\nSELECT x FROM bench_one"}
    times = {name: [] for name in cells}
    phases = []
    for _ in range(rounds):
        for name, code in cells.items():
            times[name].append(kernel.run(code)[0])
            if name == "net" and kernel.last_phases:
                phases.append(kernel.last_phases)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}, phases


def phases_text(cells: list[dict], round_trip_ms: float) -> str:
    """rssd's time per phase inside the kernel, medians over `cells` (a phase a cell did not
    go through counts 0 there), against the round trip: what the kernel's own work is of
    what the client waits, the rest being the protocol and ipykernel."""
    if not cells:
        return "n/a (no phases_ms in rssd's results)"
    seen = {name for cell in cells for name in cell}
    names = [p for p in PHASES if p in seen] + sorted(seen - set(PHASES))
    parts = ", ".join(
        f"{name} {statistics.median(cell.get(name, 0.0) for cell in cells):.2f}" for name in names
    )
    inside = statistics.median(sum(cell.values()) for cell in cells)
    return (f"{parts}; in the kernel {inside:.2f} of {round_trip_ms:.1f} round trip (rest: "
            "the protocol and ipykernel)")  # fmt: skip


_RETAKE = """
import json, os, statistics, sys, time
import duckdb
path, rounds = sys.argv[1], int(sys.argv[2])
own = []
for _ in range(rounds):  # DuckDB's own ATTACH + DETACH of the file, from a fresh session
    con = duckdb.connect(":memory:")
    started = time.perf_counter()
    con.execute(f"ATTACH '{path}' AS f")
    attached = time.perf_counter()
    con.execute("DETACH f")
    own.append((attached - started, time.perf_counter() - attached))
    con.close()
os.environ["RSSD_DATABASE"] = path
from rssd_kernel.runner import Runner
runner = Runner()
runner.run("SELECT 1")
runner.recorder.writer.flush(timeout=60)  # else its pending records take the file again
held, retake, release = [], [], []
for _ in range(rounds):
    started = time.perf_counter()
    with runner.hold():  # held already: what a single user pays per cell
        pass
    held.append(time.perf_counter() - started)
    started = time.perf_counter()
    runner.lease.release()
    release.append(time.perf_counter() - started)
    started = time.perf_counter()
    with runner.hold():  # taken again, nothing changed: ATTACH, one counter
        pass
    retake.append(time.perf_counter() - started)
runner.close()
median = lambda values: statistics.median(values) * 1000
print(json.dumps({"attach": median([a for a, _ in own]), "detach": median([d for _, d in own]),
                  "held": median(held), "retake": median(retake), "release": median(release)}))
"""


def measure_retake(workdir, tables: int, rows_per_table: int, rounds: int) -> dict:
    """Taking the file again after it was let go, beside DuckDB's own ATTACH + DETACH of
    the same file (`tables` tables), in a fresh process like a kernel's."""
    path = os.path.join(workdir, "retake.duckdb")
    con = duckdb.connect(path)
    for index in range(tables):
        con.execute(f"CREATE TABLE t{index} AS SELECT range AS id, md5(range::VARCHAR) AS h "
                    f"FROM range({rows_per_table})")  # fmt: skip
    con.close()
    out = subprocess.run([sys.executable, "-c", _RETAKE, path, str(rounds)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["size_mb"] = os.path.getsize(path) / 1e6
    return result


def measure_interleaved(rssd: Flavour, workdir, kernels: int, cells: int) -> float:
    """Cells per second for `kernels` rssd kernels on one file, each running `cells` cells
    (stateful inserts and reads alternating) at the same time."""
    db = os.path.join(workdir, "interleaved.duckdb")
    running = [Running(rssd, db, workdir) for _ in range(kernels)]
    try:
        running[0].sql("CREATE TABLE IF NOT EXISTS events (k INT, n INT)")

        def work(index):
            for n in range(cells):
                code = (f"INSERT INTO events VALUES ({index}, {n})" if n % 2 == 0
                        else f"SELECT count(*) FROM events WHERE k = {index}")  # fmt: skip
                running[index].sql(code)

        started = time.perf_counter()
        threads = [threading.Thread(target=work, args=(i,)) for i in range(kernels)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return kernels * cells / (time.perf_counter() - started)
    finally:
        for kernel in running:
            kernel.stop()


def ingest_csv(rows: int = INGEST_ROWS) -> str:
    """A CSV of `rows` rows (INGEST_ROWS: about 214 MB), made once by DuckDB and kept under
    DATA_DIR (bench/.data): large enough that an ingest's fixed costs do not hide what the
    kernel adds per byte, and not worth writing again on every run."""
    path = os.path.abspath(os.path.join(DATA_DIR, f"ingest-{rows}.csv"))  # kernels' cwd differ
    if not os.path.exists(path):
        os.makedirs(DATA_DIR, exist_ok=True)
        partial = os.path.join(DATA_DIR, f"ingest-{rows}.partial")  # never half a CSV
        con = duckdb.connect()
        con.execute(INGEST_CSV.format(n=rows, path=partial)).fetchall()
        con.close()
        os.replace(partial, path)
    return path


def warm(path: str) -> None:
    """Read a file once, so that the runs after read it from the page cache: the disk is
    then not what differs between two runs."""
    with open(path, "rb") as handle:
        while handle.read(16 << 20):
            pass


def measure_ingest(rssd: Flavour, workdir, csv: str, rounds: int) -> dict:
    """A stateful ingest, `CREATE TABLE t AS SELECT * FROM read_csv(...)`, by rssd (a fresh
    kernel on a fresh file: execute request to idle, after a `SELECT 1` that ends its
    start-up, as in measure_big_select) and by DuckDB alone (a fresh process on a fresh
    file: the statement alone, its connect left out as the kernel's start-up is),
    alternating. rssd also records the file's lineage in the cell's transaction, and makes
    its digest (BLAKE3) after the reply: a cell that reads the RSSD right after waits for
    it, and that cell's time is kept too (`digest_wait`). Each rssd file is checked after
    its kernel shut down for that lineage entry, digest included."""
    sql = f"CREATE TABLE t AS SELECT * FROM read_csv('{csv}')"
    digested = ("SELECT count(*) FROM orchestration_session_entry "
                "WHERE json_extract_string(elaboration, '$.digest') IS NOT NULL")  # fmt: skip
    times = {"rssd": [], "duckdb": [], "digest_wait": []}
    phases, lineage = [], 0
    for _ in range(rounds):
        warm(csv)  # again each round: other work on the machine may have pushed it out
        folder = tempfile.mkdtemp(dir=workdir, prefix="ingest-")
        db = os.path.join(folder, "rssd.duckdb")
        kernel = Running(rssd, db, folder)
        try:
            kernel.sql("SELECT 1")
            times["rssd"].append(kernel.sql(sql))
            if kernel.last_phases:
                phases.append(kernel.last_phases)
            times["digest_wait"].append(kernel.sql(digested))
        finally:
            kernel.stop()
        lineage += _has_lineage(db, csv)
        shutil.rmtree(folder, ignore_errors=True)  # each file holds the table: 100s of MB
        folder = tempfile.mkdtemp(dir=workdir, prefix="ingest-")
        times["duckdb"].append(in_process(sql, os.path.join(folder, "alone.duckdb")))
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "rssd": statistics.median(times["rssd"]),
        "duckdb": statistics.median(times["duckdb"]),
        "digest_wait": statistics.median(times["digest_wait"]),
        "phases": phases,
        "lineage": lineage,
        "rounds": rounds,
        "size_mb": os.path.getsize(csv) / 1e6,
    }


def _has_lineage(db: str, csv: str) -> bool:
    """Whether the RSSD in `db` (its kernel gone) holds an orchestration_session_entry for
    `csv` with a BLAKE3 digest of it."""
    con = duckdb.connect(db, read_only=True)
    try:
        rows = con.execute("SELECT elaboration FROM orchestration_session_entry").fetchall()
    finally:
        con.close()
    for (elaboration,) in rows:
        entry = json.loads(elaboration or "{}")
        if (
            entry.get("digest_algorithm") == "blake3"
            and entry.get("digest")
            and entry.get("resolved_path") == os.path.abspath(csv)
        ):
            return True
    return False


def calibrate_heavy() -> tuple[str, float]:
    """A query that takes 1 to 3 s in-process here."""
    n = 100_000_000
    con = duckdb.connect()
    while True:
        sql = HEAVY_SQL.format(n=n)
        started = time.perf_counter()
        con.execute(sql).fetchall()
        elapsed = time.perf_counter() - started
        if elapsed >= 1.8 or n > 8_000_000_000:
            return sql, elapsed
        n = int(n * max(1.2, 2.2 / max(elapsed, 0.05)))


_IN_PROCESS = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[2])
con.execute("SET enable_progress_bar_print = false")  # as in the rssd kernel
started = time.perf_counter()
con.execute(sys.argv[1]).fetchall()
print(time.perf_counter() - started)
"""


def in_process(sql: str, database: str) -> float:
    """The query's time run in-process, in a fresh Python process like a kernel's."""
    out = subprocess.run([sys.executable, "-c", _IN_PROCESS, sql, database],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def measure_heavy(kernels, rounds):
    sql, _ = calibrate_heavy()
    base = []
    times = {name: [] for name in kernels}
    for _ in range(rounds):  # in-process runs alternate with the kernels too
        base.append(
            in_process(sql, os.path.join(tempfile.gettempdir(), "rssd-bench-inproc.duckdb"))
        )
        for name, kernel in kernels.items():
            times[name].append(kernel.sql(sql))
    inproc = statistics.median(base)
    return sql, inproc, {n: statistics.median(t) / inproc - 1 for n, t in times.items()}


def measure_big_select(flavours_, workdir):
    out = {}
    for flavour in flavours_:
        db = os.path.join(workdir, f"big-{flavour.kernel_name}-{len(out)}.duckdb")
        kernel = Running(flavour, db, workdir)
        try:
            kernel.sql("SELECT 1")
            elapsed = kernel.sql(BIG_SELECT)
            out[flavour.name] = (elapsed * 1000, kernel.peak_rss_mb())
        except Exception as error:  # a peer that cannot do it is reported, not fatal
            out[flavour.name] = (None, str(error)[:80])
        finally:
            kernel.stop()
    return out


def _notebook(path, kernel_name, cells):
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": kernel_name, "display_name": kernel_name, "language": "sql"}
        }
    )
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def measure_notebook(flavours_, workdir, rows):
    ingest = (f"CREATE TABLE big AS SELECT range AS id, md5(range::VARCHAR) AS h, "
              f"range % 1000 AS g FROM range({rows})")  # fmt: skip
    analyse = "SELECT g, count(*) AS n FROM big GROUP BY g ORDER BY g LIMIT 5"
    out = {}
    for flavour in flavours_:
        if flavour.name not in ("rssd", "ipython + duckdb"):
            continue
        folder = tempfile.mkdtemp(dir=workdir)
        db = os.path.join(folder, "nb.duckdb")
        if flavour.name == "rssd":
            cells = [ingest, analyse]
        else:
            cells = [
                *flavour.setup(db),
                flavour.wrap(ingest.replace("CREATE TABLE", "CREATE OR REPLACE TABLE"))
                + ".fetchall()",
                flavour.wrap(analyse),
            ]
        path = os.path.join(folder, "nb.ipynb")
        _notebook(path, flavour.kernel_name, cells)
        runs, walls = [], []
        for _ in range(2):
            nb = nbformat.read(path, as_version=4)
            started = time.perf_counter()
            NotebookClient(nb, timeout=600, resources={"metadata": {"path": folder}}).execute(
                env={**os.environ, **flavour.env(db)}
            )
            walls.append(time.perf_counter() - started)
            runs.append(sum(_cell_seconds(c) for c in nb.cells))
        out[flavour.name] = (runs[0], runs[1], runs[1] / runs[0], walls[1] / walls[0])
    return out


def _cell_seconds(cell) -> float:
    """Execute request to reply, from the timings nbclient records in the cell."""
    from datetime import datetime

    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return 0.0
    parse = lambda t: datetime.fromisoformat(t.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def synthesize_history(db: str, execs: int) -> None:
    """Fill a fresh RSSD with `execs` recorded executions and as many state rows."""
    from rssd_kernel.database import open_database
    from rssd_kernel.recorder import Recorder

    con = open_database(db)
    recorder = Recorder(con.cursor())
    session = recorder.start_session({"synthetic": True}, None)
    con.execute(f"""
        INSERT INTO orchestration_session_exec
        SELECT uuid()::VARCHAR, 'SQL', '{session}', '{recorder.entry_id}', NULL, 'rssd',
               'cell-' || range, 'SELECT ' || range, 0, NULL, NULL, '1 row', '{{}}', 'Ran.', '{{}}'
        FROM range({execs})""").fetchall()
    con.execute("""
        INSERT INTO orchestration_session_log
        SELECT CAST(orchestration_session_exec_id AS UUID), 'exec', NULL, 'Ran.', NULL, NULL
        FROM orchestration_session_exec""").fetchall()
    con.execute(f"""
        INSERT INTO orchestration_session_state (orchestration_session_state_id, session_id,
            from_state, to_state, transition_reason, elaboration)
        SELECT 'S' || range, '{session}', 'INITIAL', 'EXECUTED', 'synthetic',
               json_object('key', 'synthetic-' || range, 'code_hash', 'x')
        FROM range({execs})""").fetchall()
    con.close()


def measure_growth(rssd: Flavour, workdir, execs, rounds):
    fresh_db = os.path.join(workdir, "growth-fresh.duckdb")
    full_db = os.path.join(workdir, "growth-full.duckdb")
    synthesize_history(full_db, execs)
    fresh, full = Running(rssd, fresh_db, workdir), Running(rssd, full_db, workdir)
    stateful = "CREATE TABLE applied_once AS SELECT 1 AS a"
    try:
        for kernel in (fresh, full):
            # applied now; every later run of that cell is the applied-check + replay
            kernel.sql(stateful, cell_id="applied-once")
            for _ in range(10):
                kernel.sql("SELECT 42")
        kernels = {"fresh": fresh, "full": full}
        trips = alternate(kernels, lambda k: k.sql("SELECT 42"), rounds)
        checks = alternate(kernels, lambda k: k.sql(stateful, cell_id="applied-once"), rounds)
    finally:
        fresh.stop()
        full.stop()
    med = {n: statistics.median(t) * 1000 for n, t in trips.items()}
    chk = {n: statistics.median(t) * 1000 for n, t in checks.items()}
    return med, chk


def measure_startup(flavours_, workdir, rounds):
    times = {f.name: [] for f in flavours_ if f.name != "jupysql"}
    for index in range(rounds):
        for flavour in flavours_:
            if flavour.name == "jupysql":
                continue  # the same kernel as ipython + duckdb
            db = os.path.join(workdir, f"start-{index}-{flavour.kernel_name}.duckdb")
            km = KernelManager(kernel_name=flavour.kernel_name)
            started = time.perf_counter()
            km.start_kernel(cwd=workdir, env={**os.environ, **flavour.env(db)})
            kc = km.client()
            kc.start_channels()
            kc.kernel_info(reply=True, timeout=120)
            times[flavour.name].append(time.perf_counter() - started)
            kc.stop_channels()
            km.shutdown_kernel(now=False)
    return {n: statistics.median(t) * 1000 for n, t in times.items()}


# -- on PostgreSQL ------------------------------------------------------------------------


def start_pg_server():
    """(a throwaway PostgreSQL server started as the tests start theirs, None), or (None,
    why) when this machine cannot run one: the PostgreSQL part is then skipped."""
    tests = os.path.join(os.path.dirname(HERE), "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    from pg_server import PgNotInstalled, PgServer

    try:
        return PgServer(), None
    except (PgNotInstalled, RuntimeError, OSError) as error:
        return None, str(error).strip().splitlines()[0]


def start_pg_kernels(found, server, workdir) -> tuple[dict, dict, dict]:
    """A kernel per flavour, each on a fresh database of its own, answering `SELECT 42`:
    (kernels, URLs, why each peer that could not failed). rssd failing is the bench's failure."""
    kernels, urls, failed = {}, {}, {}
    for index, flavour in enumerate(found):
        urls[flavour.name] = server.create_database(f"bench_{index}")
        kernel = None
        try:
            kernel = Running(flavour, urls[flavour.name], workdir)
            kernel.sql("SELECT 42")
            kernels[flavour.name] = kernel
        except Exception as error:
            if kernel is not None:
                kernel.stop()
            if flavour.name == "rssd":
                for started in kernels.values():
                    started.stop()
                raise
            failed[flavour.name] = str(error).strip().splitlines()[0][:160]
    return kernels, urls, failed


def measure_pg_records(found, urls, admin, workdir, cells) -> dict[str, tuple]:
    """What a `SELECT 42` cell costs each kernel's database, as the server counts it:
    (transactions, active ms, RSSD rows written) per cell. There is no switch to turn rssd's
    recording off, so this is its cost next to peers that record nothing.

    A backend publishes its statistics at most once a second, and after 10 s of idleness,
    but always when it ends: so each count is taken from a whole kernel's life, one kernel
    with no cell and one with `cells` cells, the difference divided by `cells`. The cells
    are 0.1 s apart, as typed ones are, so that rssd's writer writes each cell's records on
    their own (back to back, it writes several cells' records in one transaction)."""
    out = {}
    for flavour in found:
        url = urls[flavour.name]
        lives = [_database_life(flavour, url, admin, workdir, n) for n in (0, cells)]
        out[flavour.name] = tuple((b - a) / cells for a, b in zip(*lives))
    return out


def _database_life(flavour, url, admin, workdir, cells) -> tuple[float, float, float]:
    """(transactions, active ms, RSSD rows written) in `url`'s database over the life of
    one kernel of `flavour` that runs `cells` `SELECT 42` cells. `admin` is a connection
    to another database: reading the counts does not change them."""
    import psycopg

    dbname = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    rows_before = _rssd_rows_written(url)
    _wait_backends_gone(admin, dbname)
    before = _database_counts(admin, dbname)
    kernel = Running(flavour, url, workdir)
    try:
        for _ in range(cells):
            kernel.sql("SELECT 42")
            time.sleep(0.1)
    finally:
        kernel.stop()
    _wait_backends_gone(admin, dbname)
    after = _database_counts(admin, dbname)
    return after[0] - before[0], after[1] - before[1], _rssd_rows_written(url) - rows_before


def _database_counts(admin, dbname) -> tuple[float, float]:
    return admin.execute(
        "SELECT xact_commit + xact_rollback, active_time FROM pg_stat_database WHERE datname = %s",
        [dbname],
    ).fetchone()


def _rssd_rows_written(url) -> int:
    """Rows inserted, updated and deleted in the RSSD's tables (0 where there is none)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        return con.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint "
            "FROM pg_stat_user_tables WHERE schemaname = 'rssd'"
        ).fetchone()[0]


def _wait_backends_gone(admin, dbname, seconds: float = 30) -> None:
    """Until no backend is connected to `dbname`: each has published its statistics."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname]
        ).fetchone()[0]
        if left == 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"connections to {dbname} still open after {seconds:.0f} s")


def measure_pg_big(found, urls, workdir) -> dict[str, tuple]:
    """PG_BIG_SELECT in a fresh kernel of each flavour, then again in the same kernel:
    (ms, peak RSS MB, ms or why not again), or (None, why, None). The first run pays
    what the server does once per connection (with its default jit = on, loading LLVM
    for this query's large estimated cost); the second shows what is left."""
    out = {}
    for flavour in found:
        kernel = Running(flavour, urls[flavour.name], workdir)
        try:
            kernel.sql("SELECT 1")
            sql = flavour.wrap(PG_BIG_SELECT)
            first, status = kernel.bounded(sql, PG_BIG_SECONDS, PG_BIG_MAX_MB)
            if first is None or status != "ok":
                out[flavour.name] = (None, status[:80], None)
                continue
            peak = kernel.peak_rss_mb()  # the first run's: a second may add to it
            again, status = kernel.bounded(sql, PG_BIG_SECONDS, PG_BIG_MAX_MB)
            again = again * 1000 if again is not None and status == "ok" else status[:80]
            out[flavour.name] = (first * 1000, peak, again)
        except Exception as error:  # a peer that cannot do it is reported, not fatal
            out[flavour.name] = (None, str(error).strip()[:80], None)
        finally:
            kernel.stop()
    return out


# -- report -------------------------------------------------------------------------------


def fmt(value, unit="", digits=1):
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def duckdb_table(args, peers, rounds, specs, workdir) -> list[str]:
    """The DuckDB part: rssd and the DuckDB peers; its lines. Only the measures in
    `args.only` are taken (all by default): one can be checked without the others' minutes."""
    found, skipped = flavours(specs, peers)
    names = [f.name for f in found]
    only = args.only
    lines = []
    if skipped:
        lines += [f"Skipped (could not be installed): {', '.join(skipped)}.", ""]

    kernels = {}
    if 1 in only or 2 in only:
        for flavour in found:
            kernels[flavour.name] = Running(
                flavour, os.path.join(workdir, f"rt-{len(kernels)}.duckdb"), workdir
            )
    try:
        if 1 in only:
            trip, trip_phases = measure_round_trip(kernels, rounds)
            net, net_phases = measure_net(kernels["rssd"], rounds)
        if 2 in only:
            sql, inproc, heavy = measure_heavy(kernels, 3 if args.quick else 9)
    finally:
        for kernel in kernels.values():
            kernel.stop()
    if 3 in only:
        big = measure_big_select(found, workdir)
    if 4 in only:
        notebook = measure_notebook(found, workdir, 5_000_000 if args.quick else 30_000_000)
    if 5 in only:
        growth, checks = measure_growth(
            found[0], workdir, 20_000 if args.quick else 100_000, rounds // 2
        )
    if 6 in only:
        startup = measure_startup(found, workdir, 3 if args.quick else 25)
    if 7 in only:
        retake = measure_retake(
            workdir, 100 if args.quick else 1000, 2_000 if args.quick else 25_000,
            5 if args.quick else 25,
        )  # fmt: skip
        per_second = measure_interleaved(found[0], workdir, 4, 5 if args.quick else 25)
    if 8 in only:
        ingest = measure_ingest(found[0], workdir, ingest_csv(), 2 if args.quick else 9)

    lines += [
        "| measure | " + " | ".join(names) + " | target | met |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- | --- |",
    ]
    rssd_only = ["n/a"] * (len(names) - 1)  # the other cells of a row only rssd has

    def row(label, cells, target, met):
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {target} | {met} |")

    if 1 in only:
        peer_trips = [(trip[n][0], n) for n in names if n != "rssd"]
        fastest = min(peer_trips) if peer_trips else (None, None)
        row(
            "1. `SELECT 42` round trip, median (ms)",
            [fmt(trip[n][0]) for n in names],
            f"≤ fastest peer ({fastest[1] or 'none measured'})",
            "n/a" if fastest[0] is None else "yes" if trip["rssd"][0] <= fastest[0] else "no",
        )
        row("1. `SELECT 42` round trip, p90 (ms)", [fmt(trip[n][1]) for n in names], "", "")
        row(
            "1. round trip vs fastest peer",
            [fmt(trip[n][0] / fastest[0], "×", 2) if fastest[0] else "n/a" for n in names],
            "",
            "",
        )
        row(
            "1. rssd `SELECT 42` by phase (ms, medians)",
            [phases_text(trip_phases, trip["rssd"][0])] + rssd_only,
            "shown",
            "",
        )
        row(
            "1. read-only net: `SELECT x FROM t` with the net vs without (ms)",
            [f"{net['net']:.2f} vs {net['always']:.2f} ({net['net'] - net['always']:+.2f})"]
            + rssd_only,
            "shown",
            "",
        )
        row(
            "1. rssd `SELECT x FROM t` (with the net) by phase (ms, medians)",
            [phases_text(net_phases, net["net"])] + rssd_only,
            "shown",
            "",
        )
    if 2 in only:
        row(
            f"2. heavy query overhead over in-process ({inproc:.2f} s)",
            [fmt(100 * heavy[n], "%") for n in names],
            "≤ 3%",
            "yes" if heavy["rssd"] <= 0.03 else "no",
        )
    if 3 in only:
        row(
            "3. 100M-row SELECT answered (ms)",
            [fmt(big[n][0]) for n in names],
            "< 100 ms",
            "yes" if big["rssd"][0] is not None and big["rssd"][0] < 100 else "no",
        )
        row(
            "3. kernel peak RSS (MB)",
            [fmt(big[n][1], digits=0) if big[n][0] is not None else "n/a" for n in names],
            "< 150 MB",
            "yes" if big["rssd"][0] is not None and big["rssd"][1] < 150 else "no",
        )
    if 4 in only:
        row(
            "4. notebook: second run / first run (cell time)",
            [fmt(100 * notebook[n][2], "%") if n in notebook else "n/a" for n in names],
            "≤ 5%",
            "yes" if notebook["rssd"][2] <= 0.05 else "no",
        )
        row(
            "4. notebook: cell time, first and second run (s)",
            [
                f"{notebook[n][0]:.2f}, {notebook[n][1]:.2f}" if n in notebook else "n/a"
                for n in names
            ],  # fmt: skip
            "",
            "",
        )
        row(
            "4. notebook: second / first, wall time with kernel start-up",
            [fmt(100 * notebook[n][3], "%") if n in notebook else "n/a" for n in names],
            "",
            "",
        )
    if 5 in only:
        slower = growth["full"] / growth["fresh"] - 1
        row(
            f"5. round trip with {20_000 if args.quick else 100_000:,} execs vs fresh (ms)",
            [f"{growth['full']:.1f} vs {growth['fresh']:.1f} ({100 * slower:+.0f}%)"] + rssd_only,
            "≤ +10%",
            "yes" if slower <= 0.10 else "no",
        )
        check_ratio = checks["full"] / checks["fresh"] - 1
        row(
            "5. replay of an applied cell, full vs fresh history (ms)",
            [f"{checks['full']:.1f} vs {checks['fresh']:.1f} ({100 * check_ratio:+.0f}%)"]
            + rssd_only,
            "independent of history",
            "yes" if check_ratio <= 0.10 else "no",
        )
    if 6 in only:
        row(
            "6. start-up to kernel_info reply (ms)",
            [fmt(startup.get(n)) for n in names],
            "≤ IPython's",
            "n/a"
            if "ipython + duckdb" not in startup
            else "yes"
            if startup["rssd"] <= startup["ipython + duckdb"]
            else "no",
        )
    if 7 in only:
        own = retake["attach"] + retake["detach"]
        row(
            f"7. taking the file again ({retake['size_mb']:,.0f} MB, "
            f"{100 if args.quick else 1000:,} tables) vs DuckDB's ATTACH + DETACH (ms)",
            [f"{retake['retake']:.1f} + {retake['release']:.1f} vs {retake['attach']:.1f} + "
             f"{retake['detach']:.1f} ({(retake['retake'] + retake['release']) / own:.2f}×)"]
            + rssd_only,
            "≤ 1.2×",
            "yes" if retake["retake"] + retake["release"] <= 1.2 * own else "no",
        )  # fmt: skip
        row(
            "7. holding the file already, per cell (ms)",
            [f"{retake['held']:.3f}"] + rssd_only,
            "nothing",
            "yes" if retake["held"] < 0.05 else "no",
        )
        row(
            "7. four kernels, interleaved cells on one file (cells/s)",
            [f"{per_second:.0f}"] + rssd_only,
            "shown",
            "",
        )
    if 8 in only:
        ratio = ingest["rssd"] / ingest["duckdb"]
        row(
            f"8. stateful CSV ingest ({ingest['size_mb']:,.0f} MB) vs DuckDB alone, median (s)",
            [f"{ingest['rssd']:.2f} vs {ingest['duckdb']:.2f} ({ratio:.3f}×)"] + rssd_only,
            "≤ 1.03×",
            "yes" if ratio <= 1.03 else "no",
        )
    notes = []
    if 1 in only:
        notes.append(
            "By phase: the phases_ms rssd sends with each result (metadata.rssd), medians "
            f"over the {rounds} measured cells; the round trip is the same cells' median."
        )
    if 2 in only:
        notes.append(f"Heavy query: `{sql}`.")
    if 6 in only:
        notes.append("jupysql runs in IPython's kernel, so its start-up is IPython's.")
    if 8 in only:
        notes.append(_ingest_note(ingest))
    notes.append("Reproduce with `python -m bench` (peers are installed into bench/.peers).")
    lines += ["", " ".join(notes)]
    return lines


def _ingest_note(ingest: dict) -> str:
    """What the ingest row measured, and whether rssd recorded the file's lineage."""
    rounds = ingest["rounds"]
    phases = ingest["phases"]
    by_phase = ""
    if phases:
        by_phase = (" rssd's ingest cell by phase (ms, medians): "
                    f"{phases_text(phases, ingest['rssd'] * 1000)}.")  # fmt: skip
    return (
        f"Ingest: `CREATE TABLE t AS SELECT * FROM read_csv(...)` of a {ingest['size_mb']:,.0f} "
        f"MB CSV (bench/.data, in the page cache), {rounds} rounds alternated; rssd in a fresh "
        "kernel on a fresh file (request to idle, after a `SELECT 1`), DuckDB alone in a "
        "fresh process on a fresh file (the statement alone, after its connect). Lineage "
        f"(orchestration_session_entry, digest_algorithm blake3) found in {ingest['lineage']} "
        f"of {rounds} rssd files after their kernel shut down.{by_phase} The digest is made "
        "after the reply: a cell reading the RSSD right after the ingest took "
        f"{ingest['digest_wait'] * 1000:.0f} ms (median), hashing included."
    )


def postgres_table(args, peers, rounds, specs, workdir) -> tuple[list[str], int]:
    """The PostgreSQL part's lines, and 1 if it failed (0 when done, or skipped because
    this machine has no PostgreSQL)."""
    server, why = start_pg_server()
    if server is None:
        return [f"On PostgreSQL: skipped ({why})."], 0
    try:
        return pg_measures_table(args, peers, rounds, specs, workdir, server), 0
    except Exception as error:  # the DuckDB table is still written
        import traceback

        traceback.print_exc()
        return [f"On PostgreSQL: failed ({type(error).__name__}: {error})."], 1
    finally:
        server.close()


def pg_measures_table(args, peers, rounds, specs, workdir, server) -> list[str]:
    """Measure rssd and the PostgreSQL peers on `server`; the table's lines. Round trips and
    the server's counts use the same kernels; the big SELECT gets fresh ones, so that their
    peak memory is that query's."""
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as con:
        version = con.execute("SHOW server_version").fetchone()[0].split()[0]
    found, skipped = pg_flavours(specs, os.path.join(workdir, "state"), peers)
    cells = 20 if args.quick else 100
    kernels, urls, failed = start_pg_kernels(found, server, workdir)
    try:
        if 1 in args.only:
            trip, trip_phases = measure_round_trip(kernels, rounds)
    finally:
        for kernel in kernels.values():
            kernel.stop()
    measured = [f for f in found if f.name in kernels]
    if 1 in args.only:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            records = measure_pg_records(measured, urls, admin, workdir, cells)
    if 3 in args.only:
        big = measure_pg_big(measured, urls, workdir)
    names = [f.name for f in measured]
    rssd_only = ["n/a"] * (len(names) - 1)

    lines = [f"On PostgreSQL {version} (a server on this machine, over TCP on 127.0.0.1; "
             f"psycopg {psycopg.__version__} for rssd and the peers):", ""]  # fmt: skip
    if skipped:
        lines += [f"Skipped (could not be installed): {', '.join(skipped)}.", ""]
    for name, why in failed.items():
        lines += [f"Failed to answer `SELECT 42`, not measured: {name} ({why}).", ""]
    lines += [
        "| measure | " + " | ".join(names) + " | target | met |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- | --- |",
    ]

    def row(label, cells_, target, met):
        lines.append(f"| {label} | " + " | ".join(cells_) + f" | {target} | {met} |")

    if 1 in args.only:
        peer_names = [n for n in names if n != "rssd"]
        fastest = min((trip[n][0], n) for n in peer_names) if peer_names else (None, None)
        row(
            "PG 1. `SELECT 42` round trip, median (ms)",
            [fmt(trip[n][0]) for n in names],
            f"≤ fastest peer ({fastest[1] or 'none measured'})",
            "n/a" if fastest[0] is None else "yes" if trip["rssd"][0] <= fastest[0] else "no",
        )
        row("PG 1. `SELECT 42` round trip, p90 (ms)", [fmt(trip[n][1]) for n in names], "", "")
        row(
            "PG 1. round trip vs fastest peer",
            [fmt(trip[n][0] / fastest[0], "×", 2) if fastest[0] else "n/a" for n in names],
            "",
            "",
        )
        row(
            "PG 1. rssd `SELECT 42` by phase (ms, medians)",
            [phases_text(trip_phases, trip["rssd"][0])] + rssd_only,
            "shown",
            "",
        )
        psycopg_trip = trip.get("ipython + psycopg", (None,))[0]
        row(
            "PG 1. RSSD records per cell: round trip over ipython + psycopg's (ms)",
            ["n/a" if psycopg_trip is None else f"{trip['rssd'][0] - psycopg_trip:+.1f}"]
            + rssd_only,
            "shown",
            "",
        )
        row(
            "PG 1. server transactions per `SELECT 42` cell",
            [fmt(records[n][0]) for n in names],
            "shown",
            "",
        )
        row(
            "PG 1. server active time per `SELECT 42` cell (ms)",
            [fmt(records[n][1], digits=2) for n in names],
            "shown",
            "",
        )
        row(
            "PG 1. RSSD rows written per cell (inserted + updated + deleted)",
            [fmt(records["rssd"][2], digits=1)] + rssd_only,
            "shown",
            "",
        )
    if 3 in args.only:
        rssd_big = big["rssd"]
        row(
            "PG 3. `SELECT generate_series(1, 100000000)` answered (ms)",
            [_ms_or_why(big[n][0], big[n][1]) for n in names],
            "< 100 ms",
            "yes" if rssd_big[0] is not None and rssd_big[0] < 100 else "no",
        )
        row(
            "PG 3. the same again, in the same kernel (ms)",
            [_ms_or_why(big[n][2], big[n][2]) for n in names],
            "",
            "",
        )
        row(
            "PG 3. kernel peak RSS (MB)",
            [fmt(big[n][1], digits=0) if big[n][0] is not None else "n/a" for n in names],
            "< 150 MB",
            "yes" if rssd_big[0] is not None and rssd_big[1] < 150 else "no",
        )
    notes = ["Each kernel has a database of its own on the one server."]
    if 1 in args.only:
        notes.append(
            f"{rounds} round trips per kernel, alternated, after 10 to warm up; rssd by "
            "phase as in the DuckDB table. The server's counts per cell (pg_stat_database, "
            "pg_stat_user_tables) are those of a kernel's whole life with "
            f"{cells} `SELECT 42` cells 0.1 s apart, less one with none. rssd's records are "
            "written by a background thread in the pauses between cells, so they are not all "
            "in its round trip."
        )
    if 3 in args.only:
        notes.append(
            f"A peer still busy after {PG_BIG_SECONDS} s or holding over {PG_BIG_MAX_MB:,} MB "
            "is stopped. The server has PostgreSQL's default settings (tests/pg_server.py: "
            "fsync = off aside), so jit = on: a query of large estimated cost, as the "
            "100M-row one, is compiled, and the first on a connection loads LLVM."
        )
    lines += ["", " ".join(notes)]
    return lines


def _ms_or_why(ms, why) -> str:
    """A time in ms, or n/a with why there is none (a run stopped, say)."""
    if isinstance(ms, (int, float)):
        return fmt(ms)
    return f"n/a ({why})" if isinstance(why, str) else "n/a"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="round trips per kernel")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds and smaller data (the ingest's CSV aside)",
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated peers to measure (default: {','.join(PEERS)}; empty: rssd alone; "
        "ipython and jupysql are the PostgreSQL peers too)",
    )
    parser.add_argument(
        "--output",
        default=os.path.join(HERE, "RESULTS.md"),
        help="where the Markdown tables go (default: bench/RESULTS.md)",
    )
    parser.add_argument(
        "--pg",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure on a throwaway PostgreSQL server (default: on; reported as "
        "skipped where PostgreSQL's programs are missing)",
    )
    parser.add_argument(
        "--pg-only", action="store_true", help="only the PostgreSQL part (implies --pg)"
    )
    parser.add_argument(
        "--only",
        default=",".join(map(str, MEASURES)),
        help="comma-separated numbers of the measures to take, as numbered in the tables "
        "(default: all, 1-8; 1 and 3 are also PG 1 and PG 3): e.g. 1,8 to check the round "
        "trip and the ingest without the others' minutes",
    )
    args = parser.parse_args(argv)
    try:
        args.only = {int(n) for n in args.only.split(",") if n.strip()}
    except ValueError:
        parser.error(f"--only takes measure numbers ({MEASURES[0]}-{MEASURES[-1]}), "
                     f"not {args.only!r}")  # fmt: skip
    if not args.only or not args.only <= set(MEASURES):
        parser.error(f"--only takes measure numbers {MEASURES[0]}-{MEASURES[-1]}")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        parser.error(f"unknown peer {', '.join(unknown)}; the peers are {', '.join(PEERS)}")
    if args.pg_only and not args.pg:
        parser.error("--pg-only and --no-pg contradict each other")
    rounds = 30 if args.quick else args.rounds
    workdir = tempfile.mkdtemp(prefix="rssd-bench-")
    specs = os.path.join(workdir, "jupyter")
    os.environ["JUPYTER_PATH"] = specs + os.pathsep + os.environ.get("JUPYTER_PATH", "")
    lines = [f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
             f"{platform.python_version()}, DuckDB {duckdb.__version__} (rssd, ipython), "
             f"{time.strftime('%Y-%m-%d')}.", ""]  # fmt: skip
    status = 0
    if not args.pg_only:
        lines += duckdb_table(args, peers, rounds, specs, workdir)
    if args.pg or args.pg_only:
        pg_lines, status = postgres_table(args, peers, rounds, specs, workdir)
        lines += ([] if args.pg_only else [""]) + pg_lines
    report = "\n".join(lines)
    print(report)
    with open(args.output, "w") as handle:
        handle.write(report + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
