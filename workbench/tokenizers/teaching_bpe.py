"""Byte-level BPE written from scratch to be read (in the spirit of Karpathy's minbpe).

How it works, in four steps:

1. **Split** the text into chunks with GPT-2's regex (:func:`split_chunks`): words with their
   leading space, numbers, punctuation runs, whitespace. Merges never cross a chunk boundary,
   so ``"dog."`` and ``"dog!"`` share the token ``dog``.
2. **Start from bytes**: every chunk is its UTF-8 bytes, ids 0..255. Any text can be written
   this way, so nothing is ever unknown.
3. **Merge** the most frequent adjacent pair into a new id (256, 257, ...), again and again.
   :func:`naive_bpe_merges` does exactly that, recounting everything after each merge (easy to
   read, slow). :func:`learn_merges` gets the *same* merges fast: it counts pairs once over the
   distinct chunks (weighted by how often each occurs) and after a merge only recounts the
   chunks that contained the merged pair.
4. **Encode** new text by replaying the merges in the order they were learned (:func:`encode_chunk`).

Ties: among pairs with the highest count the one that occurs *first in the text* wins (that is
what ``max(stats, key=stats.get)`` does over a dict filled in text order). Both trainers stop
after ``num_merges`` merges or when no adjacent pair is left at all (a pair seen once is still
merged, as in minbpe and HF's trainer without ``min_frequency``).

Special tokens in the text are cut out before the regex (as HF does): they are never merged and
encode to their own id.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, Iterable, Sequence

import regex

from .base import Tokenizer, TokenizerConfig, TokenizerError, bert_post_processor, order_special_tokens

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
"""GPT-2's pre-tokenizer regex, the one HF's ``ByteLevel(use_regex=True)`` uses."""
_SPLIT = regex.compile(GPT2_PATTERN)

Pair = tuple[int, int]


def split_chunks(text: str) -> list[str]:
    """The chunks BPE works inside (merges never cross them).

    >>> split_chunks("Hello world's 42!!  ok")
    ['Hello', ' world', "'s", ' 42', '!!', ' ', ' ok']
    """
    return _SPLIT.findall(text)


def merge(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` by ``new_id``, left to right.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 9)
    [9, 3, 9]
    >>> merge([5, 5, 5], (5, 5), 9)  # occurrences overlap: the leftmost wins
    [9, 5]
    """
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def naive_bpe_merges(text: str, num_merges: int) -> list[Pair]:
    """The textbook trainer: recount every pair of the whole text after each merge.

    Merge ``k`` creates id ``256 + k``. Ties go to the pair seen first in the text (the dict
    keeps insertion order and ``max`` returns the first maximum).

    >>> naive_bpe_merges("aaabdaaabac", 3)  # Wikipedia's example, as bytes: a=97 b=98
    [(97, 97), (256, 97), (257, 98)]
    """
    chunks = [list(c.encode("utf-8")) for c in split_chunks(text)]
    merges: list[Pair] = []
    for step in range(num_merges):
        stats: dict[Pair, int] = {}
        for ids in chunks:
            for pair in zip(ids, ids[1:]):
                stats[pair] = stats.get(pair, 0) + 1
        if not stats:
            break
        best = max(stats, key=stats.get)  # type: ignore[arg-type]
        chunks = [merge(ids, best, 256 + step) for ids in chunks]
        merges.append(best)
    return merges


def _first_offset(ids: list[int], pair: Pair, length: list[int]) -> int:
    """Byte offset, inside its chunk, of the first occurrence of ``pair``.

    Byte offsets (not token positions) because they never change when *other* pairs merge,
    so keys pushed on the heap at different times stay comparable."""
    off = 0
    for a, b in zip(ids, ids[1:]):
        if a == pair[0] and b == pair[1]:
            return off
        off += length[a]
    raise AssertionError("pair not in chunk")


