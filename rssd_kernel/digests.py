"""Lineage digests made after the cell: the requests a stateful cell leaves, and how they
are made and filled in.

A stateful cell that read files writes each lineage entry in its own transaction with
`digest_pending` (see lineage.describe), and leaves one request per file: a batch
{DIGESTS: [request]} that the journal writer journals before the cell commits. A request
holds the file's path and signature (lineage._signature) and the entry's id and
elaboration. The writer's digest thread `make`s it outside any transaction and holding
nothing; the writer then `fill_in`s the entry. Recovery does the same for a process that
died first (journal.replay). Filling in is done once: an entry already completed (a journal
replayed twice), or never committed (the cell failed after its request), is left alone.
"""

from rssd_kernel import lineage

DIGESTS = "entry_digests"  # the key of a batch of requests, in the journal


def is_request(request) -> bool:
    """Whether `request`, read back from a journal, has the shape of a digest request."""
    return (
        isinstance(request, dict)
        and isinstance(request.get("entry_id"), str)
        and isinstance(request.get("path"), str)
        and isinstance(request.get("signature"), list)
        and isinstance(request.get("elaboration"), dict)
    )


def made(batch: dict) -> bool:
    """Whether `batch` needs no hashing before it is written (a digest batch whose digests
    are made, or any other batch)."""
    return all("done" in request for request in batch.get(DIGESTS, ()))


def make(batches: list[dict], con=None, only_filter: bool = False) -> None:
    """Make the digests the digest batches among `batches` still lack (lineage.complete),
    kept in each request as `done`: made once, whatever the retries of the write. With
    `con` (a journal read back), only for entries still waiting for theirs (`only_filter`:
    mark the others done, make none). Never raises: a digest that cannot be made is
    recorded with the reason (`digest_error`)."""
    requests = [r for b in batches for r in b.get(DIGESTS, ()) if "done" not in r]
    if con is not None and requests:
        waiting = _pending_entries(con, [r["entry_id"] for r in requests])
        for request in requests:
            if request["entry_id"] not in waiting:
                request["done"] = None  # filled in already, or never committed
    if only_filter:
        return
    done = {}
    for request in requests:
        if "done" in request:
            continue
        if request["entry_id"] not in done:  # a request journaled twice is made once
            try:
                done[request["entry_id"]] = lineage.complete(request)
            except Exception as error:  # noqa: BLE001 - a bug must not stop the records
                done[request["entry_id"]] = lineage.failed(request, error)
        request["done"] = done[request["entry_id"]]


def fill_in(con, request: dict, table: str = "orchestration_session_entry") -> None:
    """Fill in the entry of a request whose digest is made, in the caller's transaction,
    once (see the module docstring). DuckDB's JSON functions: lineage is recorded on DuckDB
    only."""
    from rssd_kernel.recorder import _json  # the recorder writes through the journal

    elaboration = request.get("done")
    if elaboration is None:
        return
    con.execute(
        f"UPDATE {table} SET elaboration = ? WHERE orchestration_session_entry_id = ? "
        "AND json_extract_string(elaboration, '$.digest_pending') = 'true'",
        [_json(elaboration), request["entry_id"]],
    ).fetchall()


def _pending_entries(con, ids: list[str]) -> set:
    sql = (
        "SELECT orchestration_session_entry_id FROM orchestration_session_entry "
        "WHERE orchestration_session_entry_id IN (SELECT unnest(?::VARCHAR[])) "
        "AND json_extract_string(elaboration, '$.digest_pending') = 'true'"
    )
    return {row[0] for row in con.execute(sql, [sorted(set(ids))]).fetchall()}
