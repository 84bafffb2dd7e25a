"""From a :class:`RunConfig` to everything a run trains with: corpus -> split -> tokenizer ->
tokenized documents -> objective data and the fixed evaluation set -> model.

Also the cheap checks a form or the CLI runs before a process is started (:func:`preflight`)
and the parameter count of a config without building anything (:func:`count_parameters`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .config import ConfigError, RunConfig, needed_special_tokens
from .corpora import BUILTIN_CORPORA, Corpus, CorpusError, corpus_fingerprint, corpus_from_text, load_corpus, read_text_file
from .models import LanguageModel, build_model
from .objectives import EvalSet, Objective, TokenizedCorpus, TokenizedDoc, build_objective
from .tokenizers import CharConfig, PretrainedConfig, SavedConfig, Tokenizer, TokenizerError, build_tokenizer

PROBE_TOKENS = 48
"""Tokens of validation text on which attention is captured at every evaluation."""


@dataclass
class Experiment:
    """Everything built from a config, before training."""

    config: RunConfig
    tokenizer: Tokenizer
    objective: Objective
    train_data: Any
    eval_set: EvalSet
    probe_ids: list[int]
    model: LanguageModel
    corpus_hash: str
    """``corpora.corpus_fingerprint`` of the text it was built from (checked on resume)."""


def tokenize(tokenizer: Tokenizer, corpus: Corpus, char_lengths: bool = False) -> TokenizedCorpus:
    """Every document's ids (in one batch call: parallel for HF-backed tokenizers), and with
    ``char_lengths`` the characters each token spells (what bits per character divide by)."""
    texts = [d.text for d in corpus.documents]
    pairs = tokenizer.encode_with_lengths(texts) if char_lengths else [(i, None) for i in tokenizer.encode_batch(texts)]
    return TokenizedCorpus([TokenizedDoc(ids, d, lengths) for (ids, lengths), d in zip(pairs, corpus.documents)],
                           tokenizer.encode(corpus.separator) if corpus.separator else [],
                           special_ids={t: tokenizer.special_id(t) for t in tokenizer.special_tokens},
                           vocab_size=tokenizer.vocab_size)


def fit_tokenizer(cfg: RunConfig, train: Corpus, objective: Objective, home: Path | None = None) -> Tokenizer:
    """The tokenizer the config names, with the special tokens the objective needs. Every family
    learns from the training split only (what it learns is statistics of the text, which
    validation must not leak into): the objective's :meth:`~Objective.tokenizer_text` of it (a
    seq2seq task's sources and targets). Validation text it cannot spell becomes [UNK], and the
    tokenizer statistics report how often. A kept tokenizer comes from ``home``'s library (the
    run store's home; default ``$WORKBENCH_HOME``)."""
    return build_tokenizer(cfg.tokenizer, objective.tokenizer_text(train), needed_special_tokens(cfg), home=home)


def estimate_vocab_size(cfg: RunConfig, text: str | None = None, home: Path | None = None) -> int:
    """The vocabulary a config will get, before training it (for the parameter limit): for
    characters, exact (the training split's characters and the special tokens; ``text`` stands
    for the corpus when given, e.g. an upload not stored yet); a kept or published tokenizer's own
    size; otherwise the family's ``vocab_size`` setting (an upper bound)."""
    tok = cfg.tokenizer
    if isinstance(tok, CharConfig):
        corpus = corpus_from_text(text) if text is not None else load_corpus(cfg.data.corpus)
        train, _ = corpus.split(cfg.data.val_fraction)
        needed = needed_special_tokens(cfg)
        return len(set(build_objective(cfg.objective).tokenizer_text(train))) + len(tok.special_tokens(needed))
    if isinstance(tok, SavedConfig):
        from .tokenizers.library import TokenizerLibrary

        tok.check_name()
        return TokenizerLibrary(home).info(tok.saved_name).vocab_size
    if isinstance(tok, PretrainedConfig):
        return build_tokenizer(tok, "").vocab_size
    return int(tok.vocab_size)  # type: ignore[attr-defined]


def _check_lengths(train_tokens: int, eval_tokens: int, seq_len: int) -> None:
    if train_tokens <= seq_len:
        raise CorpusError(
            f"the corpus is too short: its training split has {train_tokens} tokens but each example needs "
            f"{seq_len + 1}; use a longer text, a smaller block_size / seq_len, or a smaller val_fraction"
        )
    if eval_tokens < 2:
        raise CorpusError(
            f"the corpus is too short: its validation text has {eval_tokens} token(s), too few to score; "
            f"use a longer text, a larger val_fraction or a larger eval_chars"
        )


