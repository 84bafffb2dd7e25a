"""Span corruption (T5): the noise mask against a numpy port of T5's ``random_spans_noise_mask``
(counts, layout, distribution), corruption and its exact inverse, the window a seq_len reads and
the sentinels it needs, batches and evaluation batches, the loss and metrics on a hand-computed
case, bad settings, and a stand-in encoder-decoder that learns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from workbench.config import ConfigError
from workbench.corpora import Corpus, Document
from workbench.experiment import tokenize
from workbench.models import ModelOutput
from workbench.objectives import IGNORE_INDEX, EvalSet, TokenizedCorpus, TokenizedDoc
from workbench.objectives.span_corruption import (
    EVAL_MASK_SEED, SpanBatch, SpanCorruption, SpanCorruptionConfig, SpanLayout, corrupt, fill_sentinels,
    random_spans_noise_mask, span_counts, window_layout,
)
from workbench.tokenizers import train_tokenizer
from workbench.trainer import evaluate

TEXT = ("From fairest creatures we desire increase, that thereby beauty's rose might never die, "
        "but as the riper should by time decease, his tender heir might bear his memory.\n") * 8

VOCAB = 200


def _specials(n_sentinels: int, vocab: int = VOCAB) -> dict[str, int]:
    """[PAD] 0, [SEP] 1, and ``<extra_id_i>`` counting down from the top id, as our tokenizers place them."""
    return {"[PAD]": 0, "[SEP]": 1, **{f"<extra_id_{i}>": vocab - 1 - i for i in range(n_sentinels)}}


def _corpus(n_tokens: int, n_sentinels: int = 100, char_lengths: bool = False) -> TokenizedCorpus:
    ids = [2 + i % (VOCAB - 110) for i in range(n_tokens)]
    doc = TokenizedDoc(ids, Document("x" * n_tokens), [1] * n_tokens if char_lengths else None)
    return TokenizedCorpus([doc], special_ids=_specials(n_sentinels), vocab_size=VOCAB)


def _runs(mask: np.ndarray) -> int:
    """Number of runs of True."""
    m = np.asarray(mask, dtype=bool)
    return int((m & ~np.concatenate([[False], m[:-1]])).sum())


# --- T5's definition, ported to numpy -------------------------------------------------------------

def t5_random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                               rng: np.random.Generator) -> np.ndarray:
    """t5.data.preprocessors.random_spans_noise_mask (random_roll=False), line by line in numpy:
    tf.round is round-half-to-even in float32, segment_sum / unsorted_segment_sum are bincounts."""
    orig_length = length
    length = max(length, 2)  # "increase length to avoid degeneracy"
    num_noise_tokens = int(np.round(np.float32(length) * noise_density))
    num_noise_tokens = min(max(num_noise_tokens, 1), length - 1)
    num_noise_spans = int(np.round(np.float32(num_noise_tokens) / mean_noise_span_length))
    num_noise_spans = max(num_noise_spans, 1)
    num_nonnoise_tokens = length - num_noise_tokens

    def random_segmentation(num_items: int, num_segments: int) -> np.ndarray:
        ones = (np.arange(num_items - 1) < num_segments - 1).astype(np.int64)
        first_in_segment = np.pad(rng.permutation(ones), [1, 0])
        segment_id = np.cumsum(first_in_segment)
        return np.bincount(segment_id, minlength=num_segments)

    noise_span_lengths = random_segmentation(num_noise_tokens, num_noise_spans)
    nonnoise_span_lengths = random_segmentation(num_nonnoise_tokens, num_noise_spans)
    interleaved = np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1).reshape(num_noise_spans * 2)
    span_starts = np.cumsum(interleaved)[:-1]
    span_start_indicator = np.bincount(span_starts, minlength=length)
    span_num = np.cumsum(span_start_indicator)
    return (span_num % 2 == 1)[:orig_length]


SETTINGS = [(0.15, 3.0), (0.3, 2.0), (0.5, 3.0), (0.05, 10.0), (0.8, 8.0), (0.15, 1.0), (0.25, 1.5)]


@pytest.mark.parametrize("density,span", SETTINGS)
def test_mask_has_t5s_counts_and_layout(density: float, span: float) -> None:
    gen, rng = torch.Generator().manual_seed(1), np.random.default_rng(1)
    for length in range(1, 301):
        ref = t5_random_spans_noise_mask(length, density, span, rng)
        ours = random_spans_noise_mask(length, density, span, gen).numpy()
        assert ours.shape == ref.shape == (length,)
        assert int(ours.sum()) == int(ref.sum()), length
        assert _runs(ours) == _runs(ref), length
        if length >= 2:  # kept, noise, kept, noise ... ending with noise, as T5 interleaves them
            assert not ours[0] and ours[-1]
        assert (int(ours.sum()), _runs(ours)) == (span_counts(length, density, span) if length > 1 else (0, 0))


def test_t5_rounding_is_float32_half_to_even() -> None:
    # 30 * 0.15 = 4.5 rounds to 4, 10 * 0.15 = 1.5 to 2; T5's random_spans_helper: 568 tokens -> 512 inputs, 114 targets
    assert span_counts(30, 0.15, 3.0) == (4, 1) and span_counts(10, 0.15, 3.0) == (2, 1)
    w = window_layout(512, 0.15, 3.0)
    assert (w.raw_len, w.input_len, w.target_len) == (568, 512, 114)


def test_mask_distribution_matches_t5() -> None:
    """Per-position noise rates of ours and of the numpy port agree within 5 sigma (binomial)."""
    n, length = 20_000, 40
    ours = random_spans_noise_mask(length, 0.15, 3.0, torch.Generator().manual_seed(0), rows=n).double().mean(0).numpy()
    rng = np.random.default_rng(0)
    ref = np.mean([t5_random_spans_noise_mask(length, 0.15, 3.0, rng) for _ in range(n)], axis=0)
    sigma = np.sqrt((ours * (1 - ours) + ref * (1 - ref)) / n) + 1e-9
    assert np.all(np.abs(ours - ref) <= 5 * sigma), np.abs(ours - ref) / sigma
    assert ours[0] == 0 and ours[-1] == 1  # the first token is always kept, the last always noise


def test_spans_are_capped_where_t5_is_undefined() -> None:
    # density 0.9 with single-token spans asks for 9 spans among 1 kept token: T5 cannot segment that
    m = random_spans_noise_mask(10, 0.9, 1.0, torch.Generator().manual_seed(0), rows=50)
    assert (m.sum(1) == 9).all() and all(_runs(r) == 1 for r in m.numpy())
    assert span_counts(7, 0.5, 1.0) == (4, 3)  # 4 noise tokens, 3 kept: 3 spans at most


# --- statistics over many tokens -------------------------------------------------------------------

def test_noise_fraction_and_span_lengths_over_many_tokens() -> None:
    """Over 400k tokens: the counts are T5's exactly (0.15 and mean span 3 at L=100), and where
    the spans fall is uniformly random: the first noise span's and the first kept span's lengths
    follow the law of a uniform composition (chi-square far below its 0.999 quantile)."""
    rows, L = 4000, 100
    masks = random_spans_noise_mask(L, 0.15, 3.0, torch.Generator().manual_seed(3), rows=rows).numpy()
    assert masks.shape == (rows, L) and masks.sum() == 15 * rows  # 0.15 of 400k tokens
    assert all(_runs(m) == 5 for m in masks)  # mean span length 15 / 5 = 3
    for n, s, first_len in ((15, 5, lambda m: int(np.argmax(~m[np.argmax(m):]))),  # first noise span
                            (85, 5, lambda m: int(np.argmax(m)))):  # first kept span
        counts = np.bincount([first_len(m) for m in masks], minlength=n - s + 2)[1:]
        # P(first part = k) of a uniform composition of n into s parts: C(n-k-1, s-2) / C(n-1, s-1)
        p = np.array([math.comb(n - k - 1, s - 2) / math.comb(n - 1, s - 1) for k in range(1, n - s + 2)])
        expected = p * rows
        keep = expected >= 5  # pool the thin tail into one bin
        obs = np.append(counts[: len(p)][keep], counts[: len(p)][~keep].sum() + counts[len(p):].sum())
        exp = np.append(expected[keep], expected[~keep].sum())
        chi2 = float(((obs - exp) ** 2 / exp).sum())
        df = len(obs) - 1
        quantile = df * (1 - 2 / (9 * df) + 3.09 * math.sqrt(2 / (9 * df))) ** 3  # Wilson-Hilferty, p = 0.999
        assert chi2 < quantile, (n, chi2, quantile)


def test_rows_are_independent_draws() -> None:
    m = random_spans_noise_mask(60, 0.15, 3.0, torch.Generator().manual_seed(0), rows=64)
    assert len({tuple(r.tolist()) for r in m}) > 50


# --- corruption and its inverse --------------------------------------------------------------------

def test_fill_sentinels_restores_every_window() -> None:
    gen = torch.Generator().manual_seed(0)
    sentinels = torch.arange(999, 899, -1)
    for trial in range(300):
        length = 1 + trial % 150
        density, span = SETTINGS[trial % len(SETTINGS)]
        tokens = torch.randint(2, 899, (4, length), generator=gen)
        mask = random_spans_noise_mask(length, density, span, gen, rows=4)
        inputs, targets = corrupt(tokens, mask, sentinels, 1)
        for x, y, t, m in zip(inputs, targets, tokens, mask):
            assert fill_sentinels(x, y, sentinels, 1) == t.tolist()
            assert x[-1] == 1 and y[-1] == 1  # both end with EOS
            spans = _runs(m.numpy())
            assert x[x >= 899].tolist() == sentinels[:spans].tolist()  # <extra_id_0>, <extra_id_1>... in order
            assert y[y >= 899].tolist() == sentinels[:spans].tolist()
            assert len(x) == length - int(m.sum()) + spans + 1 and len(y) == int(m.sum()) + spans + 1


def test_corrupt_refuses_more_spans_than_sentinels() -> None:
    m = torch.tensor([[0, 1, 0, 1]]).bool()
    with pytest.raises(ValueError, match="2 spans but only 1 sentinels"):
        corrupt(torch.tensor([[5, 6, 7, 8]]), m, torch.tensor([99]), 1)


# --- the window a seq_len reads, and its sentinels -------------------------------------------------

@pytest.mark.parametrize("density,span", SETTINGS)
def test_window_fits_and_extra_special_tokens_cover_every_window(density: float, span: float) -> None:
    cfg = SpanCorruptionConfig(noise_density=density, mean_noise_span_length=span)
    gen = torch.Generator().manual_seed(0)
    for seq_len in (3, 4, 7, 16, 33, 64, 128):
        w = cfg.layout(seq_len)
        assert w.input_len <= seq_len and w.target_len <= seq_len
        longer = SpanLayout.of(w.raw_len + 1, density, span)
        assert max(longer.input_len, longer.target_len) > seq_len  # the longest window that fits
        sentinels = cfg.extra_special_tokens(seq_len)
        assert sentinels == tuple(f"<extra_id_{i}>" for i in range(len(sentinels)))
        seen = 0
        for length in range(1, w.raw_len + 1):  # every window of this seq_len: full ones and passage tails
            layout = SpanLayout.of(length, density, span)
            assert layout.input_len <= w.input_len and layout.target_len <= w.target_len
            masks = random_spans_noise_mask(length, density, span, gen, rows=8).numpy()
            seen = max(seen, *(_runs(m) for m in masks))
        assert seen == len(sentinels)


def test_extra_special_tokens_needs_a_window_of_three() -> None:
    assert SpanCorruptionConfig().extra_special_tokens(0) == ()  # seq_len not known yet
    with pytest.raises(ConfigError) as e:
        SpanCorruptionConfig().extra_special_tokens(2)
    assert e.value.field == "seq_len" and ">= 3" in e.value.message


# --- batches ---------------------------------------------------------------------------------------

def test_batches_shapes_sentinels_eos_padding_and_shift() -> None:
    span = SpanCorruption()
    data = span.prepare(_corpus(5000))
    seq_len = 40
    w = span.config.layout(seq_len)
    stream = data.tolist()
    for step in range(20):
        b = span.make_batch(data, 6, seq_len, torch.Generator().manual_seed(step))
        assert isinstance(b, SpanBatch)
        assert b.input_ids.shape == b.attention_mask.shape == (6, w.input_len)
        assert b.labels.shape == b.decoder_input_ids.shape == b.decoder_attention_mask.shape == (6, w.target_len)
        assert (b.input_ids[:, -1] == 1).all() and (b.labels[:, -1] == 1).all()  # EOS = [SEP]
        assert b.attention_mask.all() and b.decoder_attention_mask.all()  # full windows: no padding
        assert (b.decoder_input_ids[:, 0] == 0).all()  # the start token is [PAD], as T5's
        assert torch.equal(b.decoder_input_ids[:, 1:], b.labels[:, :-1])
        for x, y in zip(b.input_ids, b.labels):
            top = x[x >= VOCAB - 100].tolist()
            assert top == list(range(VOCAB - 1, VOCAB - 1 - len(top), -1)) == y[y >= VOCAB - 100].tolist()
            restored = fill_sentinels(x, y, torch.arange(VOCAB - 1, VOCAB - 101, -1), 1)
            assert len(restored) == w.raw_len
            assert any(stream[i : i + w.raw_len] == restored for i in range(len(stream)))  # a window of the stream
    # the same generator seed gives the same batch
    a = span.make_batch(data, 4, seq_len, torch.Generator().manual_seed(7))
    c = span.make_batch(data, 4, seq_len, torch.Generator().manual_seed(7))
    assert torch.equal(a.input_ids, c.input_ids) and torch.equal(a.labels, c.labels)


def test_padding_labels_are_ignored_and_decoder_masked() -> None:
    # a 3-token passage and a full window at seq_len 16: the short row is padded
    span = SpanCorruption()
    w = span.config.layout(16)
    doc = TokenizedDoc(list(range(2, 2 + w.raw_len + 3)), Document("x"), [1] * (w.raw_len + 3))
    (b,) = span.eval_batches(TokenizedCorpus([doc], special_ids=_specials(10)), 8, 16)
    assert b.input_ids.shape == (2, w.input_len) and b.labels.shape == (2, w.target_len)
    short_in, short_tgt = int(b.attention_mask[1].sum()), int(b.decoder_attention_mask[1].sum())
    assert short_in < w.input_len and short_tgt < w.target_len
    assert (b.labels[1, short_tgt:] == IGNORE_INDEX).all() and (b.labels[1, :short_tgt] != IGNORE_INDEX).all()
    assert (b.input_ids[1, short_in:] == 0).all() and (b.decoder_input_ids[1, short_tgt:] == 0).all()
    assert b.labels[1, short_tgt - 1] == 1 and b.input_ids[1, short_in - 1] == 1
    assert torch.equal(b.decoder_input_ids[1, 1:short_tgt], b.labels[1, : short_tgt - 1])
    assert (b.label_chars[1, short_tgt:] == 0).all()


def test_make_batch_errors() -> None:
    with pytest.raises(RuntimeError, match="prepare"):
        SpanCorruption().make_batch(torch.arange(100), 2, 16, torch.Generator())
    span = SpanCorruption()
    data = span.prepare(_corpus(20))
    with pytest.raises(ValueError, match="fewer than"):
        span.make_batch(data, 2, 64, torch.Generator())
    short = SpanCorruption()
    data = short.prepare(_corpus(5000, n_sentinels=2))
    short.make_batch(data, 2, 16, torch.Generator())  # 1 span: fine
    with pytest.raises(ConfigError) as e:
        short.make_batch(data, 2, 128, torch.Generator())
    assert e.value.field == "sentinels" and "seq_len=128" in e.value.message


def test_tokenizer_without_sentinels_is_a_clear_error() -> None:
    corpus = TokenizedCorpus([TokenizedDoc([5, 6, 7], Document("abc"))], special_ids={"[PAD]": 0, "[SEP]": 1})
    with pytest.raises(ConfigError) as e:
        SpanCorruption().prepare(corpus)
    assert e.value.field == "sentinels" and "<extra_id_0>" in e.value.message and "tokenizer" in e.value.message
    with pytest.raises(ConfigError, match=r"\[SEP\]"):
        SpanCorruption().prepare(TokenizedCorpus([], special_ids={"[PAD]": 0, "<extra_id_0>": 9}))


# --- evaluation batches ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind,vocab", [("char", None), ("bpe", 320)])
def test_eval_batches_cover_every_token_once_deterministically(kind: str, vocab: int | None) -> None:
    seq_len = 48
    cfg = SpanCorruptionConfig()
    names = cfg.extra_special_tokens(seq_len)
    tok = train_tokenizer(kind, TEXT, vocab, special_tokens=["[PAD]", "[SEP]", *names])
    assert [tok.special_id(t) for t in names] == [tok.vocab_size - 1 - i for i in range(3)]  # T5's placement
    docs = [Document(t) for t in ("a rose by any other name", "x", TEXT[:300], TEXT[300:700])]
    corpus = tokenize(tok, Corpus("val", docs, "\n"), char_lengths=True)
    span = SpanCorruption(cfg)
    batches = span.eval_batches(corpus, 5, seq_len)
    again = SpanCorruption(cfg).eval_batches(corpus, 5, seq_len)
    assert len(batches) == len(again) > 1
    for a, b in zip(batches, again):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.label_chars, b.label_chars)
    sentinels = torch.tensor([tok.special_id(t) for t in names])
    rows = [(x, y, c) for b in batches for x, y, c in zip(b.input_ids, b.labels, b.label_chars)]
    restored, span_chars, i = [], 0, 0
    for d in corpus.docs:  # consecutive windows of each passage, in order
        got: list[int] = []
        while len(got) < len(d.ids):
            x, y, c = rows[i]
            got += fill_sentinels(x, y, sentinels, span.ids.eos)
            real = y != IGNORE_INDEX
            is_span = real & ~torch.isin(y, torch.cat([sentinels, torch.tensor([span.ids.eos])]))
            assert (c[~is_span] == 0).all()
            span_chars += int(c.sum())
            i += 1
        assert got == d.ids
        restored += got
    assert i == len(rows)
    # the characters of the span tokens: each target span token's own length from char_lengths
    expected = 0
    gen = torch.Generator().manual_seed(EVAL_MASK_SEED)
    L = cfg.layout(seq_len).raw_len
    for d in corpus.docs:
        for s in range(0, len(d.ids), L):
            m = random_spans_noise_mask(len(d.ids[s : s + L]), cfg.noise_density, cfg.mean_noise_span_length, gen)
            expected += sum(n for n, noisy in zip(d.char_lengths[s : s + L], m.tolist()) if noisy)
    assert span_chars == expected > 0
    assert sum(len(d.doc.text) for d in corpus.docs) > span_chars


# --- loss and metrics ------------------------------------------------------------------------------

class FixedLogits(nn.Module):
    """Returns the same (B, T', V) logits whatever it reads, and remembers how it was called."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.calls: list[tuple[tuple, dict]] = []

    def forward(self, *args, **kwargs) -> ModelOutput:
        self.calls.append((args, kwargs))
        return ModelOutput(logits=self.logits)


def test_loss_and_metrics_on_a_hand_computed_case() -> None:
    # one row: target <extra_id_0>=9, span token 5 (3 chars), EOS=1, then padding
    labels = torch.tensor([[9, 5, 1, IGNORE_INDEX]])
    b = SpanBatch(input_ids=torch.tensor([[4, 9, 1]]), labels=labels, attention_mask=torch.ones(1, 3, dtype=torch.long),
                  decoder_input_ids=torch.tensor([[0, 9, 5, 0]]), decoder_attention_mask=torch.tensor([[1, 1, 1, 0]]),
                  label_chars=torch.tensor([[0, 3, 0, 0]]), span_labels=torch.tensor([[False, True, False, False]]))
    logits = torch.zeros(1, 4, 10)
    logits[0, 0, 9] = 2.0  # right
    logits[0, 1, 6] = 1.0  # wrong: 6 beats 5
    logits[0, 2, 1] = 3.0  # right
    model = FixedLogits(logits)
    out = SpanCorruption().loss(model, b)
    (args, kwargs), = model.calls
    assert args[0] is b.input_ids and kwargs["attention_mask"] is b.attention_mask
    assert kwargs["decoder_input_ids"] is b.decoder_input_ids
    assert kwargs["decoder_attention_mask"] is b.decoder_attention_mask
    lsm = torch.log_softmax(logits[0], -1)
    nll = [-float(lsm[0, 9]), -float(lsm[1, 5]), -float(lsm[2, 1])]
    assert float(out.sums["nll"]) == pytest.approx(sum(nll), rel=1e-6)
    assert float(out.loss) == pytest.approx(sum(nll) / 3, rel=1e-6)
    assert int(out.sums["tokens"]) == 3 and int(out.sums["correct"]) == 2 and int(out.sums["chars"]) == 3
    assert float(out.sums["span_nll"]) == pytest.approx(nll[1], rel=1e-6) and int(out.sums["span_tokens"]) == 1
    m = SpanCorruption().metrics({k: float(v) for k, v in out.sums.items()})
    assert m["loss"] == pytest.approx(sum(nll) / 3) and m["ppl"] == pytest.approx(math.exp(sum(nll) / 3))
    assert m["acc"] == pytest.approx(2 / 3) and m["span_loss"] == pytest.approx(nll[1])
    assert m["bpc"] == pytest.approx(nll[1] / math.log(2) / 3)  # the span token's NLL over its 3 characters


class TinySeq2Seq(nn.Module):
    """A stand-in encoder-decoder: the decoder is a GRU started from the mean of the encoder's
    embeddings (real tokens only); enough to learn a fixed batch."""

    def __init__(self, vocab: int, dim: int = 48) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.bridge = nn.Linear(dim, dim)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, decoder_input_ids: torch.Tensor,
                decoder_attention_mask: torch.Tensor) -> ModelOutput:
        keep = attention_mask.unsqueeze(-1).float()  # (B, S, 1)
        context = (self.embed(input_ids) * keep).sum(1) / keep.sum(1)  # (B, C)
        hidden, _ = self.gru(self.embed(decoder_input_ids), torch.tanh(self.bridge(context))[None])  # (B, T', C)
        return ModelOutput(logits=self.head(hidden))


