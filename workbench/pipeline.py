"""One run, start to end: the store, the run's folder, the callbacks, resume, and loading it back.

``run_training`` is what ``python -m workbench train`` and the dashboard's launched process
execute; notebooks call :func:`train`. Everything a run produces goes to the store and its folder.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from .attention import AttentionMaps, capture, capture_seq2seq, capture_two_stream
from .config import ConfigError, RunConfig
from .overrides import apply_overrides, diff_fields
from .corpora import corpus_fingerprint, load_corpus
from .counting import CountingTrainer
from .distributed import SINGLE, Dist, broadcast, check_batch
from .experiment import build_experiment, preflight
from .io import atomic_write, remove_stale_temp_files
from .models import LanguageModel, build_model
from .objectives import Objective
from .objectives.permutation_lm import MASK
from .runstore import HEARTBEAT_S, RunStore
from .scoring import ROUGE_TYPES, decode_scores
from .tokenizers import Tokenizer
from .trainer import Callback, CheckpointCallback, DivergenceError, Trainer

# --- callbacks that connect a trainer to the store ------------------------------------------


class StoreLogger(Callback):
    """Writes metrics and progress to the store; honours stop requests from the dashboard."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id

    def on_log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        step = trainer.state.step
        self.store.log_metrics(self.run_id, step, metrics)
        self.store.update_run(self.run_id, step=step)  # liveness is the Heartbeat thread's job
        if self.store.stop_requested(self.run_id):
            trainer.control.should_stop = True

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        step = trainer.state.step
        self.store.log_metrics(self.run_id, step, metrics)
        self.store.update_run(self.run_id, step=step, best_val_loss=trainer.state.best_val_loss)


class DecodeScores(Callback):
    """At each evaluation of a seq2seq-task run, decode the first ``max_examples`` validation
    sources (greedy) and add ``val/bleu``, ``val/rouge1``, ``val/rouge2``, ``val/rougeL`` and
    ``val/exact_match`` to the evaluation's metrics (it runs before :class:`StoreLogger`, which
    logs them with the rest); the decoded examples go to ``decoded/step_<n>.json``."""

    SHOWN = 16
    """Decoded examples kept per evaluation, for the Monitor page."""

    def __init__(self, store: RunStore, run_id: str, pairs: list[tuple[str, str]], tokenizer: Tokenizer,
                 max_examples: int) -> None:
        self.store, self.run_id = store, run_id
        self.pairs, self.tokenizer, self.max_examples = pairs, tokenizer, max_examples

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        scores = decode_scores(trainer.model, self.tokenizer, self.pairs, self.max_examples, show=self.SHOWN)
        metrics.update({f"val/{k}": float(scores[k]) for k in ("bleu", *ROUGE_TYPES, "exact_match")})
        step = trainer.state.step
        path = self.store.run_dir(self.run_id) / "decoded" / f"step_{step:06d}.json"
        atomic_write(path, json.dumps({"step": step, "count": scores["count"], "examples": scores["examples"]},
                                      ensure_ascii=False, indent=1))
        self.store.add_artifact(self.run_id, "decoded", step, path)


