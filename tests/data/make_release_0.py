"""Made tests/data/release-0.duckdb.gz with rssd-kernel 0.1.0 (commit 20c1699), the release
before keys by occurrence; then `gzip -9 release-0.duckdb`. The upgrade test opens it."""

import os

os.environ["RSSD_DATABASE"] = "release-0.duckdb"
from rssd_kernel.runner import Runner

r = Runner()
for code in [
    "CREATE TABLE t (x INT)",
    "INSERT INTO t VALUES (1), (2)",
    "-- @name total\nSELECT sum(x) AS total FROM t",
    "-- @name make_u\nCREATE TABLE u AS SELECT 42 AS y",
    "SELECT count(*) FROM t",
]:
    o = r.run(code)
    print(o.status, o.metadata.get("key"))
r.close()
