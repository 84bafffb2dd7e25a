"""Supervised seq2seq tasks: an encoder reads a source line, a decoder writes its target.

Two tasks are built from the corpus itself (no downloads), chosen so that what cross-attention
should learn is a pattern a person can check on the attention maps:

- ``reverse-words``: the words of a line in reverse order, an anti-diagonal alignment::

      source  Now is the winter of our discontent
      target  discontent our of winter the is Now

- ``pig-latin``: each word "translated" by fixed rules (:func:`pig_latin`), a near-diagonal
  alignment with local shifts (a word's first consonants move to its end)::

      source  Now is the winter
      target  Ownay isway ethay interway

A user's parallel file, ``tsv:PATH`` (``source<TAB>target`` per line), gives real translation
pairs. Each non-empty line of a document is one example; lines longer than ``max_words`` words
are *truncated* to their first ``max_words`` words before the target is made (built-in tasks
only: cutting a translation pair would break it).

Layout (span corruption's conventions): the encoder reads ``source [SEP]``; the labels are
``target [SEP]``; the decoder reads ``[PAD] target`` ([PAD] is the start token, as in T5).
Each side is truncated to ``seq_len`` (its last position kept for [SEP]) and padded to the
longest row of *its batch* (dynamic padding), with [PAD] in the inputs and -100 in the labels.

The tokenizer: a :class:`TokenizedCorpus` carries ids, not the tokenizer, and a target (a
reversed or translated line) is new text that must be encoded. So the run sets
``objective.tokenizer = tokenizer`` before ``prepare`` / ``eval_batches``; pairs are made from
each ``TokenizedDoc.doc.text`` and encoded with it (the documents' own ids are not used).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..bucketing import bucket_batches
from ..config import ConfigError, ObjectiveConfig, require
from ..corpora import Corpus, Document, split_point
from .base import IGNORE_INDEX, Batch, TokenizedCorpus
from .encoder_decoder import EOS, PAD, EncoderDecoderObjective, pad_rows, shift_right

TASKS = ("reverse-words", "pig-latin")
"""Built-in tasks; ``tsv:PATH`` names a user's file of pairs."""
TSV_VAL_FRACTION = 0.1
"""A TSV file's last tenth of pairs (by position) is its validation set, as the corpus is cut."""


# --- the tasks: pure text functions ---------------------------------------------------------------

def reverse_words(line: str) -> str:
    """The whitespace-separated words of ``line`` in reverse order (punctuation stays on its
    word; runs of whitespace become one space).

    >>> reverse_words("Now is the winter of our discontent,")
    'discontent, our of winter the is Now'
    >>> reverse_words("  one  "), reverse_words("")
    ('one', '')
    """
    return " ".join(reversed(line.split()))


_VOWELS = set("aeiouAEIOU")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")  # letters, with inner apostrophes: "kiss'd", "o'er"


def _pig_word(word: str) -> str:
    # the leading consonant cluster: up to the first vowel; "y" after it is a vowel ("rhythm"),
    # and "qu" moves together ("queen" -> "eenquay")
    i = 0
    while i < len(word) and word[i] not in _VOWELS and not (i > 0 and word[i] in "yY"):
        i += 2 if word[i] in "qQ" and word[i + 1 : i + 2] in ("u", "U") else 1
    out = word + "way" if i == 0 else word[i:] + word[:i] + "ay"
    if word.isupper() and len(word) > 1:
        return out.upper()
    return out[0].upper() + out[1:].lower() if word[0].isupper() else out.lower()


def pig_latin(line: str) -> str:
    """Each word in Pig Latin, everything else (punctuation, spacing, digits) where it was.

    Rules: a word starting with a vowel gets "way" ("is" -> "isway"); otherwise its leading
    consonants move to the end and "ay" follows ("the" -> "ethay"; "qu" moves as one, "y" after
    the first letter counts as a vowel; a word without a vowel just gets "ay"). A word is a run
    of letters with inner apostrophes; hyphenated parts are words of their own; only a e i o u
    (either case) are vowels, so an accented vowel counts as a consonant. Case: an
    all-capital word stays capital, a capitalised one is capitalised, the rest lower-case.

    >>> pig_latin("Now is the winter of our discontent,")
    'Ownay isway ethay interway ofway ourway iscontentday,'
    >>> pig_latin("HAMLET: Queen rhythm, well-a-day! I")
    'AMLETHAY: Eenquay ythmrhay, ellway-away-ayday! Iway'
    """
    return _WORD.sub(lambda m: _pig_word(m.group()), line)


