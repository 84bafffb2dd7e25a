"""Families backed by Hugging Face ``tokenizers`` (Rust: the fast path for real use).

- ``bpe``: byte-level BPE (GPT-2's scheme): any text round-trips, nothing is unknown;
- ``wordpiece``: BERT's subwords (``play ##ing``), [UNK] for characters it never saw;
- ``unigram``: SentencePiece's unigram LM over ``▁``-marked pieces;
- ``word``: whole words from a regex, ``min_freq`` and a size cap, [UNK] for the rest (the
  vocabulary is counted here, in Python, so ``min_freq`` is exact and easy to read; encoding uses
  the same regex in Rust).

One wrapper, :class:`HFTokenizer`, holds any ``tokenizers.Tokenizer``; each family only says how
it is trained. Special tokens go first (the trainer's ``special_tokens``), sentinels last
(added after training).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from ..config import require
from .base import UNK, Tokenizer, TokenizerConfig, TokenizerError, bert_post_processor, order_special_tokens

WORD_PATTERN = r"\w+|[^\w\s]|\n"
"""Words, single punctuation marks and line breaks; other whitespace is dropped."""


class HFTokenizer(Tokenizer):
    """Any ``tokenizers.Tokenizer`` behind our interface (subclasses say how to train one)."""

    kind: ClassVar[str] = "hf"

    def __init__(self, hf_tokenizer: Any, config: TokenizerConfig | None = None) -> None:
        hf_tokenizer.no_padding()  # a published tokenizer may pad or cut every text to 128 tokens
        hf_tokenizer.no_truncation()
        self._tok = hf_tokenizer
        added = sorted(hf_tokenizer.get_added_tokens_decoder().items())
        self.special_tokens = tuple(t.content for _, t in added if t.special)
        self.config = config

    @property
    def hf(self) -> Any:
        """The wrapped ``tokenizers.Tokenizer``."""
        return self._tok

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        return [(e.ids, e.offsets) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids only: the Rust side skips the offsets (2.5 s -> 0.9 s for the built-in corpus)."""
        return [e.ids for e in self._tok.encode_batch_fast(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, i: int) -> str:
        return self._tok.id_to_token(i)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    @property
    def unk_id(self) -> int | None:
        """The model's own unknown token (a published tokenizer may call it ``<unk>``)."""
        name = getattr(self._tok.model, "unk_token", None)
        if isinstance(name, str) and self._tok.token_to_id(name) is not None:
            return self._tok.token_to_id(name)
        unk_id = getattr(self._tok.model, "unk_id", None)  # Unigram names it by id
        return unk_id if isinstance(unk_id, int) else super().unk_id

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "hf_tokenizer": json.loads(self._tok.to_str()), "config": self.config_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HFTokenizer:
        from tokenizers import Tokenizer as HFTok

        config = cls.config_cls.from_dict(d["config"]) if d.get("config") else None
        return cls(HFTok.from_str(json.dumps(d["hf_tokenizer"])), config)  # type: ignore[arg-type]

    def to_hf(self) -> Any:
        from tokenizers import Tokenizer as HFTok

        tok = HFTok.from_str(self._tok.to_str())
        processor = bert_post_processor(self)
        if processor is not None:
            tok.post_processor = processor
        return tok

    @classmethod
    def train(cls, text: str, config: TokenizerConfig, special_tokens: Sequence[str] = ()) -> HFTokenizer:
        if not text:
            raise TokenizerError(f"cannot train a {cls.kind} tokenizer on empty text; give it a corpus with some text")
        first, sentinels = order_special_tokens(special_tokens)
        tok = cls._train(text, config, first, len(sentinels))
        tok.add_special_tokens(sentinels)  # after training: the top ids, <extra_id_0> last
        return cls(tok, config)

    @classmethod
    def _train(cls, text: str, config: Any, special_tokens: list[str], n_sentinels: int) -> Any:
        """The family's recipe: a trained ``tokenizers.Tokenizer`` with ``special_tokens`` as its
        first ids, leaving ``n_sentinels`` ids of ``config.vocab_size`` for the sentinels."""
        raise NotImplementedError(f"{cls.__name__} is loaded, not trained; families override _train")


def check_min_freq(config: Any) -> None:
    """``min_freq`` is a count: an integer >= 1."""
    value = config.min_freq
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 1, "min_freq",
            f"must be an integer >= 1, got {value!r}")


def _chunks(text: str, lines_per_chunk: int = 1000):
    """The text in pieces of whole lines: trainers count words per item, so this only saves memory."""
    lines = text.split("\n")
    for i in range(0, len(lines), lines_per_chunk):
        yield "\n".join(lines[i:i + lines_per_chunk]) + ("\n" if i + lines_per_chunk < len(lines) else "")


