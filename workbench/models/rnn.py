"""Recurrent language models: embedding -> stacked LSTM or GRU layers -> tied output head.

The classic pre-Transformer LM (Zaremba et al. 2014; Merity et al. 2017): one module serves
both cells, chosen by ``arch`` ('lstm' or 'gru'). Like every family it maps ids to a
:class:`ModelOutput` through the same call and is split into a ``trunk`` (ids -> hidden
states) and an ``lm_head`` (hidden -> vocabulary logits); objectives own the loss.

Truncated back-propagation through time: the model is trained on the same ``seq_len`` windows
the Transformer sees (the objective makes them) and gradients flow through the whole unroll of
a window. Every window starts from a zero state; nothing is carried from one call to the next.
That is the right thing for causal LM here, whose training windows are independent random
offsets into the token stream (there is no "next window" whose state this one's end would
be), and it keeps the model a pure function of its input, as the trainer, evaluation and
resume-to-the-same-loss rely on. Generation re-reads the whole prompt at every step (the
model has no context limit, ``max_context`` is None): slower than carrying the state, but exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn

from ..config import ModelConfig, positive_ints, require
from .base import LanguageModel, ModelOutput

CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}
"""The recurrent cell of each ``arch`` this module serves."""


@dataclass
class RNNConfig(ModelConfig):
    """Shape of a recurrent LM. It has no context limit: a run sets ``train.seq_len``, the length
    of the windows it is trained on (back-propagation through time runs over each window)."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"causal"})
    cells: ClassVar[tuple[str, ...]] = ("lstm", "gru")
    """The ``arch`` values this config class accepts."""

    arch: str = "lstm"
    """Model family: the registry name in ``workbench.models.FAMILIES`` ('lstm' or 'gru')."""
    n_layer: int = 2
    """Number of stacked recurrent layers."""
    n_embd: int = 128
    """Width of the token embeddings (and of the output the tied head reads)."""
    hidden: int = 0
    """Width of the recurrent state; 0 means n_embd. When it differs from n_embd, a linear
    projection maps the last layer's output back to n_embd (so the head can stay tied)."""
    dropout: float = 0.0
    """Dropout on the embeddings, between recurrent layers and on the last layer's output (0 to disable)."""
    tie_weights: bool = True
    """Share the token embedding with the output projection (weight tying)."""

    def __post_init__(self) -> None:
        require(self.arch in self.cells, "arch",
                f"{type(self).__name__} is for arch {' or '.join(map(repr, self.cells))}, got {self.arch!r}")
        positive_ints(self, "n_layer", "n_embd")
        require(isinstance(self.hidden, int) and not isinstance(self.hidden, bool) and self.hidden >= 0, "hidden",
                f"must be 0 (= n_embd) or a positive integer, got {self.hidden!r}")
        require(isinstance(self.vocab_size, int) and self.vocab_size >= 0, "vocab_size", "must be >= 0")
        require(isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0, "dropout",
                f"must be in [0, 1), got {self.dropout}")

    @property
    def hidden_size(self) -> int:
        """The recurrent state's width (``hidden``, or ``n_embd`` when it is 0)."""
        return self.hidden or self.n_embd

    @property
    def max_context(self) -> None:
        return None  # a recurrent model reads any length

    def describe(self) -> str:
        """Cell, layers and width (and the state's width when it differs).

        >>> RNNConfig().describe(), GRUConfig(n_layer=3, n_embd=64, hidden=256).describe()
        ('lstm 2L/128', 'gru 3L/64 h256')
        """
        extra = f" h{self.hidden}" if self.hidden and self.hidden != self.n_embd else ""
        return f"{self.arch} {self.n_layer}L/{self.n_embd}{extra}"


@dataclass
class LSTMConfig(RNNConfig):
    """Shape of an LSTM language model (Hochreiter & Schmidhuber, 1997)."""

    cells: ClassVar[tuple[str, ...]] = ("lstm",)

    arch: str = "lstm"
    """Model family: the registry name in ``workbench.models.FAMILIES``."""


