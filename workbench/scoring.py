"""Scoring generated text against references: BLEU (sacrebleu), ROUGE-1/2/L (rouge-score) and
exact match, and :func:`decode_scores`, which decodes validation sources with a seq2seq model
and scores what it wrote.

Scales follow the packages: BLEU is sacrebleu's 0-100 corpus score (what papers quote);
ROUGE is rouge-score's F-measure in [0, 1], averaged over the examples; exact match is the
fraction of hypotheses equal to their reference (after stripping surrounding whitespace).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

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
def decode_scores(model: Any, objective: Any, tokenizer: Any, pairs: Sequence[tuple[str, str]],
                  max_examples: int = 256, beam_size: int = 1, batch_size: int = 32,
                  show: int = 8) -> dict[str, Any]:
    """Decode the sources of the first ``max_examples`` (source, target) text ``pairs`` with a
    :class:`~workbench.models.seq2seq.Seq2SeqTransformer` (greedy at ``beam_size`` 1, else beam
    search) and score them against the targets.

    The encoder reads ``source + [SEP]`` (truncated to ``block_size``), the decoder starts from
    ``[PAD]``, as the objective trains. Returns ``bleu``, ``rouge1``, ``rouge2``, ``rougeL``,
    ``exact_match``, ``count`` (pairs scored) and ``examples``: the first ``show`` as dicts
    ``{"source", "reference", "hypothesis"}``. ``objective`` is a
    :class:`~workbench.objectives.seq2seq_tasks.Seq2SeqTask` (only its special ids are read);
    the first ``max_examples`` are taken (not a sample) so every evaluation scores the same pairs.
    """
    from .seq2seq_decode import beam_search, greedy_decode

    pairs = list(pairs)[:max_examples]
    pad, eos = objective.special_ids(tokenizer)
    limit = model.config.block_size
    device = next(model.parameters()).device
    hypotheses: list[str] = []
    for i in range(0, len(pairs), batch_size):
        rows = [ids[: limit - 1] + [eos] for ids in tokenizer.encode_batch([s for s, _ in pairs[i : i + batch_size]])]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for j, r in enumerate(rows):
            input_ids[j, : len(r)] = torch.tensor(r)
        mask = (torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()
        input_ids, mask = input_ids.to(device), mask.to(device)
        if beam_size == 1:
            outs = list(greedy_decode(model, input_ids, mask, pad, eos, limit))
        else:
            outs = beam_search(model, input_ids, mask, pad, eos, limit, beam_size=beam_size)
        for out in outs:
            ids = out.tolist()
            hypotheses.append(tokenizer.decode(ids[: ids.index(eos)] if eos in ids else ids).strip())
    references = [t for _, t in pairs]
    return {"bleu": bleu(hypotheses, references), **rouge(hypotheses, references),
            "exact_match": exact_match(hypotheses, references), "count": len(pairs),
            "examples": [{"source": s, "reference": t, "hypothesis": h}
                         for (s, t), h in zip(pairs[:show], hypotheses[:show])]}
