"""Attention: what each head looks at, on a fixed probe text, at each evaluation of a run."""

from __future__ import annotations

import numpy as np
import streamlit as st

import common
import guard
from workbench import plots
from workbench.models import FAMILIES
from workbench.pipeline import attention_snapshots, load_attention
from workbench.runstore import UnknownRunError

st.title("Attention")
st.caption(
    "At every evaluation the run feeds the same probe text (the start of the validation split) through the "
    "model and saves every layer's attention weights; an encoder-decoder gets a fixed (source, target) pair made "
    "as its objective makes examples. Pick a step to see how the heads changed during training."
)

info = common.require_run("look at its attention")
if info is None:
    st.stop()
store = common.get_store()
snapshots = attention_snapshots(store, info.id)

# an encoder-decoder run's snapshot kinds (artifact kind -> radio label); other runs have "attention" alone
# (a bare string here would be drawn on the page: Streamlit's magic writes every top-level expression)
KINDS = {"attention": "Encoder self-attention", "decoder_attention": "Decoder self-attention",
         "cross_attention": "Cross-attention (decoder × encoder)"}
arch = info.config.get("model", {}).get("arch", "")
causal_model = arch in FAMILIES and "causal" in FAMILIES[arch].config_cls.capabilities
artifact = "attention"
if attention_snapshots(store, info.id, "cross_attention"):
    artifact = st.radio("Which attention", list(KINDS), index=2, format_func=KINDS.__getitem__, horizontal=True,
                        key="attn_kind", help="An encoder-decoder attends three ways: the encoder over the source, "
                        "the decoder over the target written so far, and the decoder over the encoder's output.")
    snapshots = attention_snapshots(store, info.id, artifact)


def _counts(run_id: str) -> tuple[int, ...]:
    return tuple(len(attention_snapshots(store, run_id, kind)) for kind in KINDS)


@st.fragment(run_every=2.0)
def _watch_for_snapshots(run_id: str, known: tuple[int, ...]) -> None:
    """While the run trains: a full rerun when a new snapshot of any kind lands (then the slider
    offers it; an encoder-decoder's first cross-attention brings the kind picker)."""
    try:
        ended = store.get_run(run_id).is_terminal
    except UnknownRunError:  # deleted meanwhile: the picker moves on
        ended = True
    if ended or _counts(run_id) != known:
        st.rerun()


if not info.is_terminal:
    _watch_for_snapshots(info.id, _counts(info.id))

if not snapshots:
    if info.is_terminal:
        st.info(f"Run {guard.code(info.id)} ended ({info.status}) without any attention snapshot "
                "(they are taken at each evaluation).", icon=":material/info:")
    else:
        st.info(f"Run {guard.code(info.id)} has no attention snapshots yet: the first one is taken at its first "
                f"evaluation (step {guard.md(info.config.get('train', {}).get('eval_interval', '?'))}). "
                "This page updates by itself.",
                icon=":material/hourglass_top:")
    st.stop()

steps = [s for s, _ in snapshots]
paths = dict(snapshots)


@st.cache_data(max_entries=64, show_spinner=False)
def _load(path: str, mtime: float):
    return load_attention(path)


if st.session_state.get("attn_step", steps[-1]) not in paths:  # a kind snapshotted from a later step on (a resume)
    del st.session_state["attn_step"]
controls = st.columns([3, 1, 1])
with controls[0]:
    step = st.select_slider("Training step of the snapshot", options=steps, value=steps[-1], key="attn_step",
                            help="One snapshot per evaluation; the right end is the latest.")
try:
    maps = _load(str(paths[step]), paths[step].stat().st_mtime)
except (OSError, ValueError, KeyError) as exc:
    st.error(f"Could not read the snapshot of step {step}: {guard.md(guard.redact(exc))}", icon=":material/error:")
    st.stop()
for key, n in (("attn_layer", maps.n_layers), ("attn_head", maps.n_heads)):
    if st.session_state.get(key, 0) >= n:  # the encoder and the decoder may have different depths
        st.session_state[key] = 0
with controls[1]:
    layer = st.selectbox("Layer", list(range(maps.n_layers)), key="attn_layer")
with controls[2]:
    head = st.selectbox("Head", list(range(maps.n_heads)), key="attn_head")

cross = maps.kind == "cross"
causal = maps.kind == "decoder" or (maps.kind == "self" and causal_model)
objective = info.config.get("objective", {})
if cross:
    task = objective.get("task") if objective.get("name") == "seq2seq" else objective.get("name")
    pattern = {
        "reverse-words": "On reverse-words a trained head draws an anti-diagonal: the decoder reads the source "
                         "words in reverse order, the last source word first.",
        "pig-latin": "On Pig Latin a trained head keeps near the diagonal: each word is rewritten in place, its "
                     "first consonants moved to its end.",
        "span": "On span corruption each dropped span's tokens look at their sentinel in the encoder input and "
                "at the words around it.",
    }.get(task, "A trained head shows the alignment: which source tokens each target token is written from.")
    caption = ("Row = a decoder position (query), column = an encoder token (key); each row sums to 1 over "
               "the source. Every decoder position may read the whole source, so no part is empty. " + pattern)