def learn_merges(chunks: Iterable[str], num_merges: int) -> list[Pair]:
    """The merges :func:`naive_bpe_merges` learns from these chunks (in text order), found fast.

    - Count pairs once, over the *distinct* chunks, each weighted by how often it occurs.
    - Keep ``where[pair]``: the chunks containing it. A merge only changes those chunks, so we
      recount just them (before/after) and add the differences to the counts.
    - Pick the best pair from a heap of ``(-count, first chunk, byte offset, pair)``: the first
      chunk (distinct chunks are numbered in order of first appearance) and the byte offset in
      it say where the pair first occurs in the text, which breaks ties as the naive trainer does.
      Entries go stale when a count changes; a fresh entry is pushed, and stale ones are skipped
      when popped ("lazy deletion").

    >>> learn_merges(split_chunks("aaabdaaabac"), 3)
    [(97, 97), (256, 97), (257, 98)]
    """
    freq = Counter(chunks)  # a dict: distinct chunks in order of first appearance
    words = [list(c.encode("utf-8")) for c in freq]
    weight = list(freq.values())
    length = [1] * 256  # bytes in each token (for offsets)
    stats: dict[Pair, int] = {}
    where: dict[Pair, set[int]] = {}
    key: dict[Pair, tuple[int, int]] = {}  # where the pair first occurs: (chunk, byte offset)
    for w, ids in enumerate(words):
        off = 0
        for pair in zip(ids, ids[1:]):
            stats[pair] = stats.get(pair, 0) + weight[w]
            where.setdefault(pair, set()).add(w)
            key.setdefault(pair, (w, off))
            off += 1  # tokens are still single bytes
    heap = [(-n, *key[p], p) for p, n in stats.items()]
    heapq.heapify(heap)

    merges: list[Pair] = []
    while heap and len(merges) < num_merges:
        neg, w0, off0, pair = heapq.heappop(heap)
        if stats.get(pair) != -neg or key[pair] != (w0, off0):
            continue  # stale: this pair was re-pushed with its new count or position
        new_id = 256 + len(merges)
        merges.append(pair)
        length.append(length[pair[0]] + length[pair[1]])
        changed: dict[Pair, int] = {}  # pair -> first chunk (in text order) where its occurrences changed
        for w in sorted(where[pair]):
            old = words[w]
            words[w] = new = merge(old, pair, new_id)
            before, after = Counter(zip(old, old[1:])), Counter(zip(new, new[1:]))
            for p in before.keys() | after.keys():
                d = after[p] - before[p]
                if not d:
                    continue  # same occurrences as before: same count, same positions
                stats[p] = stats.get(p, 0) + d * weight[w]
                if not after[p]:
                    where[p].discard(w)
                elif not before[p]:
                    where.setdefault(p, set()).add(w)
                changed.setdefault(p, w)
        for p, w in changed.items():
            if not stats[p]:
                del stats[p], where[p], key[p]
                continue
            first = key[p][0] if p in key else w
            if w <= first:  # it changed in (or before) its first chunk: find its first occurrence again
                first = w if w in where[p] else min(where[p])
                key[p] = (first, _first_offset(words[first], p, length))
            heapq.heappush(heap, (-stats[p], *key[p], p))
    return merges


def bpe_merges(text: str, num_merges: int) -> list[Pair]:
    """:func:`learn_merges` on a whole text: same signature and result as :func:`naive_bpe_merges`.

    >>> bpe_merges("the cat the hat", 2) == naive_bpe_merges("the cat the hat", 2)
    True
    """
    return learn_merges(split_chunks(text), num_merges)


