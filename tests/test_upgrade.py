"""A file written by rssd-kernel 0.1.0 (tests/data/make_release_0.py) keeps working: its
stateful cells replay under the keys they had, its records stay valid, and its schema is
migrated in place (version 2 adds the change counter)."""

import gzip
import shutil
from pathlib import Path

from conftest import read_db

RELEASE_0 = Path(__file__).parent / "data" / "release-0.duckdb.gz"

# The cells make_release_0.py ran, in order.
CELLS = [
    "CREATE TABLE t (x INT)",
    "INSERT INTO t VALUES (1), (2)",
    "-- @name total\nSELECT sum(x) AS total FROM t",
    "-- @name make_u\nCREATE TABLE u AS SELECT 42 AS y",
    "SELECT count(*) FROM t",
]


def test_a_file_of_release_0_1_0_replays(kernel_factory, tmp_path):
    path = tmp_path / "rssd.duckdb"
    with gzip.open(RELEASE_0, "rb") as source:
        with open(path, "wb") as target:
            shutil.copyfileobj(source, target)
    before = read_db(str(path), "SELECT count(*) FROM orchestration_session_state")
    kernel = kernel_factory(str(path))
    replies = [kernel.ok(code) for code in CELLS]
    assert [r.rssd["replayed"] for r in replies] == [True, True, False, True, False]
    assert replies[0].rssd["key"] == "cell-8aae43a3fb746359"
    assert "3" in kernel.ok("SELECT $total AS total").text
    assert "2 rows" in kernel.ok("SELECT count(*) || ' rows' AS n FROM t").text
    new = kernel.ok("INSERT INTO t VALUES (3)")
    assert new.rssd["kind"] == "stateful" and new.rssd["replayed"] is False
    kernel.shutdown()
    after = read_db(str(path), "SELECT count(*) FROM orchestration_session_state")
    assert after[0][0] == before[0][0] + 2  # the named read cell again, and the new insert
    # Migrated in place to schema version 2 (the change counter of shared files).
    assert read_db(str(path), "SELECT max(version) FROM rssd_schema_version") == [(2,)]
    assert read_db(str(path), "SELECT count(*) FROM rssd_change_counter") == [(1,)]
    assert read_db(str(path), "SELECT count(*) FROM t") == [(3,)]
