"""Redaction on every path, through a real kernel: secrets that pass through a named result,
a stateful cell's result, a parameters cell, lineage and an error message appear in no
column of any RSSD table; a named result holding a credential is refused, not masked."""

import json
import os

import duckdb
import pytest
from conftest import read_db

from rssd_kernel.journal import SUFFIX
from rssd_kernel.redact import MASK
from rssd_kernel.runner import Runner

pytestmark = pytest.mark.timeout(240)

RSSD_TABLES = {
    "device", "orchestration_nature", "orchestration_session", "orchestration_session_entry",
    "orchestration_session_exec", "orchestration_session_log", "orchestration_session_state",
    "orchestration_session_issue", "rssd_schema_version", "rssd_change_counter",
}  # fmt: skip


def rssd_dump(database: str, user_tables: set[str]) -> dict[str, str]:
    """Every column of every table but the user's own, as text, table by table."""
    con = duckdb.connect(database, read_only=True)
    try:
        tables = [
            (schema, table)
            for schema, table in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary"
            ).fetchall()
            if table.lower() not in user_tables
        ]
        assert RSSD_TABLES <= {table for _, table in tables}, tables
        dump = {}
        for schema, table in tables:
            columns = [
                name
                for (name,) in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? "
                    "AND table_name = ? ORDER BY column_index",
                    [schema, table],
                ).fetchall()
            ]
            select = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in columns)
            rows = con.execute(f'SELECT {select} FROM "{schema}"."{table}"').fetchall()
            dump[table] = "\n".join("\t".join(str(v) for v in row) for row in rows)
        return dump
    finally:
        con.close()


def shown(reply) -> str:
    return json.dumps(reply.content) + json.dumps(reply.outputs)


def stderr(reply) -> str:
    return "".join(
        o["content"].get("text", "")
        for o in reply.outputs
        if o["msg_type"] == "stream" and o["content"].get("name") == "stderr"
    )


class Checks:
    """Every path is checked and every failure reported at once (one leak must not hide
    another)."""

    def __init__(self):
        self.failures: list[str] = []

    def __call__(self, condition, what: str, detail=None) -> bool:
        if not condition:
            self.failures.append(f"{what}: {detail!r}"[:600])
        return bool(condition)

    def done(self) -> None:
        assert not self.failures, "\n".join(self.failures)


def leaks(database: str, user_tables: set[str], secrets: list[str]) -> list:
    """(secret, table, context) for every secret found in the RSSD (or its journal)."""
    dump = rssd_dump(database, user_tables)
    journal = database + SUFFIX
    if os.path.exists(journal):  # what is not written yet must be redacted too
        with open(journal, encoding="utf-8") as handle:
            dump["<journal>"] = handle.read()
    return [
        (secret, table, text[max(0, text.find(secret) - 80) : text.find(secret) + 40])
        for secret in secrets
        for table, text in dump.items()
        if secret in text
    ]


def assert_nowhere(database: str, user_tables: set[str], secrets: list[str]) -> None:
    found = leaks(database, user_tables, secrets)
    assert not found, found


