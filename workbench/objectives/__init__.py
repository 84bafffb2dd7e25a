"""Training objectives; each owns its batches and its loss."""

from __future__ import annotations

from .base import IGNORE_INDEX, Batch, LossOutput, Objective
from .causal_lm import CausalLM

OBJECTIVES: dict[str, type[Objective]] = {CausalLM.name: CausalLM}

__all__ = ["IGNORE_INDEX", "Batch", "LossOutput", "Objective", "CausalLM", "OBJECTIVES", "build_objective"]


def build_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]()
