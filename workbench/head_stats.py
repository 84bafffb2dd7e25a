"""Per-head attention statistics and labels: which heads look back one token, at themselves, at a
resting token, copy an earlier continuation (induction), or spread out.

Every score is a mean over query rows of one head's weights (:class:`~workbench.attention.AttentionMaps`),
paired with its *chance level*, what a uniform head under the same mask would score, so a label can
demand a lift over chance: on a causal map of 8 tokens a uniform head already puts 0.25 on the
previous token, at 512 tokens 0.01. Everything is numpy over whole arrays (no loop over rows), so a
12 x 12 head map at 512 tokens scores in about 0.06 s on one core.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence

import numpy as np

from .attention import AttentionMaps

LABELS = ("induction", "previous-token", "next-token", "self", "sink", "focused", "broad", "mixed")
"""Every label a head can get, in a fixed category order (plots colour them elsewhere)."""

PATTERN_THRESHOLD = 0.4
"""Mean weight a named pattern (previous / next / self / sink) needs: below ~0.4 the head spends
most of its attention elsewhere and the name would mislead."""

CHANCE_MARGIN = 0.2
"""...and how far above the uniform head's score it must be, so short or masked rows where a
uniform head already scores high (row 1 of a causal map: 0.5 on the previous token) earn nothing."""

INDUCTION_THRESHOLD = 0.4
"""Induction score that wins over every other label; a uniform head scores under 1/(period + 1)."""

BROAD_THRESHOLD = 0.85
"""Normalised entropy at or above which an unnamed head is "broad" (near uniform over its keys)."""

FOCUSED_THRESHOLD = 0.5
"""Normalised entropy at or below which an unnamed head is "focused": its weight sits on about
sqrt(n) of n keys or fewer, yet on no named pattern. In between: "mixed"."""

SINK_MIN_KEYS = 4
"""Rows that see fewer keys are left out of the sink score: in a causal map row 0 must put 1.0 on
token 0 and rows 1-2 can hardly avoid it (a previous-token head at row 1 *is* on token 0)."""

SPECIAL_TOKENS = frozenset({"[CLS]", "[SEP]", "[PAD]", "[BOS]", "[EOS]", "<s>", "</s>", "<pad>", "<bos>",
                            "<eos>", "<|endoftext|>", "<|bos|>", "<|eos|>"})
"""Key tokens a head may rest on besides the first one ([MASK] and [UNK] carry content: not here)."""

PATTERNS = ("previous", "next", "self", "sink")
_NAMES = {"previous": "previous-token", "next": "next-token", "self": "self", "sink": "sink"}
DEFAULT_PERIOD = 25


def _mean(q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean of ``q[..., t]`` over the selected rows; NaN when none is selected."""
    n = int(rows.sum())
    return q[..., rows].mean(-1) if n else np.full(q.shape[:-1], np.nan, dtype=np.float32)


def is_causal(maps: AttentionMaps) -> bool:
    """Whether no query may look (or does look) at a later key: the mask says so, else a "decoder"
    map is, else the weights tell (GPT's ``capture`` gives no mask but exactly 0 above the diagonal)."""
    w = maps.weights
    if maps.kind == "cross" or w.shape[2] != w.shape[3]:
        return False
    mask = getattr(maps, "mask", None)
    if mask is not None:
        return not np.triu(mask, 1).any()
    if maps.kind == "decoder":
        return True
    upper = np.triu(np.ones(w.shape[2:], dtype=w.dtype), 1).ravel()
    return bool((w.reshape(-1, upper.size) @ upper).max() <= 1e-6 * w.shape[2])


