"""Causal language modelling: predict token t+1 from tokens <= t, loss at every position."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ObjectiveConfig
from ..metrics import bits_per_char, perplexity
from .base import IGNORE_INDEX, Batch, LossOutput, Objective, TokenizedCorpus


@dataclass
class CausalLMConfig(ObjectiveConfig):
    """Next-token prediction over windows of the token stream (GPT); no settings of its own."""

    name: str = "causal_lm"
    """Training objective: the registry name in ``workbench.objectives.OBJECTIVES``."""


class CausalLM(Objective):
    """Random windows of the token stream for training; labels are the inputs shifted left by one."""

    name = "causal_lm"
    config_cls = CausalLMConfig
    needs = frozenset({"causal"})

    def prepare(self, corpus: TokenizedCorpus) -> torch.Tensor:
        return torch.tensor(corpus.stream(), dtype=torch.long)

    def make_batch(self, data: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> Batch:
        """``batch_size`` windows of ``seq_len + 1`` tokens at random offsets.

        >>> b = CausalLM().make_batch(torch.arange(10), 2, 4, torch.Generator().manual_seed(0))
        >>> bool((b.labels[:, :-1] == b.input_ids[:, 1:]).all())
        True
        """
        if len(data) <= seq_len:
            raise ValueError(f"split has {len(data)} tokens, fewer than seq_len+1={seq_len + 1}")
        starts = torch.randint(len(data) - seq_len, (batch_size,), generator=generator)  # (B,)
        offsets = torch.arange(seq_len + 1)  # (T+1,)
        windows = data[starts[:, None] + offsets[None, :]]  # (B, T+1)
        return Batch(input_ids=windows[:, :-1].contiguous(), labels=windows[:, 1:].contiguous())

    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """Every token of every passage but its first is predicted exactly once: non-overlapping
        windows of ``seq_len`` predictions (each window's context starts afresh), the last one
        padded with ``IGNORE_INDEX`` labels. ``label_chars`` holds the characters each predicted
        token spells (for bits per character).

        >>> from workbench.corpora import Document
        >>> from workbench.objectives.base import TokenizedDoc
        >>> doc = TokenizedDoc(list(range(6)), Document("abcdef"), [1] * 6)
        >>> (b,) = CausalLM().eval_batches(TokenizedCorpus([doc]), 4, 3)
        >>> b.input_ids.tolist(), b.labels.tolist(), b.label_chars.tolist()
        ([[0, 1, 2], [3, 4, 0]], [[1, 2, 3], [4, 5, -100]], [[1, 1, 1], [1, 1, 0]])
        """
        inputs: list[list[int]] = []
        labels: list[list[int]] = []
        chars: list[list[int]] = []
        for d in passages.docs:
            ids, lengths = d.ids, d.char_lengths or [0] * len(d.ids)
            for s in range(0, len(ids) - 1, seq_len):
                w = ids[s : s + seq_len + 1]
                pad = seq_len + 1 - len(w)
                inputs.append(w[:-1] + [0] * pad)
                labels.append(w[1:] + [IGNORE_INDEX] * pad)
                chars.append(lengths[s + 1 : s + seq_len + 1] + [0] * pad)
        return [
            Batch(input_ids=torch.tensor(inputs[i : i + batch_size]), labels=torch.tensor(labels[i : i + batch_size]),
                  label_chars=torch.tensor(chars[i : i + batch_size]))
            for i in range(0, len(inputs), batch_size)
        ]

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits = model(batch.input_ids).logits  # (B, T, V)
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), batch.labels.reshape(-1),
                              ignore_index=IGNORE_INDEX, reduction="sum")
        labelled = batch.labels != IGNORE_INDEX
        tokens = labelled.sum()
        sums = {"nll": nll.detach(), "tokens": tokens}
        if batch.label_chars is not None:
            sums["chars"] = (batch.label_chars * labelled).sum()
        return LossOutput(loss=nll / tokens.clamp(min=1), sums=sums)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """Mean NLL per token (``loss``), ``ppl`` = exp(loss), and ``bpc``: bits per character of
        the predicted tokens' text (when the batches say how many characters that is)."""
        mean_nll = totals["nll"] / max(1.0, totals["tokens"])
        out = {"loss": mean_nll, "ppl": perplexity(mean_nll)}
        if totals.get("chars"):
            out["bpc"] = bits_per_char(totals["nll"], totals["chars"])
        return out
