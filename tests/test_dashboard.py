"""The Streamlit dashboard, page by page, through Streamlit's AppTest (no browser).

Every test points ``$WORKBENCH_HOME`` at a temporary store. Finished runs for the read-only
pages are trained once per module, in-process and tiny; the Train page tests start real
subprocesses through the launcher, as a user's click does.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from workbench import launcher
from workbench.config import RunConfig
from workbench.overrides import apply_overrides
from workbench.corpora import load_shakespeare
from workbench.pipeline import attention_snapshots, train
from workbench.presets import get_preset
from workbench.runstore import RunStore

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
if str(APP.parent) not in sys.path:
    sys.path.insert(0, str(APP.parent))
import common  # noqa: E402  (the dashboard's modules: the app imports the same ones)
import guard  # noqa: E402
TINY = dict(max_steps=30, eval_interval=10, eval_chars=2048, batch_size=4, log_interval=5, warmup_steps=5)


def _app(run: str | None = None, page: str | None = None) -> AppTest:
    """The app on ``page`` (default: Train), opened with ``?run=<run>`` in the URL if given."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    if page is None:
        if run is not None:
            at.query_params["run"] = run
        at.run()
    else:
        at.run()  # AppTest needs one run to learn the st.navigation pages
        at.switch_page(f"app_pages/{page}.py")
        if run is not None:
            at.query_params["run"] = run
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _array(v) -> np.ndarray:
    """A plotly JSON array: a plain list, or plotly 7's ``{"dtype", "bdata"[, "shape"]}``."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            shape = v["shape"] if isinstance(v["shape"], list) else [int(s) for s in str(v["shape"]).split(",")]
            a = a.reshape(shape)
        return a
    return np.asarray(v, dtype=float)


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def _raw(elements) -> str:
    """The Markdown source of the elements, as sent to the browser."""
    return "\n".join(str(e.value) for e in elements)


def _texts(elements) -> str:
    """The elements' Markdown with backslash escapes resolved and the invisible word joiners
    (``guard.WJ``, which break bare links) removed: the characters the browser shows."""
    return re.sub(r"\\(.)", r"\1", _raw(elements)).replace(guard.WJ, "")


@pytest.fixture(autouse=True)
def local_visitor(monkeypatch):
    """Every test is a visitor on this machine unless it says otherwise (AppTest has no real
    connection: its mocked client address would count as remote, and be refused)."""
    monkeypatch.setattr(guard, "client_ip", lambda: None)
    monkeypatch.delenv("WORKBENCH_TOKEN", raising=False)
    for name in ("WORKBENCH_MAX_RUNS", "WORKBENCH_MAX_PARAMS", "WORKBENCH_MAX_TOKENS_PER_STEP", "WORKBENCH_MAX_STEPS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str, str]:
    """A store with two finished tiny runs: (home, newest run id, older run id)."""
    home = tmp_path_factory.mktemp("trained")
    store = RunStore(home)
    older = train(apply_overrides(get_preset("gpt-nano"), {**TINY, "lr": 1e-3, "name": "slow-lr"}), store)
    newest = train(apply_overrides(get_preset("gpt-nano"), TINY), store)
    return home, newest, older


@pytest.fixture
def finished(trained, monkeypatch) -> tuple[Path, str, str]:
    monkeypatch.setenv("WORKBENCH_HOME", str(trained[0]))
    return trained


# --- Train page ---------------------------------------------------------------------------------

def test_train_page_shows_parameter_count_of_the_preset(home):
    at = _app()
    metrics = {m.label: m.value for m in at.metric}
    from workbench.tokenizers import train_tokenizer

    run_vocab = train_tokenizer("char", load_shakespeare().split(0.1)[0].text).vocab_size  # what a run will build
    assert metrics["Vocabulary"] == str(run_vocab)  # the characters of the training split and [UNK]
    assert metrics["Parameters"].endswith("k")  # gpt-nano: ~0.1 M parameters
    assert not at.error
    assert RunStore(home).list_runs() == []  # showing the form starts nothing


def test_changing_the_preset_refills_the_form(home):
    at = _app()
    assert at.number_input(key="tf_model_gpt_n_embd").value == 64
    at.selectbox(key="train_preset").set_value("gpt-cpu").run()
    cpu = get_preset("gpt-cpu")
    assert at.number_input(key="tf_model_gpt_n_layer").value == cpu.model.n_layer == 4
    assert at.number_input(key="tf_model_gpt_n_embd").value == cpu.model.n_embd == 128
    assert at.number_input(key="tf_max_steps").value == cpu.train.max_steps


def test_the_fast_preset_fills_the_form_with_its_recipe_and_checks_clean(home):
    at = _app()
    at.selectbox(key="train_preset").set_value("fast").run()
    fast = get_preset("fast")
    assert at.number_input(key="tf_max_steps").value == fast.train.max_steps == 600
    shown = {w.key: w.value for w in [*at.selectbox, *at.checkbox, *at.toggle, *at.number_input] if w.key}
    recipe = {f"tf_model_gpt_{field}": getattr(fast.model, field)
              for field in ("pos_encoding", "qk_norm", "activation", "tie_weights", "zero_init", "bias")}
    assert {k: shown.get(k) for k in recipe} == recipe == {
        "tf_model_gpt_pos_encoding": "rope", "tf_model_gpt_qk_norm": True, "tf_model_gpt_activation": "relu2",
        "tf_model_gpt_tie_weights": False, "tf_model_gpt_zero_init": True, "tf_model_gpt_bias": False}
    at.button(key="check").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_form_values_survive_a_visit_to_another_page(home):
    at = _app()
    at.selectbox(key="train_preset").set_value("gpt-cpu").run()
    at.number_input(key="tf_model_gpt_n_layer").set_value(3)
    at.button(key="check").click().run()
    at.switch_page("app_pages/runs.py").run()
    at.switch_page("app_pages/train.py").run()
    assert at.selectbox(key="train_preset").value == "gpt-cpu"
    assert at.number_input(key="tf_model_gpt_n_layer").value == 3
    assert at.number_input(key="tf_model_gpt_n_embd").value == 128


def test_n_embd_not_divisible_by_n_head_is_an_inline_error_and_starts_nothing(home):
    at = _app()
    at.number_input(key="tf_model_gpt_n_embd").set_value(65)
    at.number_input(key="tf_model_gpt_n_head").set_value(4)
    at.button(key="launch").click().run()
    assert not at.exception
    errors = _texts(at.error)
    assert "n_embd" in errors and "not divisible by n_head=4" in errors
    assert at.title[0].value == "Train a model"  # stayed on the form
    assert RunStore(home).list_runs() == []
    assert not any((home / "runs").iterdir())


def test_zero_learning_rate_is_an_inline_error(home):
    at = _app()
    at.number_input(key="tf_lr").set_value(0.0)
    at.button(key="launch").click().run()
    assert not at.exception
    assert "**lr**" in _texts(at.error)
    assert RunStore(home).list_runs() == []
    at.number_input(key="tf_lr").set_value(0.002)  # fixing it clears the error
    at.button(key="check").click().run()
    assert not at.error


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_an_inline_error(home):
    at = _app()
    at.selectbox(key="tf_device").set_value("cuda")
    at.button(key="launch").click().run()
    assert "**device**" in _texts(at.error) and "CUDA" in _texts(at.error)
    assert RunStore(home).list_runs() == []


def test_upload_mistakes_are_inline_errors_and_write_nothing(home):
    at = _app()
    at.radio(key="tf_corpus_source").set_value("Upload a .txt file")
    at.button(key="launch").click().run()
    assert "**corpus**" in _texts(at.error) and "choose a .txt file" in _texts(at.error)

    at.file_uploader(key="tf_upload").set_value(("latin1.txt", "café".encode("latin-1") * 100, "text/plain"))
    at.button(key="launch").click().run()
    assert "not UTF-8" in _texts(at.error)

    at.file_uploader(key="tf_upload").set_value(("blank.txt", b"  \n\n ", "text/plain"))
    at.button(key="launch").click().run()
    assert "empty" in _texts(at.error)
    assert not at.exception
    assert RunStore(home).list_runs() == []
    assert not (home / "uploads").exists() or not any((home / "uploads").iterdir())


def test_valid_submit_starts_one_run_and_opens_monitor(home):
    at = _app()
    for name, value in {**TINY, "seed": 7}.items():
        at.number_input(key=f"tf_{name}").set_value(value)
    at.text_input(key="tf_run_name").set_value("from-the-form")
    at.button(key="launch").click().run()
    assert not at.exception and not at.error

    store = RunStore(home)
    runs = store.list_runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.name == "from-the-form"
    assert run.config["train"]["max_steps"] == 30 and run.config["train"]["seed"] == 7
    assert run.config["data"]["eval_chars"] == 2048  # "Validation text scored" replaced eval_iters
    assert run.config["data"]["corpus"] == "shakespeare"
    assert at.title[0].value == "Monitor"  # switched pages
    assert at.query_params["run"] == run.id
    assert f"Started run `{run.id}`" in _texts(at.success)

    at.run()  # a bare rerun (refresh, fragment tick) never starts another run
    assert len(store.list_runs()) == 1

    info = launcher.wait_for(run.id, store, timeout=120)
    assert info.status == "finished", info.error
    assert info.step == 30
    assert len(store.metric_series(run.id)["val/loss"][0]) == 4  # steps 0, 10, 20, 30
    assert (store.run_dir(run.id) / "stdout.log").exists()


def test_uploaded_corpus_is_saved_by_content_hash_and_trains(home):
    text = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
            "must be in want of a wife.\n") * 40
    at = _app()
    at.radio(key="tf_corpus_source").set_value("Upload a .txt file")
    at.file_uploader(key="tf_upload").set_value(("../../../etc/evil name.txt", text.encode(), "text/plain"))
    for name, value in {**TINY, "model_gpt_block_size": 32}.items():
        at.number_input(key=f"tf_{name}").set_value(value)
    at.button(key="check").click().run()
    assert not at.error
    vocab = {m.label: m.value for m in at.metric}["Vocabulary"]
    assert vocab == str(len(set(text)) + 1)  # the upload's characters (not Shakespeare's) and [UNK]
    assert RunStore(home).list_runs() == []  # Check starts nothing

    at.button(key="launch").click().run()
    assert not at.exception and not at.error
    (run,) = RunStore(home).list_runs()
    corpus = Path(run.config["data"]["corpus"])
    assert corpus.parent == home / "uploads"
    assert corpus.name.endswith(".txt") and "evil" not in corpus.name and len(corpus.stem) == 16
    assert corpus.read_text() == text
    assert not (home.parent / "etc").exists()
    info = launcher.wait_for(run.id, RunStore(home), timeout=120)
    assert info.status == "finished", info.error
    assert info.config["model"]["vocab_size"] == int(vocab)  # the form showed what the run built


def test_changing_the_preset_keeps_the_corpus_choice_and_the_upload(home):
    text = "the rain in spain stays mainly in the plain\n" * 60
    at = _app()
    at.radio(key="tf_corpus_source").set_value("Upload a .txt file")
    at.file_uploader(key="tf_upload").set_value(("spain.txt", text.encode(), "text/plain"))
    at.text_input(key="tf_run_name").set_value("mine")
    at.button(key="check").click().run()  # form values count once submitted
    assert not at.error
    at.selectbox(key="train_preset").set_value("gpt-cpu").run()
    assert at.number_input(key="tf_model_gpt_n_embd").value == 128  # the model fields follow the preset...
    assert at.radio(key="tf_corpus_source").value == "Upload a .txt file"  # ...the corpus choice stays
    assert at.text_input(key="tf_run_name").value == "mine"
    at.button(key="check").click().run()
    assert not at.error
    assert {m.label: m.value for m in at.metric}["Vocabulary"] == str(len(set(text)) + 1)  # still the upload (+ [UNK])


def test_a_too_short_upload_is_an_inline_error_on_check_and_on_start(home):
    at = _app()
    at.radio(key="tf_corpus_source").set_value("Upload a .txt file")
    # 38 characters: a training split of 34 cannot fill one 64-token context (+1 target)
    at.file_uploader(key="tf_upload").set_value(("short.txt", b"to be or not to be\n" * 2, "text/plain"))
    at.button(key="check").click().run()
    assert not at.exception
    errors = _texts(at.error)
    assert "**corpus**" in errors and "too short" in errors  # next to the corpus field, before any launch
    assert not (home / "uploads").exists() or not any((home / "uploads").iterdir())  # Check stores nothing
    assert not any(p.name.startswith("workbench-check-") for p in Path(tempfile.gettempdir()).iterdir())

    at.button(key="launch").click().run()
    assert "too short" in _texts(at.error)
    assert at.title[0].value == "Train a model"
    assert RunStore(home).list_runs() == []  # no run, no process


def test_launch_limits_are_shown_and_enforced_next_to_the_field(home, monkeypatch):
    monkeypatch.setenv("WORKBENCH_MAX_PARAMS", "50000")
    at = _app()
    assert "0.05 M parameters" in _texts(at.caption) and "WORKBENCH_MAX_RUNS" in _texts(at.caption)
    at.button(key="check").click().run()
    errors = _texts(at.error)
    assert "**n_embd**" in errors and "this dashboard allows 50,000" in errors
    at.button(key="launch").click().run()
    assert "this dashboard allows 50,000" in _texts(at.error)
    assert RunStore(home).list_runs() == []


def test_a_run_launches_on_several_processes_when_its_batch_splits(home, monkeypatch):
    from workbench import launcher

    spawned = []
    monkeypatch.setattr(launcher, "_spawn", lambda store, run_id, from_checkpoint=False, nproc=1: spawned.append(nproc))
    at = _app()
    at.number_input(key="tf_batch_size").set_value(16)
    at.number_input(key="tf_nproc").set_value(3)  # a form: values count when it is submitted
    at.button(key="launch").click().run()
    assert "16 cannot be split evenly over 3 processes" in _texts(at.error)
    assert spawned == [] and RunStore(home).list_runs() == []
    at.number_input(key="tf_nproc").set_value(2)
    at.button(key="launch").click().run()
    assert not at.exception and spawned == [2] and len(RunStore(home).list_runs()) == 1


def test_concurrent_runs_are_capped(home, monkeypatch):
    import os
    import time

    monkeypatch.setenv("WORKBENCH_MAX_RUNS", "1")
    store = RunStore(home)
    live = store.create_run(get_preset("gpt-nano").to_dict(), name="busy")
    store.update_run(live, status="running", pid=os.getpid(), heartbeat_at=time.time())
    at = _app()
    at.button(key="launch").click().run()
    assert not at.exception
    assert "1 run(s) are already training" in _texts(at.error)
    assert [r.id for r in store.list_runs()] == [live]  # nothing else started


# --- Monitor page -------------------------------------------------------------------------------

def test_monitor_shows_status_and_loss_curves_of_a_finished_run(finished):
    home, newest, _ = finished
    at = _app(run=newest, page="monitor")
    assert at.title[0].value == "Monitor"
    assert ":material/check_circle: finished" in _texts(at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Step"] == "30 / 30"
    store = RunStore(home)
    assert metrics["Best val loss"] == f"{store.get_run(newest).best_val_loss:.4f}"
    keys = [b.key for b in at.button]
    assert "stop" not in keys and "stop_disabled" not in keys  # no Stop button once the run has ended
    assert "extend" in keys and "delete" in keys and "resume" not in keys  # finished: extend or delete

    charts = _charts(at)
    assert len(charts) == 5  # loss, val/ppl, tokens/s, lr, grad_norm
    traces = {t["name"]: t for t in charts[0]["data"]}
    steps, values = store.metric_series(newest)["train/loss"]
    assert list(_array(traces["train/loss"]["x"])) == steps
    np.testing.assert_allclose(_array(traces["train/loss"]["y"]), values)
    assert len(_array(traces["val/loss"]["x"])) == 4
    assert all(len(_array(c["data"][0]["x"])) > 0 for c in charts)


def test_monitor_of_a_live_run_has_a_stop_button_that_asks_the_store(home):
    import os

    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict(), name="live")
    store.update_run(run_id, status="running", pid=os.getpid(), step=3)  # this process: alive
    at = _app(run=run_id, page="monitor")
    assert ":material/autorenew: running" in _texts(at.markdown)
    assert "No metrics yet" in _texts(at.info)
    at.button(key="stop").click().run()
    assert store.stop_requested(run_id)
    assert at.button(key="stop_disabled").disabled


def test_monitor_shows_the_error_of_a_failed_run(home):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict())
    store.update_run(run_id, status="failed", error="CorpusError: the corpus is too short")
    at = _app(run=run_id, page="monitor")
    assert "the corpus is too short" in _texts(at.error)


def test_monitor_reconciles_a_dead_process_to_failed(home):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict())
    store.update_run(run_id, status="running", pid=2**22 + 12345)  # no such process
    at = _app(run=run_id, page="monitor")
    assert "died without reporting" in _texts(at.error)
    assert store.get_run(run_id).status == "failed"


class _StopAt:
    """A trainer callback that asks the run to stop at a step (as the Stop button does)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_fit_start(self, trainer) -> None: ...
    def on_evaluate(self, trainer, metrics) -> None: ...
    def on_fit_end(self, trainer, status) -> None: ...

    def on_log(self, trainer, metrics) -> None:
        if trainer.state.step >= self.step:
            trainer.control.should_stop = True


