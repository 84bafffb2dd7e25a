"""Addressing config fields by name: what CLI flags, dashboard controls and overrides use.

Every field is ``section.field`` (``model.n_layer``, ``train.lr``); its bare name (``n_layer``)
works too wherever it is unique among the sections a config has (its model family and
objective decide which fields exist). ``arch``, ``objective`` and ``tokenizer`` switch the model family, objective or tokenizer family.
"""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

from .config import (
    SECTION_NAMES,
    ConfigError,
    DataConfig,
    RunConfig,
    Section,
    TrainConfig,
    model_config_class,
    objective_config_class,
    require,
    tokenizer_config_class,
)

SELECTORS = {"arch": ("model", "arch"), "objective": ("objective", "name"), "tokenizer": ("tokenizer", "kind")}
"""Bare names that switch a section's class: ``--arch gpt``, ``--objective causal_lm``, ``--tokenizer bpe``."""

SELECTOR_CLASSES = {"model": model_config_class, "objective": objective_config_class, "tokenizer": tokenizer_config_class}
"""Section -> the function that gives its dataclass for a selector value."""


def section_classes(cfg: RunConfig | dict[str, Any]) -> dict[str, type[Section]]:
    """The dataclass of each section of a config (or of a config dict: its ``arch``/``name`` pick them)."""
    if isinstance(cfg, RunConfig):
        return {name: type(sec) for name, sec in cfg.sections().items()}
    return {"model": model_config_class(cfg.get("model", {}).get("arch", "gpt")),
            "objective": objective_config_class(cfg.get("objective", {}).get("name", "causal_lm")),
            "data": DataConfig,
            "tokenizer": tokenizer_config_class(cfg.get("tokenizer", {}).get("kind", "char")),
            "train": TrainConfig}


def config_fields(cfg: RunConfig | dict[str, Any]) -> dict[str, tuple[str, dataclasses.Field]]:
    """Every user-settable field of ``cfg``'s sections as ``'section.field' -> (section, Field)``.

    >>> from workbench.presets import get_preset
    >>> "model.n_layer" in config_fields(get_preset("gpt-nano"))
    True
    """
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, cls in section_classes(cfg).items():
        for f in cls.user_fields():
            out[f"{section}.{f.name}"] = (section, f)
    return out


def bare_names(cfg: RunConfig | dict[str, Any]) -> dict[str, str]:
    """Bare field names that are unique among ``cfg``'s sections -> their qualified name.

    Selectors (``arch``, ``objective``) are bare names too; a name that two sections share is
    only reachable qualified (``model.dropout`` vs ``objective.dropout``).

    >>> from workbench.presets import get_preset
    >>> bare_names(get_preset("gpt-nano"))["lr"]
    'train.lr'
    """
    counts: dict[str, list[str]] = {}
    for qualified in config_fields(cfg):
        counts.setdefault(qualified.split(".", 1)[1], []).append(qualified)
    out = {name: q[0] for name, q in counts.items() if len(q) == 1 and name not in ("arch", "name", "kind")}
    out.update({sel: ".".join(target) for sel, target in SELECTORS.items()})
    return out


def field_docs(cfg: RunConfig | dict[str, Any]) -> dict[str, str]:
    """The docstring of every field of ``cfg``'s sections, under its qualified and (where unique)
    its bare name: help texts for flags and form controls.

    >>> from workbench.presets import get_preset
    >>> field_docs(get_preset("gpt-nano"))["n_head"] == field_docs(get_preset("gpt-nano"))["model.n_head"]
    True
    """
    docs = {}
    for qualified, (section, f) in config_fields(cfg).items():
        docs[qualified] = section_classes(cfg)[section].field_docs().get(f.name, "")
    for bare, qualified in bare_names(cfg).items():
        docs[bare] = docs.get(qualified, "")
    return docs


def resolve_name(cfg: RunConfig | dict[str, Any], name: str) -> str:
    """A bare or qualified field name -> ``'section.field'``, or a ConfigError saying how to write it."""
    fieldmap = config_fields(cfg)
    if name in fieldmap:
        return name
    bare = bare_names(cfg)
    if name in bare:
        return bare[name]
    shared = sorted(q for q in fieldmap if q.split(".", 1)[1] == name)
    require(not shared, name, f"is in several sections; write one of {', '.join(shared)}")
    raise ConfigError(name, "unknown setting")


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a new validated config with overrides applied; ``None`` values mean 'not given'.

    Keys are field names (bare where unique, or ``section.field``), ``arch`` / ``objective`` /
    ``tokenizer`` to switch model family, objective or tokenizer family (same-named settings carry over), and ``name`` / ``preset``.

    >>> from workbench.presets import get_preset
    >>> cfg = apply_overrides(get_preset("gpt-nano"), {"n_embd": 96, "train.lr": 3e-4})
    >>> cfg.model.n_embd, cfg.train.lr
    (96, 0.0003)
    """
    return RunConfig.from_dict(overridden_dict(cfg, overrides))


def overridden_dict(cfg: RunConfig, overrides: dict[str, Any]) -> dict[str, Any]:
    """What :func:`apply_overrides` validates: the config as a dict with the overrides applied.

    The CLI builds its flags from it after a family switch alone (``--arch lstm``), before the
    other flags (``--seq-len 64``) that make the whole run valid are read.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    d = cfg.to_dict()
    for key in ("name", "preset"):
        if key in given:
            d[key] = given.pop(key)
    for selector, (section, key) in SELECTORS.items():  # switch class first: the fields depend on it
        value = given.pop(selector, None)
        value = given.pop(f"{section}.{key}", value)
        if value is not None and value != d[section][key]:
            cls = SELECTOR_CLASSES[section](value)
            carried = {f.name: d[section][f.name] for f in fields(cls) if f.name in d[section] and f.name != key}
            d[section] = {**carried, key: value}
    for name, value in given.items():
        section, key = resolve_name(d, name).split(".", 1)
        d[section][key] = value
    return d


def diff_fields(a: RunConfig, b: RunConfig) -> list[str]:
    """Qualified names of the settings in which two configs differ (derived fields included).

    >>> from workbench.presets import get_preset
    >>> diff_fields(get_preset("gpt-nano"), apply_overrides(get_preset("gpt-nano"), {"lr": 1e-2}))
    ['train.lr']
    """
    da, db = a.to_dict(), b.to_dict()
    out = []
    for section in SECTION_NAMES:
        for key in sorted(set(da[section]) | set(db[section])):
            if da[section].get(key) != db[section].get(key):
                out.append(f"{section}.{key}")
    return out
