"""Masked language modelling (BERT): hide some tokens of ``[CLS] text [SEP]`` and predict them
from both sides.

Each eligible token (not a special token, not padding) is *selected* independently with
probability ``mask_rate``; a selected token is replaced by [MASK] (``mask_token_frac``), by a
random token (``random_token_frac``) or kept as it is (``keep_frac``), and the loss is taken at
the selected positions only. This is Hugging Face's ``DataCollatorForLanguageModeling`` (a
Bernoulli draw per position, special tokens at probability 0) with one difference: random
replacements are drawn from the non-special vocabulary, so masking never inserts [CLS], [PAD],
[UNK] or a sentinel into the text (HF draws from the whole vocabulary).

**Whole-word masking** (``whole_word``) selects *words* instead: each word (where words start:
:mod:`workbench.objectives.words`, from the tokens' characters, for every tokenizer family) is
selected with probability ``mask_rate``, all its tokens together, and each selected token then
gets its own [MASK] / random / keep draw. Hugging Face 5's ``whole_word_mask=True`` selects words
the same way (one Bernoulli draw per word) but makes every selected token [MASK]; its older
``DataCollatorForWholeWordMask`` drew the replacement per token, as here. Evaluation masks whole
words too (with its fixed seed), so the validation loss scores the task that is trained.

The loss is over the masked tokens only, so its curve says how well the model fills in a
token seen in context on *both* sides: not the same task as causal LM's next token, even though
both are reported in bits per character of the predicted tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ObjectiveConfig, require
from ..metrics import bits_per_char, perplexity
from ..models.base import unwrap_model
from .base import IGNORE_INDEX, IGNORED, Batch, LossOutput, Objective, TokenizedCorpus, describe_positions
from .words import doc_word_starts, stream_word_starts, word_ids

PAD, CLS, SEP, MASK = "[PAD]", "[CLS]", "[SEP]", "[MASK]"

EVAL_MASK_SEED = 0
"""Seed of the masking of the validation passages: every evaluation of every run on a corpus
(at one ``seq_len``) scores the same positions."""


@dataclass
class MaskedLMConfig(ObjectiveConfig):
    """Masked-token prediction over ``[CLS] window [SEP]`` (BERT's MLM)."""

    name: str = "mlm"
    """Training objective: the registry name in ``workbench.objectives.OBJECTIVES``."""
    mask_rate: float = 0.15
    """Fraction of the eligible tokens (not special, not padding) selected for prediction, each
    independently (BERT: 0.15)."""
    mask_token_frac: float = 0.8
    """Of the selected tokens, the fraction replaced by [MASK] in the input."""
    random_token_frac: float = 0.1
    """Of the selected tokens, the fraction replaced by a random (non-special) token."""
    keep_frac: float = 0.1
    """Of the selected tokens, the fraction left unchanged (still predicted). The three
    fractions must sum to 1."""
    whole_word: bool = False
    """Select whole words (each with probability mask_rate, all its tokens together) instead of
    single tokens; words start where the text does (letters, digits, _ and apostrophes run on)."""

    def __post_init__(self) -> None:
        require(isinstance(self.whole_word, bool), "whole_word", f"must be true or false, got {self.whole_word!r}")
        for name in ("mask_rate", "mask_token_frac", "random_token_frac", "keep_frac"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), name,
                    f"must be a number, got {value!r}")
        require(0.0 < self.mask_rate < 1.0, "mask_rate",
                f"must be in (0, 1), got {self.mask_rate}; BERT selects 0.15 of the tokens")
        for name in ("mask_token_frac", "random_token_frac", "keep_frac"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, name, f"must be in [0, 1], got {value}")
        total = self.mask_token_frac + self.random_token_frac + self.keep_frac
        keep = 1.0 - self.mask_token_frac - self.random_token_frac
        hint = (f"set keep_frac to {keep:.6g}" if 0.0 <= keep <= 1.0 else
                "lower mask_token_frac or random_token_frac")
        require(abs(total - 1.0) <= 1e-6, "keep_frac",
                f"mask_token_frac + random_token_frac + keep_frac = {self.mask_token_frac:g} + "
                f"{self.random_token_frac:g} + {self.keep_frac:g} = {total:.6g}, but they split the selected "
                f"tokens and must sum to 1 (BERT: 0.8 / 0.1 / 0.1); {hint}")


