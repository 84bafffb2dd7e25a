"""Fine-tuning objectives: the generic :class:`~workbench.trainer.Trainer` fits a task head
(:mod:`workbench.finetune.heads`) on a :class:`~workbench.finetune.tasks.TaskData` with no
training loop of its own.

- :class:`ClassificationObjective`: text -> class (``SequenceClassifier``); ``loss``, ``acc``,
  ``macro_f1``;
- :class:`TaggingObjective`: words -> BIO tags (``TokenClassifier``); ``loss``, ``token_acc``,
  ``entity_f1``;
- :class:`QAObjective`: question + context -> answer span (``SpanQA``); ``loss``,
  ``exact_match``, ``f1`` (SQuAD v1.1).

Every example is tokenised once, at construction (``prepare``/``eval_set``), by our
:class:`~workbench.tokenizers.Tokenizer` or a Hugging Face fast tokenizer (:func:`encode_texts`
is the one adapter). ``make_batch`` samples rows with the step's generator and pads them right
to the longest row (the trainer's ``seq_len`` is ignored: ``max_len`` fixed the rows' lengths).

**Sums, not means**: ``loss`` returns counts the evaluator adds up over the whole
:class:`EvalSet`, so each metric is exactly the ``metrics.py`` function over all evaluated
predictions (the confusion matrix for macro F1, entity tp/fp/fn for entity F1, summed EM/F1).
Scores that need Python (BIO entities, answer strings) are computed only when the model is in
eval mode, as :func:`~workbench.trainer.evaluate` runs it: training steps never wait on them.

**What the trainer needs from a head**: nothing beyond ``nn.Module``: ``build_optimizer`` takes
``model.parameters()`` (or ``heads.param_groups``, whose head group's ``lr_scale`` the trainer
multiplies into its schedule: a separate learning rate for the head), checkpoints take ``state_dict()``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.base import unwrap_model
from ..objectives.base import IGNORE_INDEX, Batch, EvalSet, LossOutput, Objective
from .heads import align_word_labels, best_span, char_span_to_tokens, is_causal_model, tokens_to_char_span
from .metrics import bio_entities, squad_em, squad_f1
from .tasks import QAExample, TaskData, TextExample, TokenExample

MAX_EVAL = 512
"""Default cap on evaluated examples (the first ``max_eval`` of the split, in its fixed order):
every evaluation scores the same examples and stays a few seconds on a CPU."""

Offsets = list[tuple[int, int]]


# --- tokenizers: ours or Hugging Face's ---------------------------------------------------------

def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[tuple[list[int], Offsets]]:
    """Ids and ``[start, end)`` character offsets of each text, no special tokens: our
    tokenizers' ``encode_offsets``, or an HF fast tokenizer's ``return_offsets_mapping``."""
    texts = list(texts)
    if hasattr(tokenizer, "encode_offsets"):
        return [(list(ids), [tuple(o) for o in offs]) for ids, offs in tokenizer.encode_offsets(texts)]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return [(list(ids), [tuple(o) for o in offs]) for ids, offs in zip(enc["input_ids"], enc["offset_mapping"])]


@dataclass(frozen=True)
class Specials:
    """[CLS]/[SEP] ids (None where the tokenizer has none: a GPT's reads the bare text) and [PAD]."""

    cls: int | None
    sep: int | None
    pad: int

    @classmethod
    def of(cls, tokenizer: Any) -> Specials:
        def get(token: str, hf_attr: str) -> int | None:
            if hasattr(tokenizer, "encode_offsets"):  # ours
                return tokenizer.token_to_id(token) if token in tokenizer.special_tokens else None
            return getattr(tokenizer, hf_attr, None)

        pad = get("[PAD]", "pad_token_id")
        return cls(get("[CLS]", "cls_token_id"), get("[SEP]", "sep_token_id"), 0 if pad is None else pad)

    def wrap(self, *parts: list) -> list:
        """Ids ``[CLS] a [SEP] (b [SEP])``, leaving out what the tokenizer lacks."""
        out = [self.cls] if self.cls is not None else []
        for p in parts:
            out += p + ([self.sep] if self.sep is not None else [])
        return out

    def wrap_offsets(self, *parts: Offsets) -> Offsets:
        """The offsets of :meth:`wrap`'s ids: ``(0, 0)`` for the specials."""
        out: Offsets = [(0, 0)] if self.cls is not None else []
        for p in parts:
            out += p + ([(0, 0)] if self.sep is not None else [])
        return out

    def count(self, n_parts: int) -> int:
        return (self.cls is not None) + n_parts * (self.sep is not None)


# --- rows and batches -----------------------------------------------------------------------------

@dataclass
class Row:
    """One tokenised example: ids with specials, and its label(s)."""

    ids: list[int]
    label: int | list[int]  # class id, or a label per token (IGNORE_INDEX where none)
    type_ids: list[int] | None = None
    start: int = IGNORE_INDEX  # QA: answer tokens (inclusive)
    end: int = IGNORE_INDEX
    ref: int = -1  # QA: index into QAObjective.refs (context, offsets, answer)
    context: list[int] | None = None  # QA: 1 on context tokens


@dataclass
class TaskBatch(Batch):
    """A :class:`Batch` plus what the heads and the scoring need."""

    start_positions: torch.Tensor | None = None  # (B,) QA answer start token
    end_positions: torch.Tensor | None = None  # (B,) QA answer end token (inclusive)
    context_mask: torch.Tensor | None = None  # (B, T) QA: 1 on context tokens (where answers may lie)
    refs: torch.Tensor | None = None  # (B,) QA: rows of QAObjective.refs
    padding_fraction: float | None = None  # share of padding positions (the trainer logs it)


def collate(rows: Sequence[Row], pad: int) -> TaskBatch:
    """Rows padded right to the longest: ids with ``pad``, token labels with IGNORE_INDEX."""
    T = max(1, max(len(r.ids) for r in rows))

    def padded(seqs: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([s + [value] * (T - len(s)) for s in seqs], dtype=torch.long)  # (B, T)

    ids = padded([r.ids for r in rows], pad)
    mask = padded([[1] * len(r.ids) for r in rows], 0)
    if isinstance(rows[0].label, list):
        labels = padded([r.label for r in rows], IGNORE_INDEX)  # type: ignore[misc]  (B, T)
    else:
        labels = torch.tensor([r.label for r in rows], dtype=torch.long)  # (B,)
    qa = rows[0].ref >= 0
    return TaskBatch(
        input_ids=ids, labels=labels, attention_mask=mask,
        token_type_ids=padded([r.type_ids for r in rows], 0) if rows[0].type_ids is not None else None,
        start_positions=torch.tensor([r.start for r in rows]) if qa else None,
        end_positions=torch.tensor([r.end for r in rows]) if qa else None,
        context_mask=padded([r.context for r in rows], 0) if qa else None,  # type: ignore[misc]
        refs=torch.tensor([r.ref for r in rows]) if qa else None,
        padding_fraction=1.0 - float(mask.float().mean()))


# --- the shared part ------------------------------------------------------------------------------

class TaskObjective(Objective):
    """A task's examples, tokenised once; samples training rows; builds the fixed eval set.

    ``max_len``: the most tokens a row may have (specials included); keep it within the
    model's positions (``block_size``). ``max_eval``: the first this many examples of an eval
    split are scored (:data:`MAX_EVAL`; None: all).
    """

    kind: ClassVar[str]
    needs = frozenset()
    primary_metric = "loss"

    def __init__(self, task: TaskData, tokenizer: Any, max_len: int = 128, max_eval: int | None = MAX_EVAL,
                 batch_size: int = 32) -> None:
        super().__init__()
        if task.kind != self.kind:
            raise ValueError(f"{type(self).__name__} fits {self.kind} tasks; task {task.name!r} is {task.kind}: "
                             f"use {OBJECTIVE_OF_KIND.get(task.kind, type(self)).__name__}")
        if max_len < 4:
            raise ValueError(f"max_len must be at least 4 tokens, got {max_len}")
        self.task, self.tokenizer, self.max_len = task, tokenizer, max_len
        self.max_eval, self.eval_batch_size = max_eval, batch_size
        self.specials = Specials.of(tokenizer)
        self.label_ids = {label: i for i, label in enumerate(task.labels)}
        self.dropped: dict[str, int] = {}
        """Examples left out per split (QA: answer cut off by ``max_len``)."""

    @abstractmethod
    def encode(self, examples: Sequence[Any], split: str) -> list[Row]:
        """Tokenise ``examples`` of ``split`` once into rows (each kind lays its rows out its own way)."""

    def _split(self, split: str | Sequence[Any], limit: int | None = None) -> tuple[str, list[Any]]:
        name, examples = (split, self.task.split(split)) if isinstance(split, str) else ("given", list(split))
        return name, examples[:limit] if limit is not None else examples

    def prepare(self, corpus: Any = "train") -> list[Row]:
        """The training rows of split ``corpus`` (a split name, or a list of examples: a
        :func:`~workbench.finetune.tasks.sample_budget`), what ``make_batch`` samples from."""
        name, examples = self._split(corpus)
        rows = self.encode(examples, name)
        if not rows:
            raise ValueError(f"no {name} examples of task {self.task.name!r} to train on "
                             f"({self.dropped.get(name, 0)} dropped)")
        return rows

    def make_batch(self, data: list[Row], batch_size: int, seq_len: int, generator: torch.Generator) -> TaskBatch:
        """``batch_size`` rows drawn with replacement by ``generator``; ``seq_len`` is unused."""
        idx = torch.randint(len(data), (batch_size,), generator=generator).tolist()
        return collate([data[i] for i in idx], self.specials.pad)

    def eval_set(self, split: str | Sequence[Any] = "val", max_eval: int | None = -1) -> EvalSet:
        """The fixed eval batches: the first ``max_eval`` examples of ``split`` (-1: the
        objective's ``max_eval``), in order, ``batch_size`` a batch."""
        name, examples = self._split(split, self.max_eval if max_eval == -1 else max_eval)
        rows = self.encode(examples, name)
        if not rows:
            raise ValueError(f"no {name} examples of task {self.task.name!r} to evaluate")
        step = self.eval_batch_size
        return EvalSet([collate(rows[i:i + step], self.specials.pad) for i in range(0, len(rows), step)])

    def eval_batches(self, passages: Any = "val", batch_size: int = 0, seq_len: int = 0) -> list[Batch]:
        return list(self.eval_set(passages).batches)

    @staticmethod
    def _scoring(model: nn.Module) -> bool:
        return not model.training  # scoring in Python only when evaluating

    def describe_batch(self, batch: Batch, tokenizer: Any = None, row: int = 0) -> list[dict[str, Any]]:
        from ..objectives.base import describe_positions

        if batch.labels.dim() == 1:  # a label per row: no per-position targets
            batch = Batch(batch.input_ids, torch.full_like(batch.input_ids, IGNORE_INDEX), batch.attention_mask)
        return describe_positions(batch, tokenizer, row)


# --- classification -------------------------------------------------------------------------------

class ClassificationObjective(TaskObjective):
    """Text -> one of ``task.labels``: ``[CLS] text [SEP]`` (cut to ``max_len``), the head's
    cross-entropy; sums of the confusion counts ``conf_i_j`` (true i, predicted j)."""

    name = "classification"
    kind = "classification"
    predicts = predicts_short = "the class"

    def encode(self, examples: Sequence[TextExample], split: str) -> list[Row]:
        room = self.max_len - self.specials.count(1)
        encoded = encode_texts(self.tokenizer, [e.text for e in examples])
        return [Row(self.specials.wrap(ids[:room]), self.label_ids[e.label]) for e, (ids, _) in zip(examples, encoded)]

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits, loss = model(batch.input_ids, batch.attention_mask, batch.labels)  # (B, K), mean
        K = logits.size(-1)
        pred = logits.argmax(-1)  # (B,)
        conf = torch.bincount(batch.labels * K + pred, minlength=K * K)  # (K*K,) true-major
        sums = {"nll": F.cross_entropy(logits.detach().float(), batch.labels, reduction="sum"),
                "examples": torch.tensor(len(pred), device=pred.device), "correct": (pred == batch.labels).sum(),
                **{f"conf_{i}_{j}": conf[i * K + j] for i in range(K) for j in range(K)}}
        return LossOutput(loss=loss, sums=sums)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """``macro_f1`` over the labels seen as truth or prediction (scikit-learn's default)."""
        n = max(totals["examples"], 1.0)
        K = len(self.task.labels)
        cm = [[totals.get(f"conf_{i}_{j}", 0.0) for j in range(K)] for i in range(K)]
        self.confusion = [[int(v) for v in row] for row in cm]  # the last evaluation's, for its artifact
        f1 = []
        for i in range(K):
            support = sum(cm[i]) + sum(row[i] for row in cm)  # true + predicted
            if support:
                f1.append(2 * cm[i][i] / support)
        return {"loss": totals["nll"] / n, "acc": totals["correct"] / n,
                "macro_f1": sum(f1) / len(f1) if f1 else 0.0}


# --- tagging --------------------------------------------------------------------------------------

class TaggingObjective(TaskObjective):
    """Words -> BIO tags. The words are joined by spaces, tokenised, and each word's tag goes to
    its first piece (:func:`align_word_labels`); a word's prediction is its first piece's.
    Words past ``max_len`` are cut (counted in ``words_cut``) and scored neither way."""

    name = "tagging"
    kind = "tagging"
    predicts = predicts_short = "the tags"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.words_cut: dict[str, int] = {}

    def encode(self, examples: Sequence[TokenExample], split: str) -> list[Row]:
        texts, word_offsets = [], []
        for e in examples:
            offs, pos = [], 0
            for w in e.tokens:
                offs.append((pos, pos + len(w)))
                pos += len(w) + 1
            texts.append(" ".join(e.tokens))
            word_offsets.append(offs)
        room = self.max_len - self.specials.count(1)
        rows = []
        for e, offs, (ids, tok_offs) in zip(examples, word_offsets, encode_texts(self.tokenizer, texts)):
            tags = [self.label_ids[t] for t in e.tags]
            labels = align_word_labels(offs, self.specials.wrap_offsets(tok_offs[:room]), tags)
            self.words_cut[split] = self.words_cut.get(split, 0) + len(tags) - sum(y != IGNORE_INDEX for y in labels)
            rows.append(Row(self.specials.wrap(ids[:room]), labels))
        return rows

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits, loss = model(batch.input_ids, batch.attention_mask, batch.labels)  # (B, T, K)
        labels = batch.labels  # (B, T)
        keep = labels != IGNORE_INDEX  # first pieces of words
        pred = logits.argmax(-1)  # (B, T)
        sums = {"nll": F.cross_entropy(logits.detach().flatten(0, 1).float(), labels.flatten(),
                                       ignore_index=IGNORE_INDEX, reduction="sum"),
                "words": keep.sum(), "correct": ((pred == labels) & keep).sum()}
        if self._scoring(model):
            tp = fp = fn = 0
            names = self.task.labels
            for y, p, k in zip(labels.tolist(), pred.tolist(), keep.tolist()):
                t = bio_entities([names[a] for a, m in zip(y, k) if m])
                q = bio_entities([names[b] for b, m in zip(p, k) if m])
                tp, fp, fn = tp + len(t & q), fp + len(q - t), fn + len(t - q)
            sums |= {k: torch.tensor(v, device=pred.device) for k, v in (("ent_tp", tp), ("ent_fp", fp), ("ent_fn", fn))}
        return LossOutput(loss=loss, sums=sums)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """``entity_f1``: micro-averaged over entities, seqeval's default mode."""
        n = max(totals["words"], 1.0)
        tp, fp, fn = (totals.get(k, 0.0) for k in ("ent_tp", "ent_fp", "ent_fn"))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return {"loss": totals["nll"] / n, "token_acc": totals["correct"] / n,
                "entity_f1": 2 * p * r / (p + r) if p + r else 0.0}


# --- extractive QA --------------------------------------------------------------------------------

@dataclass(frozen=True)
class QARef:
    """What scoring a prediction needs: the context, each token's offsets into it, the answer."""

    context: str
    offsets: Offsets
    answer: str


class QAObjective(TaskObjective):
    """``[CLS] question [SEP] context [SEP]`` (segments 0 / 1): the question is kept whole
    (cut to half of ``max_len`` if longer), the context cut to what fits. An example whose answer
    does not lie wholly in the kept context is **dropped** (counted in ``dropped[split]``), not
    pointed at [CLS] as HF does: SQuAD v1.1 has no unanswerable questions, and the eval scores
    only the examples kept. Answers are the best span of at most ``max_answer_len`` tokens over
    context positions (:func:`best_span`), mapped back to characters."""

    name = "qa"
    kind = "qa"
    predicts = predicts_short = "the answer span"

    def __init__(self, *args: Any, max_answer_len: int = 30, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_answer_len = max_answer_len
        self.refs: list[QARef] = []
        """Every encoded example's scoring data (batches carry row numbers into it); each
        ``prepare``/``eval_set`` call appends its examples."""

    def layout(self, q: tuple[list[int], Offsets], c: tuple[list[int], Offsets]) -> tuple[list[int], Offsets, list[int], list[int]]:
        """One question/context pair, tokenised, as the model reads it: ids ``[CLS] q [SEP] c [SEP]``
        (question cut to half of ``max_len``, context to what fits), each id's offsets into the
        context ((0, 0) off it), segment ids, and 1 on the context's tokens."""
        sp = self.specials
        q_ids = q[0][:self.max_len // 2]
        room = self.max_len - len(q_ids) - sp.count(2)
        c_ids, c_offs = c[0][:room], c[1][:room]
        offsets = sp.wrap_offsets([(0, 0)] * len(q_ids), c_offs)
        n_first = len(sp.wrap(q_ids))  # [CLS] question [SEP]
        context = [0] * n_first + [1] * len(c_ids) + [0] * (len(offsets) - n_first - len(c_ids))
        return sp.wrap(q_ids, c_ids), offsets, [0] * n_first + [1] * (len(offsets) - n_first), context

    def encode(self, examples: Sequence[QAExample], split: str) -> list[Row]:
        questions = encode_texts(self.tokenizer, [e.question for e in examples])
        contexts = encode_texts(self.tokenizer, [e.context for e in examples])
        rows = []
        for e, q, c in zip(examples, questions, contexts):
            ids, offsets, segments, context = self.layout(q, c)
            span = char_span_to_tokens(offsets, e.answer_start, e.answer_start + len(e.answer_text),
                                       [bool(m) for m in context])
            if span is None:
                self.dropped[split] = self.dropped.get(split, 0) + 1
                continue
            self.refs.append(QARef(e.context, offsets, e.answer_text))
            rows.append(Row(ids, [IGNORE_INDEX] * len(offsets), segments, span[0], span[1], len(self.refs) - 1, context))
        return rows

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        assert isinstance(batch, TaskBatch)
        trunk = getattr(unwrap_model(model), "trunk", None)
        segments = None if trunk is not None and is_causal_model(trunk) else batch.token_type_ids  # GPTs have none
        start, end, loss = model(batch.input_ids, batch.attention_mask, batch.start_positions, batch.end_positions,
                                 token_type_ids=segments)  # (B, T) x 2, mean
        nll = (F.cross_entropy(start.detach().float(), batch.start_positions, reduction="sum")
               + F.cross_entropy(end.detach().float(), batch.end_positions, reduction="sum")) / 2
        sums = {"nll": nll, "examples": torch.tensor(len(start), device=start.device)}
        if self._scoring(model):
            em = f1 = 0.0
            spans = best_span(start.float(), end.float(), batch.context_mask, self.max_answer_len)
            for (s, e), i in zip(spans, batch.refs.tolist()):  # type: ignore[misc, union-attr]
                ref = self.refs[i]
                a, b = tokens_to_char_span(ref.offsets, s, e, ref.context)
                em += squad_em(ref.context[a:b], [ref.answer])
                f1 += squad_f1(ref.context[a:b], [ref.answer])
            sums |= {"em": torch.tensor(em, device=start.device), "f1": torch.tensor(f1, device=start.device)}
        return LossOutput(loss=loss, sums=sums)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        n = max(totals["examples"], 1.0)
        return {"loss": totals["nll"] / n, "exact_match": totals.get("em", 0.0) / n, "f1": totals.get("f1", 0.0) / n}


OBJECTIVE_OF_KIND: dict[str, type[TaskObjective]] = {
    "classification": ClassificationObjective, "tagging": TaggingObjective, "qa": QAObjective}


def objective_for(task: TaskData, tokenizer: Any, **kwargs: Any) -> TaskObjective:
    """The objective of ``task.kind``, e.g. ``objective_for(load_task("names"), tok, max_len=64)``."""
    if task.kind not in OBJECTIVE_OF_KIND:
        raise ValueError(f"task {task.name!r} has unknown kind {task.kind!r}; known: {', '.join(OBJECTIVE_OF_KIND)}")
    return OBJECTIVE_OF_KIND[task.kind](task, tokenizer, **kwargs)
