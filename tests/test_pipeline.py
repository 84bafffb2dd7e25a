"""A run from config to store: what the tokenizer sees, what is written, what happens when things fail."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from workbench.experiment import build_experiment
from workbench.io import TMP_SUFFIX, atomic_write
from workbench.pipeline import run_training, train
from workbench.runstore import RunStore


def test_subword_tokenizer_learns_from_the_training_split_only(tiny_cfg, tmp_path: Path) -> None:
    # a word that only occurs in the validation tail would become a token if the BPE saw it
    text = "the cat sat on the mat. " * 400 + "zyzzyva " * 100
    path = tmp_path / "leak.txt"
    path.write_text(text, encoding="utf-8")
    assert text.index("zyzzyva") > len(text) * 0.9  # the word sits in the held-out 10%
    exp = build_experiment(tiny_cfg(corpus=str(path), tokenizer="bpe", vocab_size=400))
    vocab = {exp.tokenizer.id_to_token(i) for i in range(exp.tokenizer.vocab_size)}
    assert "Ġcat" in vocab and "Ġmat" in vocab  # learned from training text
    assert not {t for t in vocab if "zz" in t or "yva" in t}, "validation text leaked into the vocabulary"


def test_atomic_write_leaves_the_old_file_and_no_temp_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    atomic_write(target, "old")

    def fail_halfway(fh):
        fh.write(b"half of the new")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, fail_halfway)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_temp_files_of_a_killed_writer_are_removed_when_the_run_restarts(tiny_cfg) -> None:
    store = RunStore()
    run_id = store.create_run(tiny_cfg(max_steps=5).to_dict())
    orphan = store.run_dir(run_id) / "ckpt" / f".last.safetensors.abc{TMP_SUFFIX}"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"partial")
    assert run_training(store, run_id, progress=False) == "finished"
    assert not orphan.exists()
    assert not list(store.run_dir(run_id).rglob(f"*{TMP_SUFFIX}"))


def test_every_run_records_its_process_and_a_heartbeat(tiny_cfg) -> None:
    store = RunStore()
    beats: list[float] = []

    from workbench.trainer import Callback

    class Watch(Callback):
        def on_log(self, trainer, metrics):
            beats.append(store.get_run(run_id).heartbeat_at or 0.0)

    run_id = store.create_run(tiny_cfg(max_steps=10).to_dict())
    run_training(store, run_id, progress=False, callbacks=[Watch()])
    info = store.get_run(run_id)
    assert info.pid == os.getpid() and info.host and info.corpus_hash.startswith("sha256:")
    assert beats and all(b > 0 for b in beats)


def test_the_heartbeat_thread_beats_while_the_main_thread_is_busy(tmp_path: Path) -> None:
    """Not only at log steps: a slow step or evaluation must not look like a dead process."""
    from workbench.pipeline import Heartbeat

    store = RunStore(tmp_path)
    run_id = store.create_run({})
    store.update_run(run_id, heartbeat_at=0.0)
    with Heartbeat(tmp_path, run_id, interval_s=0.05):
        time.sleep(0.5)  # the main thread does nothing for the store meanwhile
        assert time.time() - (store.get_run(run_id).heartbeat_at or 0.0) < 0.3
    stopped_at = store.get_run(run_id).heartbeat_at
    time.sleep(0.2)
    assert store.get_run(run_id).heartbeat_at == stopped_at  # and it stops with the run


def test_when_even_the_failure_cannot_be_recorded_the_run_is_reported_dead(tiny_cfg, monkeypatch) -> None:
    """Disk full: the failure handler's own write fails. The run must not stay 'running' forever."""
    store = RunStore()
    run_id = store.create_run(tiny_cfg(max_steps=5, corpus="/no/such/corpus.txt").to_dict())
    real_update = store.update_run

    def update(rid, **fields):
        if fields.get("status") == "failed":
            raise OSError(28, "No space left on device")
        return real_update(rid, **fields)

    monkeypatch.setattr(store, "update_run", update)
    with pytest.raises(Exception, match="does not exist"):
        run_training(store, run_id, progress=False)
    monkeypatch.undo()
    assert store.get_run(run_id).status == "running"  # the failure could not be written...
    time.sleep(1.2)
    info = store.reconcile(run_id, stale_after_s=1.0)  # ...but the heartbeat stopped with the run
    assert info.status == "failed" and "no heartbeat" in info.error


def test_train_then_sample_round_trip_through_the_store(tiny_cfg) -> None:
    from workbench.generate import sample_text
    from workbench.pipeline import load_run_model

    store = RunStore()
    run_id = train(tiny_cfg(max_steps=20), store, progress=False)
    model, tok, cfg = load_run_model(store, run_id, "last")
    assert model.max_context == cfg.model.block_size == 32
    text = sample_text(model, tok, "KING:", max_new_tokens=50, seed=1)  # longer than the context: cropped
    assert text.startswith("KING:") and len(text) == 55


def test_old_unscaled_sinusoidal_checkpoints_are_refused_not_misread(tiny_cfg) -> None:
    import json

    from workbench.pipeline import load_run_model, prepare_resume

    store = RunStore()
    run_id = train(tiny_cfg(max_steps=10, pos_encoding="sinusoidal"), store, progress=False)
    load_run_model(store, run_id)  # today's runs load
    old = json.loads((store.run_dir(run_id) / "config.json").read_text())
    old["train"]["objective"] = old.pop("objective")["name"]  # as the first version wrote it
    (store.run_dir(run_id) / "config.json").write_text(json.dumps(old))
    store.update_run(run_id, config=old)
    with pytest.raises(ValueError, match="before workbench 0.2 scaled"):
        load_run_model(store, run_id)
    with pytest.raises(ValueError, match="before workbench 0.2 scaled"):
        prepare_resume(store, run_id, {"max_steps": 20})


def test_atomic_writes_get_the_usual_file_permissions(tmp_path: Path) -> None:
    """mkstemp makes 0600 files; a store shared by a team needs what open() gives (0666 less umask)."""
    import stat

    atomic_write(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_callbacks_attach_by_what_the_model_can_do(tiny_cfg, monkeypatch) -> None:
    """Attention snapshots only for families whose config says their attention can be captured."""
    from workbench.experiment import build_experiment
    from workbench.models import GPTConfig
    from workbench.pipeline import AttentionSnapshots, attach_callbacks

    store = RunStore()
    run_id = store.create_run({})
    exp = build_experiment(tiny_cfg())
    kinds = [type(c).__name__ for c in attach_callbacks(store, run_id, exp.model, exp.probe_ids, exp.tokenizer, {},
                                                          exp.objective)]
    assert kinds == ["StoreLogger", "AttentionSnapshots", "CheckpointCallback"]
    monkeypatch.setattr(GPTConfig, "capabilities", frozenset({"causal"}))  # as an RNN family would say
    callbacks = attach_callbacks(store, run_id, exp.model, exp.probe_ids, exp.tokenizer, {}, exp.objective)
    assert not any(isinstance(c, AttentionSnapshots) for c in callbacks) and len(callbacks) == 2
