"""Redaction rules, unit by unit (no kernel): secret names, SET VARIABLE secrets, credential
patterns in text and URLs, holds_secret, and what lineage records of a source."""

import json
import os
import re

import blake3
import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rssd_kernel import lineage, redact
from rssd_kernel.recorder import Exec, Issue, Recorder
from rssd_kernel.redact import MASK

# -- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "openai_api_key", "aws_access_key_id", "AWS_ACCESS_KEY_ID", "github_token", "db_password",
        "KEY_ID", "stripe_key", "s3_access_key", "AWS_SECRET_ACCESS_KEY", "Api_Key",
        "azure_storage_account_key", "gcs_key_id", "slack_bot_token", "mysql_root_password",
    ],
)  # fmt: skip
def test_secret_names(name):
    assert redact.is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["region", "user", "keyboard", "monkey", "key", "keys", "donkey_count", "path"]
)
def test_names_that_are_not_secret(name):
    assert not redact.is_secret_name(name)


def test_names_ending_in_a_secret_suffix_are_secret_in_any_case():
    for suffix in ("_key", "key_id", "api_key", "access_key", "secret_access_key", "token",
                   "password"):  # fmt: skip
        for name in (f"x{suffix}", f"X{suffix.upper()}", f"my_{suffix.lstrip('_')}"):
            assert redact.is_secret_name(name), name
    assert redact.is_secret_name("openai_api_key") and redact.is_secret_name("aws_key_id")


# -- secrets written in a cell --------------------------------------------------------------


@pytest.mark.parametrize(
    "code, secret",
    [
        ("SET VARIABLE openai_api_key = 'sk-live-0123456789'", "sk-live-0123456789"),
        ("SET VARIABLE aws_access_key_id='AKIAEXAMPLE0001'", "AKIAEXAMPLE0001"),
        ("SET s3_access_key_id = 'AKIAEXAMPLE0002'", "AKIAEXAMPLE0002"),
        ("SET GLOBAL s3_access_key_id = 'AKIAEXAMPLE0003'", "AKIAEXAMPLE0003"),
        ("SET VARIABLE github_token TO 'ghp_0123456789'", "ghp_0123456789"),
        ('SET VARIABLE "Stripe_Key" = \'rk_live_abcdef\'', "rk_live_abcdef"),
        ("set variable KEY_ID = 'AKIAEXAMPLE0004';", "AKIAEXAMPLE0004"),
        ("SET VARIABLE db_password = 867530912", "867530912"),
        ("SET VARIABLE pin_password = CAST(4242.5 AS DOUBLE)", "4242.5"),
        ("SET VARIABLE tokens_api_key = ['key-one-1', 'x']", "key-one-1"),
        ("-- @parameters\nSET VARIABLE region = 'eu';\nSET VARIABLE my_api_key = 'abcd-9999';",
         "abcd-9999"),
        ("SELECT {'api_key': 'struct-secret-1'} AS s", "struct-secret-1"),
        ("SELECT MAP {'db_password': 'map-secret-22'}", "map-secret-22"),
        ("""SELECT '{"password": "json-secret-3"}'::JSON AS j""", "json-secret-3"),
        ("SELECT 'password=''it''''s-sql-4'''", "it's-sql-4"),
    ],
)  # fmt: skip
def test_secret_values_set_in_a_cell_are_found(code, secret):
    found = redact.secrets_in(code)
    assert secret in found, found
    assert redact.might_hold_secrets(code)  # the runner's fast path lets this cell through
    assert secret not in redact.scrub(code, found)


@pytest.mark.parametrize(
    "code",
    [
        "SET VARIABLE region = 'eu-west-1'",
        "SET VARIABLE x = 'abcdef'; SELECT 'abcdef' AS v",
        "SELECT 'keyboard' AS k, 12345 AS n",
        "SET threads = 4",
        "SET VARIABLE unrelated = 'NotAParameterD'",
    ],
)
def test_ordinary_values_are_not_secrets(code):
    assert redact.secrets_in(code) == set()


