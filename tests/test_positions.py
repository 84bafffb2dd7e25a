"""Positional encodings (learned, sinusoidal, RoPE, none) and block normalisation (pre/post/none,
residual on/off) as GPT options: the formulas, eager/SDPA parity, captured weights, permutation
equivariance, training, validation and the XLNet two-stream path."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from workbench.config import ConfigError
from workbench.models.gpt import GPT, GPTConfig
from workbench.models.layers import Block
from workbench.models.positions import apply_rope, rope_angles, sinusoidal_positions
from workbench.objectives.permutation_lm import permutation_mask

V, T = 20, 10
POS = ["learned", "sinusoidal", "rope", "none"]
NORMS = ["pre", "post", "none"]


def make_model(n_layer: int = 2, **kw) -> GPT:
    """A tiny GPT whose attention is sharp: at init (std 0.02) q.k is ~0, every row of weights is
    near-uniform and positions (RoPE's rotation included) barely change anything."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=n_layer, n_head=2, n_embd=16, block_size=16, vocab_size=V, **kw)).eval()
    with torch.no_grad():
        for block in model.trunk.blocks:
            block.attn.qkv.weight.mul_(25.0)
        model.trunk.wte.weight.mul_(5.0 if kw.get("pos_encoding") != "sinusoidal" else 1.0)
    return model


def ids(B: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# --- the formulas ---------------------------------------------------------------------------------

@pytest.mark.parametrize("d", [6, 7])
def test_sinusoidal_table_is_the_papers_formula(d: int) -> None:
    n = 12
    table = sinusoidal_positions(n, d)
    assert table.shape == (n, d)
    for i in range(n):
        for c in range(d):
            angle = i / 10000 ** (2 * (c // 2) / d)
            expected = math.sin(angle) if c % 2 == 0 else math.cos(angle)
            assert abs(float(table[i, c]) - expected) < 1e-5, (i, c)


def rotated(x: torch.Tensor, pos: int, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """One vector ``x`` (hs,) rotated as if it sat at position ``pos``."""
    return apply_rope(x[None], cos[pos:pos + 1], sin[pos:pos + 1])[0]


def test_rope_scores_depend_only_on_relative_position() -> None:
    hs = 16
    cos, sin = rope_angles(64, hs)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(hs, generator=g), torch.randn(hs, generator=g)

    def score(i: int, j: int) -> float:
        return float(rotated(q, i, cos, sin) @ rotated(k, j, cos, sin))

    for i, j, s in [(0, 0, 5), (3, 1, 7), (1, 9, 20), (10, 2, 40), (30, 31, 1)]:
        assert score(i, j) == pytest.approx(score(i + s, j + s), abs=1e-5), (i, j, s)
        assert abs(score(i, j) - score(i, j + 1)) > 1e-3, (i, j)  # another distance, another score


def test_apply_rope_preserves_norms() -> None:
    x = torch.randn(2, 3, T, 8)
    cos, sin = rope_angles(T, 8)
    y = apply_rope(x, cos, sin)
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert not torch.allclose(y[..., 1:, :], x[..., 1:, :])  # yet it moves everything but position 0
    assert torch.allclose(y[..., 0, :], x[..., 0, :])


# --- the model options ----------------------------------------------------------------------------

OPTIONS = [(pe, norm, True) for pe in POS for norm in NORMS] + [("rope", norm, False) for norm in NORMS]


@pytest.mark.parametrize("pe,norm,residual", OPTIONS)
def test_eager_and_sdpa_paths_agree(pe: str, norm: str, residual: bool) -> None:
    model = make_model(pos_encoding=pe, norm=norm, residual=residual)
    x = ids()
    pad = torch.ones(2, T, dtype=torch.long)
    pad[0, :3] = 0  # left padding
    pad[1, -2:] = 0  # right padding
    with torch.no_grad():
        for mask in (None, pad):
            fast = model(x, attention_mask=mask).logits
            eager = model(x, attention_mask=mask, output_attentions=True)
            assert eager.attentions is not None and len(eager.attentions) == 2
            assert torch.isfinite(fast).all()
            assert torch.allclose(fast, eager.logits, atol=1e-5), (pe, norm, residual, mask is not None)


@pytest.mark.parametrize("pe,norm", [(pe, norm) for pe in POS for norm in NORMS])
def test_captured_weights_are_softmax_of_rotated_queries_and_keys(pe: str, norm: str) -> None:
    model = make_model(pos_encoding=pe, norm=norm)
    x = ids(1)
    with torch.no_grad():
        out = model(x, output_attentions=True, output_hidden_states=True)
        block = model.trunk.blocks[0]
        inp = out.all_hidden_states[0]  # block 0's input: the embeddings (dropout 0)
        inp = block.ln_1(inp) if norm == "pre" else inp
        nh, C = 2, 16
        hs = C // nh
        q, k, _ = block.attn.qkv(inp).split(C, dim=2)
        q = q.view(1, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(1, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        if pe == "rope":
            cos, sin = rope_angles(T, hs)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        scores = (q @ k.transpose(-2, -1) / math.sqrt(hs)).masked_fill(~causal, float("-inf"))
        expected = torch.softmax(scores, dim=-1)  # (B, nh, T, T)
    w = out.attentions[0]
    assert w.shape == (1, nh, T, T)
    for h in range(nh):
        assert torch.allclose(w[0, h], expected[0, h], atol=1e-6), h
    assert torch.allclose(w.sum(-1), torch.ones(1, nh, T), atol=1e-6)
    assert (w[..., ~causal] == 0).all()  # exactly nothing on the future


def test_rope_and_final_norm_buffers_keep_checkpoints_compatible() -> None:
    default = make_model()
    keys = set(default.state_dict())
    assert "trunk.ln_f.weight" in keys and "trunk.wpe.weight" in keys
    old = GPTConfig.from_dict({"n_layer": 2, "pos_encoding": "learned"})  # a config from before these options
    assert (old.norm, old.residual, old.rope_base) == ("pre", True, 10000.0)
    rope = make_model(pos_encoding="rope", norm="post")
    keys = set(rope.state_dict())
    assert not any("rope_" in k or "wpe" in k or "pos_table" in k or "ln_f" in k for k in keys)
    fresh = make_model(pos_encoding="rope", norm="post")
    torch.nn.init.zeros_(fresh.trunk.wte.weight)
    fresh.load_state_dict(rope.state_dict())
    assert torch.equal(fresh(ids()).logits, rope(ids()).logits)


@pytest.mark.parametrize("norm,residual", [(n, r) for n in NORMS for r in (True, False)])
def test_block_wires_norm_and_residual_as_documented(norm: str, residual: bool) -> None:
    torch.manual_seed(0)
    C = 16
    block = Block(C, 2, 0.0, True, causal=True, norm=norm, residual=residual).eval()
    with torch.no_grad():
        for p in block.parameters():  # LayerNorm affine off its identity init, so each norm shows
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(2, T, C)
        ln1, ln2 = (block.ln_1, block.ln_2) if norm != "none" else (torch.nn.Identity(), torch.nn.Identity())
        attn = lambda z: block.attn(z)[0]  # noqa: E731
        skip = (lambda z, f: z + f) if residual else (lambda z, f: f)
        if norm == "pre":  # GPT-2: x + f(ln(x))
            y = skip(x, attn(ln1(x)))
            y = skip(y, block.mlp(ln2(y)))
        else:  # post: ln(x + f(x)); none: x + f(x)
            y = ln1(skip(x, attn(x)))
            y = ln2(skip(y, block.mlp(y)))
        assert torch.allclose(block(x)[0], y, atol=1e-6)
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        h, g, _ = block.two_stream(x, x, torch.cat([causal, causal])[None, None])  # both streams: the causal block
        assert torch.allclose(h, y, atol=1e-6) and torch.allclose(g, y, atol=1e-6)
    assert isinstance(block.ln_1, torch.nn.Identity) == (norm == "none")


# --- permutation equivariance ---------------------------------------------------------------------

def test_attention_without_positions_is_permutation_equivariant() -> None:
    torch.manual_seed(0)
    C = 16
    stack = torch.nn.ModuleList(Block(C, 2, 0.0, True, causal=False) for _ in range(2)).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        for block in stack:
            x, _ = block(x)
        return x

    x = torch.randn(1, T, C)
    perm = torch.randperm(T, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(run(x[:, perm]), run(x)[:, perm], atol=1e-5)  # shuffle in, shuffle out
        table = sinusoidal_positions(T, C) * 2
        shuffled = run(x[:, perm] + table)  # the same tokens at other places
        assert not torch.allclose(shuffled, run(x + table)[:, perm], atol=1e-3)


def test_without_positions_a_causal_layer_sees_its_prefix_as_a_bag() -> None:
    """One causal layer with pos_encoding='none': the last position's output depends on which
    tokens precede it, not their order; RoPE sees the order. Position 0 sees its own token only."""
    x = ids(1)
    shuffled = torch.cat([x[:, :-1].flip(1), x[:, -1:]], dim=1)  # same prefix tokens, reversed
    with torch.no_grad():
        none = make_model(n_layer=1, pos_encoding="none")
        assert torch.allclose(none(x).logits[:, -1], none(shuffled).logits[:, -1], atol=1e-5)
        rope = make_model(n_layer=1, pos_encoding="rope")
        assert not torch.allclose(rope(x).logits[:, -1], rope(shuffled).logits[:, -1], atol=1e-4)
        other = x.clone()
        other[:, 1:] = (other[:, 1:] + 1) % V
        assert torch.allclose(make_model(pos_encoding="none")(other).logits[:, 0],
                              make_model(pos_encoding="none")(x).logits[:, 0], atol=1e-6)


# --- training and validation ----------------------------------------------------------------------

def train_losses(steps: int = 30, **kw) -> tuple[float, float]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=8, **kw)).train()
    pattern = torch.arange(16) % 6  # 0 1 2 3 4 5 0 1 ...
    batch = torch.stack([pattern.roll(i) for i in range(4)])  # (4, 16): the pattern at four phases
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        logits = model(batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, 8), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.mark.parametrize("kw", [{"pos_encoding": "rope"}, {"pos_encoding": "none"}, {"norm": "post"},
                                {"norm": "post", "pos_encoding": "rope"}])
def test_each_option_trains(kw: dict) -> None:
    first, last = train_losses(**kw)
    assert last < 0.5 * first, (kw, first, last)


def test_no_norm_no_residual_still_runs() -> None:
    first, last = train_losses(norm="none", residual=False)
    assert math.isfinite(first) and math.isfinite(last)


def test_rope_needs_an_even_head_size() -> None:
    with pytest.raises(ConfigError) as err:
        GPTConfig(n_embd=6, n_head=2, pos_encoding="rope")  # head size 3
    assert err.value.field == "n_embd" and "n_embd" in str(err.value)
    GPTConfig(n_embd=6, n_head=3, pos_encoding="rope")  # head size 2: fine
    GPTConfig(n_embd=6, n_head=2, pos_encoding="learned")  # odd heads are fine without RoPE
    for field, kw in [("norm", {"norm": "mid"}), ("pos_encoding", {"pos_encoding": "alibi"}),
                      ("rope_base", {"rope_base": 0.5}), ("residual", {"residual": "yes"})]:
        with pytest.raises(ConfigError) as err:
            GPTConfig(**kw)
        assert err.value.field == field


def test_describe_names_the_options() -> None:
    assert GPTConfig().describe() == "gpt 2L/2H/64 ctx 64"
    assert GPTConfig(pos_encoding="none", norm="none").describe() == "gpt 2L/2H/64 ctx 64 no-pos no-LN"


# --- XLNet's two streams --------------------------------------------------------------------------

@pytest.mark.parametrize("pe,norm", [("rope", "pre"), ("rope", "post"), ("none", "none")])
def test_two_stream_path_with_rope(pe: str, norm: str) -> None:
    model = make_model(pos_encoding=pe, norm=norm)
    rank = torch.tensor([[3, 7, 0, 5, 1, 6, 2, 4, 9, 8]])
    perm = permutation_mask(rank, torch.ones(1, T, dtype=torch.bool))
    x = ids(1)
    with torch.no_grad():
        for mask_id in (None, 3):
            fast = model(x, perm_mask=perm, mask_token_id=mask_id).logits
            eager = model(x, perm_mask=perm, mask_token_id=mask_id, output_attentions=True)
            assert torch.isfinite(fast).all()
            assert torch.allclose(fast, eager.logits, atol=1e-5)
    if pe == "rope":  # positions reach the query stream through the rotation alone
        with torch.no_grad():
            rotated_out = model(x, perm_mask=perm, mask_token_id=3).logits
            model.trunk.rope_cos.fill_(1.0)
            model.trunk.rope_sin.fill_(0.0)
            assert not torch.allclose(rotated_out, model(x, perm_mask=perm, mask_token_id=3).logits, atol=1e-4)


def test_query_stream_queries_are_rotated_by_their_own_positions() -> None:
    """Layer 0's query-stream weights recomputed: q from the [MASK] start at position i, k from
    the tokens at position j, both rotated, softmax over what the permutation lets i see."""
    model = make_model(pos_encoding="rope")
    rank = torch.tensor([[3, 7, 0, 5, 1, 6, 2, 4, 9, 8]])
    perm = permutation_mask(rank, torch.ones(1, T, dtype=torch.bool))
    x, C, nh, hs = ids(1), 16, 2, 8
    with torch.no_grad():
        out = model(x, perm_mask=perm, mask_token_id=3, output_attentions=True)
        block = model.trunk.blocks[0]
        h = block.ln_1(model.trunk.wte(x))  # (1, T, C): no position table with RoPE
        g = block.ln_1(model.trunk.wte.weight[3].expand(1, T, C))  # (1, T, C): the same start everywhere
        q = block.attn.qkv(g)[..., :C].view(1, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = block.attn.qkv(h)[..., C:2 * C].view(1, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        cos, sin = rope_angles(T, hs)
        scores = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-2, -1) / math.sqrt(hs)
        allowed = ~perm[:, None] & ~torch.eye(T, dtype=torch.bool)  # (B, 1, T, T)
        expected = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1).nan_to_num(0.0)
    assert torch.allclose(out.attentions[0], expected, atol=1e-6)
    assert out.attentions[0][0, 0].std(dim=0).sum() > 0  # rows differ although every query starts the same


def test_model_positions_says_what_each_model_adds() -> None:
    from workbench.models.positions import model_positions
    from workbench.models.rnn import LSTMConfig, RNNLanguageModel

    for kind, table in (("learned", True), ("sinusoidal", True), ("rope", False), ("none", False)):
        pos = model_positions(GPT(GPTConfig(vocab_size=11, n_head=2, n_embd=16, block_size=8, pos_encoding=kind)))
        assert pos.kind == kind and (pos.table is not None) == table
        if table:
            assert tuple(pos.table.shape) == (8, 16)
    assert model_positions(GPT(GPTConfig(vocab_size=11, n_head=2, n_embd=16, pos_encoding="rope"))).head_dim == 8
    torch.testing.assert_close(model_positions(GPT(GPTConfig(vocab_size=11, n_embd=16, block_size=8,
                                                             pos_encoding="sinusoidal"))).table,
                               sinusoidal_positions(8, 16))
    assert model_positions(RNNLanguageModel(LSTMConfig(vocab_size=11))).kind == "none"
