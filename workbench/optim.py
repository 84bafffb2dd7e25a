"""Optimizers, built outside the model from parameter groups and chosen by name in the config.

``build_optimizer(model, train_config)`` is all the trainer calls. Parameter groups follow
nanoGPT: weight decay on matrices and embeddings (dim >= 2), none on biases and norm gains.
A new optimizer (Muon for the matrices, say, or per-group learning rates) is one more entry in
:data:`OPTIMIZERS` taking the same groups.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from .config import TrainConfig

ParamGroups = list[dict]


def param_groups(model: nn.Module, weight_decay: float) -> ParamGroups:
    """Two groups of trainable parameters: decayed (dim >= 2) and not decayed (biases, norms).

    Tied weights appear once (``model.parameters()`` yields each tensor once).

    >>> groups = param_groups(nn.Linear(3, 2), 0.1)
    >>> [(g["weight_decay"], [tuple(p.shape) for p in g["params"]]) for g in groups]
    [(0.1, [(2, 3)]), (0.0, [(2,)])]
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def _fused(device_type: str) -> bool:
    """One kernel for the whole update instead of a few per tensor (PyTorch has it for CUDA and
    CPU; on the CPU recipe's 4-layer GPT the step went from ~2.5 to ~0.9 ms)."""
    return device_type in ("cuda", "cpu")


def _adamw(groups: ParamGroups, cfg: TrainConfig, device_type: str) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=_fused(device_type))


def _adam(groups: ParamGroups, cfg: TrainConfig, device_type: str) -> torch.optim.Optimizer:
    # Adam's weight_decay is an L2 term added to the gradient (the difference AdamW fixed)
    return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=_fused(device_type))


def _sgd(groups: ParamGroups, cfg: TrainConfig, device_type: str) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)


def _muon(groups: ParamGroups, cfg: TrainConfig, device_type: str) -> torch.optim.Optimizer:
    from .muon import Muon

    # Newton-Schulz in bf16 where the run computes in bf16 (always on GPUs), else float32
    bf16 = device_type == "cuda" or cfg.dtype == "bfloat16"
    return Muon(groups, lr=cfg.lr, momentum=cfg.muon_momentum, betas=(cfg.beta1, cfg.beta2),
                ns_dtype=torch.bfloat16 if bf16 else torch.float32)


OPTIMIZERS: dict[str, Callable[[ParamGroups, TrainConfig, str], torch.optim.Optimizer]] = {
    "adamw": _adamw,
    "adam": _adam,
    "sgd": _sgd,
    "muon": _muon,
}


def _muon_groups(model: nn.Module, cfg: TrainConfig) -> ParamGroups:
    from .muon import muon_param_groups

    return muon_param_groups(model, cfg.weight_decay, cfg.muon_lr / cfg.lr)


GROUPS: dict[str, Callable[[nn.Module, TrainConfig], ParamGroups]] = {"muon": _muon_groups}
"""Optimizers that split a model their own way (Muon: hidden matrices apart); the rest use :func:`param_groups`."""


def build_optimizer(model: nn.Module, cfg: TrainConfig, device_type: str = "cpu",
                    groups: ParamGroups | None = None) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names over :func:`param_groups` of ``model``, or over
    ``groups`` when given (e.g. a fine-tuning head's, some with an ``lr_scale`` that the trainer's
    schedule multiplies in).

    >>> opt = build_optimizer(nn.Linear(3, 2), TrainConfig(optimizer="sgd", lr=0.1, momentum=0.5))
    >>> type(opt).__name__, opt.param_groups[0]["momentum"]
    ('SGD', 0.5)
    """
    if groups is None:
        split = GROUPS.get(cfg.optimizer)
        groups = split(model, cfg) if split is not None else param_groups(model, cfg.weight_decay)
    return OPTIMIZERS[cfg.optimizer](groups, cfg, device_type)
