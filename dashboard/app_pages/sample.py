"""Sample: continue a prompt with the selected run's model (temperature, top-k, top-p). For a run
trained on a seq2seq task (``--objective seq2seq``) the page is Generate / Translate: the
encoder-decoder writes a target for each source line (greedy, beam search or sampling), shown
next to the task's own answer for the built-in tasks. For a fine-tuning run the page is Predict
(``finetune_panel.predict``): class probabilities, tagged spans or an answer span on typed text."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

import common
import finetune_panel
import guard
from workbench.config import RunConfig
from workbench.generate import sample_text
from workbench.objectives.seq2seq_tasks import pig_latin, reverse_words
from workbench.objectives.span_corruption import fill_spans
from workbench.pipeline import checkpoint_path, load_run_model
from workbench.runstore import RunInfo, RunStore
from workbench.scoring import evaluation_pairs
from workbench.seq2seq_decode import translate
from workbench.tokenizers import UNK, TokenizerError


def _objective(run: RunInfo | None) -> str | None:
    return (run.config.get("objective") or {}).get("name") if run is not None else None


if finetune_panel.is_finetune(common.current_run()):  # a task head classifies, tags or answers: no text to sample
    finetune_panel.predict(common.get_store(), common.current_run())
    st.stop()

# a run trained on a seq2seq task does not continue text: it writes a target for each source
TRANSLATES = _objective(common.current_run()) == "seq2seq"
if TRANSLATES:
    st.title("Generate / Translate")
    st.caption(
        "The encoder reads the source once; the decoder writes the target a token at a time, attending to it. "
        "Greedy takes the most likely token at each step; beam search keeps the best few partial targets and "
        "returns the best-scoring whole one; sampling draws each token (temperature, top-k, top-p)."
    )
else:
    st.title("Sample")
    st.caption(
        "The model predicts a probability for every token in its vocabulary; sampling draws the next token from it, "
        "appends it and repeats. Temperature sharpens (< 1) or flattens (> 1) the distribution; top-k and top-p "
        "keep only the most likely tokens. Temperature 0 always takes the most likely token (greedy)."
    )

info = common.require_run("sample from it")
if info is None:
    st.stop()
store = common.get_store()


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _model(_store: RunStore, home: str, run_id: str, which: str, mtime: float):
    """Cached per run, checkpoint and checkpoint file time (a newer 'best' reloads)."""
    return load_run_model(_store, run_id, which)


def _unknown_pieces(tokenizer, text: str) -> list[str]:
    """The pieces of ``text`` the tokenizer spells as [UNK] (each once, in order): the model sees
    one unknown token for each, and the decoded output leaves them out."""
    if not text or UNK not in tokenizer.special_tokens:
        return []
    unk = tokenizer.token_to_id(UNK)
    ids, offsets = tokenizer.encode_offsets([text])[0]
    return list(dict.fromkeys(text[a:b] or UNK for i, (a, b) in zip(ids, offsets) if i == unk))


def _checkpoint(which: str):
    """(model, tokenizer, the checkpoint used, a note when 'best' fell back to 'last'); or a
    message on the page and a stop when there is none yet or it does not load."""
    try:
        path = checkpoint_path(store, info.id, which)  # 'best' falls back to 'last' when there is no best yet
    except FileNotFoundError:
        st.info(f"Run {guard.code(info.id)} has no checkpoint yet: one is saved at its first evaluation.",
                icon=":material/hourglass_top:")
        st.stop()
    used = path.stem  # the checkpoint actually loaded: 'best' or 'last'
    note = None if used == which else (
        f"Run {guard.code(info.id)} has no **{which}** checkpoint yet (it is saved at an evaluation that "
        f"improves the validation loss), so the **{used}** checkpoint was used.")
    try:
        model, tokenizer, _cfg = _model(store, str(store.home), info.id, used, path.stat().st_mtime)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        st.error(f"Could not load the {used} checkpoint of run {guard.code(info.id)}: {guard.md(guard.redact(exc))}",
                 icon=":material/error:")
        st.stop()
    return model, tokenizer, used, note


# --- Generate / Translate: a run trained on a seq2seq task ------------------------------------------

# the built-in tasks' own answers (pure functions of the source); a TSV task has none
TASK_RULES = {"reverse-words": reverse_words, "pig-latin": pig_latin}
TASK_WORDS = {"reverse-words": "the words of each line in reverse order", "pig-latin": "each word in Pig Latin"}
METHODS = ("greedy", "beam search", "sampling")
MAX_SOURCES = 64  # source lines decoded per click (each is a whole decode)
FALLBACK_SOURCE = "Now is the winter of our discontent"


@st.cache_data(max_entries=8, show_spinner=False)
def _first_source(config_json: str) -> str:
    """The source of the run's first validation pair (what its evaluations decode first)."""
    try:
        pairs = evaluation_pairs(RunConfig.from_dict(json.loads(config_json)))
    except Exception:  # a default text only: a corpus or TSV file gone is reported when the model loads
        return FALLBACK_SOURCE
    return pairs[0][0] if pairs else FALLBACK_SOURCE


