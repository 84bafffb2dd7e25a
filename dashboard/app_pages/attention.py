"""Attention: what each head looks at. A run's snapshots over training, the run's best checkpoint
on your own text, or a pretrained model; five views of the same maps (``attention_panel``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

import attention_panel as panel
import common
import guard
from workbench.attention import AttentionMaps
from workbench.attention_text import capture_text, induction_scores_of
from workbench.hf_attention import capture_hf, hf_induction_scores, load_hf, offline_models
from workbench.models import FAMILIES
from workbench.pipeline import attention_snapshots, checkpoint_path, load_attention, load_run_model
from workbench.runstore import UnknownRunError

st.title("Attention")
SOURCES = {"snapshots": "Training snapshots", "text": "Your text on a run", "pretrained": "Pretrained model"}
source = st.segmented_control("Attention of", list(SOURCES), format_func=SOURCES.__getitem__, default="snapshots",
                              key="attn_source") or "snapshots"

# an encoder-decoder run's snapshot kinds, a permutation-LM run's streams (artifact kind -> label)
# (a bare string here would be drawn on the page: Streamlit's magic writes every top-level expression)
KINDS = {"attention": "Encoder self-attention", "decoder_attention": "Decoder self-attention",
         "cross_attention": "Cross-attention (decoder × encoder)", "content_attention": "Content stream",
         "query_attention": "Query stream"}
MAP_KINDS = {"self": "Self-attention", "encoder": "Encoder self-attention", "decoder": "Decoder self-attention",
             "cross": "Cross-attention (decoder × encoder)", "content": "Content stream", "query": "Query stream"}
# what "another model" may be: a hub id (name or org/name), never a server path (a visitor must not
# make the server read its files)
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")
MAX_TEXT = 5000


@st.cache_data(max_entries=64, show_spinner=False)
def _load(path: str, mtime: float) -> AttentionMaps:
    return load_attention(path)


def _load_path(path) -> AttentionMaps:
    return _load(str(path), path.stat().st_mtime)


@st.cache_resource(max_entries=2, show_spinner="Loading the model…")
def _run_model(_store, home: str, run_id: str, mtime: float):
    return load_run_model(_store, run_id, "best")


@dataclass
class Picked:
    """What a source gives the views: the maps, a label for titles and file names, the run's
    snapshots of this kind (None unless the source is snapshots), the run, and the model behind
    the maps and its induction scores, each loaded only when a view asks."""

    maps: AttentionMaps
    label: str
    snapshots: list | None
    info: object | None
    model: Callable[[], object]
    induction: Callable[[], np.ndarray | None]


def _best(store, info) -> tuple:
    """(model, tokenizer) of the run's best checkpoint (its last when there is no best yet), or
    (None, None) before the first."""
    try:
        path = checkpoint_path(store, info.id, "best")
    except FileNotFoundError:
        return None, None
    return _run_model(store, str(store.home), info.id, path.stat().st_mtime)[:2]


def _run_induction(model, tokenizer) -> np.ndarray | None:
    return None if model is None else induction_scores_of(model, tokenizer)


@st.cache_resource(max_entries=2, show_spinner="Loading the pretrained model…")
def _hf(name: str, gguf_file: str | None):
    return load_hf(name, gguf_file=gguf_file)


@st.cache_data(max_entries=16, show_spinner="Reading the text…")
def _hf_maps(name: str, gguf_file: str | None, text: str, max_tokens: int) -> AttentionMaps:
    return capture_hf(_hf(name, gguf_file), text, max_tokens=max_tokens)


def _counts(store, run_id: str) -> tuple[int, ...]:
    return tuple(len(attention_snapshots(store, run_id, kind)) for kind in KINDS)


@st.fragment(run_every=2.0)
def _watch_for_snapshots(store, run_id: str, known: tuple[int, ...]) -> None:
    """While the run trains: a full rerun when a new snapshot of any kind lands."""
    try:
        ended = store.get_run(run_id).is_terminal
    except UnknownRunError:  # deleted meanwhile: the picker moves on
        ended = True
    if ended or _counts(store, run_id) != known:
        st.rerun()


def _causal(info) -> bool:
    arch = info.config.get("model", {}).get("arch", "")
    return arch in FAMILIES and "causal" in FAMILIES[arch].config_cls.capabilities


def _cross_pattern(info) -> str:
    objective = info.config.get("objective", {})
    task = objective.get("task") if objective.get("name") == "seq2seq" else objective.get("name")
    return {
        "reverse-words": "On reverse-words a trained head draws an anti-diagonal: the decoder reads the source "
                         "words in reverse order, the last source word first.",
        "pig-latin": "On Pig Latin a trained head keeps near the diagonal: each word is rewritten in place, its "
                     "first consonants moved to its end.",
        "span": "On span corruption each dropped span's tokens look at their sentinel in the encoder input and "
                "at the words around it.",
    }.get(task, "A trained head shows the alignment: which source tokens each target token is written from.")


def _finetune_note(info) -> bool:
    """For a fine-tuning run (a task head: no attention snapshots, no LM checkpoint to read text
    with), a note saying so; True when shown."""
    if not (info.config or {}).get("finetune"):
        return False
    st.info(f"Run {guard.code(info.id)} is a fine-tuning run (a task head on a trunk): it takes no attention "
            "snapshots, and this page reads language-model checkpoints only. Try it on the **Sample / Translate** "
            "page (Predict), or look at a pretraining run or a pretrained model here.", icon=":material/info:")
    return True


def from_snapshots():
    """(maps, label, snapshots of this kind, caption context) from the selected run's snapshots, or None."""
    info = common.require_run("look at its attention")
    if info is None or _finetune_note(info):
        return None
    store = common.get_store()
    st.caption("At every evaluation the run feeds the same probe text (the start of the validation split) through "
               "the model and saves every layer's attention weights; an encoder-decoder gets a fixed (source, "
               "target) pair made as its objective makes examples. Pick a step to see how the heads changed.")
    kinds = [k for k in KINDS if attention_snapshots(store, info.id, k)]
    artifact = "attention"
    if len(kinds) > 1:
        labels = dict(KINDS)
        if "cross_attention" not in kinds:  # a permutation LM: its plain left-to-right pass beside the streams
            labels["attention"] = "Causal pass"
        default = next((k for k in ("cross_attention", "query_attention") if k in kinds), kinds[0])
        artifact = st.radio("Which attention", kinds, index=kinds.index(default), format_func=labels.__getitem__,
                            horizontal=True, key="attn_kind",
                            help="An encoder-decoder attends three ways: the encoder over the source, the decoder "
                                 "over the target written so far, and the decoder over the encoder's output. A "
                                 "permutation LM has two streams over the same tokens.")
    snapshots = attention_snapshots(store, info.id, artifact)
    if not info.is_terminal:
        _watch_for_snapshots(store, info.id, _counts(store, info.id))
    if not snapshots:
        if info.is_terminal:
            st.info(f"Run {guard.code(info.id)} ended ({info.status}) without any attention snapshot "
                    "(they are taken at each evaluation).", icon=":material/info:")
        else:
            st.info(f"Run {guard.code(info.id)} has no attention snapshots yet: the first one is taken at its first "
                    f"evaluation (step {guard.md(info.config.get('train', {}).get('eval_interval', '?'))}). "
                    "This page updates by itself.", icon=":material/hourglass_top:")
        return None
    steps = [s for s, _ in snapshots]
    paths = dict(snapshots)
    if st.session_state.get("attn_step", steps[-1]) not in paths:  # a kind snapshotted from a later step on (a resume)
        del st.session_state["attn_step"]
    step = st.select_slider("Training step of the snapshot", options=steps, value=steps[-1], key="attn_step",
                            help="One snapshot per evaluation; the right end is the latest.")
    try:
        maps = _load_path(paths[step])
    except (OSError, ValueError, KeyError) as exc:
        st.error(f"Could not read the snapshot of step {step}: {guard.md(guard.redact(exc))}", icon=":material/error:")
        return None
    return Picked(maps, f"step {step}", snapshots, info, lambda: _best(store, info)[0],
                  lambda: _run_induction(*_best(store, info)))


