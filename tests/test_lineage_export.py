"""Ingestion lineage entries, and the RSSD exported into SQLite and read back."""

import json
import sqlite3

import duckdb
from conftest import read_db
from test_cli import rssd


def test_lineage_for_csv_and_parquet(kernel, tmp_path):
    (tmp_path / "people.csv").write_text("id,name\n1,ada\n2,grace\n")
    duckdb.sql(f"COPY (SELECT 3 AS id, 'edsger' AS name) TO '{tmp_path / 'more.parquet'}'")
    kernel.ok(
        "CREATE TABLE people AS SELECT * FROM read_csv('people.csv');\n"
        "INSERT INTO people SELECT * FROM read_parquet('more.parquet');"
    )
    kernel.ok("SELECT * FROM read_csv('people.csv')")  # a read, not an ingest
    kernel.ok("COPY people TO 'out.csv'")
    kernel.shutdown()
    rows = read_db(
        str(tmp_path / "rssd.duckdb"),
        """
        SELECT ingest_src, ingest_table_name, elaboration FROM orchestration_session_entry
        WHERE json_extract_string(elaboration, '$.kind') = 'ingest' ORDER BY ingest_src""",
    )
    assert [(r[0], r[1]) for r in rows] == [("more.parquet", "people"), ("people.csv", "people")]
    details = json.loads(rows[1][2])
    assert details["resolved_path"] == str(tmp_path / "people.csv")
    assert details["size"] == len("id,name\n1,ada\n2,grace\n")
    assert len(details["sha256"]) == 64 and details["modified_at"]


def test_export_rssd_to_sqlite_twice(kernel, tmp_path):
    kernel.ok("CREATE TABLE t AS SELECT 1 AS a")
    kernel.execute("SELECT * FROM nosuch")
    kernel.shutdown()
    db, out = str(tmp_path / "rssd.duckdb"), str(tmp_path / "rssd.sqlite")
    for _ in range(2):
        result = rssd("export-rssd", out, "--database", db)
        assert result.returncode == 0, result.stderr
    lite = sqlite3.connect(out)
    for table in [
        "orchestration_session",
        "orchestration_session_exec",
        "orchestration_session_log",
        "orchestration_session_state",
        "orchestration_session_issue",
        "device",
    ]:
        (count,) = lite.execute(f"SELECT count(*) FROM {table}").fetchone()
        assert [(count,)] == read_db(db, f"SELECT count(*) FROM {table}"), table
    assert lite.execute("PRAGMA foreign_key_check").fetchall() == []
    ddl = lite.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'orchestration_session_exec'"
    ).fetchone()[0]
    assert '"exec_status" INTEGER NOT NULL' in ddl
    (status,) = lite.execute(
        "SELECT exec_status FROM orchestration_session_exec WHERE exec_code = 'SELECT * FROM nosuch' AND parent_exec_id IS NULL"
    ).fetchone()
    assert status == 1


def test_export_of_a_missing_database_is_a_clear_message(tmp_path):
    result = rssd(
        "export-rssd", str(tmp_path / "x.sqlite"), "--database", str(tmp_path / "none.duckdb")
    )
    assert (
        result.returncode == 1
        and "No database at" in result.stderr
        and "Traceback" not in result.stderr
    )
