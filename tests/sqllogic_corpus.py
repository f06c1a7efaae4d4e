"""The DuckDB sqllogictest corpus in ../shared/sqllogic, run through the rssd kernel.

Used by tests/test_sqllogic.py, which states the rules. Here: reading the corpus, turning
records into cells (the scratch directory, the transaction adaptation, the exclusions),
running them through a kernel, snapshotting the database's tables, and sorting what the
kernel did into the categories the test asserts on or reports.

`python tests/sqllogic_corpus.py` prints a summary of the last test run's reports
(test-artifacts/sqllogic/*.json).
"""

import hashlib
import json
import re
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

# The repository's sibling folder `shared` (CI lays a copy of it beside the clone).
SHARED = Path(__file__).resolve().parents[2] / "shared" / "sqllogic"
ALLOW_MISSING = "RSSD_ALLOW_NO_SHARED"
REPORTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "sqllogic"

# The database file's name: DuckDB names a file's catalog after its stem, and the test files
# were written for an in-memory connection, whose catalog is `memory` (`USE memory`,
# `memory.temp.t`, `memory.main.t`). A file called memory.duckdb has the same catalog name,
# so those records run unchanged.
DATABASE_NAME = "memory.duckdb"

# Records not run at all: (file, line) -> why. Keep it short, and say why for each.
EXCLUDED: dict[tuple[str, int], str] = {}

# Files whose explicit transactions hold stateful records, which the kernel refuses by design
# while a transaction of the user's is open: they run with the adaptation `cells` describes.
# The corpus's other files with BEGIN ... COMMIT/ROLLBACK (catalog__test_temporary: TEMP
# objects only; attach__attach_or_replace: an ATTACH) run as they are.
TRANSACTIONS_ADAPTED = {
    "alter__rename_table__test_rename_table.json": "ALTER TABLE inside BEGIN ... ROLLBACK/COMMIT",
    "delete__test_truncate.json": "TRUNCATE inside BEGIN ... ROLLBACK",
    "export__export_database.json": "CREATE/INSERT inside BEGIN ... ROLLBACK",
    "index__art__create_drop__test_art_create_many_duplicates.json": "INSERT in BEGIN ... COMMIT",
    "transactions__test_transaction_local_unique_ops.json": "CREATE/INSERT/UPDATE in BEGIN ...",
}

# Tables of the RSSD itself, not the notebook's.
RSSD_TABLE = re.compile(r"^(orchestration_.*|device|rssd_.*)$")

# The kernel refuses, by design, a stateful cell that would write to another database than
# its own file (an ATTACHed one, or the one chosen with USE): that write could not commit
# together with the cell's state record. DuckDB alone accepts it.
REFUSAL_ENAME = "Stateful Cell Error"
REFUSAL_TEXT = re.compile(
    r'changes the database "[^"]*"|\b(another|other|attached)\s+database', re.IGNORECASE
)

# Categories of a checked record's first run (`MATCH` is fine; the rest are differences).
MATCH = "match"
REFUSED_OTHER_DATABASE = "refused: stateful write to another database (by design)"
AFTER_REFUSAL = "differs after a refusal by design (reported, not asserted)"
# DuckDB's EXPORT DATABASE cannot export a self-referencing foreign key, and the RSSD's
# orchestration_session_log has one (surveilr's DDL, kept verbatim): EXPORT DATABASE fails
# on every file that holds an RSSD. The kernel's message says so and what to do instead.
EXPORT_RSSD = "EXPORT DATABASE cannot export the RSSD's self-reference (DuckDB; documented)"
INTERNAL = "internal error"
REPLAYED_FIRST_RUN = "replayed on the first run (did not run)"
ERROR_NOT_OK = "error where DuckDB is ok"
OK_NOT_ERROR = "ok where DuckDB fails"
DOWNSTREAM = ", after an earlier difference"
NOT_ASSERTED = {MATCH, REFUSED_OTHER_DATABASE, AFTER_REFUSAL, EXPORT_RSSD}

# Categories of the second run.
STATEFUL_FAILED = "stateful cell failed on the re-run"
STATEFUL_RAN_AGAIN = "stateful cell ran again instead of replaying"
INTERNAL_RERUN = "internal error on the re-run"
TABLE_CHANGED = "table changed by the re-run"
SESSION_DIFFERS = "re-run answers otherwise, not a stateful ok cell (reported, not asserted)"
# A record that failed on the first run was never applied; run again against the file's
# final state it may succeed, and is then applied, once (its table changes are its own).
APPLIED_LATE = "failed on the first run, applied on the re-run (reported, not asserted)"


