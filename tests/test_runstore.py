from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from workbench.runstore import RunStore, UnknownRunError

N_STEPS = 400
METRICS_PER_STEP = 3


def _writer(home: str, run_id: str, ready, done) -> None:
    store = RunStore(home)
    ready.wait(30)
    for step in range(1, N_STEPS + 1):
        store.log_metrics(run_id, step, {"train/loss": 1.0 / step, "lr": 1e-3, "tokens_per_s": float(step)})
        if step % 10 == 0:
            store.update_run(run_id, step=step, heartbeat_at=time.time())
    store.update_run(run_id, status="finished")
    done.set()


def _reader(home: str, run_id: str, ready, done, out) -> None:
    try:
        store = RunStore(home)
        ready.wait(30)
        last_step, rows_seen, polls = 0, 0, 0  # steps start at 1
        while True:
            finished = done.is_set()
            rows = store.metrics(run_id, after_step=last_step)
            if rows:
                steps = [r[0] for r in rows]
                assert steps == sorted(steps), "rows out of order"
                assert min(steps) == last_step + 1, f"gap after step {last_step}"
                # a step is committed with all its metrics in one transaction
                complete = [s for s in set(steps) if steps.count(s) == METRICS_PER_STEP]
                assert len(complete) == len(set(steps)), "a step with only some of its metrics"
                last_step = max(steps)
                rows_seen += len(rows)
            store.get_run(run_id)
            store.list_runs()
            polls += 1
            if finished and not rows:
                break
        out.put(("ok", rows_seen, polls))
    except Exception as exc:  # reported to the parent, which fails the test
        out.put(("error", repr(exc), 0))


