"""``python -m workbench tokenizers {train,list,show,delete}``: the tokenizer lab in a terminal.

``train`` fits any family on a corpus's training split, prints its statistics on the validation
split and how it cuts a sample sentence, and with ``--save NAME`` keeps it for runs
(``train --tokenizer saved --saved-name NAME``).
"""

from __future__ import annotations

import argparse
import dataclasses

from .tokenizers import KINDS, TOKENIZERS, TokenizerError, tokenizer_config_class
from .tokenizers.library import TokenizerLibrary

SAMPLE = "ROMEO:\nBut soft, what light through yonder window breaks?"


def _setting_fields() -> dict[str, tuple[dataclasses.Field, str]]:
    """Every family's settings (but ``kind``) by name, with the first docstring found."""
    out: dict[str, tuple[dataclasses.Field, str]] = {}
    for kind in TOKENIZERS:  # not 'saved': that one is loaded, not trained
        cls = tokenizer_config_class(kind)
        for f in cls.user_fields():
            if f.name != "kind" and f.name not in out:
                out[f.name] = (f, cls.field_docs().get(f.name, ""))
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    tp = sub.add_parser("tokenizers", help="train, compare and keep tokenizers")
    tsub = tp.add_subparsers(dest="tok_command", required=True)

    train = tsub.add_parser("train", help="train a tokenizer on a corpus and show its statistics",
                            description="Train on the training split, measure on the validation split.")
    train.add_argument("--kind", choices=[k for k in KINDS if k != "saved"], required=True, help="tokenizer family")
    train.add_argument("--corpus", default="shakespeare", help="'shakespeare' or a UTF-8 .txt file")
    train.add_argument("--val-fraction", type=float, default=0.1, help="held out from the end of each source")
    train.add_argument("--save", metavar="NAME", default=None, help="keep it under this name for later runs")
    train.add_argument("--overwrite", action="store_true", help="replace a kept tokenizer of the same name")
    train.add_argument("--text", default=SAMPLE, help="a sentence to show cut into tokens")
    group = train.add_argument_group("settings (each family uses its own; defaults are the family's)")
    for name, (f, doc) in _setting_fields().items():
        hint = f.type  # a string: the module uses postponed annotations
        kw: dict = {"dest": f"s_{name}", "default": None, "help": doc.replace("%", "%%")}
        if hint in ("bool", bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif hint in ("int", int):
            kw.update(type=int, metavar="INT")
        group.add_argument("--" + name.replace("_", "-"), **kw)

    tsub.add_parser("list", help="list kept tokenizers")
    show = tsub.add_parser("show", help="a kept tokenizer's settings, statistics and how it cuts a sentence")
    show.add_argument("name")
    show.add_argument("--text", default=SAMPLE)
    delete = tsub.add_parser("delete", help="delete a kept tokenizer (runs that used it keep their copy)")
    delete.add_argument("name")


def _print_tokens(tok, text: str) -> None:
    pieces = tok.tokens(text)
    print(f"{len(pieces)} tokens for {len(text)} characters:")
    print(" | ".join(p.replace("\n", "\\n") for p in pieces))


def _print_stats(summary: dict) -> None:
    rows = [("vocabulary", summary["vocab_size"]),
            ("characters per token", f"{summary['chars_per_token']:.3f}"),
            ("vocabulary used", f"{summary['vocab_used']} ({summary['vocab_usage']:.1%})"),
            ("[UNK] rate", f"{summary['unk_rate']:.2%}"),
            ("tokens per line p50 / p90 / max",
             f"{summary['tokens_per_line_p50']} / {summary['tokens_per_line_p90']} / {summary['tokens_per_line_max']}"),
            ("training time", f"{summary['train_seconds']:.2f} s")]
    print("on the validation split (text it never learned from):")
    for k, v in rows:
        print(f"  {k:34s} {v}")


def run(args: argparse.Namespace) -> int:
    lib = TokenizerLibrary()
    if args.tok_command == "train":
        from .corpora import corpus_fingerprint, load_corpus
        from .tokenizers.stats import train_and_measure

        cls = tokenizer_config_class(args.kind)
        names = {f.name for f in cls.user_fields()}
        given = {k[2:]: v for k, v in vars(args).items() if k.startswith("s_") and v is not None}
        wrong = sorted(set(given) - names)
        if wrong:
            raise TokenizerError(f"--{wrong[0].replace('_', '-')} does not apply to {args.kind}; its settings are: "
                                 f"{', '.join('--' + n.replace('_', '-') for n in sorted(names - {'kind'}))}")
        if args.kind != "pretrained":  # a published vocabulary is fixed: 'all' could only fail
            given.setdefault("specials", "all")  # a kept tokenizer should serve every objective
        if args.save:
            lib.path(args.save)  # check the name before the work
            if lib.exists(args.save) and not args.overwrite:
                raise TokenizerError(f"a tokenizer named {args.save!r} is already kept; use --overwrite or another name")
        corpus = load_corpus(args.corpus)
        tok, stats = train_and_measure(cls(kind=args.kind, **given), corpus, args.val_fraction)
        print(f"{args.kind}: {TOKENIZERS[args.kind].description}")
        _print_stats(stats.summary())
        _print_tokens(tok, args.text)
        if args.save:
            lib.save(args.save, tok, corpus=args.corpus, corpus_hash=corpus_fingerprint(corpus), stats=stats.summary(),
                     overwrite=args.overwrite)
            print(f"kept as {args.save!r}: train with --tokenizer saved --saved-name {args.save}; "
                  f"HF format: {lib.hf_file(args.save)}")
        return 0
    if args.tok_command == "list":
        kept = lib.list()
        if not kept:
            print("no kept tokenizers; train one with: python -m workbench tokenizers train --kind bpe --save my-bpe")
        for k in kept:
            cpt = k.stats.get("chars_per_token")
            print(f"{k.name:24s} {k.kind:12s} {k.vocab_size:7d} tokens  "
                  f"{f'{cpt:.2f} chars/token' if cpt else '':18s} {k.corpus}")
        return 0
    if args.tok_command == "show":
        info = lib.info(args.name)
        print(info.describe())
        print("settings:", ", ".join(f"{k}={v}" for k, v in info.config.items()))
        if info.stats:
            _print_stats(info.stats)
        _print_tokens(lib.load(args.name), args.text)
        return 0
    lib.delete(args.name)
    print(f"deleted kept tokenizer {args.name!r}")
    return 0