def missing_message() -> str:
    return (
        f"The sqllogic corpus is missing: {SHARED} does not exist. It is the repository's "
        f"sibling folder shared/sqllogic (CI lays shared/ beside the clone). Put it there, "
        f"or set {ALLOW_MISSING}=1 to skip this test where it cannot be had."
    )


def index() -> dict:
    return json.loads((SHARED / "index.json").read_text())


def file_names() -> list[str]:
    """The corpus files in index.json's order; [] when the folder is missing."""
    if not (SHARED / "index.json").exists():
        return []
    return [entry["file"] for entry in index()["files"]]


def records(name: str) -> list[dict]:
    return json.loads((SHARED / name).read_text())["records"]


@dataclass
class Cell:
    line: int
    kind: str  # the record's: statement ok | statement error | query
    sql: str  # the record's SQL as in the corpus
    code: str  # what is sent to the kernel
    expect: str | None  # "ok" or "error" where DuckDB behaved as the record says, else None
    note: str = ""  # why code differs from sql, if it does


_TRANSACTION = re.compile(
    r"^\s*(BEGIN|START|COMMIT|END|ROLLBACK|ABORT)\b(\s+(TRANSACTION|WORK))?\s*;?\s*$", re.I
)


def transaction_word(sql: str) -> str | None:
    """BEGIN, COMMIT or ROLLBACK when the record is only that statement."""
    match = _TRANSACTION.match(sql)
    if not match:
        return None
    word = match.group(1).upper()
    return {"START": "BEGIN", "END": "COMMIT", "ABORT": "ROLLBACK"}.get(word, word)


def cells(name: str, testdir: str) -> list[Cell]:
    """The file's records as cells, in order, without the excluded ones.

    In the files of TRANSACTIONS_ADAPTED, explicit transactions are written the way the
    README tells a notebook author to (the kernel refuses, by design, a stateful cell while
    a transaction of the user's is open, since each stateful cell commits in a transaction
    of its own, with its state record):

    - BEGIN ... ROLLBACK: each record between gets `-- @always` on top (it runs every time,
      as written, inside the user's transaction, with no state). The block leaves nothing
      behind, so running it every time is right, and a re-run changes nothing.
    - BEGIN ... COMMIT where every record between is expected to succeed: one cell holding
      the records' statements, without BEGIN and COMMIT. A stateful cell is a transaction of
      its own, so the block still commits as a whole, once. (A block with a record expected
      to fail is sent as it is.)
    """
    adapt = name in TRANSACTIONS_ADAPTED
    out: list[Cell] = []
    block: list[dict] = []

    def flush(ending: str | None) -> None:
        inner = block[1:-1]
        if adapt and ending == "COMMIT" and inner and all(_expect(r) == "ok" for r in inner):
            begin, commit = block[0], block[-1]
            sql = "\n".join(_terminated(r["sql"]) for r in inner)
            note = f"lines {begin['line']}-{commit['line']}: BEGIN ... COMMIT as one cell"
            code = sql.replace("{TESTDIR}", testdir)
            out.append(Cell(begin["line"], "block", sql, code, "ok", note))
        else:
            for record in block:
                code, note = record["sql"].replace("{TESTDIR}", testdir), ""
                if adapt and ending == "ROLLBACK" and transaction_word(record["sql"]) is None:
                    code, note = "-- @always\n" + code, "@always: inside BEGIN ... ROLLBACK"
                out.append(Cell(record["line"], record["kind"], record["sql"], code,
                                _expect(record), note))  # fmt: skip
        block.clear()

    open_block = False
    for record in records(name):
        if (name, record["line"]) in EXCLUDED:
            continue
        word = transaction_word(record["sql"])
        if word == "BEGIN" and not open_block:
            flush(None)
            open_block = True
        block.append(record)
        if not open_block:
            flush(None)
        elif word in ("COMMIT", "ROLLBACK"):
            flush(word)
            open_block = False
    flush(None)
    return out


def _terminated(sql: str) -> str:
    """The statement ending in `;` (on a line of its own if it may end in a comment)."""
    sql = sql.rstrip()
    return sql if sql.endswith(";") else sql + "\n;"


def _expect(record: dict) -> str | None:
    """The record's expected outcome, `ok` or `error`, where DuckDB behaved as it says."""
    if not record["duckdb_ok"]:
        return None
    return "error" if record["kind"] == "statement error" else "ok"


