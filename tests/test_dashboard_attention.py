"""The Attention page (AppTest): three sources (a run's snapshots, the run on your text, a
pretrained model) and five views, each with an export; mistakes are inline errors, never tracebacks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from workbench import apply_overrides, get_preset
from workbench.pipeline import attention_snapshots, load_attention, train
from workbench.runstore import RunStore

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
if str(APP.parent) not in sys.path:
    sys.path.insert(0, str(APP.parent))
import guard  # noqa: E402  (the dashboard's own module, as the app imports it)
TINY = {"max_steps": 30, "eval_interval": 10, "eval_chars": 4096, "batch_size": 8, "log_interval": 5}


@pytest.fixture(autouse=True)
def local_visitor(monkeypatch):
    monkeypatch.setattr(guard, "client_ip", lambda: None)
    monkeypatch.delenv("WORKBENCH_TOKEN", raising=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, str, str]:
    """(home, a GPT run, a permutation-LM run), both finished with 4 snapshots."""
    home = tmp_path_factory.mktemp("attn-page")
    store = RunStore(home)
    gpt = train(apply_overrides(get_preset("gpt-nano"), TINY), store)
    plm = train(apply_overrides(get_preset("gpt-nano"), {**TINY, "objective": "plm"}), store)
    return home, gpt, plm


@pytest.fixture
def home(runs, monkeypatch) -> tuple[Path, str, str]:
    monkeypatch.setenv("WORKBENCH_HOME", str(runs[0]))
    return runs


def _app(run: str | None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=90)
    at.run()
    at.switch_page("app_pages/attention.py")
    if run is not None:
        at.query_params["run"] = run
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _view(at: AppTest, view: str) -> AppTest:
    at.radio(key="attn_view").set_value(view).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def test_every_view_of_a_runs_snapshots_renders_and_exports(home) -> None:
    root, gpt, _ = home
    at = _app(gpt)
    assert at.radio(key="attn_view").options == ["One head", "All heads", "Head view", "Mask and weights",
                                                 "Over training", "Positions"]
    assert "Layer 0, head 0 · step 30" in _charts(at)[0]["layout"]["title"]["text"]
    assert any(b.label == "Download HTML" for b in at.get("download_button"))

    _view(at, "model")
    grid = _charts(at)[0]
    assert [t["type"] for t in grid["data"]] == ["heatmap"]  # one image of every layer x head, not L*H subplots
    table = at.dataframe[0].value
    cfg = get_preset("gpt-nano").model
    assert len(table) == cfg.n_layer * cfg.n_head and {"layer", "head", "label", "score"} <= set(table.columns)

    at.toggle(key="attn_induction").set_value(True).run()
    assert not at.exception and not at.error
    assert len(at.dataframe[0].value) == cfg.n_layer * cfg.n_head  # the labels again, now with the induction test

    _view(at, "lines")
    html = at.get("iframe")[0].proto.srcdoc if at.get("iframe") else ""
    assert "<canvas" in html and "https://" not in html

    _view(at, "mask")
    mask = _charts(at)[0]
    assert len([t for t in mask["data"] if t["type"] == "heatmap"]) == 2

    _view(at, "time")
    charts = _charts(at)
    assert len(charts) == 3  # the slider over steps, the small multiples, the label map
    assert charts[0]["layout"].get("sliders"), "the head over training has a step slider"
    snaps = attention_snapshots(RunStore(root), gpt)
    labels = charts[2]
    assert len(labels["data"][0]["y"]) == cfg.n_layer * cfg.n_head and len(snaps) == 4

    _view(at, "pos")  # gpt-nano learns its position table: the table and the similarity of its rows
    table, similarity = _charts(at)
    assert "learned" in table["layout"]["title"]["text"] and similarity["data"][0]["type"] == "heatmap"


def test_a_permutation_lm_run_offers_both_streams(home) -> None:
    root, _, plm = home
    assert attention_snapshots(RunStore(root), plm, "query_attention"), "a PLM run snapshots its query stream"
    at = _app(plm)
    assert at.radio(key="attn_kind").options == ["Causal pass", "Content stream", "Query stream"]
    assert at.radio(key="attn_kind").value == "query_attention"  # the stream that predicts, by default
    assert not at.exception and "never itself" in " ".join(c.value for c in at.caption)
    query = load_attention(attention_snapshots(RunStore(root), plm, "query_attention")[-1][1])
    assert np.all(np.diag(query.head(0, 0)) == 0)  # the query stream never sees its own token
    _view(at, "mask")


def test_your_text_is_read_by_the_runs_best_checkpoint(home) -> None:
    _, gpt, _ = home
    at = _app(gpt)
    at.segmented_control(key="attn_source").set_value("text").run()
    at.text_area(key="attn_text").set_value("To be, or not to be")
    at.button[0].click().run()
    assert not at.exception and not at.error
    heat = _charts(at)[0]["data"][0]
    assert len(heat["x"]) == len("To be, or not to be")  # a character tokenizer: one token per character
    at.text_area(key="attn_text").set_value("   ")
    at.button[0].click().run()
    assert not at.exception and "empty" in " ".join(e.value for e in at.error)


def test_a_pretrained_model_offline_and_bad_hub_ids_are_inline_errors(home) -> None:
    at = _app(None)
    at.segmented_control(key="attn_source").set_value("pretrained").run()
    assert not at.exception
    options = at.selectbox(key="attn_hf_model").options
    minilm = next(o for o in options if "minilm" in o.lower())
    at.selectbox(key="attn_hf_model").set_value(minilm).run()
    assert not at.exception and not at.error
    heat = _charts(at)[0]["data"][0]
    assert heat["y"][0].endswith("[CLS]")
    _view(at, "model")
    assert at.selectbox(key="attn_layer").options == [str(i) for i in range(6)]

    at.selectbox(key="attn_hf_model").set_value(options[-1]).run()
    for bad in ("../../etc/passwd", "/etc", "a b"):
        at.text_input(key="attn_hf_name").set_value(bad).run()
        assert not at.exception and "paths on the server are not accepted" in " ".join(e.value for e in at.error)


def test_positions_and_the_induction_test_of_minilm(home) -> None:
    at = _app(None)
    at.segmented_control(key="attn_source").set_value("pretrained").run()
    minilm = next(o for o in at.selectbox(key="attn_hf_model").options if "minilm" in o.lower())
    at.selectbox(key="attn_hf_model").set_value(minilm).run()
    _view(at, "pos")
    assert len(_charts(at)) == 2  # MiniLM's learned table (512 positions) and its similarity
    _view(at, "model")
    at.toggle(key="attn_induction").set_value(True).run()
    assert not at.exception and not at.error


def test_512_tokens_of_minilm_in_every_view(home) -> None:
    """bertviz #82: inputs near 512 tokens crash it. Here every view draws; the long ones say how."""
    from workbench.corpora import load_shakespeare

    at = _app(None)
    at.segmented_control(key="attn_source").set_value("pretrained").run()
    minilm = next(o for o in at.selectbox(key="attn_hf_model").options if "minilm" in o.lower())
    at.selectbox(key="attn_hf_model").set_value(minilm).run()
    at.number_input(key="attn_hf_max").set_value(512).run()
    at.text_area(key="attn_hf_text").set_value(load_shakespeare().documents[0].text[:6000])
    at.button[0].click().run()
    assert not at.exception and not at.error
    heat = _charts(at)[0]["data"][0]
    assert len(heat["x"]) == len(heat["y"]) == 512  # every token labelled
    _view(at, "model")
    assert "means of" in _charts(at)[0]["layout"]["title"]["text"]  # downsampled, and it says so
    _view(at, "lines")
    html = at.get("iframe")[0].proto.srcdoc
    assert "512 queries" in html and len(html) < 5_000_000
    _view(at, "mask")
