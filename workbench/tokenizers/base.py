"""The one interface every tokenizer family implements, and the rules they share.

A :class:`Tokenizer` turns text into ids and back, and knows, for every token, the characters
of the original text it covers (``offsets``): views colour the text by token, bits per character
divide by those characters, whole-word masking reads word boundaries from them.

Special tokens are the same in every family:

- ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (BERT's five), the ones a run needs, first in the
  vocabulary, in that order (ids 0, 1, ...);
- T5-style sentinels ``<extra_id_0>``, ``<extra_id_1>``... last: ``<extra_id_0>`` is the top id,
  counting down, as T5 places them.

``encode`` never adds special tokens (language modelling reads plain text);
:meth:`Tokenizer.encode_plus` adds them the way BERT does: ``[CLS] A [SEP]`` or
``[CLS] A [SEP] B [SEP]`` with segment ids (``type_ids``) 0 for A and 1 for B.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

from ..config import Section, require
from ..io import atomic_write

if TYPE_CHECKING:
    import tokenizers as hf

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK)
"""BERT's five special tokens, in the order they take the first ids."""

_SENTINEL = re.compile(r"<extra_id_(\d+)>")
MAX_VOCAB = 100_000
"""Largest vocabulary any trained family may ask for (an embedding row per token)."""


class TokenizerError(ValueError):
    """Text, a file or a setting the tokenizer cannot handle; the message says what to change."""


def sentinel_tokens(n: int) -> list[str]:
    """T5's sentinels.

    >>> sentinel_tokens(3)
    ['<extra_id_0>', '<extra_id_1>', '<extra_id_2>']
    """
    return [f"<extra_id_{i}>" for i in range(n)]


