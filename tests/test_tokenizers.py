from __future__ import annotations

import pytest

from workbench.corpora import load_shakespeare
from workbench.tokenizers import BPETokenizer, CharTokenizer, Tokenizer, TokenizerError, train_tokenizer

SAMPLE = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!"


@pytest.fixture(scope="module")
def shakespeare_text() -> str:
    return load_shakespeare().text[:300_000]


def test_char_round_trip_on_corpus(shakespeare_text: str) -> None:
    tok = CharTokenizer.train(shakespeare_text)
    ids = tok.encode(shakespeare_text)
    assert len(ids) == len(shakespeare_text)
    assert tok.decode(ids) == shakespeare_text
    assert tok.vocab_size == len(set(shakespeare_text))
    assert max(ids) == tok.vocab_size - 1


def test_char_unknown_character_names_it() -> None:
    tok = CharTokenizer.train("abc")
    with pytest.raises(TokenizerError, match="'z'"):
        tok.encode("abz")


def test_char_special_tokens_come_first_and_are_skipped_in_decode() -> None:
    tok = CharTokenizer.train("ab", special_tokens=("[PAD]", "[UNK]", "[MASK]"))
    assert tok.token_to_id("[PAD]") == 0 and tok.token_to_id("[MASK]") == 2
    assert tok.encode("a?b") == [3, 1, 4]  # unknown -> [UNK] when the vocabulary has one
    assert tok.decode([0, 3, 2, 4]) == "ab"


def test_bpe_round_trip_and_compression(shakespeare_text: str) -> None:
    lengths = {}
    for vocab_size in (300, 1000):
        tok = BPETokenizer.train(shakespeare_text, vocab_size=vocab_size)
        assert tok.vocab_size == vocab_size
        ids = tok.encode(shakespeare_text)
        assert tok.decode(ids) == shakespeare_text
        lengths[vocab_size] = len(ids)
    # every merge shortens the text: 44 merges a little, 744 merges a lot
    assert lengths[1000] < 0.5 * len(shakespeare_text) < lengths[300] < len(shakespeare_text)
    # any text round-trips, even characters never seen in training (byte-level)
    odd = "naïve café — ☃ 😀"
    assert tok.decode(tok.encode(odd)) == odd


def test_bpe_display_tokens_are_readable(shakespeare_text: str) -> None:
    tok = BPETokenizer.train(shakespeare_text, vocab_size=1000)
    shown = tok.tokens(SAMPLE)
    assert "".join(shown) == SAMPLE
    assert not any("Ġ" in t for t in shown)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_save_load_round_trip(tmp_path, shakespeare_text: str, kind: str) -> None:
    tok = train_tokenizer(kind, shakespeare_text, vocab_size=400, special_tokens=("[PAD]", "[MASK]"))
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = Tokenizer.load(path)
    assert type(loaded) is type(tok)
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.special_tokens == ("[PAD]", "[MASK]")
    assert loaded.encode(SAMPLE) == tok.encode(SAMPLE)
    assert loaded.decode(tok.encode(SAMPLE)) == SAMPLE


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(TokenizerError, match="unknown tokenizer 'wordpiece'"):
        train_tokenizer("wordpiece", "abc")
