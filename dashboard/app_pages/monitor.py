"""Monitor: status and live charts of the selected run.

The charts live in a fragment that re-runs every second while the run is live; the first time
it sees the run ended it triggers one full rerun, after which ``run_every`` is None and the
page stops polling.
"""

from __future__ import annotations

import streamlit as st

import common
from workbench import launcher, plots
from workbench.runstore import RunInfo

POLL_S = 1.0

st.title("Monitor")

flash = st.session_state.pop("flash", None)
if flash:
    st.success(flash, icon=":material/rocket_launch:")

info = common.require_run("watch it learn")
if info is None:
    st.stop()

store = common.get_store()
run_id = info.id



def _request_stop(run_id: str) -> None:
    launcher.stop_run(run_id, store)
    st.toast("Stop requested: the run ends after its current step.", icon=":material/stop_circle:")


head = st.columns([5, 1], vertical_alignment="center")
head[0].subheader(f"Run `{run_id}`" + (f" · {info.name}" if info.name else ""))
if not info.is_terminal:
    if info.stop_requested:
        head[1].button("Stopping…", disabled=True, key="stop_disabled", width="stretch")
    else:
        head[1].button("Stop", icon=":material/stop:", key="stop", width="stretch", on_click=_request_stop, args=(run_id,),
                       help="Ask the run to stop: it finishes its step, saves its last checkpoint and ends 'stopped'.")


def _status_row(info: RunInfo) -> None:
    c = st.columns([1.2, 1, 1, 1, 1, 1])
    with c[0]:
        st.caption("Status")
        common.status_badge(info.status)
    c[1].metric("Step", f"{info.step} / {info.max_steps}")
    c[2].metric("Best val loss", common.fmt_loss(info.best_val_loss),
                help="Lowest validation cross-entropy so far (nats per token); the 'best' checkpoint is saved there.")
    c[3].metric("Parameters", common.fmt_params(info.num_params))
    c[4].metric("Device", info.device or "—")
    c[5].metric("Wall time", common.fmt_duration(info))
    if info.max_steps:
        st.progress(min(1.0, info.step / info.max_steps))
    if info.status == "failed":
        st.error(f"The run failed: {info.error or 'no error text was recorded'}", icon=":material/error:")
    elif info.status == "stopped":
        st.warning(f"The run was stopped at step {info.step}." + (f" ({info.error})" if info.error else ""),
                   icon=":material/stop_circle:")
    elif info.status == "queued":
        st.info("Queued: the training process is starting (loading the corpus and building the tokenizer).",
                icon=":material/schedule:")


def _chart(fig, caption: str, key: str) -> None:
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
    st.caption(caption)


@st.fragment(run_every=None if info.is_terminal else POLL_S)
def live_panel(run_id: str, was_terminal: bool) -> None:
    info = launcher.run_status(run_id, store)
    if info.is_terminal and not was_terminal:
        st.rerun()  # the run just ended: one full rerun redraws the page with polling off
    _status_row(info)
    series = store.metric_series(run_id)
    if not series:
        st.info("No metrics yet: the first point appears after the first log interval.", icon=":material/hourglass_top:")
    else:
        _chart(plots.loss_figure(series, title="Training and validation loss"),
               "Cross-entropy of the next-token prediction. Train loss is averaged over the last log interval; "
               "val loss is measured on held-out text at each evaluation. A widening gap means overfitting.",
               "loss")
        left, right = st.columns(2)
        with left:
            _chart(plots.metric_figure(series, "val/ppl", title="Validation perplexity", log_y=True),
                   "exp(val loss): roughly how many tokens the model is still choosing between at each position.",
                   "ppl")
            _chart(plots.metric_figure(series, "tokens_per_s", title="Throughput (tokens / s)"),
                   "Training tokens processed per second (evaluation time excluded).", "tps")
        with right:
            _chart(plots.metric_figure(series, "lr", title="Learning rate"),
                   "The schedule: linear warm-up, then cosine decay to the minimum learning rate.", "lr")
            _chart(plots.metric_figure(series, "grad_norm", title="Gradient norm"),
                   "Global gradient norm before clipping; spikes often go with loss spikes.", "gnorm")
    with st.expander("Training log (tail of stdout.log)"):
        log = launcher.tail_log(run_id, store, lines=40)
        if log:
            st.code(log, language=None)
        else:
            st.caption("No output yet." if not info.is_terminal else
                       "No stdout.log: this run was trained in a notebook or terminal, which showed its output there.")


live_panel(run_id, info.is_terminal)

with st.expander("Config of this run"):
    st.json(info.config, expanded=False)
