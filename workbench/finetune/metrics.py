"""Fine-tuning metrics in plain numpy/python: classification, BIO entities, SQuAD answers.

Each follows a reference implementation's conventions exactly (the tests compare against them),
so a number here means what it means in papers and leaderboards:

- :func:`macro_f1` / :func:`confusion_matrix`: scikit-learn (``f1_score(average="macro",
  zero_division=0)``, ``confusion_matrix``);
- :func:`bio_entities` / :func:`entity_f1`: seqeval's default (conlleval) mode, micro-averaged;
- :func:`squad_em` / :func:`squad_f1`: the official SQuAD v1.1 evaluation script.

Scores are fractions in [0, 1], never percents (SQuAD's script prints percents: x100 for those).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

# --- classification -----------------------------------------------------------------------------


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Fraction of predictions equal to the truth (0.0 for no examples).

    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    _same_length(y_true, y_pred)
    if len(y_true) == 0:
        return 0.0
    return float(np.mean([t == p for t, p in zip(y_true, y_pred)]))


def confusion_matrix(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                     labels: Sequence[Hashable] | None = None) -> np.ndarray:
    """Counts (n_labels, n_labels): row = true label, column = predicted label, as scikit-learn.

    ``labels`` fixes the order (and which labels count: pairs with a label outside it are left
    out); by default the sorted labels seen in either sequence.

    >>> confusion_matrix(["a", "b", "b"], ["a", "a", "b"]).tolist()
    [[1, 0], [1, 1]]
    """
    _same_length(y_true, y_pred)
    labels = _labels(y_true, y_pred, labels)
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    return cm


def macro_f1(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
             labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted mean over labels of per-label F1 = 2 tp / (2 tp + fp + fn).

    As scikit-learn's ``f1_score(average="macro", zero_division=0)``: each label is scored one
    against the rest over *all* examples, so ``labels`` picks which labels are averaged but a
    prediction of an unlisted label still counts as a miss (unlike :func:`confusion_matrix`,
    which drops such pairs). A label that is neither true nor predicted anywhere (possible only
    when ``labels`` names it) scores 0 and still counts in the mean. Rare classes weigh as much
    as frequent ones, which is why it is reported for imbalanced tasks beside accuracy.

    >>> macro_f1([0, 0, 1], [0, 0, 0])  # F1(0) = 0.8, F1(1) = 0
    0.4
    """
    _same_length(y_true, y_pred)
    labels = _labels(y_true, y_pred, labels)
    if not labels:
        return 0.0
    n_true, n_pred, tp = Counter(y_true), Counter(y_pred), Counter(t for t, p in zip(y_true, y_pred) if t == p)
    f1 = [2 * tp[lab] / (n_true[lab] + n_pred[lab]) if n_true[lab] + n_pred[lab] else 0.0 for lab in labels]
    return float(np.mean(np.array(f1, dtype=np.float64)))


def _labels(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
            labels: Sequence[Hashable] | None) -> list[Hashable]:
    return list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"y_true and y_pred differ in length: {len(a)} != {len(b)}")


# --- BIO entities (seqeval / conlleval) ---------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'); 'O' -> ('O', '_'); a bare 'B' -> ('B', '_') (seqeval's parse)."""
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if prev_tag in ("E", "S"):
        return True
    if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev_tag not in ("O", ".") and prev_type != type_


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    if tag in ("B", "S"):
        return True
    if prev_tag in ("E", "S", "O") and tag in ("E", "I"):  # an I- after O (or after an end) starts one
        return True
    return tag not in ("O", ".") and prev_type != type_


def bio_entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Entities of one tag sequence as (type, first, last) token positions, both inclusive.

    conlleval's lenient reading (seqeval's default mode), not a strict IOB2 check: an ``I-X``
    that follows ``O`` or another type starts an entity, and a type change ends one, so
    ``I-PER I-PER`` is one PER entity and ``B-PER I-LOC`` two. IOBES ``E-``/``S-`` tags are read
    too.

    >>> sorted(bio_entities(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]))
    [('LOC', 3, 3), ('LOC', 4, 4), ('ORG', 5, 5), ('PER', 0, 1)]
    """
    entities = set()
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):  # a final O closes the last entity
        tag, type_ = _split_tag(chunk)
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            entities.add((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return entities


def entity_f1(true_seqs: Sequence[Sequence[str]], pred_seqs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro-averaged entity precision, recall and F1 over sentences, as seqeval's
    ``precision_score`` / ``recall_score`` / ``f1_score`` (default mode).

    An entity counts only when its type and both boundaries match exactly; there is no credit
    for tokens (a tagger that gets 9 of 10 tokens of a long name right still misses it). A
    ratio whose denominator is 0 is 0, like F1 when P + R = 0.

    >>> entity_f1([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "O"]])
    {'precision': 1.0, 'recall': 0.5, 'f1': 0.6666666666666666}
    """
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(f"{len(true_seqs)} true sequences but {len(pred_seqs)} predicted")
    tp = n_true = n_pred = 0
    for true, pred in zip(true_seqs, pred_seqs):
        if len(true) != len(pred):
            raise ValueError(f"a true sequence has {len(true)} tags but its prediction {len(pred)}")
        t, p = bio_entities(true), bio_entities(pred)
        tp, n_true, n_pred = tp + len(t & p), n_true + len(t), n_pred + len(p)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


# --- SQuAD (official v1.1 evaluation script) ----------------------------------------------------

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text: str) -> str:
    """Lowercase, drop ASCII punctuation, drop the articles a/an/the, collapse whitespace
    (``normalize_answer`` of the SQuAD v1.1 script, in its order).

    >>> squad_normalize("  The Cat's  hat, (a) HAT!")
    'cats hat hat'
    """
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def squad_em(pred: str, golds: Sequence[str]) -> float:
    """1.0 if the normalized prediction equals any normalized gold answer, else 0.0.

    >>> squad_em("The Cat", ["cat", "a dog"])
    1.0
    """
    norm = squad_normalize(pred)
    return float(any(norm == squad_normalize(g) for g in golds))


def _token_f1(pred: str, gold: str) -> float:
    p, g = squad_normalize(pred).split(), squad_normalize(gold).split()
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:  # v1.1: two empty answers score 0, not 1 (SQuAD 2.0's script says 1)
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def squad_f1(pred: str, golds: Sequence[str]) -> float:
    """Bag-of-tokens F1 between the normalized prediction and each gold answer; the best one.

    >>> squad_f1("the black cat", ["black cat sat"])  # 2 of 2 predicted, 2 of 3 gold tokens
    0.8
    """
    return max((_token_f1(pred, g) for g in golds), default=0.0)


def qa_scores(preds: Sequence[str], golds_list: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and F1 over questions, as fractions in [0, 1] (the SQuAD script
    reports x100); each question may have several gold answers.

    >>> qa_scores(["cat", "red dog"], [["The cat"], ["dog", "blue dog"]])
    {'exact_match': 0.5, 'f1': 0.8333333333333333}
    """
    if len(preds) != len(golds_list):
        raise ValueError(f"{len(preds)} predictions but {len(golds_list)} gold answer lists")
    if not preds:
        return {"exact_match": 0.0, "f1": 0.0}
    em = sum(squad_em(p, g) for p, g in zip(preds, golds_list))
    f1 = sum(squad_f1(p, g) for p, g in zip(preds, golds_list))
    return {"exact_match": em / len(preds), "f1": f1 / len(preds)}
