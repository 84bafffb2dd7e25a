"""The benches' way to train through the package: one run into a throw-away store, read back."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class FinishedRun:
    """A finished run's final (``last``) model and what the store recorded of it."""

    model: Any
    tokenizer: Any
    config: Any
    """The run's config as stored (the tokenizer's vocab_size filled in)."""
    steps: int
    wall_s: float
    """Wall time of the whole ``train()`` call (corpus, tokenizer, evaluations included)."""
    series: dict[str, tuple[list[int], list[float]]]


def train_finished(cfg: Any, home: Path) -> FinishedRun:
    """Train ``cfg`` into the store at ``home`` (also made ``$WORKBENCH_HOME``, so anything reading
    the default home sees the throw-away one); a RuntimeError unless the run finished."""
    os.environ["WORKBENCH_HOME"] = str(home)
    from workbench.pipeline import load_run_model, train
    from workbench.runstore import RunStore

    store = RunStore(home)
    try:
        t0 = time.perf_counter()
        run_id = train(cfg, store, progress=False)
        wall = time.perf_counter() - t0
        info = store.get_run(run_id)
        if info.status != "finished":
            raise RuntimeError(f"run {run_id} ended as {info.status}: {info.error}")
        model, tok, run_cfg = load_run_model(store, run_id, "last")
        return FinishedRun(model, tok, run_cfg, int(info.step), wall, store.metric_series(run_id))
    finally:
        store.close()
