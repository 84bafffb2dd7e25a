"""What a batch looks like (``workbench.batch_view`` and ``Objective.describe_batch`` /
``attention_mask_matrix``), for every objective: the fields, the ignored targets, the mask, the
HTML and the figure."""

from __future__ import annotations

import time

import pytest
import torch

from workbench.batch_view import batch_table_html, example_batch, mask_figure, preview_corpus
from workbench.config import ConfigError
from workbench.corpora import Corpus, CorpusError, Document, load_corpus
from workbench.objectives import OBJECTIVES, Batch, CausalLM, MaskedLM
from workbench.objectives.base import IGNORE_INDEX, IGNORED, attention_mask_matrix, predicts_label
from workbench.objectives.masked_lm import IGNORED as MLM_IGNORED
from workbench.objectives.masked_lm import attention_matrix
from workbench.overrides import apply_overrides
from workbench.presets import get_preset

FIELDS = {"position", "input", "target", "segment", "attention"}
CONFIGS = {  # objective -> (preset, overrides)
    "causal_lm": ("gpt-nano", {}),
    "mlm": ("bert-nano", {}),
    "nsp": ("bert-nano", {"objective": "nsp"}),
    "mlm+nsp": ("bert-nano", {"objective": "mlm+nsp"}),
}


def _example(objective: str, rows: int = 2, seed: int = 0, **more):
    preset, overrides = CONFIGS[objective]
    return example_batch(apply_overrides(get_preset(preset), {**overrides, **more}), rows=rows, seed=seed)


@pytest.mark.parametrize("objective", list(CONFIGS))
def test_every_objective_describes_its_batch_and_its_mask(objective):
    ex = _example(objective, rows=3)
    T = ex.config.seq_len
    assert ex.objective.name == objective and len(ex.descriptions) == 3 and len(ex.matrices) == 3
    for r, (rows, m) in enumerate(zip(ex.descriptions, ex.matrices)):
        assert len(rows) == T and [p["position"] for p in rows] == list(range(T))
        assert all(FIELDS <= p.keys() for p in rows)
        labels = ex.batch.labels[r].tolist()
        ignored = [p["target"] == IGNORED for p in rows]
        assert ignored == [y == IGNORE_INDEX for y in labels]  # "—" exactly where the loss ignores the label
        assert m.shape == (T, T) and m.dtype == torch.bool
        real = torch.tensor([p["attention"] for p in rows], dtype=torch.bool)
        assert not m[:, ~real].any()  # padding keys are hidden from every query
        if ex.causal:
            assert torch.equal(m, torch.ones(T, T, dtype=torch.bool).tril())
        else:
            assert torch.equal(m, real[None, :].expand(T, T))  # every query sees every real key
    assert ex.tokens(0) == [p["input"] for p in ex.descriptions[0]]


def test_causal_targets_are_the_next_inputs_and_masked_lm_marks_how_it_masked():
    ex = _example("causal_lm")
    rows = ex.descriptions[0]
    assert [p["target"] for p in rows[:-1]] == [p["input"] for p in rows[1:]]
    assert ex.causal and ex.predicts_short == "next token" and "next token" in ex.predicts

    mlm = _example("mlm", rows=4)
    made = [p for rows in mlm.descriptions for p in rows]
    picked = [p for p in made if p["target"] != IGNORED]
    assert picked and {p["made"] for p in picked} <= {"[MASK]", "random", "kept"}
    assert all(p["made"] == "" for p in made if p["target"] == IGNORED)
    assert len(picked) < len(made) / 2  # 15% are predicted, the rest are ignored
    assert not mlm.causal and mlm.predicts_short == "masked token"


@pytest.mark.parametrize("objective", ["nsp", "mlm+nsp"])
def test_sentence_pairs_show_both_segments_padding_and_their_label(objective):
    ex = _example(objective, rows=4)
    assert len(ex.pairs) == 4 and all(p.startswith(("IsNext", "NotNext")) for p in ex.pairs)
    for rows in ex.descriptions:
        assert {p["segment"] for p in rows if p["attention"]} == {0, 1}
    if objective == "nsp":  # no token targets at all
        assert all(p["target"] == IGNORED for rows in ex.descriptions for p in rows)


def test_the_base_mask_agrees_with_masked_lms_and_is_causal_only_for_causal_objectives():
    batch = Batch(input_ids=torch.zeros(2, 5, dtype=torch.long), labels=torch.zeros(2, 5, dtype=torch.long),
                  attention_mask=torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]))
    for row in (0, 1):
        assert torch.equal(MaskedLM().attention_mask_matrix(batch, row), attention_matrix(batch, row))
        causal = CausalLM().attention_mask_matrix(batch, row)
        assert torch.equal(causal, attention_mask_matrix(batch, row, causal=True)) and not causal.triu(1).any()
    assert CausalLM().attention_mask_matrix(batch, 1)[4].tolist() == [True, True, True, False, False]
    assert IGNORED == MLM_IGNORED  # one way of writing "no target" in every view


def test_predicts_labels_tell_the_tasks_apart():
    expected = {"causal_lm": "next token", "mlm": "masked token", "nsp": "next sentence",
                "mlm+nsp": "masked token + next sentence"}
    assert {n: predicts_label(n) for n in expected} == expected and expected.keys() <= OBJECTIVES.keys()
    assert predicts_label("hand-edited") == "hand-edited"  # an unknown objective: its own name


