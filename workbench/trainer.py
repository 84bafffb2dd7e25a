"""A generic trainer: ``fit -> train_step -> objective.loss``, ``evaluate``, callbacks.

The trainer knows nothing about models or objectives beyond ``objective.make_batch``,
``objective.loss`` and ``objective.metrics``; the optimizer comes from ``optim.build_optimizer``;
logging to the store, attention snapshots and checkpoints are callbacks.

The hot loop never waits for the device: losses, gradient norms and a "still finite" flag stay
on it and are read at log steps and before evaluations (and checkpoints) only. A non-finite
loss or gradient ends the run with :class:`DivergenceError` before anything evaluates or saves
the broken weights, so the last checkpoint on disk is the last good one.

Determinism: the batch of step ``s`` is drawn from a generator seeded by ``(seed, s)`` and the
dropout RNG is reseeded the same way, so a run resumed from a checkpoint sees exactly the
batches (and losses) it would have seen without the interruption.

Families fitted by counting rather than by gradients (n-gram models) do not use this loop:
``pipeline.run_training`` gives them ``counting.CountingTrainer``, which scores them with the
same :func:`evaluate` on the same :class:`EvalSet` and reports through the same callbacks
(store logger, checkpoints), so they appear wherever a run does.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .distributed import SINGLE, Dist, all_true, broadcast, check_batch, mean, shard
from .flops import flops_per_token, mfu, peak_tflops
from .models.base import eval_mode
from .objectives import EvalSet, Objective
from .optim import build_optimizer


class DivergenceError(FloatingPointError):
    """Training produced a non-finite loss or gradient; the message names the likely fix."""


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr``.

    ``step`` counts from 0 (the first optimizer step uses ``get_lr(0)``).

    >>> cfg = TrainConfig(max_steps=100, lr=1.0, min_lr=0.0, warmup_steps=10)
    >>> get_lr(0, cfg), get_lr(9, cfg), get_lr(10, cfg), round(get_lr(55, cfg), 3), get_lr(100, cfg)
    (0.1, 1.0, 1.0, 0.5, 0.0)
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return cfg.min_lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)


def out_of_time(t_start: float, cfg: TrainConfig) -> bool:
    """Has the run used its wall-clock budget (``max_time_s``; 0 = none) since ``t_start``?"""
    return cfg.max_time_s > 0 and time.perf_counter() - t_start >= cfg.max_time_s


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; asking for a missing device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device: 'mps' was asked for but is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def step_seed(seed: int, step: int) -> int:
    """Seed of step ``step``'s batch and dropout, independent of everything before it."""
    return (seed * 1_000_003 + step) % (2**63 - 1)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
    except ImportError:
        return False


@torch.no_grad()
def evaluate(
    model: nn.Module,
    objective: Objective,
    eval_set: EvalSet,
    autocast: Any = contextlib.nullcontext,
) -> dict[str, float]:
    """Score ``model`` on every batch of ``eval_set``: sums of the objective's ``LossOutput.sums``,
    turned into ``val/<metric>`` by ``objective.metrics`` (one device sync, at the end).

    Batches must already be on the model's device.
    """
    totals: dict[str, torch.Tensor] = {}
    with eval_mode(model):
        for batch in eval_set.batches:
            with autocast():
                out = objective.loss(model, batch)
            for k, v in out.sums.items():  # float32 on the device (MPS has no float64); counts stay integers
                v = v.float() if v.is_floating_point() else v
                totals[k] = totals[k] + v if k in totals else v
    values = {k: float(v) for k, v in totals.items()}
    return {f"val/{k}": v for k, v in objective.metrics(values).items()}


@dataclass
class TrainState:
    """Where training is; saved in checkpoints so a resume continues from here."""

    step: int = 0
    best_val_loss: float = math.inf
    """Best value of the objective's primary validation metric so far (lower is better)."""
    tokens_seen: int = 0
    """Input token positions processed by training steps."""
    last_val: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainControl:
    """Set by callbacks to steer the loop (TrainerCallback.control in HF terms)."""

    should_stop: bool = False


class Callback:
    """Hooks the trainer calls; override what you need. ``trainer.state`` / ``trainer.control``."""

    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_log(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: Trainer, status: str) -> None: ...