@dataclass
class Ran:
    """What the kernel answered for one cell."""

    status: str
    ename: str = ""
    evalue: str = ""
    rssd_kind: str = ""  # the result's metadata rssd.kind: stateful, session, read, always
    replayed: bool = False

    @classmethod
    def of(cls, reply) -> "Ran":
        error = reply.error or {}
        ename = error.get("ename", reply.content.get("ename", ""))
        evalue = error.get("evalue", reply.content.get("evalue", ""))
        meta = reply.rssd
        return cls(reply.status, ename, evalue, meta.get("kind", ""), bool(meta.get("replayed")))

    def said(self) -> str:
        if self.status == "ok":
            return f"ok ({self.rssd_kind or '?'}{', replayed' if self.replayed else ''})"
        return f"error {self.ename}: {self.evalue.splitlines()[0] if self.evalue else ''}"


def run_cells(kernel, cells_: list[Cell], run: str) -> list[Ran]:
    out = []
    for cell in cells_:
        try:
            out.append(Ran.of(kernel.execute(cell.code)))
        except Exception as error:  # a kernel that died or hangs: name the cell, stop the file
            raise AssertionError(
                f"{run}: the kernel did not answer the record at line {cell.line} "
                f"({_short(cell.sql)!r}): {error!r}"
            ) from error
    return out


def snapshot(path: str) -> dict[str, str]:
    """The database's own tables and views -> a checksum of their columns and rows (order
    free); the RSSD's tables are left out. Read with DuckDB after the kernel let go."""
    con = duckdb.connect(path, read_only=True)
    try:
        out = {}
        (catalog,) = con.execute("SELECT current_database()").fetchone()
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE NOT temporary AND database_name = current_database() ORDER BY ALL"
        ).fetchall()
        for schema, table in tables:
            if schema == "main" and RSSD_TABLE.match(table):
                continue
            name = f"{schema}.{table}"
            quoted = ".".join(
                '"' + part.replace('"', '""') + '"' for part in (catalog, schema, table)
            )
            columns = con.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                "current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
                [schema, table],
            ).fetchall()
            try:
                count, total = con.execute(
                    f"SELECT count(*), CAST(sum(hash(CAST(__row AS VARCHAR))) AS VARCHAR) "
                    f"FROM {quoted} AS __row"
                ).fetchone()
            except duckdb.Error as error:
                count, total = -1, f"unreadable: {error}"
            digest = hashlib.sha256(json.dumps([columns, count, total]).encode()).hexdigest()
            out[f"table {name}"] = f"{count} rows, {digest[:16]}"
        for schema, view, sql in con.execute(
            "SELECT schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal AND NOT "
            "temporary AND database_name = current_database() ORDER BY ALL"
        ).fetchall():
            out[f"view {schema}.{view}"] = hashlib.sha256(sql.encode()).hexdigest()[:16]
        return out
    finally:
        con.close()


@dataclass
class Finding:
    line: int
    sql: str
    expected: str
    said: str
    note: str = ""


@dataclass
class Report:
    file: str
    cells: int = 0
    checked: int = 0  # cells with a DuckDB expectation
    first: dict[str, list[Finding]] = field(default_factory=dict)
    second: dict[str, list[Finding]] = field(default_factory=dict)
    changed_tables: dict[str, list] = field(default_factory=dict)  # name -> [before, after]
    excluded: list[tuple[int, str]] = field(default_factory=list)
    adapted: str = ""  # why the file's transactions were adapted, if they were
    applied_late: bool = False  # a cell that failed on the first run was applied on the re-run

    def add(self, where: dict, category: str, finding: Finding) -> None:
        where.setdefault(category, []).append(finding)

    def failures(self) -> list[str]:
        """What the test asserts on, as lines."""
        lines = []
        for category, found in self.first.items():
            if category not in NOT_ASSERTED:
                lines += [f"[{category}] line {f.line}: {_short(f.sql)!r}: expected "
                          f"{f.expected}, kernel said {f.said}" for f in found]  # fmt: skip
        for category, found in self.second.items():
            if category not in (SESSION_DIFFERS, APPLIED_LATE):
                lines += [f"[{category}] line {f.line}: {_short(f.sql)!r}: first run "
                          f"{f.expected}, re-run {f.said}" for f in found]  # fmt: skip
        if not self.applied_late:
            for name, (before, after) in self.changed_tables.items():
                lines.append(f"[{TABLE_CHANGED}] {name}: {before} -> {after}")
        return lines

    def counts(self) -> dict[str, int]:
        out = Counter()
        for category, found in {**self.first, **self.second}.items():
            if category != MATCH:
                out[category] += len(found)
        if self.changed_tables:
            out[TABLE_CHANGED] = len(self.changed_tables)
        return dict(out)

    def save(self) -> None:
        REPORTS.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        data["counts"] = self.counts()
        (REPORTS / self.file).write_text(json.dumps(data, indent=1))


