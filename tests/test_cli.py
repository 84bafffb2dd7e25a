"""The CLI as a user types it: python -m workbench ..."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.runstore import RunStore

TINY = ["--preset", "gpt-nano", "--max-steps", "20", "--eval-interval", "10", "--eval-iters", "2",
        "--n-embd", "32", "--block-size", "32", "--batch-size", "8", "--no-progress"]


def cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def home_with_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One finished run, shared by the tests of this module (they must not change it)."""
    home = tmp_path_factory.mktemp("cli_home")
    res = cli("train", *TINY, "--name", "keeper", home=home)
    assert res.returncode == 0, res.stderr
    (run,) = RunStore(home).list_runs()
    return home, run.id


def test_train_runs_sample(home_with_run) -> None:
    home, run_id = home_with_run
    store = RunStore(home)
    info = store.get_run(run_id)
    assert info.status == "finished" and info.step == 20 and info.best_val_loss is not None
    cfg = json.loads((store.run_dir(run_id) / "config.json").read_text())
    assert cfg["model"]["n_embd"] == 32 and cfg["train"]["max_steps"] == 20  # flags override the preset

    table = cli("runs", home=home)
    assert table.returncode == 0
    assert run_id in table.stdout and "finished" in table.stdout and "keeper" in table.stdout

    out = cli("sample", "--run", run_id, "--prompt", "KING", "--max-new-tokens", "40", "--seed", "1", home=home)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("KING") and len(out.stdout.strip()) >= 40
    again = cli("sample", "--run", run_id, "--prompt", "KING", "--max-new-tokens", "40", "--seed", "1", home=home)
    assert again.stdout == out.stdout  # seeded sampling is reproducible


def test_help_lists_every_config_field() -> None:
    from workbench.config import flat_fields

    res = subprocess.run([sys.executable, "-m", "workbench", "train", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for name in flat_fields():
        assert "--" + name.replace("_", "-") in res.stdout


BAD_INPUTS = [
    (["--n-embd", "65", "--n-head", "2"], "n_embd"),
    (["--seq-len", "128", "--block-size", "64"], "block_size=64"),
    (["--block-size", "100000"], "block_size"),
    (["--lr", "0"], "lr"),
    (["--lr=-1e-3"], "lr"),
    (["--max-steps", "0"], "max_steps"),
    (["--max-steps=-5"], "max_steps"),
    (["--corpus", "/definitely/missing.txt"], "does not exist"),
    (["--preset", "gpt-huge"], "unknown preset"),
]


@pytest.mark.parametrize("args,expected", BAD_INPUTS)
def test_bad_input_exits_nonzero_with_a_clear_message_and_touches_nothing(home_with_run, args, expected) -> None:
    home, run_id = home_with_run
    store = RunStore(home)
    before = (store.list_runs(), store.metrics(run_id))
    res = cli("train", *TINY, *args, home=home)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert expected in res.stderr and res.stderr.startswith("error:")
    assert (store.list_runs(), store.metrics(run_id)) == before


@pytest.mark.parametrize("content,expected", [(b"", "is empty"), (b"\xff\xfeLatin-1 \xe9t\xe9", "not UTF-8")])
def test_bad_corpus_files(wb_home: Path, tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "corpus.txt"
    path.write_bytes(content)
    res = cli("train", *TINY, "--corpus", str(path), home=wb_home)
    assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr
    assert RunStore(wb_home).list_runs() == []


def test_unknown_run_id(wb_home: Path) -> None:
    for args in (["sample", "--run", "nope"], ["stop", "--run", "nope"]):
        res = cli(*args, home=wb_home)
        assert res.returncode == 2
        assert "unknown run id 'nope'" in res.stderr and "Traceback" not in res.stderr


def test_user_text_file_and_bpe(wb_home: Path, small_text_file: Path) -> None:
    res = cli("train", *TINY, "--corpus", str(small_text_file), "--tokenizer", "bpe", "--vocab-size", "300", home=wb_home)
    assert res.returncode == 0, res.stderr
    (run,) = RunStore(wb_home).list_runs()
    assert run.status == "finished"
    assert run.best_val_loss < 5.0


def test_too_short_corpus_says_what_to_change(wb_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_text("To be, or not to be.", encoding="utf-8")
    res = cli("train", *TINY, "--corpus", str(path), home=wb_home)
    assert res.returncode == 2 and "too short" in res.stderr and "Traceback" not in res.stderr