def test_a_stand_in_encoder_decoder_learns_a_fixed_batch() -> None:
    torch.manual_seed(0)
    span = SpanCorruption()
    batch = span.make_batch(span.prepare(_corpus(3000)), 8, 32, torch.Generator().manual_seed(0))
    model = TinySeq2Seq(VOCAB)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        out = span.loss(model, batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < 0.3 * losses[0]
    # the evaluator adds the sums over the evaluation set and names the metrics
    corpus = _corpus(400, char_lengths=True)
    metrics = evaluate(model, span, EvalSet(span.eval_batches(corpus, 4, 32)))
    assert set(metrics) == {"val/loss", "val/ppl", "val/acc", "val/span_loss", "val/bpc"}
    assert all(math.isfinite(v) for v in metrics.values())


# --- settings --------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("noise_density", 0.0), ("noise_density", 1.0), ("noise_density", -0.1),
                                         ("noise_density", float("nan")), ("noise_density", "0.15"),
                                         ("mean_noise_span_length", 0.5), ("mean_noise_span_length", 0.0),
                                         ("mean_noise_span_length", True)])
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as e:
        SpanCorruptionConfig(**{field: value})
    assert e.value.field == field and field in str(e.value)


def test_config_round_trip_and_docs() -> None:
    cfg = SpanCorruptionConfig.from_dict({"name": "span", "noise_density": 0.3, "mean_noise_span_length": 2.0})
    assert cfg == SpanCorruptionConfig(noise_density=0.3, mean_noise_span_length=2.0)
    assert SpanCorruptionConfig.from_dict(cfg.to_dict()) == cfg
    docs = SpanCorruptionConfig.field_docs()
    assert "0.15" in docs["noise_density"] and "3" in docs["mean_noise_span_length"]
    assert SpanCorruption.needs == frozenset({"seq2seq"}) and SpanCorruption.special_tokens == ("[PAD]", "[SEP]")


