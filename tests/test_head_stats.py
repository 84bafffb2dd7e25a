from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from workbench.attention import AttentionMaps, capture
from workbench.head_stats import (LABELS, LabelChange, head_scores, induction_probe, induction_scores, is_causal,
                                  label_heads, label_history, model_induction_scores)
from workbench.models import GPTConfig, build_model


def uniform_causal(T: int) -> np.ndarray:
    return (np.tri(T, dtype=np.float32) / np.arange(1, T + 1, dtype=np.float32)[:, None])


def one_hot(T: int, targets: list[int]) -> np.ndarray:
    w = np.zeros((T, T), dtype=np.float32)
    w[np.arange(T), targets] = 1.0
    return w


def maps_of(*heads: np.ndarray, **kw) -> AttentionMaps:
    """One layer whose heads are the given (T, T) maps."""
    w = np.stack(heads)[None]
    return AttentionMaps(w, [f"t{i}" for i in range(w.shape[2])], **kw)


def only_label(maps: AttentionMaps) -> tuple[str, float]:
    labels = label_heads(head_scores(maps))
    return str(labels.labels[0, 0]), float(labels.scores[0, 0])


T = 32
PREVIOUS = one_hot(T, [0] + list(range(T - 1)))


def test_previous_token_head() -> None:
    s = head_scores(maps_of(PREVIOUS))
    assert s["previous"][0, 0] == pytest.approx(1.0)
    assert s["previous_chance"][0, 0] < 0.2
    assert s["entropy_norm"][0, 0] == pytest.approx(0.0, abs=1e-6)
    assert only_label(maps_of(PREVIOUS)) == ("previous-token", pytest.approx(1.0))


def test_uniform_causal_head_is_broad_and_at_chance() -> None:
    maps = maps_of(uniform_causal(T))
    assert is_causal(maps)
    s = head_scores(maps)
    assert s["entropy_norm"][0, 0] == pytest.approx(1.0, abs=1e-5)
    expected = np.mean(1 / np.arange(2, T + 1))  # rows 1..T-1 put 1/(i+1) on key i-1
    assert s["previous"][0, 0] == pytest.approx(s["previous_chance"][0, 0], abs=1e-6)
    assert s["previous_chance"][0, 0] == pytest.approx(expected, rel=1e-5)
    assert s["entropy"][0, 0] == pytest.approx(s["entropy_chance"][0, 0], rel=1e-5)
    assert np.isnan(s["next"][0, 0])  # causal: the next key is never allowed
    assert only_label(maps) == ("broad", pytest.approx(1.0, abs=1e-5))


def test_short_causal_map_needs_a_lift_over_chance() -> None:
    """At 3 tokens a uniform head puts 0.42 on the previous token (> the 0.4 threshold): not named."""
    s = head_scores(maps_of(uniform_causal(3)))
    assert s["previous"][0, 0] >= 0.4
    assert only_label(maps_of(uniform_causal(3)))[0] == "broad"


def test_diagonal_head_is_self_and_not_sink() -> None:
    s = head_scores(maps_of(np.eye(T, dtype=np.float32)))
    assert s["self"][0, 0] == pytest.approx(1.0)
    assert s["sink"][0, 0] == pytest.approx(0.0)  # row 0 on itself: the own position does not count
    assert only_label(maps_of(np.eye(T, dtype=np.float32)))[0] == "self"


def test_first_token_head_is_sink() -> None:
    maps = maps_of(one_hot(T, [0] * T))
    s = head_scores(maps)
    assert s["sink"][0, 0] == pytest.approx(1.0)
    assert s["sink_chance"][0, 0] < 0.2
    assert only_label(maps) == ("sink", pytest.approx(1.0))


def test_special_token_counts_as_sink_in_a_bidirectional_map() -> None:
    """A BERT-like head resting on the closing [SEP] (not the first token)."""
    tokens = ["[CLS]"] + [f"w{i}" for i in range(T - 2)] + ["[SEP]"]
    w = one_hot(T, [T - 1] * T)
    w[T - 1] = 1.0 / T  # [SEP]'s own row: uniform, so its self-weight is not what earns the label
    maps = AttentionMaps(w[None, None], tokens, mask=np.ones((T, T), dtype=bool))
    s = head_scores(maps)
    assert s["sink"][0, 0] > 0.9
    assert label_heads(s).labels[0, 0] == "sink"


def test_bidirectional_next_token_head() -> None:
    maps = maps_of(one_hot(T, list(range(1, T)) + [T - 2]))
    assert not is_causal(maps)
    s = head_scores(maps)
    assert s["next"][0, 0] == pytest.approx(1.0)
    assert s["previous"][0, 0] < 0.1
    assert only_label(maps) == ("next-token", pytest.approx(1.0))


def test_padding_and_query_stream_masks() -> None:
    """Uniform over the allowed keys is broad whatever the mask; a stream that never sees itself
    has no self score."""
    mask = np.ones((T, T), dtype=bool)
    mask[:, -4:] = False  # padding keys
    w = mask / mask.sum(1, keepdims=True)
    s = head_scores(AttentionMaps(w[None, None].astype(np.float32), [str(i) for i in range(T)], mask=mask))
    assert s["entropy_norm"][0, 0] == pytest.approx(1.0, abs=1e-5)
    query = ~np.eye(T, dtype=bool)
    w = query / query.sum(1, keepdims=True)
    s = head_scores(AttentionMaps(w[None, None].astype(np.float32), [str(i) for i in range(T)], kind="query",
                                  mask=query))
    assert np.isnan(s["self"][0, 0]) and s["entropy_norm"][0, 0] == pytest.approx(1.0, abs=1e-5)


