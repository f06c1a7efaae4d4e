"""What a session leaves in the RSSD tables of the database file."""

import json
import os
import re
import socket
import subprocess
import sys

import duckdb
import pytest
from conftest import read_db

from rssd_kernel.database import SCHEMA_VERSION, open_database, rssd_tables
from rssd_kernel.runner import _reads_rssd

SCRIPT = [
    "SELECT 42 AS answer",
    "CREATE TABLE items AS SELECT range AS id FROM range(3); INSERT INTO items VALUES (10)",
    "SELECT * FROM nosuch",
    "%help",
    "",
    "BEGIN",
    "SELECT 1",
    "ROLLBACK",
]


@pytest.fixture
def scripted(kernel, tmp_path):
    for code in SCRIPT:
        kernel.execute(code)
    kernel.shutdown()
    return str(tmp_path / "rssd.duckdb")


def test_session_device_nature_entry(scripted):
    rows = read_db(
        scripted,
        """
        SELECT s.version, s.args_json, s.orch_finished_at IS NOT NULL, s.diagnostics_json,
               s.diagnostics_md, d.name, n.orchestration_nature_id, e.ingest_src
        FROM orchestration_session s JOIN device d USING (device_id)
        JOIN orchestration_nature n USING (orchestration_nature_id)
        JOIN orchestration_session_entry e ON e.session_id = s.orchestration_session_id""",
    )
    assert len(rows) == 1
    version, args, finished, diagnostics, md, device, nature, entry = rows[0]
    args = json.loads(args)
    assert args["database"] == scripted and args["duckdb_version"] == duckdb.__version__
    assert "python_version" in args and "options" in args
    assert finished
    diagnostics = json.loads(diagnostics)
    assert diagnostics["cells"] == len(SCRIPT) and diagnostics["errors"] == 1
    assert diagnostics["statements"] >= 6 and "duration_s" in diagnostics
    assert "cells" in md
    assert device == socket.gethostname()
    assert nature == "rssd-kernel-sql-notebook"
    assert entry == "rssd:unknown-notebook"


def test_execs_statements_and_status_codes(scripted):
    cells = read_db(
        scripted,
        """
        SELECT exec_nature, exec_status, exec_code, output_nature, elaboration, narrative_md,
               (SELECT count(*) FROM orchestration_session_exec c
                 WHERE c.parent_exec_id = p.orchestration_session_exec_id)
        FROM orchestration_session_exec p WHERE parent_exec_id IS NULL
        ORDER BY orchestration_session_exec_id""",
    )
    assert [c[2] for c in cells] == SCRIPT
    assert [c[0] for c in cells] == [
        "SQL",
        "SQL",
        "SQL",
        "kernel-command",
        "SQL",
        "SQL",
        "SQL",
        "SQL",
    ]
    assert [c[1] for c in cells] == [0, 0, 1, 0, 0, 0, 0, 0]
    assert [c[6] for c in cells] == [1, 2, 1, 0, 0, 1, 1, 1]
    elaboration = json.loads(cells[0][4])
    assert elaboration["execution_count"] == 1 and "duration_ms" in elaboration
    nature = json.loads(cells[0][3])
    assert nature["columns"] == [{"name": "answer", "type": "INTEGER"}]
    assert nature["statement_type"] == "SELECT"
    assert all(c[5] for c in cells)
    children = read_db(
        scripted,
        """
        SELECT exec_code, exec_status, output_text FROM orchestration_session_exec
        WHERE parent_exec_id IS NOT NULL ORDER BY orchestration_session_exec_id""",
    )
    assert children[1][0].startswith("CREATE TABLE items") and children[2][2] == "1 row inserted"


def test_errors_write_issues(scripted):
    issues = read_db(
        scripted,
        """
        SELECT issue_type, issue_message, elaboration FROM orchestration_session_issue""",
    )
    assert len(issues) == 1
    assert issues[0][0] == "Catalog Error" and "nosuch" in issues[0][1]


