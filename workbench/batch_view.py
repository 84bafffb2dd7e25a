"""What a batch looks like: one training batch of a config, position by position, and the
attention mask its model runs with. Shared by the notebook and the dashboard's Train page.

:func:`example_batch` draws the batch the way training does (``objective.make_batch`` with a
seeded generator) from a *preview slice* of the training split (:func:`preview_corpus`: the start
of its first documents), so a preview takes well under a second even for a tokenizer family that
has to be trained: the tokenizer of the preview is fit on that slice, not on the whole split as a
run's is (a trained family's merges and ids may differ; the layout of the batch does not).
:func:`batch_table_html` and :func:`mask_figure` render one row.

>>> from workbench.presets import get_preset
>>> ex = example_batch(get_preset("gpt-nano"))
>>> ex.predicts_short, ex.causal, len(ex.descriptions), len(ex.descriptions[0]) == ex.config.seq_len
('next token', True, 2, True)
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from .config import RunConfig, needed_special_tokens
from .corpora import Corpus, corpus_from_text, load_corpus
from .experiment import fit_tokenizer, tokenize
from .objectives import Batch, Objective, build_objective
from .objectives.base import IGNORE_INDEX, IGNORED, describe_positions, predicts_label
from .plots import _show_tokens, visible
from .tokenizers import Tokenizer, TokenizerError

PREVIEW_CHARS = 48_000
"""Characters of training text a preview reads (at least; more for a long context)."""
PREVIEW_DOC_CHARS = 4_000
"""Characters taken from the start of each document, so the slice spans several documents
(next-sentence pairs need two for their negatives)."""


@dataclass
class BatchExample:
    """One training batch of a config and how to read it."""

    config: RunConfig
    objective: Objective
    tokenizer: Tokenizer
    batch: Batch
    descriptions: list[list[dict[str, Any]]]
    """``objective.describe_batch`` of each row: one dict per position."""
    matrices: list[torch.Tensor]
    """``objective.attention_mask_matrix`` of each row: (T, T) bool, query x key."""
    pairs: list[str]
    """For sentence pairs, what each row's pair label means ("IsNext: B follows A"); else empty."""
    encoders: list[list[dict[str, Any]]]
    """For encoder-decoders, what each row's encoder reads (one dict per position: ``position``,
    ``input``, ``attention``); ``descriptions`` are the decoder's. Else empty."""
    content_matrices: list[torch.Tensor]
    """For the permutation LM, each row's content-stream mask ((T, T): the query stream's plus
    the token itself); ``matrices`` are the query stream's. Else empty."""
    preview_chars: int
    """Characters of the training split the tokenizer was fit on and the batch drawn from."""

    @property
    def predicts(self) -> str:
        return self.objective.predicts

    @property
    def predicts_short(self) -> str:
        return predicts_label(self.objective.name)

    @property
    def causal(self) -> bool:
        return bool({"causal", "seq2seq"} & self.objective.needs)  # an encoder-decoder's view is its decoder's

    @property
    def matrix(self) -> torch.Tensor:
        """The first row's attention mask."""
        return self.matrices[0]

    def tokens(self, row: int = 0) -> list[str]:
        """The input tokens of a row, as shown."""
        return [p["input"] for p in self.descriptions[row]]


