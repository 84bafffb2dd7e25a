"""GPT-style decoder: token + position embeddings, pre-LN causal blocks, tied LM head.

Teaching options change the parts one at a time: ``pos_encoding`` (learned, sinusoidal, RoPE or
none; see ``positions``), ``norm`` (pre-LN, post-LN or none) and ``residual`` (skip connections).

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
from .layers import Block, LayerNorm, Rope, check_attention_shape, padding_to_allowed
from .positions import rope_angles, sinusoidal_positions


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
    pos_encoding: Literal["learned", "sinusoidal", "rope", "none"] = "learned"
    """Learned position embeddings (GPT-2); fixed sinusoids (the original Transformer, which also
    scales token embeddings by sqrt(n_embd) so the two are of similar size); rope, queries and
    keys rotated by their position so scores depend on distance (LLaMA; needs an even head size);
    or none: attention alone cannot tell positions apart (only the causal mask can)."""
    rope_base: float = 10000.0
    """RoPE's wavelength base (rope only): pair m of a head turns by base^(-2m/head size) per
    position; a larger base turns slower, for longer contexts."""
    norm: Literal["pre", "post", "none"] = "pre"
    """LayerNorm in each block: pre, x + f(ln(x)) (GPT-2; trains stably); post, ln(x + f(x))
    (the original Transformer, BERT; no final norm); none, no LayerNorm anywhere."""
    residual: bool = True
    """Skip connections x + f(x) around attention and the MLP; off, each block is f(x) alone
    (deep stacks then barely train: the point of residual connections)."""
    tie_weights: bool = True
    """Share the token embedding with the output projection (weight tying)."""
    qk_norm: bool = False
    """RMS-normalise each head's queries and keys before their dot product (modded-nanogpt,
    OLMo 2): attention scores stay bounded, which keeps a high learning rate stable."""
    activation: Literal["gelu", "relu2"] = "gelu"
    """The MLP's nonlinearity: GELU (GPT-2) or relu(x)² (Primer, modded-nanogpt)."""
    zero_init: bool = False
    """Start every block's output projections (attention and MLP) and the untied output head at
    zero (modded-nanogpt): each block begins as the identity and the first logits are uniform.
    Needs tie_weights false (a zero head would zero the shared embedding)."""

    def __post_init__(self) -> None:
        require(self.arch == "gpt", "arch", f"GPTConfig is for arch 'gpt', got {self.arch!r}")
        check_attention_shape(self)
        require(self.pos_encoding in ("learned", "sinusoidal", "rope", "none"), "pos_encoding",
                f"unknown {self.pos_encoding!r}; use 'learned', 'sinusoidal', 'rope' or 'none'")
        require(self.norm in ("pre", "post", "none"), "norm", f"unknown {self.norm!r}; use 'pre', 'post' or 'none'")
        require(isinstance(self.residual, bool), "residual", f"must be true or false, got {self.residual!r}")
        require(self.activation in ("gelu", "relu2"), "activation", f"unknown {self.activation!r}; use 'gelu' or 'relu2'")
        require(not (self.zero_init and self.tie_weights), "zero_init",
                "needs tie_weights false: a zero output head would zero the token embedding it shares")
        require(isinstance(self.rope_base, (int, float)) and not isinstance(self.rope_base, bool)
                and self.rope_base > 1, "rope_base", f"must be a number > 1, got {self.rope_base!r}")
        hs = self.n_embd // self.n_head
        require(self.pos_encoding != "rope" or hs % 2 == 0, "n_embd",
                f"rope rotates pairs of dimensions, so the head size n_embd / n_head = {hs} must be even; "
                f"pick n_embd as a multiple of 2 * n_head (e.g. {2 * self.n_head * max(1, round(hs / 2))}) "
                f"or another pos_encoding")

    @property
    def max_context(self) -> int:
        return self.block_size

    def describe(self) -> str:
        """Layers, heads, width and context, then any options that are not GPT-2's.

        >>> GPTConfig(n_layer=4, n_head=4, n_embd=128).describe()
        'gpt 4L/4H/128 ctx 64'
        >>> GPTConfig(pos_encoding="rope", norm="post", residual=False).describe()
        'gpt 2L/2H/64 ctx 64 rope post-LN no-residual'
        """
        extras = [] if self.pos_encoding == "learned" else [
            "no-pos" if self.pos_encoding == "none" else self.pos_encoding]
        extras += [] if self.norm == "pre" else ["post-LN" if self.norm == "post" else "no-LN"]
        extras += [] if self.residual else ["no-residual"]
        extras += [n for n, on in (("qk-norm", self.qk_norm), ("relu2", self.activation == "relu2"),
                                   ("untied", not self.tie_weights), ("zero-init", self.zero_init)) if on]
        return " ".join([f"gpt {self.n_layer}L/{self.n_head}H/{self.n_embd} ctx {self.block_size}", *extras])


