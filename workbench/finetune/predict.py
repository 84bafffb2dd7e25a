"""Using a finished fine-tuning run: load its head back, and predict on any text.

- :func:`classify`: text -> probability of each class;
- :func:`tag`: text -> a BIO tag per word, and the tagged spans (character offsets);
- :func:`answer`: question + context -> the answer span (characters) and its score;
- :func:`predict_examples`: a split's examples -> what the model said, for error analysis.

For example::

    ft = load_finetuned(store, run_id)
    classify(ft, "My lord, the king is dead.")  # {'comedy': 0.12, 'history': 0.55, 'tragedy': 0.33}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..config import RunConfig
from ..models.base import eval_mode
from ..runstore import RunStore
from .heads import TaskHead, best_span, is_causal_model, tokens_to_char_span
from .metrics import bio_entities
from .objectives import Row, TaskObjective, collate, encode_texts, objective_for
from .run import finetune_info, make_head
from .tasks import _TOKEN, QAExample, TaskData, TextExample, TokenExample



@dataclass
class FineTuned:
    """A fine-tuned head with what reading text needs."""

    model: TaskHead
    tokenizer: Any
    objective: TaskObjective
    config: RunConfig

    @property
    def kind(self) -> str:
        return self.objective.kind

    @property
    def labels(self) -> list[str]:
        return list(self.objective.task.labels)


def load_finetuned(store: RunStore, run_id: str, which: str = "best", device: str = "cpu") -> FineTuned:
    """The head of fine-tuning run ``run_id`` from ``ckpt/<which>.safetensors``: the trunk is
    rebuilt from the run's own config (our family and the tokenizer saved in the run's folder, or
    the HF model's architecture), so the run it started from may be gone."""
    from ..checkpoint import load_checkpoint
    from ..models import build_model
    from ..pipeline import checkpoint_path
    from ..tokenizers import Tokenizer

    info = store.get_run(run_id)
    cfg = RunConfig.from_dict(info.config)
    fc = cfg.finetune
    if fc is None:
        raise ValueError(f"run {run_id} is not a fine-tuning run; sample it or read its attention instead")
    meta = finetune_info(store, run_id)
    if not meta:
        raise ValueError(f"run {run_id} has not built its task yet (no finetune.json); wait for its first evaluation")
    path = checkpoint_path(store, run_id, which)  # FileNotFoundError: no checkpoint (keep_weights off, or too early)
    if fc.init_kind == "hf":
        from ..hf_attention import load_hf

        hf = load_hf(fc.init[3:])
        trunk, tokenizer = hf.model, hf.tokenizer
    else:
        tokenizer = Tokenizer.load(store.run_dir(run_id) / "tokenizer.json")
        trunk = build_model(replace(cfg.model, vocab_size=tokenizer.vocab_size))
    task = TaskData(meta["task"], meta["kind"], meta["labels"])
    head = make_head(meta["kind"], trunk, len(meta["labels"]), fc)
    head.load_state_dict(load_checkpoint(path).model_state)
    objective = objective_for(task, tokenizer, max_len=meta.get("max_len") or fc.max_len or 128)
    return FineTuned(head.to(device).eval(), tokenizer, objective, cfg)


def _run(ft: FineTuned, rows: list) -> Any:
    batch = collate(rows, ft.objective.specials.pad).to(next(ft.model.parameters()).device)
    with eval_mode(ft.model), torch.no_grad():
        if ft.kind == "qa":
            segments = None if is_causal_model(ft.model.trunk) else batch.token_type_ids  # GPTs have no segments
            return ft.model(batch.input_ids, batch.attention_mask, token_type_ids=segments), batch
        return ft.model(batch.input_ids, batch.attention_mask)[0], batch


def classify_many(ft: FineTuned, texts: list[str]) -> list[dict[str, float]]:
    """The probability of each class for each text (cut to ``max_len`` tokens as in training)."""
    if ft.kind != "classification":
        raise ValueError(f"this run tags or answers ({ft.kind}); classify needs a classification run")
    if not texts:
        return []
    rows = ft.objective.encode([TextExample(t, ft.labels[0]) for t in texts], "given")
    logits, _ = _run(ft, rows)
    probs = torch.softmax(logits.float(), dim=-1).tolist()  # (B, K)
    return [dict(zip(ft.labels, p)) for p in probs]


