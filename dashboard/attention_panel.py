"""The Attention page's views of one :class:`AttentionMaps`, whatever it came from (a run's
snapshot, a run on your text, a pretrained model): the single-head heatmap with its statistics,
every layer × head at once, the head view, the mask beside the weights, and one head over
training. Each view has an export button (one standalone HTML file that opens offline; PNG from
the chart's own toolbar or the head view's button)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import streamlit as st
import streamlit.components.v1 as components

import guard
from workbench import attention_views as views
from workbench.attention import AttentionMaps
from workbench.head_stats import LABELS, head_scores, label_heads, label_history
from workbench.head_view import head_view
from workbench.models.positions import model_positions

VIEWS = {"heatmap": "One head", "model": "All heads", "lines": "Head view", "mask": "Mask and weights",
         "time": "Over training", "pos": "Positions"}
"""View key -> label of the view picker; "time" only where there are snapshots over steps."""


def _slug(text: str) -> str:
    """A file-name-safe version of a label.

    >>> _slug("run 2026/ab step 40 · cross")
    'run-2026-ab-step-40-cross'
    """
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:80] or "attention"


def export_button(what: Any, name: str, key: str) -> None:
    """A download button for ``what`` (a plotly figure or a head view) as one standalone HTML
    file: plotly.js or the view's script inline, no CDN, so it opens offline. Built on click."""
    def build() -> str:
        return views.to_html(what)

    st.download_button("Download HTML", build, file_name=f"{_slug(name)}.html", mime="text/html", key=key,
                       icon=":material/download:", help="One standalone file with its script inline: it opens "
                       "offline in any browser. For a PNG use the camera icon in the chart's toolbar (the head "
                       "view has its own PNG button).")


def pick_layer_head(maps: AttentionMaps, view: str) -> tuple[int, int]:
    """Layer and head pickers (kept in range when the maps change depth or width); greyed out where
    the view does not use them (all heads shows every one; the head view picks heads by colour
    itself) but kept, so the choice survives a visit to those views."""
    for k, n in (("attn_layer", maps.n_layers), ("attn_head", maps.n_heads)):
        if st.session_state.get(k, 0) >= n:
            st.session_state[k] = 0
    cols = st.columns(2)
    layer = cols[0].selectbox("Layer", list(range(maps.n_layers)), key="attn_layer", disabled=view == "model")
    head = cols[1].selectbox("Head", list(range(maps.n_heads)), key="attn_head", disabled=view in ("model", "lines"),
                             help="The head view draws every head, each in its colour: tick them in the view.")
    return layer, head


def caption_for(maps: AttentionMaps, causal: bool, pattern: str = "") -> str:
    """What the axes and the empty parts of this kind of map mean."""
    if maps.kind == "cross":
        return ("Row = a decoder position (query), column = an encoder token (key); each row sums to 1 over "
                "the source. Every decoder position may read the whole source, so no part is empty. " + pattern)
    if maps.kind in ("content", "query"):
        return ("Row = a token (query), column = a token it may look at (key), in the permutation LM's random "
                "factorization order: a token sees only those before it in that order"
                + (" and itself (content stream)." if maps.kind == "content" else
                   ", never itself (query stream: it must predict its own token). A row with no visible key is empty."))
    if causal:
        return ("Row = the token that attends (query), column = the token it looks at (key); each row sums to 1. "
                "The upper triangle is empty because a causal " + ("decoder" if maps.kind == "decoder" else "model")
                + " cannot look at later tokens" + (" (the target it has not written yet)." if maps.kind == "decoder"
                                                   else "."))
    return ("Row = the token that attends (query), column = the token it looks at (key); each row sums to 1. "
            "The whole square is filled: a bidirectional encoder lets every token look at every other, later "
            "ones included.")


def _fmt(x: float) -> str:
    """A score, or a dash where the mask never allows its key (NaN): the query stream's "to itself"."""
    return "—" if np.isnan(x) else f"{x:.2f}"


def _cross_metrics(w: np.ndarray, peak: float) -> None:
    n, s = w.shape
    diag = np.rint(np.arange(n) * (s - 1) / max(1, n - 1)).astype(int)  # the diagonal, stretched to the map's shape
    band = max(1, round(s / 10))
    near = np.abs(np.arange(s)[None, :] - diag[:, None]) <= band  # (T, S)
    anti = np.abs(np.arange(s)[None, :] - (s - 1 - diag)[:, None]) <= band  # (T, S)
    m = st.columns(3)
    m[0].metric("peak", _fmt(peak),
                help="Mean of each row's largest weight: 1 = each decoder position reads one source token, "
                     f"1/{s} = it spreads evenly over the source.")
    m[1].metric("diagonal", f"{float(np.mean((w * near).sum(axis=1))):.2f}",
                help=f"Mean weight within {band} columns of the diagonal (stretched to the map's shape): "
                     "source and target in the same order.")
    m[2].metric("anti-diagonal", f"{float(np.mean((w * anti).sum(axis=1))):.2f}",
                help=f"Mean weight within {band} columns of the anti-diagonal: the source read in reverse order.")
    st.caption(f"A uniform head spreads each row evenly over the source (1/{s} per token); trained heads "
               "align each target token with the source tokens it is written from.")


