"""Span corruption (T5): drop random spans of a window, each behind one sentinel, and have a
decoder write the dropped spans back.

A window of raw text tokens is split into alternating kept and *noise* spans by
:func:`random_spans_noise_mask` (T5's function of the same name, in torch). The encoder reads
the kept tokens with each noise span replaced by one sentinel; the decoder writes every span
after its sentinel (Raffel et al. 2020, ``t5.data.preprocessors.span_corruption``)::

    text     The cat sat on the mat
    noise        ^^^^^^^        ^^^
    input    The <extra_id_0> on the <extra_id_1> [SEP]
    target   <extra_id_0> cat sat <extra_id_1> mat [SEP]

As in T5, how many tokens are noise and in how many spans depends on the window length alone
(:func:`span_counts`); only where the spans fall is random. Where this differs from T5:

- the end-of-sequence token is ``[SEP]`` (our tokenizers have no ``</s>``) and padding is
  ``[PAD]``; the decoder starts from ``[PAD]``, T5's decoder start token too;
- the raw window for a ``seq_len`` (:func:`window_layout`) is the longest whose encoder input
  *and* decoder target fit ``seq_len``: T5's ``random_spans_helper`` fits the input and gives
  the target a length of its own, but our models have one context for both (at the default
  settings only the input binds: seq_len 512 reads 568 tokens, T5's own numbers);
- when the rounding asks for more spans than there are kept tokens to separate them
  (``noise_density`` above 0.5 with short spans) the spans are capped at the kept tokens: T5's
  segmentation is undefined there.

The loss is cross-entropy over every target token, sentinels and EOS included (as T5 trains);
bits per character counts only the span tokens' predictions over their characters, since a
sentinel or EOS spells no text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from ..config import ConfigError, ObjectiveConfig, require
from ..tokenizers.base import sentinel_tokens
from .base import IGNORE_INDEX, Batch, TokenizedCorpus
from .encoder_decoder import EOS, PAD, EncoderDecoderObjective, pad_rows, shift_right
from .spans import SpanLayout, corrupt, fill_sentinels, random_spans_noise_mask, span_counts, window_layout  # noqa: F401 (re-exported)

EVAL_MASK_SEED = 0
"""Seed of the spans dropped from the validation passages: every evaluation of every run on a
corpus (at one ``seq_len`` and these settings) scores the same spans."""


# --- the objective ----------------------------------------------------------------------------------

@dataclass
class SpanCorruptionConfig(ObjectiveConfig):
    """Span corruption (T5): the encoder reads a window with spans replaced by sentinels, the
    decoder writes the spans."""

    name: str = "span"
    """Training objective: the registry name in ``workbench.objectives.OBJECTIVES``."""
    noise_density: float = 0.15
    """Fraction of each window's tokens dropped into spans (T5: 0.15)."""
    mean_noise_span_length: float = 3.0
    """Mean length of a dropped span, in tokens (T5: 3); 1 drops single tokens, as MLM does."""

    def __post_init__(self) -> None:
        for name in ("noise_density", "mean_noise_span_length"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), name,
                    f"must be a number, got {value!r}")
        require(0.0 < self.noise_density < 1.0, "noise_density",
                f"must be in (0, 1), got {self.noise_density}; T5 drops 0.15 of the tokens")
        require(self.mean_noise_span_length >= 1.0, "mean_noise_span_length",
                f"must be at least 1 token, got {self.mean_noise_span_length}; T5 uses 3")

    def layout(self, seq_len: int) -> SpanLayout:
        """The raw window of ``seq_len`` (see :func:`window_layout`); ConfigError naming seq_len if too short."""
        require(seq_len >= 3, "seq_len",
                f"span corruption needs seq_len >= 3 (a kept token, a sentinel, EOS), got {seq_len}")
        return window_layout(seq_len, float(self.noise_density), float(self.mean_noise_span_length))

    def extra_special_tokens(self, seq_len: int) -> tuple[str, ...]:
        """One sentinel per span of the longest window (``<extra_id_0>`` ...); none while seq_len
        is not known (0: the run's own check asks for it).

        >>> len(SpanCorruptionConfig().extra_special_tokens(512)), SpanCorruptionConfig().extra_special_tokens(8)
        (28, ('<extra_id_0>',))
        """
        return tuple(sentinel_tokens(self.layout(seq_len).spans)) if seq_len else ()


