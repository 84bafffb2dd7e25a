"""``python -m workbench finetune`` and ``sweep-labels``: a task head on a trunk, from the terminal.

``finetune`` trains one head (its run lands in the store beside every other) and prints the
validation and test metrics; ``sweep-labels`` trains the same task at several label budgets,
pretrained vs frozen trunk vs from scratch, prints the table and writes the plot.

    python -m workbench finetune --task genre --init hf:all-MiniLM-L6-v2 --labels 256 --lr 5e-5 --head-lr 1e-3
    python -m workbench sweep-labels --task genre --init <RUN_ID> --budgets 32,64,256,all --seeds 0,1
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import ConfigError, RunConfig
from .runstore import RunStore


def _budget(text: str) -> int:
    return 0 if text.strip().lower() == "all" else int(text)


def _common(p: argparse.ArgumentParser) -> None:
    from .finetune.settings import FinetuneConfig

    docs = FinetuneConfig.field_docs()
    p.add_argument("--task", default="genre", help=docs["task"])
    p.add_argument("--init", default="scratch", help=docs["init"])
    p.add_argument("--preset", default="bert-nano",
                   help="with --init scratch: the preset whose model and tokenizer make the trunk (default bert-nano)")
    p.add_argument("--freeze", type=int, default=0, help=docs["freeze"])
    p.add_argument("--head-lr", type=float, default=0.0, help=docs["head_lr"])
    p.add_argument("--pooling", default="auto", help=docs["pooling"])
    p.add_argument("--max-len", type=int, default=None,
                   help=docs["max_len"])
    p.add_argument("--max-eval", type=int, default=512, help=docs["max_eval"])
    p.add_argument("--lr", type=float, default=None, help="trunk learning rate (default 5e-5 for hf:, 1e-3 otherwise)")
    p.add_argument("--max-steps", type=int, default=300, help="optimizer steps (sweep-labels: the most per run)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per step")
    p.add_argument("--eval-interval", type=int, default=50, help="evaluate on the validation examples every N steps")
    p.add_argument("--warmup-steps", type=int, default=20, help="linear warm-up steps")
    p.add_argument("--seed", type=int, default=1337, help="seed of the head's weights, batches and dropout")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--progress", action="store_true", help="show a progress bar")


def add_parser(sub: argparse._SubParsersAction) -> None:
    ft = sub.add_parser("finetune", help="fine-tune a task head (classification, tagging, QA) on a trunk",
                        description="Train a task head on a pretrained trunk (a run of yours, an HF model) or from "
                                    "scratch; prints validation and test metrics. The run lands in the store.")
    _common(ft)
    ft.add_argument("--labels", type=_budget, default=0, help="label budget: training examples to use (default all)")
    ft.add_argument("--label-seed", type=int, default=0, help="seed of the label-budget sample")
    ft.add_argument("--reinit", action="store_true", help="the init's architecture and tokenizer, random weights")
    ft.add_argument("--name", default="", help="a name for the run")
    sw = sub.add_parser("sweep-labels", help="the data-efficiency curve: one task at several label budgets",
                        description="Fine-tune one task at several label budgets: pretrained (all weights learn), "
                                    "frozen (head only) and scratch (same model, random weights); print the test "
                                    "metric per budget and write the plot of metric vs number of labels.")
    _common(sw)
    sw.add_argument("--budgets", default="32,64,128,256,1024,all", help="comma-separated label budgets ('all' = every example)")
    sw.add_argument("--arms", default="pretrained,frozen,scratch", help="comma-separated: pretrained, frozen, scratch")
    sw.add_argument("--seeds", default="0", help="comma-separated seeds (label sample and weights)")
    sw.add_argument("--epochs", type=float, default=10.0, help="passes over a budget's examples (within "
                                                               "--min-steps..--max-steps)")
    sw.add_argument("--min-steps", type=int, default=50, help="fewest steps of a run (tiny budgets)")
    sw.add_argument("--out", type=Path, default=Path("sweep-labels.html"), help="the plot (HTML, opens offline)")
    sw.add_argument("--json", type=Path, default=None, help="also write every run's figures as JSON here")


def config_from_args(args: argparse.Namespace, **finetune: Any) -> RunConfig:
    """The fine-tuning config the flags describe (the preset's model and tokenizer for scratch)."""
    from .presets import get_preset

    hf = args.init.startswith("hf:")
    base = get_preset(args.preset) if args.init == "scratch" else RunConfig()
    lr = args.lr if args.lr is not None else (5e-5 if hf else 1e-3)
    max_len = args.max_len or 0  # 0: the trunk's positions, up to 128
    train = replace(base.train, max_steps=args.max_steps, batch_size=args.batch_size, lr=lr, min_lr=lr / 10,
                    warmup_steps=args.warmup_steps, eval_interval=args.eval_interval, seed=args.seed,
                    device=args.device, seq_len=0)
    fc = {"task": args.task, "init": args.init, "freeze": args.freeze, "head_lr": args.head_lr,
          "pooling": args.pooling, "max_len": max_len, "max_eval": args.max_eval, **finetune}
    return RunConfig.from_dict({**replace(base, train=train, preset="").to_dict(), "finetune": fc})


def _fmt(metrics: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


def _cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune.run import finetune_info
    from .pipeline import train

    cfg = config_from_args(args, labels=args.labels, label_seed=args.label_seed, reinit=args.reinit)
    cfg = replace(cfg, name=args.name)
    store = RunStore()
    run_id = train(cfg, store, progress=args.progress)
    info, run = finetune_info(store, run_id), store.get_run(run_id)
    print(f"run {run_id} {run.status} at step {run.step}: {info.get('task')} on {info.get('train_examples')} "
          f"labelled examples, {info.get('trainable_params', 0):,} of {info.get('total_params', 0):,} parameters trained",
          file=sys.stderr)
    if info.get("dropped") or info.get("words_cut"):
        print(f"dropped (answer cut off by max_len): {info.get('dropped')}; words cut: {info.get('words_cut')}",
              file=sys.stderr)
    print(f"val  {_fmt(info.get('val', {}))}")
    print(f"test {_fmt(info.get('test', {}))}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .finetune.run import task_of
    from .finetune.sweep import ARMS, curve_figure, majority_share, sweep_labels, table
    from .view_export import save_html

    try:
        budgets = [_budget(b) for b in args.budgets.split(",") if b.strip()]
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise ConfigError("budgets", f"budgets and seeds are comma-separated whole numbers ('all' for a budget): {exc}") from exc
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARMS]
    if unknown:
        raise ConfigError("arms", f"unknown {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if args.init == "scratch":
        arms = ["scratch"]
        print("init scratch: only the scratch arm (give a run id or hf:NAME to compare with pretrained)", file=sys.stderr)
    base = config_from_args(args)
    store = RunStore()

    def show(row: dict[str, Any]) -> None:
        value = "-" if row["value"] is None else f"{row['value']:.4f}"
        print(f"{row['arm']:>10} labels={row['labels'] or 'all':<5} n={row['n_train']:<6} seed={row['seed']} "
              f"steps={row['steps']:<5} test_{row['metric']}={value} run={row['run_id']}", file=sys.stderr)

    rows = sweep_labels(base, budgets, arms, seeds, epochs=args.epochs, min_steps=args.min_steps, store=store,
                        progress=args.progress, on_result=show)
    print(table(rows))
    task = task_of(base.finetune)  # type: ignore[arg-type]
    majority = majority_share(task)
    fig = curve_figure(rows, {"majority class": majority} if majority else None,
                       title=f"{task.name}: test {rows[0]['metric'] if rows else ''} vs labels ({base.finetune.init})")  # type: ignore[union-attr]
    save_html(fig, args.out)
    print(f"figure: {args.out}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1), encoding="utf-8")
        print(f"results: {args.json}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    return _cmd_finetune(args) if args.command == "finetune" else _cmd_sweep(args)
