"""Pure functions -> plotly Figures, shared by notebooks and the dashboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

Series = Mapping[str, tuple[Sequence[int], Sequence[float]]]

_COLORS = {"train/loss": "#1f77b4", "val/loss": "#d62728", "val/ppl": "#2ca02c", "lr": "#9467bd", "tokens_per_s": "#8c564b"}


def _show_tokens(tokens: Sequence[str]) -> list[str]:
    """Make whitespace visible and labels unique (plotly merges equal category labels)."""
    out = []
    for i, t in enumerate(tokens):
        t = t.replace("\n", "⏎").replace(" ", "·") or "∅"
        out.append(f"{i}:{t}")
    return out


def loss_figure(series: Series, title: str = "Loss") -> go.Figure:
    """Train and val loss against step (what nanoGPT prints, as a chart)."""
    fig = go.Figure()
    for name in ("train/loss", "val/loss"):
        if name in series:
            steps, values = series[name]
            fig.add_trace(go.Scatter(x=list(steps), y=list(values), mode="lines+markers" if name == "val/loss" else "lines",
                                     name=name, line={"color": _COLORS[name]}))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="cross-entropy (nats/token)",
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, height=360, legend={"orientation": "h", "y": -0.2})
    return fig


def metric_figure(series: Series, name: str, title: str | None = None, log_y: bool = False) -> go.Figure:
    """One metric against step (val/ppl, lr, tokens_per_s)."""
    fig = go.Figure()
    if name in series:
        steps, values = series[name]
        fig.add_trace(go.Scatter(x=list(steps), y=list(values), mode="lines+markers", name=name,
                                 line={"color": _COLORS.get(name)}))
    fig.update_layout(title=title or name, xaxis_title="step", yaxis_title=name, height=300,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def compare_figure(runs: Mapping[str, Series], metric: str = "val/loss") -> go.Figure:
    """The same metric for several runs on one chart (run label -> series)."""
    fig = go.Figure()
    for label, series in runs.items():
        if metric in series:
            steps, values = series[metric]
            fig.add_trace(go.Scatter(x=list(steps), y=list(values), mode="lines+markers", name=label))
    fig.update_layout(title=f"{metric} by run", xaxis_title="step", yaxis_title=metric, height=380,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


def attention_heatmap(weights: np.ndarray, tokens: Sequence[str], title: str = "") -> go.Figure:
    """One head: rows are queries (attending from), columns are keys (attending to)."""
    labels = _show_tokens(tokens)
    fig = go.Figure(go.Heatmap(z=np.asarray(weights), x=labels, y=labels, colorscale="Blues", zmin=0.0, zmax=1.0,
                               colorbar={"title": "weight"},
                               hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="key (attended to)", yaxis_title="query (attending from)",
                      yaxis={"autorange": "reversed"}, height=560, margin={"l": 80, "r": 20, "t": 50, "b": 80})
    return fig


def attention_grid(weights: np.ndarray, title: str = "") -> go.Figure:
    """All layers x heads as small heatmaps (the bertviz model view, as a static grid)."""
    n_layers, n_heads = weights.shape[:2]
    fig = make_subplots(rows=n_layers, cols=n_heads, horizontal_spacing=0.02, vertical_spacing=0.03,
                        subplot_titles=[f"L{l} H{h}" for l in range(n_layers) for h in range(n_heads)])
    for l in range(n_layers):
        for h in range(n_heads):
            fig.add_trace(go.Heatmap(z=weights[l, h], colorscale="Blues", zmin=0.0, zmax=1.0, showscale=False,
                                     hovertemplate=f"layer {l} head {h}<br>q %{{y}} k %{{x}}<br>%{{z:.3f}}<extra></extra>"),
                          row=l + 1, col=h + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    fig.update_layout(title=title, height=max(260, 170 * n_layers), margin={"l": 20, "r": 20, "t": 60, "b": 20})
    return fig
