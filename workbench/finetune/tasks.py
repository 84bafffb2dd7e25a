"""Built-in labelled tasks for fine-tuning heads, cut from the built-in Shakespeare corpus.

Three tasks, one per head kind, all split **by play** so no play's text, names or phrasing
leaks from train into evaluation (:data:`TEST_PLAYS`, :data:`VAL_PLAYS`, the rest train):

- ``genre`` (classification): a ~320-character passage of dialogue -> comedy/history/tragedy;
- ``names`` (tagging): a line of dialogue -> BIO tags for the play's character names;
- ``qa`` (extractive QA): "Who says '...'?" over a stretch of dialogue with its speaker labels.

Each task builds in about a second from the cached corpus and is the same for a seed (whatever
``PYTHONHASHSEED``). User data (CSV / JSONL) is read by :mod:`workbench.finetune.user_data`.
"""

from __future__ import annotations

import random
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Literal, Union

from ..corpora import Corpus, Document, load_shakespeare

TEST_PLAYS = ("twelfth-night", "the-tempest", "henry-v", "richard-iii", "macbeth", "julius-caesar")
VAL_PLAYS = ("as-you-like-it", "henry-iv-part-1", "othello")
GENRE_LABELS = {"comedies": "comedy", "problems": "comedy", "romances": "comedy",
                "histories": "history", "tragedies": "tragedy", "roman": "tragedy"}
"""The corpus's six folders folded into three classes (romances and problem plays end well)."""
SPLITS = ("train", "val", "test")


# --- examples and task data ----------------------------------------------------------------------

@dataclass(frozen=True)
class TextExample:
    text: str
    label: str
    play: str = ""


@dataclass(frozen=True)
class TokenExample:
    tokens: list[str]
    tags: list[str]
    play: str = ""


@dataclass(frozen=True)
class QAExample:
    """``context[answer_start:answer_start + len(answer_text)] == answer_text`` always."""

    question: str
    context: str
    answer_start: int
    answer_text: str
    play: str = ""

    def __post_init__(self) -> None:
        end = self.answer_start + len(self.answer_text)
        if self.answer_start < 0 or self.context[self.answer_start:end] != self.answer_text:
            raise ValueError(f"answer {self.answer_text!r} is not at offset {self.answer_start} of the context")


Example = Union[TextExample, TokenExample, QAExample]


@dataclass
class TaskData:
    """A task's three splits; ``labels`` are the classes (classification) or the tags (tagging)."""

    name: str
    kind: Literal["classification", "tagging", "qa"]
    labels: list[str]
    train: list = field(default_factory=list)
    val: list = field(default_factory=list)
    test: list = field(default_factory=list)

    def split(self, name: str) -> list:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def label_counts(self, split: str) -> Counter:
        """Examples per class (classification), tags per tag (tagging), nothing for QA."""
        examples = self.split(split)
        if self.kind == "classification":
            return Counter(e.label for e in examples)
        if self.kind == "tagging":
            return Counter(t for e in examples for t in e.tags)
        return Counter()

    def summary(self) -> str:
        """Counts per split and per label, and the majority-class share (the baseline to beat)."""
        lines = [f"{self.name} ({self.kind}): " + ", ".join(f"{s} {len(self.split(s))}" for s in SPLITS)]
        for s in SPLITS:
            counts = self.label_counts(s)
            total = sum(counts.values())
            if not total:
                continue
            parts = ", ".join(f"{label} {counts[label]} ({counts[label] / total:.1%})" for label in self.labels)
            label, n = counts.most_common(1)[0]
            unit = "tokens" if self.kind == "tagging" else "examples"
            lines.append(f"  {s}: {parts}; majority {label} {n / total:.1%} of {unit}")
        return "\n".join(lines)


# --- plays ----------------------------------------------------------------------------------------

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}


