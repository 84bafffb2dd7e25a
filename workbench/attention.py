"""Attention capture: run a model on the eager path and keep every layer's weights.

``capture(model, ids)`` -> :class:`AttentionMaps` of shape (layers, heads, T, T) for one
sequence. An encoder-decoder has three kinds, one forward pass of a (source, decoder input) pair
gives all of them (:func:`capture_seq2seq`): the encoder's self-attention (S, S), the decoder's
causal self-attention (T, T) and its cross-attention (T, S), decoder queries over encoder keys.
Snapshots are saved as ``.npz`` (numpy arrays and token strings, no pickle) at each evaluation,
on a fixed probe, so a run's attention can be watched over training time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .io import atomic_write

KINDS = ("self", "encoder", "decoder", "cross")
"""What attends to what: a decoder-only or encoder-only model's ``self``-attention, or one of an
encoder-decoder's three (the encoder's, the decoder's causal one, decoder over encoder)."""


@dataclass
class AttentionMaps:
    """Attention of one sequence: ``weights[layer, head, query, key]``, rows sum to 1.

    ``tokens`` label the queries (rows); ``key_tokens`` the keys (columns) when they are another
    sequence (cross-attention: decoder rows, encoder columns), else None: the keys are ``tokens``.
    """

    weights: np.ndarray  # (L, nh, T, S) float32; S == T unless kind is "cross"
    tokens: list[str]
    step: int | None = None
    key_tokens: list[str] | None = None
    kind: str = "self"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown attention kind {self.kind!r}; one of {', '.join(KINDS)}")

    @property
    def keys(self) -> list[str]:
        """The key (column) labels: ``key_tokens``, or ``tokens`` for self-attention."""
        return self.key_tokens if self.key_tokens is not None else self.tokens

    @property
    def causal(self) -> bool:
        """Whether queries only see earlier keys: a decoder's self-attention. A plain ``self``
        map does not say (GPT's is causal, BERT's is not): ask the model's capabilities."""
        return self.kind == "decoder"

    @property
    def n_layers(self) -> int:
        return self.weights.shape[0]

    @property
    def n_heads(self) -> int:
        return self.weights.shape[1]

    def head(self, layer: int, head: int) -> np.ndarray:
        return self.weights[layer, head]

    def save(self, path: str | Path) -> None:
        """Atomic ``.npz`` write: float16 weights keep snapshots small; ``key_tokens`` only when set."""
        arrays = {"weights": self.weights.astype(np.float16), "tokens": np.array(self.tokens, dtype=str),
                  "step": np.array(-1 if self.step is None else self.step), "kind": np.array(self.kind)}
        if self.key_tokens is not None:
            arrays["key_tokens"] = np.array(self.key_tokens, dtype=str)
        atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> AttentionMaps:
        """Snapshots saved before kinds existed have neither ``kind`` nor ``key_tokens``: "self"."""
        with np.load(path, allow_pickle=False) as z:
            step = int(z["step"])
            keys = [str(t) for t in z["key_tokens"]] if "key_tokens" in z.files else None
            kind = str(z["kind"]) if "kind" in z.files else "self"
            return cls(z["weights"].astype(np.float32), [str(t) for t in z["tokens"]], None if step < 0 else step,
                       keys, kind)


def _row(ids: list[int] | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(ids, dtype=torch.long, device=device).view(1, -1)  # (1, T)


def _stack(attentions: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Per-layer (1, nh, T, S) weights -> (L, nh, T, S) float32 on the CPU."""
    return torch.stack([a[0] for a in attentions]).float().cpu().numpy()


@torch.no_grad()
def capture(model: nn.Module, ids: list[int] | torch.Tensor, tokens: list[str] | None = None) -> AttentionMaps:
    """Attention weights of ``model`` on one sequence ``ids`` (eager path, eval mode); for an
    encoder-decoder, its encoder's, kind "encoder" (the decoder's and cross-attention need a
    decoder sequence to go with the text: :func:`capture_seq2seq`)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = _row(ids, device)  # (1, T)
        seq2seq = "seq2seq" in model.config.capabilities
        if seq2seq:  # the encoder's self-attention over the probe text
            _, attentions = model.encode(x, output_attentions=True)
        else:
            attentions = model(x, output_attentions=True).attentions
        weights = _stack(attentions)  # (L, nh, T, T)
    finally:
        model.train(was_training)
    return AttentionMaps(weights, tokens or [str(i) for i in x[0].tolist()], kind="encoder" if seq2seq else "self")


@torch.no_grad()
def capture_seq2seq(model: nn.Module, encoder_ids: list[int] | torch.Tensor, decoder_ids: list[int] | torch.Tensor,
                    encoder_tokens: list[str] | None = None,
                    decoder_tokens: list[str] | None = None) -> dict[str, AttentionMaps]:
    """An encoder-decoder's three kinds of attention on one pair, from one forward pass (eager
    path, eval mode): ``{"encoder": (L, nh, S, S), "decoder": (Ld, nh, T, T) causal, "cross":
    (Ld, nh, T, S)}``. ``decoder_ids`` is the decoder's input (the target shifted right behind its
    start token, as teacher forcing feeds it), so row t of a decoder map is the position that
    predicts target token t. Both sequences must fit the model's context."""
    if "seq2seq" not in model.config.capabilities:
        raise ValueError(f"capture_seq2seq needs an encoder-decoder (capability 'seq2seq'); this model has "
                         f"{', '.join(sorted(model.config.capabilities))}: use capture() for its self-attention")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x, y = _row(encoder_ids, device), _row(decoder_ids, device)  # (1, S), (1, T)
        if x.size(1) == 0 or y.size(1) == 0:
            raise ValueError("capture_seq2seq needs at least one encoder and one decoder token")
        out = model(x, decoder_input_ids=y, output_attentions=True)
        encoder = _stack(out.encoder_attentions)  # (L, nh, S, S)
        decoder = _stack(out.attentions)  # (Ld, nh, T, T)
        cross = _stack(out.cross_attentions)  # (Ld, nh, T, S)
    finally:
        model.train(was_training)
    enc_tokens = encoder_tokens or [str(i) for i in x[0].tolist()]
    dec_tokens = decoder_tokens or [str(i) for i in y[0].tolist()]
    return {"encoder": AttentionMaps(encoder, enc_tokens, kind="encoder"),
            "decoder": AttentionMaps(decoder, dec_tokens, kind="decoder"),
            "cross": AttentionMaps(cross, dec_tokens, key_tokens=enc_tokens, kind="cross")}
