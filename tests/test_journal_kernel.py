"""The exec journal through a real kernel: a journal whose database file was deleted."""

import glob
import os

from conftest import read_db

from rssd_kernel.database import open_database
from rssd_kernel.journal import SUFFIX, TABLES, frame, read_records
from rssd_kernel.recorder import Exec, Recorder


class Capture:
    def __init__(self):
        self.batches = []

    def submit(self, batch):
        self.batches.append(batch)


def foreign_record(db: str) -> tuple[bytes, str]:
    """A journal record of a session in `db`, and its exec id."""
    con = open_database(db)
    recorder = Recorder(con.cursor())
    recorder.start_session({}, None, ":memory:")
    recorder.writer.close()
    recorder.writer = capture = Capture()
    recorder.record(Exec(nature="SQL", code="SELECT 'left behind'"))
    con.close()
    (batch,) = capture.batches
    return frame(batch), batch[TABLES[0]][0][0]


def test_a_journal_left_beside_a_deleted_database_is_set_aside(tmp_path, kernel_factory):
    """A kernel is killed, the user deletes the database file to start afresh: the next
    kernel starts, works, and keeps the old records in a file beside the database."""
    db = str(tmp_path / "rssd.duckdb")
    journal = db + SUFFIX
    kernel = kernel_factory(db)
    kernel.ok("SELECT 42 AS answer")
    kernel.kill()
    # Whether the kill left the cell's record in the journal depends on timing; make sure it
    # holds one (of a session the new file will not have either).
    record, exec_id = foreign_record(str(tmp_path / "other.duckdb"))
    with open(journal, "ab") as handle:
        handle.write(record)
    with open(journal, "rb") as handle:
        left = handle.read()
    for path in (db, db + ".wal"):
        if os.path.exists(path):
            os.remove(path)

    kernel = kernel_factory(db)
    first = kernel.ok("SELECT 1 AS one")
    assert "1" in first.text
    (aside,) = glob.glob(journal + ".orphaned-*")
    shown = "".join(o["content"]["text"] for o in first.outputs if o["msg_type"] == "stream")
    assert os.path.basename(aside) in shown  # the first cell's output says where they went
    with open(aside, "rb") as handle:
        assert handle.read() == left
    with open(aside, "rb") as handle:
        assert exec_id in [batch[TABLES[0]][0][0] for batch, _ in read_records(handle) if batch]
    kernel.shutdown()
    recorded = read_db(
        db, "SELECT orchestration_session_exec_id, exec_code FROM orchestration_session_exec"
    )
    assert exec_id not in [row[0] for row in recorded]
    assert any("SELECT 1 AS one" in row[1] for row in recorded)
