"""Typed run configuration: model, data, training; presets; validation that names the field.

Every field is a CLI flag (``--n-embd``), a dashboard control and a key in ``config.json``.
Validation lives in ``__post_init__`` so a bad value never reaches the trainer or the store.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A configuration value a user must change; ``field`` names it (CLI flag / form field)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def _require(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise ConfigError(field_name, message)


@dataclass
class ModelConfig:
    """Shape of the model. ``block_size`` is the longest context the model can attend over."""

    arch: Literal["gpt"] = "gpt"
    """Model family. Only the GPT-style decoder exists so far; encoders and RNNs plug in here."""
    n_layer: int = 2
    """Number of transformer blocks."""
    n_head: int = 2
    """Attention heads per block; must divide ``n_embd``."""
    n_embd: int = 64
    """Width of the residual stream."""
    block_size: int = 64
    """Maximum context length (size of the position table)."""
    vocab_size: int = 0
    """Filled in from the tokenizer at build time; 0 means 'not known yet'."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches (0 to disable)."""
    bias: bool = True
    """Biases in Linear and LayerNorm layers (GPT-2 has them)."""
    pos_encoding: Literal["learned", "sinusoidal"] = "learned"
    """Learned position embeddings (GPT-2) or fixed sinusoids (original Transformer)."""
    tie_weights: bool = True
    """Share the token embedding with the output projection (weight tying)."""

    def __post_init__(self) -> None:
        _require(self.arch == "gpt", "arch", f"unknown architecture {self.arch!r}; use 'gpt'")
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value > 0, name, f"must be a positive integer, got {value!r}")
        _require(
            self.n_embd % self.n_head == 0,
            "n_embd",
            f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
            f"pick n_embd as a multiple of n_head (e.g. {self.n_head * max(1, round(self.n_embd / self.n_head))})",
        )
        _require(
            self.block_size <= MAX_BLOCK_SIZE,
            "block_size",
            f"block_size={self.block_size} is above the maximum {MAX_BLOCK_SIZE}; lower it",
        )
        _require(self.vocab_size >= 0, "vocab_size", "must be >= 0")
        _require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        _require(
            self.pos_encoding in ("learned", "sinusoidal"),
            "pos_encoding",
            f"unknown {self.pos_encoding!r}; use 'learned' or 'sinusoidal'",
        )


MAX_BLOCK_SIZE = 8192
"""Largest context any preset or user config may ask for (attention is O(T^2) in memory)."""


