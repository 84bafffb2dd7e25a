"""From a :class:`RunConfig` to a trained run: corpus -> tokenizer -> data -> model -> trainer.

``run_training`` is what ``python -m workbench train`` and the dashboard's launched process
execute; notebooks call it too. Everything a run produces goes to the store and its folder.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .attention import AttentionMaps, capture
from .config import RunConfig
from .corpora import CorpusError, load_corpus
from .models import GPT, build_model
from .objectives import Objective, build_objective
from .runstore import RunStore
from .tokenizers import Tokenizer, train_tokenizer
from .trainer import Callback, CheckpointCallback, Trainer

PROBE_TOKENS = 48
"""Tokens of validation text on which attention is captured at every evaluation."""


@dataclass
class Experiment:
    """Everything built from a config, before training."""

    config: RunConfig
    tokenizer: Tokenizer
    objective: Objective
    train_data: Any
    val_data: Any
    tokens_per_char: float
    probe_ids: list[int]
    model: GPT


def build_experiment(cfg: RunConfig, tokenizer: Tokenizer | None = None) -> Experiment:
    """Load the corpus, train (or reuse) the tokenizer, tokenize both splits, build the model."""
    corpus = load_corpus(cfg.data.corpus)
    text = corpus.text
    objective = build_objective(cfg.train.objective)
    if tokenizer is None:
        tokenizer = train_tokenizer(cfg.data.tokenizer, text, cfg.data.vocab_size, objective.special_tokens)
    train_text, val_text = corpus.split(cfg.data.val_fraction)
    val_ids = tokenizer.encode(val_text)
    train_ids = tokenizer.encode(train_text)
    seq_len = cfg.seq_len
    for split, ids in (("train", train_ids), ("validation", val_ids)):
        if len(ids) <= seq_len:
            raise CorpusError(
                f"the corpus is too short: its {split} split has {len(ids)} tokens but each example needs "
                f"{seq_len + 1}; use a longer text, a smaller block_size / seq_len, or a larger val_fraction"
            )
    model_cfg = replace(cfg.model, vocab_size=tokenizer.vocab_size)
    cfg = replace(cfg, model=model_cfg)
    torch.manual_seed(cfg.train.seed)  # same seed, same initial weights
    model = build_model(model_cfg)
    return Experiment(
        config=cfg,
        tokenizer=tokenizer,
        objective=objective,
        train_data=objective.prepare(train_ids),
        val_data=objective.prepare(val_ids),
        tokens_per_char=len(val_ids) / max(1, len(val_text)),
        probe_ids=val_ids[: min(PROBE_TOKENS, seq_len)],
        model=model,
    )


def count_parameters(cfg: RunConfig, vocab_size: int) -> int:
    """Parameters of the model a config describes, without building the data (for forms)."""
    with torch.device("meta"):
        model = build_model(replace(cfg.model, vocab_size=vocab_size))
    return model.num_parameters()


# --- callbacks that connect a trainer to the store ------------------------------------------

class StoreLogger(Callback):
    """Writes metrics and a heartbeat to the store; honours stop requests from the dashboard."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def on_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        step = trainer.state.step
        self.store.log_metrics(self.run_id, step, metrics)
        self.store.update_run(self.run_id, step=step, heartbeat_at=time.time())
        if self.store.stop_requested(self.run_id):
            trainer.control.should_stop = True

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        step = trainer.state.step
        self.store.log_metrics(self.run_id, step, metrics)
        self.store.update_run(self.run_id, step=step, heartbeat_at=time.time(), best_val_loss=trainer.state.best_val_loss)


class AttentionSnapshots(Callback):
    """At each evaluation, capture attention on the probe text into ``attn/step_<n>.npz``."""

    def __init__(self, store: RunStore, run_id: str, probe_ids: list[int], tokenizer: Tokenizer) -> None:
        self.store = store
        self.run_id = run_id
        self.probe_ids = probe_ids
        self.tokens = [tokenizer.display_token(i) for i in probe_ids]

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        step = trainer.state.step
        maps = capture(trainer.model, self.probe_ids, self.tokens)
        maps.step = step
        path = self.store.run_dir(self.run_id) / "attn" / f"step_{step:06d}.npz"
        maps.save(path)
        self.store.add_artifact(self.run_id, "attention", step, path)