def play_slug(title: str) -> str:
    """A play's stable name: lowercase, punctuation dropped, spaces to hyphens, "Part I" -> "part-1".

    >>> play_slug("Henry IV, Part I"), play_slug("Henry VI, Part 2"), play_slug("A Midsummer Night's Dream")
    ('henry-iv-part-1', 'henry-vi-part-2', 'a-midsummer-nights-dream')
    """
    words = re.sub(r"[^\w\s-]", "", title.lower()).split()
    words = [str(_ROMAN.get(w, w)) if i and words[i - 1] == "part" else w for i, w in enumerate(words)]
    return "-".join(words)


def split_of(slug: str) -> str:
    """``'test'``, ``'val'`` or ``'train'`` for a play's slug."""
    return "test" if slug in TEST_PLAYS else "val" if slug in VAL_PLAYS else "train"


@lru_cache(maxsize=64)
def speeches(doc: Document) -> list[tuple[str, list[str]]]:
    """``(speaker label, lines)`` for every speech of a play (its text is ``LABEL:\\nline...``
    blocks separated by blank lines); a label-like line inside a speech (a stray heading) is
    dropped. Cached per play: treat the result as read-only.

    >>> speeches(Document("ROMEO:\\nHe jests.\\nBut soft!\\n\\nJULIET:\\nSCENE I:\\nAy me!"))
    [('ROMEO', ['He jests.', 'But soft!']), ('JULIET', ['Ay me!'])]
    """
    out = []
    for block in doc.text.split("\n\n"):
        label, *lines = block.split("\n")
        lines = [line for line in lines if not (line[-1:] == ":" and line.isupper())]  # "SCENE I:"
        if label.endswith(":") and lines:
            out.append((label[:-1].strip(), lines))
    return out


def _by_split(corpus: Corpus | None, make: Callable[[Document, str, random.Random], list],
              seed: int) -> dict[str, list]:
    """Run ``make(play, slug, rng)`` for every play, pooled by its split, then shuffled per split.

    Each play gets its own generator (seeded by seed and slug), so adding a play changes no other.
    """
    corpus = corpus if corpus is not None else load_shakespeare()
    out: dict[str, list] = {s: [] for s in SPLITS}
    for doc in corpus.documents:
        slug = play_slug(doc.title)
        out[split_of(slug)] += make(doc, slug, random.Random(f"{seed}:{slug}"))
    for s in SPLITS:
        random.Random(f"{seed}:{s}").shuffle(out[s])
    return out


def _task(name: str, kind, labels: list[str], splits: dict[str, list]) -> TaskData:
    return TaskData(name, kind, labels, splits["train"], splits["val"], splits["test"])


# --- genre -----------------------------------------------------------------------------------------

def passages(lines: Sequence[str], chars: int) -> list[str]:
    """Whole lines packed into consecutive passages of at most ``chars`` characters (a longer line
    stands alone); a short tail (under half of ``chars``) joins the passage before it.

    >>> passages(["aaaa", "bb", "cc", "d"], 7)
    ['aaaa\\nbb', 'cc\\nd']
    """
    out: list[list[str]] = []
    size = 0
    for line in lines:
        if out and size + 1 + len(line) <= chars:
            out[-1].append(line)
            size += 1 + len(line)
        else:
            out.append([line])
            size = len(line)
    if len(out) > 1 and size < chars // 2:
        out[-2] += out.pop()
    return ["\n".join(p) for p in out]


def genre_task(corpus: Corpus | None = None, chars: int = 320, seed: int = 0) -> TaskData:
    """Passages of about ``chars`` characters of dialogue, labelled comedy/history/tragedy.

    Speaker labels are dropped (a play's cast would give it away); the passages are
    non-overlapping and cover each play's dialogue.
    """
    def make(doc: Document, slug: str, rng: random.Random) -> list[TextExample]:
        lines = [line for _, speech in speeches(doc) for line in speech]
        return [TextExample(p, GENRE_LABELS[doc.genre], slug) for p in passages(lines, chars)]

    return _task("genre", "classification", ["comedy", "history", "tragedy"], _by_split(corpus, make, seed))


