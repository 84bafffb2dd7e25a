"""A fine-tuning run on the Monitor page (its task's scores, what it trained on, the confusion
matrix as it evolves) and on the Sample page (predictions on typed text).

Everything is drawn from the ``workbench`` package: ``finetune.run`` (``finetune_info``,
``confusion_snapshots``), ``finetune.predict`` (``load_finetuned``, ``classify``, ``tag``,
``answer``) and ``finetune.views`` (figures, escaped HTML). Typed text reaches the page only as
escaped HTML (``views.spans_html``), a code block or a table, never as Markdown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import streamlit as st

import common
import guard
from workbench import plots
from workbench.finetune import views
from workbench.finetune.run import confusion_snapshots, finetune_info
from workbench.runstore import RunInfo, RunStore

MAX_TEXT = 5000
KIND_WORDS = {"classification": "classification", "tagging": "tagging (BIO tags per word)", "qa": "extractive QA"}
EXAMPLES = {
    "classification": "Are there no stones in heaven\nBut what serve for the thunder?--Precious villain!\n"
                      "The woman falls; sure, he hath kill'd his wife.",
    "tagging": "Good morrow, Romeo. Where is Juliet? Mercutio and Benvolio wait for thee.",
    "question": 'Who says "For Christian shame, put by this barbarous brawl"?',
    "context": "OTHELLO:\nWhy, how now, ho! from whence ariseth this?\nFor Christian shame, put by this barbarous brawl:\n"
               "He that stirs next to carve for his own rage\nHolds his soul light.\n\nIAGO:\nI do not know: friends all "
               "but now, even now.",
}


def is_finetune(info: RunInfo | None) -> bool:
    """Whether a run is a fine-tuning run (its config has a ``finetune`` section)."""
    return info is not None and bool((info.config or {}).get("finetune"))


def describe(info: RunInfo) -> str:
    """'genre <- 20260101-..., 256 labels' (paths redacted), or the section's task on a config that does not load."""
    from workbench.finetune.settings import FinetuneConfig

    section = (info.config or {}).get("finetune") or {}
    try:
        text = FinetuneConfig.from_dict(section).describe()
    except (TypeError, ValueError):
        text = str(section.get("task", "?"))
    return guard.redact(text)


def _task_name(meta: dict[str, Any], info: RunInfo) -> str:
    task = str(meta.get("task") or (info.config.get("finetune") or {}).get("task", "?"))
    return guard.redact(task)


# --- Monitor ----------------------------------------------------------------------------------------

def _facts(meta: dict[str, Any], info: RunInfo) -> None:
    """What the run trained on: examples used, dropped and cut, parameters frozen and trained."""
    kind = meta.get("kind", "?")
    labels = [str(x) for x in meta.get("labels", [])]
    shown = ", ".join(labels[:12]) + (f", … ({len(labels)} in all)" if len(labels) > 12 else "")
    st.markdown(f"**Task** {guard.code(_task_name(meta, info))} · {guard.md(KIND_WORDS.get(kind, kind))} · "
                f"{len(labels)} {'tags' if kind == 'tagging' else 'labels'}: {guard.md(shown)}")
    c = st.columns(5)
    c[0].metric("Training examples", f"{meta.get('train_examples', 0):,}",
                help="After the label budget (classes balanced). A long example can make more than one row.")
    c[1].metric("Validation examples", f"{meta.get('val_examples', 0):,}",
                help="Scored at each evaluation (the first max_eval of the split).")
    c[2].metric("Test examples", f"{meta.get('test_examples', 0):,}", help="Scored once, at the end.")
    c[3].metric("Trainable parameters", common.fmt_params(meta.get("trainable_params")),
                help=f"{meta.get('trainable_params', 0):,} of {meta.get('total_params', 0):,} (trunk and head)")
    c[4].metric("Frozen parameters", common.fmt_params(meta.get("frozen_params")),
                help="Embeddings and the first blocks of the trunk, when frozen (freeze).")
    dropped = {k: v for k, v in (meta.get("dropped") or {}).items() if v}
    cut = {k: v for k, v in (meta.get("words_cut") or {}).items() if v}
    notes = []
    if dropped:
        notes.append("Examples dropped (their answer did not fit in max_len): "
                     + ", ".join(f"{guard.md(k)} {v:,}" for k, v in dropped.items()) + ".")
    if cut:
        notes.append("Words cut off by max_len (they get no tag): "
                     + ", ".join(f"{guard.md(k)} {v:,}" for k, v in cut.items()) + ".")
    if not notes:
        notes.append("No example was dropped and no word was cut by max_len.")
    pooling = meta.get("pooling")
    if pooling:
        notes.append(f"Pooling: {guard.md(pooling)}.")
    st.caption(" ".join(notes))


