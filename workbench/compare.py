"""The families side by side: train the standard set on one corpus under one wall-clock budget
each and compare them on bits per character, against wall time and against tokens seen.

The standard set follows the course every LLM learner takes: an n-gram (counting), an LSTM
and a GPT (both next-token prediction), and a BERT-style encoder (masked-token prediction).
Each is an ordinary run in the store (the dashboard's Runs page can overlay them). Bits per
character puts them on one axis honestly across tokenizers, but a masked token, seen with
context on both sides, is an easier prediction than the next one: the table and the legend
say what each predicts.

``python -m workbench compare --corpus shakespeare --budget-s 120`` prints the table and writes
the figure (one self-contained HTML file, plotly inlined: it opens offline).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .config import RunConfig, describe_tokenizer
from .objectives.base import predicts_label
from .overrides import apply_overrides
from .presets import get_preset
from .runstore import RunStore
from .view_export import to_html

STANDARD = ("ngram", "lstm", "gpt", "bert")
"""The standard set, each the family's preset of the chosen size (``<family>-nano`` / ``-cpu``)."""

SIZES = ("nano", "cpu")

def standard_configs(corpus: str = "shakespeare", budget_s: float = 120.0, size: str = "cpu",
                     models: Sequence[str] = STANDARD, overrides: Mapping[str, Any] | None = None) -> dict[str, RunConfig]:
    """One config per model of the set: its preset on ``corpus``, ending after ``budget_s``
    seconds (or at ``max_steps``, whichever comes first; :func:`run_compare` sets the steps that
    fill the budget).

    >>> cfgs = standard_configs(budget_s=30, size="nano")
    >>> list(cfgs), cfgs["bert"].objective.name, cfgs["gpt"].train.max_time_s
    (['ngram', 'lstm', 'gpt', 'bert'], 'mlm', 30.0)
    """
    if size not in SIZES:
        raise ValueError(f"size: unknown {size!r}; choose one of {', '.join(SIZES)}")
    unknown = [m for m in models if m not in STANDARD]
    if unknown:
        raise ValueError(f"models: unknown {', '.join(unknown)}; choose from {', '.join(STANDARD)}")
    if not budget_s > 0:
        raise ValueError(f"budget_s: must be > 0 seconds, got {budget_s}")
    return {m: apply_overrides(get_preset(f"{m}-{size}"), {"corpus": corpus, "max_time_s": float(budget_s),
                                                           "name": f"compare {m}", **(overrides or {})})
            for m in models}


@dataclass
class CompareRow:
    """One trained model of a comparison: what it is, what it cost, how well it predicts."""

    label: str
    run_id: str
    model: str
    objective: str
    tokenizer: str
    params: int
    steps: int
    max_steps: int
    tokens_per_step: int
    wall_s: float
    val_loss: float
    val_bpc: float
    status: str
    curve: dict[str, list[float]] = field(default_factory=dict)
    """``step``, ``seconds`` (since training started) and ``bpc`` at each evaluation."""

    @property
    def predicts(self) -> str:
        return predicts_label(self.objective)

    @property
    def tokens_seen(self) -> int:
        return self.steps * self.tokens_per_step


def summarize(store: RunStore, run_id: str, label: str | None = None) -> CompareRow:
    """A finished run as a :class:`CompareRow`, its curve read back from the store."""
    info = store.get_run(run_id)
    cfg = RunConfig.from_dict(info.config)
    rows = store.metrics(run_id, names=["val/loss", "val/bpc"])
    t0 = min((t for _, _, _, t in rows), default=0.0)  # the untrained model's evaluation starts the clock
    curve: dict[str, list[float]] = {"step": [], "seconds": [], "bpc": []}
    loss = math.nan
    for step, name, value, t in rows:
        if name == "val/loss":
            loss = value
        else:
            curve["step"].append(step)
            curve["seconds"].append(t - t0)
            curve["bpc"].append(value)
    return CompareRow(
        label=label or cfg.model.arch, run_id=run_id, model=cfg.model.describe(), objective=cfg.objective.name,
        tokenizer=describe_tokenizer(info.config), params=int(info.num_params or 0), steps=info.step,
        max_steps=cfg.train.max_steps, tokens_per_step=cfg.train.batch_size * cfg.seq_len,
        wall_s=curve["seconds"][-1] if curve["seconds"] else 0.0, val_loss=loss,
        val_bpc=curve["bpc"][-1] if curve["bpc"] else math.nan, status=info.status, curve=curve,
    )


