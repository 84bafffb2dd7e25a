"""``python -m workbench translate`` and ``evaluate``: use a run trained on a seq2seq task.

``translate`` decodes targets for source texts (``--text``, a ``--file`` of lines, or standard
input) with beam search or greedy decoding; ``evaluate`` scores the run on the validation
pairs its evaluations use (BLEU, ROUGE-1/2/L, exact match) and shows a few examples. Both
need a run trained with ``--arch seq2seq --objective seq2seq --task ...``; a mistake exits
with status 2 and one line naming the flag to change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from .runstore import RunStore, UnknownRunError

MAX_SHOWN_SOURCE = 40
"""Characters of a source shown before its output when several are translated (the rest: …)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("translate", help="decode targets for source texts with a seq2seq-task run",
                        description="Decode a target for each source text with a run trained on a seq2seq task "
                                    "(--objective seq2seq). Sources: --text (repeatable), --file (one per line), "
                                    "or standard input (one per line).")
    tr.add_argument("--run", required=True, help="run id (see `runs`)")
    tr.add_argument("--text", action="append", default=None, help="a source text; repeat for several")
    tr.add_argument("--file", type=Path, default=None, help="a UTF-8 file with one source per line")
    tr.add_argument("--show-expected", action="store_true",
                    help="also print the built-in task's own answer (reverse-words, pig-latin) and whether it matches")
    _decoding_flags(tr, beam_size=4)
    tr.add_argument("--max-new-tokens", type=int, default=None,
                    help="longest target in tokens (default: the model's block_size)")

    ev = sub.add_parser("evaluate", help="score a seq2seq-task run on its validation pairs (BLEU, ROUGE, exact match)",
                        description="Decode the sources of the run's validation pairs (the ones its evaluations "
                                    "use) and score the outputs against the targets.")
    ev.add_argument("--run", required=True, help="run id (see `runs`)")
    _decoding_flags(ev, beam_size=1)
    ev.add_argument("--max-examples", type=int, default=256, help="score the first N validation pairs (default: 256)")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of the report")


def _decoding_flags(p: argparse.ArgumentParser, beam_size: int) -> None:
    p.add_argument("--beam-size", type=int, default=beam_size,
                   help=f"hypotheses kept by beam search; 1 = greedy (default: {beam_size})")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam search ranks by log-prob / length ** this: 0 favours short outputs, "
                        "1 compares per-token averages (default: 1.0)")
    p.add_argument("--which", choices=("best", "last"), default="best",
                   help="checkpoint: best (lowest val loss; falls back to last) or last (default: best)")


# --- shared checks --------------------------------------------------------------------------------

def _check_run(store: RunStore, args: argparse.Namespace, needs_pairs: bool = False) -> str:
    """Refuse a bad ``--beam-size`` or a ``--run`` that cannot be used (unknown, not a seq2seq
    task, no checkpoint yet; with ``needs_pairs``, its TSV file gone: translating needs only the
    weights, evaluating reads the validation pairs); returns the checkpoint to load."""
    from .pipeline import checkpoint_path
    from .scoring import require_task_run

    if args.beam_size < 1:
        raise ValueError(f"--beam-size must be >= 1 (1 = greedy decoding), got {args.beam_size}")
    try:
        info = store.get_run(args.run)
    except UnknownRunError as exc:
        raise ValueError(f"--run: {exc}") from None
    try:
        require_task_run(info.config, args.run)
    except ValueError as exc:
        raise ValueError(f"--run: {exc}") from None
    task = info.config["objective"].get("task", "")
    if needs_pairs and task.startswith("tsv:") and not Path(task[4:]).is_file():
        raise ValueError(f"--run: run {args.run} was trained on the pairs of {task[4:]!r}, which is gone; put the "
                         f"file back there (its config names it, and its last 10% are the validation pairs)")
    try:
        return checkpoint_path(store, args.run, args.which).stem
    except FileNotFoundError as exc:
        raise ValueError(f"--run: {exc}; wait for it, or choose another run") from None


def _rule(task: str) -> Callable[[str], str] | None:
    """The built-in task's text function (its answer for any source), None for tsv:."""
    from .objectives.seq2seq_tasks import pig_latin, reverse_words

    return {"reverse-words": reverse_words, "pig-latin": pig_latin}.get(task)


# --- translate ------------------------------------------------------------------------------------