def _pin(key: str, run_id: str, latest: int) -> None:
    """The step slider moved by the visitor: keep that step as new evaluations land (the latest:
    follow the newest again)."""
    value = st.session_state.get(key)
    st.session_state["ft_conf_pin"] = (run_id, value) if value != latest else None


def _step_slider(run_id: str, steps: list[int]) -> int:
    """The evaluation whose matrix is shown: the newest, unless the visitor picked another. The
    slider gets a new key with each new evaluation, so a live run's next matrix shows at once
    (a browser still sending the old position cannot hold it back)."""
    if len(steps) == 1:
        return steps[0]
    pin = st.session_state.get("ft_conf_pin")
    default = pin[1] if pin and pin[0] == run_id and pin[1] in steps else steps[-1]
    key = f"ft_conf_step_{run_id}_{len(steps)}"
    return st.select_slider("Evaluation step", options=steps, value=default, key=key, on_change=_pin,
                            args=(key, run_id, steps[-1]),
                            help="One matrix per evaluation, on the validation examples it scores; the right end is "
                                 "the latest (kept there while the run trains, unless you pick another).")


def _confusion(store: RunStore, info: RunInfo, chart: Callable) -> None:
    snaps = confusion_snapshots(store, info.id, "confusion")
    tests = confusion_snapshots(store, info.id, "confusion_test")
    if not snaps and not tests:
        if not info.is_terminal:
            st.caption("The validation confusion matrix appears at the first evaluation.")
        return
    st.subheader("Confusion matrix", divider="gray")
    top = st.columns([3, 2], vertical_alignment="bottom")
    step = None
    if snaps:
        with top[0]:
            step = _step_slider(info.id, [s for s, _ in snaps])
    with top[1]:
        normalize = st.toggle("Colour by the share of each true class", value=True, key="ft_conf_norm",
                              help="On: each row sums to 1, so a rare class reads as clearly as a common one. "
                                   "Off: raw counts. Each cell's text is its count either way.")
    left, right = st.columns(2)
    with left:
        if step is not None:
            data = dict(snaps)[step]
            chart(views.confusion_figure(data["labels"], data["matrix"], f"Validation, step {step}", normalize),
                  "Rows: the true class; columns: what the model said. The diagonal is right; a column that "
                  "fills up is a class the model says for everything.", "confusion", info.id)
    with right:
        if tests:
            _, data = tests[-1]
            chart(views.confusion_figure(data["labels"], data["matrix"], "Test (end of training)", normalize),
                  "The whole test split, scored once when the run finished (plays the run never saw).",
                  "confusion_test", info.id)
        elif info.is_terminal:
            st.caption("No test matrix: the run did not finish (the test split is scored at the end).")
        else:
            st.caption("The test matrix appears when the run finishes (the test split is scored once, at the end).")


