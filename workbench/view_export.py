"""Any view to one file: standalone HTML that opens offline (plotly.js or the head view's script
inline, no CDN), or a PNG drawn by headless Chromium with every request but the local file
refused (``Plotly.toImage`` for a figure, the canvas's pixels for a head view; no kaleido, which
fetches MathJax from a CDN). The dashboard's download buttons, the CLI's ``--out`` and the
notebooks all export through here.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .head_view import HeadView
from .io import atomic_write

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
"""Headless Chromium without a GPU, a sandbox or any background traffic (also the browser tests')."""


def to_html(view) -> str:
    """One standalone page that opens offline: a plotly figure with plotly.js inline (~4.6 MB,
    no CDN), or a head view's own page (a download button's payload, or :func:`save_html`'s)."""
    if isinstance(view, HeadView):
        return view.html
    return view.to_html(include_plotlyjs=True, full_html=True)


def save_html(view, path: str | Path) -> Path:
    """Write :func:`to_html` of a plotly figure or a head view to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, to_html(view))
    return path


def _render_png(page_path: Path, size: list | None) -> str:
    """A data: URL of the page's PNG: the canvas's (``size`` None) or ``Plotly.toImage``'s."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort())
            page.goto(page_path.as_uri(), wait_until="load")
            if size is None:
                page.wait_for_function("() => window.headViewReady === true", timeout=60_000)
                return page.evaluate("() => window.headViewPNG()")
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=60_000)
            return page.evaluate("async ([w, h, s]) => Plotly.toImage(document.querySelector('.js-plotly-plot'),"
                                 " {format: 'png', width: w, height: h, scale: s})", size)
        finally:
            browser.close()


def save_png(view, path: str | Path, width: int | None = None, height: int | None = None,
             scale: float = 1.0) -> Path:
    """A PNG of a plotly figure (``Plotly.toImage``, the modebar's own export) or of a head view
    (its canvas), rendered by headless Chromium through Playwright with every request other than
    the local file refused: no kaleido, no network. Needs ``playwright`` and a Chromium
    (Debian's ``chromium``; ``playwright install chromium`` is the fallback)."""
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        page_path = save_html(view, Path(tmp) / "view.html")
        size = None if isinstance(view, HeadView) else [width or view.layout.width or 1000,
                                                        height or view.layout.height or 600, scale]
        with ThreadPoolExecutor(1) as pool:  # sync Playwright refuses a thread with a running asyncio loop (Jupyter)
            url = pool.submit(_render_png, page_path, size).result()
    path.write_bytes(base64.b64decode(url.split(",", 1)[1]))
    return path
