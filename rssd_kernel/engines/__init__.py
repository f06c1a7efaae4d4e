"""Database engines: what is DuckDB's and what is PostgreSQL's, behind one small interface.

The runner speaks to an engine (see `base.py`) for everything that depends on the database:
connecting, splitting and classifying a cell's statements, running one statement with a
bounded fetch, the read-only net and the stateful transaction, interrupting, the catalog
for completion. DuckDB (`duckdb.py`) is the default; a `postgresql://` database (or any
libpq connection string) selects PostgreSQL (`postgres.py`).
"""

import re

from rssd_kernel.errors import DatabaseUnavailable

_CONNINFO = re.compile(r"^\s*(host|hostaddr|dbname|user|port|service)\s*=", re.IGNORECASE)
INSTALL = "pip install 'rssd-kernel[postgres]'"


def is_postgres(target: str) -> bool:
    """Whether `target` names a PostgreSQL database (a URL or a libpq connection string)
    rather than a DuckDB file."""
    return target.startswith(("postgresql://", "postgres://")) or bool(_CONNINFO.match(target))


def load_postgres():
    """The PostgreSQL engine module; a clear error when its packages are not installed."""
    try:
        from rssd_kernel.engines import postgres as module
    except ImportError as error:
        raise DatabaseUnavailable(
            f"PostgreSQL databases need psycopg 3 and pglast, which are not installed "
            f"({error.name or error}).",
            f"Install them with: {INSTALL}",
        ) from None
    return module
