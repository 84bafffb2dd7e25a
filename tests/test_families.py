"""Every registered model family × compatible objective: refused with the reason when
incompatible, learns a fixed batch, resumes to the same next loss, runs end to end."""

from __future__ import annotations

import re

import pytest
import torch

from workbench import apply_overrides, get_preset
from workbench.config import ConfigError
from workbench.experiment import build_experiment
from workbench.models import FAMILIES
from workbench.objectives import OBJECTIVES
from workbench.counting import CountingTrainer
from workbench.trainer import Trainer

TINY_MODEL = {
    "gpt": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
    "bert": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
    "lstm": {"n_layer": 1, "n_embd": 64, "seq_len": 32},
    "gru": {"n_layer": 1, "n_embd": 64, "seq_len": 32},
    "ngram": {"n": 3, "seq_len": 32},
    "seq2seq": {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32},
}
"""A few-second setting of every family (a family added without one fails the test below)."""

PAIRS = [(a, o) for a in FAMILIES for o in OBJECTIVES if OBJECTIVES[o].needs <= FAMILIES[a].config_cls.capabilities]
INCOMPATIBLE = [(a, o) for a in FAMILIES for o in OBJECTIVES if (a, o) not in PAIRS]


def tiny(arch: str, objective: str, **more) -> object:
    base = {"arch": arch, "objective": objective, "max_steps": 20, "eval_interval": 10, "eval_chars": 2048,
            "log_interval": 5, "batch_size": 8, "warmup_steps": 2}
    return apply_overrides(get_preset("gpt-nano"), {**base, **TINY_MODEL[arch], **more})


def test_every_family_has_a_tiny_setting() -> None:
    assert set(FAMILIES) <= set(TINY_MODEL)


@pytest.mark.parametrize("arch,objective", INCOMPATIBLE)
def test_incompatible_pairs_are_refused_with_the_reason(arch: str, objective: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{objective} needs a model that is")) as err:
        tiny(arch, objective)
    assert err.value.field == "objective"


def counts(arch: str) -> bool:
    """Fitted by counting (n-gram): no optimizer, a refit instead of a gradient step."""
    return "counting" in FAMILIES[arch].config_cls.capabilities


def _trainer(exp, steps: int) -> Trainer | CountingTrainer:
    cfg = exp.config.train
    cfg = type(cfg)(**{**cfg.__dict__, "max_steps": steps})
    cls = CountingTrainer if counts(exp.config.model.arch) else Trainer
    return cls(exp.model, exp.objective, exp.train_data, exp.eval_set, cfg, exp.config.seq_len, progress=False)


@pytest.mark.parametrize("arch,objective", PAIRS)
def test_every_pair_learns_a_fixed_batch(arch: str, objective: str) -> None:
    torch.manual_seed(0)
    exp = build_experiment(tiny(arch, objective))
    batch = exp.objective.make_batch(exp.train_data, 8, exp.config.seq_len, torch.Generator().manual_seed(0))
    if counts(arch):  # learning is counting: the batch's own text, then its loss
        before = exp.objective.loss(exp.model, batch).loss.item()
        exp.model.fit(torch.cat([batch.input_ids, batch.labels[:, -1:]], 1).flatten())
        after = exp.objective.loss(exp.model, batch).loss.item()
        assert after < 0.6 * before, (arch, objective, before, after)
        return
    opt = torch.optim.Adam(exp.model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss = exp.objective.loss(exp.model, batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], (arch, objective, losses[0], losses[-1])


@pytest.mark.parametrize("arch,objective", PAIRS)
def test_every_pair_resumes_to_the_same_next_loss(arch: str, objective: str, tmp_path) -> None:
    exp = build_experiment(tiny(arch, objective))
    t = _trainer(exp, 20)
    if counts(arch):  # the next evaluation after a resume equals the uninterrupted one
        for s in range(1, 6):
            t.train_step(s)
        t.state.step = 5
        t.refit()
        at_5 = t.evaluate()
        t.save_checkpoint(tmp_path / "last.safetensors")
        t.train_step(6)
        t.refit()
        expected = t.evaluate()
        t2 = _trainer(build_experiment(tiny(arch, objective)), 20)
        t2.load_checkpoint(tmp_path / "last.safetensors")
        assert t2.evaluate() == at_5 and t2.state.tokens_seen == 5 * 8 * 32  # the saved counts
        t2.train_step(6)
        t2.refit()
        assert t2.evaluate() == expected
        return
    for s in range(1, 6):
        t.train_step(s)
    t.state.step = 5
    t.save_checkpoint(tmp_path / "last.safetensors")
    expected = [t.train_step(s)[0].item() for s in (6, 7)]

    fresh = build_experiment(tiny(arch, objective, seed=999))  # other initial weights: the checkpoint must replace them
    t2 = _trainer(fresh, 20)
    t2.config = t.config
    t2.load_checkpoint(tmp_path / "last.safetensors")
    assert [t2.train_step(s)[0].item() for s in (6, 7)] == expected


@pytest.mark.parametrize("arch,objective", PAIRS)
def test_every_pair_runs_end_to_end(arch: str, objective: str, wb_home) -> None:
    from workbench.generate import sample_text
    from workbench.pipeline import attention_snapshots, load_run_model, train
    from workbench.runstore import RunStore

    store = RunStore()
    run_id = train(tiny(arch, objective), store)
    info = store.get_run(run_id)
    assert info.status == "finished", info.error
    series = store.metric_series(run_id)
    assert len(series["val/loss"][0]) == 3  # steps 0, 10, 20
    if objective != "nsp":  # every objective that predicts tokens is on the comparable axis (NSP predicts a label)
        assert "val/bpc" in series
    if "mlm" in objective:
        assert "val/acc" in series  # masked-token accuracy next to the loss
    if "nsp" in objective:
        assert "val/nsp_acc" in series
    has_attention = "attention" in FAMILIES[arch].config_cls.capabilities
    assert bool(attention_snapshots(store, run_id)) == has_attention
    model, tok, _ = load_run_model(store, run_id, which="last")
    if "causal" in FAMILIES[arch].config_cls.capabilities:
        assert sample_text(model, tok, "KING", max_new_tokens=10, seed=0).startswith("KING")
    else:
        with pytest.raises(ValueError, match="does not continue text"):
            sample_text(model, tok, "KING", max_new_tokens=10, seed=0)