def test_a_stopped_run_is_resumed_from_monitor_once(home):
    store = RunStore(home)
    run_id = train(apply_overrides(get_preset("gpt-nano"), TINY), store, callbacks=[_StopAt(10)])
    assert store.get_run(run_id).status == "stopped"
    at = _app(run=run_id, page="monitor")
    assert "stopped at step 10" in _texts(at.warning)
    at.button(key="resume").click().run()
    assert not at.exception and not at.error
    assert f"Resumed run `{run_id}`" in _texts(at.success)
    at.run()  # a bare rerun (a refresh) does not resume it again
    assert not at.error
    info = launcher.wait_for(run_id, store, timeout=120)
    assert info.status == "finished" and info.step == 30, info.error
    steps, _ = store.metric_series(run_id)["val/loss"]
    assert steps == [0, 10, 20, 30]
    at.run()  # the page's metric cache saw a new start: it reads the run again, whole
    entry = at.session_state[common.SERIES_KEY][(str(home), run_id)]
    assert entry["started_at"] == info.started_at
    traces = {t["name"]: t for t in _charts(at)[0]["data"]}
    assert list(_array(traces["train/loss"]["x"])) == store.metric_series(run_id)["train/loss"][0]
    assert list(_array(traces["val/loss"]["x"])) == [0, 10, 20, 30]


