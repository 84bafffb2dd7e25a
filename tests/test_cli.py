"""The CLI as a user types it: python -m workbench ..."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.overrides import apply_overrides
from workbench.presets import get_preset
from workbench.runstore import RunStore

TINY = ["--preset", "gpt-nano", "--max-steps", "20", "--eval-interval", "10", "--eval-chars", "2048",
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


def test_help_lists_every_config_field_grouped_by_section() -> None:
    from workbench.overrides import bare_names, config_fields
    from workbench.presets import get_preset

    res = subprocess.run([sys.executable, "-m", "workbench", "train", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    cfg = get_preset("gpt-nano")
    for qualified in config_fields(cfg):
        if qualified not in ("model.arch", "objective.name"):
            assert "--" + qualified.replace("_", "-") in res.stdout  # --model.n-layer always works
    for bare in bare_names(cfg):
        assert "--" + bare.replace("_", "-") in res.stdout  # --n-layer where the name is unique
    text = res.stdout
    body = text[text.index("options:"):]
    model, data, train = (body.index(h) for h in ("\nmodel (arch gpt):", "\ndata:", "\ntrain:"))
    assert model < body.index("--n-layer") < data < body.index("--corpus") < train < body.index("--lr")
    from workbench.models import FAMILIES
    from workbench.objectives import OBJECTIVES

    assert "--arch {" + ",".join(FAMILIES) + "}" in text and "--objective {" + ",".join(OBJECTIVES) + "}" in text


def test_qualified_flags_work_like_bare_ones(wb_home: Path) -> None:
    res = cli("train", *TINY, "--model.n-layer", "1", "--train.lr", "0.002", "--data.eval-chars", "1024", home=wb_home)
    assert res.returncode == 0, res.stderr
    (run,) = RunStore(wb_home).list_runs()
    assert run.config["model"]["n_layer"] == 1 and run.config["train"]["lr"] == 0.002
    assert run.config["data"]["eval_chars"] == 1024 and run.config["objective"] == {"name": "causal_lm"}


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


def test_a_diverging_run_fails_cleanly_without_a_traceback(wb_home: Path) -> None:
    """A NaN used to reach the store (IntegrityError on metrics.value NOT NULL) and a traceback."""
    res = cli("train", *TINY, "--lr", "1000", "--warmup-steps", "0", "--log-interval", "5", home=wb_home)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and res.stderr.startswith("error: training diverged")
    assert "lower lr (now 1000" in res.stderr
    (run,) = RunStore(wb_home).list_runs()
    assert run.status == "failed" and "diverged" in run.error
    assert not any(math.isnan(v) for _, _, v, _ in RunStore(wb_home).metrics(run.id))
    ckpt = RunStore(wb_home).run_dir(run.id) / "ckpt"
    assert not (ckpt / "last.safetensors").exists()  # nothing trained was good enough to keep


def test_resume_extends_a_run_and_refuses_what_cannot_change(wb_home: Path, small_text_file: Path) -> None:
    res = cli("train", *TINY, "--corpus", str(small_text_file), home=wb_home)
    assert res.returncode == 0, res.stderr
    store = RunStore(wb_home)
    (run,) = store.list_runs()
    assert run.step == 20

    same = cli("train", "--resume", run.id, "--no-progress", home=wb_home)  # nothing left to do
    assert same.returncode == 2 and "already at step 20 of 20" in same.stderr and "--max-steps" in same.stderr

    fixed = cli("train", "--resume", run.id, "--max-steps", "30", "--n-embd", "64", home=wb_home)
    assert fixed.returncode == 2 and fixed.stderr.startswith("error: n_embd: cannot change when resuming")
    assert store.get_run(run.id).step == 20 and store.get_run(run.id).status == "finished"

    more = cli("train", "--resume", run.id, "--max-steps", "30", "--no-progress", home=wb_home)
    assert more.returncode == 0, more.stderr
    info = store.get_run(run.id)
    assert (info.status, info.step, info.max_steps) == ("finished", 30, 30)
    assert store.metric_series(run.id)["val/loss"][0] == [0, 10, 20, 30]

    small_text_file.write_text(small_text_file.read_text() + "\nan extra line", encoding="utf-8")
    changed = cli("train", "--resume", run.id, "--max-steps", "40", home=wb_home)
    assert changed.returncode == 2 and "has changed since run" in changed.stderr
    assert store.get_run(run.id).step == 30


def test_resume_without_a_checkpoint_says_so(wb_home: Path) -> None:
    store = RunStore(wb_home)
    run_id = store.create_run(apply_overrides(get_preset("gpt-nano"), {"max_steps": 20}).to_dict())
    store.update_run(run_id, status="failed", error="crashed before its first evaluation")
    res = cli("train", "--resume", run_id, "--max-steps", "40", home=wb_home)
    assert res.returncode == 2 and "has no checkpoint to resume from" in res.stderr
    assert store.get_run(run_id).status == "failed"


def test_a_killed_cli_run_is_reported_dead(wb_home: Path) -> None:
    """Runs started from a terminal record their pid too: after kill -9 they do not stay 'running'."""
    env = {**os.environ, "WORKBENCH_HOME": str(wb_home)}
    proc = subprocess.Popen([sys.executable, "-m", "workbench", "train", *TINY, "--max-steps", "100000"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = RunStore(wb_home)
    deadline = time.monotonic() + 120
    while not (runs := store.list_runs()) or runs[0].step < 5:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    assert runs[0].pid == proc.pid and runs[0].status == "running"
    proc.kill()
    proc.wait()
    table = cli("runs", home=wb_home)
    assert "failed" in table.stdout and "died" in table.stdout
    info = store.get_run(runs[0].id)
    assert info.status == "failed" and f"pid {proc.pid}" in info.error


def test_delete_asks_and_removes_the_run(home_with_run, wb_home: Path) -> None:
    res = cli("train", *TINY, home=wb_home)
    assert res.returncode == 0
    store = RunStore(wb_home)
    (run,) = store.list_runs()
    env = {**os.environ, "WORKBENCH_HOME": str(wb_home)}
    no = subprocess.run([sys.executable, "-m", "workbench", "delete", "--run", run.id], input="n\n",
                        capture_output=True, text=True, env=env)
    assert no.returncode == 1 and store.list_runs() and store.run_dir(run.id).exists()
    yes = cli("delete", "--run", run.id, "--yes", home=wb_home)
    assert yes.returncode == 0
    assert store.list_runs() == [] and not store.run_dir(run.id).exists() and store.metrics(run.id) == []


# --- tokenizers -----------------------------------------------------------------------------------

def test_tokenizers_train_keep_use_and_delete(tmp_path: Path, small_text_file: Path) -> None:
    home = tmp_path / "home"
    res = cli("tokenizers", "train", "--kind", "wordpiece", "--vocab-size", "120", "--corpus", str(small_text_file),
              "--save", "wp", "--text", "the cat", home=home)
    assert res.returncode == 0, res.stderr
    assert "characters per token" in res.stdout and "[UNK] rate" in res.stdout and "kept as 'wp'" in res.stdout
    assert (home / "tokenizers" / "wp" / "hf" / "tokenizer.json").is_file()
    listed = cli("tokenizers", "list", home=home)
    assert "wp" in listed.stdout and "wordpiece" in listed.stdout
    shown = cli("tokenizers", "show", "wp", "--text", "hello there", home=home)
    assert shown.returncode == 0 and "tokens for 11 characters" in shown.stdout

    run = cli("train", *TINY, "--max-steps", "2", "--eval-interval", "2", "--corpus", str(small_text_file),
              "--tokenizer", "saved", "--saved-name", "wp", home=home)
    assert run.returncode == 0, run.stderr
    (info,) = RunStore(home).list_runs()
    assert info.config["tokenizer"]["saved_name"] == "wp" and "saved:wp" in cli("runs", home=home).stdout

    assert cli("tokenizers", "delete", "wp", home=home).returncode == 0
    assert "no kept tokenizers" in cli("tokenizers", "list", home=home).stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["train", "--kind", "bpe", "--vocab-size", "100"], "vocab_size: bpe needs a vocab_size between 261"),
        (["train", "--kind", "unigram", "--min-freq", "3"], "--min-freq does not apply to unigram"),
        (["train", "--kind", "char", "--save", "../escape"], "tokenizer name '../escape' is not allowed"),
        (["train", "--kind", "char", "--corpus", "BINARY"], "not UTF-8"),
        (["train", "--kind", "char", "--corpus", "EMPTY"], "empty"),
        (["train", "--kind", "pretrained", "--pretrained", "no-such-org/no-such-tok"], "cannot load pretrained tokenizer"),
        (["show", "nope"], "no kept tokenizer named 'nope'"),
    ],
)
def test_tokenizers_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    home = tmp_path / "home"
    (tmp_path / "bin.txt").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "empty.txt").write_text("")
    args = [str(tmp_path / "bin.txt") if a == "BINARY" else str(tmp_path / "empty.txt") if a == "EMPTY" else a for a in args]
    env_offline = {"HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-m", "workbench", "tokenizers", *args], capture_output=True, text=True,
                         env={**os.environ, "WORKBENCH_HOME": str(home), **env_offline}, timeout=300)
    assert res.returncode == 2 and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert not (home / "tokenizers").exists() or not any((home / "tokenizers").iterdir())
