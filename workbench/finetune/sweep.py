"""The data-efficiency sweep: one task at several label budgets, pretrained vs frozen trunk vs
the same model from scratch, each a stored fine-tuning run; and the plot of the test metric
against the number of labels.

>>> steps_for_budget(64, batch_size=16, epochs=10, min_steps=50, max_steps=400)
50
>>> steps_for_budget(1024, batch_size=16, epochs=10, min_steps=50, max_steps=400)
400
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..config import ConfigError, RunConfig
from ..runstore import RunStore

BUDGETS = (32, 64, 128, 256, 1024, 0)
"""Label budgets of the sweep; 0 = every training example."""
ARMS: dict[str, dict[str, Any]] = {
    "pretrained": {},
    "frozen": {"freeze": -1},
    "scratch": {"reinit": True},
}
"""Arm -> the ``finetune`` settings it changes: fine-tune everything from the pretrained
weights; train only the head on the frozen trunk (a linear probe); the same architecture and
tokenizer from random weights."""
TASK_METRIC = {"classification": "acc", "tagging": "entity_f1", "qa": "f1"}
"""The test metric a sweep plots for each kind of task."""


def steps_for_budget(n: int, batch_size: int, epochs: float, min_steps: int, max_steps: int) -> int:
    """Optimizer steps for ``n`` training examples: ``epochs`` passes, at least ``min_steps``
    (a tiny budget still needs steps to fit the head) and at most ``max_steps`` (the CPU's budget)."""
    return max(min_steps, min(max_steps, math.ceil(epochs * n / batch_size)))


def arm_config(base: RunConfig, arm: str, labels: int, seed: int, n_train: int, epochs: float, min_steps: int) -> RunConfig:
    """The config of one sweep run: ``base`` with the arm's settings, the budget, the seed
    (label sample and weights) and the steps for the budget; no checkpoints are kept."""
    if arm not in ARMS:
        raise ConfigError("arms", f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    fc = base.finetune
    if fc is None:
        raise ConfigError("finetune", "a label sweep needs a config with a finetune section")
    if fc.init_kind == "scratch" and arm != "scratch":
        raise ConfigError("init", f"the {arm} arm needs a pretrained trunk: give a run id or hf:NAME as init "
                                  f"(or sweep only the scratch arm)")
    changes = dict(ARMS[arm]) if fc.init_kind != "scratch" else {}
    fc = replace(fc, labels=labels, label_seed=seed, keep_weights=False, **changes)
    steps = steps_for_budget(n_train, base.train.batch_size, epochs, min_steps, base.train.max_steps)
    train = replace(base.train, seed=base.train.seed + seed, max_steps=steps,
                    warmup_steps=min(base.train.warmup_steps, steps // 10),
                    eval_interval=max(1, min(base.train.eval_interval, steps)))
    name = f"sweep {fc.task} {arm} {labels or 'all'} s{seed}"
    return replace(base, finetune=fc, train=train, name=name)


def sweep_labels(base: RunConfig, budgets: Sequence[int] = BUDGETS, arms: Sequence[str] = tuple(ARMS),
                 seeds: Sequence[int] = (0,), epochs: float = 10.0, min_steps: int = 50, store: RunStore | None = None,
                 progress: bool | None = False, on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train one fine-tuning run per (arm, budget, seed) and return a row per run: ``arm``,
    ``labels`` (the budget; 0 = all), ``n_train`` (examples actually used), ``seed``, ``run_id``,
    ``steps``, ``metric`` (the task's :data:`TASK_METRIC`) and ``value``, and every ``test/`` and
    ``val/`` metric. ``on_result`` is called after each run (progress in a CLI or a notebook)."""
    from ..pipeline import train
    from .run import finetune_info, task_of
    from .tasks import sample_budget

    store = store or RunStore()
    fc = base.finetune
    if fc is None:
        raise ConfigError("finetune", "a label sweep needs a config with a finetune section")
    task = task_of(fc)
    metric = TASK_METRIC[task.kind]
    rows = []
    for arm in arms:
        for labels in budgets:
            for seed in seeds:
                n_train = len(sample_budget(task.train, labels or None, seed=seed))
                cfg = arm_config(base, arm, labels, seed, n_train, epochs, min_steps)
                run_id = train(cfg, store, progress=progress)
                info = finetune_info(store, run_id)
                scores = {**info.get("val", {}), **info.get("test", {})}
                row = {"arm": arm, "labels": labels, "n_train": n_train, "seed": seed, "run_id": run_id,
                       "steps": cfg.train.max_steps, "metric": metric, "value": scores.get(f"test/{metric}"), **scores}
                rows.append(row)
                if on_result is not None:
                    on_result(row)
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (arm, n_train), sorted by arm then labels."""
    groups: dict[tuple[str, int], list[float]] = {}
    for r in rows:
        if r.get("value") is not None:
            groups.setdefault((r["arm"], r["n_train"]), []).append(float(r["value"]))
    return [{"arm": arm, "n_train": n, "mean": statistics.fmean(v), "std": statistics.pstdev(v) if len(v) > 1 else 0.0,
             "seeds": len(v)} for (arm, n), v in sorted(groups.items())]


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table: one line per budget, a column per arm (mean over seeds, as %)."""
    summary = summarize(rows)
    arms = list(dict.fromkeys(s["arm"] for s in summary))
    sizes = sorted({s["n_train"] for s in summary})
    cell = {(s["arm"], s["n_train"]): s for s in summary}
    metric = rows[0]["metric"] if rows else "value"
    lines = [f"{'labels':>8}  " + "  ".join(f"{a:>14}" for a in arms) + f"   (test {metric})"]
    for n in sizes:
        parts = []
        for a in arms:
            s = cell.get((a, n))
            parts.append(f"{'-':>14}" if s is None else
                         f"{100 * s['mean']:>8.1f} %" + (f" ±{100 * s['std']:.1f}" if s["seeds"] > 1 else "     "))
        lines.append(f"{n:>8}  " + "  ".join(parts))
    return "\n".join(lines)


def curve_figure(rows: Sequence[dict[str, Any]], baselines: dict[str, float] | None = None, title: str = "") -> Any:
    """Plotly figure: test metric vs number of labels (log x), a line per arm with the spread over
    seeds as error bars; ``baselines`` are horizontal dashed lines (e.g. the majority class)."""
    import plotly.graph_objects as go

    summary = summarize(rows)
    fig = go.Figure()
    for arm in dict.fromkeys(s["arm"] for s in summary):
        pts = [s for s in summary if s["arm"] == arm]
        fig.add_trace(go.Scatter(x=[p["n_train"] for p in pts], y=[p["mean"] for p in pts], mode="lines+markers",
                                 name=arm, error_y={"type": "data", "array": [p["std"] for p in pts],
                                                    "visible": any(p["seeds"] > 1 for p in pts)}))
    for name, value in (baselines or {}).items():
        fig.add_hline(y=value, line_dash="dash", line_color="gray", annotation_text=name,
                      annotation_position="bottom right")
    metric = rows[0]["metric"] if rows else "metric"
    fig.update_layout(title=title or f"test {metric} vs number of labels", xaxis_title="labelled training examples",
                      yaxis_title=f"test {metric}", xaxis_type="log", template="plotly_white", height=420)
    return fig


def majority_share(task: Any, split: str = "test") -> float | None:
    """The share of the most common class in ``split`` (a classifier that always says it scores this)."""
    counts = task.label_counts(split) if task.kind == "classification" else None
    return max(counts.values()) / sum(counts.values()) if counts else None
