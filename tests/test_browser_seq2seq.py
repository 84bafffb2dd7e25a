"""The encoder-decoder pages in a real browser: a small reverse-words run's Monitor (BLEU, the
decoded examples), Generate / Translate with beam search (the same outputs as
``seq2seq_decode.translate``, next to the task's rule) and the Attention page's cross-attention.

The run is trained in the test process before the server starts; the server and Chromium are
``tests/test_browser.py``'s (skipped without Chromium, a failure with ``WORKBENCH_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import json
import os

import pytest

import test_browser
from test_browser import SHOTS_ENV, ROOT, _committed_shots, _end, _offline_page, _plot_js, _serve, _shots_dir
from workbench.attention import AttentionMaps
from workbench.objectives.seq2seq_tasks import reverse_words
from workbench.overrides import apply_overrides
from workbench.pipeline import attention_snapshots, cross_attention_snapshots, load_run_model, train
from workbench.plots import _show_tokens
from workbench.presets import PRESETS, get_preset
from workbench.runstore import RunStore
from workbench.seq2seq_decode import translate

pytestmark = pytest.mark.browser

browser = test_browser.browser  # fixture: headless Chromium (or a skip / failure without it)

MAX_STEPS, EVAL_INTERVAL = 150, 75  # evaluations at steps 0, 75 and 150
SOURCES = ["the quick brown fox", "to be or not"]
BEAM = 4
HEATMAP = "[data-testid='stMain'] .js-plotly-plot"


def _config():
    small = {"max_steps": MAX_STEPS, "eval_interval": EVAL_INTERVAL, "eval_chars": 2048, "score_examples": 32}
    if "seq2seq-reverse-words-nano" in PRESETS:
        return apply_overrides(get_preset("seq2seq-reverse-words-nano"), small)
    return apply_overrides(get_preset("t5-nano"), {"objective": "seq2seq", "task": "reverse-words", "max_words": 4,
                                                   **small})


def _idle(page) -> None:
    """Wait until the app has finished the script run a click started."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=60_000)


def _heatmap_axes(page) -> tuple[list[str], list[str]]:
    return tuple(page.evaluate("document.querySelector(\"" + HEATMAP + "\").data[0]." + axis) for axis in "xy")


def _grid_text(frame) -> list[str]:
    """The cells of an st.dataframe (glide-data-grid draws on a canvas, with an accessible table)."""
    return frame.locator("[role='gridcell']").all_inner_texts()


@pytest.fixture
def seq2seq_server(tmp_path):
    """One small reverse-words run trained here, then a dashboard over its store; yields (url, home, run id)."""
    home = tmp_path / "home"
    run_id = train(_config(), RunStore(home), progress=False)
    proc, port, log = _serve(tmp_path, "streamlit", {"WORKBENCH_HOME": str(home)},
                             ["--server.address", "127.0.0.1"], cwd=ROOT)
    try:
        yield f"http://127.0.0.1:{port}", home, run_id
    finally:
        _end(proc, log)


