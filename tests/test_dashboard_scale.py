"""Monitor and Runs with a big store: 10 runs x 10,000 steps x 7 metrics (700k rows).

Measures the render time of each page (printed: run pytest with ``-s`` to see it), checks that
every chart trace is downsampled to at most ``plots.MAX_POINTS`` points, and that the Monitor
reads only the rows written since its last render. The time bounds are deliberately loose
(shared 2-core machines are noisy); the printed figures are the result.
"""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from test_dashboard import _app, _array, _charts, common, local_visitor  # noqa: F401  (autouse fixture)
from workbench import plots
from workbench.presets import get_preset
from workbench.runstore import RunStore

RUNS, STEPS = 10, 10_000
METRICS = ("train/loss", "val/loss", "val/ppl", "val/bpc", "lr", "grad_norm", "tokens_per_s")
GENEROUS_S = 60.0


def _rows(step: int, seed: int) -> list[tuple[int, str, float]]:
    loss = 4.2 * math.exp(-step / (2000 + 100 * seed)) + 1.4 + 0.05 * math.sin(step * 0.37 + seed)
    spike = 3.0 if step == 7_777 else 0.0  # one loss spike: it must survive the downsampling
    return [(step, "train/loss", loss + spike), (step, "val/loss", loss + 0.1), (step, "val/ppl", math.exp(loss + 0.1)),
            (step, "val/bpc", (loss + 0.1) / math.log(2)), (step, "lr", 1e-3 * (1 + math.cos(math.pi * step / STEPS)) / 2),
            (step, "grad_norm", 0.5 + 0.1 * math.cos(step)), (step, "tokens_per_s", 40_000.0 + seed)]


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> tuple[str, list[str]]:
    """The store, built once: 9 finished runs and 1 live one (this process, heartbeating)."""
    home = tmp_path_factory.mktemp("big")
    store = RunStore(home)
    ids = []
    t0 = time.perf_counter()
    for seed in range(RUNS):
        run_id = store.create_run(get_preset("gpt-nano").to_dict(), name=f"run-{seed}")
        rows = [r for step in range(STEPS) for r in _rows(step, seed)]
        for i in range(0, len(rows), 50_000):
            store.log_metric_rows(run_id, rows[i:i + 50_000])
        store.update_run(run_id, status="finished", step=STEPS - 1, max_steps=STEPS, best_val_loss=1.5,
                         started_at=time.time() - 100, ended_at=time.time())
        ids.append(run_id)
        time.sleep(0.002)  # distinct created_at: newest first is well defined
    live = ids[-1]
    store.update_run(live, status="running", pid=os.getpid(), heartbeat_at=time.time(), max_steps=2 * STEPS,
                     ended_at=None)
    print(f"\n[scale] built {RUNS} runs x {STEPS} steps x {len(METRICS)} metrics in {time.perf_counter() - t0:.1f} s")
    return str(home), ids


def _traces(at) -> list[dict]:
    return [t for chart in _charts(at) for t in chart["data"]]


def test_monitor_with_10k_steps_reads_only_new_rows_and_draws_at_most_the_cap(big_store, monkeypatch):
    home, ids = big_store
    monkeypatch.setenv("WORKBENCH_HOME", home)
    live = ids[-1]
    store = RunStore(home)
    store.update_run(live, heartbeat_at=time.time())

    reads: list[tuple[int, int]] = []  # (cursor asked for, rows returned) of each metric_rows_since call
    real = RunStore.metric_rows_since

    def spy(self, run_id, cursor=0):
        rows, new = real(self, run_id, cursor)
        if run_id == live:
            reads.append((cursor, len(rows)))
        return rows, new

    monkeypatch.setattr(RunStore, "metric_rows_since", spy)

    at = _app(run=live)  # the app's first run (Train page): imports, the store
    t0 = time.perf_counter()
    at.switch_page("app_pages/monitor.py").run()
    first = time.perf_counter() - t0
    assert not at.exception
    traces = _traces(at)
    assert len(_charts(at)) == 5 and len(traces) == 6  # loss (train + val), ppl, tokens/s, lr, grad norm
    assert all(len(_array(t["x"])) <= plots.MAX_POINTS for t in traces)
    loss = next(t for t in traces if t["name"] == "train/loss")
    assert max(_array(loss["y"])) > 4.4  # the spike at step 7777 survived
    assert _array(loss["x"])[-1] == STEPS - 1
    assert reads == [(0, STEPS * len(METRICS))]  # the first render reads the run once, whole
    spec_kb = sum(len(c.proto.spec) for c in at.get("plotly_chart")) / 1024

    t0 = time.perf_counter()
    at.run()  # what each poll of the live panel does: nothing new, nothing read
    idle = time.perf_counter() - t0
    assert reads[-1][1] == 0 and reads[-1][0] > 0

    store.log_metric_rows(live, _rows(STEPS, 0))  # the run logs one more step
    store.update_run(live, step=STEPS, heartbeat_at=time.time())
    t0 = time.perf_counter()
    at.run()
    second = time.perf_counter() - t0
    cursor, n_rows = reads[-1]
    assert n_rows == len(METRICS) and cursor > 0  # only the new rows were read
    loss = next(t for t in _traces(at) if t["name"] == "train/loss")
    assert _array(loss["x"])[-1] == STEPS  # ...and the new point is drawn
    entry = at.session_state[common.SERIES_KEY][(home, live)]
    assert entry["cursor"] > cursor and entry["rows_read"] == len(METRICS)

    print(f"[scale] Monitor, {STEPS:,} steps x {len(METRICS)} metrics: first render {first:.2f} s "
          f"(all {STEPS * len(METRICS):,} rows read and drawn), poll with nothing new {idle:.2f} s, "
          f"poll with one new step {second:.2f} s; {spec_kb:.0f} KiB of chart specs, "
          f"longest trace {max(len(_array(t['x'])) for t in traces)} points")
    assert first < GENEROUS_S and second < GENEROUS_S


def test_runs_compares_ten_runs_of_10k_steps_downsampled(big_store, monkeypatch):
    home, ids = big_store
    monkeypatch.setenv("WORKBENCH_HOME", home)
    RunStore(home).update_run(ids[-1], heartbeat_at=time.time())
    at = _app(page="runs")
    assert len(at.dataframe[0].value) == RUNS
    timings = {}
    for metric in ("val/loss", "train/loss"):
        at.multiselect(key="cmp_runs").set_value(list(reversed(ids)))
        at.selectbox(key="cmp_metric").set_value(metric)
        t0 = time.perf_counter()
        at.run()
        timings[metric] = time.perf_counter() - t0
        assert not at.exception
        (chart,) = _charts(at)
        assert len(chart["data"]) == RUNS
        assert all(len(_array(t["x"])) <= plots.MAX_POINTS for t in chart["data"])
        assert all(_array(t["x"])[-1] >= STEPS - 1 for t in chart["data"])
    spec_kb = len(at.get("plotly_chart")[0].proto.spec) / 1024
    print(f"[scale] Runs, compare {RUNS} runs x {STEPS:,} steps: "
          + ", ".join(f"{m} {s:.2f} s" for m, s in timings.items()) + f"; {spec_kb:.0f} KiB chart spec")
    assert max(timings.values()) < GENEROUS_S
    assert json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["title"]["text"] == "train/loss by run"
