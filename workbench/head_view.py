"""The bertviz-style head view as ONE self-contained HTML document, and offline export.

bertviz loads require.js, d3 and jQuery from CDNs (blank offline and in VS Code), gives its
elements fixed ids (a second view in the same notebook is blank: bertviz #45) and draws one SVG
element per line (512 tokens freeze the page). Here the page carries everything inline: the
script (``workbench/static/head_view.js``, no libraries) and the data (sparsified: each query's
strongest keys only, base64 arrays), drawn on a ``<canvas>``; in a notebook the page sits in an
``<iframe srcdoc>`` of its own, so ids never clash. :mod:`workbench.view_export` writes it (and
any plotly figure) to one offline HTML file or a PNG.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .labels import visible  # drawn with fillText/textContent: never parsed as HTML

if TYPE_CHECKING:
    from .attention import AttentionMaps


MIN_WEIGHT = 1 / 255
"""Lines lighter than this are not sent (drawn at opacity < 1/255 they are invisible anyway)."""
TOP_K = 16
"""Most lines sent per query and head: its strongest keys (the strongest is always sent)."""
_ids = itertools.count()


@dataclass
class Sparse:
    """Per layer, the lines kept, in (head, query, key) order: ``counts`` (nh*T,) lines per row,
    ``keys`` key index of each line, ``levels`` its weight as round(w * 255) in 1..255."""

    counts: list[np.ndarray]  # L x (nh*T,) uint8
    keys: list[np.ndarray]  # L x (n_lines_l,) uint16
    levels: list[np.ndarray]  # L x (n_lines_l,) uint8
    kept: int  # lines sent
    nonzero: int  # lines with weight > 0
    dropped_mass: float  # mean weight per row that was not sent


def sparsify(weights: np.ndarray, min_weight: float = MIN_WEIGHT, top_k: int = TOP_K) -> Sparse:
    """Keep, per (layer, head, query) row, the keys with weight >= ``min_weight`` among its
    ``top_k`` strongest, and always the strongest: 512 x 512 x 12 heads become ~100k lines
    a layer at most, instead of 3M, with every row's peak kept."""
    w = np.asarray(weights, dtype=np.float32)  # (L, nh, T, S)
    n_layers, n_heads, t, s = w.shape
    k = max(1, min(top_k, s, 255))
    idx = np.argpartition(-w, k - 1, axis=-1)[..., :k] if k < s else np.broadcast_to(np.arange(s), w.shape)
    vals = np.take_along_axis(w, idx, axis=-1)  # (L, nh, T, k)
    order = np.argsort(idx, axis=-1, kind="stable")  # keys in order within a row
    idx, vals = np.take_along_axis(idx, order, axis=-1), np.take_along_axis(vals, order, axis=-1)
    peak = w.max(axis=-1, keepdims=True)  # (L, nh, T, 1)
    keep = (vals >= min_weight) | (vals >= peak)  # (L, nh, T, k)
    levels = np.clip(np.rint(vals * 255), 1, 255).astype(np.uint8)
    counts, keys, lv = [], [], []
    for l in range(n_layers):
        counts.append(keep[l].sum(axis=-1).reshape(-1).astype(np.uint8))  # (nh*T,)
        keys.append(idx[l][keep[l]].astype("<u2"))
        lv.append(levels[l][keep[l]])
    sent = float((vals * keep).sum())
    return Sparse(counts, keys, lv, int(keep.sum()), int((w > 0).sum()),
                  max(0.0, 1.0 - sent / max(1, n_layers * n_heads * t)))


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _script_json(data: object) -> str:
    """JSON safe inside an inline <script>: no "<" (so no "</script>"), ">" or "&" left raw."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, esc)
    return text


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 0; color: #222; background: #fff; }}
#bar {{ position: sticky; top: 0; background: #fff; padding: 6px 8px; border-bottom: 1px solid #ddd; z-index: 1; }}
#bar label {{ margin-right: 8px; white-space: nowrap; }}
.sw {{ display: inline-block; width: 10px; height: 10px; margin: 0 3px; border-radius: 2px; }}
#caption {{ color: #555; margin: 4px 0 0; font-size: 12px; }}
#title {{ font-weight: 600; }}
#scroller {{ overflow-y: auto; margin: 4px 0 0 8px; }}
canvas {{ display: block; position: sticky; top: 0; }}
</style></head>
<body>
<div id="bar"><span id="title"></span> <label>Layer <select id="layer"></select></label>
<span id="heads"></span> <button id="all">all</button> <button id="none">none</button>
<button id="png">Download PNG</button><p id="caption"></p></div>
<div id="scroller"><canvas id="canvas"></canvas><div id="spacer"></div></div>
<script type="application/json" id="hv-data">{data}</script>
<script>{script}</script>
</body></html>
"""


