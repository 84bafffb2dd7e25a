from __future__ import annotations

import hashlib

import pytest

from conftest import SHARED_DATA
from workbench.corpora import CorpusError, build_shakespeare, load_corpus, load_shakespeare, play_markdown_to_text, split_train_val


def test_builtin_shakespeare_has_every_play_with_genre() -> None:
    corpus = load_shakespeare()
    assert len(corpus.documents) == 38
    assert corpus.genres == ["comedies", "histories", "problems", "roman", "romances", "tragedies"]
    titles = {d.title for d in corpus.documents}
    assert {"Hamlet", "Macbeth", "The Tempest"} <= titles
    assert 4_000_000 < len(corpus.text) < 5_500_000
    assert len(corpus) == len(corpus.text)


def test_text_looks_like_tiny_shakespeare() -> None:
    text = load_shakespeare().text
    assert text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    # no markdown survives: headings, bold speaker marks, italics, escapes
    for marker in ("**", "## ", "_Exit", "\\[", "\\-"):
        assert marker not in text
    hamlet = next(d for d in load_shakespeare().documents if d.title == "Hamlet")
    assert "HAMLET:\nTo be, or not to be: that is the question:" in hamlet.text


def test_cache_is_built_once_and_rebuilt_when_damaged(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    first = load_shakespeare()
    (cache_file,) = tmp_path.glob("shakespeare-*.json")
    cache_file.write_text("{broken", encoding="utf-8")
    again = load_shakespeare()
    assert again.text == first.text == build_shakespeare().text


def test_markdown_conversion_drops_stage_directions() -> None:
    md = "# A Play\n\n## ACT I\n\n_Enter KING and\nQUEEN_\n\n**KING**  \nWell met.  \n_\\[Aside]_  \nToo well.\n\n_Exeunt_\n"
    assert play_markdown_to_text(md) == ("A Play", "KING:\nWell met.\nToo well.")


def test_split_is_deterministic_tail() -> None:
    train, val = split_train_val("x" * 90 + "y" * 10, 0.1)
    assert val == "y" * 10 and train == "x" * 90


def test_user_file_and_errors(tmp_path) -> None:
    good = tmp_path / "a.txt"
    good.write_text("hello\r\nworld\n", encoding="utf-8")
    assert load_corpus(good).text == "hello\nworld\n"
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "missing.txt")
    with pytest.raises(CorpusError, match="is not a file"):
        load_corpus(tmp_path)
    (tmp_path / "blank.txt").write_text("  \n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus(tmp_path / "blank.txt")
    (tmp_path / "latin.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8.*offset 3"):
        load_corpus(tmp_path / "latin.txt")


def test_classic_tinyshakespeare_file_loads_as_a_user_corpus() -> None:
    path = SHARED_DATA / "tinyshakespeare.txt"
    assert hashlib.md5(path.read_bytes()).hexdigest() == "6fb458f1232090904fb40fe944165e91"
    corpus = load_corpus(path)
    assert len(corpus.text) == 1_115_394
    assert len(set(corpus.text)) == 65


def test_validation_holds_the_tail_of_every_play() -> None:
    corpus = load_shakespeare()
    train, val = corpus.split(0.1)
    assert abs(len(val) / len(corpus.text) - 0.1) < 0.002
    for doc in corpus.documents:  # every play's last line is validation text, its first is training text
        assert doc.text.splitlines()[-1] in val
        assert doc.text[:200] in train and doc.text[:200] not in val
    one_file = load_corpus_from_text("abcdefghij")
    assert one_file.split(0.2) == ("abcdefgh", "ij")  # a single file splits like nanoGPT's


def test_every_play_has_a_real_title() -> None:
    titles = [d.title for d in load_shakespeare().documents]
    assert "Measure for Measure" in titles
    assert not [t for t in titles if "-" in t and " " not in t]


def load_corpus_from_text(text: str):
    from workbench.corpora import Corpus, Document

    return Corpus("t", [Document("t", "user", text)])
