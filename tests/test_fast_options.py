"""The ingredients of a fast recipe, each a config option: QK-norm, relu², zero-initialised
output projections and untied head, and the Muon optimizer (orthogonalised updates for the
hidden matrices, AdamW for the rest)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from workbench.config import ConfigError, TrainConfig
from workbench.models import GPT, GPTConfig
from workbench.models.layers import MLP
from workbench.muon import Muon, muon_param_groups, orthogonalize
from workbench.optim import build_optimizer


def gpt(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=32, block_size=16, **kw))


def conditioned(m: int, n: int, cond: float) -> torch.Tensor:
    """A random m x n matrix whose singular values run from 1 down to 1/cond."""
    k = min(m, n)
    U, _ = torch.linalg.qr(torch.randn(m, k))
    V, _ = torch.linalg.qr(torch.randn(n, k))
    return U @ torch.diag(torch.logspace(-math.log10(cond), 0, k)) @ V.T


@pytest.mark.parametrize("shape", [(16, 16), (8, 32), (48, 12)])
def test_newton_schulz_pushes_every_singular_value_near_one(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    G = conditioned(*shape, cond=100.0)
    Q = orthogonalize(G)
    s = torch.linalg.svdvals(Q)
    assert Q.shape == G.shape
    assert 0.6 < float(s.min()) and float(s.max()) < 1.2  # the quintic's band around 1 (fast, not exact)
    assert torch.allclose(orthogonalize(-G), -Q)  # the direction is kept: U Vᵀ, signs and all


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest() -> None:
    m = gpt(tie_weights=False)
    groups = muon_param_groups(m, weight_decay=0.1, muon_scale=20.0)
    muon = {id(p) for g in groups if g.get("use_muon") for p in g["params"]}
    names = {n for n, p in m.named_parameters() if id(p) in muon}
    assert names == {n for n, _ in m.named_parameters() if n.endswith(("qkv.weight", "proj.weight", "fc.weight"))}
    assert all(g["lr_scale"] == 20.0 for g in groups if g.get("use_muon"))
    adam = [n for n, p in m.named_parameters() if id(p) not in muon]
    assert "lm_head.weight" in adam and "trunk.wte.weight" in adam
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))  # each tensor once


def test_muon_s_adam_groups_step_exactly_as_adamw() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ours = Muon([{"params": list(a.parameters()), "weight_decay": 0.1}], lr=0.01, betas=(0.9, 0.95), eps=1e-10)
    ref = torch.optim.AdamW(b.parameters(), lr=0.01, betas=(0.9, 0.95), eps=1e-10, weight_decay=0.1)
    x = torch.randn(8, 4)
    for _ in range(5):
        for model, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_a_muon_step_moves_a_matrix_by_an_orthogonalised_update() -> None:
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(16, 16))
    w.grad = conditioned(16, 16, cond=100.0)
    before = w.detach().clone()
    Muon([{"params": [w], "use_muon": True}], lr=1.0, momentum=0.0).step()
    s = torch.linalg.svdvals(before - w.detach())
    assert float(s.max() / s.min()) < 2  # every direction moved by about the same amount (the gradient's: 100x apart)


def test_muon_trains_a_gpt_through_the_config() -> None:
    cfg = TrainConfig(optimizer="muon", lr=3e-3, muon_lr=0.02)
    m = gpt(bias=False)
    opt = build_optimizer(m, cfg)
    assert isinstance(opt, Muon) and any(g["use_muon"] for g in opt.param_groups)
    x = torch.randint(0, 40, (8, 16))
    losses = []
    for _ in range(30):
        out = m(x[:, :-1])
        loss = F.cross_entropy(out.logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0
    with pytest.raises(ConfigError, match="muon_lr"):
        TrainConfig(optimizer="muon", muon_lr=0)


def test_qk_norm_gives_the_same_output_on_the_eager_and_sdpa_paths() -> None:
    m = gpt(qk_norm=True, pos_encoding="rope").eval()
    x = torch.randint(0, 40, (2, 16))
    fast = m(x).logits
    eager = m(x, output_attentions=True)
    assert torch.allclose(fast, eager.logits, atol=1e-5)
    assert not torch.allclose(fast, gpt(pos_encoding="rope").eval()(x).logits, atol=1e-3)  # it does change the model


def test_relu2_is_relu_squared() -> None:
    mlp = MLP(8, 0.0, True, activation="relu2")
    x = torch.randn(3, 8)
    assert torch.allclose(mlp(x), mlp.proj(F.relu(mlp.fc(x)) ** 2))


def test_zero_init_starts_from_uniform_predictions_and_needs_an_untied_head() -> None:
    m = gpt(zero_init=True, tie_weights=False)
    logits = m(torch.randint(0, 40, (2, 16))).logits
    assert torch.equal(logits, torch.zeros_like(logits))  # loss = ln(vocab) exactly at step 0
    assert F.cross_entropy(logits.flatten(0, 1), torch.zeros(32, dtype=torch.long)).item() == pytest.approx(math.log(40))
    with pytest.raises(ConfigError, match="needs tie_weights false") as err:
        GPTConfig(zero_init=True)
    assert err.value.field == "zero_init"
    assert GPTConfig(qk_norm=True, activation="relu2", zero_init=True, tie_weights=False).describe().endswith(
        "qk-norm relu2 untied zero-init")


# --- model FLOPs and MFU ------------------------------------------------------------------------

def test_flops_per_token_is_nanogpts_estimate_counted_by_hand() -> None:
    from workbench.flops import flops_per_token
    from workbench.models import GPT, GPTConfig

    # 4L/4H/128, ctx 64, vocab 65, no biases, tied head (gpt-cpu). By hand: per block 2 LayerNorm
    # gains (2*128) + qkv 128*384 + proj 128*128 + fc 128*512 + proj 512*128 = 196,864; x4 =
    # 787,456; + final LayerNorm 128 + token table 65*128 = 8,320 (shared with the head); the
    # position table (64*128) is left out: N = 795,904. 6N = 4,775,424; attention 12*4*128*64 = 393,216.
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False, vocab_size=65))
    assert model.num_parameters(non_embedding=True) == 795_904
    assert flops_per_token(model, 64) == 4_775_424 + 393_216
    # nanoGPT's estimate_mfu for the same shape: 6N + 12*L*H*Q*T with H*Q = C
    assert flops_per_token(model, 32) == 6 * 795_904 + 12 * 4 * 4 * 32 * 32


def test_mfu_is_logged_against_a_given_peak(tiny_cfg, wb_home) -> None:
    from workbench.flops import flops_per_token
    from workbench.pipeline import load_run_model, train
    from workbench.runstore import RunStore

    store = RunStore(wb_home)
    cfg = tiny_cfg(max_steps=10, log_interval=5, peak_tflops=0.5)
    run_id = train(cfg, store, progress=False)
    series = store.metric_series(run_id)
    model, _, run_cfg = load_run_model(store, run_id)
    per_token = flops_per_token(model, run_cfg.seq_len)
    for tps, tflops, util in zip(series["tokens_per_s"][1], series["model_tflops"][1], series["mfu"][1]):
        assert tflops == pytest.approx(tps * per_token / 1e12)
        assert util == pytest.approx(tflops / 0.5)
    # no peak known for a CPU: model_tflops only
    run_id = train(tiny_cfg(max_steps=5, log_interval=5), store, progress=False)
    assert "model_tflops" in store.metric_series(run_id) and "mfu" not in store.metric_series(run_id)


# --- bf16 on the CPU ------------------------------------------------------------------------------

def test_cpu_bf16_attention_runs_in_float32_and_matches_it() -> None:
    from workbench.models.layers import sdpa

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 8, 16, generator=g) for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = sdpa(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
    assert y.dtype == torch.bfloat16  # what the next (autocast) matmul expects
    expected = F.scaled_dot_product_attention(q.bfloat16().float(), k.bfloat16().float(), v.bfloat16().float(),
                                              is_causal=True)
    torch.testing.assert_close(y, expected.bfloat16())  # the float32 kernel on the same inputs, rounded once


def test_a_bf16_autocast_run_on_the_cpu_learns_like_float32(tiny_cfg, wb_home) -> None:
    # bf16 autocast (matmuls in bf16, attention, norms and the loss in float32) with Muon, whose
    # Newton-Schulz then runs in bf16 too: the run learns, and ends near the float32 run's loss
    from workbench.pipeline import train
    from workbench.runstore import RunStore

    store = RunStore(wb_home)
    finals = {}
    for dtype in ("float32", "bfloat16"):
        cfg = tiny_cfg(max_steps=60, eval_interval=60, dtype=dtype, optimizer="muon", lr=3e-3, device="cpu")
        run_id = train(cfg, store, progress=False)
        steps, losses = store.metric_series(run_id)["val/loss"]
        assert losses[-1] < losses[0] - 0.5, (dtype, losses)
        finals[dtype] = losses[-1]
    assert finals["bfloat16"] == pytest.approx(finals["float32"], abs=0.05), finals


@pytest.mark.slow
def test_the_gpu_path_on_the_cpu_compile_and_bf16_autocast_give_the_eager_losses(tiny_cfg, wb_home) -> None:
    # what a CUDA run does by default (torch.compile + bf16 autocast + fused AdamW), checked on the
    # CPU: the compiled model trains and evaluates to the eager model's losses
    from workbench.pipeline import train
    from workbench.runstore import RunStore

    store = RunStore(wb_home)
    curves = {}
    for compile_ in ("off", "on"):
        run_id = train(tiny_cfg(max_steps=12, eval_interval=12, log_interval=4, dtype="bfloat16", compile=compile_,
                                device="cpu"), store, progress=False)
        assert store.get_run(run_id).status == "finished"
        series = store.metric_series(run_id)
        curves[compile_] = series["val/loss"][1] + series["train/loss"][1]
    assert curves["on"] == pytest.approx(curves["off"], abs=2e-3), curves
    assert curves["on"][1] < curves["on"][0] - 0.3  # and it learned
