"""Whatever fails while a stateful cell commits, the cell gets a clear error, an exec row,
and nothing of it is kept: running it again applies it. In-process (no kernel): the fault
is a connection whose COMMIT fails as it does when the disk fills at that moment."""

import duckdb
import pytest

from rssd_kernel.runner import Runner


class _CommitFails:
    """The kernel's connection, except that COMMIT fails with a disk-full error."""

    def __init__(self, con):
        self._con = con

    def commit(self):
        raise duckdb.IOException("IO Error: Could not write file: No space left on device")

    def __getattr__(self, name):
        return getattr(self._con, name)


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.setenv("RSSD_DATABASE", str(tmp_path / "rssd.duckdb"))
    runner = Runner()
    yield runner
    runner.close()


def test_a_failed_commit_keeps_nothing_and_is_recorded(runner):
    real = runner.con
    runner.con = _CommitFails(real)
    failed = runner.run("CREATE TABLE t AS SELECT 1 AS x")
    runner.con = real
    assert failed.status == "error"
    ename, evalue, _ = failed.error
    assert "disk is full" in evalue and "Internal" not in ename
    assert real.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 't'"
    ).fetchall() == [(0,)]
    applied = runner.run("CREATE TABLE t AS SELECT 1 AS x")
    assert applied.status == "ok" and applied.metadata["replayed"] is False
    assert runner.recorder.writer.flush(timeout=30)
    rows = runner.recorder.con.execute(
        "SELECT exec_status FROM orchestration_session_exec WHERE exec_code = ? "
        "AND parent_exec_id IS NULL ORDER BY orchestration_session_exec_id",
        ["CREATE TABLE t AS SELECT 1 AS x"],
    ).fetchall()
    assert rows == [(1,), (0,)]


def test_a_bug_in_the_runner_still_answers_and_records(runner, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("rssd_kernel.runner.CellExecution.run", broken)
    outcome = runner.run("SELECT 1")
    assert outcome.status == "error" and outcome.error[0] == "Internal Error"
    assert "carries on" in outcome.error[1]
    assert runner.recorder.writer.flush(timeout=30)
    rows = runner.recorder.con.execute(
        "SELECT exec_status FROM orchestration_session_exec WHERE exec_code = 'SELECT 1'"
    ).fetchall()
    assert rows == [(1,)]
