"""The Train page's "What a batch looks like" panel: one training batch of the form's settings.

Each position's input and target (ignored targets shown as —; masked LM says how each selected
token was made), segment ids for sentence pairs, and the attention-mask matrix, all from
``workbench.batch_view``. Drawn from a slice of the training split and cached by the settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import streamlit as st

import guard
import tokenizer_form as tf
from workbench import batch_view
from workbench.config import ConfigError, RunConfig


@st.cache_data(show_spinner="Drawing a batch…", max_entries=32)
def _batch_preview(cfg_json: str, corpus_key: str, seed: int, _text: str | None, _tokenizer: Any = None) -> dict:
    """``batch_view.example_batch`` rendered (tables, mask figures, captions): keyed by the
    sections a batch depends on, the corpus (an upload's hash, a kept tokenizer's creation time)
    and the seed; ``_text`` (an upload's text, not hashed: ``corpus_key`` stands for it) replaces
    the built-in corpus, ``_tokenizer`` is the config's published tokenizer when the page has it
    loaded (the tokenizer section, in the key, names it)."""
    ex = batch_view.example_batch(RunConfig.from_dict(json.loads(cfg_json)), seed=seed, text=_text, tokenizer=_tokenizer)
    if ex.content_matrices:  # two-stream attention: both masks of each row, side by side
        figures = [[batch_view.mask_figure(m, ex.tokens(r), title=batch_view.QUERY_STREAM),
                    batch_view.mask_figure(c, ex.tokens(r), title=batch_view.CONTENT_STREAM)]
                   for r, (m, c) in enumerate(zip(ex.matrices, ex.content_matrices))]
    else:
        figures = [[batch_view.mask_figure(m, ex.tokens(r), ex.causal)] for r, m in enumerate(ex.matrices)]
    return {"tables": [batch_view.batch_table_html(d) for d in ex.descriptions], "pairs": ex.pairs,
            "encoders": [batch_view.batch_table_html(d) for d in ex.encoders], "figures": figures,
            "predicts": ex.predicts, "chars": ex.preview_chars}


def _batch_key(cfg: RunConfig) -> str:
    """The config as far as a batch depends on it (not lr or steps: changing them draws nothing)."""
    d = cfg.to_dict()
    return json.dumps({"model": d["model"], "objective": d["objective"], "data": d["data"], "tokenizer": d["tokenizer"],
                       "train": {"seq_len": d["train"]["seq_len"]}}, sort_keys=True)


def show(cfg: RunConfig | None, error: ConfigError | Any, upload: bytes | None, text: str | None, kept: Any,
         as_field_error: Callable[[Exception], Any], key_prefix: str, tokenizer: Any = None) -> None:
    """The panel for ``cfg`` (None when the form has ``error``: then it says which field to fix).

    ``upload``/``text``: an uploaded corpus's bytes and checked text; ``kept``: the kept tokenizer's
    library entry (its creation time invalidates the cache); ``as_field_error`` maps an exception
    to the form field it belongs to; ``tokenizer``: a published tokenizer the page has loaded."""
    seed_key = key_prefix + "batch_seed"

    def next_batch() -> None:
        st.session_state[seed_key] = st.session_state.get(seed_key, 0) + 1

    with st.expander("What a batch looks like", icon=":material/table_view:"):
        if cfg is None:
            st.caption(f"Fix **{guard.md(error.field)}** above to see a batch of these settings.")
            return
        key = hashlib.sha256(upload).hexdigest() if upload is not None else cfg.data.corpus
        try:
            view = _batch_preview(_batch_key(cfg), f"{key}|{kept.created if kept else ''}",
                                  st.session_state.get(seed_key, 0), text, tokenizer)
        except (ValueError, OSError) as exc:  # ConfigError, CorpusError, TokenizerError: what the run would say
            bad = as_field_error(exc)
            tf.show_error(bad.field, bad.message)
            return
        fit = ("used as it is" if cfg.tokenizer.kind in ("saved", "pretrained") else
               "fit on that slice here (a run fits it on the whole split)")
        seen = ("" if "attention" in cfg.model.capabilities else
                f" {guard.md(cfg.model.arch)} has no attention: the mask shows the most each position may read.")
        st.caption(
            f"One training batch of **{guard.md(cfg.objective.name)}** on {guard.md(cfg.model.arch)} "
            f"with the {guard.md(cfg.tokenizer.kind)} tokenizer: the loss scores {guard.md(view['predicts'])}. "
            f"Drawn as training draws it, from the first {view['chars']:,} characters of the training split; the "
            f"tokenizer is {fit}. Targets shown as — are ignored by the loss.{seen}")
        c = st.columns([1, 4], vertical_alignment="center")
        row = c[0].radio("Row", list(range(len(view["tables"]))), horizontal=True, key=key_prefix + "batch_row")
        c[1].button("Draw another batch", key=key_prefix + "batch_redraw", icon=":material/casino:", on_click=next_batch)
        if view["pairs"]:
            st.caption(f"Pair label: {guard.md(view['pairs'][row])}. Segment A is shaded blue, B violet.")
        if view["encoders"]:
            st.caption("**Encoder input** (it reads the whole row at once, both directions):")
            st.html(view["encoders"][row])
            st.caption("**Decoder**: its input is the target shifted right behind a start token; it predicts "
                       "each target from the ones before it and, by cross-attention, the whole encoder input.")
        st.html(view["tables"][row])
        figures = view["figures"][row]
        if len(figures) > 1:
            st.caption("Two-stream attention: the query stream predicts a token from its position alone (it "
                       "cannot see its own content); the content stream, which later tokens read, includes it. "
                       "'predicted #' above is each predicted token's step in the factorization order.")
        for i, (col, fig) in enumerate(zip(st.columns(len(figures)), figures)):
            col.plotly_chart(fig, key=f"batch_mask_{i}" if i else "batch_mask", config={"displaylogo": False})
