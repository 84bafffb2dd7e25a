"""A fine-tuning run, start to end: a :class:`~workbench.config.RunConfig` with a ``finetune``
section -> task, trunk, tokenizer, head, objective -> the generic :class:`~workbench.trainer.Trainer`
-> the test split scored once at the end.

``pipeline.run_training`` calls :func:`train_finetune` for such a run, so a fine-tuning run lives
in the same store as every other (status, heartbeat, metrics, checkpoints, stop requests).
What it adds to its folder:

- ``finetune.json``: the task, its labels, the examples used (after the label budget), what was
  dropped or cut, the parameters frozen, and the test metrics;
- artifacts ``confusion`` (the validation confusion matrix at each evaluation, classification)
  and ``confusion_test`` (the test one, at the end);
- metrics ``test/<name>`` at the last step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..config import ConfigError, RunConfig
from ..io import atomic_write
from ..objectives.base import EvalSet
from ..optim import build_optimizer
from ..runstore import RunStore, UnknownRunError
from ..trainer import Callback, CheckpointCallback, Trainer, evaluate, resolve_device
from .heads import SequenceClassifier, SpanQA, TaskHead, TokenClassifier, freeze, param_groups
from .objectives import TaskObjective, objective_for
from .settings import FinetuneConfig
from .tasks import TaskData, load_task, sample_budget

HEAD_FAMILIES = ("gpt", "bert")
"""Our model families a task head can sit on (a trunk of blocks with hidden states per token)."""
SPECIALS = ("[PAD]", "[CLS]", "[SEP]")
"""Special tokens a tokenizer trained for a scratch trunk gets."""


# --- the task and the trunk -------------------------------------------------------------------------

def task_of(fc: FinetuneConfig) -> TaskData:
    """The task ``fc.task`` names; a file that cannot be used is a ConfigError naming ``task``."""
    try:
        return load_task(fc.task)
    except (ValueError, OSError) as exc:
        raise ConfigError("task", str(exc)) from exc


def init_run(store: RunStore, run_id: str) -> RunConfig:
    """The config of the finished run a trunk comes from, or a ConfigError naming ``init``."""
    try:
        info = store.get_run(run_id)
    except UnknownRunError as exc:
        raise ConfigError("init", f"{exc}; or give hf:NAME_OR_DIR or scratch") from exc
    cfg = RunConfig.from_dict(info.config)
    if cfg.finetune is not None:
        raise ConfigError("init", f"run {run_id} is itself a fine-tuning run ({cfg.finetune.describe()}); "
                                  f"start from a pretraining run")
    if cfg.model.arch not in HEAD_FAMILIES:
        raise ConfigError("init", f"run {run_id} is a {cfg.model.arch} model; task heads sit on "
                                  f"{' or '.join(HEAD_FAMILIES)} trunks (blocks with a hidden state per token)")
    if not (store.run_dir(run_id) / "ckpt").is_dir():
        raise ConfigError("init", f"run {run_id} has no checkpoint yet (it saves one at its first evaluation)")
    return cfg


def resolve(cfg: RunConfig, store: RunStore) -> RunConfig:
    """The config to store for a fine-tuning run: with a run id as ``init``, that run's model,
    tokenizer, objective and data sections (what is being fine-tuned), and the checks that can
    be made before anything loads."""
    fc = cfg.finetune
    if fc is None:
        raise ConfigError("finetune", "this config has no finetune section")
    if fc.init_kind == "run":
        base = init_run(store, fc.init)
        cfg = replace(cfg, model=base.model, tokenizer=base.tokenizer, objective=base.objective, data=base.data)
    elif fc.init_kind == "scratch" and cfg.model.arch not in HEAD_FAMILIES:
        raise ConfigError("arch", f"a task head sits on a {' or '.join(HEAD_FAMILIES)} trunk, not {cfg.model.arch}")
    if fc.reinit and fc.init_kind == "scratch":
        raise ConfigError("reinit", "scratch is already random weights; reinit is for a run or hf: init")
    if fc.init_kind == "hf":  # its config alone (no weights) says whether it exists and what fits
        from ..hf_attention import hf_shape

        try:
            check_fits(fc, *hf_shape(fc.init[3:]))
        except ValueError as exc:
            raise exc if isinstance(exc, ConfigError) else ConfigError("init", str(exc)) from exc
    else:  # our trunk's shape is in the config
        check_fits(fc, int(cfg.model.max_context), int(getattr(cfg.model, "n_layer", 0)))
    return cfg


def check_fits(fc: FinetuneConfig, positions: int, n_blocks: int) -> None:
    """ConfigError naming ``max_len`` or ``freeze`` when they ask more than the trunk has."""
    if fc.length(positions) > positions:
        raise ConfigError("max_len", f"{fc.max_len} is more tokens than the trunk's positions cover ({positions}); "
                                     f"lower max_len to at most {positions} (or 0 for that)")
    if fc.freeze > n_blocks:
        raise ConfigError("freeze", f"cannot freeze {fc.freeze} blocks: the trunk has {n_blocks} "
                                    f"(use 0..{n_blocks}, or -1 to train only the head)")


@dataclass
class Trunk:
    model: nn.Module
    tokenizer: Any
    positions: int
    """Longest input its positions cover (max_len must fit)."""
    n_blocks: int


def _count_blocks(model: nn.Module) -> int:
    from .heads import _embeddings_and_blocks

    return len(_embeddings_and_blocks(model)[1])


def load_trunk(cfg: RunConfig, task: TaskData, store: RunStore, run_dir: Path | None = None) -> tuple[Trunk, RunConfig]:
    """The trunk and its tokenizer, as ``cfg.finetune.init`` says; the config comes back with the
    model's ``vocab_size`` filled in for a scratch trunk. With ``run_dir`` a scratch trunk's
    tokenizer is the one saved there (a resume, or loading the run back)."""
    from ..models import build_model
    from ..tokenizers import Tokenizer, build_tokenizer

    fc = cfg.finetune
    assert fc is not None
    torch.manual_seed(cfg.train.seed)  # same seed, same random head (and trunk, from scratch)
    if fc.init_kind == "hf":
        from ..hf_attention import load_hf

        try:
            hf = load_hf(fc.init[3:])
        except ValueError as exc:
            raise ConfigError("init", str(exc)) from exc
        model = hf.model
        if fc.reinit:
            model = type(model)(model.config)  # the same architecture, freshly initialised
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("sdpa")  # load_hf asks for eager (to read weights); training wants speed
        model.train()
        return Trunk(model, hf.tokenizer, hf.max_tokens, _count_blocks(model)), cfg
    if fc.init_kind == "run":
        from ..pipeline import load_run_model

        try:
            model, tokenizer, base = load_run_model(store, fc.init)
        except FileNotFoundError as exc:
            raise ConfigError("init", str(exc)) from exc
        if fc.reinit:
            model = build_model(base.model)
        return Trunk(model.train(), tokenizer, int(base.model.max_context), _count_blocks(model)), cfg
    saved = run_dir / "tokenizer.json" if run_dir is not None else None
    if saved is not None and saved.exists():
        tokenizer = Tokenizer.load(saved)
    else:
        tokenizer = build_tokenizer(cfg.tokenizer, "\n".join(example_texts(task.train)), SPECIALS)
    cfg = replace(cfg, model=replace(cfg.model, vocab_size=tokenizer.vocab_size))
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model)
    return Trunk(model, tokenizer, int(cfg.model.max_context), _count_blocks(model)), cfg


def example_texts(examples: list) -> list[str]:
    """The text of each example, what a scratch tokenizer learns from."""
    out = []
    for e in examples:
        out.append(getattr(e, "text", None) or (" ".join(e.tokens) if hasattr(e, "tokens") else f"{e.question}\n{e.context}"))
    return out


# --- the experiment -----------------------------------------------------------------------------------

@dataclass
class FinetuneExperiment:
    """Everything a fine-tuning run trains with."""

    config: RunConfig
    task: TaskData
    tokenizer: Any
    objective: TaskObjective
    model: TaskHead
    train_data: list
    eval_set: EvalSet
    groups: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)


def make_head(kind: str, trunk: nn.Module, n_labels: int, fc: FinetuneConfig) -> TaskHead:
    """The head a task of ``kind`` trains."""
    if kind == "classification":
        return SequenceClassifier(trunk, n_labels, None if fc.pooling == "auto" else fc.pooling,  # type: ignore[arg-type]
                                  dropout=fc.dropout)
    if kind == "tagging":
        return TokenClassifier(trunk, n_labels, dropout=fc.dropout)
    return SpanQA(trunk, dropout=fc.dropout)


def build_finetune(cfg: RunConfig, store: RunStore, run_dir: Path | None = None) -> FinetuneExperiment:
    """Task -> label budget -> trunk and tokenizer -> objective, rows and the fixed val set -> head,
    frozen layers and optimizer groups. Every problem a user can fix is a ConfigError naming the field."""
    fc = cfg.finetune
    if fc is None:
        raise ConfigError("finetune", "this config has no finetune section")
    task = task_of(fc)
    trunk, cfg = load_trunk(cfg, task, store, run_dir)
    check_fits(fc, trunk.positions, trunk.n_blocks)
    max_len = fc.length(trunk.positions)
    objective = objective_for(task, trunk.tokenizer, max_len=max_len, max_eval=fc.max_eval or None,
                              batch_size=cfg.train.batch_size)
    examples = sample_budget(task.train, fc.labels or None, seed=fc.label_seed)
    try:
        train_data = objective.prepare(examples)
        eval_set = objective.eval_set("val")
    except ValueError as exc:  # e.g. every QA answer cut off by max_len
        raise ConfigError("max_len", f"{exc}; raise max_len (answers must fit in it)") from exc
    torch.manual_seed(cfg.train.seed)
    try:
        head = make_head(task.kind, trunk.model, len(task.labels), fc)
    except ValueError as exc:  # a pooling the trunk cannot do (a GPT has no [CLS] pooler)
        raise ConfigError("pooling", str(exc)) from exc
    frozen = freeze(head, fc.freeze) if fc.freeze else 0
    tc = cfg.train
    groups = param_groups(head, tc.lr, fc.head_lr or tc.lr, tc.weight_decay)
    total = sum(p.numel() for p in head.parameters())
    info = {"task": task.name, "kind": task.kind, "labels": list(task.labels), "init": fc.init, "reinit": fc.reinit,
            "train_examples": len(examples), "train_rows": len(train_data),
            "val_examples": sum(len(b.input_ids) for b in eval_set.batches), "test_examples": len(task.test),
            "dropped": dict(objective.dropped), "words_cut": dict(getattr(objective, "words_cut", {})),
            "frozen_params": frozen, "trainable_params": total - frozen, "total_params": total,
            "pooling": getattr(head, "pooling", None), "max_len": max_len}
    return FinetuneExperiment(cfg, task, trunk.tokenizer, objective, head, train_data, eval_set, groups, info)


# --- callbacks and the end of the run -----------------------------------------------------------------

def save_confusion(store: RunStore, run_id: str, objective: TaskObjective, step: int, kind: str) -> None:
    """The confusion matrix of the objective's last evaluation as ``<kind>/step_<n>.json``."""
    matrix = getattr(objective, "confusion", None)
    if matrix is None:
        return
    path = store.run_dir(run_id) / kind / f"step_{step:06d}.json"
    atomic_write(path, json.dumps({"step": step, "labels": objective.task.labels, "matrix": matrix}))
    store.add_artifact(run_id, kind, step, path)


