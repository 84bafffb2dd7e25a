"""Supervised seq2seq tasks: the text rewrites (reverse words, Pig Latin), TSV pairs and their
errors, BLEU/ROUGE against the packages themselves, length bucketing on the built-in corpus,
batch layout, deterministic evaluation, a tiny encoder-decoder that learns, and decoding scores."""

from __future__ import annotations

import math

import pytest
import torch

import workbench.objectives
from workbench.bucketing import bucket_batches, mean_padding_fraction, padding_fraction, random_batches
from workbench.config import ConfigError
from workbench.corpora import Document, load_corpus
from workbench.models import ModelOutput
from workbench.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from workbench.objectives import IGNORE_INDEX, TokenizedCorpus, TokenizedDoc
from workbench.objectives.seq2seq_tasks import (
    Seq2SeqBatch, Seq2SeqTask, Seq2SeqTaskConfig, pig_latin, read_tsv, reverse_words, task_pairs,
)
from workbench.scoring import bleu, decode_scores, exact_match, rouge
from workbench.tokenizers import train_tokenizer

TEXT = ("From fairest creatures we desire increase,\nThat thereby beauty's rose might never die,\n\n"
        "But as the riper should by time decease,\nHis tender heir might bear his memory:\n"
        "But thou contracted to thine own bright eyes,\nFeed'st thy light's flame with self-substantial fuel,\n"
        "Making a famine where abundance lies,\nThy self thy foe, to thy sweet self too cruel.\n")


def _tokenizer(text: str = TEXT):
    return train_tokenizer("char", text + pig_latin(text), special_tokens=("[PAD]", "[SEP]"))


def _objective(**settings) -> Seq2SeqTask:
    obj = Seq2SeqTask(Seq2SeqTaskConfig(**settings))
    obj.tokenizer = _tokenizer()
    return obj


def _corpus(text: str = TEXT) -> TokenizedCorpus:
    return TokenizedCorpus([TokenizedDoc([], Document(text))])  # the objective re-reads the text


# --- the tasks ------------------------------------------------------------------------------------

def test_reverse_words_is_an_involution_on_normalised_lines() -> None:
    line = "Thy self thy foe, to thy sweet self too cruel."
    assert reverse_words(line) == "cruel. too self sweet thy to foe, thy self Thy"
    assert reverse_words(reverse_words(line)) == line
    assert reverse_words("a\tb   c") == "c b a"


@pytest.mark.parametrize("word, expected", [
    ("pig", "igpay"), ("apple", "appleway"), ("string", "ingstray"), ("queen", "eenquay"),
    ("yellow", "ellowyay"), ("rhythm", "ythmrhay"), ("nth", "nthay"), ("Hamlet", "Amlethay"),
    ("KING", "INGKAY"), ("I", "Iway"), ("kiss'd", "iss'dkay"),
])
def test_pig_latin_words(word: str, expected: str) -> None:
    assert pig_latin(word) == expected


def test_pig_latin_keeps_punctuation_spacing_and_digits_in_place() -> None:
    assert pig_latin("(Enter,  2 lords!) well-met") == "(Enterway,  2 ordslay!) ellway-etmay"
    assert pig_latin("") == "" and pig_latin("-- ...") == "-- ..."


def test_task_pairs_one_per_nonempty_line_truncated_to_max_words() -> None:
    pairs = task_pairs("reverse-words", [Document("a b c d\n\n  \ne f")], max_words=2)
    assert pairs == [("a b", "b a"), ("e f", "f e")]
    assert task_pairs("pig-latin", [Document("the cat"), Document("is")]) == [("the cat", "ethay atcay"),
                                                                             ("is", "isway")]


# --- configuration and TSV files -------------------------------------------------------------------

def _error(**settings) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Seq2SeqTaskConfig(**settings).check_inputs()
    assert info.value.field == "task"
    return info.value


def test_unknown_task_lists_the_choices() -> None:
    err = _error(task="reverse")
    assert "reverse-words" in err.message and "pig-latin" in err.message and "tsv:PATH" in err.message