@dataclass(frozen=True)
class SpanIds:
    """The ids span corruption needs, read from a tokenized corpus."""

    pad: int
    eos: int
    sentinels: torch.Tensor
    """(K,) the id of ``<extra_id_i>`` at index i (T5 places them counting down from the top id)."""

    @classmethod
    def of(cls, corpus: TokenizedCorpus) -> SpanIds:
        """Or a ConfigError naming ``sentinels`` when the tokenizer lacks what the objective needs."""
        ids = corpus.special_ids
        names = sentinel_tokens(len(ids) + 1)
        count = next(i for i, t in enumerate(names) if t not in ids)  # <extra_id_0>, <extra_id_1>... without a gap
        missing = [t for t in SpanCorruption.special_tokens if t not in ids] + ([] if count else ["<extra_id_0>..."])
        if missing:
            raise ConfigError("sentinels" if count == 0 else "specials", (
                f"span corruption needs a tokenizer with {' '.join(missing)}; this one has "
                f"{' '.join(ids) or 'no special tokens'}. Train the tokenizer for this objective (specials='objective' "
                f"adds [PAD], [SEP] and the sentinels the window needs) or set the tokenizer's sentinels; a "
                f"pretrained tokenizer must already have them (T5's does)"))
        return cls(ids[PAD], ids[EOS], torch.tensor([ids[t] for t in names[:count]], dtype=torch.long))

    def check(self, layout: SpanLayout, seq_len: int) -> None:
        require(layout.spans <= len(self.sentinels), "sentinels",
                f"a window of seq_len={seq_len} holds up to {layout.spans} spans, one sentinel each, but the "
                f"tokenizer has {len(self.sentinels)}; train it with at least {layout.spans} sentinels or lower "
                f"seq_len")


@dataclass
class SpanBatch(Batch):
    """A span-corruption batch: ``labels`` are the decoder targets (B, T')."""

    span_labels: torch.Tensor | None = None
    """(B, T') bool, True where the label is a token of a span (not a sentinel, EOS or padding)."""


