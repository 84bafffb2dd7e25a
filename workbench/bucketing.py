"""Length bucketing: batch examples of similar length so dynamic padding wastes little.

A batch of variable-length examples is padded to its longest one; every position past an
example's end is computed and thrown away. Batching examples in length order (a *bucket*)
keeps the longest close to the rest, so the fraction of padded positions falls. Random
batching is the baseline it is compared with (:func:`random_batches`).

>>> lengths = [1, 9, 2, 8, 1, 9]
>>> round(mean_padding_fraction(random_batches(6, 2, torch.Generator().manual_seed(0)), lengths), 3) > 0.2
True
>>> mean_padding_fraction(bucket_batches(lengths, 2, shuffle=False), lengths)
0.125
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def padding_fraction(lengths_in_batch: Sequence[int]) -> float:
    """Padded positions over all positions when a batch is padded to its longest example.

    >>> padding_fraction([4, 4]), padding_fraction([1, 3]), padding_fraction([])
    (0.0, 0.3333333333333333, 0.0)
    """
    if not lengths_in_batch or max(lengths_in_batch) == 0:
        return 0.0
    total = len(lengths_in_batch) * max(lengths_in_batch)
    return (total - sum(lengths_in_batch)) / total


def bucket_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None,
                   shuffle: bool = True) -> list[list[int]]:
    """Indices sorted by length (ties keep their order: stable), cut into consecutive batches of
    ``batch_size`` (the last may be shorter). With ``shuffle`` the batches come in a random order
    (from ``generator``) so training does not run from short to long; their contents stay fixed.

    >>> bucket_batches([5, 1, 3, 1], 2, shuffle=False)
    [[1, 3], [2, 0]]
    >>> sorted(bucket_batches([5, 1, 3, 1], 2, torch.Generator().manual_seed(0)))
    [[1, 3], [2, 0]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def random_batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """The baseline: a random permutation of ``range(n)`` cut into batches of ``batch_size``.

    >>> sorted(i for b in random_batches(5, 2, torch.Generator().manual_seed(0)) for i in b)
    [0, 1, 2, 3, 4]
    """
    order = torch.randperm(n, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def mean_padding_fraction(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Mean over ``batches`` (lists of indices into ``lengths``) of each one's :func:`padding_fraction`.

    >>> mean_padding_fraction([[0, 1], [2]], [1, 3, 5])
    0.16666666666666666
    """
    if not batches:
        return 0.0
    return sum(padding_fraction([lengths[i] for i in b]) for b in batches) / len(batches)