def test_a_set_secret_is_masked_in_an_error_that_echoes_it():
    code = "SET VARIABLE stripe_api_key = 'S3cr3tValueE';\nSELECT CAST(getvariable('stripe_api_key') AS INTEGER)"
    error = "Conversion Error: Could not convert string 'S3cr3tValueE' to INT32"
    secrets = redact.secrets_in(code)
    assert (
        redact.scrub(error, secrets)
        == f"Conversion Error: Could not convert string '{MASK}' to INT32"
    )
    assert redact.holds_secret(error, secrets)


def test_variables_set_by_a_cell():
    code = (
        "-- @parameters\n-- SET VARIABLE commented = 1\nSET VARIABLE openai_api_key = 'x';\n"
        "set variable \"Region Name\" = 'eu'; SET VARIABLE REGION = 'eu';SET VARIABLE region = 1;"
        "SET threads = 2; UPDATE t SET variable = 3; SELECT 'SET VARIABLE fake = 1'"
    )
    assert redact.variables_set(code) == ["openai_api_key", "Region Name", "REGION"]
    assert redact.variables_set("SELECT 1") == []
    assert redact.variables_set("SET VARIABLE") == []


# -- patterns in text -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, masked",
    [
        ("openai_api_key=sk-123abc", f"openai_api_key={MASK}"),
        ("AWS_SECRET_ACCESS_KEY = wJalrXUtnFEMI", f"AWS_SECRET_ACCESS_KEY = {MASK}"),
        ("aws_access_key_id: AKIA0001", f"aws_access_key_id: {MASK}"),
        ("db_password='hunter2'", f"db_password='{MASK}'"),
        ("github_token=ghp_abc", f"github_token={MASK}"),
        ("KEY_ID=AKIA0002", f"KEY_ID={MASK}"),
        ("https://user:pa55word@host/x.csv", f"https://user:{MASK}@host/x.csv"),
        ("postgres://alice:hunter2@db:5432/app", f"postgres://alice:{MASK}@db:5432/app"),
        ("https://:tokenonly1@host/x", f"https://:{MASK}@host/x"),
        ("https://u:p@ss@word@host/x", f"https://u:{MASK}@host/x"),
        # A URL that went through os.path.abspath (one slash left) still loses its password.
        ("/cwd/https:/user:pa55word@host/x", f"/cwd/https:/user:{MASK}@host/x"),
        # JSON and dict keys: the name is quoted.
        ('{"password": "hunter22", "user": "ann"}', f'{{"password": "{MASK}", "user": "ann"}}'),
        ("{'api_key': 'sk-0001', 'n': 1}", f"{{'api_key': '{MASK}', 'n': 1}}"),
        ('{"access_token":"abc.def"}', f'{{"access_token":"{MASK}"}}'),
        ('{"pwd": 1234, "n": 1}', f'{{"pwd": "{MASK}", "n": 1}}'),  # still JSON
        ('{"token":5}', f'{{"token":"{MASK}"}}'),  # the brace is not the value's
        ('{"password": "ab\\"cd-hunter22"}', f'{{"password": "{MASK}"}}'),  # JSON's \"
        ("password='it''s-hunter22'", f"password='{MASK}'"),  # SQL's ''
        # Presigned URLs: AWS S3, GCS, Azure SAS, Google API key, OAuth tokens.
        (
            "https://b.s3.amazonaws.com/k.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA0003%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
            "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Security-Token=FQoGZXIvYXdz"
            "&X-Amz-SignedHeaders=host&X-Amz-Signature=0123abcd",
            "https://b.s3.amazonaws.com/k.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Credential={MASK}&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600"
            f"&X-Amz-Security-Token={MASK}&X-Amz-SignedHeaders=host&X-Amz-Signature={MASK}",
        ),
        (
            "https://storage.googleapis.com/b/o?X-Goog-Credential=sa%40p.iam&X-Goog-Signature=9f8e",
            f"https://storage.googleapis.com/b/o?X-Goog-Credential={MASK}&X-Goog-Signature={MASK}",
        ),
        (
            "https://acct.blob.core.windows.net/c/f.parquet?sv=2022-11-02&ss=b&sp=r&sig=AbC%3D&se=2030",
            f"https://acct.blob.core.windows.net/c/f.parquet?sv=2022-11-02&ss=b&sp=r&sig={MASK}&se=2030",
        ),
        ("https://h/x?sas_token=abc&page=2", f"https://h/x?sas_token={MASK}&page=2"),
        ("https://maps.googleapis.com/x?key=AIzaSy0001&q=1", f"https://maps.googleapis.com/x?key={MASK}&q=1"),
        ("https://h/x?access_token=a1&token=b2&signature=c3",
         f"https://h/x?access_token={MASK}&token={MASK}&signature={MASK}"),
    ],
)  # fmt: skip
def test_credential_patterns_are_masked(text, masked):
    assert redact.might_hold_secrets(text)
    assert redact.scrub(text) == masked
    assert redact.holds_secret(text)
    assert not redact.holds_secret(masked)  # scrubbing twice changes nothing


