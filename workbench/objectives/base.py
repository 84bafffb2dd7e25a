"""The objective interface: an objective makes batches, owns the loss and names its metrics.

The trainer only calls ``make_batch``, ``loss`` and ``metrics``; the evaluator adds up the sums
that ``loss`` returns over a fixed :class:`EvalSet`. A new objective (masked LM, next-sentence
prediction, span corruption, a fine-tuning head) is a new module here plus one registry line,
not a trainer change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..config import ObjectiveConfig
from ..corpora import Document

IGNORE_INDEX = -100
"""Label value the loss skips (padding, unmasked positions), as in Hugging Face."""

IGNORED = "—"
"""How :meth:`Objective.describe_batch` shows the target of a position the loss ignores."""


@dataclass
class TokenizedDoc:
    """A document, its token ids and (for scoring in bits per character) how many characters
    each token completes."""

    ids: list[int]
    doc: Document
    char_lengths: list[int] | None = None


@dataclass
class TokenizedCorpus:
    """Tokenized documents and the ids of the separator that joins them in the corpus text."""

    docs: list[TokenizedDoc]
    separator_ids: list[int] = field(default_factory=list)
    special_ids: dict[str, int] = field(default_factory=dict)
    """The tokenizer's special tokens by name (``{"[MASK]": 4, ...}``): what masking objectives insert."""
    vocab_size: int = 0
    """The tokenizer's vocabulary size (random replacement tokens are drawn below it)."""

    def stream(self) -> list[int]:
        """All documents as one id sequence, joined by the separator (what causal LM reads).

        >>> TokenizedCorpus([TokenizedDoc([1, 2], Document("ab")), TokenizedDoc([3], Document("c"))], [0]).stream()
        [1, 2, 0, 3]
        """
        out: list[int] = []
        for i, d in enumerate(self.docs):
            if i:
                out += self.separator_ids
            out += d.ids
        return out

    @property
    def num_tokens(self) -> int:
        return sum(len(d.ids) for d in self.docs)

    @property
    def num_chars(self) -> int:
        return sum(len(d.doc.text) for d in self.docs)


@dataclass
class Batch:
    """Tensors of one step. Objectives subclass it to add what they need (segment ids, masks)."""

    input_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), IGNORE_INDEX where no loss is taken
    attention_mask: torch.Tensor | None = None  # (B, T), 1 = real token, 0 = padding
    token_type_ids: torch.Tensor | None = None  # (B, T), segment of each token (0 = A, 1 = B), BERT's pairs
    label_chars: torch.Tensor | None = None  # (B, T), characters each label token spells (evaluation)
    decoder_input_ids: torch.Tensor | None = None  # (B, T'), encoder-decoders: the targets shifted right
    decoder_attention_mask: torch.Tensor | None = None  # (B, T'), 1 = real decoder position, 0 = padding

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{k: v.to(device, non_blocking=non_blocking) for k, v in moved.items()
                                if isinstance(v, torch.Tensor)})

    @property
    def num_input_tokens(self) -> int:
        """Token positions fed to the model (from the shape: no device sync)."""
        return self.input_ids.numel()


@dataclass
class LossOutput:
    """The mean loss for backward, plus sums the evaluator adds up exactly over many batches.

    ``sums`` are 0-d tensors left on the device (no ``.item()`` in the hot loop), e.g.
    ``{"nll": summed negative log-likelihood in nats, "tokens": labelled positions, "chars":
    characters those tokens spell}``, or ``{"correct": ..., "total": ...}`` for accuracies.
    ``Objective.metrics`` turns the totals into named metrics.
    """

    loss: torch.Tensor  # scalar, mean over labelled positions
    sums: dict[str, torch.Tensor]


@dataclass
class EvalSet:
    """The fixed validation batches every evaluation scores (built by ``Objective.eval_batches``)."""

    batches: list[Batch]