def test_log_header_convention(scripted):
    con = duckdb.connect(scripted, read_only=True)
    execs = con.execute(
        "SELECT orchestration_session_exec_id FROM orchestration_session_exec"
    ).fetchall()
    headers = con.execute("""
        SELECT CAST(orchestration_session_log_id AS VARCHAR) FROM orchestration_session_log
        WHERE parent_exec_id IS NULL""").fetchall()
    assert sorted(execs) == sorted(headers)
    lines = con.execute("""
        SELECT l.category, l.sibling_order, e.exec_status FROM orchestration_session_log l
        JOIN orchestration_session_exec e
          ON CAST(l.parent_exec_id AS VARCHAR) = e.orchestration_session_exec_id""").fetchall()
    assert ("error", 1, 1) in lines
    con.close()


def test_json_columns_are_valid_and_constraints_hold(scripted):
    con = duckdb.connect(scripted, read_only=True)
    for table in rssd_tables():
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
            ).fetchall()
        ]
        for column in columns:
            if column in (
                "elaboration",
                "args_json",
                "diagnostics_json",
                "output_nature",
                "transition_result",
                "state",
                "state_sysinfo",
            ):
                bad = con.execute(
                    f'SELECT count(*) FROM "{table}" WHERE "{column}" IS NOT NULL '
                    f'AND NOT json_valid("{column}")'
                ).fetchall()[0][0]
                assert bad == 0, (table, column)
    orphans = con.execute("""
        SELECT count(*) FROM orchestration_session_exec c WHERE parent_exec_id IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM orchestration_session_exec p
                        WHERE p.orchestration_session_exec_id = c.parent_exec_id)""").fetchall()
    assert orphans == [(0,)]
    con.close()


def test_user_rollback_does_not_remove_records(scripted):
    rows = read_db(
        scripted,
        "SELECT count(*) FROM orchestration_session_exec WHERE exec_code = 'SELECT 1' AND parent_exec_id IS NULL",
    )
    assert rows == [(1,)]


def test_rssd_is_queryable_from_a_cell(kernel):
    kernel.ok("SELECT 1")
    reply = kernel.ok(
        "SELECT count(*) AS n FROM orchestration_session_exec WHERE parent_exec_id IS NULL"
    )
    assert "<td>1</td>" in reply.html


@pytest.mark.parametrize(
    "code",
    ["FROM ORCHESTRATION_SESSION_EXEC", "select * from Device", 'FROM "rssd_Schema_Version"',
     "FROM orchestratİon_session", "SELECT 1 -- see orchestration_session_log"],
)  # fmt: skip
def test_a_cell_naming_an_rssd_table_in_any_case_first_waits_for_the_records(code):
    """Such a cell sees every execution before it (runner.py flushes the writer first)."""
    assert _reads_rssd(code)
    assert not _reads_rssd("SELECT device_id FROM devices, orchestration")  # waits for nothing


def test_device_is_reused_across_sessions(kernel_factory, tmp_path):
    for _ in range(2):
        k = kernel_factory()
        k.ok("SELECT 1")
        k.shutdown()
    db = str(tmp_path / "rssd.duckdb")
    assert read_db(db, "SELECT count(*) FROM device") == [(1,)]
    assert read_db(db, "SELECT count(*) FROM orchestration_session") == [(2,)]


def test_notebook_path_from_jpy_session_name(kernel_factory, tmp_path):
    k = kernel_factory(env={"JPY_SESSION_NAME": "/work/analysis.ipynb"})
    k.ok("SELECT 1")
    k.shutdown()
    db = str(tmp_path / "rssd.duckdb")
    assert read_db(db, "SELECT ingest_src FROM orchestration_session_entry") == [
        ("/work/analysis.ipynb",)
    ]


