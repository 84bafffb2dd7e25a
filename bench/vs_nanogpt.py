"""Speed against nanoGPT on its own CPU recipe (issue 11): throughput and time to quality, measured
in one run on one machine, both sides' final models scored by one evaluator.

nanoGPT's CPU recipe for shakespeare-char (4L/4H/128, context 64, batch 12, 2000 steps, AdamW,
fp32: its ``train.py`` uses no autocast on a CPU) runs from ``NANOGPT_DIR`` exactly as
``bench/shakespeare_char.py`` runs it (copied to a temporary folder, the given text as its
``input.txt``, the same torch thread count). Then, through the workbench's real path
(``workbench.pipeline.train``: store logger, attention snapshots, checkpoints):

1. **Throughput**: the ``gpt-cpu`` preset (the same recipe: model, batch, schedule, steps) at each
   ``--dtypes``: median training tokens/s over its logged windows against nanoGPT's median
   iteration, and the final whole-split validation loss (same loss at equal steps?).
   ``tok_s_ratio`` is the first dtype's; the default is ``bfloat16`` where the CPU has native bf16
   dot products (AVX512-BF16 or AMX; our attention stays float32 there), then ``float32``, the
   precision nanoGPT trains in, so both figures are printed.
2. **Time to quality**: the ``fast`` preset (RoPE, QK-norm, ReLU², untied zero-init head, Muon +
   AdamW, a short schedule; ``--fast-steps`` overrides its length) at the first dtype.
   ``time_to_quality_ratio`` = its wall time (the whole ``train()`` call) over nanoGPT's
   ``train.py`` process, *if* its final whole-split loss is at or below nanoGPT's; otherwise the
   field reads ``not-reached``. Target: <= 0.6.
3. ``--ablation``: the fast preset with each ingredient put back to the classic setting, one at a
   time, at the same steps and dtype: the whole-split loss and wall time of each, so every
   ingredient's effect is measured (single runs, seed 1337: differences under ~0.02 are noise).

The evaluator is ``shakespeare_char.whole_split_loss``: mean next-token NLL over the whole
validation split (nanoGPT's ``val.bin``; our tokenizer's ids are checked identical), every token
predicted once in windows of 64, the *final* models (not the best evaluation).

Without ``NANOGPT_DIR`` it says how to get one and exits 2 (nothing is quoted in its place).
Last line::

    vs_nanogpt tok_s_ratio=<a> time_to_quality_ratio=<b> ours_val=<c> nanogpt_val=<d>

(``ours_val``: the fast preset's final whole-split loss; ``nanogpt_val``: nanoGPT's.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from shakespeare_char import check_same_tokens, run_nanogpt, run_ours, whole_split_loss
from tinyshakespeare import data_path_or_exit

FAST_INGREDIENTS: dict[str, dict[str, object]] = {
    "rope -> learned positions": {"pos_encoding": "learned"},
    "qk_norm -> off": {"qk_norm": False},
    "relu2 -> gelu": {"activation": "gelu"},
    "untied zero-init head -> tied": {"tie_weights": True, "zero_init": False},
    "muon -> adamw (lr 3e-3)": {"optimizer": "adamw"},
    "schedule -> gpt-cpu's (lr 1e-3 -> 1e-4, warm-up 100)": {"lr": 1e-3, "min_lr": 1e-4, "warmup_steps": 100},
}
"""The fast preset's ingredients, each undone on its own for the ablation (flat override names)."""


def native_bf16() -> bool:
    """Does this CPU multiply bf16 natively (AVX512-BF16 or AMX tiles)?"""
    cpu = torch.cpu
    return bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
                or getattr(cpu, "_is_amx_tile_supported", lambda: False)())


def no_nanogpt_exit() -> None:
    print("bench/vs_nanogpt.py needs a nanoGPT checkout: set NANOGPT_DIR to one, e.g.\n"
          "  git clone https://github.com/karpathy/nanoGPT /tmp/nanogpt && NANOGPT_DIR=/tmp/nanogpt "
          "python bench/vs_nanogpt.py --data tinyshakespeare.txt\n"
          "(this bench measures nanoGPT in the same run; it quotes no figure in its place)", file=sys.stderr)
    raise SystemExit(2)


def ratio_field(fast_wall: float, fast_val: float, nano_wall: float, nano_val: float) -> str:
    """``time_to_quality_ratio``: fast's wall over nanoGPT's when fast reached nanoGPT's loss.

    >>> ratio_field(50.0, 1.80, 125.0, 1.90), ratio_field(50.0, 1.95, 125.0, 1.90)
    ('0.400', 'not-reached')
    """
    return f"{fast_wall / nano_wall:.3f}" if fast_val <= nano_val else "not-reached"


