"""The Train page's model section follows the model family, through AppTest (no browser).

The fields come from the family's config dataclass (``dashboard/model_form.py``), so a family
registered in ``workbench.models.FAMILIES`` (here a made-up recurrent one, registered by the test:
AppTest runs the page in this interpreter, so the registries it sees are these) gets its own
fields, its own values and, without a fixed context, a ``seq_len`` field; the Objective picker
offers only the objectives the family can serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest
import torch.nn as nn

import test_dashboard
from test_dashboard import _app, _texts
import model_form  # noqa: E402  (the dashboard's module: test_dashboard put its folder on sys.path)
import workbench.models
import workbench.objectives
import workbench.presets
from workbench import launcher
from workbench.config import ModelConfig, RunConfig, TrainConfig, positive_ints, require
from workbench.models import Family, LanguageModel, ModelOutput
from workbench.objectives import CausalLM
from workbench.overrides import apply_overrides
from workbench.runstore import RunStore

home = test_dashboard.home  # fixtures: a temporary store; a visitor on this machine (autouse)
local_visitor = test_dashboard.local_visitor


@dataclass
class ToyConfig(ModelConfig):
    """A made-up recurrent family: causal, no fixed context (a run sets seq_len)."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"causal"})

    arch: str = "toyrnn"
    n_layer: int = 1
    """Recurrent layers."""
    n_embd: int = 32
    """Width of the token embeddings."""
    hidden: int = 48
    """Size of the recurrent state."""
    dropout: float = 0  # an int default for a float field: the form must still make it a float
    """Dropout between layers."""
    cell: Literal["lstm", "gru"] = "lstm"
    """Recurrent cell."""
    tie_weights: bool = False
    """Share the embedding with the output projection (needs hidden == n_embd)."""

    def __post_init__(self) -> None:
        positive_ints(self, "n_layer", "n_embd", "hidden")
        require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(not self.tie_weights or self.hidden == self.n_embd, "tie_weights",
                f"needs hidden == n_embd, got hidden={self.hidden} and n_embd={self.n_embd}")


class ToyModel(LanguageModel):
    def __init__(self, config: ToyConfig) -> None:
        super().__init__()
        self.config = config
        rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.trunk = nn.ModuleDict({"wte": nn.Embedding(config.vocab_size, config.n_embd),
                                    "rnn": rnn(config.n_embd, config.hidden, config.n_layer, batch_first=True)})
        self.lm_head = nn.Linear(config.hidden, config.vocab_size)

    def forward(self, idx, attention_mask=None, output_attentions=False, output_hidden_states=False) -> ModelOutput:
        hidden, _ = self.trunk["rnn"](self.trunk["wte"](idx))
        return ModelOutput(logits=self.lm_head(hidden), hidden_states=hidden)


def _toy_preset() -> RunConfig:
    """A made-up recurrent preset."""
    return RunConfig(model=ToyConfig(n_layer=2, n_embd=40, hidden=56, dropout=0.1),
                     train=TrainConfig(seq_len=48, max_steps=100, batch_size=8, lr=2e-3, min_lr=2e-4),
                     preset="toy-nano")


class NeedsBidirectional(CausalLM):
    name = "mlm_like"
    needs = frozenset({"bidirectional"})


@pytest.fixture
def toy(monkeypatch):
    """The toy family and its preset, and an objective neither GPT nor the toy can serve."""
    monkeypatch.setitem(workbench.models.FAMILIES, "toyrnn", Family(ToyConfig, ToyModel))
    monkeypatch.setitem(workbench.presets.PRESETS, "toy-nano", _toy_preset)
    monkeypatch.setitem(workbench.objectives.OBJECTIVES, "mlm_like", NeedsBidirectional)


def _key(arch: str, name: str) -> str:
    return model_form.key("tf_", arch, name)


def _keys(at) -> set[str]:
    return {w.key for kind in ("number_input", "checkbox", "selectbox") for w in at.get(kind)}


def _capture_start(monkeypatch) -> list[RunConfig]:
    """Start training hands its config here and fails (the page stays, nothing is spawned: a
    subprocess would not know the toy family)."""
    seen: list[RunConfig] = []

    def start_run(cfg, *args, **kwargs):
        seen.append(cfg)
        raise OSError("captured by the test")

    monkeypatch.setattr(launcher, "start_run", start_run)
    return seen


