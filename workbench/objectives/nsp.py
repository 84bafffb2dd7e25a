"""Next-sentence prediction (BERT): is segment B the text that follows segment A, or a segment
of another document? And masked LM + next-sentence prediction trained jointly, as BERT was.

**Pairs.** Each example is ``[CLS] A [SEP] B [SEP] [PAD]...`` with segment ids 0 for
``[CLS] A [SEP]`` and 1 for ``B [SEP]`` (padding: segment 0, ``attention_mask`` 0), laid out
exactly as Hugging Face's BERT tokenizer lays out ``tokenizer(a, b)``; a pair longer than
``seq_len`` is cut as its ``truncation="longest_first"`` cuts it (:mod:`workbench.objectives.pairs`).
With probability ``1 - random_next_prob`` B is the segment that follows A in A's document
(label 0, *IsNext*); otherwise B is a segment drawn uniformly from the segments of the *other*
documents (label 1, *NotNext*; never from A's own document). The labels follow the model's NSP
head (``ModelOutput.nsp_logits``: index 0 = is next, as in HF).

**Segments** are sentences, found through the characters each token spells
(:mod:`workbench.objectives.segments`): the training split is tokenized with them (see
:attr:`NextSentencePrediction.wants_char_lengths`); a split without is cut into sentence-sized
chunks. MLM + NSP's ``whole_word`` masks whole words of the pairs, as masked LM does.

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

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ObjectiveConfig, require
from ..corpora import Document
from .base import IGNORE_INDEX, Batch, LossOutput, Objective, TokenizedCorpus
from .masked_lm import (
    CLS, EVAL_MASK_SEED, MASK, PAD, SEP, MaskedLM, MaskedLMConfig, MLMVocab, attention_matrix, describe_batch,
    mask_tokens, masked_lm_terms,
)
# the pair layout and the segments have their own modules; their names stay importable from here
from .pairs import LABEL_NAMES, NSPBatch, describe_pair, pair_row, pair_word_starts, rows_of, truncated_lengths
from .segments import DOCUMENTS_HINT, IS_NEXT, NOT_NEXT, Segments, _needs_two_documents, segment_spans
from .words import word_ids

EVAL_PAIR_SEED = 0
"""Seed of the choice of the validation pairs (which get a random B, and which B): every
evaluation of every run on a corpus scores the same pairs."""

__all__ = ["NSPConfig", "MLMNSPConfig", "NSPBatch", "Segments", "NextSentencePrediction", "MaskedLMWithNSP",
           "truncated_lengths", "pair_row", "segment_spans", "describe_pair", "attention_matrix", "IS_NEXT",
           "NOT_NEXT", "LABEL_NAMES", "DOCUMENTS_HINT"]


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
    predicts_short = "next sentence"
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
        return Segments.build([(d, s, i) for i, (d, s) in enumerate(zip(corpus.docs, spans))], self._masks_words())

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
        >>> from workbench.objectives import TokenizedDoc
        >>> docs = [TokenizedDoc(list(range(10 * k + 10, 10 * k + 16)), Document("a. b. c.")) for k in range(2)]
        >>> corpus = TokenizedCorpus(docs, special_ids={"[PAD]": 0, "[CLS]": 1, "[SEP]": 2}, vocab_size=30)
        >>> nsp = NextSentencePrediction()
        >>> b = nsp.make_batch(nsp.prepare(corpus), 4, 9, torch.Generator().manual_seed(0))
        >>> b.input_ids.shape, b.next_labels.shape, b.input_ids[:, 0].tolist()
        (torch.Size([4, 9]), torch.Size([4]), [1, 1, 1, 1])
        """
        ids = self._prepared()
        a, b, label = data.sample_pairs(batch_size, self.config.random_next_prob, generator)
        pairs = list(zip(a.tolist(), b.tolist()))
        rows = [pair_row(data.tokens(x), data.tokens(y), seq_len, ids.cls, ids.sep, ids.pad) for x, y in pairs]
        tensors = [torch.tensor(list(col), dtype=torch.long) for col in zip(*rows)]
        return self._finish(*tensors, next_labels=label, chars=None, generator=generator,
                            starts=pair_word_starts(data, pairs, seq_len))

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
        return Segments.build(units, self._masks_words())

    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """One pair per two consecutive segments of every passage (exactly ``round(n *
        random_next_prob)`` of them NotNext), chosen with the fixed seed :data:`EVAL_PAIR_SEED`:
        the same pairs for every evaluation, whatever the run's batch size.

        >>> from workbench.corpora import Document
        >>> from workbench.objectives import TokenizedDoc
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
                             generator=torch.Generator().manual_seed(EVAL_MASK_SEED),
                             starts=pair_word_starts(data, list(zip(a.tolist(), b.tolist())), seq_len))
        return [rows_of(whole, i, i + batch_size) for i in range(0, len(label), batch_size)]

    def _finish(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                next_labels: torch.Tensor, chars: torch.Tensor | None, generator: torch.Generator,
                starts: torch.Tensor | None = None) -> NSPBatch:
        """The batch of the assembled pairs (NSP: no token targets; MLM + NSP masks them, by
        whole words where ``starts`` says where words start)."""
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

    def _masks_words(self) -> bool:
        """Whether the segments must know where words start (MLM + NSP's ``whole_word``)."""
        return False


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
    padding never selected; whole words with ``whole_word``); one forward pass, loss = masked-LM loss + NSP loss (each a mean:
    over the masked tokens, over the pairs)."""

    name = "mlm+nsp"
    config_cls = MLMNSPConfig  # type: ignore[assignment]
    special_tokens = (PAD, CLS, SEP, MASK)
    predicts = "the masked tokens (seen with both sides of their context) and whether segment B follows segment A"
    predicts_short = "masked token + next sentence"

    config: MLMNSPConfig  # type: ignore[assignment]

    def __init__(self, config: MLMNSPConfig | None = None) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self.vocab: MLMVocab | None = None

    def _read_specials(self, corpus: TokenizedCorpus) -> PairIds:
        self.vocab = MLMVocab.of(corpus)
        return super()._read_specials(corpus)

    def _mask_id(self) -> int | None:
        return self.vocab.mask if self.vocab is not None else None

    def _masks_words(self) -> bool:
        return self.config.whole_word

    def _finish(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                next_labels: torch.Tensor, chars: torch.Tensor | None, generator: torch.Generator,
                starts: torch.Tensor | None = None) -> NSPBatch:
        """Mask the pairs with ``generator`` (whole words when ``whole_word``: ``starts`` says
        where they start); ``label_chars``: the characters each selected token spells
        (evaluation), for bits per character of the masked tokens."""
        vocab = self.vocab
        assert vocab is not None
        if self.config.whole_word and starts is None:
            raise ValueError("whole_word masking needs the segments prepare() makes with it (they know the words)")
        never = torch.isin(input_ids, vocab.special) | (attention_mask == 0)
        words = word_ids(starts) if starts is not None else None
        inputs, labels = mask_tokens(input_ids, never, vocab.mask, vocab.replacements, self.config, generator, words)
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
        out, mlm_nll, sums = masked_lm_terms(model, batch)  # the MLM head at the masked positions only
        tokens = sums["tokens"]
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
