"""The label sweep (one run per arm x budget x seed, test metric per run, the curve) and the CLI's
finetune / sweep-labels commands, on a tiny BERT pretrained for a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workbench.__main__ import main
from workbench.config import ConfigError, RunConfig
from workbench.finetune.run import finetune_info
from workbench.finetune.sweep import arm_config, curve_figure, majority_share, steps_for_budget, summarize, sweep_labels, table
from workbench.finetune.tasks import load_task
from workbench.pipeline import train
from workbench.runstore import RunStore

TINY_BERT = {"arch": "bert", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64}
TRAIN = {"max_steps": 8, "batch_size": 8, "eval_interval": 8, "log_interval": 4, "lr": 3e-3, "warmup_steps": 2,
         "device": "cpu"}


@pytest.fixture(scope="module")
def pretrained(pretrained_bert: tuple[RunStore, str]) -> tuple[RunStore, str]:
    return pretrained_bert


def base(init: str, **ft) -> RunConfig:
    return RunConfig.from_dict({"model": TINY_BERT, "objective": {"name": "mlm"}, "tokenizer": {"kind": "char"},
                                "train": TRAIN, "finetune": {"init": init, "task": "genre", "max_len": 64,
                                                             "max_eval": 16, **ft}})


def test_steps_grow_with_the_budget_within_their_bounds() -> None:
    assert [steps_for_budget(n, 16, 10, 50, 400) for n in (32, 160, 320, 10_000)] == [50, 100, 200, 400]


def test_each_arm_changes_only_its_settings(pretrained: tuple[RunStore, str]) -> None:
    _, run_id = pretrained
    b = base(run_id, freeze=1)
    cfgs = {arm: arm_config(b, arm, 64, 2, 64, epochs=10, min_steps=3) for arm in ("pretrained", "frozen", "scratch")}
    assert cfgs["pretrained"].finetune.freeze == 1 and not cfgs["pretrained"].finetune.reinit
    assert cfgs["frozen"].finetune.freeze == -1
    assert cfgs["scratch"].finetune.reinit and cfgs["scratch"].finetune.freeze == 1
    for cfg in cfgs.values():
        fc = cfg.finetune
        assert (fc.labels, fc.label_seed, fc.keep_weights) == (64, 2, False)
        assert cfg.train.max_steps == 8 and cfg.train.seed == b.train.seed + 2  # 10 epochs of 64 capped at max_steps
    with pytest.raises(ConfigError, match="needs a pretrained trunk") as err:
        arm_config(base("scratch"), "frozen", 64, 0, 64, 10, 3)
    assert err.value.field == "init"


def test_a_sweep_trains_a_run_per_arm_and_budget_and_plots_the_curve(pretrained: tuple[RunStore, str]) -> None:
    store, run_id = pretrained
    seen = []
    rows = sweep_labels(base(run_id), budgets=(8, 16), arms=("pretrained", "scratch"), seeds=(0,), epochs=1,
                        min_steps=2, store=store, on_result=seen.append)
    assert seen == rows and [(r["arm"], r["labels"]) for r in rows] == [
        ("pretrained", 8), ("pretrained", 16), ("scratch", 8), ("scratch", 16)]
    for r in rows:
        assert r["metric"] == "acc" and 0 <= r["value"] <= 1 and r["n_train"] == r["labels"] and r["steps"] == 2
        assert r["value"] == finetune_info(store, r["run_id"])["test"]["test/acc"]
        assert store.get_run(r["run_id"]).status == "finished"
        assert not (store.run_dir(r["run_id"]) / "ckpt").exists()  # a sweep keeps no weights
    text = table(rows)
    assert "pretrained" in text and "scratch" in text and len(text.splitlines()) == 3
    fig = curve_figure(rows, {"majority class": majority_share(load_task("genre"))})
    assert [t.name for t in fig.data] == ["pretrained", "scratch"] and list(fig.data[0].x) == [8, 16]
    assert fig.layout.xaxis.type == "log"


def test_summaries_average_over_seeds() -> None:
    rows = [{"arm": "a", "n_train": 8, "value": v, "metric": "acc"} for v in (0.4, 0.6)]
    (s,) = summarize(rows)
    assert s["mean"] == pytest.approx(0.5) and s["std"] == pytest.approx(0.1) and s["seeds"] == 2


def test_majority_share_is_the_most_common_test_class() -> None:
    task = load_task("genre")
    counts = task.label_counts("test")
    assert majority_share(task) == max(counts.values()) / sum(counts.values())


# --- the CLI ----------------------------------------------------------------------------------------

def test_cli_finetune_prints_val_and_test_metrics(pretrained: tuple[RunStore, str], monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    store, run_id = pretrained
    monkeypatch.setenv("WORKBENCH_HOME", str(store.home))
    assert main(["finetune", "--task", "names", "--init", run_id, "--labels", "16", "--max-steps", "4",
                 "--eval-interval", "4", "--max-eval", "8", "--max-len", "64", "--freeze", "1"]) == 0
    out, err = capsys.readouterr()
    assert "val/entity_f1=" in out and "test/entity_f1=" in out
    assert "names on 16 labelled examples" in err and "finished at step 4" in err


def test_cli_finetune_errors_name_the_flag_and_exit_2(pretrained: tuple[RunStore, str], monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    store, run_id = pretrained
    monkeypatch.setenv("WORKBENCH_HOME", str(store.home))
    before = len(store.list_runs())
    assert main(["finetune", "--init", run_id, "--freeze", "9"]) == 2
    assert "error: freeze: cannot freeze 9 blocks: the trunk has 2" in capsys.readouterr().err
    assert main(["finetune", "--task", "csv:/no/such.csv"]) == 2
    assert "error: task: /no/such.csv: no such file" in capsys.readouterr().err
    assert main(["sweep-labels", "--init", run_id, "--arms", "pretrained,best"]) == 2
    assert "error: arms: unknown best" in capsys.readouterr().err
    assert len(store.list_runs()) == before


def test_cli_sweep_writes_the_plot_and_the_results(pretrained: tuple[RunStore, str], monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    store, run_id = pretrained
    monkeypatch.setenv("WORKBENCH_HOME", str(store.home))
    out_html, out_json = tmp_path / "curve.html", tmp_path / "rows.json"
    assert main(["sweep-labels", "--task", "genre", "--init", run_id, "--budgets", "8,all", "--arms", "frozen",
                 "--max-steps", "2", "--min-steps", "1", "--epochs", "1", "--max-eval", "8", "--max-len", "64",
                 "--out", str(out_html), "--json", str(out_json)]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out_json.read_text())
    assert [(r["arm"], r["labels"]) for r in rows] == [("frozen", 8), ("frozen", 0)]
    assert rows[1]["n_train"] == len(load_task("genre").train)
    assert "(test acc)" in out and f"figure: {out_html}" in err
    html = out_html.read_text()
    assert "majority class" in html and "<script src=" not in html  # plotly inline: opens offline
