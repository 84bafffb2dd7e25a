"""The text machinery of next-sentence prediction: documents cut into segments (sentences), and
the segments of many documents back to back, from which pairs are drawn (laid out by
:mod:`workbench.objectives.pairs`).

**Segments.** A document is cut into segments at its sentence boundaries
(:meth:`Document.sentence_spans`: ``. ! ?`` or a blank line), mapped to token positions through
the characters each token spells (``TokenizedDoc.char_lengths``): every token belongs to exactly
one segment. A split tokenized *without* character lengths cannot map them, and is cut into
chunks whose length is the document's mean sentence length in tokens: segments of the same size
on average, but cut anywhere (mid-sentence, mid-word) rather than at a sentence end.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import torch

from ..config import require
from .base import TokenizedDoc
from .words import doc_word_starts

IS_NEXT, NOT_NEXT = 0, 1
"""Pair labels, as the NSP head's logits are ordered (HF's ``next_sentence_label``)."""


# --- segments -------------------------------------------------------------------------------------

def segment_spans(doc: TokenizedDoc) -> list[tuple[int, int]]:
    """``[start, end)`` token ranges of a document's segments; together they cover every token
    once, in order. With ``char_lengths``: its sentences (each starts at the token that holds
    its first character; the whitespace between two sentences stays with the first). Without:
    chunks of the document's mean sentence length in tokens (the last may be shorter).

    >>> from workbench.corpora import Document
    >>> d = Document("To be. Or not!\\nThat is")
    >>> segment_spans(TokenizedDoc(list(range(len(d.text))), d, [1] * len(d.text)))  # one token a character
    [(0, 7), (7, 15), (15, 22)]
    >>> segment_spans(TokenizedDoc(list(range(9)), d))  # no character lengths: 3 sentences -> chunks of 3
    [(0, 3), (3, 6), (6, 9)]
    """
    n = len(doc.ids)
    if n == 0:
        return []
    sentences = doc.doc.sentence_spans()
    if doc.char_lengths is None:
        size = max(1, round(n / max(1, len(sentences))))
        return [(s, min(n, s + size)) for s in range(0, n, size)]
    if len(doc.char_lengths) != n:
        raise ValueError(f"a document has {n} tokens but {len(doc.char_lengths)} character lengths")
    ends = list(itertools.accumulate(doc.char_lengths))  # token i spells text[ends[i-1]:ends[i]]
    cuts = sorted({bisect.bisect_right(ends, start) for start, _ in sentences[1:]} - {0, n})
    cuts = [c for c in cuts if 0 < c < n]
    bounds = [0, *cuts, n]
    return list(zip(bounds, bounds[1:]))


@dataclass
class Segments:
    """Segments of several documents, back to back, and what pairs may be made of them.

    ``group`` is each segment's document (a NotNext B comes from another group); groups are
    contiguous runs of segments. ``firsts`` are the segments whose successor (the next segment
    index) is in the same unit of text: the A's of the pairs.
    """

    ids: torch.Tensor  # (N,) the tokens of every segment, back to back
    chars: torch.Tensor | None  # (N,) characters each token spells (when known)
    start: torch.Tensor  # (S,) first token of each segment in ``ids``
    length: torch.Tensor  # (S,) tokens in each segment
    group: torch.Tensor  # (S,) document of each segment
    group_first: torch.Tensor  # (G,) first segment of each document
    group_size: torch.Tensor  # (G,) segments in each document
    firsts: torch.Tensor  # (P,) segments that have a successor in their text: the candidate A's
    word_starts: torch.Tensor | None = None  # (N,) bool, where each word starts (whole-word masking)

    @property
    def num_segments(self) -> int:
        return int(self.start.numel())

    @property
    def num_groups(self) -> int:
        return int(self.group_size.numel())

    @classmethod
    def build(cls, units: list[tuple[TokenizedDoc, list[tuple[int, int]], int]], words: bool = False) -> Segments:
        """From ``(doc, its segment spans, group)`` per unit of contiguous text; units of one group
        must be consecutive. Units without segments are skipped. ``words``: also where each word
        starts (:func:`~workbench.objectives.words.word_starts`; the documents need character lengths)."""
        ids: list[int] = []
        chars: list[int] = []
        starts: list[bool] = []
        start: list[int] = []
        length: list[int] = []
        group: list[int] = []
        firsts: list[int] = []
        with_chars = all(d.char_lengths is not None for d, spans, _ in units if spans)
        groups: list[int] = []  # renumbered 0..G-1 in order of appearance
        for doc, spans, g in units:
            if not spans:
                continue
            if not groups or groups[-1] != g:
                if g in groups:
                    raise ValueError("units of one document must be consecutive")
                groups.append(g)
            doc_starts = doc_word_starts(doc).tolist() if words else []
            for k, (s, e) in enumerate(spans):
                if k + 1 < len(spans):
                    firsts.append(len(start))
                start.append(len(ids))
                length.append(e - s)
                group.append(len(groups) - 1)
                ids += doc.ids[s:e]
                if with_chars:
                    chars += doc.char_lengths[s:e]  # type: ignore[index]
                starts += doc_starts[s:e]
        group_t = torch.tensor(group, dtype=torch.long)
        size = torch.bincount(group_t, minlength=len(groups)) if group else torch.zeros(0, dtype=torch.long)
        first = torch.cumsum(size, 0) - size
        return cls(torch.tensor(ids, dtype=torch.long), torch.tensor(chars, dtype=torch.long) if with_chars else None,
                   torch.tensor(start, dtype=torch.long), torch.tensor(length, dtype=torch.long), group_t, first, size,
                   torch.tensor(firsts, dtype=torch.long), torch.tensor(starts, dtype=torch.bool) if words else None)

    def random_other(self, a: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """For each segment in ``a``, a segment drawn uniformly from the *other* documents' segments."""
        g = self.group[a]
        others = self.num_segments - self.group_size[g]  # (n,) > 0 when there are >= 2 documents
        r = torch.minimum((torch.rand(a.shape, generator=generator, dtype=torch.float64) * others).long(), others - 1)
        return r + self.group_size[g] * (r >= self.group_first[g])  # skip A's own document

    def sample_pairs(self, n: int, random_next_prob: float, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` random pairs ``(a, b, label)``: A uniform over the candidate A's, label NotNext
        with probability ``random_next_prob`` (independently), B the next segment or a random
        segment of another document."""
        a = self.firsts[torch.randint(len(self.firsts), (n,), generator=generator)]
        label = (torch.rand(n, generator=generator) < random_next_prob).long()
        b = torch.where(label == NOT_NEXT, self.random_other(a, generator), a + 1)
        return a, b, label

    def all_pairs(self, random_next_prob: float, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pair per candidate A, in order; exactly ``round(n * random_next_prob)`` of them
        (a random choice) NotNext."""
        a = self.firsts
        n = len(a)
        label = (torch.randperm(n, generator=generator) < round(n * random_next_prob)).long()
        b = torch.where(label == NOT_NEXT, self.random_other(a, generator), a + 1)
        return a, b, label

    def tokens(self, s: int) -> list[int]:
        i = int(self.start[s])
        return self.ids[i : i + int(self.length[s])].tolist()

    def token_chars(self, s: int) -> list[int]:
        assert self.chars is not None
        i = int(self.start[s])
        return self.chars[i : i + int(self.length[s])].tolist()

    def token_word_starts(self, s: int) -> list[int]:
        assert self.word_starts is not None
        i = int(self.start[s])
        return self.word_starts[i : i + int(self.length[s])].int().tolist()


DOCUMENTS_HINT = ("a text file's documents are its paragraphs, separated by blank lines (its lines when it has "
                  "none); the built-in corpus's are its plays")


def _needs_two_documents(documents: int, with_two_segments: int, what: str) -> None:
    """The :class:`ConfigError` (field ``corpus``; a ValueError) when no NotNext or no IsNext pair can be made."""
    require(documents >= 2, "corpus",
            f"next-sentence prediction needs at least two documents for its negatives; {what} has {documents} "
            f"with any text. A NotNext B is a segment of another document: use a corpus of several documents "
            f"({DOCUMENTS_HINT})")
    require(with_two_segments >= 1, "corpus",
            f"next-sentence prediction needs a document of at least two sentences (an A and the B that follows it); "
            f"no document of {what} has two. Use a text with longer paragraphs ({DOCUMENTS_HINT})")
