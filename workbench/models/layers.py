"""Transformer building blocks shared by every model family.

Attention has two paths that compute the same function:
- fast: ``F.scaled_dot_product_attention`` (fused kernels; never materialises weights on GPU),
- eager: explicit ``softmax(QK^T / sqrt(d)) V`` that can hand back the weights for capture.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import positive_ints, require
from .positions import apply_rope, sinusoidal_positions

__all__ = ["MAX_BLOCK_SIZE", "MLP", "Block", "LayerNorm", "Norm", "Rope", "SelfAttention", "check_attention_shape",
           "padding_to_allowed", "sinusoidal_positions"]  # sinusoidal_positions: re-exported from .positions

Rope = tuple[torch.Tensor, torch.Tensor]
"""RoPE's (cos, sin), each (T, hs): the first T rows of ``positions.rope_angles``."""

MAX_BLOCK_SIZE = 8192
"""Largest context any preset or user config may ask for (attention is O(T^2) in memory)."""


def check_attention_shape(cfg: Any) -> None:
    """The checks every attention family's config shares (GPT, BERT, encoder-decoder): heads
    that divide the width, a position table within :data:`MAX_BLOCK_SIZE`, a vocabulary size
    that is not negative (0: filled in from the tokenizer) and a dropout in [0, 1). Each
    ConfigError names the field to change."""
    positive_ints(cfg, "n_layer", "n_head", "n_embd", "block_size")
    require(
        cfg.n_embd % cfg.n_head == 0,
        "n_embd",
        f"n_embd={cfg.n_embd} is not divisible by n_head={cfg.n_head}; "
        f"pick n_embd as a multiple of n_head (e.g. {cfg.n_head * max(1, round(cfg.n_embd / cfg.n_head))})",
    )
    require(cfg.block_size <= MAX_BLOCK_SIZE, "block_size",
            f"block_size={cfg.block_size} is above the maximum {MAX_BLOCK_SIZE}; lower it")
    require(isinstance(cfg.vocab_size, int) and cfg.vocab_size >= 0, "vocab_size", "must be >= 0")
    require(0.0 <= cfg.dropout < 1.0, "dropout", f"must be in [0, 1), got {cfg.dropout}")


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's lacks ``bias=False`` on older versions).

    ``eps`` is 1e-5 (GPT-2, PyTorch's default); BERT uses 1e-12.
    """

    def __init__(self, ndim: int, bias: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention; ``causal`` decoders never look at later positions."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, causal: bool, qk_norm: bool = False) -> None:
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.causal = causal
        self.qk_norm = qk_norm
        self.dropout = dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # q, k, v for all heads in one matmul
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, need_weights: bool = False,
        rope: Rope | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``attn_mask``: bool (B, 1|nh, T|1, T), True where attention is allowed (see ``padding_to_allowed``).
        ``rope``: (cos, sin) (T, hs) to rotate queries and keys by their positions (None: no rotation)."""
        B, T, C = x.size()
        hs = C // self.n_head
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if self.qk_norm:  # unit-RMS queries and keys: scores stay bounded, so larger learning rates are safe
            q, k = F.rms_norm(q, (hs,)), F.rms_norm(k, (hs,))
        if rope is not None:  # positions enter here, not in the residual stream; values are not rotated
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)

        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
            allowed = _allowed_mask(T, x.device, self.causal, attn_mask)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            weights = F.softmax(scores, dim=-1)  # (B, nh, T, T); rows sum to 1
            y = self.attn_dropout(weights) @ v  # (B, nh, T, hs)
        else:
            dropout_p = self.dropout if self.training else 0.0
            if attn_mask is None:
                y = sdpa(q, k, v, dropout_p=dropout_p, is_causal=self.causal)
            else:
                allowed = _allowed_mask(T, x.device, self.causal, attn_mask)
                y = sdpa(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, C)
        return self.resid_dropout(self.proj(y)), weights

    def two_stream(
        self, h: torch.Tensor, g: torch.Tensor, allowed: torch.Tensor, need_weights: bool = False,
        rope: Rope | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """XLNet's two-stream attention with this layer's weights: queries from the content
        stream ``h`` and the query stream ``g`` (both (B, T, C)), keys and values from ``h`` only.

        No causal triangle: ``allowed`` (B, 1|nh, 2T, T) says everything, rows 0..T-1 for h's
        queries and T..2T-1 for g's. A query allowed no key at all (first in the order with every
        other token hidden) gets a zero output, an attention over nothing, not a leak of itself.
        ``rope`` (cos, sin) (T, hs): both streams' query i and key j are rotated by i and j.
        Returns (h update, g update, weights (B, nh, 2T, T) or None).
        """
        B, T, C = h.size()
        hs = C // self.n_head
        q_h, k, v = self.qkv(h).split(C, dim=2)
        bias = self.qkv.bias[:C] if self.qkv.bias is not None else None
        q_g = F.linear(g, self.qkv.weight[:C], bias)  # g only asks: its keys and values are never read
        q = torch.cat([q_h, q_g], dim=1).view(B, 2 * T, self.n_head, hs).transpose(1, 2)  # (B, nh, 2T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if self.qk_norm:
            q, k = F.rms_norm(q, (hs,)), F.rms_norm(k, (hs,))
        if rope is not None:
            cos, sin = rope
            q = apply_rope(q, cos.repeat(2, 1), sin.repeat(2, 1))  # g's query i sits at position i, like h's
            k = apply_rope(k, cos, sin)
        empty = ~allowed.any(dim=-1, keepdim=True)  # (B, 1|nh, 2T, 1)
        # an empty row looks at its own position only so softmax stays finite; zeroed below
        allowed = allowed | (empty & torch.eye(T, dtype=torch.bool, device=h.device).repeat(2, 1))
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, 2T, T)
            weights = F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).masked_fill(empty, 0.0)
            y = self.attn_dropout(weights) @ v  # (B, nh, 2T, hs)
        else:
            dropout_p = self.dropout if self.training else 0.0
            y = sdpa(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
            y = y.masked_fill(empty, 0.0)  # (B, nh, 2T, hs)
        y = y.transpose(1, 2).contiguous().view(B, 2 * T, C)  # (B, 2T, C)
        y = self.resid_dropout(self.proj(y))
        return y[:, :T], y[:, T:], weights


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, but in float32 for bfloat16 inputs on a CPU: there
    PyTorch's bf16 flash-attention backward ran ~5x slower than float32's (2-layer-128 GPT,
    torch 2.13, AMD EPYC with AVX512-BF16), while the matmuls around it ran 2x faster in bf16.
    On GPUs bf16 attention is the fast path and is kept."""
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs).to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, **kwargs)


def padding_to_allowed(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """A caller's mask as bool 'may attend' of shape (B, 1|nh, T|1, T).

    (B, T) is HF's padding mask (1 = real token, 0 = padding): no query may look at padding.
    (B, T, T) and (B, 1|nh, T, T) are taken as 'query i may attend to key j' (truthy = yes).

    >>> padding_to_allowed(torch.tensor([[1, 1, 0]])).shape
    torch.Size([1, 1, 1, 3])
    """
    if attention_mask is None:
        return None
    m = attention_mask.bool()
    if m.dim() == 2:
        return m[:, None, None, :]  # (B, 1, 1, T)
    if m.dim() == 3:
        return m[:, None]  # (B, 1, T, T)
    return m


def _allowed_mask(T: int, device: torch.device, causal: bool, allowed: torch.Tensor | None) -> torch.Tensor | None:
    """Combine the causal triangle with a caller's mask (True = may attend).

    A query that may attend to nothing (a padding position before any real token) attends to
    itself, so softmax never sees a row of -inf (which would give NaN).
    """
    causal_mask = torch.ones(T, T, dtype=torch.bool, device=device).tril() if causal else None
    if allowed is None:
        return causal_mask
    allowed = allowed if causal_mask is None else (allowed & causal_mask)
    empty = ~allowed.any(dim=-1, keepdim=True)  # (B, 1|nh, T, 1)
    return allowed | (empty & torch.eye(T, dtype=torch.bool, device=device))


class ReLU2(nn.Module):
    """relu(x)²: as cheap as ReLU, smooth at 0 like GELU (Primer; modded-nanogpt's MLP)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


Activation = Literal["gelu", "relu2"]


class MLP(nn.Module):
    """Position-wise feed-forward: expand (4x unless ``hidden`` is given), exact GELU (or relu²),
    project back."""

    def __init__(self, n_embd: int, dropout: float, bias: bool, hidden: int | None = None,
                 activation: Activation = "gelu") -> None:
        super().__init__()
        hidden = hidden or 4 * n_embd
        self.fc = nn.Linear(n_embd, hidden, bias=bias)
        self.gelu = nn.GELU() if activation == "gelu" else ReLU2()  # the name stays: checkpoints hold none
        self.proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(self.gelu(self.fc(x))))


Norm = Literal["pre", "post", "none"]
"""Where a block's LayerNorms sit: before each sublayer (GPT-2), after each residual sum (the
original Transformer, BERT), or nowhere."""


class Block(nn.Module):
    """Transformer block: attention, then a position-wise MLP, each a residual sublayer.

    ``norm="pre"`` (GPT-2): x + f(ln(x)), the stream itself never normalised, so gradients flow
    straight down the skip path. ``"post"`` (original Transformer, BERT): ln(x + f(x)).
    ``"none"``: x + f(x). ``residual=False`` drops the ``x +``, to show what skip connections buy.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool, causal: bool,
                 norm: Norm = "pre", residual: bool = True, qk_norm: bool = False, activation: Activation = "gelu") -> None:
        super().__init__()
        assert norm in ("pre", "post", "none"), norm
        self.norm, self.residual = norm, residual
        self.ln_1: nn.Module = LayerNorm(n_embd, bias) if norm != "none" else nn.Identity()
        self.attn = SelfAttention(n_embd, n_head, dropout, bias, causal, qk_norm)
        self.ln_2: nn.Module = LayerNorm(n_embd, bias) if norm != "none" else nn.Identity()
        self.mlp = MLP(n_embd, dropout, bias, activation=activation)

    def _in(self, ln: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """What a sublayer reads: ln(x) for pre-LN, else x itself."""
        return ln(x) if self.norm == "pre" else x

    def _out(self, ln: nn.Module, x: torch.Tensor, fx: torch.Tensor) -> torch.Tensor:
        """The stream after a sublayer: x + f(x) (or f(x) alone), normalised for post-LN."""
        y = x + fx if self.residual else fx
        return ln(y) if self.norm == "post" else y

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, need_weights: bool = False,
        rope: Rope | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self._in(self.ln_1, x), attn_mask, need_weights, rope)
        x = self._out(self.ln_1, x, a)  # (B, T, C)
        x = self._out(self.ln_2, x, self.mlp(self._in(self.ln_2, x)))  # (B, T, C)
        return x, weights

    def two_stream(
        self, h: torch.Tensor, g: torch.Tensor, allowed: torch.Tensor, need_weights: bool = False,
        rope: Rope | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The block on both XLNet streams with the same weights (see :meth:`SelfAttention.two_stream`)."""
        a_h, a_g, weights = self.attn.two_stream(self._in(self.ln_1, h), self._in(self.ln_1, g), allowed,
                                                 need_weights, rope)
        h, g = self._out(self.ln_1, h, a_h), self._out(self.ln_1, g, a_g)
        h = self._out(self.ln_2, h, self.mlp(self._in(self.ln_2, h)))
        g = self._out(self.ln_2, g, self.mlp(self._in(self.ln_2, g)))
        return h, g, weights
