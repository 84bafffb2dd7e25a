"""Fine-tuning metrics against their references: scikit-learn (macro F1, confusion matrix),
seqeval (entity P/R/F1, default conlleval mode) and the official SQuAD v1.1 script's behaviour."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest

from workbench.finetune.metrics import (
    accuracy,
    bio_entities,
    confusion_matrix,
    entity_f1,
    macro_f1,
    qa_scores,
    squad_em,
    squad_f1,
    squad_normalize,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics")
seqeval_metrics = pytest.importorskip("seqeval.metrics")


# --- classification vs scikit-learn ---------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize("seed", range(40))
def test_macro_f1_and_confusion_match_sklearn(seed: int) -> None:
    rng = random.Random(seed)
    n_classes = rng.randint(1, 5)
    n = rng.randint(1, 30)
    y_true = [rng.randrange(n_classes) for _ in range(n)]
    # skewed predictions: some classes never predicted, some predicted but never true
    y_pred = [rng.randrange(n_classes + 1) if rng.random() < 0.5 else y_true[i] for i in range(n)]
    labels = None if seed % 3 else list(range(n_classes + 2))  # naming labels that never occur
    if labels is not None and seed % 2:
        labels = labels[::-1]
    if seed % 5 == 1:  # a subset: predictions of other labels still count as misses in F1
        labels = sorted(set(y_true))[:2]
    assert macro_f1(y_true, y_pred, labels) == sklearn_metrics.f1_score(
        y_true, y_pred, labels=labels, average="macro", zero_division=0)
    ours = confusion_matrix(y_true, y_pred, labels)
    np.testing.assert_array_equal(ours, sklearn_metrics.confusion_matrix(y_true, y_pred, labels=labels))
    assert accuracy(y_true, y_pred) == sklearn_metrics.accuracy_score(y_true, y_pred)


def test_classification_edge_cases() -> None:
    # string labels, a label subset, everything wrong, everything right
    t, p = ["neg", "pos", "neu", "pos"], ["pos", "pos", "neg", "neu"]
    assert macro_f1(t, p) == sklearn_metrics.f1_score(t, p, average="macro", zero_division=0)
    assert macro_f1(t, p, ["pos", "neg"]) == sklearn_metrics.f1_score(
        t, p, labels=["pos", "neg"], average="macro", zero_division=0)
    np.testing.assert_array_equal(confusion_matrix(t, p, ["pos", "neg"]),
                                  sklearn_metrics.confusion_matrix(t, p, labels=["pos", "neg"]))
    assert macro_f1([0, 1], [1, 0]) == 0.0 and macro_f1([0, 1], [0, 1]) == 1.0
    assert accuracy([], []) == 0.0
    with pytest.raises(ValueError, match="length"):
        accuracy([1], [1, 2])


# --- entities vs seqeval --------------------------------------------------------------------------

TAGS = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "I-MISC"]


def _random_tags(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(TAGS) for _ in range(n)]


def _seqeval(true: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns when a ratio is undefined (it returns 0)
        return {"precision": seqeval_metrics.precision_score(true, pred),
                "recall": seqeval_metrics.recall_score(true, pred),
                "f1": seqeval_metrics.f1_score(true, pred)}


@pytest.mark.parametrize("seed", range(60))
def test_entity_f1_matches_seqeval(seed: int) -> None:
    rng = random.Random(seed)
    true, pred = [], []
    for _ in range(rng.randint(1, 6)):
        n = rng.randint(0, 12)
        t = _random_tags(rng, n)
        true.append(t)  # predictions: a noisy copy, so scores spread over (0, 1)
        pred.append([rng.choice(TAGS) if rng.random() < 0.3 else tag for tag in t])
    assert entity_f1(true, pred) == _seqeval(true, pred)


def test_entities_follow_conlleval() -> None:
    from seqeval.metrics.sequence_labeling import get_entities

    cases = [
        ["I-PER", "I-PER", "O"],             # I- with no B- starts an entity
        ["B-PER", "I-LOC", "I-LOC"],         # a type change ends one and starts another
        ["O", "I-MISC", "B-MISC", "I-MISC"],
        ["B-PER", "B-PER", "I-PER"],
        ["B", "I", "O", "I"],                # no type at all
        ["B-ORG", "E-ORG", "S-LOC", "I-LOC"],  # IOBES tags are read too
        [],
    ]
    for tags in cases:
        assert bio_entities(tags) == set(get_entities(tags)), tags
    assert bio_entities(["I-PER", "I-PER", "O"]) == {("PER", 0, 1)}


def test_entity_f1_edge_cases() -> None:
    assert entity_f1([["O", "O"]], [["O", "O"]]) == _seqeval([["O", "O"]], [["O", "O"]]) == \
        {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert entity_f1([["B-PER"]], [["O"]]) == _seqeval([["B-PER"]], [["O"]])
    # entities do not run across sentences
    t, p = [["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["B-PER", "O"]]
    assert entity_f1(t, p) == _seqeval(t, p)
    with pytest.raises(ValueError):
        entity_f1([["O"]], [["O", "O"]])


# --- SQuAD v1.1 -----------------------------------------------------------------------------------

def test_squad_normalize_like_the_official_script() -> None:
    assert squad_normalize("The Cat") == "cat"
    assert squad_normalize("an apple, a pear and THE plum.") == "apple pear and plum"
    assert squad_normalize("  Theory   of anything ") == "theory of anything"  # 'the' only as a word
    assert squad_normalize("U.S.A.") == "usa"
    assert squad_normalize("rock-n-roll") == "rocknroll"  # punctuation is deleted, not spaced


def test_squad_em_and_f1_on_hand_examples() -> None:
    assert squad_em("The Cat", ["cat"]) == 1.0
    assert squad_em("cats", ["cat"]) == 0.0
    assert squad_em("Paris", ["London", "paris!"]) == 1.0
    assert squad_f1("the black cat", ["black cat sat"]) == pytest.approx(0.8)  # P = 1, R = 2/3
    assert squad_f1("black black cat", ["black cat"]) == pytest.approx(0.8)  # counts clip: P = 2/3, R = 1
    assert squad_f1("dog", ["cat"]) == 0.0
    assert squad_f1("a", ["the"]) == 0.0  # both empty after normalizing: v1.1 gives 0
    assert squad_f1("cat", ["black cat", "cat"]) == 1.0  # best over golds
    scores = qa_scores(["The Cat", "red dog", "x"], [["cat"], ["dog", "blue dog"], ["y"]])
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)  # "red dog" vs "dog": P = 1/2, R = 1
    assert qa_scores([], []) == {"exact_match": 0.0, "f1": 0.0}
