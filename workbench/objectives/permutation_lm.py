"""Permutation language modelling (XLNet, Yang et al. 2019) on a decoder trunk.

Each window is read in a random *factorization order*: a token is predicted from the tokens
before it in that order, wherever they sit in the text, so over many orders every token learns
from context on both sides while the objective stays autoregressive (no [MASK] in the input, no
independence between predicted tokens as in BERT). Only the tokens at the end of the order are
predicted (partial prediction, XLNet 2.3: the last 1/K); the others are context that sees all the
other context tokens and none of the predicted ones.

Who may see whom is one (B, T, T) ``perm_mask``, 1 where token i may *not* see token j (HF's
convention). With ``rank`` the place of each token in the order and context tokens given rank -1::

    perm_mask[i, j] = (rank[i] <= rank[j]) and j is predicted

The model runs XLNet's two streams over it (``GPT.forward(perm_mask=...)``): the query stream
predicts token i from the content of the tokens i may see, never from i itself.

Two ways to pick the predicted tokens (``selection``):

- ``"order"``: XLNet's: a uniformly random order over the window, the last ceil(T/K) predicted.
- ``"span"``: Hugging Face's ``DataCollatorForPermutationLanguageModeling``: spans of 1 to
  ``max_span_length`` tokens, one per stretch of ``span / plm_probability`` tokens, are predicted,
  in an order that keeps the first half of the window before the second (why HF needs an even
  length). The same random draws give HF's ``perm_mask`` and labels. Unlike HF's collator the
  predicted tokens are not replaced by [MASK] in the input: the query stream hides them already,
  and later predicted tokens may see the real content of earlier ones (as XLNet does).

Bits per character are over the predicted tokens only, from context on both sides: not the same
task as causal LM's next token, so compare the two with that in mind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ObjectiveConfig, require
from ..metrics import bits_per_char, perplexity
from .base import IGNORE_INDEX, Batch, LossOutput, Objective, TokenizedCorpus, describe_positions

MASK = "[MASK]"

EVAL_PERM_SEED = 0
"""Seed of the orders drawn for the validation passages: every evaluation scores the same tokens."""


@dataclass
class PermutationLMConfig(ObjectiveConfig):
    """Permutation LM (XLNet): predict the tokens at the end of a random factorization order."""

    name: str = "plm"
    """Training objective: the registry name in ``workbench.objectives.OBJECTIVES``."""
    k: int = 6
    """Partial prediction: the last 1/k of each order is predicted (XLNet: 6 or 7); at least 2."""
    selection: Literal["order", "span"] = "order"
    """'order': XLNet's random order, its last ceil(T/k) tokens predicted; 'span': Hugging Face's
    collator (spans, ``plm_probability``, ``max_span_length``; needs an even seq_len)."""
    plm_probability: float = 1 / 6
    """'span' only: the fraction of tokens in predicted spans (HF: 1/6)."""
    max_span_length: int = 5
    """'span' only: the longest predicted span, in tokens (HF: 5)."""

    def __post_init__(self) -> None:
        require(isinstance(self.k, int) and not isinstance(self.k, bool) and self.k >= 2, "k",
                f"must be an integer >= 2 (predict the last 1/k of the order), got {self.k!r}; XLNet uses 6")
        require(self.selection in ("order", "span"), "selection", f"unknown {self.selection!r}; use 'order' or 'span'")
        require(isinstance(self.plm_probability, (int, float)) and 0.0 < self.plm_probability < 1.0,
                "plm_probability", f"must be in (0, 1), got {self.plm_probability!r}; HF uses 1/6")
        require(isinstance(self.max_span_length, int) and self.max_span_length >= 1, "max_span_length",
                f"must be an integer >= 1, got {self.max_span_length!r}; HF uses 5")

    def check_seq_len(self, seq_len: int) -> None:
        """ConfigError naming ``seq_len`` when 'span' gets an odd window (HF's collator refuses it too)."""
        require(self.selection != "span" or seq_len % 2 == 0, "seq_len",
                f"selection='span' needs an even seq_len (the order keeps the first half before the "
                f"second, as in HF's collator), got {seq_len}; use an even one or selection='order'")


@dataclass
class PermutationBatch(Batch):
    """A batch with the factorization order as a mask, and the id the query stream starts from."""

    perm_mask: torch.Tensor | None = None  # (B, T, T) bool, True where token i may not see token j
    mask_token_id: int | None = None  # [MASK]: the query stream's learned start (None: position alone)


@dataclass
class PermutationStream:
    """A split's token stream and the tokenizer's [MASK] id (what ``make_batch`` samples from)."""

    ids: torch.Tensor
    mask_token_id: int | None = None


# --- picking the order and the predicted tokens ---------------------------------------------------

def order_selection(lengths: torch.Tensor, T: int, k: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """XLNet's: a random order over each row's first ``lengths[b]`` tokens (padding goes first
    and is never predicted), the last ceil(length / k) predicted. Returns (rank (B, T), the place
    of each token in the order; predicted (B, T) bool).

    >>> rank, pred = order_selection(torch.tensor([6, 4]), 6, 2, torch.Generator().manual_seed(0))
    >>> pred.sum(1).tolist(), bool(pred[1, 4:].any())
    ([3, 2], False)
    """
    B = lengths.size(0)
    real = torch.arange(T)[None, :] < lengths[:, None]  # (B, T)
    scores = torch.rand(B, T, generator=generator).masked_fill(~real, -1.0)  # padding first in the order
    rank = scores.argsort(dim=1).argsort(dim=1)  # (B, T): 0 = first in the order
    n_pred = (lengths + k - 1) // k  # ceil(length / k)
    return rank, rank >= (T - n_pred)[:, None]


def span_selection(B: int, T: int, plm_probability: float, max_span_length: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """HF's ``DataCollatorForPermutationLanguageModeling.torch_mask_tokens``, draw for draw:
    spans per row first, then one half-window permutation per row. Returns (rank, predicted).

    >>> rank, pred = span_selection(2, 12, 1 / 6, 5, torch.Generator().manual_seed(0))
    >>> bool((rank[:, :6] < 6).all()), sorted(rank[0].tolist()) == list(range(12))
    (True, True)
    """
    predicted = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        cur = 0
        while cur < T:
            span = int(torch.randint(1, max_span_length + 1, (1,), generator=generator).item())
            context = int(span / plm_probability)  # a stretch of text holding one span
            start = cur + int(torch.randint(context - span + 1, (1,), generator=generator).item())
            predicted[b, start : start + span] = True
            cur += context
    rank = torch.empty(B, T, dtype=torch.long)
    for b in range(B):
        halves = torch.arange(T).reshape(-1, T // 2).transpose(0, 1)  # (T/2, 2): i and i + T/2 together
        halves = halves[torch.randperm(T // 2, generator=generator)]
        rank[b] = halves.transpose(0, 1).flatten()  # first half of the window before the second
    return rank, predicted


def permutation_mask(rank: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """(B, T, T) bool ``perm_mask``: True where token i may not see token j. Context tokens take
    rank -1 (XLNet, HF), so they see each other and no predicted token; a predicted token sees
    the context and the predicted tokens before it in the order, never itself.

    >>> permutation_mask(torch.tensor([[2, 0, 1]]), torch.tensor([[True, False, True]])).int().tolist()
    [[[1, 0, 0], [1, 0, 1], [1, 0, 1]]]
    """
    r = rank.masked_fill(~predicted, -1)  # (B, T)
    return (r[:, :, None] <= r[:, None, :]) & predicted[:, None, :]  # (B, T, T)


# --- the objective -----------------------------------------------------------------------------------

class PermutationLM(Objective):
    """Windows of the token stream, a factorization order per row, loss on its last 1/K."""

    name = "plm"
    config_cls = PermutationLMConfig
    needs = frozenset({"permutation"})
    special_tokens = (MASK,)
    predicts = "the tokens at the end of a random factorization order, from those before them in the order (XLNet)"
    predicts_short = "permuted tokens"

    config: PermutationLMConfig

    def prepare(self, corpus: TokenizedCorpus) -> PermutationStream:
        return PermutationStream(torch.tensor(corpus.stream(), dtype=torch.long), corpus.special_ids.get(MASK))

    def _select(self, lengths: torch.Tensor, T: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        c.check_seq_len(T)
        if c.selection == "order":
            return order_selection(lengths, T, c.k, generator)
        rank, predicted = span_selection(len(lengths), T, float(c.plm_probability), c.max_span_length, generator)
        return rank, predicted & (torch.arange(T)[None, :] < lengths[:, None])  # padding is never predicted

    def make_batch(self, data: PermutationStream | torch.Tensor, batch_size: int, seq_len: int,
                   generator: torch.Generator) -> PermutationBatch:
        """``batch_size`` windows of ``seq_len`` tokens (inputs unshifted); labels are the tokens
        at the predicted positions, ``IGNORE_INDEX`` elsewhere.

        >>> b = PermutationLM().make_batch(torch.arange(100), 2, 12, torch.Generator().manual_seed(0))
        >>> (b.labels != -100).sum(1).tolist(), b.perm_mask.shape
        ([2, 2], torch.Size([2, 12, 12]))
        """
        stream = data if isinstance(data, PermutationStream) else PermutationStream(data)
        ids = stream.ids
        if len(ids) < seq_len:
            raise ValueError(f"split has {len(ids)} tokens, fewer than seq_len={seq_len}")
        starts = torch.randint(len(ids) - seq_len + 1, (batch_size,), generator=generator)  # (B,)
        windows = ids[starts[:, None] + torch.arange(seq_len)[None, :]]  # (B, T)
        rank, predicted = self._select(torch.full((batch_size,), seq_len), seq_len, generator)
        return PermutationBatch(input_ids=windows, labels=windows.masked_fill(~predicted, IGNORE_INDEX),
                                perm_mask=permutation_mask(rank, predicted), mask_token_id=stream.mask_token_id)

    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """Non-overlapping windows of ``seq_len`` tokens of each passage (the last one padded,
        ``attention_mask`` 0), orders drawn with the fixed seed :data:`EVAL_PERM_SEED`;
        ``label_chars`` holds the characters each predicted token spells.

        >>> from workbench.corpora import Document
        >>> from workbench.objectives.base import TokenizedDoc
        >>> doc = TokenizedDoc(list(range(10)), Document("abcdefghij"), [1] * 10)
        >>> (b,) = PermutationLM(PermutationLMConfig(k=2)).eval_batches(TokenizedCorpus([doc]), 4, 6)
        >>> b.attention_mask.tolist(), (b.labels != -100).sum(1).tolist(), b.label_chars.sum().item()
        ([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]], [3, 2], 5)
        """
        inputs: list[list[int]] = []
        chars: list[list[int]] = []
        lengths: list[int] = []
        for d in passages.docs:
            lens = d.char_lengths or [0] * len(d.ids)
            for s in range(0, len(d.ids), seq_len):
                w = d.ids[s : s + seq_len]
                pad = seq_len - len(w)
                inputs.append(w + [0] * pad)
                chars.append(lens[s : s + seq_len] + [0] * pad)
                lengths.append(len(w))
        if not inputs:
            return []
        generator = torch.Generator().manual_seed(EVAL_PERM_SEED)
        rank, predicted = self._select(torch.tensor(lengths), seq_len, generator)
        ids, n = torch.tensor(inputs), torch.tensor(lengths)
        real = (torch.arange(seq_len)[None, :] < n[:, None]).long()  # (N, T)
        labels = ids.masked_fill(~predicted, IGNORE_INDEX)
        label_chars = torch.tensor(chars) * predicted
        perm = permutation_mask(rank, predicted)
        mask_id = passages.special_ids.get(MASK)
        sl = [slice(i, i + batch_size) for i in range(0, len(inputs), batch_size)]
        return [PermutationBatch(input_ids=ids[s], labels=labels[s], attention_mask=real[s], label_chars=label_chars[s],
                                 perm_mask=perm[s], mask_token_id=mask_id) for s in sl]

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        """Cross-entropy of the query stream's logits at the predicted positions only."""
        perm_mask = getattr(batch, "perm_mask", None)
        if perm_mask is None:
            raise ValueError("permutation LM needs a batch with perm_mask (from PermutationLM.make_batch)")
        logits = model(batch.input_ids, attention_mask=batch.attention_mask, perm_mask=perm_mask,
                       mask_token_id=getattr(batch, "mask_token_id", None)).logits  # (B, T, V)
        flat = logits.reshape(-1, logits.size(-1)).float()
        labels = batch.labels.reshape(-1)
        nll = F.cross_entropy(flat, labels, ignore_index=IGNORE_INDEX, reduction="sum")
        labelled = labels != IGNORE_INDEX
        tokens = labelled.sum()
        sums = {"nll": nll.detach(), "tokens": tokens,
                "correct": ((flat.argmax(-1) == labels) & labelled).sum()}
        if batch.label_chars is not None:
            sums["chars"] = (batch.label_chars.reshape(-1) * labelled).sum()
        return LossOutput(loss=nll / tokens.clamp(min=1), sums=sums)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """Mean NLL per predicted token (``loss``), ``ppl``, ``acc`` (top-1 on the predicted
        tokens) and ``bpc`` over their characters (when the batches say how many).

        >>> PermutationLM().metrics({"nll": 4.0, "tokens": 4, "correct": 1, "chars": 4})["acc"]
        0.25
        """
        tokens = max(1.0, totals["tokens"])
        mean_nll = totals["nll"] / tokens
        out = {"loss": mean_nll, "ppl": perplexity(mean_nll), "acc": totals.get("correct", 0.0) / tokens}
        if totals.get("chars"):
            out["bpc"] = bits_per_char(totals["nll"], totals["chars"])
        return out

    # -- what a batch looks like --

    def describe_batch(self, batch: Batch, tokenizer: Any = None, row: int = 0) -> list[dict[str, Any]]:
        """One dict per position (see :meth:`Objective.describe_batch`) plus ``order``: a
        predicted token's step in the factorization order (1 = predicted first, seeing only the
        context), "ctx" for context tokens (XLNet gives them all rank -1: they see each other and
        no predicted token), "" for padding. Read from ``perm_mask``: a predicted token sees
        exactly the predicted tokens before it.

        >>> b = PermutationLM().make_batch(torch.arange(60), 1, 12, torch.Generator().manual_seed(0))
        >>> [(p["position"], p["order"]) for p in PermutationLM().describe_batch(b) if p["order"] != "ctx"]
        [(0, 1), (6, 2)]
        """
        out = describe_positions(batch, tokenizer, row)
        predicted = (batch.labels[row] != IGNORE_INDEX).cpu()  # (T,)
        sees = ~getattr(batch, "perm_mask")[row].bool().cpu()  # (T, T): i may see j
        before = (sees & predicted[None, :]).sum(1)  # (T,) predicted tokens each one sees
        for p, is_pred, n in zip(out, predicted.tolist(), before.tolist()):
            p["order"] = n + 1 if is_pred else ("ctx" if p["attention"] else "")
        return out

    def attention_mask_matrix(self, batch: Batch, row: int = 0) -> torch.Tensor:
        """The QUERY stream's (T, T) 'may attend' matrix of row ``row``: token i sees the content
        of j iff ``not perm_mask[i, j]`` and j != i, padding keys hidden.

        >>> b = PermutationLM().make_batch(torch.arange(50), 1, 6, torch.Generator().manual_seed(0))
        >>> bool(PermutationLM().attention_mask_matrix(b).diagonal().any())
        False
        """
        return self._matrix(batch, row) & ~torch.eye(batch.input_ids.size(1), dtype=torch.bool)

    def content_mask_matrix(self, batch: Batch, row: int = 0) -> torch.Tensor:
        """The CONTENT stream's (T, T) 'may attend' matrix: as the query stream's, plus itself."""
        T = batch.input_ids.size(1)
        keys = batch.attention_mask[row].bool() if batch.attention_mask is not None else torch.ones(T, dtype=torch.bool)
        return self._matrix(batch, row) | (torch.eye(T, dtype=torch.bool) & keys[None, :])

    @staticmethod
    def _matrix(batch: Batch, row: int) -> torch.Tensor:
        perm = getattr(batch, "perm_mask")[row].bool().cpu()  # (T, T)
        T = perm.size(0)
        mask = batch.attention_mask
        keys = mask[row].bool().cpu() if mask is not None else torch.ones(T, dtype=torch.bool)
        return ~perm & keys[None, :]

