"""Runs: every run in the store, and a comparison of the curves of the ones you pick.

Times are shown in the browser's time zone (the server's when the browser does not say), as
the CLI shows them in the terminal's. The comparison reads only the chosen metric of each run
and draws every curve downsampled, so ten long runs compare as quickly as two short ones.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

import common
import guard
from workbench import plots
from workbench.config import SECTION_NAMES, ConfigError, RunConfig, describe_tokenizer
from workbench.objectives.base import predicts_label

st.title("Runs")
st.caption("Every run in the store (from this dashboard, the CLI or a notebook), newest first. "
           "Pick runs below to compare their curves, as in an experiment tracker.")

store = common.get_store()
runs = [store.reconcile(r.id) if not r.is_terminal else r for r in store.list_runs()]
if not runs:
    st.info("No runs yet. Start one on the **Train** page.", icon=":material/info:")
    st.page_link(common.PAGES["train"], label="Go to Train", icon=":material/model_training:")
    st.stop()


tz, tz_label = common.viewer_timezone()
STARTED = f"started ({tz_label})"


def _note(r) -> str:
    """Why a run ended early: the recorded error ('process died ...') of a failed or stopped run."""
    if r.status in ("failed", "stopped") and r.error:
        return guard.redact(r.error)
    if r.stop_requested and not r.is_terminal:
        return "stop requested"
    return ""


def _model(config: dict) -> str:
    """The family's own summary ('gpt 4L/4H/128 ctx 64') and the objective, for any family."""
    try:
        cfg = RunConfig.from_dict(config)
    except (ConfigError, TypeError):
        return str(config.get("model", {}).get("arch", "?"))
    if cfg.finetune is not None:  # a task head: the trunk, or the pretrained model it loads
        trunk = "" if cfg.finetune.init_kind == "hf" else f"{cfg.model.describe()} · "
        return guard.redact(f"{trunk}fine-tune {cfg.finetune.describe()}")
    return f"{cfg.model.describe()} · {cfg.objective.name}"


def _tokenizer(config: dict) -> str:
    """'char', 'bpe 2048', 'saved:NAME', 'pretrained:NAME' (configs of every version)."""
    try:
        return describe_tokenizer(config)
    except (AttributeError, TypeError, ValueError):  # a hand-edited config.json
        return "?"


def _row(r) -> dict:
    t = r.config.get("train", {})
    return {
        "run": r.id,
        "name": r.name,
        "preset": r.config.get("preset", ""),
        "status": r.status,
        "step": f"{r.step}/{r.max_steps}",
        "best val loss": r.best_val_loss,
        "params": r.num_params,
        "model": _model(r.config),
        "tokenizer": _tokenizer(r.config),
        "lr": t.get("lr"),
        "batch": t.get("batch_size"),
        "device": r.device or "",
        STARTED: common.local_time(r.started_at, tz),
        "time": common.fmt_duration(r),
        "note": _note(r),
    }


table = pd.DataFrame([_row(r) for r in runs])
st.dataframe(
    table, hide_index=True, key="runs_table",
    column_order=["run", "name", "preset", "status", "step", "best val loss", "note", STARTED, "time", "params",
                  "model", "tokenizer", "lr", "batch", "device"],
    column_config={
        "best val loss": st.column_config.NumberColumn(format="%.4f"),
        "params": st.column_config.NumberColumn(format="compact"),
        "lr": st.column_config.NumberColumn(format="%.1e"),
        STARTED: st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss",
                                                 help="When the run's process started, in your browser's time zone."),
        "note": st.column_config.TextColumn(width="large", help="Why a failed or stopped run ended."),
    },
)

st.subheader("Compare", divider="gray")
labels = {r.id: r.label for r in runs}
with_metrics = [r.id for r in runs if r.best_val_loss is not None]
default = with_metrics[:5]
c = st.columns([4, 1])
picked = c[0].multiselect("Runs to compare", list(labels), default=default, format_func=labels.get, key="cmp_runs",
                          help="Defaults to the five newest runs that have a validation loss.")
metric = c[1].selectbox("Metric", ["val/loss", "train/loss", "val/ppl", "val/bpc", "val/acc", "lr", "tokens_per_s",
                                   "grad_norm", "val/macro_f1", "val/token_acc", "val/entity_f1", "val/exact_match",
                                   "val/f1"], key="cmp_metric",
                        help="val/bpc (bits per character of the predicted tokens) is the one axis on which runs of "
                             "different tokenizers and objectives compare; val/acc is masked-token accuracy")
