"""Quality check: train the ``gpt-cpu`` preset on tinyshakespeare and compare with nanoGPT.

The ``gpt-cpu`` preset is nanoGPT's CPU recipe for shakespeare-char (its README)::

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 \\
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 \\
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

i.e. 4 layers, 4 heads, 128 wide, context 64, batch 12, 2000 steps, AdamW lr 1e-3 (cosine to
1e-4 after 100 warm-up steps, beta2 0.99, weight decay 0.1, grad clip 1.0), eval_iters 20,
dropout 0. nanoGPT reports a validation loss of about 1.88 for it.

This script trains through the workbench's real path (``workbench.pipeline.train``: corpus ->
char tokenizer -> model -> Trainer with the store logger, attention snapshots and checkpoints)
into a throw-away ``WORKBENCH_HOME`` (unless ``--home`` is given), on the classic
``tinyshakespeare.txt`` (validation = its last 10%, as nanoGPT's ``prepare.py``).

Like nanoGPT's train.py the preset has no biases in Linear and LayerNorm layers. One known
difference: our validation loss is the mean over 20 *fixed* batches (nanoGPT draws 20 random
ones at each evaluation), so the script also reports the best checkpoint's loss on the whole
validation split, which has no sampling noise.

The last line printed is machine-readable::

    shakespeare_char best_val_loss=<x> nanogpt_ref=1.88 steps=<n> wall_s=<t>
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch

if TYPE_CHECKING:
    from workbench.runstore import RunStore

# the team's shared folder sits beside the project root: ../shared/data/
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
NANOGPT_REF = 1.88  # nanoGPT README, CPU recipe above, val loss after 2000 iterations


@torch.no_grad()
def full_val_loss(store: RunStore, run_id: str, corpus: Path, batch_size: int = 64) -> float:
    """Mean next-token loss of the run's best checkpoint over the *whole* validation split
    (every non-overlapping context window), a less noisy figure than the 20-batch estimate."""
    import torch.nn.functional as F

    from workbench.corpora import load_corpus
    from workbench.pipeline import load_run_model

    model, tok, cfg = load_run_model(store, run_id, "best")
    _, val_text = load_corpus(str(corpus)).split(cfg.data.val_fraction)
    ids = torch.tensor(tok.encode(val_text), dtype=torch.long)
    T = cfg.seq_len
    n = (len(ids) - 1) // T
    x = ids[: n * T].view(n, T)
    y = ids[1 : n * T + 1].view(n, T)
    nll = 0.0
    for i in range(0, n, batch_size):
        logits = model(x[i : i + batch_size]).logits
        nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)), y[i : i + batch_size].reshape(-1), reduction="sum").item()
    return nll / (n * T)


def run(corpus: Path, steps: int | None = None, home: Path | None = None, seed: int | None = None) -> dict[str, Any]:
    """Train the ``gpt-cpu`` preset on ``corpus``; returns best val loss, steps, wall time, curve,
    the best checkpoint's whole-split validation loss and the median training tokens/s.

    ``home`` is the ``WORKBENCH_HOME`` the run is stored in; a temporary folder when ``None``.
    """
    with tempfile.TemporaryDirectory(prefix="wb-shakespeare-") as tmp:
        os.environ["WORKBENCH_HOME"] = str(home if home is not None else tmp)
        # imported after WORKBENCH_HOME is set, so nothing can cache the user's real home first
        from workbench.config import apply_overrides, get_preset
        from workbench.pipeline import train
        from workbench.runstore import RunStore

        overrides: dict[str, object] = {"corpus": str(corpus), "device": "cpu", "name": "bench-shakespeare-char"}
        if steps is not None:
            overrides["max_steps"] = steps
        if seed is not None:
            overrides["seed"] = seed
        cfg = apply_overrides(get_preset("gpt-cpu"), overrides)
        store = RunStore()
        t0 = time.perf_counter()
        run_id = train(cfg, store, progress=False)
        wall = time.perf_counter() - t0
        info = store.get_run(run_id)
        full_val = full_val_loss(store, run_id, corpus)
        series = store.metric_series(run_id)
        val_steps, val_losses = series.get("val/loss", ([], []))
        tok_s = series.get("tokens_per_s", ([], []))[1]
        store.close()
        if info.status != "finished":
            raise RuntimeError(f"run {run_id} ended as {info.status}: {info.error}")
        return {
            "best_val_loss": float(info.best_val_loss),
            "steps": int(info.step),
            "wall_s": wall,
            "val_curve": list(zip(val_steps, val_losses)),
            "median_train_tok_s": sorted(tok_s)[len(tok_s) // 2] if tok_s else float("nan"),
            "full_val_loss": full_val,
        }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: parse options, train via :func:`run`, print the curve and the summary line last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="tinyshakespeare.txt (or another text file)")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's 2000 steps (for a quick try)")
    parser.add_argument("--seed", type=int, default=None, help="override the preset's seed (1337), to see run-to-run spread")
    parser.add_argument("--home", type=Path, default=None, help="WORKBENCH_HOME to keep the run in (default: temp dir)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device cpu")
    from workbench.config import get_preset

    p = get_preset("gpt-cpu")
    m, t = p.model, p.train
    print(f"preset gpt-cpu: {m.n_layer}L/{m.n_head}H/{m.n_embd}, context {m.block_size}, batch {t.batch_size}, "
          f"bias={m.bias}, dropout={m.dropout}, AdamW lr {t.lr} -> {t.min_lr} (warm-up {t.warmup_steps}), "
          f"{args.steps or t.max_steps} steps, eval every {t.eval_interval} steps on {t.eval_iters} fixed val batches")
    res = run(args.data, args.steps, args.home, args.seed)
    for step, loss in res["val_curve"]:
        print(f"  step {step:5d}  val/loss {loss:.4f}")
    print(f"best checkpoint on the whole validation split (every non-overlapping window): "
          f"loss {res['full_val_loss']:.4f}")
    print(f"median training throughput {res['median_train_tok_s']:,.0f} tok/s (incl. logging, no eval)")
    print(f"shakespeare_char best_val_loss={res['best_val_loss']:.4f} nanogpt_ref={NANOGPT_REF} "
          f"steps={res['steps']} wall_s={res['wall_s']:.1f}")


if __name__ == "__main__":
    main()
