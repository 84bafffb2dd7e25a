"""Attention capture: run a model on the eager path and keep every layer's weights.

``capture(model, ids)`` -> :class:`AttentionMaps` of shape (layers, heads, T, T) for one
sequence. Snapshots are saved as ``.npz`` (numpy arrays and token strings, no pickle) at each
evaluation, on a fixed probe text, so a run's attention can be watched over training time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .io import atomic_write


@dataclass
class AttentionMaps:
    """Attention of one sequence: ``weights[layer, head, query, key]``, rows sum to 1."""

    weights: np.ndarray  # (L, nh, T, T) float32
    tokens: list[str]
    step: int | None = None

    @property
    def n_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def n_heads(self) -> int:
        return self.weights.shape[1]

    def head(self, layer: int, head: int) -> np.ndarray:
        return self.weights[layer, head]

    def save(self, path: str | Path) -> None:
        """Atomic ``.npz`` write: float16 weights keep snapshots small."""
        atomic_write(path, lambda fh: np.savez_compressed(
            fh, weights=self.weights.astype(np.float16), tokens=np.array(self.tokens, dtype=str),
            step=np.array(-1 if self.step is None else self.step)))

    @classmethod
    def load(cls, path: str | Path) -> AttentionMaps:
        with np.load(path, allow_pickle=False) as z:
            step = int(z["step"])
            return cls(z["weights"].astype(np.float32), [str(t) for t in z["tokens"]], None if step < 0 else step)


@torch.no_grad()
def capture(model: nn.Module, ids: list[int] | torch.Tensor, tokens: list[str] | None = None) -> AttentionMaps:
    """Attention weights of ``model`` on one sequence ``ids`` (eager path, eval mode); for an
    encoder-decoder, its encoder's (cross-attention needs a decoder sequence to go with the text)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = torch.as_tensor(ids, dtype=torch.long, device=device).view(1, -1)  # (1, T)
        if "seq2seq" in model.config.capabilities:  # the encoder's self-attention over the probe text
            _, attentions = model.encode(x, output_attentions=True)
        else:
            attentions = model(x, output_attentions=True).attentions
        weights = torch.stack([a[0] for a in attentions]).float().cpu().numpy()  # (L, nh, T, T)
    finally:
        model.train(was_training)
    return AttentionMaps(weights, tokens or [str(i) for i in x[0].tolist()])
