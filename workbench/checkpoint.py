"""Checkpoints as safetensors only (never pickle): model weights, optimizer state, metadata.

Optimizer state goes in as tensors (``optim.<param>.<key>``) with its hyper-parameters as JSON
metadata, so a file from anyone can be loaded without executing code. Writes are atomic:
a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import save

from .io import atomic_write
from .models.base import unwrap_model

FORMAT = "workbench-ckpt-1"


@dataclass
class Checkpoint:
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None, meta: dict | None = None) -> None:
    """Write model (+ optimizer) to ``path`` atomically. Tied weights are stored once."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...]], str] = {}
    for name, t in unwrap_model(model).state_dict().items():
        key = (t.data_ptr(), tuple(t.shape))
        if key in seen:  # e.g. lm_head.weight is wte.weight
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[f"model.{name}"] = t.detach().cpu().contiguous()
    metadata = {"format": FORMAT, "aliases": json.dumps(aliases), "meta": json.dumps(meta or {})}
    if optimizer is not None:
        state = optimizer.state_dict()
        for pid, pstate in state["state"].items():
            for k, v in pstate.items():
                t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
                tensors[f"optim.{pid}.{k}"] = t.detach().cpu().contiguous()
        metadata["optim_param_groups"] = json.dumps(state["param_groups"])
    atomic_write(path, save(tensors, metadata=metadata))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a file written by :func:`save_checkpoint` (tensors on CPU)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    model_state: dict[str, torch.Tensor] = {}
    optim_tensors: dict[int, dict[str, torch.Tensor]] = {}
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path} is not a workbench checkpoint (format {metadata.get('format')!r})")
        for key in f.keys():
            kind, _, rest = key.partition(".")
            if kind == "model":
                model_state[rest] = f.get_tensor(key)
            elif kind == "optim":
                pid, _, k = rest.partition(".")
                optim_tensors.setdefault(int(pid), {})[k] = f.get_tensor(key)
    for name, target in json.loads(metadata.get("aliases", "{}")).items():
        model_state[name] = model_state[target]
    optimizer_state = None
    if "optim_param_groups" in metadata:
        optimizer_state = {"state": optim_tensors, "param_groups": json.loads(metadata["optim_param_groups"])}
    return Checkpoint(model_state, optimizer_state, json.loads(metadata.get("meta", "{}")))
