"""The encoder-decoder family and its decoding: config checks, masks (causal decoder, encoder
padding), attention capture, a tiny model that learns to copy, greedy vs beam search,
parameter counting and checkpoint round trips."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from workbench.checkpoint import load_checkpoint, save_checkpoint
from workbench.config import ConfigError
from workbench.models.layers import MAX_BLOCK_SIZE
from workbench.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from workbench.seq2seq_decode import beam_search, greedy_decode, sample_decode, sequence_log_prob

V, START, EOS, PAD, L = 13, 10, 11, 12, 6  # digits 0-9 are the copy task's tokens


def tiny(seed: int = 0, **kw) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    cfg = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16, "vocab_size": V, **kw}
    return Seq2SeqTransformer(Seq2SeqConfig(**cfg)).eval()


def peaked(seed: int = 0, **kw) -> Seq2SeqTransformer:
    """An untrained model with large weights: sharp, far-from-tied next-token distributions, so
    greedy and beam choices do not hinge on float rounding."""
    model = tiny(seed, **kw)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return model


def until_eos(row: torch.Tensor) -> torch.Tensor:
    """A decoded row up to and including its first EOS."""
    hits = (row == EOS).nonzero()
    return row[: int(hits[0]) + 1] if len(hits) else row


# --- config ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,field", [
    ({"arch": "gpt"}, "arch"),
    ({"n_layer": 0}, "n_layer"),
    ({"n_dec_layer": -1}, "n_dec_layer"),
    ({"n_head": 3, "n_embd": 32}, "n_embd"),
    ({"block_size": MAX_BLOCK_SIZE + 1}, "block_size"),
    ({"dropout": 1.0}, "dropout"),
    ({"share_embeddings": "yes"}, "share_embeddings"),
    ({"tie_weights": 1}, "tie_weights"),
])
def test_config_errors_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        Seq2SeqConfig(**kw)
    assert err.value.field == field


def test_config_summary_docs_and_capabilities() -> None:
    cfg = Seq2SeqConfig(n_layer=3, n_dec_layer=1, n_head=4, n_embd=64, block_size=32)
    assert cfg.describe() == "seq2seq 3+1L/4H/64 ctx 32" and cfg.max_context == 32 and cfg.dec_layers == 1
    assert Seq2SeqConfig(n_layer=3).dec_layers == 3  # 0 = as many as the encoder
    assert {f.name for f in Seq2SeqConfig.user_fields()} <= set(Seq2SeqConfig.field_docs())
    assert Seq2SeqConfig.capabilities == {"seq2seq", "attention"} and "causal" not in Seq2SeqConfig.capabilities
    with pytest.raises(ValueError, match="vocab_size"):
        Seq2SeqTransformer(Seq2SeqConfig())


# --- shapes and masks -----------------------------------------------------------------------------

def test_forward_shapes_and_clear_errors() -> None:
    model = tiny(n_layer=3, n_dec_layer=2)
    src, tgt = torch.randint(0, 10, (2, 7)), torch.randint(0, 10, (2, 5))
    out = model(src, decoder_input_ids=tgt, output_hidden_states=True)
    assert out.logits.shape == (2, 5, V) and out.hidden_states.shape == (2, 5, 32)
    assert out.encoder_hidden_states.shape == (2, 7, 32)
    assert len(out.all_hidden_states) == 3  # decoder embeddings + 2 decoder layers
    assert out.attentions is None and out.encoder_attentions is None and out.cross_attentions is None
    logits, hidden, self_attn, cross_attn = model.decode(tgt, model.encode(src)[0])
    assert torch.allclose(logits, out.logits, atol=1e-6) and self_attn is None and cross_attn is None
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(src)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(src, None, True)  # output_attentions passed where the decoder inputs go
    with pytest.raises(ValueError, match="block_size=16"):
        model(src, decoder_input_ids=torch.zeros(2, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(B, S\) padding mask"):
        model(src, torch.ones(2, 7, 7), decoder_input_ids=tgt)


@pytest.mark.parametrize("output_attentions", [False, True])  # fused and eager attention
def test_decoder_cannot_see_later_targets(output_attentions: bool) -> None:
    model = tiny()
    src, tgt = torch.randint(0, 10, (2, 6)), torch.randint(0, 10, (2, 8))
    before = model(src, decoder_input_ids=tgt, output_attentions=output_attentions).logits
    for t in range(7):
        changed = tgt.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % 10
        after = model(src, decoder_input_ids=changed, output_attentions=output_attentions).logits
        assert torch.allclose(after[:, : t + 1], before[:, : t + 1], atol=1e-6)
        assert not torch.allclose(after[:, t + 1:], before[:, t + 1:], atol=1e-4)  # later positions do see them


@pytest.mark.parametrize("output_attentions", [False, True])
def test_encoder_padding_is_invisible_to_the_decoder(output_attentions: bool) -> None:
    model = tiny()
    src, tgt = torch.randint(0, 10, (2, 7)), torch.randint(0, 10, (2, 5))
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1]])  # right and left padding
    changed = torch.where(mask.bool(), src, (src + 3) % 10)
    out = model(src, mask, tgt, output_attentions=output_attentions)
    assert torch.allclose(model(changed, mask, tgt, output_attentions=output_attentions).logits, out.logits, atol=1e-6)
    # ... while a real source token does reach the logits
    real = src.clone()
    real[0, 0] = (real[0, 0] + 1) % 10
    assert not torch.allclose(model(real, mask, tgt).logits[0], out.logits[0], atol=1e-4)
    if output_attentions:
        for cross in out.cross_attentions:  # (B, nh, T, S)
            assert torch.allclose(cross.sum(-1), torch.ones(2, 2, 5), atol=1e-6)
            assert torch.all(cross.masked_select(~mask.bool()[:, None, None, :].expand_as(cross)) == 0)
            assert torch.all(cross.masked_select(mask.bool()[:, None, None, :].expand_as(cross)) > 0)
        for enc in out.encoder_attentions:  # real encoder tokens never look at padding either
            real_rows = enc[0, :, :4]  # (nh, 4, S)
            assert torch.all(real_rows[..., 4:] == 0) and torch.allclose(real_rows.sum(-1), torch.ones(2, 4), atol=1e-6)
    empty = torch.tensor([[1] * 7, [0] * 7])  # a source that is all padding: finite logits, no NaN
    assert torch.isfinite(model(src, empty, tgt, output_attentions=output_attentions).logits).all()


def test_attention_capture_shapes_and_eager_equals_fused() -> None:
    model = tiny(n_layer=3, n_dec_layer=2)
    src, tgt = torch.randint(0, 10, (2, 7)), torch.randint(0, 10, (2, 5))
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2])
    dec_mask = torch.tensor([[1] * 5, [1] * 4 + [0]])
    out = model(src, mask, tgt, dec_mask, output_attentions=True)
    assert [a.shape for a in out.encoder_attentions] == [(2, 2, 7, 7)] * 3
    assert [a.shape for a in out.attentions] == [(2, 2, 5, 5)] * 2
    assert [a.shape for a in out.cross_attentions] == [(2, 2, 5, 7)] * 2
    for a in out.attentions:  # causal: nothing above the diagonal
        assert torch.all(a.triu(diagonal=1) == 0) and torch.allclose(a.sum(-1), torch.ones(2, 2, 5), atol=1e-6)
    assert torch.all(out.attentions[0][1, :, :4, 4] == 0)  # the padded target position is never attended
    fused = model(src, mask, tgt, dec_mask)
    assert torch.allclose(fused.logits, out.logits, atol=1e-5)
    enc_out, enc_attn = model.encode(src, mask, output_attentions=True)
    _, _, self_attn, cross_attn = model.decode(tgt, enc_out, mask, dec_mask, output_attentions=True)
    captured = out.encoder_attentions + out.attentions + out.cross_attentions
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(enc_attn + self_attn + cross_attn, captured))


# --- learning to copy, then decoding --------------------------------------------------------------

def copy_batch(n: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Random digit sources of length 2..L (right-padded); the target is the source then EOS."""
    src = torch.randint(0, 10, (n, L), generator=g)
    lens = torch.randint(2, L + 1, (n,), generator=g)
    mask = (torch.arange(L)[None] < lens[:, None]).long()  # (n, L)
    src = src.masked_fill(mask == 0, PAD)
    tgt = torch.cat([src, torch.full((n, 1), PAD)], 1)  # (n, L + 1)
    tgt[torch.arange(n), lens] = EOS
    dec = torch.cat([torch.full((n, 1), START), tgt[:, :-1]], 1)  # the target shifted right
    return src, mask, dec, tgt


