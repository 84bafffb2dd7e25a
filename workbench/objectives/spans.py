"""T5's span arithmetic, used by span corruption (:mod:`workbench.objectives.span_corruption`):
how many tokens of a window are noise and in how many spans (:func:`span_counts`), how long a
window fits a ``seq_len`` (:func:`window_layout`), where the spans fall
(:func:`random_spans_noise_mask`, T5's function of the same name, in torch), and corrupting a
window (:func:`corrupt`) and undoing it (:func:`fill_sentinels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


# --- how many tokens are noise, in how many spans ---------------------------------------------------

def span_counts(length: int, noise_density: float, mean_noise_span_length: float) -> tuple[int, int]:
    """T5's ``(num_noise_tokens, num_noise_spans)`` for a window of ``length`` tokens: at least one
    noise and one kept token, at least one span (in float32 with round-half-to-even, as ``tf.round``).

    >>> span_counts(568, 0.15, 3.0), span_counts(10, 0.15, 3.0), span_counts(30, 0.15, 3.0), span_counts(1, 0.15, 3.0)
    ((85, 28), (2, 1), (4, 1), (1, 1))
    """
    length = max(length, 2)  # T5 counts a 1-token window as 2, then keeps only its first (kept) token
    noise = int(np.round(np.float32(length) * np.float32(noise_density)))
    noise = min(max(noise, 1), length - 1)
    spans = max(int(np.round(np.float32(noise) / np.float32(mean_noise_span_length))), 1)
    return noise, min(spans, length - noise)  # the cap: see the module docstring


@dataclass(frozen=True)
class SpanLayout:
    """What a window of ``raw_len`` text tokens becomes: its lengths depend on ``raw_len`` only."""

    raw_len: int
    noise: int
    """Tokens dropped from the input (T5's num_noise_tokens)."""
    spans: int
    """Spans they form: one sentinel each, in the input and in the target."""

    @classmethod
    def of(cls, length: int, noise_density: float, mean_noise_span_length: float) -> SpanLayout:
        noise, spans = span_counts(length, noise_density, mean_noise_span_length)
        return cls(length, 0, 0) if length == 1 else cls(length, noise, spans)

    @property
    def input_len(self) -> int:
        """Kept tokens, one sentinel per span, EOS."""
        return self.raw_len - self.noise + self.spans + 1

    @property
    def target_len(self) -> int:
        """Each span's sentinel and tokens, EOS."""
        return self.noise + self.spans + 1


@lru_cache(maxsize=64)
def window_layout(seq_len: int, noise_density: float, mean_noise_span_length: float) -> SpanLayout:
    """The longest raw window whose input and target both fit ``seq_len`` (>= 3). Both lengths never
    shrink as the window grows, so every shorter window (a passage's last) fits too, and this
    layout's lengths and spans are the largest any window of the ``seq_len`` has.

    >>> w = window_layout(512, 0.15, 3.0)  # T5's random_spans_helper(512, 0.15, 3.0): 568 tokens, targets 114
    >>> w.raw_len, w.input_len, w.target_len, w.spans
    (568, 512, 114, 28)
    """
    best = SpanLayout.of(2, noise_density, mean_noise_span_length)
    while True:
        nxt = SpanLayout.of(best.raw_len + 1, noise_density, mean_noise_span_length)
        if max(nxt.input_len, nxt.target_len) > seq_len:
            return best
        best = nxt


# --- where the spans fall ---------------------------------------------------------------------------

def _random_segmentation(num_items: int, num_segments: int, rows: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, num_segments) lengths >= 1 summing to ``num_items``, each composition equally likely:
    T5 shuffles ``num_segments - 1`` ones among the ``num_items - 1`` gaps, each one a segment start."""
    order = torch.rand(rows, num_items - 1, generator=generator).argsort(1)  # a random permutation per row
    first_in_segment = F.pad((order < num_segments - 1).long(), (1, 0))  # (rows, num_items)
    segment_id = first_in_segment.cumsum(1)  # (rows, num_items)
    lengths = torch.zeros(rows, num_segments, dtype=torch.long)
    return lengths.scatter_add_(1, segment_id, torch.ones_like(segment_id))


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            generator: torch.Generator, rows: int | None = None) -> torch.Tensor:
    """T5's noise mask: (length,) bool, True on the noise tokens, or (rows, length) of independent
    draws. Kept and noise spans alternate, starting with a kept one; their counts are
    :func:`span_counts` and their lengths uniformly random compositions of those counts.

    >>> m = random_spans_noise_mask(20, 0.15, 3.0, torch.Generator().manual_seed(0))
    >>> int(m.sum()), bool(m[0]), bool(m[-1])  # 3 noise tokens in 1 span; T5's spans end the window
    (3, False, True)
    """
    n = max(length, 2)  # see span_counts
    noise, spans = span_counts(length, noise_density, mean_noise_span_length)
    B = rows or 1
    noise_lengths = _random_segmentation(noise, spans, B, generator)  # (B, S)
    kept_lengths = _random_segmentation(n - noise, spans, B, generator)  # (B, S)
    interleaved = torch.stack([kept_lengths, noise_lengths], 2).reshape(B, 2 * spans)  # kept, noise, kept, ...
    span_starts = interleaved.cumsum(1)[:, :-1]  # (B, 2S-1) where each span after the first begins
    starts = torch.zeros(B, n, dtype=torch.long).scatter_(1, span_starts, 1)
    is_noise = starts.cumsum(1) % 2 == 1  # odd spans are noise
    mask = is_noise[:, :length]
    return mask if rows is not None else mask[0]


# --- corrupting a window, and undoing it -------------------------------------------------------------

def corrupt(tokens: torch.Tensor, mask: torch.Tensor, sentinel_ids: torch.Tensor,
            eos_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, targets)`` of (B, L) ``tokens`` under a (B, L) noise ``mask``: the kept tokens
    with span i as ``sentinel_ids[i]``, then EOS; every span after its sentinel, then EOS. Every
    row must have the same numbers of noise tokens and spans (true of T5 masks of one length).

    >>> toks, m = torch.tensor([[10, 11, 12, 13, 14, 15]]), torch.tensor([[0, 1, 1, 0, 0, 1]]).bool()
    >>> [t.tolist() for t in corrupt(toks, m, torch.tensor([99, 98]), 3)]
    [[[10, 99, 13, 14, 98, 3]], [[99, 11, 12, 98, 15, 3]]]
    """
    B = tokens.size(0)
    starts = mask & ~F.pad(mask[:, :-1], (1, 0))  # (B, L) first token of each noise span
    span = starts.long().cumsum(1) - 1  # (B, L) index of the span a position is in (or follows)
    if span.numel() and int(span.max()) >= len(sentinel_ids):
        raise ValueError(f"{int(span.max()) + 1} spans but only {len(sentinel_ids)} sentinels")
    sentinels = sentinel_ids[span.clamp(min=0)]  # (B, L)
    inputs = torch.where(starts, sentinels, tokens)[~mask | starts].view(B, -1)  # a span's first token -> its sentinel
    pairs = torch.stack([sentinels, tokens], 2)  # (B, L, 2): sentinel before each span's first token
    targets = pairs[torch.stack([starts, mask], 2)].view(B, -1)
    eos = tokens.new_full((B, 1), eos_id)
    return torch.cat([inputs, eos], 1), torch.cat([targets, eos], 1)


def fill_sentinels(inputs: Any, targets: Any, sentinel_ids: Any, eos_id: int) -> list[int]:
    """The original window of a corrupted pair: each sentinel of ``inputs`` replaced by the tokens
    after the same sentinel in ``targets``. Anything after the last EOS (padding, -100 labels) is
    ignored; the text itself must hold no sentinel.

    >>> fill_sentinels([10, 99, 13, 14, 98, 3, 0], [99, 11, 12, 98, 15, 3, -100], [99, 98], 3)
    [10, 11, 12, 13, 14, 15]
    """
    def _until_eos(seq: Any) -> list[int]:
        seq = seq.tolist() if isinstance(seq, torch.Tensor) else list(seq)
        return seq[: len(seq) - 1 - seq[::-1].index(eos_id)]

    sentinel_set = set(torch.as_tensor(sentinel_ids).tolist())
    spans: dict[int, list[int]] = {}
    current: list[int] = []
    for t in _until_eos(targets):  # <extra_id_0> a b <extra_id_1> c -> {<extra_id_0>: [a, b], <extra_id_1>: [c]}
        if t in sentinel_set:
            current = spans.setdefault(t, [])
        else:
            current.append(t)
    out: list[int] = []
    for t in _until_eos(inputs):
        out += spans.get(t, []) if t in sentinel_set else [t]
    return out
