"""A generic trainer: ``fit -> train_step -> objective.loss``, ``evaluate``, callbacks.

The trainer knows nothing about models or objectives beyond ``objective.make_batch`` and
``objective.loss``; logging to the store, attention snapshots and checkpoints are callbacks.

Determinism: the batch of step ``s`` is drawn from a generator seeded by ``(seed, s)`` and the
dropout RNG is reseeded the same way, so a run resumed from a checkpoint sees exactly the
batches (and losses) it would have seen without the interruption.
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
from .metrics import bits_per_char, perplexity
from .objectives import Objective


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


@dataclass
class TrainState:
    """Where training is; saved in checkpoints so a resume continues from here."""

    step: int = 0
    best_val_loss: float = math.inf
    tokens_seen: int = 0
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
    """Trains ``model`` with ``objective`` on prepared train/val data."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        train_data: Any,
        val_data: Any,
        config: TrainConfig,
        seq_len: int,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
        tokens_per_char: float = 1.0,
        progress: bool | None = None,
    ) -> None:
        self.config = config
        self.objective = objective
        self.train_data = train_data
        self.val_data = val_data
        self.seq_len = seq_len
        self.tokens_per_char = tokens_per_char
        self.callbacks = list(callbacks)
        self.progress = (sys.stderr.isatty() or _in_notebook()) if progress is None else progress
        self.device = resolve_device(config.device)
        self.state = TrainState()
        self.control = TrainControl()

        self.model = model.to(self.device)
        self.optimizer = model.configure_optimizer(  # type: ignore[operator]
            config.lr, config.weight_decay, (config.beta1, config.beta2), self.device.type
        )
        use_bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and self.device.type == "cuda")
        self.autocast_dtype = torch.bfloat16 if use_bf16 else None
        compile_on = config.compile == "on" or (config.compile == "auto" and self.device.type == "cuda")
        self.step_model: nn.Module = torch.compile(self.model) if compile_on else self.model  # type: ignore[assignment]

    # --- one step ------------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _batch(self, step: int) -> Any:
        gen = torch.Generator().manual_seed(step_seed(self.config.seed, step))
        batch = self.objective.make_batch(self.train_data, self.config.batch_size, self.seq_len, gen)
        return batch.to(self.device, non_blocking=True)

    def train_step(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step (``step`` counts from 1). Returns (loss, grad norm), on device."""
        torch.manual_seed(step_seed(self.config.seed, step))  # dropout masks depend only on (seed, step)
        lr = get_lr(step - 1, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self._batch(step)
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
        self.state.tokens_seen += out.num_tokens
        return out.loss.detach(), grad_norm.detach()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean NLL over ``eval_iters`` fixed validation batches -> val/loss, val/ppl, val/bpc."""
        self.model.eval()
        nll, n = 0.0, 0
        for i in range(self.config.eval_iters):
            gen = torch.Generator().manual_seed(step_seed(self.config.seed + 1, i))
            batch = self.objective.make_batch(self.val_data, self.config.batch_size, self.seq_len, gen).to(self.device)
            with self._autocast():
                out = self.objective.loss(self.step_model, batch)
            nll += out.nll_sum
            n += out.num_tokens
        mean_nll = nll / max(1, n)
        return {
            "val/loss": mean_nll,
            "val/ppl": perplexity(mean_nll),
            "val/bpc": bits_per_char(mean_nll, self.tokens_per_char),
        }

    # --- the loop ------------------------------------------------------------------------------

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _run_eval(self) -> None:
        metrics = self.evaluate()
        self.state.last_val = metrics
        if metrics["val/loss"] < self.state.best_val_loss:
            self.state.best_val_loss = metrics["val/loss"]
        self._emit("on_evaluate", metrics)

    def fit(self) -> str:
        """Train until ``max_steps`` or a callback stops it. Returns 'finished' or 'stopped'."""
        cfg = self.config
        self._emit("on_fit_start")
        if self.state.step == 0:
            self._run_eval()  # the untrained model's loss (~ln vocab) anchors the curve
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.state.step, desc="train", unit="step", dynamic_ncols=True)
        status = "finished"
        loss_sum = torch.zeros((), device=self.device)
        steps_in_window, tokens_at_window, t_window = 0, self.state.tokens_seen, time.perf_counter()
        try:
            for step in range(self.state.step + 1, cfg.max_steps + 1):
                if self.control.should_stop:
                    status = "stopped"
                    break
                loss, grad_norm = self.train_step(step)
                self.state.step = step
                loss_sum += loss
                steps_in_window += 1
                if step % cfg.log_interval == 0 or step == cfg.max_steps:
                    elapsed = time.perf_counter() - t_window
                    metrics = {
                        "train/loss": (loss_sum / steps_in_window).item(),
                        "lr": get_lr(step - 1, cfg),
                        "grad_norm": grad_norm.item(),
                        "tokens_per_s": (self.state.tokens_seen - tokens_at_window) / max(elapsed, 1e-9),
                    }
                    if not math.isfinite(metrics["train/loss"]):
                        raise FloatingPointError(
                            f"training loss became {metrics['train/loss']} at step {step}; lower lr (now {cfg.lr})"
                        )
                    self._emit("on_log", metrics)
                    if bar is not None:
                        bar.set_postfix(loss=f"{metrics['train/loss']:.4f}", refresh=False)
                    loss_sum.zero_()
                    steps_in_window, tokens_at_window, t_window = 0, self.state.tokens_seen, time.perf_counter()
                if step % cfg.eval_interval == 0 or step == cfg.max_steps:
                    self._run_eval()
                if bar is not None:
                    bar.update(1)
            else:
                status = "stopped" if self.control.should_stop and self.state.step < cfg.max_steps else "finished"
        except KeyboardInterrupt:
            status = "stopped"
        finally:
            if bar is not None:
                bar.close()
        self._emit("on_fit_end", status)
        return status

    # --- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self, path: str | Path, meta: dict | None = None) -> None:
        state = {"step": self.state.step, "best_val_loss": self.state.best_val_loss, "tokens_seen": self.state.tokens_seen}
        save_checkpoint(path, self.model, self.optimizer, {"trainer_state": state, **(meta or {})})

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


class CheckpointCallback(Callback):
    """Keeps ``best.safetensors`` (lowest val loss) and ``last.safetensors`` (each eval, end)."""

    def __init__(self, ckpt_dir: str | Path, meta: dict | None = None) -> None:
        self.dir = Path(ckpt_dir)
        self.meta = meta or {}
        self._best = math.inf

    def on_fit_start(self, trainer: Trainer) -> None:
        self._best = trainer.state.best_val_loss

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if metrics["val/loss"] < self._best:
            self._best = metrics["val/loss"]
            trainer.save_checkpoint(self.dir / "best.safetensors", {**self.meta, "val": metrics})
        if trainer.state.step > 0:
            trainer.save_checkpoint(self.dir / "last.safetensors", self.meta)

    def on_fit_end(self, trainer: Trainer, status: str) -> None:
        trainer.save_checkpoint(self.dir / "last.safetensors", self.meta)
