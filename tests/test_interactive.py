"""Interactive comfort through the protocol: completion, inspect, is_complete, progress,
charts and kernel commands."""

import time

import pytest
from conftest import Kernel


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lab")
    kernel = Kernel(str(folder / "rssd.duckdb"), str(folder))
    kernel.ok("CREATE TABLE customers (customer_id INTEGER, full_name VARCHAR, city VARCHAR)")
    kernel.ok("INSERT INTO customers VALUES (1, 'Ada', 'London'), (2, 'Grace', 'Arlington')")
    kernel.ok("CREATE TABLE orders (order_id INTEGER, customer_id INTEGER, amount DECIMAL(10,2))")
    kernel.ok("-- @name top_city\nSELECT city AS top_city_name, 2 AS visits FROM customers LIMIT 1")
    yield kernel
    kernel.shutdown()


def complete(kernel, code, cursor=None):
    cursor = len(code) if cursor is None else cursor
    reply = kernel.kc.complete(code, cursor, reply=True, timeout=30)["content"]
    assert reply["status"] == "ok" and reply["cursor_end"] == cursor
    return reply["matches"], reply["cursor_start"]


def test_completes_tables_columns_functions_keywords(lab):
    matches, start = complete(lab, "SELECT * FROM cust")
    assert "customers" in matches and start == len("SELECT * FROM ")
    code = "SELECT full_ FROM customers"
    matches, start = complete(lab, code)  # the cursor at the end, after the table's name
    assert "customers" in matches and start == len("SELECT full_ FROM ")
    matches, start = complete(lab, code, len("SELECT full_"))  # the cursor inside the line
    assert matches == ["full_name"] and start == len("SELECT ")
    assert "string_agg" in complete(lab, "SELECT string_a")[0]
    assert "SELECT" in complete(lab, "SEL")[0]
    assert "top_city" in complete(lab, "SELECT * FROM top_c")[0]


def test_qualified_and_aliased_columns(lab):
    code = "SELECT c. FROM customers c JOIN orders o USING (customer_id)"
    matches, start = complete(lab, code, len("SELECT c."))
    assert set(matches) == {"customer_id", "full_name", "city"} and start == len("SELECT c.")
    code = "SELECT o.am FROM customers AS c JOIN orders AS o USING (customer_id)"
    assert complete(lab, code, len("SELECT o.am"))[0] == ["amount"]
    assert complete(lab, "SELECT customers.ci")[0] == ["city"]
    assert "top_city_name" in complete(lab, "SELECT top_city.")[0]


def test_directives_and_commands(lab):
    matches, start = complete(lab, "-- @na")
    assert matches == ["name"] and start == len("-- @")
    assert "always" in complete(lab, "-- @")[0]
    assert complete(lab, "%for")[0] == ["%forget"]
    assert "%help" in complete(lab, "%")[0]


def test_completion_is_fast_with_a_thousand_tables(tmp_path):
    kernel = Kernel(str(tmp_path / "wide.duckdb"), str(tmp_path))
    try:
        kernel.ok(
            "-- @always\n"
            + "\n".join(f"CREATE TABLE t{i:04d} (a INTEGER, b VARCHAR);" for i in range(1000))
        )
        complete(kernel, "SELECT * FROM t09")  # the first completion after a cell reads the catalog
        times = []
        for _ in range(10):
            started = time.perf_counter()
            matches, _ = complete(kernel, "SELECT * FROM t09")
            times.append(time.perf_counter() - started)
        assert len(matches) == 100
        assert sorted(times)[5] < 0.05, times  # round trip over the protocol, median
    finally:
        kernel.shutdown()


def test_inspect_table_function_and_named_result(lab):
    reply = lab.kc.inspect(
        "SELECT * FROM customers", len("SELECT * FROM cust"), reply=True, timeout=30
    )["content"]
    assert reply["found"]
    text = reply["data"]["text/plain"]
    assert (
        "2 rows" in text
        and "full_name  VARCHAR" in text
        and "created by cell" in text
        and "session" in text
    )
    reply = lab.kc.inspect("SELECT string_agg", 12, reply=True, timeout=30)["content"]
    assert reply["found"] and "string_agg(" in reply["data"]["text/plain"]
    reply = lab.kc.inspect("SELECT * FROM top_city", 20, reply=True, timeout=30)["content"]
    assert reply["found"] and "1 rows × 2 columns" in reply["data"]["text/plain"]
    reply = lab.kc.inspect("SELECT nothing_here", 15, reply=True, timeout=30)["content"]
    assert reply["found"] is False and reply["status"] == "ok"


