"""Writes the example notebooks in this folder (run it after editing their cells here)."""

import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELSPEC = {"name": "rssd", "display_name": "RSSD SQL (DuckDB)", "language": "sql"}
LANGUAGE = {"name": "sql", "mimetype": "application/sql", "file_extension": ".sql"}


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNELSPEC, "language_info": LANGUAGE})
    for index, cell in enumerate(nb.cells):
        cell.id = f"{name}-{index}"
    nbformat.write(nb, os.path.join(HERE, f"{name}.ipynb"))


write("quickstart", [
    new_markdown_cell(
        "# rssd quickstart\n\nEvery cell is SQL on DuckDB. Cells that change the database run "
        "once; run this notebook again and they are replayed. Every execution is recorded in "
        "the RSSD tables of the same file."
    ),
    new_code_cell(
        "-- A stateful cell: it creates a table, so it runs once per database.\n"
        "CREATE TABLE orders AS\n"
        "SELECT range AS order_id, 'customer-' || (range % 7) AS customer,\n"
        "       CAST(10 + (range * 37) % 90 AS DECIMAL(10, 2)) AS amount,\n"
        "       DATE '2026-01-01' + CAST(range % 60 AS INTEGER) AS ordered_on\n"
        "FROM range(500);"
    ),
    new_code_cell(
        "-- @name top_customer\n"
        "-- A named cell: its result is recorded, and later cells can use it.\n"
        "SELECT customer, sum(amount) AS total FROM orders GROUP BY customer\n"
        "ORDER BY total DESC LIMIT 1;"
    ),
    new_code_cell(
        "-- Use a named result as a table, or one value of it as $name.\n"
        "SELECT customer, total, total / (SELECT sum(amount) FROM orders) AS share\n"
        "FROM top_customer;"
    ),
    new_code_cell(
        "-- The RSSD: what ran, when, and how it went.\n"
        "SELECT exec_nature, exec_status, exec_identity, narrative_md\n"
        "FROM orchestration_session_exec WHERE parent_exec_id IS NULL\n"
        "ORDER BY orchestration_session_exec_id DESC LIMIT 5;"
    ),
])  # fmt: skip


write("ingest_and_analyse", [
    new_markdown_cell(
        "# Ingest, then analyse\n\nThe ingest cell runs once per database, and the RSSD records "
        "which file it read (path, size, modification time, hash) in "
        "`orchestration_session_entry`. Analysis cells run every time."
    ),
    new_code_cell(
        "-- @name ingest_sales\n"
        "CREATE TABLE sales AS SELECT * FROM read_csv('data/sales.csv');\n"
        "SELECT count(*) AS rows_loaded FROM sales;"
    ),
    new_code_cell(
        "-- @name revenue_by_region\n"
        "SELECT region, sum(quantity * unit_price) AS revenue, count(*) AS sales\n"
        "FROM sales GROUP BY region ORDER BY revenue DESC;"
    ),
    new_code_cell(
        "SELECT r.region, r.revenue, round(100 * r.revenue / sum(r.revenue) OVER (), 1) AS pct\n"
        "FROM revenue_by_region r ORDER BY r.revenue DESC;"
    ),
    new_code_cell(
        "-- Where the data came from:\n"
        "SELECT ingest_src, ingest_table_name,\n"
        "       json_extract_string(elaboration, '$.digest') AS digest\n"
        "FROM orchestration_session_entry WHERE ingest_table_name IS NOT NULL;"
    ),
])  # fmt: skip

parameters = new_code_cell(
    "-- Defaults; rssd run -p and papermill -p override them.\n"
    "SET VARIABLE region = 'north';\n"
    "SET VARIABLE min_quantity = 3;"
)
parameters.metadata["tags"] = ["parameters"]
write("parameterised_report", [
    new_markdown_cell(
        "# A parameterised report\n\nRun it with `rssd run notebooks/parameterised_report.ipynb "
        "-p region south -p min_quantity 5`, or with papermill. Parameters are DuckDB variables."
    ),
    parameters,
    new_code_cell(
        "-- @once\n"
        "CREATE TABLE IF NOT EXISTS report_sales AS SELECT * FROM read_csv('data/sales.csv');"
    ),
    new_code_cell(
        "SELECT getvariable('region') AS region, product, sum(quantity) AS quantity\n"
        "FROM report_sales\n"
        "WHERE region = getvariable('region') AND quantity >= getvariable('min_quantity')\n"
        "GROUP BY product ORDER BY product;"
    ),
])  # fmt: skip
