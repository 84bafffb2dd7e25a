"""LSTM and GRU language models: causal, back-propagation through the unroll, no state carried
between calls, checkpoints with a tied head, and whole runs through the pipeline."""

from __future__ import annotations

import pytest
import torch

import workbench.models
from workbench.checkpoint import load_checkpoint, save_checkpoint
from workbench.config import ConfigError, RunConfig, TrainConfig
from workbench.experiment import build_experiment, count_parameters
from workbench.generate import sample_text
from workbench.models import Family, build_model
from workbench.models.rnn import GRUConfig, LSTMConfig, RNNConfig, RNNLanguageModel
from workbench.objectives import Batch, CausalLM, EvalSet
from workbench.overrides import apply_overrides
from workbench.pipeline import load_run_model, resume, train
from workbench.runstore import RunStore
from workbench.trainer import Callback, Trainer

ARCHS = ["lstm", "gru"]
CONFIGS = {"lstm": LSTMConfig, "gru": GRUConfig}


@pytest.fixture(autouse=True)
def rnn_families(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the families here too, whether or not ``workbench.models`` already does."""
    monkeypatch.setitem(workbench.models.FAMILIES, "lstm", Family(LSTMConfig, RNNLanguageModel))
    monkeypatch.setitem(workbench.models.FAMILIES, "gru", Family(GRUConfig, RNNLanguageModel))


def make_model(arch: str, **kw) -> RNNLanguageModel:
    torch.manual_seed(0)
    cfg = CONFIGS[arch](**{"n_layer": 2, "n_embd": 32, "vocab_size": 50, **kw})
    return build_model(cfg).eval()  # type: ignore[return-value]


def rnn_cfg(tiny_cfg, arch: str = "lstm", **overrides) -> RunConfig:
    """tiny_cfg switched to a recurrent family (its block_size and n_head do not carry over)."""
    return apply_overrides(tiny_cfg(), {"arch": arch, "seq_len": 32, **overrides})


# --- the model ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("hidden", [0, 48])
def test_shapes_and_outputs(arch: str, hidden: int) -> None:
    model = make_model(arch, hidden=hidden)
    idx = torch.randint(0, 50, (3, 11))
    out = model(idx, attention_mask=torch.ones(3, 11), output_attentions=True, output_hidden_states=True)
    assert out.logits.shape == (3, 11, 50)
    assert out.hidden_states.shape == (3, 11, 32)  # projected back to n_embd when hidden differs
    assert [h.shape[-1] for h in out.all_hidden_states] == [32, hidden or 32, hidden or 32]  # embeddings, each layer
    assert out.attentions is None  # accepted and ignored: there is no attention
    assert model.lm_head.weight is model.trunk.wte.weight  # tied, through the projection when hidden differs
    assert model.max_context is None
    assert model(idx).all_hidden_states is None
    assert (model.trunk.proj is None) == (hidden == 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_no_future_leakage(arch: str) -> None:
    model = make_model(arch)
    idx = torch.randint(0, 50, (2, 16))
    base = model(idx).logits
    for t in (0, 7, 14):
        changed = idx.clone()
        changed[:, t + 1 :] = torch.randint(0, 50, changed[:, t + 1 :].shape)
        assert torch.equal(model(changed).logits[:, : t + 1], base[:, : t + 1])


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_flow_through_the_whole_unroll(arch: str) -> None:
    """The loss at the last position reaches the first token's embedding: back-propagation
    through time runs over the whole window."""
    model = make_model(arch).train()
    kept: list[torch.Tensor] = []

    def keep(_module, _inputs, output: torch.Tensor) -> None:
        output.retain_grad()
        kept.append(output)

    model.trunk.wte.register_forward_hook(keep)
    idx = torch.randint(0, 50, (2, 64))
    logits = model(idx).logits
    torch.nn.functional.cross_entropy(logits[:, -1], idx[:, 0]).backward()
    grad = kept[0].grad  # (B, T, C): d loss / d embedding at each position
    assert grad[:, 0].abs().sum() > 0  # 63 steps back
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.layers[0].parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_no_state_is_carried_between_calls_or_across_the_batch(arch: str) -> None:
    model = make_model(arch)
    window = torch.randint(0, 50, (1, 20))
    first = model(window).logits
    model(torch.randint(0, 50, (4, 33)))  # something else in between
    assert torch.equal(model(window).logits, first)
    together = model(torch.cat([torch.randint(0, 50, (2, 20)), window])).logits
    torch.testing.assert_close(together[2:], first)  # each row starts from its own zero state


@pytest.mark.parametrize("arch,hidden,tie", [("lstm", 0, True), ("gru", 48, True), ("lstm", 48, False)])
def test_checkpoint_round_trip_keeps_the_tied_head(arch: str, hidden: int, tie: bool, tmp_path) -> None:
    model = make_model(arch, hidden=hidden, tie_weights=tie)
    save_checkpoint(tmp_path / "m.safetensors", model)
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    torch.manual_seed(1)
    fresh = build_model(model.config)  # other weights
    fresh.load_state_dict(ckpt.model_state)  # strict: every key, the tied head from its alias
    assert (fresh.lm_head.weight is fresh.trunk.wte.weight) == tie
    idx = torch.randint(0, 50, (2, 9))
    assert torch.equal(fresh(idx).logits, model(idx).logits)


def test_parameter_count_tied_weights_once_and_on_the_meta_device() -> None:
    tied, untied = make_model("lstm"), make_model("lstm", tie_weights=False)
    assert untied.num_parameters() - tied.num_parameters() == 50 * 32
    lstm_layer = 4 * (32 * 32 + 32 * 32 + 2 * 32)  # 4 gates: input and recurrent matrices, two biases
    assert tied.num_parameters() == 50 * 32 + 2 * lstm_layer
    assert make_model("gru").num_parameters() == 50 * 32 + 2 * (lstm_layer // 4 * 3)


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_falls_on_one_fixed_batch(arch: str) -> None:
    torch.manual_seed(0)
    stream = torch.randint(0, 20, (33,))  # exactly one window of 32
    eval_set = EvalSet([Batch(input_ids=stream[None, :-1], labels=stream[None, 1:])])
    model = build_model(CONFIGS[arch](n_layer=1, n_embd=64, vocab_size=20))
    cfg = TrainConfig(max_steps=60, batch_size=4, lr=1e-2, min_lr=1e-2, warmup_steps=0, weight_decay=0.0,
                      eval_interval=1000, log_interval=1)
    losses: list[float] = []

    class Record(Callback):
        def on_log(self, trainer, metrics):
            losses.append(metrics["train/loss"])

    Trainer(model, CausalLM(), stream, eval_set, cfg, seq_len=32, callbacks=[Record()], progress=False).fit()
    assert losses[0] > 2.5  # ~ln(20) = 3.0 before learning
    assert losses[-1] < 0.5


# --- configs ------------------------------------------------------------------------------------

def test_config_errors_name_the_field(tiny_cfg) -> None:
    with pytest.raises(ConfigError) as e:
        rnn_cfg(tiny_cfg, n_layer=0)
    assert e.value.field == "n_layer"
    with pytest.raises(ConfigError) as e:
        apply_overrides(tiny_cfg(), {"arch": "lstm"})  # no fixed context: seq_len is needed
    assert e.value.field == "seq_len" and "no fixed context" in e.value.message
    for bad, field in [({"hidden": -1}, "hidden"), ({"dropout": 1.0}, "dropout"), ({"arch": "gru"}, "arch"),
                       ({"n_embd": 0}, "n_embd")]:
        with pytest.raises(ConfigError) as e:
            LSTMConfig(**bad)
        assert e.value.field == field
    with pytest.raises(ConfigError, match="block_size"):  # a GPT-only setting is not silently dropped
        rnn_cfg(tiny_cfg, block_size=64)
    with pytest.raises(ConfigError, match="needs a model that is bidirectional") as e:  # reads left to right only
        rnn_cfg(tiny_cfg, objective="mlm")
    assert e.value.field == "objective"


def test_configs_round_trip_and_describe(tiny_cfg) -> None:
    cfg = rnn_cfg(tiny_cfg, "gru", hidden=48)
    again = RunConfig.from_json(cfg.to_json())
    assert type(again.model) is GRUConfig and again.model == cfg.model and again.seq_len == 32
    assert cfg.model.describe() == "gru 2L/32 h48" and LSTMConfig().describe() == "lstm 2L/128"
    assert RNNConfig(arch="gru").arch == "gru"  # the shared base takes either cell
    assert "hidden" in cfg.model.field_docs() and "causal" in cfg.model.capabilities
    assert "attention" not in cfg.model.capabilities and "bidirectional" not in cfg.model.capabilities
    built = build_model(type(cfg.model)(**{**cfg.model.to_dict(), "vocab_size": 65}))
    assert count_parameters(cfg, 65) == built.num_parameters()


# --- whole runs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ARCHS)
def test_a_run_trains_samples_and_takes_no_attention_snapshots(arch: str, tiny_cfg) -> None:
    store = RunStore()
    run_id = train(rnn_cfg(tiny_cfg, arch, max_steps=20), store, progress=False)
    info = store.get_run(run_id)
    assert info.status == "finished" and info.step == 20
    val = store.metric_series(run_id)["val/loss"][1]
    assert val[-1] < val[0]
    assert store.artifacts(run_id, "attention") == []
    attn = store.run_dir(run_id) / "attn"
    assert not attn.exists() or not any(attn.iterdir())
    model, tok, cfg = load_run_model(store, run_id, "last")
    assert isinstance(model, RNNLanguageModel) and cfg.model.arch == arch and model.max_context is None
    text = sample_text(model, tok, "KING:", max_new_tokens=40, seed=1)  # longer than seq_len: nothing is cropped
    assert text.startswith("KING:") and len(text) == 45
    assert sample_text(model, tok, "KING:", max_new_tokens=40, seed=1) == text


def _trainer(exp, steps: int) -> Trainer:
    cfg = exp.config.train
    cfg = type(cfg)(**{**cfg.__dict__, "max_steps": steps})
    return Trainer(exp.model, exp.objective, exp.train_data, exp.eval_set, cfg, exp.config.seq_len, progress=False)


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_resumes_to_the_same_next_loss(arch: str, tiny_cfg, tmp_path) -> None:
    exp = build_experiment(rnn_cfg(tiny_cfg, arch, max_steps=20, dropout=0.1))  # dropout masks too
    t = _trainer(exp, 20)
    for s in range(1, 11):
        t.train_step(s)
    t.state.step = 10
    t.save_checkpoint(tmp_path / "last.safetensors")
    expected = [t.train_step(s)[0].item() for s in (11, 12)]

    fresh = build_experiment(rnn_cfg(tiny_cfg, arch, max_steps=20, dropout=0.1, seed=999))  # other init on purpose
    t2 = _trainer(fresh, 20)
    t2.config = t.config  # same seed for batches
    t2.load_checkpoint(tmp_path / "last.safetensors")
    assert t2.state.step == 10
    assert [t2.train_step(s)[0].item() for s in (11, 12)] == expected


def test_a_stored_run_resumes_and_extends(tiny_cfg) -> None:
    store = RunStore()
    run_id = train(rnn_cfg(tiny_cfg, "lstm", max_steps=10), store, progress=False)
    assert resume(store, run_id, {"max_steps": 20}, progress=False) == "finished"
    assert store.get_run(run_id).step == 20
