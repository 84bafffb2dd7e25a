"""Start, resume, stop and watch runs as separate processes (what the dashboard's buttons call).

A subprocess, not a thread: it survives Streamlit reruns and browser refreshes, a crash or
out-of-memory kills only itself, and it is exactly what a user would type in a terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig
from .experiment import count_parameters, estimate_vocab_size, preflight
from .limits import LaunchLimits
from .runstore import RunInfo, RunStore


def live_runs(store: RunStore) -> list[RunInfo]:
    """Runs queued or training right now (dead processes reconciled first)."""
    return [info for r in store.list_runs() if not r.is_terminal and not (info := store.reconcile(r.id)).is_terminal]


def train_command(run_dir: Path, nproc: int = 1) -> list[str]:
    """The command that trains a queued run: ``python -m workbench train --run-dir DIR``, or with
    ``nproc`` > 1 the same under ``torchrun --standalone --nproc_per_node=N`` (DDP on this machine)."""
    if nproc < 1:
        raise ConfigError("nproc", f"must be at least 1 process, got {nproc}")
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    return [*launch, "-m", "workbench", "train", "--run-dir", str(run_dir)]


def _spawn(store: RunStore, run_id: str, from_checkpoint: bool = False, nproc: int = 1) -> None:
    """:func:`train_command`, detached, output appended to stdout.log.

    If the process cannot even be started, the run is marked failed (it must not stay queued).
    """
    run_dir = store.run_dir(run_id)
    env = {**os.environ, "WORKBENCH_HOME": str(store.home), "PYTHONUNBUFFERED": "1"}
    cmd = train_command(run_dir, nproc)
    if from_checkpoint:
        cmd.append("--from-checkpoint")
    try:
        with open(run_dir / "stdout.log", "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=True,  # survives the dashboard's reruns and restarts
            )
    except OSError as exc:
        store.update_run(run_id, status="failed", ended_at=time.time(),
                         error=f"could not start the training process: {exc}")
        raise
    store.update_run(run_id, pid=proc.pid)


def start_run(cfg: RunConfig, store: RunStore | None = None, name: str = "",
              limits: LaunchLimits | None = None, vocab_size: int | None = None,
              preflighted: bool = False, nproc: int = 1) -> str:
    """Create a queued run, write its config and start training it in its own process.

    With ``limits`` (the dashboard passes them), a run that would go past one is refused with a
    :class:`~workbench.config.ConfigError` naming the setting; ``vocab_size`` sizes the model
    for that check (the tokenizer is only trained in the new process). ``preflighted`` skips
    :func:`~workbench.experiment.preflight` when the caller has just run it on this config.
    ``nproc`` > 1 trains with that many processes (DDP, :mod:`workbench.distributed`); the
    batch size is the global batch, split between them.
    """
    store = store or RunStore()
    if limits is not None:
        limits.check(cfg, count_parameters(cfg, vocab_size or estimate_vocab_size(cfg, home=store.home)), len(live_runs(store)))
    if nproc > 1:
        from .pipeline import check_distributable

        check_distributable(cfg, nproc)
    if not preflighted:
        preflight(cfg, store.home)
    run_id = store.create_run(cfg.to_dict(), name=name or cfg.name)
    cfg.save(store.run_dir(run_id) / "config.json")
    _spawn(store, run_id, nproc=nproc)
    return run_id


def resume_run(run_id: str, store: RunStore | None = None, overrides: dict[str, Any] | None = None,
               limits: LaunchLimits | None = None, nproc: int = 1) -> RunConfig:
    """Continue an ended run from its last checkpoint in a new process (``max_steps`` extends it;
    the cosine schedule then runs to the new end, so the learning rate rises again)."""
    from .overrides import apply_overrides
    from .pipeline import prepare_resume

    store = store or RunStore()
    info = store.get_run(run_id)
    if limits is not None:
        limits.check(apply_overrides(RunConfig.from_dict(info.config), overrides or {}), info.num_params or 0,
                     len(live_runs(store)))
    cfg = prepare_resume(store, run_id, overrides)
    _spawn(store, run_id, from_checkpoint=True, nproc=nproc)
    return cfg


def stop_run(run_id: str, store: RunStore | None = None) -> None:
    """Ask the run to stop; it finishes its step, saves ``last`` and ends as 'stopped'."""
    store = store or RunStore()
    info = store.get_run(run_id)
    if not info.is_terminal:
        store.request_stop(run_id)


def run_status(run_id: str, store: RunStore | None = None) -> RunInfo:
    """The run's row, with a dead process reconciled to 'failed'."""
    return (store or RunStore()).reconcile(run_id)


def wait_for(run_id: str, store: RunStore | None = None, timeout: float = 600.0, poll: float = 0.5) -> RunInfo:
    """Block until the run is terminal (for scripts and tests)."""
    store = store or RunStore()
    deadline = time.monotonic() + timeout
    while True:
        info = store.reconcile(run_id)
        if info.is_terminal:
            return info
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {info.status} after {timeout:.0f}s")
        time.sleep(poll)


def tail_log(run_id: str, store: RunStore | None = None, lines: int = 30) -> str:
    path: Path = (store or RunStore()).run_dir(run_id) / "stdout.log"
    if not path.exists():
        return ""
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