@dataclass
class DataConfig:
    """Where the text comes from and how it becomes tokens."""

    corpus: str = "shakespeare"
    """A built-in corpus name ('shakespeare') or the path of a UTF-8 ``.txt`` file."""
    tokenizer: Literal["char", "bpe"] = "char"
    """'char': one token per character; 'bpe': byte-level BPE trained on the corpus."""
    vocab_size: int = 512
    """Target vocabulary size for trained tokenizers (ignored by 'char')."""
    val_fraction: float = 0.1
    """Fraction of the text (its tail) held out for validation."""

    def __post_init__(self) -> None:
        _require(bool(str(self.corpus).strip()), "corpus", "is empty; name 'shakespeare' or a .txt file")
        _require(self.tokenizer in ("char", "bpe"), "tokenizer", f"unknown {self.tokenizer!r}; use 'char' or 'bpe'")
        _require(
            isinstance(self.vocab_size, int) and 260 <= self.vocab_size <= 100_000,
            "vocab_size",
            f"must be between 260 (the 256 bytes plus a few merges) and 100000, got {self.vocab_size}",
        )
        _require(0.0 < self.val_fraction < 0.5, "val_fraction", f"must be in (0, 0.5), got {self.val_fraction}")


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping. Steps count optimizer steps."""

    objective: Literal["causal_lm"] = "causal_lm"
    """Training objective; the model only returns logits, the objective owns the loss."""
    max_steps: int = 200
    """Optimizer steps to train for."""
    batch_size: int = 16
    """Sequences per step."""
    seq_len: int = 0
    """Training window length; 0 means the model's ``block_size``. Must not exceed it."""
    lr: float = 1e-3
    """Peak learning rate (AdamW)."""
    min_lr: float = 1e-4
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = 20
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.1
    """AdamW weight decay, applied to weight matrices and embeddings (not biases or norms)."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.99
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    eval_interval: int = 50
    """Evaluate on the validation split every this many steps (and at the last step)."""
    eval_iters: int = 10
    """Validation batches per evaluation (the same batches every time)."""
    log_interval: int = 10
    """Write training metrics to the store every this many steps."""
    seed: int = 1337
    """Seed for weights, batches and dropout: same seed and config, same losses."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """'auto' picks cuda, then mps, then cpu."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Autocast dtype; 'auto' is bfloat16 on cuda, float32 elsewhere."""
    compile: Literal["auto", "on", "off"] = "auto"
    """torch.compile the model; 'auto' is on for cuda only (on CPU it costs more than it saves)."""

    def __post_init__(self) -> None:
        _require(isinstance(self.max_steps, int) and self.max_steps > 0, "max_steps", f"must be > 0, got {self.max_steps}")
        _require(isinstance(self.batch_size, int) and self.batch_size > 0, "batch_size", f"must be > 0, got {self.batch_size}")
        _require(isinstance(self.seq_len, int) and self.seq_len >= 0, "seq_len", f"must be >= 0 (0 = block_size), got {self.seq_len}")
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}; try 1e-3 for small models")
        _require(0 <= self.min_lr <= self.lr, "min_lr", f"must be in [0, lr={self.lr}], got {self.min_lr}")
        _require(self.warmup_steps >= 0, "warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(0 <= self.beta1 < 1, "beta1", f"must be in [0, 1), got {self.beta1}")
        _require(0 <= self.beta2 < 1, "beta2", f"must be in [0, 1), got {self.beta2}")
        _require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        _require(self.eval_interval > 0, "eval_interval", f"must be > 0, got {self.eval_interval}")
        _require(self.eval_iters > 0, "eval_iters", f"must be > 0, got {self.eval_iters}")
        _require(self.log_interval > 0, "log_interval", f"must be > 0, got {self.log_interval}")
        _require(self.device in ("auto", "cpu", "cuda", "mps"), "device", f"unknown {self.device!r}; use auto, cpu, cuda or mps")
        _require(self.dtype in ("auto", "float32", "bfloat16"), "dtype", f"unknown {self.dtype!r}")
        _require(self.compile in ("auto", "on", "off"), "compile", f"unknown {self.compile!r}; use auto, on or off")
        _require(self.objective == "causal_lm", "objective", f"unknown objective {self.objective!r}; use 'causal_lm'")


@dataclass
class RunConfig:
    """Everything one training run needs; saved as ``runs/<id>/config.json``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = ""
    """Name of the preset this config started from (informational)."""
    name: str = ""
    """Optional human-readable run name."""

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig(**self.model)
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        if isinstance(self.train, dict):
            self.train = TrainConfig(**self.train)
        _require(
            self.train.seq_len <= self.model.block_size,
            "seq_len",
            f"seq_len={self.train.seq_len} is above the model's maximum context block_size={self.model.block_size}; "
            f"lower seq_len or raise block_size",
        )

    @property
    def seq_len(self) -> int:
        """The training window actually used."""
        return self.train.seq_len or self.model.block_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        _require(not unknown, "config", f"unknown keys {sorted(unknown)}")
        sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            if key in sections:
                sec_fields = {f.name for f in fields(sections[key])}
                bad = set(value) - sec_fields
                _require(not bad, key, f"unknown keys {sorted(bad)}")
                kwargs[key] = sections[key](**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


# --- flat view: every field of every section under one unique name (CLI flags, forms) -----------

SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def flat_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Map each field name to (section, Field). Names are unique across sections, except
    ``vocab_size`` which the flat view takes from ``data`` (the model's is derived).

    >>> flat_fields()["n_embd"][0]
    'model'
    """
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if section == "model" and f.name == "vocab_size":
                continue  # derived from the tokenizer
            assert f.name not in out, f"duplicate flat field {f.name}"
            out[f.name] = (section, f)
    return out


def field_docs() -> dict[str, str]:
    """Docstring of each flat field, read from the source (used for --help and form help)."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        tree = ast.parse(inspect.getsource(cls))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                name = node.target.id  # type: ignore[attr-defined]
                if not (section == "model" and name == "vocab_size"):
                    docs[name] = str(nxt.value.value).strip()
    return docs


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a new validated config with flat overrides applied.

    >>> apply_overrides(get_preset("gpt-nano"), {"n_embd": 96, "lr": 3e-4}).model.n_embd
    96
    """
    d = cfg.to_dict()
    flat = flat_fields()
    for name, value in overrides.items():
        if value is None:
            continue
        if name in ("name", "preset"):
            d[name] = value
            continue
        _require(name in flat, name, "unknown setting")
        section, _ = flat[name]
        d[section][name] = value
    return RunConfig.from_dict(d)


# --- presets ------------------------------------------------------------------------------------

def _preset_gpt_nano() -> RunConfig:
    """A few seconds on a laptop CPU; what the tests and the first demo use."""
    return RunConfig(
        model=ModelConfig(n_layer=2, n_head=2, n_embd=64, block_size=64),
        data=DataConfig(tokenizer="char"),
        train=TrainConfig(max_steps=200, batch_size=16, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                          eval_interval=50, eval_iters=8, log_interval=10),
        preset="gpt-nano",
    )


def _preset_gpt_cpu() -> RunConfig:
    """nanoGPT's CPU recipe for shakespeare-char: 4L/4H/128, ctx 64, batch 12 (val ~1.88 @ 2000)."""
    return RunConfig(
        model=ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, bias=False),
        data=DataConfig(tokenizer="char"),
        train=TrainConfig(max_steps=2000, batch_size=12, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                          eval_interval=250, eval_iters=20, log_interval=10),
        preset="gpt-cpu",
    )


