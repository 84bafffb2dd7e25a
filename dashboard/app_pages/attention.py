"""Attention: what each head looks at, on a fixed probe text, at each evaluation of a run."""

from __future__ import annotations

import numpy as np
import streamlit as st

import common
import guard
from workbench import plots
from workbench.pipeline import attention_snapshots, load_attention
from workbench.runstore import UnknownRunError

st.title("Attention")
st.caption(
    "At every evaluation the run feeds the same probe text (the start of the validation split) through the "
    "model and saves every layer's attention weights. Pick a step to see how the heads changed during training."
)

info = common.require_run("look at its attention")
if info is None:
    st.stop()
store = common.get_store()
snapshots = attention_snapshots(store, info.id)


@st.fragment(run_every=2.0)
def _watch_for_snapshots(run_id: str, known: int) -> None:
    """While the run trains: a full rerun when a new snapshot lands (then the slider offers it)."""
    try:
        ended = store.get_run(run_id).is_terminal
    except UnknownRunError:  # deleted meanwhile: the picker moves on
        ended = True
    if ended or len(attention_snapshots(store, run_id)) != known:
        st.rerun()


if not info.is_terminal:
    _watch_for_snapshots(info.id, len(snapshots))

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


controls = st.columns([3, 1, 1])
with controls[0]:
    step = st.select_slider("Training step of the snapshot", options=steps, value=steps[-1], key="attn_step",
                            help="One snapshot per evaluation; the right end is the latest.")
try:
    maps = _load(str(paths[step]), paths[step].stat().st_mtime)
except (OSError, ValueError, KeyError) as exc:
    st.error(f"Could not read the snapshot of step {step}: {guard.md(guard.redact(exc))}", icon=":material/error:")
    st.stop()
with controls[1]:
    layer = st.selectbox("Layer", list(range(maps.n_layers)), key="attn_layer")
with controls[2]:
    head = st.selectbox("Head", list(range(maps.n_heads)), key="attn_head")

left, right = st.columns([3, 2], gap="large")
with left:
    st.plotly_chart(
        plots.attention_heatmap(maps.head(layer, head), maps.tokens, title=f"Layer {layer}, head {head} · step {step}"),
        key="attn_heatmap", config={"displaylogo": False},
    )
    st.caption(
        "Row = the token that attends (query), column = the token it looks at (key); each row sums to 1. "
        "The upper triangle is empty because a causal model cannot look at later tokens."
    )
with right:
    st.markdown("**Probe text** (the tokens on both axes)")
    st.code("".join(maps.tokens), language=None, wrap_lines=True)
    w = maps.head(layer, head)
    n = w.shape[0]
    prev = float(np.mean([w[i, i - 1] for i in range(1, n)])) if n > 1 else 0.0
    self_ = float(np.mean(np.diag(w)))
    first = float(np.mean(w[1:, 0])) if n > 1 else 0.0
    st.markdown("**What this head does on average**")
    m = st.columns(3)
    m[0].metric("to itself", f"{self_:.2f}", help="Mean weight on the diagonal (a token attending to itself).")
    m[1].metric("to previous", f"{prev:.2f}", help="Mean weight just left of the diagonal: a 'previous token' head.")
    m[2].metric("to first", f"{first:.2f}",
                help="Mean weight on the first token, which heads often use as a resting place ('attention sink').")
    st.caption(
        "A uniform head spreads each row evenly over the past (weights near 1/position); trained heads "
        "specialise: one follows the previous token, another looks back to the last space or newline."
    )

st.subheader("All layers × heads", divider="gray")
cell = min(240, 1140 // maps.n_heads)  # roughly square cells, the whole grid at most ~1200 px wide
grid = plots.attention_grid(maps.weights, title=f"Step {step}: layer (rows) × head (columns)")
grid.update_layout(height=90 + cell * maps.n_layers)
st.plotly_chart(grid, key="attn_grid", config={"displaylogo": False}, width=40 + cell * maps.n_heads)
st.caption("The same probe text for every head at once (bertviz's model view as a grid); hover a cell for its weight.")
