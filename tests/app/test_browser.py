"""End to end in real headless Chromium (Debian's /usr/bin/chromium driven by Playwright; no
browser download): `hwnas dashboard` on a database made by a real search, the Pareto explorer's
plot, a selected point, its export, and a screenshot."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_json, search_args

from hwnas.search.services.dashboard import free_port, stop, wait_serving

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking"]  # fmt: skip


@pytest.fixture
def dashboard(ready, tmp_path):
    cwd, url = ready
    run_json(*search_args(url, "browse", 6), cwd=cwd)
    port = free_port()
    env = os.environ | {"HWNAS_EXPORT_DIR": str(tmp_path / "exports")}
    cmd = [sys.executable, "-m", "hwnas.search.cli", "dashboard", "--port", str(port), "--db", url]
    with open(tmp_path / "dashboard.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_serving(port, proc)
            yield port, tmp_path
        finally:
            stop(proc)
    with socket.socket() as s:  # nothing left serving: the server was the process stopped
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the dashboard outlived `hwnas dashboard`"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_pareto_explorer_select_and_export(dashboard):
    from playwright.sync_api import expect, sync_playwright

    port, tmp = dashboard
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"http://127.0.0.1:{port}/pareto")
        plot = page.locator(".js-plotly-plot").first
        expect(plot).to_be_visible(timeout=60_000)
        # the viewer's menu only: no "Deploy" button (Streamlit shows one on localhost)
        expect(page.get_by_role("button", name="Deploy")).to_have_count(0)
        expect(plot.locator(".scatterlayer .point").first).to_be_attached(timeout=30_000)
        plot.locator(".scatterlayer .trace:last-child .point").first.click(force=True)
        heading = page.get_by_role("heading", name="Candidate")
        if not _appears(heading, 15_000):  # a click that plotly did not take as a selection
            page.get_by_text("click a point or pick a candidate id").click()
            page.get_by_role("option").first.click()
        expect(heading.first).to_be_visible(timeout=30_000)
        page.get_by_role("button", name="Export").click()
        expect(page.get_by_text("exported")).to_be_visible(timeout=240_000)
        expect(page.get_by_role("button", name="Download .tflite")).to_be_visible()
        shot = tmp / "pareto-explorer.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    files = list((tmp / "exports").glob("candidate-*-fp32.tflite"))
    assert len(files) == 1 and files[0].read_bytes()[4:8] == b"TFL3"
    assert files[0].with_suffix(".json").exists()


def _appears(locator, timeout_ms: int) -> bool:
    try:
        locator.first.wait_for(state="visible", timeout=timeout_ms)
        return True
    except Exception:  # playwright's TimeoutError
        return False