def _short(sql: str, width: int = 100) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def judge_first(report: Report, cells_: list[Cell], ran: list[Ran]) -> None:
    """Sort each checked cell of the first run into a category (see the test's docstring)."""
    refused = False
    earlier = None  # the line of the file's first difference
    for cell, got in zip(cells_, ran):
        if cell.expect is None:
            continue
        report.checked += 1
        finding = Finding(cell.line, cell.sql, cell.expect, got.said(), cell.note)
        if got.ename == "Internal Error":
            category = INTERNAL
        elif (
            cell.expect == "ok"
            and got.status == "error"
            and got.ename == REFUSAL_ENAME
            and REFUSAL_TEXT.search(got.evalue)
        ):
            category, refused = REFUSED_OTHER_DATABASE, True
        elif got.status == "error" and "rssd export-rssd" in got.evalue:
            category, refused = EXPORT_RSSD, True
        elif got.replayed:
            category = REPLAYED_FIRST_RUN
        elif got.status == ("ok" if cell.expect == "ok" else "error"):
            category = MATCH
        elif refused:
            category = AFTER_REFUSAL
        else:
            category = ERROR_NOT_OK if cell.expect == "ok" else OK_NOT_ERROR
            if earlier is not None:
                category += DOWNSTREAM
                finding.note = f"first difference in the file: line {earlier}"
        if category != MATCH and earlier is None:
            earlier = cell.line
        report.add(report.first, category, finding)


def judge_second(report: Report, cells_: list[Cell], first: list[Ran], second: list[Ran]):
    for cell, one, two in zip(cells_, first, second):
        finding = Finding(cell.line, cell.sql, one.said(), two.said(), cell.note)
        if two.ename == "Internal Error":
            report.add(report.second, INTERNAL_RERUN, finding)
        elif one.status == "error" and two.rssd_kind == "stateful" and not two.replayed:
            if two.status == "ok":
                report.add(report.second, APPLIED_LATE, finding)
                report.applied_late = True
        elif one.status == "ok" and one.rssd_kind == "stateful":
            if two.status != "ok":
                report.add(report.second, STATEFUL_FAILED, finding)
            elif not two.replayed:
                report.add(report.second, STATEFUL_RAN_AGAIN, finding)
        elif one.status != two.status:
            report.add(report.second, SESSION_DIFFERS, finding)


def compare(report: Report, before: dict, after: dict) -> None:
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            report.changed_tables[name] = [before.get(name, "absent"), after.get(name, "absent")]


def summary(paths=None, examples: int = 6) -> str:
    """A Markdown summary of saved reports: counts per file, then examples per category."""
    paths = sorted(paths or REPORTS.glob("*.json"))
    reports = [json.loads(Path(p).read_text()) for p in paths]
    categories = sorted({c for r in reports for c in r["counts"]})
    totals = Counter()
    for r in reports:
        totals.update(r["counts"])
    lines = [
        f"{len(reports)} files, {sum(r['cells'] for r in reports)} cells, "
        f"{sum(r['checked'] for r in reports)} checked against DuckDB.",
        "",
        *(f"- {c}: {totals[c]}" for c in categories),
        "",
        "| file | cells | " + " | ".join(categories) + " |",
        "|---|---|" + "---|" * len(categories),
    ]
    for r in reports:
        if r["counts"]:
            row = [str(r["counts"].get(c, "")) for c in categories]
            lines.append(f"| {r['file']} | {r['cells']} | " + " | ".join(row) + " |")
    for category in categories:
        lines += ["", f"### {category}", ""]
        found = []
        for r in reports:
            first = [(f, "expected") for f in r["first"].get(category, [])]
            second = [(f, "first run") for f in r["second"].get(category, [])]
            found += [(r["file"], f, label) for f, label in first + second][:2]
            if category == TABLE_CHANGED:
                found += [(r["file"], name, change) for name, change in r["changed_tables"].items()]
        for file, f, label in found[:examples]:
            if category == TABLE_CHANGED:
                lines.append(f"- {file}: {f}: {label[0]} -> {label[1]}")
            else:
                lines.append(
                    f"- {file}:{f['line']} `{_short(f['sql'], 90)}`: {label} {f['expected']}; "
                    f"kernel: {_short(f['said'], 200)}"
                )
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(sys.argv[1:] or None))