def classify(ft: FineTuned, text: str) -> dict[str, float]:
    """The probability of each class for ``text``."""
    return classify_many(ft, [text])[0]


def tag(ft: FineTuned, text: str) -> dict[str, Any]:
    """``{"words": [(word, tag)], "spans": [(label, start, end)]}``: a tag per word (words and
    punctuation split as the built-in names task splits its lines; a word's tag is its first
    piece's, as in training) and the entities as character spans of ``text``.
    Words past ``max_len`` tokens get no tag (``None``)."""
    if ft.kind != "tagging":
        raise ValueError(f"this run classifies or answers ({ft.kind}); tag needs a tagging run")
    matches = list(_TOKEN.finditer(text))
    if not matches:
        return {"words": [], "spans": []}
    words = [m.group() for m in matches]
    rows = ft.objective.encode([TokenExample(words, ["O"] * len(words))], "given")
    logits, batch = _run(ft, rows)
    pred = logits[0].argmax(-1).tolist()  # (T,)
    firsts = [i for i, y in enumerate(batch.labels[0].tolist()) if y != -100]  # a word's first piece, in order
    tags: list[str | None] = [ft.labels[pred[i]] for i in firsts] + [None] * (len(words) - len(firsts))
    known = [t or "O" for t in tags]
    return {"words": list(zip(words, tags)), "spans": entity_spans([(m.start(), m.end()) for m in matches], known)}


def entity_spans(word_offsets: list[tuple[int, int]], tags: list[str]) -> list[tuple[str, int, int]]:
    """BIO tags of words -> ``(type, start, end)`` character spans, from the first word's start to
    the last word's end (``bio_entities`` gives first and last word, both inclusive).

    >>> entity_spans([(0, 4), (5, 10), (11, 14)], ["B-NAME", "I-NAME", "O"])
    [('NAME', 0, 10)]
    """
    return [(label, word_offsets[a][0], word_offsets[b][1])
            for label, a, b in sorted(bio_entities(tags), key=lambda e: e[1])]


def answer(ft: FineTuned, question: str, context: str) -> dict[str, Any]:
    """``{"text", "start", "end", "score"}``: the best answer span of ``context`` (characters
    ``[start, end)``), scored start + end logit; the context is cut to what fits ``max_len``."""
    if ft.kind != "qa":
        raise ValueError(f"this run classifies or tags ({ft.kind}); answer needs a QA run")
    if not question.strip() or not context.strip():
        raise ValueError("give both a question and a context to find the answer in")
    (q,), (c,) = encode_texts(ft.tokenizer, [question]), encode_texts(ft.tokenizer, [context])
    ids, offsets, segments, in_context = ft.objective.layout(q, c)
    if not any(in_context):
        raise ValueError("the question leaves no room for the context; shorten the question")
    rows = [Row(ids, [-100] * len(ids), segments, 0, 0, 0, in_context)]
    (start, end, _), batch = _run(ft, rows)
    s, e = best_span(start[0].float(), end[0].float(), batch.context_mask[0], ft.objective.max_answer_len)  # type: ignore[attr-defined]
    a, b = tokens_to_char_span(offsets, s, e, context)
    return {"text": context[a:b], "start": a, "end": b, "score": float(start[0, s] + end[0, e])}


def predict_examples(ft: FineTuned, examples: list, batch_size: int = 64) -> list[dict[str, Any]]:
    """What the model says on labelled examples: classification ``{"text", "true", "pred",
    "prob"}`` (prob of the prediction), tagging ``{"tokens", "true", "pred"}``, QA ``{"question",
    "context", "true", "pred"}``. For error analysis: keep those where true != pred."""
    out: list[dict[str, Any]] = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        if ft.kind == "classification":
            for e, p in zip(chunk, classify_many(ft, [e.text for e in chunk])):
                pred = max(p, key=p.get)  # type: ignore[arg-type]
                out.append({"text": e.text, "true": e.label, "pred": pred, "prob": p[pred]})
        elif ft.kind == "tagging":
            for e in chunk:
                words = tag(ft, " ".join(e.tokens))["words"]
                out.append({"tokens": e.tokens, "true": e.tags, "pred": [t or "O" for _, t in words]})
        else:
            for e in chunk:
                assert isinstance(e, QAExample)
                out.append({"question": e.question, "context": e.context, "true": e.answer_text,
                            "pred": answer(ft, e.question, e.context)["text"]})
    return out