def encode_chunk(ids: list[int], ranks: dict[Pair, int], max_rank: int | None = None) -> list[int]:
    """Apply learned merges to one chunk's byte ids: repeatedly merge the adjacent pair that was
    learned *earliest* (lowest rank), as training would have, until none applies.

    ``ranks`` maps a pair to its merge index k (new id 256 + k); ``max_rank`` uses only the first merges.

    >>> encode_chunk(list(b"aaab"), {(97, 97): 0, (256, 97): 1})
    [257, 98]
    """
    limit = len(ranks) if max_rank is None else max_rank
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, limit))
        rank = ranks.get(pair, limit)
        if rank >= limit:
            break
        ids = merge(ids, pair, 256 + rank)
    return ids


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character (HF's byte-level vocabularies use it):
    printable Latin-1 bytes stand for themselves, the others are shifted past 255.

    >>> m = bytes_to_unicode(); m[ord("a")], m[ord(" ")], m[ord("\\n")]
    ('a', 'Ġ', 'Ċ')
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {b: chr(b) for b in keep}, 0
    for b in range(256):
        if b not in out:
            out[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(out.items()))


def readable(token: bytes) -> str:
    r"""A token's text; bytes that are not (yet) a whole UTF-8 character show as ``\xNN``.

    >>> readable(b" the"), readable("😀".encode()[:2])
    (' the', '\\xf0\\x9f')
    """
    return token.decode("utf-8", errors="backslashreplace")


# --- the tokenizer --------------------------------------------------------------------------------

@dataclass
class TeachingBPEConfig(TokenizerConfig):
    """Byte-level BPE written from scratch for reading; records every merge in order."""

    min_vocab: ClassVar[int] = 256
    floor_reason: ClassVar[str] = "256 byte tokens"

    kind: str = "teaching-bpe"
    vocab_size: int = 512
    """Vocabulary size, special tokens included (the learned merges fill what the 256 bytes leave;
    fewer if the text runs out of pairs)."""


class TeachingBPETokenizer(Tokenizer):
    """Byte-level BPE in plain Python; ``merges`` lists every merge in the order it was learned.

    Ids: leading special tokens, then the 256 bytes, then one per merge, then the sentinels.
    ``id_to_token`` spells tokens in GPT-2's byte alphabet (``'Ġthe'``, as HF's vocabularies);
    ``display_token`` shows their text (``' the'``; a partial UTF-8 character as ``'\\xf0'``).

    >>> tok = TeachingBPETokenizer.train("the cat sat on the mat " * 20, TeachingBPEConfig(vocab_size=262))
    >>> tok.tokens("the hat"), tok.decode(tok.encode("the hat"))
    (['the', ' ', 'h', 'at'], 'the hat')
    >>> tok.tokens_after("the hat", 0)
    ['t', 'h', 'e', ' ', 'h', 'a', 't']
    """

    kind = "teaching-bpe"
    config_cls = TeachingBPEConfig
    lossless = True
    description = "byte-level BPE from scratch in Python (readable; steps through every merge)"

    def __init__(self, merges: Sequence[Sequence[int]], special_tokens: Sequence[str] = (),
                 config: TeachingBPEConfig | None = None) -> None:
        self.merges: list[Pair] = [(int(a), int(b)) for a, b in merges]
        self.ranks: dict[Pair, int] = {p: k for k, p in enumerate(self.merges)}
        self.token_bytes: list[bytes] = [bytes([b]) for b in range(256)]
        """The bytes of each token in merge space (0..255 bytes, 256 + k the k-th merge)."""
        for a, b in self.merges:
            self.token_bytes.append(self.token_bytes[a] + self.token_bytes[b])
        first, last = order_special_tokens(special_tokens)
        self.special_tokens = tuple(first + last)
        self._first = len(first)  # merge-space id + _first = vocabulary id
        self._top = self._first + len(self.token_bytes)
        self._specials = {t: i for i, t in enumerate(first)} | {t: self._top + i for i, t in enumerate(last)}
        alphabet = bytes_to_unicode()
        self._spelled = ["".join(alphabet[c] for c in t) for t in self.token_bytes]
        self._ids: dict[str, int] = {}
        for i, s in enumerate(self._spelled):
            self._ids.setdefault(s, i + self._first)
        clash = sorted(set(self._specials) & set(self._ids))
        if clash:
            raise TokenizerError(f"special tokens {clash} are spelled like byte tokens; rename them")
        self._ids.update(self._specials)
        ordered = sorted(self.special_tokens, key=len, reverse=True)  # longest first, as HF matches them
        self._special_re = regex.compile("|".join(map(regex.escape, ordered))) if ordered else None
        self._cache: dict[str, list[int]] = {}
        self.config = config

    # -- training --

    def _pieces(self, text: str) -> Iterable[tuple[int, str, bool]]:
        """``(start, piece, is_special)`` for the text cut at special tokens."""
        pos = 0
        if self._special_re is not None:
            for m in self._special_re.finditer(text):
                if m.start() > pos:
                    yield pos, text[pos:m.start()], False
                yield m.start(), m.group(), True
                pos = m.end()
        if pos < len(text) or not text:
            yield pos, text[pos:], False

    @classmethod
    def train(cls, text: str, config: TokenizerConfig | None = None,
              special_tokens: Sequence[str] = ()) -> TeachingBPETokenizer:
        config = config if isinstance(config, TeachingBPEConfig) else TeachingBPEConfig()
        if not text:
            raise TokenizerError("cannot train a teaching-bpe tokenizer on empty text; give it a corpus with some text")
        specials = list(dict.fromkeys(special_tokens))
        num_merges = config.vocab_size - 256 - len(specials)
        if num_merges < 0:
            raise TokenizerError(f"teaching-bpe vocab_size={config.vocab_size} is below 256 byte tokens + "
                                 f"{len(specials)} special tokens; raise it to at least {256 + len(specials)}")
        shell = cls([], specials)  # only to cut the text at special tokens
        chunks = (c for _, piece, special in shell._pieces(text) if not special for c in split_chunks(piece))
        return cls(learn_merges(chunks, num_merges), specials, config)

    # -- the vocabulary --

    @property
    def vocab_size(self) -> int:
        return self._top + len(self.special_tokens) - self._first

    def id_to_token(self, i: int) -> str:
        if self._first <= i < self._top:
            return self._spelled[i - self._first]
        if 0 <= i < self.vocab_size:
            return self.special_tokens[i if i < self._first else i - self._top + self._first]
        raise IndexError(f"id {i} outside the vocabulary (0..{self.vocab_size - 1})")

    def display_token(self, i: int) -> str:
        """The token's text (:func:`readable`); special tokens as they are."""
        return readable(self.token_bytes[i - self._first]) if self._first <= i < self._top else self.id_to_token(i)

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def merge_table(self) -> list[tuple[str, str, str]]:
        """Every merge as readable text, in order: ``(left, right, new token)``."""
        show = [readable(t) for t in self.token_bytes]
        return [(show[a], show[b], show[256 + k]) for k, (a, b) in enumerate(self.merges)]

    # -- encoding --

    def _chunk_ids(self, chunk: str) -> list[int]:
        """Vocabulary ids of one chunk (cached: real text repeats its words a lot)."""
        ids = self._cache.get(chunk)
        if ids is None:
            ids = [i + self._first for i in encode_chunk(list(chunk.encode("utf-8")), self.ranks)]
            if len(self._cache) < 500_000:
                self._cache[chunk] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for _, piece, special in self._pieces(text):
            if special:
                out.append(self._specials[piece])
            else:
                for chunk in split_chunks(piece):
                    out += self._chunk_ids(chunk)
        return out

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def encode_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Each token covers the characters any of its bytes belong to, so the byte tokens of one
        character all get that character's span (the first of them "completes" it)."""
        out = []
        for text in texts:
            ids, offsets = [], []
            for start, piece, special in self._pieces(text):
                if special:
                    ids.append(self._specials[piece])
                    offsets.append((start, start + len(piece)))
                    continue
                for m in _SPLIT.finditer(piece):
                    char_of_byte = [j for j, ch in enumerate(m.group()) for _ in ch.encode("utf-8")]
                    pos, base = 0, start + m.start()
                    for i in self._chunk_ids(m.group()):
                        n = len(self.token_bytes[i - self._first])
                        ids.append(i)
                        offsets.append((base + char_of_byte[pos], base + char_of_byte[pos + n - 1] + 1))
                        pos += n
            out.append((ids, offsets))
        return out

    def tokens_after(self, text: str, k: int) -> list[str]:
        """How ``text`` splits using only the first ``k`` merges (k=0: its bytes), as readable tokens
        (with all merges: :meth:`tokens`)."""
        out = []
        for _, piece, special in self._pieces(text):
            if special:
                out.append(piece)
                continue
            for chunk in split_chunks(piece):
                out += [readable(self.token_bytes[i]) for i in encode_chunk(list(chunk.encode()), self.ranks, k)]
        return out

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        parts = []
        for i in ids:
            if self._first <= i < self._top:
                parts.append(self.token_bytes[i - self._first])
            elif not skip_special_tokens:
                parts.append(self.id_to_token(i).encode("utf-8"))
        return b"".join(parts).decode("utf-8", errors="replace")

    # -- persistence --

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "merges": [list(p) for p in self.merges],
                "special_tokens": list(self.special_tokens), "config": self.config_dict()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TeachingBPETokenizer:
        config = TeachingBPEConfig.from_dict(d["config"]) if d.get("config") else None
        return cls(d["merges"], d.get("special_tokens", ()), config)  # type: ignore[arg-type]

    def to_hf(self) -> Any:
        """The same tokenizer in HF ``tokenizers``: a BPE model over GPT-2's byte alphabet with our
        merges in order, GPT-2's regex, our special tokens at our ids."""
        from tokenizers import Tokenizer as HFTok
        from tokenizers import decoders, models, pre_tokenizers

        vocab = dict(self._ids)  # a token spelled twice (two merges, same bytes) keeps its first id
        merges = [(self._spelled[a], self._spelled[b]) for a, b in self.merges]
        tok = HFTok(models.BPE(vocab=vocab, merges=merges))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens(list(self.special_tokens))
        processor = bert_post_processor(self)
        if processor is not None:
            tok.post_processor = processor
        return tok

    def __repr__(self) -> str:
        return f"TeachingBPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)})"

