"""Tokenizers kept by name, for later runs: ``$WORKBENCH_HOME/tokenizers/<name>/``.

Each folder holds ``tokenizer.json`` (ours: :meth:`Tokenizer.load` reads it), ``hf/tokenizer.json``
(Hugging Face's format: ``PreTrainedTokenizerFast(tokenizer_file=...)``, or the folder with
``AutoTokenizer.from_pretrained``) and ``meta.json`` (its settings, the corpus it learned
from, its statistics on that corpus's validation split). A folder appears whole or not at all:
it is written under a temporary name and renamed into place. Replacing one moves the old folder
aside first; if the process dies between the two renames, the next read puts the old one back.

A run that uses a kept tokenizer (``tokenizer.kind = 'saved'``) copies it into its own folder,
so deleting it later never breaks the run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..io import TMP_SUFFIX, atomic_write
from ..paths import workbench_home
from .base import Tokenizer, TokenizerError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""Kept names: letters, digits, '.', '_' and '-', up to 64, no leading dot (no paths)."""


@dataclass
class KeptTokenizer:
    """What ``meta.json`` says about a kept tokenizer."""

    name: str
    kind: str
    vocab_size: int
    config: dict[str, Any] = field(default_factory=dict)
    corpus: str = ""
    corpus_hash: str = ""
    created: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    special_tokens: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """e.g. 'my-wp: wordpiece, 2000 tokens, from shakespeare'."""
        where = f", from {Path(self.corpus).name}" if self.corpus else ""
        return f"{self.name}: {self.kind}, {self.vocab_size} tokens{where}"


def check_name(name: str) -> str:
    """The name, or a TokenizerError saying what a name may be.

    >>> check_name("shakespeare-wp.2k")
    'shakespeare-wp.2k'
    >>> check_name("../x")
    Traceback (most recent call last):
    ...
    workbench.tokenizers.base.TokenizerError: tokenizer name '../x' is not allowed: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit
    """
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise TokenizerError(f"tokenizer name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                             f"starting with a letter or digit")
    return name


class TokenizerLibrary:
    """The kept tokenizers of one workbench home."""

    def __init__(self, home: str | Path | None = None) -> None:
        self.root = Path(home) if home is not None else workbench_home()
        self.root = self.root / "tokenizers"

    def path(self, name: str) -> Path:
        """The folder of ``name`` (restored first if a replacement was cut short)."""
        final = self.root / check_name(name)
        if not final.exists():
            for old in sorted(self.root.glob(f".{name}.old.*{TMP_SUFFIX}"), key=lambda p: p.stat().st_mtime):
                try:
                    os.replace(old, final)
                    break
                except OSError:
                    continue
        return final

    def exists(self, name: str) -> bool:
        return (self.path(name) / "meta.json").is_file()

    def save(self, name: str, tokenizer: Tokenizer, corpus: str = "", corpus_hash: str = "",
             stats: dict[str, Any] | None = None, overwrite: bool = False) -> KeptTokenizer:
        """Keep ``tokenizer`` as ``name``; refuses to replace one unless ``overwrite``."""
        final = self.path(name)
        if final.exists() and not overwrite:
            raise TokenizerError(f"a tokenizer named {name!r} is already kept; pick another name or delete it first")
        info = KeptTokenizer(name=name, kind=tokenizer.kind, vocab_size=tokenizer.vocab_size,
                             config=tokenizer.config_dict() or {"kind": tokenizer.kind}, corpus=corpus, corpus_hash=corpus_hash,
                             created=time.time(), stats=dict(stats or {}), special_tokens=list(tokenizer.special_tokens))
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temp_dirs()
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.", suffix=TMP_SUFFIX))
        try:
            tokenizer.save(tmp / "tokenizer.json")
            tokenizer.save_pretrained(tmp / "hf")
            atomic_write(tmp / "meta.json", json.dumps(asdict(info), indent=2, ensure_ascii=False))
            if final.exists():  # overwrite: move the old one aside; `path` puts it back after a crash
                old = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.old.", suffix=TMP_SUFFIX))
                os.rmdir(old)
                os.replace(final, old)
                try:
                    os.replace(tmp, final)
                except BaseException:
                    os.replace(old, final)
                    raise
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return info

    def _missing(self, name: str) -> TokenizerError:
        kept = ", ".join(k.name for k in self.list()) or "none yet"
        return TokenizerError(f"no kept tokenizer named {name!r} (kept: {kept}); train one with "
                              f"`python -m workbench tokenizers train --save {name}` or on the dashboard's Tokenizers page")

    def info(self, name: str) -> KeptTokenizer:
        meta = self.path(name) / "meta.json"
        if not meta.is_file():
            raise self._missing(name)
        return KeptTokenizer(**json.loads(meta.read_text(encoding="utf-8")))

    def load(self, name: str) -> Tokenizer:
        path = self.path(name) / "tokenizer.json"
        if not path.is_file():
            raise self._missing(name)
        return Tokenizer.load(path)

    def hf_file(self, name: str) -> Path:
        """The HF-format ``tokenizer.json`` of a kept tokenizer."""
        return self.path(name) / "hf" / "tokenizer.json"

    def list(self) -> list[KeptTokenizer]:
        """Every kept tokenizer, newest first (folders without a readable meta.json are skipped)."""
        out = []
        if self.root.is_dir():
            for old in self.root.glob(f".*.old.*{TMP_SUFFIX}"):  # replacements cut short: restore them
                name = old.name[1:].split(".old.", 1)[0]
                if NAME.fullmatch(name):
                    self.path(name)
            for d in self.root.iterdir():
                if d.name.startswith(".") or not (d / "meta.json").is_file():
                    continue
                try:
                    out.append(self.info(d.name))
                except (TokenizerError, ValueError, TypeError):
                    continue
        return sorted(out, key=lambda k: -k.created)

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.exists():
            raise self._missing(name)
        trash = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{name}.del.", suffix=TMP_SUFFIX))
        os.rmdir(trash)
        os.replace(path, trash)  # gone from the list at once, even if removing the files fails
        shutil.rmtree(trash, ignore_errors=True)

    def _remove_stale_temp_dirs(self, older_than_s: float = 3600) -> None:
        """Folders left by a process killed while saving."""
        now = time.time()
        for d in self.root.glob(f".*{TMP_SUFFIX}"):
            if ".old." in d.name:
                continue  # an old copy to restore, not litter (see `path`)
            try:
                if now - d.stat().st_mtime > older_than_s:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass
