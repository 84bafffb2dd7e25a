"""Monitor: status and live charts of the selected run; resume, extend or delete an ended run.

The charts live in a fragment that re-runs every second while the run is live; the first time
it sees the run ended it triggers one full rerun, after which ``run_every`` is None and the
page stops polling. Each tick reads only the metric rows written since the last one
(``common.run_series``) and every trace is downsampled (``workbench.plots.downsample``), so a
long run costs about as much to watch as a short one.

A fine-tuning run gets its own charts (``finetune_panel.monitor``): the task's scores, what it
trained on, the test scores once finished, and the confusion matrix at each evaluation.
"""

from __future__ import annotations

import json

import streamlit as st

import common
import finetune_panel
import guard
from workbench import launcher, plots
from workbench.config import ConfigError
from workbench.models import FAMILIES
from workbench.objectives import OBJECTIVES
from workbench.runstore import RunInfo, UnknownRunError

POLL_S = 1.0

st.title("Monitor")

flash = st.session_state.pop("flash", None)
if flash:  # a message from the action that led here: text, or (text, icon)
    text, icon = flash if isinstance(flash, tuple) else (flash, ":material/rocket_launch:")
    st.success(text, icon=icon)

info = common.require_run("watch it learn")
if info is None:
    st.stop()

store = common.get_store()
run_id = info.id


# --- actions (callbacks: they run once per click, never again on a rerun) --------------------------

def _request_stop(run_id: str) -> None:
    launcher.stop_run(run_id, store)
    st.toast("Stop requested: the run ends after its current step.", icon=":material/stop_circle:")


def _action_error(run_id: str, exc: BaseException) -> None:
    if isinstance(exc, ConfigError):
        text = f"**{guard.md(exc.field)}**: {guard.md(guard.redact(exc.message))}"
    elif isinstance(exc, UnknownRunError):
        text = f"run {guard.code(run_id)} is no longer in the store"
    else:
        text = guard.md(guard.redact(exc))
    st.session_state["monitor_error"] = (run_id, text)


def _resume(run_id: str, extend: bool) -> None:
    """Continue an ended run from its last checkpoint; ``extend``: to the step in the number box."""
    overrides = {"max_steps": int(st.session_state[f"extend_to_{run_id}"])} if extend else None
    try:
        cfg = launcher.resume_run(run_id, store, overrides=overrides, limits=common.launch_limits())
    except (ValueError, UnknownRunError, OSError) as exc:  # ConfigError and CorpusError are ValueErrors
        _action_error(run_id, exc)
        return
    st.session_state.pop("monitor_error", None)
    st.session_state["flash"] = (f"{'Extended' if extend else 'Resumed'} run {guard.code(run_id)}: it continues "
                                 f"from its last checkpoint to step {cfg.train.max_steps}.")


def _ask_delete(run_id: str) -> None:
    st.session_state["confirm_delete"] = run_id


def _cancel_delete() -> None:
    st.session_state.pop("confirm_delete", None)


def _delete(run_id: str) -> None:
    st.session_state.pop("confirm_delete", None)
    try:
        store.delete_run(run_id)
    except (ValueError, UnknownRunError, OSError) as exc:
        _action_error(run_id, exc)
        return
    st.session_state.pop("monitor_error", None)
    remaining = store.list_runs()
    common.select_run(remaining[0].id if remaining else None)
    st.session_state["flash"] = (f"Deleted run {guard.code(run_id)}: its metrics, checkpoints and snapshots are gone.",
                                 ":material/delete:")


# --- header ---------------------------------------------------------------------------------------

head = st.columns([5, 1], vertical_alignment="center")
head[0].subheader(f"Run {guard.code(run_id)}" + (f" · {guard.md(info.name)}" if info.name else ""))
if not info.is_terminal:
    if info.stop_requested:
        head[1].button("Stopping…", disabled=True, key="stop_disabled", width="stretch")
    else:
        head[1].button("Stop", icon=":material/stop:", key="stop", width="stretch", on_click=_request_stop, args=(run_id,),
                       help="Ask the run to stop: it finishes its step, saves its last checkpoint and ends 'stopped'.")


