"""The `rssd` command line. Library errors become clean messages here, at the edge."""

import argparse
import json
import os
import shutil
import sys
import tempfile
from importlib import resources

from rssd_kernel import KERNEL_NAME, __version__
from rssd_kernel.errors import RssdError
from rssd_kernel.parameters import ParameterError, parse_cli_value

DATABASE_HELP = (
    "the DuckDB file, or a PostgreSQL database as postgresql://user@host/dbname or libpq's "
    "key=value pairs (default: $RSSD_DATABASE or rssd.duckdb)"
)
NAME_ONE = "Name one with --database PATH (a DuckDB file or a postgresql:// URL)."


def _install(args) -> int:
    from jupyter_client.kernelspec import KernelSpecManager

    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, KERNEL_NAME)
        shutil.copytree(str(resources.files("rssd_kernel").joinpath("kernelspec")), source)
        where = KernelSpecManager().install_kernel_spec(
            source, KERNEL_NAME, user=args.user,
            prefix=sys.prefix if args.sys_prefix else args.prefix,
        )  # fmt: skip
    print(f"Installed the '{KERNEL_NAME}' kernelspec in {where}")
    return 0


def _run(args) -> int:
    from rssd_kernel.headless import _summary_line, print_progress, run_notebook

    try:
        parameters = {name: parse_cli_value(value) for name, value in args.parameter or []}
    except ParameterError as error:
        raise RssdError(f"Bad parameter: {error}") from None
    summary = run_notebook(
        args.notebook, output=args.output, database=args.database, parameters=parameters,
        timeout=args.timeout, progress=print_progress,
    )  # fmt: skip
    print(_summary_line(summary))
    print(f"RSSD: {summary.database}")
    return 0


def _database(args) -> str:
    """The database the reader commands read: --database, $RSSD_DATABASE or rssd.duckdb; a
    DuckDB file that must exist, or a PostgreSQL database (a URL or libpq string)."""
    from rssd_kernel.database import default_path
    from rssd_kernel.engines import is_postgres

    target = args.database or default_path()
    if not is_postgres(target) and target != ":memory:" and not os.path.exists(target):
        raise RssdError(f"No database at {target}.", NAME_ONE)
    return target


def _provenance(args) -> int:
    from rssd_kernel.provenance import read, where

    params = {"sessions": [args.limit] if args.command == "sessions" else None}.get(args.command)
    if args.command in ("log", "show"):
        params = [args.id]
    target = _database(args)
    columns, rows = read(target, args.command, params, args.wait, _tell_waiting)
    if args.command == "show" and not rows:
        raise RssdError(
            f"No exec {args.id} in {where(target)}.", "See `rssd log SESSION` for exec ids."
        )
    if args.json:
        print(json.dumps([dict(zip(columns, row)) for row in rows], default=str, indent=2))
        return 0
    if args.command == "show":
        for column, value in zip(columns, rows[0]):
            print(
                f"{column}:\n{value}\n"
                if column in ("code", "output", "error")
                else f"{column}: {value}"
            )
        return 0
    widths = [
        min(60, max(len(str(v)) for v in [c, *[r[i] for r in rows]])) for i, c in enumerate(columns)
    ]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(v).replace("\n", " ")[:w].ljust(w) for v, w in zip(row, widths)))
    return 0


def _export(args) -> int:
    from rssd_kernel.export import export
    from rssd_kernel.provenance import where

    path = _database(args)
    if path == ":memory:":
        raise RssdError(f"No database at {path}.", NAME_ONE)
    counts = export(path, args.out, args.wait, _tell_waiting)
    print(f"Exported the RSSD of {where(path)} into {args.out}: "
          + ", ".join(f"{table} {n}" for table, n in counts.items()))  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rssd", description="Stateful SQL notebooks on DuckDB and PostgreSQL."
    )
    parser.add_argument("--version", action="version", version=f"rssd-kernel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    install = commands.add_parser("install", help="install the rssd kernelspec")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for the current user")
    where.add_argument("--sys-prefix", action="store_true", help="in this Python environment")
    where.add_argument("--prefix", metavar="P", help="under the prefix P")
    install.set_defaults(handler=_install)

    run = commands.add_parser("run", help="execute a notebook headless with the rssd kernel")
    run.add_argument("notebook", help="the .ipynb file")
    run.add_argument("-o", "--output", help="write the executed notebook here (default: in place)")
    run.add_argument(
        "--database",
        help="the DuckDB file (default: $RSSD_DATABASE, else rssd.duckdb beside the notebook), "
        "or a PostgreSQL database as postgresql://user@host/dbname or libpq's key=value pairs",
    )
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="set a parameter, readable as getvariable('NAME') "
                          "(DuckDB only)")  # fmt: skip
    run.add_argument(
        "--timeout", type=float, help="seconds a cell may run before it is interrupted"
    )
    run.set_defaults(handler=_run)

    readers = {
        "sessions": "recent sessions: when, device, notebook, cells, errors",
        "log": "one session's execs in order: status, duration, what each did",
        "state": "stateful and named cells: key, state, when, session",
        "show": "one exec: code, output, error",
    }
    for name, text in readers.items():
        reader = commands.add_parser(name, help=text)
        if name == "log":
            reader.add_argument("id", metavar="SESSION", help="a session id (see rssd sessions)")
        if name == "show":
            reader.add_argument("id", metavar="EXEC", help="an exec id (see rssd log)")
        if name == "sessions":
            reader.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
        reader.add_argument("--database", help=DATABASE_HELP)
        reader.add_argument("--json", action="store_true", help="JSON for scripts")
        _wait_option(reader)
        reader.set_defaults(handler=_provenance)

    exporter = commands.add_parser("export-rssd", help="copy the RSSD tables into a SQLite file")
    exporter.add_argument("out", metavar="OUT.sqlite", help="the SQLite file (created or updated)")
    exporter.add_argument("--database", help=DATABASE_HELP)
    _wait_option(exporter)
    exporter.set_defaults(handler=_export)
    return parser


def _tell_waiting(text: str) -> None:
    print(f"rssd: {text}; Ctrl-C stops waiting", file=sys.stderr, flush=True)


def _wait_option(parser) -> None:
    parser.add_argument(
        "--wait", type=float, default=600.0, metavar="S",
        help="seconds to wait at most while another process holds the DuckDB file (default 600)",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RssdError as error:
        print(f"rssd: {error.message}", file=sys.stderr)
        if error.remediation:
            print(error.remediation, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rssd: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
