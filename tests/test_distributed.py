"""torchrun: two gloo processes on the CPU train the same run as one process with the same global
batch (each takes its slice of the step's batch; DDP averages the gradients), rank 0 alone writes
the store, a resume continues under torchrun, and the launcher starts N processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.distributed import Dist, from_env, shard
from workbench.launcher import start_run, train_command, wait_for
from workbench.objectives.base import Batch
from workbench.overrides import apply_overrides
from workbench.presets import get_preset
from workbench.runstore import RunStore

TOLERANCE = 1e-4
"""Largest difference allowed between the 1- and 2-process losses: the same sums in another
order (float32 rounding), carried through 30 Adam steps."""
FLAGS = ["--preset", "gpt-nano", "--max-steps", "30", "--batch-size", "8", "--dropout", "0", "--eval-interval", "10",
         "--log-interval", "5", "--no-progress", "--device", "cpu"]


def workbench(home: Path, *args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]
    return subprocess.run([*launch, "-m", "workbench", *args], capture_output=True, text=True, env=env, timeout=300)


def test_a_process_reads_its_place_from_torchrun_s_environment() -> None:
    assert from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Dist(3, 4, 1)
    assert not from_env({}).enabled and from_env({}).is_main


def test_each_rank_takes_its_contiguous_slice_of_every_batch_field() -> None:
    ids = torch.arange(12).view(6, 2)
    b = Batch(ids, ids + 100, attention_mask=torch.ones(6, 2))
    parts = [shard(b, Dist(r, 3, r)) for r in range(3)]
    assert torch.equal(torch.cat([p.input_ids for p in parts]), ids)
    assert torch.equal(torch.cat([p.labels for p in parts]), ids + 100)
    assert all(p.attention_mask.shape == (2, 2) and p.token_type_ids is None for p in parts)
    with pytest.raises(ValueError, match="cannot be split evenly over 4"):
        shard(b, Dist(0, 4, 0))


def test_two_gloo_processes_give_the_one_process_loss_curve_and_one_store_row(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = workbench(one, "train", *FLAGS)
    r2 = workbench(two, "train", *FLAGS, nproc=2)
    assert r1.returncode == 0, r1.stderr
    assert r2.returncode == 0, r2.stderr
    assert "finished at step 30" in r2.stderr and "(2 processes)" in r2.stderr
    (a,), (b,) = RunStore(one).list_runs(), RunStore(two).list_runs()  # one row each: rank 1 never wrote
    assert b.status == "finished" and b.step == 30
    sa, sb = RunStore(one).metric_series(a.id), RunStore(two).metric_series(b.id)
    for name in ("train/loss", "val/loss"):
        assert sa[name][0] == sb[name][0]  # the same log and eval steps
        assert max(abs(x - y) for x, y in zip(sa[name][1], sb[name][1])) < TOLERANCE, name
    assert sa["val/loss"][1][-1] < sa["val/loss"][1][0] - 0.5  # and it learned
    assert sb["tokens_per_s"][0] == sa["tokens_per_s"][0]
    assert len(RunStore(two).artifacts(b.id, "attention")) == 4  # snapshots by rank 0 only, once per evaluation

    # resume under torchrun: both processes load the checkpoint and go on
    r3 = workbench(two, "train", "--resume", b.id, "--max-steps", "40", nproc=2)
    assert r3.returncode == 0, r3.stderr
    assert RunStore(two).get_run(b.id).step == 40 and len(RunStore(two).list_runs()) == 1


def test_a_global_batch_that_does_not_split_is_refused_naming_batch_size(tmp_path: Path) -> None:
    r = workbench(tmp_path, "train", "--preset", "gpt-nano", "--max-steps", "2", "--batch-size", "7", nproc=2)
    assert r.returncode != 0 and "batch_size: 7 cannot be split evenly over 2 processes" in r.stderr
    assert RunStore(tmp_path).list_runs() == []  # refused before the run was created


def test_counting_models_are_refused_under_torchrun(tmp_path: Path) -> None:
    r = workbench(tmp_path, "train", "--preset", "ngram-nano", "--max-steps", "2", nproc=2)
    assert r.returncode != 0 and "fitted by counting" in r.stderr


def test_the_launcher_starts_a_run_on_n_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert train_command(tmp_path, 1)[1:3] == ["-m", "workbench"]
    assert "--nproc_per_node=2" in train_command(tmp_path, 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    store = RunStore(tmp_path / "home")
    cfg = apply_overrides(get_preset("gpt-nano"), {"max_steps": 10, "batch_size": 8, "eval_interval": 10, "device": "cpu"})
    run_id = start_run(cfg, store, nproc=2)
    info = wait_for(run_id, store, timeout=240)
    log = (store.run_dir(run_id) / "stdout.log").read_text()
    assert info.status == "finished" and info.step == 10, log
    with pytest.raises(Exception, match="cannot be split evenly over 3"):
        start_run(cfg, store, nproc=3)