def _preset_gpt_shakespeare_char() -> RunConfig:
    """nanoGPT's baby GPT: 6L/6H/384, ctx 256, dropout 0.2, no biases (val 1.4697 @ 5000 on an A100)."""
    return RunConfig(
        model=ModelConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False),
        data=DataConfig(tokenizer="char"),
        train=TrainConfig(max_steps=5000, batch_size=64, lr=1e-3, min_lr=1e-4, warmup_steps=100,
                          eval_interval=250, eval_iters=200, log_interval=10),
        preset="gpt-shakespeare-char",
    )


def _preset_gpt_mini_bpe() -> RunConfig:
    """A small word-piece-level model: byte-level BPE with 2k merges, 4L/4H/128, ctx 128."""
    return RunConfig(
        model=ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=128),
        data=DataConfig(tokenizer="bpe", vocab_size=2048),
        train=TrainConfig(max_steps=1000, batch_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=50,
                          eval_interval=100, eval_iters=20, log_interval=10),
        preset="gpt-mini-bpe",
    )


PRESETS = {
    "gpt-nano": _preset_gpt_nano,
    "gpt-cpu": _preset_gpt_cpu,
    "gpt-shakespeare-char": _preset_gpt_shakespeare_char,
    "gpt-mini-bpe": _preset_gpt_mini_bpe,
}


def get_preset(name: str) -> RunConfig:
    """A fresh copy of a named preset; unknown names list the known ones."""
    _require(name in PRESETS, "preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def preset_description(name: str) -> str:
    return (PRESETS[name].__doc__ or "").strip()
