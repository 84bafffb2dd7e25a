"""How a tokenizer does on held-out text: compression, vocabulary use, [UNK] rate, sequence lengths.

Measured on the validation split (text the tokenizer never learned from), so a vocabulary that
memorised its training text does not look better than it is.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .base import Tokenizer, TokenizerConfig


@dataclass
class TokenizerStats:
    """Statistics of a tokenizer on some texts."""

    kind: str
    vocab_size: int
    chars: int
    tokens: int
    chars_per_token: float
    """Compression: characters per token (higher = shorter sequences = cheaper training)."""
    vocab_used: int
    """Distinct token ids that appear in the text."""
    vocab_usage: float
    """``vocab_used / vocab_size``: how much of the vocabulary the text needs."""
    unk_tokens: int
    unk_rate: float
    """Fraction of tokens that are the unknown token (information the model can never see)."""
    line_lengths: list[int] = field(default_factory=list)
    """Tokens in each non-empty line: the sequence-length distribution."""
    train_seconds: float = 0.0

    def percentile(self, q: float) -> int:
        """A percentile of :attr:`line_lengths` (nearest rank).

        >>> TokenizerStats("x", 1, 1, 1, 1.0, 1, 1.0, 0, 0.0, [1, 2, 3, 4]).percentile(50)
        2
        """
        if not self.line_lengths:
            return 0
        ranked = sorted(self.line_lengths)
        return ranked[max(0, min(len(ranked) - 1, int(round(q / 100 * len(ranked))) - 1))]

    def summary(self) -> dict[str, Any]:
        """The headline figures as a flat dict (tables, meta.json, the CLI)."""
        d = {k: v for k, v in asdict(self).items() if k != "line_lengths"}
        d.update(lines=len(self.line_lengths), tokens_per_line_p50=self.percentile(50),
                 tokens_per_line_p90=self.percentile(90), tokens_per_line_max=max(self.line_lengths, default=0))
        return d


def tokenizer_stats(tok: Tokenizer, texts: Sequence[str], train_seconds: float = 0.0) -> TokenizerStats:
    """Statistics of ``tok`` on ``texts`` (documents of a validation split).

    >>> from workbench.tokenizers import train_tokenizer
    >>> s = tokenizer_stats(train_tokenizer("word", "to be or not to be", 20, min_freq=2), ["to be or not"])
    >>> s.tokens, s.unk_tokens, round(s.chars_per_token, 2)
    (4, 2, 3.0)
    """
    ids = [i for seq in tok.encode_batch(list(texts)) for i in seq]
    unk = tok.unk_id
    n_unk = sum(1 for i in ids if i == unk) if unk is not None else 0
    chars = sum(len(t) for t in texts)
    lines = [line for t in texts for line in t.split("\n") if line.strip()]
    used = len(set(ids))
    return TokenizerStats(
        kind=tok.kind, vocab_size=tok.vocab_size, chars=chars, tokens=len(ids),
        chars_per_token=chars / len(ids) if ids else 0.0, vocab_used=used, vocab_usage=used / tok.vocab_size,
        unk_tokens=n_unk, unk_rate=n_unk / len(ids) if ids else 0.0,
        line_lengths=[len(x) for x in tok.encode_batch(lines)] if lines else [], train_seconds=train_seconds)


def train_and_measure(config: TokenizerConfig, corpus: Any, val_fraction: float = 0.1,
                      needed: Sequence[str] = ()) -> tuple[Tokenizer, TokenizerStats]:
    """Train on a corpus's training split and measure on its validation split (the tokenizer lab).

    ``corpus`` is a :class:`~workbench.corpora.Corpus` or a corpus name / ``.txt`` path.
    """
    from ..corpora import Corpus, load_corpus
    from . import build_tokenizer

    if not isinstance(corpus, Corpus):
        corpus = load_corpus(corpus)
    train, val = corpus.split(val_fraction)
    start = time.perf_counter()
    tok = build_tokenizer(config, train.text, needed)
    seconds = time.perf_counter() - start
    return tok, tokenizer_stats(tok, [d.text for d in val.documents], seconds)
