"""Start, stop and watch runs as separate processes (what the dashboard's buttons call).

A subprocess, not a thread: it survives Streamlit reruns and browser refreshes, a crash or
out-of-memory kills only itself, and it is exactly what a user would type in a terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .config import RunConfig
from .corpora import BUILTIN_CORPORA, load_text_file
from .runstore import RunInfo, RunStore


def preflight(cfg: RunConfig) -> None:
    """Cheap checks before a process is started, so a bad file is reported at once, inline."""
    if cfg.data.corpus not in BUILTIN_CORPORA:
        load_text_file(cfg.data.corpus)  # raises CorpusError: missing, empty, not UTF-8, too large


def start_run(cfg: RunConfig, store: RunStore | None = None, name: str = "") -> str:
    """Create a queued run, write its config and start ``python -m workbench train --run-dir``."""
    store = store or RunStore()
    preflight(cfg)
    run_id = store.create_run(cfg.to_dict(), name=name or cfg.name)
    run_dir = store.run_dir(run_id)
    cfg.save(run_dir / "config.json")
    env = {**os.environ, "WORKBENCH_HOME": str(store.home), "PYTHONUNBUFFERED": "1"}
    with open(run_dir / "stdout.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench", "train", "--run-dir", str(run_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,  # survives the dashboard's reruns and restarts
        )
    store.update_run(run_id, pid=proc.pid)
    return run_id


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
