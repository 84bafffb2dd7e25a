"""Quality check: train the ``gpt-cpu`` preset on tiny-shakespeare and nanoGPT's CPU recipe in the same run.

The ``gpt-cpu`` preset is nanoGPT's CPU recipe for shakespeare-char (its README)::

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20 \\
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 \\
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

i.e. 4 layers, 4 heads, 128 wide, context 64, batch 12, 2000 steps, AdamW lr 1e-3 (cosine to
1e-4 after 100 warm-up steps, beta2 0.99, weight decay 0.1, grad clip 1.0), no biases, dropout 0.

Ours trains through the workbench's real path (``workbench.pipeline.train``: corpus -> char
tokenizer -> model -> Trainer with the store logger, attention snapshots and checkpoints) into a
throw-away ``WORKBENCH_HOME`` (unless ``--home`` is given), on the given file, validation = its
last 10% (cut at nanoGPT's ``int(n * 0.9)``).

nanoGPT, when ``NANOGPT_DIR`` names a nanoGPT checkout: its ``train.py``, ``model.py``,
``configurator.py``, ``config/`` and ``data/shakespeare_char/prepare.py`` are copied into a
temporary folder (the checkout is never written to), the given file is put there as
``input.txt`` (so ``prepare.py`` downloads nothing), ``prepare.py`` and then ``train.py`` with the
recipe above (plus ``--out_dir`` in the temporary folder and ``--always_save_checkpoint=True``, so
``ckpt.pt`` holds the *final* step, not the best evaluation) run in subprocesses with the same
number of torch threads as ours (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``). nanoGPT's loop evaluates
and saves at ``iter_num == max_iters`` *before* its one extra, unsaved step, so its checkpoint is
the model after exactly ``max_iters`` optimizer steps, like ours.

One evaluator scores both final models (ours: ``ckpt/last.safetensors``; nanoGPT: ``ckpt.pt``,
loaded with ``weights_only=True`` into its own ``model.py`` GPT): :func:`whole_split_loss`, the
mean next-token NLL over the *whole* validation split (every non-overlapping window of 64, every
token but the first predicted once), on the same token ids (nanoGPT's ``val.bin``; the script
checks that our tokenizer's vocabulary and encoding of the validation text are identical). This
is the final step's loss, not the minimum over evaluations, and has no sampling noise (nanoGPT's
own printed figure is the mean of 20 random batches).

Without ``NANOGPT_DIR`` only ours is trained and scored; nanoGPT's README figure (1.88, "a loss of
only 1.88" for this recipe, on its own 20-batch estimate) is printed labelled ``published``: it
is not a measurement of this run.

Wall times: ours is the ``train()`` call (corpus loading, tokenization, training, evaluations,
checkpoints); nanoGPT's is its ``train.py`` process from start to end (its ``prepare.py`` is
timed separately). Training tokens/s: the median over each side's logged windows/iterations.

``--data`` is required: nanoGPT's ``data/shakespeare_char/prepare.py`` downloads the file from
https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt

The last line printed is machine-readable; with ``NANOGPT_DIR``::

    shakespeare_char ours_final_val=<x> nanogpt_final_val=<y> ours_wall_s=<t> nanogpt_wall_s=<t> steps=<n>

and without it (nanoGPT not run; its README figure, labelled)::

    shakespeare_char ours_final_val=<x> nanogpt_final_val=published:1.88 ours_wall_s=<t> nanogpt_wall_s=- steps=<n>
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from finished_run import train_finished  # bench/finished_run.py (beside this script)
from tinyshakespeare import URL, data_path_or_exit  # bench/tinyshakespeare.py (beside this script)
import torch.nn.functional as F

NANOGPT_PUBLISHED = 1.88
"""nanoGPT README, CPU recipe above, "a loss of only 1.88" after 2000 iterations (its 20-batch estimate).
Printed labelled ``published``, never as a measurement of this run."""
EVAL_T = 64
"""Window of the whole-split evaluator: the recipe's context."""
NANOGPT_RECIPE = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1", "--block_size=64",
                  "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0"]
"""nanoGPT README's CPU recipe, less ``--max_iters``/``--lr_decay_iters`` (set from ``--steps``)."""
NANOGPT_FILES = ["train.py", "model.py", "configurator.py", "config", "data/shakespeare_char/prepare.py"]


# --- the one evaluator ----------------------------------------------------------------------------

