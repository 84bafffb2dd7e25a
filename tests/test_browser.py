"""The dashboard in a real browser: start a run from the form, watch its curve grow, see attention.

Runs ``streamlit run dashboard/app.py`` as a subprocess against a temporary store and drives
Debian's headless Chromium with Playwright (never ``playwright install``). Without Chromium the
test is skipped, unless ``WORKBENCH_REQUIRE_BROWSER=1`` (CI), where that is a failure.
Writes ``docs/screenshots/{monitor,attention}.png`` for the README on every run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workbench.runstore import RunStore

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
MAX_STEPS, EVAL_INTERVAL = 150, 25


def _missing(what: str) -> None:
    if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what}, and WORKBENCH_REQUIRE_BROWSER=1 says browser tests must run "
                    "(apt-get install -y chromium; pip install playwright)")
    pytest.skip(f"{what}; install Debian's chromium to run the browser tests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A dashboard on a free local port with its own store; yields (base url, home)."""
    home = tmp_path / "home"
    port = _free_port()
    log = open(tmp_path / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env={**os.environ, "WORKBENCH_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not come up:\n" + (tmp_path / "streamlit.log").read_text())
            time.sleep(0.3)
        yield url, home
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        _missing("Chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def _plot_js(expr: str) -> str:
    """A JS predicate over the first plotly chart's traces (``d`` = its ``data`` array)."""
    return f"() => {{ const el = document.querySelector('.js-plotly-plot'); const d = el && el.data; return !!(d && ({expr})); }}"


def test_train_watch_and_look_inside(server, browser):
    url, home = server
    page = browser.new_page(viewport={"width": 1440, "height": 1250})
    page.set_default_timeout(60_000)
    outside = []  # the dashboard must work offline: nothing may be fetched from another host
    page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))

    # Train: a tiny config through the form
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_role("heading", name="Train a model").wait_for()
    page.get_by_text("Parameters").first.wait_for()
    for label, value in {"Steps (max_steps)": MAX_STEPS, "Evaluate every (eval_interval)": EVAL_INTERVAL}.items():
        box = page.get_by_role("spinbutton", name=label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.get_by_role("button", name="Start training").click()

    # Monitor: the app switches there; the loss chart appears and grows while the run trains
    page.get_by_role("heading", name="Monitor").wait_for()
    stop = page.get_by_role("button", name="Stop")
    stop.wait_for()  # drawn while the run is live
    (run,) = RunStore(home).list_runs()
    assert run.config["train"]["max_steps"] == MAX_STEPS and run.config["train"]["eval_interval"] == EVAL_INTERVAL
    page.wait_for_function(_plot_js("d.length > 0 && d[0].x.length >= 2"), timeout=90_000)
    first_points = page.evaluate("document.querySelector('.js-plotly-plot').data[0].x.length")
    page.get_by_text(f"{MAX_STEPS} / {MAX_STEPS}").wait_for(timeout=90_000)  # the fragment saw the end
    # ...and asked for one full rerun: the parts outside the fragment now know the run ended
    stop.wait_for(state="detached")
    assert page.get_by_role("combobox", name="Run").input_value() == f"{run.id} · gpt-nano · finished"
    store = RunStore(home)
    steps, _ = store.metric_series(run.id)["train/loss"]
    page.wait_for_function(_plot_js(f"d[0].x.length === {len(steps)}"))
    assert page.evaluate("document.querySelector('.js-plotly-plot').data[0].name") == "train/loss"
    assert len(steps) >= first_points >= 2
    assert page.evaluate("document.querySelector('.js-plotly-plot').data[1].x.length") == MAX_STEPS // EVAL_INTERVAL + 1
    assert f"run={run.id}" in page.url
    page.wait_for_timeout(500)  # let plotly finish its transition before the picture
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "monitor.png"))

    # Attention: the sidebar link keeps the run; a heatmap of the last snapshot appears
    page.get_by_role("link", name="Attention").click()
    page.get_by_role("heading", name="Attention").wait_for()
    # plotly.js decodes the binary z into _fullData: one row per probe token, drawn
    page.wait_for_function(_plot_js("d[0].type === 'heatmap' && d[0].x.length >= 2 "
                                    "&& el._fullData && el._fullData[0].z.length === d[0].x.length"))
    title = page.evaluate("document.querySelector('.js-plotly-plot').layout.title.text")
    assert f"step {MAX_STEPS}" in title
    assert f"run={run.id}" in page.url
    page.set_viewport_size({"width": 1440, "height": 1640})  # the single head and the layer x head grid
    page.wait_for_timeout(800)
    page.screenshot(path=str(SHOTS / "attention.png"))

    # a browser refresh keeps the selected run (it is in the URL)
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function(_plot_js("d[0].type === 'heatmap'"))
    assert f"step {MAX_STEPS}" in page.evaluate("document.querySelector('.js-plotly-plot').layout.title.text")
    assert not page.locator("[data-testid='stException']").count()
    assert outside == []
