"""What every model family shares: the output record and the call every objective relies on.

A family is a :class:`LanguageModel` subclass plus its config dataclass, registered in
``workbench.models.FAMILIES``. Every model maps ids to a :class:`ModelOutput` through one call::

    out = model(input_ids, attention_mask=None, output_attentions=False, output_hidden_states=False)

and is split HF-style into a **trunk** (``model.trunk``: ids -> hidden states) and an output
head (``model.lm_head``: hidden -> vocabulary logits), so task heads (masked LM, next-sentence,
classification, tagging, QA spans) are small modules on ``out.hidden_states`` of any trunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import ModelConfig


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run without dropout (evaluation, sampling, decoding, attention capture), then put the
    model back as it was: mid-training, it goes on training."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@dataclass
class ModelOutput:
    """What a model call returns.

    ``hidden_states`` is the trunk's final output (after the last norm), the input of every
    head. ``all_hidden_states`` (embeddings, then each layer; when asked) and ``attentions``
    (one (B, nh, T, T) tensor per layer; when asked) are for inspection and probes.
    ``pooled`` and ``nsp_logits`` are filled in only by families with a pooler and a
    next-sentence head (BERT); the others leave them None. Encoder-decoders (``seq2seq``) return
    the decoder's logits, hidden states and self-attention in the fields above, and their
    encoder's output, encoder self-attention and the decoder's cross-attention (decoder positions
    x encoder positions) in the ``encoder_*`` and ``cross_attentions`` fields.
    """

    logits: torch.Tensor  # (B, T, vocab)
    hidden_states: torch.Tensor | None = None  # (B, T, C)
    all_hidden_states: tuple[torch.Tensor, ...] | None = None  # n_layer + 1 tensors (B, T, C)
    attentions: tuple[torch.Tensor, ...] | None = None  # n_layer tensors (B, nh, T, T)
    pooled: torch.Tensor | None = None  # (B, C), sequence summary of encoders with a pooler (BERT's [CLS])
    nsp_logits: torch.Tensor | None = None  # (B, 2), next-sentence head of encoders that have one
    encoder_hidden_states: torch.Tensor | None = None  # (B, S, C), encoder output of encoder-decoders
    encoder_attentions: tuple[torch.Tensor, ...] | None = None  # encoder layers' (B, nh, S, S), when asked
    cross_attentions: tuple[torch.Tensor, ...] | None = None  # decoder layers' (B, nh, T, S), when asked


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model itself, inside the wrappers training puts around it: DistributedDataParallel
    (``.module``) and ``torch.compile`` (``._orig_mod``), in any nesting."""
    while True:
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else getattr(model, "_orig_mod", None)
        if inner is None:
            return model
        model = inner


class LanguageModel(nn.Module):
    """Base class of the model families (see the module docstring for the contract).

    What a family can do (causal, bidirectional, attention that can be captured, ...) is said
    once, in its config's ``capabilities``; objectives and callbacks read it there.
    """

    config: ModelConfig
    trunk: nn.Module
    """ids -> hidden states; returns (hidden, all hidden states or None, attentions or None)."""
    lm_head: nn.Module
    """hidden states -> vocabulary logits."""

    @property
    def max_context(self) -> int | None:
        """Longest input the model accepts (generation crops to it); None means no limit."""
        return self.config.max_context

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count, tied weights counted once (families with a position table can leave
        it out when ``non_embedding``, as nanoGPT reports)."""
        return sum(p.numel() for p in self.parameters())
