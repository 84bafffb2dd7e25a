"""The teaching BPE: same merges as the naive trainer, lossless, as good as HF's, exports to HF."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.corpora import load_shakespeare
from workbench.tokenizers.base import Tokenizer
from workbench.tokenizers.teaching_bpe import (
    TeachingBPEConfig,
    TeachingBPETokenizer,
    bpe_merges,
    naive_bpe_merges,
    split_chunks,
)

ROOT = Path(__file__).resolve().parents[1]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<extra_id_0>", "<extra_id_1>"]
HARD = "naïve café e\u0301 👍🏽 👨‍👩‍👧 中文没有空格的句子 ١٢٣ \t\r\n  end"  # combining marks, ZWJ, CJK, Arabic digits

# Small alphabets make many ties; a mixed one brings multi-byte characters and odd whitespace.
tie_text = st.text(alphabet="ab ", max_size=80)
mixed_text = st.text(alphabet=st.sampled_from(list("aab  b'sé\u0301😀中文字\n\t1")), max_size=80)
any_text = st.text(max_size=60)  # any code points but surrogates
fast = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def shakespeare() -> str:
    return load_shakespeare().text[:200_000]


@cache
def trained(vocab_size: int = 400, specials: tuple[str, ...] = ()) -> TeachingBPETokenizer:
    """A tokenizer that has seen multi-byte text too, so some merges fall inside characters."""
    text = shakespeare()[:60_000] + (" " + HARD) * 20
    return TeachingBPETokenizer.train(text, TeachingBPEConfig(vocab_size=vocab_size), list(specials))


# --- the same merges as the naive reference ---------------------------------------------------------

@pytest.mark.parametrize("text, k", [
    ("", 10), ("a", 10), ("aaaa", 10), ("aaabdaaabac", 10), ("ab ba " * 30, 40), ("aaaaaaa aaaa aa a", 20),
    ("中文没有空格中文没有空格", 30), ("😀😀😀 😀😀", 20), (HARD * 3, 60), ("low lower lowest newer wider " * 5, 50),
])
def test_merges_equal_naive_on_examples(text: str, k: int) -> None:
    assert bpe_merges(text, k) == naive_bpe_merges(text, k)


def test_merges_equal_naive_on_shakespeare() -> None:
    text = shakespeare()[:4000]
    assert bpe_merges(text, 300) == naive_bpe_merges(text, 300)


@fast
@given(st.one_of(tie_text, mixed_text, any_text), st.integers(0, 60))
def test_merges_equal_naive_on_random_text(text: str, k: int) -> None:
    assert bpe_merges(text, k) == naive_bpe_merges(text, k)


def test_both_stop_when_no_pair_is_left() -> None:
    assert naive_bpe_merges("ab", 5) == bpe_merges("ab", 5) == [(97, 98)]
    assert TeachingBPETokenizer.train("ab", TeachingBPEConfig(vocab_size=300)).vocab_size == 257


# --- lossless, offsets ---------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.one_of(any_text, mixed_text))
def test_decode_encode_round_trips(text: str) -> None:
    tok = trained()
    assert tok.decode(tok.encode(text)) == text
    ids, offsets = tok.encode_offsets([text])[0]
    assert ids == tok.encode(text) and len(offsets) == len(ids)
    assert sum(tok.encode_with_lengths([text])[0][1]) == len(text)


def test_round_trip_of_hard_text_and_empty() -> None:
    tok = trained()
    assert tok.decode(tok.encode(HARD)) == HARD
    assert tok.encode("") == [] and tok.decode([]) == "" and tok.encode_offsets([""]) == [([], [])]


def test_offsets_rebuild_ascii_text() -> None:
    tok = trained()
    text = shakespeare()[100_000:102_000]
    assert text.isascii()
    (_, offsets), = tok.encode_offsets([text])
    assert "".join(text[a:b] for a, b in offsets) == text


def test_split_characters_count_for_their_first_token() -> None:
    tok = TeachingBPETokenizer.train("hello world", TeachingBPEConfig(vocab_size=260))  # 4 merges: emoji stay bytes
    text = "a😀e\u0301"
    ids, lengths = tok.encode_with_lengths([text])[0]
    assert [tok.display_token(i) for i in ids] == ["a", "\\xf0", "\\x9f", "\\x98", "\\x80", "e", "\\xcc", "\\x81"]
    assert lengths == [1, 1, 0, 0, 0, 1, 1, 0]
    assert tok.encode_offsets([text])[0][1] == [(0, 1), (1, 2), (1, 2), (1, 2), (1, 2), (2, 3), (3, 4), (3, 4)]


# --- as good as HF's trainer, and the same as its export --------------------------------------------

@pytest.mark.parametrize("vocab_size", [512, 1024])
def test_compression_within_2_percent_of_hf(vocab_size: int) -> None:
    from tokenizers import Tokenizer as HFTok
    from tokenizers import models, pre_tokenizers, trainers

    train, held = shakespeare()[:180_000], shakespeare()[180_000:200_000]
    hf = HFTok(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.train_from_iterator([train], trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    ours = TeachingBPETokenizer.train(train, TeachingBPEConfig(vocab_size=vocab_size))
    assert ours.vocab_size == hf.get_vocab_size() == vocab_size
    theirs_cpt = len(held) / len(hf.encode(held).ids)
    ours_cpt = len(held) / len(ours.encode(held))
    assert ours_cpt >= 0.98 * theirs_cpt, (ours_cpt, theirs_cpt)


def test_hf_export_gives_the_same_ids(tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    tok = trained(400, tuple(SPECIALS))
    tok.save_hf(tmp_path / "tokenizer.json")
    fast_tok = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for text in [shakespeare()[150_000:170_000], HARD, "", "  leading and trailing  ", "The [MASK] sat.[SEP]"]:
        assert fast_tok(text, add_special_tokens=False)["input_ids"] == tok.encode(text)
    assert fast_tok.decode(tok.encode(HARD)) == HARD
    pair = fast_tok("a", "b", return_token_type_ids=True)
    enc = tok.encode_plus("a", "b")
    assert pair["input_ids"] == enc.ids and pair["token_type_ids"] == enc.type_ids


@settings(max_examples=150, deadline=None)
@given(st.one_of(any_text, mixed_text))
def test_hf_export_same_ids_and_offsets_on_random_text(text: str) -> None:
    tok = trained(400, tuple(SPECIALS))
    hf = _hf(tok)
    e = hf.encode(text, add_special_tokens=False)
    assert (e.ids, e.offsets) == tok.encode_offsets([text])[0]


@cache
def _hf(tok: TeachingBPETokenizer):
    return tok.to_hf()


def test_save_and_load_give_the_same_ids(tmp_path: Path) -> None:
    tok = trained(400, tuple(SPECIALS))
    again = TeachingBPETokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    text = shakespeare()[120_000:140_000] + HARD
    assert again.encode(text) == tok.encode(text)
    assert again.merges == tok.merges and again.special_tokens == tok.special_tokens
    assert again.config == tok.config
    tok.save(tmp_path / "tok.json")
    loaded = Tokenizer.load(tmp_path / "tok.json")
    assert isinstance(loaded, TeachingBPETokenizer) and loaded.encode(text) == tok.encode(text)


# --- the vocabulary ------------------------------------------------------------------------------

def test_special_tokens_first_and_sentinels_on_top() -> None:
    tok = trained(400, tuple(SPECIALS))
    assert tok.vocab_size == 400 and len(tok.merges) == 400 - 256 - len(SPECIALS)
    assert [tok.token_to_id(t) for t in SPECIALS[:5]] == [0, 1, 2, 3, 4]
    assert tok.token_to_id("<extra_id_0>") == tok.vocab_size - 1
    assert tok.token_to_id("<extra_id_1>") == tok.vocab_size - 2
    assert tok.id_to_token(5 + ord("!")) == "!" and tok.token_to_id("Ġ") == 5 + ord(" ")  # bytes after [MASK]
    assert all(tok.token_to_id(tok.id_to_token(i)) == i for i in range(tok.vocab_size))
    enc = tok.encode_plus("a", "b")
    assert [tok.id_to_token(i) for i in enc.ids] == ["[CLS]", "a", "[SEP]", "b", "[SEP]"]
    assert enc.type_ids == [0, 0, 0, 1, 1] and enc.special_mask == [1, 0, 1, 0, 1]
    assert tok.decode(enc.ids) == "ab" and tok.decode(enc.ids, skip_special_tokens=False) == "[CLS]a[SEP]b[SEP]"
    ids = tok.encode("fill [MASK] in")  # special tokens in the text are recognised, as HF does
    assert tok.special_id("[MASK]") in ids


def test_vocab_too_small_for_the_specials_is_an_error() -> None:
    from workbench.tokenizers.base import TokenizerError

    with pytest.raises(TokenizerError, match="at least 258"):
        TeachingBPETokenizer.train("abc", TeachingBPEConfig(vocab_size=256), ["[PAD]", "[UNK]"])
    with pytest.raises(TokenizerError, match="empty text"):
        TeachingBPETokenizer.train("", TeachingBPEConfig())


def test_tokens_after_k_merges() -> None:
    tok = trained()
    text = "Thou art more lovely and more temperate: 😀"
    steps = [tok.tokens_after(text, k) for k in range(0, len(tok.merges) + 1, 16)]
    assert steps[0] == [bytes([b]).decode("utf-8", "backslashreplace") for b in text.encode("utf-8")]
    assert all(len(a) >= len(b) for a, b in zip(steps, steps[1:]))
    assert tok.tokens_after(text, len(tok.merges)) == tok.tokens(text)
    with_special = trained(400, tuple(SPECIALS))
    assert with_special.tokens_after("a [MASK] b", 0) == ["a", " ", "[MASK]", " ", "b"]
    assert with_special.tokens_after("a [MASK] b", len(with_special.merges)) == with_special.tokens("a [MASK] b")
    assert [s for s in tok.merge_table()[:3]] == [tuple(tok.token_bytes[i].decode("utf-8", "backslashreplace")
                                                     for i in (a, b, 256 + k)) for k, (a, b) in enumerate(tok.merges[:3])]
    assert split_chunks(text)[:3] == ["Thou", " art", " more"]


# --- the bench script ----------------------------------------------------------------------------

def test_bench_script_quick_run_prints_its_line() -> None:
    res = subprocess.run([sys.executable, "bench/tokenizers.py", "--chars", "20000", "--merges", "48",
                          "--hf-chars", "100000", "--hf-vocab", "1024", "--repeats", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "identical merges: True" in res.stdout and "published" in res.stdout
    last = res.stdout.strip().splitlines()[-1].split()
    assert last[0] == "tokenizers"
    fields = dict(kv.split("=") for kv in last[1:])
    assert list(fields) == ["hf_bpe_train_s", "encode_corpus_s", "teaching_bpe_train_s", "naive_bpe_train_s"]
    assert all(float(v) >= 0 and len(v.split(".")[1]) == 3 for v in fields.values())
