from __future__ import annotations

import math

import pytest
import torch

from workbench.checkpoint import load_checkpoint
from workbench.config import TrainConfig
from workbench.experiment import build_experiment
from workbench.models import GPTConfig, build_model
from workbench.objectives import Batch, CausalLM, EvalSet
from workbench.optim import build_optimizer, param_groups
from workbench.trainer import Callback, CheckpointCallback, DivergenceError, Trainer, get_lr


def test_get_lr_warmup_then_cosine() -> None:
    cfg = TrainConfig(max_steps=110, lr=1e-3, min_lr=1e-4, warmup_steps=10)
    lrs = [get_lr(s, cfg) for s in range(110)]
    assert lrs[0] == 1e-4 and lrs[9] == 1e-3  # linear warm-up
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then monotone decay
    assert lrs[-1] > 1e-4 and get_lr(110, cfg) == 1e-4


def _one_window_data(vocab: int = 20, T: int = 32):
    torch.manual_seed(0)
    stream = torch.randint(0, vocab, (T + 1,))  # exactly one window
    batch = Batch(input_ids=stream[None, :-1], labels=stream[None, 1:])
    return stream, EvalSet([batch])


@pytest.mark.parametrize("optimizer,lr", [("adamw", 3e-3), ("adam", 3e-3), ("sgd", 0.5)])
def test_overfitting_one_batch_drives_loss_near_zero(optimizer: str, lr: float) -> None:
    stream, eval_set = _one_window_data()
    model = build_model(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=20))
    cfg = TrainConfig(max_steps=150, batch_size=4, optimizer=optimizer, lr=lr, min_lr=lr, warmup_steps=0,
                      weight_decay=0.0, eval_interval=1000, log_interval=1)
    losses: list[float] = []

    class Record(Callback):
        def on_log(self, trainer, metrics):
            losses.append(metrics["train/loss"])

    trainer = Trainer(model, CausalLM(), stream, eval_set, cfg, seq_len=32, callbacks=[Record()], progress=False)
    assert type(trainer.optimizer).__name__ == {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}[optimizer]
    trainer.fit()
    assert losses[0] > 2.5  # ~ln(20) = 3.0 before learning
    assert losses[-1] < 0.1