def test_picking_a_family_preset_shows_that_familys_fields(home, toy):
    at = _app()
    assert _key("gpt", "n_head") in _keys(at) and not any(k.startswith("tf_model_toyrnn_") for k in _keys(at))
    at.selectbox(key="train_preset").set_value("toy-nano").run()
    assert not at.exception and not at.error, _texts(at.error)
    keys = _keys(at)
    assert {_key("toyrnn", n) for n in ("n_layer", "n_embd", "hidden", "dropout", "cell", "tie_weights")} <= keys
    assert not any(k.startswith("tf_model_gpt_") for k in keys)  # no n_head, no block_size
    assert at.selectbox(key="tf_arch").value == "toyrnn"
    assert at.number_input(key=_key("toyrnn", "hidden")).value == 56
    assert at.number_input(key=_key("toyrnn", "dropout")).value == pytest.approx(0.1)
    assert at.selectbox(key=_key("toyrnn", "cell")).value == "lstm"
    assert at.checkbox(key=_key("toyrnn", "tie_weights")).value is False
    labels = {w.label for w in at.number_input}
    assert {"Layers (n_layer)", "Width (n_embd)", "Recurrent state width (hidden; 0 = n_embd)", "Context length (seq_len)"} <= labels
    assert "Context length (block_size)" not in labels and "Heads per layer (n_head)" not in labels
    assert at.number_input(key="tf_seq_len").value == 48  # no fixed context: the window is asked for
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Context"] == "48 tokens" and metrics["Parameters"] != "—"


def test_check_and_start_build_a_config_of_the_family_with_the_fields_types(home, toy, monkeypatch):
    seen = _capture_start(monkeypatch)
    at = _app()
    at.selectbox(key="train_preset").set_value("toy-nano").run()
    at.number_input(key=_key("toyrnn", "n_layer")).set_value(3)
    at.number_input(key=_key("toyrnn", "dropout")).set_value(0.25)
    at.selectbox(key=_key("toyrnn", "cell")).set_value("gru")
    at.number_input(key="tf_seq_len").set_value(24)
    at.button(key="check").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    assert "These settings are valid" in _texts(at.markdown)
    assert {m.label: m.value for m in at.metric}["Context"] == "24 tokens"

    at.button(key="launch").click().run()
    assert "captured by the test" in _texts(at.error)
    (cfg,) = seen
    assert isinstance(cfg.model, ToyConfig) and cfg.model.arch == "toyrnn"
    assert cfg.objective.name == "causal_lm" and cfg.train.seq_len == 24 and cfg.seq_len == 24
    m = cfg.model
    assert (m.n_layer, m.n_embd, m.hidden, m.dropout, m.cell, m.tie_weights) == (3, 40, 56, 0.25, "gru", False)
    assert [type(v) for v in (m.n_layer, m.hidden, m.dropout, m.cell, m.tie_weights)] == [int, int, float, str, bool]
    assert RunStore(home).list_runs() == []


def test_a_family_default_converts_to_its_fields_type(toy, monkeypatch):
    """The toy's dropout default is the int 0: its widget starts at 0.0 (a float number input),
    and widget values go back as the fields' types (outside a page: session state is a dict)."""
    state: dict = {}
    monkeypatch.setattr(model_form.st, "session_state", state)
    model_form.init_state("p_")
    assert state["p_model_toyrnn_dropout"] == 0.0 and isinstance(state["p_model_toyrnn_dropout"], float)
    state["p_model_toyrnn_n_layer"] = 2.0  # a number input may hand back a float
    out = model_form.overrides("p_", "toyrnn", _toy_preset(), 32)
    assert out["model.n_layer"] == 2 and type(out["model.n_layer"]) is int
    assert out["arch"] == "toyrnn" and out["seq_len"] == 32
    assert "seq_len" not in model_form.overrides("p_", "gpt", workbench.presets.get_preset("gpt-nano"), 32)
    assert model_form.overrides("p_", "gpt", _toy_preset(), 32)["seq_len"] == 0  # the model's own context


