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
    assert info.status == "failed" and "exited" in info.error