class SpanCorruption(EncoderDecoderObjective):
    """T5's span corruption: random windows of the token stream, spans dropped afresh each step,
    an encoder-decoder writes them back."""

    name = "span"
    config_cls = SpanCorruptionConfig
    # special tokens: [PAD] and [SEP]; the sentinels depend on the window (SpanCorruptionConfig.extra_special_tokens)
    text_field, text_name = "span_labels", "span"
    primary_metric = "loss"
    predicts = "the masked-out spans, each after its sentinel (T5)"
    predicts_short = "corrupted spans"

    config: SpanCorruptionConfig

    def __init__(self, config: SpanCorruptionConfig | None = None) -> None:
        super().__init__(config)
        self.ids: SpanIds | None = None

    def prepare(self, corpus: TokenizedCorpus) -> torch.Tensor:
        """The token stream (as causal LM reads it); the special ids are kept for ``make_batch``."""
        self.ids = SpanIds.of(corpus)
        return torch.tensor(corpus.stream(), dtype=torch.long)

    def make_batch(self, data: torch.Tensor, batch_size: int, seq_len: int, generator: torch.Generator) -> SpanBatch:
        """``batch_size`` windows of the raw length of ``seq_len`` at random offsets, each with its
        own noise mask. Encoder inputs and targets are padded to the longest any window of this
        ``seq_len`` makes (a full window's: training batches have no padding, but the masks are
        always given).

        >>> from workbench.corpora import Document
        >>> from workbench.objectives.base import TokenizedDoc
        >>> specials = {"[PAD]": 0, "[SEP]": 1, "<extra_id_1>": 98, "<extra_id_0>": 99}
        >>> span = SpanCorruption()
        >>> doc = TokenizedDoc(list(range(2, 90)), Document("x"))
        >>> data = span.prepare(TokenizedCorpus([doc], special_ids=specials))
        >>> b = span.make_batch(data, 2, 12, torch.Generator().manual_seed(0))
        >>> b.input_ids.shape, b.labels.shape, b.input_ids[:, -1].tolist(), b.labels[:, 0].tolist()
        (torch.Size([2, 12]), torch.Size([2, 4]), [1, 1], [99, 99])
        """
        if self.ids is None:
            raise RuntimeError("SpanCorruption.make_batch needs prepare(train corpus) first (it reads the special ids)")
        ids, layout = self.ids, self.config.layout(seq_len)
        ids.check(layout, seq_len)
        L = layout.raw_len
        if len(data) < L:
            raise ValueError(f"split has {len(data)} tokens, fewer than the {L} a span-corruption window of "
                             f"seq_len={seq_len} reads")
        starts = torch.randint(len(data) - L + 1, (batch_size,), generator=generator)  # (B,)
        windows = data[starts[:, None] + torch.arange(L)[None, :]]  # (B, L)
        mask = random_spans_noise_mask(L, self.config.noise_density, self.config.mean_noise_span_length,
                                       generator, rows=batch_size)  # (B, L)
        inputs, targets = corrupt(windows, mask, ids.sentinels, ids.eos)  # (B, Ti), (B, Tt)
        return _assemble(list(inputs), list(targets), None, layout, ids)

    def eval_batches(self, passages: TokenizedCorpus, batch_size: int, seq_len: int) -> list[Batch]:
        """Each passage cut into consecutive raw windows (the last shorter; one of a single token
        keeps it, with no span, as T5 does), spans dropped with the fixed seed :data:`EVAL_MASK_SEED`: every passage token is in exactly one encoder input or
        target, and every evaluation scores the same spans. ``label_chars`` holds the characters
        each span token spells (0 for sentinels, EOS and padding).

        >>> from workbench.corpora import Document
        >>> from workbench.objectives.base import TokenizedDoc
        >>> specials = {"[PAD]": 0, "[SEP]": 1, "<extra_id_0>": 99}
        >>> doc = TokenizedDoc(list(range(2, 16)), Document("abcdefghijklmn"), [1] * 14)
        >>> batches = SpanCorruption().eval_batches(TokenizedCorpus([doc], special_ids=specials), 4, 8)
        >>> [b.input_ids.shape[0] for b in batches], int(sum(b.label_chars.sum() for b in batches))
        ([2], 2)
        """
        ids = self.ids = SpanIds.of(passages)
        layout = self.config.layout(seq_len)
        ids.check(layout, seq_len)
        generator = torch.Generator().manual_seed(EVAL_MASK_SEED)
        L, pairs = layout.raw_len, []  # (input, target, target characters) of each window, in order
        for d in passages.docs:
            lengths = d.char_lengths or [0] * len(d.ids)
            for s in range(0, len(d.ids), L):
                w = torch.tensor(d.ids[s : s + L])[None]  # (1, L'), L' = L but for a passage's last window
                mask = random_spans_noise_mask(w.size(1), self.config.noise_density,
                                               self.config.mean_noise_span_length, generator)[None]
                x, y = corrupt(w, mask, ids.sentinels, ids.eos)
                # the same selection over the characters, with sentinels and EOS spelling none
                _, c = corrupt(torch.tensor(lengths[s : s + L])[None], mask, torch.zeros_like(ids.sentinels), 0)
                pairs.append((x[0], y[0], c[0]))
        return [_assemble(*map(list, zip(*pairs[i : i + batch_size])), layout, ids)
                for i in range(0, len(pairs), batch_size)]

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        """Over all target tokens, sentinels and EOS included: ``loss``, ``ppl``, ``acc``. Over
        the span tokens alone: ``span_loss`` and ``bpc`` (their NLL over their characters)."""
        out = super().metrics(totals)
        if totals.get("span_tokens"):
            out["span_loss"] = totals["span_nll"] / totals["span_tokens"]
        return out

    # -- what a batch looks like: the decoder side per position, the whole pair in describe_pair --

    def describe_pair(self, batch: Batch, tokenizer: Any = None, row: int = 0) -> dict[str, Any]:
        """Row ``row`` as tokens: ``encoder`` (the corrupted input), ``decoder_input``, ``target``
        (padding left out) and ``means``, a line saying what was dropped."""
        show = getattr(tokenizer, "display_token", None) or str
        enc = batch.input_ids[row]
        enc = enc[batch.attention_mask[row].bool()] if batch.attention_mask is not None else enc
        labels = batch.labels[row]
        real = labels != IGNORE_INDEX
        span = getattr(batch, "span_labels", None)
        tokens = int(span[row].sum()) if span is not None else 0
        spans = int(real.sum()) - tokens - 1  # the rest of the target: a sentinel per span, then EOS
        return {"encoder": [show(t) for t in enc.tolist()],
                "decoder_input": [show(t) for t in batch.decoder_input_ids[row][real].tolist()],
                "target": [show(t) for t in labels[real].tolist()],
                "means": f"{tokens} tokens in {spans} spans dropped, each behind a sentinel; the decoder writes them"}

    # -- the pair whose attention a run snapshots at each evaluation --

    def attention_probe(self, probe_ids: list[int], tokenizer: Any,
                        seq_len: int | None = None) -> tuple[list[int], list[int]] | None:
        """The probe text corrupted as a validation window is (its spans drawn with the fixed seed
        :data:`EVAL_MASK_SEED`, so every snapshot shows the same pair): the encoder reads it with
        a sentinel per span, the decoder ``[PAD]`` then the spans (the target shifted right). The
        window is cut to the longest ``seq_len`` holds (:func:`window_layout`): both sides fit.
        None for a probe of under 2 tokens (no kept token to go with a span)."""
        if len(probe_ids) < 2:
            return None
        ids = SpanIds.of(TokenizedCorpus([], special_ids={t: tokenizer.special_id(t) for t in tokenizer.special_tokens}))
        raw = len(probe_ids) if seq_len is None else self.config.layout(seq_len).raw_len
        window = torch.tensor(probe_ids[:raw], dtype=torch.long)[None]  # (1, L)
        mask = random_spans_noise_mask(window.size(1), self.config.noise_density, self.config.mean_noise_span_length,
                                       torch.Generator().manual_seed(EVAL_MASK_SEED))[None]  # (1, L)
        inputs, targets = corrupt(window, mask, ids.sentinels, ids.eos)  # (1, Ti), (1, Tt)
        return inputs[0].tolist(), [ids.pad] + targets[0, :-1].tolist()


