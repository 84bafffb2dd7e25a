"""Pictures of a fine-tuning run, shared by the dashboard and notebooks: the confusion matrix as a
heatmap, class probabilities as bars, and text with its tagged spans or answer marked (escaped HTML).

>>> fig = confusion_figure(["a", "b"], [[3, 1], [0, 4]])
>>> [list(r) for r in fig.data[0].z], list(fig.data[0].x), list(fig.data[0].y)
([[0.75, 0.25], [0.0, 1.0]], ['a', 'b'], ['a', 'b'])
>>> h = spans_html("<b>Romeo</b> and Juliet", [("PER", 3, 8)])
>>> "&lt;b&gt;<mark" in h, '">Romeo<sup' in h, "PER</sup></mark>&lt;/b&gt; and Juliet" in h, "<b>" in h
(True, True, True, False)
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from ..labels import plain

TASK_METRICS = {
    "classification": (("val/acc", "accuracy"), ("val/macro_f1", "macro-F1")),
    "tagging": (("val/token_acc", "token accuracy"), ("val/entity_f1", "entity F1")),
    "qa": (("val/exact_match", "exact match"), ("val/f1", "F1")),
}
"""A task kind's validation metrics (besides the loss), with a name for people."""

METRIC_NOTES = {
    "classification": "Accuracy: the share of validation examples whose most likely class is right. Macro-F1: "
                      "the F1 of each class, averaged, so a rare class counts as much as a common one (always "
                      "answering the largest class scores a high accuracy but a low macro-F1).",
    "tagging": "Token accuracy: the share of words whose tag is right (most are O, so it starts high). Entity F1: "
               "whole entities (type and every word) found, as seqeval counts them; the number to watch.",
    "qa": "Exact match: the share of answers equal to the true one (after normalising case, punctuation and "
          "articles). F1: the word overlap of the predicted and true answers, averaged.",
}


def task_metric_names(kind: str) -> list[str]:
    """The validation metric names of a task kind (``val/...``), without the loss."""
    return [name for name, _ in TASK_METRICS.get(kind, ())]


def confusion_figure(labels: Sequence[str], matrix: Sequence[Sequence[float]], title: str = "Confusion matrix",
                     normalize: bool = True, height: int | None = None) -> go.Figure:
    """A heatmap of a confusion matrix: rows are the true classes, columns the predicted ones.
    ``normalize``: each row divided by its total (the colour is the share of that class's examples,
    so a rare class reads as clearly as a common one); each cell's text is its count either way."""
    counts = [[float(v) for v in row] for row in matrix]
    if normalize:
        z = [[v / s if (s := sum(row)) else 0.0 for v in row] for row in counts]
    else:
        z = counts
    names = [plain(label) for label in labels]
    text = [[f"{int(v):,}" for v in row] for row in counts]
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=names, text=text, texttemplate="%{text}", colorscale="Blues",
        zmin=0.0, zmax=1.0 if normalize else None,
        colorbar={"title": "share of row" if normalize else "examples"},
        hovertemplate="true %{y}<br>predicted %{x}<br>%{text} examples<extra></extra>",
    ))
    n = len(labels)
    fig.update_layout(title=plain(title), xaxis_title="predicted", yaxis_title="true",
                      height=height or min(700, 260 + 34 * n), margin={"l": 80, "r": 20, "t": 50, "b": 60})
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="bottom")
    return fig


def probabilities_figure(probs: Mapping[str, float], title: str = "Class probabilities") -> go.Figure:
    """A horizontal bar per class, most likely on top."""
    ordered = sorted(probs.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[p for _, p in ordered], y=[plain(k) for k, _ in ordered], orientation="h",
                           text=[f"{p:.1%}" for _, p in ordered], textposition="auto"))
    fig.update_layout(title=plain(title), xaxis={"title": "probability", "range": [0, 1]},
                      height=min(600, 140 + 32 * len(ordered)), margin={"l": 100, "r": 20, "t": 50, "b": 40})
    fig.update_yaxes(type="category")
    return fig


SPANS_STYLE = "white-space: pre-wrap; line-height: 1.9"
MARK_STYLE = "background: #ffe08a; border-radius: 3px; padding: 0 2px"


def spans_html(text: str, spans: Sequence[tuple[str, int, int]], css_class: str = "wb-span") -> str:
    """``text`` as escaped HTML with each ``(label, start, end)`` character span marked (``<mark>``
    with its label as a superscript); overlapping or out-of-range spans are skipped. Everything
    from ``text`` and the labels is escaped: nothing in them becomes markup."""
    out, pos = [], 0
    for label, start, end in sorted(spans, key=lambda s: (s[1], s[2])):
        if start < pos or end <= start or end > len(text):
            continue
        tag = html.escape(str(label))
        out.append(html.escape(text[pos:start]))
        out.append(f'<mark class="{css_class}" title="{tag}" style="{MARK_STYLE}">{html.escape(text[start:end])}'
                   f'<sup style="font-size: 0.65em; opacity: 0.8">{tag}</sup></mark>')
        pos = end
    out.append(html.escape(text[pos:]))
    return f'<div class="wb-spans" style="{SPANS_STYLE}">' + "".join(out) + "</div>"
