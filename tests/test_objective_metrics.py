"""Loss, perplexity and bits per character checked against computations done by hand."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from workbench.corpora import Corpus, Document
from workbench.experiment import tokenize
from workbench.metrics import accuracy
from workbench.models import ModelOutput
from workbench.objectives import IGNORE_INDEX, Batch, CausalLM, EvalSet
from workbench.tokenizers import BPEConfig, BPETokenizer, CharTokenizer
from workbench.trainer import evaluate


class FixedLogits(torch.nn.Module):
    """A 'model' that returns given logits, so the loss can be checked by hand."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, idx: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.logits)


class Unigram(torch.nn.Module):
    """Predicts every position from fixed token log-probabilities, whatever the context."""

    def __init__(self, log_probs: torch.Tensor) -> None:
        super().__init__()
        self.log_probs = log_probs

    def forward(self, idx: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.log_probs.expand(*idx.shape, -1).clone())


def test_loss_on_a_hand_computed_case() -> None:
    # vocab 4, two positions. Position 0: uniform -> p(target)=1/4. Position 1: logits [ln 3, 0, 0, 0]
    # -> p(target=0) = 3/6 = 1/2. Mean NLL = (ln 4 + ln 2) / 2 = 1.5 ln 2.
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0, 0.0]]])
    batch = Batch(input_ids=torch.zeros(1, 2, dtype=torch.long), labels=torch.tensor([[2, 0]]))
    out = CausalLM().loss(FixedLogits(logits), batch)
    assert out.loss.item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)
    assert out.sums["tokens"].item() == 2 and out.sums["nll"].item() == pytest.approx(3 * math.log(2.0), rel=1e-6)
    m = CausalLM().metrics({k: v.item() for k, v in out.sums.items()})
    assert m["ppl"] == pytest.approx(2**1.5, rel=1e-6)  # 2^(bits per token): 1.5 bits
    assert "bpc" not in m  # these batches do not say how many characters the tokens spell
    # one character per token: 3 bits over 2 characters; a subword model whose 2 tokens spell
    # 8 characters pays its 3 bits over all 8
    assert CausalLM().metrics({"nll": 3 * math.log(2.0), "tokens": 2, "chars": 2})["bpc"] == pytest.approx(1.5)
    assert CausalLM().metrics({"nll": 3 * math.log(2.0), "tokens": 2, "chars": 8})["bpc"] == pytest.approx(0.375)


def test_ignored_labels_do_not_count() -> None:
    logits = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]])
    batch = Batch(input_ids=torch.zeros(1, 2, dtype=torch.long), labels=torch.tensor([[IGNORE_INDEX, 0]]))
    out = CausalLM().loss(FixedLogits(logits), batch)
    assert out.sums["tokens"].item() == 1
    assert out.loss.item() == pytest.approx(-torch.log_softmax(torch.tensor([10.0, 0.0]), 0)[0].item(), rel=1e-6)


TEXT = ("When shall we three meet again\nIn thunder, lightning, or in rain?\n\n"
        "When the hurlyburly's done,\nWhen the battle's lost and won.\n\n") * 6


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_evaluation_matches_a_hand_computation(kind: str) -> None:
    """The evaluator's val/loss, val/ppl and val/bpc for a unigram 'model', computed again here
    token by token from the passages: every token of a passage but its first is predicted once,
    and bits per character divides the bits by the characters of the predicted tokens."""
    tok = CharTokenizer.train(TEXT) if kind == "char" else BPETokenizer.train(TEXT, BPEConfig(vocab_size=300))
    passages = Corpus("v", [Document(TEXT[:130]), Document(TEXT[130:300]), Document(TEXT[300:333])])
    tokenized = tokenize(tok, passages, char_lengths=True)
    counts = Counter(tok.encode(TEXT))
    probs = torch.tensor([counts[i] + 1.0 for i in range(tok.vocab_size)])
    log_probs = (probs / probs.sum()).log()

    objective = CausalLM()
    eval_set = EvalSet(objective.eval_batches(tokenized, batch_size=3, seq_len=16))
    got = evaluate(Unigram(log_probs), objective, eval_set)

    bits, predicted, predicted_chars, tokens = 0.0, 0, 0, 0
    for doc in passages.documents:
        ids = tok.encode(doc.text)
        bits += sum(-math.log2(probs[i] / probs.sum()) for i in ids[1:])
        predicted += len(ids) - 1
        tokens += len(ids)
        predicted_chars += len(doc.text) - len(tok.decode(ids[:1]))  # all but the first token's text (ASCII)
    if kind == "char":
        assert predicted_chars == predicted
    else:
        assert tokens < 0.8 * sum(len(d.text) for d in passages.documents)  # the subword tokenizer merged
    assert got["val/loss"] == pytest.approx(bits / predicted * math.log(2), rel=1e-5)
    assert got["val/ppl"] == pytest.approx(2 ** (bits / predicted), rel=1e-5)
    assert got["val/bpc"] == pytest.approx(bits / predicted_chars, rel=1e-5)


def test_causal_batches_are_shifted_windows_of_the_stream() -> None:
    data = torch.arange(100)
    gen = torch.Generator().manual_seed(3)
    b = CausalLM().make_batch(data, batch_size=5, seq_len=8, generator=gen)
    assert b.input_ids.shape == b.labels.shape == (5, 8)
    assert torch.equal(b.labels, b.input_ids + 1)  # the stream is 0..99, so next token = id + 1
    again = CausalLM().make_batch(data, 5, 8, torch.Generator().manual_seed(3))
    assert torch.equal(again.input_ids, b.input_ids)


def test_accuracy_skips_ignored() -> None:
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
    labels = torch.tensor([[1, 1, IGNORE_INDEX]])
    assert accuracy(logits, labels) == pytest.approx(0.5)
