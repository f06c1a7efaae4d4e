"""The `rssd` command: install, and headless runs of notebooks that fail and resume."""

import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest
from conftest import held_by_another_program, read_db
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOKS = os.path.join(HERE, "..", "notebooks")


def rssd(*args, cwd=None, timeout=180):
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    return subprocess.run(
        [sys.executable, "-m", "rssd_kernel.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def normalised(nb) -> list:
    """Each code cell's outputs without what legitimately differs between runs."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outs = []
        for out in cell.outputs:
            data = out.get("data", {}).get("text/plain", out.get("text", out.get("evalue", "")))
            lines = [
                line
                for line in data.splitlines()
                if "stateful cell" not in line and "replayed" not in line
            ]
            outs.append("\n".join(lines))
        cells.append(outs)
    return cells


def make_notebook(path, sources):
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "rssd", "display_name": "rssd", "language": "sql"}}
    )
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)


def test_install_into_a_prefix(tmp_path):
    result = rssd("install", "--prefix", str(tmp_path))
    assert result.returncode == 0, result.stderr
    spec = json.loads((tmp_path / "share/jupyter/kernels/rssd/kernel.json").read_text())
    assert spec["argv"][1:3] == ["-m", "rssd_kernel"] and spec["language"] == "sql"
    assert (tmp_path / "share/jupyter/kernels/rssd/logo-64x64.png").exists()


def test_quickstart_runs_twice_and_replays(tmp_path):
    shutil.copy(os.path.join(NOTEBOOKS, "quickstart.ipynb"), tmp_path / "quickstart.ipynb")
    first = rssd("run", "quickstart.ipynb", "-o", "first.ipynb", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "replayed 0, failed 0" in first.stdout and str(tmp_path / "rssd.duckdb") in first.stdout
    second = rssd("run", "quickstart.ipynb", "-o", "second.ipynb", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "replayed 1, failed 0" in second.stdout
    assert "cell 1/4: replayed" in second.stderr
    one = nbformat.read(tmp_path / "first.ipynb", as_version=4)
    two = nbformat.read(tmp_path / "second.ipynb", as_version=4)
    assert normalised(one)[:3] == normalised(two)[:3]
    db = str(tmp_path / "rssd.duckdb")
    assert read_db(db, "SELECT count(*) FROM orders") == [(500,)]
    assert read_db(db, "SELECT DISTINCT ingest_src FROM orchestration_session_entry") == [
        (str(tmp_path / "quickstart.ipynb"),)
    ]


def test_quickstart_executes_with_nbclient(tmp_path):
    nb = nbformat.read(os.path.join(NOTEBOOKS, "quickstart.ipynb"), as_version=4)
    env = {**os.environ, "RSSD_DATABASE": str(tmp_path / "q.duckdb")}
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute(
        env=env
    )
    assert all(
        o.output_type != "error" for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )


DYING_KERNEL = """
import os
from ipykernel.kernelapp import IPKernelApp
from rssd_kernel.kernel import RssdKernel

class Dying(RssdKernel):
    async def do_execute(self, code, *args, **kwargs):
        if "crash here" in code:
            os.write(2, b"simulated crash: the kernel process exits\\n")  # as a C++ abort would
            os._exit(3)
        return await super().do_execute(code, *args, **kwargs)

IPKernelApp.launch_instance(kernel_class=Dying)
"""


def test_a_kernel_that_dies_fails_the_run_with_its_last_words(tmp_path, monkeypatch):
    folder = tmp_path / "jupyter" / "kernels" / "rssd"  # found before the installed one
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-c", DYING_KERNEL, "-f", "{connection_file}"],
            "display_name": "rssd (dies)", "language": "sql"}  # fmt: skip
    (folder / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    path = tmp_path / "crash.ipynb"
    make_notebook(path, ["CREATE TABLE a AS SELECT 1 AS x", "SELECT 'crash here'", "SELECT 3"])
    run = rssd("run", str(path))
    assert run.returncode == 1
    assert "the rssd kernel died while running cell 2 of 3" in run.stderr, run.stderr
    assert "simulated crash: the kernel process exits" in run.stderr
    assert "Traceback" not in run.stderr
    assert read_db(str(tmp_path / "rssd.duckdb"), "SELECT count(*) FROM a") == [(1,)]


def test_failure_exits_non_zero_and_resume_carries_on(tmp_path):
    path = tmp_path / "pipeline.ipynb"
    make_notebook(
        path,
        [
            "CREATE TABLE a AS SELECT 1 AS x",
            "SELECT * FROM missing_table",
            "CREATE TABLE b AS SELECT 2 AS y",
        ],
    )
    failed = rssd("run", str(path))
    assert failed.returncode == 1
    assert "cell 2 of 3 failed" in failed.stderr and "Catalog Error" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert "IPKernelApp" not in failed.stderr  # the kernel's own log stays out of the output
    written = nbformat.read(path, as_version=4)
    assert written.cells[1].outputs[-1].output_type == "error"
    make_notebook(
        path,
        [
            "CREATE TABLE a AS SELECT 1 AS x",
            "SELECT 'fixed' AS s",
            "CREATE TABLE b AS SELECT 2 AS y",
        ],
    )
    resumed = rssd("run", str(path))
    assert resumed.returncode == 0, resumed.stderr
    assert "ran 2, replayed 1, failed 0" in resumed.stdout
    db = str(tmp_path / "rssd.duckdb")
    assert read_db(db, "SELECT count(*) FROM a") == [(1,)]


def test_parameters_become_variables(tmp_path):
    path = tmp_path / "report.ipynb"
    make_notebook(
        path, ["SELECT getvariable('region') AS region, getvariable('limit_rows') + 1 AS n"]
    )
    result = rssd(
        "run", str(path), "-p", "region", "north'; DROP TABLE x; --", "-p", "limit_rows", "41"
    )
    assert result.returncode == 0, result.stderr
    nb = nbformat.read(path, as_version=4)
    text = nb.cells[-1].outputs[0]["data"]["text/plain"]
    assert "north'; DROP TABLE x; --" in text and "42" in text
    rows = read_db(str(tmp_path / "rssd.duckdb"), "SELECT args_json FROM orchestration_session")
    assert json.loads(rows[0][0])["parameters"]["limit_rows"]["value"] == "41"


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "no-such.ipynb"], "No notebook at no-such.ipynb"),
        (["run"], "the following arguments are required"),
    ],
)
def test_bad_input_gives_clean_messages(tmp_path, args, message):
    result = rssd(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_every_command_is_documented_in_the_readme():
    from rssd_kernel.cli import build_parser
    from rssd_kernel.commands import COMMANDS

    readme = open(os.path.join(HERE, "..", "README.md")).read()
    subcommands = build_parser()._subparsers._group_actions[0].choices
    for name in subcommands:
        assert f"rssd {name}" in readme, name
    for name in COMMANDS:
        assert f"%{name}" in readme, name


def test_provenance_commands(tmp_path):
    shutil.copy(os.path.join(NOTEBOOKS, "quickstart.ipynb"), tmp_path / "quickstart.ipynb")
    assert rssd("run", "quickstart.ipynb", cwd=tmp_path).returncode == 0
    db = str(tmp_path / "rssd.duckdb")
    sessions = json.loads(rssd("sessions", "--database", db, "--json").stdout)
    assert len(sessions) == 1 and sessions[0]["cells"] == 4 and sessions[0]["errors"] == 0
    log = json.loads(rssd("log", sessions[0]["session"], "--database", db, "--json").stdout)
    cells = [e for e in log if e["parent"] is None]
    assert len(cells) == 4 and all(e["status"] == 0 for e in log)
    shown = rssd("show", cells[0]["exec"], "--database", db)
    assert shown.returncode == 0 and "CREATE TABLE orders" in shown.stdout
    state = json.loads(rssd("state", "--database", db, "--json").stdout)
    assert {s["state"] for s in state} == {"EXECUTED", "EVALUATED"}
    table = rssd("sessions", "--database", db)
    assert sessions[0]["session"] in table.stdout


def test_provenance_waits_for_a_kernel_and_names_a_holder_that_never_lets_go(
    kernel_factory, tmp_path
):
    db = str(tmp_path / "rssd.duckdb")
    kernel = kernel_factory()
    session = kernel.ok("SELECT 1").rssd["session_id"]
    result = rssd("sessions", "--database", db)  # the idle kernel lets the file go
    assert result.returncode == 0 and session in result.stdout, result.stderr
    kernel.shutdown()
    with held_by_another_program(db) as pid:
        result = rssd("sessions", "--database", db, "--wait", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "waiting for" in result.stderr and f"PID {pid}" in result.stderr
    assert "stayed in use" in result.stderr and "not an rssd kernel" in result.stderr


def test_progress_is_a_live_bar_on_a_terminal(tmp_path):
    shutil.copy(os.path.join(NOTEBOOKS, "quickstart.ipynb"), tmp_path / "quickstart.ipynb")
    main, secondary = os.openpty()
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rssd_kernel.cli", "run", "quickstart.ipynb"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed: the run ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=120) == 0
    os.close(main)
    screen = b"".join(chunks).decode()
    assert "\r\x1b[K[" in screen and "cell 2/4: running" in screen
    assert "[##############################] cell 4/4: ran" in screen


def test_timeout_interrupts_the_cell_and_fails_the_run(tmp_path):
    path = tmp_path / "slow.ipynb"
    make_notebook(
        path,
        [
            "SELECT 1",
            "SELECT count(*) FROM range(100000000000) a WHERE hash(a.range) > 0",
            "SELECT 3",
        ],
    )
    result = rssd("run", str(path), "--timeout", "2")
    assert result.returncode == 1
    assert "cell 2 of 3 failed: Interrupted" in result.stderr and "--timeout 2 s" in result.stderr
    statuses = read_db(
        str(tmp_path / "rssd.duckdb"),
        """SELECT exec_status FROM orchestration_session_exec
        WHERE parent_exec_id IS NULL ORDER BY orchestration_session_exec_id""",
    )
    assert statuses == [(0,), (2,)]


@pytest.mark.parametrize(
    "command",
    [
        [
            "jupyter",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "quickstart.ipynb",
            "--output",
            "converted.ipynb",
        ],
        ["jupyter", "execute", "quickstart.ipynb"],
    ],
)
def test_plain_jupyter_tools_run_rssd_notebooks(tmp_path, command):
    shutil.copy(os.path.join(NOTEBOOKS, "quickstart.ipynb"), tmp_path / "quickstart.ipynb")
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    binary = os.path.join(os.path.dirname(sys.executable), command[0])
    result = subprocess.run(
        [binary, *command[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    assert read_db(str(tmp_path / "rssd.duckdb"), "SELECT count(*) FROM orders") == [(500,)]


def test_an_output_folder_that_does_not_exist_is_refused_before_anything_runs(tmp_path):
    """Else the cells would run (a stateful one applied) and the executed notebook be lost."""
    shutil.copy(os.path.join(NOTEBOOKS, "quickstart.ipynb"), tmp_path / "q.ipynb")
    result = rssd("run", "q.ipynb", "-o", "missing/out.ipynb", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "does not exist or cannot be written. Nothing ran." in result.stderr
    assert not (tmp_path / "rssd.duckdb").exists()
    (tmp_path / "folder").mkdir()
    result = rssd("run", "q.ipynb", "-o", "folder", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "folder is a folder" in result.stderr and not (tmp_path / "rssd.duckdb").exists()
