"""Notebook helpers: a loss chart that grows while a run trains in the same kernel.

:class:`LiveLossPlot` is a trainer :class:`~workbench.trainer.Callback` that owns a plotly
``go.FigureWidget`` drawn by :func:`workbench.plots.loss_figure` (the same chart the dashboard
shows) and appends a point at every log (``train/loss``) and evaluation (``val/loss``).

Each update is a widget message, so the chart moves while the training cell is still running.
Without a frontend (a notebook executed headless in CI, a script, a test) the updates only
change the widget's data, which stays inspectable: ``live.figure.data``, ``live.steps(...)``.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from .plots import loss_figure
from .trainer import Callback, Trainer

LOSS_METRICS: tuple[str, ...] = ("train/loss", "val/loss")
"""The metrics the live chart draws, one trace each, in this order."""


class LiveLossPlot(Callback):
    """Train and validation loss as a live ``go.FigureWidget``; pass it to ``train(callbacks=...)``.

    Display it (``display(live)`` or as a cell's last expression) *before* training starts; the
    trainer then calls :meth:`on_log` / :meth:`on_evaluate` and the curve grows as it learns.
    A step logged twice (a resumed run re-logs) replaces its point, like the run store does.

    >>> import tempfile
    >>> from workbench import apply_overrides, get_preset
    >>> from workbench.pipeline import train
    >>> from workbench.runstore import RunStore
    >>> live = LiveLossPlot(title="nano run")
    >>> [trace.name for trace in live.figure.data]
    ['train/loss', 'val/loss']
    >>> cfg = apply_overrides(get_preset("gpt-nano"),
    ...                       {"max_steps": 20, "eval_interval": 10, "log_interval": 5, "eval_chars": 2048})
    >>> with tempfile.TemporaryDirectory() as home:  # a throwaway store; usually RunStore()
    ...     run_id = train(cfg, RunStore(home), callbacks=[live], progress=False)
    >>> live.steps("train/loss"), live.steps("val/loss")
    ([5, 10, 15, 20], [0, 10, 20])
    >>> live.figure.layout.title.text
    'nano run · finished at step 20'
    """

    def __init__(self, title: str = "Loss", metrics: tuple[str, ...] = LOSS_METRICS) -> None:
        unknown = [m for m in metrics if m not in LOSS_METRICS]
        if unknown:
            raise ValueError(f"LiveLossPlot draws {', '.join(LOSS_METRICS)}; got {unknown}")
        self.title = title
        self.metrics = tuple(metrics)
        self._points: dict[str, dict[int, float]] = {name: {} for name in self.metrics}
        # empty series still make one styled trace per metric, so updates only change x/y
        empty: dict[str, tuple[list[int], list[float]]] = {name: ([], []) for name in self.metrics}
        self.figure: go.FigureWidget = go.FigureWidget(loss_figure(empty, title=title))
        self._trace_index = {trace.name: i for i, trace in enumerate(self.figure.data)}

    # --- what the trainer calls --------------------------------------------------------------

    def on_fit_start(self, trainer: Trainer) -> None:
        self.figure.layout.title.text = f"{self.title} · training…"

    def on_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.add(trainer.state.step, metrics)

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.add(trainer.state.step, metrics)

    def on_fit_end(self, trainer: Trainer, status: str) -> None:
        self.figure.layout.title.text = f"{self.title} · {status} at step {trainer.state.step}"

    # --- the chart ---------------------------------------------------------------------------

    def add(self, step: int, metrics: dict[str, float]) -> None:
        """Record the loss metrics among ``metrics`` at ``step`` and redraw the changed traces."""
        changed = [name for name in self.metrics if name in metrics]
        for name in changed:
            self._points[name][int(step)] = float(metrics[name])
        if not changed:
            return
        with self.figure.batch_update():  # one widget message for all changed traces
            for name in changed:
                steps = sorted(self._points[name])
                trace = self.figure.data[self._trace_index[name]]
                trace.x = steps
                trace.y = [self._points[name][s] for s in steps]

    def steps(self, name: str) -> list[int]:
        """Steps with a point for ``name`` ('train/loss' or 'val/loss'), in order."""
        return sorted(self._points[name])

    def values(self, name: str) -> list[float]:
        """Values of ``name`` in step order (aligned with :meth:`steps`)."""
        return [self._points[name][s] for s in self.steps(name)]

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Display as the widget itself, so ``live`` as a cell's last line shows the chart."""
        return self.figure._repr_mimebundle_(include=include, exclude=exclude, **kwargs)