def test_monitor_translate_and_cross_attention_of_a_seq2seq_run(seq2seq_server, browser, tmp_path):
    url, home, run_id = seq2seq_server
    store = RunStore(home)
    assert store.get_run(run_id).status == "finished"
    shots = _shots_dir(tmp_path)
    committed = _committed_shots()
    page, outside = _offline_page(browser, url, 1400)

    # Monitor: the BLEU chart and the decoded examples of the last evaluation
    page.goto(f"{url}/monitor?run={run_id}", wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_role("heading", name="Monitor").wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(el => el.layout && el.layout.title "
        "&& el.layout.title.text.includes('Validation BLEU (0-100)') && el.data[0].x.length === 3)")
    page.get_by_text(f"What the decoder writes at step {MAX_STEPS}").wait_for()
    table = page.locator("[data-testid='stMain'] [data-testid='stDataFrame']").first
    table.wait_for()
    _idle(page)
    step, path = store.artifacts(run_id, "decoded")[-1]
    assert step == MAX_STEPS
    first = json.loads(path.read_text(encoding="utf-8"))["examples"][0]
    assert [h.strip() for h in table.locator("[role='columnheader']").all_inner_texts()] == \
        ["source", "target", "output", "exact"]
    assert [c.strip() for c in _grid_text(table)[:3]] == [first["source"], first["reference"], first["hypothesis"]]
    assert not page.locator("[data-testid='stException']").count()
    table.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "translate_monitor.png"))

    # Generate / Translate: two sources, beam search, the outputs beside the rule's answers
    page.get_by_role("link", name="Sample / Translate").click()
    page.get_by_role("heading", name="Generate / Translate").wait_for()
    assert f"run={run_id}" in page.url
    page.get_by_text("reverse-words").first.wait_for()
    page.get_by_text("beam search", exact=True).click()  # the decoding radio (outside the form: a rerun)
    page.get_by_role("spinbutton", name="Beam size").wait_for()
    _idle(page)
    assert page.get_by_role("spinbutton", name="Beam size").input_value() == str(BEAM)
    page.get_by_role("textbox", name="Source (one per line)").fill("\n".join(SOURCES))
    page.get_by_role("button", name="Translate").click()
    page.get_by_role("heading", name="Output").wait_for()
    page.get_by_text(f"Beam search (beam {BEAM}, length penalty 1)").wait_for()
    _idle(page)

    model, tokenizer, _cfg = load_run_model(store, run_id, "best")
    expected = translate(model, tokenizer, SOURCES, beam_size=BEAM, length_penalty=1.0)
    table = page.locator("[data-testid='stMain'] [data-testid='stDataFrame']").first
    table.wait_for()
    headers = table.locator("[role='columnheader']").all_inner_texts()
    assert [h.strip() for h in headers][:4] == ["source", "output", "expected", "exact"], headers
    cells = [c.strip() for c in _grid_text(table)]
    assert len(cells) >= 8, cells
    for i, (source, output) in enumerate(zip(SOURCES, expected)):
        row = cells[4 * i: 4 * i + 4]
        assert row[:3] == [source, output.strip(), reverse_words(source)], row
    matches = sum(o.strip() == reverse_words(s) for s, o in zip(SOURCES, expected))
    page.get_by_text(f"{matches} of {len(SOURCES)}").wait_for()
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "translate.png"))
    assert not page.locator("[data-testid='stException']").count()

    # a single source: the output, then the rule's answer under its own label
    page.get_by_role("textbox", name="Source (one per line)").fill(SOURCES[0])
    page.get_by_role("button", name="Translate").click()
    page.get_by_text("Expected (the task's rule)").wait_for()
    _idle(page)
    codes = page.locator("[data-testid='stMain'] [data-testid='stCode']").all_inner_texts()
    assert [c.strip() for c in codes][-2:] == [expected[0].strip(), reverse_words(SOURCES[0])], codes

    # Attention: cross-attention by default, decoder tokens (rows) x encoder tokens (columns)
    page.get_by_role("link", name="Attention").click()
    page.get_by_role("heading", name="Attention").wait_for()
    assert f"run={run_id}" in page.url
    cross = AttentionMaps.load(cross_attention_snapshots(store, run_id)[-1][1])
    assert cross.kind == "cross" and cross.key_tokens is not None
    page.wait_for_function(_plot_js(f"d[0].type === 'heatmap' && d[0].x.length === {len(cross.key_tokens)} "
                                    f"&& d[0].y.length === {len(cross.tokens)}"))
    x, y = _heatmap_axes(page)
    assert (x, y) == (_show_tokens(cross.key_tokens), _show_tokens(cross.tokens))
    assert f"step {MAX_STEPS}" in page.evaluate(f"document.querySelector(\"{HEATMAP}\").layout.title.text")
    page.get_by_text("Decoder input").first.wait_for()
    page.get_by_text("anti-diagonal", exact=True).wait_for()
    _idle(page)
    page.mouse.move(1400, 700)  # off the sidebar (its collapse button shows under the pointer)
    page.wait_for_timeout(800)  # let plotly finish drawing before the picture
    page.screenshot(path=str(shots / "cross_attention.png"))

    # the encoder's self-attention: a square over the source tokens
    encoder = AttentionMaps.load(attention_snapshots(store, run_id)[-1][1])
    s = len(encoder.tokens)
    page.get_by_text("Encoder self-attention", exact=True).click()
    page.wait_for_function(_plot_js(f"d[0].type === 'heatmap' && d[0].x.length === {s} && d[0].y.length === {s}"))
    _idle(page)
    x, y = _heatmap_axes(page)
    assert x == y == _show_tokens(encoder.tokens)
    page.get_by_text("to next", exact=True).wait_for()  # the self-attention statistics instead
    page.get_by_text("anti-diagonal", exact=True).wait_for(state="detached")

    assert not page.locator("[data-testid='stException']").count()
    assert outside == []
    assert {p.name for p in shots.glob("*.png")} >= {"translate_monitor.png", "translate.png", "cross_attention.png"}
    if SHOTS_ENV not in os.environ:  # a plain test run leaves the README's pictures alone
        assert _committed_shots() == committed
