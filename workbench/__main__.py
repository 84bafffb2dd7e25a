"""Command line: ``python -m workbench {train,runs,sample,stop,delete,presets,compare,tokenizers,dashboard}``.

Every config field is a flag of ``train``, grouped by section in ``train --help``: the
qualified form always works (``--model.n-layer 4``, ``--train.lr 3e-4``) and the bare form
(``--n-layer 4``) wherever the name is unique among the chosen sections. ``--arch``,
``--objective`` and ``--tokenizer`` choose the model family, the objective and the tokenizer
family, and with them the flags that exist (``train --tokenizer wordpiece --help``). Flags override the chosen preset. A mistake exits with status 2
and one line saying what to change; a run that diverges exits with status 1, the same way.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import typing
from typing import Any
from pathlib import Path

from . import cli_attention, cli_finetune, cli_seq2seq, cli_tokenizers
from .config import ConfigError, RunConfig, describe_tokenizer
from .overrides import SELECTORS, apply_overrides, bare_names, config_fields, overridden_dict, section_classes
from .corpora import CorpusError
from .presets import PRESETS, get_preset
from .runstore import RunStore, UnknownRunError
from .tokenizers import TokenizerError
from .trainer import DivergenceError

USER_ERRORS = (ConfigError, CorpusError, TokenizerError, UnknownRunError, FileNotFoundError, ValueError)


# --- train's flags, built from the config the other flags choose ---------------------------------

def _selection_parser() -> argparse.ArgumentParser:
    """The flags that decide which config (and so which other flags) applies."""
    from .models import FAMILIES
    from .objectives import OBJECTIVES
    from .tokenizers import KINDS

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--preset", default=None, help=f"starting config: {', '.join(PRESETS)} (default: gpt-nano)")
    p.add_argument("--arch", "--model.arch", dest="model.arch", choices=list(FAMILIES), default=None,
                   help="model family (default: the preset's); its settings appear under 'model'")
    p.add_argument("--objective", "--objective.name", dest="objective.name", choices=list(OBJECTIVES), default=None,
                   help="training objective (default: the preset's); its settings appear under 'objective'")
    p.add_argument("--tokenizer", "--tokenizer.kind", dest="tokenizer.kind", choices=list(KINDS), default=None,
                   help="tokenizer family (default: the preset's); its settings appear under 'tokenizer'; "
                        "'saved' reuses one kept with `tokenizers train --save NAME` (--saved-name NAME)")
    p.add_argument("--resume", metavar="RUN_ID", default=None,
                   help="continue an ended run from its last checkpoint; with --max-steps N, extend it "
                        "(the cosine schedule then runs to the new end, so the learning rate rises again)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="train the queued run whose folder this is (used by the dashboard's launcher)")
    p.add_argument("--from-checkpoint", action="store_true",
                   help="with --run-dir: the run was queued by a resume; continue from its last checkpoint")
    return p


def _base_config(sel: argparse.Namespace) -> dict[str, Any]:
    """The config (as a dict) whose sections decide ``train``'s flags: the run's (``--resume``),
    or the preset with the chosen family, objective and tokenizer; not yet valid as a whole
    (``--arch lstm`` needs the ``--seq-len`` the other flags give)."""
    if sel.resume:
        given = [flag for flag, v in (("--preset", sel.preset), ("--arch", getattr(sel, "model.arch")),
                                      ("--objective", getattr(sel, "objective.name")),
                                      ("--tokenizer", getattr(sel, "tokenizer.kind"))) if v is not None]
        if given:
            raise ValueError(f"{given[0]} cannot be combined with --resume: a run keeps its model, objective and tokenizer")
        return RunConfig.from_dict(RunStore().get_run(sel.resume).config).to_dict()
    cfg = get_preset(sel.preset or "gpt-nano")
    return overridden_dict(cfg, {"arch": getattr(sel, "model.arch"), "objective": getattr(sel, "objective.name"),
                                 "tokenizer": getattr(sel, "tokenizer.kind")})


def _add_config_flags(parser: argparse.ArgumentParser, cfg: dict[str, Any]) -> list[str]:
    """One flag per field of ``cfg``'s sections, in one group per section; returns their dests."""
    bare = {q: b for b, q in bare_names(cfg).items()}
    classes = section_classes(cfg)
    groups: dict[str, argparse._ArgumentGroup] = {}
    dests = []
    for qualified, (section, f) in config_fields(cfg).items():
        if qualified in (".".join(t) for t in SELECTORS.values()):
            continue  # --arch / --objective / --tokenizer, above
        sec = classes[section].from_dict(cfg[section])  # each section valid on its own
        if section not in groups:
            kind = {s: f" ({'arch ' if s == 'model' else ''}{cfg[s][k]})" for s, k in SELECTORS.values()}.get(section, "")
            groups[section] = parser.add_argument_group(f"{section}{kind}", (type(sec).__doc__ or "").strip())
        hint = typing.get_type_hints(type(sec))[f.name]
        names = [f"--{section}.{f.name.replace('_', '-')}"]
        if qualified in bare:
            names.insert(0, "--" + bare[qualified].replace("_", "-"))
        help_text = f"{type(sec).field_docs().get(f.name, '')} (default: {getattr(sec, f.name)!r})".replace("%", "%%")
        kw: dict = {"dest": qualified, "default": None, "help": help_text}
        if typing.get_origin(hint) is typing.Literal:
            kw["choices"] = typing.get_args(hint)
        elif hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif hint in (int, float):
            kw.update(type=hint, metavar=hint.__name__.upper())
        groups[section].add_argument(*names, **kw)
        dests.append(qualified)
    return dests


