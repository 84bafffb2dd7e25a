"""Causal language modelling: predict token t+1 from tokens <= t, loss at every position."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import IGNORE_INDEX, Batch, LossOutput, Objective


class CausalLM(Objective):
    """Random windows of a token stream; labels are the inputs shifted left by one."""

    name = "causal_lm"

    def prepare(self, token_ids: list[int]) -> torch.Tensor:
        return torch.tensor(token_ids, dtype=torch.long)

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

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        logits = model(batch.input_ids).logits  # (B, T, V)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), batch.labels.reshape(-1), ignore_index=IGNORE_INDEX
        )
        n = batch.num_tokens
        return LossOutput(loss=loss, nll_sum=loss.item() * n, num_tokens=n, metrics={})