def from_text():
    """Maps of the selected run's best checkpoint on the text typed here, or None."""
    info = common.require_run("read your text with it")
    if info is None or _finetune_note(info):
        return None
    store = common.get_store()
    try:
        path = checkpoint_path(store, info.id, "best")
    except FileNotFoundError:
        st.info(f"Run {guard.code(info.id)} has no checkpoint yet: one is saved at its first evaluation.",
                icon=":material/hourglass_top:")
        return None
    with st.form("attn_text_form", border=False):
        text = st.text_area("Your text", value="ROMEO:\nBut soft, what light through yonder window breaks?",
                            max_chars=MAX_TEXT, key="attn_text", height=90,
                            help="Read by the run's best checkpoint (cut to its context). An encoder-decoder "
                                 "reads it as the source and writes its own output for the decoder side.")
        st.form_submit_button("Read it", icon=":material/visibility:")
    try:
        model, tokenizer, cfg = _run_model(store, str(store.home), info.id, path.stat().st_mtime)
        maps = capture_text(model, tokenizer, text, source=f"run {info.id}", objective=cfg.objective.name)
    except ValueError as exc:
        st.error(guard.md(guard.redact(exc)), icon=":material/error:")
        return None
    if len(maps) > 1:
        kinds = list(maps)
        kind = st.radio("Which attention", kinds, index=kinds.index("cross") if "cross" in maps else 0,
                        format_func=MAP_KINDS.__getitem__, horizontal=True, key="attn_text_kind")
    else:
        kind = next(iter(maps))
    chosen = maps[kind]
    if "first" in chosen.source:
        st.caption(guard.md(f"Cut to the model's context: {chosen.source.split('·')[-1].strip()}."))
    return Picked(chosen, f"{path.stem} checkpoint", None, info, lambda: model,
                  lambda: induction_scores_of(model, tokenizer))


