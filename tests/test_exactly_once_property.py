"""Property: generated cells whose statements write to random persistent or temporary
tables, run once, then again after a restart, leave every table with the same rows."""

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

counter = itertools.count()

# `t1` is both a TEMP table and a persistent one: unqualified, it means the TEMP table
# (DuckDB resolves TEMP first); `{db}.main.t1` is the persistent one.
TARGETS = ["p1", "p2", "main.p1", "t1", "t2", "temp.t2", "{db}.main.t1"]
FORMS = [
    "INSERT INTO {t} VALUES ({v})",
    "INSERT INTO {t} SELECT x + {v} FROM {t}",
    "DELETE FROM {t} WHERE x = {v}",
    "UPDATE {t} SET x = x + 1 WHERE x < {v}",
]
statement = st.builds(
    lambda form, target, value: form.format(t=target, v=value),
    st.sampled_from(FORMS),
    st.sampled_from(TARGETS),
    st.integers(0, 3),
)
cells = st.lists(st.lists(statement, min_size=1, max_size=3), min_size=1, max_size=5)
SETUP = [
    "CREATE TABLE p1 (x INT)",
    "CREATE TABLE p2 (x INT)",
    "CREATE TABLE t1 (x INT)",
    "CREATE TEMP TABLE t1 (x INT)",
    "CREATE TEMP TABLE t2 (x INT)",
]
COUNTS = (
    "SELECT (SELECT count(*) FROM p1) || ',' || (SELECT count(*) FROM p2) || ',' || "
    "(SELECT count(*) FROM {db}.main.t1) || ',' || (SELECT count(*) FROM temp.t1) || ',' || "
    "(SELECT count(*) FROM temp.t2) || ',' || (SELECT coalesce(sum(x), 0) FROM p1) AS counts"
)


def _run(kernel, path: str, db: str, notebook: list[str]) -> tuple[str, list[str]]:
    kernel.ok(f"%open {path}")
    for code in SETUP:
        kernel.ok(code)
    statuses = [kernel.execute(code).status for code in notebook]
    counts = kernel.ok(COUNTS.format(db=db)).text
    return counts.split("\n")[-2] if "\n" in counts else counts, statuses


def test_generated_cells_apply_once(kernel_factory, tmp_path):
    # One kernel for all examples, a fresh database file each: %open starts a new RSSD
    # session just as a new kernel would, and is much quicker.
    kernel = kernel_factory(cwd=tmp_path)

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(generated=cells)
    def check(generated):
        db = f"prop{next(counter)}"
        path = str(tmp_path / f"{db}.duckdb")
        notebook = [";\n".join(parts).format(db=db) for parts in generated]
        first, statuses = _run(kernel, path, db, notebook)
        kernel.restart()
        second, again = _run(kernel, path, db, notebook)
        assert second == first, notebook
        assert again == statuses, notebook

    check()
