"""papermill runs rssd notebooks, with parameters of several types injected as variables."""

import json
import os
import subprocess
import sys

import nbformat
from conftest import read_db


def test_papermill_parameters_of_several_types(tmp_path):
    source = tmp_path / "report.ipynb"
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "rssd", "display_name": "rssd", "language": "sql"}}
    )
    defaults = nbformat.v4.new_code_cell("SET VARIABLE region = 'all';")
    defaults.metadata["tags"] = ["parameters"]
    nb.cells = [
        defaults,
        nbformat.v4.new_code_cell(
            "SELECT getvariable('region') AS region, getvariable('n') + 1 AS n1,\n"
            "       getvariable('ratio') * 2 AS r2, getvariable('flag') AS flag,\n"
            "       getvariable('nothing') IS NULL AS is_null, getvariable('items')[2] AS second,\n"
            "       typeof(getvariable('ratio')) AS ratio_type"
        ),
    ]
    nbformat.write(nb, source)
    params = {
        "region": "north'; DROP TABLE x; --",
        "n": 41,
        "ratio": 0.25,
        "flag": True,
        "nothing": None,
        "items": ["a", "b'c"],
    }
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(source),
            str(tmp_path / "out.ipynb"),
            "-k",
            "rssd",
            "--cwd",
            str(tmp_path),
            "-y",
            json.dumps(params),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    injected = [c for c in out.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and injected[0].source.startswith("-- @parameters")
    html = out.cells[-1].outputs[0]["data"]["text/html"]
    for expected in [
        "north&#x27;; DROP TABLE x; --",
        "<td>42</td>",
        "<td>0.5</td>",
        "<td>true</td>",
        "b&#x27;c",
        "DOUBLE",
    ]:
        assert expected in html, expected
    rows = read_db(str(tmp_path / "rssd.duckdb"), "SELECT args_json FROM orchestration_session")
    recorded = json.loads(rows[0][0])["parameters"]
    assert recorded["n"]["value"] == "41" and recorded["region"]["value"] == params["region"]
    (inputs,) = read_db(
        str(tmp_path / "rssd.duckdb"),
        """SELECT input_text FROM orchestration_session_exec
        WHERE parent_exec_id IS NULL AND exec_code LIKE '-- @parameters%'""",
    )[0]
    assert json.loads(inputs)["parameters"]["items"]["value"] == "[a, 'b\\'c']"