elif causal:
    caption = ("Row = the token that attends (query), column = the token it looks at (key); each row sums to 1. "
               "The upper triangle is empty because a causal " + ("decoder" if maps.kind == "decoder" else "model")
               + " cannot look at later tokens" + (" (the target it has not written yet)." if maps.kind == "decoder"
                                                  else "."))
else:
    caption = ("Row = the token that attends (query), column = the token it looks at (key); each row sums to 1. "
               "The whole square is filled: a bidirectional encoder lets every token look at every other, later "
               "ones included.")

left, right = st.columns([3, 2], gap="large")
with left:
    st.plotly_chart(
        plots.attention_heatmap(maps.head(layer, head), maps.tokens, title=f"Layer {layer}, head {head} · step {step}",
                                key_tokens=maps.key_tokens),
        key="attn_heatmap", config={"displaylogo": False},
    )
    st.caption(caption)
with right:
    if cross:
        st.markdown("**Decoder input** (rows: the target shifted right behind its start token)")
        st.code("".join(maps.tokens), language=None, wrap_lines=True)
        st.markdown("**Encoder input** (columns: the source the decoder reads)")
        st.code("".join(maps.keys), language=None, wrap_lines=True)
    else:
        side = {"encoder": "Encoder input", "decoder": "Decoder input"}.get(maps.kind, "Probe text")
        st.markdown(f"**{side}** (the tokens on both axes)")
        st.code("".join(maps.tokens), language=None, wrap_lines=True)
    w = maps.head(layer, head)  # (T, S); S == T but for cross-attention
    n, s = w.shape
    st.markdown("**What this head does on average**")
    if cross:
        rows = np.arange(n)
        diag = np.rint(rows * (s - 1) / max(1, n - 1)).astype(int)  # the diagonal, stretched to the map's shape
        band = max(1, round(s / 10))
        near = np.abs(np.arange(s)[None, :] - diag[:, None]) <= band  # (T, S)
        anti = np.abs(np.arange(s)[None, :] - (s - 1 - diag)[:, None]) <= band  # (T, S)
        m = st.columns(3)
        m[0].metric("peak", f"{float(np.mean(w.max(axis=1))):.2f}",
                    help="Mean of each row's largest weight: 1 = each decoder position reads one source token, "
                         f"1/{s} = it spreads evenly over the source.")
        m[1].metric("diagonal", f"{float(np.mean((w * near).sum(axis=1))):.2f}",
                    help=f"Mean weight within {band} columns of the diagonal (stretched to the map's shape): "
                         "source and target in the same order.")
        m[2].metric("anti-diagonal", f"{float(np.mean((w * anti).sum(axis=1))):.2f}",
                    help=f"Mean weight within {band} columns of the anti-diagonal: the source read in reverse order.")
        st.caption(f"A uniform head spreads each row evenly over the source (1/{s} per token); trained heads "
                   "align each target token with the source tokens it is written from.")
    else:
        prev = float(np.mean([w[i, i - 1] for i in range(1, n)])) if n > 1 else 0.0
        nxt = float(np.mean([w[i, i + 1] for i in range(n - 1)])) if n > 1 else 0.0
        self_ = float(np.mean(np.diag(w)))
        first = float(np.mean(w[1:, 0])) if n > 1 else 0.0
        m = st.columns(3 if causal else 4)
        m[0].metric("to itself", f"{self_:.2f}", help="Mean weight on the diagonal (a token attending to itself).")
        m[1].metric("to previous", f"{prev:.2f}", help="Mean weight just left of the diagonal: a 'previous token' head.")
        if not causal:
            m[-2].metric("to next", f"{nxt:.2f}", help="Mean weight just right of the diagonal: a 'next token' head "
                                                       "(only a bidirectional model can look ahead).")
        m[-1].metric("to first", f"{first:.2f}",
                     help="Mean weight on the first token, which heads often use as a resting place ('attention sink').")
        st.caption(
            "A uniform head spreads each row evenly over the past (weights near 1/position); trained heads "
            "specialise: one follows the previous token, another looks back to the last space or newline."
            if causal else
            "A uniform head spreads each row evenly over the whole sequence (1/length); trained heads specialise: "
            "one looks at its neighbours, another at separators or special tokens."
        )

st.subheader("All layers × heads", divider="gray")
cell = min(240, 1140 // maps.n_heads)  # roughly square cells, the whole grid at most ~1200 px wide
grid = plots.attention_grid(maps.weights, title=f"Step {step}: layer (rows) × head (columns)")
grid.update_layout(height=90 + cell * maps.n_layers)
st.plotly_chart(grid, key="attn_grid", config={"displaylogo": False}, width=40 + cell * maps.n_heads)
st.caption("The same " + ("pair" if maps.kind in ("encoder", "decoder", "cross") else "probe text")
           + " for every head at once (bertviz's model view as a grid); hover a cell for its weight.")