def test_switching_preset_and_family_keeps_each_familys_values(home, toy):
    at = _app()
    at.number_input(key=_key("gpt", "n_layer")).set_value(3)
    at.button(key="check").click().run()  # a form's values count once submitted
    # the family picker: GPT's edited value waits while the toy's fields are shown
    at.selectbox(key="tf_arch").set_value("toyrnn").run()
    assert not at.exception and _key("gpt", "n_layer") not in _keys(at)
    at.number_input(key=_key("toyrnn", "hidden")).set_value(64)
    at.button(key="check").click().run()
    at.selectbox(key="tf_arch").set_value("gpt").run()
    assert at.number_input(key=_key("gpt", "n_layer")).value == 3
    assert "tf_seq_len" not in _keys(at)  # GPT's context is block_size
    at.selectbox(key="tf_arch").set_value("toyrnn").run()
    assert at.number_input(key=_key("toyrnn", "hidden")).value == 64

    # the preset picker: the toy preset's values, then gpt-nano's GPT fields with gpt-nano's values
    at.selectbox(key="train_preset").set_value("toy-nano").run()
    assert at.number_input(key=_key("toyrnn", "hidden")).value == 56
    at.selectbox(key="train_preset").set_value("gpt-nano").run()
    assert not at.exception
    assert at.selectbox(key="tf_arch").value == "gpt"
    gpt = workbench.presets.get_preset("gpt-nano").model
    for name in ("n_layer", "n_head", "n_embd", "block_size"):
        assert at.number_input(key=_key("gpt", name)).value == getattr(gpt, name)
    assert at.selectbox(key=_key("gpt", "pos_encoding")).value == gpt.pos_encoding
    assert not any(k.startswith("tf_model_toyrnn_") for k in _keys(at)) and "tf_seq_len" not in _keys(at)


def test_an_error_on_a_family_field_shows_next_to_it(home, toy):
    at = _app()
    at.selectbox(key="train_preset").set_value("toy-nano").run()
    at.checkbox(key=_key("toyrnn", "tie_weights")).check()
    at.button(key="check").click().run()
    assert not at.exception
    errors = _texts(at.error)
    assert "**tie_weights**" in errors and "needs hidden == n_embd" in errors
    assert "fix **tie_weights** above" in _texts(at.markdown)  # inline, not at the bottom of the form
    box = next(c for c in reversed(list(at.columns))  # the innermost column holding the checkbox
               if any(w.key == _key("toyrnn", "tie_weights") for w in c.checkbox))
    assert "**tie_weights**" in _texts(box.error)
    assert not any("**tie_weights**" in _texts(c.error) for c in at.columns
                   if any(w.key == "tf_batch_size" for w in c.number_input))  # not in the training column


def test_a_family_without_context_asks_for_seq_len(home, toy):
    at = _app()
    at.selectbox(key="tf_arch").set_value("toyrnn").run()  # from gpt-nano: a window of its context
    window = at.number_input(key="tf_seq_len")
    assert window.value == 64 and window.min == 1  # required > 0: the widget cannot go below
    window.set_value(32)
    at.button(key="check").click().run()
    assert not at.error, _texts(at.error)
    assert {m.label: m.value for m in at.metric}["Context"] == "32 tokens"


def test_a_seq_len_error_shows_under_the_familys_context_setting(home, monkeypatch):
    """GPT's window above its block_size: the error names seq_len and shows under block_size."""
    def windowed():
        return apply_overrides(workbench.presets.get_preset("gpt-nano"), {"seq_len": 48, "preset": "gpt-window"})

    monkeypatch.setitem(workbench.presets.PRESETS, "gpt-window", windowed)
    at = _app()
    at.selectbox(key="train_preset").set_value("gpt-window").run()
    at.number_input(key=_key("gpt", "block_size")).set_value(32)
    at.button(key="check").click().run()
    assert not at.exception
    assert "**seq_len**" in _texts(at.error) and "fix **seq_len** above" in _texts(at.markdown)
    box = next(c for c in reversed(list(at.columns)) if any(w.key == _key("gpt", "block_size") for w in c.number_input))
    assert "**seq_len**" in _texts(box.error)


