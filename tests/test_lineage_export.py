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
    assert len(details["digest"]) == 64 and details["digest_algorithm"] == "blake3"
    assert details["modified_at"]


# Every table export-rssd writes, with its primary key.
EXPORTED = {
    "device": "device_id",
    "orchestration_nature": "orchestration_nature_id",
    "orchestration_session": "orchestration_session_id",
    "orchestration_session_entry": "orchestration_session_entry_id",
    "orchestration_session_exec": "orchestration_session_exec_id",
    "orchestration_session_log": "orchestration_session_log_id",
    "orchestration_session_issue": "orchestration_session_issue_id",
    "orchestration_session_state": "orchestration_session_state_id",
    "rssd_schema_version": "version",
}


def _keys(rows) -> list:
    return sorted(str(key) for (key,) in rows)


def _assert_export_is_the_database(out: str, db: str) -> dict[str, list]:
    """The SQLite file holds each exported table's rows of the database, each once, and
    nothing else. Returns the primary keys per table."""
    lite = sqlite3.connect(out)
    try:
        keys = {}
        for table, key in EXPORTED.items():
            exported = _keys(lite.execute(f'SELECT "{key}" FROM "{table}"').fetchall())
            assert exported == _keys(read_db(db, f'SELECT "{key}" FROM "{table}"')), table
            keys[table] = exported
        assert lite.execute("PRAGMA foreign_key_check").fetchall() == []
        return keys
    finally:
        lite.close()


def test_export_rssd_to_sqlite_twice(kernel_factory, tmp_path):
    """Exporting into the same file again, after more cells ran, adds the new rows and
    duplicates nothing."""
    db, out = str(tmp_path / "rssd.duckdb"), str(tmp_path / "rssd.sqlite")
    kernel = kernel_factory()
    kernel.ok("CREATE TABLE t AS SELECT 1 AS a")
    kernel.execute("SELECT * FROM nosuch")
    kernel.shutdown()
    result = rssd("export-rssd", out, "--database", db)
    assert result.returncode == 0, result.stderr
    first = _assert_export_is_the_database(out, db)

    kernel = kernel_factory()  # a second session adds a session, execs, logs, a state row
    kernel.ok("CREATE TABLE u AS SELECT 2 AS b")
    kernel.execute("SELECT * FROM nosuch_either")
    kernel.shutdown()
    result = rssd("export-rssd", out, "--database", db)
    assert result.returncode == 0, result.stderr
    second = _assert_export_is_the_database(out, db)
    for table in (
        "orchestration_session",
        "orchestration_session_exec",
        "orchestration_session_log",
        "orchestration_session_state",
        "orchestration_session_issue",
    ):
        assert set(first[table]) < set(second[table]), table  # kept, and new rows added

    lite = sqlite3.connect(out)
    codes = lite.execute(
        "SELECT exec_code, exec_status FROM orchestration_session_exec "
        "WHERE parent_exec_id IS NULL ORDER BY exec_code"
    ).fetchall()
    assert codes == [
        ("CREATE TABLE t AS SELECT 1 AS a", 0),
        ("CREATE TABLE u AS SELECT 2 AS b", 0),
        ("SELECT * FROM nosuch", 1),
        ("SELECT * FROM nosuch_either", 1),
    ]
    ddl = lite.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'orchestration_session_exec'"
    ).fetchone()[0]
    assert '"exec_status" INTEGER NOT NULL' in ddl
    # The first session had finished before the first export; the second's end is there too.
    assert lite.execute(
        "SELECT count(*) FROM orchestration_session WHERE orch_finished_at IS NULL"
    ).fetchone() == (0,)
    lite.close()


def test_export_of_a_missing_database_is_a_clear_message(tmp_path):
    result = rssd(
        "export-rssd", str(tmp_path / "x.sqlite"), "--database", str(tmp_path / "none.duckdb")
    )
    assert (
        result.returncode == 1
        and "No database at" in result.stderr
        and "Traceback" not in result.stderr
    )