# --- names ------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+(?:'(?!s\b)\w+)*|'s\b|[^\w\s]")
_SMALL = {"of", "the", "and", "de", "la", "le", "du", "to"}


def tokenize(line: str) -> list[str]:
    """Words with punctuation split off, and a possessive "'s" as its own token (so "Romeo's" holds
    the name "Romeo"); inner apostrophes stay ("o'er").

    >>> tokenize("Romeo, Romeo's o'er-night; 'tis he!")
    ['Romeo', ',', 'Romeo', "'s", "o'er", '-', 'night', ';', "'", 'tis', 'he', '!']
    """
    return _TOKEN.findall(line)


def title_name(label: str) -> str:
    """A speaker label as it is written in dialogue.

    >>> title_name("LADY CAPULET"), title_name("DUKE OF VENICE"), title_name("KING HENRY V")
    ('Lady Capulet', 'Duke of Venice', 'King Henry V')
    """
    words = label.split()
    return " ".join(w.lower() if i and w.lower() in _SMALL else w if re.fullmatch(r"[IVXL]+", w)
                    else w.capitalize() for i, w in enumerate(words))


def lowercase_words(corpus: Corpus) -> set[str]:
    """Every word that appears written in lowercase: a word never so written is a proper noun.

    >>> sorted(lowercase_words(Corpus("c", [Document("The lord, Lord Romeo's man.")])))
    ['lord', 'man']
    """
    words = (w.strip(".,;:!?'\"()[]-") for w in set(corpus.text.split()))
    return {w for w in words if w.isalpha() and w.islower()}


@dataclass(frozen=True)
class PlayNames:
    """What counts as a name in a play: the title-cased full speaker names ("Lady Capulet", matched
    as a whole) and each speaker-label word that is a proper noun ("Capulet", "Romeo", never
    "Lady", "First", "Nurse": those are written in lowercase somewhere in the corpus)."""

    phrases: frozenset[tuple[str, ...]]
    words: frozenset[str]

    @cached_property
    def tokens(self) -> frozenset[str]:
        """Every token that can be part of a name."""
        return self.words | {w for p in self.phrases for w in p}

    @cached_property
    def by_first(self) -> dict[str, list[tuple[str, ...]]]:
        """Full names by their first word, longest first."""
        out: dict[str, list[tuple[str, ...]]] = {}
        for p in sorted(self.phrases, key=lambda p: (-len(p), p)):
            out.setdefault(p[0], []).append(p)
        return out


def play_names(doc: Document, common: set[str]) -> PlayNames:
    labels = {part.strip(" :") for label, _ in speeches(doc) for part in label.split("&")}
    phrases, words = set(), set()
    for label in filter(None, labels):
        name = tuple(tokenize(title_name(label)))
        if len(name) > 1:
            phrases.add(name)
        words |= {w for w in name if len(w) > 2 and w.isalpha() and w.lower() not in common
                  and not re.fullmatch(r"[IVXL]+", w)}
    return PlayNames(frozenset(phrases), frozenset(words))


def bio_tags(tokens: Sequence[str], names: PlayNames) -> list[str]:
    """``B-NAME``/``I-NAME``/``O``: a full name matches as a whole (longest first), a name word
    alone; adjacent name tokens ("Romeo Montague") form one entity.

    >>> names = PlayNames(frozenset({("Lady", "Capulet")}), frozenset({"Capulet", "Romeo"}))
    >>> bio_tags(["Lady", "Capulet", "and", "Romeo", "Capulet", "'s", "Lady"], names)
    ['B-NAME', 'I-NAME', 'O', 'B-NAME', 'I-NAME', 'O', 'O']
    """
    if names.tokens.isdisjoint(tokens):
        return ["O"] * len(tokens)
    inside = [False] * len(tokens)
    i = 0
    while i < len(tokens):
        n = next((len(p) for p in names.by_first.get(tokens[i], ()) if tuple(tokens[i:i + len(p)]) == p), 1)
        if n > 1 or tokens[i] in names.words:
            inside[i:i + n] = [True] * n
        i += n
    return ["O" if not t else "I-NAME" if i and inside[i - 1] else "B-NAME" for i, t in enumerate(inside)]