def test_focused_head_on_no_named_pattern() -> None:
    maps = maps_of(one_hot(T, [0, 0, 1] + [i - 2 for i in range(3, T)]))  # two tokens back
    assert only_label(maps) == ("focused", pytest.approx(1.0))


def test_induction_probe() -> None:
    p = induction_probe(50, 20, seed=3, exclude=[0, 1], start=0)
    assert len(p) == 41 and p[0] == 0 and p[1:21] == p[21:]
    assert len(set(p[1:21])) == 20 and not {0, 1} & set(p[1:])
    assert p == induction_probe(50, 20, seed=3, exclude=[0, 1], start=0)
    with pytest.raises(ValueError):
        induction_probe(10, 11)


@pytest.mark.parametrize("period", [20, 30])
def test_induction_scores(period: int) -> None:
    probe = induction_probe(100, period, seed=1, start=0, exclude=[0])
    n = len(probe)
    w = uniform_causal(n)
    for i in range(1 + period, n):
        j = i - period + 1
        assert probe[j - 1] == probe[i]  # key j follows the earlier occurrence of token i
        w[i] = 0.0
        w[i, j] = 1.0
    previous = one_hot(n, [0] + list(range(n - 1)))
    maps = maps_of(w, uniform_causal(n), previous)
    scores = induction_scores(maps, period, offset=1)
    assert scores.shape == (1, 3)
    assert scores[0, 0] > 0.9
    assert scores[0, 1] < 0.1 and scores[0, 2] < 0.1
    labels = label_heads(head_scores(maps), scores)
    assert list(labels.labels[0]) == ["induction", "broad", "previous-token"]
    with pytest.raises(ValueError):
        induction_scores(maps, period + 1, offset=1)  # longer than the map


def test_model_induction_scores_on_a_tiny_gpt() -> None:
    torch.manual_seed(0)
    model = build_model(GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=50)).eval()
    assert is_causal(capture(model, list(range(16))))  # GPT's maps come without a mask
    scores = model_induction_scores(model, 50, exclude=[0], start=0, n_probes=2)
    assert scores.shape == (2, 4)
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert model_induction_scores(model, 50, period=8).shape == (2, 4)


def test_label_history_reports_a_head_changing() -> None:
    steps = [0, 100, 200]
    heads = [uniform_causal(T), 0.9 * uniform_causal(T) + 0.1 * PREVIOUS, PREVIOUS]
    snapshots = [AttentionMaps(np.stack([h, np.eye(T, dtype=np.float32)])[None], [str(i) for i in range(T)], step=s)
                 for s, h in zip(steps, heads)]
    history = label_history(snapshots)
    assert list(history.steps) == steps
    assert history.labels.shape == history.scores.shape == (3, 1, 2)
    assert history.labels[0, 0, 0] == "broad" and history.labels[2, 0, 0] == "previous-token"
    assert list(history.labels[:, 0, 1]) == ["self"] * 3
    assert history.labels[1, 0, 0] == "broad"  # 0.1 on the previous token: not yet
    assert history.changes() == [LabelChange(0, 0, 200, "broad", "previous-token")]


def test_cross_attention_gives_entropy_only() -> None:
    rng = np.random.default_rng(0)
    w = rng.random((2, 3, 5, 7)).astype(np.float32)
    w /= w.sum(-1, keepdims=True)
    w[0, 0] = 0.0
    w[0, 0, :, 2] = 1.0  # every decoder token on source token 2
    maps = AttentionMaps(w, list("abcde"), key_tokens=list("ABCDEFG"), kind="cross")
    s = head_scores(maps)
    assert np.isfinite(s["entropy"]).all() and np.isfinite(s["peak"]).all()
    assert s["peak"][0, 0] == pytest.approx(1.0) and s["entropy_norm"][0, 0] == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(s["previous"]).all() and np.isnan(s["sink"]).all()
    labels = label_heads(s)
    assert labels.labels[0, 0] == "focused"
    assert set(labels.labels.ravel()) <= {"broad", "focused", "mixed"}
    rows = labels.table()
    assert len(rows) == 6 and rows[0] == {"layer": 0, "head": 0, "label": "focused", "score": pytest.approx(1.0)}
    with pytest.raises(ValueError):
        induction_scores(maps, 2)


def test_labels_vocabulary() -> None:
    assert len(set(LABELS)) == len(LABELS)
    assert {"previous-token", "next-token", "self", "sink", "induction", "broad", "focused", "mixed"} == set(LABELS)


def test_scores_are_fast_on_a_gpt2_sized_map() -> None:
    rng = np.random.default_rng(0)
    w = rng.random((12, 12, 512, 512), dtype=np.float32)
    w *= np.tri(512, dtype=np.float32)
    w /= w.sum(-1, keepdims=True)
    maps = AttentionMaps(w, [str(i) for i in range(512)])
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        s = head_scores(maps)
        best = min(best, time.perf_counter() - start)
    assert s["entropy"].shape == (12, 12) and np.isnan(s["next"]).all()  # inferred causal
    assert best < 0.5
