"""Tokenizers behind one interface: encode, decode, vocab size, special tokens, save/load.

- :class:`CharTokenizer` — one token per character (nanoGPT's shakespeare-char).
- :class:`BPETokenizer` — byte-level BPE trained on the corpus with Hugging Face ``tokenizers``
  (GPT-2's scheme: any text round-trips exactly, no unknown tokens).

Special tokens (``[PAD] [UNK] [CLS] [SEP] [MASK]``) come first in the vocabulary when an
objective asks for them; causal LM needs none.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, Sequence

from .io import atomic_write

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class TokenizerError(ValueError):
    """Text or a file the tokenizer cannot handle; the message says what to change."""


class Tokenizer(ABC):
    """Common interface; ``kind`` is the name used in configs and saved files."""

    kind: ClassVar[str]
    special_tokens: tuple[str, ...]

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode several texts (documents); subclasses may do it in parallel."""
        return [self.encode(t) for t in texts]

    def encode_with_lengths(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """Ids of each text and, per token, how many characters it completes (they sum to the
        text's length; a character split over several byte tokens counts for the first)."""
        return [(ids, [len(self.decode([i])) for i in ids]) for ids in self.encode_batch(texts)]

    @abstractmethod
    def id_to_token(self, i: int) -> str: ...

    @abstractmethod
    def token_to_id(self, token: str) -> int | None: ...

    @abstractmethod
    def to_dict(self) -> dict: ...

    def tokens(self, text: str) -> list[str]:
        """The text cut into readable token strings (for attention axes and the tokenizer lab)."""
        return [self.display_token(i) for i in self.encode(text)]

    def display_token(self, i: int) -> str:
        return self.id_to_token(i)

    def save(self, path: str | Path) -> None:
        atomic_write(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @staticmethod
    def load(path: str | Path) -> Tokenizer:
        return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class CharTokenizer(Tokenizer):
    """Characters sorted by code point, after any special tokens.

    >>> tok = CharTokenizer.train("hello")
    >>> tok.encode("hole"), tok.decode(tok.encode("hole"))
    ([1, 3, 2, 0], 'hole')
    """

    kind = "char"

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] = ()) -> None:
        self.special_tokens = tuple(special_tokens)
        self.itos: list[str] = list(self.special_tokens) + list(chars)
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self._n_special = len(self.special_tokens)

    @classmethod
    def train(cls, text: str, special_tokens: Sequence[str] = ()) -> CharTokenizer:
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        return cls(sorted(set(text)), special_tokens)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            unk = self.stoi.get("[UNK]")
            if unk is not None:
                return [stoi.get(c, unk) for c in text]
            bad = sorted({c for c in text if c not in stoi})
            raise TokenizerError(
                f"characters {''.join(bad)!r} are not in this tokenizer's vocabulary "
                f"({len(self.itos)} characters seen in training); remove them from the text"
            ) from None

    def encode_with_lengths(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        return [(ids, [1] * len(ids)) for ids in self.encode_batch(texts)]

    def decode(self, ids: Sequence[int]) -> str:
        n = self._n_special
        return "".join(self.itos[i] for i in ids if i >= n)

    def id_to_token(self, i: int) -> str:
        return self.itos[i]

    def token_to_id(self, token: str) -> int | None:
        return self.stoi.get(token)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.itos[self._n_special:], "special_tokens": list(self.special_tokens)}


class BPETokenizer(Tokenizer):
    """Byte-level BPE (GPT-2 style) trained with Hugging Face ``tokenizers``.

    >>> tok = BPETokenizer.train("the cat sat on the mat " * 50, vocab_size=270)
    >>> tok.decode(tok.encode("the hat")) == "the hat"
    True
    """

    kind = "bpe"

    def __init__(self, hf_tokenizer) -> None:  # tokenizers.Tokenizer
        self._tok = hf_tokenizer
        specials = [t.content for t in hf_tokenizer.get_added_tokens_decoder().values() if t.special]
        self.special_tokens = tuple(specials)

    @classmethod
    def train(cls, text: str, vocab_size: int = 512, special_tokens: Sequence[str] = ()) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if not text:
            raise TokenizerError("cannot train BPE on empty text")
        tok = HFTokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(special_tokens),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        # Feed lines in chunks: the trainer counts words per item, so chunking only saves memory.
        lines = text.split("\n")
        chunks = ("\n".join(lines[i : i + 1000]) + "\n" for i in range(0, len(lines), 1000))
        tok.train_from_iterator(chunks, trainer=trainer, length=len(lines) // 1000 + 1)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def encode_with_lengths(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """From the character offsets of each token (byte tokens of one character share them)."""
        out = []
        for e in self._tok.encode_batch(list(texts), add_special_tokens=False):
            lengths, done = [], 0
            for _, end in e.offsets:
                lengths.append(max(0, end - done))
                done = max(done, end)
            out.append((e.ids, lengths))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def id_to_token(self, i: int) -> str:
        return self._tok.id_to_token(i)

    def display_token(self, i: int) -> str:
        """Byte-level symbols shown as text: 'Ġthe' -> ' the', 'Ċ' -> '\\n'."""
        tok = self._tok.id_to_token(i)
        if tok in self.special_tokens:
            return tok
        return self._tok.decoder.decode([tok])

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "hf_tokenizer": json.loads(self._tok.to_str())}


def tokenizer_from_dict(d: dict) -> Tokenizer:
    kind = d.get("kind")
    if kind == "char":
        return CharTokenizer(d["chars"], d.get("special_tokens", ()))
    if kind == "bpe":
        from tokenizers import Tokenizer as HFTokenizer

        return BPETokenizer(HFTokenizer.from_str(json.dumps(d["hf_tokenizer"])))
    raise TokenizerError(f"unknown tokenizer kind {kind!r} in saved file; expected 'char' or 'bpe'")


def train_tokenizer(kind: str, text: str, vocab_size: int = 512, special_tokens: Sequence[str] = ()) -> Tokenizer:
    """Build the tokenizer a :class:`~workbench.config.DataConfig` names."""
    if kind == "char":
        return CharTokenizer.train(text, special_tokens)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size, special_tokens)
    raise TokenizerError(f"unknown tokenizer {kind!r}; use 'char' or 'bpe'")
