"""Tokenizers: train any family on a corpus, read its statistics and how it cuts a sentence,
compare it with others, and keep it by name for runs (the Train page lists it as 'kept: NAME').

Everything is done by ``workbench.tokenizers``: ``stats.train_and_measure`` trains on the
corpus's training split and measures on its validation split, ``views`` draws the coloured
tokens, the merges and the histogram (escaped HTML, shown with ``st.html``), ``library`` keeps
tokenizers under ``$WORKBENCH_HOME/tokenizers``. Tokenizers trained here live in this browser
session (the newest few); kept ones are on disk for every session and the CLI. A family's
settings are ``tokenizer_form``'s widgets (shared with the Train page), which also holds the rules
for visitors from another machine: Hub names only for published tokenizers, and a cap on the
teaching BPE, which trains inside the dashboard's process.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import common
import guard
import tokenizer_form as tf
from workbench.cli_tokenizers import SAMPLE
from workbench.config import ConfigError
from workbench.corpora import Corpus, CorpusError, corpus_fingerprint, corpus_from_text, load_corpus
from workbench.tokenizers import TOKENIZERS, Tokenizer, TokenizerConfig, TokenizerError, tokenizer_config_class
from workbench.tokenizers.library import TokenizerLibrary
from workbench.tokenizers.stats import TokenizerStats, tokenizer_stats, train_and_measure
from workbench.tokenizers.views import compression_figure, length_histogram, merges_html, merges_table, side_by_side_html, table_html, token_html
from workbench.uploads import MAX_UPLOAD_BYTES, check_upload

P = "tk_"  # session-state prefix of this page's widgets and results
BUILTIN = "Shakespeare (built in)"
UPLOAD = "Upload a .txt file"
# (comments, not docstrings: Streamlit's magic would draw a bare string of a page script)
SESSION_TOKENIZERS = 8  # tokenizers trained in this browser session kept in memory (the oldest are dropped)
MAX_TEXT = 5000  # longest text shown token by token
MERGES_SHOWN = 40
TRAIN_HELP = (
    "Trains on the corpus's training split and measures on its validation split (text it never saw). "
    "On the whole built-in corpus (4.8 M characters) char takes well under a second, bpe, wordpiece, word and "
    "teaching-bpe a few seconds, and unigram about 15-20 s. 'pretrained' loads a published tokenizer instead "
    "(from the Hugging Face cache or a local folder when offline)."
)


@dataclass
class Trained:
    """A tokenizer trained in this session, with what it was trained on."""

    tok: Tokenizer
    stats: TokenizerStats
    corpus: str
    corpus_hash: str
    val_fraction: float
    version: int


def _md_error(what: str, exc: Exception) -> None:
    """An error a user can fix, as Markdown that shows the message literally (paths redacted)."""
    if isinstance(exc, ConfigError):
        message = f"**{guard.md(exc.field)}**: {guard.md(guard.redact(exc.message))}"
    else:
        message = guard.md(guard.redact(exc))
    st.error(f"{what}: {message}" if what else message, icon=":material/error:")


# --- the corpus -----------------------------------------------------------------------------------

@st.cache_resource(show_spinner="Loading the corpus…")
def _builtin() -> tuple[Corpus, str]:
    corpus = load_corpus("shakespeare")
    return corpus, corpus_fingerprint(corpus)


def _corpus() -> tuple[Corpus, str, str]:
    """(corpus, its fingerprint, a label) of the picked source, or a CorpusError saying what to do."""
    ss = st.session_state
    if ss[P + "corpus_source"] == BUILTIN:
        corpus, fingerprint = _builtin()
        return corpus, fingerprint, "shakespeare"
    upload = ss.get(P + "upload")
    if upload is None:
        raise CorpusError("choose a .txt file to upload, or pick the built-in Shakespeare")
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    cached = ss.get(P + "upload_corpus")
    if cached is None or cached[0] != digest:  # one upload kept per session: reading it again is free
        corpus = corpus_from_text(check_upload(data), name="upload")
        cached = (digest, corpus, corpus_fingerprint(corpus))
        ss[P + "upload_corpus"] = cached
    label = (Path(upload.name).name or "upload.txt")[:80]
    return cached[1], cached[2], label


# --- the settings -----------------------------------------------------------------------------------

def _init_state() -> None:
    ss = st.session_state
    ss.setdefault(P + "corpus_source", BUILTIN)
    ss.setdefault(P + "kind", "bpe")
    ss.setdefault(P + "val_fraction", 0.1)
    ss.setdefault(P + "text", SAMPLE)
    tf.init_state(P)  # specials: 'all' (a kept tokenizer serves every objective), 'objective' for 'pretrained'


def _config(kind: str) -> tuple[TokenizerConfig | None, ConfigError | None]:
    """The family's settings as a config, or the ConfigError to show next to its field (a visitor
    from another machine: a Hub name only, a teaching BPE within the cap)."""
    try:
        config = tokenizer_config_class(kind)(kind=kind, **tf.settings(P, kind))
        tf.check_visitor(config)
        tf.check_cost(config)
        return config, None
    except ConfigError as exc:
        return None, exc


def _label(config: TokenizerConfig, corpus: str, val_fraction: float) -> str:
    """'bpe 512 · shakespeare' or 'pretrained gpt2 · shakespeare' (a folder by its last part), with
    the settings that differ from this page's defaults."""
    defaults = {f.name: tf.default(config.kind, f) for f in tf.family_fields(config.kind)}
    extra = [f"{k}={v}" for k, v in config.to_dict().items() if k not in ("kind", "vocab_size", "pretrained")
             and k in defaults and v != defaults[k]]
    if val_fraction != 0.1:
        extra.append(f"val={val_fraction:g}")
    name = getattr(config, "pretrained", None)
    head = f"{config.kind} {tf.display_name(name)}" if name else config.describe()
    return " ".join([head, *extra]) + f" · {corpus}"