def test_a_finished_run_is_extended_and_limits_errors_are_inline(home, monkeypatch):
    store = RunStore(home)
    run_id = train(apply_overrides(get_preset("gpt-nano"), {**TINY, "max_steps": 20}), store)
    monkeypatch.setenv("WORKBENCH_MAX_STEPS", "35")
    at = _app(run=run_id, page="monitor")
    assert "resume" not in [b.key for b in at.button]  # finished: nothing to resume, only extend
    at.number_input(key=f"extend_to_{run_id}").set_value(40)
    at.button(key="extend").click().run()
    assert not at.exception
    assert "**max_steps**: 40 steps; this dashboard allows 35" in _texts(at.error)
    assert store.get_run(run_id).status == "finished"

    monkeypatch.delenv("WORKBENCH_MAX_STEPS")
    at.button(key="extend").click().run()
    assert not at.error and f"Extended run `{run_id}`" in _texts(at.success)
    info = launcher.wait_for(run_id, store, timeout=120)
    assert info.status == "finished" and info.step == 40 and info.max_steps == 40, info.error


def test_resume_errors_are_inline_not_tracebacks(home):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict(), name="no-ckpt")
    store.update_run(run_id, status="stopped", step=5)
    ckpt = store.run_dir(run_id) / "ckpt"
    ckpt.mkdir()
    (ckpt / "last.safetensors").write_bytes(b"")  # a checkpoint file, but for a run whose corpus...
    store.update_run(run_id, corpus_hash="not-the-hash-of-shakespeare")  # ...changed since
    at = _app(run=run_id, page="monitor")
    at.button(key="resume").click().run()
    assert not at.exception
    assert "has changed since run" in _texts(at.error)
    assert store.get_run(run_id).status == "stopped"


