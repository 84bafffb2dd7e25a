"""Typed run configuration: four sections, validation that names the field, JSON round trips.

A :class:`RunConfig` has five sections:

- ``model``: a family chosen by ``arch`` (``gpt`` today; each family is its own dataclass,
  declared next to its model in ``workbench/models/`` and registered in ``models.FAMILIES``);
- ``objective``: chosen by ``name`` (each objective's dataclass lives next to it in
  ``workbench/objectives/`` and is registered in ``objectives.OBJECTIVES``);
- ``data``: corpus, split and the fixed evaluation text;
- ``tokenizer``: a family chosen by ``kind`` (each family's dataclass lives next to it in
  ``workbench/tokenizers/`` and is registered in ``tokenizers.TOKENIZERS``);
- ``train``: optimizer, schedule, batches, bookkeeping, device.

Every field is addressable as ``section.field`` (``model.n_layer``, ``train.lr``) or, where it
is unique, by its bare name (``workbench.overrides``: CLI flags, dashboard controls, overrides).
Validation lives in ``__post_init__`` so a bad value never reaches the trainer or the store.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from .io import atomic_write

if TYPE_CHECKING:
    from .finetune.settings import FinetuneConfig
    from .tokenizers import TokenizerConfig


class ConfigError(ValueError):
    """A configuration value a user must change; ``field`` names it (CLI flag / form field)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def require(ok: bool, field_name: str, message: str) -> None:
    """Raise :class:`ConfigError` naming ``field_name`` unless ``ok``."""
    if not ok:
        raise ConfigError(field_name, message)


def positive_ints(obj: Any, *names: str) -> None:
    """Check that each named attribute of ``obj`` is an int > 0."""
    for name in names:
        value = getattr(obj, name)
        require(isinstance(value, int) and not isinstance(value, bool) and value > 0, name,
                f"must be a positive integer, got {value!r}")


# --- sections ------------------------------------------------------------------------------------

class Section:
    """What every config section shares: field docs read from the source, strict ``from_dict``."""

    section: ClassVar[str] = ""

    @classmethod
    def field_docs(cls) -> dict[str, str]:
        """The docstring under each field (base classes included), for --help and form help."""
        return dict(_docs_of(cls))

    @classmethod
    def user_fields(cls) -> list[dataclasses.Field]:
        """Fields a user sets (not the derived ones, such as the model's ``vocab_size``)."""
        return [f for f in fields(cls) if not f.metadata.get("derived")]  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Section:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        require(not unknown, cls.section, f"unknown keys {unknown} for {cls.__name__}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@cache
def _docs_of(cls: type) -> tuple[tuple[str, str], ...]:
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))  # dedent: a class defined in a function
        except (OSError, TypeError):  # defined in a REPL or a test: no source to read
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[node.target.id] = str(nxt.value.value).strip()  # type: ignore[attr-defined]
    return tuple(docs.items())


@dataclass
class ModelConfig(Section):
    """Base of every model family's config; ``arch`` picks the family (``models.FAMILIES``)."""

    section: ClassVar[str] = "model"
    capabilities: ClassVar[frozenset[str]] = frozenset()
    """What the family can do, matched against what an objective needs: 'causal' (never looks
    ahead), 'bidirectional', 'attention' (weights can be captured), 'counting' (fitted without
    gradients), 'sparse_logits' (``forward(predict_at=mask)`` computes the LM head at those
    positions only)."""

    context_setting: ClassVar[str] = ""
    """The field that sets :attr:`max_context` (named in error messages), e.g. 'block_size'."""

    arch: str = "gpt"
    """Model family: the registry name in ``workbench.models.FAMILIES``."""
    vocab_size: int = field(default=0, metadata={"derived": True})
    """Filled in from the tokenizer at build time; 0 means 'not known yet'."""

    @property
    def max_context(self) -> int | None:
        """Longest sequence the model accepts; None for models without a limit (RNNs)."""
        return None

    def describe(self) -> str:
        """A short shape summary for tables and pickers, e.g. 'gpt 4L/4H/128 ctx 64'."""
        return self.arch

    def check_seq_len(self, seq_len: int) -> None:
        """Refuse (``ConfigError`` naming the field) a training window this family cannot use;
        families with a rule of their own (an n-gram's order) override it."""


@dataclass
class ObjectiveConfig(Section):
    """Base of every objective's config; ``name`` picks the objective (``objectives.OBJECTIVES``)."""

    section: ClassVar[str] = "objective"

    name: str = "causal_lm"
    """Training objective: the registry name in ``workbench.objectives.OBJECTIVES``."""

    def extra_special_tokens(self, seq_len: int) -> tuple[str, ...]:
        """Special tokens these settings need at a window of ``seq_len``, beyond the objective's
        fixed ``special_tokens`` (span corruption: one sentinel per span); see :func:`needed_special_tokens`."""
        return ()

    def check_seq_len(self, seq_len: int) -> None:
        """ConfigError naming ``seq_len`` when these settings cannot use a window of ``seq_len``
        (the permutation LM's span selection needs it even); called by :class:`RunConfig`."""

    def check_inputs(self) -> None:
        """ConfigError naming the field when a file these settings name is missing or unreadable.
        Run before a run starts (``experiment.preflight``), not when a config is loaded: a stored
        run whose file has gone since must still load, to be looked at."""


