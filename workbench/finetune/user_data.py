"""A user's own labelled data (CSV or JSONL) as a :class:`~workbench.finetune.tasks.TaskData`.

Classification: columns/fields ``text,label``. Tagging: ``tokens,tags`` (in CSV, space-separated
strings; in JSONL, lists or space-separated strings), tags in BIO form (``O``, ``B-X``, ``I-X``).
An optional ``split`` column (train/val/test) keeps the user's split; without it the rows get a
seeded 80/10/10 split. Only text is parsed (csv, json), never pickles. Every problem is a
``ValueError`` that says what to fix in the file.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from pathlib import Path

from .tasks import SPLITS, TaskData, TextExample, TokenExample

MAX_BYTES = 20 * 1024 * 1024
MIN_EXAMPLES = 10
COLUMNS = {"classification": ("text", "label"), "tagging": ("tokens", "tags")}
_BIO = re.compile(r"O|[BI]-\S+")


def _read(path: Path, max_bytes: int) -> str:
    if not path.is_file():
        raise ValueError(f"{path}: no such file; give the path to a .csv or .jsonl file")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path}: the file is too big ({size / 1e6:.1f} MB; the limit is "
                         f"{max_bytes / 1e6:.1f} MB): use fewer rows")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: the file is not UTF-8 (bad byte at offset {exc.start}); "
                         "re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty; give one example per row")
    return text


def _csv_rows(text: str) -> tuple[list[str], list[tuple[int, dict]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    rows = []
    for row in reader:
        values = {(k or "").strip().lower(): v for k, v in row.items() if k is not None}
        if any((v or "").strip() for v in values.values()):
            rows.append((reader.line_num, values))
    return columns, rows


def _jsonl_rows(text: str) -> tuple[list[str], list[tuple[int, dict]]]:
    rows, columns = [], {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {n}: not valid JSON ({exc.msg}); write one JSON object per line") from None
        if not isinstance(obj, dict):
            raise ValueError(f"line {n}: expected a JSON object like {{\"text\": ..., \"label\": ...}}")
        obj = {str(k).strip().lower(): v for k, v in obj.items()}
        columns.update(dict.fromkeys(obj))
        rows.append((n, obj))
    return list(columns), rows


def _words(value, what: str, where: str) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise ValueError(f"{where}: {what} must be a list of strings or a space-separated string")


def _example(kind: str, row: dict, where: str, play: str):
    if kind == "classification":
        text, label = row.get("text"), row.get("label")
        text = "" if text is None else str(text)
        label = "" if label is None else str(label).strip()
        if not text.strip():
            raise ValueError(f"{where}: the text is empty; give every row some text (or delete the row)")
        if not label:
            raise ValueError(f"{where}: the label is empty; give every row a label")
        return TextExample(text, label, play)
    tokens = _words(row.get("tokens") or [], "tokens", where)
    tags = _words(row.get("tags") or [], "tags", where)
    if not tokens:
        raise ValueError(f"{where}: the tokens are empty; give every row some tokens (or delete the row)")
    if len(tokens) != len(tags):
        raise ValueError(f"{where}: {len(tokens)} tokens but {len(tags)} tags; give exactly one tag per token")
    for i, tag in enumerate(tags):
        if not _BIO.fullmatch(tag):
            raise ValueError(f"{where}: tag {tag!r} (token {i + 1}) is not in BIO form; use O, B-TYPE or I-TYPE")
        if tag.startswith("I-") and (i == 0 or tags[i - 1][2:] != tag[2:] or tags[i - 1] == "O"):
            raise ValueError(f"{where}: tag {tag!r} (token {i + 1}) does not continue a {tag[2:]} entity; "
                             f"start the entity with B-{tag[2:]}")
    return TokenExample(tokens, tags, play)


def _labels(example) -> set[str]:
    return {example.label} if isinstance(example, TextExample) else set(example.tags)


def _auto_split(examples: list, seed: int) -> dict[str, list]:
    """Seeded 80/10/10; an example whose labels train never sees goes to train instead."""
    order = list(examples)
    random.Random(seed).shuffle(order)
    n_val = n_test = len(order) // 10
    splits = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
    seen = set().union(*map(_labels, splits["train"]))
    for s in ("val", "test"):
        unseen = [e for e in splits[s] if not _labels(e) <= seen]
        splits[s] = [e for e in splits[s] if _labels(e) <= seen]
        splits["train"] += unseen
        seen |= set().union(set(), *map(_labels, unseen))
    return splits


def load_user_task(path: str | Path, kind: str | None = None, fmt: str | None = None,
                   max_bytes: int = MAX_BYTES, seed: int = 0, min_examples: int = MIN_EXAMPLES) -> TaskData:
    """A CSV or JSONL file (``fmt``: from the suffix unless given) as a task of ``kind``
    (``classification`` or ``tagging``; guessed from the columns when None)."""
    path = Path(path).expanduser()
    fmt = fmt or ("jsonl" if path.suffix.lower() in (".jsonl", ".json") else "csv")
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")
    text = _read(path, max_bytes)
    columns, rows = (_jsonl_rows if fmt == "jsonl" else _csv_rows)(text)
    found = ", ".join(columns) or "none"
    if kind is None:
        kind = next((k for k, cols in COLUMNS.items() if set(cols) <= set(columns)), None)
        if kind is None:
            raise ValueError(f"{path}: needs columns text,label (classification) or tokens,tags (tagging); "
                             f"found: {found}")
    if kind not in COLUMNS:
        raise ValueError(f"kind {kind!r} cannot be read from a file; use classification or tagging")
    for col in COLUMNS[kind]:
        if col not in columns:
            raise ValueError(f"{path}: missing column {col!r} for {kind}; found columns: {found}")
    if not rows:
        raise ValueError(f"{path}: the file has a header but no examples; add one example per row")
    where = "row" if fmt == "csv" else "line"
    examples, given = [], {}
    for n, row in rows:
        ex = _example(kind, row, f"{path.name} {where} {n}", path.stem)
        split = str(row.get("split") or "").strip().lower()
        if split and split not in SPLITS:
            raise ValueError(f"{path.name} {where} {n}: split {split!r} is not one of train, val, test")
        examples.append(ex)
        given[id(ex)] = split
    if len(examples) < min_examples:
        raise ValueError(f"{path}: too few examples ({len(examples)}); give at least {min_examples}")
    if any(given.values()):
        if not all(given.values()):
            raise ValueError(f"{path}: some rows have a split and some do not; fill in every split or none")
        splits = {s: [e for e in examples if given[id(e)] == s] for s in SPLITS}
        if not splits["train"]:
            raise ValueError(f"{path}: no rows have split 'train'; mark some rows train")
        seen = set().union(*map(_labels, splits["train"]))
        for s in ("val", "test"):
            unknown = set().union(set(), *map(_labels, splits[s])) - seen
            if unknown:
                raise ValueError(f"{path}: labels in the {s} split never appear in train: "
                                 f"{', '.join(sorted(unknown))}; add train examples with them or drop those rows")
    else:
        splits = _auto_split(examples, seed)
    labels = sorted(set().union(*map(_labels, splits["train"])))
    if kind == "tagging":
        labels = ["O"] + [t for t in labels if t != "O"]
    return TaskData(path.stem, kind, labels, splits["train"], splits["val"], splits["test"])
