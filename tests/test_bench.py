"""`python -m bench` itself: it runs end to end and reports a peer it cannot install as
skipped. (The targets are judged by a full run, not here: see README, Performance.)"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURES = [
    "1. `SELECT 42` round trip, median (ms)",
    "2. heavy query overhead over in-process",
    "3. 100M-row SELECT answered (ms)",
    "3. kernel peak RSS (MB)",
    "4. notebook: second run / first run (cell time)",
    "5. round trip with 20,000 execs vs fresh (ms)",
    "5. replay of an applied cell, full vs fresh history (ms)",
    "6. start-up to kernel_info reply (ms)",
]


def test_quick_bench_measures_rssd_and_reports_an_uninstallable_peer_as_skipped(tmp_path):
    output = tmp_path / "RESULTS.md"
    env = {
        **os.environ,
        "RSSD_BENCH_PEERS": str(tmp_path / "peers"),
        # An index that cannot be reached: installing the peer fails, quickly.
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "2",
        "PIP_NO_CACHE_DIR": "1",
    }
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--peers", "jupyter-duckdb",
         "--output", str(output)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "jupyter-duckdb could not be installed" in run.stderr
    table = output.read_text()
    assert "Skipped (could not be installed): jupyter-duckdb." in table
    assert "| measure | rssd | target | met |" in table
    for measure in MEASURES:
        line = next((x for x in table.splitlines() if x.startswith(f"| {measure}")), None)
        assert line is not None, measure
        rssd_cell = line.split("|")[2]
        assert re.search(r"\d", rssd_cell), line  # a number was measured
    assert "≤ fastest peer (none measured) | n/a |" in table


def test_unknown_peer_is_a_clear_error():
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--peers", "postgres"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert "unknown peer postgres; the peers are ipython, jupysql, jupyter-duckdb" in run.stderr
    assert "Traceback" not in run.stderr
