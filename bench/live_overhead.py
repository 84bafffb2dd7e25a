"""What the live views cost a run: the store logger (metrics and progress written to SQLite at
every log step and evaluation) and the attention snapshots (every layer's attention on the
probe text at every evaluation), at the preset's default intervals. Target (issue 11): <= 2 %.

Two measurements of the same run (``--preset``, default ``gpt-cpu``; ``--steps`` steps; the
built-in corpus unless ``--data`` names a text file), on this machine, in this process:

- **in-run**: one run trained through ``Trainer`` with both callbacks; every call of theirs is
  timed. overhead = time inside them / wall time of ``fit()``;
- **A/B**: the same run (same seed, same batches) trained ``--repeats`` times without the
  callbacks and as many times with them, alternating, each ``fit()`` timed; overhead = median
  with / median without - 1. This also catches indirect costs (e.g. a host sync), but it carries
  the machine's noise (on 2 shared cores, a percent or two either way): the in-run figure is the
  one to compare with the target, the A/B one says whether anything hides outside the callbacks.

Checkpoints are left out of both (they are not a live view; their cost is a file write per
evaluation). The last line printed is::

    live_overhead in_run_pct=<x> ab_pct=<y> steps=<n> preset=<p>

``--quick`` runs 20 steps once each way: it exercises the script, it measures nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

TARGET_PCT = 2.0


class Timed:
    """Wraps a callback; adds the time of each of its calls to ``spent``."""

    def __init__(self, inner: Any, spent: list[float]) -> None:
        self.inner, self.spent = inner, spent

    def __getattr__(self, hook: str) -> Any:
        method = getattr(self.inner, hook)

        def call(*args: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return method(*args)
            finally:
                self.spent.append(time.perf_counter() - t0)

        return call


def fit_once(cfg: Any, home: Path, live: bool, spent: list[float] | None = None) -> float:
    """Wall seconds of ``Trainer.fit()`` on a fresh model of ``cfg``; with ``live``, the store
    logger and attention snapshots attached (timed into ``spent`` when given)."""
    from workbench.experiment import build_experiment
    from workbench.pipeline import AttentionSnapshots, StoreLogger
    from workbench.runstore import RunStore
    from workbench.trainer import Trainer

    exp = build_experiment(cfg, home=home)
    callbacks: list[Any] = []
    store = RunStore(home)
    if live:
        run_id = store.create_run(exp.config.to_dict(), name="bench-live-overhead")
        callbacks = [StoreLogger(store, run_id), AttentionSnapshots(store, run_id, exp.probe_ids, exp.tokenizer)]
        if spent is not None:
            callbacks = [Timed(cb, spent) for cb in callbacks]
    trainer = Trainer(exp.model, exp.objective, exp.train_data, exp.eval_set, exp.config.train, exp.config.seq_len,
                      callbacks=callbacks, progress=False)
    try:
        t0 = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - t0
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gpt-cpu")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps per run (default 1000)")
    p.add_argument("--repeats", type=int, default=3, help="A/B runs each way (default 3)")
    p.add_argument("--data", type=Path, default=None, help="a .txt corpus (default: the built-in one)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--quick", action="store_true", help="20 steps, once each way: measures nothing")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from workbench import apply_overrides, get_preset

    steps, repeats = (20, 1) if args.quick else (args.steps, args.repeats)
    overrides: dict[str, Any] = {"device": "cpu", "max_steps": steps, "compile": "off"}
    if args.data is not None:
        overrides["corpus"] = str(args.data)
    cfg = apply_overrides(get_preset(args.preset), overrides)
    print(f"{args.preset}: {steps} steps, log every {cfg.train.log_interval}, evaluate every "
          f"{cfg.train.eval_interval} (the preset's defaults); torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory(prefix="wb-live-") as tmp:
        home = Path(tmp) / "home"
        fit_once(cfg, home, live=False)  # warm-up: corpus cache, allocator, kernels
        spent: list[float] = []
        wall = fit_once(cfg, home, live=True, spent=spent)
        in_run = 100 * sum(spent) / wall
        print(f"in-run: {len(spent)} callback calls took {sum(spent):.3f} s of a {wall:.2f} s fit: {in_run:.2f} %")
        without, with_live = [], []
        for i in range(repeats):
            without.append(fit_once(cfg, home, live=False))
            with_live.append(fit_once(cfg, home, live=True))
            print(f"A/B round {i + 1}: without {without[-1]:.2f} s, with {with_live[-1]:.2f} s")
        ab = 100 * (statistics.median(with_live) / statistics.median(without) - 1)
    verdict = "measures nothing (--quick)" if args.quick else (
        f"target <= {TARGET_PCT} %: {'met' if in_run <= TARGET_PCT else 'MISSED'}")
    print(f"A/B: median without {statistics.median(without):.2f} s, with {statistics.median(with_live):.2f} s "
          f"({ab:+.2f} %); {verdict}")
    print(f"live_overhead in_run_pct={in_run:.3f} ab_pct={ab:.3f} steps={steps} preset={args.preset}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
