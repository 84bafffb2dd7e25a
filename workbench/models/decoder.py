"""GPT-style decoder: token + position embeddings, pre-LN causal blocks, tied LM head.

The model maps ids to logits and nothing else; objectives own the loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..config import ModelConfig
from .layers import Block, LayerNorm, sinusoidal_positions


@dataclass
class ModelOutput:
    """What a model call returns. ``attentions``: one (B, nh, T, T) tensor per layer, if asked."""

    logits: torch.Tensor  # (B, T, vocab)
    attentions: tuple[torch.Tensor, ...] | None = None


class GPT(nn.Module):
    """Decoder-only transformer in the GPT-2 / nanoGPT mould."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("ModelConfig.vocab_size must be set from the tokenizer before building the model")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.pos_encoding == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        else:
            self.wpe = None
            self.register_buffer("pos_table", sinusoidal_positions(config.block_size, config.n_embd), persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.n_embd, config.n_head, config.dropout, config.bias, causal=True) for _ in range(config.n_layer)
        )
        self.ln_f = LayerNorm(config.n_embd, config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf, 2017)

        self.apply(self._init_weights)
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
        """Parameter count (tied weights counted once); optionally without position tables."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and self.wpe is not None:
            n -= self.wpe.weight.numel()
        return n

    def forward(
        self, idx: torch.Tensor, attn_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> ModelOutput:
        """``idx`` (B, T) token ids -> logits (B, T, vocab). ``output_attentions`` takes the eager path."""
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the model's block_size={self.config.block_size}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        pos_emb = self.wpe(pos) if self.wpe is not None else self.pos_table[:T]  # (T, C)
        x = self.drop(self.wte(idx) + pos_emb)  # (B, T, C)
        attentions: list[torch.Tensor] = []
        for block in self.blocks:
            x, weights = block(x, attn_mask, need_weights=output_attentions)
            if weights is not None:
                attentions.append(weights)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        return ModelOutput(logits=logits, attentions=tuple(attentions) if output_attentions else None)

    def configure_optimizer(self, lr: float, weight_decay: float, betas: tuple[float, float], device_type: str) -> torch.optim.AdamW:
        """AdamW with decay on matrices and embeddings only, not on biases or norms (nanoGPT)."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device_type == "cuda")
