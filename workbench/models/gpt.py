"""GPT-style decoder: token + position embeddings, pre-LN causal blocks, tied LM head.

The model maps ids to outputs and nothing else; objectives own the loss. The trunk
(:class:`GPTTrunk`, ids -> hidden states) is separate from the vocabulary head, as in HF's
``GPT2Model`` + ``lm_head``, so other heads can sit on the same trunk.

Opt-in, the same trunk runs XLNet's two streams for permutation language modelling
(``perm_mask``; see :meth:`GPTTrunk.two_stream`); without it nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn

from ..config import ModelConfig, require
from .base import LanguageModel, ModelOutput
from .layers import Block, LayerNorm, check_attention_shape, padding_to_allowed, sinusoidal_positions


@dataclass
class GPTConfig(ModelConfig):
    """Shape of a GPT decoder. ``block_size`` is the longest context the model can attend over."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"causal", "attention", "permutation"})
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
        check_attention_shape(self)
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

    def two_stream(
        self,
        idx: torch.Tensor,
        perm_mask: torch.Tensor,
        mask_token_id: int | None = None,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """XLNet's two-stream attention (Yang et al. 2019, section 2.3) through these blocks.

        ``perm_mask`` (B, T, T), truthy where token i may *not* see token j (HF's convention).
        The content stream h starts from tokens + positions and its query i attends to key j iff
        ``not perm_mask[i, j] or i == j``. The query stream g starts from the mask embedding (the
        ``mask_token_id`` row of the token table; the position alone when None) + positions, no
        token content; its query i attends to the *content* (h of the layer below) of j iff
        ``not perm_mask[i, j] and i != j``: it never sees its own token (XLNet lets the query of
        a non-predicted token see itself; its output is never scored). Both streams go through
        the same blocks, and positions are this model's absolute ones (XLNet uses relative
        positions with segment recurrence). ``attention_mask`` (B, T): padding keys hidden.

        Returns (h (B, T, C), g (B, T, C), both after the final norm, the query stream after the
        embeddings and each layer or None, per layer weights (B, nh, 2T, T) or None: rows 0..T-1
        the content stream's, T..2T-1 the query stream's).
        """
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the model's block_size={self.config.block_size}")
        if perm_mask.shape != (B, T, T):
            raise ValueError(f"perm_mask must have shape (B, T, T) = {(B, T, T)}, got {tuple(perm_mask.shape)}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        pos_emb = self.wpe(pos) if self.wpe is not None else self.pos_table[:T]  # (T, C)
        h = self.drop(self.wte(idx) * self.embed_scale + pos_emb)  # (B, T, C)
        query = pos_emb if mask_token_id is None else self.wte.weight[mask_token_id] * self.embed_scale + pos_emb
        g = self.drop(query.expand(B, T, -1))  # (B, T, C): where each token is, never what it is
        hidden = perm_mask.bool()  # (B, T, T)
        eye = torch.eye(T, dtype=torch.bool, device=idx.device)
        allowed = torch.cat([~hidden | eye, ~hidden & ~eye], dim=1)[:, None]  # (B, 1, 2T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]
        states: list[torch.Tensor] = [g] if output_hidden_states else []
        attentions: list[torch.Tensor] = []
        for block in self.blocks:
            h, g, weights = block.two_stream(h, g, allowed, need_weights=output_attentions)
            if output_hidden_states:
                states.append(g)
            if weights is not None:
                attentions.append(weights)
        return (self.ln_f(h), self.ln_f(g), (tuple(states) if output_hidden_states else None),
                (tuple(attentions) if output_attentions else None))


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
        perm_mask: torch.Tensor | None = None,
        target_mapping: torch.Tensor | None = None,
        mask_token_id: int | None = None,
    ) -> ModelOutput:
        """``input_ids`` (B, T) -> logits (B, T, vocab). ``output_attentions`` takes the eager path.

        ``attention_mask``: (B, T) with 1 for real tokens and 0 for padding (as in HF), or a
        bool (B, 1|nh, T, T) 'may attend' mask; the causal triangle is always applied on top.

        ``perm_mask`` (B, T, T), 1 where token i may not see token j, switches to XLNet's two
        streams (:meth:`GPTTrunk.two_stream`; no causal triangle, ``attention_mask`` only (B, T)):
        logits, ``hidden_states`` and ``attentions`` (B, nh, T, T) are the query stream's, each
        position predicted from the tokens it may see and never from itself; ``mask_token_id``
        picks the query stream's start. ``target_mapping`` (B, P, T), one-hot rows as in HF's
        XLNet, keeps only P predicted positions: logits (B, P, vocab).
        """
        if perm_mask is not None:
            if attention_mask is not None and attention_mask.dim() != 2:
                raise ValueError("with perm_mask, attention_mask must be a (B, T) padding mask")
            _, g, all_g, weights = self.trunk.two_stream(input_ids, perm_mask, mask_token_id, attention_mask,
                                                         output_attentions, output_hidden_states)
            if target_mapping is not None:
                g = torch.einsum("bpt,btc->bpc", target_mapping.to(g.dtype), g)  # (B, P, C)
            T = input_ids.size(1)
            query_weights = tuple(w[:, :, T:] for w in weights) if weights is not None else None  # (B, nh, T, T)
            return ModelOutput(logits=self.lm_head(g), hidden_states=g, all_hidden_states=all_g,
                               attentions=query_weights)
        x, all_hidden, attentions = self.trunk(input_ids, attention_mask, output_attentions, output_hidden_states)
        logits = self.lm_head(x)  # (B, T, vocab)
        return ModelOutput(logits=logits, hidden_states=x, all_hidden_states=all_hidden, attentions=attentions)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Also reads checkpoints from before the trunk/head split (``wte.weight`` -> ``trunk.wte.weight``)."""
        old_trunk = ("wte.", "wpe.", "blocks.", "ln_f.")
        upgraded = {(f"trunk.{k}" if k.startswith(old_trunk) else k): v for k, v in state_dict.items()}
        return super().load_state_dict(upgraded, strict=strict, assign=assign)
