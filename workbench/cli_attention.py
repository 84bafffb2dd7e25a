"""``python -m workbench attention``: what each head attends to, from the terminal.

Reads a run's snapshot (``--run``, the latest or ``--step``), the run's best checkpoint on your
``--text``, or a pretrained model (``--hf``: an offline label such as all-MiniLM-L6-v2, or a hub
id when online). Prints every head's label with the score behind it; ``--out`` also writes one
view as a standalone HTML file that opens offline, or as a PNG (by the file's suffix).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .runstore import RunStore, UnknownRunError

VIEWS = ("heatmap", "model", "head", "mask", "time", "labels")
"""What ``--out`` writes: one head's heatmap, every layer x head, the head view (lines), the mask
beside the weights, one head over the run's snapshots, the head labels over those snapshots."""
KINDS = {"self": "attention", "encoder": "attention", "decoder": "decoder_attention", "cross": "cross_attention",
         "content": "content_attention", "query": "query_attention"}
"""``--kind`` -> the snapshot artifact that holds it."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attention", help="label every head of a run or a pretrained model; export a view",
                       description="Label every attention head (previous-token, sink, induction, broad, ...) of a "
                                   "run's snapshot, of the run on --text, or of a pretrained model (--hf); --out "
                                   "writes one view as standalone HTML (opens offline) or PNG.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run id (see `runs`)")
    src.add_argument("--hf", metavar="NAME", help="a pretrained model: all-MiniLM-L6-v2 or SmolLM2-135M-Instruct "
                                                  "offline (when installed), or a hub id when online")
    p.add_argument("--text", default=None, help="read this text (a run: its best checkpoint; --hf: required)")
    p.add_argument("--step", type=int, default=None, help="the snapshot of this step (default: the latest)")
    p.add_argument("--kind", choices=list(KINDS), default=None,
                   help="which attention of an encoder-decoder or a permutation LM (default: self / encoder)")
    p.add_argument("--view", choices=VIEWS, default="model", help="what --out writes (default: model)")
    p.add_argument("--layer", type=int, default=0, help="layer of the heatmap, head view, mask and time views")
    p.add_argument("--head", type=int, default=0, help="head of the heatmap, mask and time views")
    p.add_argument("--max-tokens", type=int, default=512, help="--hf: cut the text to this many tokens (default 512)")
    p.add_argument("--out", type=Path, default=None, help="write the view here: FILE.html or FILE.png")
    p.add_argument("--induction", action="store_true",
                   help="also score induction on a repeated random sequence (needs the model: --run or --hf)")


def _snapshots(store: RunStore, run_id: str, kind: str | None) -> list[tuple[int, Path]]:
    from .pipeline import attention_snapshots

    snaps = attention_snapshots(store, run_id, KINDS[kind or "self"])
    if not snaps:
        have = [k for k, a in KINDS.items() if attention_snapshots(store, run_id, a)]
        raise ValueError(f"--kind: run {run_id} has no {kind or 'self'} attention snapshots"
                         + (f"; it has {', '.join(dict.fromkeys(have))}" if have else
                            " yet (one is taken at each evaluation)"))
    return snaps


def _maps(args: argparse.Namespace) -> tuple[Any, list[Any], Any]:
    """(the maps, the run's snapshot maps for the time views, the model (a run's, or an HFModel) or None)."""
    from .attention import AttentionMaps

    if args.hf:
        from .hf_attention import capture_hf, load_hf

        if not args.text or not args.text.strip():
            raise ValueError("--text: give the text a pretrained model reads, e.g. --text 'The cat sat on the mat'")
        if not 1 <= args.max_tokens <= 4096:
            raise ValueError(f"--max-tokens must be between 1 and 4096, got {args.max_tokens}")
        hf = load_hf(args.hf)
        return capture_hf(hf, args.text, max_tokens=args.max_tokens), [], hf
    store = RunStore()
    try:
        store.get_run(args.run)
    except UnknownRunError as exc:
        raise ValueError(f"--run: {exc}") from None
    model = tokenizer = None
    if args.text is not None or args.induction:
        from .attention_text import capture_text
        from .pipeline import load_run_model

        try:
            model, tokenizer, cfg = load_run_model(store, args.run, "best")
        except FileNotFoundError as exc:
            raise ValueError(f"--run: {exc}") from None
    if args.text is not None:
        maps = capture_text(model, tokenizer, args.text, source=f"run {args.run}", objective=cfg.objective.name)
        kind = args.kind or ("cross" if "cross" in maps else "self")
        if kind not in maps:
            raise ValueError(f"--kind: reading a text gives {', '.join(maps)}; not {kind}")
        return maps[kind], [], (model, tokenizer)
    snaps = _snapshots(store, args.run, args.kind)
    steps = [s for s, _ in snaps]
    if args.step is not None and args.step not in steps:
        raise ValueError(f"--step: run {args.run} has snapshots at steps {', '.join(map(str, steps))}; not {args.step}")
    path = dict(snaps)[args.step if args.step is not None else steps[-1]]
    series = [AttentionMaps.load(p) for _, p in snaps] if args.view in ("time", "labels") else []
    return AttentionMaps.load(path), series, (model, tokenizer)


def _view(args: argparse.Namespace, maps: Any, series: list[Any]) -> Any:
    from . import attention_views as views
    from .head_stats import LABELS, label_history

    if not 0 <= args.layer < maps.n_layers:
        raise ValueError(f"--layer must be between 0 and {maps.n_layers - 1}, got {args.layer}")
    if not 0 <= args.head < maps.n_heads:
        raise ValueError(f"--head must be between 0 and {maps.n_heads - 1}, got {args.head}")
    if args.view in ("time", "labels") and len(series) < 2:
        raise ValueError(f"--view {args.view} shows a run's snapshots over training: give --run (without --text) "
                         "of a run with at least two snapshots")
    if args.view == "heatmap":
        return views.attention_heatmap(maps.head(args.layer, args.head), maps.tokens,
                                       title=f"Layer {args.layer}, head {args.head}", key_tokens=maps.key_tokens)
    if args.view == "model":
        return views.model_view(maps)
    if args.view == "head":
        return views.head_view(maps, layer=args.layer)
    if args.view == "mask":
        return views.mask_and_weights(maps, args.layer, args.head)
    if args.view == "time":
        return views.head_over_time(series, args.layer, args.head)
    history = label_history(series)
    return views.label_map(list(history.steps), history.labels, history.scores, list(LABELS))


def run(args: argparse.Namespace) -> int:
    from . import attention_views as views
    from .head_stats import label_heads

    if args.out is not None and args.out.suffix.lower() not in (".html", ".png"):
        raise ValueError(f"--out must end in .html or .png, got {str(args.out)!r}")
    if args.run is None and args.step is not None:
        raise ValueError("--step picks a run's snapshot: use it with --run")
    maps, series, model = _maps(args)
    figure = _view(args, maps, series) if args.out is not None else None
    induction = None
    if args.induction:
        from .hf_attention import hf_induction_scores

        from .attention_text import induction_scores_of

        induction = hf_induction_scores(model) if args.hf else induction_scores_of(*model)
    labels = label_heads(maps, induction=induction)
    where = maps.source or (f"run {args.run}" if args.run else args.hf)
    step = f" at step {maps.step}" if maps.step is not None and args.text is None else ""
    print(f"{maps.kind} attention of {where}{step}: {maps.n_layers} layers x {maps.n_heads} heads, "
          f"{len(maps.tokens)} tokens")
    print(f"{'layer':>5} {'head':>4}  {'label':<15} score")
    for row in labels.table():
        print(f"{row['layer']:>5} {row['head']:>4}  {row['label']:<15} {row['score']:.2f}")
    if figure is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        if args.out.suffix.lower() == ".png":
            views.save_png(figure, args.out)
        else:
            views.save_html(figure, args.out)
        print(f"wrote the {args.view} view to {args.out}")
    return 0
