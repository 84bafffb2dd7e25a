"""One way to write a file: atomically, durably, with no temporary file left behind.

Every file the workbench writes (configs, tokenizers, checkpoints, attention snapshots, the
corpus cache, uploads, error reports) goes through :func:`atomic_write`: the bytes go to a
temporary file in the same folder, are flushed and fsync'ed, then ``os.replace`` puts them in
place and the folder is fsync'ed. A reader sees the old file or the new one, never half of one;
a crash or a full disk leaves the old file and no ``*.tmp``. A process killed with SIGKILL
cannot clean up, so :func:`remove_stale_temp_files` is called when a run (re)starts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".wbtmp"
"""Suffix of every temporary file the workbench creates (what the cleanup looks for)."""


def _file_mode() -> int:
    """What ``open(path, "w")`` would give a new file: 0o666 less the umask (mkstemp gives 0o600,
    which would hide a shared store's files from the rest of a team)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # read once, at import: os.umask is process-wide and not thread-safe


def atomic_write(path: str | Path, data: bytes | str | Callable[[BinaryIO], None]) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a function that writes to a binary file) to ``path``.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a" / "x.txt"
    >>> _ = atomic_write(p, "hello")
    >>> p.read_text(), sorted(x.name for x in p.parent.iterdir())
    ('hello', ['x.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), FILE_MODE)
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete temporary files left under ``folder`` by a process that was killed mid-write."""
    removed = []
    for p in Path(folder).rglob(f"*{TMP_SUFFIX}"):
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed
