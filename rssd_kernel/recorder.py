"""Writes the RSSD rows: device, nature, session, entry, execs, their log lines and issues.

The recorder has its own DuckDB connection (a cursor of the user's), so a user's BEGIN or
ROLLBACK can neither erase nor hold back what it writes. Each exec and everything that
belongs to it is written in one transaction.
"""

import platform
import socket
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial

from rssd_kernel import __version__
from rssd_kernel.ids import ulid, uuid7
from rssd_kernel.journal import SESSION_ATTACHED, SESSION_START, TABLES, dumps
from rssd_kernel.redact import might_hold_secrets, scrub
from rssd_kernel.writer import Writer

NATURE_ID = "rssd-kernel-sql-notebook"
NATURE_LABEL = "rssd kernel SQL notebook"
UNKNOWN_NOTEBOOK = "rssd:unknown-notebook"
MAX_OUTPUT_TEXT = 64_000

STATUS_OK, STATUS_ERROR, STATUS_INTERRUPTED = 0, 1, 2


@dataclass
class Issue:
    issue_type: str
    message: str
    remediation: str | None = None
    line: int | None = None
    column: int | None = None


@dataclass
class Exec:
    """One orchestration_session_exec row, with its children, log lines and issue."""

    nature: str  # 'SQL', 'kernel-command', or 'SQL-statement' for a cell's statements
    code: str
    status: int = STATUS_OK
    exec_id: str = field(default_factory=uuid7)
    identity: str | None = None
    input_text: str | None = None
    error_text: str | None = None
    output_text: str | None = None
    output_nature: dict | None = None
    narrative: str = ""
    elaboration: dict = field(default_factory=dict)
    log: list[tuple[str, str]] = field(default_factory=list)  # (category, content)
    issue: Issue | None = None
    children: list["Exec"] = field(default_factory=list)


def _json(value, secrets=frozenset()) -> str | None:
    """JSON text with every string in it scrubbed of credentials (and of `secrets`)."""
    return None if value is None else dumps(_scrubbed(value, secrets)).decode()


