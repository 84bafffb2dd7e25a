"""Model families, chosen by ``arch``; every one maps ids -> :class:`ModelOutput` through the same call.

A new family is one new module (its config dataclass and its :class:`LanguageModel`) plus one
line in :data:`FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ModelConfig
from .base import LanguageModel, ModelOutput
from .bert import BERT, BERTConfig
from .gpt import GPT, GPTConfig
from .ngram import NGramConfig, NGramLM
from .rnn import GRUConfig, LSTMConfig, RNNLanguageModel
from .seq2seq import Seq2SeqConfig, Seq2SeqTransformer


@dataclass(frozen=True)
class Family:
    """A registered model family: its config dataclass and its model class."""

    config_cls: type[ModelConfig]
    model_cls: type[LanguageModel]


FAMILIES: dict[str, Family] = {
    "gpt": Family(GPTConfig, GPT),
    "bert": Family(BERTConfig, BERT),
    "lstm": Family(LSTMConfig, RNNLanguageModel),
    "gru": Family(GRUConfig, RNNLanguageModel),
    "ngram": Family(NGramConfig, NGramLM),
    "seq2seq": Family(Seq2SeqConfig, Seq2SeqTransformer),
}

__all__ = ["BERT", "BERTConfig", "FAMILIES", "GPT", "GPTConfig", "GRUConfig", "LSTMConfig", "RNNLanguageModel", "Seq2SeqConfig", "Seq2SeqTransformer", "LanguageModel", "ModelOutput", "NGramConfig", "NGramLM", "build_model"]


def build_model(config: ModelConfig) -> LanguageModel:
    """Construct the model a config names (``vocab_size`` must be filled in; configs are
    validated, and their ``arch`` checked against :data:`FAMILIES`, when they are made)."""
    return FAMILIES[config.arch].model_cls(config)