@pytest.mark.parametrize(
    "text",
    [
        "sort_key=3 monkey=4 key=5 partition_key: 2024",
        "https://user@host/x.csv",
        "host:8080/x?email=a@b.com",
        "https://host:8443/path@x",
        "my_password_hint=abc",
        "C:/Users/me/data.csv",
        "s3://bucket/prefix/file.parquet",
        f"password={MASK} token='{MASK}' https://u:{MASK}@h/",
        "SELECT 'token'::VARCHAR AS kind, \"password\"::INT, token::text",  # casts
        '{"a":1,"password":null,"has_token":true,"secret":false}',  # JSON's words
        '{"db_password": {"set": false}}',  # an object: its members' names decide
    ],
)
def test_text_without_credentials_is_left_alone(text):
    assert redact.scrub(text) == text
    assert not redact.holds_secret(text)


def test_holds_secret():
    assert redact.holds_secret("password=S3cr3tValueA")
    assert redact.holds_secret(json.dumps({"rows": [["token=S3cr3tValueB"]]}))
    assert redact.holds_secret("the value sk-abcdef", {"sk-abcdef"})
    assert not redact.holds_secret("the value sk-abcdef", {"other-value"})
    assert not redact.holds_secret("the value sk-abcdef", {MASK})
    assert not redact.holds_secret("plain text, nothing to hide")
    assert not redact.holds_secret("")
    assert not redact.holds_secret(None)


def _slow_scrub(text: str) -> str:
    """scrub without its fast path: every pattern, whatever the text."""
    text = redact._PAIR.sub(redact.pair_masked, text)
    return redact._URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)


FRAGMENTS = [
    "pass", "word", "passwd", "pwd", "tok", "en", "secret", "access", "key", "_", "-", "id",
    "api", "sig", "nature", "cred", "ential", "s", "account", "private", "X-Amz-", "shared",
    "=", ":", " ", "'", '"', "/", "//", "@", "?", "&", ";", "https", "a", "B", "7", "***",
]  # fmt: skip


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=14).map("".join))
def test_fast_path_and_holds_secret_agree_with_the_patterns(text):
    slow = _slow_scrub(text)
    if not redact.might_hold_secrets(text):  # the hint words cover every pattern
        assert slow == text
    assert redact.scrub(text) == slow
    assert redact.holds_secret(text) == (slow != text)


def test_pathological_text_is_scrubbed_in_linear_time():
    import time

    for text in (
        "a-" * 20_000 + "signature: x",
        "a:" * 20_000 + "://",
        "https://h/" + "x@" * 20_000,
    ):
        started = time.perf_counter()
        redact.scrub(text)
        redact.holds_secret(text)
        assert time.perf_counter() - started < 0.5, text[:20]