# --- what a batch looks like -----------------------------------------------------------------------

def test_describe_batch_pair_and_decoder_mask() -> None:
    span = SpanCorruption()
    w = span.config.layout(16)
    doc = TokenizedDoc(list(range(2, 2 + w.raw_len + 3)), Document("x"))
    (b,) = span.eval_batches(TokenizedCorpus([doc], special_ids=_specials(10)), 8, 16)
    rows = span.describe_batch(b, row=1)
    n = int(b.decoder_attention_mask[1].sum())
    assert len(rows) == w.target_len
    assert [r["input"] for r in rows[:n]] == [str(t) for t in b.decoder_input_ids[1, :n].tolist()]
    assert [r["target"] for r in rows] == [str(t) for t in b.labels[1, :n].tolist()] + ["—"] * (w.target_len - n)
    assert [r["attention"] for r in rows] == [1] * n + [0] * (w.target_len - n)
    pair = span.describe_pair(b, row=1)
    assert pair["encoder"] == [str(t) for t in b.input_ids[1, : int(b.attention_mask[1].sum())].tolist()]
    assert pair["target"] == [str(t) for t in b.labels[1, :n].tolist()] and pair["decoder_input"][0] == "0"
    spans = sum(1 for t in b.labels[1, :n].tolist() if t >= VOCAB - 10)
    assert pair["means"].startswith(f"{n - 1 - spans} tokens in {spans} spans")
    m = span.attention_mask_matrix(b, row=1)
    assert m.shape == (w.target_len, w.target_len)
    assert torch.equal(m[:, :n], torch.ones(w.target_len, n, dtype=torch.bool).tril()[:, :n])  # causal
    assert not m[:, n:].any()  # padding hidden