class AttentionSnapshots(Callback):
    """At each evaluation, capture attention on the probe text into ``attn/step_<n>.npz``.

    An encoder-decoder whose objective makes a probe pair (:meth:`Objective.attention_probe`)
    gets all three of its kinds from one pass: the encoder's in ``attn/step_<n>.npz`` (artifact
    "attention", what every reader of a run's attention lists), the decoder's in
    ``attn/decoder_step_<n>.npz`` ("decoder_attention") and the cross-attention in
    ``attn/cross_step_<n>.npz`` ("cross_attention"). A permutation-LM run ("plm") also keeps its
    two streams over the probe read in one fixed seeded order (the same at every evaluation):
    ``attn/content_step_<n>.npz`` ("content_attention") and ``attn/query_step_<n>.npz``
    ("query_attention"). Every map carries its step, its mask and ``source`` "run <id>"."""

    FILES = {"self": ("attention", "step"), "encoder": ("attention", "step"),
             "decoder": ("decoder_attention", "decoder_step"), "cross": ("cross_attention", "cross_step"),
             "content": ("content_attention", "content_step"), "query": ("query_attention", "query_step")}
    """Kind of map -> (artifact kind, file name prefix)."""

    def __init__(self, store: RunStore, run_id: str, probe_ids: list[int], tokenizer: Tokenizer) -> None:
        self.store = store
        self.run_id = run_id
        self.probe_ids = probe_ids
        self.tokenizer = tokenizer
        self.tokens = [tokenizer.display_token(i) for i in probe_ids]
        self._pair: tuple[list[int], list[int]] | None = None
        self._paired = False  # the objective was asked (once: the pair is fixed for the run)

    def _probe_pair(self, trainer: Trainer) -> tuple[list[int], list[int]] | None:
        if not self._paired:
            self._pair = trainer.objective.attention_probe(self.probe_ids, self.tokenizer, trainer.model.max_context)
            self._paired = True
        return self._pair

    def _two_streams(self, trainer: Trainer, source: str, step: int) -> dict[str, AttentionMaps]:
        """The query and content streams of a permutation-LM run, in the objective's k and with
        the [MASK] start its batches use; {} for any other run."""
        model, objective = trainer.model, trainer.objective
        if objective.name != "plm" or "permutation" not in model.config.capabilities:
            return {}
        mask_id = self.tokenizer.token_to_id(MASK) if MASK in self.tokenizer.special_tokens else None
        return capture_two_stream(model, self.probe_ids, tokens=self.tokens, mask_token_id=mask_id, source=source,
                                  step=step, k=getattr(objective.config, "k", None))

    def on_evaluate(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        step = trainer.state.step
        attn_dir = self.store.run_dir(self.run_id) / "attn"
        source = f"run {self.run_id}"
        pair = self._probe_pair(trainer) if "seq2seq" in trainer.model.config.capabilities else None
        maps: dict[str, AttentionMaps]
        if pair is None:
            self_maps = capture(trainer.model, self.probe_ids, self.tokens, source=source, step=step)
            maps = {self_maps.kind: self_maps, **self._two_streams(trainer, source, step)}
        else:
            show = self.tokenizer.display_token
            maps = capture_seq2seq(trainer.model, pair[0], pair[1], [show(i) for i in pair[0]],
                                   [show(i) for i in pair[1]], source=source, step=step)
        for name, m in maps.items():
            artifact, prefix = self.FILES[name]
            path = attn_dir / f"{prefix}_{step:06d}.npz"
            m.save(path)
            self.store.add_artifact(self.run_id, artifact, step, path)


class Heartbeat:
    """A thread that writes the run's heartbeat every few seconds, whatever the step speed, so
    the store can tell a live run from one whose process ended without recording its status
    (``RunStore.reconcile``): it stops when ``run_training`` returns or raises."""

    def __init__(self, home: Path, run_id: str, interval_s: float = HEARTBEAT_S) -> None:
        self.home, self.run_id, self.interval_s = home, run_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id}", daemon=True)

    def _beat(self) -> None:
        store = RunStore(self.home)  # its own connection: SQLite connections stay in their thread
        try:
            while not self._stop.wait(self.interval_s):
                try:
                    store.update_run(self.run_id, heartbeat_at=time.time())
                except Exception:  # a busy or full disk: the next beat tries again
                    pass
        finally:
            store.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def attach_callbacks(store: RunStore, run_id: str, model: LanguageModel, probe_ids: list[int],
                     tokenizer: Tokenizer, meta: dict, objective: Objective) -> list[Callback]:
    """The callbacks a stored run gets, by what its model and objective can do."""
    callbacks: list[Callback] = [StoreLogger(store, run_id)]
    scored = getattr(objective.config, "score_examples", 0)
    if scored and getattr(objective, "eval_pairs", None):  # seq2seq tasks: BLEU/ROUGE of what the model writes
        callbacks.insert(0, DecodeScores(store, run_id, objective.eval_pairs, tokenizer, scored))
    if "attention" in model.config.capabilities and probe_ids:
        callbacks.append(AttentionSnapshots(store, run_id, probe_ids, tokenizer))
    callbacks.append(CheckpointCallback(store.run_dir(run_id) / "ckpt", meta))
    return callbacks


