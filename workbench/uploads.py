"""User-uploaded corpora (and seq2seq TSV files): checked, then saved under
``$WORKBENCH_HOME/uploads/<sha256>.txt`` (``.tsv``).

The stored name is a prefix of the content's SHA-256, never the user's file name, so an upload
can neither escape the folder (``../../x``) nor overwrite another upload; the same text
uploaded twice lands on the same file (and the run's ``corpus`` path is stable).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .corpora import CorpusError
from .io import atomic_write
from .paths import workbench_home

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest upload accepted (matches ``server.maxUploadSize = 20`` in ``.streamlit/config.toml``)."""
SUFFIXES = (".txt", ".tsv")
"""The stored files' suffixes: a corpus (``.txt``) or a seq2seq task's pairs (``.tsv``)."""


def check_upload(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """The uploaded bytes as text, or a :class:`CorpusError` saying what to change.

    >>> check_upload(b"hello")
    'hello'
    >>> check_upload(b"\\xff\\xfe")
    Traceback (most recent call last):
    ...
    workbench.corpora.CorpusError: the uploaded file is not UTF-8 text (bad byte at offset 0); re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)
    """
    if len(data) > max_bytes:
        raise CorpusError(
            f"the uploaded file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB: upload a smaller text"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"the uploaded file is not UTF-8 text (bad byte at offset {exc.start}); "
            f"re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None
    if not text.strip():
        raise CorpusError("the uploaded file is empty; upload a file with some text in it")
    return text.replace("\r\n", "\n")


def upload_path(data: bytes, home: str | Path | None = None, suffix: str = ".txt") -> Path:
    """Where :func:`save_upload` stores these bytes: named by content hash, never by the user;
    ``suffix`` is one of :data:`SUFFIXES` (a ValueError otherwise: no name comes from outside).

    >>> upload_path(b"x", "/h", suffix="/../../etc")
    Traceback (most recent call last):
    ...
    ValueError: suffix must be one of .txt, .tsv, got '/../../etc'
    """
    if suffix not in SUFFIXES:
        raise ValueError(f"suffix must be one of {', '.join(SUFFIXES)}, got {suffix!r}")
    folder = Path(home) if home is not None else workbench_home()
    return folder / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"


def save_upload(data: bytes, home: str | Path | None = None, max_bytes: int = MAX_UPLOAD_BYTES,
                suffix: str = ".txt") -> Path:
    """Check an uploaded text (size, UTF-8, not empty) and store it; returns the stored path
    (``suffix``: ``.txt`` for a corpus, ``.tsv`` for a seq2seq task's pairs).

    >>> import tempfile
    >>> p = save_upload("To be, or not to be".encode(), home=tempfile.mkdtemp())
    >>> p.parent.name, p.suffix, len(p.stem), p.read_text()
    ('uploads', '.txt', 16, 'To be, or not to be')
    >>> p = save_upload("one\\tnu".encode(), home=tempfile.mkdtemp(), suffix=".tsv")
    >>> p.parent.name, p.suffix, len(p.stem), p.read_text()
    ('uploads', '.tsv', 16, 'one\\tnu')
    """
    check_upload(data, max_bytes)
    path = upload_path(data, home, suffix)
    if not path.exists():  # same bytes, same name: nothing to do
        atomic_write(path, data)
    return path