# -- lineage --------------------------------------------------------------------------------

URL = "https://alice:pa55word99@example.invalid/data.csv?sig=abcd1234sig&token=abcd1234tok&page=2"
URL_RECORDED = f"https://alice:{MASK}@example.invalid/data.csv?sig={MASK}&token={MASK}&page=2"


def test_a_url_source_stays_a_url_and_loses_its_credentials():
    assert lineage.recordable(URL) == URL_RECORDED
    info, later = lineage.describe(URL)
    assert info == {"resolved_path": URL_RECORDED, "source_kind": "url"} and later is None
    assert "kind" not in info  # the runner's {"kind": "ingest", **describe(path)} keeps its kind


@pytest.mark.parametrize(
    "url",
    ["s3://bucket/prefix/x.parquet", "hf://datasets/u/d/x.csv", "gcs://b/o.csv",
     "az://container/x.csv", "http://example.invalid/x.csv"],
)  # fmt: skip
def test_remote_sources_are_not_made_into_local_paths(url):
    assert lineage.is_url(url)
    assert lineage.describe(url) == ({"resolved_path": url, "source_kind": "url"}, None)
    assert lineage.recordable(url) == url


def test_recordable_masks_the_cells_own_secrets():
    assert lineage.recordable("s3://bucket/AKIAEXAMPLE0001/x.csv", {"AKIAEXAMPLE0001"}) == (
        f"s3://bucket/{MASK}/x.csv"
    )
    info, _ = lineage.describe("s3://bucket/AKIAEXAMPLE0001/x.csv", {"AKIAEXAMPLE0001"})
    assert info["resolved_path"] == f"s3://bucket/{MASK}/x.csv"