def monitor(store: RunStore, info: RunInfo, series: dict, chart: Callable) -> None:
    """The Monitor page's charts for a fine-tuning run (no perplexity, no sampling: it is no language model)."""
    meta = finetune_info(store, info.id)
    kind = meta.get("kind") or ""
    setting = re.match(r"ConfigError: (\w+): ", info.error or "") if info.status == "failed" else None
    if setting:  # a setting the run could not train with (checked once the trunk loaded): what to change
        st.info(f"The setting to change is **{guard.md(setting.group(1))}**: start a new fine-tuning run with it "
                "fixed on the **Train** page (Fine-tune on a task).", icon=":material/tune:")
    st.caption(f"Fine-tuning run: {guard.md(describe(info))}. Try it on your own text on **Sample / Translate**.")
    if "sample" in common.PAGES:
        st.page_link(common.PAGES["sample"], label="Predict on your text", icon=":material/edit_note:")
    if meta:
        _facts(meta, info)
    elif not info.is_terminal:
        st.caption("The run is building its task, trunk and tokenizer.")
    tests = {name: v[-1] for name, (_, v) in series.items() if name.startswith("test/") and len(v)}
    if tests:
        st.subheader("Test scores", divider="gray")
        names = [("test/" + n.split("/", 1)[1], label) for n, label in views.TASK_METRICS.get(kind, ())]
        names = [(n, label) for n, label in names if n in tests] + [("test/loss", "loss")] * ("test/loss" in tests)
        cols = st.columns(max(1, len(names)))
        for col, (name, label) in zip(cols, names):
            col.metric(f"Test {label}", f"{tests[name]:.4f}" if name == "test/loss" else f"{tests[name]:.3f}",
                       help=f"{name}: the whole test split, scored once at the end.")
    if not series:
        st.info("No metrics yet: the first point appears after the first log interval.", icon=":material/hourglass_top:")
    else:
        left, right = st.columns(2)
        with left:
            chart(plots.loss_figure(series, title="Training and validation loss"),
                  "Cross-entropy of the task's labels (classes, tags, or answer start and end). Train loss is "
                  "averaged over the last log interval; val loss is measured at each evaluation.", "loss", info.id)
        with right:
            metric_names = views.task_metric_names(kind) or [n for n in series if n.startswith("val/") and n != "val/loss"]
            chart(plots.metrics_figure(series, metric_names, title="Validation scores", y_title="score (0-1)"),
                  views.METRIC_NOTES.get(kind, "The task's validation metrics at each evaluation."), "task", info.id)
    if kind == "classification" or confusion_snapshots(store, info.id, "confusion"):
        _confusion(store, info, chart)
    if series:
        left, right = st.columns(2)
        with left:
            chart(plots.metric_figure(series, "lr", title="Learning rate"),
                  "The trunk's schedule: linear warm-up, then cosine decay (the head's follows it, scaled).", "lr",
                  info.id)
        with right:
            chart(plots.metric_figure(series, "grad_norm", title="Gradient norm"),
                  "Global gradient norm before clipping.", "gnorm", info.id)


# --- Predict (the Sample page) -------------------------------------------------------------------

@st.cache_resource(max_entries=2, show_spinner="Loading the fine-tuned model…")
def _load(_store: RunStore, home: str, run_id: str, which: str, mtime: float):
    from workbench.finetune.predict import load_finetuned

    return load_finetuned(_store, run_id, which)


def _model(store: RunStore, info: RunInfo):
    """The run's fine-tuned head, or a message on the page and None."""
    from workbench.pipeline import checkpoint_path

    if not finetune_info(store, info.id):
        st.info(f"Run {guard.code(info.id)} has not built its task yet: wait for it to start training.",
                icon=":material/hourglass_top:")
        return None
    try:
        path = checkpoint_path(store, info.id, "best")
    except FileNotFoundError:
        keep = (info.config.get("finetune") or {}).get("keep_weights", True)
        st.info(f"Run {guard.code(info.id)} has no checkpoint"
                + (" yet: one is saved at its first evaluation." if keep else
                   ": it was trained with keep_weights off (a label sweep), so it cannot predict."),
                icon=":material/hourglass_top:")
        return None
    try:
        return _load(store, str(store.home), info.id, path.stem, path.stat().st_mtime)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        st.error(f"Could not load run {guard.code(info.id)}: {guard.md(guard.redact(exc))}", icon=":material/error:")
        return None


