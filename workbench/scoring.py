"""Scoring generated text against references: BLEU (sacrebleu), ROUGE-1/2/L (rouge-score) and
exact match, :func:`decode_scores`, which decodes validation sources with a seq2seq model
and scores what it wrote, and :func:`evaluate_run`, which does that for a stored run.

Scales follow the packages: BLEU is sacrebleu's 0-100 corpus score (what papers quote);
ROUGE is rouge-score's F-measure in [0, 1], averaged over the examples; exact match is the
fraction of hypotheses equal to their reference (after stripping surrounding whitespace).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .config import RunConfig
    from .runstore import RunStore

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: give one reference each")


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) of ``hypotheses`` against one reference each: ``sacrebleu.corpus_bleu``
    with its defaults (13a tokenization, 'exp' smoothing). 0.0 for no examples. BLEU needs
    4-grams: a corpus whose references are all under 4 words scores 0 even when every
    hypothesis is exact (look at exact match and ROUGE there).

    >>> round(bleu(["the cat sat on the mat"], ["the cat sat on the mat"]), 6)
    100.0
    """
    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (``rouge_score.RougeScorer``, no stemming: the
    tasks here rewrite words, a stemmer would blur that), each averaged over the examples.

    >>> {k: round(v, 3) for k, v in rouge(["the cat sat"], ["the cat sat down"]).items()}
    {'rouge1': 0.857, 'rouge2': 0.8, 'rougeL': 0.857}
    """
    _check(hypotheses, references)
    if not hypotheses:
        return {k: 0.0 for k in ROUGE_TYPES}
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hyp, ref in zip(hypotheses, references):
        scores = scorer.score(ref, hyp)  # (target, prediction)
        for k in ROUGE_TYPES:
            totals[k] += scores[k].fmeasure
    return {k: v / len(hypotheses) for k, v in totals.items()}


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of hypotheses equal to their reference, surrounding whitespace ignored.

    >>> exact_match(["a b ", "c"], ["a b", "d"])
    0.5
    """
    _check(hypotheses, references)
    if not hypotheses:
        return 0.0
    return sum(h.strip() == r.strip() for h, r in zip(hypotheses, references)) / len(hypotheses)


@torch.no_grad()
def decode_scores(model: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]], max_examples: int = 256,
                  beam_size: int = 1, length_penalty: float = 1.0, batch_size: int = 32,
                  show: int = 8) -> dict[str, Any]:
    """Decode the sources of the first ``max_examples`` (source, target) text ``pairs`` with a
    :class:`~workbench.models.seq2seq.Seq2SeqTransformer` (greedy at ``beam_size`` 1, else beam
    search; see :func:`workbench.seq2seq_decode.translate`) and score them against the targets.

    Returns ``bleu``, ``rouge1``, ``rouge2``, ``rougeL``, ``exact_match``, ``count`` (pairs
    scored) and ``examples``: the first ``show`` as dicts ``{"source", "reference",
    "hypothesis"}``. The first ``max_examples`` are taken (not a sample) so every evaluation
    scores the same pairs.
    """
    from .seq2seq_decode import translate

    pairs = list(pairs)[:max_examples]
    hypotheses = translate(model, tokenizer, [s for s, _ in pairs], beam_size=beam_size,
                           length_penalty=length_penalty, batch_size=batch_size) if pairs else []
    references = [t for _, t in pairs]
    return {"bleu": bleu(hypotheses, references), **rouge(hypotheses, references),
            "exact_match": exact_match(hypotheses, references), "count": len(pairs),
            "examples": [{"source": s, "reference": t, "hypothesis": h}
                         for (s, t), h in zip(pairs[:show], hypotheses[:show])]}


# --- a run's validation pairs, scored ---------------------------------------------------------------

