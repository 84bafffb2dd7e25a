from __future__ import annotations

import math

import torch

from workbench.checkpoint import load_checkpoint
from workbench.config import ModelConfig, TrainConfig
from workbench.models import build_model
from workbench.objectives import CausalLM
from workbench.pipeline import build_experiment
from workbench.trainer import Callback, CheckpointCallback, Trainer, get_lr


def test_get_lr_warmup_then_cosine() -> None:
    cfg = TrainConfig(max_steps=110, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    lrs = [get_lr(s, cfg) for s in range(110)]
    assert lrs[0] == 1e-4 and lrs[9] == 1e-3  # linear warm-up
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then monotone decay
    assert lrs[-1] > 1e-4 and get_lr(110, cfg) == 1e-4


def test_overfitting_one_batch_drives_loss_near_zero() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=20))
    data = CausalLM().prepare(torch.randint(0, 20, (33,)).tolist())  # exactly one window
    cfg = TrainConfig(max_steps=150, batch_size=4, lr=3e-3, min_lr=3e-3, warmup_steps=0, weight_decay=0.0,
                      eval_interval=1000, eval_iters=1, log_interval=1)
    losses: list[float] = []

    class Record(Callback):
        def on_log(self, trainer, metrics):
            losses.append(metrics["train/loss"])

    Trainer(model, CausalLM(), data, data, cfg, seq_len=32, callbacks=[Record()], progress=False).fit()
    assert losses[0] > 2.5  # ~ln(20) = 3.0 before learning
    assert losses[-1] < 0.05


def _trainer(exp, steps: int, callbacks=()) -> Trainer:
    cfg = exp.config.train
    cfg = type(cfg)(**{**cfg.__dict__, "max_steps": steps})
    return Trainer(exp.model, exp.objective, exp.train_data, exp.val_data, cfg, exp.config.seq_len,
                   callbacks=list(callbacks), progress=False)


def test_same_seed_same_losses(tiny_cfg) -> None:
    runs = []
    for _ in range(2):
        exp = build_experiment(tiny_cfg(max_steps=10, dropout=0.1))
        t = _trainer(exp, 10)
        runs.append([t.train_step(s)[0].item() for s in range(1, 6)])
    assert runs[0] == runs[1]


def test_checkpoint_resumes_to_the_same_next_loss(tiny_cfg, tmp_path) -> None:
    cfg = tiny_cfg(max_steps=20, dropout=0.1)  # dropout too: its masks must be reproduced
    exp = build_experiment(cfg)
    t = _trainer(exp, 20)
    for s in range(1, 11):
        t.train_step(s)
    t.state.step = 10
    t.save_checkpoint(tmp_path / "last.safetensors")
    expected = [t.train_step(s)[0].item() for s in (11, 12)]

    fresh = build_experiment(tiny_cfg(max_steps=20, dropout=0.1, seed=999))  # different init on purpose
    t2 = _trainer(fresh, 20)
    t2.config = t.config  # same seed for batches
    t2.load_checkpoint(tmp_path / "last.safetensors")
    assert t2.state.step == 10
    got = [t2.train_step(s)[0].item() for s in (11, 12)]
    assert got == expected


def test_checkpoint_files_are_safetensors_with_optimizer_state(tiny_cfg, tmp_path) -> None:
    exp = build_experiment(tiny_cfg(max_steps=20))
    t = _trainer(exp, 20, [CheckpointCallback(tmp_path / "ckpt")])
    t.fit()
    best = tmp_path / "ckpt" / "best.safetensors"
    last = tmp_path / "ckpt" / "last.safetensors"
    assert best.exists() and last.exists()
    assert best.read_bytes()[8:9] == b"{"  # safetensors: 8-byte header length, then JSON
    ckpt = load_checkpoint(last)
    assert ckpt.meta["trainer_state"]["step"] == 20
    assert "lm_head.weight" in ckpt.model_state  # tied weight restored from its alias
    assert ckpt.optimizer_state is not None and len(ckpt.optimizer_state["state"]) > 0
    assert not list((tmp_path / "ckpt").glob("*.tmp"))  # atomic writes leave no temp files


def test_evaluation_reports_ppl_and_bpc(tiny_cfg) -> None:
    exp = build_experiment(tiny_cfg())
    t = _trainer(exp, 5)
    m = t.evaluate()
    assert m["val/ppl"] == math.exp(m["val/loss"])
    assert abs(m["val/bpc"] - m["val/loss"] / math.log(2)) < 1e-9  # char tokenizer: 1 token per char
    assert abs(m["val/loss"] - math.log(exp.tokenizer.vocab_size)) < 0.5  # untrained ~ uniform


def test_stop_from_a_callback_ends_as_stopped(tiny_cfg) -> None:
    exp = build_experiment(tiny_cfg(max_steps=50))

    class StopAt(Callback):
        def on_log(self, trainer, metrics):
            if trainer.state.step >= 10:
                trainer.control.should_stop = True

    t = _trainer(exp, 50, [StopAt()])
    assert t.fit() == "stopped"
    assert t.state.step == 10


def test_training_lowers_validation_loss(tiny_cfg) -> None:
    exp = build_experiment(tiny_cfg(max_steps=60, lr=3e-3))
    vals: list[float] = []

    class Record(Callback):
        def on_evaluate(self, trainer, metrics):
            vals.append(metrics["val/loss"])

    _trainer(exp, 60, [Record()]).fit()
    assert vals[-1] < vals[0] - 0.8
