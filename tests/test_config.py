from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from workbench.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from workbench.overrides import apply_overrides, bare_names, config_fields, diff_fields, field_docs
from workbench.experiment import count_parameters
from workbench.models import FAMILIES, GPTConfig, build_model
from workbench.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_and_round_trip_through_json(name: str) -> None:
    cfg = get_preset(name)
    assert cfg.preset == name
    back = RunConfig.from_json(cfg.to_json())
    assert back == cfg and type(back.model) is type(cfg.model) and type(back.objective) is type(cfg.objective)


def test_shakespeare_char_preset_is_nanogpts_baby_gpt() -> None:
    cfg = get_preset("gpt-shakespeare-char")
    m = cfg.model
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout, m.bias) == (6, 6, 384, 256, 0.2, False)
    # nanoGPT prints "number of parameters: 10.65M" (without the position table) for a 65-char vocab
    with torch.device("meta"):
        model = build_model(dataclasses.replace(m, vocab_size=65))
    assert round(model.num_parameters(non_embedding=True) / 1e6, 2) == 10.65
    assert count_parameters(cfg, 65) == model.num_parameters()


def test_every_field_has_a_docstring() -> None:
    docs = field_docs(get_preset("gpt-nano"))
    assert set(config_fields(get_preset("gpt-nano"))) <= set(docs)
    assert all(docs.values())


# A config written by the first spine (before model families and the objective section):
# what `python -m workbench train` stored in runs/<id>/config.json on earlier main.
V1_CONFIG = {
    "model": {"arch": "gpt", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "vocab_size": 78,
              "dropout": 0.0, "bias": True, "pos_encoding": "learned", "tie_weights": True},
    "data": {"corpus": "shakespeare", "tokenizer": "char", "vocab_size": 512, "val_fraction": 0.1},
    "train": {"objective": "causal_lm", "max_steps": 200, "batch_size": 16, "seq_len": 0, "lr": 0.003,
              "min_lr": 0.0003, "warmup_steps": 20, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.99,
              "grad_clip": 1.0, "eval_interval": 50, "eval_iters": 8, "log_interval": 10, "seed": 1337,
              "device": "auto", "dtype": "auto", "compile": "auto"},
    "preset": "gpt-nano", "name": "",
}


