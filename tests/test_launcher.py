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
    assert "died without reporting" in store.get_run(victim).error
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
    assert stored["model"]["vocab_size"] == 78 + 1  # the Shakespeare plays' characters and [UNK]
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


def test_a_dashboard_run_resumed_from_the_cli_records_the_new_process(tiny_cfg) -> None:
    """The resumed run used to keep the launcher's dead pid, so every poll marked it failed while it trained."""
    import subprocess
    import sys

    store = RunStore()
    run_id = start_run(tiny_cfg(max_steps=100_000, eval_interval=20), store)
    while store.get_run(run_id).step < 20:
        assert not store.reconcile(run_id).is_terminal
        time.sleep(0.2)
    stop_run(run_id, store)
    first_pid = wait_for(run_id, store, timeout=120).pid
    stopped_at = store.get_run(run_id).step

    proc = subprocess.Popen([sys.executable, "-m", "workbench", "train", "--resume", run_id, "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen_running = False
    deadline = time.monotonic() + 120
    while store.get_run(run_id).step < stopped_at + 10:
        info = store.reconcile(run_id)  # what every dashboard poll does
        assert info.status != "failed", info.error
        seen_running |= info.status == "running" and info.pid == proc.pid
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    assert seen_running and first_pid != proc.pid
    stop_run(run_id, store)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert store.get_run(run_id).status == "stopped"


def test_resume_run_extends_an_ended_run_in_a_new_process(tiny_cfg) -> None:
    from workbench.launcher import resume_run

    store = RunStore()
    run_id = start_run(tiny_cfg(max_steps=10), store)
    assert wait_for(run_id, store, timeout=120).status == "finished"
    cfg = resume_run(run_id, store, {"max_steps": 20})
    assert cfg.train.max_steps == 20 and store.get_run(run_id).status in ("queued", "running", "finished")
    info = wait_for(run_id, store, timeout=120)
    assert (info.status, info.step, info.max_steps) == ("finished", 20, 20)
    assert store.metric_series(run_id)["val/loss"][0] == [0, 10, 20]


def test_dashboard_limits_refuse_big_or_too_many_runs(tiny_cfg) -> None:
    from workbench.config import ConfigError
    from workbench.limits import LaunchLimits

    store = RunStore()
    with pytest.raises(ConfigError) as err:
        start_run(tiny_cfg(n_embd=512, n_head=8), store, limits=LaunchLimits(max_params=1_000_000), vocab_size=78)
    assert err.value.field == "n_embd" and "1,000,000" in str(err.value)
    with pytest.raises(ConfigError) as err:
        start_run(tiny_cfg(batch_size=64), store, limits=LaunchLimits(max_tokens_per_step=1024))
    assert err.value.field == "batch_size"
    assert store.list_runs() == []
    live = start_run(tiny_cfg(max_steps=100_000, eval_interval=1000), store, limits=LaunchLimits(max_concurrent_runs=1))
    with pytest.raises(ConfigError, match="1 at a time") as err:
        start_run(tiny_cfg(), store, limits=LaunchLimits(max_concurrent_runs=1))
    assert err.value.field == "run" and len(store.list_runs()) == 1
    stop_run(live, store)
    wait_for(live, store, timeout=120)


def test_a_too_short_user_corpus_is_refused_before_a_process_starts(tiny_cfg, tmp_path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 2, encoding="utf-8")  # 86 characters
    store = RunStore()
    with pytest.raises(CorpusError, match="too short"):
        start_run(tiny_cfg(corpus=str(path), block_size=128), store)
    with pytest.raises(CorpusError, match="too short"):
        start_run(tiny_cfg(corpus=str(path), block_size=128, tokenizer="bpe", vocab_size=270), store)
    assert store.list_runs() == []


def test_a_run_resumed_long_after_it_ended_is_not_mistaken_for_a_dead_one(tiny_cfg) -> None:
    """Its old heartbeat (an hour ago) and old pid must not make the new process look stale or dead."""
    from workbench.launcher import resume_run

    store = RunStore()
    run_id = start_run(tiny_cfg(max_steps=10), store)
    assert wait_for(run_id, store, timeout=120).status == "finished"
    an_hour_ago = time.time() - 3600
    store.update_run(run_id, heartbeat_at=an_hour_ago, started_at=an_hour_ago - 60, ended_at=an_hour_ago)
    resume_run(run_id, store, {"max_steps": 20})
    assert store.reconcile(run_id).status in ("queued", "running")  # what the Monitor's rerun does at once
    info = wait_for(run_id, store, timeout=120)
    assert (info.status, info.step) == ("finished", 20), info.error


def test_a_second_process_cannot_claim_a_run_another_one_trains(tiny_cfg) -> None:
    import subprocess
    import sys

    from workbench.pipeline import run_training

    store = RunStore()
    run_id = store.create_run(tiny_cfg().to_dict())
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store.update_run(run_id, status="running", pid=holder.pid, heartbeat_at=time.time())
        with pytest.raises(ValueError, match=f"already being trained by process {holder.pid}"):
            run_training(store, run_id, progress=False)
        assert store.get_run(run_id).pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
