"""Token text for labels: shown as typed (plotly draws a subset of HTML) with whitespace visible.
No imports from the rest of the package, so every view can use it without an import cycle."""

from __future__ import annotations

import html


def plain(text: str) -> str:
    """Text for a plotly label that shows as typed: plotly draws a subset of HTML in labels
    (links included), so ``<``, ``>`` and ``&`` become entities, which it shows as characters.

    >>> plain('<a href="http://x">run</a> & co')
    '&lt;a href="http://x"&gt;run&lt;/a&gt; &amp; co'
    """
    return html.escape(str(text), quote=False)


def visible(token: str) -> str:
    """A token with its whitespace made visible (a table cell or an axis label would collapse it).

    >>> visible(" a\\n"), visible("")
    ('·a⏎', '∅')
    """
    return token.replace("\n", "⏎").replace(" ", "·").replace("\t", "⇥") or "∅"