# --- one run, start to end --------------------------------------------------------------------

def run_training(
    store: RunStore,
    run_id: str,
    progress: bool | None = None,
    resume: bool = False,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    dist: Dist = SINGLE,
) -> str:
    """Train the run ``run_id`` whose config is in the store. Returns its final status.

    This process claims the run (its pid, host and heartbeat go in the store). Any error ends
    the run as ``failed`` with the message in the store (and re-raises for the caller); a stop
    request ends it as ``stopped``. If even the failure cannot be recorded (a full disk), the
    heartbeat stops and ``RunStore.reconcile`` reports the run dead within a minute.

    Under torchrun (``dist``: :mod:`workbench.distributed`) rank 0 does all of this; the other
    ranks train beside it (:func:`_follow`) and never touch the store.
    """
    if not dist.is_main:
        return _follow(store, run_id, resume, dist)
    info = store.get_run(run_id)
    run_dir = store.run_dir(run_id)
    store.claim(run_id)  # refused if another live process trains it
    remove_stale_temp_files(run_dir)  # left by a process killed mid-write
    with Heartbeat(store.home, run_id):
        try:
            cfg = RunConfig.from_dict(info.config)
            if dist.enabled:
                check_distributable(cfg, dist.world)
            if cfg.finetune is not None:  # a task head on a trunk: its own data, model and end (test scores)
                from .finetune.run import train_finetune

                status = train_finetune(store, run_id, cfg, resume=resume, progress=progress, callbacks=callbacks)
                store.update_run(run_id, status=status, ended_at=time.time())
                return status
            tok_path = run_dir / "tokenizer.json"
            exp = build_experiment(cfg, Tokenizer.load(tok_path) if resume else None, home=store.home)
            exp.tokenizer.save(tok_path)
            exp.tokenizer.save_pretrained(run_dir / "hf")  # for AutoTokenizer.from_pretrained(run_dir / "hf")
            exp.config.save(run_dir / "config.json")
            # the other ranks build the same experiment from this config and tokenizer (no store on other nodes)
            broadcast((exp.config.to_json(), tok_path.read_text(encoding="utf-8")), dist)
            # the config now has the tokenizer's vocab_size; the corpus's fingerprint guards resumes
            store.update_run(run_id, config=exp.config.to_dict(), corpus_hash=exp.corpus_hash)
            meta = {"config": exp.config.to_dict()}
            # families fitted by counting (n-grams) read the stream in order instead of descending a gradient
            trainer_cls = CountingTrainer if "counting" in exp.model.config.capabilities else Trainer
            trainer = trainer_cls(
                exp.model, exp.objective, exp.train_data, exp.eval_set, exp.config.train, exp.config.seq_len,
                callbacks=[*attach_callbacks(store, run_id, exp.model, exp.probe_ids, exp.tokenizer, meta, exp.objective), *callbacks],
                progress=progress,
                **({"dist": dist} if dist.enabled else {}),
            )
            if resume:
                trainer.load_checkpoint(run_dir / "ckpt" / "last.safetensors")
            store.update_run(run_id, num_params=exp.model.num_parameters(), device=str(trainer.device))
            status = trainer.fit()
            store.update_run(run_id, status=status, ended_at=time.time(), step=trainer.state.step,
                             best_val_loss=trainer.state.best_val_loss,
                             num_params=exp.model.num_parameters())  # a counting model's grow as it counts
            return status
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            message = "interrupted" if interrupted else f"{type(exc).__name__}: {exc}"
            try:
                store.update_run(run_id, status="stopped" if interrupted else "failed", ended_at=time.time(),
                                 error=message)
            except Exception:
                pass  # the heartbeat stops on the way out; reconcile reports the run
            if not interrupted and not isinstance(exc, DivergenceError):
                try:
                    atomic_write(run_dir / "error.txt", traceback.format_exc())
                except Exception:
                    pass
            raise