def order_special_tokens(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split special tokens into those that go first (BERT's five in their order, then any
    others in the order given) and the sentinels that go last (``<extra_id_0>`` on top).

    >>> order_special_tokens(["<extra_id_1>", "[MASK]", "<extra_id_0>", "[PAD]", "<eos>"])
    (['[PAD]', '[MASK]', '<eos>'], ['<extra_id_1>', '<extra_id_0>'])
    """
    seen = list(dict.fromkeys(tokens))
    sentinels = sorted((t for t in seen if _SENTINEL.fullmatch(t)), key=lambda t: -int(_SENTINEL.fullmatch(t)[1]))
    first = [t for t in SPECIAL_TOKENS if t in seen] + [t for t in seen if t not in SPECIAL_TOKENS and t not in sentinels]
    return first, sentinels


@dataclass
class Encoding:
    """One encoded text (or pair of texts): ids and, per token, where it came from."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    """``[start, end)`` characters in the text the token came from; ``(0, 0)`` for special tokens."""
    type_ids: list[int] = field(default_factory=list)
    """Segment of each token: 0 for the first text (and its [CLS]/[SEP]), 1 for the second."""
    special_mask: list[int] = field(default_factory=list)
    """1 where the token is a special token added by ``encode_plus``."""

    def __len__(self) -> int:
        return len(self.ids)


# --- settings ---------------------------------------------------------------------------------

@dataclass
class TokenizerConfig(Section):
    """Base of every tokenizer family's settings; ``kind`` picks the family (``tokenizers.TOKENIZERS``)."""

    section: ClassVar[str] = "tokenizer"
    min_vocab: ClassVar[int] = 0
    """Smallest vocabulary the family can have before special tokens (256 for byte-level)."""
    floor_reason: ClassVar[str] = ""

    kind: str = "char"
    """Tokenizer family: char, word, teaching-bpe, bpe, wordpiece, unigram, pretrained or saved."""
    specials: str = "objective"
    """'objective': only the special tokens the objective needs (plus [UNK] where the family
    needs one); 'all': always [PAD] [UNK] [CLS] [SEP] [MASK], so the tokenizer serves every objective."""
    sentinels: int = 0
    """T5-style <extra_id_i> tokens at the top of the vocabulary (span corruption asks for its own)."""

    def __post_init__(self) -> None:
        require(self.specials in ("objective", "all"), "specials",
                f"unknown {self.specials!r}; use 'objective' or 'all'")
        require(isinstance(self.sentinels, int) and 0 <= self.sentinels <= 1000, "sentinels",
                f"must be an integer in 0..1000, got {self.sentinels!r}")
        self.check_vocab(self.special_tokens())

    def required_specials(self) -> tuple[str, ...]:
        """Special tokens the family always has: [UNK] where text can hold what the vocabulary lacks."""
        from ..config import tokenizer_required_specials  # the registry: imported by the time a config is made

        return tokenizer_required_specials(self.kind)

    def special_tokens(self, needed: Sequence[str] = ()) -> list[str]:
        """The special tokens a tokenizer with these settings gets, in vocabulary order: what the
        objective ``needed``, what the family requires ([UNK]), BERT's five with ``specials='all'``,
        then the sentinels."""
        wanted = [*needed, *self.required_specials(), *(SPECIAL_TOKENS if self.specials == "all" else ()),
                  *sentinel_tokens(self.sentinels)]
        first, last = order_special_tokens(wanted)
        return first + last

    def check_vocab(self, special_tokens: Sequence[str]) -> None:
        """Raise a ConfigError naming the smallest and largest vocabulary this family allows."""
        size = getattr(self, "vocab_size", None)
        if size is None:
            return
        low = self.min_vocab + len(special_tokens)
        why = f" ({self.floor_reason} + {len(special_tokens)} special tokens)" if self.floor_reason else ""
        require(isinstance(size, int) and not isinstance(size, bool) and low <= size <= MAX_VOCAB, "vocab_size",
                f"{self.kind} needs a vocab_size between {low}{why} and {MAX_VOCAB}, got {size!r}")

    def describe(self) -> str:
        """A short label for tables, e.g. 'bpe 2048'."""
        size = getattr(self, "vocab_size", None)
        return f"{self.kind} {size}" if size else self.kind


# --- the interface ----------------------------------------------------------------------------

class Tokenizer(ABC):
    """Common interface. ``kind`` names the family in configs and saved files."""

    kind: ClassVar[str]
    config_cls: ClassVar[type[TokenizerConfig]] = TokenizerConfig
    lossless: ClassVar[bool] = False
    """``decode(encode(x)) == x`` for any text (byte-level) or any text over its alphabet (char)."""
    required_specials: ClassVar[tuple[str, ...]] = ()
    """Special tokens the family always has ([UNK] where a text can hold what the vocabulary lacks)."""
    description: ClassVar[str] = ""
    """One line for pickers and the notebook."""

    special_tokens: tuple[str, ...]
    config: TokenizerConfig | None = None
    """The settings it was trained with (None when built by hand)."""

    # -- training and persistence (per family) --

    @classmethod
    @abstractmethod
    def train(cls, text: str, config: TokenizerConfig, special_tokens: Sequence[str] = ()) -> Tokenizer:
        """Learn a vocabulary from ``text`` (a training split) with these settings and special tokens."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild it, JSON-ready, with ``"kind"``."""

    @classmethod
    @abstractmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokenizer: ...

    @abstractmethod
    def to_hf(self) -> hf.Tokenizer:
        """The same tokenizer as a Hugging Face ``tokenizers.Tokenizer`` (its ``tokenizer.json``)."""

    # -- the vocabulary --

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def id_to_token(self, i: int) -> str: ...

    @abstractmethod
    def token_to_id(self, token: str) -> int | None: ...

    def display_token(self, i: int) -> str:
        """The token as a person reads it (byte-level 'Ġthe' -> ' the'); attention axes use it."""
        return self.id_to_token(i)

    @property
    def unk_id(self) -> int | None:
        """Id of the unknown token, or None when the tokenizer has none (byte-level, char without [UNK])."""
        return self.token_to_id(UNK) if UNK in self.special_tokens else None

    def special_id(self, token: str) -> int:
        """Id of a special token, or an error saying how to get it."""
        i = self.token_to_id(token) if token in self.special_tokens else None
        if i is None:
            raise TokenizerError(f"this {self.kind} tokenizer has no {token} token; train it with "
                                 f"specials='all' (or an objective that needs {token})")
        return i

    # -- encoding --

    @abstractmethod
    def encode_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Ids and character offsets of each text, no special tokens added. The core every
        other encode method is built from."""

    def encode(self, text: str) -> list[int]:
        """Ids of one text, no special tokens added."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids of several texts (one call: parallel for the HF-backed families)."""
        return [ids for ids, _ in self.encode_offsets(texts)]

    def encode_with_lengths(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """Ids of each text and, per token, how many characters it completes (they sum to the
        text's length, so bits per character divide by the same characters whatever the
        tokenizer: text a token skips, such as spaces a word tokenizer drops, counts for the next
        token, and text after the last token for the last; a character split over several byte
        tokens counts for the first)."""
        out = []
        for text, (ids, offsets) in zip(texts, self.encode_offsets(texts)):
            lengths, done = [], 0
            for _, end in offsets:
                lengths.append(max(0, end - done))
                done = max(done, end)
            if lengths:
                lengths[-1] += len(text) - done
            out.append((ids, lengths))
        return out

    def encode_plus(self, text: str, pair: str | None = None, add_special_tokens: bool = True) -> Encoding:
        """BERT's layout: ``[CLS] text [SEP]`` or ``[CLS] text [SEP] pair [SEP]`` with segment ids.

        Offsets of the pair's tokens refer to ``pair``; special tokens have ``(0, 0)``.
        """
        texts = [text] if pair is None else [text, pair]
        parts = self.encode_offsets(texts)
        if not add_special_tokens:
            ids = [i for p, _ in parts for i in p]
            offsets = [o for _, p in parts for o in p]
            types = [seg for seg, (p, _) in enumerate(parts) for _ in p]
            return Encoding(ids, offsets, types, [0] * len(ids))
        cls_id, sep_id = self.special_id(CLS), self.special_id(SEP)
        enc = Encoding([cls_id], [(0, 0)], [0], [1])
        for seg, (ids, offsets) in enumerate(parts):
            enc.ids += [*ids, sep_id]
            enc.offsets += [*offsets, (0, 0)]
            enc.type_ids += [seg] * (len(ids) + 1)
            enc.special_mask += [0] * len(ids) + [1]
        return enc

    def tokens(self, text: str) -> list[str]:
        """The text cut into readable token strings (attention axes, the tokenizer lab)."""
        return [self.display_token(i) for i in self.encode(text)]

    @abstractmethod
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...

    # -- files --

    def save(self, path: str | Path) -> None:
        """Our format (``tokenizer_from_dict`` reads it back), written atomically."""
        atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False))

    def save_hf(self, path: str | Path) -> None:
        """The HF ``tokenizer.json`` (``PreTrainedTokenizerFast(tokenizer_file=path)`` loads it)."""
        atomic_write(path, self.to_hf().to_str())

    def save_pretrained(self, directory: str | Path) -> None:
        """A folder ``AutoTokenizer.from_pretrained(directory)`` loads: ``tokenizer.json`` and a
        ``tokenizer_config.json`` naming the special tokens (so ``mask_token_id`` and friends work)."""
        directory = Path(directory)
        self.save_hf(directory / "tokenizer.json")
        names = {PAD: "pad_token", UNK: "unk_token", CLS: "cls_token", SEP: "sep_token", MASK: "mask_token"}
        config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 1_000_000,
                                  **{names[t]: t for t in self.special_tokens if t in names}}
        extra = [t for t in self.special_tokens if t not in names]
        if extra:
            config["extra_special_tokens"] = extra
        atomic_write(directory / "tokenizer_config.json", json.dumps(config, indent=2, ensure_ascii=False))

    @staticmethod
    def load(path: str | Path) -> Tokenizer:
        from . import tokenizer_from_dict

        return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def config_dict(self) -> dict[str, Any] | None:
        """The settings it was trained with, or None when unknown (a file written before settings were kept)."""
        return self.config.to_dict() if self.config is not None else None


def bert_post_processor(tok: Tokenizer) -> Any:
    """HF ``TemplateProcessing`` that adds [CLS]/[SEP] and segment ids as :meth:`Tokenizer.encode_plus`
    does, or None when the tokenizer lacks them."""
    from tokenizers import processors

    if CLS not in tok.special_tokens or SEP not in tok.special_tokens:
        return None
    specials = [(CLS, tok.special_id(CLS)), (SEP, tok.special_id(SEP))]
    return processors.TemplateProcessing(single=f"{CLS}:0 $A:0 {SEP}:0", pair=f"{CLS}:0 $A:0 {SEP}:0 $B:1 {SEP}:1",
                                         special_tokens=specials)
