"""Where the workbench keeps things: ``$WORKBENCH_HOME`` (runs, store) and a cache dir."""

from __future__ import annotations

import os
from pathlib import Path


def workbench_home() -> Path:
    """Root of the run store and run folders: ``$WORKBENCH_HOME`` or ``~/.workbench``.

    The CLI, notebooks and the dashboard all read the same home, so a run started in one
    shows up in the others.
    """
    home = Path(os.environ.get("WORKBENCH_HOME", Path.home() / ".workbench")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home


def cache_dir() -> Path:
    """Built artefacts that can be rebuilt (corpus text): ``$WORKBENCH_CACHE`` or the user cache."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "workbench"
    path = Path(os.environ.get("WORKBENCH_CACHE", default)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path
