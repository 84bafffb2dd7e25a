"""Attention and position views: shapes, labels, payload budgets, escaping (fast, no browser)."""

from __future__ import annotations

import base64
import html
import re

import numpy as np
import pytest

from workbench import plots
from workbench.attention import AttentionMaps
from workbench.attention_views import (LEVELS, MASKED, attention_heatmap, block_means, cosine_similarity,
                                       encoding_matrix, head_over_time, head_small_multiples, label_map,
                                       mask_and_weights, model_view, position_similarity, rope_by_distance, to_html)
from workbench.head_view import head_view, sparsify
from workbench.models.positions import sinusoidal_positions

EVIL = "</script><img src=x onerror=alert(1)>"


def softmax_maps(n_layers: int, n_heads: int, t: int, s: int | None = None, seed: int = 0,
                 mask: np.ndarray | None = None) -> np.ndarray:
    """Random attention (L, nh, T, S), rows sum to 1, zero where ``mask`` is False."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_layers, n_heads, t, s or t), dtype=np.float32) * 3
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    x = np.exp(x - x.max(-1, keepdims=True))
    return (x / x.sum(-1, keepdims=True)).astype(np.float32)


def toks(n: int) -> list[str]:
    return [f"w{i}" for i in range(n)]


def test_plots_keeps_the_moved_functions():
    assert plots.attention_heatmap is attention_heatmap
    fig = plots.attention_grid(softmax_maps(2, 3, 5))
    assert len(fig.data) == 6


def test_attention_heatmap_labels_every_token_and_grows_for_long_inputs():
    short = attention_heatmap(softmax_maps(1, 1, 6)[0, 0], toks(6))
    assert short.layout.height == 560 and list(short.data[0].y) == [f"{i}:w{i}" for i in range(6)]
    long = attention_heatmap(softmax_maps(1, 1, 200)[0, 0], toks(200))
    assert len(long.layout.yaxis.tickvals) == 200 and long.layout.height >= 12 * 200
    assert long.layout.yaxis.tickfont.size <= 9
    with pytest.raises(ValueError):
        attention_heatmap(np.zeros((3, 4)), toks(3))


def test_model_view_at_512_tokens_fits_the_budget_and_says_it_was_downsampled():
    maps = AttentionMaps(softmax_maps(6, 12, 512), toks(512))
    fig = model_view(maps)
    assert len(fig.data) == 1  # one image, not 72 subplots
    assert len(fig.to_json()) <= 5_000_000
    title = fig.layout.title.text
    assert "means of 4×4 blocks of the 512×512 weights" in title and "128×128" in title
    assert list(fig.layout.xaxis.ticktext) == [f"H{h}" for h in range(12)]
    assert list(fig.layout.yaxis.ticktext) == [f"L{l}" for l in range(6)]
    z = np.asarray(fig.data[0].z)
    assert z.dtype == np.uint8 and z.shape == (6 * 129 - 1, 12 * 129 - 1)
    block = maps.weights[2, 5, 8:12, 4:8].mean()  # layer 2, head 5, query block 2, key block 1
    assert abs((z[2 * 129 + 2, 5 * 129 + 1] / LEVELS) ** 2 - block) <= 1 / LEVELS  # square-root levels


def test_model_view_small_input_round_trips_and_marks_masked_cells():
    t = 10
    causal = np.tril(np.ones((t, t), bool))
    maps = AttentionMaps(softmax_maps(2, 3, t, mask=causal), toks(t), mask=causal)
    fig = model_view(maps, gamma=1.0)
    assert "full size" in fig.layout.title.text and "blocks" not in fig.layout.title.text
    z = np.asarray(fig.data[0].z)
    got = z[(t + 1) * 1:(t + 1) * 1 + t, (t + 1) * 2:(t + 1) * 2 + t]  # layer 1, head 2
    allowed = got[causal].astype(float) / LEVELS
    assert np.abs(allowed - maps.weights[1, 2][causal]).max() <= 1 / 255
    assert (got[~causal] == MASKED).all()
    assert "L1 query 3" in fig.data[0].y and "H2 key 4" in fig.data[0].x


def test_block_means_partial_blocks():
    x = np.ones((2, 7, 5), np.float32)
    assert block_means(x, 3).shape == (2, 3, 2) and np.allclose(block_means(x, 3), 1.0)


@pytest.mark.parametrize("kind,mask,expect", [
    ("decoder", "causal", "causal mask"),
    ("self", None, "no mask"),
    ("query", "strict", "permutation: query stream"),
    ("content", "causal", "permutation: content stream"),
])
def test_mask_and_weights_shows_the_mask_that_applied(kind, mask, expect):
    t = 6
    m = {"causal": np.tril(np.ones((t, t), bool)), "strict": np.tril(np.ones((t, t), bool), -1), None: None}[mask]
    if mask == "strict":
        m[0, 0] = True  # the first query needs somewhere to look
    maps = AttentionMaps(softmax_maps(2, 2, t, mask=m), toks(t), kind=kind, mask=m)
    fig = mask_and_weights(maps, 1, 0)
    assert expect in fig.layout.title.text
    assert np.array_equal(np.asarray(fig.data[0].z).astype(bool), maps.allowed)
    assert np.allclose(np.asarray(fig.data[1].z), maps.weights[1, 0])
    assert list(fig.data[0].y) == list(fig.data[1].y)


def test_mask_and_weights_cross_attention_uses_the_encoder_tokens():
    maps = AttentionMaps(softmax_maps(1, 2, 3, 5), toks(3), key_tokens=[f"e{i}" for i in range(5)], kind="cross")
    fig = mask_and_weights(maps, 0, 1)
    assert "cross-attention" in fig.layout.title.text and list(fig.data[1].x)[0] == "0:e0"


def test_head_over_time_and_small_multiples():
    snaps = [AttentionMaps(softmax_maps(2, 2, 6, seed=i), toks(6), step=100 * i) for i in range(10)]
    fig = head_over_time(snaps, 1, 0)
    assert len(fig.data) == 10 and [bool(d.visible) for d in fig.data].count(True) == 1
    steps = fig.layout.sliders[0].steps
    assert len(steps) == 10 and steps[3].label == "300" and steps[3].args[0]["visible"][3]
    assert "step 900" in steps[-1].args[1]["title.text"]
    multi = head_small_multiples(snaps, 1, 0, max_panels=4)
    titles = [a.text for a in multi.layout.annotations]
    assert len(multi.data) == 4 and titles[0] == "step 0" and titles[-1] == "step 900"


def test_label_map_has_one_row_per_head():
    steps, n_layers, n_heads = [0, 100, 200], 2, 3
    order = ["previous-token", "self", "broad"]
    labels = np.array(order * 6, dtype=str).reshape(3, n_layers, n_heads)
    scores = np.linspace(0, 1, 18).reshape(3, n_layers, n_heads)
    fig = label_map(steps, labels, scores, order)
    assert list(fig.data[0].y) == ["L0 H0", "L0 H1", "L0 H2", "L1 H0", "L1 H1", "L1 H2"]
    z = np.asarray(fig.data[0].z)
    assert z.shape == (6, 3) and z[1, 0] == order.index(labels[0, 0, 1])
    assert list(fig.data[0].colorbar.ticktext) == order


def test_positions():
    table = sinusoidal_positions(64, 32)
    assert np.asarray(encoding_matrix(table).data[0].z).shape == (64, 32)
    sim = np.asarray(position_similarity(table).data[0].z)
    assert sim.shape == (64, 64) and np.allclose(sim, sim.T, atol=1e-6) and np.allclose(np.diag(sim), 1.0, atol=1e-5)
    assert np.allclose(cosine_similarity(table), sim)
    fig = rope_by_distance(head_dim=64, max_distance=128)
    same = np.asarray(fig.data[0].y)
    assert fig.data[0].name == "k = q" and len(same) == 129 and int(np.argmax(same)) == 0


def test_sparsify_keeps_each_rows_largest_weight():
    w = softmax_maps(2, 3, 40)
    w[0, 0, 5] = 1.0 / 40  # a uniform row: no weight reaches 0.05, but its peak is kept
    sp = sparsify(w, min_weight=0.05, top_k=4)
    for l in range(2):
        starts = np.concatenate([[0], np.cumsum(sp.counts[l], dtype=np.int64)])
        for r in range(3 * 40):
            h, i = divmod(r, 40)
            keys = sp.keys[l][starts[r]:starts[r + 1]]
            assert 1 <= len(keys) <= 4 and int(np.argmax(w[l, h, i])) in keys
    assert sp.kept < sp.nonzero and 0 < sp.dropped_mass < 1


def test_head_view_is_self_contained_and_escapes_tokens():
    tokens = ["hello", EVIL, "a & b", "x"]
    maps = AttentionMaps(softmax_maps(2, 4, 4), tokens, source=EVIL)
    view = head_view(maps, layer=1)
    page = view.html
    assert page.startswith("<!DOCTYPE html>") and "<canvas" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page)
    assert EVIL not in page and "<img" not in page.split('<script type="application/json"')[1]
    data = page.split('id="hv-data">')[1].split("</script>")[0]
    assert "<" not in data and "\\u003c/script\\u003e" in data
    frame = view._repr_html_()
    assert frame.startswith("<iframe") and EVIL not in frame and html.escape(EVIL, quote=True) not in frame  # double-escaped
    assert 'srcdoc="' in frame and html.unescape(frame.split('srcdoc="')[1].split('"')[0]) == page


def test_to_html_is_standalone_for_figures_and_head_views():
    maps = AttentionMaps(softmax_maps(1, 2, 3), toks(3))
    page = to_html(model_view(maps))
    assert page.lower().startswith("<!doctype html>") and len(page) > 3_000_000  # plotly.js inline
    assert not re.search(r"<script[^>]*\bsrc=", page)  # nothing loaded from elsewhere
    view = head_view(maps)
    assert to_html(view) == view.html


def test_two_head_views_get_different_iframe_ids():
    maps = AttentionMaps(softmax_maps(1, 2, 3), toks(3))
    ids = [re.search(r'id="([^"]+)"', head_view(maps)._repr_html_()).group(1) for _ in range(2)]
    assert ids[0] != ids[1]


def test_head_view_long_input_payload_and_caption():
    maps = AttentionMaps(softmax_maps(6, 12, 512), toks(512))
    view = head_view(maps)
    assert len(view.html) < 4_000_000 and "scroll" in view.caption and "lines kept over 6 layers" in view.caption
    counts = base64.b64decode(view.html.split('"counts":"')[1].split('"')[0])
    assert len(counts) == 12 * 512
    cut = head_view(AttentionMaps(softmax_maps(1, 1, 40), toks(40)), max_tokens=16)
    assert "first 16 tokens" in cut.caption
