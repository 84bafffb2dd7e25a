"""The dashboard's fine-tuning faces, through Streamlit's AppTest: the Train page's Fine-tune mode
(checks, inline errors, an uploaded CSV, a launch), the Monitor of a fine-tuning run (task scores,
what it trained on, the confusion matrix over evaluations and on the test split), predictions on
typed text (the Sample page), and the other pages with a fine-tuning run in the store.

A store with a tiny pretrained BERT and a genre head fine-tuned on it is built once per module
(~20 s on a CPU); the launch test starts a real subprocess, as a click does.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from test_dashboard import _app, _charts, _raw, _texts, home, local_visitor  # noqa: F401  (fixtures)
from workbench import launcher
from workbench.config import RunConfig
from workbench.finetune.run import confusion_snapshots, finetune_info
from workbench.finetune.views import confusion_figure, spans_html
from workbench.overrides import apply_overrides
from workbench.pipeline import train
from workbench.presets import get_preset
from workbench.runstore import RunStore

FINETUNE = "Fine-tune on a task"


@pytest.fixture(scope="module")
def ft_trained(tmp_path_factory) -> tuple:
    """(home, trunk run id, fine-tuning run id): a tiny BERT pretrained for 20 steps, and a genre
    head fine-tuned on it (64 labels, evaluated every 10 steps, tested at the end)."""
    folder = tmp_path_factory.mktemp("ft_trained")
    store = RunStore(folder)
    trunk = train(apply_overrides(get_preset("bert-nano"), {
        "max_steps": 20, "eval_interval": 10, "eval_chars": 2048, "batch_size": 4, "log_interval": 5,
        "warmup_steps": 5, "name": "bert-trunk"}), store, progress=False)
    cfg = RunConfig.from_dict({"train": {"max_steps": 30, "batch_size": 16, "eval_interval": 10, "log_interval": 5,
                                         "lr": 1e-3, "warmup_steps": 5},
                               "finetune": {"task": "genre", "init": trunk, "labels": 64, "max_eval": 32,
                                            "max_len": 64},
                               "name": "genre-head"})
    fine = train(cfg, store, progress=False)
    assert store.get_run(fine).status == "finished"
    return folder, trunk, fine


@pytest.fixture
def ft_finished(ft_trained, monkeypatch) -> tuple:
    monkeypatch.setenv("WORKBENCH_HOME", str(ft_trained[0]))
    return ft_trained


def _finetune_mode(run: str | None = None):
    at = _app(run=run)
    at.radio(key="train_mode").set_value(FINETUNE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _no_traceback(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert "Traceback" not in _texts(at.error) and "Traceback" not in _texts(at.markdown)


# --- the figures and the escaped HTML (the package's pure functions) --------------------------------

def test_confusion_figure_rows_are_true_classes_and_labels_are_plain_text():
    fig = confusion_figure(["<b>x</b>", "y"], [[2, 2], [0, 5]])
    heat = fig.data[0]
    assert [list(r) for r in heat.z] == [[0.5, 0.5], [0.0, 1.0]]
    assert list(heat.x) == ["&lt;b&gt;x&lt;/b&gt;", "y"]  # a user's label is shown, never drawn as HTML
    assert [list(r) for r in heat.text] == [["2", "2"], ["0", "5"]]
    raw = confusion_figure(["a", "b"], [[2, 2], [0, 5]], normalize=False).data[0]
    assert [list(r) for r in raw.z] == [[2.0, 2.0], [0.0, 5.0]]


def test_spans_html_escapes_the_text_and_marks_the_spans():
    text = '<script>alert(1)</script> Romeo & "Juliet"'
    r, j = text.index("Romeo"), text.index('"Juliet"')
    html = spans_html(text, [("B&NAME", r, r + 5), ("NAME", j, j + 8), ("bad", j + 2, 200)])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert re.search(r'<mark class="wb-span" title="B&amp;NAME"[^>]*>Romeo<sup[^>]*>B&amp;NAME</sup></mark>', html)
    assert re.search(r'&amp; <mark class="wb-span" title="NAME"[^>]*>&quot;Juliet&quot;<sup', html)
    assert html.count("<mark") == 2  # the span past the text's end is skipped


# --- Train page: Fine-tune mode ---------------------------------------------------------------------

def test_the_mode_switch_shows_the_finetune_form_and_back(home):
    at = _finetune_mode()
    assert at.title[0].value == "Train a model"
    keys = {w.key for w in at.selectbox} | {w.key for w in at.radio} | {w.key for w in at.number_input}
    assert {"ft_task", "ft_init_source", "ft_labels", "ft_pooling", "ft_max_len", "ft_head_lr", "ft_freeze"} <= keys
    assert "tf_model_gpt_n_embd" not in keys  # the pretraining form is not drawn
    # no run in the store yet: the form says so instead of offering an empty picker
    assert "No finished GPT or BERT run" in _texts(at.info)
    at.radio(key="train_mode").set_value("Pretrain a language model").run()
    assert at.number_input(key="tf_model_gpt_n_embd").value == 64
    assert RunStore(home).list_runs() == []


def test_check_resolves_a_pretrained_run_and_puts_errors_next_to_their_field(ft_finished):
    ft_home, trunk, fine = ft_finished
    before = len(RunStore(ft_home).list_runs())
    at = _finetune_mode()
    options = at.selectbox(key="ft_init_run").options
    assert any(trunk in o for o in options) and not any(fine in o for o in options)  # a fine-tuning run is no trunk
    assert at.number_input(key="ft_max_len").value == 64  # lowered to the picked trunk's positions
    at.number_input(key="ft_max_len").set_value(128).run()
    at.button(key="ft_check").click().run()  # max_len 128 > the trunk's 64 positions
    _no_traceback(at)
    assert "**max_len**" in _texts(at.error) and "at most 64" in _texts(at.error)
    at.number_input(key="ft_max_len").set_value(64)
    at.number_input(key="ft_freeze").set_value(5).run()
    at.button(key="ft_check").click().run()
    assert "**freeze**" in _texts(at.error) and "the trunk has 2" in _texts(at.error)
    at.number_input(key="ft_freeze").set_value(1).run()
    at.button(key="ft_check").click().run()
    assert not at.error
    assert "These settings are valid" in _texts(at.markdown) and f"genre <- {trunk}" in _texts(at.markdown)
    assert len(RunStore(ft_home).list_runs()) == before  # Check starts nothing


def test_an_unknown_init_run_is_an_inline_error(ft_finished):
    ft_home, _, _ = ft_finished
    before = len(RunStore(ft_home).list_runs())
    at = _finetune_mode()
    at.radio(key="ft_init_source").set_value("hf").run()  # (the run picker hidden: its value can be set)
    at.session_state["ft_init_run"] = "20990101-000000-dead"  # a run picked, then deleted (another tab, the CLI)
    at.radio(key="ft_init_source").set_value("run").run()
    assert "20990101-000000-dead (gone)" in at.selectbox(key="ft_init_run").options
    at.button(key="ft_launch").click().run()
    _no_traceback(at)
    errors = _texts(at.error)
    assert "**init**" in errors and "20990101-000000-dead" in errors
    assert at.title[0].value == "Train a model"  # stayed on the form
    assert len(RunStore(ft_home).list_runs()) == before


def _upload(at, name: str, data: bytes) -> None:
    at.selectbox(key="ft_task").set_value("upload").run()
    at.file_uploader(key="ft_upload").set_value((name, data, "text/csv"))


def test_a_bad_csv_is_an_inline_error_naming_the_file_and_stores_nothing(home):
    at = _finetune_mode()
    at.radio(key="ft_init_source").set_value("scratch").run()
    at.button(key="ft_check").click().run()  # no upload yet: only the task choice
    _no_traceback(at)
    at.selectbox(key="ft_task").set_value("upload").run()
    at.button(key="ft_launch").click().run()
    assert "**task**" in _texts(at.error) and "choose a .csv or .jsonl file" in _texts(at.error)

    _upload(at, "reviews.csv", b"sentence,label\n" + b"a fine film,pos\n" * 20)
    at.button(key="ft_check").click().run()
    _no_traceback(at)
    errors = _texts(at.error)
    assert "**task**" in errors and "reviews.csv" in errors and "text,label" in errors
    assert "workbench-ft-check" not in errors and "/tmp" not in errors  # no server folder

    _upload(at, "blank.csv", b"\n \n")
    at.button(key="ft_launch").click().run()
    _no_traceback(at)
    assert "empty" in _texts(at.error)
    assert at.title[0].value == "Train a model"
    assert RunStore(home).list_runs() == []
    assert not (home / "uploads").exists() or not any((home / "uploads").iterdir())


def test_a_finetune_run_on_an_uploaded_csv_starts_from_the_form_and_trains(home):
    rows = [f"{'what a lovely bright day' if i % 2 else 'a dark and bitter night'} {i},{'pos' if i % 2 else 'neg'}"
            for i in range(40)]
    data = ("text,label\n" + "\n".join(rows) + "\n").encode()
    at = _finetune_mode()
    at.radio(key="ft_init_source").set_value("scratch").run()
    _upload(at, "../../evil name.csv", data)
    for name, value in {"n_layer": 1, "n_embd": 32, "block_size": 64, "max_len": 64, "max_steps": 10,
                        "eval_interval": 5, "batch_size": 8}.items():
        at.number_input(key=f"ft_{name}").set_value(value)
    at.selectbox(key="ft_labels").set_value("all")
    at.text_input(key="ft_run_name").set_value("my-csv")
    at.button(key="ft_launch").click().run()
    _no_traceback(at)
    assert not at.error
    store = RunStore(home)
    (run,) = store.list_runs()
    assert at.title[0].value == "Monitor" and at.query_params["run"] == run.id
    assert run.name == "my-csv"
    fc = run.config["finetune"]
    fmt, _, path = fc["task"].partition(":")
    assert fmt == "csv" and path.startswith(str(home / "uploads")) and re.fullmatch(r"[0-9a-f]{16}\.csv", path.split("/")[-1])
    assert open(path, "rb").read() == data and "evil" not in path
    assert fc["init"] == "scratch" and fc["labels"] == 0 and fc["max_len"] == 64
    assert run.config["model"]["arch"] == "bert" and run.config["model"]["n_layer"] == 1
    assert "Started fine-tuning run" in _texts(at.success)

    info = launcher.wait_for(run.id, store, timeout=180)
    assert info.status == "finished", info.error
    meta = finetune_info(store, run.id)
    assert meta["kind"] == "classification" and meta["labels"] == ["neg", "pos"]
    assert "test/acc" in store.metric_series(run.id)


# --- Monitor ----------------------------------------------------------------------------------------

def test_monitor_shows_task_scores_facts_and_the_confusion_matrix_over_time(ft_finished):
    ft_home, _, fine = ft_finished
    store = RunStore(ft_home)
    at = _app(run=fine, page="monitor")
    _no_traceback(at)
    metrics = {m.label: m.value for m in at.metric}
    meta = finetune_info(store, fine)
    assert metrics["Training examples"] == "64" and metrics["Test examples"] == f"{meta['test_examples']:,}"
    assert metrics["Test accuracy"] == f"{meta['test']['test/acc']:.3f}"
    assert metrics["Test macro-F1"] == f"{meta['test']['test/macro_f1']:.3f}"
    assert "Trainable parameters" in metrics and "Frozen parameters" in metrics
    titles = [(c["layout"].get("title") or {}).get("text", "") for c in _charts(at)]
    assert "Validation perplexity" not in titles and "Validation scores" in titles  # no LM-only charts
    heatmaps = [c for c in _charts(at) if c["data"] and c["data"][0]["type"] == "heatmap"]
    assert [c["layout"]["title"]["text"] for c in heatmaps] == ["Validation, step 30", "Test (end of training)"]
    test_matrix = confusion_snapshots(store, fine, "confusion_test")[-1][1]["matrix"]
    assert [[int(t.replace(",", "")) for t in row] for row in heatmaps[1]["data"][0]["text"]] == test_matrix

    (slider,) = at.select_slider
    assert list(slider.options) == ["0", "10", "20", "30"]
    slider.set_value(10).run()
    heat = next(c for c in _charts(at) if c["data"] and c["data"][0]["type"] == "heatmap")
    assert heat["layout"]["title"]["text"] == "Validation, step 10"
    step10 = dict(confusion_snapshots(store, fine))[10]["matrix"]
    assert [[int(t) for t in row] for row in heat["data"][0]["text"]] == step10
    assert "Predict on your text" in [p.label for p in at.get("page_link")] or "Sample / Translate" in _texts(at.caption)


def test_the_confusion_slider_follows_a_live_run_unless_the_visitor_picked_a_step(home):
    import os
    import time
    from types import SimpleNamespace

    from workbench.finetune.run import save_confusion

    store = RunStore(home)
    run_id = store.create_run(RunConfig.from_dict({"finetune": {"task": "genre"}}).to_dict())
    store.update_run(run_id, status="running", pid=os.getpid(), heartbeat_at=time.time())  # this process: alive
    evaluation = SimpleNamespace(confusion=[[3, 1], [0, 4]], task=SimpleNamespace(labels=["a", "b"]))

    def evaluate(step: int) -> None:  # what the run's callback does at each evaluation
        save_confusion(store, run_id, evaluation, step, "confusion")
        store.log_metrics(run_id, step, {"val/loss": 1.0, "val/acc": 0.5})

    evaluate(0)
    at = _app(run=run_id, page="monitor")
    assert not at.select_slider  # one matrix: nothing to pick
    assert "The test matrix appears when the run finishes" in _texts(at.caption)
    evaluate(20)
    at.run()
    assert at.select_slider[0].value == 20
    evaluate(40)
    at.run()
    assert at.select_slider[0].value == 40  # the newest, as it lands
    at.select_slider[0].set_value(20).run()
    evaluate(60)
    at.run()
    assert at.select_slider[0].value == 20  # the visitor's pick stays
    heat = next(c for c in _charts(at) if c["data"] and c["data"][0]["type"] == "heatmap")
    assert heat["layout"]["title"]["text"] == "Validation, step 20"
    _no_traceback(at)


def test_monitor_shows_why_a_finetune_run_failed(home):
    store = RunStore(home)
    cfg = RunConfig.from_dict({"finetune": {"task": "genre", "init": "hf:all-MiniLM-L6-v2", "freeze": 9}})
    run_id = store.create_run(cfg.to_dict())
    store.update_run(run_id, status="failed",
                     error="ConfigError: freeze: cannot freeze 9 blocks: the trunk has 6 (use 0..6, or -1 to train only the head)")
    at = _app(run=run_id, page="monitor")
    _no_traceback(at)
    assert "cannot freeze 9 blocks" in _texts(at.error)
    assert "**freeze**" in _texts(at.info)  # what to change, on the Train page


# --- predictions (the Sample page) and the other pages -----------------------------------------------

def test_sample_page_predicts_class_probabilities_for_typed_text(ft_finished):
    _, _, fine = ft_finished
    at = _app(run=fine, page="sample")
    _no_traceback(at)
    assert at.title[0].value == "Predict"
    typed = "**bold** <img src=x onerror=alert(1)> [link](http://evil.example) $x$"
    at.text_area(key="ft_cls_text").set_value(typed)
    at.button(key="ft_classify").click().run()
    _no_traceback(at)
    (chart,) = [c for c in _charts(at) if c["data"] and c["data"][0]["type"] == "bar"]
    bars = chart["data"][0]
    assert sorted(bars["y"]) == ["comedy", "history", "tragedy"]
    probs = np.asarray(bars["x"], dtype=float)
    assert probs.sum() == pytest.approx(1.0, abs=1e-6) and (probs >= 0).all()
    table = at.dataframe[0].value
    assert list(table["label"])[0] == max(zip(bars["x"], bars["y"]))[1]  # most likely first
    assert "Prediction:" in _texts(at.markdown)
    raw = "\n".join(str(m.value) for m in at.markdown)
    assert "<img" not in raw and "](http" not in raw  # the typed text is never drawn as Markdown
    assert not at.get("plotly_chart") or "Validation perplexity" not in json.dumps(_charts(at))


def _tiny_head(store: RunStore, task: str) -> str:
    """A head trained for 4 steps on ``task`` (a few seconds): enough to predict with."""
    return train(RunConfig.from_dict({
        "model": {"arch": "bert", "n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 128},
        "objective": {"name": "mlm"}, "tokenizer": {"kind": "char"},
        "train": {"max_steps": 4, "batch_size": 8, "eval_interval": 4, "lr": 1e-3},
        "finetune": {"task": task, "labels": 32, "max_eval": 16, "max_len": 128}}), store, progress=False)


def test_tagging_and_qa_predictions_mark_spans_in_escaped_text(home):
    store = RunStore(home)
    names, qa = _tiny_head(store, "names"), _tiny_head(store, "qa")
    typed = "<script>alert(1)</script> Romeo & Juliet **meet** [x](http://evil.example)"
    at = _app(run=names, page="sample")
    _no_traceback(at)
    at.text_area(key="ft_tag_text").set_value(typed)
    at.button(key="ft_tag").click().run()
    _no_traceback(at)
    (shown,) = [h.value for h in at.html if "wb-spans" in h.value]
    assert "<script" not in shown and "<a " not in shown and "<strong" not in shown  # (marks may split the text)
    assert re.sub(r"<[^>]+>", "", re.sub(r"<sup[^>]*>.*?</sup>", "", shown)).replace("&lt;", "<").replace(
        "&gt;", ">").replace("&amp;", "&") == typed  # every character shown, in order; only the marks added
    words = list(at.dataframe[0].value["word"])
    assert words[:3] == ["<", "script", ">"] and "Juliet" in words

    at = _app(run=qa, page="sample")
    _no_traceback(at)
    at.text_input(key="ft_qa_question").set_value("Who says <b>hello</b>?")
    at.text_area(key="ft_qa_context").set_value("ROMEO:\nhello <i>there</i>\n\nJULIET:\ngood night")
    at.button(key="ft_answer").click().run()
    _no_traceback(at)
    (shown,) = [h.value for h in at.html if "wb-spans" in h.value]
    assert shown.count("<mark") == 1 and "<i>" not in shown and "&lt;i&gt;there&lt;/i&gt;" in shown
    assert "**Answer:**" in _raw(at.markdown)


def test_other_pages_take_a_finetune_run_in_their_stride(ft_finished):
    _, trunk, fine = ft_finished
    at = _app(run=fine, page="attention")
    _no_traceback(at)
    assert "fine-tuning run" in _texts(at.info)
    at.segmented_control(key="attn_source").set_value("text").run()
    _no_traceback(at)
    assert "fine-tuning run" in _texts(at.info)
    at.segmented_control(key="attn_source").set_value("snapshots").run()

    at = _app(run=fine, page="runs")
    _no_traceback(at)
    table = at.dataframe[0].value
    models = dict(zip(table["run"], table["model"]))
    assert f"fine-tune genre <- {trunk}" in models[fine]
    at.multiselect(key="cmp_runs").set_value([fine, trunk]).run()
    _no_traceback(at)
    assert "task genre" in json.dumps(_charts(at))  # each curve says what it is about

    at = _app(run=trunk, page="sample")  # the trunk is still sampled as a language model
    _no_traceback(at)
    assert at.title[0].value == "Sample"
    at = _app(run=trunk, page="monitor")
    _no_traceback(at)