def _session_label(config: TokenizerConfig, corpus: str, val_fraction: float, trained: dict[str, Trained]) -> str:
    """:func:`_label`, numbered when a different published tokenizer already has it (two folders of
    the same name): training the same one again replaces it, another one never does."""
    base = label = _label(config, corpus, val_fraction)
    n = 1
    while label in trained and getattr(trained[label].tok.config, "pretrained", None) != getattr(config, "pretrained", None):
        n += 1
        label = f"{base} ({n})"
    return label


# --- actions (callbacks: they run before the page is drawn, so every part of it agrees) ----------

def _keep() -> None:
    ss = st.session_state
    entry = ss.get(P + "trained", {}).get(ss.get(P + "current"))
    name = (ss.get(P + "keep_name") or "").strip()
    if entry is None:
        ss[P + "keep_result"] = ("error", "Train a tokenizer first.")
        return
    try:
        TokenizerLibrary().save(name, entry.tok, corpus=entry.corpus, corpus_hash=entry.corpus_hash,
                                stats=entry.stats.summary(), overwrite=bool(ss.get(P + "overwrite")))
    except (TokenizerError, OSError) as exc:
        ss[P + "keep_result"] = ("error", guard.md(guard.redact(exc)))
    else:
        ss[P + "keep_result"] = ("success", f"Kept as {guard.code(name)}. Pick **kept: {guard.md(name)}** as the "
                                            "tokenizer on the **Train** page to use it in a run.")


def _delete(name: str) -> None:
    try:
        TokenizerLibrary().delete(name)
    except (TokenizerError, OSError) as exc:
        st.session_state[P + "delete_result"] = ("error", guard.md(guard.redact(exc)))
    else:
        st.session_state[P + "delete_result"] = (
            "success", f"Deleted {guard.code(name)}. Runs that used it keep their own copy.")


def _show(result: tuple[str, str] | None) -> None:
    if result is not None:
        kind, text = result
        (st.error if kind == "error" else st.success)(
            text, icon=":material/error:" if kind == "error" else ":material/check_circle:")


# --- page -------------------------------------------------------------------------------------------