def preview_corpus(train: Corpus, seq_len: int = 0) -> Corpus:
    """The start of ``train``'s first documents: up to :data:`PREVIEW_DOC_CHARS` of each (cut at
    a line end when there is one in its second half), :data:`PREVIEW_CHARS` in all; both limits
    grow with ``seq_len`` so a long context still fits many windows.

    >>> from workbench.corpora import Document
    >>> c = preview_corpus(Corpus("c", [Document("ab\\n" * 3000), Document("cd" * 10)]))
    >>> [len(d.text) for d in c.documents]
    [3999, 20]
    """
    per_doc, total = max(PREVIEW_DOC_CHARS, 8 * seq_len), max(PREVIEW_CHARS, 64 * seq_len)
    docs = []
    for d in train.documents:
        if total <= 0:
            break
        limit = min(per_doc, total)
        text = d.text
        if len(text) > limit:
            line_end = text.rfind("\n", limit // 2, limit)
            text = text[: line_end + 1 if line_end > 0 else limit]
        docs.append(replace(d, text=text))
        total -= len(text) + len(train.separator)
    return Corpus(train.name + ":preview", docs, train.separator)


def example_batch(cfg: RunConfig, rows: int = 2, seed: int = 0, home: Path | None = None,
                  text: str | None = None, tokenizer: Tokenizer | None = None) -> BatchExample:
    """A training batch of ``rows`` rows for ``cfg``, as training draws it (``make_batch`` with
    ``torch.Generator().manual_seed(seed)``), from the preview slice of the training split
    (:func:`preview_corpus`; ``text`` stands for the corpus when given, e.g. an upload not
    stored yet). A kept tokenizer comes from ``home``'s library. Raises what a run would:
    ``ConfigError`` / ``CorpusError`` / ``TokenizerError`` (all ValueErrors) for a corpus the
    objective cannot use or a tokenizer that cannot be had. ``tokenizer``: the config's tokenizer
    when the caller has it loaded already (checked for the special tokens the objective needs).
    """
    corpus = corpus_from_text(text) if text is not None else load_corpus(cfg.data.corpus)
    train, _ = corpus.split(cfg.data.val_fraction)
    preview = preview_corpus(train, cfg.seq_len)
    objective = build_objective(cfg.objective)
    if tokenizer is None:
        tokenizer = fit_tokenizer(cfg, preview, objective, home)
    else:  # already loaded by the caller (a published one: loading it again costs seconds)
        missing = [t for t in needed_special_tokens(cfg) if tokenizer.token_to_id(t) is None]
        if missing:
            raise TokenizerError(f"this tokenizer has no {' '.join(missing)}; pick an objective that does not need "
                                 f"them, or a tokenizer that has them")
    objective.use_tokenizer(tokenizer)
    data = objective.prepare(tokenize(tokenizer, preview, char_lengths=objective.wants_char_lengths))
    batch = objective.make_batch(data, rows, cfg.seq_len, torch.Generator().manual_seed(seed))
    describe_pair = getattr(objective, "describe_pair", None)  # sentence pairs: what the pair label means
    pairs = [describe_pair(batch, tokenizer, r)["means"] for r in range(rows)] if describe_pair else []
    content = getattr(objective, "content_mask_matrix", None)  # two-stream attention: the other stream
    return BatchExample(
        config=cfg, objective=objective, tokenizer=tokenizer, batch=batch,
        descriptions=[objective.describe_batch(batch, tokenizer, r) for r in range(rows)],
        matrices=[objective.attention_mask_matrix(batch, r) for r in range(rows)],
        pairs=pairs, preview_chars=len(preview),
        encoders=[_describe_encoder(batch, tokenizer, r) for r in range(rows)] if batch.decoder_input_ids is not None else [],
        content_matrices=[content(batch, r) for r in range(rows)] if content else [],
    )


def _describe_encoder(batch: Batch, tokenizer: Tokenizer, row: int) -> list[dict[str, Any]]:
    """What an encoder-decoder's encoder reads in row ``row`` (sentinels included): no targets."""
    side = Batch(input_ids=batch.input_ids, labels=torch.full_like(batch.input_ids, IGNORE_INDEX),
                 attention_mask=batch.attention_mask)
    return [{k: v for k, v in p.items() if k not in ("target", "segment")} for p in describe_positions(side, tokenizer, row)]


# --- rendering ------------------------------------------------------------------------------------

_MADE = {"[MASK]": "#fde68a", "random": "#fca5a5", "kept": "#bbf7d0"}  # how a predicted position was made
_SEGMENT = ("#e0f2fe", "#ede9fe")  # segment A, segment B
_CELL = "border:1px solid #ddd;padding:1px 4px;text-align:center;white-space:pre;font-family:monospace"
_HEAD = "border:1px solid #ddd;padding:1px 6px;text-align:right;font-weight:600;background:#f8f8f8;position:sticky;left:0"


def batch_table_html(rows: Sequence[dict[str, Any]]) -> str:
    """One row of a batch (``describe_batch``'s dicts) as a compact, self-contained HTML table
    (inline styles only): a column per position; inputs shaded by segment (A blue, B violet)
    with padding greyed; targets the loss ignores shown as "—" in grey; where the description
    says how a predicted input was ``made``, [MASK] yellow, random red, kept green. Every token
    is escaped.

    >>> out = batch_table_html([{"position": 0, "input": "<b>", "target": "—", "segment": 0, "attention": 1}])
    >>> "&lt;b&gt;" in out and "<b>" not in out
    True
    """
    has_made = any("made" in p for p in rows)
    has_segments = any(p.get("segment") for p in rows)
    fields = [("position", "position"), ("input", "input")]
    if any("target" in p for p in rows):  # an encoder's row has inputs only
        fields.append(("target", "target"))
    if has_made:
        fields.append(("made", "masked as"))
    if any("order" in p for p in rows):  # the permutation LM: each predicted token's step in the order
        fields.append(("order", "predicted #"))
    if has_segments:
        fields.append(("segment", "segment"))
    body = []
    for key, title in fields:
        cells = [f'<th style="{_HEAD}">{html.escape(title)}</th>']
        for p in rows:
            style = _CELL
            value = p.get(key, "")
            if key == "input":
                style += f";background:{_SEGMENT[1] if p.get('segment') else _SEGMENT[0]}" if has_segments else ""
                if not p.get("attention", 1):
                    style += ";color:#aaa;font-style:italic"
            elif key == "target" and value == IGNORED:
                style += ";color:#bbb"
            elif key in ("target", "made") and p.get("made") in _MADE:
                style += f";background:{_MADE[p['made']]}"
            elif key == "segment":
                value = "AB"[int(value)] if p.get("attention", 1) else ""
            shown = visible(str(value)) if key in ("input", "target") and value != IGNORED else str(value)
            cells.append(f'<td style="{style}">{html.escape(shown)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return ('<div class="wb-batch" style="overflow-x:auto;max-width:100%"><table style="border-collapse:collapse;font-size:12px">'
            + "".join(body) + "</table></div>")


QUERY_STREAM = "Query stream: each token sees the context and the tokens predicted before it, never itself"
CONTENT_STREAM = "Content stream: what the query stream sees, and the token itself"
"""Titles of the permutation LM's two masks (:func:`mask_figure`'s ``title``)."""


def mask_figure(matrix: torch.Tensor | np.ndarray, tokens: Sequence[str], causal: bool | None = None,
                title: str | None = None) -> go.Figure:
    """The attention mask as a heatmap: rows are queries, columns keys, filled where the query
    may attend to the key; token labels on both axes; titled ``title``, else causal or
    bidirectional (``causal`` None: read from the matrix, a hidden real key above the diagonal
    means causal).

    >>> fig = mask_figure(torch.ones(2, 2).tril().bool(), ["a", "b"])
    >>> fig.layout.title.text.split(":")[0], list(fig.data[0].x)
    ('Causal attention mask', ['0:a', '1:b'])
    """
    m = np.asarray(matrix, dtype=float)
    if causal is None:
        real = m.any(axis=0)  # keys some query sees
        causal = bool((np.triu(m == 0, 1) & real[None, :]).any())
    labels = _show_tokens(tokens)
    title = title or ("Causal attention mask: each token sees itself and the tokens before it" if causal else
                      "Bidirectional attention mask: each token sees every real token, before and after it")
    if (~m.any(axis=0)).any():  # keys no query sees: padding
        title += "; padding hidden"
    fig = go.Figure(go.Heatmap(z=m, x=labels, y=labels, colorscale=[[0, "#f4f4f5"], [1, "#2563eb"]], zmin=0, zmax=1,
                               showscale=False, xgap=1, ygap=1,
                               hovertemplate="query %{y}<br>key %{x}<br>%{z:.0f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="key (attended to)", yaxis_title="query (attending from)",
                      yaxis={"autorange": "reversed"}, height=520, margin={"l": 80, "r": 20, "t": 50, "b": 80})
    return fig