def test_an_ngram_order_longer_than_the_window_is_an_inline_error_and_starts_nothing(home):
    at = _app()
    at.selectbox(key="tf_arch").set_value("ngram").run()
    at.number_input(key="tf_seq_len").set_value(4)
    at.number_input(key=_key("ngram", "n")).set_value(8)
    at.button(key="launch").click().run()
    assert not at.exception
    assert "n=8 conditions on 7 tokens" in _texts(at.error) and "fix **n** above" in _texts(at.markdown)
    assert RunStore(home).list_runs() == []
    # counting has no optimizer: its settings are greyed out, the rest stays editable
    assert at.number_input(key="tf_lr").disabled and at.number_input(key="tf_grad_clip").disabled
    assert not at.number_input(key="tf_batch_size").disabled and "fitted by counting" in _texts(at.caption)
    at.selectbox(key="tf_arch").set_value("gpt").run()
    assert not at.number_input(key="tf_lr").disabled


@dataclass
class EncoderConfig(ToyConfig):  # at module level: field docs are read from the source, which must parse
    """A made-up bidirectional family."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"bidirectional"})
    arch: str = "toyenc"


def test_the_objective_picker_offers_only_what_the_family_can_serve(home, toy, monkeypatch):
    monkeypatch.setitem(workbench.models.FAMILIES, "toyenc", Family(EncoderConfig, ToyModel))

    def offered(arch: str) -> list[str]:  # what the picker must list: every objective the family serves
        caps = workbench.models.FAMILIES[arch].config_cls.capabilities
        return [name for name, o in workbench.objectives.OBJECTIVES.items() if o.needs <= caps]

    at = _app()
    picker = at.selectbox(key="tf_objective")
    assert picker.options == offered("gpt") and "mlm_like" not in picker.options and picker.value == "causal_lm"
    assert "mlm_like needs a bidirectional model; gpt is causal" in _texts(at.caption)
    at.selectbox(key="tf_arch").set_value("toyrnn").run()
    picker = at.selectbox(key="tf_objective")
    assert picker.options == offered("toyrnn") and picker.value == "causal_lm"
    assert "mlm_like needs a bidirectional model; toyrnn is causal" in _texts(at.caption)
    at.selectbox(key="tf_arch").set_value("toyenc").run()  # causal_lm is not for it: the picker moves
    assert not at.exception
    picker = at.selectbox(key="tf_objective")
    assert picker.options == offered("toyenc") and "mlm_like" in picker.options and "causal_lm" not in picker.options
    assert picker.value in picker.options
    assert "causal_lm needs a causal model; toyenc is bidirectional" in _texts(at.caption)
    at.selectbox(key="tf_arch").set_value("gpt").run()  # and back: the preset's objective again
    assert at.selectbox(key="tf_objective").value == "causal_lm"


@pytest.mark.parametrize("preset", list(workbench.presets.PRESETS))
def test_every_presets_check_passes(home, preset):
    """Every registered preset (GPT's, and the other families' as they are added) checks clean."""
    at = _app()
    at.selectbox(key="train_preset").set_value(preset).run()
    at.button(key="check").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    assert "These settings are valid" in _texts(at.markdown)
    cfg = workbench.presets.get_preset(preset)
    assert at.selectbox(key="tf_arch").value == cfg.model.arch
    assert at.selectbox(key="tf_objective").value == cfg.objective.name


def test_monitor_shows_masked_lm_accuracy_and_says_what_is_predicted(home) -> None:
    import json

    from workbench.pipeline import train

    cfg = apply_overrides(workbench.presets.get_preset("bert-nano"),
                          {"max_steps": 10, "eval_interval": 5, "eval_chars": 2048, "batch_size": 4, "n_embd": 32})
    run_id = train(cfg, RunStore(home))
    at = _app(run=run_id, page="monitor")
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert len(titles) == 6 and "Validation accuracy" in titles  # every run's 5 charts, and the objective's own
    assert any("masked tokens" in c.value for c in at.caption)


def test_monitor_of_mlm_nsp_shows_both_accuracies(home) -> None:
    import json

    from workbench.pipeline import train

    cfg = apply_overrides(workbench.presets.get_preset("bert-mlm-nsp-nano"),
                          {"max_steps": 6, "eval_interval": 3, "eval_chars": 2048, "batch_size": 4, "n_embd": 32})
    run_id = train(cfg, RunStore(home))
    at = _app(run=run_id, page="monitor")
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Validation accuracy" in titles and "Next-sentence accuracy" in titles
    assert "0.5 is chance" in _texts(at.caption)


def test_monitor_of_an_ngram_run_shows_bits_per_character_not_an_optimizer(home) -> None:
    import json

    from workbench.pipeline import train

    cfg = apply_overrides(workbench.presets.get_preset("ngram-nano"), {"max_steps": 20, "eval_chars": 2048})
    run_id = train(cfg, RunStore(home))
    at = _app(run=run_id, page="monitor")
    assert not at.exception and not at.error
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Validation bits per character" in titles
    assert "Learning rate" not in titles and "Gradient norm" not in titles
    assert "fitted by counting" in _texts(at.caption)


def test_monitor_of_a_seq2seq_task_shows_bleu_rouge_padding_and_decoded_examples(home) -> None:
    import json

    from workbench.pipeline import train

    cfg = apply_overrides(workbench.presets.get_preset("t5-nano"),
                          {"objective": "seq2seq", "task": "reverse-words", "max_words": 4, "max_steps": 6,
                           "eval_interval": 3, "log_interval": 3, "eval_chars": 1024, "batch_size": 4, "n_embd": 32,
                           "score_examples": 6})
    run_id = train(cfg, RunStore(home))
    at = _app(run=run_id, page="monitor")
    assert not at.exception and not at.error
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert {"Validation BLEU (0-100)", "ROUGE and exact match", "Padding per training batch"} <= set(titles)
    (table,) = at.dataframe
    assert list(table.value.columns) == ["source", "target", "output", "exact"] and len(table.value) == 6
    assert "at step 6" in _texts(at.markdown)


# --- what a batch looks like (Train) and what each curve predicts (Runs) --------------------------

def _batch_panel(at):
    (panel,) = [e for e in at.expander if e.label == "What a batch looks like"]
    return panel


def _mask_titles(at) -> list[str]:
    import json

    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    return [t for t in titles if "attention mask" in t]


def test_the_batch_panel_shows_the_chosen_family_and_objectives_batch(home):
    at = _app()  # gpt-nano: causal LM with characters
    panel = _batch_panel(at)
    (table,) = [h.value for h in at.html if 'class="wb-batch"' in h.value]
    assert ">input<" in table and ">target<" in table and ">masked as<" not in table
    assert [t.split(":")[0] for t in _mask_titles(at)] == ["Causal attention mask"]
    assert "the loss scores the next token" in _texts(panel.caption)

    at.selectbox(key="tf_arch").set_value("bert").run()  # the objective picker moves to masked LM
    assert not at.exception and not at.error, _texts(at.error)
    assert at.selectbox(key="tf_objective").value == "mlm"
    (table,) = [h.value for h in at.html if 'class="wb-batch"' in h.value]
    assert ">masked as<" in table and "[MASK]" in table and "—" in table
    assert [t.split(":")[0] for t in _mask_titles(at)] == ["Bidirectional attention mask"]
    assert "masked tokens" in _texts(_batch_panel(at).caption)

    at.selectbox(key="tf_objective").set_value("nsp").run()  # pairs: segments and the pair's label
    (table,) = [h.value for h in at.html if 'class="wb-batch"' in h.value]
    assert ">segment<" in table and "Pair label: " in _texts(_batch_panel(at).caption)
    at.radio(key="tf_batch_row").set_value(1).run()
    assert not at.exception and len([h for h in at.html if 'class="wb-batch"' in h.value]) == 1
    before = at.html[0].value
    at.button(key="tf_batch_redraw").click().run()  # another seed, another batch
    assert not at.exception and at.html[0].value != before


def test_the_batch_panel_shows_both_streams_of_plm_and_both_sides_of_an_encoder_decoder(home):
    import json

    at = _app()
    at.selectbox(key="tf_objective").set_value("plm").run()
    assert not at.exception and not at.error, _texts(at.error)
    (table,) = [h.value for h in at.html if 'class="wb-batch"' in h.value]
    assert ">predicted #<" in table and ">ctx<" in table
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert [t.split(":")[0] for t in titles if "stream" in t] == ["Query stream", "Content stream"]

    at.selectbox(key="tf_arch").set_value("seq2seq").run()  # span corruption: sentinels in, spans out
    assert not at.exception and not at.error, _texts(at.error)
    encoder, decoder = [h.value for h in at.html if 'class="wb-batch"' in h.value]
    assert "&lt;extra_id_0&gt;" in encoder and ">target<" not in encoder
    assert ">target<" in decoder and "&lt;extra_id_0&gt;" in decoder
    assert "Encoder input" in _texts(_batch_panel(at).caption)


def test_a_corpus_the_objective_cannot_use_is_an_inline_error_in_the_batch_panel(home):
    at = _app()
    at.selectbox(key="tf_arch").set_value("bert").run()
    at.selectbox(key="tf_objective").set_value("nsp").run()
    at.radio(key="tf_corpus_source").set_value("Upload a .txt file")
    at.file_uploader(key="tf_upload").set_value(("one.txt", b"One sentence here. And another one. " * 300, "text/plain"))
    at.button(key="check").click().run()  # Check names the field; the panel points at it
    assert not at.exception and "**corpus**" in _texts(at.error)
    assert "Fix **corpus** above" in _texts(_batch_panel(at).caption)
    at.run()  # the form's error is gone after a rerun: the panel says it itself, inline, no traceback
    assert not at.exception
    errors = _texts(_batch_panel(at).error)
    assert "**corpus**" in errors and "two documents" in errors
    assert not _mask_titles(at) and not [h for h in at.html if 'class="wb-batch"' in h.value]


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory) -> tuple:
    """A store with a tiny causal-LM run and a tiny masked-LM run: (home, gpt run, bert run)."""
    from workbench.pipeline import train

    home = tmp_path_factory.mktemp("two_tasks")
    store = RunStore(home)
    tiny = {"max_steps": 4, "eval_interval": 2, "eval_chars": 2048, "batch_size": 4, "log_interval": 2,
            "warmup_steps": 1, "n_layer": 1, "n_embd": 32}
    gpt = train(apply_overrides(workbench.presets.get_preset("gpt-nano"), {**tiny, "name": "causal"}), store)
    bert = train(apply_overrides(workbench.presets.get_preset("bert-nano"), {**tiny, "name": "masked"}), store)
    return home, gpt, bert


def test_runs_labels_curves_by_what_they_predict_when_the_objectives_differ(two_tasks, monkeypatch):
    import json

    home, gpt, bert = two_tasks
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    at = _app(page="runs")
    at.selectbox(key="cmp_metric").set_value("val/bpc").run()
    assert not at.exception
    (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = sorted(t["name"] for t in chart["data"])
    assert len(names) == 2
    assert any("causal" in n and n.endswith("· next token") for n in names)
    assert any("masked" in n and n.endswith("· masked token") for n in names)
    assert "not the same task" in _texts(at.caption) and "masked token vs next token" in _texts(at.caption)

    at.multiselect(key="cmp_runs").set_value([gpt]).run()  # one task: plain labels, no warning
    (chart,) = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert not chart["data"][0]["name"].endswith("token") and "not the same task" not in _texts(at.caption)


def test_sample_page_fills_the_gaps_of_a_span_corruption_run(home) -> None:
    from workbench.pipeline import train

    cfg = apply_overrides(workbench.presets.get_preset("t5-nano"),
                          {"max_steps": 4, "eval_interval": 2, "eval_chars": 2048, "batch_size": 4, "n_embd": 32})
    run_id = train(cfg, RunStore(home))
    at = _app(run=run_id, page="sample")
    assert "span corruption" in _texts(at.info)
    at.text_area(key="s_prompt_fill").set_value("ROMEO: But <extra_id_0> what light")
    at.slider(key="s_temp").set_value(0.0)
    at.button[0].click().run()
    assert not at.exception and not at.error, _texts(at.error)
    out = at.code[0].value
    assert out.startswith("ROMEO: But ") and "what light" in out and "<extra_id_0> →" in out
    at.text_area(key="s_prompt_fill").set_value("no gap here")
    at.button[0].click().run()
    assert not at.exception and "write <extra_id_0>" in _texts(at.error)  # a user mistake: said, no traceback


# --- the objective's settings ------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

import objective_form  # noqa: E402  (the dashboard's module, next to model_form)
from workbench.config import ConfigError  # noqa: E402


def _okey(name: str, field: str) -> str:
    return objective_form.key("tf_", name, field)


def _under(at, kind: str, widget_key: str):
    """The innermost column holding the widget ``widget_key`` of ``kind``."""
    return next(c for c in reversed(list(at.columns)) if any(w.key == widget_key for w in c.get(kind)))


def _shown(at) -> str:
    """Every text the page shows (to look for server paths)."""
    return "\n".join(_texts(at.get(kind)) for kind in ("markdown", "caption", "error", "warning", "info", "code"))


PAIRS = "".join(f"the {w} house\tla {w} maison\n" for w in ("red", "blue", "green", "small", "big", "old", "new",
                                                            "white", "black", "tall") * 4).encode()


def test_seq2seq_settings_show_and_reach_the_config(home, monkeypatch):
    seen = _capture_start(monkeypatch)
    at = _app()
    assert not any(k.startswith("tf_objective_") for k in _keys(at))  # causal_lm has no settings
    at.selectbox(key="tf_arch").set_value("seq2seq").run()
    at.selectbox(key="tf_objective").set_value("seq2seq").run()
    assert not at.exception
    task = at.selectbox(key=_okey("seq2seq", "task"))
    assert task.options == ["reverse-words", "pig-latin", objective_form.UPLOAD] and task.value == "reverse-words"
    assert {_okey("seq2seq", f) for f in ("max_words", "bucketing", "score_examples")} <= _keys(at)
    assert _okey("seq2seq", "task") not in {w.key for w in at.text_input}  # never a path typed in
    assert "Words per line, at most (max_words)" in {w.label for w in at.number_input}
    task.set_value("pig-latin").run()
    at.number_input(key=_okey("seq2seq", "max_words")).set_value(6)
    at.button(key="launch").click().run()
    assert "captured by the test" in _texts(at.error)
    (cfg,) = seen
    assert cfg.model.arch == "seq2seq" and cfg.objective.name == "seq2seq"
    assert cfg.objective.task == "pig-latin" and cfg.objective.max_words == 6 and type(cfg.objective.max_words) is int


def test_masked_lm_settings_reach_the_config_and_errors_show_under_their_field(home, monkeypatch):
    seen = _capture_start(monkeypatch)
    at = _app()
    at.selectbox(key="train_preset").set_value("bert-nano").run()
    assert at.number_input(key=_okey("mlm", "mask_rate")).value == pytest.approx(0.15)
    assert "Mask rate (mask_rate)" in {w.label for w in at.number_input}
    at.number_input(key=_okey("mlm", "mask_rate")).set_value(0.3).run()
    at.checkbox(key=_okey("mlm", "whole_word")).check().run()
    at.button(key="launch").click().run()
    (cfg,) = seen
    assert cfg.objective.name == "mlm" and cfg.objective.mask_rate == pytest.approx(0.3) and cfg.objective.whole_word

    at.number_input(key=_okey("mlm", "keep_frac")).set_value(0.5).run()  # 0.8 + 0.1 + 0.5: not 1
    at.button(key="launch").click().run()
    assert not at.exception and len(seen) == 1 and RunStore(home).list_runs() == []
    assert "must sum to 1" in _texts(_under(at, "number_input", _okey("mlm", "keep_frac")).error)
    assert "fix **keep_frac** above" in _texts(at.markdown)
    assert not any("must sum to 1" in _texts(c.error) for c in at.columns
                   if any(w.key == "tf_batch_size" for w in c.number_input))

    at.selectbox(key="train_preset").set_value("t5-nano").run()  # span corruption: noise_density in (0, 1)
    at.number_input(key=_okey("span", "noise_density")).set_value(1.0).run()
    at.button(key="check").click().run()
    assert "must be in (0, 1)" in _texts(_under(at, "number_input", _okey("span", "noise_density")).error)
    assert len(seen) == 1


def test_an_uploaded_tsv_task_is_checked_then_stored_when_a_run_starts(home, monkeypatch):
    seen = _capture_start(monkeypatch)
    at = _app()
    at.selectbox(key="train_preset").set_value("seq2seq-reverse-words-nano").run()
    at.selectbox(key=_okey("seq2seq", "task")).set_value(objective_form.UPLOAD).run()
    assert "**task**" in _texts(at.error) and "choose a .tsv file" in _texts(at.error)  # no file yet
    upload = _okey("seq2seq", "task") + "_upload"
    # a bad file: the line to fix, by the file's name; nothing stored, nothing started
    at.file_uploader(key=upload).set_value(("bad.tsv", b"one\tun\ntwo deux\n", "text/tab-separated-values")).run()
    at.button(key="launch").click().run()
    assert not at.exception and not seen
    errors = _texts(_under(at, "selectbox", _okey("seq2seq", "task")).error)
    assert "bad.tsv line 2 has 0 TABs" in errors
    assert not (home / "uploads").exists()

    at.file_uploader(key=upload).set_value(("../../etc/pairs.tsv", PAIRS, "text/tab-separated-values")).run()
    at.button(key="check").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    assert "These settings are valid" in _texts(at.markdown)
    assert not (home / "uploads").exists()  # Check stores nothing
    at.button(key="launch").click().run()
    (cfg,) = seen
    path = Path(cfg.objective.task.removeprefix("tsv:"))
    assert cfg.objective.task.startswith("tsv:") and path.parent == home / "uploads" and path.suffix == ".tsv"
    assert path.read_bytes() == PAIRS and ".." not in path.name
    shown = _shown(at)
    assert "pairs.tsv" in shown
    assert str(home) not in shown and str(objective_form._check_dir()) not in shown and path.name not in shown


def test_upload_check_reports_not_utf8_with_its_line(home):
    with pytest.raises(ConfigError, match=r"latin\.tsv line 2 is not UTF-8"):
        objective_form.check_tsv("latin.tsv", "one\tun\ncafé\tcafé\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^task: x\.tsv line 1 has an empty target"):
        objective_form.check_tsv("x.tsv", b"one\t \n")
    assert objective_form.check_tsv("ok.tsv", PAIRS).read_bytes() == PAIRS


def test_a_preset_task_file_shows_as_the_upload_choice_by_its_name(home, monkeypatch, tmp_path):
    tsv = tmp_path / "secret-folder" / "mine.tsv"
    tsv.parent.mkdir()
    tsv.write_bytes(PAIRS)

    def from_file():
        return apply_overrides(workbench.presets.get_preset("seq2seq-reverse-words-nano"),
                               {"task": f"tsv:{tsv}", "preset": "seq2seq-file"})

    monkeypatch.setitem(workbench.presets.PRESETS, "seq2seq-file", from_file)
    seen = _capture_start(monkeypatch)
    at = _app()
    at.selectbox(key="train_preset").set_value("seq2seq-file").run()
    assert at.selectbox(key=_okey("seq2seq", "task")).value == objective_form.UPLOAD
    assert "tsv:.../mine.tsv" in _texts(at.caption) and "secret-folder" not in _shown(at)
    at.button(key="launch").click().run()
    assert seen[0].objective.task == f"tsv:{tsv}"
    tsv.unlink()  # gone since: the error names the file, not its folder
    at.button(key="check").click().run()
    errors = _texts(_under(at, "selectbox", _okey("seq2seq", "task")).error)
    assert "no TSV file at '.../mine.tsv'" in errors and "secret-folder" not in _shown(at) and len(seen) == 1


def test_switching_objective_and_back_keeps_the_values(home):
    at = _app()
    at.selectbox(key="train_preset").set_value("bert-nano").run()
    at.number_input(key=_okey("mlm", "mask_rate")).set_value(0.25).run()
    at.selectbox(key="tf_objective").set_value("nsp").run()
    assert _okey("mlm", "mask_rate") not in _keys(at)
    at.number_input(key=_okey("nsp", "random_next_prob")).set_value(0.3).run()
    at.selectbox(key="tf_objective").set_value("mlm").run()
    assert at.number_input(key=_okey("mlm", "mask_rate")).value == pytest.approx(0.25)
    at.selectbox(key="tf_objective").set_value("nsp").run()
    assert at.number_input(key=_okey("nsp", "random_next_prob")).value == pytest.approx(0.3)

    at.selectbox(key="train_preset").set_value("seq2seq-reverse-words-nano").run()
    at.selectbox(key=_okey("seq2seq", "task")).set_value("pig-latin").run()
    at.number_input(key=_okey("seq2seq", "max_words")).set_value(9).run()
    at.selectbox(key="tf_objective").set_value("span").run()
    assert _okey("span", "noise_density") in _keys(at) and _okey("seq2seq", "task") not in _keys(at)
    at.selectbox(key="tf_objective").set_value("seq2seq").run()
    assert at.selectbox(key=_okey("seq2seq", "task")).value == "pig-latin"
    assert at.number_input(key=_okey("seq2seq", "max_words")).value == 9
    assert not at.exception