def _text_form(name: str, label: str, example: str, key: str, height: int, button: str, icon: str,
               what: str) -> str | None:
    """A text box and its button in a form (``ft_<name>_form``, button ``ft_<name>``); the text,
    or None (with an inline error) when it is empty."""
    with st.form(f"ft_{name}_form"):
        st.text_area(label, value=example, max_chars=MAX_TEXT, key=key, height=height)
        st.form_submit_button(button, key=f"ft_{name}", type="primary", icon=icon)
    text = st.session_state.get(key, "")
    if not text.strip():
        st.error(f"The text is empty: type {what}.", icon=":material/error:")
        return None
    return text


def _classify(ft, info: RunInfo) -> None:
    from workbench.finetune.predict import classify

    text = _text_form("classify", "Text to classify", EXAMPLES["classification"], "ft_cls_text", 120, "Classify",
                      ":material/label:", "a passage to classify")
    if text is None:
        return
    probs = classify(ft, text)
    best = max(probs, key=probs.get)
    st.markdown(f"**Prediction:** {guard.code(best)} ({probs[best]:.1%})")
    st.plotly_chart(views.probabilities_figure(probs), key="ft_probs", config={"displaylogo": False})
    st.dataframe([{"label": k, "probability": round(v, 4)} for k, v in sorted(probs.items(), key=lambda kv: -kv[1])],
                 hide_index=True, key="ft_probs_table")
    st.caption(f"Cut to {ft.objective.max_len} tokens (max_len), as in training.")


def _tag(ft, info: RunInfo) -> None:
    from workbench.finetune.predict import tag

    text = _text_form("tag", "Text to tag", EXAMPLES["tagging"], "ft_tag_text", 100, "Tag", ":material/sell:",
                      "a line to tag")
    if text is None:
        return
    out = tag(ft, text)
    spans = out["spans"]
    st.markdown(f"**{len(spans)} entit{'y' if len(spans) == 1 else 'ies'} found**")
    st.html(views.spans_html(text, [(label, a, b) for label, a, b in spans]))
    if out["words"]:
        st.dataframe([{"word": w, "tag": t if t is not None else "(cut: past max_len)"} for w, t in out["words"]],
                     hide_index=True, key="ft_tag_table")


def _answer(ft, info: RunInfo) -> None:
    from workbench.finetune.predict import answer

    with st.form("ft_qa_form"):
        st.text_input("Question", value=EXAMPLES["question"], max_chars=1000, key="ft_qa_question")
        st.text_area("Context (the answer is a span of it)", value=EXAMPLES["context"], max_chars=MAX_TEXT,
                     key="ft_qa_context", height=160)
        st.form_submit_button("Answer", key="ft_answer", type="primary", icon=":material/question_answer:")
    question, context = st.session_state.get("ft_qa_question", ""), st.session_state.get("ft_qa_context", "")
    try:
        out = answer(ft, question, context)
    except ValueError as exc:
        st.error(guard.md(exc), icon=":material/error:")
        return
    st.markdown(f"**Answer:** {guard.code(out['text']) if out['text'].strip() else '(an empty span)'} "
                f"· score {out['score']:.2f}")
    st.html(views.spans_html(context, [("answer", out["start"], out["end"])]))
    st.caption(f"The score is the start logit plus the end logit of the span. The question and context are cut to "
               f"{ft.objective.max_len} tokens (max_len), as in training.")


def predict(store: RunStore, info: RunInfo) -> None:
    """The Sample page for a fine-tuning run: its predictions on typed text."""
    st.title("Predict")
    st.caption("A fine-tuned run does not write text: it classifies, tags or answers. Type your own text; the run's "
               "best checkpoint reads it.")
    meta = finetune_info(store, info.id)
    kind = meta.get("kind") or ""
    st.info(f"Run {guard.code(info.id)} is a fine-tuning run: {guard.md(describe(info))}"
            + (f" ({guard.md(KIND_WORDS.get(kind, kind))})." if kind else "."), icon=":material/label:")
    ft = _model(store, info)
    if ft is None:
        return
    try:
        {"classification": _classify, "tagging": _tag, "qa": _answer}[ft.kind](ft, info)
    except ValueError as exc:  # e.g. a text the tokenizer cannot encode
        st.error(f"Run {guard.code(info.id)} cannot read this text: {guard.md(guard.redact(exc))}",
                 icon=":material/error:")