# --- one run, start to end --------------------------------------------------------------------

def run_training(
    store: RunStore,
    run_id: str,
    progress: bool | None = None,
    resume: bool = False,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
) -> str:
    """Train the run ``run_id`` whose config is in the store. Returns its final status.

    Any error ends the run as ``failed`` with the message in the store (and re-raises for the
    caller); a stop request ends it as ``stopped``; nothing else in the store is touched.
    """
    info = store.get_run(run_id)
    run_dir = store.run_dir(run_id)
    store.update_run(run_id, status="running", started_at=time.time(), heartbeat_at=time.time())
    try:
        cfg = RunConfig.from_dict(info.config)
        tok_path = run_dir / "tokenizer.json"
        exp = build_experiment(cfg, Tokenizer.load(tok_path) if resume and tok_path.exists() else None)
        exp.tokenizer.save(tok_path)
        exp.config.save(run_dir / "config.json")
        store.update_run(run_id, config=exp.config.to_dict())  # now with the tokenizer's vocab_size
        meta = {"config": exp.config.to_dict()}
        trainer = Trainer(
            exp.model, exp.objective, exp.train_data, exp.val_data, exp.config.train, exp.config.seq_len,
            callbacks=[
                StoreLogger(store, run_id),
                AttentionSnapshots(store, run_id, exp.probe_ids, exp.tokenizer),
                CheckpointCallback(run_dir / "ckpt", meta),
                *callbacks,
            ],
            tokens_per_char=exp.tokens_per_char,
            progress=progress,
        )
        last = run_dir / "ckpt" / "last.safetensors"
        if resume and last.exists():
            trainer.load_checkpoint(last)
        store.update_run(run_id, num_params=exp.model.num_parameters(), device=str(trainer.device))
        status = trainer.fit()
        store.update_run(run_id, status=status, ended_at=time.time(), step=trainer.state.step,
                         best_val_loss=trainer.state.best_val_loss)
        return status
    except BaseException as exc:
        message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, KeyboardInterrupt) else "interrupted"
        status = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
        store.update_run(run_id, status=status, ended_at=time.time(), error=message)
        if status == "failed":
            (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        raise


def train(
    cfg: RunConfig,
    store: RunStore | None = None,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    progress: bool | None = None,
) -> str:
    """Create a run for ``cfg`` and train it in this process (CLI, notebooks). Returns the run id.

    The run lands in the same store as dashboard runs, so every face of the workbench sees it.
    """
    from .launcher import preflight

    store = store or RunStore()
    preflight(cfg)
    run_id = store.create_run(cfg.to_dict(), name=cfg.name)
    cfg.save(store.run_dir(run_id) / "config.json")
    run_training(store, run_id, progress=progress, callbacks=callbacks)
    return run_id


# --- using a finished run ---------------------------------------------------------------------

def load_run_model(store: RunStore, run_id: str, which: str = "best", device: str = "cpu") -> tuple[GPT, Tokenizer, RunConfig]:
    """The model (from ``ckpt/<which>.safetensors``), tokenizer and config of a run."""
    from .checkpoint import load_checkpoint

    store.get_run(run_id)  # raises UnknownRunError with a helpful message
    run_dir = store.run_dir(run_id)
    ckpt_path = run_dir / "ckpt" / f"{which}.safetensors"
    if not ckpt_path.exists():
        fallback = run_dir / "ckpt" / "last.safetensors"
        if which == "best" and fallback.exists():
            ckpt_path = fallback
        else:
            raise FileNotFoundError(f"run {run_id} has no checkpoint yet (it saves one at its first evaluation)")
    cfg = RunConfig.load(run_dir / "config.json")
    tokenizer = Tokenizer.load(run_dir / "tokenizer.json")
    model = build_model(cfg.model)
    model.load_state_dict(load_checkpoint(ckpt_path).model_state)
    return model.to(device).eval(), tokenizer, cfg


def attention_snapshots(store: RunStore, run_id: str) -> list[tuple[int, Path]]:
    """``(step, path)`` of a run's attention snapshots, oldest first."""
    return store.artifacts(run_id, "attention")


def load_attention(path: str | Path) -> AttentionMaps:
    return AttentionMaps.load(path)