class Objective(ABC):
    """Makes batches from tokenized documents and computes the loss of a model on them."""

    name: ClassVar[str]
    config_cls: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    needs: ClassVar[frozenset[str]] = frozenset()
    """Model capabilities required (``ModelConfig.capabilities``), e.g. {'causal'}."""
    special_tokens: ClassVar[tuple[str, ...]] = ()
    """Special tokens the tokenizer must have for this objective ([MASK] for MLM, ...)."""
    primary_metric: ClassVar[str] = "loss"
    """The validation metric that picks the 'best' checkpoint (lower is better)."""
    wants_char_lengths: ClassVar[bool] = False
    """Tokenize the training split with each token's characters too (sentence boundaries for
    next-sentence pairs); evaluation passages always have them."""
    predicts: ClassVar[str] = "the next token"
    """What the loss scores, for chart captions: runs of different objectives share bits per
    character, but 'next token' and 'masked token' are not the same task."""
    predicts_short: ClassVar[str] = "next token"
    """``predicts`` in a few words, for chart legends (see :func:`predicts_label`)."""

    def __init__(self, config: ObjectiveConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls(name=self.name)

    def use_tokenizer(self, tokenizer: Any) -> None:
        """Called with the run's tokenizer before ``prepare`` and ``eval_batches``: objectives that
        make their examples from text (seq2seq tasks) keep it; the others need nothing."""

    def tokenizer_text(self, train: Any) -> str:
        """The text a tokenizer is trained on for this objective: the training split's
        (``train``, a :class:`~workbench.corpora.Corpus`); seq2seq tasks add their targets."""
        return train.text

    @abstractmethod
    def prepare(self, corpus: TokenizedCorpus) -> Any:
        """Turn a split's tokenized documents into whatever ``make_batch`` samples from."""

    @abstractmethod
    def make_batch(self, data: Any, batch_size: int, seq_len: int, generator: torch.Generator) -> Batch:
        """A random training batch; all randomness from ``generator`` (seeded per step)."""

    @abstractmethod
    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """Deterministic batches covering the validation passages (the same for every run)."""

    def attention_probe(self, probe_ids: list[int], tokenizer: Any,
                        seq_len: int | None = None) -> tuple[list[int], list[int]] | None:
        """For an encoder-decoder objective: the (encoder ids, decoder input ids) pair whose
        attention a run snapshots at each evaluation, made like one of its examples from the probe
        text ``probe_ids`` or its own validation data, each side at most ``seq_len`` tokens.
        None (the default): the model reads ``probe_ids`` alone."""
        return None

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> LossOutput: ...

    @abstractmethod
    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """Named metrics (``loss``, ``ppl``, ``bpc``, ``acc``...) from the summed ``LossOutput.sums``."""

    # -- what a batch looks like (the notebook's and the dashboard's batch view) --

    def describe_batch(self, batch: Batch, tokenizer: Any = None, row: int = 0) -> list[dict[str, Any]]:
        """One dict per position of row ``row``: ``position``, ``input`` (the token fed in),
        ``target`` (the token the loss scores there, or "—" where the label is ``IGNORE_INDEX``),
        ``segment`` (0 = A, 1 = B) and ``attention`` (1 = a real token, 0 = padding). Tokens are
        shown with the tokenizer's ``display_token`` (ids without one). Objectives that change the
        inputs (masking) override it to say how each position was made.

        >>> from workbench.objectives import CausalLM
        >>> b = Batch(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([[6, 7, -100]]))
        >>> [(p["input"], p["target"], p["segment"], p["attention"]) for p in CausalLM().describe_batch(b)]
        [('5', '6', 0, 1), ('6', '7', 0, 1), ('7', '—', 0, 1)]
        """
        return describe_positions(batch, tokenizer, row)

    def attention_mask_matrix(self, batch: Batch, row: int = 0) -> torch.Tensor:
        """The (T, T) bool matrix of which keys each query of row ``row`` may attend to: causal
        (lower-triangular) when the objective needs a causal model, bidirectional otherwise;
        padding keys hidden either way (see :func:`attention_mask_matrix`)."""
        return attention_mask_matrix(batch, row, causal="causal" in self.needs)


def describe_positions(batch: Batch, tokenizer: Any = None, row: int = 0) -> list[dict[str, Any]]:
    """What :meth:`Objective.describe_batch` returns by default (its docstring says what each
    field means); objectives that say more (masked LM: how a position was made) start from it."""
    show = getattr(tokenizer, "display_token", None) or str
    ids = batch.input_ids[row].tolist()
    labels = batch.labels[row].tolist()
    n = len(ids)
    segments = batch.token_type_ids[row].tolist() if batch.token_type_ids is not None else [0] * n
    attention = batch.attention_mask[row].tolist() if batch.attention_mask is not None else [1] * n
    return [{"position": pos, "input": show(i), "target": IGNORED if y == IGNORE_INDEX else show(y),
             "segment": seg, "attention": att}
            for pos, (i, y, seg, att) in enumerate(zip(ids, labels, segments, attention))]


def attention_mask_matrix(batch: Batch, row: int = 0, causal: bool = False) -> torch.Tensor:
    """(T, T) bool: entry (i, j) is True when query ``i`` may attend to key ``j``. Causal: only
    ``j <= i``; bidirectional: every ``j``. Keys that are padding (``attention_mask`` 0) are
    hidden in both; a padding query still attends (its output is never scored).

    >>> b = Batch(input_ids=torch.zeros(1, 3, dtype=torch.long), labels=torch.zeros(1, 3, dtype=torch.long),
    ...           attention_mask=torch.tensor([[1, 1, 0]]))
    >>> attention_mask_matrix(b).int().tolist(), attention_mask_matrix(b, causal=True).int().tolist()
    ([[1, 1, 0], [1, 1, 0], [1, 1, 0]], [[1, 0, 0], [1, 1, 0], [1, 1, 0]])
    """
    T = batch.input_ids.size(1)
    keys = batch.attention_mask[row].bool() if batch.attention_mask is not None else torch.ones(T, dtype=torch.bool)
    allowed = keys[None, :].expand(T, T)
    return allowed & torch.ones(T, T, dtype=torch.bool).tril() if causal else allowed.clone()


def predicts_label(objective: str) -> str:
    """What an objective (by registry name) predicts, in a few words, for chart legends: runs of
    different objectives may share bits per character, but not their task. An unknown name (a
    hand-edited config) is returned as it is.

    >>> predicts_label("causal_lm"), predicts_label("mlm"), predicts_label("nsp"), predicts_label("mine")
    ('next token', 'masked token', 'next sentence', 'mine')
    """
    from . import OBJECTIVES  # here, not at the top: the registry imports this module

    cls = OBJECTIVES.get(objective)
    return cls.predicts_short if cls is not None else objective
