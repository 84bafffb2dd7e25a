"""Sample: continue a prompt with the selected run's model (temperature, top-k, top-p)."""

from __future__ import annotations

import streamlit as st

import common
import guard
from workbench.generate import sample_text
from workbench.objectives.span_corruption import fill_spans
from workbench.pipeline import checkpoint_path, load_run_model
from workbench.runstore import RunStore
from workbench.tokenizers import UNK, TokenizerError

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


# a span-corruption run (T5) does not continue text: it fills in the spans marked by sentinels
FILLS = (info.config.get("objective") or {}).get("name") == "span"
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