@torch.no_grad()
def whole_split_loss(logits_fn: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor, T: int = EVAL_T,
                     batch_size: int = 64) -> float:
    """Mean next-token NLL of ``logits_fn`` over all of ``ids``: every non-overlapping window of
    ``T`` predictions (each window's context starts afresh; the last one may be shorter), so every
    token but the first is predicted exactly once.

    ``logits_fn(x: LongTensor (B, t)) -> (B, t, V)`` logits for every position.

    >>> ids = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    >>> round(whole_split_loss(lambda x: torch.zeros(*x.shape, 4), ids, T=4), 4)  # uniform over 4: log 4
    1.3863
    """
    ids = ids.long()
    n_pred = len(ids) - 1
    if n_pred < 1:
        raise ValueError("need at least two tokens to score")
    n_full = n_pred // T
    nll = 0.0
    if n_full:
        x = ids[: n_full * T].view(n_full, T)
        y = ids[1 : n_full * T + 1].view(n_full, T)
        for i in range(0, n_full, batch_size):
            logits = logits_fn(x[i : i + batch_size])
            nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y[i : i + batch_size].reshape(-1),
                                   reduction="sum").item()
    rest = n_pred - n_full * T
    if rest:
        x = ids[n_full * T : n_pred].view(1, rest)
        y = ids[n_full * T + 1 :].view(1, rest)
        logits = logits_fn(x)
        nll += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), reduction="sum").item()
    return nll / n_pred


# --- ours -----------------------------------------------------------------------------------------

def run_ours(corpus: Path, steps: int | None, home: Path, seed: int | None = None, preset: str = "gpt-cpu",
             overrides: dict[str, object] | None = None, name: str = "bench-shakespeare-char") -> dict[str, Any]:
    """Train ``preset`` (default ``gpt-cpu``; plus ``overrides``, flat field names) on ``corpus``
    into the store at ``home``.

    Returns the final (``last``) model, its tokenizer, the validation text, the trainer's own
    evaluations, steps, the wall time of the ``train()`` call and the median training tokens/s.
    """
    from workbench import apply_overrides, get_preset
    from workbench.corpora import load_corpus

    # unk=False: nanoGPT's vocabulary exactly (the sorted characters, no [UNK]), checked below
    changes: dict[str, object] = {"corpus": str(corpus), "device": "cpu", "name": name, "unk": False,
                                  **(overrides or {})}
    if steps is not None:
        changes["max_steps"] = steps
    if seed is not None:
        changes["seed"] = seed
    cfg = apply_overrides(get_preset(preset), changes)
    run = train_finished(cfg, home)
    series = run.series
    _, val = load_corpus(str(corpus)).split(run.config.data.val_fraction)
    val_steps, val_losses = series.get("val/loss", ([], []))
    tok_s = series.get("tokens_per_s", ([], []))[1]
    return {
        "model": run.model,
        "tokenizer": run.tokenizer,
        "val_text": val.text,
        "steps": run.steps,
        "wall_s": run.wall_s,
        "val_curve": list(zip(val_steps, val_losses)),
        "eval_chars": run.config.data.eval_chars,
        "median_train_tok_s": statistics.median(tok_s) if tok_s else float("nan"),
    }


# --- nanoGPT ----------------------------------------------------------------------------------------

class _PlainDataUnpickler(pickle.Unpickler):
    """Reads pickles of plain data only (dicts, lists, str, int...): any class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from meta.pkl")


def load_meta(path: Path) -> dict[str, Any]:
    """nanoGPT's ``meta.pkl`` (``{'vocab_size', 'itos', 'stoi'}``), without unpickling any object."""
    return _PlainDataUnpickler(io.BytesIO(path.read_bytes())).load()


