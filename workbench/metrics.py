"""Language-modelling metrics from negative log-likelihoods in nats.

>>> round(perplexity(math.log(4.0)), 6)
4.0
>>> round(bits_per_char(nll_sum=10 * math.log(2.0), num_chars=5), 6)
2.0
"""

from __future__ import annotations

import math

import torch


def perplexity(mean_nll: float) -> float:
    """exp(mean NLL): the effective number of equally likely next tokens."""
    return math.exp(min(mean_nll, 700.0))  # guard overflow for diverged runs


def bits_per_char(nll_sum: float, num_chars: float) -> float:
    """Summed NLL (nats) of some tokens over the characters those tokens spell -> bits per
    character: comparable across tokenizers (a subword token pays for all its characters)."""
    return nll_sum / math.log(2.0) / max(1.0, num_chars)


def accuracy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100) -> float:
    """Top-1 accuracy over positions whose label is not ``ignore_index``."""
    keep = labels != ignore_index
    if not keep.any():
        return float("nan")
    return (logits.argmax(-1)[keep] == labels[keep]).float().mean().item()
