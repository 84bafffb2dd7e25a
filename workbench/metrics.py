"""Language-modelling metrics from a mean negative log-likelihood in nats.

>>> round(perplexity(math.log(4.0)), 6)
4.0
>>> round(bits_per_char(math.log(2.0), tokens_per_char=1.0), 6)
1.0
"""

from __future__ import annotations

import math

import torch


def perplexity(mean_nll: float) -> float:
    """exp(mean NLL): the effective number of equally likely next tokens."""
    return math.exp(min(mean_nll, 700.0))  # guard overflow for diverged runs


def bits_per_char(mean_nll: float, tokens_per_char: float = 1.0) -> float:
    """Mean NLL per token in nats -> bits per character; comparable across tokenizers."""
    return mean_nll / math.log(2.0) * tokens_per_char


def accuracy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> float:
    """Top-1 accuracy over positions whose label is not ``ignore_index``."""
    keep = labels != ignore_index
    if not keep.any():
        return float("nan")
    return (logits.argmax(-1)[keep] == labels[keep]).float().mean().item()