class Trainer:
    """Trains ``model`` with ``objective`` on prepared train data, scoring it on ``eval_set``."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train_data: Any,
        eval_set: EvalSet,
        config: TrainConfig,
        seq_len: int,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
        optimizer: torch.optim.Optimizer | None = None,
        progress: bool | None = None,
        dist: Dist = SINGLE,
    ) -> None:
        self.config = config
        self.dist = dist
        check_batch(config.batch_size, dist.world)
        self.objective = objective
        self.train_data = train_data
        self.seq_len = seq_len
        self.callbacks = list(callbacks)
        self.progress = (sys.stderr.isatty() or _in_notebook()) if progress is None else progress
        self.device = resolve_device(config.device)
        if dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", dist.local_rank)  # one GPU per process
        self.state = TrainState()
        self.control = TrainControl()

        self.model = model.to(self.device)
        self.eval_set = EvalSet([b.to(self.device) for b in eval_set.batches])
        self.optimizer = optimizer or build_optimizer(self.model, config, self.device.type)
        use_bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        compile_on = config.compile == "on" or (config.compile == "auto" and self.device.type == "cuda")
        self.eval_model: nn.Module = torch.compile(self.model) if compile_on else self.model  # type: ignore[assignment]
        self.step_model: nn.Module = self.eval_model
        if dist.enabled:  # gradients averaged over the processes during backward
            from torch.nn.parallel import DistributedDataParallel

            self.step_model = DistributedDataParallel(
                self.eval_model, device_ids=[dist.local_rank] if self.device.type == "cuda" else None)
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        self._flops_per_token = flops_per_token(self.model, seq_len)  # for model_tflops and MFU in the log
        self._peak_tflops = peak_tflops(self.device, config.peak_tflops)
        self._checked_step = 0
        self.last_saved_step = 0
        self._padding: list[float] = []  # padding fractions of the log window's batches (variable-length ones)

    # --- one step ------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _batch(self, step: int) -> Any:
        gen = torch.Generator().manual_seed(step_seed(self.config.seed, step))
        batch = self.objective.make_batch(self.train_data, self.config.batch_size, self.seq_len, gen)
        return shard(batch, self.dist).to(self.device, non_blocking=True)  # this process's slice of the global batch

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step (``step`` counts from 1). Returns (loss, grad norm), on device."""
        torch.manual_seed(step_seed(self.config.seed, step))  # dropout masks depend only on (seed, step)
        lr = get_lr(step - 1, self.config)
        for group in self.optimizer.param_groups:  # a group may run at a multiple (a fine-tuning head's)
            group["lr"] = lr * group.get("lr_scale", 1.0)
        batch = self._batch(step)
        if getattr(batch, "padding_fraction", None) is not None:  # batches padded to their longest row
            self._padding.append(float(batch.padding_fraction))
        self.model.train()
        with self._autocast():
            out = self.objective.loss(self.step_model, batch)
        out.loss.backward()
        if self.config.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        else:
            grad_norm = torch.zeros((), device=self.device)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.tokens_seen += batch.num_input_tokens * self.dist.world  # every process's slice
        loss = out.loss.detach()
        self._finite &= torch.isfinite(loss) & torch.isfinite(grad_norm)  # stays on the device
        return loss, grad_norm.detach()

    def check_finite(self) -> None:
        """Raise :class:`DivergenceError` if any step since the last check had a non-finite loss or
        gradient (one device sync; called at log steps, before evaluations and at the end)."""
        if not bool(all_true(self._finite, self.dist)):  # every process stops together
            kept = (f"The last checkpoint before it (step {self.last_saved_step}) is kept." if self.last_saved_step
                    else "No trained checkpoint had been saved yet.")
            raise DivergenceError(
                f"training diverged: the loss or the gradient became NaN or infinite between steps "
                f"{self._checked_step + 1} and {self.state.step}. The usual cause is a learning rate that is "
                f"too high: lower lr (now {self.config.lr:g}, e.g. to {self.config.lr / 10:.1g}), or raise "
                f"warmup_steps (now {self.config.warmup_steps}). {kept}"
            )
        self._checked_step = self.state.step

    def evaluate(self) -> dict[str, float]:
        """The objective's validation metrics on the fixed :class:`EvalSet` (``val/loss``, ...)."""
        metrics = evaluate(self.eval_model, self.objective, self.eval_set, self._autocast)
        primary = f"val/{self.objective.primary_metric}"
        bad = [k for k, v in metrics.items() if math.isnan(v)] + ([primary] if math.isinf(metrics[primary]) else [])
        if bad:
            raise DivergenceError(
                f"validation {', '.join(bad)} is {metrics[bad[0]]} at step {self.state.step}: the weights are no "
                f"longer usable. Lower lr (now {self.config.lr:g}) and start again; the last good checkpoint is kept."
            )
        return metrics

    # --- the loop ------------------------------------------------------------------------------

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _run_eval(self) -> None:
        self.check_finite()
        metrics = self.evaluate()
        self.state.last_val = metrics
        primary = metrics[f"val/{self.objective.primary_metric}"]
        if primary < self.state.best_val_loss:
            self.state.best_val_loss = primary
        self._emit("on_evaluate", metrics)

    def _flops_metrics(self, tokens_per_s: float) -> dict[str, float]:
        """``model_tflops`` (all processes together) and ``mfu`` (per device, when its peak is known)."""
        if not self._flops_per_token:
            return {}
        out = {"model_tflops": tokens_per_s * self._flops_per_token / 1e12}
        utilisation = mfu(tokens_per_s / self.dist.world, self._flops_per_token, self._peak_tflops)
        if utilisation is not None:
            out["mfu"] = utilisation
        return out

    def fit(self) -> str:
        """Train until ``max_steps`` or a callback stops it. Returns 'finished' or 'stopped'.

        ``tokens_per_s`` counts input tokens of training steps over the time spent in them:
        evaluations, attention snapshots, checkpoints and store writes are left out.
        """
        cfg = self.config
        t_fit = time.perf_counter()
        self._emit("on_fit_start")
        self._checked_step = self.state.step
        if self.state.step == 0:
            self._run_eval()  # the untrained model's loss (~ln vocab) anchors the curve
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.state.step, desc="train", unit="step", dynamic_ncols=True)
        status = "finished"
        loss_sum = torch.zeros((), device=self.device)
        steps_in_window, tokens_at_window = 0, self.state.tokens_seen
        t_window = time.perf_counter()
        try:
            for step in range(self.state.step + 1, cfg.max_steps + 1):
                if self.control.should_stop:
                    status = "stopped"
                    break
                loss, grad_norm = self.train_step(step)
                self.state.step = step
                loss_sum += loss
                steps_in_window += 1
                last = step == cfg.max_steps or out_of_time(t_fit, cfg)
                if self.dist.enabled and cfg.max_time_s:  # rank 0's clock decides for all
                    last = bool(broadcast(last, self.dist))
                is_log = step % cfg.log_interval == 0 or last
                is_eval = step % cfg.eval_interval == 0 or last
                if is_log:
                    self.check_finite()  # syncs: the window's steps have all run
                    elapsed = time.perf_counter() - t_window
                    tokens_per_s = (self.state.tokens_seen - tokens_at_window) / max(elapsed, 1e-9)
                    metrics = {
                        "train/loss": mean(loss_sum / steps_in_window, self.dist).item(),
                        "lr": get_lr(step - 1, cfg),
                        "grad_norm": grad_norm.item(),
                        "tokens_per_s": tokens_per_s,
                    }
                    metrics.update(self._flops_metrics(tokens_per_s))
                    if self._padding:  # how much of each batch was padding (seq2seq pairs: see bucketing)
                        metrics["padding_fraction"] = sum(self._padding) / len(self._padding)
                        self._padding.clear()
                    self._emit("on_log", metrics)
                    if self.dist.enabled:  # a stop request reaches rank 0's store logger: tell every process
                        self.control.should_stop = bool(broadcast(self.control.should_stop, self.dist))
                    if bar is not None:
                        bar.set_postfix(loss=f"{metrics['train/loss']:.4f}", refresh=False)
                    loss_sum.zero_()
                    steps_in_window, tokens_at_window = 0, self.state.tokens_seen
                if is_eval:
                    if not is_log:  # close the timing window at a synced point, as a log step does
                        self.check_finite()
                        paused = time.perf_counter()
                    self._run_eval()
                    if not is_log:
                        t_window += time.perf_counter() - paused  # evaluation time is not training time
                if is_log:
                    t_window = time.perf_counter()  # after the callbacks: store writes are not training time
                if bar is not None:
                    bar.update(1)
                if last:
                    break
            else:
                status = "stopped" if self.control.should_stop and self.state.step < cfg.max_steps else "finished"
            self.check_finite()
        except KeyboardInterrupt:
            status = "stopped"
            self.check_finite()  # a diverged run is 'failed', even when interrupted
        finally:
            if bar is not None:
                bar.close()
        self._emit("on_fit_end", status)
        return status

    # --- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self, path: str | Path, meta: dict | None = None) -> None:
        state = {"step": self.state.step, "best_val_loss": self.state.best_val_loss, "tokens_seen": self.state.tokens_seen}
        save_checkpoint(path, self.model, self.optimizer, {"trainer_state": state, **(meta or {})})
        self.last_saved_step = self.state.step

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore weights, optimizer and step from a checkpoint written by :meth:`save_checkpoint`."""
        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        st = ckpt.meta.get("trainer_state", {})
        self.state.step = int(st.get("step", 0))
        self.state.best_val_loss = float(st.get("best_val_loss", math.inf))
        self.state.tokens_seen = int(st.get("tokens_seen", 0))
        self.last_saved_step = self.state.step


class CheckpointCallback(Callback):
    """Keeps ``best.safetensors`` (best primary val metric) and ``last.safetensors`` (each eval, end)."""

    def __init__(self, ckpt_dir: str | Path, meta: dict | None = None) -> None:
        self.dir = Path(ckpt_dir)
        self.meta = meta or {}
        self._best = math.inf

    def on_fit_start(self, trainer: Trainer) -> None:
        self._best = trainer.state.best_val_loss

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        primary = metrics[f"val/{trainer.objective.primary_metric}"]
        if primary < self._best:
            self._best = primary
            trainer.save_checkpoint(self.dir / "best.safetensors", {**self.meta, "val": metrics})
        if trainer.state.step > 0:
            trainer.save_checkpoint(self.dir / "last.safetensors", self.meta)

    def on_fit_end(self, trainer: Trainer, status: str) -> None:
        trainer.save_checkpoint(self.dir / "last.safetensors", self.meta)