def _scrubbed(value, secrets=frozenset()):
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {key: _scrubbed(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(item, secrets) for item in value]
    return value


def _same(text):
    return text


def _plain_json(value) -> str | None:
    return None if value is None else dumps(value).decode()


def _keeping(texts: list, make):
    """`make`, keeping each text it makes in `texts`."""

    def kept(value):
        text = make(value)
        texts.append(text)
        return text

    return kept


def _may_hold_secrets(texts: list) -> bool:
    """Whether scrubbing could change any of `texts` (texts and JSON as made unscrubbed).
    JSON's "key" keys are left out (keys are never scrubbed, and a cell's elaboration has
    that one); JSON with a \\u escape (json's, where orjson refused a value) counts as may: an
    escaped character could hide a hint word."""
    text = "\0".join(filter(None, texts))
    return "\\u" in text or might_hold_secrets(text.replace('"key":', ""))


def _bounded(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_OUTPUT_TEXT:
        return text
    return text[:MAX_OUTPUT_TEXT] + f"\n… ({len(text):,} characters, cut)"


def insert_entry(
    con,
    session_id: str,
    source: str,
    ingest_table: str | None,
    elaboration: dict,
    entry_id: str | None = None,
    table: str = "orchestration_session_entry",
) -> str:
    """Insert an orchestration_session_entry through `con` (and its transaction, if any);
    `table` is the entry table's name, qualified when `con` may have run `USE`."""
    entry_id = entry_id or ulid()
    con.execute(
        f"INSERT INTO {table} (orchestration_session_entry_id, session_id, "
        "ingest_src, ingest_table_name, elaboration) VALUES (?, ?, ?, ?, ?)",
        [entry_id, session_id, source, ingest_table, _json(elaboration)],
    ).fetchall()
    return entry_id


DIGESTS_AT_CLOSE = 1.0  # seconds a shutting-down kernel waits for lineage digests, at most


def _sysinfo() -> dict:
    return {
        "os": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
    }


def insert_session(con, record: dict) -> None:
    """Write a session's rows (its device, the nature, the session, its notebook entry) from
    its start record, in the caller's transaction; nothing that is there already."""
    found = con.execute(
        "SELECT device_id FROM device WHERE name = ? AND state = '\"SINGLETON\"' "
        "AND boundary = 'UNKNOWN'",
        [record["host"]],
    ).fetchall()
    if found:
        device_id = found[0][0]
    else:
        device_id = ulid()
        con.execute(
            "INSERT INTO device (device_id, name, state, boundary, state_sysinfo, created_by) "
            "VALUES (?, ?, '\"SINGLETON\"', 'UNKNOWN', ?, 'rssd-kernel')",
            [device_id, record["host"], _json(record["sysinfo"])],
        )
    con.execute(
        "INSERT INTO orchestration_nature (orchestration_nature_id, nature, elaboration) "
        "SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM orchestration_nature "
        "WHERE orchestration_nature_id = ?)",
        [NATURE_ID, NATURE_LABEL, _json({"kernel": "rssd"}), NATURE_ID],
    )
    session_id, notebook = record["session_id"], record["notebook"]
    if con.execute(
        "SELECT 1 FROM orchestration_session WHERE orchestration_session_id = ?", [session_id]
    ).fetchall():
        return
    con.execute(
        "INSERT INTO orchestration_session (orchestration_session_id, device_id, "
        "orchestration_nature_id, version, args_json, orch_started_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [session_id, device_id, NATURE_ID, __version__, _json(record["args"]),
         record["started_at"]],
    )  # fmt: skip
    about = {"kind": "notebook", "path_known": notebook is not None}
    insert_entry(con, session_id, notebook or UNKNOWN_NOTEBOOK, None, about, record["entry_id"])


class Recorder:
    """The session's rows, and the exec records of its cells (through the journal writer).

    The session's ids exist from the start. In a kernel that shares its file (lease.py) the
    writer exists from the start too (pass `database`), so that a cell that ends before the
    file was first taken (interrupted while waiting for it) is journaled like any other; the
    session's own rows are written by `start_session` once the file is held.
    """

    def __init__(self, con=None, cursor=None, hold=None, database: str | None = None):
        self.con = con
        self._cursor = cursor or con.cursor  # makes the writer thread's connection
        self._hold = hold  # takes the database file for the writer (lease.py)
        self.session_id: str = ulid()
        self.entry_id: str = ulid()
        self.started = False
        self.writer: Writer | None = None
        if database is not None:
            self._start_writer(database)

    def _start_writer(self, database: str) -> None:
        self.writer = Writer(self._cursor, database, *([self._hold] if self._hold else []))

    def start_record(self, args: dict, notebook: str | None) -> dict:
        """What it takes to write this session's rows later: journaled first, so that a
        process that never got to hold the file still has its executions recorded."""
        return {
            "session_id": self.session_id, "entry_id": self.entry_id, "args": args,
            "notebook": notebook, "host": socket.gethostname(), "sysinfo": _sysinfo(),
            "started_at": datetime.now(timezone.utc).isoformat(),
        }  # fmt: skip

    def announce(self, args: dict, notebook: str | None) -> None:
        """Journal the session's start (lease mode: before the file is first held)."""
        self.writer.note({SESSION_START: self.start_record(args, notebook)})

    def start_session(
        self, args: dict, notebook: str | None, database: str = ":memory:", con=None
    ) -> str:
        """Write the session (and its device, nature and notebook entry) through `con` (or
        the recorder's connection); return its id."""
        if con is not None:
            self.con = con
        record = self.start_record(args, notebook)
        self.con.begin()
        try:
            insert_session(self.con, record)
            self.con.commit()
        except BaseException:
            self.con.rollback()
            raise
        self.started = True
        if self.writer is None:
            self._start_writer(database)
        else:  # its records now have their session in this file (see journal.recover)
            self.writer.note({SESSION_ATTACHED: self.session_id})
        return self.session_id

    def finish_session(self, diagnostics: dict, diagnostics_md: str) -> None:
        """Write what is pending, then the session's end and diagnostics. Lineage digests
        still being made get DIGESTS_AT_CLOSE seconds: Jupyter's clients stop a kernel that
        has not exited a few seconds after its shutdown request, and the session's end must
        be written first; the rest are made by the next kernel on the file (the journal)."""
        self.writer.close(digests_s=DIGESTS_AT_CLOSE)
        self.con.execute(
            "UPDATE orchestration_session SET orch_finished_at = now(), diagnostics_json = ?, "
            "diagnostics_md = ? WHERE orchestration_session_id = ?",
            [_json(diagnostics), diagnostics_md, self.session_id],
        ).fetchall()

    def record(self, cell: Exec, secrets: set[str] = frozenset()) -> None:
        """Hand an exec, its statement children, their log headers and lines, and issues,
        with every secret in their text masked (see redact.py), to the journal writer.

        The rows are made as they are first, keeping every text that scrubbing would look
        at; only when one of them may hold a credential (or secrets are known) are they
        made again, scrubbed. One check over all of them costs less than a scrub of each."""
        batch = None
        if not secrets:
            texts: list = []
            rows = self._rows(cell, _keeping(texts, _same), _keeping(texts, _plain_json))
            if not _may_hold_secrets(texts):
                batch = dict(zip(TABLES, rows))
        if batch is None:
            clean, dump = partial(scrub, secrets=secrets), partial(_json, secrets=secrets)
            batch = dict(zip(TABLES, self._rows(cell, clean, dump)))
        self.writer.submit(batch)

    def _rows(self, cell: Exec, clean, dump) -> tuple[list, list, list]:
        """(exec rows, log rows, issue rows) of `cell` and its children, their texts made
        by `clean` and their JSON by `dump`."""
        execs, logs, issues = [], [], []

        def collect(item: Exec, parent: str | None) -> None:
            execs.append([
                item.exec_id, item.nature, self.session_id, self.entry_id, parent,
                "rssd", item.identity, clean(item.code), item.status, clean(item.input_text),
                _bounded(clean(item.error_text)), _bounded(clean(item.output_text)),
                dump(item.output_nature), clean(item.narrative), dump(item.elaboration),
            ])  # fmt: skip
            # The header row's id is the exec's id: surveilr's views join log lines to
            # execs through parent_exec_id, while the DDL points it at the log table.
            header = clean(item.narrative) or item.nature
            logs.append([item.exec_id, "exec", None, header, None, None])
            for order, (category, content) in enumerate(item.log, start=1):
                logs.append([uuid7(), category, item.exec_id, clean(content), order, None])
            if item.issue:
                i = item.issue
                issues.append([
                    uuid7(), self.session_id, self.entry_id, i.issue_type, clean(i.message),
                    i.line, None if i.column is None else str(i.column), None, clean(i.remediation),
                    dump({"exec_id": item.exec_id}),
                ])  # fmt: skip
            for child in item.children:
                collect(child, item.exec_id)

        collect(cell, None)
        return execs, logs, issues
