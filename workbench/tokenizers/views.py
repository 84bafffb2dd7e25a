"""Views of tokenizers for notebooks and the dashboard: the text coloured by token, several
tokenizers side by side, BPE's merges step by step, compression against vocabulary size, and
what tokenization does to sequence length.

HTML views are self-contained strings (inline styles: no CDN, no JavaScript, no ``<style>``
block, no literal line breaks, so they also survive Markdown renderers). Every piece of user
text goes through :func:`html.escape`. Charts are plotly figures in the style of
:mod:`workbench.plots`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..plots import plain
from .base import Tokenizer
from .stats import TokenizerStats, tokenizer_stats

PALETTE = ("#cde6ff", "#ffdcb0", "#d3f2d0", "#f2d4f5")
"""Pastel backgrounds, one per token in turn, so neighbouring tokens always differ."""
_BOX = "font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;line-height:1.9;word-break:break-all"
_MARK = '<span class="wb-mark" style="color:#888">{}</span>'
"""Marks that are not text of the input (↵ before a line break, a zero-width token's name)."""
NEWLINE = _MARK.format("↵") + "<br>"
_UNK_STYLE = "outline:2px solid #d62728;outline-offset:-2px"
_SPECIAL_STYLE = "outline:1px dashed #555;outline-offset:-1px"


def _text(s: str, newline: str = "<br>") -> str:
    """Escaped text; line breaks as ``<br>`` (after a ↵ mark inside a token)."""
    return html.escape(s).replace("\n", newline)


def _span(body: str, title: str, color: str, style: str = "", ids: Sequence[int] = ()) -> str:
    data = f' data-ids="{" ".join(map(str, ids))}"' if ids else ""
    return (f'<span class="wb-tok"{data} title="{html.escape(title)}" '
            f'style="background:{color};border-radius:3px;{style}">{body}</span>')


def _visible(s: str) -> str:
    """A token with its whitespace made visible, for tables and labels: ``' the\\n'`` -> ``'·the↵'``."""
    return s.replace(" ", "·").replace("\n", "↵").replace("\t", "→") or "∅"


def token_html(tokenizer: Tokenizer, text: str) -> str:
    """``text`` coloured by token: each token a ``<span>`` over the characters of the *original*
    text it covers (a lowercasing WordPiece still shows ``Romeo``), whose ``title`` (hover) gives
    its id and display form. Text no token covers (spaces a word tokenizer drops) stays
    uncoloured; [UNK] has a red outline, other special tokens a dashed one. Tokens that share a
    character (the byte tokens of one emoji) share one span, which lists all their ids.

    >>> import re
    >>> from workbench.tokenizers import train_tokenizer
    >>> out = token_html(train_tokenizer("word", "to be or not to be", 20, min_freq=2), "to <b>")
    >>> "&lt;" in out and "<b>" not in out  # the text is escaped
    True
    >>> [html.unescape(t) for t in re.findall(r'title="([^"]*)"', out)]
    ["id 1: 'to'", "id 0: '[UNK]'", "id 0: '[UNK]'", "id 0: '[UNK]'"]
    """
    ids, offsets = tokenizer.encode_offsets([text])[0]
    groups: list[tuple[int, int, list[int]]] = []  # [start, end) and the ids of each span
    covered = 0
    for i, (a, b) in zip(ids, offsets):
        a, b = max(0, min(a, len(text))), max(0, min(b, len(text)))
        if groups and a < covered and b > a:  # shares characters with the span before
            start, end, group = groups[-1]
            groups[-1] = (start, max(end, b), group + [i])
        else:
            groups.append((a, b, [i]))
        covered = max(covered, b)
    unk = tokenizer.unk_id
    specials = {tokenizer.token_to_id(t) for t in tokenizer.special_tokens}
    out, pos = [], 0
    for n, (a, b, group) in enumerate(groups):
        if a > pos:
            out.append(_text(text[pos:a]))
        shown = [tokenizer.display_token(i) for i in group]
        title = f"id {group[0]}: {shown[0]!r}" if len(group) == 1 else \
            f"ids {' '.join(map(str, group))}: {' + '.join(map(repr, shown))}"
        style = _UNK_STYLE if unk in group else _SPECIAL_STYLE if specials & set(group) else ""
        body = _text(text[max(a, pos):b], NEWLINE) if b > a else _MARK.format(html.escape(shown[0]) or "∅")
        out.append(_span(body, title, PALETTE[n % len(PALETTE)], style, group))
        pos = max(pos, b)
    out.append(_text(text[pos:]))
    return f'<div class="wb-tokens" style="{_BOX}">{"".join(out)}</div>'


def side_by_side_html(tokenizers: Mapping[str, Tokenizer], text: str) -> str:
    """One row per tokenizer: its name, how many tokens ``text`` takes, characters per token,
    and the coloured tokens (:func:`token_html`)."""
    rows = []
    for name, tok in tokenizers.items():
        n = len(tok.encode(text))
        rows.append(f'<tr><th style="text-align:left;vertical-align:top;padding:4px 8px">{html.escape(name)}</th>'
                    f'<td class="wb-count" style="text-align:right;vertical-align:top;padding:4px 8px">{n}</td>'
                    f'<td class="wb-cpt" style="text-align:right;vertical-align:top;padding:4px 8px">'
                    f'{len(text) / n if n else 0:.2f}</td>'
                    f'<td style="text-align:left;padding:4px 8px">{token_html(tok, text)}</td></tr>')
    head = "".join(f'<th style="padding:4px 8px">{h}</th>' for h in ("tokenizer", "tokens", "chars/token", "the text, token by token"))
    return f'<table class="wb-side-by-side"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


# --- BPE step by step (the teaching tokenizer) ---------------------------------------------------

def _check_steps(tok: Any, ks: Iterable[int]) -> list[int]:
    if not hasattr(tok, "tokens_after"):
        raise TypeError(f"merge views need the teaching-bpe tokenizer (it records its merges), not {tok.kind!r}")
    ks = [int(k) for k in ks]
    bad = [k for k in ks if not 0 <= k <= len(tok.merges)]
    if bad:
        raise ValueError(f"k must be between 0 and {len(tok.merges)} (the merges learned), got {bad}")
    return ks


def merge_steps(tok: Any, text: str, ks: Iterable[int]) -> list[list[str]]:
    """How ``text`` splits after the first ``k`` merges, for each k (k=0: one piece per byte).

    >>> from workbench.tokenizers import train_tokenizer
    >>> tok = train_tokenizer("teaching-bpe", "the cat sat on the mat " * 20, 262)
    >>> merge_steps(tok, "the hat", [0, 1, 2, 3])
    [['t', 'h', 'e', ' ', 'h', 'a', 't'], ['t', 'h', 'e', ' ', 'h', 'at'], ['th', 'e', ' ', 'h', 'at'], ['the', ' ', 'h', 'at']]
    """
    return [tok.tokens_after(text, k) for k in _check_steps(tok, ks)]


def merges_table(tok: Any, n: int | None = None) -> list[dict[str, Any]]:
    """The first ``n`` merges (all by default) in the order learned: rank 1 is the first merge,
    so "after k merges" means ranks 1..k are in use.

    >>> from workbench.tokenizers import train_tokenizer
    >>> merges_table(train_tokenizer("teaching-bpe", "the cat sat on the mat " * 20, 262), 2)
    [{'rank': 1, 'left': 'a', 'right': 't', 'merged': 'at'}, {'rank': 2, 'left': 't', 'right': 'h', 'merged': 'th'}]
    """
    _check_steps(tok, [])
    table = tok.merge_table()[:n]
    return [{"rank": k + 1, "left": left, "right": right, "merged": merged} for k, (left, right, merged) in enumerate(table)]


def table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of dicts (e.g. :func:`merges_table`) as an HTML table; text cells escaped, whitespace visible."""
    if not rows:
        return "<table></table>"
    cell = 'style="padding:2px 8px;text-align:left;font-family:ui-monospace,monospace"'
    head = "".join(f"<th {cell}>{html.escape(str(c))}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td {cell}>{html.escape(_visible(v) if isinstance(v, str) else str(v))}</td>"
                                    for v in row.values()) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def merges_html(tok: Any, text: str, ks: Iterable[int]) -> str:
    """One row per k: the number of pieces, the merge learned last, and ``text`` coloured by piece."""
    ks = _check_steps(tok, ks)
    names = tok.merge_table()
    rows = []
    for k, pieces in zip(ks, merge_steps(tok, text, ks)):
        spans = "".join(_span(_text(p, NEWLINE), repr(p), PALETTE[j % len(PALETTE)]) for j, p in enumerate(pieces))
        last = "bytes" if k == 0 else f"{_visible(names[k - 1][0])} + {_visible(names[k - 1][1])} → {_visible(names[k - 1][2])}"
        rows.append(f'<tr><td style="padding:2px 8px;text-align:right">{k}</td>'
                    f'<td class="wb-count" style="padding:2px 8px;text-align:right">{len(pieces)}</td>'
                    f'<td style="padding:2px 8px;text-align:left;font-family:ui-monospace,monospace">{html.escape(last)}</td>'
                    f'<td style="padding:2px 8px;text-align:left"><div style="{_BOX}">{spans}</div></td></tr>')
    head = "".join(f'<th style="padding:2px 8px">{h}</th>' for h in ("merges k", "pieces", "merge k", "the text"))
    return f'<table class="wb-merges"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def merges_figure(tok: Any, text: str, ks: Iterable[int] | None = None) -> go.Figure:
    """Pieces ``text`` takes against merges used (hover: the merge learned at that step);
    by default at most ~200 evenly spaced k from 0 to all merges."""
    n = len(tok.merges)
    ks = _check_steps(tok, ks if ks is not None else sorted({*range(0, n + 1, max(1, n // 200)), n}))
    names = tok.merge_table()
    hover = [plain("bytes" if k == 0 else f"{_visible(names[k - 1][0])} + {_visible(names[k - 1][1])} → "
                   f"{_visible(names[k - 1][2])}") for k in ks]
    counts = [len(p) for p in merge_steps(tok, text, ks)]
    fig = go.Figure(go.Scatter(x=ks, y=counts, mode="lines+markers" if len(ks) <= 200 else "lines", text=hover,
                               hovertemplate="after %{x} merges: %{y} pieces<br>merge %{x}: %{text}<extra></extra>"))
    fig.update_layout(title="BPE, merge by merge: pieces in the text", xaxis_title="merges used (k)",
                      yaxis_title="pieces", height=320, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    return fig


# --- compression and sequence length -------------------------------------------------------------

def compression_sweep(kinds_and_sizes: Mapping[str, Sequence[int | None]], train_text: str,
                      val_text: str | Sequence[str], settings: Mapping[str, Mapping[str, Any]] | None = None,
                      ) -> list[dict[str, Any]]:
    """Train each kind at each vocabulary size on ``train_text`` and measure it on held-out
    ``val_text`` (a size of None: the family's own, e.g. ``char``). ``settings`` adds per-kind
    config fields (``{"word": {"min_freq": 1}}``). ``vocab_size`` is the size the tokenizer
    really has (a word vocabulary can run out of words below the size asked for).

    >>> rows = compression_sweep({"char": [None], "word": [30]}, "to be or not to be " * 9, "not to be")
    >>> [(r["kind"], r["vocab_size"], round(r["chars_per_token"], 2), r["unk_rate"]) for r in rows]
    [('char', 8, 1.0, 0.0), ('word', 5, 3.0, 0.0)]
    """
    from . import build_tokenizer, tokenizer_config_class

    texts = [val_text] if isinstance(val_text, str) else list(val_text)
    rows = []
    for kind, sizes in kinds_and_sizes.items():
        for size in sizes:
            fields = dict((settings or {}).get(kind, {}), **({"vocab_size": size} if size is not None else {}))
            tok = build_tokenizer(tokenizer_config_class(kind)(kind=kind, **fields), train_text)
            s = tokenizer_stats(tok, texts)
            rows.append({"kind": kind, "vocab_size": tok.vocab_size, "chars_per_token": s.chars_per_token,
                         "unk_rate": s.unk_rate, "requested_size": size})
    return rows


def compression_figure(results: Sequence[Mapping[str, Any]], title: str = "Compression against vocabulary size") -> go.Figure:
    """Characters per token (y) against vocabulary size (x, log scale): one line per kind
    (rows as :func:`compression_sweep` returns them).

    >>> fig = compression_figure([{"kind": "bpe", "vocab_size": 500, "chars_per_token": 2.5, "unk_rate": 0.0},
    ...                           {"kind": "bpe", "vocab_size": 300, "chars_per_token": 2.0, "unk_rate": 0.0}])
    >>> [(t.name, list(t.x), list(t.y)) for t in fig.data]
    [('bpe', [300, 500], [2.0, 2.5])]
    """
    fig = go.Figure()
    for kind in dict.fromkeys(r["kind"] for r in results):
        rows = sorted((r for r in results if r["kind"] == kind), key=lambda r: r["vocab_size"])
        fig.add_trace(go.Scatter(x=[r["vocab_size"] for r in rows], y=[r["chars_per_token"] for r in rows],
                                 mode="lines+markers", name=plain(kind), customdata=[r.get("unk_rate", 0.0) for r in rows],
                                 hovertemplate=f"{plain(kind)}<br>vocab %{{x}}<br>%{{y:.2f}} chars/token<br>"
                                               "[UNK] %{customdata:.2%}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="vocabulary size", yaxis_title="characters per token (held-out text)",
                      height=380, margin={"l": 50, "r": 20, "t": 50, "b": 40})
    fig.update_xaxes(type="log")
    return fig


def length_histogram(stats_by_name: Mapping[str, TokenizerStats], max_bins: int = 150) -> go.Figure:
    """Tokens per line for several tokenizers, overlaid: how long the same text's sequences get.

    Counted here into at most ``max_bins`` shared bins (one per length while that fits), so the
    figure stays light however many lines there are.

    >>> from workbench.tokenizers.stats import TokenizerStats
    >>> s = TokenizerStats("char", 9, 6, 6, 1.0, 3, 0.3, 0, 0.0, [2, 2, 3])
    >>> fig = length_histogram({"char": s})
    >>> [(t.name, list(t.x), list(t.y)) for t in fig.data]
    [('char (median 2)', [2.0, 3.0], [2, 1])]
    """
    top = max((max(s.line_lengths, default=0) for s in stats_by_name.values()), default=0)
    width = max(1, -(-(top + 1) // max_bins))
    fig = go.Figure()
    for name, s in stats_by_name.items():
        counts = np.bincount(np.asarray(s.line_lengths, dtype=int) // width, minlength=1)
        keep = np.nonzero(counts)[0]
        fig.add_trace(go.Bar(x=(keep * width + (width - 1) / 2).tolist(), y=counts[keep].tolist(), width=width,
                             name=plain(f"{name} (median {s.percentile(50)})"), opacity=0.55,
                             hovertemplate=f"{plain(name)}<br>%{{y}} lines of ~%{{x}} tokens<extra></extra>"))
    fig.update_layout(title="Tokens per line", barmode="overlay", xaxis_title="tokens in the line",
                      yaxis_title="lines", height=360, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.2})
    return fig


__all__ = ["NEWLINE", "PALETTE", "compression_figure", "compression_sweep", "length_histogram", "merge_steps",
           "merges_figure", "merges_html", "merges_table", "side_by_side_html", "table_html", "token_html"]
