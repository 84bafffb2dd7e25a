"""An encoder-decoder's three kinds of attention: capture on one pair, snapshots during a run
(supervised seq2seq and span corruption), the probe pair each objective makes, the npz format
(new fields, old files), and the Attention page's cross-attention view."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import test_dashboard
from test_dashboard import _app, _array, _texts
import workbench
from workbench.attention import AttentionMaps, capture, capture_seq2seq
from workbench.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from workbench.pipeline import attention_snapshots, cross_attention_snapshots, load_attention, train
from workbench.runstore import RunStore

local_visitor = test_dashboard.local_visitor  # fixture (autouse): a visitor on this machine

TINY = {"max_steps": 4, "eval_interval": 2, "eval_chars": 2048, "batch_size": 4, "log_interval": 2,
        "warmup_steps": 1, "n_layer": 1, "n_dec_layer": 2, "n_embd": 32, "block_size": 32}
"""A tiny encoder-decoder (1 encoder, 2 decoder layers: the kinds' depths differ) and a short run."""


def _model(**shape) -> Seq2SeqTransformer:
    torch.manual_seed(0)
    return Seq2SeqTransformer(Seq2SeqConfig(**{"n_layer": 1, "n_dec_layer": 2, "n_head": 2, "n_embd": 16,
                                               "block_size": 16, "vocab_size": 20, **shape}))


# --- capture -----------------------------------------------------------------------------------------

def test_capture_seq2seq_gives_three_kinds_whose_rows_sum_to_one() -> None:
    model = _model().train()
    maps = capture_seq2seq(model, [3, 4, 5, 6, 7], [0, 8, 9], decoder_tokens=["[PAD]", "a", "b"])
    assert model.training  # restored
    enc, dec, cross = maps["encoder"], maps["decoder"], maps["cross"]
    assert (enc.kind, dec.kind, cross.kind) == ("encoder", "decoder", "cross")
    assert enc.weights.shape == (1, 2, 5, 5) and dec.weights.shape == (2, 2, 3, 3)
    assert cross.weights.shape == (2, 2, 3, 5)  # (decoder layers, heads, decoder tokens, encoder tokens)
    for m in maps.values():
        np.testing.assert_allclose(m.weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(dec.weights, k=1) == 0) and dec.causal  # the decoder cannot read ahead
    assert enc.weights[..., np.triu_indices(5, k=1)[0], np.triu_indices(5, k=1)[1]].min() > 0  # the encoder can
    assert cross.tokens == dec.tokens == ["[PAD]", "a", "b"] and cross.keys == enc.tokens == ["3", "4", "5", "6", "7"]
    assert enc.key_tokens is None and enc.keys is enc.tokens


def test_capture_on_a_seq2seq_model_is_the_encoders_and_says_so() -> None:
    model = _model()
    maps = capture(model, [3, 4, 5, 6])
    assert maps.kind == "encoder" and maps.weights.shape == (1, 2, 4, 4)
    np.testing.assert_allclose(maps.weights, capture_seq2seq(model, [3, 4, 5, 6], [0])["encoder"].weights, atol=1e-6)


def test_capture_seq2seq_refuses_a_model_without_a_decoder() -> None:
    from dataclasses import replace

    from workbench.models import build_model

    gpt = build_model(replace(workbench.get_preset("gpt-nano").model, vocab_size=20, n_layer=1))
    with pytest.raises(ValueError, match="use capture"):
        capture_seq2seq(gpt, [1, 2], [0])


# --- the npz format -------------------------------------------------------------------------------

def test_save_and_load_keep_key_tokens_and_kind(tmp_path) -> None:
    w = np.random.default_rng(0).random((2, 3, 4, 5)).astype(np.float32)
    cross = AttentionMaps(w, ["[PAD]", "a", "b", "c"], step=7, key_tokens=list("vwxyz"), kind="cross")
    cross.save(tmp_path / "c.npz")
    back = AttentionMaps.load(tmp_path / "c.npz")
    assert (back.tokens, back.key_tokens, back.kind, back.step) == (cross.tokens, cross.key_tokens, "cross", 7)
    np.testing.assert_allclose(back.weights, w, atol=1e-3)  # stored as float16
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:  # plain arrays, no pickled objects
        assert set(z.files) == {"weights", "tokens", "step", "kind", "key_tokens"}

    AttentionMaps(w[:, :, :4, :4], list("abcd"), kind="decoder").save(tmp_path / "d.npz")
    back = AttentionMaps.load(tmp_path / "d.npz")
    assert back.kind == "decoder" and back.key_tokens is None and back.step is None


def test_a_snapshot_of_the_old_format_still_loads_as_self_attention(tmp_path) -> None:
    w = np.full((1, 1, 2, 2), 0.5, dtype=np.float16)
    with open(tmp_path / "old.npz", "wb") as fh:  # what workbench wrote before kinds existed
        np.savez_compressed(fh, weights=w, tokens=np.array(["a", "b"], dtype=str), step=np.array(10))
    maps = load_attention(tmp_path / "old.npz")
    assert (maps.kind, maps.key_tokens, maps.keys, maps.step) == ("self", None, ["a", "b"], 10)


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown attention kind"):
        AttentionMaps(np.zeros((1, 1, 1, 1)), ["a"], kind="sideways")


# --- the probe pair each objective makes ----------------------------------------------------------

def test_the_seq2seq_probe_is_a_short_validation_pair_laid_out_as_training_reads_it() -> None:
    from workbench.objectives.seq2seq_tasks import Seq2SeqTask
    from workbench.tokenizers import train_tokenizer

    text = "ab\nthe cat sat\none two three four\n"
    tok = train_tokenizer("char", text + text[::-1], special_tokens=("[PAD]", "[SEP]"))
    obj = Seq2SeqTask()
    assert obj.attention_probe([1, 2], tok) is None  # no validation pairs yet
    obj.eval_pairs = [("ab", "ab"), ("the cat sat", "sat cat the"), ("one two three four", "four three two one")]
    pad, eos = obj.special_ids(tok)
    enc, dec = obj.attention_probe([], tok, seq_len=16)
    assert enc == tok.encode("the cat sat") + [eos]  # the first pair of at least 3 words
    assert dec == [pad] + tok.encode("sat cat the")
    enc, dec = obj.attention_probe([], tok, seq_len=6)  # none fits: the first of 3 words, cut
    assert enc == tok.encode("the c") + [eos] and dec == [pad] + tok.encode("sat c")


def test_the_span_probe_is_the_probe_text_corrupted_with_the_fixed_seed() -> None:
    from workbench.objectives.span_corruption import SpanCorruption
    from workbench.tokenizers import train_tokenizer

    span = SpanCorruption()
    tok = train_tokenizer("char", "abcdefghij" * 5, special_tokens=("[PAD]", "[SEP]", *span.config.extra_special_tokens(16)))
    probe = tok.encode("abcdefghijabcdefghij")
    enc, dec = span.attention_probe(probe, tok, seq_len=16)
    assert (enc, dec) == span.attention_probe(probe, tok, seq_len=16)  # the same pair at every evaluation
    pad, eos, sentinel = tok.special_id("[PAD]"), tok.special_id("[SEP]"), tok.special_id("<extra_id_0>")
    assert len(enc) <= 16 and len(dec) <= 16 and enc[-1] == eos and sentinel in enc
    assert dec[0] == pad and dec[1] == sentinel  # the decoder starts, then writes the first span after its sentinel
    assert span.attention_probe(probe[:1], tok, seq_len=16) is None


# --- snapshots during a run -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def seq2seq_runs(tmp_path_factory) -> tuple:
    """A store with a tiny reverse-words run and a tiny span-corruption run: (home, seq2seq, span)."""
    home = tmp_path_factory.mktemp("cross")
    store = RunStore(home)
    preset = workbench.get_preset("t5-nano")
    s2s = train(workbench.apply_overrides(preset, {**TINY, "objective": "seq2seq", "name": "reverse"}), store)
    span = train(workbench.apply_overrides(preset, {**TINY, "name": "span"}), store)
    return home, s2s, span


@pytest.mark.parametrize("which", ["seq2seq", "span"])
def test_a_seq2seq_run_snapshots_all_three_kinds(seq2seq_runs, which) -> None:
    home, s2s, span = seq2seq_runs
    store, run_id = RunStore(home), {"seq2seq": s2s, "span": span}[which]
    enc_snaps = attention_snapshots(store, run_id)
    dec_snaps = attention_snapshots(store, run_id, "decoder_attention")
    cross_snaps = cross_attention_snapshots(store, run_id)
    assert [s for s, _ in enc_snaps] == [s for s, _ in dec_snaps] == [s for s, _ in cross_snaps] == [0, 2, 4]
    assert cross_snaps[-1][1].name == "cross_step_000004.npz" and dec_snaps[-1][1].name == "decoder_step_000004.npz"
    enc, dec, cross = (load_attention(snaps[-1][1]) for snaps in (enc_snaps, dec_snaps, cross_snaps))
    assert (enc.kind, dec.kind, cross.kind) == ("encoder", "decoder", "cross") and cross.step == 4
    assert cross.tokens == dec.tokens and cross.key_tokens == enc.tokens
    assert cross.weights.shape == (2, 2, len(dec.tokens), len(enc.tokens))  # (L, nh, T, S)
    assert enc.weights.shape[0] == 1 and max(len(enc.tokens), len(dec.tokens)) <= TINY["block_size"]
    assert dec.tokens[0] == "[PAD]" and enc.tokens[-1] == "[SEP]"
    np.testing.assert_allclose(cross.weights.sum(-1), 1.0, atol=1e-2)
    if which == "seq2seq":  # the decoder reads the target of the source the encoder reads: reversed words
        source, target = "".join(enc.tokens[:-1]), "".join(dec.tokens[1:])
        assert target.split() == source.split()[::-1] and len(source.split()) >= 3
    else:
        assert "<extra_id_0>" in enc.tokens and dec.tokens[1] == "<extra_id_0>"


# --- the Attention page ---------------------------------------------------------------------------

def _heatmap(at) -> dict:
    return next(c for c in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))
                if c["data"][0]["type"] == "heatmap" and "x" in c["data"][0])


