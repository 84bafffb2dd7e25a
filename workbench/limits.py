"""Limits on what the dashboard may launch: how many runs at once, how big a model, how big a step.

A dashboard is a shared door to this machine's processors: anyone who can open it can start
processes. These caps bound what one click can ask for; the CLI and notebooks are not capped
(they run as the user who typed them). Each limit is an environment variable with a sane
default, and the Train page shows them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import ConfigError, RunConfig


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(name, f"must be > 0, got {value}")
    return value


@dataclass(frozen=True)
class LaunchLimits:
    """Caps on dashboard launches (environment variable in brackets)."""

    max_concurrent_runs: int = 2
    """Runs queued or training at the same time [WORKBENCH_MAX_RUNS]."""
    max_params: int = 50_000_000
    """Model parameters [WORKBENCH_MAX_PARAMS]."""
    max_tokens_per_step: int = 131_072
    """batch_size x context tokens per optimizer step [WORKBENCH_MAX_TOKENS_PER_STEP]."""
    max_steps: int = 200_000
    """Optimizer steps of one run [WORKBENCH_MAX_STEPS]."""

    @classmethod
    def from_env(cls) -> LaunchLimits:
        d = cls()
        return cls(
            max_concurrent_runs=_env_int("WORKBENCH_MAX_RUNS", d.max_concurrent_runs),
            max_params=_env_int("WORKBENCH_MAX_PARAMS", d.max_params),
            max_tokens_per_step=_env_int("WORKBENCH_MAX_TOKENS_PER_STEP", d.max_tokens_per_step),
            max_steps=_env_int("WORKBENCH_MAX_STEPS", d.max_steps),
        )

    def check(self, cfg: RunConfig, num_params: int, live_runs: int) -> None:
        """Raise :class:`ConfigError` naming the setting that goes past a limit.

        >>> from workbench.presets import get_preset
        >>> LaunchLimits(max_concurrent_runs=1).check(get_preset("gpt-nano"), 100_000, live_runs=1)
        Traceback (most recent call last):
        ...
        workbench.config.ConfigError: run: 1 run(s) are already training and this dashboard allows 1 at a time; wait for one to end or stop it on Monitor
        """
        if live_runs >= self.max_concurrent_runs:
            raise ConfigError("run", f"{live_runs} run(s) are already training and this dashboard allows "
                                     f"{self.max_concurrent_runs} at a time; wait for one to end or stop it on Monitor")
        if num_params > self.max_params:
            raise ConfigError("n_embd", f"the model has {num_params:,} parameters; this dashboard allows "
                                        f"{self.max_params:,}: lower n_embd or n_layer")
        tokens = cfg.train.batch_size * cfg.seq_len
        if tokens > self.max_tokens_per_step:
            raise ConfigError("batch_size", f"batch_size x context = {tokens:,} tokens per step; this dashboard "
                                            f"allows {self.max_tokens_per_step:,}: lower batch_size or "
                                            f"{cfg.model.context_setting or 'seq_len'}")
        if cfg.train.max_steps > self.max_steps:
            raise ConfigError("max_steps", f"{cfg.train.max_steps:,} steps; this dashboard allows {self.max_steps:,}")

    def describe(self) -> str:
        return (f"at most {self.max_concurrent_runs} runs at once, {self.max_params / 1e6:g} M parameters, "
                f"{self.max_tokens_per_step:,} tokens per step and {self.max_steps:,} steps per run")