def _train_parser(sub: argparse._SubParsersAction, cfg: dict[str, Any]) -> tuple[argparse.ArgumentParser, list[str]]:
    train = sub.add_parser("train", parents=[_selection_parser()], help="train a model (in this terminal)",
                           description="Train a model. Flags override the preset; see the groups below.")
    train.add_argument("--name", default="", help="a name for the run")
    train.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="show a progress bar (default: when the terminal is interactive)")
    return train, _add_config_flags(train, cfg)


def build_parser(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, list[str]]:
    """The whole CLI; ``train``'s config flags follow the preset/arch/objective/run in ``argv``."""
    sel, _ = _selection_parser().parse_known_args(argv[1:] if argv and argv[0] == "train" else [])
    cfg = _base_config(sel) if argv and argv[0] == "train" else get_preset("gpt-nano").to_dict()

    parser = argparse.ArgumentParser(prog="python -m workbench", description="Train and inspect small language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    _, dests = _train_parser(sub, cfg)

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

    delete = sub.add_parser("delete", help="delete an ended run: its store rows and its folder")
    delete.add_argument("--run", required=True)
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    sub.add_parser("presets", help="list the named presets")

    from .compare import SIZES, STANDARD

    cmp = sub.add_parser("compare", help="train n-gram, LSTM, GPT and BERT on one corpus, one time budget each, "
                                         "and compare their bits per character",
                         description="Train the standard set (n-gram, LSTM, GPT with causal LM, BERT with masked "
                                     "LM) one after the other, each with the steps that fill its time budget (timed on "
                                     "this machine just before it trains, so its learning-rate schedule ends at the "
                                     "budget); print a table and write a figure of bits per character against wall "
                                     "time and tokens seen. Each model is an ordinary run in the store.")
    cmp.add_argument("--corpus", default="shakespeare", help="built-in corpus name or a .txt path (default: shakespeare)")
    cmp.add_argument("--budget-s", type=float, default=120.0, help="wall-clock seconds per model (default: 120)")
    cmp.add_argument("--models", default=",".join(STANDARD), help=f"comma-separated subset of {','.join(STANDARD)}")
    cmp.add_argument("--size", choices=SIZES, default="cpu",
                     help="which preset of each family: nano (seconds) or cpu (learns visibly in minutes; default)")
    cmp.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default=None, help="where to train (default: auto)")
    cmp.add_argument("--eval-chars", type=int, default=None, help="validation characters scored (default: the preset's)")
    cmp.add_argument("--keep-steps", action="store_true",
                     help="train each preset's own max_steps instead, the budget only as a cap")
    cmp.add_argument("--out", type=Path, default=None,
                     help="the figure's path, .html (default: $WORKBENCH_HOME/compare/compare-<time>.html)")
    cli_tokenizers.add_parser(sub)
    cli_seq2seq.add_parser(sub)
    cli_attention.add_parser(sub)
    cli_finetune.add_parser(sub)

    dash = sub.add_parser("dashboard", help="serve the dashboard (127.0.0.1 unless --host says otherwise)")
    dash.add_argument("--host", default="127.0.0.1", help="address to listen on; beyond loopback a token is required")
    dash.add_argument("--port", type=int, default=8501)
    dash.add_argument("--token", default=None,
                      help="access token for visitors from other machines (default: $WORKBENCH_TOKEN, "
                           "or a new random one when --host is not loopback)")
    return parser, dests