def test_delete_asks_first_then_removes_the_run_and_moves_the_picker(home):
    store = RunStore(home)
    older = store.create_run(get_preset("gpt-nano").to_dict(), name="keep")
    store.update_run(older, status="finished")
    time.sleep(0.01)
    doomed = store.create_run(get_preset("gpt-nano").to_dict(), name="doomed")
    store.log_metrics(doomed, 1, {"train/loss": 4.0})
    store.update_run(doomed, status="failed", error="boom")
    at = _app(run=doomed, page="monitor")
    at.button(key="delete").click().run()
    assert "cannot be undone" in _texts(at.warning)
    at.run()  # a bare rerun deletes nothing
    at.button(key="delete_cancel").click().run()
    assert "cannot be undone" not in _texts(at.warning)
    assert store.get_run(doomed).status == "failed"

    at.button(key="delete").click().run()
    at.button(key="delete_confirm").click().run()
    assert not at.exception and not at.error
    assert [r.id for r in store.list_runs()] == [older]
    assert not store.run_dir(doomed).exists() and store.metrics(doomed) == []
    assert at.query_params["run"] == older and at.sidebar.selectbox[0].value == older
    assert f"Deleted run `{doomed}`" in _texts(at.success)
    assert "keep" in _texts(at.subheader)