def head_scores(maps: AttentionMaps, causal: bool | None = None) -> dict[str, np.ndarray]:
    """All per-head scores, each (L, nh), with ``<name>_chance`` for a uniform head beside each.

    ``entropy`` (nats) and ``entropy_norm`` (divided by log of the row's allowed keys; rows with
    one key skipped; 1 = uniform, 0 = one key), ``peak`` (max weight), then the patterns:
    ``previous`` (key i-1, rows i >= 1), ``next`` (key i+1), ``self`` (key i), ``sink`` (first
    token and :data:`SPECIAL_TOKENS`, not the row's own position, rows seeing >= :data:`SINK_MIN_KEYS`
    keys). A pattern whose key the mask never allows is NaN: ``next`` on a causal map, ``self`` on
    the permutation LM's query stream, all four on cross-attention (keys are another sequence).
    ``causal`` overrides :func:`is_causal` for maps given without a mask.

    >>> w = np.eye(3, dtype=np.float32)[None, None]  # every token attends to itself
    >>> s = head_scores(AttentionMaps(w, ["a", "b", "c"]))
    >>> float(s["self"][0, 0]), float(s["entropy_norm"][0, 0]), bool(np.isnan(s["next"][0, 0]))
    (1.0, 0.0, True)
    """
    w = np.asarray(maps.weights, dtype=np.float32)
    L, nh, T, S = w.shape
    causal = is_causal(maps) if causal is None else causal
    mask = getattr(maps, "mask", None)
    allowed = np.asarray(mask, dtype=bool) if mask is not None else (
        np.tri(T, S, dtype=bool) if causal else np.ones((T, S), dtype=bool))
    n = allowed.sum(1)  # (T,) keys each row may see
    valid = n > 0
    inv = np.where(valid, 1.0 / np.maximum(n, 1), 0.0)
    ent = np.empty((L, nh, T), dtype=np.float32)
    tmp = np.empty(w.shape[1:], dtype=np.float32)  # one layer's log weights, reused
    for layer in range(L):
        np.log(np.add(w[layer], np.float32(1e-30), out=tmp), out=tmp)  # 1e-30: 0 * log 0 = 0
        ent[layer] = 0.0 - np.einsum("hts,hts->ht", w[layer], tmp)  # 0.0 -: no -0.0
    logn = np.log(np.maximum(n, 1))
    many = n >= 2  # a row with one key has no choice: no normalised entropy
    out: dict[str, np.ndarray] = {
        "entropy": _mean(ent, valid), "entropy_chance": _mean(logn, valid),
        "entropy_norm": _mean(ent / np.where(many, logn, 1.0).astype(np.float32), many),
        "entropy_norm_chance": _mean(np.ones(T), many),
        "peak": _mean(w.max(-1), valid), "peak_chance": _mean(inv, valid)}
    nan = np.full((L, nh), np.nan, dtype=np.float32)
    for name in PATTERNS:
        out[name], out[name + "_chance"] = nan, nan
    if maps.kind != "cross" and T == S:
        i = np.arange(T)
        for name, k in (("previous", -1), ("next", 1), ("self", 0)):
            rows = i[max(0, -k):T - max(0, k)]  # rows whose key i+k exists
            hit = allowed[rows, rows + k]
            sel = valid[rows]
            if hit[sel].any():
                out[name] = _mean(np.diagonal(w, k, 2, 3), sel)  # diagonal(k)[j] = w[j - min(k,0), j + max(k,0)]
                out[name + "_chance"] = _mean(hit * inv[rows], sel)
        sink = np.zeros(S, dtype=bool)
        sink[0] = True
        sink |= np.array([t in SPECIAL_TOKENS for t in maps.keys], dtype=bool)
        cols = np.flatnonzero(sink)
        on_sink = w[..., cols].sum(-1) - np.where(sink, np.diagonal(w, 0, 2, 3), 0)  # own position excluded
        rows = valid & (n >= SINK_MIN_KEYS)
        free = (allowed & sink[None, :]).sum(1) - (sink & np.diagonal(allowed))
        if (free[rows] > 0).any():
            out["sink"], out["sink_chance"] = _mean(on_sink, rows), _mean(free * inv, rows)
    return {k: np.broadcast_to(np.asarray(v, dtype=np.float32), (L, nh)).copy() for k, v in out.items()}


def induction_probe(vocab_size: int, period: int, seed: int = 0, exclude: Sequence[int] = (),
                    start: int | None = None) -> list[int]:
    """``period`` distinct random ids (none in ``exclude``) repeated twice, behind ``start`` if given:
    in the second repeat only copying what followed the token last time predicts the next one.

    >>> p = induction_probe(100, 5, start=0, exclude=[0])
    >>> len(p), p[1:6] == p[6:], 0 in p[1:]
    (11, True, False)
    """
    pool = np.setdiff1d(np.arange(vocab_size), np.asarray(exclude, dtype=np.int64))
    if period < 1 or period > pool.size:
        raise ValueError(f"period {period} needs 1..{pool.size} distinct ids outside exclude")
    seq = np.random.default_rng(seed).choice(pool, size=period, replace=False).tolist()
    return ([start] if start is not None else []) + seq + seq


def induction_scores(maps: AttentionMaps, period: int, offset: int = 0) -> np.ndarray:
    """(L, nh) mean weight from each second-repeat position i (``offset + period <= i < offset +
    2 * period``) onto key i - period + 1, the token after token i's first occurrence (Olsson et al.
    2022; TransformerLens' ``diagonal(offset=1 - period)``). ``offset``: tokens before the probe."""
    w = maps.weights
    if maps.kind == "cross" or w.shape[2] != w.shape[3]:
        raise ValueError("induction scores need self-attention over the probe, not cross-attention")
    if w.shape[2] < offset + 2 * period:
        raise ValueError(f"maps of {w.shape[2]} tokens are shorter than offset + 2 * period = {offset + 2 * period}")
    stripe = np.diagonal(w, 1 - period, 2, 3)  # [..., j] = w[j + period - 1, j]; key j = i - period + 1
    return stripe[..., offset + 1: offset + period + 1].mean(-1).astype(np.float32)