_init_state()
ss = st.session_state
trained: OrderedDict[str, Trained] = ss.setdefault(P + "trained", OrderedDict())

st.title("Tokenizers")
st.caption(
    "How text becomes tokens decides what a model sees, how long its sequences are and how big its "
    "embedding is. Train a tokenizer on a corpus, look at how it cuts a sentence, compare it with others, "
    "and keep the one you like: the **Train** page then offers it as 'kept: NAME'."
)

st.subheader("Train a tokenizer", divider="gray")
c_corpus, c_family = st.columns([2, 3], gap="large")
with c_corpus:
    st.radio("Corpus", [BUILTIN, UPLOAD], key=P + "corpus_source")
    st.file_uploader(
        f"Your .txt file (UTF-8, up to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)", type=["txt"], key=P + "upload",
        max_upload_size=MAX_UPLOAD_BYTES // (1024 * 1024),
        help="Used when the corpus is 'Upload a .txt file'. It stays in this browser session: nothing is stored "
             "unless you keep the tokenizer (and then only the tokenizer).",
    )
    st.number_input("Validation fraction", 0.01, 0.49, step=0.01, format="%.2f", key=P + "val_fraction",
                    help="Held out from the end of each source; the statistics are measured on it.")
with c_family:
    st.selectbox("Tokenizer family", tf.TRAINABLE, key=P + "kind",
                 help="Each family has its own settings; 'saved' is not here: kept tokenizers are listed below.")
    kind = ss[P + "kind"]
    st.caption(guard.md(TOKENIZERS[kind].description))
    config, config_error = _config(kind)
    error = (config_error.field, config_error.message) if config_error is not None else None
    fields = tf.render(P, kind, per_row=3, error=error)
    if error is not None and error[0] not in {f.name for f in fields}:
        tf.show_error(*error)

if st.button("Train", key=P + "train", type="primary", icon=":material/model_training:", help=TRAIN_HELP):
    if config is None:
        st.error(f"Nothing was trained: fix **{guard.md(config_error.field)}** above.", icon=":material/error:")
    else:
        try:
            corpus, fingerprint, corpus_label = _corpus()
            tf.check_cost(config, len(corpus))  # a visitor from another machine: the teaching BPE within the cap
            val_fraction = float(ss[P + "val_fraction"])
            with st.spinner(f"Training {kind} on {guard.md(corpus_label)}…" + (" (unigram: about 15-20 s on the "
                            "built-in corpus)" if kind == "unigram" else "")):
                tok, stats = train_and_measure(config, corpus, val_fraction)
        except (TokenizerError, ConfigError, CorpusError, OSError) as exc:
            _md_error("Nothing was trained", exc)
        else:
            label = _session_label(config, corpus_label, val_fraction, trained)
            trained.pop(label, None)
            version = ss.get(P + "serial", 0) + 1
            ss[P + "serial"] = version
            trained[label] = Trained(tok, stats, corpus_label, fingerprint, val_fraction, version)
            while len(trained) > SESSION_TOKENIZERS:
                trained.popitem(last=False)
            ss[P + "current"] = label
            ss.pop(P + "keep_result", None)

current = ss.get(P + "current")
entry = trained.get(current) if current else None
library = TokenizerLibrary()
kept = library.list()

# --- the tokenizer just trained ---------------------------------------------------------------------

if entry is not None:
    s = entry.stats.summary()
    st.subheader(f"{guard.md(current)}", divider="gray")
    m = st.columns(5)
    m[0].metric("Characters per token", f"{s['chars_per_token']:.2f}",
                help="Compression on the validation split: higher means shorter sequences.")
    m[1].metric("Vocabulary used", f"{s['vocab_used']:,} / {s['vocab_size']:,}",
                help=f"{s['vocab_usage']:.1%} of the vocabulary appears in the validation text.")
    m[2].metric("[UNK] rate", f"{s['unk_rate']:.2%}",
                help="Tokens of the validation text that are [UNK]: text the model can never see.")
    m[3].metric("Tokens per line p50 / p90 / max",
                f"{s['tokens_per_line_p50']} / {s['tokens_per_line_p90']} / {s['tokens_per_line_max']}",
                help="How long each non-empty line of the validation text gets.")
    m[4].metric("Training time", f"{s['train_seconds']:.2f} s")
    st.caption(f"Measured on the validation split of {guard.md(entry.corpus)}: {s['chars']:,} characters, "
               f"{s['tokens']:,} tokens, {s['lines']:,} lines the tokenizer never learned from.")