def mask_tokens(
    input_ids: torch.Tensor,
    special_mask: torch.Tensor,
    mask_id: int,
    replacement_ids: torch.Tensor,
    config: MaskedLMConfig,
    generator: torch.Generator,
    words: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking of a (B, T) batch of ids: ``(inputs, labels)``, vectorised, all randomness
    from ``generator``.

    ``special_mask`` (B, T) is True where a position may never be selected (special tokens,
    padding). Each other position is selected with probability ``config.mask_rate``; a selected
    one becomes ``mask_id`` (``mask_token_frac``), a token drawn uniformly from
    ``replacement_ids`` (``random_token_frac``; it may happen to be the original, as in BERT) or
    stays (``keep_frac``). ``labels`` holds the original id at selected positions and
    ``IGNORE_INDEX`` elsewhere.

    With ``words`` ((B, T) word index of each position within its row, < T: see
    :func:`~workbench.objectives.words.word_ids`) selection is per word instead: one uniform draw
    per word, shared by its tokens; ``special_mask`` positions stay unselected. The [MASK] /
    random / keep draw stays per token.

    >>> ids = torch.tensor([[2, 7, 8, 9, 10, 11, 12, 3, 0, 0]])  # [CLS] six tokens [SEP] [PAD] [PAD]
    >>> special = torch.isin(ids, torch.tensor([0, 2, 3]))
    >>> inputs, labels = mask_tokens(ids, special, 4, torch.arange(5, 20), MaskedLMConfig(mask_rate=0.5),
    ...                              torch.Generator().manual_seed(0))
    >>> bool((labels[special] == IGNORE_INDEX).all()), bool((inputs[special] == ids[special]).all())
    (True, True)
    >>> picked = labels != IGNORE_INDEX  # the original ids are the targets; elsewhere the input is untouched
    >>> bool((labels[picked] == ids[picked]).all()), bool((inputs[~picked] == ids[~picked]).all())
    (True, True)
    """
    if config.random_token_frac > 0 and replacement_ids.numel() == 0:
        raise ValueError("random_token_frac > 0 needs non-special tokens to draw from; the vocabulary has none")
    if words is None:  # a Bernoulli draw per position: HF's DataCollatorForLanguageModeling, draw for draw
        probability = torch.full(input_ids.shape, float(config.mask_rate))
        probability.masked_fill_(special_mask, 0.0)
        selected = torch.bernoulli(probability, generator=generator).bool()
    else:
        per_word = torch.rand(input_ids.shape, generator=generator)  # word k's draw is per_word[:, k]
        selected = (per_word.gather(1, words) < config.mask_rate) & ~special_mask
    split = torch.rand(input_ids.shape, generator=generator)  # one draw picks [MASK] / random / keep
    to_mask = selected & (split < config.mask_token_frac)
    to_random = selected & ~to_mask & (split < config.mask_token_frac + config.random_token_frac)
    inputs = input_ids
    if config.random_token_frac > 0:
        drawn = replacement_ids[torch.randint(replacement_ids.numel(), input_ids.shape, generator=generator)]
        inputs = torch.where(to_random, drawn, inputs)
    inputs = torch.where(to_mask, torch.full_like(input_ids, mask_id), inputs)
    labels = torch.where(selected, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    return inputs, labels


@dataclass(frozen=True)
class MLMVocab:
    """The ids masking needs, read from a tokenized corpus."""

    pad: int
    cls: int
    sep: int
    mask: int
    special: torch.Tensor
    """Every special id (never selected)."""
    replacements: torch.Tensor
    """The non-special ids (what a random replacement is drawn from)."""

    @classmethod
    def of(cls, corpus: TokenizedCorpus) -> MLMVocab:
        """Or a ValueError saying what to change when the tokenizer lacks a token MLM needs."""
        missing = [t for t in MaskedLM.special_tokens if t not in corpus.special_ids]
        if missing:
            raise ValueError(
                f"masked LM needs a tokenizer with {' '.join(missing)}; this one has "
                f"{' '.join(corpus.special_ids) or 'no special tokens'}. Train the tokenizer for this objective "
                f"(specials='objective' adds what it needs) or with specials='all'; a pretrained tokenizer must "
                f"already have them (BERT's does, GPT-2's does not)")
        ids = corpus.special_ids
        special = torch.tensor(sorted(set(ids.values())), dtype=torch.long)
        vocab_size = max(corpus.vocab_size, int(special.max()) + 1)
        normal = torch.ones(vocab_size, dtype=torch.bool)
        normal[special] = False
        return cls(ids[PAD], ids[CLS], ids[SEP], ids[MASK], special, torch.nonzero(normal).flatten())


@dataclass
class WordStream:
    """What whole-word masking trains on: the token stream and where its words start."""

    ids: torch.Tensor  # (N,) the stream, as causal LM reads it
    starts: torch.Tensor  # (N,) bool, True where a token starts a word

    def __len__(self) -> int:
        return len(self.ids)


class MaskedLM(Objective):
    """BERT's masked LM: random windows of the token stream as ``[CLS] w [SEP]``, masked afresh
    each step; the loss and metrics count the selected tokens only."""

    name = "mlm"
    config_cls = MaskedLMConfig
    needs = frozenset({"bidirectional"})
    special_tokens = (PAD, CLS, SEP, MASK)  # [UNK] comes with the tokenizer families that need one
    primary_metric = "loss"
    predicts = "the masked tokens (each seen with both sides of its context)"
    predicts_short = "masked token"

    config: MaskedLMConfig

    def __init__(self, config: MaskedLMConfig | None = None) -> None:
        super().__init__(config)
        self.vocab: MLMVocab | None = None
        # word boundaries come from the characters of the tokens: ask for them only when masking words
        self.wants_char_lengths = self.config.whole_word  # type: ignore[misc]

    def prepare(self, corpus: TokenizedCorpus) -> torch.Tensor | WordStream:
        """The token stream (as causal LM reads it), with where its words start when
        ``whole_word``; the special ids are kept for ``make_batch``."""
        self.vocab = MLMVocab.of(corpus)
        ids = torch.tensor(corpus.stream(), dtype=torch.long)
        return WordStream(ids, stream_word_starts(corpus)) if self.config.whole_word else ids

    def make_batch(self, data: torch.Tensor | WordStream, batch_size: int, seq_len: int,
                   generator: torch.Generator) -> Batch:
        """``batch_size`` windows of ``seq_len - 2`` tokens at random offsets, as ``[CLS] w [SEP]``,
        masked with ``generator`` (by whole words when ``data`` says where they start; the part
        of a word a window's edge cuts counts as a word). No padding and one segment:
        ``attention_mask`` and ``token_type_ids`` stay None (all ones / all zeros), so a model
        keeps its fastest attention.

        >>> from workbench.corpora import Document
        >>> from workbench.objectives.base import TokenizedDoc
        >>> corpus = TokenizedCorpus([TokenizedDoc(list(range(4, 40)), Document("x"))],
        ...                          special_ids={"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3}, vocab_size=40)
        >>> mlm = MaskedLM()
        >>> b = mlm.make_batch(mlm.prepare(corpus), 2, 8, torch.Generator().manual_seed(0))
        >>> b.input_ids.shape, b.input_ids[:, 0].tolist(), b.input_ids[:, -1].tolist()
        (torch.Size([2, 8]), [1, 1], [2, 2])
        """
        vocab = self._prepared()
        stream, starts = (data.ids, data.starts) if isinstance(data, WordStream) else (data, None)
        if self.config.whole_word and starts is None:
            raise ValueError("whole_word masking needs the WordStream that prepare() makes with it")
        n = _content_len(seq_len)
        if len(stream) < n:
            raise ValueError(f"split has {len(stream)} tokens, fewer than seq_len-2={n} (a window between [CLS] and [SEP])")
        offsets = torch.randint(len(stream) - n + 1, (batch_size,), generator=generator)  # (B,)
        at = offsets[:, None] + torch.arange(n)[None, :]  # (B, T-2) stream positions
        ids = _bracket(stream[at], vocab.cls, vocab.sep)
        words = word_ids(_bracket(starts[at], True, True)) if starts is not None else None
        inputs, labels = mask_tokens(ids, torch.isin(ids, vocab.special), vocab.mask, vocab.replacements,
                                     self.config, generator, words)
        return Batch(input_ids=inputs, labels=labels)

    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """Every token of every passage lands in exactly one window ``[CLS] w [SEP] [PAD]...`` of
        ``seq_len`` (windows of ``seq_len - 2`` tokens, the last of each passage padded, with
        ``attention_mask`` 0 on the padding), masked with the fixed seed :data:`EVAL_MASK_SEED`
        (by whole words when ``whole_word``, as in training), so every evaluation scores the same
        positions. ``label_chars`` holds the characters each selected token spells (0
        elsewhere), for bits per character of the masked tokens.

        >>> from workbench.corpora import Document
        >>> from workbench.objectives.base import TokenizedDoc
        >>> doc = TokenizedDoc(list(range(5, 12)), Document("abcdefg"), [1] * 7)
        >>> corpus = TokenizedCorpus([doc], special_ids={"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3}, vocab_size=12)
        >>> (b,) = MaskedLM().eval_batches(corpus, 4, 6)
        >>> b.attention_mask.tolist()
        [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]
        >>> original = torch.where(b.labels == -100, b.input_ids, b.labels)
        >>> original.tolist()
        [[1, 5, 6, 7, 8, 2], [1, 9, 10, 11, 2, 0]]
        """
        vocab = MLMVocab.of(passages)
        n = _content_len(seq_len)
        rows: list[list[int]] = []
        chars: list[list[int]] = []
        real: list[list[int]] = []
        starts: list[list[bool]] = []  # whole_word: where words start (each special token and pad one)
        for d in passages.docs:
            lengths = d.char_lengths or [0] * len(d.ids)
            first = doc_word_starts(d).tolist() if self.config.whole_word else []
            for s in range(0, len(d.ids), n):
                w = d.ids[s : s + n]
                pad = n - len(w)
                rows.append([vocab.cls, *w, vocab.sep] + [vocab.pad] * pad)
                chars.append([0, *lengths[s : s + n], 0] + [0] * pad)
                real.append([1] * (len(w) + 2) + [0] * pad)
                if self.config.whole_word:
                    starts.append([True, *first[s : s + n], True] + [True] * pad)
        if not rows:
            return []
        ids = torch.tensor(rows, dtype=torch.long)
        attention = torch.tensor(real, dtype=torch.long)
        never = torch.isin(ids, vocab.special) | (attention == 0)
        words = word_ids(torch.tensor(starts, dtype=torch.bool)) if self.config.whole_word else None
        inputs, labels = mask_tokens(ids, never, vocab.mask, vocab.replacements, self.config,
                                     torch.Generator().manual_seed(EVAL_MASK_SEED), words)
        if not (labels != IGNORE_INDEX).any():
            raise ValueError(f"the validation text ({int(attention.sum())} positions) is too short for masked LM to "
                             f"select any token at mask_rate={self.config.mask_rate}; use a larger eval_chars")
        label_chars = torch.where(labels != IGNORE_INDEX, torch.tensor(chars, dtype=torch.long), 0)
        segments = torch.zeros_like(ids)
        return [
            Batch(input_ids=inputs[i : i + batch_size], labels=labels[i : i + batch_size],
                  attention_mask=attention[i : i + batch_size], token_type_ids=segments[i : i + batch_size],
                  label_chars=label_chars[i : i + batch_size])
            for i in range(0, len(rows), batch_size)
        ]

    def loss(self, model: nn.Module, batch: Batch) -> LossOutput:
        """Cross-entropy over the selected positions (summed; the mean for backward). Sums:
        ``nll``, ``tokens`` (selected), ``correct`` (argmax == target) and ``chars``."""
        _, nll, sums = masked_lm_terms(model, batch)
        return LossOutput(loss=nll / sums["tokens"].clamp(min=1), sums=sums)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """Over the masked tokens: mean NLL (``loss``), ``ppl``, ``acc`` (top-1) and ``bpc`` (bits
        per character of the masked tokens' text, when the batches say how many characters)."""
        tokens = totals["tokens"]
        mean_nll = totals["nll"] / max(1.0, tokens)
        out = {"loss": mean_nll, "ppl": perplexity(mean_nll),
               "acc": totals.get("correct", 0.0) / tokens if tokens else 0.0}
        if totals.get("chars"):
            out["bpc"] = bits_per_char(totals["nll"], totals["chars"])
        return out

    def describe_batch(self, batch: Batch, tokenizer: Any = None, row: int = 0) -> list[dict[str, Any]]:
        """What one row of a batch looks like (see :func:`describe_batch`)."""
        return describe_batch(batch, tokenizer, row, mask_id=self.vocab.mask if self.vocab else None)

    def _prepared(self) -> MLMVocab:
        if self.vocab is None:
            raise RuntimeError("MaskedLM.make_batch needs prepare(train corpus) first (it reads the special ids)")
        return self.vocab


def masked_lm_terms(model: nn.Module, batch: Batch) -> tuple[Any, torch.Tensor, dict[str, torch.Tensor]]:
    """One forward pass and the masked-LM terms of a batch: (the model's output, the summed NLL
    of the selected positions, sums ``nll``, ``tokens``, ``correct`` and ``chars``). A model
    with ``sparse_logits`` runs its head at the selected positions only: the same loss, less
    compute; others return (B, T, V) logits, read at the same positions."""
    kwargs = {k: v for k, v in (("attention_mask", batch.attention_mask), ("token_type_ids", batch.token_type_ids))
              if v is not None}
    labelled = batch.labels != IGNORE_INDEX  # (B, T): the selected positions
    if "sparse_logits" in getattr(getattr(unwrap_model(model), "config", None), "capabilities", ()):
        kwargs["predict_at"] = labelled
    out = model(batch.input_ids, **kwargs)
    logits = out.logits if out.logits.dim() == 2 else out.logits[labelled]  # (N, V)
    labels = batch.labels[labelled]  # (N,)
    nll = F.cross_entropy(logits.float(), labels, reduction="sum")
    sums = {"nll": nll.detach(), "tokens": labelled.sum(), "correct": (logits.detach().argmax(-1) == labels).sum()}
    if batch.label_chars is not None:
        sums["chars"] = (batch.label_chars * labelled).sum()
    return out, nll, sums


def _bracket(rows: torch.Tensor, first: int | bool, last: int | bool) -> torch.Tensor:
    """``(B, n)`` rows between a first and a last column: ``[CLS] w [SEP]``."""
    return torch.cat([rows.new_full((len(rows), 1), first), rows, rows.new_full((len(rows), 1), last)], 1)


def _content_len(seq_len: int) -> int:
    if seq_len < 3:
        raise ValueError(f"masked LM needs seq_len >= 3 ([CLS], a token, [SEP]); got {seq_len}")
    return seq_len - 2


def describe_batch(batch: Batch, tokenizer: Any = None, row: int = 0, mask_id: int | None = None) -> list[dict[str, Any]]:
    """One dict per position of row ``row``: ``input`` (the token fed in), ``target`` (the token
    to predict, or "—" where the loss ignores it), ``made`` ("[MASK]", "random" or "kept" at
    predicted positions; a random draw that hit the original reads "kept"), ``segment`` and
    ``attention`` (1 = a real token, 0 = padding). Tokens are shown with the tokenizer's
    ``display_token`` (ids when there is none; then ``mask_id`` says which id is [MASK]). Pure:
    reads the tensors, changes nothing.

    >>> b = Batch(input_ids=torch.tensor([[1, 3, 9, 7, 2, 0]]), labels=torch.tensor([[-100, 8, 9, 6, -100, -100]]),
    ...           attention_mask=torch.tensor([[1, 1, 1, 1, 1, 0]]))
    >>> [(p["input"], p["target"], p["made"], p["attention"]) for p in describe_batch(b, mask_id=3)]
    [('1', '—', '', 1), ('3', '8', '[MASK]', 1), ('9', '9', 'kept', 1), ('7', '6', 'random', 1), ('2', '—', '', 1), ('0', '—', '', 0)]
    """
    out = describe_positions(batch, tokenizer, row)
    for p, i, y in zip(out, batch.input_ids[row].tolist(), batch.labels[row].tolist()):
        is_mask = i == mask_id or p["input"] == MASK
        p["made"] = "" if y == IGNORE_INDEX else "kept" if i == y else "[MASK]" if is_mask else "random"
    return out


def attention_matrix(batch: Batch, row: int = 0) -> torch.Tensor:
    """The (T, T) matrix of which positions each position attends to (bidirectional: every query
    sees every real key; padded keys are hidden), for the batch view.

    >>> b = Batch(input_ids=torch.zeros(1, 3, dtype=torch.long), labels=torch.zeros(1, 3, dtype=torch.long),
    ...           attention_mask=torch.tensor([[1, 1, 0]]))
    >>> attention_matrix(b).int().tolist()
    [[1, 1, 0], [1, 1, 0], [1, 1, 0]]
    """
    T = batch.input_ids.size(1)
    keys = batch.attention_mask[row].bool() if batch.attention_mask is not None else torch.ones(T, dtype=torch.bool)
    return keys[None, :].expand(T, T).clone()
