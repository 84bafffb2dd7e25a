"""Attention capture: run a model on the eager path and keep every layer's weights.

``capture(model, ids)`` -> :class:`AttentionMaps` of shape (layers, heads, T, T) for one
sequence. An encoder-decoder has three kinds, one forward pass of a (source, decoder input) pair
gives all of them (:func:`capture_seq2seq`): the encoder's self-attention (S, S), the decoder's
causal self-attention (T, T) and its cross-attention (T, S), decoder queries over encoder keys.
A permutation-LM GPT has two streams over one factorization order (:func:`capture_two_stream`).
Each map carries the mask that applied (the causal triangle, the order), so a view can tell a
weight the model chose not to give from one it was never allowed to give.
Snapshots are saved as ``.npz`` (numpy arrays and token strings, no pickle) at each evaluation,
on a fixed probe, so a run's attention can be watched over training time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .io import atomic_write
from .models.base import eval_mode
from .objectives.permutation_lm import PermutationLMConfig, order_selection, permutation_mask

KINDS = ("self", "encoder", "decoder", "cross", "content", "query")
"""What attends to what: a decoder-only or encoder-only model's ``self``-attention, one of an
encoder-decoder's three (the encoder's, the decoder's causal one, decoder over encoder), or one of
the permutation LM's two streams (``content``: each token sees what precedes it in the
factorization order and itself; ``query``: the same tokens but never itself)."""


@dataclass
class AttentionMaps:
    """Attention of one sequence: ``weights[layer, head, query, key]``, rows sum to 1.

    ``tokens`` label the queries (rows); ``key_tokens`` the keys (columns) when they are another
    sequence (cross-attention: decoder rows, encoder columns), else None: the keys are ``tokens``.
    ``mask`` is the mask that applied, (T, S) bool, True where a query was allowed to look (the
    causal triangle, padding hidden, a permutation's order); None when every key was allowed.
    ``source`` says where the maps come from ("run 3f2a step 400", "hf:all-MiniLM-L6-v2").
    """

    weights: np.ndarray  # (L, nh, T, S) float32; S == T unless kind is "cross"
    tokens: list[str]
    step: int | None = None
    key_tokens: list[str] | None = None
    kind: str = "self"
    mask: np.ndarray | None = None  # (T, S) bool: True = allowed
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown attention kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool)
            if self.mask.shape != self.weights.shape[2:]:
                raise ValueError(f"mask of shape {self.mask.shape} does not match the weights' "
                                 f"(query, key) shape {self.weights.shape[2:]}")

    @property
    def allowed(self) -> np.ndarray:
        """(T, S) bool, True where a query may look: ``mask``, or everything when it is None."""
        return self.mask if self.mask is not None else np.ones(self.weights.shape[2:], dtype=bool)

    @property
    def keys(self) -> list[str]:
        """The key (column) labels: ``key_tokens``, or ``tokens`` for self-attention."""
        return self.key_tokens if self.key_tokens is not None else self.tokens

    @property
    def causal(self) -> bool:
        """Whether queries only see earlier keys (and themselves): a decoder's self-attention, or a
        map whose ``mask`` is the lower triangle (every capture sets it; older snapshots have none)."""
        if self.kind == "decoder":
            return True
        m = self.mask
        return m is not None and m.shape[0] == m.shape[1] and bool(np.array_equal(m, np.tri(len(m), dtype=bool)))

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
        if self.mask is not None:
            arrays["mask"] = np.packbits(self.mask, axis=-1)  # 1 bit per cell
            arrays["mask_cols"] = np.array(self.mask.shape[1])
        if self.source:
            arrays["source"] = np.array(self.source)
        atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> AttentionMaps:
        """Snapshots saved before kinds existed have neither ``kind`` nor ``key_tokens`` ("self"),
        nor ``mask`` and ``source`` (None and "")."""
        with np.load(path, allow_pickle=False) as z:
            step = int(z["step"])
            keys = [str(t) for t in z["key_tokens"]] if "key_tokens" in z.files else None
            kind = str(z["kind"]) if "kind" in z.files else "self"
            mask = (np.unpackbits(z["mask"], axis=-1, count=int(z["mask_cols"])).astype(bool)
                    if "mask" in z.files else None)
            source = str(z["source"]) if "source" in z.files else ""
            return cls(z["weights"].astype(np.float32), [str(t) for t in z["tokens"]], None if step < 0 else step,
                       keys, kind, mask, source)


def _row(ids: list[int] | torch.Tensor, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(ids, dtype=torch.long, device=device).view(1, -1)  # (1, T)


def _stack(attentions: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Per-layer (1, nh, T, S) weights -> (L, nh, T, S) float32 on the CPU."""
    return torch.stack([a[0] for a in attentions]).float().cpu().numpy()


def causal_mask(T: int) -> np.ndarray:
    """(T, T) bool lower triangle: query i may look at keys 0..i (a decoder's self-attention).

    >>> causal_mask(3).astype(int).tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    return np.tril(np.ones((T, T), dtype=bool))


def _require(model: nn.Module, capability: str, what: str, instead: str) -> None:
    """A ValueError naming the model's capabilities unless it has ``capability``."""
    if capability not in model.config.capabilities:
        raise ValueError(f"{what}; this model has {', '.join(sorted(model.config.capabilities))}: {instead}")


@torch.no_grad()
def capture(model: nn.Module, ids: list[int] | torch.Tensor, tokens: list[str] | None = None,
            source: str = "", step: int | None = None) -> AttentionMaps:
    """Attention weights of ``model`` on one sequence ``ids`` (eager path, eval mode); for an
    encoder-decoder, its encoder's, kind "encoder" (the decoder's and cross-attention need a
    decoder sequence to go with the text: :func:`capture_seq2seq`).

    ``mask`` says what the model let each query see, so a view can grey out what was never
    allowed: the lower triangle for a causal model (capability "causal"), None (everything) for
    a bidirectional encoder, which reads this single unpadded sequence whole."""
    x = _row(ids, next(model.parameters()).device)  # (1, T)
    capabilities = model.config.capabilities
    seq2seq = "seq2seq" in capabilities
    with eval_mode(model):
        if seq2seq:  # the encoder's self-attention over the probe text
            _, attentions = model.encode(x, output_attentions=True)
        else:
            attentions = model(x, output_attentions=True).attentions
    weights = _stack(attentions)  # (L, nh, T, T)
    mask = causal_mask(x.size(1)) if "causal" in capabilities and not seq2seq else None
    return AttentionMaps(weights, tokens or [str(i) for i in x[0].tolist()], step=step,
                         kind="encoder" if seq2seq else "self", mask=mask, source=source)


@torch.no_grad()
def capture_seq2seq(model: nn.Module, encoder_ids: list[int] | torch.Tensor, decoder_ids: list[int] | torch.Tensor,
                    encoder_tokens: list[str] | None = None, decoder_tokens: list[str] | None = None,
                    source: str = "", step: int | None = None) -> dict[str, AttentionMaps]:
    """An encoder-decoder's three kinds of attention on one pair, from one forward pass (eager
    path, eval mode): ``{"encoder": (L, nh, S, S), "decoder": (Ld, nh, T, T) causal, "cross":
    (Ld, nh, T, S)}``. ``decoder_ids`` is the decoder's input (the target shifted right behind its
    start token, as teacher forcing feeds it), so row t of a decoder map is the position that
    predicts target token t. Both sequences must fit the model's context. Masks: the decoder's
    is the lower triangle; the encoder and the cross-attention see every (unpadded) source token."""
    _require(model, "seq2seq", "capture_seq2seq needs an encoder-decoder", "use capture() for its self-attention")
    device = next(model.parameters()).device
    x, y = _row(encoder_ids, device), _row(decoder_ids, device)  # (1, S), (1, T)
    if x.size(1) == 0 or y.size(1) == 0:
        raise ValueError("capture_seq2seq needs at least one encoder and one decoder token")
    with eval_mode(model):
        out = model(x, decoder_input_ids=y, output_attentions=True)
    encoder = _stack(out.encoder_attentions)  # (L, nh, S, S)
    decoder = _stack(out.attentions)  # (Ld, nh, T, T)
    cross = _stack(out.cross_attentions)  # (Ld, nh, T, S)
    enc_tokens = encoder_tokens or [str(i) for i in x[0].tolist()]
    dec_tokens = decoder_tokens or [str(i) for i in y[0].tolist()]
    common = {"step": step, "source": source}
    return {"encoder": AttentionMaps(encoder, enc_tokens, kind="encoder", **common),
            "decoder": AttentionMaps(decoder, dec_tokens, kind="decoder", mask=causal_mask(y.size(1)), **common),
            "cross": AttentionMaps(cross, dec_tokens, key_tokens=enc_tokens, kind="cross", **common)}


# --- the permutation LM's two streams -----------------------------------------------------------------

PROBE_ORDER_SEED = 0
"""Seed of the factorization order :func:`capture_two_stream` draws when given none: the same
order at every evaluation of a run, so its snapshots differ by training alone."""

_ORDER = re.compile(r"order ([\d ]+) \| predicted ([\d ]*)")


def describe_order(order: list[int], predicted: list[bool]) -> str:
    """The order as text for :attr:`AttentionMaps.source`; :func:`parse_order` reads it back.
    The predicted positions are listed in the order they are predicted.

    >>> describe_order([2, 0, 1], [True, False, True])
    'order 2 0 1 | predicted 2 0'
    """
    return f"order {' '.join(map(str, order))} | predicted {' '.join(str(i) for i in order if predicted[i])}"


def parse_order(source: str) -> tuple[list[int], list[bool]] | None:
    """(order, predicted) from a two-stream map's ``source``; None when it names no order.

    >>> parse_order("run 3f2a · order 2 0 1 | predicted 2 0")
    ([2, 0, 1], [True, False, True])
    """
    m = _ORDER.search(source)
    if m is None:
        return None
    order = [int(t) for t in m.group(1).split()]
    chosen = {int(t) for t in m.group(2).split()}
    return order, [i in chosen for i in range(len(order))]


def _order_and_predicted(T: int, order: list[int] | None, predicted: list[bool] | None,
                         k: int, seed: int) -> tuple[list[int], list[bool]]:
    """Checked (order, predicted); what is missing is made as XLNet does: a seeded uniformly
    random order, its last ceil(T / k) tokens predicted."""
    if order is None:
        rank, chosen = order_selection(torch.tensor([T]), T, k, torch.Generator().manual_seed(seed))
        order = rank[0].argsort().tolist()  # rank: place of each token in the order -> tokens by place
        predicted = chosen[0].tolist() if predicted is None else predicted
    order = [int(i) for i in order]
    if sorted(order) != list(range(T)):
        raise ValueError(f"order must be a permutation of the {T} positions 0..{T - 1}, got {order}")
    if predicted is None:
        n_pred = (T + k - 1) // k  # ceil(T / k)
        last = set(order[T - n_pred:])
        predicted = [i in last for i in range(T)]
    predicted = [bool(p) for p in predicted]
    if len(predicted) != T:
        raise ValueError(f"predicted must say for each of the {T} tokens whether it is predicted, got {len(predicted)} values")
    return order, predicted


@torch.no_grad()
def capture_two_stream(model: nn.Module, ids: list[int] | torch.Tensor, order: list[int] | None = None,
                       predicted: list[bool] | None = None, tokens: list[str] | None = None,
                       mask_token_id: int | None = None, source: str = "", step: int | None = None,
                       k: int | None = None, seed: int = PROBE_ORDER_SEED) -> dict[str, AttentionMaps]:
    """XLNet's two streams of a permutation-LM GPT on one sequence read in one factorization
    order: ``{"content": AttentionMaps, "query": AttentionMaps}``, each (L, nh, T, T).

    ``order`` lists the positions in the order they are predicted (``order[0]`` first);
    ``predicted[i]`` says whether token i is predicted (the others are context, XLNet's rank -1:
    they see each other and no predicted token). Defaults: a random order drawn with ``seed``,
    its last ceil(T / k) predicted, ``k`` the objective's (:class:`PermutationLMConfig`, 6).
    ``mask_token_id`` starts the query stream as training did (the tokenizer's [MASK]; None:
    position alone). The perm_mask comes from the objective's own :func:`permutation_mask`, so
    these are the masks training uses.

    Each map's ``mask`` is exactly what the trunk allowed: content query i sees key j iff
    ``not perm_mask[i, j] or i == j``; query-stream query i sees the content of j iff
    ``not perm_mask[i, j] and i != j``. A query-stream row may have no key at all (the first
    token of the order when nothing is context, a lone context token): its weights are all
    zero, so rows sum to 1 only where ``mask`` allows some key. ``tokens`` label rows and
    columns of both (positions in the text); the order goes in ``source``
    (:func:`describe_order`, read back with :func:`parse_order`)."""
    _require(model, "permutation", "capture_two_stream needs a model with the 'permutation' capability (a GPT)",
             "use capture()")
    device = next(model.parameters()).device
    x = _row(ids, device)  # (1, T)
    T = x.size(1)
    if T == 0:
        raise ValueError("capture_two_stream needs at least one token")
    order, predicted = _order_and_predicted(T, order, predicted, k or PermutationLMConfig().k, seed)
    rank = torch.empty(1, T, dtype=torch.long)
    rank[0, order] = torch.arange(T)  # (1, T): place of each token in the order
    perm = permutation_mask(rank, torch.tensor([predicted]))  # (1, T, T) True = may not see
    with eval_mode(model):
        _, _, _, attentions = model.trunk.two_stream(x, perm.to(device), mask_token_id, output_attentions=True)
    weights = _stack(attentions)  # (L, nh, 2T, T)
    hidden, eye = perm[0].numpy(), np.eye(T, dtype=bool)
    labels = tokens or [str(i) for i in x[0].tolist()]
    where = describe_order(order, predicted)
    common = {"step": step, "source": f"{source} · {where}" if source else where}
    content, query = np.ascontiguousarray(weights[:, :, :T]), np.ascontiguousarray(weights[:, :, T:])  # (L, nh, T, T)
    return {"content": AttentionMaps(content, labels, kind="content", mask=~hidden | eye, **common),
            "query": AttentionMaps(query, list(labels), kind="query", mask=~hidden & ~eye, **common)}
