from __future__ import annotations

import math

import pytest
import torch

from workbench.metrics import accuracy, bits_per_char, perplexity
from workbench.models import ModelOutput
from workbench.objectives import IGNORE_INDEX, Batch, CausalLM


class FixedLogits(torch.nn.Module):
    """A 'model' that returns given logits, so the loss can be checked by hand."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, idx: torch.Tensor) -> ModelOutput:
        return ModelOutput(self.logits)


def test_perplexity_is_exp_of_mean_nll_on_a_hand_computed_case() -> None:
    # vocab 4, two positions. Position 0: uniform -> p(target)=1/4. Position 1: logits [ln 3, 0, 0, 0]
    # -> p(target=0) = 3/6 = 1/2. Mean NLL = (ln 4 + ln 2) / 2 = 1.5 ln 2, ppl = 2^1.5.
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0, 0.0]]])
    batch = Batch(input_ids=torch.zeros(1, 2, dtype=torch.long), labels=torch.tensor([[2, 0]]))
    out = CausalLM().loss(FixedLogits(logits), batch)
    assert out.loss.item() == pytest.approx(1.5 * math.log(2.0), rel=1e-6)
    assert out.num_tokens == 2
    assert perplexity(out.loss.item()) == pytest.approx(2**1.5, rel=1e-6)
    assert bits_per_char(out.loss.item()) == pytest.approx(1.5, rel=1e-6)
    # a BPE model with 1 token per 4 chars pays its bits over 4 characters
    assert bits_per_char(out.loss.item(), tokens_per_char=0.25) == pytest.approx(0.375, rel=1e-6)


def test_ignored_labels_do_not_count() -> None:
    logits = torch.tensor([[[0.0, 0.0], [10.0, 0.0]]])
    batch = Batch(input_ids=torch.zeros(1, 2, dtype=torch.long), labels=torch.tensor([[IGNORE_INDEX, 0]]))
    out = CausalLM().loss(FixedLogits(logits), batch)
    assert out.num_tokens == 1
    assert out.loss.item() == pytest.approx(-torch.log_softmax(torch.tensor([10.0, 0.0]), 0)[0].item(), rel=1e-6)


def test_causal_batches_are_shifted_windows_of_the_stream() -> None:
    data = CausalLM().prepare(list(range(100)))
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
