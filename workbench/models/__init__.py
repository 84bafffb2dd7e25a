"""Model families; every one maps ids -> :class:`ModelOutput` through the same call."""

from __future__ import annotations

from ..config import ModelConfig
from .decoder import GPT, ModelOutput

__all__ = ["GPT", "ModelOutput", "build_model"]


def build_model(config: ModelConfig) -> GPT:
    """Construct the model a config names (``vocab_size`` must be filled in)."""
    if config.arch == "gpt":
        return GPT(config)
    raise ValueError(f"unknown architecture {config.arch!r}")