def build_experiment(cfg: RunConfig, tokenizer: Tokenizer | None = None, home: Path | None = None) -> Experiment:
    """Load the corpus, split it, train (or reuse) the tokenizer, tokenize, build the model."""
    corpus = load_corpus(cfg.data.corpus)
    train, val = corpus.split(cfg.data.val_fraction)
    objective = build_objective(cfg.objective)
    tokenizer = tokenizer or fit_tokenizer(cfg, train, objective, home)
    objective.use_tokenizer(tokenizer)
    seq_len = cfg.seq_len
    train_tok = tokenize(tokenizer, train, char_lengths=objective.wants_char_lengths)
    passages = tokenize(tokenizer, Corpus(val.name, val.passages(cfg.data.eval_chars), val.separator),
                        char_lengths=True)
    _check_lengths(len(train_tok.stream()), passages.num_tokens, seq_len)
    eval_set = EvalSet(objective.eval_batches(passages, cfg.train.batch_size, seq_len))
    model_cfg = replace(cfg.model, vocab_size=tokenizer.vocab_size)
    cfg = replace(cfg, model=model_cfg)
    torch.manual_seed(cfg.train.seed)  # same seed, same initial weights
    model = build_model(model_cfg)
    first_val = passages.docs[0].doc.text if passages.docs else ""
    return Experiment(
        config=cfg,
        tokenizer=tokenizer,
        objective=objective,
        train_data=objective.prepare(train_tok),
        eval_set=eval_set,
        probe_ids=tokenizer.encode(first_val[: 8 * PROBE_TOKENS])[: min(PROBE_TOKENS, seq_len)],
        model=model,
        corpus_hash=corpus_fingerprint(corpus),
    )


PREFLIGHT_TOKENIZE_CHARS = 2_000_000
"""Below this size a subword tokenizer is trained in :func:`preflight` to count tokens exactly."""


def preflight(cfg: RunConfig, home: Path | None = None) -> None:
    """Cheap checks before a process is started, so a mistake is reported at once, inline:
    a user file that is missing, empty, not UTF-8 or too large, and a corpus too short for the
    context (exact for the char tokenizer and for small texts, where the tokenizer is trained
    here; a large text cannot be too short), documents the objective cannot use (one document
    for next-sentence pairs), and a kept or published tokenizer that cannot be loaded or lacks a
    special token the objective needs, and a file the objective names (a seq2seq task's TSV)."""
    cfg.objective.check_inputs()
    loaded = None
    if isinstance(cfg.tokenizer, (SavedConfig, PretrainedConfig)):  # loaded, not trained: check it now
        try:
            loaded = build_tokenizer(cfg.tokenizer, "", needed_special_tokens(cfg), home=home)
        except TokenizerError as exc:  # gone, unreadable, or without a special token the objective needs
            field = "saved_name" if isinstance(cfg.tokenizer, SavedConfig) else "pretrained"
            raise ConfigError(field, str(exc)) from exc
    if cfg.data.corpus in BUILTIN_CORPORA:
        return
    corpus = corpus_from_text(read_text_file(cfg.data.corpus))
    train, val = corpus.split(cfg.data.val_fraction)
    check_documents = getattr(build_objective(cfg.objective), "check_documents", None)
    if check_documents is not None:  # e.g. next-sentence pairs need two documents for their negatives
        check_documents(train.documents)
    passages = Corpus(val.name, val.passages(cfg.data.eval_chars), val.separator)
    if isinstance(cfg.tokenizer, CharConfig):  # one token per character: count without tokenizing
        _check_lengths(len(train), sum(len(p.text) for p in passages.documents), cfg.seq_len)
    elif len(corpus) <= PREFLIGHT_TOKENIZE_CHARS:
        tokenizer = loaded or fit_tokenizer(cfg, train, build_objective(cfg.objective), home)
        _check_lengths(len(tokenize(tokenizer, train).stream()), tokenize(tokenizer, passages).num_tokens, cfg.seq_len)


def count_parameters(cfg: RunConfig, vocab_size: int) -> int:
    """Parameters of the model a config describes, without building the data (for forms)."""
    with torch.device("meta"):
        model = build_model(replace(cfg.model, vocab_size=vocab_size))
    return model.num_parameters()