def test_fill_spans_puts_the_decoded_spans_back_where_the_sentinels_were() -> None:
    from workbench.models import Seq2SeqConfig, Seq2SeqTransformer
    from workbench.objectives.span_corruption import fill_spans
    from workbench.tokenizers import CharConfig, build_tokenizer

    text = "To be, or not to be: that is the question."
    tok = build_tokenizer(CharConfig(sentinels=2), text, ("[PAD]", "[SEP]"))
    torch.manual_seed(0)
    model = Seq2SeqTransformer(Seq2SeqConfig(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=tok.vocab_size))
    filled, spans = fill_spans(model, tok, "To be, or <extra_id_0> to be: that is the <extra_id_1>.", max_new_tokens=12)
    assert len(spans) == 2 and all("<extra_id_" not in s for s in spans)
    assert filled == f"To be, or {spans[0]} to be: that is the {spans[1]}."  # the text around the gaps is kept
    assert fill_spans(model, tok, "To be, or <extra_id_0> to be", max_new_tokens=12) == \
        fill_spans(model, tok, "To be, or <extra_id_0> to be", max_new_tokens=12)  # greedy: deterministic
    with pytest.raises(ValueError, match="write <extra_id_0>"):
        fill_spans(model, tok, "no gap here")
    with pytest.raises(ValueError, match="shorten it"):
        fill_spans(model, tok, "<extra_id_0>" + "to be " * 20)
