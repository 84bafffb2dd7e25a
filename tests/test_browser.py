"""The dashboard in a real browser: start a run from the form, watch its curve grow, see attention;
and the access gate over a real network connection.

Runs ``streamlit run dashboard/app.py`` as a subprocess against a temporary store and drives
Debian's headless Chromium with Playwright (never ``playwright install``). Without Chromium the
tests are skipped, unless ``WORKBENCH_REQUIRE_BROWSER=1`` (CI), where that is a failure.
Screenshots go to the test's temporary folder; ``make screenshots`` sets
``WORKBENCH_SCREENSHOTS=docs/screenshots`` to refresh the README's pictures.
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

from workbench.presets import get_preset
from workbench.view_export import CHROMIUM_ARGS
from workbench.runstore import RunStore

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SHOTS_ENV = "WORKBENCH_SCREENSHOTS"
MAX_STEPS, EVAL_INTERVAL, EVAL_CHARS = 150, 25, 4096
NASTY_NAME = "demo ![x](http://192.0.2.9/x.png) `t` **b** www.example.com"  # must show as typed, fetch nothing


def _shots_dir(tmp_path: Path) -> Path:
    """Where screenshots go: ``$WORKBENCH_SCREENSHOTS`` (relative to the project), else the test's tmp."""
    given = os.environ.get(SHOTS_ENV)
    folder = (ROOT / given) if given else tmp_path / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _missing(what: str, fix: str = "apt-get install -y chromium; pip install playwright") -> None:
    if os.environ.get("WORKBENCH_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what}, and WORKBENCH_REQUIRE_BROWSER=1 says browser tests must run ({fix})")
    pytest.skip(f"{what} ({fix})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(tmp_path: Path, name: str, env: dict[str, str], args: list[str], cwd: Path):
    """Start ``streamlit run <abs path>/dashboard/app.py`` with ``args``; returns (process, port, log)."""
    port = _free_port()
    log_path = tmp_path / f"{name}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard" / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none", *args],
        cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not come up:\n" + log_path.read_text())
            time.sleep(0.3)
    except BaseException:
        _end(proc, log)
        raise
    return proc, port, log


def _end(proc: subprocess.Popen, log) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def server(tmp_path):
    """A dashboard on a free local port with its own store; yields (base url, home)."""
    home = tmp_path / "home"
    proc, port, log = _serve(tmp_path, "streamlit", {"WORKBENCH_HOME": str(home)},
                             ["--server.address", "127.0.0.1"], cwd=ROOT)
    try:
        yield f"http://127.0.0.1:{port}", home
    finally:
        _end(proc, log)


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


def _offline_page(browser, url: str, height: int):
    """A page of ``height`` px (1440 wide) and the list it fills with every request to another host:
    the dashboard must work offline, so a test asserts that list stays empty."""
    page = browser.new_page(viewport={"width": 1440, "height": height})
    page.set_default_timeout(60_000)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url))
    return page, outside


def _committed_shots() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in (ROOT / "docs" / "screenshots").glob("*.png")}