def score(run: dict[str, Any], val_ids: torch.Tensor) -> float:
    model = run["model"]
    return whole_split_loss(lambda x: model(x).logits, val_ids)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="tinyshakespeare.txt (required)")
    parser.add_argument("--steps", type=int, default=2000, help="nanoGPT's and gpt-cpu's steps (the recipe's 2000)")
    parser.add_argument("--fast-steps", type=int, default=None, help="the fast preset's steps (default: the preset's)")
    parser.add_argument("--dtypes", default=None,
                        help="our dtypes for the throughput runs, comma-separated; the first also trains the fast "
                             "preset (default: bfloat16,float32 on a CPU with native bf16, else float32)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads, both sides (0 = torch's default)")
    parser.add_argument("--ablation", action="store_true", help="also train the fast preset minus each ingredient")
    parser.add_argument("--home", type=Path, default=None, help="WORKBENCH_HOME to keep our runs in (default: temp)")
    args = parser.parse_args(argv)
    data = data_path_or_exit(args.data, "bench/vs_nanogpt.py")
    if not os.environ.get("NANOGPT_DIR"):
        no_nanogpt_exit()
    nanogpt_dir = Path(os.environ["NANOGPT_DIR"]).expanduser()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    dtypes = (args.dtypes or ("bfloat16,float32" if native_bf16() else "float32")).split(",")
    print(f"torch {torch.__version__}, {threads} threads (both sides), CPU native bf16: {native_bf16()}, "
          f"our dtypes {dtypes}, data {data}", flush=True)

    with tempfile.TemporaryDirectory(prefix="wb-vs-nanogpt-") as tmp:
        home = args.home or Path(tmp) / "home"
        nano = run_nanogpt(nanogpt_dir, data, args.steps, threads, Path(tmp) / "nanogpt")
        val_ids = nano["val_ids"]
        nano_val = whole_split_loss(lambda x: nano["model"](x, x)[0], val_ids)
        print(f"nanoGPT  {nano['iter_num']} steps fp32: train.py {nano['wall_s']:.1f} s, median "
              f"{nano['median_train_tok_s']:,.0f} tok/s, whole-split val {nano_val:.4f}", flush=True)

        classic: dict[str, dict[str, Any]] = {}
        for dtype in dtypes:
            run = run_ours(data, args.steps, home, preset="gpt-cpu", overrides={"dtype": dtype},
                           name=f"vs-nanogpt gpt-cpu {dtype}")
            check_same_tokens(run["tokenizer"], run["val_text"], nano["meta"], val_ids)
            run["val"] = score(run, val_ids)
            classic[dtype] = run
            print(f"gpt-cpu  {run['steps']} steps {dtype}: train() {run['wall_s']:.1f} s, median "
                  f"{run['median_train_tok_s']:,.0f} tok/s ({run['median_train_tok_s'] / nano['median_train_tok_s']:.2f}x "
                  f"nanoGPT's), whole-split val {run['val']:.4f} ({run['val'] - nano_val:+.4f})", flush=True)

        dtype = dtypes[0]
        fast = run_ours(data, args.fast_steps, home, preset="fast", overrides={"dtype": dtype},
                        name=f"vs-nanogpt fast {dtype}")
        fast["val"] = score(fast, val_ids)
        ttq = ratio_field(fast["wall_s"], fast["val"], nano["wall_s"], nano_val)
        print(f"fast     {fast['steps']} steps {dtype}: train() {fast['wall_s']:.1f} s "
              f"({fast['wall_s'] / nano['wall_s']:.2f}x nanoGPT's wall), median {fast['median_train_tok_s']:,.0f} tok/s, "
              f"whole-split val {fast['val']:.4f} ({fast['val'] - nano_val:+.4f}): "
              f"{'reaches' if ttq != 'not-reached' else 'does NOT reach'} nanoGPT's {args.steps}-step loss", flush=True)

        if args.ablation:
            print(f"\nablation: the fast preset ({fast['steps']} steps, {dtype}) with one ingredient undone")
            print(f"  {'variant':55s} {'val':>7s} {'vs fast':>8s} {'wall s':>7s}")
            print(f"  {'fast (all ingredients)':55s} {fast['val']:7.4f} {0:+8.4f} {fast['wall_s']:7.1f}")
            for label, change in FAST_INGREDIENTS.items():
                run = run_ours(data, fast["steps"], home, preset="fast", overrides={"dtype": dtype, **change},
                               name=f"vs-nanogpt fast minus {label}")
                val = score(run, val_ids)
                print(f"  {label:55s} {val:7.4f} {val - fast['val']:+8.4f} {run['wall_s']:7.1f}", flush=True)
            run = run_ours(data, fast["steps"], home, preset="gpt-cpu", overrides={"dtype": dtype},
                           name="vs-nanogpt gpt-cpu at the fast steps")
            val = score(run, val_ids)
            print(f"  {'none (gpt-cpu at these steps)':55s} {val:7.4f} {val - fast['val']:+8.4f} {run['wall_s']:7.1f}")

    first = classic[dtypes[0]]
    print(f"vs_nanogpt tok_s_ratio={first['median_train_tok_s'] / nano['median_train_tok_s']:.3f} "
          f"time_to_quality_ratio={ttq} ours_val={fast['val']:.4f} nanogpt_val={nano_val:.4f}")


if __name__ == "__main__":
    main()
