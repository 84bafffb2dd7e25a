"""Runs launched as separate processes, as the dashboard does."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from workbench.corpora import CorpusError
from workbench.launcher import run_status, start_run, stop_run, wait_for
from workbench.runstore import RunStore


def test_start_run_trains_in_a_subprocess(tiny_cfg) -> None:
    store = RunStore()
    run_id = start_run(tiny_cfg(max_steps=20), store)
    info = store.get_run(run_id)
    assert info.pid and info.pid != os.getpid()
    info = wait_for(run_id, store, timeout=240)
    assert info.status == "finished", (store.run_dir(run_id) / "stdout.log").read_text()
    series = store.metric_series(run_id)
    assert series["train/loss"][0] == [5, 10, 15, 20]
    assert series["val/loss"][0] == [0, 10, 20]
    assert [s for s, _ in store.artifacts(run_id, "attention")] == [0, 10, 20]
    assert (store.run_dir(run_id) / "ckpt" / "best.safetensors").exists()


def test_stop_run_ends_as_stopped_with_a_checkpoint(tiny_cfg) -> None:
    store = RunStore()
    run_id = start_run(tiny_cfg(max_steps=100_000, eval_interval=1000), store)
    deadline = time.monotonic() + 180
    while store.get_run(run_id).step < 10:
        assert time.monotonic() < deadline and not store.reconcile(run_id).is_terminal
        time.sleep(0.2)
    stop_run(run_id, store)
    info = wait_for(run_id, store, timeout=120)
    assert info.status == "stopped"
    assert 10 <= info.step < 100_000
    assert (store.run_dir(run_id) / "ckpt" / "last.safetensors").exists()


def test_killed_process_is_reported_failed_and_other_runs_are_untouched(tiny_cfg) -> None:
    store = RunStore()
    done = start_run(tiny_cfg(max_steps=10), store)
    wait_for(done, store, timeout=240)
    before = store.get_run(done)
    victim = start_run(tiny_cfg(max_steps=100_000, eval_interval=1000), store)
    while store.get_run(victim).status != "running":
        time.sleep(0.2)
    os.killpg(store.get_run(victim).pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while run_status(victim, store).status != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert "exited without reporting" in store.get_run(victim).error
    assert store.get_run(done) == before


def test_bad_corpus_is_rejected_before_anything_starts(tiny_cfg, tmp_path) -> None:
    store = RunStore()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xff\xff")
    with pytest.raises(CorpusError, match="not UTF-8"):
        start_run(tiny_cfg(corpus=str(bad)), store)
    assert store.list_runs() == []


def test_store_config_gets_the_tokenizer_vocab_size(tiny_cfg) -> None:
    from workbench.pipeline import train

    store = RunStore()
    run_id = train(tiny_cfg(max_steps=5), store)
    stored = store.get_run(run_id).config
    assert stored["model"]["vocab_size"] == 78  # the Shakespeare plays' characters
    assert json.loads((store.run_dir(run_id) / "config.json").read_text()) == stored


def test_stopped_run_resumed_from_the_cli_ends_where_an_uninterrupted_run_ends(tiny_cfg) -> None:
    from workbench.__main__ import main
    from workbench.pipeline import train

    store = RunStore()
    cfg = tiny_cfg(max_steps=60, eval_interval=1000)  # evaluations at step 0 and 60 only
    straight = train(cfg, store)

    interrupted = start_run(cfg, store)
    while store.get_run(interrupted).step < 10:
        assert not store.reconcile(interrupted).is_terminal
        time.sleep(0.1)
    stop_run(interrupted, store)
    info = wait_for(interrupted, store, timeout=120)
    assert info.status == "stopped" and info.step < 60

    resume_started = time.time()
    assert main(["train", "--resume", interrupted, "--no-progress"]) == 0
    resumed = store.get_run(interrupted)
    # it continued from the checkpoint: steps up to the stop were not trained (or logged) again
    rows = store.metrics(interrupted, names=["train/loss"])
    assert all((t < resume_started) == (step <= info.step) for step, _, _, t in rows)
    assert [step for step, *_ in rows] == list(range(5, 61, 5))
    assert resumed.status == "finished" and resumed.step == 60
    final = {rid: store.metric_series(rid)["val/loss"] for rid in (straight, interrupted)}
    assert final[interrupted][0] == final[straight][0] == [0, 60]
    assert final[interrupted][1] == pytest.approx(final[straight][1], rel=1e-6)