# --- commands -------------------------------------------------------------------------------------

def _cmd_train(args: argparse.Namespace, dests: list[str]) -> int:
    from . import distributed
    from .pipeline import check_distributable, create, prepare_resume, run_training
    from .trainer import resolve_device

    if args.run_dir is not None:  # a run queued by the launcher: config is already in the store
        run_dir = args.run_dir.resolve()
        store = RunStore(run_dir.parent.parent)
        device = RunConfig.load(run_dir / "config.json").train.device
        d = distributed.init(resolve_device(device).type)  # torchrun --nproc_per_node=N: one of N processes
        try:
            status = run_training(store, run_dir.name, progress=bool(args.progress) if d.is_main else False,
                                  resume=args.from_checkpoint, dist=d)
        finally:
            distributed.close()
        return 0 if status in ("finished", "stopped") else 1

    store = RunStore()
    given = {d: getattr(args, d) for d in dests if getattr(args, d) is not None}
    if args.resume:
        cfg = RunConfig.from_dict(store.get_run(args.resume).config)
    else:
        selectors = {"arch": getattr(args, "model.arch"), "objective": getattr(args, "objective.name"),
                     "tokenizer": getattr(args, "tokenizer.kind")}
        cfg = apply_overrides(get_preset(args.preset or "gpt-nano"), {**selectors, **given, "name": args.name or None})
    dist = distributed.init(resolve_device(cfg.train.device).type)
    try:
        if dist.enabled:
            check_distributable(cfg, dist.world)
        if args.resume:
            if dist.is_main:
                cfg = prepare_resume(store, args.resume, given)
                print(f"resuming run {args.resume} at step {store.get_run(args.resume).step} "
                      f"to step {cfg.train.max_steps} → {store.run_dir(args.resume)}", file=sys.stderr)
            run_id = args.resume
        else:  # rank 0 adds the run to the store; every process trains it
            run_id = distributed.broadcast(create(cfg, store) if dist.is_main else None, dist)
        run_training(store, run_id, progress=args.progress if dist.is_main else False, resume=bool(args.resume), dist=dist)
    finally:
        distributed.close()
    if not dist.is_main:
        return 0
    info = store.get_run(run_id)
    status = info.status
    best = f"{info.best_val_loss:.4f}" if info.best_val_loss is not None else "-"
    print(f"run {run_id} {status} at step {info.step}; best val loss {best}"
          + (f" ({dist.world} processes)" if dist.enabled else ""), file=sys.stderr)
    return 0


def _fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"


def _finetune_label(config: dict[str, Any]) -> str:
    """'finetune genre <- hf:all-MiniLM-L6-v2, 256 labels' for a fine-tuning run's config, else ''."""
    from .finetune.settings import FinetuneConfig

    try:
        return "finetune " + FinetuneConfig.from_dict(config["finetune"]).describe() if config.get("finetune") else ""
    except (ConfigError, TypeError):
        return "finetune"


