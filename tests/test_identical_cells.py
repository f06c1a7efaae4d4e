"""Two identical unnamed cells in one notebook are two cells: both apply on the first run
and both replay on the second, whichever headless client runs the notebook."""

import os
import subprocess
import sys

import nbformat
import pytest
from conftest import read_db

CELLS = [
    "CREATE TABLE log (msg VARCHAR)",
    "INSERT INTO log VALUES ('same')",
    "INSERT INTO log VALUES ('same')",
    "CREATE SEQUENCE seq",
    "DROP SEQUENCE seq",
    "CREATE SEQUENCE seq",
]


def _notebook(path):
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "rssd", "display_name": "rssd", "language": "sql"}}
    )
    nb.cells = [nbformat.v4.new_code_cell(code) for code in CELLS]
    nbformat.write(nb, path)


COMMANDS = {
    "rssd run": lambda nb, out: [os.path.join(os.path.dirname(sys.executable), "rssd"), "run", nb],
    "nbconvert": lambda nb, out: [
        sys.executable,
        "-m",
        "jupyter",
        "nbconvert",
        "--to",
        "notebook",
        "--execute",
        nb,
        "--output",
        out,
    ],  # fmt: skip
    "papermill": lambda nb, out: [
        sys.executable,
        "-m",
        "papermill",
        nb,
        out,
        "-k",
        "rssd",
        "--cwd",
        os.path.dirname(nb),
    ],  # fmt: skip
}


@pytest.mark.parametrize("client", sorted(COMMANDS))
def test_identical_cells_apply_once_each(tmp_path, client):
    source = str(tmp_path / "twice.ipynb")
    _notebook(source)
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    for run in (1, 2):
        out = str(tmp_path / f"out{run}.ipynb")
        done = subprocess.run(COMMANDS[client](source, out), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, (client, run, done.stdout[-2000:], done.stderr[-2000:])
    db = str(tmp_path / "rssd.duckdb")
    assert read_db(db, "SELECT count(*) FROM log") == [(2,)]
    assert read_db(db, "SELECT count(*) FROM duckdb_sequences()") == [(1,)]
    replays = read_db(
        db,
        "SELECT count(*) FILTER (WHERE json_extract(elaboration, '$.replayed')::BOOLEAN), "
        "count(*) FROM orchestration_session_exec WHERE parent_exec_id IS NULL",
    )
    assert replays == [(len(CELLS), 2 * len(CELLS))]


@pytest.mark.parametrize("client", sorted(COMMANDS))
def test_identical_cells_on_postgresql(tmp_path, client, pg_url):
    """The same, with every headless client, on a PostgreSQL database ($RSSD_DATABASE)."""
    from test_postgres import read_pg

    source = str(tmp_path / "twice.ipynb")
    _notebook(source)
    env = {**os.environ, "RSSD_DATABASE": pg_url, "XDG_STATE_HOME": str(tmp_path / "state")}
    for run in (1, 2):
        out = str(tmp_path / f"out{run}.ipynb")
        done = subprocess.run(COMMANDS[client](source, out), cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, (client, run, done.stdout[-2000:], done.stderr[-2000:])
    assert read_pg(pg_url, "SELECT count(*) FROM log") == [(2,)]
    assert read_pg(pg_url, "SELECT count(*) FROM pg_sequences") == [(1,)]
    replays = read_pg(
        pg_url,
        "SELECT count(*) FILTER (WHERE rssd.json_extract_string(elaboration, '$.replayed') "
        "= 'true'), count(*) FROM rssd.orchestration_session_exec WHERE parent_exec_id IS NULL",
    )
    assert replays == [(len(CELLS), 2 * len(CELLS))]