def _actions(info: RunInfo) -> None:
    """Resume / extend / delete, for a run that has ended."""
    has_ckpt = (store.run_dir(info.id) / "ckpt" / "last.safetensors").exists()
    with st.container(border=True):
        bar = st.container(horizontal=True, vertical_alignment="bottom")
        if has_ckpt and info.status in ("stopped", "failed") and info.step < info.max_steps:
            bar.button("Resume", icon=":material/play_arrow:", key="resume", on_click=_resume, args=(info.id, False),
                       help=f"Continue from the last checkpoint to step {info.max_steps}, in a new process.")
        if has_ckpt:
            bar.number_input("Train on to step (max_steps)", min_value=info.step + 1, value=max(info.max_steps, info.step) * 2,
                             step=max(1, info.max_steps // 2), key=f"extend_to_{info.id}", width=220,
                             help="Extend the run: it continues from its last checkpoint, with the same settings, "
                                  "to this many steps. The learning-rate schedule is recomputed for the new length "
                                  "(the rate rises again from where it had decayed to).")
            bar.button("Extend", icon=":material/fast_forward:", key="extend", on_click=_resume, args=(info.id, True))
        bar.button("Delete…", icon=":material/delete:", key="delete", on_click=_ask_delete, args=(info.id,),
                   help="Remove the run from the store, with its checkpoints and snapshots (asks first).")
        if not has_ckpt:
            st.caption("No checkpoint was saved (one is saved at each evaluation), so this run cannot continue: "
                       "start a new run on the Train page instead.")
        if st.session_state.get("confirm_delete") == info.id:
            st.warning(f"Delete run {guard.code(info.id)}" + (f" ({guard.md(info.name)})" if info.name else "")
                       + " with its metrics, checkpoints and attention snapshots? This cannot be undone.",
                       icon=":material/delete_forever:")
            confirm = st.container(horizontal=True)
            confirm.button("Delete permanently", type="primary", key="delete_confirm", on_click=_delete, args=(info.id,))
            confirm.button("Cancel", key="delete_cancel", on_click=_cancel_delete)
        err = st.session_state.get("monitor_error")
        if err is not None and err[0] == info.id:
            st.error(err[1], icon=":material/error:")


if info.is_terminal:
    _actions(info)


# --- status and charts ------------------------------------------------------------------------------

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
        st.error(f"The run failed: {guard.md(guard.redact(info.error or 'no error text was recorded'))}",
                 icon=":material/error:")
    elif info.status == "stopped":
        st.warning(f"The run was stopped at step {info.step}."
                   + (f" ({guard.md(guard.redact(info.error))})" if info.error else ""), icon=":material/stop_circle:")
    elif info.status == "queued":
        st.info("Queued: the training process is starting (loading the corpus and building the tokenizer).",
                icon=":material/schedule:")


def _chart(fig, caption: str, key: str, run_id: str) -> None:
    fig.update_layout(uirevision=run_id)  # a zoom or pan survives the live updates
    st.plotly_chart(fig, key=key, config={"displaylogo": False})
    st.caption(caption)


def _decoding(series: dict, run_id: str) -> None:
    """A seq2seq task's scores of what the decoder writes (greedy, validation pairs), its last
    evaluation's examples, and how much of each batch was padding."""
    left, right = st.columns(2)
    with left:
        _chart(plots.metric_figure(series, "val/bleu", title="Validation BLEU (0-100)"),
               "Corpus BLEU (sacrebleu) of the greedy decodings of validation sources against their targets: "
               "n-gram overlap up to 4 words. Lines under 4 words score 0 even when right.", "bleu", run_id)
    with right:
        _chart(plots.metrics_figure(series, ["val/rouge1", "val/rouge2", "val/rougeL", "val/exact_match"],
                                    title="ROUGE and exact match", y_title="F-measure / fraction"),
               "ROUGE-1/2: overlap of words / word pairs; ROUGE-L: longest common subsequence (word order); "
               "exact match: outputs equal to their target.", "rouge", run_id)
    decoded = store.artifacts(run_id, "decoded")
    if decoded:
        step, path = decoded[-1]
        try:
            examples = json.loads(path.read_text(encoding="utf-8"))["examples"]
        except (OSError, ValueError, KeyError):
            examples = []
        if examples:
            st.markdown(f"**What the decoder writes** at step {step} (greedy, validation pairs)")
            st.dataframe([{"source": e["source"], "target": e["reference"], "output": e["hypothesis"],
                           "exact": e["hypothesis"].strip() == e["reference"].strip()} for e in examples],
                         hide_index=True, key=f"decoded_{step}")
    if "padding_fraction" in series:
        _chart(plots.metric_figure(series, "padding_fraction", title="Padding per training batch"),
               "Share of the batch's positions that are padding (pairs padded to the longest in their batch). "
               "Bucketing pairs by length keeps it near 0; random batches waste about a third.", "padding", run_id)


@st.fragment(run_every=None if info.is_terminal else POLL_S)
def live_panel(run_id: str, was_terminal: bool) -> None:
    try:
        info = launcher.run_status(run_id, store)
    except UnknownRunError:
        st.rerun()  # deleted meanwhile (another tab, the CLI): the picker moves on
    if info.is_terminal and not was_terminal:
        st.rerun()  # the run just ended: one full rerun redraws the page with polling off
    _status_row(info)
    series = common.run_series(store, info)
    if finetune_panel.is_finetune(info):  # a task head: its task's scores and confusion matrix, no perplexity
        finetune_panel.monitor(store, info, series, _chart)
    elif not series:
        st.info("No metrics yet: the first point appears after the first log interval.", icon=":material/hourglass_top:")
    else:
        objective = OBJECTIVES.get((info.config.get("objective") or {}).get("name", ""))
        predicts = objective.predicts if objective else "the next token"
        arch = (info.config.get("model") or {}).get("arch", "")
        counting = arch in FAMILIES and "counting" in FAMILIES[arch].config_cls.capabilities
        train_note = ("Train loss is on windows of the text counted so far: the model has seen them, so the gap "
                      "is how much it memorises." if counting else
                      "Train loss is averaged over the last log interval; val loss is measured on held-out text at "
                      "each evaluation. A widening gap means overfitting.")
        _chart(plots.loss_figure(series, title="Training and validation loss"),
               f"Cross-entropy of predicting {predicts}. {train_note}", "loss", run_id)
        if "val/acc" in series:
            _chart(plots.metric_figure(series, "val/acc", title="Validation accuracy"),
                   f"How often the most likely token is right, predicting {predicts}.", "acc", run_id)
        if "val/nsp_acc" in series:
            _chart(plots.metric_figure(series, "val/nsp_acc", title="Next-sentence accuracy"),
                   "How often the model tells whether segment B follows segment A (half the pairs do: "
                   "0.5 is chance).", "nsp_acc", run_id)
        if "val/bleu" in series:
            _decoding(series, run_id)
        left, right = st.columns(2)
        with left:
            _chart(plots.metric_figure(series, "val/ppl", title="Validation perplexity", log_y=True),
                   "exp(val loss): roughly how many tokens the model is still choosing between at each position.",
                   "ppl", run_id)
            _chart(plots.metric_figure(series, "tokens_per_s", title="Throughput (tokens / s)"),
                   "Tokens counted per second of fitting (each evaluation counts everything read so far again)."
                   if counting else
                   "Training tokens processed per second (evaluation, snapshots and checkpoints excluded).", "tps", run_id)
        with right:
            if counting:  # no optimizer: the shared axis instead of the schedule and the gradients
                _chart(plots.metric_figure(series, "val/bpc", title="Validation bits per character"),
                       f"A {guard.md(arch)} model is fitted by counting: it has no learning rate and no gradients. "
                       "Bits per character of the predicted tokens is the axis every family shares.", "bpc", run_id)
            else:
                _chart(plots.metric_figure(series, "lr", title="Learning rate"),
                       "The schedule: linear warm-up, then cosine decay to the minimum learning rate.", "lr", run_id)
                _chart(plots.metric_figure(series, "grad_norm", title="Gradient norm"),
                       "Global gradient norm before clipping; spikes often go with loss spikes.", "gnorm", run_id)
        longest = max(len(s) for s, _ in series.values())
        if longest > plots.MAX_POINTS:
            st.caption(f"Long curves are drawn with at most {plots.MAX_POINTS} points each (every stretch's lowest "
                       f"and highest value, so spikes stay visible); the store keeps all {longest:,}.")
    with st.expander("Training log (tail of stdout.log)"):
        log = launcher.tail_log(run_id, store, lines=40)
        if log:
            st.code(guard.redact(log), language=None)
        else:
            st.caption("No output yet." if not info.is_terminal else
                       "No stdout.log: this run was trained in a notebook or terminal, which showed its output there.")


live_panel(run_id, info.is_terminal)

with st.expander("Config of this run"):
    st.json(guard.redact_config(info.config), expanded=False)
