"""Training objectives, chosen by name; each owns its batches, its loss and its metrics.

A new objective is one new module (its config dataclass and its :class:`Objective`) plus one
line in :data:`OBJECTIVES`.
"""

from __future__ import annotations

from ..config import ObjectiveConfig
from .base import IGNORE_INDEX, Batch, EvalSet, LossOutput, Objective, TokenizedCorpus, TokenizedDoc
from .causal_lm import CausalLM, CausalLMConfig
from .masked_lm import MaskedLM, MaskedLMConfig
from .nsp import MaskedLMWithNSP, MLMNSPConfig, NextSentencePrediction, NSPConfig
from .permutation_lm import PermutationLM, PermutationLMConfig
from .seq2seq_tasks import Seq2SeqTask, Seq2SeqTaskConfig
from .span_corruption import SpanCorruption, SpanCorruptionConfig

OBJECTIVES: dict[str, type[Objective]] = {
    CausalLM.name: CausalLM,
    MaskedLM.name: MaskedLM,
    NextSentencePrediction.name: NextSentencePrediction,
    MaskedLMWithNSP.name: MaskedLMWithNSP,
    SpanCorruption.name: SpanCorruption,
    PermutationLM.name: PermutationLM,
    Seq2SeqTask.name: Seq2SeqTask,
}

__all__ = ["IGNORE_INDEX", "Batch", "EvalSet", "LossOutput", "Objective", "TokenizedCorpus", "TokenizedDoc",
           "CausalLM", "CausalLMConfig", "MaskedLM", "MaskedLMConfig", "MaskedLMWithNSP",
           "MLMNSPConfig", "NextSentencePrediction", "NSPConfig", "SpanCorruption", "SpanCorruptionConfig", "PermutationLM", "PermutationLMConfig", "Seq2SeqTask", "Seq2SeqTaskConfig", "OBJECTIVES", "build_objective"]


def build_objective(config: ObjectiveConfig) -> Objective:
    """The objective a config names, configured by it (names are checked when configs are made)."""
    return OBJECTIVES[config.name](config)