def _self_metrics(w: np.ndarray, scores: dict[str, float], causal: bool) -> None:
    n = w.shape[0]
    first = float(np.mean(w[1:, 0])) if n > 1 else 0.0
    m = st.columns(3 if causal else 4)
    m[0].metric("to itself", _fmt(scores["self"]), help="Mean weight on the diagonal (a token attending to itself).")
    m[1].metric("to previous", _fmt(scores["previous"]),
                help="Mean weight just left of the diagonal: a 'previous token' head.")
    if not causal:
        m[-2].metric("to next", _fmt(scores["next"]),
                     help="Mean weight just right of the diagonal: a 'next token' head (only a bidirectional model "
                          "can look ahead).")
    m[-1].metric("to first", f"{first:.2f}",
                 help="Mean weight on the first token, which heads often use as a resting place ('attention sink').")
    st.caption("A uniform head spreads each row evenly over the past (weights near 1/position); trained heads "
               "specialise: one follows the previous token, another looks back to the last space or newline."
               if causal else
               "A uniform head spreads each row evenly over the whole sequence (1/length); trained heads specialise: "
               "one looks at its neighbours, another at separators or special tokens.")


def one_head(maps: AttentionMaps, layer: int, head: int, label: str, caption: str, causal: bool) -> None:
    """The single-head heatmap (every token labelled) beside the input and the head's statistics."""
    left, right = st.columns([3, 2], gap="large")
    fig = views.attention_heatmap(maps.head(layer, head), maps.tokens, title=f"Layer {layer}, head {head} · {label}",
                                  key_tokens=maps.key_tokens)
    with left:
        st.plotly_chart(fig, key="attn_heatmap", config={"displaylogo": False})
        st.caption(caption)
        export_button(fig, f"attention {label} L{layer} H{head}", "attn_export_heatmap")
    with right:
        if maps.kind == "cross":
            st.markdown("**Decoder input** (rows: the target shifted right behind its start token)")
            st.code("".join(maps.tokens), language=None, wrap_lines=True)
            st.markdown("**Encoder input** (columns: the source the decoder reads)")
            st.code("".join(maps.keys), language=None, wrap_lines=True)
        else:
            side = {"encoder": "Encoder input", "decoder": "Decoder input"}.get(maps.kind, "Input")
            st.markdown(f"**{side}** (the tokens on both axes)")
            st.code("".join(maps.tokens), language=None, wrap_lines=True)
        st.markdown("**What this head does on average**")
        w = maps.head(layer, head)  # (T, S)
        scores = {k: float(v[layer, head]) for k, v in head_scores(maps, causal=causal).items()}
        if maps.kind == "cross":
            _cross_metrics(w, scores["peak"])
        else:
            _self_metrics(w, scores, causal)


def all_heads(maps: AttentionMaps, label: str, induction_of: Callable[[], np.ndarray | None]) -> None:
    """Every layer × head as one image, and each head's label with the score behind it (with the
    induction test on request: it runs the model on a repeated random sequence)."""
    fig = views.model_view(maps)
    st.plotly_chart(fig, key="attn_grid", config={"displaylogo": False})
    st.caption("Every head of every layer on the same input (bertviz's model view as one image): rows are layers, "
               "columns heads. Long inputs are shown at a lower resolution, as the title says; the one-head view "
               "shows every token.")
    export_button(fig, f"attention {label} all heads", "attn_export_model")
    induction = None
    if maps.kind in ("self", "encoder") and st.toggle(
            "Test for induction heads", key="attn_induction",
            help="Runs the model (the run's best checkpoint, or the pretrained model) on random ordinary tokens "
                 "repeated twice: an induction head, in the second half, attends to the token that followed the "
                 "current one's first occurrence. Its score is that mean weight; above 0.4 the head is labelled "
                 "'induction'."):
        with st.spinner("Running the induction test…"):
            induction = induction_of()
        if induction is None:
            st.info("No checkpoint yet to run the test on.", icon=":material/info:")
        elif induction.shape != maps.weights.shape[:2]:
            induction = None  # an encoder-decoder's encoder: the test ran on a different stack
    labels = label_heads(head_scores(maps), induction=induction)
    st.markdown("**What each head does** (its label and the score behind it)")
    st.dataframe(labels.table(), hide_index=True, height=min(420, 38 + 35 * maps.n_layers * maps.n_heads),
                 key="attn_labels")
    st.caption("previous-token: weight on the token just before; sink: weight parked on the first or a special "
               "token; self: on itself; broad: spread out (high entropy); focused: sharp but none of these. A label "
               "needs its score well above what a uniform head gets under the same mask.")


