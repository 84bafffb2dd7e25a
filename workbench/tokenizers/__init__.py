"""Tokenizers: one interface (``base.Tokenizer``), one file per family, one registry line each.

=================  =========================================================================
``char``           one token per character (nanoGPT's shakespeare-char)
``word``           whole words, ``min_freq`` and a size cap, [UNK] for the rest
``teaching-bpe``   byte-level BPE written from scratch for reading; records every merge
``bpe``            byte-level BPE with HF ``tokenizers`` (the fast path)
``wordpiece``      BERT's WordPiece with HF ``tokenizers``
``unigram``        SentencePiece's unigram LM with HF ``tokenizers``
``pretrained``     ``AutoTokenizer.from_pretrained(name_or_dir)``
``saved``          a tokenizer trained earlier and kept by name (``library``)
=================  =========================================================================

A run's config picks one in its ``tokenizer`` section (``kind`` plus the family's settings);
:func:`build_tokenizer` turns that section into a tokenizer, trained on the training split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import require
from .base import (
    CLS,
    MASK,
    PAD,
    SEP,
    SPECIAL_TOKENS,
    UNK,
    Encoding,
    Tokenizer,
    TokenizerConfig,
    TokenizerError,
    sentinel_tokens,
)
from .char import CharConfig, CharTokenizer
from .hf import BPEConfig, BPETokenizer, HFTokenizer, UnigramConfig, UnigramTokenizer, WordConfig, WordPieceConfig, WordPieceTokenizer, WordTokenizer
from .pretrained import PretrainedConfig, PretrainedTokenizer
from .teaching_bpe import TeachingBPEConfig, TeachingBPETokenizer

TOKENIZERS: dict[str, type[Tokenizer]] = {
    "char": CharTokenizer,
    "word": WordTokenizer,
    "teaching-bpe": TeachingBPETokenizer,
    "bpe": BPETokenizer,
    "wordpiece": WordPieceTokenizer,
    "unigram": UnigramTokenizer,
    "pretrained": PretrainedTokenizer,
}
"""Every family by its ``kind``."""


@dataclass
class SavedConfig(TokenizerConfig):
    """Reuse a tokenizer kept by name (``workbench tokenizers train --save NAME``, or the
    dashboard's Tokenizers page) instead of training one. It keeps the special tokens it was
    trained with (``specials`` and ``sentinels`` here do not change it); the run is refused if
    the objective needs one it lacks."""

    kind: str = "saved"
    saved_name: str = ""
    """Name of the kept tokenizer (``workbench tokenizers list`` shows them)."""

    def describe(self) -> str:
        return f"saved:{self.saved_name}"

    def check_name(self) -> None:
        """Checked when the tokenizer is needed, not at construction: ``--tokenizer saved`` comes before ``--saved-name``."""
        require(bool(self.saved_name.strip()), "saved_name",
                "is empty; name a kept tokenizer (see `python -m workbench tokenizers list`)")


KINDS: tuple[str, ...] = (*TOKENIZERS, "saved")
"""Every ``tokenizer.kind`` a config may name."""


def tokenizer_config_class(kind: str) -> type[TokenizerConfig]:
    """The settings dataclass of a family, by ``kind``."""
    require(kind in KINDS, "tokenizer", f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")
    return SavedConfig if kind == "saved" else TOKENIZERS[kind].config_cls


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer saved with :meth:`Tokenizer.save`."""
    kind = d.get("kind")
    if kind not in TOKENIZERS:
        raise TokenizerError(f"unknown tokenizer kind {kind!r} in saved file; expected one of {', '.join(TOKENIZERS)}")
    return TOKENIZERS[kind].from_dict(d)


def build_tokenizer(config: TokenizerConfig, text: str, needed: Sequence[str] = (), home: Path | None = None) -> Tokenizer:
    """The tokenizer a config's ``tokenizer`` section describes, trained on ``text`` (a training
    split), with the special tokens an objective ``needed``; a kept one is loaded instead (from
    ``home``'s library, default ``$WORKBENCH_HOME``).

    >>> tok = build_tokenizer(WordConfig(vocab_size=20, min_freq=2), "to be or not to be", needed=[MASK])
    >>> tok.special_tokens, tok.tokens("to be or")
    (('[UNK]', '[MASK]'), ['to', 'be', '[UNK]'])
    """
    if isinstance(config, SavedConfig):
        from .library import TokenizerLibrary

        config.check_name()
        tok = TokenizerLibrary(home).load(config.saved_name)
        missing = [t for t in needed if t not in tok.special_tokens]
        if missing:
            raise TokenizerError(f"kept tokenizer {config.saved_name!r} has no {' '.join(missing)}, which the objective "
                                 f"needs; train it again with specials='all' (and sentinels if needed)")
        return tok
    cls = TOKENIZERS[config.kind]
    specials = config.special_tokens(needed)
    config.check_vocab(specials)
    return cls.train(text, config, specials)


def train_tokenizer(kind: str, text: str, vocab_size: int | None = None, special_tokens: Sequence[str] = (),
                    **settings: Any) -> Tokenizer:
    """Shorthand: ``train_tokenizer("wordpiece", text, 1000)``.

    >>> train_tokenizer("char", "abcab").vocab_size  # a, b, c and [UNK]
    4
    """
    cls = tokenizer_config_class(kind)
    if vocab_size is not None and "vocab_size" in {f.name for f in cls.user_fields()}:  # char has none
        settings["vocab_size"] = vocab_size
    return build_tokenizer(cls(kind=kind, **settings), text, special_tokens)


__all__ = [
    "CLS", "KINDS", "MASK", "PAD", "SEP", "SPECIAL_TOKENS", "TOKENIZERS", "UNK",
    "BPEConfig", "BPETokenizer", "CharConfig", "CharTokenizer", "Encoding", "HFTokenizer", "PretrainedConfig",
    "PretrainedTokenizer", "SavedConfig", "TeachingBPEConfig", "TeachingBPETokenizer", "Tokenizer", "TokenizerConfig",
    "TokenizerError", "UnigramConfig", "UnigramTokenizer", "WordConfig", "WordPieceConfig", "WordPieceTokenizer",
    "WordTokenizer", "build_tokenizer", "sentinel_tokens", "tokenizer_config_class", "tokenizer_from_dict",
    "train_tokenizer",
]