def test_the_attention_page_shows_cross_attention_of_a_seq2seq_run(seq2seq_runs, monkeypatch) -> None:
    home, s2s, _ = seq2seq_runs
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    at = _app(run=s2s, page="attention")
    assert at.radio(key="attn_kind").value == "cross_attention"  # the default view
    cross = load_attention(cross_attention_snapshots(RunStore(home), s2s)[-1][1])
    heat = _heatmap(at)["data"][0]
    assert len(heat["y"]) == len(cross.tokens) and len(heat["x"]) == len(cross.key_tokens)
    z = _array(heat["z"]).reshape(len(heat["y"]), len(heat["x"]))
    np.testing.assert_allclose(z, cross.head(0, 0), atol=1e-3)
    captions = _texts(at.caption)
    assert "anti-diagonal" in captions and "upper triangle" not in captions
    assert "to previous" not in {m.label for m in at.metric} and "peak" in {m.label for m in at.metric}
    assert "".join(cross.key_tokens) in [c.value for c in at.code]  # both sides of the pair are shown

    at.selectbox(key="attn_layer").set_value(1).run()  # the decoder has 2 layers, the encoder 1
    at.radio(key="attn_kind").set_value("attention").run()
    assert not at.exception and at.selectbox(key="attn_layer").value == 0
    assert "bidirectional encoder" in _texts(at.caption) and "upper triangle" not in _texts(at.caption)
    assert "to next" in {m.label for m in at.metric}

    at.radio(key="attn_kind").set_value("decoder_attention").run()
    assert not at.exception
    assert "upper triangle is empty because a causal decoder" in _texts(at.caption)
    assert "to previous" in {m.label for m in at.metric} and "to next" not in {m.label for m in at.metric}