@dataclass
class DataConfig(Section):
    """Where the text comes from and what it is scored on."""

    section: ClassVar[str] = "data"

    corpus: str = "shakespeare"
    """A built-in corpus name ('shakespeare') or the path of a UTF-8 ``.txt`` file."""
    val_fraction: float = 0.1
    """Fraction of each document's source (each play; a user file) held out, from its end, for validation."""
    eval_chars: int = 32_768
    """Characters of validation text scored at every evaluation (0 = all of it). The passages are
    picked by the corpus alone, so every run on a corpus is scored on the same text, whatever its
    seed, batch size or context."""

    def __post_init__(self) -> None:
        require(bool(str(self.corpus).strip()), "corpus", "is empty; name 'shakespeare' or a .txt file")
        require(0.0 < self.val_fraction < 0.5, "val_fraction", f"must be in (0, 0.5), got {self.val_fraction}")
        require(isinstance(self.eval_chars, int) and (self.eval_chars == 0 or self.eval_chars >= 256), "eval_chars",
                f"must be 0 (the whole validation split) or at least 256, got {self.eval_chars}")


@dataclass
class TrainConfig(Section):
    """Optimisation and bookkeeping. Steps count optimizer steps."""

    section: ClassVar[str] = "train"

    max_steps: int = 200
    """Optimizer steps to train for (raise it on resume to extend a run)."""
    batch_size: int = 16
    """Sequences per step."""
    seq_len: int = 0
    """Training window length; 0 means the model's longest context. Must not exceed it."""
    optimizer: Literal["adamw", "adam", "sgd", "muon"] = "adamw"
    """'adamw' (decoupled weight decay), 'adam' (weight decay as an L2 term), 'sgd' (with momentum),
    or 'muon' (orthogonalised momentum for the hidden matrices at muon_lr, AdamW at lr for
    embeddings, the head, gains and biases; modded-nanogpt)."""
    lr: float = 1e-3
    """Peak learning rate."""
    min_lr: float = 1e-4
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = 20
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.1
    """Weight decay, applied to weight matrices and embeddings (not biases or norms)."""
    beta1: float = 0.9
    """Adam/AdamW beta1."""
    beta2: float = 0.99
    """Adam/AdamW beta2."""
    momentum: float = 0.9
    """SGD momentum (ignored by Adam and AdamW)."""
    muon_lr: float = 0.02
    """Muon's peak learning rate for the hidden matrices (optimizer muon only; the schedule scales it as lr)."""
    muon_momentum: float = 0.95
    """Muon's (Nesterov) momentum (optimizer muon only)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    max_time_s: float = 0.0
    """A wall-clock budget: end the run (evaluating once more) at the first step that ends after
    this many seconds of training, evaluations included; 0 = no budget, max_steps alone decides.
    The schedule still runs to max_steps, so a run cut short ends at a higher learning rate."""
    eval_interval: int = 50
    """Evaluate on the validation text every this many steps (and at the last step)."""
    log_interval: int = 10
    """Write training metrics to the store every this many steps."""
    seed: int = 1337
    """Seed for weights, batches and dropout: same seed and config, same losses."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """'auto' picks cuda, then mps, then cpu."""
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """Autocast dtype; 'auto' is bfloat16 on cuda, float32 elsewhere. On a CPU with native bf16
    (AVX512-BF16 or AMX: recent Xeons, AMD Zen 4) 'bfloat16' trains ~1.5x faster (attention
    stays float32 there); without it, bf16 is emulated and slower."""
    compile: Literal["auto", "on", "off"] = "auto"
    """torch.compile the model; 'auto' is on for cuda only (on CPU it costs more than it saves)."""
    peak_tflops: float = 0.0
    """The device's peak TFLOP/s, for the ``mfu`` metric; 0 = look it up (dense bf16 peak of
    known NVIDIA GPUs; no MFU elsewhere). ``model_tflops`` is logged either way."""

    def __post_init__(self) -> None:
        positive_ints(self, "max_steps", "batch_size", "eval_interval", "log_interval")
        require(isinstance(self.seq_len, int) and self.seq_len >= 0, "seq_len",
                f"must be >= 0 (0 = the model's context), got {self.seq_len}")
        require(self.optimizer in ("adamw", "adam", "sgd", "muon"), "optimizer",
                f"unknown {self.optimizer!r}; use adamw, adam, sgd or muon")
        require(self.muon_lr > 0, "muon_lr", f"must be > 0, got {self.muon_lr}; try 0.02")
        require(0 <= self.muon_momentum < 1, "muon_momentum", f"must be in [0, 1), got {self.muon_momentum}")
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}; try 1e-3 for small models")
        require(0 <= self.min_lr <= self.lr, "min_lr", f"must be in [0, lr={self.lr}], got {self.min_lr}")
        require(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, "warmup_steps",
                f"must be >= 0, got {self.warmup_steps}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(0 <= self.beta1 < 1, "beta1", f"must be in [0, 1), got {self.beta1}")
        require(0 <= self.beta2 < 1, "beta2", f"must be in [0, 1), got {self.beta2}")
        require(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        require(self.grad_clip >= 0, "grad_clip", f"must be >= 0, got {self.grad_clip}")
        require(isinstance(self.max_time_s, (int, float)) and 0 <= self.max_time_s < float("inf"), "max_time_s",
                f"must be >= 0 seconds (0 = no budget), got {self.max_time_s!r}")
        require(self.device in ("auto", "cpu", "cuda", "mps"), "device", f"unknown {self.device!r}; use auto, cpu, cuda or mps")
        require(self.dtype in ("auto", "float32", "bfloat16"), "dtype", f"unknown {self.dtype!r}")
        require(self.compile in ("auto", "on", "off"), "compile", f"unknown {self.compile!r}; use auto, on or off")
        require(self.peak_tflops >= 0, "peak_tflops", f"must be >= 0 (0 = look it up), got {self.peak_tflops}")


# --- registries (lazy: the model and objective modules import this one) --------------------------

def model_config_class(arch: str) -> type[ModelConfig]:
    """The config dataclass of a model family, by ``arch``."""
    from .models import FAMILIES

    require(arch in FAMILIES, "arch", f"unknown architecture {arch!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[arch].config_cls


def objective_config_class(name: str) -> type[ObjectiveConfig]:
    """The config dataclass of an objective, by ``name``."""
    from .objectives import OBJECTIVES

    require(name in OBJECTIVES, "objective", f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name].config_cls


def tokenizer_config_class(kind: str) -> type[TokenizerConfig]:
    """The settings dataclass of a tokenizer family, by ``kind``."""
    from .tokenizers import tokenizer_config_class as lookup

    return lookup(kind)


def objective_needs(name: str) -> frozenset[str]:
    from .objectives import OBJECTIVES

    return OBJECTIVES[name].needs


def objective_special_tokens(name: str) -> tuple[str, ...]:
    from .objectives import OBJECTIVES

    return OBJECTIVES[name].special_tokens


def needed_special_tokens(cfg: RunConfig) -> tuple[str, ...]:
    """Every special token a run's tokenizer must have: its objective's, and those its settings
    need at its window (a trained tokenizer gets them; a kept or published one must have them)."""
    return (*objective_special_tokens(cfg.objective.name), *cfg.objective.extra_special_tokens(cfg.seq_len))


def tokenizer_required_specials(kind: str) -> tuple[str, ...]:
    from .tokenizers import TOKENIZERS

    return TOKENIZERS[kind].required_specials if kind in TOKENIZERS else ()


# --- the whole run --------------------------------------------------------------------------------

SECTION_NAMES = ("model", "objective", "data", "tokenizer", "train")


def _default_model() -> ModelConfig:
    return model_config_class("gpt")()


def _default_objective() -> ObjectiveConfig:
    return objective_config_class("causal_lm")()


def _default_tokenizer() -> TokenizerConfig:
    return tokenizer_config_class("char")()


@dataclass
class RunConfig:
    """Everything one training run needs; saved as ``runs/<id>/config.json``."""

    model: ModelConfig = field(default_factory=_default_model)
    objective: ObjectiveConfig = field(default_factory=_default_objective)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=_default_tokenizer)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = ""
    """Name of the preset this config started from (informational)."""
    name: str = ""
    """Optional human-readable run name."""
    finetune: FinetuneConfig | None = None
    """Set for a fine-tuning run (a task head on a trunk; ``workbench.finetune.settings``);
    None for pretraining a language model."""

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = _model_from_dict(self.model)
        if isinstance(self.objective, dict):
            self.objective = _objective_from_dict(self.objective)
        if isinstance(self.data, dict):
            self.data = DataConfig.from_dict(self.data)  # type: ignore[assignment]
        if isinstance(self.tokenizer, dict):
            self.tokenizer = _tokenizer_from_dict(self.tokenizer)
        if isinstance(self.train, dict):
            self.train = TrainConfig.from_dict(self.train)  # type: ignore[assignment]
        if isinstance(self.finetune, dict):
            from .finetune.settings import FinetuneConfig

            self.finetune = FinetuneConfig.from_dict(self.finetune)  # type: ignore[assignment]
        # the vocabulary must hold the special tokens the objective asks for
        self.tokenizer.check_vocab(self.tokenizer.special_tokens(needed_special_tokens(self)))
        needs = objective_needs(self.objective.name)
        missing = sorted(needs - self.model.capabilities)
        # a fine-tuning run's objective section names how its trunk was pretrained, not what it trains
        require(not missing or self.finetune is not None, "objective",
                f"{self.objective.name} needs a model that is {' and '.join(missing)}; "
                f"arch {self.model.arch!r} is not; pick another objective or architecture")
        limit = self.model.max_context
        require(limit is not None or self.train.seq_len > 0, "seq_len",
                f"arch {self.model.arch!r} has no fixed context: set seq_len (e.g. 64)")
        setting = self.model.context_setting or "the model's context"
        require(
            limit is None or self.train.seq_len <= limit,
            "seq_len",
            f"seq_len={self.train.seq_len} is above the model's maximum context {setting}={limit}; "
            f"lower seq_len or raise {setting}",
        )
        self.model.check_seq_len(self.seq_len)
        self.objective.check_seq_len(self.seq_len)

    @property
    def seq_len(self) -> int:
        """The training window actually used."""
        return self.train.seq_len or int(self.model.max_context or 0)

    def to_dict(self) -> dict[str, Any]:
        d = {**{name: sec.to_dict() for name, sec in self.sections().items()}, "preset": self.preset, "name": self.name}
        if self.finetune is not None:
            d["finetune"] = self.finetune.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        d = upgrade_config_dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        require(not unknown, "config", f"unknown keys {unknown}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.from_dict(json.loads(text))

    def save(self, path: str | Path) -> None:
        atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def sections(self) -> dict[str, Section]:
        return {name: getattr(self, name) for name in SECTION_NAMES}


def _model_from_dict(d: dict[str, Any]) -> ModelConfig:
    require(isinstance(d, dict), "model", "must be a mapping of model settings")
    return model_config_class(d.get("arch", "gpt")).from_dict(d)  # type: ignore[return-value]


def _objective_from_dict(d: dict[str, Any]) -> ObjectiveConfig:
    require(isinstance(d, dict), "objective", "must be a mapping of objective settings")
    return objective_config_class(d.get("name", "causal_lm")).from_dict(d)  # type: ignore[return-value]


def _tokenizer_from_dict(d: dict[str, Any]) -> TokenizerConfig:
    require(isinstance(d, dict), "tokenizer", "must be a mapping of tokenizer settings")
    return tokenizer_config_class(d.get("kind", "char")).from_dict(d)  # type: ignore[return-value]


def describe_tokenizer(config: dict[str, Any]) -> str:
    """The tokenizer of a stored config dict, for run tables.

    >>> describe_tokenizer({"tokenizer": {"kind": "saved", "saved_name": "wp2k"}})
    'saved:wp2k'
    >>> describe_tokenizer({"data": {"tokenizer": "bpe", "vocab_size": 300}})
    'bpe 300'
    """
    tok = upgrade_config_dict(config).get("tokenizer") or {"kind": "char"}
    try:
        return _tokenizer_from_dict(tok).describe()
    except (ConfigError, TypeError):  # a config this version cannot read: say what it names
        return str(tok.get("kind", "?"))


def upgrade_config_dict(d: dict[str, Any]) -> dict[str, Any]:
    """Read configs written by earlier versions (runs keep their ``config.json`` forever).

    Version 1 (the first spine) had no ``objective`` section: the objective was
    ``train.objective``; validation used ``train.eval_iters`` random batches, replaced by the
    corpus-fixed ``data.eval_chars``. Version 2 named the tokenizer in ``data.tokenizer``
    ('char' or 'bpe') with ``data.vocab_size``; now it is a section of its own.

    >>> upgrade_config_dict({"train": {"objective": "causal_lm", "eval_iters": 8}})["objective"]
    {'name': 'causal_lm'}
    >>> upgrade_config_dict({"data": {"tokenizer": "bpe", "vocab_size": 300}})["tokenizer"]
    {'kind': 'bpe', 'vocab_size': 300}
    """
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}
    train = d.get("train")
    if isinstance(train, dict):
        if "objective" in train:
            d.setdefault("objective", {"name": train.pop("objective")})
        train.pop("eval_iters", None)
    data = d.get("data")
    if isinstance(data, dict) and ("tokenizer" in data or "vocab_size" in data):
        kind, size = data.pop("tokenizer", "char"), data.pop("vocab_size", None)
        if "tokenizer" not in d:
            d["tokenizer"] = {"kind": kind, **({"vocab_size": size} if kind != "char" and size is not None else {})}
    return d
