"""Command line: ``python -m workbench {train,runs,sample,stop,presets}``.

Every config field is a kebab-case flag of ``train`` (``--n-embd 256 --lr 3e-4``); flags
override the chosen preset. Mistakes exit with status 2 and one line saying what to change.
"""

from __future__ import annotations

import argparse
import sys
import time
import typing
from pathlib import Path

from .config import SECTIONS, ConfigError, apply_overrides, field_docs, flat_fields, get_preset, PRESETS
from .corpora import CorpusError
from .runstore import RunStore, UnknownRunError
from .tokenizers import TokenizerError

USER_ERRORS = (ConfigError, CorpusError, TokenizerError, UnknownRunError, FileNotFoundError, ValueError)


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    docs = field_docs()
    hints = {name: typing.get_type_hints(cls) for name, cls in SECTIONS.items()}
    for name, (section, _f) in flat_fields().items():
        hint = hints[section][name]
        flag = "--" + name.replace("_", "-")
        help_text = docs.get(name, "")
        if typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(hint), default=None, help=help_text)
        elif hint is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif hint in (int, float):
            parser.add_argument(flag, type=hint, default=None, metavar=hint.__name__.upper(), help=help_text)
        else:
            parser.add_argument(flag, default=None, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workbench", description="Train and inspect small language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model (in this terminal)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    train.add_argument("--preset", default="gpt-nano", help=f"starting config: {', '.join(PRESETS)}")
    train.add_argument("--name", default="", help="a name for the run")
    train.add_argument("--run-dir", type=Path, default=None,
                       help="train the queued run whose folder this is (used by the dashboard's launcher)")
    train.add_argument("--resume", metavar="RUN_ID", default=None, help="continue a run from its last checkpoint")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show a progress bar (default: when the terminal is interactive)")
    _add_config_flags(train)

    runs = sub.add_parser("runs", help="list runs with status and best val loss")
    runs.add_argument("--limit", type=int, default=50)

    sample = sub.add_parser("sample", help="sample text from a run's best checkpoint")
    sample.add_argument("--run", required=True, help="run id (see `runs`)")
    sample.add_argument("--prompt", default="", help="text to continue")
    sample.add_argument("--max-new-tokens", type=int, default=200)
    sample.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    sample.add_argument("--top-k", type=int, default=None)
    sample.add_argument("--top-p", type=float, default=None)
    sample.add_argument("--seed", type=int, default=None)
    sample.add_argument("--checkpoint", choices=("best", "last"), default="best")

    stop = sub.add_parser("stop", help="ask a running run to stop")
    stop.add_argument("--run", required=True)

    sub.add_parser("presets", help="list the named presets")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from .pipeline import run_training

    if args.run_dir is not None:  # a run queued by the launcher: config is already in the store
        run_dir = args.run_dir.resolve()
        store = RunStore(run_dir.parent.parent)
        status = run_training(store, run_dir.name, progress=args.progress if args.progress is not None else False)
        return 0 if status in ("finished", "stopped") else 1

    from .pipeline import train

    store = RunStore()
    if args.resume:
        info = store.get_run(args.resume)
        if not info.is_terminal:
            raise ValueError(f"run {args.resume} is {info.status}; only an ended run can be resumed")
        store.update_run(args.resume, stop_requested=0, error=None)
        run_id = args.resume
        print(f"resuming run {run_id} → {store.run_dir(run_id)}", file=sys.stderr)
        status = run_training(store, run_id, progress=args.progress, resume=True)
    else:
        overrides = {name: getattr(args, name) for name in flat_fields()}
        cfg = apply_overrides(get_preset(args.preset), {**overrides, "name": args.name or None})
        run_id = train(cfg, store, progress=args.progress)
        status = store.get_run(run_id).status
    info = store.get_run(run_id)
    best = f"{info.best_val_loss:.4f}" if info.best_val_loss is not None else "-"
    print(f"run {run_id} {status} at step {info.step}; best val loss {best}", file=sys.stderr)
    return 0


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _cmd_runs(args: argparse.Namespace) -> int:
    store = RunStore()
    rows = [["id", "name/preset", "status", "step", "best val", "params", "created"]]
    for r in store.list_runs(args.limit):
        r = store.reconcile(r.id)
        rows.append([
            r.id, r.name or r.config.get("preset", ""), r.status, f"{r.step}/{r.max_steps}",
            f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-",
            f"{r.num_params / 1e6:.2f}M" if r.num_params else "-", _fmt_time(r.created_at),
        ])
    if len(rows) == 1:
        print(f"no runs yet in {store.home}; start one with: python -m workbench train --preset gpt-nano")
        return 0
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from .generate import sample_text
    from .pipeline import load_run_model

    if args.max_new_tokens <= 0:
        raise ValueError("--max-new-tokens must be > 0")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise ValueError("--top-p must be in (0, 1]")
    model, tokenizer, _ = load_run_model(RunStore(), args.run, which=args.checkpoint)
    print(sample_text(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.seed))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from .launcher import stop_run

    stop_run(args.run)
    print(f"asked run {args.run} to stop")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from .config import preset_description

    for name in PRESETS:
        m = get_preset(name).model
        print(f"{name:22s} {m.n_layer}L/{m.n_head}H/{m.n_embd} ctx {m.block_size}  {preset_description(name)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"train": _cmd_train, "runs": _cmd_runs, "sample": _cmd_sample, "stop": _cmd_stop, "presets": _cmd_presets}
    try:
        return handler[args.command](args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
