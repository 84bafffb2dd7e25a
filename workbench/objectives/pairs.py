"""Pairs of segments as BERT reads them: the layout of ``[CLS] A [SEP] B [SEP] [PAD]...``, the
batch that carries them with their labels, and how to read one back.

Segment ids are 0 for ``[CLS] A [SEP]`` and 1 for ``B [SEP]`` (padding: segment 0,
``attention_mask`` 0), laid out exactly as Hugging Face's BERT tokenizer lays out
``tokenizer(a, b)``; a pair longer than the context is cut as its ``truncation="longest_first"``
cuts it (:func:`truncated_lengths`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch

from .base import Batch
from .masked_lm import describe_batch
from .segments import IS_NEXT, NOT_NEXT, Segments

LABEL_NAMES = {IS_NEXT: "IsNext: B follows A", NOT_NEXT: "NotNext: B is from another document"}


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


# --- the batch ------------------------------------------------------------------------------------

@dataclass
class NSPBatch(Batch):
    """A batch of ``[CLS] A [SEP] B [SEP]`` pairs; ``labels`` holds the masked-token targets
    (all ``IGNORE_INDEX`` for NSP alone)."""

    next_labels: torch.Tensor | None = None
    """(B,) 0 = B follows A (IsNext), 1 = B is a segment of another document (NotNext)."""


def rows_of(batch: NSPBatch, i: int, j: int) -> NSPBatch:
    """Rows ``i:j`` of every tensor of a batch (the evaluation set cut into batches)."""
    return replace(batch, **{f.name: getattr(batch, f.name)[i:j] for f in fields(batch)
                             if isinstance(getattr(batch, f.name), torch.Tensor)})


def pair_word_starts(data: Segments, pairs: list[tuple[int, int]], seq_len: int) -> torch.Tensor | None:
    """``(B, seq_len)`` bool: where the words of each pair ``(a, b)`` of segments start, laid out
    as :func:`pair_row` lays out their ids (each special token and padding position a word of
    its own), or None when the segments do not know their words."""
    if data.word_starts is None:
        return None
    rows = [pair_row(data.token_word_starts(a), data.token_word_starts(b), seq_len, 1, 1, 1)[0] for a, b in pairs]
    return torch.tensor(rows, dtype=torch.bool).reshape(len(pairs), seq_len)


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