def test_optimizer_groups_decay_matrices_only_and_count_tied_weights_once() -> None:
    model = build_model(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))
    decay, no_decay = param_groups(model, 0.1)
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == model.num_parameters()  # lm_head is wte: counted once
    opt = build_optimizer(model, TrainConfig(optimizer="adam", weight_decay=0.1))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_a_group_with_an_lr_scale_follows_the_schedule_at_that_multiple(tiny_cfg) -> None:
    """A fine-tuning head learns at a multiple of the trunk's rate, warm-up and decay included."""
    from workbench.experiment import build_experiment
    from workbench.trainer import get_lr

    exp = build_experiment(tiny_cfg())
    matrices = [p for p in exp.model.parameters() if p.dim() >= 2]
    others = [p for p in exp.model.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": others, "weight_decay": 0.0, "lr_scale": 10.0}]
    cfg = exp.config.train
    opt = build_optimizer(exp.model, cfg, groups=groups)
    trainer = Trainer(exp.model, exp.objective, exp.train_data, exp.eval_set, cfg, exp.config.seq_len,
                      optimizer=opt, progress=False)
    for step in (1, 2, cfg.max_steps):
        trainer.train_step(step)
        base = get_lr(step - 1, cfg)
        assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx([base, 10 * base])


def _trainer(exp, steps: int, callbacks=(), **overrides) -> Trainer:
    cfg = exp.config.train
    cfg = type(cfg)(**{**cfg.__dict__, "max_steps": steps, **overrides})
    return Trainer(exp.model, exp.objective, exp.train_data, exp.eval_set, cfg, exp.config.seq_len,
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
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["best.safetensors", "last.safetensors"]


def test_untrained_validation_loss_is_near_uniform(tiny_cfg) -> None:
    exp = build_experiment(tiny_cfg())
    m = _trainer(exp, 5).evaluate()
    assert set(m) == {"val/loss", "val/ppl", "val/bpc"}
    assert abs(m["val/loss"] - math.log(exp.tokenizer.vocab_size)) < 0.5


def test_the_validation_set_is_fixed_by_the_corpus(tiny_cfg) -> None:
    """Runs that differ in seed and batch size are scored on the same windows; a different context
    scores the same text (the same tokens are predicted, each once)."""
    def labels(exp):
        return sorted(t for b in exp.eval_set.batches for row in b.labels.tolist() for t in row if t != -100)

    base = build_experiment(tiny_cfg())
    other = build_experiment(tiny_cfg(seed=7, batch_size=3))
    assert torch.equal(torch.cat([b.input_ids for b in base.eval_set.batches]),
                       torch.cat([b.input_ids for b in other.eval_set.batches]))
    shorter = build_experiment(tiny_cfg(block_size=16))
    assert labels(shorter) == labels(base)
    assert sum(len(b.labels) for b in shorter.eval_set.batches) > sum(len(b.labels) for b in base.eval_set.batches)


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


def test_a_diverging_run_stops_before_evaluating_or_saving_broken_weights(tiny_cfg, tmp_path) -> None:
    exp = build_experiment(tiny_cfg(max_steps=40, eval_interval=10, log_interval=5))
    events: list[tuple[str, int]] = []

    class Record(Callback):
        def on_log(self, trainer, metrics):
            events.append(("log", trainer.state.step))

        def on_evaluate(self, trainer, metrics):
            events.append(("eval", trainer.state.step))

    t = _trainer(exp, 40, [Record(), CheckpointCallback(tmp_path / "ckpt")], log_interval=5, eval_interval=10)
    real_loss = t.objective.loss

    def poisoned(model, batch):  # from step 13 on, the loss is NaN (as with an lr far too high)
        out = real_loss(model, batch)
        if model.training and t.state.step >= 12:
            out.loss = out.loss * float("nan")
        return out

    t.objective.loss = poisoned
    with pytest.raises(DivergenceError, match=r"between steps 11 and 15.*lower lr") as err:
        t.fit()
    assert "step 10" in str(err.value)  # names the checkpoint that is kept
    assert events == [("eval", 0), ("log", 5), ("log", 10), ("eval", 10)]  # nothing logged or scored after
    ckpt = load_checkpoint(tmp_path / "ckpt" / "last.safetensors")
    assert ckpt.meta["trainer_state"]["step"] == 10
    assert all(torch.isfinite(v).all() for v in ckpt.model_state.values())


def test_tokens_per_second_leaves_out_evaluation_and_logging(tiny_cfg, monkeypatch) -> None:
    """On a clock the test drives: each training step takes 10 ms, each evaluation and each log
    callback (store writes) 100 s. The reported throughput must be that of the steps alone."""
    from types import SimpleNamespace

    import workbench.trainer as trainer_module

    clock = [0.0]
    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    exp = build_experiment(tiny_cfg(max_steps=20))
    rates: list[float] = []

    class SlowViews(Callback):
        def on_log(self, trainer, metrics):
            rates.append(metrics["tokens_per_s"])
            clock[0] += 100.0

        def on_evaluate(self, trainer, metrics):
            clock[0] += 100.0

    t = _trainer(exp, 20, [SlowViews()], log_interval=4, eval_interval=10)  # step 10 evaluates, logs nothing
    real_step = t.train_step

    def timed_step(step):
        clock[0] += 0.01
        return real_step(step)

    t.train_step = timed_step
    t.fit()
    assert rates == pytest.approx([4 * 8 * 32 / 0.04] * 5)  # 25,600 tokens/s in every window


def test_evaluation_windows_of_a_paragraph_file_are_full_length(tiny_cfg, tmp_path) -> None:
    text = "\n\n".join(f"Speaker {i}:\n" + "words and more words " * 4 for i in range(2000))
    path = tmp_path / "paras.txt"
    path.write_text(text, encoding="utf-8")
    exp = build_experiment(tiny_cfg(corpus=str(path), eval_chars=8192))  # 2 passages of 4096 characters
    rows = torch.cat([b.labels for b in exp.eval_set.batches])
    full = (rows != -100).sum(dim=1)
    assert (full == 32).sum() >= len(rows) - 2  # only each passage's last window is short
    assert int((rows != -100).sum()) == 8192 - 2  # every character but each passage's first is scored