def read_tsv(path: str | Path) -> list[tuple[str, str]]:
    """The (source, target) pairs of a TSV file: one pair per line, ``source<TAB>target``. A
    ConfigError naming ``task`` says what to fix (a missing file, not UTF-8, a blank line or
    one without exactly one TAB, an empty side), with the line number."""
    p = Path(path)
    require(p.is_file(), "task", f"no TSV file at {str(p)!r}; give tsv:PATH with an existing file")
    try:
        text = p.read_bytes().decode("utf-8-sig")  # -sig: a byte-order mark is not part of the first source
    except UnicodeDecodeError as exc:
        raise ConfigError("task", f"{p} is not UTF-8 (byte {exc.start}): save it as UTF-8") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():  # the file's final newline(s)
        lines.pop()
    require(bool(lines), "task", f"{p} has no pairs; write one 'source<TAB>target' per line")
    pairs = []
    for n, line in enumerate(lines, 1):
        require(bool(line.strip()), "task", f"{p} line {n} is empty; remove it (every line is one "
                                            f"'source<TAB>target' pair)")
        cols = line.split("\t")
        require(len(cols) == 2, "task", f"{p} line {n} has {len(cols) - 1} TABs; write exactly one, between "
                                        f"the source and the target")
        source, target = cols[0].strip(), cols[1].strip()
        require(bool(source) and bool(target), "task",
                f"{p} line {n} has an empty {'source' if not source else 'target'}; fill it in or remove the line")
        pairs.append((source, target))
    return pairs


def task_pairs(task: str, documents: list[Document], split: str = "train",
               max_words: int | None = None) -> list[tuple[str, str]]:
    """The (source, target) text pairs of ``task``: for a built-in task, one per non-empty line
    of each document (truncated to ``max_words`` words), in order. ``tsv:PATH`` ignores the
    documents and reads the file: ``split="train"`` gives its first 90% of pairs by position,
    ``"val"`` the rest (the corpus's own split does not apply to another file).

    >>> task_pairs("reverse-words", [Document("To be, or not\\n\\nthat is")], max_words=3)
    [('To be, or', 'or be, To'), ('that is', 'is that')]
    >>> task_pairs("pig-latin", [Document("the rest")])
    [('the rest', 'ethay estray')]
    """
    if task.startswith("tsv:"):
        pairs = read_tsv(task[4:])
        cut = split_point(len(pairs), TSV_VAL_FRACTION)
        return pairs[:cut] if split == "train" else pairs[cut:]
    rewrite = {"reverse-words": reverse_words, "pig-latin": pig_latin}[task]
    out = []
    for d in documents:
        for line in d.text.split("\n"):
            words = line.split()
            if words:
                source = " ".join(words[:max_words] if max_words else words)
                out.append((source, rewrite(source)))
    return out


# --- configuration --------------------------------------------------------------------------------

@dataclass
class Seq2SeqTaskConfig(ObjectiveConfig):
    """Supervised seq2seq: the encoder reads a source line, the decoder writes its target."""

    name: str = "seq2seq"
    """Training objective: the registry name in ``workbench.objectives.OBJECTIVES``."""
    task: str = "reverse-words"
    """'reverse-words' or 'pig-latin' (made from the corpus's lines), or 'tsv:PATH' (source<TAB>target per line)."""
    bucketing: bool = True
    """Batch training pairs of similar length together (less padding); False draws pairs at random."""
    max_words: int = 12
    """Lines of the built-in tasks longer than this are truncated to their first max_words words."""
    score_examples: int = 128
    """Validation pairs decoded (greedy) and scored with BLEU, ROUGE and exact match at each evaluation (0 = none)."""

    def __post_init__(self) -> None:
        require(isinstance(self.task, str) and (self.task in TASKS or self.task.startswith("tsv:")), "task",
                f"unknown task {self.task!r}; choose one of {', '.join(TASKS)} or tsv:PATH "
                f"(a file of source<TAB>target lines)")
        require(isinstance(self.bucketing, bool), "bucketing", f"must be true or false, got {self.bucketing!r}")
        require(isinstance(self.max_words, int) and not isinstance(self.max_words, bool) and self.max_words > 0,
                "max_words", f"must be a positive integer, got {self.max_words!r}")
        require(isinstance(self.score_examples, int) and not isinstance(self.score_examples, bool)
                and self.score_examples >= 0, "score_examples",
                f"must be an integer >= 0 (0 = do not decode at evaluations), got {self.score_examples!r}")

    def check_inputs(self) -> None:
        """A TSV file is read now (before the tokenizer is trained), naming ``task`` and the line to fix."""
        if self.task.startswith("tsv:"):
            read_tsv(self.task[4:])