@pytest.fixture(scope="module")
def copier() -> Seq2SeqTransformer:
    model = tiny().train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        src, mask, dec, tgt = copy_batch(32, g)
        logits = model(src, mask, dec).logits
        loss = F.cross_entropy(logits.reshape(-1, V), tgt.masked_fill(tgt == PAD, -100).reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    return model.eval()


def test_trained_model_copies_with_greedy_and_beam(copier: Seq2SeqTransformer) -> None:
    src, mask, _, tgt = copy_batch(32, torch.Generator().manual_seed(123))
    out = greedy_decode(copier, src, mask, START, EOS, max_new_tokens=12, pad_id=PAD)
    assert out.shape == (32, L + 1)  # every row stopped at its EOS, well before 12 tokens
    assert torch.equal(out, tgt)  # each row copied, its EOS, then padding
    for b, t in zip(beam_search(copier, src, mask, START, EOS, 12, beam_size=3), tgt):
        assert torch.equal(b, t[t != PAD])


def test_decoding_restores_training_mode(copier: Seq2SeqTransformer) -> None:
    src, mask, _, _ = copy_batch(2, torch.Generator().manual_seed(0))
    copier.train()
    try:
        greedy_decode(copier, src, mask, START, EOS, 4)
        beam_search(copier, src, mask, START, EOS, 4, beam_size=2)
        assert copier.training
    finally:
        copier.eval()


def test_sampling_options() -> None:
    model = peaked(1)
    src = torch.randint(0, 10, (4, 6), generator=torch.Generator().manual_seed(1))
    greedy = greedy_decode(model, src, None, START, EOS, 8)
    assert torch.equal(sample_decode(model, src, None, START, EOS, 8, temperature=1.5, top_k=1), greedy)
    draw = [sample_decode(model, src, None, START, EOS, 8, generator=torch.Generator().manual_seed(seed))
            for seed in (5, 5, 6)]
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], draw[2])
    for row in draw[2]:  # once a row ends, only its filler (EOS) follows
        assert torch.all(row[len(until_eos(row)):] == EOS)
    no_eos = sample_decode(model, src, None, START, None, 8, generator=torch.Generator().manual_seed(5))
    assert no_eos.shape == (4, 8)
    with pytest.raises(ValueError, match="temperature"):
        sample_decode(model, src, None, START, EOS, 8, temperature=-1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_decode(model, src, None, START, EOS, 17)  # block_size 16


def test_beam_size_is_checked() -> None:
    src = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(tiny(), src, None, START, EOS, 4, beam_size=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_one_is_greedy_and_wider_beams_score_at_least_as_well(seed: int) -> None:
    model = peaked(seed)
    src = torch.randint(0, 10, (6, 5), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(src)
    mask[::2, 3:] = 0
    greedy = [until_eos(r) for r in greedy_decode(model, src, mask, START, EOS, 6)]
    beam1 = beam_search(model, src, mask, START, EOS, 6, beam_size=1, length_penalty=0.0)
    assert all(torch.equal(g, b) for g, b in zip(greedy, beam1))

    def logp(b: int, seq: torch.Tensor) -> float:
        return sequence_log_prob(model, src[b : b + 1], mask[b : b + 1], START, seq[None]).item()

    for beam_size in (2, 4):
        wide = beam_search(model, src, mask, START, EOS, 6, beam_size=beam_size, length_penalty=0.0)
        assert all(logp(b, w) >= logp(b, g) - 1e-5 for b, (w, g) in enumerate(zip(wide, greedy)))


def test_a_beam_wide_enough_finds_the_exact_best() -> None:
    """With room for every hypothesis, beam search must return the argmax over all outputs of
    up to 3 tokens (ended by EOS, or cut at the limit) of log-prob / length ** penalty."""
    model = peaked(9, vocab_size=5, n_embd=16)  # a model whose best output depends on the penalty
    start, eos, n = 3, 4, 3
    src = torch.tensor([[0, 1, 2, 1]])
    outputs = [list(p) + [eos] for k in range(n) for p in itertools.product(range(eos), repeat=k)]
    outputs += [list(p) for p in itertools.product(range(eos), repeat=n)]  # unfinished at the limit
    targets = torch.tensor([o + [0] * (n - len(o)) for o in outputs])  # (N, n)
    lengths = torch.tensor([len(o) for o in outputs])  # (N,)
    logp = sequence_log_prob(model, src.expand(len(outputs), -1), None, start, targets,
                             torch.arange(n)[None] < lengths[:, None])  # (N,)
    best = {}
    for penalty in (0.0, 1.0):
        scores = logp / lengths**penalty
        top, second = scores.topk(2).values.tolist()
        assert top - second > 1e-2  # a clear winner, not a float near-tie
        best[penalty] = outputs[int(scores.argmax())]
        found = beam_search(model, src, None, start, eos, n, beam_size=125, length_penalty=penalty)[0]
        assert found.tolist() == best[penalty]
    assert len(best[0.0]) < len(best[1.0])  # the raw sum favours ending early; the average does not


class TableModel(torch.nn.Module):
    """A stand-in 'model' whose next-token probabilities are a table keyed by the prefix, to pin
    beam search's bookkeeping down by hand. Tokens: 0 = a, 1 = b, 2 = start, 3 = EOS."""

    config = Seq2SeqConfig(block_size=8)
    table = {(): [0.3, 0.1, 0.0, 0.6], (0,): [0.98, 0.01, 0.0, 0.01], (0, 0): [0.01, 0.01, 0.0, 0.98]}

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> tuple:
        return torch.zeros(input_ids.size(0), 1, 1), None

    def decode(self, decoder_input_ids: torch.Tensor, enc_out: torch.Tensor,
               attention_mask: torch.Tensor | None = None) -> tuple:
        probs = [self.table.get(tuple(row[1:].tolist()), [0.25, 0.25, 0.0, 0.5]) for row in decoder_input_ids]
        last = torch.tensor(probs).log()  # (n, V)
        return last[:, None, :].expand(-1, decoder_input_ids.size(1), -1), None, None, None


@pytest.mark.parametrize("beam_size", [1, 2])
def test_beam_search_looks_past_an_early_eos_when_the_penalty_pays(beam_size: int) -> None:
    """[EOS] has log-prob ln 0.6 = -0.51; [a, a, EOS] has -1.24 in all but -0.41 per token. The
    search must not stop at [EOS]: after one step the open 'a' (-1.20) could still average
    -1.20 / 3 at the limit of 3 tokens, above -0.51 (a bound that assumed the next length would
    stop here)."""
    model, src = TableModel(), torch.zeros(1, 2, dtype=torch.long)
    assert greedy_decode(model, src, None, 2, 3, 3).tolist() == [[3]]
    assert beam_search(model, src, None, 2, 3, 3, beam_size=beam_size, length_penalty=0.0)[0].tolist() == [3]
    assert beam_search(model, src, None, 2, 3, 3, beam_size=beam_size, length_penalty=1.0)[0].tolist() == [0, 0, 3]


# --- parameters and checkpoints -------------------------------------------------------------------

def test_parameter_count_counts_shared_weights_once() -> None:
    C, T, n = 32, 16, {}
    for share, tie in itertools.product((True, False), repeat=2):
        model = tiny(share_embeddings=share, tie_weights=tie)
        n[share, tie] = model.num_parameters()
        unique = {p.data_ptr(): p.numel() for p in model.state_dict().values()}
        assert n[share, tie] == sum(unique.values())
        assert model.num_parameters(non_embedding=True) == n[share, tie] - 2 * T * C  # two position tables
        assert (model.trunk.encoder.embed.wte is model.trunk.decoder.embed.wte) == share
        assert (model.lm_head.weight is model.trunk.decoder.embed.wte.weight) == tie
    assert n[False, True] - n[True, True] == V * C  # a second token table
    assert n[True, False] - n[True, True] == V * C  # an untied output head
    assert n[False, False] - n[True, True] == 2 * V * C


@pytest.mark.parametrize("share,tie", [(True, True), (False, True), (False, False)])
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, share: bool, tie: bool) -> None:
    model = tiny(0, share_embeddings=share, tie_weights=tie)
    with torch.no_grad():  # make every table differ from a fresh model's, tied or not
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(tmp_path / "ckpt.safetensors", model)
    fresh = tiny(1, share_embeddings=share, tie_weights=tie)
    fresh.load_state_dict(load_checkpoint(tmp_path / "ckpt.safetensors").model_state)
    src, tgt = torch.randint(0, 10, (2, 6)), torch.randint(0, 10, (2, 4))
    assert torch.equal(fresh(src, decoder_input_ids=tgt).logits, model(src, decoder_input_ids=tgt).logits)
    assert (fresh.lm_head.weight is fresh.trunk.decoder.embed.wte.weight) == tie  # still tied after loading
