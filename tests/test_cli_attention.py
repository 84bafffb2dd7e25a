"""``python -m workbench attention``: head labels of a run's snapshot, of the run on a text, or of a
pretrained model; one view written as offline HTML or PNG; mistakes exit 2 naming the flag."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workbench.__main__ import main
from workbench.attention import AttentionMaps
from workbench.head_stats import label_heads
from workbench.overrides import apply_overrides
from workbench.pipeline import attention_snapshots, train
from workbench.presets import get_preset
from workbench.runstore import RunStore

TINY = {"max_steps": 20, "eval_interval": 10, "eval_chars": 4096, "batch_size": 8, "log_interval": 5}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("cli-attn")
    return home, train(apply_overrides(get_preset("gpt-nano"), TINY), RunStore(home))


@pytest.fixture
def wb(trained, monkeypatch) -> tuple[Path, str]:
    monkeypatch.setenv("WORKBENCH_HOME", str(trained[0]))
    return trained


def _rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "head"]) + 1
    return [line.split() for line in lines[start:] if line.split() and line.split()[0].isdigit()]


def test_labels_of_the_latest_snapshot_match_the_package(wb, capsys) -> None:
    home, run_id = wb
    assert main(["attention", "--run", run_id]) == 0
    out = capsys.readouterr().out
    latest = AttentionMaps.load(attention_snapshots(RunStore(home), run_id)[-1][1])
    expected = label_heads(latest).table()
    rows = _rows(out)
    assert [(int(r[0]), int(r[1]), r[2]) for r in rows] == [(e["layer"], e["head"], e["label"]) for e in expected]
    assert f"at step {latest.step}" in out


@pytest.mark.parametrize("view", ["heatmap", "model", "head", "mask", "time", "labels"])
def test_every_view_exports_to_an_offline_html_file(wb, tmp_path, view, capsys) -> None:
    _, run_id = wb
    out = tmp_path / "views" / f"{view}.html"
    assert main(["attention", "--run", run_id, "--view", view, "--layer", "1", "--head", "1", "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert len(html) > 10_000 and not re.search(r"<script[^>]*\ssrc=", html), "every script is inline"
    assert f"wrote the {view} view" in capsys.readouterr().out


def test_a_text_on_the_runs_checkpoint_and_induction_scores(wb, capsys) -> None:
    _, run_id = wb
    assert main(["attention", "--run", run_id, "--text", "To be, or not", "--induction"]) == 0
    out = capsys.readouterr().out
    assert "13 tokens" in out  # a character tokenizer: one token per character
    assert len(_rows(out)) == get_preset("gpt-nano").model.n_layer * get_preset("gpt-nano").model.n_head


@pytest.mark.parametrize("args, flag", [
    (["--run", "nope"], "--run"),
    (["--run", "{run}", "--step", "7"], "--step"),
    (["--run", "{run}", "--kind", "cross"], "--kind"),
    (["--run", "{run}", "--layer", "9", "--out", "x.html"], "--layer"),
    (["--run", "{run}", "--out", "x.txt"], "--out"),
    (["--run", "{run}", "--text", "   "], "empty"),
    (["--hf", "all-MiniLM-L6-v2"], "--text"),
])
def test_mistakes_exit_2_naming_what_to_change(wb, tmp_path, monkeypatch, capsys, args, flag) -> None:
    _, run_id = wb
    monkeypatch.chdir(tmp_path)
    assert main(["attention", *[a.replace("{run}", run_id) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and flag in err
    assert not list(tmp_path.iterdir()), "a refused command writes nothing"


def test_a_pretrained_model_offline_with_a_png_of_its_head_view(wb, tmp_path, capsys) -> None:
    png = tmp_path / "minilm.png"
    assert main(["attention", "--hf", "all-MiniLM-L6-v2", "--text", "The cat sat on the mat.", "--view", "head",
                 "--layer", "2", "--out", str(png), "--induction"]) == 0
    out = capsys.readouterr().out
    assert "hf:all-MiniLM-L6-v2: 6 layers x 12 heads, 9 tokens" in out and len(_rows(out)) == 72
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(data[16:20], "big") > 100  # width
