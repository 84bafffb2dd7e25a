"""Permutation LM (XLNet) on the GPT trunk: two-stream masks, HF parity, loss, learning, the normal path."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from workbench.config import ConfigError, RunConfig
from workbench.corpora import Document
from workbench.models.gpt import GPT, GPTConfig
from workbench.objectives.base import IGNORE_INDEX, TokenizedCorpus, TokenizedDoc
from workbench.objectives.permutation_lm import (
    PermutationLM,
    PermutationLMConfig,
    PermutationStream,
    order_selection,
    permutation_mask,
    span_selection,
)

V, T = 50, 8


def make_model(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=V, **kw)).eval()


def fixed_order() -> torch.Tensor:
    """rank[i]: place of token i in the order (every token predicted)."""
    return torch.tensor([[3, 7, 0, 5, 1, 6, 2, 4]])


def test_query_stream_sees_exactly_the_tokens_before_it_in_the_order_never_itself() -> None:
    model = make_model()
    rank = fixed_order()
    perm = permutation_mask(rank, torch.ones(1, T, dtype=torch.bool))
    x = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(1))
    base = model(x, perm_mask=perm, mask_token_id=3).logits
    for j in range(T):
        y = x.clone()
        y[0, j] = (y[0, j] + 1) % V
        changed = (model(y, perm_mask=perm, mask_token_id=3).logits - base).abs().amax(-1)[0] > 1e-6  # (T,)
        expected = rank[0] > rank[0, j]  # i changes iff j comes before i in the order
        assert changed.tolist() == expected.tolist(), j
        assert not changed[j]  # a token's own content never reaches its prediction


def test_attention_weights_follow_the_two_stream_masks() -> None:
    model = make_model()
    rank = fixed_order()
    perm = permutation_mask(rank, torch.ones(1, T, dtype=torch.bool))
    x = torch.randint(0, V, (1, T))
    before = rank[0][None, :] < rank[0][:, None]  # (T, T): j before i
    out = model(x, perm_mask=perm, output_attentions=True)
    for w in out.attentions:  # the query stream's: (B, nh, T, T)
        assert w.shape == (1, 2, T, T)
        assert ((w[0] > 0) == before).all()
    _, _, _, weights = model.trunk.two_stream(x, perm, output_attentions=True)
    for w in weights:  # rows 0..T-1: the content stream, which also sees itself
        assert ((w[0, :, :T] > 0) == (before | torch.eye(T, dtype=torch.bool))).all()
    # the eager (weights) path and the fused path compute the same logits
    assert torch.allclose(out.logits, model(x, perm_mask=perm).logits, atol=1e-5)


def test_objective_masks_match_what_the_model_attends_to() -> None:
    obj = PermutationLM(PermutationLMConfig(k=3))
    b = obj.make_batch(torch.randint(0, V, (200,)), 2, T, torch.Generator().manual_seed(0))
    _, _, _, weights = make_model().trunk.two_stream(b.input_ids, b.perm_mask, output_attentions=True)
    for row in range(2):
        query, content = obj.attention_mask_matrix(b, row), obj.content_mask_matrix(b, row)
        assert not query.diagonal().any() and content.diagonal().all()
        for w in weights:
            assert ((w[row, :, T:] > 0) == query).all() and ((w[row, :, :T] > 0) == content).all()
        # context (unpredicted) tokens see no predicted token; predicted tokens see all context
        pred = b.labels[row] != IGNORE_INDEX
        assert not query[~pred][:, pred].any() and query[pred][:, ~pred].all()


def test_span_selection_reproduces_hf_collator_draw_for_draw() -> None:
    from transformers import DataCollatorForPermutationLanguageModeling

    tok = SimpleNamespace(mask_token="[MASK]", mask_token_id=99, pad_token="[PAD]", pad_token_id=98,
                          get_special_tokens_mask=lambda ids, already_has_special_tokens: [0] * len(ids))
    collator = DataCollatorForPermutationLanguageModeling(tokenizer=tok, plm_probability=1 / 6, max_span_length=5)
    for seed in range(5):
        ids = torch.randint(0, 90, (3, 24), generator=torch.Generator().manual_seed(seed))
        torch.manual_seed(seed)
        hf_inputs, hf_perm, hf_target_mapping, hf_labels = collator.torch_mask_tokens(ids.clone())
        rank, predicted = span_selection(3, 24, 1 / 6, 5, torch.Generator().manual_seed(seed))
        assert torch.equal(permutation_mask(rank, predicted), hf_perm.bool())
        assert torch.equal(ids.masked_fill(~predicted, IGNORE_INDEX), hf_labels)
        assert torch.equal(hf_inputs == 99, predicted)  # HF's [MASK]ed inputs are our predicted tokens
        assert torch.equal(hf_target_mapping[0], torch.eye(24))


def test_target_mapping_selects_positions_and_empty_rows_are_finite() -> None:
    model = make_model()
    x = torch.randint(0, V, (2, T))
    perm = permutation_mask(fixed_order().expand(2, T), torch.ones(2, T, dtype=torch.bool))
    full = model(x, perm_mask=perm).logits
    tm = torch.zeros(2, 3, T)
    tm[:, [0, 1, 2], [5, 1, 6]] = 1.0
    assert torch.allclose(model(x, perm_mask=perm, target_mapping=tm).logits, full[:, [5, 1, 6]], atol=1e-6)
    hide_all = torch.ones(2, T, T, dtype=torch.bool)  # nothing to see: predicted from the position alone
    a = model(x, perm_mask=hide_all).logits
    assert torch.isfinite(a).all() and torch.allclose(a, model(torch.randint(0, V, (2, T)), perm_mask=hide_all).logits)


def test_normal_path_is_unchanged_and_causal_perm_mask_gives_the_causal_content_stream() -> None:
    model = make_model()
    x = torch.randint(0, V, (2, T))
    hidden, _, _ = model.trunk(x)
    assert torch.equal(model(x).logits, model.lm_head(hidden))  # bit for bit: the path a plain call takes
    assert torch.equal(model(x).logits, model(x, perm_mask=None).logits)
    assert "permutation" in GPTConfig.capabilities and PermutationLM.needs <= GPTConfig.capabilities
    future = torch.ones(T, T, dtype=torch.bool).triu(1).expand(2, T, T)  # the identity order
    h, g, _, _ = model.trunk.two_stream(x, future)
    assert torch.allclose(h, hidden, atol=1e-5)  # the content stream of the identity order is GPT
    # its query stream predicts token i from tokens < i: logit i is GPT's logit i-1's job (shifted)
    y = torch.cat([x[:, :4], (x[:, 4:] + 1) % V], 1)  # tokens 4.. changed
    changed = model.lm_head(model.trunk.two_stream(y, future)[1]) - model.lm_head(g)
    assert changed[:, :5].abs().max() < 1e-6 and changed[:, 5:].abs().max() > 1e-4


def test_partial_prediction_predicts_the_last_1_over_k_and_loss_only_there() -> None:
    data = torch.randint(0, V, (500,))
    b = PermutationLM(PermutationLMConfig(k=6)).make_batch(data, 4, 12, torch.Generator().manual_seed(0))
    assert ((b.labels != IGNORE_INDEX).sum(1) == 2).all()  # ceil(12 / 6)
    assert torch.equal(b.labels[b.labels != IGNORE_INDEX], b.input_ids[b.labels != IGNORE_INDEX])  # no shift
    rank, pred = order_selection(torch.full((3,), 10), 10, 4, torch.Generator().manual_seed(1))
    assert (pred.sum(1) == 3).all() and (rank[pred] >= 7).all()  # ceil(10/4), the end of the order
    spans = PermutationLM(PermutationLMConfig(selection="span"))
    sb = spans.make_batch(data, 64, 48, torch.Generator().manual_seed(0))
    assert abs((sb.labels != IGNORE_INDEX).float().mean().item() - 1 / 6) < 0.03

    class Fixed(torch.nn.Module):  # logits that do not depend on the input
        def __init__(self, logits: torch.Tensor) -> None:
            super().__init__()
            self.logits = logits

        def forward(self, *args, **kwargs):
            return SimpleNamespace(logits=self.logits)

    logits = torch.randn(4, 12, V)
    obj = PermutationLM()
    out = obj.loss(Fixed(logits), b)
    pred = b.labels != IGNORE_INDEX
    noisy = logits.clone()
    noisy[~pred] = torch.randn_like(noisy[~pred]) * 10
    assert torch.equal(obj.loss(Fixed(noisy), b).loss, out.loss)  # unpredicted positions do not count
    noisy[pred] += torch.randn_like(noisy[pred])
    assert not torch.allclose(obj.loss(Fixed(noisy), b).loss, out.loss)
    assert out.sums["tokens"].item() == int(pred.sum())


def test_bad_settings_name_their_field() -> None:
    with pytest.raises(ConfigError) as e:
        PermutationLMConfig(k=1)
    assert e.value.field == "k"
    spans = PermutationLM(PermutationLMConfig(selection="span"))
    with pytest.raises(ConfigError) as e:
        spans.make_batch(torch.arange(100), 2, 7, torch.Generator().manual_seed(0))
    assert e.value.field == "seq_len"
    with pytest.raises(ConfigError) as e:  # RunConfig asks the objective (ObjectiveConfig.check_seq_len)
        RunConfig.from_dict({"model": {"arch": "gpt", "block_size": 64}, "train": {"seq_len": 63},
                             "objective": {"name": "plm", "selection": "span"}})
    assert e.value.field == "seq_len" and "even" in e.value.message
    RunConfig.from_dict({"model": {"arch": "gpt", "block_size": 64}, "train": {"seq_len": 63},
                         "objective": {"name": "plm", "selection": "order"}})
    with pytest.raises(ValueError, match="perm_mask"):
        make_model()(torch.zeros(1, T, dtype=torch.long), perm_mask=torch.zeros(1, T, T + 1, dtype=torch.bool))


def test_eval_batches_are_fixed_never_predict_padding_and_count_characters() -> None:
    docs = [TokenizedDoc(list(range(1, 21)), Document("x" * 40), [2] * 20),
            TokenizedDoc([5, 6, 7], Document("abc"), [1] * 3)]
    corpus = TokenizedCorpus(docs, special_ids={"[MASK]": 0})
    obj = PermutationLM(PermutationLMConfig(k=4))
    a, b = obj.eval_batches(corpus, 2, 8), obj.eval_batches(corpus, 2, 8)
    assert len(a) == 2
    assert all(torch.equal(x.perm_mask, y.perm_mask) and torch.equal(x.labels, y.labels) for x, y in zip(a, b))
    labels = torch.cat([x.labels for x in a])
    mask = torch.cat([x.attention_mask for x in a])
    assert ((labels != IGNORE_INDEX) & (mask == 0)).sum() == 0
    assert (labels != IGNORE_INDEX).sum(1).tolist() == [2, 2, 1, 1]  # ceil(8/4), ceil(4/4), ceil(3/4)
    assert sum(x.label_chars.sum().item() for x in a) == 2 * 5 + 1
    assert a[0].mask_token_id == 0
    model = make_model()
    totals = {k: sum(obj.loss(model, x).sums[k].item() for x in a) for k in ("nll", "tokens", "chars", "correct")}
    m = obj.metrics(totals)
    assert m["bpc"] == pytest.approx(totals["nll"] / totals["chars"] / math.log(2)) and 0 <= m["acc"] <= 1


def test_tiny_gpt_learns_a_fixed_batch_with_plm() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=20))
    obj = PermutationLM(PermutationLMConfig(k=3))
    data = PermutationStream(torch.randint(1, 20, (300,)), mask_token_id=0)
    batch = obj.make_batch(data, 8, 16, torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = obj.loss(model, batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 2.5  # ~ln(20) = 3.0
    assert losses[-1] < 0.5 * losses[0]
    assert model.trunk.wte.weight.grad[0].abs().sum() > 0  # the [MASK] row learns: the query stream's start