# --- batches --------------------------------------------------------------------------------------

@dataclass
class Seq2SeqData:
    """Tokenized pairs of a split and the order that buckets them."""

    sources: list[list[int]]
    targets: list[list[int]]
    texts: list[tuple[str, str]]
    order: list[int]
    """Pair indices sorted by source + target length (stable): consecutive pairs are a bucket."""


@dataclass
class Seq2SeqBatch(Batch):
    """A seq2seq batch: ``labels`` are the decoder targets (B, T')."""

    target_text: torch.Tensor | None = None
    """(B, T') bool, True where the label is a target token (not [SEP] or padding): what bpc scores."""
    padding_fraction: float = 0.0
    """Padded positions over all positions, encoder and decoder together (for the trainer's log)."""


def _assemble(sources: list[list[int]], targets: list[list[int]], chars: list[list[int]] | None,
              pad: int, eos: int, seq_len: int) -> Seq2SeqBatch:
    """Truncate each side to ``seq_len`` (keeping [SEP]) and pad to the batch's longest row."""
    enc_rows = [s[: seq_len - 1] + [eos] for s in sources]
    tgt_rows = [t[: seq_len - 1] + [eos] for t in targets]
    input_ids, encoding = pad_rows(enc_rows, pad)  # (B, S)
    labels, decoding = pad_rows(tgt_rows, IGNORE_INDEX)  # (B, T')
    real = int(encoding.sum()) + int(decoding.sum())
    label_chars = None
    if chars is not None:
        label_chars = pad_rows([c[: seq_len - 1] + [0] for c in chars], 0)[0]  # [SEP] spells nothing
    return Seq2SeqBatch(input_ids=input_ids, labels=labels, attention_mask=encoding.long(),
                        decoder_input_ids=shift_right(labels, decoding, pad), decoder_attention_mask=decoding.long(),
                        label_chars=label_chars, target_text=decoding & (labels != eos),
                        padding_fraction=1.0 - real / (encoding.numel() + decoding.numel()))


# --- the objective --------------------------------------------------------------------------------