# --- byte-level BPE -------------------------------------------------------------------------------

@dataclass
class BPEConfig(TokenizerConfig):
    """Byte-level BPE trained with HF ``tokenizers`` (GPT-2's scheme)."""

    min_vocab: ClassVar[int] = 256
    floor_reason: ClassVar[str] = "256 byte tokens"

    kind: str = "bpe"
    vocab_size: int = 512
    """Vocabulary size, special tokens included (the learned merges fill what the 256 bytes leave)."""
    min_freq: int = 2
    """A pair is merged only if it occurs at least this many times."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_min_freq(self)


class BPETokenizer(HFTokenizer):
    """Byte-level BPE (GPT-2 style) trained with Hugging Face ``tokenizers``.

    >>> tok = BPETokenizer.train("the cat sat on the mat " * 50, BPEConfig(vocab_size=270))
    >>> tok.decode(tok.encode("the hat")) == "the hat"
    True
    """

    kind = "bpe"
    config_cls = BPEConfig
    lossless = True
    description = "byte-level BPE, HF tokenizers (GPT-2's scheme; nothing is unknown)"

    @classmethod
    def _train(cls, text: str, config: BPEConfig, special_tokens: list[str], n_sentinels: int) -> Any:
        from tokenizers import Tokenizer as HFTok
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = HFTok(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=config.vocab_size - n_sentinels, min_frequency=config.min_freq,
                                      special_tokens=special_tokens, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(_chunks(text), trainer=trainer)
        return tok

    def display_token(self, i: int) -> str:
        """Byte-level symbols shown as text: 'Ġthe' -> ' the', 'Ċ' -> '\\n'."""
        tok = self._tok.id_to_token(i)
        return tok if tok in self.special_tokens else self._tok.decoder.decode([tok])


# --- WordPiece ------------------------------------------------------------------------------------

@dataclass
class WordPieceConfig(TokenizerConfig):
    """BERT's WordPiece, trained with HF ``tokenizers``."""

    min_vocab: ClassVar[int] = 30

    kind: str = "wordpiece"
    vocab_size: int = 2048
    """Vocabulary size, special tokens included (every character of the training text is kept, so
    a text with a large alphabet can end up larger)."""
    min_freq: int = 2
    """A pair is merged only if it occurs at least this many times."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_min_freq(self)
    lowercase: bool = False
    """Lowercase the text first (BERT 'uncased')."""


class WordPieceTokenizer(HFTokenizer):
    """Words split on whitespace and punctuation, then into ``##``-continued subwords."""

    kind = "wordpiece"
    config_cls = WordPieceConfig
    required_specials = (UNK,)
    description = "BERT's WordPiece, HF tokenizers (word ##piece; [UNK] for unseen characters)"

    @classmethod
    def _train(cls, text: str, config: WordPieceConfig, special_tokens: list[str], n_sentinels: int) -> Any:
        from tokenizers import Tokenizer as HFTok
        from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

        tok = HFTok(models.WordPiece(unk_token=UNK))
        tok.normalizer = normalizers.BertNormalizer(lowercase=config.lowercase, strip_accents=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=config.vocab_size - n_sentinels, min_frequency=config.min_freq,
                                            special_tokens=special_tokens, show_progress=False)
        tok.train_from_iterator(_chunks(text), trainer=trainer)
        return tok


# --- Unigram --------------------------------------------------------------------------------------

@dataclass
class UnigramConfig(TokenizerConfig):
    """SentencePiece's unigram language model, trained with HF ``tokenizers``."""

    min_vocab: ClassVar[int] = 30

    kind: str = "unigram"
    vocab_size: int = 2048
    """Vocabulary size, special tokens included; at least the number of distinct characters."""