def test_configs_of_existing_runs_still_load() -> None:
    cfg = RunConfig.from_json(json.dumps(V1_CONFIG))
    assert isinstance(cfg.model, GPTConfig) and cfg.model.vocab_size == 78
    assert cfg.objective.name == "causal_lm"
    assert cfg.train.lr == 0.003 and cfg.data.eval_chars == DataConfig().eval_chars
    assert RunConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: GPTConfig(n_embd=65, n_head=2), "n_embd"),
        (lambda: GPTConfig(n_layer=0), "n_layer"),
        (lambda: GPTConfig(block_size=10**6), "block_size"),
        (lambda: GPTConfig(dropout=1.0), "dropout"),
        (lambda: TrainConfig(lr=0.0), "lr"),
        (lambda: TrainConfig(max_steps=0), "max_steps"),
        (lambda: TrainConfig(min_lr=1.0, lr=1e-3), "min_lr"),
        (lambda: TrainConfig(device="tpu"), "device"),
        (lambda: TrainConfig(optimizer="lion"), "optimizer"),
        (lambda: TrainConfig(momentum=1.5), "momentum"),
        (lambda: DataConfig(eval_chars=-1), "eval_chars"),
        (lambda: apply_overrides(get_preset("gpt-nano"), {"seq_len": 65}), "seq_len"),
        (lambda: apply_overrides(get_preset("gpt-nano"), {"not_a_field": 1}), "not_a_field"),
        (lambda: apply_overrides(get_preset("gpt-nano"), {"arch": "transformer-xl"}), "arch"),
        (lambda: apply_overrides(get_preset("gpt-nano"), {"objective": "mlm"}), "objective"),
        (lambda: get_preset("nope"), "preset"),
        (lambda: RunConfig.from_dict({"model": {"n_embed": 64}}), "model"),
        (lambda: RunConfig.from_dict({"model": {"arch": "rnn"}}), "arch"),
    ],
)
def test_validation_names_the_field(make, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_overrides_keep_the_rest_of_the_preset() -> None:
    cfg = apply_overrides(get_preset("gpt-cpu"), {"n_embd": 256, "train.lr": 3e-4, "tokenizer": "bpe", "max_steps": None})
    assert cfg.model.n_embd == 256 and cfg.train.lr == 3e-4 and cfg.tokenizer.kind == "bpe"
    assert cfg.model.n_layer == 4 and cfg.train.max_steps == 2000  # None means "not given"
    assert cfg.seq_len == 64
    # switching the tokenizer family brings that family's settings
    assert sorted(diff_fields(get_preset("gpt-cpu"), cfg)) == [
        "model.n_embd", "tokenizer.kind", "tokenizer.min_freq", "tokenizer.unk", "tokenizer.vocab_size", "train.lr"]


# --- families and objectives plug in without touching config.py ---------------------------------

@dataclass
class _TwoStackConfig(ModelConfig):
    """A made-up encoder-decoder family whose settings share names with the objective's."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"causal"})

    arch: str = "two-stack"
    n_encoder_layer: int = 2
    """Encoder blocks."""
    n_decoder_layer: int = 3
    """Decoder blocks."""
    dropout: float = 0.0
    """Model dropout."""
    block_size: int = 32
    """Longest context."""

    @property
    def max_context(self) -> int:
        return self.block_size


@pytest.fixture
def two_stack(monkeypatch):
    from workbench.models import Family
    from workbench.objectives import OBJECTIVES, CausalLM, CausalLMConfig

    @dataclass
    class NoisyConfig(CausalLMConfig):
        name: str = "noisy_lm"
        dropout: float = 0.1
        """Objective-side dropout (same name as the model's)."""

    class Noisy(CausalLM):
        name = "noisy_lm"
        config_cls = NoisyConfig

    monkeypatch.setitem(FAMILIES, "two-stack", Family(_TwoStackConfig, FAMILIES["gpt"].model_cls))
    monkeypatch.setitem(OBJECTIVES, "noisy_lm", Noisy)
    return NoisyConfig


def test_a_new_family_and_objective_need_only_a_registry_line(two_stack) -> None:
    cfg = apply_overrides(get_preset("gpt-nano"), {"arch": "two-stack", "objective": "noisy_lm", "n_decoder_layer": 5})
    assert isinstance(cfg.model, _TwoStackConfig) and cfg.model.n_decoder_layer == 5
    assert cfg.model.n_encoder_layer == 2
    assert isinstance(cfg.objective, two_stack)
    # names two sections share are reachable only qualified; the bare name says how to write it
    assert "dropout" not in bare_names(cfg)
    with pytest.raises(ConfigError, match="model.dropout, objective.dropout"):
        apply_overrides(cfg, {"dropout": 0.2})
    cfg = apply_overrides(cfg, {"model.dropout": 0.2, "objective.dropout": 0.3})
    assert (cfg.model.dropout, cfg.objective.dropout) == (0.2, 0.3)
    back = RunConfig.from_json(cfg.to_json())
    assert back == cfg and isinstance(back.model, _TwoStackConfig)


def test_an_objective_the_family_cannot_serve_is_refused(monkeypatch) -> None:
    from workbench.objectives import OBJECTIVES, CausalLM

    class NeedsBidirectional(CausalLM):
        name = "mlm_like"
        needs = frozenset({"bidirectional"})

    monkeypatch.setitem(OBJECTIVES, "mlm_like", NeedsBidirectional)
    with pytest.raises(ConfigError, match="needs a model that is bidirectional") as err:
        apply_overrides(get_preset("gpt-nano"), {"objective": "mlm_like"})
    assert err.value.field == "objective"