class Seq2SeqTask(EncoderDecoderObjective):
    """Supervised pairs (reverse the words, Pig Latin, a user's TSV) for an encoder-decoder."""

    name = "seq2seq"
    config_cls = Seq2SeqTaskConfig
    text_field, text_name = "target_text", "text"  # bpc over the target words' tokens, not [SEP]
    primary_metric = "loss"
    predicts = "the target of each source line (a supervised seq2seq task)"
    predicts_short = "seq2seq target"

    config: Seq2SeqTaskConfig

    def __init__(self, config: Seq2SeqTaskConfig | None = None) -> None:
        super().__init__(config)
        self.tokenizer: Any = None
        """Set by the run before ``prepare`` / ``eval_batches``: targets are new text to encode."""
        self.eval_pairs: list[tuple[str, str]] = []
        """The validation (source, target) texts ``eval_batches`` used, in order (for decoding scores)."""

    def use_tokenizer(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def special_ids(self, tokenizer: Any = None) -> tuple[int, int]:
        """([PAD], [SEP]) ids of ``tokenizer`` (default: the objective's own)."""
        tok = tokenizer if tokenizer is not None else self._tokenizer()
        return tok.special_id(PAD), tok.special_id(EOS)

    def _tokenizer(self) -> Any:
        if self.tokenizer is None:
            raise RuntimeError("Seq2SeqTask needs its tokenizer: set objective.tokenizer = tokenizer before "
                               "prepare() / eval_batches() (targets are new text to encode)")
        return self.tokenizer

    def tokenizer_text(self, train: Corpus) -> str:
        """The training pairs' sources and targets, one per line: what the tokenizer learns from.
        Targets are new text (Pig Latin words, a TSV's other language) that the corpus alone would
        leave out of a word or subword vocabulary; a TSV task never reads the corpus at all."""
        pairs = task_pairs(self.config.task, train.documents, "train", self.config.max_words)
        return "\n".join(f"{s}\n{t}" for s, t in pairs)

    def pairs(self, corpus: TokenizedCorpus, split: str) -> list[tuple[str, str]]:
        """The text pairs of a tokenized split (see :func:`task_pairs`); a clear error if there are none."""
        texts = task_pairs(self.config.task, [d.doc for d in corpus.docs], split, self.config.max_words)
        if not texts:
            raise ValueError(f"the {split} split has no non-empty lines to make {self.config.task} pairs from; "
                             f"use a corpus with text in both splits")
        return texts

    def prepare(self, corpus: TokenizedCorpus) -> Seq2SeqData:
        """The training split's pairs, tokenized, and their length order (for bucketing)."""
        tok = self._tokenizer()
        texts = self.pairs(corpus, "train")
        sources = tok.encode_batch([s for s, _ in texts])
        targets = tok.encode_batch([t for _, t in texts])
        lengths = [len(s) + len(t) for s, t in zip(sources, targets)]
        return Seq2SeqData(sources, targets, texts, sorted(range(len(texts)), key=lengths.__getitem__))

    def make_batch(self, data: Seq2SeqData, batch_size: int, seq_len: int, generator: torch.Generator) -> Seq2SeqBatch:
        """``batch_size`` pairs: with bucketing, ``batch_size`` consecutive pairs of the length
        order from a random start (a window rather than fixed chunks, so which pairs share a batch
        changes from step to step); without, a random sample. Padded to the batch's longest row."""
        require(seq_len >= 2, "seq_len", f"seq2seq needs seq_len >= 2 (a token and [SEP]), got {seq_len}")
        n = len(data.sources)
        if self.config.bucketing and n > batch_size:
            start = int(torch.randint(n - batch_size + 1, (1,), generator=generator))
            picks = data.order[start : start + batch_size]
        else:
            picks = torch.randint(n, (batch_size,), generator=generator).tolist()  # with replacement, like the others
        pad, eos = self.special_ids()
        return _assemble([data.sources[i] for i in picks], [data.targets[i] for i in picks], None, pad, eos, seq_len)

    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """Every validation pair once, in batches of ``batch_size``: bucketed (length order) when
        ``bucketing`` is on, else in corpus order; the same for every run. ``label_chars`` holds the
        characters each target token spells ([SEP] and padding: 0). The pairs are kept in
        :attr:`eval_pairs` for :func:`workbench.scoring.decode_scores`."""
        tok = self._tokenizer()
        texts = self.eval_pairs = self.pairs(passages, "val")
        sources = tok.encode_batch([s for s, _ in texts])
        targets, chars = zip(*tok.encode_with_lengths([t for _, t in texts]))
        if self.config.bucketing:
            batches = bucket_batches([len(s) + len(t) for s, t in zip(sources, targets)], batch_size, shuffle=False)
        else:
            batches = [list(range(i, min(i + batch_size, len(texts)))) for i in range(0, len(texts), batch_size)]
        pad, eos = self.special_ids()
        return [_assemble([sources[i] for i in b], [list(targets[i]) for i in b], [list(chars[i]) for i in b],
                          pad, eos, seq_len) for b in batches]

    # -- the pair whose attention a run snapshots at each evaluation --

    def attention_probe(self, probe_ids: list[int], tokenizer: Any,
                        seq_len: int | None = None) -> tuple[list[int], list[int]] | None:
        """A validation pair laid out as training reads it: the encoder gets ``source [SEP]``,
        the decoder ``[PAD] target`` (teacher forcing), each at most ``seq_len`` tokens. The first
        pair of 3 to 12 words that fits (short: a map a person can read; 3 words: an alignment to
        see), else the first of at least 3 words, else the first, cut to fit. ``probe_ids`` is not
        used: the probe text is no pair. None before ``eval_batches`` has made the pairs."""
        if not self.eval_pairs:
            return None
        pad, eos = self.special_ids(tokenizer)
        words = [len(source.split()) for source, _ in self.eval_pairs]
        pick = next((i for i, n in enumerate(words) if n >= 3), 0)
        for i in (i for i, n in enumerate(words) if 3 <= n <= 12):
            source, target = self.eval_pairs[i]
            if seq_len is None or max(len(tokenizer.encode(source)), len(tokenizer.encode(target))) < seq_len:
                pick = i
                break
        source_ids, target_ids = (tokenizer.encode(text) for text in self.eval_pairs[pick])
        keep = len(source_ids) + len(target_ids) if seq_len is None else seq_len - 1  # one place for [SEP] / [PAD]
        return source_ids[:keep] + [eos], [pad] + target_ids[:keep]