def test_a_live_run_cannot_be_deleted_or_resumed_from_monitor(home):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict())
    store.update_run(run_id, status="running", pid=os.getpid(), heartbeat_at=time.time())
    at = _app(run=run_id, page="monitor")
    keys = [b.key for b in at.button]
    assert "stop" in keys and not {"delete", "resume", "extend"} & set(keys)


# --- Attention page -----------------------------------------------------------------------------

def test_attention_shows_heatmaps_of_each_snapshot(finished):
    home, newest, _ = finished
    at = _app(run=newest, page="attention")
    snaps = attention_snapshots(RunStore(home), newest)
    assert at.select_slider(key="attn_step").options == [str(s) for s, _ in snaps] == ["0", "10", "20", "30"]

    heat = _charts(at)[0]
    assert heat["data"][0]["type"] == "heatmap"
    z = _array(heat["data"][0]["z"])
    n_tokens = len(heat["data"][0]["x"])
    assert z.reshape(n_tokens, n_tokens).sum(axis=1) == pytest.approx(np.ones(n_tokens), abs=1e-2)  # rows sum to 1
    assert "Layer 0, head 0 · step 30" in heat["layout"]["title"]["text"]
    at.radio(key="attn_view").set_value("model").run()
    grid = _charts(at)[0]  # every layer x head as one image: (heads side by side, layers stacked, 1-cell gaps)
    cfg = get_preset("gpt-nano").model
    T = n_tokens
    assert [t["type"] for t in grid["data"]] == ["heatmap"]
    assert _array(grid["data"][0]["z"]).size == (cfg.n_layer * (T + 1) - 1) * (cfg.n_head * (T + 1) - 1)
    at.radio(key="attn_view").set_value("heatmap").run()  # back to one head: its pickers are live again

    at.selectbox(key="attn_layer").set_value(1)
    at.select_slider(key="attn_step").set_value(10)
    at.run()
    assert "Layer 1, head 0 · step 10" in _charts(at)[0]["layout"]["title"]["text"]