def _sources(args: argparse.Namespace) -> list[str]:
    """The source texts: ``--text`` as given, or the non-blank lines of ``--file`` / stdin."""
    if args.text is not None and args.file is not None:
        raise ValueError("give sources with --text or with --file, not both")
    if args.text is not None:
        for t in args.text:
            if not t.strip():
                raise ValueError("--text is empty; give the text to translate, e.g. --text 'Now is the winter'")
        return [t.strip() for t in args.text]
    if args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise ValueError(f"--file: no file at {str(args.file)!r}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"--file: cannot read {str(args.file)!r} as UTF-8 text ({exc})") from None
        where = f"--file {args.file}"
    else:
        if sys.stdin.isatty():
            print("reading sources from standard input, one per line (end with Ctrl-D)", file=sys.stderr)
        text = sys.stdin.read()
        where = "standard input"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{where} has no text; write one source per line, or pass --text")
    return lines


def _short(text: str) -> str:
    return text if len(text) <= MAX_SHOWN_SOURCE else text[: MAX_SHOWN_SOURCE - 1] + "…"


def _cmd_translate(args: argparse.Namespace) -> int:
    from .pipeline import load_run_model
    from .seq2seq_decode import translate
    from .tokenizers import TokenizerError

    sources = _sources(args)
    store = RunStore()
    which = _check_run(store, args)
    model, tokenizer, cfg = load_run_model(store, args.run, which)
    limit = model.config.block_size
    if args.max_new_tokens is not None and not 1 <= args.max_new_tokens <= limit:
        raise ValueError(f"--max-new-tokens must be between 1 and the model's block_size {limit}, "
                         f"got {args.max_new_tokens}")
    try:
        outputs = translate(model, tokenizer, sources, beam_size=args.beam_size, length_penalty=args.length_penalty,
                            max_new_tokens=args.max_new_tokens)
    except TokenizerError as exc:
        raise ValueError(f"a source cannot be encoded ({exc}); change that text, or use a run whose tokenizer "
                         f"reads any text ('bpe')") from None
    rule = _rule(cfg.objective.task) if args.show_expected else None
    if args.show_expected and rule is None:
        print(f"--show-expected: the task {cfg.objective.task!r} has no rule to compute an answer "
              f"(only reverse-words and pig-latin do); showing the outputs alone", file=sys.stderr)
    width = max(len(_short(s)) for s in sources)
    for source, output in zip(sources, outputs):
        line = output if len(sources) == 1 else f"{_short(source).ljust(width)}  → {output}"
        if rule is not None:
            expected = rule(source)
            line += "  ✓" if output == expected else f"  ✗ expected: {expected}"
        print(line)
    return 0


# --- evaluate -------------------------------------------------------------------------------------

def _report(scores: dict[str, Any]) -> str:
    """The scores as a few aligned lines, then the examples."""
    method = "greedy" if scores["beam_size"] == 1 else \
        f"beam search (beam {scores['beam_size']}, length penalty {scores['length_penalty']:g})"
    n, matched = scores["count"], round(scores["exact_match"] * scores["count"])
    of = f" (the first {n} of {scores['available']})" if n < scores["available"] else ""
    lines = [f"run {scores['run']}, {scores['checkpoint']} checkpoint, task {scores['task']}: "
             f"{n} validation pairs{of}, {method}",
             f"  BLEU         {scores['bleu']:6.2f}   (0-100, sacrebleu corpus BLEU)",
             f"  ROUGE-1      {scores['rouge1']:6.3f}   (F-measure, 0-1)",
             f"  ROUGE-2      {scores['rouge2']:6.3f}",
             f"  ROUGE-L      {scores['rougeL']:6.3f}",
             f"  exact match  {scores['exact_match']:6.1%}   ({matched} of {n})"]
    if scores["examples"]:
        lines.append("examples:")
        for ex in scores["examples"]:
            mark = "✓" if ex["hypothesis"].strip() == ex["reference"].strip() else "✗"
            lines += [f"  source     {ex['source']}", f"  reference  {ex['reference']}",
                      f"  output     {ex['hypothesis']}  {mark}", ""]
    return "\n".join(lines).rstrip()


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .scoring import evaluate_run

    if args.max_examples < 1:
        raise ValueError(f"--max-examples must be >= 1, got {args.max_examples}")
    store = RunStore()
    which = _check_run(store, args, needs_pairs=True)
    scores = evaluate_run(store, args.run, which, args.beam_size, args.length_penalty, args.max_examples)
    print(json.dumps(scores, ensure_ascii=False) if args.json else _report(scores))
    return 0


def run(args: argparse.Namespace) -> int:
    return {"translate": _cmd_translate, "evaluate": _cmd_evaluate}[args.command](args)