def _translate_form(block_size: int) -> bool:
    """The decoding method, the source box and the settings; True when submitted."""
    method = st.radio("Decoding", METHODS, key="t_method", horizontal=True,
                      help="greedy: the most likely token at each step. beam search: keeps the best partial targets "
                           "and returns the best-scoring whole one. sampling: draws each token.")
    with st.form("translate_form"):
        st.text_area("Source (one per line)", key="t_source", height=100,
                     value=_first_source(json.dumps(info.config, sort_keys=True)),
                     help=f"Each non-empty line is one source (at most {MAX_SOURCES}); the model writes one target "
                          f"for each. The default is the first source the run's evaluations decode.")
        c = st.columns(4)
        if method == "beam search":
            c[0].number_input("Beam size", 1, 16, value=4, step=1, key="t_beam",
                              help="Partial targets kept at each step; 1 is greedy decoding.")
            c[1].slider("Length penalty", 0.0, 2.0, value=1.0, step=0.1, key="t_lp",
                        help="Targets are ranked by log-probability / length ** this: 0 favours short targets, "
                             "1 compares the average per token.")
        elif method == "sampling":
            c[0].slider("Temperature", 0.05, 2.0, value=0.8, step=0.05, key="t_temp")
            c[1].number_input("Top-k (0 = off)", 0, 100_000, value=0, step=5, key="t_top_k")
            c[2].slider("Top-p (1 = off)", 0.05, 1.0, value=1.0, step=0.05, key="t_top_p")
            c[3].number_input("Seed", 0, 2**31 - 1, value=1337, step=1, key="t_seed")
        c = st.columns(2)
        c[0].number_input("Most new tokens", 1, block_size, value=block_size, step=8, key="t_max_new",
                          help="The longest target, in tokens (the decoder's block_size at most).")
        c[1].radio("Checkpoint", ["best", "last"], key="t_which", horizontal=True,
                   help="best: lowest validation loss so far (the last checkpoint when there is none yet, "
                        "which the output then says); last: the most recent step saved.")
        go = st.form_submit_button("Translate", type="primary", icon=":material/translate:")
    return go


def _decoding(method: str) -> tuple[dict, str]:
    """``translate``'s keyword arguments for ``method`` and the settings in words."""
    ss = st.session_state
    if method == "beam search":
        beam, lp = int(ss["t_beam"]), float(ss["t_lp"])
        return {"beam_size": beam, "length_penalty": lp}, f"beam search (beam {beam}, length penalty {lp:g})"
    if method == "sampling":
        kw = {"temperature": float(ss["t_temp"]), "top_k": int(ss["t_top_k"]) or None,
              "top_p": float(ss["t_top_p"]) if ss["t_top_p"] < 1.0 else None, "seed": int(ss["t_seed"])}
        return kw, f"sampling (temperature {kw['temperature']:g}, seed {kw['seed']}; same seed and settings, same text)"
    return {}, "greedy decoding"