def test_one_writer_three_readers_no_errors_no_lost_rows(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    store = RunStore(home)
    run_id = store.create_run({"train": {"max_steps": N_STEPS}})
    ctx = mp.get_context("spawn")
    ready, done, out = ctx.Event(), ctx.Event(), ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(home, run_id, ready, done, out)) for _ in range(3)]
    writer = ctx.Process(target=_writer, args=(home, run_id, ready, done))
    for p in [*readers, writer]:
        p.start()
    ready.set()
    results = [out.get(timeout=120) for _ in readers]
    for p in [*readers, writer]:
        p.join(timeout=60)
    assert writer.exitcode == 0
    for status, rows_seen, polls in results:
        assert status == "ok", rows_seen
        assert rows_seen == N_STEPS * METRICS_PER_STEP
        assert polls > 1  # they really read while the writer wrote
    assert len(store.metrics(run_id)) == N_STEPS * METRICS_PER_STEP
    assert store.get_run(run_id).status == "finished"
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_run_lifecycle_and_series(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rid = store.create_run({"train": {"max_steps": 5}, "preset": "gpt-nano"}, name="first")
    info = store.get_run(rid)
    assert info.status == "queued" and info.max_steps == 5 and info.name == "first"
    assert store.run_dir(rid).is_dir()
    store.log_metrics(rid, 1, {"train/loss": 2.0})
    store.log_metrics(rid, 2, {"train/loss": 1.5, "val/loss": 1.7})
    store.log_metrics(rid, 2, {"val/loss": 1.6})  # re-logged (resume) replaces, not duplicates
    series = store.metric_series(rid)
    assert series["train/loss"] == ([1, 2], [2.0, 1.5])
    assert series["val/loss"] == ([2], [1.6])
    assert store.metric_series(rid, after_step=1)["train/loss"] == ([2], [1.5])
    with pytest.raises(ValueError, match="unknown status"):
        store.update_run(rid, status="exploded")
    with pytest.raises(ValueError, match="cannot update"):
        store.update_run(rid, id="x")
    assert store.get_run(rid).status == "queued"  # bad updates changed nothing


def test_unknown_run_id_message(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(UnknownRunError) as err:
        store.get_run("nope")
    assert "unknown run id 'nope'" in str(err.value)
    with pytest.raises(UnknownRunError):
        store.update_run("nope", step=3)


def test_reconcile_marks_dead_process_failed(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rid = store.create_run({})
    proc = mp.get_context("spawn").Process(target=time.sleep, args=(0,))
    proc.start()
    proc.join()
    store.update_run(rid, status="running", pid=proc.pid)
    info = store.reconcile(rid)
    assert info.status == "failed" and "died without reporting" in info.error


def test_nan_metrics_are_refused_with_a_message(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rid = store.create_run({})
    with pytest.raises(ValueError, match="val/loss at step 3 is NaN"):
        store.log_metrics(rid, 3, {"train/loss": 1.0, "val/loss": float("nan")})
    assert store.metrics(rid) == []  # nothing half-written
    store.log_metrics(rid, 4, {"val/ppl": float("inf")})  # inf is a number SQLite keeps
    assert store.metric_series(rid)["val/ppl"] == ([4], [float("inf")])


def test_a_store_from_the_first_version_gets_the_new_columns(tmp_path: Path) -> None:
    import sqlite3

    old = sqlite3.connect(tmp_path / "store.db")
    old.executescript("""CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', status TEXT NOT NULL,
        config TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL, ended_at REAL, heartbeat_at REAL, pid INTEGER,
        step INTEGER NOT NULL DEFAULT 0, max_steps INTEGER NOT NULL DEFAULT 0, best_val_loss REAL, num_params INTEGER,
        device TEXT, error TEXT, stop_requested INTEGER NOT NULL DEFAULT 0);
        INSERT INTO runs (id, status, config, created_at) VALUES ('old', 'finished', '{}', 1.0);""")
    old.commit()
    old.close()
    store = RunStore(tmp_path)
    info = store.get_run("old")
    assert info.status == "finished" and info.host is None and info.corpus_hash is None
    store.update_run("old", corpus_hash="sha256:x")
    assert RunStore(tmp_path).get_run("old").corpus_hash == "sha256:x"


def test_a_live_process_that_stops_heartbeating_is_reported(tmp_path: Path) -> None:
    """A notebook kernel stays alive after its run crashed; only the heartbeat tells."""
    import os

    store = RunStore(tmp_path)
    rid = store.create_run({})
    store.claim(rid)  # this (live) process, heartbeat now
    assert store.reconcile(rid, stale_after_s=60).status == "running"
    store.update_run(rid, heartbeat_at=time.time() - 120)
    info = store.reconcile(rid, stale_after_s=60)
    assert info.status == "failed" and "no heartbeat for 12" in info.error and info.pid == os.getpid()


def test_runs_without_a_pid_from_older_versions_are_reconciled_too(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rid = store.create_run({})
    store.update_run(rid, status="running", started_at=time.time() - 3600, heartbeat_at=time.time() - 3600)
    assert store.reconcile(rid).status == "failed"
    queued = store.create_run({})  # a queued run the launcher is about to start: left alone
    assert store.reconcile(queued).status == "queued"


def test_delete_run_removes_rows_and_folder_but_not_a_live_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    keep, gone = store.create_run({}), store.create_run({})
    for rid in (keep, gone):
        store.log_metrics(rid, 1, {"train/loss": 1.0})
        store.add_artifact(rid, "attention", 1, store.run_dir(rid) / "attn" / "x.npz")
    store.update_run(gone, status="finished")
    store.claim(keep)
    with pytest.raises(ValueError, match="stop it before deleting"):
        store.delete_run(keep)
    store.delete_run(gone)
    assert [r.id for r in store.list_runs()] == [keep]
    assert store.metrics(gone) == [] and store.artifacts(gone, "attention") == []
    assert not store.run_dir(gone).exists() and store.run_dir(keep).exists()


def test_metric_rows_since_a_cursor_returns_only_new_rows(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    rid = store.create_run({})
    store.log_metrics(rid, 10, {"train/loss": 2.0})
    rows, cursor = store.metric_rows_since(rid)
    assert rows == [(10, "train/loss", 2.0)]
    store.log_metrics(rid, 10, {"val/loss": 2.5})  # same step, logged later
    store.log_metrics(rid, 10, {"train/loss": 1.9})  # re-logged by a resume: comes again
    rows, cursor2 = store.metric_rows_since(rid, cursor)
    assert rows == [(10, "val/loss", 2.5), (10, "train/loss", 1.9)] and cursor2 > cursor
    assert store.metric_rows_since(rid, cursor2) == ([], cursor2)