class UnigramTokenizer(HFTokenizer):
    """Pieces chosen by a unigram LM (prune the pieces that least lower the likelihood), ``▁`` for spaces."""

    kind = "unigram"
    config_cls = UnigramConfig
    required_specials = (UNK,)
    description = "SentencePiece's unigram LM, HF tokenizers (▁ marks a space)"

    @classmethod
    def _train(cls, text: str, config: UnigramConfig, special_tokens: list[str], n_sentinels: int) -> Any:
        from tokenizers import Tokenizer as HFTok
        from tokenizers import decoders, models, pre_tokenizers, trainers

        tok = HFTok(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=config.vocab_size - n_sentinels, special_tokens=special_tokens,
                                          unk_token=UNK, show_progress=False)
        # line by line (long items make its seed-piece search much slower: 10 s vs 4 s per 1M
        # characters), each with its newline, so line breaks are in the vocabulary
        lines = [line + "\n" for line in text.split("\n")]
        lines[-1] = lines[-1][:-1]
        try:
            tok.train_from_iterator(lines, trainer=trainer)
        except Exception as exc:  # the Rust trainer's only message for a vocabulary below the alphabet
            if "not large enough" not in str(exc):
                raise
            alphabet = len(set(text.replace(" ", "")))
            raise TokenizerError(f"unigram vocab_size={config.vocab_size} cannot hold the {alphabet} distinct characters "
                                 f"of the text plus the special tokens; raise vocab_size above "
                                 f"{alphabet + len(special_tokens) + n_sentinels}") from None
        return tok

    def display_token(self, i: int) -> str:
        tok = self._tok.id_to_token(i)
        return tok if tok in self.special_tokens else tok.replace("▁", " ")


# --- word-level -----------------------------------------------------------------------------------

@dataclass
class WordConfig(TokenizerConfig):
    """Whole words: the ``vocab_size`` most frequent that occur at least ``min_freq`` times."""

    min_vocab: ClassVar[int] = 10

    kind: str = "word"
    vocab_size: int = 8192
    """Largest vocabulary, special tokens included; the rarest words beyond it become [UNK]."""
    min_freq: int = 2
    """Words seen fewer times than this in training become [UNK] (a word seen once teaches little)."""
    lowercase: bool = False
    """Lowercase the text first ('The' and 'the' share a token)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_min_freq(self)


def word_vocabulary(counts: Counter[str], min_freq: int, max_words: int) -> list[str]:
    """The words kept: seen at least ``min_freq`` times, most frequent first (ties: first seen), at most ``max_words``.

    >>> word_vocabulary(Counter({"to": 2, "be": 2, "or": 1}), min_freq=2, max_words=10)
    ['to', 'be']
    """
    return [w for w, c in counts.most_common() if c >= min_freq][:max_words]


class WordTokenizer(HFTokenizer):
    """One token per word, punctuation mark or line break; unknown or rare words are [UNK]."""

    kind = "word"
    config_cls = WordConfig
    required_specials = (UNK,)
    description = "whole words (regex split; min_freq and a size cap; [UNK] for the rest)"

    @staticmethod
    def _pipeline(lowercase: bool) -> Any:
        from tokenizers import Regex, models, normalizers, pre_tokenizers
        from tokenizers import Tokenizer as HFTok

        tok = HFTok(models.WordLevel({UNK: 0}, unk_token=UNK))
        if lowercase:
            tok.normalizer = normalizers.Lowercase()
        # keep what the pattern matches, drop the rest (spaces, tabs)
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True)
        return tok

    @classmethod
    def split_words(cls, text: str, lowercase: bool = False) -> list[str]:
        """The words the vocabulary is counted over (the same split encoding uses).

        >>> WordTokenizer.split_words("ROMEO:\\nBut soft,  what light")
        ['ROMEO', ':', '\\n', 'But', 'soft', ',', 'what', 'light']
        """
        tok = cls._pipeline(lowercase)
        if lowercase:
            text = tok.normalizer.normalize_str(text)
        return [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(text)]

    @classmethod
    def _train(cls, text: str, config: WordConfig, special_tokens: list[str], n_sentinels: int) -> Any:
        from tokenizers import models

        counts = Counter(cls.split_words(text, config.lowercase))
        first = [*special_tokens] + ([UNK] if UNK not in special_tokens else [])
        words = word_vocabulary(counts, config.min_freq, config.vocab_size - len(first) - n_sentinels)
        first_specials, _ = order_special_tokens(first)
        vocab = {t: i for i, t in enumerate([*first_specials, *(w for w in words if w not in first_specials)])}
        tok = cls._pipeline(config.lowercase)
        tok.model = models.WordLevel(vocab, unk_token=UNK)
        tok.add_special_tokens(first_specials)
        return tok

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Words joined by spaces, none before punctuation or around line breaks (the split lost the spacing)."""
        out: list[str] = []
        for i in ids:
            w = self._tok.id_to_token(i)
            if skip_special_tokens and w in self.special_tokens:
                continue
            glue = not out or out[-1] == "\n" or w == "\n" or (len(w) == 1 and not w.isalnum() and w not in "([{\"")
            out.append(w if glue else " " + w)
        return "".join(out)

    def display_token(self, i: int) -> str:
        return self._tok.id_to_token(i)