def _translate(task: str, max_words: int) -> None:
    """Decode the sources and keep the rows in the session: (source, output, expected or None)."""
    ss = st.session_state
    sources = [line.strip() for line in ss["t_source"].splitlines() if line.strip()]
    if not sources or len(sources) > MAX_SOURCES:
        ss.pop("translate_out", None)
        st.error("Write a source text to translate, one per line." if not sources else
                 f"{len(sources)} source lines: translate at most {MAX_SOURCES} at a time.", icon=":material/error:")
        return
    model, tokenizer, used, note = _checkpoint(ss["t_which"])
    kw, settings = _decoding(ss["t_method"])
    try:
        outputs = translate(model, tokenizer, sources, max_new_tokens=int(ss["t_max_new"]), **kw)
    except TokenizerError as exc:
        ss.pop("translate_out", None)
        st.error(f"The source cannot be encoded: {guard.md(exc)}. Change the text, or train a run with the 'bpe' "
                 "tokenizer, which can encode any text.", icon=":material/error:")
        return
    except ValueError as exc:
        ss.pop("translate_out", None)
        st.error(f"Run {guard.code(info.id)} cannot decode with these settings: {guard.md(exc)}.",
                 icon=":material/error:")
        return
    notes = [note] if note else []
    unknown = list(dict.fromkeys(p for s in sources for p in _unknown_pieces(tokenizer, s)))
    if unknown:
        shown = " ".join(guard.code(p) for p in unknown[:20]) + (" …" if len(unknown) > 20 else "")
        notes.append(f"Part of the source is not in this {tokenizer.kind} tokenizer's vocabulary and reached the "
                     f"model as {guard.code(UNK)}: {shown}. A run with a byte-level tokenizer ('bpe' or "
                     "'teaching-bpe') can read any text.")
    rule = TASK_RULES.get(task)
    if rule is not None and any(len(s.split()) > max_words for s in sources):
        notes.append(f"The run trained on lines cut to their first {max_words} words (max_words); "
                     "longer sources are new to it.")
    rows = [(s, o, rule(s) if rule else None) for s, o in zip(sources, outputs)]
    ss["translate_out"] = (info.id, rows, f"{settings.capitalize()}, from the **{used}** checkpoint of "
                                          f"{guard.code(info.id)} ({tokenizer.kind} tokenizer, vocabulary "
                                          f"{tokenizer.vocab_size}).", "\n\n".join(notes) or None)


def _show_translations(rows: list[tuple[str, str, str | None]], caption: str, note: str | None) -> None:
    st.subheader("Output", divider="gray")
    if note:
        st.warning(note, icon=":material/info:")
    matches = [o.strip() == e.strip() for _, o, e in rows if e is not None]
    if len(rows) == 1:
        _, output, expected = rows[0]
        st.code(output, language=None, wrap_lines=True)
        if not output:
            st.caption("The model wrote nothing: it ended the target at once.")
        if expected is not None:
            st.markdown("**Expected (the task's rule)**")
            st.code(expected, language=None, wrap_lines=True)
    else:
        st.dataframe([{"source": s, "output": o} | ({"expected": e, "exact": m} if e is not None else {})
                      for (s, o, e), m in zip(rows, matches or [None] * len(rows))], hide_index=True)
    if matches:
        k, n = sum(matches), len(matches)
        if n == 1:
            (st.success if k else st.warning)("Exact match: the output is the rule's answer." if k else
                                              "Not an exact match: the output differs from the rule's answer.",
                                              icon=":material/check_circle:" if k else ":material/cancel:")
        else:
            st.markdown(f"**Exact match:** {k} of {n} ({k / n:.0%})")
    st.caption(caption)


if TRANSLATES:
    objective = info.config.get("objective") or {}
    task, max_words = str(objective.get("task", "")), int(objective.get("max_words", 12))
    shown = task if task in TASK_WORDS else "tsv:.../" + Path(task[4:]).name  # no server folders
    st.info(f"This run was trained on the seq2seq task {guard.code(shown)}"
            + (f": {TASK_WORDS[task]}." if task in TASK_WORDS else ", pairs from a TSV file (no rule to compare with).")
            + " Write a source; the model writes its target.", icon=":material/translate:")
    go = _translate_form(int((info.config.get("model") or {}).get("block_size", 64)))
    if go:
        _translate(task, max_words)
    out = st.session_state.get("translate_out")
    if out is not None and out[0] == info.id:
        _show_translations(*out[1:])
    st.stop()

# --- Sample: a decoder continues the prompt, or a span-corruption run (T5) fills its gaps ---------------