def names_task(corpus: Corpus | None = None, seed: int = 0, max_lines: int | None = None,
               empty_share: float = 0.25) -> TaskData:
    """Lines of dialogue tagged with the play's character names (see :class:`PlayNames`).

    Every line mentioning a name is kept, plus lines without one so that they are
    ``empty_share`` of the kept lines (a tagger must also learn to say "no name");
    ``max_lines`` caps each play's lines (None: no cap), sampled with the seed.
    """
    corpus = corpus if corpus is not None else load_shakespeare()
    common = lowercase_words(corpus)

    def make(doc: Document, slug: str, rng: random.Random) -> list[TokenExample]:
        names = play_names(doc, common)
        keys = sorted(names.words | {" ".join(p) for p in names.phrases}, key=len, reverse=True)
        maybe = re.compile(r"\b(?:%s)\b" % "|".join(map(re.escape, keys)) if keys else r"(?!)")
        with_name, without = [], []
        for _, lines in speeches(doc):
            for line in lines:
                tokens = tokenize(line) if maybe.search(line) else None  # most lines name nobody
                tags = bio_tags(tokens, names) if tokens else []
                if "B-NAME" in tags:
                    with_name.append(TokenExample(tokens, tags, slug))
                elif line.strip():
                    without.append(line)
        n_without = min(len(without), round(len(with_name) * empty_share / (1 - empty_share)))
        sampled = [tokenize(line) for line in rng.sample(without, n_without)]
        kept = with_name + [TokenExample(t, ["O"] * len(t), slug) for t in sampled]
        if max_lines is not None and len(kept) > max_lines:
            kept = rng.sample(kept, max_lines)
        return kept

    return _task("names", "tagging", ["O", "B-NAME", "I-NAME"], _by_split(corpus, make, seed))


# --- qa ----------------------------------------------------------------------------------------------

def _windows(doc: Document, context_chars: int) -> list[list[tuple[str, list[str]]]]:
    """Consecutive speeches, non-overlapping, each group rendered at most ``context_chars`` long
    (a speech too long on its own is cut to the whole lines that fit)."""
    out, group, size = [], [], 0
    for label, lines in speeches(doc):
        n = len(label) + 1 + sum(len(line) + 1 for line in lines)  # "LABEL:" + "\nline" each
        if group and size + 2 + n <= context_chars:  # a blank line between speeches
            group.append((label, lines))
            size += 2 + n
            continue
        if group:
            out.append(group)
        while n > context_chars and len(lines) > 1:
            n -= len(lines[-1]) + 1
            lines = lines[:-1]
        group, size = [(label, lines)], n
    if group:
        out.append(group)
    return out


def qa_example(group: list[tuple[str, list[str]]], rng: random.Random, slug: str,
               max_quote_words: int = 8) -> QAExample | None:
    """One "Who says '...'?" question over a group of speeches, or None when no line will do
    (the quote must be unique in the context and its speaker a single person)."""
    context = "\n\n".join(label + ":\n" + "\n".join(lines) for label, lines in group)
    candidates, start = [], 0
    for label, lines in group:
        label_start = start
        for line in lines:
            quote = " ".join(line.split()[:max_quote_words]).rstrip(",;:")
            if "&" not in label and len(quote.split()) >= 3 and context.count(quote) == 1:
                candidates.append((quote, label_start, label))
        start += len(label) + 2 + sum(len(line) + 1 for line in lines) + 1
    if not candidates:
        return None
    quote, at, label = rng.choice(candidates)
    return QAExample(f"Who says \"{quote}\"?", context, at, label, slug)


