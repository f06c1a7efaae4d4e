"""The `rssd` command line. Library errors become clean messages here, at the edge."""

import argparse
import os
import shutil
import sys
import tempfile
from importlib import resources

from rssd_kernel import KERNEL_NAME, __version__
from rssd_kernel.errors import RssdError
from rssd_kernel.parameters import ParameterError, parse_cli_value


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rssd", description="Stateful SQL notebooks on DuckDB.")
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
        "--database", help="the DuckDB file (default: rssd.duckdb beside the notebook)"
    )
    run.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="set a parameter, readable as getvariable('NAME')")  # fmt: skip
    run.add_argument(
        "--timeout", type=float, help="seconds a cell may run before it is interrupted"
    )
    run.set_defaults(handler=_run)
    return parser


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
