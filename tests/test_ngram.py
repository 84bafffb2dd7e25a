"""The n-gram family: distributions that sum to 1, add-k equal to NLTK's Lidstone, Kneser-Ney
equal to a hand computation, fitting by counting as a normal run, and the inputs it refuses."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from workbench import apply_overrides, get_preset
from workbench.config import ConfigError
from workbench.models import NGramConfig, NGramLM


def model(n: int, V: int, smoothing: str = "kneser-ney", **kw) -> NGramLM:
    return NGramLM(NGramConfig(n=n, vocab_size=V, smoothing=smoothing, **kw))


@pytest.mark.parametrize("smoothing", ["kneser-ney", "add-k"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_every_distribution_sums_to_one_seen_and_unseen(n: int, smoothing: str) -> None:
    V = 12
    gen = torch.Generator().manual_seed(n)
    stream = torch.randint(0, 8, (400,), generator=gen)  # tokens 8..11 never counted
    lm = model(n, V, smoothing, k=0.3).fit(stream)
    seen = stream[:40].view(2, 20)  # contexts the counts know
    unseen = torch.randint(0, V, (3, 20), generator=gen)  # mostly new contexts, some with never-seen tokens
    for ids in (seen, unseen):
        p = lm.probs(ids)
        assert p.dtype == torch.float64 and p.shape == (*ids.shape, V)
        assert (p > 0).all()  # smoothing leaves no zero, not even for a token never counted
        assert (p.sum(-1) - 1).abs().max().item() < 1e-9
    # the unfitted model is uniform, and so is its loss (ln V)
    fresh = model(n, V, smoothing)
    assert torch.allclose(fresh.probs(seen), torch.full((2, 20, V), 1 / V, dtype=torch.float64))


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_add_k_equals_nltk_lidstone(n: int) -> None:
    from nltk.lm import Lidstone, Vocabulary
    from nltk.util import everygrams

    V, k = 9, 0.4
    unk = V - 1  # never in the text: NLTK's <UNK> stands for it, so both vocabularies have V entries
    gen = torch.Generator().manual_seed(n)
    stream = torch.randint(0, V - 1, (300,), generator=gen).tolist()
    lm = model(n, V, "add-k", k=k).fit(torch.tensor(stream))

    words = [str(i) for i in range(V - 1)]
    ref = Lidstone(k, n, vocabulary=Vocabulary(words, unk_cutoff=1))
    ref.fit([list(everygrams([str(i) for i in stream], max_len=n))])
    assert len(ref.vocab) == V

    window = stream[100:110] + [unk, 3, 2]  # seen contexts, then ones through the unseen token
    ours = lm.probs(torch.tensor([window]))[0]
    name = lambda i: "<UNK>" if i == unk else str(i)  # noqa: E731
    for t in range(len(window)):
        context = tuple(name(i) for i in window[max(0, t + 2 - n) : t + 1]) if n > 1 else None
        expected = torch.tensor([ref.score(name(w), context) for w in range(V)], dtype=torch.float64)
        assert torch.allclose(ours[t], expected, rtol=0, atol=1e-12), (t, context)


def test_kneser_ney_matches_a_hand_computed_example() -> None:
    """Stream a b a b c (a=0, b=1, c=2, d=3 never seen), V=4, D=1/2.

    Bigram counts: ab 2, ba 1, bc 1. Unigram continuation counts N1+(. w): a 1, b 1, c 1 (3 bigram
    types), so P1(w) = max(1 - 1/2, 0)/3 + (1/2)(3/3)(1/4) = 7/24 for a, b, c and 3/24 for d.
    P2(w | a) = max(c(aw) - 1/2, 0)/2 + (1/2)(1/2) P1(w): b 3/4 + 7/96 = 79/96, a 7/96, c 7/96, d 3/96.
    P2(w | b) = max(c(bw) - 1/2, 0)/2 + (1/2)(2/2) P1(w): a 1/4 + 7/48 = 19/48, c 19/48, b 7/48, d 3/48.
    c and d never occur as a context: P2(w | c) = P2(w | d) = P1(w).

    Trigram (n=3): trigrams aba, bab, abc; bigram continuation counts N1+(. h w): ba 1, ab 1 (the
    first ab has nothing before it), bc 1, so P2cont(w | b) = 1/2 * 1/2 ... = 19/48, 7/48, 19/48, 3/48
    as above, and P3(w | a b) = max(c(abw) - 1/2, 0)/2 + (1/2)(2/2) P2cont(w | b):
    a 1/4 + 19/96 = 43/96, c 43/96, b 7/96, d 3/96. The first position of a window has one token
    of context: its top order is the bigram with raw counts, P2(w | a) above.
    """
    F = Fraction
    p1 = [F(7, 24), F(7, 24), F(7, 24), F(3, 24)]
    p2_a = [F(7, 96), F(79, 96), F(7, 96), F(3, 96)]
    p2_b = [F(19, 48), F(7, 48), F(19, 48), F(3, 48)]
    p3_ab = [F(43, 96), F(7, 96), F(43, 96), F(3, 96)]
    stream = torch.tensor([0, 1, 0, 1, 2])

    bigram = model(2, 4, discount=0.5).fit(stream)
    got = bigram.probs(torch.tensor([[0, 1, 2, 3]]))[0]
    for row, expected in zip(got, [p2_a, p2_b, p1, p1]):
        assert row.tolist() == pytest.approx([float(x) for x in expected], abs=1e-15)

    trigram = model(3, 4, discount=0.5).fit(stream)
    got = trigram.probs(torch.tensor([[0, 1]]))[0]
    assert got[0].tolist() == pytest.approx([float(x) for x in p2_a], abs=1e-15)
    assert got[1].tolist() == pytest.approx([float(x) for x in p3_ab], abs=1e-15)


def test_logits_are_log_probabilities_and_counts_are_state() -> None:
    lm = model(3, 6).fit(torch.tensor([0, 1, 2, 0, 1, 3, 0, 1, 2, 4]))
    ids = torch.tensor([[0, 1, 2, 5]])
    out = lm(ids)
    assert torch.allclose(out.logits.double().exp(), lm.probs(ids), atol=1e-6)
    assert out.hidden_states is None and out.attentions is None
    assert lm.num_parameters() == 5 + 6 + 7  # distinct unigrams (01234), bigrams (01 12 20 13 30 24), trigrams
    again = model(3, 6)
    again.load_state_dict(lm.state_dict())  # tables of another size: taken as they are
    assert torch.equal(again.probs(ids), lm.probs(ids))
    with pytest.raises(RuntimeError, match="does not fit"):
        model(2, 6).load_state_dict(lm.state_dict())


def test_fit_replaces_counts_and_accepts_tiny_streams() -> None:
    lm = model(4, 5)
    for stream in ([], [3], [3, 1], [3, 1, 4]):
        p = lm.fit(torch.tensor(stream, dtype=torch.long)).probs(torch.tensor([[3, 1, 4]]))
        assert (p.sum(-1) - 1).abs().max() < 1e-9
    assert int(lm.tokens_counted) == 3
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        lm.fit(torch.tensor([0, 5]))


def test_bad_orders_are_refused_naming_n() -> None:
    with pytest.raises(ConfigError, match="from 1") as err:
        NGramConfig(n=0)
    assert err.value.field == "n"
    base = {"arch": "ngram", "seq_len": 8}
    with pytest.raises(ConfigError, match=r"n=12 conditions on 11 tokens.*seq_len=8") as err:
        apply_overrides(get_preset("gpt-nano"), {**base, "n": 12})
    assert err.value.field == "n"
    apply_overrides(get_preset("gpt-nano"), {**base, "n": 9})  # 8 tokens of context fit a window of 8
    for field, value in (("smoothing", "witten-bell"), ("k", 0.0), ("discount", 1.0)):
        with pytest.raises(ConfigError) as err:
            NGramConfig(**{field: value})
        assert err.value.field == field


def test_cli_refuses_a_bad_order_and_starts_nothing(wb_home, capsys) -> None:
    from workbench.__main__ import main
    from workbench.runstore import RunStore

    assert main(["train", "--arch", "ngram", "--seq-len", "4", "--n", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: n: n=7 conditions on 6 tokens")
    assert main(["train", "--arch", "ngram", "--seq-len", "4", "--n", "0"]) == 2
    assert RunStore().list_runs() == []


def test_an_ngram_run_counts_in_order_and_is_a_normal_run(wb_home) -> None:
    from workbench.generate import sample_text
    from workbench.pipeline import load_run_model, resume, train
    from workbench.runstore import RunStore

    store = RunStore()
    cfg = apply_overrides(get_preset("gpt-nano"), {"arch": "ngram", "n": 4, "seq_len": 32, "batch_size": 8,
                                                   "max_steps": 30, "eval_interval": 10, "eval_chars": 4096})
    run_id = train(cfg, store)
    info = store.get_run(run_id)
    assert info.status == "finished" and info.step == 30, info.error
    assert info.num_params > 0  # its stored n-grams
    series = store.metric_series(run_id)
    steps, val = series["val/loss"]
    assert steps == [0, 10, 20, 30]
    assert val == sorted(val, reverse=True)  # more text counted, lower validation loss
    assert {"val/ppl", "val/bpc", "train/loss", "tokens_per_s"} <= set(series)
    assert series["train/loss"][1][-1] < val[-1]  # it has seen its training windows: memorisation shows

    model, tok, saved = load_run_model(store, run_id, which="last")
    assert val[0] == pytest.approx(math.log(saved.model.vocab_size), abs=1e-5)  # nothing counted yet: uniform
    assert int(model.tokens_counted) == 30 * 8 * 32  # step s read batch_size x seq_len tokens, in order
    assert sample_text(model, tok, "KING", max_new_tokens=20, seed=0).startswith("KING")

    # resuming counts on from the checkpoint and lands where an uninterrupted run lands
    resume(store, run_id, {"max_steps": 40})
    longer = train(apply_overrides(cfg, {"max_steps": 40}), store)
    a, b = store.metric_series(run_id)["val/loss"], store.metric_series(longer)["val/loss"]
    assert a[0][-1] == b[0][-1] == 40 and a[1][-1] == pytest.approx(b[1][-1], abs=1e-9)


def test_a_run_ends_when_the_split_is_read(wb_home, tmp_path) -> None:
    from workbench.experiment import build_experiment
    from workbench.pipeline import load_run_model, train
    from workbench.runstore import RunStore

    corpus = tmp_path / "small.txt"
    corpus.write_text("the cat sat on the mat. " * 200, encoding="utf-8")  # ~4.3k train characters
    cfg = apply_overrides(get_preset("gpt-nano"), {"arch": "ngram", "n": 3, "seq_len": 32, "batch_size": 16,
                                                   "max_steps": 1000, "eval_interval": 5, "corpus": str(corpus)})
    store = RunStore()
    run_id = train(cfg, store)
    info = store.get_run(run_id)
    assert info.status == "finished", info.error
    split = len(build_experiment(cfg).train_data)
    assert info.step == math.ceil(split / (16 * 32)) < 1000  # each token counted once, then the run ends
    model, _, _ = load_run_model(store, run_id, which="last")
    assert int(model.tokens_counted) == split


def _unseen_brute_force(train: list[int], val: list[int], n: int) -> float:
    seen = {tuple(train[i : i + n]) for i in range(len(train) - n + 1)}
    grams = [tuple(val[i : i + n]) for i in range(len(val) - n + 1)]
    return sum(g not in seen for g in grams) / len(grams) if grams else math.nan


@pytest.mark.parametrize("V", [2, 5, 40, 3_000_000_000])
def test_unseen_fraction_equals_a_set_of_python_tuples(V: int) -> None:
    from workbench.models.ngram import unseen_fraction, unseen_fractions

    gen = torch.Generator().manual_seed(V % 1000)
    alphabet = torch.tensor([0, 1, 2, 3, V - 1])[: min(V, 5)]  # a huge id forces the keys to be renumbered
    train = alphabet[torch.randint(len(alphabet), (500,), generator=gen)].tolist()
    val = alphabet[torch.randint(len(alphabet), (120,), generator=gen)].tolist()
    got = unseen_fractions(torch.tensor(train), torch.tensor(val), 9)
    expected = [_unseen_brute_force(train, val, n) for n in range(1, 10)]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == sorted(got)  # an n-gram never seen has no seen extension: the fraction can only rise
    assert unseen_fraction(torch.tensor(train), torch.tensor(val), 4) == pytest.approx(expected[3], abs=1e-12)


def test_unseen_fraction_counts_neither_the_seam_nor_too_short_a_split() -> None:
    from workbench.models.ngram import unseen_fraction, unseen_fractions

    # val's 2-grams are 2 0, 0 1 (seen) and 1 2, which training shows only across the seam of the two streams
    assert unseen_fraction(torch.tensor([0, 1]), torch.tensor([2, 0, 1, 2]), 2) == pytest.approx(2 / 3)
    assert unseen_fractions([], [4, 4], 3)[:2] == [1.0, 1.0] and math.isnan(unseen_fractions([], [4, 4], 3)[2])
    assert unseen_fractions(torch.tensor([[3, 1], [4, 1]]), torch.tensor([1, 4, 1]), 2) == [0.0, 0.0]  # 2-D: flattened
    with pytest.raises(ValueError, match="max_n"):
        unseen_fractions([1], [1], 0)
    with pytest.raises(ValueError, match=">= 0"):
        unseen_fractions([-1], [1], 1)
