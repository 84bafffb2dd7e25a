"""Exported attention views in real headless Chromium with the network cut off: they must draw
from the file alone (no CDN), without console errors, two head views on one page included.

Same Chromium as ``tests/test_browser.py`` (its fixture): skipped without it, a failure with
``WORKBENCH_REQUIRE_BROWSER=1``.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

import test_browser
from test_attention_views import EVIL, softmax_maps, toks
from test_browser import _missing, _offline_page
from workbench.attention import AttentionMaps
from workbench.attention_views import head_over_time, model_view, save_html, save_png
from workbench.head_view import head_view

pytestmark = pytest.mark.browser

browser = test_browser.browser  # fixture: Debian's headless Chromium via Playwright

INK = """(canvas) => { const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0; for (let i = 0; i < d.length; i += 4) ink += 765 - d[i] - d[i + 1] - d[i + 2]; return ink; }"""


def _open_file(browser, path: Path, height: int = 900):
    """The file in a page where every request but file:// is aborted; returns (page, outside
    requests, console errors, dialogs)."""
    page, outside = _offline_page(browser, "file://", height)
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
    errors: list[str] = []
    dialogs: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri(), wait_until="load")
    return page, outside, errors, dialogs


def _drew_plot(page) -> None:
    page.wait_for_selector(".js-plotly-plot .main-svg")
    page.wait_for_function("() => { const el = document.querySelector('.js-plotly-plot');"
                           " return el._fullData && el._fullData[0].z && el._fullData[0].z.length > 0; }")
    assert page.locator(".js-plotly-plot .heatmaplayer image, .js-plotly-plot .hm image").count() >= 1


def test_exported_figures_draw_offline(browser, tmp_path):
    maps = AttentionMaps(softmax_maps(6, 12, 256), toks(256))
    mv = save_html(model_view(maps), tmp_path / "model_view.html")
    snaps = [AttentionMaps(softmax_maps(2, 2, 12, seed=i), toks(12), step=50 * i) for i in range(5)]
    hot = save_html(head_over_time(snaps, 1, 1), tmp_path / "over_time.html")
    for path in (mv, hot):
        page, outside, errors, _ = _open_file(browser, path)
        _drew_plot(page)
        assert outside == [] and errors == []
        page.close()
    page, *_ = _open_file(browser, hot)
    _drew_plot(page)
    assert page.locator(".slider-container").count() == 1
    tick = page.locator(".slider-tick-rect").nth(3).bounding_box()  # the slider's fourth step
    rail = page.locator(".slider-rail-touch-rect").bounding_box()
    page.mouse.click(tick["x"] + tick["width"] / 2, rail["y"] + rail["height"] / 2)
    page.wait_for_function("() => document.querySelector('.js-plotly-plot').data[3].visible === true")
    assert "step 150" in page.evaluate("document.querySelector('.js-plotly-plot').layout.title.text")


def test_head_view_draws_offline_and_hover_filters_lines(browser, tmp_path):
    maps = AttentionMaps(softmax_maps(3, 4, 60), [EVIL] + toks(59), source="test")
    path = head_view(maps, layer=1).save(tmp_path / "head_view.html")
    page, outside, errors, dialogs = _open_file(browser, path, height=600)  # shorter than 60 rows: scrolls
    page.wait_for_function("() => window.headViewReady === true")
    assert page.locator("#scroller").evaluate("(s) => s.scrollHeight > s.clientHeight")
    canvas = page.locator("#canvas")
    assert canvas.evaluate(INK) > 0
    all_lines = int(canvas.get_attribute("data-lines"))
    assert all_lines > 60
    assert page.locator("#layer option").count() == 3 and page.locator("#heads input").count() == 4
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 12 + 18 * 5 + 9)  # query 5 in the left column
    page.wait_for_function(f"() => Number(document.getElementById('canvas').dataset.lines) < {all_lines}")
    page.mouse.move(box["x"] + box["width"] + 50, box["y"] + 5)  # off the canvas: all lines again
    page.wait_for_function(f"() => Number(document.getElementById('canvas').dataset.lines) === {all_lines}")
    page.locator("#scroller").evaluate("(s) => { s.scrollTop = 400; }")  # the columns scroll: lines of later rows
    page.wait_for_function("() => Number(document.getElementById('canvas').dataset.lines) > 0")
    assert canvas.evaluate(INK) > 0
    page.locator("#none").click()
    assert canvas.get_attribute("data-lines") == "0"
    page.locator("#heads input").nth(2).check()
    assert 0 < int(canvas.get_attribute("data-lines")) < all_lines
    page.select_option("#layer", "2")
    assert page.locator("#title").inner_text().startswith("Head view")
    assert outside == [] and errors == [] and dialogs == []
    assert page.locator("img").count() == 0  # the token's markup stayed text


def test_two_head_views_on_one_page_both_draw(browser, tmp_path):
    a = head_view(AttentionMaps(softmax_maps(2, 3, 20, seed=1), toks(20)))
    b = head_view(AttentionMaps(softmax_maps(2, 3, 8, seed=2), toks(8)), layer=1)
    notebook = tmp_path / "notebook.html"
    notebook.write_text(f"<!DOCTYPE html><html><body>{a._repr_html_()}<p>between</p>{b._repr_html_()}</body></html>",
                        encoding="utf-8")
    page, outside, errors, _ = _open_file(browser, notebook, height=1400)
    assert page.locator("iframe.wb-head-view").count() == 2
    frames = [f for f in page.frames if f != page.main_frame]
    assert len(frames) == 2
    for frame in frames:
        frame.wait_for_function("() => window.headViewReady === true")
        assert frame.locator("#canvas").evaluate(INK) > 0
    assert outside == [] and errors == []


def _png_width(path: Path) -> int:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">I", head[16:20])[0]


def test_save_png_of_a_figure_and_a_head_view(tmp_path):
    if shutil.which("chromium") is None:
        _missing("Chromium is not installed")
    maps = AttentionMaps(softmax_maps(2, 3, 16), toks(16))
    fig_png = save_png(model_view(maps), tmp_path / "model_view.png")
    view_png = save_png(head_view(maps), tmp_path / "head_view.png")
    assert _png_width(fig_png) > 100 and _png_width(view_png) > 100
    assert np.frombuffer(view_png.read_bytes(), np.uint8).size > 1000
