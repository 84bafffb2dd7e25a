"""One token per character, as nanoGPT's shakespeare-char: the smallest vocabulary, the longest sequences."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from .base import UNK, Tokenizer, TokenizerConfig, TokenizerError, bert_post_processor, order_special_tokens


@dataclass
class CharConfig(TokenizerConfig):
    """Characters of the training split; [UNK] stands for any character it never saw."""

    kind: str = "char"
    unk: bool = True
    """Add [UNK] for characters the training split lacks. Off gives exactly nanoGPT's
    shakespeare-char vocabulary (ids = sorted characters); text with an unseen character is then
    an error naming it."""

    def required_specials(self) -> tuple[str, ...]:
        return (UNK,) if self.unk else ()


class CharTokenizer(Tokenizer):
    """Characters sorted by code point, between the leading special tokens and the sentinels.

    >>> tok = CharTokenizer.train("hello")
    >>> tok.encode("hole"), tok.decode(tok.encode("hole"))
    ([1, 3, 2, 0], 'hole')
    """

    kind = "char"
    config_cls = CharConfig
    lossless = True
    required_specials = (UNK,)
    description = "one token per character (nanoGPT's shakespeare-char)"

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] = (), config: CharConfig | None = None) -> None:
        first, last = order_special_tokens(special_tokens)
        self.special_tokens = tuple(first + last)
        self.itos: list[str] = [*first, *chars, *last]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.chars = list(chars)
        self.config = config
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self._specials = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    @classmethod
    def train(cls, text: str, config: TokenizerConfig | None = None, special_tokens: Sequence[str] = ()) -> CharTokenizer:
        if not text:
            raise TokenizerError("cannot build a character vocabulary from empty text")
        return cls(sorted(set(text)), special_tokens, config if isinstance(config, CharConfig) else None)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        return [self._encode(t) for t in texts]

    def encode(self, text: str) -> list[int]:
        if self._specials is None or not self._specials.search(text):
            return self._chars(text)  # the common case, without building offsets
        return self._encode(text)[0]

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_with_lengths(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        return [(ids, [b - a for a, b in offsets]) for ids, offsets in self.encode_offsets(texts)]

    def _encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and offsets; a special token written in the text ("The [MASK] sat") is that
        token, as in HF's tokenizers."""
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        pos = 0
        matches = list(self._specials.finditer(text)) if self._specials is not None else []
        for m in [*matches, None]:
            end = m.start() if m else len(text)
            ids += self._chars(text[pos:end])
            offsets += [(i, i + 1) for i in range(pos, end)]
            if m:
                ids.append(self.stoi[m.group()])
                offsets.append(m.span())
                pos = m.end()
        return ids, offsets

    def _chars(self, text: str) -> list[int]:
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            unk = stoi.get(UNK)
            if unk is not None:
                return [stoi.get(c, unk) for c in text]
            bad = sorted({c for c in text if c not in stoi})
            raise TokenizerError(
                f"characters {''.join(bad)!r} are not in this tokenizer's vocabulary "
                f"({len(self.chars)} characters seen in training); remove them from the text, "
                f"or train it with unk=True"
            ) from None

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        specials = set(self.special_tokens) if skip_special_tokens else set()
        return "".join(s for s in (self.itos[i] for i in ids) if s not in specials)

    def id_to_token(self, i: int) -> str:
        return self.itos[i]

    def token_to_id(self, token: str) -> int | None:
        return self.stoi.get(token)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars, "special_tokens": list(self.special_tokens),
                "config": self.config_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        config = CharConfig.from_dict(d["config"]) if d.get("config") else None
        return cls(d["chars"], d.get("special_tokens", ()), config)  # type: ignore[arg-type]

    def to_hf(self):
        """A word-level HF tokenizer whose 'words' are single characters."""
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer

        tok = HFTokenizer(models.WordLevel(dict(self.stoi), unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
        tok.add_special_tokens(list(self.special_tokens))
        tok.post_processor = bert_post_processor(self)
        return tok
