"""Unit tests for cell keys (no kernel)."""

from rssd_kernel.keys import Keys, code_hash


def test_layout_and_comments_do_not_change_the_hash():
    assert code_hash("INSERT INTO t VALUES (1)") == code_hash("-- note\nINSERT  INTO t\nVALUES (1)")
    assert code_hash("INSERT INTO t VALUES (1)") != code_hash("INSERT INTO t VALUES (2)")


def test_the_first_occurrence_keeps_the_plain_key():
    digest = code_hash("INSERT INTO log VALUES (1)")
    keys = Keys()
    assert keys.key(digest, None) == f"cell-{digest[:16]}"


def test_identical_cells_without_ids_are_separate_occurrences():
    digest = code_hash("INSERT INTO log VALUES (1)")
    keys = Keys()
    first = keys.key(digest, None)
    keys.take(digest, None)
    second = keys.key(digest, None)
    keys.take(digest, None)
    assert second == first + "-2"
    assert keys.key(digest, None) == first + "-3"


def test_a_cell_id_tells_a_rerun_from_a_new_cell():
    digest = code_hash("INSERT INTO log VALUES (1)")
    keys = Keys()
    a = keys.key(digest, "a")
    keys.take(digest, "a")
    assert keys.key(digest, "a") == a  # the same cell run again
    keys.take(digest, "a")
    b = keys.key(digest, "b")  # a new cell with the same text
    assert b == a + "-2"
    keys.take(digest, "b")
    assert keys.key(digest, "a") == a and keys.key(digest, "b") == b


def test_a_failed_run_takes_no_occurrence():
    digest = code_hash("INSERT INTO log VALUES (1)")
    keys = Keys()
    first = keys.key(digest, None)  # this run failed: nothing taken
    assert keys.key(digest, None) == first
