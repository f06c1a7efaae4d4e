"""Running a cell's statements: under DuckDB's read-only net, or as one stateful transaction.

A cell that is not predicted stateful (see classify.py) runs statement by statement, each
inside `BEGIN TRANSACTION READ ONLY` ... `COMMIT`. There DuckDB lets every session change
through (TEMP tables, SET, SET VARIABLE, PREPARE, ATTACH, USE, COPY ... TO) and refuses any
write to a persistent database. When it refuses a statement, that statement has changed
nothing (its transaction is rolled back), and it and the rest of the cell run again as a
stateful cell: one read-write transaction that also holds the cell's state row. Statements
are never retried as a whole cell, because ROLLBACK does not undo SET, SET VARIABLE,
PREPARE or USE: what ran before the refused statement stays done, once.

A stateful transaction first touches the RSSD's own database (a write that changes no row),
so a statement that writes any other database (an ATTACHed one, or the default after
`USE`) fails at once: DuckDB writes one database per transaction, and the cell's effects
and its state row must commit together. Such cells are refused with a message that says
what to do.

Exceptions, documented in the README: a `-- @always` cell runs as written with no net (the
user's explicit choice), and so does a statement run while a transaction the user opened
is still open (no read-only transaction can start inside it).
"""

import dataclasses
import time
from dataclasses import dataclass, field

from rssd_kernel import charts, classify, lineage, render
from rssd_kernel.digests import DIGESTS
from rssd_kernel.errors import StatefulCellError
from rssd_kernel.kept_result import kept
from rssd_kernel.recorder import STATUS_ERROR, STATUS_INTERRUPTED, Exec, insert_entry
from rssd_kernel.results import Result
from rssd_kernel.state import EVALUATED, EXECUTED
from rssd_kernel.statements import Failure, confirmation, nature

VERIFIED = "verified"  # the net checked the statement
UNVERIFIED = "unverified"  # ran inside the user's own transaction: no net possible


class AppliedMeanwhile(Exception):
    """Another kernel applied the cell's key while this one waited for the key's lock."""


class _SessionWrite(Exception):
    """A stateful transaction wrote an in-memory database: the cell is a session cell."""


class _Refused(Exception):
    """The net refused a statement: it writes the persistent database `database`."""

    def __init__(self, database: str):
        super().__init__(database)
        self.database = database


@dataclass
class Ran:
    """What a cell's statements produced."""

    kind: str  # the cell's kind once DuckDB has checked it
    last: Result | None = None
    last_rows: bool = False
    last_text: str | None = None  # the last result's table as text (its statement's output)
    messages: list[str] = field(default_factory=list)
    transition: object = None  # the state row written, if any
    chart: dict | None = None  # the Vega-Lite spec, checked before anything committed


