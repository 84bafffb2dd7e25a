"""User-uploaded corpora: checked, then saved under ``$WORKBENCH_HOME/uploads/<sha256>.txt``.

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


def upload_path(data: bytes, home: str | Path | None = None) -> Path:
    """Where :func:`save_upload` stores these bytes: named by content hash, never by the user."""
    folder = Path(home) if home is not None else workbench_home()
    return folder / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}.txt"


def save_upload(data: bytes, home: str | Path | None = None, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Check an uploaded text (size, UTF-8, not empty) and store it; returns the stored path.

    >>> import tempfile
    >>> p = save_upload("To be, or not to be".encode(), home=tempfile.mkdtemp())
    >>> p.parent.name, p.suffix, len(p.stem), p.read_text()
    ('uploads', '.txt', 16, 'To be, or not to be')
    """
    check_upload(data, max_bytes)
    path = upload_path(data, home)
    if not path.exists():  # same bytes, same name: nothing to do
        atomic_write(path, data)
    return path
