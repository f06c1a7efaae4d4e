"""What a cell's result leaves in transition_result (kept_result.py), without a kernel."""

from types import SimpleNamespace

from rssd_kernel.kept_result import kept
from rssd_kernel.redact import MASK
from rssd_kernel.results import Result

SETTINGS = SimpleNamespace(result_max_rows=1000, max_columns=100, max_rows=2,
                           result_max_bytes=4096)  # fmt: skip


def _result(rows, complete=True, columns=("x",)):
    return Result(list(columns), ["VARCHAR"] * len(columns), rows, complete)


def test_a_small_result_is_kept_whole():
    recorded, why = kept(_result([["a"], ["b"], ["c"]]), ["m"], True, SETTINGS, set())
    assert why is None and recorded["rows"] == [["a"], ["b"], ["c"]]
    assert recorded["messages"] == ["m"] and recorded["rows_are_result"] is True


def test_a_result_too_long_or_too_large_keeps_the_rows_shown_and_says_why():
    recorded, why = kept(_result([["a"]] * 5, complete=False), [], True, SETTINGS, set())
    assert why == "more than 1000 rows" and recorded["rows"] == [["a"], ["a"]]
    recorded, why = kept(_result([["x" * 3000]] * 2), [], True, SETTINGS, set())
    assert why.endswith("bytes, over 4,096") and recorded["not_recorded"] == why


def test_a_result_holding_a_credential_keeps_no_row_and_masks_its_names():
    rows = [['{"password": "hunter22"}']]  # inside a value: its quotes are not escaped here
    recorded, why = kept(_result(rows), [], True, SETTINGS, set())
    assert "credential" in why and recorded["rows"] == [] and recorded["row_count"] == 0
    recorded, why = kept(_result([["1"]], columns=("sk-secret-1",)), [], True, SETTINGS,
                         {"sk-secret-1"})  # fmt: skip
    assert "credential" in why and recorded["columns"][0]["name"] == MASK