# a span-corruption run (T5) does not continue text: it fills in the spans marked by sentinels
FILLS = _objective(info) == "span"
if FILLS:
    st.info("This run was trained with span corruption (T5): write `<extra_id_0>`, `<extra_id_1>`, … where "
            "text is missing, and the model writes those spans.", icon=":material/edit_note:")

with st.form("sample_form"):
    st.text_area("Text with gaps" if FILLS else "Prompt", key="s_prompt" + ("_fill" if FILLS else ""),
                 value="ROMEO:\nBut soft, what <extra_id_0> through yonder <extra_id_1> breaks?" if FILLS else "ROMEO:\n",
                 height=100, help="Sentinels mark the gaps, numbered from 0." if FILLS else
                 "The text to continue. Leave it empty to start from a new line.")
    c = st.columns(6)
    c[0].number_input("New tokens", 1, 2000, value=200, step=50, key="s_max_new")
    c[1].slider("Temperature", 0.0, 2.0, value=0.8, step=0.05, key="s_temp")
    c[2].number_input("Top-k (0 = off)", 0, 100_000, value=40, step=5, key="s_top_k")
    c[3].slider("Top-p (1 = off)", 0.05, 1.0, value=1.0, step=0.05, key="s_top_p")
    c[4].number_input("Seed", 0, 2**31 - 1, value=1337, step=1, key="s_seed")
    c[5].radio("Checkpoint", ["best", "last"], key="s_which", horizontal=True,
               help="best: lowest validation loss so far (the last checkpoint when there is none yet, "
                    "which the output then says); last: the most recent step saved.")
    go = st.form_submit_button("Generate", type="primary", icon=":material/auto_awesome:")

if go:
    ss = st.session_state
    which = ss["s_which"]
    model, tokenizer, used, note = _checkpoint(which)
    prompt = ss["s_prompt_fill"] if FILLS else ss["s_prompt"]
    sampling = (float(ss["s_temp"]), int(ss["s_top_k"]) or None, float(ss["s_top_p"]) if ss["s_top_p"] < 1.0 else None,
                int(ss["s_seed"]))
    try:
        if FILLS:
            text, spans = fill_spans(model, tokenizer, prompt, min(int(ss["s_max_new"]), model.max_context), *sampling)
            text += "\n\n" + "\n".join(f"<extra_id_{i}> → {s!r}" for i, s in enumerate(spans))
        else:
            text = sample_text(model, tokenizer, prompt, int(ss["s_max_new"]), *sampling)
    except TokenizerError as exc:
        ss.pop("sample_out", None)
        st.error(
            f"The prompt cannot be encoded: {guard.md(exc)}. Change the prompt, or train a run with the 'bpe' "
            "tokenizer, which can encode any text.", icon=":material/error:",
        )
    except ValueError as exc:  # a model that cannot continue text (a masked LM)
        ss.pop("sample_out", None)
        st.error(f"Run {guard.code(info.id)} cannot be sampled: {guard.md(exc)}.", icon=":material/error:")
    else:
        unknown = _unknown_pieces(tokenizer, prompt)
        if unknown:
            shown = " ".join(guard.code(p) for p in unknown[:20]) + (" …" if len(unknown) > 20 else "")
            note = ((note + "\n\n") if note else "") + (
                f"Part of the prompt is not in this {tokenizer.kind} tokenizer's vocabulary and reached the model as "
                f"{guard.code(UNK)}, which the output leaves out: {shown}. A run with a byte-level tokenizer ('bpe' or "
                "'teaching-bpe') can read any text.")
        ss["sample_out"] = (
            info.id,
            text,
            f"{int(ss['s_max_new'])} new tokens from the **{used}** checkpoint of {guard.code(info.id)} "
            f"({tokenizer.kind} tokenizer, vocabulary {tokenizer.vocab_size}). Same seed and settings, same text.",
            note,
        )

out = st.session_state.get("sample_out")
if out is not None and out[0] == info.id:
    st.subheader("Output", divider="gray")
    if out[3]:
        st.warning(out[3], icon=":material/info:")
    st.code(out[1], language=None, wrap_lines=True)
    st.caption(out[2])
