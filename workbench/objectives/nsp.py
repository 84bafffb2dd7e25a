"""Next-sentence prediction (BERT): is segment B the text that follows segment A, or a segment
of another document? And masked LM + next-sentence prediction trained jointly, as BERT was.

**Pairs.** Each example is ``[CLS] A [SEP] B [SEP] [PAD]...`` with segment ids 0 for
``[CLS] A [SEP]`` and 1 for ``B [SEP]`` (padding: segment 0, ``attention_mask`` 0), laid out
exactly as Hugging Face's BERT tokenizer lays out ``tokenizer(a, b)``; a pair longer than
``seq_len`` is cut as its ``truncation="longest_first"`` cuts it (:func:`truncated_lengths`).
With probability ``1 - random_next_prob`` B is the segment that follows A in A's document
(label 0, *IsNext*); otherwise B is a segment drawn uniformly from the segments of the *other*
documents (label 1, *NotNext*; never from A's own document). The labels follow the model's NSP
head (``ModelOutput.nsp_logits``: index 0 = is next, as in HF).

**Segments.** A document is cut into segments at its sentence boundaries
(:meth:`Document.sentence_spans`: ``. ! ?`` or a blank line), mapped to token positions through
the characters each token spells (``TokenizedDoc.char_lengths``): every token belongs to exactly
one segment. A split tokenized *without* character lengths (today's training split) cannot map
them, and is cut into chunks whose length is the document's mean sentence length in tokens:
segments of the same size on average, but cut anywhere (mid-sentence, mid-word) rather than at a
sentence end. Tokenizing the training split with character lengths makes it segment at
sentences too (see :attr:`NextSentencePrediction.wants_char_lengths`).

**Documents.** What a NotNext B must come from another of: for training, each document of the
split (a play of the built-in corpus, a paragraph of a text file). For evaluation, the passages
of :meth:`Corpus.passages` grouped by their ``source`` (a play); when they all share one source
(a single text file) each passage counts as a document, and a single passage is cut into two
halves that count as two (the last resort of a very small ``eval_chars``).

**Evaluation** scores every two consecutive segments of every passage once: A is each segment
that has a successor in its passage, exactly ``round(n * random_next_prob)`` of the ``n`` pairs
(chosen with a fixed seed) get a random B, so every evaluation of every run on a corpus scores
the same pairs.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ObjectiveConfig, require
from ..corpora import Document
from .base import IGNORE_INDEX, Batch, LossOutput, Objective, TokenizedCorpus, TokenizedDoc
from .masked_lm import (
    CLS, EVAL_MASK_SEED, MASK, PAD, SEP, MaskedLM, MaskedLMConfig, MLMVocab, attention_matrix, describe_batch,
    mask_tokens,
)

IS_NEXT, NOT_NEXT = 0, 1
"""Pair labels, as the NSP head's logits are ordered (HF's ``next_sentence_label``)."""

LABEL_NAMES = {IS_NEXT: "IsNext: B follows A", NOT_NEXT: "NotNext: B is from another document"}

EVAL_PAIR_SEED = 0
"""Seed of the choice of the validation pairs (which get a random B, and which B): every
evaluation of every run on a corpus scores the same pairs."""

__all__ = ["NSPConfig", "MLMNSPConfig", "NSPBatch", "Segments", "NextSentencePrediction", "MaskedLMWithNSP",
           "truncated_lengths", "pair_row", "segment_spans", "describe_pair", "attention_matrix", "IS_NEXT",
           "NOT_NEXT"]


# --- configs --------------------------------------------------------------------------------------

def _check_random_next_prob(cfg: Any) -> None:
    value = cfg.random_next_prob
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
            "random_next_prob", f"must be a number, got {value!r}")
    require(0.0 < value < 1.0, "random_next_prob",
            f"must be in (0, 1), got {value}; it is the fraction of pairs whose B is a segment of another "
            f"document (BERT: 0.5)")


@dataclass
class NSPConfig(ObjectiveConfig):
    """Next-sentence prediction over ``[CLS] A [SEP] B [SEP]`` pairs (BERT's NSP)."""

    name: str = "nsp"
    """Training objective: the registry name in ``workbench.objectives.OBJECTIVES``."""
    random_next_prob: float = 0.5
    """Fraction of the pairs whose B is a random segment of another document (label NotNext);
    the others get the segment that follows A (IsNext). BERT: 0.5."""

    def __post_init__(self) -> None:
        _check_random_next_prob(self)


@dataclass
class MLMNSPConfig(MaskedLMConfig):
    """Masked LM and next-sentence prediction trained jointly on the same pairs (BERT's
    pre-training): the loss is the sum of the two."""

    name: str = "mlm+nsp"
    """Training objective: the registry name in ``workbench.objectives.OBJECTIVES``."""
    random_next_prob: float = 0.5
    """Fraction of the pairs whose B is a random segment of another document (label NotNext);
    the others get the segment that follows A (IsNext). BERT: 0.5."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_random_next_prob(self)


# --- pair layout ----------------------------------------------------------------------------------

def truncated_lengths(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """How many tokens of A and of B a pair keeps when only ``budget`` fit: Hugging Face's
    ``truncation="longest_first"`` (the Rust rule its fast tokenizers use). The longer one is cut
    first; when both must be cut each keeps half, the longer the odd token. Both stay non-empty
    whenever ``budget >= 2``.

    >>> truncated_lengths(3, 4, 10), truncated_lengths(7, 3, 5), truncated_lengths(3, 7, 5)
    ((3, 4), (3, 2), (2, 3))
    >>> truncated_lengths(4, 4, 5), truncated_lengths(4, 4, 6), truncated_lengths(7, 3, 7), truncated_lengths(1, 9, 4)
    ((2, 3), (3, 3), (4, 3), (1, 3))
    """
    if len_a + len_b <= budget:
        return len_a, len_b
    swap = len_a > len_b
    n1, n2 = (len_b, len_a) if swap else (len_a, len_b)
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    keep_a, keep_b = (n2, n1) if swap else (n1, n2)
    return min(len_a, keep_a), min(len_b, keep_b)


def pair_row(a: list[int], b: list[int], seq_len: int, cls: int, sep: int, pad: int) -> tuple[list[int], list[int], list[int]]:
    """``(input_ids, token_type_ids, attention_mask)`` of ``[CLS] A [SEP] B [SEP]``, truncated
    longest-first to ``seq_len`` and padded with ``pad`` (segment 0, attention 0), as HF's
    ``tokenizer(a, b, truncation=True, max_length=seq_len, padding="max_length")``.

    >>> pair_row([7, 8, 9], [5], 8, cls=1, sep=2, pad=0)
    ([1, 7, 8, 9, 2, 5, 2, 0], [0, 0, 0, 0, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1, 0])
    """
    if seq_len < 5:
        raise ValueError(f"next-sentence prediction needs seq_len >= 5 ([CLS] A [SEP] B [SEP]); got {seq_len}")
    na, nb = truncated_lengths(len(a), len(b), seq_len - 3)
    ids = [cls, *a[:na], sep, *b[:nb], sep]
    types = [0] * (na + 2) + [1] * (nb + 1)
    pad_n = seq_len - len(ids)
    return ids + [pad] * pad_n, types + [0] * pad_n, [1] * len(ids) + [0] * pad_n


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

    @property
    def num_segments(self) -> int:
        return int(self.start.numel())

    @property
    def num_groups(self) -> int:
        return int(self.group_size.numel())

    @classmethod
    def build(cls, units: list[tuple[TokenizedDoc, list[tuple[int, int]], int]]) -> Segments:
        """From ``(doc, its segment spans, group)`` per unit of contiguous text; units of one group
        must be consecutive. Units without segments are skipped."""
        ids: list[int] = []
        chars: list[int] = []
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
            for k, (s, e) in enumerate(spans):
                if k + 1 < len(spans):
                    firsts.append(len(start))
                start.append(len(ids))
                length.append(e - s)
                group.append(len(groups) - 1)
                ids += doc.ids[s:e]
                if with_chars:
                    chars += doc.char_lengths[s:e]  # type: ignore[index]
        group_t = torch.tensor(group, dtype=torch.long)
        size = torch.bincount(group_t, minlength=len(groups)) if group else torch.zeros(0, dtype=torch.long)
        first = torch.cumsum(size, 0) - size
        return cls(torch.tensor(ids, dtype=torch.long), torch.tensor(chars, dtype=torch.long) if with_chars else None,
                   torch.tensor(start, dtype=torch.long), torch.tensor(length, dtype=torch.long), group_t, first, size,
                   torch.tensor(firsts, dtype=torch.long))

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


# --- the batch ------------------------------------------------------------------------------------

@dataclass
class NSPBatch(Batch):
    """A batch of ``[CLS] A [SEP] B [SEP]`` pairs; ``labels`` holds the masked-token targets
    (all ``IGNORE_INDEX`` for NSP alone)."""

    next_labels: torch.Tensor | None = None
    """(B,) 0 = B follows A (IsNext), 1 = B is a segment of another document (NotNext)."""


def _rows(batch: NSPBatch, i: int, j: int) -> NSPBatch:
    return replace(batch, **{f.name: getattr(batch, f.name)[i:j] for f in fields(batch)
                             if isinstance(getattr(batch, f.name), torch.Tensor)})


@dataclass(frozen=True)
class PairIds:
    """The ids a pair needs, read from a tokenized corpus."""

    pad: int
    cls: int
    sep: int

    @classmethod
    def of(cls, corpus: TokenizedCorpus) -> PairIds:
        missing = [t for t in NextSentencePrediction.special_tokens if t not in corpus.special_ids]
        if missing:
            raise ValueError(
                f"next-sentence prediction needs a tokenizer with {' '.join(missing)}; this one has "
                f"{' '.join(corpus.special_ids) or 'no special tokens'}. Train the tokenizer for this objective "
                f"(specials='objective' adds what it needs) or with specials='all'")
        ids = corpus.special_ids
        return cls(ids[PAD], ids[CLS], ids[SEP])


# --- next-sentence prediction ---------------------------------------------------------------------

class NextSentencePrediction(Objective):
    """BERT's next-sentence prediction: a random pair of segments per row, the loss is the
    cross-entropy of the NSP head's two logits against the pair's label."""

    name = "nsp"
    config_cls = NSPConfig
    needs = frozenset({"bidirectional"})
    special_tokens = (PAD, CLS, SEP)
    primary_metric = "loss"
    predicts = "whether segment B follows segment A"
    wants_char_lengths = True
    """Segments are sentences only where token character lengths are known: a split tokenized
    with them (``experiment.tokenize(..., char_lengths=True)``) is cut at sentence ends, one
    without into sentence-sized chunks."""

    config: NSPConfig

    def __init__(self, config: NSPConfig | None = None) -> None:
        super().__init__(config)
        self.pair_ids: PairIds | None = None

    # -- data --

    def prepare(self, corpus: TokenizedCorpus) -> Segments:
        """Every document's segments (each document its own group for the negatives), or a
        ValueError when no NotNext or no IsNext pair can be made."""
        self._read_specials(corpus)
        spans = [segment_spans(d) for d in corpus.docs]
        _needs_two_documents(sum(1 for s in spans if s), sum(1 for s in spans if len(s) >= 2),
                             "this corpus (its training split)")
        return Segments.build([(d, s, i) for i, (d, s) in enumerate(zip(corpus.docs, spans))])

    @staticmethod
    def check_documents(documents: Sequence[Document]) -> None:
        """What :meth:`prepare` would refuse, from the documents alone (no tokenizer: a check
        before a run is started): fewer than two documents with text, or none of two sentences.

        >>> NextSentencePrediction.check_documents([Document("One. Two."), Document("Three.")])
        >>> NextSentencePrediction.check_documents([Document("One. Two.")])
        Traceback (most recent call last):
        ...
        workbench.config.ConfigError: corpus: next-sentence prediction needs at least two documents for its negatives; ...
        """
        texts = [d for d in documents if d.text.strip()]
        _needs_two_documents(len(texts), sum(1 for d in texts if len(d.sentence_spans()) >= 2), "this corpus")

    def make_batch(self, data: Segments, batch_size: int, seq_len: int, generator: torch.Generator) -> NSPBatch:
        """``batch_size`` random pairs (see :meth:`Segments.sample_pairs`), padded to ``seq_len``.

        >>> from workbench.corpora import Document
        >>> docs = [TokenizedDoc(list(range(10 * k + 10, 10 * k + 16)), Document("a. b. c.")) for k in range(2)]
        >>> corpus = TokenizedCorpus(docs, special_ids={"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}, vocab_size=30)
        >>> nsp = NextSentencePrediction()
        >>> b = nsp.make_batch(nsp.prepare(corpus), 4, 9, torch.Generator().manual_seed(0))
        >>> b.input_ids.shape, b.next_labels.shape, b.input_ids[:, 0].tolist()
        (torch.Size([4, 9]), torch.Size([4]), [1, 1, 1, 1])
        """
        ids = self._prepared()
        a, b, label = data.sample_pairs(batch_size, self.config.random_next_prob, generator)
        rows = [pair_row(data.tokens(int(x)), data.tokens(int(y)), seq_len, ids.cls, ids.sep, ids.pad)
                for x, y in zip(a.tolist(), b.tolist())]
        tensors = [torch.tensor(list(col), dtype=torch.long) for col in zip(*rows)]
        return self._finish(*tensors, next_labels=label, chars=None, generator=generator)

    def eval_units(self, passages: TokenizedCorpus) -> Segments:
        """The validation passages as segments, grouped into documents (see the module notes):
        by ``source`` (else ``title``), each passage its own when they share one, the two halves
        of a single passage as the last resort."""
        keys = [p.doc.source or p.doc.title for p in passages.docs]
        spans = [segment_spans(p) for p in passages.docs]
        live = [i for i, s in enumerate(spans) if s]
        if len({keys[i] for i in live}) >= 2:
            first_seen = list(dict.fromkeys(keys[i] for i in live))
            order = sorted(live, key=lambda i: (first_seen.index(keys[i]), i))  # a source's passages together
            units = [(passages.docs[i], spans[i], first_seen.index(keys[i])) for i in order]
        elif len(live) >= 2:
            units = [(passages.docs[i], spans[i], i) for i in live]
        elif live:
            (i,) = live
            half = (len(spans[i]) + 1) // 2
            units = [(passages.docs[i], spans[i][:half], 0), (passages.docs[i], spans[i][half:], 1)]
        else:
            units = []
        return Segments.build(units)

    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """One pair per two consecutive segments of every passage (exactly ``round(n *
        random_next_prob)`` of them NotNext), chosen with the fixed seed :data:`EVAL_PAIR_SEED`:
        the same pairs for every evaluation, whatever the run's batch size.

        >>> from workbench.corpora import Document
        >>> text = "One two. Three four. Five six."
        >>> docs = [TokenizedDoc(list(range(5, 5 + len(text))), Document(text, source=s), [1] * len(text)) for s in "xy"]
        >>> corpus = TokenizedCorpus(docs, special_ids={"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}, vocab_size=40)
        >>> batches = NextSentencePrediction().eval_batches(corpus, 3, 24)
        >>> [len(b.input_ids) for b in batches], torch.cat([b.next_labels for b in batches]).sum().item()
        ([3, 1], 2)
        """
        ids = self._read_specials(passages)
        data = self.eval_units(passages)
        require(len(data.firsts) > 0 and data.num_groups >= 2, "eval_chars",
                f"the validation text ({passages.num_tokens} tokens) has no two consecutive sentences for "
                f"next-sentence prediction to pair; use a larger eval_chars (or 0: all of the validation split)")
        a, b, label = data.all_pairs(self.config.random_next_prob, torch.Generator().manual_seed(EVAL_PAIR_SEED))
        rows, chars = [], []
        for x, y in zip(a.tolist(), b.tolist()):
            rows.append(pair_row(data.tokens(x), data.tokens(y), seq_len, ids.cls, ids.sep, ids.pad))
            if data.chars is not None:
                chars.append(pair_row(data.token_chars(x), data.token_chars(y), seq_len, 0, 0, 0)[0])
        tensors = [torch.tensor(list(col), dtype=torch.long) for col in zip(*rows)]
        whole = self._finish(*tensors, next_labels=label, chars=torch.tensor(chars, dtype=torch.long) if chars else None,
                             generator=torch.Generator().manual_seed(EVAL_MASK_SEED))
        return [_rows(whole, i, i + batch_size) for i in range(0, len(label), batch_size)]

    def _finish(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                next_labels: torch.Tensor, chars: torch.Tensor | None, generator: torch.Generator) -> NSPBatch:
        """The batch of the assembled pairs (NSP: no token targets; MLM + NSP masks them)."""
        return NSPBatch(input_ids=input_ids, labels=torch.full_like(input_ids, IGNORE_INDEX),
                        attention_mask=attention_mask, token_type_ids=token_type_ids, next_labels=next_labels)

    # -- loss and metrics --

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        """Cross-entropy of ``nsp_logits`` against the pair labels (summed; the mean for
        backward). Sums: ``nsp_nll``, ``pairs``, ``nsp_correct``."""
        out = _forward(model, batch)
        nll, sums = _nsp_sums(out, batch)
        return LossOutput(loss=nll / sums["pairs"].clamp(min=1), sums=sums)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """``loss`` (mean NSP negative log-likelihood per pair, nats) and ``nsp_acc`` (top-1)."""
        return _nsp_metrics(totals)

    # -- showing a batch --

    def describe_batch(self, batch: Batch, tokenizer: Any = None, row: int = 0) -> list[dict[str, Any]]:
        """Each position of row ``row`` (input, target or "—", how it was masked, segment id,
        attention), as :func:`workbench.objectives.masked_lm.describe_batch` shows them."""
        return describe_batch(batch, tokenizer, row, mask_id=self._mask_id())

    def describe_pair(self, batch: Batch, tokenizer: Any = None, row: int = 0) -> dict[str, Any]:
        """Row ``row`` as a pair: its label, A and B, and every position (see :func:`describe_pair`)."""
        return describe_pair(batch, tokenizer, row, mask_id=self._mask_id())

    # -- helpers --

    def _read_specials(self, corpus: TokenizedCorpus) -> PairIds:
        self.pair_ids = PairIds.of(corpus)
        return self.pair_ids

    def _prepared(self) -> PairIds:
        if self.pair_ids is None:
            raise RuntimeError(f"{type(self).__name__}.make_batch needs prepare(train corpus) first "
                               f"(it reads the special ids)")
        return self.pair_ids

    def _mask_id(self) -> int | None:
        return None


def _forward(model: nn.Module, batch: Batch) -> Any:
    return model(batch.input_ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids)


def _nsp_sums(out: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = getattr(out, "nsp_logits", None)
    if logits is None:
        raise ValueError("next-sentence prediction needs a model with a next-sentence head (its output's "
                         "nsp_logits); this model has none: use arch 'bert'")
    labels = getattr(batch, "next_labels", None)
    if labels is None:
        raise ValueError("next-sentence prediction needs batches with next_labels (an NSPBatch)")
    nll = F.cross_entropy(logits.float(), labels, reduction="sum")
    sums = {"nsp_nll": nll.detach(), "pairs": (labels >= 0).sum(),
            "nsp_correct": (logits.detach().argmax(-1) == labels).sum()}
    return nll, sums


def _nsp_metrics(totals: dict[str, float]) -> dict[str, float]:
    pairs = totals["pairs"]
    return {"loss": totals["nsp_nll"] / max(1.0, pairs), "nsp_acc": totals.get("nsp_correct", 0.0) / pairs if pairs else 0.0}


# --- masked LM + next-sentence prediction ---------------------------------------------------------

class MaskedLMWithNSP(NextSentencePrediction):
    """BERT's pre-training: the NSP pairs, masked as masked LM masks (special tokens and
    padding never selected); one forward pass, loss = masked-LM loss + NSP loss (each a mean:
    over the masked tokens, over the pairs)."""

    name = "mlm+nsp"
    config_cls = MLMNSPConfig  # type: ignore[assignment]
    special_tokens = (PAD, CLS, SEP, MASK)
    predicts = "the masked tokens (seen with both sides of their context) and whether segment B follows segment A"

    config: MLMNSPConfig  # type: ignore[assignment]

    def __init__(self, config: MLMNSPConfig | None = None) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self.vocab: MLMVocab | None = None

    def _read_specials(self, corpus: TokenizedCorpus) -> PairIds:
        self.vocab = MLMVocab.of(corpus)
        return super()._read_specials(corpus)

    def _mask_id(self) -> int | None:
        return self.vocab.mask if self.vocab is not None else None

    def _finish(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                next_labels: torch.Tensor, chars: torch.Tensor | None, generator: torch.Generator) -> NSPBatch:
        """Mask the pairs with ``generator``; ``label_chars``: the characters each selected token
        spells (evaluation), for bits per character of the masked tokens."""
        vocab = self.vocab
        assert vocab is not None
        never = torch.isin(input_ids, vocab.special) | (attention_mask == 0)
        inputs, labels = mask_tokens(input_ids, never, vocab.mask, vocab.replacements, self.config, generator)
        label_chars = torch.where(labels != IGNORE_INDEX, chars, 0) if chars is not None else None
        return NSPBatch(input_ids=inputs, labels=labels, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        label_chars=label_chars, next_labels=next_labels)

    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """The NSP validation pairs (see :meth:`NextSentencePrediction.eval_batches`), masked
        with the fixed seed :data:`~workbench.objectives.masked_lm.EVAL_MASK_SEED`."""
        batches = super().eval_batches(passages, batch_size, seq_len)
        require(any(bool((b.labels != IGNORE_INDEX).any()) for b in batches), "eval_chars",
                f"the validation pairs are too short for masked LM to select any token at "
                f"mask_rate={self.config.mask_rate}; use a larger eval_chars")
        return batches

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        """Masked-LM cross-entropy over the selected positions plus NSP cross-entropy over the
        pairs, each a mean. Sums: masked LM's ``nll``, ``tokens``, ``correct`` (``chars``) and
        NSP's ``nsp_nll``, ``pairs``, ``nsp_correct``."""
        out = _forward(model, batch)
        logits = out.logits  # (B, T, V)
        labels = batch.labels
        mlm_nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                                  ignore_index=IGNORE_INDEX, reduction="sum")
        labelled = labels != IGNORE_INDEX
        tokens = labelled.sum()
        sums = {"nll": mlm_nll.detach(), "tokens": tokens, "correct": (logits.detach().argmax(-1) == labels).sum()}
        if batch.label_chars is not None:
            sums["chars"] = (batch.label_chars * labelled).sum()
        nsp_nll, nsp = _nsp_sums(out, batch)
        sums.update(nsp)
        return LossOutput(loss=mlm_nll / tokens.clamp(min=1) + nsp_nll / nsp["pairs"].clamp(min=1), sums=sums)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """``loss`` = ``mlm_loss`` + ``nsp_loss``; masked LM's ``ppl``, ``acc`` (masked-token
        accuracy) and ``bpc`` (of the masked tokens, when known); ``nsp_acc``."""
        mlm = MaskedLM().metrics(totals)
        nsp = _nsp_metrics(totals)
        out = {"loss": mlm["loss"] + nsp["loss"], "mlm_loss": mlm["loss"], "ppl": mlm["ppl"], "acc": mlm["acc"]}
        if "bpc" in mlm:
            out["bpc"] = mlm["bpc"]
        out.update(nsp_loss=nsp["loss"], nsp_acc=nsp["nsp_acc"])
        return out


# --- what a batch looks like ----------------------------------------------------------------------

def describe_pair(batch: Batch, tokenizer: Any = None, row: int = 0, mask_id: int | None = None) -> dict[str, Any]:
    """Row ``row`` of a pair batch: ``label`` (0/1) and what it ``means``, the tokens of ``A`` and
    ``B`` as fed in (segments 0 and 1 between the special tokens), and ``positions``: one dict per
    position as :func:`workbench.objectives.masked_lm.describe_batch` gives them (input, target
    or "—", how it was masked, segment, attention). Pure: reads the tensors, changes nothing.

    >>> b = NSPBatch(input_ids=torch.tensor([[1, 7, 2, 8, 9, 2, 0]]), labels=torch.full((1, 7), -100),
    ...              attention_mask=torch.tensor([[1, 1, 1, 1, 1, 1, 0]]), token_type_ids=torch.tensor([[0, 0, 0, 1, 1, 1, 0]]),
    ...              next_labels=torch.tensor([1]))
    >>> view = describe_pair(b)
    >>> view["label"], view["means"], view["A"], view["B"], [p["segment"] for p in view["positions"]]
    (1, 'NotNext: B is from another document', ['7'], ['8', '9'], [0, 0, 0, 1, 1, 1, 0])
    """
    positions = describe_batch(batch, tokenizer, row, mask_id=mask_id)
    real = [p for p in positions if p["attention"]]
    a = [p["input"] for p in real if p["segment"] == 0][1:-1]  # between [CLS] and the first [SEP]
    b = [p["input"] for p in real if p["segment"] == 1][:-1]  # before the last [SEP]
    labels = getattr(batch, "next_labels", None)
    label = int(labels[row]) if labels is not None else None
    return {"label": label, "means": LABEL_NAMES.get(label, "") if label is not None else "", "A": a, "B": b,
            "positions": positions}