def from_pretrained():
    """Maps of a pretrained HF model (offline ones listed; any hub id when online), or None."""
    local = offline_models()
    names = list(local) + ["Another model (hub id)"]
    cols = st.columns([2, 2, 1])
    choice = cols[0].selectbox("Model", names, key="attn_hf_model",
                               help="Models shipped in installed Python packages load offline (MiniLM: a BERT "
                                    "encoder, 6 layers × 12 heads). Another model is downloaded from the Hugging "
                                    "Face hub by its id (needs internet).")
    gguf = None
    if choice in local:
        name, gguf = local[choice]
    else:
        name = cols[1].text_input("Hub id", placeholder="e.g. bert-base-uncased or openai-community/gpt2",
                                  key="attn_hf_name").strip()
        if not name:
            st.info("Type a model id from the Hugging Face hub, e.g. `google-bert/bert-base-uncased`.",
                    icon=":material/info:")
            return None
        if not HUB_NAME.match(name) or ".." in name or Path(name).exists():
            st.error("A hub id is `name` or `organisation/name` (letters, digits, `-`, `_`, `.`); paths on the "
                     "server are not accepted.", icon=":material/error:")
            return None
    max_tokens = cols[2].number_input("Max tokens", 8, 512, 128, step=8, key="attn_hf_max",
                                      help="The text is cut to this many tokens (512 at most).")
    with st.form("attn_hf_form", border=False):
        text = st.text_area("Text", value="The cat sat on the mat because it was tired.", max_chars=MAX_TEXT,
                            key="attn_hf_text", height=90)
        st.form_submit_button("Read it", icon=":material/visibility:")
    if not text.strip():
        st.error("The text is empty: type a sentence.", icon=":material/error:")
        return None
    try:
        maps = _hf_maps(name, gguf, text, int(max_tokens))
    except (ValueError, OSError) as exc:
        st.error(guard.md(guard.redact(exc)), icon=":material/error:")
        return None
    return Picked(maps, maps.source or name, None, None, lambda: _hf(name, gguf).model,
                  lambda: hf_induction_scores(_hf(name, gguf)))


picked = {"snapshots": from_snapshots, "text": from_text, "pretrained": from_pretrained}[source]()
if picked is None:
    st.stop()
maps, label, snapshots, info = picked.maps, picked.label, picked.snapshots, picked.info

views = [v for v in panel.VIEWS if v != "time" or snapshots]
if st.session_state.get("attn_view") not in views:
    st.session_state["attn_view"] = "heatmap"
view = st.radio("View", views, format_func=panel.VIEWS.__getitem__, horizontal=True, key="attn_view",
                help="One head's heatmap; every head at once; lines from each token to what it attends to (the "
                     "head view); the mask beside the weights; one head over the run's snapshots.")
layer, head = panel.pick_layer_head(maps, view)
# snapshots from before masks were saved say nothing: the run's family does (GPT causal, BERT not)
causal = maps.causal or (maps.mask is None and maps.kind == "self" and info is not None and _causal(info))
caption = panel.caption_for(maps, causal, _cross_pattern(info) if info is not None and maps.kind == "cross" else "")
if view == "heatmap":
    panel.one_head(maps, layer, head, label, caption, causal)
elif view == "model":
    panel.all_heads(maps, label, picked.induction)
elif view == "lines":
    panel.lines(maps, layer, label)
elif view == "mask":
    panel.mask_and_weights(maps, layer, head, label)
elif view == "time":
    panel.over_training(snapshots, _load_path, layer, head, label)
else:
    panel.positions(picked.model(), label)
