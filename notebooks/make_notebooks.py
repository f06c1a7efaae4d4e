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