class ConfusionSnapshots(Callback):
    """At each evaluation of a classification run, the validation confusion matrix (artifact "confusion")."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        save_confusion(self.store, self.run_id, trainer.objective, trainer.state.step, "confusion")  # type: ignore[arg-type]


def score_test(trainer: Trainer, objective: TaskObjective) -> dict[str, float]:
    """The whole test split scored once: ``test/<metric>``."""
    if not objective.task.test:
        return {}
    test = objective.eval_set("test", max_eval=None)
    test = EvalSet([b.to(trainer.device) for b in test.batches])
    metrics = evaluate(trainer.eval_model, objective, test, trainer._autocast)
    return {"test/" + k.split("/", 1)[1]: v for k, v in metrics.items()}


def train_finetune(store: RunStore, run_id: str, cfg: RunConfig, resume: bool = False, progress: bool | None = None,
                   callbacks: list[Callback] | tuple[Callback, ...] = ()) -> str:
    """Train the fine-tuning run ``run_id`` (claimed by ``pipeline.run_training``, which handles
    failures and the heartbeat). Returns its final status."""
    from ..pipeline import StoreLogger

    run_dir = store.run_dir(run_id)
    exp = build_finetune(cfg, store, run_dir)
    if hasattr(exp.tokenizer, "encode_offsets"):  # ours; an HF tokenizer is reloaded from its name
        exp.tokenizer.save(run_dir / "tokenizer.json")
    exp.config.save(run_dir / "config.json")
    store.update_run(run_id, config=exp.config.to_dict())
    meta = {"config": exp.config.to_dict()}
    cbs: list[Callback] = [StoreLogger(store, run_id)]
    if exp.task.kind == "classification":
        cbs.append(ConfusionSnapshots(store, run_id))
    if exp.config.finetune.keep_weights:  # type: ignore[union-attr]
        cbs.append(CheckpointCallback(run_dir / "ckpt", meta))
    device = resolve_device(cfg.train.device)
    optimizer = build_optimizer(exp.model, cfg.train, device.type, groups=exp.groups)
    trainer = Trainer(exp.model, exp.objective, exp.train_data, exp.eval_set, cfg.train, exp.objective.max_len,
                      callbacks=[*cbs, *callbacks], optimizer=optimizer, progress=progress)
    if resume:
        trainer.load_checkpoint(run_dir / "ckpt" / "last.safetensors")
    store.update_run(run_id, num_params=exp.info["total_params"], device=str(trainer.device))
    atomic_write(run_dir / "finetune.json", json.dumps(exp.info, indent=1))
    status = trainer.fit()
    if status == "finished":
        test = score_test(trainer, exp.objective)
        if test:
            store.log_metrics(run_id, trainer.state.step, test)
            save_confusion(store, run_id, exp.objective, trainer.state.step, "confusion_test")
        exp.info["test"] = test
        exp.info["dropped"] = dict(exp.objective.dropped)  # the test split's, now that it was read
        exp.info["words_cut"] = dict(getattr(exp.objective, "words_cut", {}))
        exp.info["val"] = {k: v for k, v in trainer.state.last_val.items()}
        atomic_write(run_dir / "finetune.json", json.dumps(exp.info, indent=1))
    return status


def finetune_info(store: RunStore, run_id: str) -> dict[str, Any]:
    """A fine-tuning run's ``finetune.json`` ({} before it has built its data)."""
    path = store.run_dir(run_id) / "finetune.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def confusion_snapshots(store: RunStore, run_id: str, kind: str = "confusion") -> list[tuple[int, dict[str, Any]]]:
    """``(step, {"labels", "matrix"})`` of a classification run's confusion matrices, oldest
    first: ``confusion`` (validation, at each evaluation) or ``confusion_test`` (test, at the end)."""
    return [(step, json.loads(Path(p).read_text(encoding="utf-8"))) for step, p in store.artifacts(run_id, kind)
            if Path(p).exists()]


def preflight_finetune(cfg: RunConfig, store: RunStore) -> RunConfig:
    """The checks a form or the CLI runs before a process starts: the config resolved against
    the store (:func:`resolve`) and the task readable. Returns the resolved config."""
    cfg = resolve(cfg, store)
    task_of(cfg.finetune)  # type: ignore[arg-type]
    return cfg
