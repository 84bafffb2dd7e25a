"""The benches' one input: the classic tiny-shakespeare text, given as ``--data PATH``."""

from __future__ import annotations

import sys
from pathlib import Path

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
"""Where nanoGPT's ``data/shakespeare_char/prepare.py`` downloads it from (1,115,394 characters)."""


def data_path_or_exit(path: Path | None, script: str) -> Path:
    """The ``--data`` file, or exit with status 2 and a message saying how to get it."""
    if path is not None and path.is_file():
        return path
    what = "no --data given" if path is None else f"--data {str(path)!r} is not a file"
    print(f"{script}: {what}. Pass the tiny-shakespeare text: --data PATH/TO/tinyshakespeare.txt\n"
          f"Get it with nanoGPT's data/shakespeare_char/prepare.py, or download it directly:\n"
          f"  curl -o tinyshakespeare.txt {URL}", file=sys.stderr)
    raise SystemExit(2)