class GPTTrunk(nn.Module):
    """Embeddings and causal blocks: ids (B, T) -> hidden states (B, T, C) after the final norm."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe: nn.Embedding | None = None
        self.embed_scale = 1.0
        if config.pos_encoding == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        elif config.pos_encoding == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(config.block_size, config.n_embd), persistent=False)
            # "Attention Is All You Need" 3.4: embeddings times sqrt(d_model), so tokens (std 1
            # after init std d^-1/2) are not drowned by the fixed table (std ~0.7)
            self.embed_scale = math.sqrt(config.n_embd)
        elif config.pos_encoding == "rope":  # nothing added: every layer rotates its q and k instead
            cos, sin = rope_angles(config.block_size, config.n_embd // config.n_head, config.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)  # (block_size, hs)
            self.register_buffer("rope_sin", sin, persistent=False)  # (block_size, hs)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.n_embd, config.n_head, config.dropout, config.bias, causal=True,
                  norm=config.norm, residual=config.residual, qk_norm=config.qk_norm, activation=config.activation)
            for _ in range(config.n_layer)
        )
        # post-LN's blocks already end in a norm; the original Transformer has no final one
        self.ln_f: nn.Module = LayerNorm(config.n_embd, config.bias) if config.norm == "pre" else nn.Identity()

    def _positions(self, T: int, device: torch.device) -> tuple[torch.Tensor | None, Rope | None]:
        """(the table added to the embeddings (T, C) or None, RoPE's (cos, sin) (T, hs) or None)."""
        if self.wpe is not None:
            return self.wpe(torch.arange(T, device=device)), None
        if self.config.pos_encoding == "sinusoidal":
            return self.pos_table[:T], None
        if self.config.pos_encoding == "rope":
            return None, (self.rope_cos[:T], self.rope_sin[:T])
        return None, None  # "none": nothing tells positions apart

    def _embed(self, idx: torch.Tensor, pos_emb: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (scaled for sinusoids) plus the position table if any: (B, T, C)."""
        x = self.wte(idx) * self.embed_scale if self.embed_scale != 1.0 else self.wte(idx)  # (B, T, C)
        return x if pos_emb is None else x + pos_emb

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
        pos_emb, rope = self._positions(T, idx.device)  # (T, C) or None, (cos, sin) or None
        x = self.drop(self._embed(idx, pos_emb))  # (B, T, C)
        allowed = padding_to_allowed(attention_mask)
        hidden: list[torch.Tensor] = [x] if output_hidden_states else []
        attentions: list[torch.Tensor] = []
        for block in self.blocks:
            x, weights = block(x, allowed, need_weights=output_attentions, rope=rope)
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
        positions with segment recurrence); with rope or none no table is added (g starts from
        the mask embedding or zeros) and RoPE rotates both streams' query i by position i, so
        with rope, g learns its place through its scores. ``attention_mask`` (B, T): padding keys hidden.

        Returns (h (B, T, C), g (B, T, C), both after the final norm, the query stream after the
        embeddings and each layer or None, per layer weights (B, nh, 2T, T) or None: rows 0..T-1
        the content stream's, T..2T-1 the query stream's).
        """
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the model's block_size={self.config.block_size}")
        if perm_mask.shape != (B, T, T):
            raise ValueError(f"perm_mask must have shape (B, T, T) = {(B, T, T)}, got {tuple(perm_mask.shape)}")
        pos_emb, rope = self._positions(T, idx.device)  # (T, C) or None, (cos, sin) or None
        h = self.drop(self._embed(idx, pos_emb))  # (B, T, C)
        C = self.config.n_embd
        start = self.wte.weight.new_zeros(C) if mask_token_id is None else self.wte.weight[mask_token_id]
        query = start * self.embed_scale if pos_emb is None else start * self.embed_scale + pos_emb  # (C,) or (T, C)
        g = self.drop(query.expand(B, T, -1))  # (B, T, C): where each token is, never what it is
        hidden = perm_mask.bool()  # (B, T, T)
        eye = torch.eye(T, dtype=torch.bool, device=idx.device)
        allowed = torch.cat([~hidden | eye, ~hidden & ~eye], dim=1)[:, None]  # (B, 1, 2T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]
        states: list[torch.Tensor] = [g] if output_hidden_states else []
        attentions: list[torch.Tensor] = []
        for block in self.blocks:
            h, g, weights = block.two_stream(h, g, allowed, need_weights=output_attentions, rope=rope)
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
        if config.zero_init:  # each block starts as the identity, the first prediction uniform
            for name, p in self.named_parameters():
                if name.endswith("proj.weight") or name == "lm_head.weight":
                    nn.init.zeros_(p)

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