def thread_env(threads: int) -> dict[str, str]:
    """The environment for nanoGPT's subprocesses: this one's, with our torch thread count, and
    UTF-8 as Python's default encoding (``prepare.py`` opens ``input.txt`` without naming one)."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUTF8"] = "1"
    return env


def run_nanogpt(nanogpt_dir: Path, corpus: Path, steps: int, threads: int, work: Path,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run nanoGPT's CPU recipe on ``corpus`` in a copy under ``work``; returns its final model,
    meta, validation ids, wall time, median training tokens/s and its own evaluations."""
    missing = [f for f in NANOGPT_FILES if not (nanogpt_dir / f).exists()]
    if missing:
        raise SystemExit(f"NANOGPT_DIR={nanogpt_dir} is not a nanoGPT checkout (missing {', '.join(missing)})")
    for f in NANOGPT_FILES:
        src, dst = nanogpt_dir / f, work / f
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    data_dir = work / "data" / "shakespeare_char"
    shutil.copyfile(corpus, data_dir / "input.txt")  # present, so prepare.py downloads nothing
    env = thread_env(threads)

    t0 = time.perf_counter()
    prep = subprocess.run([sys.executable, "prepare.py"], cwd=data_dir, env=env, capture_output=True, text=True)
    prep_s = time.perf_counter() - t0
    if prep.returncode != 0:
        raise RuntimeError(f"nanoGPT prepare.py failed:\n{prep.stdout[-2000:]}\n{prep.stderr[-4000:]}")

    # nanoGPT evaluates (and, with always_save_checkpoint, saves) when iter_num % eval_interval == 0:
    # keep its 250 when that lands on the last step, else evaluate only at the end
    eval_interval = 250 if steps % 250 == 0 else steps
    cmd = [sys.executable, "train.py", "config/train_shakespeare_char.py", *NANOGPT_RECIPE,
           f"--max_iters={steps}", f"--lr_decay_iters={steps}", f"--eval_interval={eval_interval}",
           "--out_dir=out", "--always_save_checkpoint=True"]
    log("nanoGPT: " + " ".join(cmd[1:]) + f"  (OMP_NUM_THREADS={threads})")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    (work / "train.log").write_text(res.stdout + "\n--- stderr ---\n" + res.stderr, encoding="utf-8")
    if res.returncode != 0:
        raise RuntimeError(f"nanoGPT train.py failed (exit {res.returncode}):\n"
                           f"{res.stdout[-2000:]}\n{res.stderr[-4000:]}")

    # iteration times: "iter N: loss L, time Dms, mfu M%"; iter 0 includes start-up, skip it
    iter_ms = [float(m.group(2)) for m in re.finditer(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", res.stdout, re.M)
               if int(m.group(1)) > 0]
    evals = [(int(m.group(1)), float(m.group(2)))
             for m in re.finditer(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)", res.stdout, re.M)]
    # "path:line: FutureWarning: ..." -> "FutureWarning: ..." (the path is our temporary copy)
    warnings = sorted({re.sub(r"^.*?:\d+: (?=\w*Warning)", "", line.strip())
                       for line in res.stderr.splitlines() if "Warning:" in line})

    ckpt = torch.load(work / "out" / "ckpt.pt", map_location="cpu", weights_only=True)
    if int(ckpt["iter_num"]) != steps:
        raise RuntimeError(f"nanoGPT's ckpt.pt is from iteration {ckpt['iter_num']}, not the final {steps}")
    model = _nanogpt_model(work / "model.py", ckpt)
    meta = load_meta(data_dir / "meta.pkl")
    import numpy as np

    val_ids = torch.from_numpy(np.fromfile(data_dir / "val.bin", dtype=np.uint16).astype(np.int64))
    return {
        "model": model,
        "meta": meta,
        "val_ids": val_ids,
        "wall_s": wall,
        "prepare_s": prep_s,
        "iter_num": int(ckpt["iter_num"]),
        "median_train_tok_s": 12 * 64 / (statistics.median(iter_ms) / 1e3) if iter_ms else float("nan"),
        "val_curve": evals,
        "warnings": warnings,
    }


def _nanogpt_model(model_py: Path, ckpt: dict[str, Any]) -> torch.nn.Module:
    """nanoGPT's GPT (from its own ``model.py``) with the checkpoint's ``model_args`` and weights."""
    import contextlib
    import importlib.util

    spec = importlib.util.spec_from_file_location("nanogpt_model", model_py)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with contextlib.redirect_stdout(io.StringIO()):  # its "number of parameters" line
        model = mod.GPT(mod.GPTConfig(**ckpt["model_args"]))
    prefix = "_orig_mod."  # left by torch.compile
    state = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in ckpt["model"].items()}
    model.load_state_dict(state)
    return model.eval()


# --- both -----------------------------------------------------------------------------------------

def check_same_tokens(ours_tok: Any, ours_val_text: str, meta: dict[str, Any], val_ids: torch.Tensor) -> None:
    """Both sides must read the same validation ids: same vocabulary, same ids for the same text."""
    theirs = [meta["itos"][i] for i in range(meta["vocab_size"])]
    ours = [ours_tok.id_to_token(i) for i in range(ours_tok.vocab_size)]
    if ours != theirs:
        raise RuntimeError(f"vocabularies differ: ours {''.join(ours)!r} vs nanoGPT's {''.join(theirs)!r}")
    ours_ids = torch.tensor(ours_tok.encode(ours_val_text), dtype=torch.long)
    if not torch.equal(ours_ids, val_ids):
        raise RuntimeError(f"validation ids differ: ours {len(ours_ids)} tokens vs nanoGPT's val.bin {len(val_ids)}")


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: train ours (and nanoGPT when ``NANOGPT_DIR`` is set), score both, print the summary line last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"tinyshakespeare.txt (required; from {URL}) or another text file")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's 2000 steps (both sides)")
    parser.add_argument("--seed", type=int, default=None,
                        help="override our preset's seed (1337), to see run-to-run spread (nanoGPT's stays 1337)")
    parser.add_argument("--home", type=Path, default=None, help="WORKBENCH_HOME to keep our run in (default: temp dir)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads, both sides (0 = torch's default)")
    args = parser.parse_args(argv)
    data = data_path_or_exit(args.data, "bench/shakespeare_char.py")
    nanogpt_dir = Path(os.environ["NANOGPT_DIR"]).expanduser() if os.environ.get("NANOGPT_DIR") else None

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    from workbench import get_preset

    p = get_preset("gpt-cpu")
    m, t = p.model, p.train
    steps = args.steps or t.max_steps
    print(f"torch {torch.__version__}, threads {threads} (both sides), device cpu, data {data}")
    print(f"preset gpt-cpu: {m.n_layer}L/{m.n_head}H/{m.n_embd}, context {m.block_size}, batch {t.batch_size}, "
          f"bias={m.bias}, dropout={m.dropout}, AdamW lr {t.lr} -> {t.min_lr} (warm-up {t.warmup_steps}), "
          f"{steps} steps")
    print("nanoGPT: " + (f"measured in this run from NANOGPT_DIR={nanogpt_dir}" if nanogpt_dir else
                         f"NANOGPT_DIR not set, not run; its README figure {NANOGPT_PUBLISHED} is shown as "
                         f"'published' (not measured here)"))

    with tempfile.TemporaryDirectory(prefix="wb-shakespeare-") as tmp:
        ours = run_ours(data, steps, args.home or Path(tmp) / "home", args.seed)
        print(f"ours: {ours['steps']} steps in {ours['wall_s']:.1f} s, median training throughput "
              f"{ours['median_train_tok_s']:,.0f} tok/s; trainer's evaluations "
              f"({ours['eval_chars']} fixed validation characters each):")
        for step, loss in ours["val_curve"]:
            print(f"  step {step:5d}  val/loss {loss:.4f}")
        ours_model = ours["model"]

        if nanogpt_dir is None:
            val_ids = torch.tensor(ours["tokenizer"].encode(ours["val_text"]), dtype=torch.long)
            theirs = None
        else:
            theirs = run_nanogpt(nanogpt_dir, data, steps, threads, Path(tmp) / "nanogpt")
            check_same_tokens(ours["tokenizer"], ours["val_text"], theirs["meta"], theirs["val_ids"])
            val_ids = theirs["val_ids"]
            print(f"nanoGPT: {theirs['iter_num']} steps, train.py process {theirs['wall_s']:.1f} s "
                  f"(prepare.py {theirs['prepare_s']:.1f} s more), median training throughput "
                  f"{theirs['median_train_tok_s']:,.0f} tok/s; its own evaluations (20 random batches each):")
            for step, loss in theirs["val_curve"]:
                print(f"  step {step:5d}  val loss {loss:.4f}")
            for w in theirs["warnings"]:
                print(f"  nanoGPT warning (harmless on CPU): {w}")
            print("vocabulary and validation ids: identical on both sides (checked)")

        ours_val = whole_split_loss(lambda x: ours_model(x).logits, val_ids)
        print(f"whole validation split ({len(val_ids):,} tokens, windows of {EVAL_T}), final models:")
        print(f"  ours    (step {ours['steps']}, ckpt/last.safetensors): loss {ours_val:.4f}")
        if theirs is None:
            nano_field, nano_wall = f"published:{NANOGPT_PUBLISHED}", "-"
            print(f"  nanoGPT not run: published README figure {NANOGPT_PUBLISHED} (its 20-batch estimate; "
                  f"set NANOGPT_DIR to measure it here)")
        else:
            nano = theirs["model"]
            nano_val = whole_split_loss(lambda x: nano(x, x)[0], val_ids)  # with targets: logits at every position
            print(f"  nanoGPT (step {theirs['iter_num']}, ckpt.pt):               loss {nano_val:.4f}")
            print(f"  difference ours - nanoGPT: {ours_val - nano_val:+.4f}")
            nano_field, nano_wall = f"{nano_val:.4f}", f"{theirs['wall_s']:.1f}"
    print(f"shakespeare_char ours_final_val={ours_val:.4f} nanogpt_final_val={nano_field} "
          f"ours_wall_s={ours['wall_s']:.1f} nanogpt_wall_s={nano_wall} steps={ours['steps']}")


if __name__ == "__main__":
    main()