def qa_task(corpus: Corpus | None = None, seed: int = 0, context_chars: int = 600) -> TaskData:
    """Extractive QA: the context is a stretch of dialogue with its ``SPEAKER:`` labels, the
    question quotes (up to 8 words of) one line, the answer is the label of the speech it is in."""
    def make(doc: Document, slug: str, rng: random.Random) -> list[QAExample]:
        found = (qa_example(g, rng, slug) for g in _windows(doc, context_chars))
        return [e for e in found if e is not None]

    return _task("qa", "qa", [], _by_split(corpus, make, seed))


# --- label budgets and lookup -----------------------------------------------------------------------

def _quotas(counts: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` across labels as equally as their counts allow (a small label gives all it has,
    the rest share what it could not).

    >>> _quotas({"a": 2, "b": 50, "c": 50}, 30)
    {'a': 2, 'b': 14, 'c': 14}
    """
    quotas, left, rem = {}, sorted(counts, key=lambda k: (counts[k], k)), n
    while left and counts[left[0]] <= rem // len(left):
        quotas[left[0]] = counts[left[0]]
        rem -= counts[left.pop(0)]
    for i, label in enumerate(sorted(left)):
        quotas[label] = rem // len(left) + (i < rem % len(left))
    return {k: quotas[k] for k in sorted(counts)}


def sample_budget(examples: Sequence, n: int | str | None, seed: int = 0, balanced: bool = True) -> list:
    """``n`` training examples, the same for a seed (a label budget: "train on 100 labels").

    Classification examples are balanced across labels (as equally as possible); a label with
    fewer than its share gives all it has, the others make up the difference, and a
    ``UserWarning`` names it. ``n`` of None or ``"all"``, or more than there are, gives them all
    (no error: a budget is a ceiling).
    """
    if n is None or n == "all":
        return list(examples)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"budget must be a whole number of examples >= 0 or 'all', got {n!r}")
    rng = random.Random(seed)
    if n >= len(examples):
        out = list(examples)
        rng.shuffle(out)
        return out
    if not (balanced and examples and all(isinstance(e, TextExample) for e in examples)):
        return rng.sample(list(examples), n)
    by_label: dict[str, list] = {}
    for e in examples:
        by_label.setdefault(e.label, []).append(e)
    quotas = _quotas({k: len(v) for k, v in by_label.items()}, n)
    share = n // len(by_label)
    short = {k: len(v) for k, v in by_label.items() if len(v) < share}
    if short:
        warnings.warn(f"label budget {n}: fewer examples than the balanced share ({share}) for "
                      + ", ".join(f"{k!r} ({v})" for k, v in sorted(short.items()))
                      + "; the other labels make up the difference", UserWarning, stacklevel=2)
    out = [e for k in sorted(by_label) for e in rng.sample(by_label[k], quotas[k])]
    rng.shuffle(out)
    return out


TASKS: dict[str, Callable[..., TaskData]] = {"genre": genre_task, "names": names_task, "qa": qa_task}


def load_task(name_or_spec: str, **kwargs) -> TaskData:
    """A built-in task by name (``genre``, ``names``, ``qa``) or a user file (``csv:PATH``,
    ``jsonl:PATH``); ``kwargs`` go to the builder."""
    if name_or_spec in TASKS:
        return TASKS[name_or_spec](**kwargs)
    prefix, _, path = name_or_spec.partition(":")
    if prefix in ("csv", "jsonl") and path:
        from .user_data import load_user_task

        return load_user_task(path, fmt=prefix, **kwargs)
    raise ValueError(f"unknown task {name_or_spec!r}: choose one of {', '.join(TASKS)}, "
                     "or give a file as csv:PATH or jsonl:PATH")