def test_attention_without_snapshots_is_a_friendly_info(home):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict())
    store.update_run(run_id, status="stopped")
    at = _app(run=run_id, page="attention")
    assert "without any attention snapshot" in _texts(at.info)
    assert not at.get("plotly_chart")


# --- Sample page --------------------------------------------------------------------------------

def test_sample_continues_the_prompt_reproducibly(finished):
    _, newest, _ = finished
    at = _app(run=newest, page="sample")
    at.text_area(key="s_prompt").set_value("KING:\n")
    at.number_input(key="s_max_new").set_value(60)
    at.button[0].click().run()
    assert not at.exception and not at.error
    first = at.code[0].value
    assert first.startswith("KING:\n") and len(first) == len("KING:\n") + 60  # char tokenizer: 1 token = 1 char
    at.button[0].click().run()
    assert at.code[0].value == first  # same seed and settings, same text
    at.number_input(key="s_seed").set_value(2)
    at.button[0].click().run()
    assert at.code[0].value != first


def test_sample_with_characters_outside_the_vocabulary_says_what_to_change(finished):
    _, newest, _ = finished
    at = _app(run=newest, page="sample")
    at.text_area(key="s_prompt").set_value("ROMEO: ☃")
    at.button[0].click().run()
    assert not at.exception and not at.error
    # the char tokenizer has [UNK] now: the snowman reaches the model as [UNK], and the page says so
    warning = _texts(at.warning)
    assert "☃" in warning and "[UNK]" in warning and "bpe" in warning
    assert at.code[0].value.startswith("ROMEO: ") and "☃" not in at.code[0].value


