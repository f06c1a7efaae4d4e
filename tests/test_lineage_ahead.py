"""Lineage digests made while the statement runs (lineage.Ahead): the same digest as hashing
the file afterwards, never a stale one, and a file handed over half-hashed is finished."""

import os

import blake3
import pytest

from rssd_kernel import lineage


def _file(path, size: int, fill: bytes = b"a,b\n1,2\n") -> bytes:
    data = (fill * (size // len(fill) + 1))[:size]
    path.write_bytes(data)
    return data


def test_a_digest_made_ahead_is_the_files_digest(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    data = _file(path, 3 << 20)
    ahead = lineage.Ahead([str(path)])

    def no_second_hash(*_):
        raise AssertionError("the file was hashed again")

    monkeypatch.setattr(lineage, "file_digest", no_second_hash)
    info = lineage.describe(str(path), ahead=ahead)
    assert info["digest"] == blake3.blake3(data).hexdigest()
    assert info["size"] == len(data)


@pytest.mark.parametrize("change", ["size", "content, same size", "replaced, same size and time"])
def test_a_file_changed_after_it_was_hashed_ahead_is_hashed_again(tmp_path, change):
    """What is recorded is the file as it is when the statement is done, not as it was."""
    path = tmp_path / "big.csv"
    _file(path, 2 << 20)
    before = os.stat(path)
    ahead = lineage.Ahead([str(path)])
    ahead.stop()  # whatever it hashed of the old content
    if change == "size":
        changed = _file(path, (2 << 20) + 5, fill=b"x,y\n3,4\n")
    elif change == "content, same size":
        changed = _file(path, 2 << 20, fill=b"x,y\n3,4\n")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    else:  # another file put in its place: a new inode, the old size and time
        other = tmp_path / "other.csv"
        changed = _file(other, 2 << 20, fill=b"x,y\n3,4\n")
        os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(other, path)
    assert ahead.digest(str(path), os.stat(path)) is None
    info = lineage.describe(str(path), ahead=ahead)
    assert info["digest"] == blake3.blake3(changed).hexdigest()


def test_a_file_replaced_before_the_hand_over_is_not_mixed_into_one_digest(tmp_path):
    """The hand-over opens the file again: if another file took its place (and the stat
    taken just before still matched), its digest is not used."""
    path = tmp_path / "big.csv"
    _file(path, 5 * lineage._BLOCK)
    hashing = lineage._Hashing(str(path))
    hashing.advance(lambda: True)  # one block, then stop
    other = tmp_path / "other.csv"
    _file(other, 5 * lineage._BLOCK, fill=b"x,y\n3,4\n")
    os.replace(other, path)
    hashing.advance(lambda: False)
    assert hashing.changed and not hashing.done


def test_a_file_half_hashed_is_finished_where_it_stopped(tmp_path):
    """The thread hands a file over between two blocks; the rest is hashed from there."""
    path = tmp_path / "big.csv"
    data = _file(path, 5 * lineage._BLOCK + 123)
    hashing = lineage._Hashing(str(path))
    blocks = []
    hashing.advance(lambda: blocks.append(1) or len(blocks) == 2)  # stop after two blocks
    assert hashing.offset == 2 * lineage._BLOCK and not hashing.done
    hashing.advance(lambda: False)
    assert hashing.done and hashing.hasher.hexdigest() == blake3.blake3(data).hexdigest()


def test_files_named_are_the_local_files_a_statement_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _file(tmp_path / "big.csv", 2 << 20)
    _file(tmp_path / "it's.csv", 2 << 20)
    _file(tmp_path / "small.csv", 100)
    (tmp_path / "folder").mkdir()
    query = (
        "CREATE TABLE t AS SELECT * FROM read_csv('big.csv') UNION ALL "
        "SELECT * FROM read_csv('it''s.csv') UNION ALL SELECT * FROM read_csv('small.csv') "
        "UNION ALL SELECT * FROM read_csv('missing.csv') UNION ALL "
        "SELECT * FROM read_csv('https://example.com/big.csv') -- 'folder'"
    )
    assert lineage.files_named(query) == [str(tmp_path / "big.csv"), str(tmp_path / "it's.csv")]
    assert lineage.files_named("SELECT 'folder', 'big.csv'", minimum=0) == [
        str(tmp_path / "big.csv")
    ]
    # Bounded: a long statement (an INSERT of many values) is not scanned at all
    values = ", ".join(f"('row{i}.txt')" for i in range(20000))
    assert lineage.files_named(f"INSERT INTO t VALUES ('big.csv'), {values}") == []


def test_an_ingest_records_the_digest_of_the_file_it_read(kernel, tmp_path):
    """Through the kernel: a file large enough to be hashed while DuckDB reads it gets the
    digest of its content in the cell's lineage entry."""
    path = tmp_path / "wide.csv"
    path.write_bytes(b"id,name\n" + b"".join(b"%d,n%d\n" % (i, i) for i in range(200_000)))
    data = path.read_bytes()
    kernel.ok(f"CREATE TABLE wide AS SELECT * FROM read_csv('{path}')")
    kernel.ok("-- @always\nSELECT 1")  # the records are in before a cell that may read them
    assert len(data) > lineage.AHEAD_MIN
    digest = blake3.blake3(data).hexdigest()
    found = kernel.ok(
        "SELECT count(*) AS found FROM orchestration_session_entry WHERE "
        f"json_extract_string(elaboration, '$.digest') = '{digest}' AND "
        "json_extract_string(elaboration, '$.digest_algorithm') = 'blake3' AND "
        "ingest_table_name = 'wide'"
    ).text
    assert "\n1\n" in found, found