def test_train_watch_and_look_inside(server, browser, tmp_path):
    url, home = server
    shots = _shots_dir(tmp_path)
    committed = _committed_shots()
    page, outside = _offline_page(browser, url, 1250)

    # Train: a tiny config through the form
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_role("heading", name="Train a model").wait_for()
    page.get_by_text("Parameters").first.wait_for()
    for label, value in {"Steps (max_steps)": MAX_STEPS, "Evaluate every (eval_interval)": EVAL_INTERVAL}.items():
        box = page.get_by_role("spinbutton", name=label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.get_by_text("More settings").click()  # the expander with the validation budget
    box = page.get_by_role("spinbutton", name="Validation text scored (characters, 0 = all)", exact=True)
    box.fill(str(EVAL_CHARS))
    box.press("Tab")
    page.get_by_role("button", name="Start training").click()

    # Monitor: the app switches there; the loss chart appears and grows while the run trains
    page.get_by_role("heading", name="Monitor").wait_for()
    stop = page.get_by_role("button", name="Stop")
    stop.wait_for()  # drawn while the run is live
    (run,) = RunStore(home).list_runs()
    assert run.config["train"]["max_steps"] == MAX_STEPS and run.config["train"]["eval_interval"] == EVAL_INTERVAL
    assert run.config["data"]["eval_chars"] == EVAL_CHARS
    page.wait_for_function(_plot_js("d.length > 0 && d[0].x.length >= 2"), timeout=180_000)
    first_points = page.evaluate("document.querySelector('.js-plotly-plot').data[0].x.length")
    page.get_by_text(f"{MAX_STEPS} / {MAX_STEPS}").wait_for(timeout=180_000)  # the fragment saw the end
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
    page.screenshot(path=str(shots / "monitor.png"))

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
    page.screenshot(path=str(shots / "attention.png"))

    # a browser refresh keeps the selected run (it is in the URL)
    page.reload(wait_until="domcontentloaded")
    page.wait_for_function(_plot_js("d[0].type === 'heatmap'"))
    assert f"step {MAX_STEPS}" in page.evaluate("document.querySelector('.js-plotly-plot').layout.title.text")
    assert not page.locator("[data-testid='stException']").count()

    # every layer x head as one image, then the head view (its own page in an iframe, drawn on a canvas)
    page.get_by_text("All heads", exact=True).click()
    page.wait_for_function(_plot_js("d.length === 1 && d[0].type === 'heatmap' && (el.layout.yaxis.ticktext || [])"
                                    ".some(t => t.startsWith('L'))"))
    page.get_by_text("Head view", exact=True).click()
    frame = page.frame_locator("iframe[title='st.iframe'], iframe").first
    frame.locator("canvas").first.wait_for()
    page.wait_for_function("""() => { const f = [...document.querySelectorAll('iframe')].find(i => i.contentDocument
        && i.contentDocument.querySelector('canvas')); if (!f) return false;
        const c = f.contentDocument.querySelector('canvas'); const d = c.getContext('2d')
        .getImageData(0, 0, c.width, c.height).data; let ink = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] + d[i + 1] + d[i + 2] < 700) ink++;
        return ink > 200; }""")
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "attention_head_view.png"))

    assert not page.locator("[data-testid='stException']").count()
    assert outside == []
    assert {p.name for p in shots.glob("*.png")} >= {"monitor.png", "attention.png", "attention_head_view.png"}
    if SHOTS_ENV not in os.environ:  # a plain test run leaves the README's pictures alone
        assert _committed_shots() == committed


