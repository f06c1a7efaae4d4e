"""Security: HTML output is inert, parameters are data, secrets are never recorded or shown."""

import json
import os
import subprocess
import sys

import duckdb
import nbformat
import pytest
from conftest import read_db

XSS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "javascript:alert(1)",
    "<iframe srcdoc='<script>alert(1)</script>'>",
    "</td></tr></table><script>alert(1)</script>",
    '<a href="javascript:alert(1)">x</a>',
    "&lt;script&gt;",
    "<style>body{display:none}</style>",
]
INJECTIONS = [
    "'; DROP TABLE victims; --",
    "1; DELETE FROM victims",
    "' OR '1'='1",
    "\\'; DROP TABLE victims; --",
    "$$; DROP TABLE victims; $$",
    "x'); DROP TABLE victims; --",
    '" OR ""="',
    "NULL); DROP TABLE victims; --",
]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _no_markup(html: str, payload: str) -> None:
    body = html.split("</style>", 1)[1] if "</style>" in html else html  # our own style block
    for tag in ("<script", "<img", "<svg", "<iframe", "<a ", "<style"):
        if tag in payload.lower():
            assert tag not in body.lower(), (payload, body)


@pytest.mark.parametrize("payload", XSS)
def test_xss_in_values_and_column_names_is_inert(kernel, payload):
    literal = _sql_string(payload)
    identifier = '"' + payload.replace('"', '""') + '"'
    reply = kernel.ok(f"SELECT {literal} AS {identifier}, {literal} AS v")
    _no_markup(reply.html, payload)


def test_xss_in_error_messages_is_plain_text(kernel):
    reply = kernel.execute('SELECT * FROM "<script>alert(1)</script>"')
    assert reply.status == "error"
    # Errors travel as ename/evalue/traceback text, never as HTML.
    assert all(o["msg_type"] != "display_data" for o in reply.outputs)
    assert "<script>" in reply.content["evalue"]  # shown as text, verbatim


def test_sql_cannot_reach_the_kernels_python_variables(kernel):
    for name in ["wanted", "params", "statement", "self", "con"]:
        reply = kernel.execute(f"SELECT * FROM {name}")
        assert reply.content["ename"] == "Catalog Error", reply.content
        assert ".py" not in reply.content["evalue"], reply.content["evalue"]


def test_injection_through_named_results_is_data(kernel):
    kernel.ok("CREATE TABLE victims AS SELECT 1 AS id")
    values = ", ".join(f"({_sql_string(p)})" for p in INJECTIONS)
    kernel.ok(f"-- @name payloads\nSELECT * FROM (VALUES {values}) t(p)")
    for index, payload in enumerate(INJECTIONS):
        kernel.ok(f"-- @name one\nSELECT p FROM payloads LIMIT 1 OFFSET {index}")
        reply = kernel.ok("SELECT $one AS v, length($one) AS n")
        assert str(len(payload)) in reply.html
    reply = kernel.ok("SELECT count(*) AS n FROM victims")
    assert "<td>1</td>" in reply.html


def test_injection_through_papermill_parameters_is_data(tmp_path):
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "rssd", "display_name": "rssd", "language": "sql"}}
    )
    setup = nbformat.v4.new_code_cell("CREATE TABLE IF NOT EXISTS victims AS SELECT 1 AS id;")
    params = nbformat.v4.new_code_cell("SET VARIABLE p = '';")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        setup,
        params,
        nbformat.v4.new_code_cell(
            "SELECT getvariable('p') AS p, (SELECT count(*) FROM victims) AS n"
        ),
    ]
    nbformat.write(nb, tmp_path / "in.ipynb")
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    for index, payload in enumerate(INJECTIONS):
        out = tmp_path / f"out{index}.ipynb"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "papermill",
                str(tmp_path / "in.ipynb"),
                str(out),
                "-k",
                "rssd",
                "--cwd",
                str(tmp_path),
                "-p",
                "p",
                payload,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        shown = nbformat.read(out, as_version=4).cells[-1].outputs[0]["data"]["text/plain"]
        assert payload.replace("\n", "\\n")[:30] in shown
    assert read_db(str(tmp_path / "rssd.duckdb"), "SELECT count(*) FROM victims") == [(1,)]


SECRET_CELLS = [
    (
        "CREATE SECRET s3s (TYPE s3, KEY_ID 'AKIAEXAMPLEKEY', SECRET 'wJalrXUtnFEMIK7MDENG', REGION 'us-east-1')",
        ["AKIAEXAMPLEKEY", "wJalrXUtnFEMIK7MDENG"],
    ),
    ("CREATE SECRET gh (TYPE http, BEARER_TOKEN 'ghp_tokenvalue1234')", ["ghp_tokenvalue1234"]),
    (
        "ATTACH 'postgres:dbname=x user=u password=hunter2hunter2 host=localhost' AS pg (TYPE postgres)",
        ["hunter2hunter2"],
    ),
    (
        "SELECT * FROM read_csv('https://alice:pa55word99@example.invalid/data.csv?token=abcd1234tok')",
        ["pa55word99", "abcd1234tok"],
    ),
]


@pytest.mark.parametrize("code, secrets", SECRET_CELLS)
def test_secrets_are_redacted_everywhere(kernel, tmp_path, code, secrets):
    reply = kernel.execute(code)
    shown = json.dumps(reply.content) + json.dumps(reply.outputs)
    for secret in secrets:
        assert secret not in shown
    kernel.shutdown()
    con = duckdb.connect(str(tmp_path / "rssd.duckdb"), read_only=True)
    tables = [
        "orchestration_session_exec",
        "orchestration_session_log",
        "orchestration_session_issue",
        "orchestration_session",
        "orchestration_session_state",
        "orchestration_session_entry",
    ]
    dump = "".join(str(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables)
    con.close()
    for secret in secrets:
        assert secret not in dump, secret
    assert "***" in dump


def test_secret_statement_still_runs_as_written(kernel, tmp_path):
    """Only records and messages are redacted: DuckDB gets the statement as written. (CREATE
    SECRET needs the httpfs extension, which cannot be installed here.)"""
    reply = kernel.ok(
        "SELECT 'host=db password=hunter2hunter2' AS dsn, length('hunter2hunter2') AS n"
    )
    assert "hunter2hunter2" in reply.html and "<td>14</td>" in reply.html
    kernel.shutdown()
    codes = read_db(
        str(tmp_path / "rssd.duckdb"),
        "SELECT exec_code, output_text FROM orchestration_session_exec",
    )
    assert all("hunter2hunter2" not in str(row) for row in codes)


def test_secret_parameters_are_masked_in_args_json(tmp_path):
    from test_cli import make_notebook, rssd

    path = tmp_path / "p.ipynb"
    make_notebook(path, ["SELECT length(getvariable('api_password')) AS n"])
    result = rssd("run", str(path), "-p", "api_password", "s3cr3tvalue!", "-p", "region", "north")
    assert result.returncode == 0, result.stderr
    rows = read_db(str(tmp_path / "rssd.duckdb"), "SELECT args_json FROM orchestration_session")
    args = json.loads(rows[0][0])
    assert args["parameters"]["api_password"]["value"] == "***"
    assert args["parameters"]["region"]["value"] == "north"
    dump = str(read_db(str(tmp_path / "rssd.duckdb"), "SELECT * FROM orchestration_session_exec"))
    assert "s3cr3tvalue!" not in dump
