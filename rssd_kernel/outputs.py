"""What the kernel sends for a cell: its outputs in order and its reply, for a cell that
ran and for one that was replayed from its recorded state."""

from dataclasses import dataclass, field
from datetime import datetime, timezone

from rssd_kernel import classify, render
from rssd_kernel.errors import RssdError
from rssd_kernel.recorder import Exec
from rssd_kernel.results import Result
from rssd_kernel.state import result_of


@dataclass
class Outcome:
    """What the kernel sends for a cell: outputs in order, then the reply status."""

    outputs: list[tuple[str, dict]] = field(default_factory=list)  # (msg_type, bundle)
    error: tuple[str, str, list[str]] | None = None  # ename, evalue, traceback lines
    interrupted: bool = False
    metadata: dict = field(default_factory=dict)  # sent with the result, under "rssd"

    @property
    def status(self) -> str:
        return "error" if self.error else "ok"


def of_cell(session, cell: Exec, plan, ran) -> Outcome:
    """The outputs of a cell that ran; fills in the exec's output columns."""
    kind, key = ran.kind, plan.key
    caption = [_kind_line(kind, key, plan.name)] if kind == classify.STATEFUL else []
    warnings = [c for k, c in cell.log if k == "warning"]
    outcome = Outcome(
        metadata={"kind": kind, "key": key, "replayed": False, "session_id": session.session_id}
    )
    for warning in warnings:
        outcome.outputs.append(("stream", {"name": "stderr", "text": warning + "\n"}))
    max_rows = session.settings.max_rows
    text = None if caption else ran.last_text  # the statement's table text is the cell's
    bundle = _bundle(ran.last, ran.last_rows, ran.messages, caption, max_rows, text)
    outcome.outputs.append(("execute_result", bundle))
    cell.output_text = bundle["text/plain"]
    cell.output_nature = {
        "kind": kind, "statements": len(cell.children),
        **(cell.children[-1].output_nature or {}),
    }  # fmt: skip
    rows = ""
    if ran.last_rows:
        rows = (
            f"; the last returned {render.row_caption(ran.last, min(len(ran.last.rows), max_rows))}"
        )
    count = len(cell.children)
    cell.narrative = f"Ran {count} statement{'s' if count != 1 else ''} ({kind}){rows}."
    return outcome


def replay(session, cell: Exec, applied, key: str) -> Outcome:
    """The outputs of a stateful cell that was applied before: its recorded result."""
    data = session.state.result(key) if applied.has_result else None
    banner = (
        f"replayed: applied {when(applied.transitioned_at)} in session "
        f"{applied.session_id}; run `%forget {key}` and this cell again to apply it again."
    )
    result = result_of(data) if data else None
    if result is None and data and data.get("columns"):
        result = Result.from_json(data)  # shown rows of a result too large to record
    bundle = _bundle(result, bool(data and data.get("rows_are_result")),
                     (data or {}).get("messages", []), [banner],
                     session.settings.max_rows)  # fmt: skip
    cell.elaboration.update(replayed=True, applied_state_id=applied.state_id)
    cell.output_text = bundle["text/plain"]
    cell.output_nature = {"kind": classify.STATEFUL, "replayed": True, "statements": 0}
    cell.narrative = f"Replayed: '{key}' was already applied; nothing ran."
    return Outcome(
        outputs=[("execute_result", bundle)],
        metadata={
            "result": result if data and data.get("rows_are_result") else None,
            "kind": classify.STATEFUL,
            "key": key,
            "replayed": True,
            "session_id": session.session_id,
        },
    )


def _bundle(result, rows, messages, caption, max_rows: int, text: str | None = None) -> dict:
    if rows and result is not None:
        return render.table_bundle(result, max_rows, caption, text)
    shown = (
        messages if len(messages) <= 20 else [*messages[:20], f"… and {len(messages) - 20} more"]
    )
    return render.message_bundle(caption + shown)


def error_outcome(error: RssdError) -> Outcome:
    return Outcome(error=(error.ename, str(error), [f"{error.ename}: {error}"]))


def traceback_of(failure) -> list[str]:
    where = failure.where
    if failure.line is not None:
        where += f", at line {failure.line}" + (
            f", column {failure.column}" if failure.column else ""
        )
    return [f"{failure.ename} in {where}:", failure.evalue]


def stderr(text: str) -> tuple[str, dict]:
    return ("stream", {"name": "stderr", "text": text.rstrip("\n") + "\n"})


def _kind_line(kind: str, key: str, name: str | None) -> str:
    label = f"'{name}'" if name else f"key {key}"
    return f"✓ stateful cell {label} applied now; later runs replay it."


def when(value) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)