# --- a sentence, token by token ---------------------------------------------------------------------

if entry is not None or kept:
    st.subheader("A sentence, token by token", divider="gray")
    st.text_area("Text to tokenize", key=P + "text", height=90, max_chars=MAX_TEXT,
                 help="Each token gets its own colour; hover one for its id. A red outline marks [UNK].")
    text = ss[P + "text"]
    if entry is not None:
        n = len(entry.tok.encode(text))
        st.html(token_html(entry.tok, text))
        st.caption(f"{n} tokens for {len(text)} characters ({guard.md(current)}).")
        merges = getattr(entry.tok, "merges", None)
        if entry.tok.kind == "teaching-bpe" and merges is not None:
            st.markdown("**BPE merge by merge.** The tokenizer starts from the text's bytes and applies its merges "
                        "in the order it learned them; move the slider to use only the first k.")
            if not merges:
                st.info("This tokenizer learned no merges: raise its vocabulary size above 256 plus its special "
                        "tokens.", icon=":material/info:")
            else:
                if ss.get(P + "k") is None or ss[P + "k"] > len(merges):
                    ss[P + "k"] = len(merges)
                k = st.slider("Merges used (k)", 0, len(merges), key=P + "k",
                              help="k = 0: one piece per byte; the last row uses every merge learned.")
                st.html(merges_html(entry.tok, text, sorted({0, k, len(merges)})))
                with st.expander(f"The first {min(MERGES_SHOWN, len(merges))} merges, in the order learned"):
                    st.html(table_html(merges_table(entry.tok, MERGES_SHOWN)))

# --- keep it ------------------------------------------------------------------------------------------

if entry is not None:
    st.subheader("Keep it", divider="gray")
    bar = st.columns([3, 2, 1], vertical_alignment="bottom")
    bar[0].text_input("Keep as", key=P + "keep_name", max_chars=64, placeholder="e.g. shakespeare-bpe-512",
                      help="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.")
    bar[1].checkbox("Overwrite a kept tokenizer of the same name", key=P + "overwrite")
    bar[2].button("Keep", key=P + "keep", icon=":material/bookmark_add:", on_click=_keep,
                  help=f"Keeps {guard.md(current)} under `$WORKBENCH_HOME/tokenizers` (ours and Hugging Face's format).")
    _show(ss.pop(P + "keep_result", None))

# --- compare ------------------------------------------------------------------------------------------

kept_cache: dict[str, tuple[float, Tokenizer]] = ss.setdefault(P + "kept_cache", {})


def _kept_tokenizer(name: str, created: float) -> Tokenizer:
    hit = kept_cache.get(name)
    if hit is None or hit[0] != created:
        hit = (created, library.load(name))
        kept_cache[name] = hit
    return hit[1]