def lines(maps: AttentionMaps, layer: int, label: str) -> None:
    """The head view: lines from each token to what it attends to, one colour per head."""
    view = head_view(maps, layer=layer)
    components.html(view.html, height=view.height, scrolling=True)
    st.caption("Hover a token to keep only its lines; click to pin it; tick heads by colour. Line opacity is the "
               "weight. The caption inside the view says how many lines are drawn.")
    export_button(view, f"head view {label} L{layer}", "attn_export_lines")


def mask_and_weights(maps: AttentionMaps, layer: int, head: int, label: str) -> None:
    """Which keys each query may see (the mask that applied) beside what the head learned to look at."""
    fig = views.mask_and_weights(maps, layer, head)
    st.plotly_chart(fig, key="attn_mask", config={"displaylogo": False})
    st.caption("Left: the mask (dark = the query may look at that key). Right: the learned weights on the same "
               "input. A head can only redistribute weight inside the mask: what it learns is where, within it.")
    export_button(fig, f"mask and weights {label} L{layer} H{head}", "attn_export_mask")


def over_training(snapshots: Sequence[tuple[int, Any]], load: Callable[[Any], AttentionMaps], layer: int,
                  head: int, label: str) -> None:
    """One head across the run's snapshots (a slider and small multiples), and every head's label per step."""
    if len(snapshots) < 2:
        st.info("This view needs at least two snapshots: one is taken at each evaluation.", icon=":material/info:")
        return
    maps_list = [load(p) for _, p in snapshots]
    fig = views.head_over_time(maps_list, layer, head)
    st.plotly_chart(fig, key="attn_time", config={"displaylogo": False})
    export_button(fig, f"head over training {label} L{layer} H{head}", "attn_export_time")
    st.plotly_chart(views.head_small_multiples(maps_list, layer, head), key="attn_multiples",
                    config={"displaylogo": False})
    history = label_history(maps_list)
    fig = views.label_map(list(history.steps), history.labels, history.scores, list(LABELS))
    st.plotly_chart(fig, key="attn_label_map", config={"displaylogo": False})
    changes = history.changes()
    if changes:
        st.caption(f"{len(changes)} label change(s) over training; the first: "
                   + "; ".join(guard.md(f"L{c[0]} H{c[1]} at step {c[2]}: {c[3]} → {c[4]}") for c in changes[:3]))
    export_button(fig, f"head labels over training {label}", "attn_export_labels")


def positions(model: Any, label: str) -> None:
    """How the model knows where each token is: its position table (each position's vector, and how
    alike every two positions' vectors are), or what RoPE does to a score as the distance grows."""
    if model is None:
        st.info("The run has no checkpoint yet: its positions show after its first evaluation.", icon=":material/info:")
        return
    pos = model_positions(model)
    if pos.table is not None:
        what = "learned during training" if pos.kind == "learned" else "fixed sinusoids, never trained"
        cols = st.columns(2)
        fig = views.encoding_matrix(pos.table, title=f"Position table ({what}): positions × dimensions")
        cols[0].plotly_chart(fig, key="attn_pos_table", config={"displaylogo": False})
        sim = views.position_similarity(pos.table)
        cols[1].plotly_chart(sim, key="attn_pos_similarity", config={"displaylogo": False})
        st.caption("Each row is the vector added to the token embedding at that position. Right: the cosine "
                   "similarity of every two positions' vectors. A trained table learns a bright band around the "
                   "diagonal (nearby positions alike), as sinusoids have by construction; an untrained one is noise.")
        export_button(sim, f"position similarity {label}", "attn_export_pos")
    elif pos.kind == "rope":
        fig = views.rope_by_distance(head_dim=pos.head_dim, base=pos.base)
        st.plotly_chart(fig, key="attn_pos_rope", config={"displaylogo": False})
        st.caption(f"This model adds no position vector: each head rotates its queries and keys by their positions "
                   f"(RoPE, head size {pos.head_dim}, base {pos.base:g}), so a score depends only on how far apart "
                   "two tokens are. For a key equal to the query it is largest at distance 0 and decays with ripples.")
        export_button(fig, f"rope {label}", "attn_export_pos")
    else:
        st.info("This model adds no positional information: a causal model can still infer positions from its "
                "mask (a token at position i averages over i + 1 tokens); a recurrent one reads in order.",
                icon=":material/info:")
