"""Unit tests for cell keys (no kernel)."""

from rssd_kernel.keys import Keys, code_hash


def test_layout_and_comments_do_not_change_the_hash():
    assert code_hash("INSERT INTO t VALUES (1)") == code_hash("-- note\nINSERT  INTO t\nVALUES (1)")
    assert code_hash("INSERT INTO t VALUES (1)") != code_hash("INSERT INTO t VALUES (2)")


def test_the_first_occurrence_keeps_the_plain_key():
    digest = code_hash("INSERT INTO log VALUES (1)")
    assert Keys().key(digest, None) == f"cell-{digest[:16]}"


def test_identical_cells_without_ids_are_separate_occurrences():
    digest = code_hash("INSERT INTO log VALUES (1)")
    keys = Keys()
    first = keys.key(digest, None)
    assert keys.key(digest, None) == first + "-2"
    assert keys.key(digest, None) == first + "-3"
    other = code_hash("INSERT INTO log VALUES (2)")
    assert keys.key(other, None) == f"cell-{other[:16]}"


def test_a_cell_id_tells_a_rerun_from_a_new_cell():
    digest = code_hash("INSERT INTO log VALUES (1)")
    keys = Keys()
    a = keys.key(digest, "a")
    keys.ran(digest, "a")
    assert keys.key(digest, "a") == a  # the same cell run again
    b = keys.key(digest, "b")  # a new cell with the same text
    keys.ran(digest, "b")
    assert b == a + "-2"
    assert keys.key(digest, "a") == a and keys.key(digest, "b") == b


def test_every_execution_counts_whatever_its_outcome():
    """Occurrences depend only on the order of executions, never on which of them failed,
    so a second run of the same notebook gives every cell the key it had in the first."""
    texts = ["INSERT INTO t VALUES (NULL)", "ALTER TABLE t ALTER x DROP NOT NULL",
             "INSERT INTO t VALUES (NULL)"]  # fmt: skip
    runs = []
    for _ in range(2):
        keys = Keys()
        runs.append([keys.key(code_hash(text), None) for text in texts])
    assert runs[0] == runs[1] and runs[0][2] == runs[0][0] + "-2"


def test_the_hash_is_the_one_release_0_1_computed():
    """Keys of existing files keep replaying: the values below are what 0.1.0 computed
    (its tokens cut at DuckDB's byte offsets, which shifts them after non-ASCII text)."""
    assert code_hash("CREATE TABLE t (x INT)")[:16] == "8aae43a3fb746359"
    assert code_hash("SELECT 'é' AS a, 1 AS b")[:16] == "eb9fe0e6be52ccb3"


def test_a_failed_new_cell_keeps_no_occurrence():
    """JupyterLab: cell a fails (its table is missing), is deleted, and the same text is
    typed in a new cell b that succeeds: b takes the first occurrence, as a headless run of
    the saved notebook (one such cell) will give it."""
    digest = code_hash("INSERT INTO wx VALUES (1)")
    keys = Keys()
    assert keys.key(digest, "a") == f"cell-{digest[:16]}"  # a fails: nothing kept
    assert keys.key(digest, "b") == f"cell-{digest[:16]}"
    keys.ran(digest, "b")
    assert keys.key(digest, "b") == f"cell-{digest[:16]}"
    assert keys.key(digest, "c") == f"cell-{digest[:16]}-2"