class CellExecution:
    """Runs one planned cell on the session's connection (see module docstring)."""

    def __init__(self, session, plan, cell: Exec, params: dict):
        self.session = session
        self.engine = session.engine
        self.con = session.con
        self.plan = plan
        self.cell = cell
        self.params = params
        self.ran = Ran(plan.kind)
        self._offset = 0
        self._all_net = False  # after a predicted write turned out to be a session one
        self._session_writes: list[tuple[int, str]] = []  # writes to in-memory databases

    # -- the cell -------------------------------------------------------------------------

    def run(self) -> Ran:
        plan = self.plan
        start = 0
        outside = [c.verb for c in plan.classified if c.kind == classify.NO_TRANSACTION]
        if outside and not plan.always:
            verb = outside[0] + (" CONCURRENTLY" if outside[0].endswith("INDEX") else "")
            again = (
                f" (write {verb} IF NOT EXISTS, so that running it again does no harm)"
                if verb.startswith("CREATE") else ""
            )  # fmt: skip
            raise StatefulCellError(
                f"{verb} cannot run inside a transaction, and rssd runs every statement of a "
                "cell in one (the read-only check, or the stateful cell's own).",
                f"Put {verb} in a cell of its own whose first line is '-- @always': it then "
                f"runs as written, every time, with no state{again}.",
            )
        if plan.kind == classify.STATEFUL:
            self._check_stateful(None)
            try:
                self._stateful(0)
                return self.ran
            except _SessionWrite:  # it wrote an in-memory database: DuckDB decides again
                self.ran, self._offset, self._all_net = Ran(classify.SESSION), 0, True
                self.cell.children.clear()
        for index in range(start, len(plan.statements)):
            net = plan.classified[index].net or (
                self._all_net and plan.classified[index].kind != classify.TRANSACTION
            )
            try:
                self._statement(index, net=not plan.always and net)
            except _Refused as refused:
                self.cell.log.append(
                    (
                        "net",
                        f"statement {index + 1} writes to the database "
                        f'"{refused.database}": it runs as a stateful cell',
                    )
                )
                self._to_stateful(index, refused.database)
                return self.ran
        if plan.name:  # a named cell that runs every time records its latest result
            self.ran.chart = self._chart()
            with self.session.phase("state"):
                self.ran.transition = self._transition(self.session.recorder.con, EVALUATED)
        else:
            self.ran.chart = self._chart()
        return self.ran

    def _to_stateful(self, index: int, database: str) -> None:
        if database != self.session.catalog:
            raise self._other_database(database)
        self.ran.kind = classify.STATEFUL
        applied = self.session.state.applied(self.plan.key)
        if applied is not None:  # cannot happen for a planned key; checked to fail closed
            raise StatefulCellError(f"The cell '{self.plan.key}' was applied already.")
        self._check_stateful(index)
        self._stateful(index)

    def _check_stateful(self, refused: int | None) -> None:
        """Refuse, before it runs, a stateful cell that cannot be applied exactly once.
        `refused` is the statement the net refused, if it was the net that found it."""
        classified = self.plan.classified
        if any(c.kind == classify.TRANSACTION for c in classified):
            raise StatefulCellError(
                "This cell changes the database and also holds BEGIN, COMMIT or ROLLBACK. "
                "rssd runs each stateful cell in a transaction of its own, so that its "
                "effects and its state record commit together; it cannot nest yours.",
                "Remove the transaction statements, or mark the cell '-- @always' to manage "
                "transactions yourself (it then runs every time and records no state).",
            )
        if self.plan.directives.once:
            return  # `-- @once` is the user's explicit choice: session statements included
        mixed = [(n, c.verb) for n, c in enumerate(classified, start=1) if c.session_effect]
        mixed += self._session_writes
        if refused is not None and classified[refused].session_effect:
            verb = classified[refused].verb
            raise StatefulCellError(
                f"Statement {refused + 1} ({verb}) changes the session and also writes to the "
                "database (through nextval, say). A stateful cell runs once: on a later run, "
                "or after a restart, it is replayed and the session part (the variable, the "
                "TEMP table) would be missing. Nothing of it was kept.",
                "Make the write a stateful cell of its own, e.g. CREATE TABLE run AS SELECT "
                "nextval('seq') AS id, and read it in a session cell: SET VARIABLE run_id = "
                "(SELECT id FROM run).",
            )
        if mixed:
            ran = ""
            if refused is not None:
                ran = (
                    f" The session part ran up to statement {refused + 1}; the database was "
                    "not changed."
                )
            listed = ", ".join(f"statement {n} ({verb})" for n, verb in mixed[:3])
            raise StatefulCellError(
                f"This cell changes the database and also changes the session ({listed}). "
                "A stateful cell runs once: on a later run, or after a restart, it is replayed "
                f"and its session part would be missing.{ran}",
                "Split the cell: put the session statements (SET, TEMP tables, ATTACH, USE, "
                "PREPARE) in a cell of their own, which runs every time, and the changes to "
                "the database in another.",
            )

    def _other_database(self, database: str) -> StatefulCellError:
        rssd = self.session.catalog
        return StatefulCellError(
            f'This cell changes the database "{database}", but rssd records its stateful cells '
            f'in "{rssd}", and DuckDB writes one database per transaction, so the change and '
            "its record cannot commit together. Nothing was changed.",
            f'Create the table in "{rssd}" (qualify it, or run `USE {rssd}` first), or mark '
            "the cell '-- @always' to run it every time with no state (make it idempotent, "
            "e.g. CREATE OR REPLACE TABLE ...).",
        )

    def _stateful(self, start: int) -> None:
        con, session, engine = self.con, self.session, self.engine
        self.ran.kind = classify.STATEFUL
        if session.in_user_transaction:
            raise StatefulCellError(
                "A transaction opened by an earlier cell is still open, so this stateful "
                "cell cannot get a transaction of its own.",
                "Run COMMIT or ROLLBACK in a cell first.",
            )
        try:
            # DuckDB: marks the RSSD's database as the one written; PostgreSQL: takes the
            # key's lock and reads what other kernels committed.
            if engine.begin_stateful(self.plan.key, session.state) is not None:
                raise AppliedMeanwhile(self.plan.key)
            digests = []  # lineage entries whose digest is made after the cell
            for index in range(start, len(self.plan.statements)):
                self._statement(index, net=False, stateful=True)
                with session.phase("lineage"):
                    digests += self._record_lineage(index)
            self.ran.chart = self._chart()  # a bad chart fails the cell before it commits
            with session.phase("state"):
                self.ran.transition = self._transition(con, EXECUTED)
            session.check_stop()
            # The digests to make are journaled before the commit (a crash just after it
            # loses none), and made after the cell's records are in (if the commit failed,
            # filling in finds no entry). Each file's is filled in on its own.
            for request in digests:
                session.recorder.writer.submit({DIGESTS: [request]}, held=True)
            try:
                with session.phase("commit"):
                    con.commit()
            except engine.Error as error:
                ename, evalue = engine.split_error(error)
                raise Failure(
                    ename, evalue, "the commit of this stateful cell (nothing of it was kept)"
                ) from None
        except BaseException:
            self._rollback()
            raise
        finally:
            engine.end_stateful()

    # -- one statement --------------------------------------------------------------------

    def _statement(self, index: int, net: bool, stateful: bool = False) -> None:
        try:
            self._run_one(index, net, stateful)
        finally:
            if self.plan.classified[index].kind == classify.TRANSACTION:
                self.engine.probe_transaction()  # BEGIN, COMMIT, ROLLBACK: which holds now?

    def _run_one(self, index: int, net: bool, stateful: bool) -> None:
        session, statement = self.session, self.plan.statements[index]
        classes = self.plan.classified[index]
        session.check_stop()
        offset = self._offset
        start = self.cell.code.find(statement.query, self._offset)
        self._offset = start + len(statement.query) if start >= 0 else self._offset
        line = self.cell.code.count("\n", 0, max(start, 0)) + 1
        check = VERIFIED if net else None
        if net and not self._begin_read_only():
            net, check = False, UNVERIFIED
        session_ddl = not classes.net and not stateful and classes.kind == classify.SESSION
        if session_ddl and not self.plan.always and not self.plan.directives.once:
            if self.engine.check_session_statement(statement, classes):
                # A permanent object after all: a stateful statement, not a session one.
                self.plan.classified = list(self.plan.classified)
                self.plan.classified[index] = dataclasses.replace(
                    classes, kind=classify.STATEFUL, session_effect=False, creates_temp=None
                )
                self._offset = offset
                raise _Refused(self.session.catalog)
        child = Exec(nature="SQL-statement", code=statement.query.strip(), identity=self.plan.key)
        is_last = index == len(self.plan.statements) - 1
        t0 = time.perf_counter()
        engine = self.engine
        try:
            with session.phase("run"):
                result, is_rows = engine.run_statement(
                    statement, self.params, self._fetch_limit(is_last), is_last, classes.constant
                )
            if net:
                with session.phase("net"):
                    self.con.commit()
        except BaseException as error:
            if not isinstance(error, engine.Error):
                if net:
                    self._rollback()
                raise
            if net:
                self._rollback()
            refused = engine.refused(error) if net else None
            if refused and engine.in_memory(refused):
                # It writes an in-memory database the session attached: a session change.
                self._offset = offset
                self._session_writes.append((index + 1, classes.verb))
                return self._run_one(index, net=False, stateful=False)
            if refused:
                self._offset = offset
                raise _Refused(refused) from None
            other = engine.other_database(error) if stateful else None
            if other and engine.in_memory(other) and not self.plan.directives.once:
                raise _SessionWrite() from None
            if other:
                raise self._other_database(other) from None
            self.cell.children.append(child)
            raise self._failure(error, child, statement, index, line, start) from None
        elapsed = (time.perf_counter() - t0) * 1000
        self.cell.children.append(child)
        kind = classify.STATEFUL if stateful else classes.kind
        message = confirmation(statement, classes, result) if not is_rows else None
        if message:
            self.ran.messages.append(message)
        child.output_text = message or render.table_text(result, session.settings.max_rows)
        child.output_nature = {**nature(result, is_rows, classes, elapsed), "kind": kind}
        caption = render.row_caption(result, min(len(result.rows), session.settings.max_rows))
        child.narrative = message or f"{classes.verb} returned {caption}."
        child.elaboration = {
            "kind": kind,
            "statement_type": classes.statement_type,
            "target": classes.target,
            "line": line,
            "check": check,
            "duration_ms": round(elapsed, 3),
        }
        self.ran.last, self.ran.last_rows = result, is_rows
        self.ran.last_text = None if message else child.output_text

    def _begin_read_only(self) -> bool:
        """Start the net's transaction; False inside a transaction the user opened (trying
        BEGIN there would fail, and a failed statement aborts the user's transaction)."""
        if self.session.in_user_transaction:
            return False
        with self.session.phase("net"):
            self.engine.begin_read_only()
        return True

    def _rollback(self) -> None:
        try:
            self.con.rollback()
        except self.engine.Error:
            pass  # the engine already ended the failed transaction

    def _failure(self, error, child: Exec, statement, index: int, line: int, start: int):
        ename, evalue, loc_line, loc_col, interrupted = self.engine.failure(
            error, statement, line, self.params, self.cell.code, max(start, 0)
        )
        child.status = STATUS_INTERRUPTED if interrupted else STATUS_ERROR
        child.error_text = f"{ename}: {evalue}"
        child.narrative = f"Failed: {ename}."
        where = f"statement {index + 1} of {len(self.plan.statements)}"
        return Failure(ename, evalue, where, loc_line, loc_col, interrupted)

    def _fetch_limit(self, is_last: bool) -> int:
        settings, found = self.session.settings, self.plan.directives
        limit = settings.max_rows
        if is_last and found.name:
            limit = max(limit, settings.result_max_rows)
        if is_last and found.chart:
            limit = max(limit, settings.chart_max_rows)
        return limit

    # -- records --------------------------------------------------------------------------

    def _chart(self) -> dict | None:
        chart = self.plan.directives.chart
        return charts.spec(chart, self.ran.last if self.ran.last_rows else None) if chart else None

    def _record_lineage(self, index: int) -> list[dict]:
        """One orchestration_session_entry per file the statement read, in the cell's
        transaction: ingest_src as DuckDB opened it (credentials masked), the table it went
        into, and the file's resolved path, size and modification time. Returns the requests
        for the digests left for after the cell (see lineage.describe)."""
        session, classes = self.session, self.plan.classified[index]
        writes = classes.statement_type in ("CREATE", "INSERT", "COPY", "MERGE_INTO")
        requests = []
        for path in self.engine.files_read():
            described, request = lineage.describe(path, session.secrets, session.check_stop)
            elaboration = {
                "kind": "ingest",
                **described,
                "exec_id": self.cell.exec_id,
                "statement": index + 1,
                "key": self.plan.key,
            }
            source = lineage.recordable(path, session.secrets)
            entry_id = insert_entry(
                self.con,
                session.session_id,
                source,
                classes.target if writes else None,
                elaboration,
                table=session.rssd_table("orchestration_session_entry"),
            )
            if request is not None:
                requests.append({**request, "entry_id": entry_id, "elaboration": elaboration})
            self.cell.log.append(("lineage", f"read {source}"))
        return requests

    def _transition(self, con, to_state: str):
        """The state row for this run: for a stateful cell inside its transaction."""
        plan, ran, settings = self.plan, self.ran, self.session.settings
        recorded, warning, last = None, None, ran.last
        if last is not None:
            secrets = self.session.secrets
            recorded, why = kept(last, ran.messages, ran.last_rows, settings, secrets)
            unusable = self.engine.unrestorable(last) if plan.name and not why else None
            if unusable:  # recorded, but later cells cannot read it back: say so now
                self.cell.log.append(("warning", f"The result '{plan.name}' {unusable}"))
            if why and plan.name:
                warning = (
                    f"The result '{plan.name}' was not recorded ({why}); later cells "
                    "cannot use it. Materialise it as a table instead."
                )
        if warning:
            self.cell.log.append(("warning", warning))
        elaboration = {
            "code_hash": plan.digest,
            "name": plan.name,
            "notebook": self.session.notebook,
            "exec_id": self.cell.exec_id,
            "cell_id": plan.cell_id,
            "statement_types": [c.statement_type for c in plan.classified],
        }
        reason = "stateful cell applied" if to_state == EXECUTED else "named cell evaluated"
        session = self.session
        return session.state.record(
            con,
            plan.key,
            to_state,
            reason,
            recorded,
            elaboration,
            session.session_id,
            session.recorder.entry_id,
        )