def model_induction_scores(model: Any, vocab_size: int, period: int | None = None, exclude: Sequence[int] = (),
                           seed: int = 0, start: int | None = None, n_probes: int = 1) -> np.ndarray:
    """Capture ``model`` on :func:`induction_probe` (seeds ``seed .. seed + n_probes - 1``) and
    average :func:`induction_scores`. ``period`` defaults to what fits the context, at most 25."""
    from .attention import capture
    offset = int(start is not None)
    context = getattr(getattr(model, "config", None), "max_context", None)
    if period is None:
        period = DEFAULT_PERIOD if context is None else min(DEFAULT_PERIOD, (context - offset) // 2)
    scores = [induction_scores(capture(model, induction_probe(vocab_size, period, seed + k, exclude, start)),
                               period, offset) for k in range(n_probes)]
    return np.mean(scores, axis=0)


@dataclass
class HeadLabels:
    """One label per head from :data:`LABELS` and the score behind it: the pattern's mean weight,
    the induction score, 1 - normalised entropy for "focused", normalised entropy for "broad"/"mixed"."""

    labels: np.ndarray  # (L, nh) str
    scores: np.ndarray  # (L, nh) float
    step: int | None = None

    def table(self) -> list[dict[str, Any]]:
        """One row per head (layer, head, label, score), ready for ``pandas.DataFrame``."""
        return [{"layer": layer, "head": head, "label": str(self.labels[layer, head]),
                 "score": float(self.scores[layer, head])} for layer, head in np.ndindex(*self.labels.shape)]


def label_heads(scores: dict[str, np.ndarray] | AttentionMaps, induction: np.ndarray | None = None, *,
                threshold: float = PATTERN_THRESHOLD, margin: float = CHANCE_MARGIN,
                induction_threshold: float = INDUCTION_THRESHOLD, broad: float = BROAD_THRESHOLD,
                focused: float = FOCUSED_THRESHOLD) -> HeadLabels:
    """Name each head: induction (when given and >= its threshold) wins; then the strongest named
    pattern with score >= ``threshold`` and >= chance + ``margin``; else by normalised entropy,
    "broad" (>= ``broad``), "focused" (<= ``focused``) or "mixed".

    >>> w = np.tri(4, dtype=np.float32)[None, None] / np.arange(1, 5, dtype=np.float32)[:, None]
    >>> label_heads(AttentionMaps(w, list("abcd"))).table()
    [{'layer': 0, 'head': 0, 'label': 'broad', 'score': 1.0}]
    """
    step = None
    if isinstance(scores, AttentionMaps):
        step, scores = scores.step, head_scores(scores)
    ent = scores["entropy_norm"]
    labels = np.where(ent >= broad, "broad", np.where(ent <= focused, "focused", "mixed")).astype("U16")
    value = np.where(labels == "focused", 1 - ent, ent).astype(np.float32)
    best = np.full(ent.shape, -np.inf, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        for name in PATTERNS:
            s = scores[name]
            ok = (s >= threshold) & (s - scores[name + "_chance"] >= margin) & (s > best)
            labels[ok], value[ok], best[ok] = _NAMES[name], s[ok], s[ok]
        if induction is not None:
            ok = np.asarray(induction) >= induction_threshold
            labels[ok], value[ok] = "induction", np.asarray(induction, dtype=np.float32)[ok]
    return HeadLabels(labels, value, step)


class LabelChange(NamedTuple):
    layer: int
    head: int
    step: int
    old: str
    new: str


@dataclass
class LabelHistory:
    """Labels over training: ``steps`` (S,), ``labels`` (S, L, nh) str, ``scores`` (S, L, nh)."""

    steps: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    thresholds: dict[str, float] = field(default_factory=dict)

    def changes(self) -> list[LabelChange]:
        """Every relabelling, (layer, head, step it first shows, old label, new label), in step order."""
        return [LabelChange(int(layer), int(head), int(self.steps[s + 1]), str(self.labels[s, layer, head]),
                            str(self.labels[s + 1, layer, head]))
                for s, layer, head in zip(*np.nonzero(self.labels[1:] != self.labels[:-1]))]


def label_history(snapshots: Sequence[AttentionMaps], induction: Sequence[np.ndarray | None] | None = None,
                  **thresholds: float) -> LabelHistory:
    """:func:`label_heads` on each snapshot (same layers and heads), in the order given; a snapshot
    without a step takes its index. ``induction``: per-snapshot scores, or None."""
    if not snapshots:
        raise ValueError("label_history needs at least one snapshot")
    shape = snapshots[0].weights.shape[:2]
    if any(m.weights.shape[:2] != shape for m in snapshots):
        raise ValueError("all snapshots must have the same layers and heads")
    ind = list(induction) if induction is not None else [None] * len(snapshots)
    done = [label_heads(head_scores(m), i, **thresholds) for m, i in zip(snapshots, ind)]
    steps = np.array([k if m.step is None else m.step for k, m in enumerate(snapshots)], dtype=np.int64)
    return LabelHistory(steps, np.stack([d.labels for d in done]), np.stack([d.scores for d in done]),
                        dict(thresholds))
