from __future__ import annotations

import dataclasses

import pytest
import torch

from workbench.config import (
    PRESETS,
    ConfigError,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    field_docs,
    flat_fields,
    get_preset,
)
from workbench.models import build_model
from workbench.pipeline import count_parameters


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_and_round_trip_through_json(name: str) -> None:
    cfg = get_preset(name)
    assert cfg.preset == name
    assert RunConfig.from_json(cfg.to_json()) == cfg


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
    docs = field_docs()
    assert set(docs) == set(flat_fields())
    assert all(docs.values())


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: ModelConfig(n_embd=65, n_head=2), "n_embd"),
        (lambda: ModelConfig(n_layer=0), "n_layer"),
        (lambda: ModelConfig(block_size=10**6), "block_size"),
        (lambda: ModelConfig(dropout=1.0), "dropout"),
        (lambda: TrainConfig(lr=0.0), "lr"),
        (lambda: TrainConfig(max_steps=0), "max_steps"),
        (lambda: TrainConfig(min_lr=1.0, lr=1e-3), "min_lr"),
        (lambda: TrainConfig(device="tpu"), "device"),
        (lambda: apply_overrides(get_preset("gpt-nano"), {"seq_len": 65}), "seq_len"),
        (lambda: apply_overrides(get_preset("gpt-nano"), {"not_a_field": 1}), "not_a_field"),
        (lambda: get_preset("nope"), "preset"),
        (lambda: RunConfig.from_dict({"model": {"n_embed": 64}}), "model"),
    ],
)
def test_validation_names_the_field(make, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        make()
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_overrides_keep_the_rest_of_the_preset() -> None:
    cfg = apply_overrides(get_preset("gpt-cpu"), {"n_embd": 256, "lr": 3e-4, "tokenizer": "bpe", "max_steps": None})
    assert cfg.model.n_embd == 256 and cfg.train.lr == 3e-4 and cfg.data.tokenizer == "bpe"
    assert cfg.model.n_layer == 4 and cfg.train.max_steps == 2000  # None means "not given"
    assert cfg.seq_len == 64