def _lan_address() -> str | None:
    """This machine's address on its network (no packet is sent), or None without one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
            address = s.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']")
    return page


def test_started_from_another_folder_it_serves_other_machines_only_with_the_token(browser, tmp_path):
    """``streamlit run /abs/dashboard/app.py`` from a folder without the project's config listens
    on every interface: a visitor from the network address gets the refusal page, unless the
    link has the token (which then leaves the address bar); with a token set, this machine needs it too."""
    lan = _lan_address()
    if lan is None:
        _missing("this machine has no non-loopback address to visit the dashboard from",
                 fix="give it a network interface with an address other than 127.0.0.1")
    token = "tok-" + os.urandom(8).hex()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc, port, log = _serve(tmp_path, "gated", {"WORKBENCH_HOME": str(tmp_path / "home"), "WORKBENCH_TOKEN": token},
                             [], cwd=elsewhere)
    try:
        page = _open(browser, f"http://{lan}:{port}/")
        page.get_by_text("This dashboard needs an access token").wait_for()
        assert page.get_by_role("heading", name="Train a model").count() == 0

        page = _open(browser, f"http://{lan}:{port}/?token={token}")
        page.get_by_role("heading", name="Train a model").wait_for()
        page.wait_for_function("() => !window.location.search.includes('token')")
        page.reload(wait_until="domcontentloaded")  # a new session: the token is no longer in the link...
        page.get_by_text("This dashboard needs an access token").wait_for()  # ...so it must be given again
        page.get_by_label("Access token").fill(token)
        page.get_by_role("button", name="Open the dashboard").click()
        page.get_by_role("heading", name="Train a model").wait_for()

        page = _open(browser, f"http://127.0.0.1:{port}/")  # with a token set, this machine needs it too
        page.get_by_text("This dashboard needs an access token").wait_for()
        page = _open(browser, f"http://127.0.0.1:{port}/?token={token}")
        page.get_by_role("heading", name="Train a model").wait_for()
    finally:
        _end(proc, log)

    store = RunStore(tmp_path / "home")
    run_id = store.create_run(get_preset("gpt-nano").to_dict(), name=NASTY_NAME)
    store.update_run(run_id, status="failed", error=f"ValueError: {NASTY_NAME}")
    proc, port, log = _serve(tmp_path, "open", {"WORKBENCH_HOME": str(tmp_path / "home")}, [], cwd=elsewhere)
    try:
        env_token = os.environ.get("WORKBENCH_TOKEN")
        assert env_token is None or env_token != token
        page = _open(browser, f"http://{lan}:{port}/?token={token}")  # no token is set: nobody gets in
        page.get_by_text("none is set").wait_for()
        assert page.get_by_role("heading", name="Train a model").count() == 0
        page = _open(browser, f"http://127.0.0.1:{port}/")
        page.get_by_role("heading", name="Train a model").wait_for()
        page.get_by_text("visitors from other machines are refused").wait_for()  # the sidebar warning

        # a run name full of Markdown is drawn as typed: no image, link or bold, nothing fetched
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"http://127.0.0.1:{port}/monitor?run={run_id}", wait_until="domcontentloaded")
        heading = page.locator("[data-testid='stMain'] h3", has_text="Run ").first
        heading.wait_for()
        error = page.locator("[data-testid='stAlertContentError']").first
        error.wait_for()
        for element in (heading, error):
            assert NASTY_NAME in element.inner_text().replace("\u2060", "")  # (invisible joiners break links)
            assert element.locator("img, a[href^='http'], a[href^='mailto'], strong, em").count() == 0, \
                element.inner_html()
        assert not [u for u in requests if "192.0.2.9" in u or "example.com" in u]
    finally:
        _end(proc, log)


FT_STEPS, FT_EVAL = 40, 20
NASTY_TEXT = "**bold** <img src=x onerror=alert(1)> [link](http://192.0.2.9/x) $x$"


def test_finetune_from_the_form_watch_the_confusion_matrix_and_predict(server, browser, tmp_path):
    """Train page, Fine-tune mode: a small new BERT on the genre task; Monitor draws its scores and
    the confusion matrices (validation over time, test at the end); Sample predicts on typed text."""
    url, home = server
    shots = _shots_dir(tmp_path)
    page, outside = _offline_page(browser, url, 2000)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_role("heading", name="Train a model").wait_for()
    page.get_by_text("Fine-tune on a task", exact=True).click()
    page.get_by_text("A new small model (random)", exact=True).click()
    for label, value in {"Layers": 1, "Positions (block_size)": 64, "Longest input (max_len, tokens)": 64,
                         "Steps (max_steps)": FT_STEPS, "Evaluate every": FT_EVAL}.items():
        box = page.get_by_role("spinbutton", name=label, exact=True)
        box.fill(str(value))
        box.press("Tab")
        page.wait_for_function(f"() => [...document.querySelectorAll('input')].some(i => i.value === '{value}')")
    page.get_by_role("button", name="Start fine-tuning").click()

    page.get_by_role("heading", name="Monitor").wait_for()
    (run,) = RunStore(home).list_runs()
    assert run.config["finetune"]["task"] == "genre" and run.config["finetune"]["init"] == "scratch"
    assert run.config["train"]["max_steps"] == FT_STEPS and run.config["finetune"]["max_len"] == 64
    page.get_by_text(f"{FT_STEPS} / {FT_STEPS}").wait_for(timeout=240_000)
    page.get_by_text("Test accuracy").wait_for(timeout=60_000)
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].filter(el => el.data && "
                           "el.data[0] && el.data[0].type === 'heatmap').length === 2")
    titles = page.evaluate("[...document.querySelectorAll('.js-plotly-plot')].filter(el => el.data[0].type === "
                           "'heatmap').map(el => el.layout.title.text.replace(/<[^>]+>/g, ''))")
    assert titles == [f"Validation, step {FT_STEPS}", "Test (end of training)"]
    assert page.get_by_text("Validation perplexity").count() == 0  # no language-model charts
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "finetune_monitor.png"))

    page.get_by_role("link", name="Sample / Translate").click()
    page.get_by_role("heading", name="Predict").wait_for()
    page.wait_for_function(_plot_js("d[0].type === 'bar' && d[0].y.length === 3"))
    page.get_by_label("Text to classify").fill(NASTY_TEXT)
    page.get_by_role("button", name="Classify").click()
    page.get_by_text("Prediction:").wait_for()
    page.wait_for_function(_plot_js("d[0].type === 'bar' && d[0].y.length === 3"))
    assert page.locator("[data-testid='stMain'] img[src='x'], [data-testid='stMain'] a[href*='192.0.2.9']").count() == 0
    assert not page.locator("[data-testid='stException']").count()
    assert outside == []
