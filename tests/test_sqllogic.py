"""DuckDB's own sqllogictest records, run through the kernel cell by cell, twice.

The corpus is ../shared/sqllogic (the repository's sibling folder; index.json describes the
records): SQL from DuckDB's test files, each record marked `duckdb_ok` where DuckDB alone
behaves as the record says. Each file is one test. It runs top to bottom, one record per
cell, in a kernel of its own on a fresh database file, with `{TESTDIR}` a scratch folder of
the file's own. Then the kernel restarts (shut down as a client does, the file read, a new
kernel on the same file) and every record runs again in the same order. No cell id is sent
(as nbclient, papermill and consoles do), so cells are told apart by their text and its
occurrence.

What is asserted (sqllogic_corpus.judge_first, judge_second, compare):

1. First run, each record with `duckdb_ok`: a `statement ok` or `query` record answers ok,
   a `statement error` record answers with an error (query results are not compared). No
   cell is replayed, since the database is fresh: a replay means that a statement DuckDB
   ran did not run here.
2. Second run: every cell that was stateful and ok on the first run (its result's metadata
   `rssd.kind` is `stateful`) is ok again and replayed: a re-run of a stateful cell never
   fails and never runs again.
3. The second run changes no table: the database's own tables (columns and rows, as an
   order-free checksum) and views (their SQL), RSSD tables left out, are the same after it
   as after the first run. One exception: a record that failed on the first run (so was
   never applied) and, run again against the file's final state, now succeeds is applied
   then, once; it is reported, and that file's table changes are reported, not asserted
   (2 files today: a NOT NULL insert that fails until a later record drops the
   constraint). Rule 2 still holds for every cell of such a file.
4. No cell of either run answers with an Internal Error (a bug of the kernel's).

Reported, not asserted (test-artifacts/sqllogic/<file>; `python tests/sqllogic_corpus.py`
summarises them):

- Second run, cells that were not stateful and ok on the first run (reads, session cells,
  `@always` cells, failures) run again against the final state of the first run, so their
  answer may differ (a SELECT of a table the file dropped later): listed, not asserted.
- EXPORT DATABASE: DuckDB cannot export a self-referencing foreign key, and the RSSD's
  orchestration_session_log has one (surveilr's DDL, verbatim), so EXPORT DATABASE fails
  on any file that holds an RSSD; the kernel's message says what to do instead. The file's
  later differences are listed, not asserted, as after a refusal.
- Refused by design: a stateful cell that writes to another database than the kernel's file
  (an ATTACHed one, or the one chosen with USE) gets a `Stateful Cell Error` whose message
  names that database, since its write could not commit with the cell's state record;
  DuckDB alone accepts it. After such a refusal the database is no longer what the test
  file assumes, so that file's later ok/error differences are listed, not asserted (rules 2
  to 4 still hold).

Adaptations, each the smallest that lets a file run in a notebook (sqllogic_corpus):

- In-memory database: the records that depend on it use its catalog name, `memory` (`USE
  memory`, `memory.temp.t`). The database file is named memory.duckdb, whose catalog is
  `memory` too, so they run unchanged and none is left out for that reason.
- Explicit transactions: the kernel refuses, by design, a stateful cell while a transaction
  the user opened is open (each stateful cell commits in a transaction of its own, with its
  state record). Files with stateful records inside BEGIN ... COMMIT/ROLLBACK
  (TRANSACTIONS_ADAPTED) are written the README's way: records inside BEGIN ... ROLLBACK get
  `-- @always` (they run every time, as written, and the ROLLBACK undoes them, so a re-run
  changes nothing); a BEGIN ... COMMIT block whose records all succeed becomes one cell of
  its statements (one stateful transaction, applied once). The corpus's other files with
  transactions run as they are.
- Records left out: sqllogic_corpus.EXCLUDED, with the reason for each (none today).
"""

import os

import pytest
import sqllogic_corpus as corpus

MISSING = "(corpus missing)"
FILES = corpus.file_names() or [MISSING]


def test_exclusions_and_adaptations_name_real_records():
    if not corpus.SHARED.exists():
        _missing()
    for (name, line), reason in corpus.EXCLUDED.items():
        assert reason, (name, line)
        assert line in {r["line"] for r in corpus.records(name)}, (name, line)
    for name in corpus.TRANSACTIONS_ADAPTED:
        assert any(corpus.transaction_word(r["sql"]) for r in corpus.records(name)), name


@pytest.mark.parametrize("name", FILES)
def test_sqllogic_file(name, kernel_factory, tmp_path):
    if name == MISSING:
        _missing()
    testdir = tmp_path / "testdir"
    testdir.mkdir()
    database = str(tmp_path / corpus.DATABASE_NAME)
    cells = corpus.cells(name, str(testdir))
    report = corpus.Report(name, cells=len(cells))
    report.excluded = [(line, why) for (f, line), why in corpus.EXCLUDED.items() if f == name]
    report.adapted = corpus.TRANSACTIONS_ADAPTED.get(name, "")

    kernel = kernel_factory(database, cwd=testdir)
    first = corpus.run_cells(kernel, cells, "first run")
    kernel.shutdown()
    before = corpus.snapshot(database)
    corpus.judge_first(report, cells, first)

    kernel = kernel_factory(database, cwd=testdir)
    second = corpus.run_cells(kernel, cells, "re-run")
    kernel.shutdown()
    after = corpus.snapshot(database)
    corpus.judge_second(report, cells, first, second)
    corpus.compare(report, before, after)

    report.save()
    failures = report.failures()
    assert not failures, f"{name}: {len(failures)} differences\n" + "\n".join(failures)


def _missing():
    if os.environ.get(corpus.ALLOW_MISSING) == "1":
        pytest.skip(corpus.missing_message())
    pytest.fail(corpus.missing_message())