def test_the_attention_page_of_a_span_corruption_run_has_the_kind_picker(seq2seq_runs, monkeypatch) -> None:
    home, _, span = seq2seq_runs
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    at = _app(run=span, page="attention")
    assert not at.exception and at.radio(key="attn_kind").value == "cross_attention"
    assert "sentinel" in _texts(at.caption)


def test_a_bert_run_is_shown_as_bidirectional_self_attention(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    cfg = workbench.apply_overrides(workbench.get_preset("bert-nano"),
                                    {"max_steps": 2, "eval_interval": 2, "eval_chars": 2048, "batch_size": 4,
                                     "n_layer": 1, "n_embd": 32})
    run_id = train(cfg, RunStore(tmp_path))
    at = _app(run=run_id, page="attention")
    assert not at.get("radio") or all(r.key != "attn_kind" for r in at.radio)
    captions = _texts(at.caption)
    assert "bidirectional" in captions and "upper triangle" not in captions


def test_a_kind_snapshotted_from_a_later_step_on_moves_the_step_picker(tmp_path, monkeypatch) -> None:
    """A run resumed after this feature: its encoder snapshots start at 0, the other kinds later."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    store = RunStore(tmp_path)
    run_id = store.create_run(workbench.get_preset("t5-nano").to_dict())
    store.update_run(run_id, status="stopped")
    rng = np.random.default_rng(0)

    def snap(kind: str, step: int, T: int, S: int, prefix: str, artifact: str) -> None:
        w = rng.random((1, 2, T, S)).astype(np.float32)
        maps = AttentionMaps(w / w.sum(-1, keepdims=True), [f"t{i}" for i in range(T)], step,
                             [f"s{j}" for j in range(S)] if kind == "cross" else None, kind)
        path = store.run_dir(run_id) / "attn" / f"{prefix}_{step:06d}.npz"
        maps.save(path)
        store.add_artifact(run_id, artifact, step, path)

    snap("self", 0, 5, 5, "step", "attention")  # before the resume: the old format's encoder map
    snap("encoder", 2, 5, 5, "step", "attention")
    snap("decoder", 2, 3, 3, "decoder_step", "decoder_attention")
    snap("cross", 2, 3, 5, "cross_step", "cross_attention")
    at = _app(run=run_id, page="attention")
    at.radio(key="attn_kind").set_value("attention").run()
    at.select_slider(key="attn_step").set_value(0).run()
    assert not at.exception and "bidirectional" in _texts(at.caption)  # an old "self" map of a seq2seq run
    at.radio(key="attn_kind").set_value("cross_attention").run()
    assert not at.exception and at.select_slider(key="attn_step").value == 2
    assert "Layer 0, head 0 · step 2" in _heatmap(at)["layout"]["title"]["text"]