def test_tsv_errors_name_task_and_the_line(tmp_path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("hello\tbonjour\ncat chat\n", encoding="utf-8")
    assert "line 2 has 0 TABs" in _error(task=f"tsv:{path}").message
    path.write_text("hello\tbonjour\n\ncat\tchat\n", encoding="utf-8")
    assert "line 2 is empty" in _error(task=f"tsv:{path}").message
    path.write_text("hello\tbonjour\ncat\t \n", encoding="utf-8")
    assert "line 2 has an empty target" in _error(task=f"tsv:{path}").message
    path.write_text("a\tb\tc\n", encoding="utf-8")
    assert "line 1 has 2 TABs" in _error(task=f"tsv:{path}").message
    path.write_bytes("caf\u00e9\tcoffee\n".encode("latin-1"))
    assert "not UTF-8" in _error(task=f"tsv:{path}").message
    assert "no TSV file" in _error(task=f"tsv:{tmp_path / 'missing.tsv'}").message
    path.write_text("\n\n", encoding="utf-8")
    assert "has no pairs" in _error(task=f"tsv:{path}").message


def test_tsv_pairs_split_by_position(tmp_path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(f"s{i}\tt{i}\r\n" for i in range(20)).encode())  # BOM, CRLF
    assert read_tsv(path)[0] == ("s0", "t0")
    train = task_pairs(f"tsv:{path}", [], "train")
    val = task_pairs(f"tsv:{path}", [], "val")
    assert train == [(f"s{i}", f"t{i}") for i in range(18)] and val == [("s18", "t18"), ("s19", "t19")]
    assert Seq2SeqTaskConfig(task=f"tsv:{path}").task.endswith("pairs.tsv")


def test_other_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_words"):
        Seq2SeqTaskConfig(max_words=0)
    with pytest.raises(ConfigError, match="bucketing"):
        Seq2SeqTaskConfig(bucketing="yes")  # type: ignore[arg-type]


def test_a_run_config_with_the_objective_validates(monkeypatch) -> None:
    from workbench.config import RunConfig

    monkeypatch.setitem(workbench.objectives.OBJECTIVES, "seq2seq", Seq2SeqTask)
    cfg = RunConfig.from_dict({"model": {"arch": "seq2seq"}, "objective": {"name": "seq2seq", "task": "pig-latin"}})
    assert isinstance(cfg.objective, Seq2SeqTaskConfig) and cfg.objective.task == "pig-latin"
    with pytest.raises(ConfigError, match="needs a model"):
        RunConfig.from_dict({"objective": {"name": "seq2seq"}})  # the default GPT is not an encoder-decoder


# --- scoring --------------------------------------------------------------------------------------

HYPS = ["the cat sat on the mat", "a quick brown fox", "hello there world", "nothing alike"]
REFS = ["the cat sat on a mat", "the quick brown fox jumps", "hello there world", "completely different text"]


def test_bleu_and_rouge_are_the_packages_scores() -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    assert bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    each = [scorer.score(r, h) for h, r in zip(HYPS, REFS)]
    scores = rouge(HYPS, REFS)
    for k in ("rouge1", "rouge2", "rougeL"):
        assert scores[k] == pytest.approx(sum(s[k].fmeasure for s in each) / len(each))
    assert 0 < scores["rouge2"] < scores["rouge1"] < 1 and 0 < bleu(HYPS, REFS) < 100
    assert exact_match(HYPS, REFS) == 0.25
    with pytest.raises(ValueError, match="one reference each"):
        bleu(HYPS, REFS[:2])


# --- bucketing ------------------------------------------------------------------------------------

def test_bucketing_lowers_padding_on_the_builtin_corpus_lines() -> None:
    train, _ = load_corpus("shakespeare").split(0.1)
    pairs = task_pairs("reverse-words", train.documents, max_words=12)
    lengths = [len(s) + len(t) + 2 for s, t in pairs]  # characters + [SEP] on each side: a char tokenizer
    gen = torch.Generator().manual_seed(0)
    bucketed = mean_padding_fraction(bucket_batches(lengths, 32, gen), lengths)
    random = mean_padding_fraction(random_batches(len(lengths), 32, gen), lengths)
    print(f"\n{len(pairs)} reverse-words pairs, batch 32: mean padding fraction "
          f"random {random:.4f}, bucketed {bucketed:.4f}")
    assert bucketed < 0.05 < 0.3 < random
    assert sorted(i for b in bucket_batches(lengths, 32, gen) for i in b) == list(range(len(lengths)))
    assert padding_fraction([3, 1]) == 1 / 3


# --- batches --------------------------------------------------------------------------------------

def test_batch_layout_eos_start_padding() -> None:
    obj = _objective(task="reverse-words")
    pad, eos = obj.special_ids()
    data = obj.prepare(_corpus())
    b = obj.make_batch(data, 4, 64, torch.Generator().manual_seed(0))
    assert isinstance(b, Seq2SeqBatch)
    B, T = b.labels.shape
    assert b.decoder_input_ids.shape == b.decoder_attention_mask.shape == (B, T) and B == 4
    assert (b.decoder_input_ids[:, 0] == pad).all()  # the decoder starts from [PAD]
    real = b.labels != IGNORE_INDEX
    assert torch.equal(real, b.decoder_attention_mask.bool()) and real.any(1).all()
    assert torch.equal(b.decoder_input_ids[:, 1:][real[:, 1:]], b.labels[:, :-1][real[:, 1:]])  # shifted right
    ends = real.sum(1) - 1
    assert (b.labels[torch.arange(B), ends] == eos).all()  # every target ends in [SEP]
    enc_ends = b.attention_mask.sum(1) - 1
    assert (b.input_ids[torch.arange(B), enc_ends] == eos).all()
    assert (b.input_ids[~b.attention_mask.bool()] == pad).all() and (b.labels[~real] == IGNORE_INDEX).all()
    assert (b.decoder_attention_mask.sum(1).max(), b.attention_mask.sum(1).max()) == (T, b.input_ids.size(1))
    # each row is a line and its reverse
    tok = obj.tokenizer
    for row in range(B):
        src = tok.decode(b.input_ids[row][b.attention_mask[row].bool()].tolist())
        tgt = tok.decode(b.labels[row][real[row]].tolist())
        assert tgt == reverse_words(src)
    view = obj.describe_batch(b, row=0)  # the decoder side: what the loss scores
    assert len(view) == T and view[0]["input"] == str(pad) and obj.attention_mask_matrix(b).shape == (T, T)
    pad_count = int((b.attention_mask == 0).sum() + (~real).sum())
    assert b.padding_fraction == pytest.approx(pad_count / (b.input_ids.numel() + b.labels.numel()))


def test_truncation_keeps_eos() -> None:
    obj = _objective()
    _, eos = obj.special_ids()
    b = obj.make_batch(obj.prepare(_corpus()), 8, 6, torch.Generator().manual_seed(1))
    assert b.input_ids.size(1) <= 6 and b.labels.size(1) <= 6
    assert (b.labels[:, -1] == eos).any() and (b.input_ids[:, -1] == eos).any()


def test_bucketed_training_batches_have_less_padding() -> None:
    text = "".join(" ".join(["word"] * (1 + i % 12)) + "\n" for i in range(400))
    tok = _tokenizer(text)
    means = {}
    for bucketing in (True, False):
        obj = Seq2SeqTask(Seq2SeqTaskConfig(bucketing=bucketing))
        obj.tokenizer = tok
        data = obj.prepare(_corpus(text))
        gen = torch.Generator().manual_seed(0)
        means[bucketing] = sum(obj.make_batch(data, 16, 128, gen).padding_fraction for _ in range(20)) / 20
    assert means[True] < 0.1 < 0.25 < means[False]


def test_eval_batches_are_deterministic_and_cover_every_pair() -> None:
    obj = _objective(task="pig-latin")
    first = obj.eval_batches(_corpus(), 3, 128)
    second = _objective(task="pig-latin").eval_batches(_corpus(), 3, 128)
    assert len(first) == len(second) == 3  # 8 lines in batches of 3
    for a, b in zip(first, second):
        assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.labels, b.labels)
    assert len(obj.eval_pairs) == 8 and obj.eval_pairs[0] == ("From fairest creatures we desire increase,",
                                                              "Omfray airestfay eaturescray eway esireday increaseway,")
    # a char tokenizer: every target token spells one character, [SEP] and padding none
    assert sum(int(b.label_chars.sum()) for b in first) == sum(len(t) for _, t in obj.eval_pairs)