def test_sample_says_when_best_fell_back_to_the_last_checkpoint(home):
    store = RunStore(home)
    run_id = train(apply_overrides(get_preset("gpt-nano"), TINY), store, callbacks=[_StopAt(5)])
    best = store.run_dir(run_id) / "ckpt" / "best.safetensors"
    best.unlink(missing_ok=True)  # stopped before any evaluation improved: only 'last' exists
    at = _app(run=run_id, page="sample")
    assert at.radio(key="s_which").value == "best"
    at.number_input(key="s_max_new").set_value(10)
    at.button[0].click().run()
    assert not at.exception and not at.error
    assert "from the **last** checkpoint" in _texts(at.caption)
    assert "no **best** checkpoint yet" in _texts(at.warning)
    at.radio(key="s_which").set_value("last")
    at.button[0].click().run()
    assert "from the **last** checkpoint" in _texts(at.caption) and not at.warning


# --- Runs page and the shared run picker ----------------------------------------------------------

def test_runs_page_lists_runs_and_compares_their_val_loss(finished):
    _, newest, older = finished
    at = _app(page="runs")
    table = at.dataframe[0].value
    assert list(table["run"]) == [newest, older]  # newest first
    assert list(table["status"]) == ["finished", "finished"]
    (chart,) = _charts(at)
    names = [t["name"] for t in chart["data"]]
    assert len(names) == 2 and any("slow-lr" in n for n in names)
    assert all(len(_array(t["x"])) == 4 for t in chart["data"])  # val/loss at steps 0, 10, 20, 30
    assert "train.lr" in list(at.dataframe[1].value.index)  # the setting in which they differ


def test_runs_compare_by_tokens_seen(finished):
    home, newest, _ = finished
    at = _app(page="runs")
    by_step = {t["name"]: _array(t["x"]) for t in _charts(at)[0]["data"]}
    at.radio(key="cmp_x").set_value("tokens seen").run()
    (chart,) = _charts(at)
    assert chart["layout"]["xaxis"]["title"]["text"] == "tokens seen"
    cfg = RunConfig.from_dict(RunStore(home).get_run(newest).config)
    per_step = cfg.train.batch_size * cfg.seq_len  # 4 x 64 here
    for t in chart["data"]:
        np.testing.assert_array_equal(_array(t["x"]), by_step[t["name"]] * per_step)


