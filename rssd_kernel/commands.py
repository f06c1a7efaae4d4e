"""`%` kernel commands: one per cell, `%name arguments...`, arguments split like a shell's."""

import shlex

from rssd_kernel import directives, render
from rssd_kernel.errors import CommandError
from rssd_kernel.recorder import Exec
from rssd_kernel.state import FORGOTTEN, LATEST_RANK

COMMANDS = {
    "help": ("%help", "this help: commands, directives, exec status codes"),
    "config": ("%config [name=value ...]", "show the kernel's settings, or change them"),
    "state": ("%state", "stateful and named cells of this database: key, state, when, session"),
    "forget": ("%forget KEY", "forget an applied cell, so that its next run applies it again"),
    "open": (
        "%open PATH|URL",
        "end this session; open another DuckDB file (or :memory:) or a "
        "PostgreSQL database (postgresql://..., or libpq's key=value pairs)",
    ),
    "sessions": ("%sessions [N]", "the last N sessions recorded in this database (default 10)"),
    "history": ("%history [N]", "the last N cell executions in this database (default 20)"),
    "tables": ("%tables", "the user's tables and views, without the RSSD's"),
}


def works_offline(line: str) -> bool:
    """Commands that work while no database is open (so that one can be opened)."""
    word = line.strip()[1:].split(maxsplit=1)
    return bool(word) and word[0] in ("open", "help", "config")


def help_text() -> str:
    lines = ["Kernel commands (one per cell):"]
    lines += [f"  {usage:28} {text}" for usage, text in COMMANDS.values()]
    lines += ["", "Directives (SQL comment lines at the top of a cell):"]
    lines += ["  " + line for line in directives.help_text().splitlines()]
    lines += [
        "",
        "Cells that change the database (CREATE, INSERT, ... on non-temporary objects) are",
        "stateful: they run once per database, and later runs replay their output.",
        "exec_status in orchestration_session_exec: 0 success, 1 error, 2 interrupted.",
    ]
    return "\n".join(lines)


def run(runner, line: str, cell: Exec):
    from rssd_kernel.runner import Outcome

    try:
        words = shlex.split(line[1:])
    except ValueError as error:
        raise CommandError(f"Cannot read the command's arguments: {error}.") from None
    if not words or words[0] not in COMMANDS:
        name = words[0] if words else ""
        raise CommandError(
            f"Unknown kernel command '%{name}'.",
            "Known commands: " + ", ".join(f"%{c}" for c in COMMANDS) + ". See %help.",
        )
    name, args = words[0], words[1:]
    cell.identity = f"%{name}"
    bundle = globals()[f"_{name}"](runner, args)
    cell.output_text = bundle["text/plain"]
    cell.narrative = f"Kernel command %{name}."
    return Outcome(outputs=[("display_data", bundle)])


def _no_args(name: str, args: list[str]) -> None:
    if args:
        raise CommandError(f"%{name} takes no arguments; got {' '.join(args)!r}.")


def _count(name: str, args: list[str], default: int) -> int:
    if not args:
        return default
    if len(args) > 1 or not args[0].isdigit() or int(args[0]) < 1:
        raise CommandError(f"%{name} takes one optional positive number; got {' '.join(args)!r}.")
    return int(args[0])


def _table(runner, sql: str, params: list | None = None, caption: str = "") -> dict:
    result = runner.engine.query(sql, params)
    return render.table_bundle(result, 10_000, [caption] if caption else [])


def _help(runner, args):
    _no_args("help", args)
    return render.message_bundle([help_text()])


def _config(runner, args):
    settings = runner.settings
    known = dict((name, value) for name, value, _ in settings.describe())
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or key not in known:
            raise CommandError(
                f"%config takes name=value pairs for known settings; got {arg!r}.",
                "Settings: " + ", ".join(sorted(known)) + ".",
            )
        kind = type(known[key])
        try:
            setattr(settings, key, kind(value))
        except Exception:  # a value that is not a number, or out of the setting's range
            raise CommandError(
                f"Bad value for {key}: {value!r}.",
                f"{key} takes {'a whole number' if kind is int else 'a number'}"
                + (" of 1 or more" if key.startswith("max") or key.endswith("rows") else "")
                + f"; it is {known[key]} now.",
            ) from None
    lines = [f"{name} = {value}    # {help}" for name, value, help in settings.describe()]
    return render.message_bundle(lines)


def _state(runner, args):
    _no_args("state", args)
    return _table(
        runner,
        f"""SELECT key, name, state, transitioned_at, session_id, notebook FROM (
               SELECT json_extract_string(elaboration, '$.key') AS key,
                      json_extract_string(elaboration, '$.name') AS name,
                      to_state AS state, transitioned_at, session_id,
                      json_extract_string(elaboration, '$.notebook') AS notebook,
                      {LATEST_RANK} AS n
               FROM orchestration_session_state) AS latest
           WHERE n = 1 ORDER BY transitioned_at DESC""",
        caption="Forget a key with %forget KEY; its cell then applies again on its next run.",
    )


def _forget(runner, args):
    if len(args) != 1:
        raise CommandError("%forget takes exactly one key (see %state).")
    key = args[0]
    # Under the key's lock (PostgreSQL: another kernel may be applying it right now), and
    # decided from what is committed.
    with runner.engine.key_locked(runner.recorder.con, key):
        runner.state.reload()
        applied = runner.state.applied(key)
        if applied is None:
            latest = runner.state.latest.get(key)
            now = f"its state is {latest.to_state}" if latest else "it is not in the RSSD"
            raise CommandError(f"'{key}' is not applied ({now}); nothing to forget.",
                               "See %state.")  # fmt: skip
        transition = runner.state.record(
            runner.recorder.con, key, FORGOTTEN, "forgotten with %forget", None,
            {"forgot_state_id": applied.state_id}, runner.session_id, runner.recorder.entry_id,
        )  # fmt: skip
    runner.state.commit(transition)
    return render.message_bundle([f"Forgot '{key}': its cell applies again on its next run."])


def _open(runner, args):
    if len(args) > 1 and all("=" in arg for arg in args):  # libpq's key=value pairs
        args = [" ".join(args)]
    if len(args) != 1:
        raise CommandError(
            "%open takes exactly one path (or :memory:, or a PostgreSQL URL).",
            "Quote a path with spaces: %open 'my data.duckdb'.",
        )
    runner.open(args[0])
    where = runner.engine.describe()["database"]  # a PostgreSQL URL without its password
    return render.message_bundle([f"Opened {where}: new RSSD session {runner.session_id}."])


def _sessions(runner, args):
    from rssd_kernel.provenance import QUERIES

    return _table(runner, QUERIES["sessions"], [_count("sessions", args, 10)])


def _history(runner, args):
    limit = _count("history", args, 20)
    return _table(
        runner,
        """SELECT json_extract_string(elaboration, '$.started_at') AS started,
                  exec_status AS status,
                  exec_nature AS nature, exec_identity AS key,
                  CAST(json_extract_string(elaboration, '$.duration_ms') AS DOUBLE PRECISION) AS ms,
                  left(replace(exec_code, chr(10), ' '), 60) AS code, session_id
           FROM orchestration_session_exec WHERE parent_exec_id IS NULL
           ORDER BY orchestration_session_exec_id DESC LIMIT ?""",
        [limit],
        caption="status: 0 success, 1 error, 2 interrupted",
    )


def _tables(runner, args):
    _no_args("tables", args)
    return _table(runner, *runner.engine.tables())