def test_secrets_reach_no_rssd_table(kernel_factory, tmp_path):
    database = str(tmp_path / "rssd.duckdb")
    csv = tmp_path / "people.csv"
    csv.write_text("name,note\nada,api_token=S3cr3tValueG\n")
    check = Checks()
    kernel = kernel_factory()

    # A variable an ordinary cell sets is no parameter.
    kernel.ok("SET VARIABLE unrelated = 'NotAParameterD'")

    # A named result holding a credential: shown to the user, not recorded, with a warning.
    reply = kernel.ok("-- @name leak\nSELECT 'password=S3cr3tValueA' AS conn")
    check("S3cr3tValueA" in reply.text, "the user sees the named result", reply.text)
    warning = stderr(reply)
    check("leak" in warning and "not recorded" in warning and "credential" in warning.lower(),
          "a warning says the named result holding a credential was not recorded",
          reply.outputs)  # fmt: skip

    # A stateful cell whose result (kept in transition_result for replay) shows a secret.
    kernel.ok("CREATE TABLE creds AS SELECT 'token=S3cr3tValueB' AS t")
    stateful = "CREATE TABLE creds_copy AS SELECT * FROM creds;\nSELECT t FROM creds"
    reply = kernel.ok(stateful, cell_id="creds-cell")
    check("S3cr3tValueB" in reply.text, "the user sees the stateful cell's result", reply.text)

    # A parameters cell: a secret parameter masked, an ordinary one kept, nothing else.
    kernel.ok(
        "-- @parameters\nSET VARIABLE openai_api_key = 'S3cr3tValueC';\nSET VARIABLE region = 'eu';"
        "\nSET VARIABLE obj = {'password': 'S3cr3tValueH'};"  # a struct's text, inside JSON
    )

    # Lineage of a local file (whose content holds a credential: it is hashed, not copied).
    kernel.ok(f"CREATE TABLE l AS SELECT * FROM read_csv('{csv}')")

    # Errors that echo a secret: one set in the same cell, one written as a pattern.
    reply = kernel.execute(
        "SET VARIABLE stripe_api_key = 'S3cr3tValueE';\n"
        "SELECT CAST(getvariable('stripe_api_key') AS INTEGER)"
    )
    assert reply.status == "error", reply.content
    check("S3cr3tValueE" not in shown(reply), "an error echoing a SET secret is masked",
          reply.content)  # fmt: skip
    reply = kernel.execute("SELECT CAST('password=S3cr3tValueF' AS INTEGER)")
    assert reply.status == "error", reply.content
    check("S3cr3tValueF" not in shown(reply), "an error echoing a credential pattern is masked",
          reply.content)  # fmt: skip

    # The named result is refused later, with a clear message, never as a masked value.
    for code in ("SELECT $leak AS v", "SELECT * FROM leak"):
        reply = kernel.execute(code)
        evalue = reply.content.get("evalue", "")
        check(reply.status == "error" and reply.content.get("ename") == "Named Result Error",
              f"`{code}` is refused", (reply.content, reply.outputs))  # fmt: skip
        check("leak" in evalue and "credential" in evalue.lower() and "too large" not in evalue,
              f"`{code}`: the refusal says the result holds a credential", evalue)  # fmt: skip
        check(MASK not in shown(reply) and "S3cr3tValueA" not in shown(reply),
              f"`{code}` gives neither a masked value nor the secret", shown(reply))  # fmt: skip

    # Replaying the stateful cell shows what was recorded: not the secret.
    reply = kernel.ok(stateful, cell_id="creds-cell")  # the same notebook cell, run again
    check(reply.rssd.get("replayed") is True, "the stateful cell is replayed", reply.rssd)
    check("S3cr3tValueB" not in shown(reply), "the replay does not show the secret", reply.text)

    kernel.shutdown()

    secrets = ["S3cr3tValueA", "S3cr3tValueB", "S3cr3tValueC", "S3cr3tValueE", "S3cr3tValueF",
               "S3cr3tValueG", "S3cr3tValueH"]  # fmt: skip
    for secret, table, context in leaks(database, {"creds", "creds_copy", "l"}, secrets):
        check(False, f"{secret} is in {table}", context)

    # Only the parameters the parameters cell set are recorded, secret ones masked.
    (args,) = read_db(database, "SELECT args_json FROM orchestration_session")[0]
    parameters = json.loads(args)["parameters"]
    check(set(parameters) == {"openai_api_key", "region", "obj"},
          "args_json holds only the parameters cell's parameters", parameters)  # fmt: skip
    check(parameters.get("openai_api_key", {}).get("value") == MASK,
          "a secret parameter is masked", parameters)  # fmt: skip
    check(parameters.get("region", {}).get("value") == "eu", "a parameter is kept", parameters)
    (input_text,) = read_db(
        database,
        "SELECT input_text FROM orchestration_session_exec WHERE parent_exec_id IS NULL "
        "AND exec_code LIKE '%@parameters%'",
    )[0]
    check(json.loads(input_text) == {"parameters": parameters},
          "the parameters cell's input_text holds the same parameters", input_text)  # fmt: skip
    check("NotAParameterD" not in args + input_text and "unrelated" not in args + input_text,
          "a variable of an earlier cell is no parameter", (args, input_text))  # fmt: skip

    # The file's lineage entry names the file, resolved and hashed.
    ((source, table, elaboration),) = read_db(
        database,
        "SELECT ingest_src, ingest_table_name, elaboration FROM orchestration_session_entry "
        "WHERE json_extract_string(elaboration, '$.kind') = 'ingest'",
    )
    details = json.loads(elaboration)
    check((source, table) == (str(csv), "l"), "the lineage entry names the file", source)
    check(details.get("resolved_path") == str(csv) and details.get("source_kind") == "file"
          and len(details.get("digest", "")) == 64, "the file is resolved and hashed",
          details)  # fmt: skip
    check.done()