@pytest.mark.parametrize(
    "code, status",
    [
        ("SELECT 1", "complete"),
        ("SELECT (1 + 2", "incomplete"),
        ("SELECT 'abc", "incomplete"),
        ("SELECT 1 +", "incomplete"),
        ("SELECT FROM FROM t", "invalid"),
        ("SELECT * FROM t WHERE", "incomplete"),
        ("SELECT 1 2", "invalid"),
        ("", "complete"),
    ],
)
def test_is_complete(lab, code, status):
    msg_id = lab.kc.is_complete(code)
    reply = lab.kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    reply = reply["content"]
    assert reply["status"] == status
    if status == "incomplete":
        assert reply["indent"] == "    "


def test_progress_bar_updates_and_ends_as_timing(lab):
    reply = lab.execute(
        "SELECT count(*) AS n FROM range(1500000000) a WHERE hash(a.range) % 7 = 1", timeout=120
    )
    assert reply.status == "ok"
    shown = [o for o in reply.outputs if o["msg_type"] == "display_data"]
    updates = [o for o in reply.outputs if o["msg_type"] == "update_display_data"]
    assert shown and updates
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert all(u["content"]["transient"]["display_id"] == display_id for u in updates)
    # DuckDB's own progress, in percent (query_progress() says -1 unless it tracks it)
    assert any("%" in u["content"]["data"]["text/plain"] for u in updates[:-1] + shown), [
        u["content"]["data"]["text/plain"] for u in updates + shown
    ]
    assert updates[-1]["content"]["data"]["text/plain"].startswith("✓ ran in")


def test_quick_cells_show_no_progress(lab):
    reply = lab.ok("SELECT 1")
    assert not [
        o for o in reply.outputs if o["msg_type"] in ("display_data", "update_display_data")
    ]


def test_chart_directive_renders_vega_lite_with_table_fallback(lab):
    reply = lab.ok(
        "-- @chart bar x=city y=n\nSELECT city, count(*) AS n FROM customers GROUP BY city ORDER BY city"
    )
    data = reply.result["data"]
    spec = data["application/vnd.vegalite.v5+json"]
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["x"] == {"field": "city", "type": "nominal"}
    assert spec["encoding"]["y"] == {"field": "n", "type": "quantitative"}
    assert {"city": "Arlington", "n": 1} in spec["data"]["values"]
    assert "text/html" not in data  # JupyterLab would prefer it to the chart
    assert "Arlington" in data["text/plain"]  # the table, for front ends without Vega


def test_bad_chart_arguments_name_the_columns(lab):
    reply = lab.execute(
        "-- @chart line x=nope y=n\nSELECT city, count(*) AS n FROM customers GROUP BY city"
    )
    assert reply.status == "error" and reply.content["ename"] == "Chart Error"
    assert "city, n" in reply.content["evalue"]
    reply = lab.execute("-- @chart pie x=a y=b\nSELECT 1")
    assert reply.status == "error" and "bar, line, scatter, area" in reply.content["evalue"]


@pytest.mark.parametrize(
    "command, expected",
    [
        ("%help", "%history"),
        ("%config", "max_rows = "),
        ("%state", "top_city"),
        ("%sessions", "session"),
        ("%history 3", "status"),
        ("%tables", "customers"),
    ],
)
def test_kernel_commands(lab, command, expected):
    assert expected in lab.ok(command).text


@pytest.mark.parametrize(
    "command, message",
    [
        ("%nope", "Unknown kernel command"),
        ("%config max_rows=zero", "Bad value for max_rows"),
        ("%config colour=blue", "known settings"),
        ("%history many", "positive number"),
        ("%forget", "exactly one key"),
        ("%tables extra", "takes no arguments"),
    ],
)
def test_kernel_command_errors(lab, command, message):
    reply = lab.execute(command)
    assert reply.status == "error" and message in reply.content["evalue"]


def test_headless_outputs_keep_no_stale_bar(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "rssd", "display_name": "rssd", "language": "sql"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell(
            "SELECT count(*) AS n FROM range(1500000000) a WHERE hash(a.range) % 7 = 1"
        )
    ]
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute(
        env={
            "RSSD_DATABASE": str(tmp_path / "h.duckdb"),
            **{k: v for k, v in __import__("os").environ.items() if k != "RSSD_DATABASE"},
        }
    )
    texts = [o.get("data", {}).get("text/plain", "") for o in nb.cells[0].outputs]
    assert any(t.startswith("✓ ran in") for t in texts), texts
    assert not any("%" in t and "[" in t and "#" in t for t in texts), texts  # no bar left