def fit_to_budget(cfg: RunConfig, budget_s: float, eval_share: float = 0.5, probe_steps: int = 20) -> RunConfig:
    """``cfg`` with as many steps as fit ``budget_s`` on this machine, so its whole schedule
    (warm-up, then the decay to ``min_lr``) ends at the budget instead of being cut in the middle
    or leaving most of it unused. ``probe_steps`` training steps and one evaluation of a throwaway
    copy are timed (after two untimed steps); the run's evaluations (the untrained model's, then
    as many as the preset makes, fewer if they would take more than ``eval_share`` of the budget)
    are taken off the budget, and the steps fill the rest. The warm-up keeps the preset's
    proportion. ``max_time_s`` stays the hard stop. Families fitted by counting are returned as
    they are (their presets read the whole split in seconds)."""
    from .experiment import build_experiment
    from .trainer import Trainer

    if "counting" in cfg.model.capabilities:
        return cfg
    exp = build_experiment(cfg)
    trainer = Trainer(exp.model, exp.objective, exp.train_data, exp.eval_set, cfg.train, cfg.seq_len, progress=False)
    for step in (1, 2):  # first calls allocate and warm caches
        trainer.train_step(step)
    trainer.check_finite()
    t0 = time.perf_counter()
    for step in range(3, 3 + probe_steps):
        trainer.train_step(step)
    trainer.check_finite()  # waits for the device
    step_s = (time.perf_counter() - t0) / probe_steps
    t0 = time.perf_counter()
    trainer.evaluate()
    eval_s = time.perf_counter() - t0
    t = cfg.train
    evals = max(1, min(t.max_steps // t.eval_interval, int(budget_s * eval_share / max(eval_s, 1e-9)) - 1))
    steps = max(t.warmup_steps + 2, int((budget_s - (evals + 1) * eval_s) / step_s))
    return apply_overrides(cfg, {"max_steps": steps, "warmup_steps": round(t.warmup_steps * steps / t.max_steps),
                                 "eval_interval": max(1, steps // evals), "log_interval": min(t.log_interval, steps)})


def run_compare(configs: Mapping[str, RunConfig], store: RunStore | None = None,
                progress: bool | None = False, fit_steps: bool = True) -> list[CompareRow]:
    """Train each config in turn (one at a time: they must not share the CPU) and summarize it.
    With ``fit_steps``, a config with a time budget first gets the steps that fill it
    (:func:`fit_to_budget`, measured just before it trains)."""
    from .pipeline import train

    store = store or RunStore()
    rows = []
    for label, cfg in configs.items():
        if fit_steps and cfg.train.max_time_s > 0:
            cfg = fit_to_budget(cfg, cfg.train.max_time_s)
        rows.append(summarize(store, train(cfg, store, progress=progress), label))
    return rows


def _count(x: float) -> str:
    """
    >>> _count(372852), _count(2_100_000), _count(950)
    ('373k', '2.10M', '950')
    """
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k" if x >= 1e4 else f"{x:.0f}"


def compare_table(rows: Sequence[CompareRow]) -> str:
    """A plain-text table, best bits per character first."""
    head = ("model", "objective", "predicts", "tokenizer", "params", "steps", "tokens seen", "wall s", "val loss", "val bpc")
    body = [(r.model, r.objective, r.predicts, r.tokenizer, _count(r.params), f"{r.steps}/{r.max_steps}", _count(r.tokens_seen),
             f"{r.wall_s:.1f}", f"{r.val_loss:.3f}", f"{r.val_bpc:.3f}")
            for r in sorted(rows, key=lambda r: (math.isnan(r.val_bpc), r.val_bpc))]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), *map(line, body)])


def compare_figure(rows: Sequence[CompareRow], title: str = "") -> go.Figure:
    """Validation bits per character against wall time (left) and tokens seen (right), one
    colour per model, each legend saying what the model predicts."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("against wall time", "against tokens seen"))
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
    for i, r in enumerate(rows):
        name = f"{r.model} · {r.predicts}"
        style = {"color": palette[i % len(palette)], "dash": "dot" if r.objective != "causal_lm" else "solid"}
        bpc = r.curve.get("bpc", [])
        fig.add_trace(go.Scatter(x=r.curve.get("seconds", []), y=bpc, name=name, legendgroup=name,
                                 mode="lines+markers", line=style), row=1, col=1)
        seen = [(s * r.tokens_per_step, b) for s, b in zip(r.curve.get("step", []), bpc) if s > 0]  # log axis: no 0
        fig.add_trace(go.Scatter(x=[t for t, _ in seen], y=[b for _, b in seen], name=name, legendgroup=name,
                                 showlegend=False, mode="lines+markers", line=style), row=1, col=2)
    fig.update_xaxes(title_text="seconds since training started (evaluations included)", row=1, col=1)
    fig.update_xaxes(title_text="tokens seen (batch_size x seq_len per step; log scale)", type="log", row=1, col=2)
    fig.update_yaxes(title_text="validation bits per character", row=1, col=1)
    fig.update_layout(title=title or "Bits per character of the predicted tokens (dotted: masked tokens, an easier task)",
                      height=460, legend={"orientation": "h", "y": -0.25}, margin={"l": 60, "r": 20, "t": 70, "b": 40})
    return fig


def write_figure(fig: go.Figure, path: str | Path) -> Path:
    """One standalone HTML file with plotly.js inlined (opens offline, no CDN)."""
    from .io import atomic_write

    path = Path(path)
    atomic_write(path, to_html(fig))
    return path