def test_a_source_path_holding_a_credential_is_recorded_masked(kernel_factory, tmp_path):
    """A Hive-style folder name such as `sas_token=...` is a credential in a path: the local
    analogue of a URL with one (URLs cannot be reached here; test_redact.py covers them)."""
    database = str(tmp_path / "rssd.duckdb")
    folder = tmp_path / "sas_token=S3cr3tValueH"
    folder.mkdir()
    (folder / "part.csv").write_text("a\n1\n")
    kernel = kernel_factory()
    kernel.ok(f"CREATE TABLE h AS SELECT * FROM read_csv('{folder / 'part.csv'}')")
    kernel.shutdown()
    assert_nowhere(database, {"h"}, ["S3cr3tValueH"])
    ((source, elaboration),) = read_db(
        database,
        "SELECT ingest_src, elaboration FROM orchestration_session_entry "
        "WHERE json_extract_string(elaboration, '$.kind') = 'ingest'",
    )
    assert source.startswith(str(tmp_path)) and source.endswith(f"sas_token={MASK}"), source
    assert len(json.loads(elaboration)["digest"]) == 64


def test_a_secret_variable_read_back_later_is_not_recorded(kernel_factory, tmp_path):
    """A secret set in one cell and shown by a later one: the later cell's records and a
    named result over it must not hold it either."""
    database = str(tmp_path / "rssd.duckdb")
    kernel = kernel_factory()
    kernel.ok("SET VARIABLE openai_api_key = 'S3cr3tValueI'")
    reply = kernel.ok("SELECT getvariable('openai_api_key') AS k")
    assert "S3cr3tValueI" in reply.text
    reply = kernel.ok("-- @name key_again\nSELECT getvariable('openai_api_key') AS k")
    assert "not recorded" in stderr(reply), reply.outputs
    reply = kernel.execute("SELECT $key_again")
    assert reply.status == "error" and MASK not in shown(reply), reply.content
    kernel.shutdown()
    assert_nowhere(database, set(), ["S3cr3tValueI"])


def test_a_credential_inside_a_json_value_keeps_a_result_out_of_the_rssd(tmp_path, monkeypatch):
    """The result's values are checked as they are, not as JSON text, where their own
    quotes are escaped and a {"password": ...} inside one would not be seen."""
    database = str(tmp_path / "rssd.duckdb")
    monkeypatch.setenv("RSSD_DATABASE", database)
    runner = Runner()
    try:
        runner.run("CREATE TABLE users AS SELECT json_object('password', 'hun' || 'ter22') AS p")
        named = runner.run("-- @name prof\nSELECT p FROM users")
        assert named.status == "ok"
        assert runner.recorder.writer.flush(timeout=30)
    finally:
        runner.close()
    for secret, table, context in leaks(database, {"users"}, ["hunter22"]):
        pytest.fail(f"{secret} is in {table}: {context}")
