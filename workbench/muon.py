"""Muon (Keller Jordan, 2024): momentum SGD whose update for a weight matrix is orthogonalised
by a few Newton-Schulz iterations, so every direction of the matrix moves by about the same
amount. It trains the hidden matrices of a transformer faster than AdamW for the same steps
(modded-nanogpt, nanochat); embeddings, the output head, gains and biases stay on AdamW.

``Muon`` is one optimizer over both kinds of group (``use_muon`` True or False), so the
trainer's schedule sets every group's learning rate the same way (``lr_scale`` gives Muon's
groups their own peak, ``train.muon_lr``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

NS_COEFFS = (3.4445, -4.7750, 2.0315)
"""The quintic iteration's coefficients (tuned so 5 steps bring singular values near 1)."""


@torch.no_grad()
def orthogonalize(G: torch.Tensor, steps: int = 5, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The nearest semi-orthogonal matrix to ``G`` (its U Vᵀ), approximately: singular values are
    pushed towards 1 by ``steps`` Newton-Schulz iterations on ``G / ||G||``. ``G`` may be a batch
    (..., m, n) of same-shape matrices. ``dtype``: the iteration's precision (default bfloat16 on
    GPUs, float32 elsewhere; bfloat16 is good enough, and fast where the hardware has it).

    >>> Q = orthogonalize(torch.randn(8, 32))
    >>> bool(torch.linalg.svdvals(Q).min() > 0.5) and bool(torch.linalg.svdvals(Q).max() < 1.3)
    True
    """
    a, b, c = NS_COEFFS
    X = G.to(dtype or (torch.bfloat16 if G.is_cuda else torch.float32))
    tall = G.size(-2) > G.size(-1)
    if tall:
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # spectral norm <= Frobenius norm <= 1
    for _ in range(steps):
        A = X @ X.mT
        X = a * X + (b * A + c * A @ A) @ X
    if tall:
        X = X.mT
    return X.to(G.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for groups with ``use_muon=True`` (2-D weights), Adam(W) for the others.

    Muon groups: ``lr``, ``momentum`` (Nesterov), ``weight_decay`` (decoupled), ``ns_steps``.
    Adam groups: ``lr``, ``betas``, ``eps``, ``weight_decay`` (decoupled, as AdamW).
    ``ns_dtype``: precision of the Newton-Schulz iteration (see :func:`orthogonalize`); the
    trainer passes bfloat16 when the run trains under bfloat16 autocast.
    """

    def __init__(self, groups: list[dict[str, Any]], lr: float, momentum: float = 0.95, betas: tuple[float, float] = (0.9, 0.95),
                 eps: float = 1e-10, ns_steps: int = 5, ns_dtype: torch.dtype | None = None) -> None:
        for g in groups:
            if g.get("use_muon") and any(p.dim() != 2 for p in g["params"]):
                raise ValueError("Muon orthogonalises matrices: its groups must hold only 2-D parameters")
        defaults = {"lr": lr, "momentum": momentum, "betas": betas, "eps": eps, "ns_steps": ns_steps,
                    "weight_decay": 0.0, "use_muon": False}
        super().__init__(groups, defaults)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if group["use_muon"]:
                self._muon_step(group, params)
            else:
                self._adamw_step(group, params)
        return loss

    def _muon_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        updates = []
        for p in params:
            buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
            buf.lerp_(p.grad, 1 - mu)
            updates.append(p.grad.lerp(buf, mu))  # Nesterov: look ahead along the momentum
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(params):
            by_shape.setdefault(tuple(p.shape), []).append(i)
        for shape, idx in by_shape.items():  # one batched iteration per shape (every layer's qkv together, ...)
            ortho = orthogonalize(torch.stack([updates[i] for i in idx]), group["ns_steps"], self.ns_dtype)
            ortho *= max(1.0, shape[0] / shape[1]) ** 0.5  # tall matrices: same RMS per entry
            for i, o in zip(idx, ortho):
                params[i].mul_(1 - lr * wd).add_(o, alpha=-lr)

    def _adamw_step(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr, wd, (b1, b2) = group["lr"], group["weight_decay"], group["betas"]
        for p in params:
            state = self.state[p]
            if not state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            state["exp_avg"].lerp_(p.grad, 1 - b1)
            state["exp_avg_sq"].lerp_(p.grad.square(), 1 - b2)
            denom = (state["exp_avg_sq"] / (1 - b2 ** state["step"])).sqrt_().add_(group["eps"])
            p.mul_(1 - lr * wd).addcdiv_(state["exp_avg"], denom, value=-lr / (1 - b1 ** state["step"]))


def muon_param_groups(model: nn.Module, weight_decay: float, muon_scale: float) -> list[dict[str, Any]]:
    """Muon for the hidden matrices (every Linear weight but the output head), AdamW for the rest:
    embeddings, the head, gains and biases. ``muon_scale`` is Muon's peak over AdamW's (the
    trainer multiplies a group's ``lr_scale`` into its schedule). Tied weights appear once."""
    head = getattr(model, "lm_head", None)
    head_ids = {id(head.weight)} if isinstance(head, nn.Linear) else set()
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)} - head_ids - embedding_ids
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if id(p) in hidden], "use_muon": True, "weight_decay": 0.0, "lr_scale": muon_scale},
        {"params": [p for p in params if id(p) not in hidden and p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in hidden and p.dim() < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
