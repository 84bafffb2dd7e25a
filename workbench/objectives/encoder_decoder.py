"""What the objectives that train an encoder-decoder share: the batch layout, the loss over the
decoder's targets, and the decoder-side views of a batch.

Layout (T5's): the encoder reads the source and ``[SEP]``; the labels are the target and
``[SEP]``; the decoder reads the labels shifted right behind ``[PAD]``, the start token::

    encoder   The <extra_id_0> on the mat [SEP]        (span corruption)  /  Now is [SEP]  (a task)
    labels    <extra_id_0> cat sat [SEP]                                  /  is Now [SEP]
    decoder   [PAD] <extra_id_0> cat sat                                  /  [PAD] is Now

Padding is ``[PAD]`` in the inputs and ``-100`` in the labels, with masks saying which is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..metrics import bits_per_char, perplexity
from .base import IGNORE_INDEX, Batch, LossOutput, Objective, attention_mask_matrix

PAD, EOS = "[PAD]", "[SEP]"
"""The start/padding token and the end of a sequence, on both sides."""


def pad_rows(rows: Sequence[Sequence[int] | torch.Tensor], value: int,
             length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, length) rows padded with ``value`` (``length`` None: the longest row's, dynamic padding)
    and (B, length) bool, True on the real positions.

    >>> ids, real = pad_rows([[5, 6], [7]], -100)
    >>> ids.tolist(), real.tolist()
    ([[5, 6], [7, -100]], [[True, True], [True, False]])
    """
    width = max(len(r) for r in rows) if length is None else length
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
    return out, torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]


def shift_right(labels: torch.Tensor, decoding: torch.Tensor, start_id: int) -> torch.Tensor:
    """The decoder's input: position t reads target t-1, ``start_id`` first, padding where the
    labels are padding. (B, T') -> (B, T').

    >>> shift_right(torch.tensor([[7, 8, 1, -100]]), torch.tensor([[1, 1, 1, 0]]).bool(), 0).tolist()
    [[0, 7, 8, 0]]
    """
    shifted = F.pad(labels[:, :-1], (1, 0), value=start_id)  # (B, T')
    return shifted.masked_fill(~decoding, start_id)


def decoder_side(batch: Batch) -> Batch:
    """The decoder's inputs, labels and padding as a plain batch (what the base views read)."""
    return Batch(input_ids=batch.decoder_input_ids, labels=batch.labels, attention_mask=batch.decoder_attention_mask)


def decoder_loss(model: nn.Module, batch: Batch, text: torch.Tensor | None = None, name: str = "text") -> LossOutput:
    """An encoder-decoder's cross-entropy over the decoder's targets (the mean for backward).
    Sums: ``nll``, ``tokens``, ``correct`` (argmax == target); with a ``text`` mask (B, T') of the
    targets that spell text, ``<name>_nll`` and ``<name>_tokens`` over those alone; ``chars``
    with ``label_chars``."""
    logits = model(batch.input_ids, attention_mask=batch.attention_mask, decoder_input_ids=batch.decoder_input_ids,
                   decoder_attention_mask=batch.decoder_attention_mask).logits  # (B, T', V)
    labels = batch.labels  # (B, T')
    each = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="none").view_as(labels)  # 0 where ignored
    nll = each.sum()
    labelled = labels != IGNORE_INDEX
    tokens = labelled.sum()
    sums = {"nll": nll.detach(), "tokens": tokens, "correct": (logits.detach().argmax(-1) == labels).sum()}
    if text is not None:
        sums[f"{name}_nll"] = (each.detach() * text).sum()
        sums[f"{name}_tokens"] = text.sum()
    if batch.label_chars is not None:
        sums["chars"] = (batch.label_chars * labelled).sum()
    return LossOutput(loss=nll / tokens.clamp(min=1), sums=sums)


class EncoderDecoderObjective(Objective):
    """Base of the objectives that train an encoder-decoder: the loss over every target token
    (the special ones included, as T5 trains), bits per character over the targets that spell
    text (``text_field``, a (B, T') bool field of the batch), and views of the decoder side."""

    needs = frozenset({"seq2seq"})
    special_tokens: ClassVar[tuple[str, ...]] = (PAD, EOS)
    text_field: ClassVar[str]
    """The batch field marking the labels that spell text (span tokens, a task's target words)."""
    text_name: ClassVar[str]
    """Prefix of the sums over those labels alone (``<text_name>_nll``, ``<text_name>_tokens``)."""

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        """Cross-entropy over the targets (see :func:`decoder_loss`)."""
        return decoder_loss(model, batch, getattr(batch, self.text_field, None), self.text_name)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """Over all target tokens: mean NLL (``loss``), ``ppl``, ``acc`` (top-1); ``bpc``: the NLL
        of the targets that spell text over their characters (a sentinel or [SEP] spells none)."""
        tokens = totals["tokens"]
        mean_nll = totals["nll"] / max(1.0, tokens)
        out = {"loss": mean_nll, "ppl": perplexity(mean_nll),
               "acc": totals.get("correct", 0.0) / tokens if tokens else 0.0}
        if totals.get("chars") and f"{self.text_name}_nll" in totals:
            out["bpc"] = bits_per_char(totals[f"{self.text_name}_nll"], totals["chars"])
        return out

    def describe_batch(self, batch: Batch, tokenizer: Any = None, row: int = 0) -> list[dict[str, Any]]:
        """One dict per *decoder* position (the positions the loss scores): ``input`` (the decoder
        input: the target shifted right after the start token), ``target`` and ``attention``
        (``decoder_attention_mask``); ``batch_view`` shows the encoder's row beside it."""
        return super().describe_batch(decoder_side(batch), tokenizer, row)

    def attention_mask_matrix(self, batch: Batch, row: int = 0) -> torch.Tensor:
        """The decoder's (T', T') self-attention mask (causal, padding hidden). The encoder is
        bidirectional over its real tokens and every decoder position cross-attends to all of them."""
        return attention_mask_matrix(decoder_side(batch), row, causal=True)