def check_distributable(cfg: RunConfig, world: int) -> None:
    """ConfigError unless ``cfg`` can train on ``world`` processes: gradient descent on a language
    model, its (global) batch a multiple of ``world``."""
    check_batch(cfg.train.batch_size, world)
    if cfg.finetune is not None:
        raise ConfigError("nproc", "fine-tuning runs train in one process; start them without torchrun")
    if "counting" in cfg.model.capabilities:
        raise ConfigError("nproc", f"{cfg.model.arch} models are fitted by counting, not gradients; train them "
                                   f"in one process (without torchrun)")


def _follow(store: RunStore, run_id: str, resume: bool, dist: Dist) -> str:
    """A rank other than 0: build the experiment rank 0 built (its config and tokenizer arrive by
    broadcast, so this works on another machine) and train beside it, writing nothing."""
    import tempfile

    config_json, tokenizer_json = broadcast(None, dist)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.json"
        path.write_text(tokenizer_json, encoding="utf-8")
        tokenizer = Tokenizer.load(path)
    cfg = RunConfig.from_json(config_json)
    exp = build_experiment(cfg, tokenizer, home=store.home)
    trainer = Trainer(exp.model, exp.objective, exp.train_data, exp.eval_set, exp.config.train, exp.config.seq_len,
                      progress=False, dist=dist)
    if resume:  # the run folder must be shared between machines for a multi-node resume
        trainer.load_checkpoint(store.run_dir(run_id) / "ckpt" / "last.safetensors")
    return trainer.fit()


def train(
    cfg: RunConfig,
    store: RunStore | None = None,
    callbacks: list[Callback] | tuple[Callback, ...] = (),
    progress: bool | None = None,
) -> str:
    """Create a run for ``cfg`` and train it in this process (CLI, notebooks). Returns the run id.

    The run lands in the same store as dashboard runs, so every face of the workbench sees it.
    """
    store = store or RunStore()
    run_id = create(cfg, store)
    run_training(store, run_id, progress=progress, callbacks=callbacks)
    return run_id


def create(cfg: RunConfig, store: RunStore) -> str:
    """Check ``cfg`` (:func:`~workbench.experiment.preflight`) and add it to the store as a queued run."""
    if cfg.finetune is not None:
        from .finetune.run import preflight_finetune

        cfg = preflight_finetune(cfg, store)  # a run id as init: its model and tokenizer sections
    else:
        preflight(cfg, store.home)
    run_id = store.create_run(cfg.to_dict(), name=cfg.name)
    cfg.save(store.run_dir(run_id) / "config.json")
    return run_id


# --- resume and extend --------------------------------------------------------------------------

def check_weights_fit(raw_config: dict[str, Any], run_id: str) -> None:
    """Refuse checkpoints whose weights mean something else in today's model.

    Sinusoidal positions were added unscaled to token embeddings before workbench 0.2 (the
    configs of that version have no ``objective`` section); today's GPT scales the embeddings by
    sqrt(n_embd), so those weights would compute a different function.
    """
    first_version = "objective" not in raw_config
    if first_version and raw_config.get("model", {}).get("pos_encoding") == "sinusoidal":
        raise ValueError(f"run {run_id} was trained with sinusoidal positions before workbench 0.2 scaled its "
                         f"embeddings; its weights do not fit today's model: train it again")


RESUMABLE = ("train.max_steps", "train.max_time_s", "train.eval_interval", "train.log_interval", "train.device", "train.dtype",
             "train.compile", "train.lr", "train.min_lr", "train.warmup_steps", "train.grad_clip")
"""Settings a resume may change: how long, how often to log, where, and the schedule. The rest
(model, objective, data, batches, seed) would make the checkpoint and the run disagree."""