def _not_a_task_run(config: dict[str, Any], run_id: str) -> str | None:
    """Why the run with this (stored) ``config`` cannot translate, or None when it can."""
    objective = (config.get("objective") or {}).get("name", "causal_lm")
    arch = (config.get("model") or {}).get("arch", "gpt")
    if objective == "seq2seq":
        return None
    if objective == "span":
        return (f"run {run_id} was trained with span corruption (T5): it fills gaps marked <extra_id_0>, "
                f"<extra_id_1>, … rather than translating; use `python -m workbench sample --run {run_id} "
                f"--prompt 'text with <extra_id_0> gaps'`, or a run trained with --objective seq2seq")
    if objective == "causal_lm":
        return (f"run {run_id} is a decoder-only {arch} run (causal LM): it continues text rather than "
                f"translating; use `python -m workbench sample --run {run_id}`, or a run trained with "
                f"--arch seq2seq --objective seq2seq")
    return (f"run {run_id} was trained with the {objective!r} objective, not a seq2seq task; choose a run trained "
            f"with --arch seq2seq --objective seq2seq --task reverse-words|pig-latin|tsv:PATH")


def require_task_run(config: dict[str, Any], run_id: str) -> None:
    """Raise ValueError unless the run's stored ``config`` trained a seq2seq task (objective
    ``seq2seq``): the message says what the run does instead and what to use."""
    reason = _not_a_task_run(config, run_id)
    if reason is not None:
        raise ValueError(reason)


def evaluation_pairs(cfg: RunConfig, split: str = "val") -> list[tuple[str, str]]:
    """The (source, target) pairs a seq2seq-task run's evaluations score, in the same order
    (what :func:`workbench.experiment.build_experiment` gives ``eval_batches``): the task's pairs
    from the validation passages (``data.eval_chars`` of the corpus's validation split), or for
    ``tsv:PATH`` the file's last 10 %. ``split="train"``: the pairs it trained on instead."""
    from .corpora import load_corpus
    from .objectives.seq2seq_tasks import task_pairs

    if cfg.objective.name != "seq2seq":
        raise ValueError(f"the {cfg.objective.name!r} objective has no (source, target) pairs; only a run "
                         f"trained with --objective seq2seq has (a task: reverse-words, pig-latin or tsv:PATH)")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    task, max_words = cfg.objective.task, cfg.objective.max_words  # type: ignore[attr-defined]
    if task.startswith("tsv:"):
        return task_pairs(task, [], split, max_words)
    train, val = load_corpus(cfg.data.corpus).split(cfg.data.val_fraction)
    docs = val.passages(cfg.data.eval_chars) if split == "val" else train.documents
    return task_pairs(task, docs, split, max_words)


def evaluate_run(store: RunStore, run_id: str, which: str = "best", beam_size: int = 1, length_penalty: float = 1.0,
                 max_examples: int = 256) -> dict[str, Any]:
    """:func:`decode_scores` of a seq2seq-task run's ``which`` checkpoint ('best' falls back to
    'last') on its :func:`evaluation_pairs`, plus ``run``, ``checkpoint`` (the one loaded),
    ``task``, ``beam_size``, ``length_penalty`` and ``available`` (validation pairs in all).

    ValueError for a run that was not trained on a seq2seq task (span corruption fills gaps,
    a decoder-only run continues text: both are for ``sample``), a ``beam_size`` under 1 or a
    ``max_examples`` under 1; UnknownRunError / FileNotFoundError for an unknown run or one
    without a checkpoint yet.
    """
    from .pipeline import checkpoint_path, load_run_model

    if not (isinstance(beam_size, int) and beam_size >= 1):
        raise ValueError(f"beam_size must be an integer >= 1 (1 = greedy), got {beam_size!r}")
    if not (isinstance(max_examples, int) and max_examples >= 1):
        raise ValueError(f"max_examples must be an integer >= 1, got {max_examples!r}")
    require_task_run(store.get_run(run_id).config, run_id)
    used = checkpoint_path(store, run_id, which).stem
    model, tokenizer, cfg = load_run_model(store, run_id, used)
    pairs = evaluation_pairs(cfg)
    scores = decode_scores(model, tokenizer, pairs, max_examples, beam_size, length_penalty)
    return {**scores, "run": run_id, "checkpoint": used, "task": cfg.objective.task,  # type: ignore[attr-defined]
            "beam_size": beam_size, "length_penalty": length_penalty, "available": len(pairs)}
