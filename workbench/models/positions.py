"""Positional encodings: how a transformer knows where each token is.

Attention by itself is permutation-equivariant: shuffle the input and the output shuffles with
it. Three ways to break the symmetry, each a ``pos_encoding`` option of the GPT family:

- ``learned``: a trained table of position vectors added to the token embeddings (GPT-2, BERT);
- ``sinusoidal``: the fixed table of "Attention Is All You Need",
  p(i, 2j) = sin(i / 10000^(2j/d)), p(i, 2j+1) = cos(i / 10000^(2j/d)), added the same way;
- ``rope``: nothing added; each head's queries and keys are rotated by an angle proportional to
  their position (RoFormer, Su et al. 2021; LLaMA), so q_i . k_j depends on i - j alone.

RoPE here pairs dimension m with dimension m + hs/2 (``rotate_half``, the GPT-NeoX / LLaMA / HF
layout), not neighbouring dimensions (the RoFormer paper's): the same rotation, permuted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn


def sinusoidal_positions(n_pos: int, dim: int) -> torch.Tensor:
    """Fixed sin/cos table from "Attention Is All You Need": (n_pos, dim).

    >>> table = sinusoidal_positions(4, 6)
    >>> table.shape, float(table[0, 0]), float(table[0, 1])
    (torch.Size([4, 6]), 0.0, 1.0)
    """
    pos = torch.arange(n_pos, dtype=torch.float32).unsqueeze(1)  # (P, 1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (ceil(dim/2),)
    table = torch.zeros(n_pos, dim)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq[: dim // 2])
    return table


def rope_angles(n_pos: int, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's rotation angles, each (n_pos, head_dim): position i turns the pair of
    dimensions (m, m + head_dim/2) by i * base^(-2m/head_dim). Fast pairs turn by about a radian
    per position, slow ones barely move over the whole context.

    >>> cos, sin = rope_angles(8, 4)
    >>> cos.shape, float(cos[0].min()), float(sin[0].abs().max())
    (torch.Size([8, 4]), 1.0, 0.0)
    """
    if head_dim % 2:
        raise ValueError(f"RoPE rotates pairs of dimensions: the head size must be even, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hs/2,)
    angles = torch.arange(n_pos, dtype=torch.float32)[:, None] * inv_freq[None, :]  # (P, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (P, hs): dimension m and m + hs/2 share an angle
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last dimension's two halves: a quarter turn of every pair.

    >>> rotate_half(torch.tensor([1.0, 2.0, 3.0, 4.0])).tolist()
    [-3.0, -4.0, 1.0, 2.0]
    """
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys ``x`` (..., T, hs) by their positions' angles (``cos``/``sin`` (T, hs),
    the first T rows of :func:`rope_angles`). Lengths are kept: a rotation, not a shift.

    >>> q = torch.randn(1, 2, 5, 8); cos, sin = rope_angles(5, 8)
    >>> bool(torch.allclose(apply_rope(q, cos, sin).norm(dim=-1), q.norm(dim=-1), atol=1e-5))
    True
    """
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def rope_scores_by_distance(q: torch.Tensor, k: torch.Tensor, max_distance: int, base: float = 10000.0) -> torch.Tensor:
    """The score of one query vector ``q`` against one key vector ``k`` (both (hs,)) after RoPE,
    as the key moves 0..max_distance positions before the query: (max_distance + 1,). With
    ``q == k`` it is largest at distance 0 and decays, with ripples, as the distance grows:
    what RoPE does to a dot product.

    >>> v = torch.ones(16); s = rope_scores_by_distance(v, v, 64)
    >>> s.shape, round(float(s[0]), 4), bool(s[0] > s[1:].max())
    (torch.Size([65]), 16.0, True)
    """
    cos, sin = rope_angles(max_distance + 1, q.numel(), base)
    qr = apply_rope(q.expand(max_distance + 1, -1), cos, sin)[-1]  # the query at position max_distance
    kr = apply_rope(k.expand(max_distance + 1, -1), cos, sin)  # (D+1, hs): the key at every position
    return (kr.flip(0) @ qr)  # index d: the key d positions before the query


@dataclass
class Positions:
    """How a model encodes positions: ``kind`` (learned, sinusoidal, rope or none), its table
    (P, d) when one is added to the embeddings, and RoPE's head size and base when it rotates."""

    kind: str
    table: torch.Tensor | None = None
    head_dim: int = 0
    base: float = 10000.0


def model_positions(model: nn.Module) -> Positions:
    """What ``model`` (ours, or a Hugging Face one) uses for positions: the added table (a GPT's
    ``wpe`` or fixed sinusoids, BERT's ``position_embeddings``, an encoder-decoder's encoder
    table), RoPE (``pos_encoding="rope"``, or an HF config with ``rope_theta``), or none (an RNN
    reads in order; an n-gram's context is its positions)."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "pos_encoding", None)
    n_head = getattr(cfg, "n_head", None) or getattr(cfg, "num_attention_heads", None)
    width = getattr(cfg, "n_embd", None) or getattr(cfg, "hidden_size", None)
    head_dim = getattr(cfg, "head_dim", None) or (width // n_head if width and n_head else 0)
    rope_theta = getattr(cfg, "rope_theta", None) or (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
    if kind == "rope" or (kind is None and rope_theta):
        return Positions("rope", head_dim=int(head_dim), base=float(getattr(cfg, "rope_base", None) or rope_theta))
    if kind == "none":
        return Positions("none")
    trunk = getattr(model, "trunk", model)
    if isinstance(getattr(trunk, "pos_table", None), torch.Tensor):
        return Positions("sinusoidal", trunk.pos_table.detach().cpu())
    for name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and name.split(".")[-1] in ("wpe", "position_embeddings"):
            return Positions("learned", module.weight.detach().cpu())
    return Positions("none")