def prepare_resume(store: RunStore, run_id: str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Check that ``run_id`` can continue with ``overrides`` and queue it; returns its new config.

    Refused, with what to do instead: a live run, a run without a checkpoint, a setting that
    cannot change (:data:`RESUMABLE`), nothing left to train, a corpus file that changed.
    """
    info = store.reconcile(run_id)
    if not info.is_terminal:
        raise ValueError(f"run {run_id} is {info.status}; only an ended run can be resumed (stop it first)")
    if not (store.run_dir(run_id) / "ckpt" / "last.safetensors").exists():
        raise ValueError(f"run {run_id} has no checkpoint to resume from (one is saved at its first evaluation); "
                         f"start a new run instead")
    check_weights_fit(info.config, run_id)
    cfg = RunConfig.from_dict(info.config)
    new = apply_overrides(cfg, overrides or {})
    fixed = [f for f in diff_fields(cfg, new) if f not in RESUMABLE]
    if fixed:
        raise ConfigError(fixed[0].split(".", 1)[1],
                          f"cannot change when resuming run {run_id} (only {', '.join(r.split('.')[1] for r in RESUMABLE)} "
                          f"can); start a new run to change {', '.join(fixed)}")
    if new.train.max_steps <= info.step:
        raise ConfigError("max_steps", f"run {run_id} is already at step {info.step} of {new.train.max_steps}; "
                                       f"pass a larger max_steps (e.g. --max-steps {info.step * 2}) to extend it")
    if info.corpus_hash and corpus_fingerprint(load_corpus(cfg.data.corpus)) != info.corpus_hash:
        raise ValueError(f"the corpus {cfg.data.corpus!r} has changed since run {run_id} trained on it; "
                         f"resuming would mix two texts: start a new run on it instead")
    store.queue(run_id, config=new.to_dict(), max_steps=new.train.max_steps)
    return new


def resume(store: RunStore, run_id: str, overrides: dict[str, Any] | None = None, progress: bool | None = None,
           callbacks: list[Callback] | tuple[Callback, ...] = ()) -> str:
    """Continue a stopped, failed or finished run from its last checkpoint (in this process)."""
    prepare_resume(store, run_id, overrides)
    return run_training(store, run_id, progress=progress, resume=True, callbacks=callbacks)


# --- using a finished run ---------------------------------------------------------------------

def checkpoint_path(store: RunStore, run_id: str, which: str = "best") -> Path:
    """The checkpoint file to load: ``best`` falls back to ``last`` when there is no best yet."""
    ckpt = store.run_dir(run_id) / "ckpt"
    path = ckpt / f"{which}.safetensors"
    if not path.exists() and which == "best" and (ckpt / "last.safetensors").exists():
        path = ckpt / "last.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"run {run_id} has no checkpoint yet (it saves one at its first evaluation)")
    return path


def load_run_model(store: RunStore, run_id: str, which: str = "best",
                   device: str = "cpu") -> tuple[LanguageModel, Tokenizer, RunConfig]:
    """The model (from ``ckpt/<which>.safetensors``), tokenizer and config of a run."""
    from .checkpoint import load_checkpoint

    store.get_run(run_id)  # raises UnknownRunError with a helpful message
    run_dir = store.run_dir(run_id)
    ckpt_path = checkpoint_path(store, run_id, which)
    raw = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    if raw.get("finetune"):
        raise ValueError(f"run {run_id} is a fine-tuning run (a task head, not a language model): predict with "
                         f"workbench.finetune.predict.load_finetuned or on the dashboard")
    check_weights_fit(raw, run_id)
    cfg = RunConfig.from_dict(raw)
    tokenizer = Tokenizer.load(run_dir / "tokenizer.json")
    model = build_model(cfg.model)
    model.load_state_dict(load_checkpoint(ckpt_path).model_state)
    return model.to(device).eval(), tokenizer, cfg


def attention_snapshots(store: RunStore, run_id: str, kind: str = "attention") -> list[tuple[int, Path]]:
    """``(step, path)`` of a run's attention snapshots of artifact ``kind``, oldest first:
    "attention" (self-attention; an encoder-decoder's encoder), "decoder_attention" or
    "cross_attention" (encoder-decoders), "content_attention" or "query_attention" (a permutation
    LM's two streams; see :class:`AttentionSnapshots`)."""
    return store.artifacts(run_id, kind)


def cross_attention_snapshots(store: RunStore, run_id: str) -> list[tuple[int, Path]]:
    """``(step, path)`` of an encoder-decoder run's cross-attention snapshots, oldest first."""
    return attention_snapshots(store, run_id, "cross_attention")


def load_attention(path: str | Path) -> AttentionMaps:
    return AttentionMaps.load(path)
