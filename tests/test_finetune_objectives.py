"""The fine-tuning objectives drive the generic Trainer: a head on a tiny random BERT learns a
tiny subset of each task, and the metrics from summed counts equal metrics.py's functions."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn

from workbench.config import TrainConfig
from workbench.finetune import metrics as M
from workbench.finetune.heads import IGNORE_INDEX, SequenceClassifier, SpanQA, TokenClassifier, best_span, tokens_to_char_span
from workbench.finetune.objectives import (
    ClassificationObjective, QAObjective, TaggingObjective, encode_texts, objective_for,
)
from workbench.finetune.tasks import QAExample, TaskData, load_task, sample_budget
from workbench.models import BERT, BERTConfig
from workbench.tokenizers import train_tokenizer
from workbench.trainer import Callback, Trainer, evaluate

SPECIALS = ["[PAD]", "[CLS]", "[SEP]"]


@pytest.fixture(scope="module")
def genre() -> TaskData:
    t = load_task("genre")
    return TaskData(t.name, t.kind, t.labels, sample_budget(t.train, 12, seed=0), t.val[:24])


@pytest.fixture(scope="module")
def names() -> TaskData:
    t = load_task("names")
    return TaskData(t.name, t.kind, t.labels, [e for e in t.train if "B-NAME" in e.tags][:12], t.val[:24])


def qa_task(n_train: int = 16, n_val: int = 12, seed: int = 0) -> TaskData:
    """Tiny 'who says' questions over two-speech contexts (the shape of the built-in qa task)."""
    rng = random.Random(seed)
    speakers, words = ["ROMEO", "JULIET", "PUCK", "LEAR", "IAGO"], "ay me but soft what light go hence".split()

    def example() -> QAExample:
        a, b = rng.sample(speakers, 2)
        la, lb = (" ".join(rng.choices(words, k=3)) for _ in range(2))
        context = f"{a}:\n{la}\n\n{b}:\n{lb}"
        who, line = rng.choice([(a, la), (b, lb)])
        return QAExample(f'Who says "{line}"?', context, context.index(f"{who}:"), who)

    return TaskData("who", "qa", [], [example() for _ in range(n_train)], [example() for _ in range(n_val)])


def tokenizer_for(task: TaskData):
    text = "\n".join(getattr(e, "text", None) or " ".join(getattr(e, "tokens", []))
                     or f"{e.question} {e.context}" for e in task.train + task.val)
    return train_tokenizer("char", text, special_tokens=SPECIALS)


def tiny_bert(vocab: int, block: int = 64) -> BERT:
    torch.manual_seed(0)
    return BERT(BERTConfig(n_layer=2, n_head=2, n_embd=32, block_size=block, vocab_size=vocab))


def fit(head: nn.Module, objective, steps: int = 40) -> tuple[list[float], Trainer]:
    """Fit with the generic Trainer; returns the logged train losses (every 5 steps)."""
    cfg = TrainConfig(max_steps=steps, batch_size=8, lr=3e-3, min_lr=3e-3, warmup_steps=0, weight_decay=0.0,
                      eval_interval=10_000, log_interval=5, device="cpu", dtype="float32", compile="off", seed=0)
    losses: list[float] = []

    class Record(Callback):
        def on_log(self, trainer, metrics):
            losses.append(metrics["train/loss"])

    trainer = Trainer(head, objective, objective.prepare(), objective.eval_set(), cfg, seq_len=0,
                      callbacks=[Record()], progress=False)
    trainer.fit()
    return losses, trainer


class Scripted(nn.Module):
    """A stand-in head: logits drawn from the ids (deterministic), so predictions are varied."""

    def __init__(self, n_out: int, qa: bool = False) -> None:
        super().__init__()
        self.n_out, self.qa = n_out, qa
        self.eval()

    def forward(self, input_ids, attention_mask=None, *labels, token_type_ids=None):
        g = torch.Generator().manual_seed(int(input_ids.sum()))
        if self.qa:
            s, e = torch.randn(2, *input_ids.shape, generator=g)
            return s, e, torch.zeros(())
        shape = (*input_ids.shape, self.n_out) if labels[0].dim() == 2 else (len(input_ids), self.n_out)
        return torch.randn(shape, generator=g), torch.zeros(())


# --- the Trainer fits each head -------------------------------------------------------------------

def test_classification_trains_with_the_trainer(genre) -> None:
    tok = tokenizer_for(genre)
    obj = ClassificationObjective(genre, tok, max_len=48, max_eval=16, batch_size=8)
    losses, trainer = fit(SequenceClassifier(tiny_bert(tok.vocab_size), len(genre.labels), dropout=0.0), obj)
    assert losses[-1] < 0.5 * losses[0], losses
    val = trainer.evaluate()
    assert set(val) == {"val/loss", "val/acc", "val/macro_f1"}
    assert len(trainer.eval_set.batches) == 2 and 0 <= val["val/acc"] <= 1


def test_tagging_trains_with_the_trainer(names) -> None:
    tok = tokenizer_for(names)
    obj = TaggingObjective(names, tok, max_len=64, max_eval=16)
    losses, trainer = fit(TokenClassifier(tiny_bert(tok.vocab_size), len(names.labels), dropout=0.0), obj)
    assert losses[-1] < 0.5 * losses[0], losses
    assert set(trainer.evaluate()) == {"val/loss", "val/token_acc", "val/entity_f1"}


def test_qa_trains_with_the_trainer() -> None:
    task = qa_task()
    tok = tokenizer_for(task)
    obj = QAObjective(task, tok, max_len=64)
    losses, trainer = fit(SpanQA(tiny_bert(tok.vocab_size), dropout=0.0), obj, steps=50)
    assert losses[-1] < 0.6 * losses[0], losses
    assert set(trainer.evaluate()) == {"val/loss", "val/exact_match", "val/f1"}


# --- summed counts = metrics.py -------------------------------------------------------------------

def test_classification_metrics_equal_the_reference(genre) -> None:
    obj = ClassificationObjective(genre, tokenizer_for(genre), max_len=32, batch_size=5)  # 5 batches, one short
    eval_set, model = obj.eval_set(), Scripted(len(genre.labels))
    got = evaluate(model, obj, eval_set)
    y, p = [], []
    for b in eval_set.batches:
        y += b.labels.tolist()
        p += model(b.input_ids, b.attention_mask, b.labels)[0].argmax(-1).tolist()
    assert y == [genre.labels.index(e.label) for e in genre.val]
    assert got["val/acc"] == pytest.approx(M.accuracy(y, p))
    assert got["val/macro_f1"] == pytest.approx(M.macro_f1(y, p))
    assert 0 < got["val/macro_f1"] < 1


def test_tagging_metrics_equal_the_reference(names) -> None:
    obj = TaggingObjective(names, tokenizer_for(names), max_len=256, batch_size=7)
    eval_set, model = obj.eval_set(), Scripted(len(names.labels))
    assert obj.words_cut["val"] == 0  # every word fits: the true tags are the task's
    got = evaluate(model, obj, eval_set)
    true, pred = [], []
    for b in eval_set.batches:
        logits = model(b.input_ids, b.attention_mask, b.labels)[0]
        for y, q in zip(b.labels, logits.argmax(-1)):
            keep = y != IGNORE_INDEX
            true.append([names.labels[i] for i in y[keep].tolist()])
            pred.append([names.labels[i] for i in q[keep].tolist()])
    assert true == [e.tags for e in names.val]
    flat_t, flat_p = sum(true, []), sum(pred, [])
    assert got["val/token_acc"] == pytest.approx(M.accuracy(flat_t, flat_p))
    assert got["val/entity_f1"] == pytest.approx(M.entity_f1(true, pred)["f1"])


def test_qa_metrics_equal_the_reference() -> None:
    task = qa_task(n_val=20)
    obj = QAObjective(task, tokenizer_for(task), max_len=96, batch_size=6)
    eval_set, model = obj.eval_set(), Scripted(2, qa=True)
    got = evaluate(model, obj, eval_set)
    preds, golds = [], []
    for b in eval_set.batches:
        s, e, _ = model(b.input_ids, b.attention_mask)
        for (i, j), r in zip(best_span(s, e, b.context_mask, obj.max_answer_len), b.refs.tolist()):
            ref = obj.refs[r]
            a, z = tokens_to_char_span(ref.offsets, i, j, ref.context)
            preds.append(ref.context[a:z])
            golds.append([ref.answer])
    ref_scores = M.qa_scores(preds, golds)
    assert got["val/exact_match"] == pytest.approx(ref_scores["exact_match"])
    assert got["val/f1"] == pytest.approx(ref_scores["f1"])
    # the gold spans map back to the answers exactly
    b = eval_set.batches[0]
    for k, r in enumerate(b.refs.tolist()):
        ref = obj.refs[r]
        a, z = tokens_to_char_span(ref.offsets, int(b.start_positions[k]), int(b.end_positions[k]), ref.context)
        assert ref.context[a:z] == ref.answer


# --- layout and bad input -------------------------------------------------------------------------

def test_qa_layout_and_cut_off_answers_are_dropped() -> None:
    task = qa_task(n_train=0, n_val=1)
    ex = task.val[0]
    context = ex.context + "\n\n" + "x" * 80 + "\n\nHAMLET:\nay"
    far = QAExample(ex.question, context, context.index("HAMLET"), "HAMLET")
    task.val.append(far)
    tok = tokenizer_for(task)
    obj = QAObjective(task, tok, max_len=96)
    (b,) = obj.eval_set().batches
    assert obj.dropped == {"val": 1} and len(b.input_ids) == 1
    ids, types, ctx = b.input_ids[0].tolist(), b.token_type_ids[0].tolist(), b.context_mask[0].tolist()
    n_q = len(tok.encode(ex.question))
    assert ids[0] == tok.special_id("[CLS]") and ids[n_q + 1] == tok.special_id("[SEP]") and ids[-1] == ids[n_q + 1]
    assert types == [0] * (n_q + 2) + [1] * (len(ids) - n_q - 2)
    assert ctx == [0] * (n_q + 2) + [1] * (len(ids) - n_q - 3) + [0]


def test_a_task_of_another_kind_is_refused(genre, names) -> None:
    tok = tokenizer_for(genre)
    with pytest.raises(ValueError, match="TaggingObjective fits tagging tasks; task 'genre' is classification"):
        TaggingObjective(genre, tok)
    with pytest.raises(ValueError, match="use TaggingObjective"):
        QAObjective(names, tok)
    assert isinstance(objective_for(names, tok), TaggingObjective)


def test_batches_pad_right_and_are_reproducible(genre) -> None:
    obj = ClassificationObjective(genre, tokenizer_for(genre), max_len=40)
    data = obj.prepare()
    a, b = (obj.make_batch(data, 6, 0, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a.input_ids, b.input_ids) and a.labels.shape == (6,)
    assert a.input_ids.shape[1] <= 40 and (a.input_ids[:, 0] == obj.specials.cls).all()
    lengths = a.attention_mask.sum(1)
    assert all(a.attention_mask[i, :n].all() and not a.attention_mask[i, n:].any() for i, n in enumerate(lengths))


def test_hf_tokenizers_go_through_the_same_adapter(genre) -> None:
    transformers = pytest.importorskip("transformers")
    ours = tokenizer_for(genre)
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=ours.to_hf(), pad_token="[PAD]",
                                              cls_token="[CLS]", sep_token="[SEP]")
    texts = [e.text for e in genre.val[:3]]
    assert encode_texts(hf, texts) == encode_texts(ours, texts)
    a = ClassificationObjective(genre, hf, max_len=32).eval_set().batches[0]
    b = ClassificationObjective(genre, ours, max_len=32).eval_set().batches[0]
    assert torch.equal(a.input_ids, b.input_ids)