candidates: dict[str, tuple[Any, Any]] = {label: ("session", t) for label, t in reversed(trained.items())}
candidates.update({f"kept: {k.name}": ("kept", k) for k in kept})
if candidates:
    st.subheader("Compare", divider="gray")
    options = list(candidates)
    known = ss.get(P + "cmp_options")
    if known != options:  # new or removed tokenizers: keep the choice, add the new ones
        before = [o for o in ss.get(P + "cmp", []) if o in candidates]
        added = [o for o in options if o not in (known or [])]
        ss[P + "cmp"] = (before + [o for o in added if o not in before])[:6]
        ss[P + "cmp_options"] = options
    picked = st.multiselect("Tokenizers", options, key=P + "cmp",
                            help="Tokenizers trained in this session (newest first) and the kept ones.")
    tokenizers: dict[str, Tokenizer] = {}
    versions: dict[str, Any] = {}
    for name in picked:
        where, item = candidates[name]
        if where == "session":
            tokenizers[name], versions[name] = item.tok, item.version
        else:
            try:
                tokenizers[name], versions[name] = _kept_tokenizer(item.name, item.created), item.created
            except (TokenizerError, OSError, ValueError) as exc:
                st.error(f"Could not load {guard.code(item.name)}: {guard.md(guard.redact(exc))}", icon=":material/error:")
    if tokenizers:
        text = ss[P + "text"]
        st.html(side_by_side_html(tokenizers, text))
        try:
            corpus, fingerprint, corpus_label = _corpus()
        except CorpusError as exc:
            st.info(f"Tokens per line need a corpus: {guard.md(exc)}.", icon=":material/info:")
        else:
            val_fraction = float(ss[P + "val_fraction"])
            where = (fingerprint, val_fraction)
            cache = ss.get(P + "stats_cache")
            if cache is None or cache[0] != where:
                cache = (where, {})
                ss[P + "stats_cache"] = cache
            stats: dict[str, TokenizerStats] = {}
            val_texts: list[str] | None = None
            with st.spinner("Measuring them on the validation split…"):
                for name, tok in tokenizers.items():
                    key = (name, versions[name])
                    if key not in cache[1]:
                        where_from, item = candidates[name]
                        if where_from == "session" and (item.corpus_hash, item.val_fraction) == where:
                            cache[1][key] = item.stats  # measured on this very text when it was trained
                        else:
                            if val_texts is None:
                                val_texts = [d.text for d in corpus.split(val_fraction)[1].documents]
                            cache[1][key] = tokenizer_stats(tok, val_texts)
                    stats[name] = cache[1][key]
            st.dataframe(
                pd.DataFrame([{"tokenizer": name, "vocabulary": tokenizers[name].vocab_size,
                               "chars/token": s.chars_per_token, "[UNK] rate": s.unk_rate,
                               "tokens/line p50": s.percentile(50), "p90": s.percentile(90),
                               "max": max(s.line_lengths, default=0)} for name, s in stats.items()]),
                hide_index=True,
                column_config={"chars/token": st.column_config.NumberColumn(format="%.2f"),
                               "[UNK] rate": st.column_config.NumberColumn(format="percent")},
            )
            st.caption(f"All measured on the same text: the validation split of {guard.md(corpus_label)}.")
            st.plotly_chart(length_histogram(stats), key=P + "histogram")
            # one line per family (each published tokenizer on its own): what a bigger vocabulary buys
            st.plotly_chart(compression_figure([
                {"kind": name if tokenizers[name].kind == "pretrained" else tokenizers[name].kind,
                 "vocab_size": tokenizers[name].vocab_size, "chars_per_token": s.chars_per_token, "unk_rate": s.unk_rate}
                for name, s in stats.items()]), key=P + "compression")

# --- kept tokenizers ----------------------------------------------------------------------------------

st.subheader("Kept tokenizers", divider="gray")
_show(ss.pop(P + "delete_result", None))
if not kept:
    st.info("None yet. Train one above and keep it by name; runs can then use it (Train page: 'kept: NAME').",
            icon=":material/info:")
tz, _tz_label = common.viewer_timezone()
for k in kept:
    row = st.columns([5, 1], vertical_alignment="center")
    cpt = k.stats.get("chars_per_token")
    created = common.local_time(k.created, tz)
    row[0].markdown(
        f"{guard.code(k.name)} · {guard.md(k.kind)}, {k.vocab_size:,} tokens"
        + (f", {cpt:.2f} chars/token" if cpt else "")
        + (f" · from {guard.md(Path(k.corpus).name)}" if k.corpus else "")
        + (f" · {created:%Y-%m-%d %H:%M}" if created else "")
    )
    row[1].button("Delete", key=f"{P}del_{k.name}", icon=":material/delete:", on_click=_delete, args=(k.name,),
                  help="Runs that used it keep their own copy.")
