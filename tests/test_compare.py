"""`python -m workbench compare`: the standard set trained under one budget each, a table and an
offline figure; bad requests refused before anything trains."""

from __future__ import annotations

import re

import pytest

from workbench.__main__ import main
from workbench.compare import compare_figure, compare_table, standard_configs, summarize
from workbench.runstore import RunStore


def test_compare_trains_the_standard_set_and_writes_a_table_and_an_offline_figure(wb_home, tmp_path, capsys) -> None:
    out = tmp_path / "cmp.html"
    assert main(["compare", "--size", "nano", "--budget-s", "1", "--eval-chars", "2048", "--out", str(out)]) == 0
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0].split()[:3] == ["model", "objective", "predicts"]
    body = table[1:]
    assert len(body) == 4
    assert {line.split()[0] for line in body} == {"ngram", "lstm", "gpt", "bert"}
    assert any("masked token" in line and line.startswith("bert") for line in body)
    assert sum("next token" in line for line in body) == 3
    bpcs = [float(line.split()[-1]) for line in body]
    assert bpcs == sorted(bpcs)  # best first

    store = RunStore()
    runs = store.list_runs()
    assert len(runs) == 4 and all(r.status == "finished" for r in runs)
    for r in runs:
        row = summarize(store, r.id)
        assert row.curve["step"][0] == 0 and row.curve["seconds"][0] == 0.0
        assert row.wall_s < 60  # the 1 s budget ended each run at its next step or evaluation

    html = out.read_text(encoding="utf-8")
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined: opens offline
    assert "masked token" in html and "next token" in html


def test_the_budget_ends_a_long_run_early_with_a_final_evaluation(wb_home) -> None:
    from workbench.pipeline import train

    (cfg,) = standard_configs(budget_s=0.5, size="nano", models=["gpt"],
                              overrides={"max_steps": 100_000, "eval_interval": 100_000, "eval_chars": 2048}).values()
    store = RunStore()
    run_id = train(cfg, store)
    info = store.get_run(run_id)
    assert info.status == "finished" and 0 < info.step < 100_000
    steps = store.metric_series(run_id)["val/loss"][0]
    assert steps == [0, info.step]  # evaluated at the start and where the budget ended it


def test_the_steps_are_fitted_to_the_budget_keeping_the_presets_proportions() -> None:
    from workbench.compare import fit_to_budget

    cfgs = standard_configs(budget_s=3, size="nano", models=["gpt", "ngram"], overrides={"eval_chars": 2048})
    gpt = fit_to_budget(cfgs["gpt"], 3.0)
    preset = cfgs["gpt"].train
    t = gpt.train
    assert t.max_steps != preset.max_steps and t.max_time_s == 3.0  # the budget stays the hard stop
    assert t.max_steps // t.eval_interval == preset.max_steps // preset.eval_interval  # as many evaluations
    assert t.warmup_steps == round(preset.warmup_steps * t.max_steps / preset.max_steps)
    assert gpt.model == cfgs["gpt"].model and gpt.objective == cfgs["gpt"].objective
    assert fit_to_budget(cfgs["ngram"], 3.0) is cfgs["ngram"]  # counting reads its split: nothing to fit


@pytest.mark.parametrize("argv,field", [
    (["--models", "gpt,rnn"], "models"),
    (["--budget-s", "0"], "budget_s"),
    (["--out", "figure.png"], "--out"),
    (["--corpus", "no/such/file.txt"], "corpus"),
])
def test_bad_requests_are_refused_before_anything_trains(wb_home, tmp_path, capsys, argv, field) -> None:
    argv = [a.replace("figure.png", str(tmp_path / "figure.png")) for a in argv]
    assert main(["compare", "--size", "nano", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and field in err
    assert RunStore().list_runs() == []


def test_table_and_figure_label_what_each_model_predicts() -> None:
    from workbench.compare import CompareRow

    rows = [CompareRow("gpt", "r1", "gpt 2L", "causal_lm", "char", 1000, 10, 20, 64, 3.0, 2.0, 2.9, "finished",
                       {"step": [0, 10], "seconds": [0.0, 3.0], "bpc": [6.0, 2.9]}),
            CompareRow("bert", "r2", "bert 2L", "mlm", "char", 1000, 10, 20, 64, 3.0, 1.5, 2.1, "finished",
                       {"step": [0, 10], "seconds": [0.0, 3.0], "bpc": [6.0, 2.1]})]
    table = compare_table(rows)
    assert re.search(r"^bert 2L\s+mlm\s+masked token", table.splitlines()[1])  # best bpc first
    fig = compare_figure(rows)
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["gpt 2L · next token", "bert 2L · masked token"]
    assert list(fig.data[3].x) == [640] and list(fig.data[3].y) == [2.1]  # tokens seen = steps x 64; no 0 on a log axis
