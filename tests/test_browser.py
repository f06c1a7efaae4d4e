"""End to end in a real JupyterLab: what a person sees, through headless Chromium.

A JupyterLab server on loopback with the rssd kernel, driven by Playwright with the system
Chromium (no browser download). Screenshots go to test-artifacts/.
"""

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading

import nbformat
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = os.path.join(os.path.dirname(__file__), "..", "test-artifacts")

try:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or sync_playwright is None,
    reason="requires chromium (Debian package) and playwright (test extra); .ci/run installs both",
)

CELLS = [  # the error last: Run All stops at a failing cell, as Jupyter does
    "SELECT 42 AS answer, '<b>not bold</b>' AS markup",
    "-- @chart bar x=fruit y=n\nSELECT * FROM (VALUES ('apple', 3), ('pear', 5)) t(fruit, n)",
    "CREATE TABLE visits AS SELECT range AS id FROM range(3)",
    "SELECT * FROM no_such_table",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab_server(tmp_path):
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "rssd", "display_name": "RSSD SQL (DuckDB)", "language": "sql"}
        }
    )
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    nbformat.write(nb, tmp_path / "e2e.ipynb")
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RSSD_DATABASE"}
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "config")
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", "--allow-root",
         f"--ServerApp.root_dir={tmp_path}", "--ServerApp.port_retries=0",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    ready = threading.Event()

    def watch():  # the server says when it listens; read its log until then, then drain it
        for line in server.stderr:
            if "is running at" in line:
                ready.set()
        ready.set()

    threading.Thread(target=watch, daemon=True).start()
    assert ready.wait(timeout=120), "JupyterLab did not start"
    assert server.poll() is None, "JupyterLab exited"
    yield f"http://127.0.0.1:{port}/lab/tree/e2e.ipynb?token={token}", tmp_path
    server.terminate()
    server.wait(timeout=30)


def _run_all(page):
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()


def _shot(page, name):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.screenshot(path=os.path.join(ARTIFACTS, name), full_page=True)


def test_jupyterlab_shows_tables_errors_charts_and_replays(lab_server):
    url, folder = lab_server
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.set_default_timeout(60_000)
        try:
            page.goto(url)
            expect(page.locator(".jp-Notebook .jp-Cell").first).to_be_visible(timeout=90_000)
            expect(page.get_by_text(re.compile(r"RSSD SQL \(DuckDB\) \| Idle"))).to_be_visible(
                timeout=90_000
            )
            _run_all(page)
            outputs = page.locator(".jp-Cell .jp-OutputArea")
            table = page.locator(".jp-OutputArea-output table.rssd-table").first
            expect(table).to_contain_text("answer")
            expect(table).to_contain_text("<b>not bold</b>")  # shown as text, not markup
            expect(page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").first
                   ).to_contain_text("Catalog Error")  # fmt: skip
            chart = page.locator(".jp-OutputArea-output .vega-embed").first
            expect(chart).to_be_visible()
            expect(chart.locator("svg, canvas").first).to_be_visible()
            expect(outputs.nth(2)).to_contain_text("applied now")
            _shot(page, "jupyterlab-first-run.png")

            page.get_by_role("menuitem", name="Kernel").click()
            page.get_by_role(
                "menuitem", name=re.compile("Restart Kernel and Run All Cells")
            ).click()
            page.locator(".jp-Dialog .jp-mod-accept").click()
            expect(outputs.nth(2)).to_contain_text("replayed", timeout=90_000)
            expect(page.locator(".jp-OutputArea-output table.rssd-table").first).to_contain_text(
                "answer"
            )
            _shot(page, "jupyterlab-after-restart.png")
        except Exception:
            _shot(page, "jupyterlab-failure.png")
            raise
        finally:
            browser.close()
    assert (folder / "rssd.duckdb").exists()
