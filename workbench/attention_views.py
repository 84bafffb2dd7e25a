"""Attention and position views: pure functions -> plotly Figures (notebooks, dashboard, export).

Built for long inputs: the model view draws every layer x head as ONE heatmap image of uint8
levels (a 72-head MiniLM map at 512 tokens is ~2 MB of JSON, not bertviz's 869 MB), block-averaged
when the weights would not fit the budget, and says so in its title. The bertviz-style head view
(lines between two token columns) is :mod:`workbench.head_view`; ``save_html``/``save_png``
(:mod:`workbench.view_export`) export either kind offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .head_view import HeadView, head_view  # noqa: F401  (re-exported: one import for all views)
from .view_export import save_html, save_png, to_html  # noqa: F401

if TYPE_CHECKING:
    from .attention import AttentionMaps

__all__ = ["attention_heatmap", "attention_grid", "model_view", "mask_and_weights", "mask_title", "head_over_time",
           "head_small_multiples", "label_map", "encoding_matrix", "position_similarity", "cosine_similarity",
           "rope_by_distance", "block_means", "block_factor", "HeadView", "head_view", "save_html", "save_png", "to_html"]

MAX_VALUES = 1_200_000
"""Most heatmap cells the model view sends: at 1.37 bytes per uint8 cell in plotly's base64
JSON, ~1.7 MB; larger maps are shown as block means."""

LEVELS = 250
"""Weights are sent as round(w ** gamma * 250) (gamma 1: one level is 0.004, within 1/255 of the
weight); levels 254 (masked) and 255 (gap between heads) are drawn in their own colours."""
MASKED, GAP = 254, 255
LONG = 80  # above this many tokens a single-head heatmap grows with T and uses a small font


def _labels(tokens: Sequence[str]) -> list[str]:
    from .plots import _show_tokens  # (lazy: plots re-exports this module's functions)
    return _show_tokens(tokens)


def _title(text: str) -> str:
    from .plots import plain
    return plain(text)


# ---- one head -------------------------------------------------------------------------------

def attention_heatmap(weights: np.ndarray, tokens: Sequence[str], title: str = "",
                      key_tokens: Sequence[str] | None = None) -> go.Figure:
    """One head: rows are queries (attending from), columns are keys (attending to). ``weights``
    is (T, T) over ``tokens``, or (T, S) with ``key_tokens`` labelling the S columns (cross-attention:
    decoder rows, encoder columns). Every token is labelled; past ~80 tokens the figure grows with
    the input (12 px a token, small font) so the labels stay readable and the page scrolls."""
    z = np.asarray(weights)  # (T, S)
    rows, cols = _labels(tokens), _labels(tokens if key_tokens is None else key_tokens)
    if z.shape != (len(rows), len(cols)):
        raise ValueError(f"attention weights of shape {z.shape} do not match {len(rows)} query and "
                         f"{len(cols)} key tokens")
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=rows, colorscale="Blues", zmin=0.0, zmax=1.0,
                               colorbar={"title": "weight"},
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="key (attended to)", yaxis_title="query (attending from)",
                      yaxis={"autorange": "reversed"}, height=560, margin={"l": 80, "r": 20, "t": 50, "b": 80})
    if max(z.shape) > LONG:  # every label, small, on a figure tall (and wide) enough to hold them
        font = {"size": 8}
        fig.update_xaxes(tickmode="array", tickvals=cols, ticktext=cols, tickfont=font)
        fig.update_yaxes(tickmode="array", tickvals=rows, ticktext=rows, tickfont=font)
        fig.update_layout(height=200 + 12 * len(rows), width=max(700, 220 + 12 * len(cols)),
                          margin={"l": 140, "r": 20, "t": 60, "b": 140})
    return fig


def attention_grid(weights: np.ndarray, title: str = "") -> go.Figure:
    """All layers x heads as small heatmaps (the bertviz model view, as a static grid of subplots):
    fine for small maps; for long inputs or many heads use :func:`model_view` (one image)."""
    n_layers, n_heads = weights.shape[:2]
    fig = make_subplots(rows=n_layers, cols=n_heads, horizontal_spacing=0.02, vertical_spacing=0.03,
                        subplot_titles=[f"L{l} H{h}" for l in range(n_layers) for h in range(n_heads)])
    for l in range(n_layers):
        for h in range(n_heads):
            fig.add_trace(go.Heatmap(z=weights[l, h], colorscale="Blues", zmin=0.0, zmax=1.0, showscale=False,
                                     hovertemplate=f"layer {l} head {h}<br>q %{{y}} k %{{x}}<br>%{{z:.3f}}<extra></extra>"),
                          row=l + 1, col=h + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    fig.update_layout(title=title, height=max(260, 170 * n_layers), margin={"l": 20, "r": 20, "t": 60, "b": 20})
    return fig


# ---- all heads as one image -----------------------------------------------------------------

def block_means(x: np.ndarray, b: int) -> np.ndarray:
    """Means of b x b blocks over the last two axes (the last blocks may be partial: each is the
    mean of the cells it has). (..., T, S) -> (..., ceil(T/b), ceil(S/b)).

    >>> block_means(np.arange(9.0).reshape(3, 3), 2).tolist()
    [[2.0, 3.5], [6.5, 8.0]]
    """
    if b == 1:
        return x
    *lead, t, s = x.shape
    tb, sb = -(-t // b), -(-s // b)
    pad = [(0, 0)] * len(lead) + [(0, tb * b - t), (0, sb * b - s)]
    sums = np.pad(x, pad).reshape(*lead, tb, b, sb, b).sum(axis=(-3, -1))
    counts = np.pad(np.ones((t, s), np.float32), pad[-2:]).reshape(tb, b, sb, b).sum(axis=(1, 3))
    return sums / counts


def block_factor(n_maps: int, t: int, s: int, max_values: int) -> int:
    """The smallest block side b such that n_maps maps of ceil(t/b) x ceil(s/b) fit max_values."""
    b = 1
    while n_maps * -(-t // b) * -(-s // b) > max_values:
        b += 1
    return b


_SCALE = [[0.0, "#f7fbff"], [0.1, "#deebf7"], [0.3, "#9ecae1"], [0.6, "#4292c6"], [LEVELS / 255, "#08306b"],
          [LEVELS / 255, "#08306b"], [(MASKED - 0.5) / 255, "#08306b"], [(MASKED - 0.5) / 255, "#f1e4e4"],
          [(GAP - 0.5) / 255, "#f1e4e4"], [(GAP - 0.5) / 255, "#b8b8b8"], [1.0, "#b8b8b8"]]
"""Blues over levels 0..250 (weights 0..1), a pale rose for masked cells, grey for the gaps."""


def _span(i: int, b: int, n: int) -> str:
    """Label of block i of side b over n positions: "7" or "28–31"."""
    return f"{i}" if b == 1 else f"{i * b}–{min((i + 1) * b, n) - 1}"


def model_view(maps: AttentionMaps, max_values: int = MAX_VALUES, title: str = "", gamma: float = 0.5) -> go.Figure:
    """Every layer x head of one input as ONE heatmap: heads side by side, layers stacked, a
    one-cell grey gap between them. One trace of uint8 levels draws fast and sends ~1.4 bytes a
    cell, where L x H subplots of floats are slow and 100+ MB at 512 tokens. Above ``max_values``
    cells each head is shown as block means (said in the title). Hover gives the layer, head,
    query and key positions and the weight in levels of 0.004 (per-cell custom data would
    multiply the payload); masked cells (no key allowed in the block) are pale rose. Colour and
    levels follow weight ** ``gamma`` (default the square root): at 512 tokens most weights are
    ~1/512, which a linear scale (``gamma=1``) leaves white and rounds to level 0; the colour bar
    is labelled in weights."""
    w = np.asarray(maps.weights, dtype=np.float32)  # (L, nh, T, S)
    n_layers, n_heads, t, s = w.shape
    b = block_factor(n_layers * n_heads, t, s, max_values)
    small = block_means(w, b)  # (L, nh, tb, sb)
    hidden = block_means(~maps.allowed, b) >= 1.0 if maps.mask is not None else None  # (tb, sb) all masked
    tb, sb = small.shape[2:]
    levels = np.rint(np.clip(small, 0.0, 1.0) ** gamma * LEVELS).astype(np.uint8)
    if hidden is not None:
        levels[:, :, hidden] = MASKED
    img = np.full((n_layers * (tb + 1) - 1, n_heads * (sb + 1) - 1), GAP, np.uint8)  # (L*(tb+1)-1, H*(sb+1)-1)
    for l in range(n_layers):
        for h in range(n_heads):
            img[l * (tb + 1):l * (tb + 1) + tb, h * (sb + 1):h * (sb + 1) + sb] = levels[l, h]

    x = [f"H{h} key {_span(j, b, s)}" if j < sb else f"gap {h}" for h in range(n_heads) for j in range(sb + 1)][:-1]
    y = [f"L{l} query {_span(i, b, t)}" if i < tb else f"gap {l}" for l in range(n_layers) for i in range(tb + 1)][:-1]
    what = (f"each head shown at {tb}×{sb}: means of {b}×{b} blocks of the {t}×{s} weights" if b > 1
            else f"each head at full size, {t}×{s}")
    ticks = (0, 0.25, 0.5, 0.75, 1.0) if gamma == 1 else (0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
    decode = "%{z} × 0.004" if gamma == 1 else f"(%{{z}}/{LEVELS})^{1 / gamma:g}"
    head = title or f"All {n_layers} layers × {n_heads} heads" + (f" · {maps.source}" if maps.source else "")
    fig = go.Figure(go.Heatmap(
        z=img, x=x, y=y, zmin=0, zmax=255, colorscale=_SCALE,
        hovertemplate=f"%{{y}}<br>%{{x}}<br>weight ≈ {decode} (254: masked, 255: gap)<extra></extra>",
        colorbar={"title": "weight" if gamma == 1 else f"weight<br>(scale: w^{gamma:g})",
                  "tickvals": [v ** gamma * LEVELS for v in ticks], "ticktext": [f"{v:g}" for v in ticks]}))
    fig.update_xaxes(tickmode="array", tickvals=[x[h * (sb + 1) + sb // 2] for h in range(n_heads)],
                     ticktext=[f"H{h}" for h in range(n_heads)], showgrid=False, side="top")
    fig.update_yaxes(tickmode="array", tickvals=[y[l * (tb + 1) + tb // 2] for l in range(n_layers)],
                     ticktext=[f"L{l}" for l in range(n_layers)], autorange="reversed", showgrid=False)
    cell = max(40, min(120, 1200 // n_heads))  # px a head
    fig.update_layout(title={"text": f"{_title(head)}<br><sub>{what}; rows: queries, columns: keys</sub>"},
                      height=130 + cell * n_layers, width=120 + cell * n_heads,
                      margin={"l": 50, "r": 20, "t": 100, "b": 20})
    return fig


# ---- mask beside weights --------------------------------------------------------------------

def mask_title(maps: AttentionMaps) -> str:
    """What kind of mask applied, in words: "causal mask", "permutation: query stream", ..."""
    allowed = maps.allowed
    if maps.kind == "content":
        return "permutation: content stream (sees earlier tokens in the order, and itself)"
    if maps.kind == "query":
        return "permutation: query stream (sees earlier tokens in the order, never itself)"
    if maps.kind == "cross":
        return "cross-attention: decoder queries over encoder keys" + ("" if allowed.all() else " (padding hidden)")
    t, s = allowed.shape
    if t == s and t > 1 and np.array_equal(allowed, np.tril(np.ones((t, s), bool))) or maps.kind == "decoder":
        return "causal mask (each token sees itself and earlier ones)"
    if allowed.all():
        return "bidirectional: no mask (every query sees every key)"
    return "bidirectional with padding hidden" if (~allowed).all(axis=0).any() else "custom mask"


def mask_and_weights(maps: AttentionMaps, layer: int, head: int) -> go.Figure:
    """The mask (which keys each query may see) beside the weights one head learned on the same
    input, sharing token axes: what the model could look at, next to what it does look at."""
    allowed = maps.allowed  # (T, S)
    rows, cols = _labels(maps.tokens), _labels(maps.keys)
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=["mask: dark = may look", f"weights: layer {layer}, head {head}"])
    fig.add_trace(go.Heatmap(z=allowed.astype(np.uint8), x=cols, y=rows, zmin=0, zmax=1, showscale=False,
                             colorscale=[[0, "#f4f4f4"], [1, "#3a3a3a"]],
                             hovertemplate="query %{y}<br>key %{x}<br>allowed %{z}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Heatmap(z=np.asarray(maps.head(layer, head), np.float32), x=cols, y=rows, zmin=0.0, zmax=1.0,
                             colorscale="Blues", colorbar={"title": "weight"},
                             hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"), row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="key (attended to)")
    fig.update_yaxes(title_text="query (attending from)", row=1, col=1)
    n = len(rows)
    small = max(n, len(cols)) > LONG
    if small:
        fig.update_xaxes(tickfont={"size": 7})
        fig.update_yaxes(tickfont={"size": 7})
    fig.update_layout(title=_title(mask_title(maps)), height=max(480, 160 + (10 if small else 14) * n),
                      margin={"l": 90, "r": 20, "t": 80, "b": 90})
    return fig


# ---- one head over training -----------------------------------------------------------------

def _steps_label(m: AttentionMaps, i: int) -> str:
    return f"step {m.step}" if m.step is not None else f"snapshot {i}"


def head_over_time(snapshots: Sequence[AttentionMaps], layer: int, head: int,
                   max_values: int = MAX_VALUES) -> go.Figure:
    """One head at every snapshot, a slider to move through training. One trace per snapshot and
    the slider toggles visibility (no frames, no animation API: it works the same in notebooks,
    Streamlit and an exported offline HTML file). Long maps are block-averaged to fit ``max_values``."""
    if not snapshots:
        raise ValueError("head_over_time needs at least one snapshot")
    first = snapshots[0]
    t, s = first.weights.shape[2:]
    b = block_factor(len(snapshots), t, s, max_values)
    rows = _labels(first.tokens) if b == 1 else [f"{i * b}–{min(t, (i + 1) * b) - 1}" for i in range(-(-t // b))]
    cols = _labels(first.keys) if b == 1 else [f"{j * b}–{min(s, (j + 1) * b) - 1}" for j in range(-(-s // b))]
    fig = go.Figure()
    names = [_steps_label(m, i) for i, m in enumerate(snapshots)]
    for i, m in enumerate(snapshots):
        z = block_means(np.asarray(m.head(layer, head), np.float32), b)  # (T/b, S/b)
        fig.add_trace(go.Heatmap(z=z, x=cols, y=rows, zmin=0.0, zmax=1.0, colorscale="Blues", visible=i == 0,
                                 name=names[i], colorbar={"title": "weight"},
                                 hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    note = f" · means of {b}×{b} blocks" if b > 1 else ""
    heading = [_title(f"Layer {layer}, head {head} · {n}{note}") for n in names]
    steps = [{"method": "update", "label": n.removeprefix("step "),
              "args": [{"visible": [j == i for j in range(len(snapshots))]}, {"title.text": heading[i]}]}
             for i, n in enumerate(names)]
    fig.update_layout(title={"text": heading[0]}, yaxis={"autorange": "reversed"},
                      sliders=[{"active": 0, "steps": steps, "currentvalue": {"prefix": "step "}, "pad": {"t": 60}}],
                      height=max(560, 200 + (12 if len(rows) > LONG else 0) * len(rows)),
                      margin={"l": 80, "r": 20, "t": 50, "b": 80})
    return fig


def head_small_multiples(snapshots: Sequence[AttentionMaps], layer: int, head: int, max_panels: int = 8,
                         max_side: int = 128) -> go.Figure:
    """The same head at up to ``max_panels`` snapshots side by side (evenly spaced, first and last
    included), so change over training is seen at a glance; panels above ``max_side`` tokens are
    block-averaged."""
    if not snapshots:
        raise ValueError("head_small_multiples needs at least one snapshot")
    n = len(snapshots)
    picks = sorted({int(round(v)) for v in np.linspace(0, n - 1, min(max_panels, n))})
    cols = min(4, len(picks))
    n_rows = -(-len(picks) // cols)
    fig = make_subplots(rows=n_rows, cols=cols, horizontal_spacing=0.03, vertical_spacing=0.08,
                        subplot_titles=[_steps_label(snapshots[i], i) for i in picks])
    t, s = snapshots[0].weights.shape[2:]
    b = -(-max(t, s) // max_side)
    for k, i in enumerate(picks):
        z = block_means(np.asarray(snapshots[i].head(layer, head), np.float32), b)
        fig.add_trace(go.Heatmap(z=z, zmin=0.0, zmax=1.0, colorscale="Blues", showscale=k == 0,
                                 colorbar={"title": "weight"},
                                 hovertemplate=f"{_steps_label(snapshots[i], i)}<br>q %{{y}} k %{{x}}<br>"
                                               "%{z:.3f}<extra></extra>"),
                      row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    note = f" (means of {b}×{b} blocks)" if b > 1 else ""
    fig.update_layout(title=f"Layer {layer}, head {head} over training{note}", height=60 + 260 * n_rows,
                      margin={"l": 20, "r": 20, "t": 70, "b": 20})
    return fig


# ---- head labels over training --------------------------------------------------------------

_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf", "#393b79", "#ad494a"]


def label_map(steps: Sequence[int], labels: np.ndarray, scores: np.ndarray, label_order: Sequence[str]) -> go.Figure:
    """What each head does at each step: rows are heads ("L0 H3"), columns steps, the colour is
    the head's label (one discrete colour per label, named on the colour bar); hover gives the
    label and its score. ``labels`` and ``scores`` are (S, L, nh); labels missing from
    ``label_order`` are appended."""
    labels, scores = np.asarray(labels, dtype=str), np.asarray(scores, dtype=float)
    n_steps, n_layers, n_heads = labels.shape
    order = list(label_order) + sorted(set(labels.ravel()) - set(label_order))
    index = {name: i for i, name in enumerate(order)}
    k = len(order)
    z = np.vectorize(index.__getitem__, otypes=[np.int16])(labels).reshape(n_steps, -1).T  # (L*nh, S)
    text = labels.reshape(n_steps, -1).T  # (L*nh, S)
    score = scores.reshape(n_steps, -1).T
    colorscale = []
    for i in range(k):
        colour = _PALETTE[i % len(_PALETTE)]
        colorscale += [[i / k, colour], [(i + 1) / k, colour]]
    heads = [f"L{l} H{h}" for l in range(n_layers) for h in range(n_heads)]
    fig = go.Figure(go.Heatmap(
        z=z, x=[str(s) for s in steps], y=heads, zmin=-0.5, zmax=k - 0.5, colorscale=colorscale,
        customdata=np.dstack([text, np.char.mod("%.2f", score)]), xgap=1, ygap=1,
        hovertemplate="%{y} · step %{x}<br>%{customdata[0]} (score %{customdata[1]})<extra></extra>",
        colorbar={"title": "label", "tickvals": list(range(k)), "ticktext": [_title(o) for o in order]}))
    fig.update_xaxes(type="category", title_text="step")
    fig.update_yaxes(type="category", autorange="reversed", title_text="head")
    fig.update_layout(title="What each head does, over training", height=max(360, 120 + 16 * len(heads)),
                      margin={"l": 70, "r": 20, "t": 50, "b": 60})
    return fig


# ---- positions ------------------------------------------------------------------------------

def _table(table) -> np.ndarray:
    """A (P, d) torch tensor (a ``wpe`` weight, detached) or array as float32 numpy."""
    if hasattr(table, "detach"):
        table = table.detach().float().cpu().numpy()
    return np.asarray(table, dtype=np.float32)


def encoding_matrix(table, title: str = "Positional encoding") -> go.Figure:
    """Positions (rows) x dimensions (columns) of a (P, d) table, diverging colours around 0:
    sinusoids show stripes slowing from left to right; a learned table shows what training made."""
    z = _table(table)  # (P, d)
    lim = float(np.abs(z).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=z, colorscale="RdBu", zmid=0.0, zmin=-lim, zmax=lim, colorbar={"title": "value"},
                               hovertemplate="position %{y}<br>dimension %{x}<br>%{z:.3f}<extra></extra>"))
    fig.update_layout(title=_title(title), xaxis_title="dimension", yaxis_title="position",
                      yaxis={"autorange": "reversed"}, height=480, margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def cosine_similarity(table) -> np.ndarray:
    """(P, d) -> (P, P) cosine similarity of every two position vectors."""
    z = _table(table)
    unit = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def position_similarity(table, title: str = "Cosine similarity between positions") -> go.Figure:
    """How alike every two positions' vectors are: a good encoding is bright on the diagonal and
    fades with distance, so nearby positions look alike and far ones differ."""
    sim = cosine_similarity(table)  # (P, P)
    fig = go.Figure(go.Heatmap(z=sim, colorscale="RdBu", zmid=0.0, zmin=-1.0, zmax=1.0,
                               colorbar={"title": "cosine"},
                               hovertemplate="position %{y} vs %{x}<br>%{z:.3f}<extra></extra>"))
    fig.update_layout(title=_title(title), xaxis_title="position", yaxis_title="position",
                      yaxis={"autorange": "reversed", "scaleanchor": "x"}, height=520,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50})
    return fig


def rope_by_distance(head_dim: int = 64, max_distance: int = 256, base: float = 10000.0, seed: int = 0,
                     n_random: int = 3) -> go.Figure:
    """The score q . k after RoPE as the key moves further back from the query: for k = q it
    peaks at distance 0 and decays with ripples (RoPE's long-term decay); for random keys it
    wanders around 0. Scores are divided by sqrt(head_dim), as attention does."""
    import torch

    from .models.positions import rope_scores_by_distance

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(head_dim, generator=gen)
    d = np.arange(max_distance + 1)
    scale = head_dim ** 0.5
    fig = go.Figure(go.Scatter(x=d, y=(rope_scores_by_distance(q, q, max_distance, base) / scale).numpy(),
                               mode="lines", name="k = q", line={"color": "#1f77b4", "width": 2}))
    for i in range(n_random):
        k = torch.randn(head_dim, generator=gen)
        fig.add_trace(go.Scatter(x=d, y=(rope_scores_by_distance(q, k, max_distance, base) / scale).numpy(),
                                 mode="lines", name=f"random k {i + 1}", line={"width": 1}, opacity=0.6))
    fig.update_layout(title=f"RoPE: score against distance (head size {head_dim}, base {base:g})",
                      xaxis_title="distance i − j (key before query)", yaxis_title="q·k / √d after rotation",
                      height=380, margin={"l": 60, "r": 20, "t": 50, "b": 50}, legend={"orientation": "h", "y": -0.25})
    return fig