def test_prepare_without_a_tokenizer_says_what_to_set() -> None:
    with pytest.raises(RuntimeError, match="objective.tokenizer = tokenizer"):
        Seq2SeqTask().prepare(_corpus())


def test_loss_metrics_on_a_uniform_model() -> None:
    obj = _objective()
    batch = obj.eval_batches(_corpus(), 8, 128)[0]
    V = obj.tokenizer.vocab_size

    class Uniform(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None):
            return ModelOutput(logits=torch.zeros(*decoder_input_ids.shape, V))

    out = obj.loss(Uniform(), batch)
    totals = {k: float(v) for k, v in out.sums.items()}
    m = obj.metrics(totals)
    assert m["loss"] == pytest.approx(math.log(V)) and m["ppl"] == pytest.approx(V, rel=1e-4)
    text_tokens = int(batch.target_text.sum())
    assert m["bpc"] == pytest.approx(math.log2(V) * text_tokens / totals["chars"])


# --- a tiny encoder-decoder learns, and decodes ------------------------------------------------------

def test_tiny_seq2seq_learns_reverse_words_and_scores() -> None:
    torch.manual_seed(0)
    text = "ab cd\ncd ef ab\nef ab\ngh ab cd\n"
    obj = Seq2SeqTask(Seq2SeqTaskConfig(bucketing=False))
    obj.tokenizer = tok = _tokenizer(text)
    batch = obj.eval_batches(_corpus(text), 8, 32)[0]
    model = Seq2SeqTransformer(Seq2SeqConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=32,
                                             block_size=32))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss = obj.loss(model, batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 < 2.0 < losses[0]
    scores = decode_scores(model, tok, obj.eval_pairs, beam_size=1)
    assert scores["exact_match"] == 1.0 and scores["rougeL"] == pytest.approx(1.0) and scores["count"] == 4
    # lines of under 4 words have no 4-grams: even a perfect corpus of them scores BLEU 0 (sacrebleu's rule)
    refs = [t for _, t in obj.eval_pairs]
    assert scores["bleu"] == bleu(refs, refs) == 0.0
    assert scores["examples"][0] == {"source": "ab cd", "reference": "cd ab", "hypothesis": "cd ab"}
    assert decode_scores(model, tok, obj.eval_pairs, beam_size=2, max_examples=2)["exact_match"] == 1.0


# --- the tokenizer learns the task's text; a TSV is checked before a run, not when a config loads ----

def test_the_tokenizer_is_trained_on_sources_and_targets(tmp_path) -> None:
    from workbench import apply_overrides, get_preset
    from workbench.experiment import build_experiment

    word = {"objective": "seq2seq", "tokenizer": "word", "min_freq": 1, "vocab_size": 50_000, "eval_chars": 2048}
    pig = build_experiment(apply_overrides(get_preset("t5-nano"), {**word, "task": "pig-latin"}), home=tmp_path)
    # Pig Latin words exist only in the targets: a tokenizer of the corpus alone would spell them [UNK]
    assert None not in (pig.tokenizer.token_to_id("ethay"), pig.tokenizer.token_to_id("Ownay"))
    path = tmp_path / "pairs.tsv"
    path.write_text("".join(f"the cat {i}\tle chat {i}\n" for i in range(40)), encoding="utf-8")
    tsv = build_experiment(apply_overrides(get_preset("t5-nano"), {**word, "task": f"tsv:{path}"}), home=tmp_path)
    assert None not in [tsv.tokenizer.token_to_id(w) for w in ("le", "chat", "cat", "12")]
    assert tsv.tokenizer.token_to_id("39") is None  # the last tenth of the pairs is validation
    assert tsv.tokenizer.token_to_id("ROMEO") is None  # a TSV task never reads the corpus


def test_a_missing_tsv_is_refused_before_a_run_but_a_stored_config_still_loads(tmp_path) -> None:
    from workbench import apply_overrides, get_preset
    from workbench.config import RunConfig
    from workbench.experiment import estimate_vocab_size, preflight

    path = tmp_path / "pairs.tsv"
    path.write_text("a b\tc d\n" * 20, encoding="utf-8")
    cfg = apply_overrides(get_preset("t5-nano"), {"objective": "seq2seq", "task": f"tsv:{path}"})
    preflight(cfg, tmp_path)
    from workbench.experiment import build_experiment

    # exact for characters: the TSV's 6 (not Shakespeare's ~65) and the special tokens
    assert estimate_vocab_size(cfg) == build_experiment(cfg, home=tmp_path).tokenizer.vocab_size < 6 + 5
    path.unlink()
    stored = RunConfig.from_dict(cfg.to_dict())  # the run's page can still show it
    assert stored.objective.task == f"tsv:{path}"
    with pytest.raises(ConfigError) as info:
        preflight(stored, tmp_path)
    assert info.value.field == "task" and "no TSV file" in info.value.message


# --- a run logs what its decoder writes: BLEU/ROUGE/exact match at each evaluation, and padding ------

def _tiny_task_run(tmp_path, **settings):
    from workbench import apply_overrides, get_preset
    from workbench.pipeline import train
    from workbench.runstore import RunStore

    cfg = apply_overrides(get_preset("t5-nano"), {"objective": "seq2seq", "task": "reverse-words", "max_words": 4,
                                                   "n_embd": 32, "block_size": 32, "eval_chars": 1024,
                                                   "max_steps": 12, "eval_interval": 6, "log_interval": 3,
                                                   "batch_size": 8, **settings})
    store = RunStore(tmp_path / "home")
    return store, train(cfg, store=store, progress=False)


def test_a_task_run_logs_decoding_scores_and_padding_at_each_evaluation(tmp_path) -> None:
    import json

    from workbench.pipeline import load_run_model
    from workbench.scoring import decode_scores

    store, run_id = _tiny_task_run(tmp_path, score_examples=5)
    series = store.metric_series(run_id)
    for key in ("val/bleu", "val/rouge1", "val/rouge2", "val/rougeL", "val/exact_match"):
        assert series[key][0] == series["val/loss"][0] == [0, 6, 12], key  # every evaluation, untrained included
    steps, padding = series["padding_fraction"]
    assert steps == [3, 6, 9, 12] and all(0.0 <= p < 1.0 for p in padding)
    # the last evaluation's scores are what the final weights decode (the last checkpoint is step 12)
    model, tok, cfg = load_run_model(store, run_id, "last")
    exp_pairs = json.loads(store.artifacts(run_id, "decoded")[-1][1].read_text(encoding="utf-8"))
    assert exp_pairs["step"] == 12 and exp_pairs["count"] == 5 and len(exp_pairs["examples"]) == 5
    pairs = [(e["source"], e["reference"]) for e in exp_pairs["examples"]]
    again = decode_scores(model, tok, pairs)
    assert [e["hypothesis"] for e in again["examples"]] == [e["hypothesis"] for e in exp_pairs["examples"]]
    assert series["val/rougeL"][1][-1] == pytest.approx(again["rougeL"])


def test_score_examples_zero_decodes_nothing(tmp_path) -> None:
    store, run_id = _tiny_task_run(tmp_path, score_examples=0, max_steps=6)
    series = store.metric_series(run_id)
    assert "val/loss" in series and "val/bleu" not in series and not store.artifacts(run_id, "decoded")
    with pytest.raises(ConfigError, match="score_examples"):
        Seq2SeqTaskConfig(score_examples=-1)