@dataclass
class HeadView:
    """One head view: ``html`` is a complete offline page; in a notebook it shows in an iframe of
    its own (``_repr_html_``), in Streamlit ``st.components.v1.html(view.html, height=view.height)``
    (the page scrolls its token columns itself, within whatever height it is given)."""

    html: str
    caption: str
    height: int = 640
    lines: int = 0

    def _repr_html_(self) -> str:
        frame = f"wb-head-view-{next(_ids)}-{np.random.randint(1 << 30):x}"
        return (f'<iframe id="{frame}" class="wb-head-view" srcdoc="{html.escape(self.html, quote=True)}" '
                f'style="width: 100%; height: {self.height}px; border: 1px solid #ddd;"></iframe>')

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html, encoding="utf-8")
        return path


def head_view(maps: AttentionMaps, layer: int = 0, heads: list[int] | None = None, max_tokens: int = 512,
              min_weight: float = MIN_WEIGHT, top_k: int = TOP_K, height: int = 640) -> HeadView:
    """Lines from each query (left column) to the keys it attends to (right column; for
    cross-attention, the encoder's tokens), one colour per head, opacity = weight. Data for every
    layer is inline (a dropdown picks one); ``heads`` are ticked at first (default all). Inputs
    longer than ``max_tokens`` are cut to their first ``max_tokens`` (said in the caption)."""
    w = np.asarray(maps.weights, dtype=np.float32)  # (L, nh, T, S)
    n_layers, n_heads, t, s = w.shape
    cut = t > max_tokens or s > max_tokens
    w = w[:, :, :max_tokens, :max_tokens]
    queries, keys = maps.tokens[:max_tokens], maps.keys[:max_tokens]
    sp = sparsify(w, min_weight, top_k)
    title = f"Head view · {maps.kind}" + (f" · {maps.source}" if maps.source else "") + (
        f" · step {maps.step}" if maps.step is not None else "")
    caption = (f"{len(queries)} queries (left) × {len(keys)} keys (right); line opacity = weight. "
               f"{sp.kept:,} lines kept over {n_layers} layers, of {sp.nonzero:,} non-zero weights: per query "
               f"and head only its {top_k} strongest keys with weight ≥ {min_weight:.3f} (its strongest always); "
               f"the {sp.nonzero - sp.kept:,} lines left out carry {sp.dropped_mass:.1%} of the attention. "
               "Hover a token to see only its lines, click to pin.")
    if cut:
        caption += f" Cut to the first {max_tokens} tokens (of {t} queries, {s} keys)."
    if max(len(queries), len(keys)) > 30:
        caption += " Long input: scroll the columns to see every token."
    data = {"title": title, "caption": caption, "queries": [visible(x) for x in queries],
            "keys": [visible(x) for x in keys], "nHeads": n_heads, "layer": int(layer),
            "heads": list(range(n_heads)) if heads is None else [int(h) for h in heads],
            "layers": [{"counts": _b64(sp.counts[l]), "keys": _b64(sp.keys[l]), "levels": _b64(sp.levels[l])}
                       for l in range(n_layers)]}
    script = resources.files("workbench").joinpath("static", "head_view.js").read_text(encoding="utf-8")
    page = _PAGE.format(title=html.escape(title), data=_script_json(data), script=script)
    return HeadView(page, caption, height, sp.kept)
