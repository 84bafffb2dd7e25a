"""Shared fixtures. Every test gets its own ``$WORKBENCH_HOME`` so nothing touches ~/.workbench."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from workbench.config import RunConfig
from workbench.overrides import apply_overrides
from workbench.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]

# Built artefacts (the Shakespeare text) are cached per test session, not in the user's cache.
os.environ.setdefault("WORKBENCH_CACHE", str(ROOT / ".pytest_cache" / "workbench-cache"))

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers on two cores: one torch thread each, not two
    import torch

    torch.set_num_threads(1)


# The slowest files first, longest first (measured with --durations on a 2-core runner). Under
# `--dist loadfile` a file runs whole on one worker, and xdist by default queues files by their
# number of tests, so these few-but-long files used to start last and run alone at the end. The
# Makefile passes --no-loadscope-reorder so this order is the queue's.
SLOW_FILES = ("test_notebooks.py", "test_browser.py", "test_bench.py", "test_browser_seq2seq.py",
              "test_browser_tokenizers.py", "test_distributed.py", "test_browser_attention_views.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: files keep their own order


@pytest.fixture(autouse=True)
def wb_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty workbench home for each test (runs, store)."""
    home = tmp_path / "wb_home"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    return home


@pytest.fixture
def tiny_cfg() -> Callable[..., RunConfig]:
    """gpt-nano shrunk to run in about a second; keyword overrides use flat field names."""

    def make(**overrides) -> RunConfig:
        base = {"max_steps": 30, "eval_interval": 10, "eval_chars": 2048, "log_interval": 5, "batch_size": 8,
                "warmup_steps": 5, "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}
        return apply_overrides(get_preset("gpt-nano"), {**base, **overrides})

    return make


@pytest.fixture
def small_text_file(tmp_path: Path) -> Path:
    """A user corpus: ~30 kB of text with a small alphabet."""
    text = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog" for i in range(600))
    path = tmp_path / "small.txt"
    path.write_text(text, encoding="utf-8")
    return path


TINY_BERT = {"arch": "bert", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 64}
"""A trunk for fine-tuning tests: trains and fine-tunes in seconds."""
TINY_TRAIN = {"max_steps": 8, "batch_size": 8, "eval_interval": 8, "log_interval": 4, "lr": 3e-3, "warmup_steps": 2,
              "device": "cpu"}


@pytest.fixture(scope="module")
def pretrained_bert(tmp_path_factory: pytest.TempPathFactory):
    """(store, run id) of a tiny BERT pretrained with masked LM for a few steps: a run to fine-tune from."""
    from workbench.pipeline import train
    from workbench.runstore import RunStore

    store = RunStore(tmp_path_factory.mktemp("pretrained") / "home")
    cfg = RunConfig.from_dict({"model": TINY_BERT, "objective": {"name": "mlm"}, "tokenizer": {"kind": "char"},
                               "data": {"eval_chars": 1024}, "train": {**TINY_TRAIN, "max_steps": 6, "eval_interval": 6}})
    return store, train(cfg, store, progress=False)
