"""Pure functions -> plotly Figures, shared by notebooks and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .labels import plain, visible  # noqa: F401  (what other modules import from here)

Series = Mapping[str, tuple[Sequence[int], Sequence[float]]]

MAX_POINTS = 1500
"""Most points drawn per trace: longer series are downsampled (:func:`downsample`) so a chart of
a 100k-step run stays as light to send and draw as one of a 1k-step run."""

_COLORS = {"train/loss": "#1f77b4", "val/loss": "#d62728", "val/ppl": "#2ca02c", "lr": "#9467bd", "tokens_per_s": "#8c564b"}


def _show_tokens(tokens: Sequence[str]) -> list[str]:
    """Make whitespace visible and labels unique per axis (plotly merges equal category labels:
    a repeated token would lose its row), by prefixing each token's position.

    >>> _show_tokens(["a", "a", " ", "\\n", ""])
    ['0:a', '1:a', '2:·', '3:⏎', '4:∅']
    """
    out = []
    for i, t in enumerate(tokens):
        out.append(plain(f"{i}:{visible(t)}"))
    return out


def downsample(x: Sequence[float], y: Sequence[float], max_points: int | None = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a curve that look like all of it: the first and the last
    point, and in each of ``(max_points - 2) // 2`` equal buckets of the rest, its lowest and its
    highest point (in step order). Spikes and dips survive; a short series comes back whole.

    >>> x = np.arange(10_000); y = np.zeros(10_000); y[5_000] = 9.0; y[7_777] = -3.0
    >>> xs, ys = downsample(x, y, max_points=100)
    >>> len(xs) <= 100, int(xs[0]), int(xs[-1]), float(ys.max()), float(ys.min()), bool(np.all(np.diff(xs) > 0))
    (True, 0, 9999, 9.0, -3.0, True)
    >>> [a.tolist() for a in downsample([1, 2, 3], [4.0, 5.0, 6.0])]
    [[1, 2, 3], [4.0, 5.0, 6.0]]
    """
    xs, ys = np.asarray(x), np.asarray(y, dtype=float)
    n = len(xs)
    if max_points is None or n <= max_points:
        return xs, ys
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    inner = ys[1:-1]
    size = -(-len(inner) // ((max_points - 2) // 2))  # points per bucket, rounded up
    buckets = -(-len(inner) // size)
    pad = buckets * size - len(inner)
    lo = np.concatenate([np.where(np.isnan(inner), np.inf, inner), np.full(pad, np.inf)]).reshape(buckets, size)
    hi = np.concatenate([np.where(np.isnan(inner), -np.inf, inner), np.full(pad, -np.inf)]).reshape(buckets, size)
    start = np.arange(buckets) * size + 1
    keep = np.concatenate([[0], start + lo.argmin(axis=1), start + hi.argmax(axis=1), [n - 1]])
    keep = np.unique(np.minimum(keep, n - 1))  # sorted, and a bucket's min == max counted once
    return xs[keep], ys[keep]


def _mode(n: int) -> str:
    """Markers show single evaluations on a short curve; on a long one they only hide the line."""
    return "lines+markers" if n <= 200 else "lines"


def loss_figure(series: Series, title: str = "Loss", max_points: int | None = MAX_POINTS) -> go.Figure:
    """Train and val loss against step (what nanoGPT prints, as a chart); long series downsampled."""
    fig = go.Figure()
    for name in ("train/loss", "val/loss"):
        if name in series:
            steps, values = downsample(*series[name], max_points=max_points)
            fig.add_trace(go.Scatter(x=steps.tolist(), y=values.tolist(), mode=_mode(len(steps)) if name == "val/loss" else "lines",
                                     name=name, line={"color": _COLORS[name]}))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="cross-entropy (nats/token)",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, height=360, legend={"orientation": "h", "y": -0.2})
    return fig


def metric_figure(series: Series, name: str, title: str | None = None, log_y: bool = False,
                  max_points: int | None = MAX_POINTS) -> go.Figure:
    """One metric against step (val/ppl, lr, tokens_per_s); long series downsampled."""
    fig = go.Figure()
    if name in series:
        steps, values = downsample(*series[name], max_points=max_points)
        fig.add_trace(go.Scatter(x=steps.tolist(), y=values.tolist(), mode=_mode(len(steps)), name=name,
                                 line={"color": _COLORS.get(name)}))
    fig.update_layout(title=title or name, xaxis_title="step", yaxis_title=name, height=300,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def metrics_figure(series: Series, names: Sequence[str], title: str, y_title: str = "",
                   max_points: int | None = MAX_POINTS) -> go.Figure:
    """Several metrics of one run on one chart (ROUGE-1/2/L and exact match share a 0-1 axis);
    the ones the series lacks are left out."""
    fig = go.Figure()
    for name in names:
        if name in series:
            steps, values = downsample(*series[name], max_points=max_points)
            fig.add_trace(go.Scatter(x=steps.tolist(), y=values.tolist(), mode=_mode(len(steps)), name=name))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=y_title, height=330,
                      margin={"l": 50, "r": 20, "t": 50, "b": 80}, legend={"orientation": "h", "y": -0.35})
    return fig


def compare_figure(runs: Mapping[str, Series], metric: str = "val/loss", max_points: int | None = MAX_POINTS,
                   tokens_per_step: Mapping[str, int] | None = None,
                   predicts: Mapping[str, str] | None = None, x_title: str | None = None) -> go.Figure:
    """The same metric for several runs on one chart (run label -> series); long series downsampled.

    With ``tokens_per_step`` (run label -> batch_size x context) the x axis is tokens seen, not
    steps: runs with different batches or contexts then compare on the text they have read.
    With ``predicts`` (run label -> what its objective predicts, e.g. "next token") each legend
    says it, "<run> · next token": curves of different tasks must not read as the same task.
    ``x_title`` names an x the series already hold instead of steps (e.g. seconds since the start,
    from :func:`seconds_series`).

    >>> fig = compare_figure({"a": {"val/bpc": ([0, 1], [2.0, 1.5])}, "b": {"val/bpc": ([0, 1], [2.1, 1.2])}},
    ...                      "val/bpc", predicts={"a": "next token", "b": "masked token"})
    >>> [t.name for t in fig.data]
    ['a · next token', 'b · masked token']
    """
    fig = go.Figure()
    for label, series in runs.items():
        if metric in series:
            steps, values = downsample(*series[metric], max_points=max_points)
            x = steps * tokens_per_step[label] if tokens_per_step is not None else steps
            name = f"{label} · {predicts[label]}" if predicts and label in predicts else label
            fig.add_trace(go.Scatter(x=x.tolist(), y=values.tolist(), mode=_mode(len(steps)), name=plain(name)))
    fig.update_layout(title=f"{metric} by run",
                      xaxis_title=x_title or ("tokens seen" if tokens_per_step is not None else "step"),
                      yaxis_title=metric, height=380,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def seconds_series(rows: Sequence[tuple[int, str, float, float]], start: float) -> Series:
    """A run's metric rows ``(step, name, value, time)`` (``RunStore.metrics``) as series against
    seconds since ``start`` (the run's start): how runs compare on the clock, not per step.

    >>> seconds_series([(0, "val/loss", 4.2, 100.5), (10, "val/loss", 3.1, 103.0)], start=100.0)
    {'val/loss': ([0.5, 3.0], [4.2, 3.1])}
    """
    out: dict[str, tuple[list, list[float]]] = {}
    for _, name, value, time in rows:
        xs, ys = out.setdefault(name, ([], []))
        xs.append(round(time - start, 3))
        ys.append(value)
    return out


# moved to attention_views; notebooks and the dashboard call plots.attention_heatmap / plots.attention_grid
from .attention_views import attention_heatmap, attention_grid  # noqa: E402,F401

__all__ = ["MAX_POINTS", "plain", "downsample", "loss_figure", "metric_figure", "metrics_figure", "compare_figure",
           "seconds_series",
           "attention_heatmap", "attention_grid"]
