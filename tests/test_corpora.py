from __future__ import annotations

import pytest

from workbench.corpora import (
    Corpus,
    CorpusError,
    Document,
    build_shakespeare,
    corpus_fingerprint,
    corpus_from_text,
    load_corpus,
    load_shakespeare,
    play_markdown_to_text,
)


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
    train, val = Corpus("c", [Document("x" * 90 + "y" * 10)]).split(0.1)
    assert val.text == "y" * 10 and train.text == "x" * 90


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


def test_a_user_file_is_its_paragraphs_and_reads_back_exactly(tmp_path) -> None:
    """The layout of the classic tiny-shakespeare file: speeches separated by blank lines."""
    speeches = [f"Speaker {i}:\nLine one of speech {i}.\nLine two!" for i in range(50)]
    text = "\n\n".join(speeches) + "\n\n\nAn odd triple gap above.\n"
    path = tmp_path / "plays.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus(path)
    assert corpus.text == text  # the stream a causal LM reads is the file itself
    assert [d.text for d in corpus.documents[:2]] == speeches[:2]
    assert {d.source for d in corpus.documents} == {"plays"} and corpus.documents[0].title == "plays"
    # nanoGPT's prepare.py: train = data[:int(n*0.9)], val = data[int(n*0.9):]
    train, val = corpus.split(0.1)
    n = len(text)
    assert (train.text, val.text) == (text[: int(n * 0.9)], text[int(n * 0.9):])
    lines = corpus_from_text("one\ntwo\nthree")
    assert [d.text for d in lines.documents] == ["one", "two", "three"] and lines.text == "one\ntwo\nthree"


def test_validation_holds_the_tail_of_every_play() -> None:
    corpus = load_shakespeare()
    train, val = corpus.split(0.1)
    assert abs(len(val.text) / len(corpus.text) - 0.1) < 0.002
    assert [d.title for d in train.documents] == [d.title for d in val.documents] == [d.title for d in corpus.documents]
    for doc, tr, va in zip(corpus.documents, train.documents, val.documents):
        assert tr.text + va.text == doc.text  # each play cut once, nothing lost, nothing shared
        assert tr.genre == va.genre == doc.genre and len(va.text) == len(doc.text) - int(len(doc.text) * 0.9)
    one_file = Corpus("t", [Document("abcdefghij")])
    assert [c.text for c in one_file.split(0.2)] == ["abcdefgh", "ij"]  # a single file splits like nanoGPT's


def test_validation_passages_depend_on_the_corpus_only() -> None:
    _, val = load_shakespeare().split(0.1)
    passages = val.passages(32_768)
    assert passages == val.passages(32_768)
    assert 30_000 <= sum(len(p.text) for p in passages) <= 32_768 + 4096
    assert len({p.title for p in passages}) > 4  # spread over the plays, not the first one only
    for p in passages:  # each is a piece of one play's validation text
        assert p.text in next(d.text for d in val.documents if d.title == p.title)
    everything = val.passages(0)
    assert "".join(p.text for p in everything) == "".join(d.text for d in val.documents)


def test_documents_know_their_lines_and_sentences() -> None:
    d = Document("KING:\nWell met. What news?\nNone, my lord.", title="t")
    assert [d.text[a:b] for a, b in d.line_spans()] == ["KING:", "Well met. What news?", "None, my lord."]
    assert [d.text[a:b] for a, b in d.sentence_spans()] == ["KING:\nWell met.", "What news?", "None, my lord."]
    hamlet = next(doc for doc in load_shakespeare().documents if doc.title == "Hamlet")
    assert len(hamlet.sentence_spans()) > 1000 and len(hamlet.line_spans()) == hamlet.text.count("\n") + 1


def test_fingerprint_changes_with_the_text(tmp_path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("some text", encoding="utf-8")
    first = corpus_fingerprint(load_corpus(path))
    assert first == corpus_fingerprint(load_corpus(str(path))) and first.startswith("sha256:")
    path.write_text("some other text", encoding="utf-8")
    assert corpus_fingerprint(load_corpus(path)) != first
    assert corpus_fingerprint(load_shakespeare()) == corpus_fingerprint(build_shakespeare())


def test_every_play_has_a_real_title() -> None:
    titles = [d.title for d in load_shakespeare().documents]
    assert "Measure for Measure" in titles
    assert not [t for t in titles if "-" in t and " " not in t]


def test_validation_passages_of_a_paragraph_file_are_cut_from_its_text_as_read() -> None:
    """A user file's documents are short paragraphs: passages are cut from the joined text (blank
    lines included), not paragraph by paragraph, so eval_chars is what gets scored."""
    text = "\n\n".join(f"Speaker {i}:\n" + "words and more words " * 8 for i in range(3000))
    _, val = corpus_from_text(text, name="f").split(0.1)
    passages = val.passages(32_768)
    assert len(val.documents) > 200 and len(passages) == 8
    assert all(len(p.text) == 4096 for p in passages) and sum("\n\n" in p.text for p in passages) == 8
    for p in passages:
        assert p.text in val.text
