"""The errors a user can cause, each with a message that says what to do.

Every failure that reaches a user goes through one of these classes (or is a DuckDB error,
which the runner reports with DuckDB's own error class). The kernel and the CLI turn them
into clean messages; no Python traceback from our code reaches a user.
"""


class RssdError(Exception):
    """Base class. `ename` is what Jupyter shows as the error's name."""

    ename = "RSSD Error"

    def __init__(self, message: str, remediation: str | None = None):
        super().__init__(message)
        self.message = message
        self.remediation = remediation

    def __str__(self) -> str:
        if self.remediation:
            return f"{self.message}\n{self.remediation}"
        return self.message


class DatabaseUnavailable(RssdError):
    """The database file cannot be opened (locked, not DuckDB, read-only, wrong schema)."""

    ename = "Database Unavailable"


class DatabaseLocked(DatabaseUnavailable):
    ename = "Database Locked"


class SchemaMismatch(DatabaseUnavailable):
    """The file's RSSD tables were written by a newer release or altered by hand."""

    ename = "Schema Mismatch"


class InvalidInput(RssdError):
    """The cell's text cannot be handled at all (invalid Unicode)."""

    ename = "Invalid Input"


class DirectiveError(RssdError):
    """A `-- @...` line at the top of a cell is unknown or malformed."""

    ename = "Directive Error"


class StatefulCellError(RssdError):
    """A stateful cell cannot run safely (transaction control, drifted code, open transaction)."""

    ename = "Stateful Cell Error"


class NamedResultError(RssdError):
    """A named result is missing, not a single value, not recorded, or hides a table."""

    ename = "Named Result Error"


class CommandError(RssdError):
    """A `%` kernel command is unknown or has wrong arguments."""

    ename = "Command Error"


class AuditTrailError(RssdError):
    """A cell would change the RSSD's own tables, which rssd keeps append-only."""

    ename = "Audit Trail Error"
