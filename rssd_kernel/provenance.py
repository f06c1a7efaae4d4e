"""Reading the RSSD of a database file: the queries behind `rssd sessions|log|state|show`."""

import os

import duckdb

from rssd_kernel.errors import DatabaseLocked, DatabaseUnavailable, RssdError
from rssd_kernel.journal import recover
from rssd_kernel.lease import open_waiting

QUERIES = {
    "sessions": """
        SELECT s.orchestration_session_id AS session, CAST(s.orch_started_at AS VARCHAR) AS started,
               CAST(s.orch_finished_at AS VARCHAR) AS finished, d.name AS device,
               json_extract_string(s.args_json, '$.notebook') AS notebook,
               (SELECT count(*) FROM orchestration_session_exec e
                 WHERE e.session_id = s.orchestration_session_id
                   AND e.parent_exec_id IS NULL) AS cells,
               (SELECT count(*) FROM orchestration_session_exec e
                 WHERE e.session_id = s.orchestration_session_id AND e.parent_exec_id IS NULL
                   AND e.exec_status = 1) AS errors
        FROM orchestration_session s JOIN device d USING (device_id)
        ORDER BY s.orchestration_session_id DESC LIMIT ?""",
    "log": """
        SELECT orchestration_session_exec_id AS exec, parent_exec_id AS parent,
               exec_status AS status, exec_nature AS nature,
               CAST(json_extract_string(elaboration, '$.duration_ms') AS DOUBLE PRECISION) AS ms,
               narrative_md AS what
        FROM orchestration_session_exec WHERE session_id = ?
        ORDER BY coalesce(parent_exec_id, orchestration_session_exec_id),
                 parent_exec_id NULLS FIRST, orchestration_session_exec_id""",
    "state": """
        SELECT key, state, transitioned_at, session FROM (
            SELECT json_extract_string(elaboration, '$.key') AS key, to_state AS state,
                   CAST(transitioned_at AS VARCHAR) AS transitioned_at, session_id AS session,
                   transitioned_at AS t,
                   row_number() OVER (PARTITION BY json_extract_string(elaboration, '$.key')
                       ORDER BY coalesce(CAST(json_extract_string(elaboration, '$.change')
                                              AS BIGINT), -1) DESC,
                                transitioned_at DESC, orchestration_session_state_id DESC) AS n
            FROM orchestration_session_state) AS latest
        WHERE n = 1 ORDER BY t DESC""",
    "show": """
        SELECT orchestration_session_exec_id AS exec, session_id AS session, exec_status AS status,
               exec_code AS code, output_text AS output, exec_error_text AS error
        FROM orchestration_session_exec WHERE orchestration_session_exec_id = ?""",
}


def connect(path: str, wait_s: float = 600.0, on_wait=None):
    """A connection to read the RSSD of `path`, waiting while another process holds the
    file (lease.py). When the file can be written, the journals of processes that died are
    recovered first, so that what they ran shows too; a read-only file is read as it is."""
    if not os.path.exists(path):
        raise RssdError(f"{path} does not exist; run a notebook on it first.")
    try:
        con = open_waiting(path, wait_s=wait_s, on_wait=on_wait)
    except DatabaseLocked:
        raise
    except DatabaseUnavailable:
        return open_waiting(path, read_only=True, wait_s=wait_s, on_wait=on_wait)
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "orchestration_session_exec" in tables:
        recover(con, path)  # never raises; a journal it cannot use is set aside
    return con


def read(
    path: str, what: str, params: list | None = None, wait_s: float = 600.0, on_wait=None
) -> tuple[list[str], list[tuple]]:
    """Column names and rows of one provenance query."""
    con = connect(path, wait_s, on_wait)
    try:
        cursor = con.execute(QUERIES[what], params or [])
        columns = [d[0] for d in cursor.description]
        return columns, cursor.fetchall()
    except duckdb.CatalogException:
        raise RssdError(f"{path} holds no RSSD tables; run a notebook on it first.") from None
    finally:
        con.close()
