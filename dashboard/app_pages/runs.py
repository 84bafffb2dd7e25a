"""Runs: every run in the store, and a comparison of the curves of the ones you pick."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import common
from workbench import plots

st.title("Runs")
st.caption("Every run in the store (from this dashboard, the CLI or a notebook), newest first. "
           "Pick runs below to compare their curves, as in an experiment tracker.")

store = common.get_store()
runs = [store.reconcile(r.id) if not r.is_terminal else r for r in store.list_runs()]
if not runs:
    st.info("No runs yet. Start one on the **Train** page.", icon=":material/info:")
    st.page_link(common.PAGES["train"], label="Go to Train", icon=":material/model_training:")
    st.stop()


def _row(r) -> dict:
    m, d, t = r.config.get("model", {}), r.config.get("data", {}), r.config.get("train", {})
    return {
        "run": r.id,
        "name": r.name,
        "preset": r.config.get("preset", ""),
        "status": r.status,
        "step": f"{r.step}/{r.max_steps}",
        "best val loss": r.best_val_loss,
        "params": r.num_params,
        "model": f"{m.get('n_layer')}L {m.get('n_head')}H {m.get('n_embd')}d ctx {m.get('block_size')}",
        "tokenizer": d.get("tokenizer", ""),
        "lr": t.get("lr"),
        "batch": t.get("batch_size"),
        "device": r.device or "",
        "started": pd.to_datetime(r.started_at, unit="s") if r.started_at else None,
        "time": common.fmt_duration(r),
    }


table = pd.DataFrame([_row(r) for r in runs])
st.dataframe(
    table, hide_index=True, key="runs_table",
    column_config={
        "best val loss": st.column_config.NumberColumn(format="%.4f"),
        "params": st.column_config.NumberColumn(format="compact"),
        "lr": st.column_config.NumberColumn(format="%.1e"),
        "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    },
)

st.subheader("Compare", divider="gray")
labels = {r.id: r.label for r in runs}
with_metrics = [r.id for r in runs if r.best_val_loss is not None]
default = with_metrics[:5]
c = st.columns([4, 1])
picked = c[0].multiselect("Runs to compare", list(labels), default=default, format_func=labels.get, key="cmp_runs",
                          help="Defaults to the five newest runs that have a validation loss.")
metric = c[1].selectbox("Metric", ["val/loss", "train/loss", "val/ppl", "val/bpc", "lr", "tokens_per_s", "grad_norm"],
                        key="cmp_metric")
if not picked:
    st.info("Pick one or more runs to draw their curves.", icon=":material/info:")
    st.stop()

series = {labels[i]: store.metric_series(i) for i in picked}
st.plotly_chart(plots.compare_figure(series, metric), key="cmp_chart", config={"displaylogo": False})
st.caption(f"{metric} against optimizer step, one line per run. Runs with different batch sizes or context lengths "
           "see different amounts of text per step: compare those by tokens, not steps.")

# the settings in which the picked runs differ: the usual first question about two curves
flat = {}
for i in picked:
    cfg = next(r.config for r in runs if r.id == i)
    flat[i] = {f"{sec}.{k}": v for sec in ("model", "data", "train") for k, v in cfg.get(sec, {}).items()}
keys = sorted({k for f in flat.values() for k in f})
diff = [k for k in keys if len({repr(f.get(k)) for f in flat.values()}) > 1]
if len(picked) > 1:
    if diff:
        st.markdown("**Settings that differ between these runs**")
        st.dataframe(pd.DataFrame({i: [str(flat[i].get(k, "")) for k in diff] for i in picked}, index=diff))
    else:
        st.caption("These runs have identical settings: any difference in their curves comes from chance alone.")
