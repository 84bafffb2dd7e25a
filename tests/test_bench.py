"""The benchmark scripts run (a few steps, no timing asserted: speed targets live in bench/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_throughput_script_prints_its_machine_readable_line() -> None:
    res = subprocess.run(
        [sys.executable, "bench/throughput.py", "--rounds", "2", "--steps", "3", "--warmup", "1", "--block", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1].split()
    assert last[0] == "throughput"
    fields = dict(kv.split("=") for kv in last[1:])
    assert set(fields) == {"workbench_tok_s", "hf_gpt2_tok_s", "ratio"}
    ours, theirs, ratio = (float(fields[k]) for k in ("workbench_tok_s", "hf_gpt2_tok_s", "ratio"))
    assert ours > 0 and theirs > 0 and abs(ratio - ours / theirs) < 0.01


def test_shakespeare_char_script_trains_through_the_package(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "bench/shakespeare_char.py", "--steps", "20", "--home", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    last = res.stdout.strip().splitlines()[-1]
    assert last.startswith("shakespeare_char best_val_loss=") and "steps=20" in last