x_axis = c[1].radio("x axis", ["step", "tokens seen", "seconds"], key="cmp_x", horizontal=True,
                    help="tokens seen: batch_size x context fed per step (runs with different batches compare on the "
                         "text read); seconds: wall-clock time since the run started, evaluations included (which "
                         "recipe gets there first: compare the fast preset with gpt-cpu)")
by_tokens = x_axis == "tokens seen"
if not picked:
    st.info("Pick one or more runs to draw their curves.", icon=":material/info:")
    st.stop()



def _one_metric(run_id: str, name: str, seconds: bool = False) -> dict[str, tuple[list, list[float]]]:
    """One metric of one run (the store's index on (run, name, step) makes this a range read),
    against steps or, with ``seconds``, against seconds since the run started."""
    rows = store.metrics(run_id, names=[name])
    if seconds:
        info = store.get_run(run_id)
        start = (info.started_at or info.created_at) if info is not None else (rows[0][3] if rows else 0.0)
        return plots.seconds_series(rows, start)
    return {name: ([r[0] for r in rows], [r[2] for r in rows])} if rows else {}


def _tokens_per_step(config: dict) -> int:
    """batch_size x the context a run was trained on (0 when its config cannot be read)."""
    try:
        cfg = RunConfig.from_dict(config)
    except (ConfigError, TypeError):
        return 0
    return cfg.train.batch_size * cfg.seq_len


def _objective(config: dict) -> str:
    """The objective a run trained (configs from before objectives were chosen: causal LM)."""
    section = config.get("objective")
    return str(section.get("name", "causal_lm")) if isinstance(section, dict) else "causal_lm"


def _predicts(config: dict) -> str:
    """What a run's curves are about: its objective's target, or a fine-tuning run's task."""
    fine = config.get("finetune")
    if isinstance(fine, dict):
        task = str(fine.get("task", "?"))
        return "task " + (task if ":" not in task else task.partition(":")[0] + " file")
    return predicts_label(_objective(config))


series = {labels[i]: _one_metric(i, metric, seconds=x_axis == "seconds") for i in picked}
per_step = {labels[r.id]: _tokens_per_step(r.config) for r in runs if r.id in picked} if by_tokens else None
# runs of different objectives: each curve says what it predicts (a next token is not a masked token)
tasks = {labels[r.id]: _predicts(r.config) for r in runs if r.id in picked}
mixed = len(set(tasks.values())) > 1
st.plotly_chart(plots.compare_figure(series, metric, tokens_per_step=per_step, predicts=tasks if mixed else None,
                                     x_title="seconds since the run started" if x_axis == "seconds" else None),
                key="cmp_chart", config={"displaylogo": False})
x_said = {"step": "optimizer step", "tokens seen": "tokens seen (batch_size x context per step)",
          "seconds": "seconds since each run started (pauses of a resumed run included)"}[x_axis]
st.caption(f"{metric} against {x_said}, one "
           "line per run. Runs with different batch sizes or context lengths see different amounts of text per step: "
           "compare those by tokens seen.")
if mixed:
    st.caption(f"These runs predict different things ({guard.md(' vs '.join(sorted(set(tasks.values()))))}), as each "
               "curve's label says: not the same task. Bits per character (val/bpc) puts them on one axis, but a "
               "masked token is guessed from the text on both sides of it and a next token from the text before it "
               "alone: a lower curve is not a better model of the same thing.")

# the settings in which the picked runs differ: the usual first question about two curves
flat = {}
for i in picked:
    cfg = next(r.config for r in runs if r.id == i)
    cfg = guard.redact_config(cfg)
    flat[i] = {f"{sec}.{k}": v for sec in (*SECTION_NAMES, "finetune") for k, v in (cfg.get(sec) or {}).items()}
keys = sorted({k for f in flat.values() for k in f})
diff = [k for k in keys if len({repr(f.get(k)) for f in flat.values()}) > 1]
if len(picked) > 1:
    if diff:
        st.markdown("**Settings that differ between these runs**")
        st.dataframe(pd.DataFrame({i: [str(flat[i].get(k, "")) for k in diff] for i in picked}, index=diff))
    else:
        st.caption("These runs have identical settings: any difference in their curves comes from chance alone.")
