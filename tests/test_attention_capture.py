"""Attention capture with masks: our GPT/BERT/encoder-decoder, the permutation LM's two streams,
pretrained Hugging Face models (MiniLM, SmolLM2 GGUF, offline), the npz round trip and the
snapshots a PLM run keeps."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import workbench
from workbench.attention import AttentionMaps, capture, capture_seq2seq, capture_two_stream, parse_order
from workbench.models.bert import BERT, BERTConfig
from workbench.models.gpt import GPT, GPTConfig
from workbench.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from workbench.objectives.permutation_lm import PermutationBatch, PermutationLM, permutation_mask
from workbench.pipeline import attention_snapshots, load_attention, train
from workbench.runstore import RunStore

V = 40


def _gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=V))


def _rows_sum_to_one_where_allowed(m: AttentionMaps) -> None:
    """Rows with an allowed key sum to 1; rows with none are all zero; no weight where forbidden."""
    has_key = m.allowed.any(-1)  # (T,)
    sums = m.weights.sum(-1)  # (L, nh, T)
    np.testing.assert_allclose(sums[..., has_key], 1.0, atol=1e-5)
    assert np.all(sums[..., ~has_key] == 0)
    assert np.all(m.weights[..., ~m.allowed] == 0)


# --- our models ----------------------------------------------------------------------------------------

def test_gpt_capture_is_causal_and_its_mask_is_the_lower_triangle() -> None:
    model = _gpt().train()
    maps = capture(model, list(range(1, 11)), source="run x", step=7)
    assert model.training  # restored
    assert maps.weights.shape == (2, 2, 10, 10) and maps.kind == "self"
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(maps.weights, k=1) == 0)  # nothing on the future
    np.testing.assert_array_equal(maps.mask, np.tril(np.ones((10, 10), dtype=bool)))
    assert (maps.source, maps.step) == ("run x", 7)


def test_bert_capture_has_no_mask_and_looks_both_ways() -> None:
    torch.manual_seed(0)
    model = BERT(BERTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=V))
    maps = capture(model, list(range(1, 9)))
    assert maps.mask is None and maps.allowed.all() and maps.kind == "self"
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    upper = np.triu_indices(8, k=1)
    assert maps.weights[..., upper[0], upper[1]].min() > 0  # every later key gets some weight


def test_seq2seq_masks_decoder_triangle_encoder_and_cross_none() -> None:
    torch.manual_seed(0)
    model = Seq2SeqTransformer(Seq2SeqConfig(n_layer=1, n_dec_layer=2, n_head=2, n_embd=16, block_size=16,
                                             vocab_size=20))
    maps = capture_seq2seq(model, [3, 4, 5, 6, 7], [0, 8, 9], source="pair", step=3)
    enc, dec, cross = maps["encoder"], maps["decoder"], maps["cross"]
    np.testing.assert_array_equal(dec.mask, np.tril(np.ones((3, 3), dtype=bool)))
    assert enc.mask is None and cross.mask is None
    assert cross.weights.shape == (2, 2, 3, 5) and cross.allowed.shape == (3, 5)
    assert np.all(dec.weights[..., ~dec.mask] == 0)
    assert all(m.source == "pair" and m.step == 3 for m in maps.values())
    assert capture(model, [3, 4, 5]).mask is None  # capture() of an encoder-decoder: its encoder


# --- the permutation LM's two streams ------------------------------------------------------------------

def test_two_streams_follow_their_masks() -> None:
    model = _gpt()
    ids = list(range(1, 14))  # T = 13: the last ceil(13 / 6) = 3 of the order predicted
    streams = capture_two_stream(model, ids, mask_token_id=5, source="probe")
    content, query = streams["content"], streams["query"]
    assert (content.kind, query.kind) == ("content", "query")
    assert content.weights.shape == query.weights.shape == (2, 2, 13, 13)
    for m in (content, query):
        _rows_sum_to_one_where_allowed(m)
    assert not query.mask.diagonal().any() and np.all(np.diagonal(query.weights, axis1=2, axis2=3) == 0)
    assert content.mask.diagonal().all() and np.all(np.diagonal(content.weights, axis1=2, axis2=3) > 0)
    order, predicted = parse_order(query.source)
    assert query.source.startswith("probe · ") and sum(predicted) == 3
    assert {order.index(i) for i in range(13) if predicted[i]} == {10, 11, 12}  # the end of the order
    again = capture_two_stream(model, ids, mask_token_id=5)  # the default order is seeded: the same
    assert parse_order(again["query"].source) == (order, predicted)
    np.testing.assert_array_equal(again["query"].weights, query.weights)


def test_two_stream_masks_are_what_the_objective_and_the_model_use() -> None:
    model = _gpt()
    ids, order = [4, 9, 2, 7, 3, 8], [3, 0, 5, 1, 4, 2]
    predicted = [True] * 6  # nothing is context: the first of the order sees nothing in the query stream
    streams = capture_two_stream(model, ids, order=order, predicted=predicted)
    rank = torch.empty(1, 6, dtype=torch.long)
    rank[0, order] = torch.arange(6)
    perm = permutation_mask(rank, torch.tensor([predicted]))
    batch = PermutationBatch(input_ids=torch.tensor([ids]), labels=torch.tensor([ids]), perm_mask=perm)
    np.testing.assert_array_equal(streams["query"].mask, PermutationLM.attention_mask_matrix(PermutationLM(), batch).numpy())
    np.testing.assert_array_equal(streams["content"].mask, PermutationLM().content_mask_matrix(batch).numpy())
    query = streams["query"]
    assert not query.mask[order[0]].any() and np.all(query.weights[:, :, order[0]] == 0)  # an empty row
    _rows_sum_to_one_where_allowed(query)
    with torch.no_grad():
        out = model(torch.tensor([ids]), perm_mask=perm, output_attentions=True)  # the model's own query stream
    np.testing.assert_allclose(query.weights, torch.stack([a[0] for a in out.attentions]).numpy(), atol=1e-6)


def test_two_stream_refuses_a_bad_order_and_a_model_without_permutation() -> None:
    with pytest.raises(ValueError, match="permutation of the 3"):
        capture_two_stream(_gpt(), [1, 2, 3], order=[0, 0, 1])
    with pytest.raises(ValueError, match="permutation"):
        capture_two_stream(BERT(BERTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=V)), [1, 2])


# --- the npz format ------------------------------------------------------------------------------------

def test_save_and_load_keep_mask_source_kind_and_step(tmp_path) -> None:
    streams = capture_two_stream(_gpt(), list(range(1, 12)), source="run 3f2a", step=40)
    for name, m in streams.items():
        m.save(tmp_path / f"{name}.npz")
        back = AttentionMaps.load(tmp_path / f"{name}.npz")
        assert (back.kind, back.step, back.source) == (name, 40, m.source)
        np.testing.assert_array_equal(back.mask, m.mask)
        np.testing.assert_allclose(back.weights, m.weights, atol=1e-3)
    bert = capture(BERT(BERTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=V)), [1, 2, 3])
    bert.save(tmp_path / "b.npz")
    back = AttentionMaps.load(tmp_path / "b.npz")
    assert back.mask is None and back.source == "" and back.step is None


def test_a_plm_run_snapshots_both_streams_in_one_fixed_order(tiny_cfg) -> None:
    cfg = workbench.apply_overrides(tiny_cfg(max_steps=4, eval_interval=2, log_interval=2, warmup_steps=1),
                                    {"objective": "plm"})
    store = RunStore()
    run_id = train(cfg, store)
    plain = attention_snapshots(store, run_id)
    content, query = (attention_snapshots(store, run_id, k) for k in ("content_attention", "query_attention"))
    assert [s for s, _ in content] == [s for s, _ in query] == [s for s, _ in plain] == [0, 2, 4]
    assert all(p.name == f"query_step_{s:06d}.npz" for s, p in query)
    maps = [load_attention(p) for _, p in query]
    assert [m.step for m in maps] == [0, 2, 4] and all(m.kind == "query" for m in maps)
    assert maps[0].source.startswith(f"run {run_id} · order") and maps[0].source == maps[-1].source
    np.testing.assert_array_equal(maps[0].mask, maps[-1].mask)
    self_attn = load_attention(plain[1][1])
    assert self_attn.kind == "self" and self_attn.source == f"run {run_id}" and self_attn.step == 2
    np.testing.assert_array_equal(self_attn.mask, np.tril(np.ones_like(self_attn.mask)))
    assert load_attention(content[1][1]).mask.diagonal().all()


# --- pretrained Hugging Face models --------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm():
    from workbench.hf_attention import load_hf

    return load_hf("all-MiniLM-L6-v2")


def test_minilm_attention_is_bidirectional_bert_shaped(minilm) -> None:
    from workbench.hf_attention import capture_hf

    maps = capture_hf(minilm, "Tokenizers split wordpieces.")
    assert not minilm.causal and minilm.max_tokens == 512
    assert (maps.n_layers, maps.n_heads) == (6, 12) and maps.weights.dtype == np.float32
    assert maps.tokens[0] == "[CLS]" and maps.tokens[-1] == "[SEP]" and any(t.startswith("##") for t in maps.tokens)
    assert maps.mask is None and maps.kind == "self" and maps.source == "hf:all-MiniLM-L6-v2"
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)


def test_minilm_weights_are_hf_own_and_eager_matches_sdpa(minilm) -> None:
    from transformers import AutoModel

    from workbench.hf_attention import capture_hf, offline_models

    folder, _ = offline_models()["all-MiniLM-L6-v2"]
    text = "Attention weights are what the model mixes values with."
    maps = capture_hf(minilm, text)
    enc = minilm.tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        eager = AutoModel.from_pretrained(folder, attn_implementation="eager", use_safetensors=True).eval()
        sdpa = AutoModel.from_pretrained(folder, attn_implementation="sdpa", use_safetensors=True).eval()
        theirs = eager(**enc, output_attentions=True)
        fused = sdpa(**enc)
    np.testing.assert_allclose(maps.weights, torch.stack([a[0] for a in theirs.attentions]).numpy(), atol=1e-6)
    torch.testing.assert_close(fused.last_hidden_state, theirs.last_hidden_state, atol=1e-5, rtol=0)


def test_minilm_long_inputs_are_cut_to_512_and_say_so(minilm) -> None:
    from workbench.hf_attention import capture_hf

    exact = capture_hf(minilm, " ".join(["word"] * 510))  # 510 + [CLS] + [SEP]
    assert exact.weights.shape == (6, 12, 512, 512) and "first" not in exact.source
    long = capture_hf(minilm, " ".join(["word"] * 598))
    assert long.weights.shape == (6, 12, 512, 512) and long.tokens[-1] == "[SEP]"
    assert long.source == "hf:all-MiniLM-L6-v2 (first 512 of 600 tokens)"
    short = capture_hf(minilm, " ".join(["word"] * 598), max_tokens=20, source="mine")
    assert short.weights.shape[2:] == (20, 20) and short.source == "mine (first 20 of 600 tokens)"


def test_an_unknown_model_offline_says_which_models_are_here(monkeypatch) -> None:
    import huggingface_hub.constants

    from workbench.hf_attention import load_hf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    with pytest.raises(ValueError, match=r"could not find the model 'someone/no-such-model'.*all-MiniLM-L6-v2"):
        load_hf("someone/no-such-model")


def test_pickled_weights_are_refused_not_loaded(tmp_path) -> None:
    import shutil

    from workbench.hf_attention import load_hf, offline_models

    folder, _ = offline_models()["all-MiniLM-L6-v2"]
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        shutil.copy(f"{folder}/{name}", tmp_path / name)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a pickle: unpickling this would fail differently")
    with pytest.raises(ValueError, match="no safetensors weights"):
        load_hf(str(tmp_path))


@pytest.mark.slow
def test_smollm2_gguf_is_causal(capsys) -> None:
    from workbench.hf_attention import capture_hf, load_hf

    start = time.perf_counter()
    hf = load_hf("SmolLM2-135M-Instruct")
    with capsys.disabled():
        print(f"\nSmolLM2-135M GGUF load: {time.perf_counter() - start:.1f} s")
    maps = capture_hf(hf, "Hello world,\n the café is open.")
    assert hf.causal and (maps.n_layers, maps.n_heads) == (30, 9)
    assert maps.tokens[:4] == ["Hello", " world", ",", "\n"] and " café" in maps.tokens
    T = len(maps.tokens)
    np.testing.assert_array_equal(maps.mask, np.tril(np.ones((T, T), dtype=bool)))
    assert np.all(maps.weights[..., ~maps.mask] == 0)
    np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-5)
    assert maps.source == "hf:SmolLM2-135M-Instruct"
