"""The example notebooks, executed headless twice: the second run replays what it should
and gives the same outputs."""

import os
import shutil

import blake3
import nbformat
import pytest
from conftest import read_db
from test_cli import normalised, rssd

HERE = os.path.dirname(os.path.abspath(__file__))
NOTEBOOKS = os.path.join(HERE, "..", "notebooks")

CASES = {
    # notebook: (replayed on the second run, a check on the database afterwards)
    "quickstart": (1, ("SELECT count(*) FROM orders", [(500,)])),
    "ingest_and_analyse": (1, ("SELECT count(*) FROM sales", [(200,)])),
    "parameterised_report": (1, ("SELECT count(*) FROM report_sales", [(200,)])),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_example_notebook_runs_twice(tmp_path, name):
    folder = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, folder)
    path = str(folder / f"{name}.ipynb")
    first = rssd("run", path, "-o", str(tmp_path / "first.ipynb"))
    assert first.returncode == 0, first.stderr
    second = rssd("run", path, "-o", str(tmp_path / "second.ipynb"))
    assert second.returncode == 0, second.stderr
    replayed, (sql, expected) = CASES[name]
    assert f"replayed {replayed}, failed 0" in second.stdout
    one = nbformat.read(tmp_path / "first.ipynb", as_version=4)
    two = nbformat.read(tmp_path / "second.ipynb", as_version=4)
    volatile = {"quickstart": [3], "ingest_and_analyse": [], "parameterised_report": []}[name]
    keep = [i for i in range(len(normalised(one))) if i not in volatile]
    assert [normalised(one)[i] for i in keep] == [normalised(two)[i] for i in keep]
    assert read_db(str(folder / "rssd.duckdb"), sql) == expected


def test_ingest_notebook_records_its_csv(tmp_path):
    folder = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, folder)
    out = tmp_path / "out.ipynb"
    assert rssd("run", str(folder / "ingest_and_analyse.ipynb"), "-o", str(out)).returncode == 0
    digest = blake3.blake3((folder / "data" / "sales.csv").read_bytes()).hexdigest()
    last = nbformat.read(out, as_version=4).cells[-1]  # the notebook shows where data came from
    assert digest in str(last.outputs)
    rows = read_db(
        str(folder / "rssd.duckdb"),
        """
        SELECT ingest_src, ingest_table_name, json_extract_string(elaboration, '$.resolved_path'),
               CAST(json_extract(elaboration, '$.size') AS BIGINT)
        FROM orchestration_session_entry WHERE ingest_table_name IS NOT NULL""",
    )
    assert rows == [
        (
            "data/sales.csv",
            "sales",
            str(folder / "data" / "sales.csv"),
            os.path.getsize(folder / "data" / "sales.csv"),
        )
    ]


def test_report_parameters(tmp_path):
    folder = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, folder)
    result = rssd(
        "run",
        str(folder / "parameterised_report.ipynb"),
        "-p",
        "region",
        "south",
        "-p",
        "min_quantity",
        "8",
    )
    assert result.returncode == 0, result.stderr
    nb = nbformat.read(folder / "parameterised_report.ipynb", as_version=4)
    text = nb.cells[-1].outputs[0]["data"]["text/plain"]
    expected = read_db(
        str(folder / "rssd.duckdb"),
        """SELECT product, sum(quantity) FROM report_sales
        WHERE region = 'south' AND quantity >= 8 GROUP BY product ORDER BY product""",
    )
    for product, quantity in expected:
        assert product in text and str(quantity) in text
    assert "north" not in text