def _assemble(inputs: list[torch.Tensor], targets: list[torch.Tensor], chars: list[torch.Tensor] | None,
              layout: SpanLayout, ids: SpanIds) -> SpanBatch:
    """A batch of corrupted pairs padded to ``layout``'s lengths: ``[PAD]`` in the inputs, -100 in
    the labels; the decoder input is the target shifted right after ``[PAD]``, T5's start token."""
    input_ids, encoding = pad_rows(inputs, ids.pad, layout.input_len)  # (B, Ti)
    labels, decoding = pad_rows(targets, IGNORE_INDEX, layout.target_len)  # (B, Tt)
    special = torch.cat([ids.sentinels, torch.tensor([ids.eos])])
    return SpanBatch(input_ids=input_ids, labels=labels, attention_mask=encoding.long(),
                     decoder_input_ids=shift_right(labels, decoding, ids.pad), decoder_attention_mask=decoding.long(),
                     label_chars=pad_rows(chars, 0, layout.target_len)[0] if chars is not None else None,
                     span_labels=decoding & ~torch.isin(labels, special))


# --- using a trained model: fill in the blanks ----------------------------------------------------

@torch.no_grad()
def fill_spans(model: nn.Module, tokenizer: Any, text: str, max_new_tokens: int | None = None,
               temperature: float = 0.0, top_k: int | None = None, top_p: float | None = None,
               seed: int | None = None) -> tuple[str, list[str]]:
    """What a span-corruption model is for: ``text`` with ``<extra_id_0>``, ``<extra_id_1>``...
    where words are missing goes to the encoder, the decoder writes each span after its sentinel
    (greedy at ``temperature`` 0, else sampled), and the spans are put back. Returns the filled
    text and the spans in the order of their sentinels in ``text``. A ValueError says what to
    change (no sentinel in the text, a text longer than the model reads)."""
    from ..seq2seq_decode import sample_decode

    ids = tokenizer.encode(text)
    sentinels = [tokenizer.token_to_id(t) for t in tokenizer.special_tokens if t.startswith("<extra_id_")]
    sentinel_set = set(sentinels)
    used = [i for i in ids if i in sentinel_set]
    if not used:
        raise ValueError("write <extra_id_0> (then <extra_id_1>, ...) where the text is missing: "
                         "the model fills in those spans")
    limit = model.max_context or len(ids) + 1
    if len(ids) + 1 > limit:
        raise ValueError(f"the text is {len(ids)} tokens and the model reads at most {limit - 1}: shorten it")
    pad, eos = tokenizer.special_id(PAD), tokenizer.special_id(EOS)
    device = next(model.parameters()).device
    source = torch.tensor([ids + [eos]], device=device)  # (1, S)
    gen = torch.Generator(device=device.type).manual_seed(seed) if seed is not None else None
    out = sample_decode(model, source, torch.ones_like(source), pad, eos, max_new_tokens or limit,
                        temperature, top_k, top_p, gen)[0].tolist()
    target = out if eos in out else out + [eos]  # cut short by max_new_tokens: keep what was written
    spans: dict[int, list[int]] = {}
    current: list[int] = []
    for t in target[: target.index(eos)]:  # <extra_id_0> a b <extra_id_1> c -> {<extra_id_0>: [a, b], ...}
        if t in sentinel_set:
            current = spans.setdefault(t, [])
        else:
            current.append(t)
    filled = fill_sentinels(ids + [eos], target, sentinels, eos)
    return tokenizer.decode(filled), [tokenizer.decode(spans.get(s, [])) for s in used]
