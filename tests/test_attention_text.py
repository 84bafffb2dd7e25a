"""A run's model on any text (``attention_text.capture_text``): one kind for a decoder, both
streams too for a permutation LM, the three kinds of an encoder-decoder on its own output; the
text cut to the context and said so; induction scores on ordinary tokens only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench import apply_overrides, get_preset
from workbench.attention_text import MAX_TEXT_CHARS, capture_text, induction_scores_of
from workbench.pipeline import load_run_model, train
from workbench.runstore import RunStore

TINY = {"max_steps": 4, "eval_interval": 4, "eval_chars": 2048, "batch_size": 4, "log_interval": 2}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    home: Path = tmp_path_factory.mktemp("attn-text")
    store = RunStore(home)
    runs = {"gpt": train(apply_overrides(get_preset("gpt-nano"), TINY), store),
            "plm": train(apply_overrides(get_preset("gpt-nano"), {**TINY, "objective": "plm"}), store),
            "s2s": train(apply_overrides(get_preset("seq2seq-reverse-words-nano"),
                                         {**TINY, "n_layer": 1, "n_dec_layer": 2, "score_examples": 0}), store)}
    return {name: load_run_model(store, run_id, "best") for name, run_id in runs.items()}


def test_a_decoder_reads_the_text_causally(models) -> None:
    model, tok, cfg = models["gpt"]
    maps = capture_text(model, tok, "To be, or not", source="run x")
    assert list(maps) == ["self"]
    m = maps["self"]
    assert m.tokens == list("To be, or not") and m.source == "run x"
    assert np.array_equal(m.allowed, np.tril(np.ones((13, 13), dtype=bool)))
    np.testing.assert_allclose(m.weights.sum(-1), 1.0, atol=1e-5)


def test_a_long_text_is_cut_to_the_context_and_says_so(models) -> None:
    model, tok, _ = models["gpt"]
    text = "abcdefghij" * 20
    m = capture_text(model, tok, text, source="run x")["self"]
    assert len(m.tokens) == model.max_context < len(text)
    assert f"first {model.max_context} of {len(text)} tokens" in m.source


def test_a_permutation_lm_adds_both_streams(models) -> None:
    model, tok, cfg = models["plm"]
    maps = capture_text(model, tok, "To be, or not", objective=cfg.objective.name)
    assert set(maps) == {"self", "content", "query"}
    query, content = maps["query"], maps["content"]
    assert not np.diagonal(query.allowed).any() and np.diagonal(content.allowed).all()
    assert np.all(query.weights[:, :, ~query.allowed] == 0)


def test_an_encoder_decoder_reads_the_text_and_its_own_output(models) -> None:
    model, tok, _ = models["s2s"]
    maps = capture_text(model, tok, "now is the winter")
    assert set(maps) == {"encoder", "decoder", "cross"}
    enc, dec, cross = maps["encoder"], maps["decoder"], maps["cross"]
    assert enc.tokens[-1] == "[SEP]" and dec.tokens[0] == "[PAD]"  # source [SEP]; start token, then the output
    assert cross.weights.shape[2:] == (len(dec.tokens), len(enc.tokens)) and cross.keys == enc.tokens
    assert enc.weights.shape[0] == 1 and dec.weights.shape[0] == 2
    assert np.array_equal(dec.allowed, np.tril(np.ones((len(dec.tokens),) * 2, dtype=bool)))


@pytest.mark.parametrize("text, says", [("", "empty"), ("   \n", "empty"), ("x" * (MAX_TEXT_CHARS + 1), "shorten")])
def test_bad_text_is_a_clear_error(models, text: str, says: str) -> None:
    model, tok, _ = models["gpt"]
    with pytest.raises(ValueError, match=says):
        capture_text(model, tok, text)


def test_induction_scores_of_a_run_skip_special_tokens(models, monkeypatch) -> None:
    import workbench.head_stats as hs

    seen = []
    real = hs.induction_probe
    monkeypatch.setattr(hs, "induction_probe", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    model, tok, _ = models["gpt"]
    scores = induction_scores_of(model, tok)
    assert scores.shape == (model.config.n_layer, model.config.n_head) and np.isfinite(scores).all()
    specials = {tok.special_id(t) for t in tok.special_tokens}
    assert seen and not specials & set(seen[0])