def _cmd_runs(args: argparse.Namespace) -> int:
    store = RunStore()
    rows = [["id", "name/preset", "status", "step", "best val", "params", "tokenizer", "created", "note"]]
    for r in store.list_runs(args.limit):
        r = store.reconcile(r.id)
        note = re.sub(r"^\w+(Error|Exception): ", "", r.error or "") if r.status == "failed" else ""
        rows.append([
            r.id, r.name or _finetune_label(r.config) or r.config.get("preset", ""), r.status, f"{r.step}/{r.max_steps}",
            f"{r.best_val_loss:.4f}" if r.best_val_loss is not None else "-",
            f"{r.num_params / 1e6:.2f}M" if r.num_params else "-", describe_tokenizer(r.config), _fmt_time(r.created_at),
            note[:70] + ("…" if len(note) > 70 else ""),
        ])
    if len(rows) == 1:
        print(f"no runs yet in {store.home}; start one with: python -m workbench train --preset gpt-nano")
        return 0
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print(f"times are local ({time.strftime('%Z')})", file=sys.stderr)
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


def _cmd_delete(args: argparse.Namespace) -> int:
    store = RunStore()
    info = store.get_run(args.run)
    if not args.yes:
        answer = input(f"delete run {info.id} ({info.name or info.config.get('preset', '')}, {info.status}, "
                       f"step {info.step}) and its folder? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    store.delete_run(args.run)
    print(f"deleted run {args.run}")
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    from .presets import preset_description

    for name in PRESETS:
        cfg = get_preset(name)
        print(f"{name:22s} {cfg.model.describe():24s} {cfg.objective.name:10s} {preset_description(name)}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_figure, compare_table, run_compare, standard_configs, write_figure
    from .experiment import preflight
    from .paths import workbench_home

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    overrides = {"device": args.device, "eval_chars": args.eval_chars}
    configs = standard_configs(args.corpus, args.budget_s, args.size, models,
                               {k: v for k, v in overrides.items() if v is not None})
    out = args.out or workbench_home() / "compare" / time.strftime("compare-%Y%m%d-%H%M%S.html")
    if out.suffix.lower() != ".html":
        raise ValueError(f"--out: the figure is written as HTML; give a path ending in .html, not {out.name!r}")
    store = RunStore()
    for cfg in configs.values():  # refuse a bad corpus or setting before anything trains
        preflight(cfg, store.home)
    print(f"training {', '.join(configs)} on {args.corpus!r}, up to {args.budget_s:g} s each", file=sys.stderr)
    rows = run_compare(configs, store, progress=None, fit_steps=not args.keep_steps)
    print(compare_table(rows))
    path = write_figure(compare_figure(rows, title=f"{args.corpus}: bits per character, {args.budget_s:g} s per model"), out)
    print(f"figure: {path}\nruns: {' '.join(r.run_id for r in rows)} (compare them on the dashboard's Runs page)",
          file=sys.stderr)
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from .serve import serve_dashboard

    return serve_dashboard(args.host, args.port, args.token or os.environ.get("WORKBENCH_TOKEN"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser, dests = build_parser(argv)
        args = parser.parse_args(argv)
        if args.command == "train":
            return _cmd_train(args, dests)
        handler = {"runs": _cmd_runs, "sample": _cmd_sample, "stop": _cmd_stop, "delete": _cmd_delete,
                   "presets": _cmd_presets, "compare": _cmd_compare, "tokenizers": cli_tokenizers.run, "dashboard": _cmd_dashboard,
                   "translate": cli_seq2seq.run, "evaluate": cli_seq2seq.run,
                   "attention": cli_attention.run, "finetune": cli_finetune.run, "sweep-labels": cli_finetune.run}
        return handler[args.command](args)
    except DivergenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
