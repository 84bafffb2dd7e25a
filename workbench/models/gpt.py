"""GPT-style decoder: token + position embeddings, pre-LN causal blocks, tied LM head.

The model maps ids to outputs and nothing else; objectives own the loss. The trunk
(:class:`GPTTrunk`, ids -> hidden states) is separate from the vocabulary head, as in HF's
``GPT2Model`` + ``lm_head``, so other heads can sit on the same trunk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn

from ..config import ModelConfig, positive_ints, require
from .base import LanguageModel, ModelOutput
from .layers import MAX_BLOCK_SIZE, Block, LayerNorm, padding_to_allowed, sinusoidal_positions


@dataclass
class GPTConfig(ModelConfig):
    """Shape of a GPT decoder. ``block_size`` is the longest context the model can attend over."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"causal", "attention"})
    context_setting: ClassVar[str] = "block_size"

    arch: str = "gpt"
    """Model family: the registry name in ``workbench.models.FAMILIES``."""
    n_layer: int = 2
    """Number of transformer blocks."""
    n_head: int = 2
    """Attention heads per block; must divide ``n_embd``."""
    n_embd: int = 64
    """Width of the residual stream."""
    block_size: int = 64
    """Maximum context length (size of the position table)."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches (0 to disable)."""
    bias: bool = True
    """Biases in Linear and LayerNorm layers (GPT-2 has them)."""
    pos_encoding: Literal["learned", "sinusoidal"] = "learned"
    """Learned position embeddings (GPT-2) or fixed sinusoids (the original Transformer, which
    also scales token embeddings by sqrt(n_embd) so the two are of similar size)."""
    tie_weights: bool = True
    """Share the token embedding with the output projection (weight tying)."""

    def __post_init__(self) -> None:
        require(self.arch == "gpt", "arch", f"GPTConfig is for arch 'gpt', got {self.arch!r}")
        positive_ints(self, "n_layer", "n_head", "n_embd", "block_size")
        require(
            self.n_embd % self.n_head == 0,
            "n_embd",
            f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
            f"pick n_embd as a multiple of n_head (e.g. {self.n_head * max(1, round(self.n_embd / self.n_head))})",
        )
        require(self.block_size <= MAX_BLOCK_SIZE, "block_size",
                f"block_size={self.block_size} is above the maximum {MAX_BLOCK_SIZE}; lower it")
        require(isinstance(self.vocab_size, int) and self.vocab_size >= 0, "vocab_size", "must be >= 0")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(self.pos_encoding in ("learned", "sinusoidal"), "pos_encoding",
                f"unknown {self.pos_encoding!r}; use 'learned' or 'sinusoidal'")

    @property
    def max_context(self) -> int:
        return self.block_size

    def describe(self) -> str:
        """Layers, heads, width and context.

        >>> GPTConfig(n_layer=4, n_head=4, n_embd=128).describe()
        'gpt 4L/4H/128 ctx 64'
        """
        return f"gpt {self.n_layer}L/{self.n_head}H/{self.n_embd} ctx {self.block_size}"


class GPTTrunk(nn.Module):
    """Embeddings and causal blocks: ids (B, T) -> hidden states (B, T, C) after the final norm."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.pos_encoding == "learned":
            self.wpe: nn.Embedding | None = nn.Embedding(config.block_size, config.n_embd)
            self.embed_scale = 1.0
        else:
            self.wpe = None
            self.register_buffer("pos_table", sinusoidal_positions(config.block_size, config.n_embd), persistent=False)
            # "Attention Is All You Need" 3.4: embeddings times sqrt(d_model), so tokens (std 1
            # after init std d^-1/2) are not drowned by the fixed table (std ~0.7)
            self.embed_scale = math.sqrt(config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.n_embd, config.n_head, config.dropout, config.bias, causal=True) for _ in range(config.n_layer)
        )
        self.ln_f = LayerNorm(config.n_embd, config.bias)

    def forward(
        self,
        idx: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """Returns (hidden (B, T, C), all hidden states or None, attentions or None)."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the model's block_size={self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        pos_emb = self.wpe(pos) if self.wpe is not None else self.pos_table[:T]  # (T, C)
        tok_emb = self.wte(idx) * self.embed_scale if self.embed_scale != 1.0 else self.wte(idx)  # (B, T, C)
        x = self.drop(tok_emb + pos_emb)  # (B, T, C)
        allowed = padding_to_allowed(attention_mask)
        hidden: list[torch.Tensor] = [x] if output_hidden_states else []
        attentions: list[torch.Tensor] = []
        for block in self.blocks:
            x, weights = block(x, allowed, need_weights=output_attentions)
            if output_hidden_states:
                hidden.append(x)
            if weights is not None:
                attentions.append(weights)
        x = self.ln_f(x)
        return x, (tuple(hidden) if output_hidden_states else None), (tuple(attentions) if output_attentions else None)


class GPT(LanguageModel):
    """Decoder-only transformer in the GPT-2 / nanoGPT mould: ``trunk`` + ``lm_head``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("GPTConfig.vocab_size must be set from the tokenizer before building the model")
        self.config = config
        self.trunk = GPTTrunk(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.trunk.wte.weight  # weight tying (Press & Wolf, 2017)

        self.apply(self._init_weights)
        if config.pos_encoding == "sinusoidal":  # the original Transformer's embedding init
            nn.init.normal_(self.trunk.wte.weight, mean=0.0, std=config.n_embd**-0.5)
        # GPT-2: scale residual projections by 1/sqrt(2 * n_layer) so the stream's variance stays put
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights counted once); optionally without the position table."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.trunk.wpe is not None:
            n -= self.trunk.wpe.weight.numel()
        return n

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """``input_ids`` (B, T) -> logits (B, T, vocab). ``output_attentions`` takes the eager path.

        ``attention_mask``: (B, T) with 1 for real tokens and 0 for padding (as in HF), or a
        bool (B, 1|nh, T, T) 'may attend' mask; the causal triangle is always applied on top.
        """
        x, all_hidden, attentions = self.trunk(input_ids, attention_mask, output_attentions, output_hidden_states)
        logits = self.lm_head(x)  # (B, T, vocab)
        return ModelOutput(logits=logits, hidden_states=x, all_hidden_states=all_hidden, attentions=attentions)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Also reads checkpoints from before the trunk/head split (``wte.weight`` -> ``trunk.wte.weight``)."""
        old_trunk = ("wte.", "wpe.", "blocks.", "ln_f.")
        upgraded = {(f"trunk.{k}" if k.startswith(old_trunk) else k): v for k, v in state_dict.items()}
        return super().load_state_dict(upgraded, strict=strict, assign=assign)