@dataclass
class GRUConfig(RNNConfig):
    """Shape of a GRU language model (Cho et al., 2014): fewer gates than the LSTM, no cell state."""

    cells: ClassVar[tuple[str, ...]] = ("gru",)

    arch: str = "gru"
    """Model family: the registry name in ``workbench.models.FAMILIES``."""


class RNNTrunk(nn.Module):
    """Embedding and stacked recurrent layers: ids (B, T) -> hidden states (B, T, n_embd).

    One single-layer ``nn.LSTM``/``nn.GRU`` per layer (rather than one ``num_layers`` module)
    so each layer's output can be returned as ``all_hidden_states``, like GPT's blocks.
    """

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        H = config.hidden_size
        cell = CELLS[config.arch]
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            cell(config.n_embd if i == 0 else H, H, batch_first=True) for i in range(config.n_layer)
        )
        # back to the embedding width, so the tied head (and any head) reads n_embd-wide states
        self.proj = nn.Linear(H, config.n_embd) if H != config.n_embd else None

    def forward(
        self,
        idx: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, None]:
        """Returns (hidden (B, T, n_embd), all hidden states or None, None).

        Every call starts from a zero state (see the module docstring). ``attention_mask`` and
        ``output_attentions`` are accepted for the common call and ignored: a recurrent model
        reads left to right, so right padding never changes the outputs at real positions, and
        it has no attention to return.
        """
        x = self.drop(self.wte(idx))  # (B, T, n_embd)
        hidden: list[torch.Tensor] = [x] if output_hidden_states else []
        for layer in self.layers:
            x, _ = layer(x)  # (B, T, H); final state dropped: nothing is carried to the next call
            x = self.drop(x)
            if output_hidden_states:
                hidden.append(x)
        if self.proj is not None:
            x = self.proj(x)  # (B, T, n_embd)
        return x, (tuple(hidden) if output_hidden_states else None), None


class RNNLanguageModel(LanguageModel):
    """LSTM or GRU language model (by ``config.arch``): ``trunk`` + ``lm_head``."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError(f"{type(config).__name__}.vocab_size must be set from the tokenizer before building the model")
        self.config = config
        self.trunk = RNNTrunk(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.trunk.wte.weight  # weight tying (Press & Wolf, 2017; Inan et al., 2017)
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """As PyTorch's word-language-model example: embedding, projection and an untied head
        uniform in [-0.1, 0.1], their biases zero (GPT's std 0.02 leaves the first layer's
        inputs so small that learning stalls at the unigram loss for hundreds of steps). The
        recurrent layers: input matrices Xavier-uniform and recurrent matrices orthogonal, per
        gate (so repeated multiplication by them neither explodes nor vanishes at the start),
        biases zero, and the LSTM's forget-gate bias 1 (Jozefowicz et al., 2015: remember by default)."""
        for module in (self.trunk.wte, self.trunk.proj, self.lm_head):
            if module is None or (module is self.lm_head and self.config.tie_weights):
                continue
            nn.init.uniform_(module.weight, -0.1, 0.1)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        H = self.config.hidden_size
        for layer in self.trunk.layers:
            for name, p in layer.named_parameters():
                if name.startswith("weight_ih"):
                    for gate in p.split(H):  # (H, in) per gate
                        nn.init.xavier_uniform_(gate)
                elif name.startswith("weight_hh"):
                    for gate in p.split(H):  # (H, H) per gate
                        nn.init.orthogonal_(gate)
                else:
                    nn.init.zeros_(p)
                    if self.config.arch == "lstm" and name.startswith("bias_ih"):
                        p[H : 2 * H] = 1.0  # gates are ordered input, forget, cell, output

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """``input_ids`` (B, T) -> logits (B, T, vocab), from a zero state.

        ``attention_mask`` and ``output_attentions`` are accepted (the common call) and ignored:
        right padding cannot change the real positions of a left-to-right reader, and there is
        no attention (``attentions`` is None; the family does not claim 'attention').
        """
        x, all_hidden, _ = self.trunk(input_ids, attention_mask, output_attentions, output_hidden_states)
        logits = self.lm_head(x)  # (B, T, vocab)
        return ModelOutput(logits=logits, hidden_states=x, all_hidden_states=all_hidden, attentions=None)