def test_default_file_is_in_the_working_directory(kernel_factory, tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    k = kernel_factory(database=None, cwd=folder)
    k.ok("SELECT 1")
    k.shutdown()
    assert (folder / "rssd.duckdb").exists()


def test_open_switches_files_and_ends_the_session(kernel, tmp_path):
    other = str(tmp_path / "other.duckdb")
    reply = kernel.ok(f"%open {other}")
    assert other in reply.text
    kernel.ok("CREATE TABLE only_here AS SELECT 1 AS x")
    kernel.shutdown()
    first = str(tmp_path / "rssd.duckdb")
    assert read_db(
        first, "SELECT count(*) FROM orchestration_session WHERE orch_finished_at IS NOT NULL"
    ) == [(1,)]
    assert read_db(other, "SELECT count(*) FROM only_here") == [(1,)]


def test_locked_file_gives_a_clear_error_every_cell(kernel_factory, tmp_path):
    db = str(tmp_path / "locked.duckdb")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,sys; c=duckdb.connect({db!r}); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        k = kernel_factory(database=db)
        k.ok("%config wait_s=1")  # the holder never lets go: a short wait, then the error
        for _ in range(2):
            reply = k.execute("SELECT 1")
            assert reply.status == "error"
            assert reply.content["ename"] == "Database Locked"
            message = reply.content["evalue"]
            assert db in message and str(holder.pid) in message
            assert "%open" in message and "RSSD_DATABASE" in message
            assert "Traceback" not in "\n".join(reply.content["traceback"])
        ok = k.ok(f"%open {tmp_path / 'free.duckdb'}")
        assert "free.duckdb" in ok.text
        k.ok("SELECT 1")
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_schema_is_versioned_and_newer_is_refused(tmp_path):
    db = str(tmp_path / "v.duckdb")
    con = open_database(db)
    assert con.execute("SELECT max(version) FROM rssd_schema_version").fetchall() == [
        (SCHEMA_VERSION,)
    ]
    con.execute("INSERT INTO rssd_schema_version (version, package_version) VALUES (99, '9.9')")
    con.close()
    with pytest.raises(Exception, match="newer rssd-kernel"):
        open_database(db)


def test_constraints_are_enforced_not_weakened(tmp_path):
    con = open_database(str(tmp_path / "c.duckdb"))
    with pytest.raises(duckdb.ConstraintException):
        con.execute(
            "INSERT INTO orchestration_session_exec (orchestration_session_exec_id, exec_nature, "
            "session_id, exec_code, exec_status) VALUES ('x', 'SQL', 'no-such-session', '', 0)"
        )
    with pytest.raises(duckdb.ConstraintException):
        con.execute(
            "INSERT INTO orchestration_nature (orchestration_nature_id, nature, elaboration) "
            "VALUES ('n', 'n', 'not json')"
        )
    con.close()


SEEDS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "seeds")
SEED_DDL = os.path.join(os.path.dirname(__file__), "seed_ddl.sql")
SEED_TABLES = [
    "orchestration_session",
    "orchestration_session_entry",
    "orchestration_session_exec",
    "orchestration_session_log",
    "orchestration_session_state",
]


def _seed_ddl_copy() -> dict[str, str]:
    """The DDL blocks of tests/seed_ddl.sql, by the seed file each was copied from."""
    text = open(SEED_DDL).read()
    blocks = re.findall(r"^-- seed: (\S+)\n(.*?)\n;$", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) == text.count("\n-- seed: "), "a block of seed_ddl.sql is malformed"
    return dict(blocks)


def _seed_ddl_from_seeds() -> dict[str, str]:
    """The ```sql block of each seed document in ../shared/seeds."""
    ddl = {}
    for name in sorted(os.listdir(SEEDS)):
        text = open(os.path.join(SEEDS, name)).read()
        ddl[name] = text.split("```sql\n", 1)[1].split("\n```", 1)[0]
    return ddl


def test_schema_sql_is_the_seed_ddl():
    """The five orchestration tables are the seed documents' DDL, verbatim (as kept in
    tests/seed_ddl.sql, which must still match the seeds where they are present)."""
    here = os.path.dirname(__file__)
    schema = open(os.path.join(here, "..", "rssd_kernel", "schema.sql")).read()
    copy = _seed_ddl_copy()
    tables = sorted(re.match(r'CREATE TABLE "(\w+)" \(\n', ddl).group(1) for ddl in copy.values())
    assert tables == SEED_TABLES, tables
    for name, ddl in copy.items():
        assert ddl in schema, name
    if os.path.isdir(SEEDS):
        assert copy == _seed_ddl_from_seeds(), "tests/seed_ddl.sql no longer matches the seeds"