def test_runs_compare_on_the_clock(finished):
    # fast preset vs gpt-cpu is a question of time, not steps: x = seconds since each run started
    home, newest, _ = finished
    at = _app(page="runs")
    at.radio(key="cmp_x").set_value("seconds").run()
    (chart,) = _charts(at)
    assert chart["layout"]["xaxis"]["title"]["text"] == "seconds since the run started"
    store = RunStore(home)
    info = store.get_run(newest)
    times = [r[3] - info.started_at for r in store.metrics(newest, names=["val/loss"])]
    trace = next(t for t in chart["data"] if t["name"] == info.label)
    np.testing.assert_allclose(_array(trace["x"]), times, atol=1e-3)
    assert all(np.diff(_array(trace["x"])) >= 0) and _array(trace["x"])[0] >= 0


def _started_column(table):
    (col,) = [c for c in table.columns if c.startswith("started")]
    return col


def test_runs_page_shows_times_in_the_viewers_zone_and_why_runs_failed(home):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict())
    t0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC
    store.update_run(run_id, status="running", pid=2**22 + 12345, started_at=t0, heartbeat_at=t0)  # long dead
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.context["timezone"] = "Asia/Tokyo"
    at.run()
    at.switch_page("app_pages/runs.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    col = _started_column(table)
    assert col == "started (Asia/Tokyo)"
    assert str(table[col][0]) == "2023-11-15 07:13:20"  # UTC+9, not UTC
    assert "died without reporting" in table["note"][0]


def test_runs_page_falls_back_to_the_servers_zone(home, monkeypatch):
    store = RunStore(home)
    run_id = store.create_run(get_preset("gpt-nano").to_dict())
    store.update_run(run_id, status="finished", started_at=1_700_000_000)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        at = _app(page="runs")
        table = at.dataframe[0].value
        col = _started_column(table)
        assert "the server's zone" in col and "EST" in col
        assert str(table[col][0]) == "2023-11-14 17:13:20"  # UTC-5
    finally:
        monkeypatch.undo()
        time.tzset()


def test_run_picker_is_shared_across_pages_and_kept_in_the_url(finished):
    _, newest, older = finished
    at = _app()
    assert at.query_params["run"] == newest  # default: the newest run
    at.sidebar.selectbox[0].set_value(older).run()
    assert at.query_params["run"] == older
    at.switch_page("app_pages/monitor.py").run()
    assert older in _texts(at.subheader)
    assert at.query_params["run"] == older

    refreshed = _app(run=older, page="attention")  # a browser refresh: a new session, same URL
    assert "step 30" in _charts(refreshed)[0]["layout"]["title"]["text"]
    assert refreshed.sidebar.selectbox[0].value == older


@pytest.mark.parametrize("page", [None, "monitor", "attention", "sample", "runs"])
def test_unknown_run_id_in_the_url_is_a_warning_not_a_traceback(finished, page):
    _, newest, _ = finished
    at = _app(run="20200101-000000-dead", page=page)  # _app asserts at.exception is empty
    warning = _texts(at.warning)
    assert "20200101-000000-dead" in warning and "not in this workbench's store" in warning
    assert at.query_params["run"] == newest


def test_pages_with_an_empty_store_point_to_train(home):
    for page in ("monitor", "attention", "sample"):
        at = _app(page=page)
        assert "No run selected" in _texts(at.info)
    at = _app(page="runs")
    assert "No runs yet" in _texts(at.info)


def test_no_page_has_a_bare_string_that_streamlit_would_draw() -> None:
    """Streamlit's magic writes every top-level expression of a page script, so a "docstring"
    under a constant would appear on the page as text: those must be comments."""
    import ast

    pages = sorted((Path(__file__).resolve().parents[1] / "dashboard" / "app_pages").glob("*.py"))
    assert pages
    drawn = [f"{p.name}:{n.lineno}" for p in pages for i, n in enumerate(ast.parse(p.read_text(encoding="utf-8")).body)
             if i > 0 and isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)]
    assert drawn == []
