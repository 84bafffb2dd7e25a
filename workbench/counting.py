"""Training for families fitted by counting (n-gram models): no optimizer, the same run.

A counting model has no gradients, but it is still a normal run: the same store, the same
callbacks (store logger, checkpoints), the same :func:`trainer.evaluate` on the same
:class:`EvalSet`, so it sits on the Monitor and Runs pages beside the neural models.

What a step means here: step ``s`` reads the next ``batch_size x seq_len`` tokens of the
training stream, *in order*, so "tokens seen" means the same thing as for a neural run (which
reads that many per step at random offsets). Each token is counted once: when the split runs
out, the run ends (finished) even if ``max_steps`` is larger. At every evaluation the model is
refitted on everything read so far (:meth:`NGramLM.fit` is a pure function of that prefix, so a
resumed run gets exactly the counts it would have had) and logs:

- ``train/loss``: the mean NLL of a batch of windows drawn from the tokens counted so far (the
  model has seen them: the gap to ``val/loss`` is the n-gram's memorisation);
- ``tokens_per_s``: tokens counted per second of fitting (a refit counts the whole prefix);
- the objective's ``val/*`` metrics.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .objectives import EvalSet, Objective
from .trainer import Callback, TrainControl, TrainState, evaluate, out_of_time, step_seed


class CountingTrainer:
    """Fits a counting model step by step over the training stream (see the module docstring).

    It offers what the pipeline and the callbacks use of :class:`trainer.Trainer`: ``state``,
    ``control``, ``model``, ``objective``, ``device``, ``fit``, ``evaluate`` and checkpoints.
    """

    def __init__(
        self,
        model: Any,
        objective: Objective,
        train_data: Any,
        eval_set: EvalSet,
        config: TrainConfig,
        seq_len: int,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
        progress: bool | None = None,
    ) -> None:
        if not (isinstance(train_data, torch.Tensor) and train_data.dim() == 1):
            raise ValueError(f"a {model.config.arch} model is fitted by counting a token stream; objective "
                             f"{objective.name!r} does not give one: use causal_lm")
        self.model = model
        self.objective = objective
        self.train_data = train_data
        self.config = config
        self.seq_len = seq_len
        self.callbacks = list(callbacks)
        self.progress = progress
        self.device = torch.device("cpu")  # counting is index arithmetic: the CPU does it well
        self.eval_set = EvalSet([b.to(self.device) for b in eval_set.batches])
        self.state = TrainState()
        self.control = TrainControl()
        self.last_saved_step = 0
        self.tokens_per_step = config.batch_size * seq_len

    @property
    def last_step(self) -> int:
        """The step that reads the split's last token, or ``max_steps`` if that comes first."""
        return min(self.config.max_steps, math.ceil(len(self.train_data) / self.tokens_per_step))

    def train_step(self, step: int) -> None:
        """Read step ``step``'s tokens (counted at the next refit)."""
        self.state.tokens_seen = min(step * self.tokens_per_step, len(self.train_data))

    def refit(self) -> float:
        """Count everything read so far; returns the seconds it took."""
        t0 = time.perf_counter()
        self.model.fit(self.train_data[: self.state.tokens_seen])
        return time.perf_counter() - t0

    def train_loss(self) -> float:
        """Mean NLL of a batch of windows from the counted tokens (seeded by the step)."""
        seen = self.train_data[: self.state.tokens_seen]
        if len(seen) <= self.seq_len:
            return float("nan")
        gen = torch.Generator().manual_seed(step_seed(self.config.seed, self.state.step))
        batch = self.objective.make_batch(seen, self.config.batch_size, self.seq_len, gen)
        with torch.no_grad():
            return float(self.objective.loss(self.model, batch).loss)

    def evaluate(self) -> dict[str, float]:
        return evaluate(self.model, self.objective, self.eval_set)

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _run_eval(self) -> None:
        metrics = self.evaluate()
        self.state.last_val = metrics
        primary = metrics[f"val/{self.objective.primary_metric}"]
        self.state.best_val_loss = min(self.state.best_val_loss, primary)
        self._emit("on_evaluate", metrics)

    def fit(self) -> str:
        """Read and count until the split or ``max_steps`` ends, or a callback stops it.
        Returns 'finished' or 'stopped'."""
        cfg = self.config
        t_fit = time.perf_counter()
        self._emit("on_fit_start")
        if self.state.step == 0:
            self._run_eval()  # nothing counted: the uniform distribution, loss ln V
        elif self.state.tokens_seen:
            self.refit()  # a resume: the counts of the prefix read so far (the checkpoint's, recomputed)
        status = "finished"
        last = self.last_step
        try:
            for step in range(self.state.step + 1, last + 1):
                if self.control.should_stop:
                    status = "stopped"
                    break
                self.train_step(step)
                self.state.step = step
                # the budget is checked at evaluations only: reading a step costs nothing, refitting does
                is_eval = step % cfg.eval_interval == 0 or step == last
                if is_eval:
                    seconds = self.refit()
                    log = {"tokens_per_s": self.state.tokens_seen / max(seconds, 1e-9)}
                    train_loss = self.train_loss()
                    if not math.isnan(train_loss):
                        log["train/loss"] = train_loss
                    self._emit("on_log", log)
                    self._run_eval()
                    if out_of_time(t_fit, cfg):
                        break
            else:
                status = "stopped" if self.control.should_stop and self.state.step < last else "finished"
        except KeyboardInterrupt:
            status = "stopped"
        self._emit("on_fit_end", status)
        return status

    # --- checkpoints: the counts are the model's buffers -----------------------------------------

    def save_checkpoint(self, path: str | Path, meta: dict | None = None) -> None:
        state = {"step": self.state.step, "best_val_loss": self.state.best_val_loss, "tokens_seen": self.state.tokens_seen}
        save_checkpoint(path, self.model, None, {"trainer_state": state, **(meta or {})})
        self.last_saved_step = self.state.step

    def load_checkpoint(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        self.model.load_state_dict(ckpt.model_state)
        st = ckpt.meta.get("trainer_state", {})
        self.state.step = int(st.get("step", 0))
        self.state.best_val_loss = float(st.get("best_val_loss", math.inf))
        self.state.tokens_seen = int(st.get("tokens_seen", 0))
        self.last_saved_step = self.state.step