def test_the_batch_is_reproducible_and_another_seed_draws_another():
    a, b, c = _example("mlm"), _example("mlm"), _example("mlm", seed=1)
    assert torch.equal(a.batch.input_ids, b.batch.input_ids) and torch.equal(a.batch.labels, b.batch.labels)
    assert not torch.equal(a.batch.input_ids, c.batch.input_ids)


def test_a_preview_is_fast_and_reads_a_slice_of_several_documents():
    start = time.perf_counter()
    ex = _example("causal_lm")
    assert time.perf_counter() - start < 1.0  # the char tokenizer: the dashboard draws it on every change
    train, _ = load_corpus("shakespeare").split(0.1)
    assert ex.preview_chars < len(train) / 20
    docs = [Document("x" * 10_000, title=str(i)) for i in range(30)]
    sliced = preview_corpus(Corpus("c", docs), seq_len=64)
    assert 2 <= len(sliced.documents) < 30 and all(len(d.text) < 10_000 for d in sliced.documents)
    long = preview_corpus(Corpus("c", docs), seq_len=4096)  # a long context: whole documents, more of them
    assert len(long.documents[0].text) == 10_000 and len(long) >= 64 * 4096 > len(sliced)


def test_bad_settings_raise_what_the_package_raises(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("One sentence here. And another one there. " * 200, encoding="utf-8")  # a single document
    with pytest.raises(ConfigError, match="two documents"):
        example_batch(apply_overrides(get_preset("bert-nano"), {"objective": "nsp", "corpus": str(one)}))
    with pytest.raises(ValueError, match="fewer than seq_len"):
        example_batch(get_preset("gpt-nano"), text="to be or not to be\n" * 2)
    with pytest.raises(CorpusError):
        example_batch(apply_overrides(get_preset("gpt-nano"), {"corpus": str(tmp_path / "missing.txt")}))


def test_the_table_escapes_tokens_and_shows_ignored_masked_and_segments():
    rows = [
        {"position": 0, "input": "[CLS]", "target": IGNORED, "made": "", "segment": 0, "attention": 1},
        {"position": 1, "input": "<b>", "target": "<script>", "made": "random", "segment": 0, "attention": 1},
        {"position": 2, "input": "[MASK]", "target": " a\n", "made": "[MASK]", "segment": 1, "attention": 1},
        {"position": 3, "input": "[PAD]", "target": IGNORED, "made": "", "segment": 0, "attention": 0},
    ]
    out = batch_table_html(rows)
    assert "<b>" not in out and "<script>" not in out and "&lt;b&gt;" in out and "&lt;script&gt;" in out
    assert "·a⏎" in out  # whitespace made visible
    assert ">masked as<" in out and ">segment<" in out and ">B<" in out
    assert "#fca5a5" in out and "#fde68a" in out  # random and [MASK] highlighted
    assert 'color:#bbb">—<' in out  # ignored targets greyed
    causal = batch_table_html([{"position": 0, "input": "a", "target": "b", "segment": 0, "attention": 1}])
    assert ">masked as<" not in causal and ">segment<" not in causal  # nothing to say: no row for it


def test_the_mask_figure_labels_both_axes_with_the_tokens_and_says_which_mask():
    ex = _example("causal_lm")
    fig = mask_figure(ex.matrix, ex.tokens())
    (heat,) = fig.data
    assert len(heat.x) == len(heat.y) == ex.config.seq_len
    assert [x.split(":", 1)[1] for x in heat.x[:3]] == [t.replace(" ", "·").replace("\n", "⏎") for t in ex.tokens()[:3]]
    assert fig.layout.title.text.startswith("Causal")
    nsp = _example("nsp", rows=8)
    padded = next(r for r, rows in enumerate(nsp.descriptions) if not rows[-1]["attention"])
    title = mask_figure(nsp.matrices[padded], nsp.tokens(padded)).layout.title.text
    assert title.startswith("Bidirectional") and "padding hidden" in title
    assert mask_figure(nsp.matrices[padded], nsp.tokens(padded), causal=True).layout.title.text.startswith("Causal")
    assert "&lt;b&gt;" in mask_figure(torch.ones(1, 1, dtype=torch.bool), ["<b>"]).data[0].x[0]


def test_the_permutation_lm_shows_each_predicted_tokens_place_in_the_order():
    ex = example_batch(apply_overrides(get_preset("gpt-nano"), {"objective": "plm", "k": 4}), rows=2, seed=3)
    for r, rows in enumerate(ex.descriptions):
        predicted = [p for p in rows if p["target"] != IGNORED]
        assert all(p["order"] == "ctx" for p in rows if p["target"] == IGNORED)
        # the predicted tokens take steps 1..n of the order, each once
        assert sorted(p["order"] for p in predicted) == list(range(1, len(predicted) + 1))
        # the query stream of the token predicted at step s sees the context and exactly steps 1..s-1
        query = ex.objective.attention_mask_matrix(ex.batch, r)
        context = torch.tensor([p["order"] == "ctx" for p in rows])
        for p in predicted:
            seen = {q["order"] for q in predicted if query[p["position"], q["position"]]}
            assert seen == set(range(1, p["order"])) and torch.equal(query[p["position"]] & context, context)
    assert "predicted #" in batch_table_html(ex.descriptions[0])