def test_a_local_file_is_resolved_and_its_digest_left_for_later(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = b"id,name\n1,ada\n"
    (tmp_path / "people.csv").write_bytes(data)
    info, later = lineage.describe("people.csv")
    assert info["resolved_path"] == str(tmp_path / "people.csv")
    assert info["source_kind"] == "file" and info["size"] == len(data)
    assert info["digest"] is None and info["digest_pending"] is True
    assert later["path"] == str(tmp_path / "people.csv")
    assert lineage.recordable("people.csv") == "people.csv"
    by_url, _ = lineage.describe(f"file://{tmp_path / 'people.csv'}")
    assert by_url == info
    assert not lineage.is_url(f"file://{tmp_path / 'people.csv'}")


def test_a_local_path_holding_a_credential_is_hashed_at_once_and_recorded_masked(tmp_path):
    """Its real path would have to wait in the journal for the digest: it is hashed in the
    cell instead, and only the masked path is recorded."""
    folder = tmp_path / "sas_token=S3cr3tValueH"
    folder.mkdir()
    (folder / "part.csv").write_text("a\n1\n")
    path = str(folder / "part.csv")
    info, later = lineage.describe(path)
    # An unquoted value runs to a space, `;`, `&`, quote, `,` or `)`: the rest of the path
    # goes too (a `/` may belong to the secret: X-Amz-Credential=AKIA.../20240101/...).
    assert info["resolved_path"] == str(tmp_path / f"sas_token={MASK}")
    assert info["digest"] == blake3.blake3(b"a\n1\n").hexdigest()
    assert later is None and "digest_pending" not in info
    assert "S3cr3tValueH" not in lineage.recordable(path)


def test_a_missing_file_reports_its_error_masked(tmp_path):
    path = os.path.join(str(tmp_path), "password=S3cr3tValueM", "gone.csv")
    info, later = lineage.describe(path)
    assert "error" in info and "S3cr3tValueM" not in json.dumps(info) and later is None


def test_the_stop_button_stops_lineage_hashing_in_the_cell(tmp_path):
    """A file whose path holds a credential is hashed in the cell: the stop button is looked
    at between blocks."""
    folder = tmp_path / "sas_token=S3cr3tValueS"
    folder.mkdir()
    big = folder / "big.csv"
    big.write_bytes(b"x\n" * (3 * lineage._BLOCK // 2))
    calls = []

    def stop():
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lineage.describe(str(big), check_stop=stop)
    assert len(calls) == 2


# -- what the recorder hands to the journal ----------------------------------------------


class _Batches:
    """The recorder's writer, keeping what it is handed."""

    def __init__(self):
        self.batches = []

    def submit(self, batch):
        self.batches.append(batch)


def _recorded(cell, recorder=None) -> str:
    recorder = recorder or Recorder(con=duckdb.connect())
    recorder.writer = _Batches()
    recorder.record(cell)
    return json.dumps(recorder.writer.batches)


def _cell(secret_text: str, where: str = "json") -> Exec:
    """A cell and one statement, with `secret_text` in one place only."""
    child = Exec(nature="SQL-statement", code="SELECT 1", narrative="SELECT returned 1 row.")
    child.elaboration = {"kind": "read", "nested": {"sources": ["a.csv"]}}
    child.log.append(("note", "fine"))
    cell = Exec(nature="SQL", code="SELECT 1", children=[child])
    cell.issue = Issue("Some Error", "what happened", "then retry")
    if where == "json":
        child.elaboration["nested"]["sources"].append(secret_text)
    elif where == "log":
        child.log.append(("note", f"read {secret_text}"))
    else:
        cell.issue.remediation = f"then {secret_text}"
    return cell


@pytest.mark.parametrize("where", ["json", "log", "issue"])
@pytest.mark.parametrize(
    "secret_text", ["postgres://u:hunter22@h/db", "password=hunter22", "Bearer hunter22"]
)
def test_a_credential_anywhere_in_an_exec_is_masked_in_its_records(secret_text, where):
    """A credential only deep in a child's JSON value, a child's log line or an issue's
    remediation: the record is still scrubbed (its texts are checked once, together)."""
    recorded = _recorded(_cell(secret_text, where))
    assert "hunter22" not in recorded and MASK in recorded


def test_an_exec_without_credentials_is_recorded_as_scrubbing_would(monkeypatch):
    cell = _cell("nothing to hide")
    monkeypatch.setattr("rssd_kernel.recorder.uuid7", lambda: "a log line's id")
    recorder = Recorder(con=duckdb.connect())
    plain = _recorded(cell, recorder)
    monkeypatch.setattr("rssd_kernel.recorder.might_hold_secrets", lambda text: True)
    assert _recorded(cell, recorder) == plain


_REGEX_HINT = re.compile(r"(?i)secret|passw|pwd|token|key|sig|credential|:/|bearer|basic")
CASE_FRAGMENTS = [
    "S", "s", "ſ", "I", "i", "İ", "ı", "K", "k", "K", "E", "y", "g", "G", "ecret", "ASSW",
    "pw", "D", "to", "KEN", "cred", "ENT", "al", ":", "/", "bear", "ER", "ba", "C", "ß", "x",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(CASE_FRAGMENTS), max_size=12).map("".join))
def test_the_hint_check_finds_whatever_a_case_insensitive_search_finds(text):
    """Unicode's case variants included (the Kelvin sign, the dotted and dotless i, the
    long s): a text the patterns may match is never let through unscrubbed."""
    if _REGEX_HINT.search(text):
        assert redact.might_hold_secrets(text)


@pytest.mark.parametrize("text", ["SİG", "sıg", "credentİal=x", "BAſIC abc", "Key", "PASSWD"])
def test_the_hint_check_takes_any_case_of_a_hint_word(text):
    assert _REGEX_HINT.search(text) and redact.might_hold_secrets(text)


def test_a_credential_in_json_that_orjson_refuses_is_still_masked():
    """A value past 64 bits makes the JSON json's, which escapes non-ASCII characters: a
    hint word spelt with one (İ for i) is then not visible as such in the JSON text."""
    cell = Exec(nature="SQL", code="SELECT 1")
    cell.elaboration = {"big": 2**70, "where": "sİg=hunter22"}  # only here
    recorded = _recorded(cell)
    assert "hunter22" not in recorded and MASK in recorded


def test_a_credential_under_the_key_key_is_still_masked():
    """The check leaves out JSON's "key" keys (every elaboration has one), not their values."""
    cell = Exec(nature="SQL", code="SELECT 1")
    cell.elaboration = {"key": "password=hunter22"}
    recorded = _recorded(cell)
    assert "hunter22" not in recorded and MASK in recorded


@pytest.mark.parametrize(
    "value",
    [
        {"parameters": {"region": {"value": "eu"}, "openai_api_key": {"value": MASK}}},
        {"password": "hunter22", "token": 5, "secret": True, "api_key": None, "sig": [1, "x"]},
        {"db_password": {"value": "x", "type": "VARCHAR"}, "list": ["token=abc"]},
    ],
)
def test_scrubbed_json_is_still_json(value):
    """Records keep JSON text in columns that are scrubbed as text (input_text)."""
    scrubbed = redact.scrub(json.dumps(value))
    json.loads(scrubbed)
    assert "hunter22" not in scrubbed


def test_json_words_under_a_credential_name_are_no_secrets():
    """Else `true` would be masked wherever it shows up later in the session."""
    assert redact.secrets_in("""SELECT '{"has_password": true, "token": null}'::JSON""") == set()


def test_a_parameters_cells_struct_value_is_masked_and_its_json_stays_json():
    """runner.py masks a parameter's text, puts it in JSON, and the record scrubs that."""
    masked = redact.scrub("{'password': objpw1}")
    scrubbed = redact.scrub(json.dumps({"parameters": {"obj": {"value": masked}}}))
    assert json.loads(scrubbed) == {"parameters": {"obj": {"value": "{'password': \"***\"}"}}}


@pytest.mark.parametrize(
    "value",
    [
        {"value": '{"password": "hunter22", "n": 5}'},  # JSON inside a JSON string
        {"value": '{"pin_password": 1234}'},
        {"v": json.dumps({"password": 'Hu"nter22'})},  # an escaped quote in the value
        {"v": json.dumps({"password": "a\\hunter22"})},  # an escaped backslash
    ],
)
def test_json_inside_json_is_masked_and_stays_json(value):
    scrubbed = redact.scrub(json.dumps(value))
    json.loads(scrubbed)
    assert "hunter22" not in scrubbed and "nter22" not in scrubbed and "1234" not in scrubbed


@pytest.mark.parametrize(
    "text, masked",
    [
        ("password=\\hunter2", "password=***"),  # a backslash in a bare value
        ("Server=db;Pwd=C:\\pw\\Hunter22;", "Server=db;Pwd=***;"),
        ("Password=p\\u00e4sswort1;", "Password=***;"),
    ],
)
def test_a_bare_value_with_backslashes_is_masked_whole(text, masked):
    assert redact.scrub(text) == masked


def test_column_names_that_only_look_like_credentials_make_no_secrets():
    code = (
        "SELECT 2048 AS max_tokens, 'Bearer' AS token_type, 'none' AS password_policy, "
        "'primary' AS sort_key, 'AKIA1' AS key_id, 's3://b/p' AS secret_path"
    )
    assert redact.secrets_in(code) == set()


@pytest.mark.parametrize(
    "code, secret",
    [
        ("CREATE TABLE users AS SELECT 'bob' AS username, 'tblpw42' AS password", "tblpw42"),
        ("""SELECT 'colpw2' /* a column */ AS "Db_Password", 'x' AS y""", "colpw2"),
    ],
)
def test_a_constant_named_as_a_credential_column_is_a_secret(code, secret):
    assert redact.secrets_in(code) == {secret}
