"""The objective interface: an objective makes batches and owns the loss.

The trainer only calls ``make_batch`` and ``loss``, so a new objective (masked LM, span
corruption, fine-tuning heads) is a new module here, not a trainer change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
import torch.nn as nn

IGNORE_INDEX = -100
"""Label value the loss skips (padding, unmasked positions), as in Hugging Face."""


@dataclass
class Batch:
    """Tensors of one step. Objectives subclass it to add what they need (masks, segment ids)."""

    input_ids: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), IGNORE_INDEX where no loss is taken

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in moved.items():
            if isinstance(v, torch.Tensor):
                moved[k] = v.to(device, non_blocking=non_blocking)
        return type(self)(**moved)

    @property
    def num_tokens(self) -> int:
        """Positions that carry a label (what the loss averages over)."""
        return int((self.labels != IGNORE_INDEX).sum())


@dataclass
class LossOutput:
    """Mean loss for backward, plus the sums an evaluator needs to average exactly."""

    loss: torch.Tensor  # scalar, mean over labelled positions
    nll_sum: float  # sum of per-token negative log-likelihood (nats)
    num_tokens: int
    metrics: dict[str, float]


class Objective(ABC):
    """Makes batches from a split's data and computes the loss of a model on them."""

    name: ClassVar[str]
    special_tokens: ClassVar[tuple[str, ...]] = ()
    """Special tokens the tokenizer must have for this objective ([MASK] for MLM, ...)."""

    @abstractmethod
    def prepare(self, token_ids: list[int]) -> Any:
        """Turn a split's token ids into whatever ``make_batch`` samples from."""

    @abstractmethod
    def make_batch(self, data: Any, batch_size: int, seq_len: int, generator: torch.Generator) -> Batch: ...

    @abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> LossOutput: ...
