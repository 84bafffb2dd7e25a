"""The Tokenizers page in a real browser: train a small BPE on the built-in corpus, see the
sentence coloured token by token (ids on hover), keep it and find it on the Train page.

Same server and Chromium as ``tests/test_browser.py`` (its fixtures): skipped without Chromium,
a failure instead when ``WORKBENCH_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import os

import pytest

import test_browser
from test_browser import SHOTS_ENV, _committed_shots, _offline_page, _shots_dir
from workbench.tokenizers.library import TokenizerLibrary

pytestmark = pytest.mark.browser

server = test_browser.server  # fixtures: a dashboard on a free port with its own store; headless Chromium
browser = test_browser.browser

SENTENCE = "ROMEO: <b>soft</b> & light"
VIEW = "[data-testid='stMain'] .wb-tokens"  # the first one is the sentence view (the Compare table follows)


def _idle(page) -> None:
    """Wait until the app has finished the script run a click started."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=60_000)


def test_train_a_tokenizer_and_see_the_coloured_tokens(server, browser, tmp_path):
    url, home = server
    shots = _shots_dir(tmp_path)
    committed = _committed_shots()
    page, outside = _offline_page(browser, url, 1400)

    page.goto(f"{url}/tokenizers", wait_until="domcontentloaded")
    page.wait_for_selector("[data-testid='stApp']")
    page.get_by_role("heading", name="Tokenizers").first.wait_for()
    assert page.get_by_role("combobox", name="Tokenizer family").input_value() == "bpe"
    box = page.get_by_role("spinbutton", name="Vocabulary size (vocab_size)", exact=True)
    box.fill("300")
    box.press("Tab")
    _idle(page)
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_role("heading", name="bpe 300 · shakespeare").wait_for(timeout=120_000)
    page.get_by_text("Characters per token").first.wait_for()  # the statistics (drawn after the heading)

    # the sample sentence, one coloured span per token, the id in each span's tooltip
    view = page.locator(VIEW).first
    spans = view.locator(".wb-tok")
    spans.first.wait_for()
    assert spans.count() > 10
    assert spans.first.get_attribute("title").startswith("id ")
    colours = {spans.nth(i).evaluate("e => getComputedStyle(e).backgroundColor") for i in range(4)}
    assert len(colours) >= 2  # neighbouring tokens differ
    page.mouse.move(0, 0)  # no tooltip over the README's picture
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "tokenizers.png"), full_page=True)  # the README's picture: the sample sentence

    # typed markup is shown as text: no element is made from it
    area = page.get_by_role("textbox", name="Text to tokenize")
    area.fill(SENTENCE)
    area.press("Control+Enter")
    page.wait_for_function(
        "s => { const v = document.querySelector(\"[data-testid='stMain'] .wb-tokens\"); "
        "return !!v && v.innerText === s; }", arg=SENTENCE)
    assert view.locator("b").count() == 0
    assert "".join(spans.all_inner_texts()).replace(" ", "") == SENTENCE.replace(" ", "")

    # keep it, and the Train page offers it
    page.get_by_role("textbox", name="Keep as").fill("shakespeare-bpe")
    page.get_by_role("button", name="Keep", exact=True).click()
    page.get_by_text("Kept as").wait_for()
    assert [k.name for k in TokenizerLibrary(home).list()] == ["shakespeare-bpe"]
    page.get_by_role("link", name="Train").click()
    page.get_by_role("heading", name="Train a model").wait_for()
    page.get_by_role("combobox", name="Tokenizer", exact=True).click()
    page.get_by_role("option", name="kept: shakespeare-bpe (bpe, 300)").wait_for()

    assert not page.locator("[data-testid='stException']").count()
    assert outside == []
    if SHOTS_ENV not in os.environ:  # a plain test run leaves the README's pictures alone
        assert _committed_shots() == committed
