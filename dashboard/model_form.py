"""A model family's settings as widgets, for the Train page (``tokenizer_form`` does the same for
tokenizer families).

The fields come from the family's config dataclass (``model_config_class(arch).user_fields()``,
``arch`` left out: the family picker sets it), with their docstrings as help and their type hints
deciding the widget: a number input for ``int`` and ``float``, a checkbox for ``bool``, a
selectbox for a ``Literal``, a text box otherwise. A field added to a family shows up here.
Every family keeps its settings in its own widgets (``<prefix>model_<arch>_<field>``), so
switching preset or family back and forth loses nothing. :func:`overrides` turns the widgets'
values into ``model.<field>`` overrides of the family's types.

The widgets of any config dataclass's fields are drawn, filled and read by the generic
:func:`render_fields`, :func:`init_fields`, :func:`load_fields` and :func:`field_values` (each
given the class, a function from a field name to its widget key, and the fields): the model
families here, the objectives in ``objective_form``.

Objectives are offered by what the family can do: :func:`objectives` splits
``workbench.objectives.OBJECTIVES`` into those whose ``needs`` the family's ``capabilities`` cover
and, for the others, the reason (Streamlit's selectbox cannot disable single options).
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing
from collections.abc import Callable, Mapping
from dataclasses import Field
from typing import Any, Literal

import streamlit as st

import guard
import tokenizer_form as tf
from workbench.config import ConfigError, RunConfig, model_config_class
from workbench.models import FAMILIES
from workbench.objectives import OBJECTIVES

LABELS = {
    "n_layer": "Layers (n_layer)",
    "n_head": "Heads per layer (n_head)",
    "n_embd": "Width (n_embd)",
    "block_size": "Context length (block_size)",
    "dropout": "Dropout",
    "pos_encoding": "Position encoding",
    "rope_base": "RoPE base (rope_base; rope only)",
    "norm": "LayerNorm placement (norm)",
    "residual": "Residual connections (residual)",
    "bias": "Biases in linear and norm layers (bias)",
    "tie_weights": "Tie input and output embeddings (tie_weights)",
    "hidden": "Recurrent state width (hidden; 0 = n_embd)",
    "intermediate": "Feed-forward width (intermediate; 0 = 4 x n_embd)",
    "type_vocab_size": "Segment types (type_vocab_size)",
    "layer_norm_eps": "LayerNorm epsilon (layer_norm_eps)",
}
"""Widget labels by field (a field without one is labelled by its name)."""
RANGES: dict[str, tuple[Any, ...]] = {
    "n_layer": (1, 48, 1),
    "n_head": (1, 64, 1),
    "n_embd": (1, 4096, 8),
    "block_size": (1, 8192, 16),
    "hidden": (0, 8192, 8),
    "intermediate": (0, 16384, 64),
    "type_vocab_size": (1, 16, 1),
    "dropout": (0.0, 0.95, 0.05, "%.2f"),
    "layer_norm_eps": (1e-12, 0.1, 1e-6, "%.1e"),
    "rope_base": (2.0, 1e7, 1000.0, "%g"),
}
"""(lowest, highest, step[, format]) of the number fields by name; the others are unbounded."""
DIRECTIONS = frozenset({"causal", "bidirectional"})
"""The capabilities that say which way a model looks (named when an objective needs the other)."""


# --- the fields ----------------------------------------------------------------------------------

def family_fields(arch: str) -> list[Field]:
    """A family's settings in its dataclass's order (``arch`` left out: the family picker is it)."""
    return [f for f in model_config_class(arch).user_fields() if f.name != "arch"]


def key(prefix: str, arch: str, name: str) -> str:
    """The session-state key of one family's setting."""
    return f"{prefix}model_{arch}_{name}"


def _convert(hint: Any, value: Any) -> Any:
    """A widget's value as the field's type (a number input may hand back 2.0 for an int field)."""
    if hint is bool:
        return bool(value)
    if hint is int:
        return int(value)
    if hint is float:
        return float(value)
    return value.strip() if isinstance(value, str) and typing.get_origin(hint) is not Literal else value


def _default(f: Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def init_fields(cls: type, keyfn: Callable[[str], str], fields: list[Field]) -> None:
    """Each field's widget starts at the field's default, as the field's type (unless set already)."""
    hints = typing.get_type_hints(cls)
    for f in fields:
        st.session_state.setdefault(keyfn(f.name), _convert(hints[f.name], _default(f)))


def load_fields(config: Any, keyfn: Callable[[str], str], fields: list[Field]) -> None:
    """Fill the fields' widgets from a config (a preset's section)."""
    hints = typing.get_type_hints(type(config))
    for f in fields:
        st.session_state[keyfn(f.name)] = _convert(hints[f.name], getattr(config, f.name))


def field_values(cls: type, keyfn: Callable[[str], str], fields: list[Field]) -> dict[str, Any]:
    """The fields' widget values, each as its field's type, by field name."""
    hints = typing.get_type_hints(cls)
    return {f.name: _convert(hints[f.name], st.session_state[keyfn(f.name)]) for f in fields}


def init_state(prefix: str) -> None:
    """Every family's settings start at their defaults (once per session; a family registered
    later gets its defaults on the next run)."""
    for arch in FAMILIES:
        init_fields(model_config_class(arch), lambda name, arch=arch: key(prefix, arch, name), family_fields(arch))


def load(prefix: str, config: Any) -> None:
    """Fill a family's widgets from a model config (a preset's)."""
    load_fields(config, lambda name: key(prefix, config.arch, name), family_fields(config.arch))


def overrides(prefix: str, arch: str, preset: RunConfig, seq_len: int) -> dict[str, Any]:
    """The widgets' values as ``model.<field>`` overrides (qualified: an objective may have a
    field of the same name), each of its field's type, plus ``arch`` and, where the preset's
    window does not fit, ``seq_len``: the form's ``seq_len`` for a family without a fixed
    context, 0 (the model's context) for one with a context when the preset is of another family."""
    values = field_values(model_config_class(arch), lambda name: key(prefix, arch, name), family_fields(arch))
    out: dict[str, Any] = {"arch": arch, **{f"model.{name}": value for name, value in values.items()}}
    if not fixed_context(arch):
        out["seq_len"] = int(seq_len)
    elif arch != preset.model.arch:
        out["seq_len"] = 0
    return out


def fixed_context(arch: str) -> bool:
    """Whether the family has a longest context (GPT's block_size); without one (RNNs) a run
    needs ``train.seq_len > 0``. Read from a config of the family's defaults."""
    cls = model_config_class(arch)
    try:
        return cls(arch=arch).max_context is not None  # type: ignore[call-arg]
    except (ConfigError, TypeError, ValueError):  # defaults that do not make a config: trust the class
        return bool(cls.context_setting)


# --- objectives ----------------------------------------------------------------------------------

def objectives(arch: str) -> tuple[list[str], dict[str, str]]:
    """(the objectives the family can serve, {each other objective: why not})."""
    caps = model_config_class(arch).capabilities
    ok, refused = [], {}
    for name, objective in OBJECTIVES.items():
        missing = sorted(objective.needs - caps)
        if not missing:
            ok.append(name)
            continue
        need, direction = " and ".join(missing), " and ".join(sorted(caps & DIRECTIONS))
        # "mlm needs a bidirectional model; lstm is causal", else "...; lstm is not attention"
        is_ = direction if direction and DIRECTIONS & set(missing) else "not " + need
        refused[name] = f"{name} needs a {need} model; {arch} is {is_}"
    return ok, refused


def fix_objective(objective_key: str, arch: str, preferred: str | None = None) -> None:
    """Keep the picked objective one the family can serve: else ``preferred`` (the preset's) if
    it can, else the first that can (call before the objective picker is drawn)."""
    ok, _ = objectives(arch)
    if st.session_state.get(objective_key) not in ok:
        st.session_state[objective_key] = preferred if preferred in ok else (ok[0] if ok else None)


# --- drawing -------------------------------------------------------------------------------------

def pickers(arch_key: str, objective_key: str, docs: dict[str, str], *, error: tuple[str, str] | None = None) -> list[str]:
    """The Model family and Objective pickers (outside a form: a family's fields redraw at once),
    the family's capabilities and the objectives it cannot serve, with why; ``error`` (field,
    message) shows under its picker. Returns the names whose errors it shows."""
    arch = st.session_state[arch_key]
    ok, refused = objectives(arch)
    cols = st.columns([2, 2, 3], vertical_alignment="bottom")
    with cols[0]:
        st.selectbox("Model family", list(FAMILIES), key=arch_key, persist_state="session",
                     help=docs.get("arch", "") + " Each family keeps its own settings; the preset picks one.")
        if error is not None and error[0] == "arch":
            tf.show_error(*error)
    with cols[1]:
        st.selectbox("Objective", ok, key=objective_key, persist_state="session",
                     help=docs.get("objective", "") + " Only the objectives this model family can serve are listed.")
        if error is not None and error[0] == "objective":
            tf.show_error(*error)
    caps = ", ".join(sorted(model_config_class(arch).capabilities)) or "nothing declared"
    not_offered = "".join(f" Not offered: {guard.md(why)}." for why in refused.values())
    cols[2].caption(guard.md(f"Capabilities of {arch}: {caps}.") + not_offered)
    return ["arch", "objective"]


def render_fields(cls: type, keyfn: Callable[[str], str], fields: list[Field],
                  error: tuple[str, str] | None = None, *, labels: Mapping[str, str] = LABELS,
                  ranges: Mapping[str, tuple[Any, ...]] = RANGES, also: Mapping[str, tuple[str, ...]] | None = None,
                  custom: Mapping[str, Callable[[str, str, str], None]] | None = None,
                  per_row: int | None = None) -> list[str]:
    """Draw the widgets of a config dataclass's ``fields`` (key ``keyfn(name)``; the field's type
    hint picks the widget, its docstring is the help, ``labels`` / ``ranges`` by name), one under
    the other or ``per_row`` to a row. ``custom`` draws a field itself: ``draw(key, label, help)``.
    ``error`` (field, message) shows under the field it names, or under the field that ``also``
    lists it for. Returns the names whose errors it shows."""
    hints, docs = typing.get_type_hints(cls), cls.field_docs()  # type: ignore[attr-defined]
    shown: list[str] = []
    row: list[Any] = []
    for i, f in enumerate(fields):
        if per_row and i % per_row == 0:
            row = st.columns(per_row)
        k, hint, doc, label = keyfn(f.name), hints[f.name], docs.get(f.name, ""), labels.get(f.name, f.name)
        with row[i % per_row] if per_row else contextlib.nullcontext():
            if custom and f.name in custom:
                custom[f.name](k, label, doc)
            else:
                _widget(hint, k, label, doc, ranges.get(f.name))
            names = (f.name, *(also or {}).get(f.name, ()))
            shown += names
            if error is not None and error[0] in names:
                tf.show_error(*error)
    return shown


def _widget(hint: Any, k: str, label: str, doc: str, bounds: tuple[Any, ...] | None) -> None:
    """One field's widget: a checkbox for ``bool``, a selectbox for a ``Literal``, a number input
    for ``int`` and ``float`` (within ``bounds``: lowest, highest, step[, format]), else a text box."""
    if hint is bool:
        st.checkbox(label, key=k, persist_state="session", help=doc)
    elif typing.get_origin(hint) is Literal:
        st.selectbox(label, list(typing.get_args(hint)), key=k, persist_state="session", help=doc)
    elif hint in (int, float):
        low, high, step, *fmt = bounds or (None, None, 1 if hint is int else 0.01, "%d" if hint is int else "%g")
        value = st.session_state.get(k)
        if low is not None and not low <= value <= high:  # a preset beyond the usual range: no bounds
            low = high = None
        st.number_input(label, low, high, step=step, format=fmt[0] if fmt else None, key=k,
                        persist_state="session", help=doc)
    else:
        st.text_input(label, key=k, max_chars=300, persist_state="session", help=doc)


def render(prefix: str, arch: str, *, seq_len_key: str, seq_len_doc: str = "",
           error: tuple[str, str] | None = None) -> list[str]:
    """Draw a family's settings, one under the other, then, for a family without a fixed context,
    the training window ``seq_len`` (``seq_len_key``; > 0). ``error`` (field, message) shows under
    its field (one about ``seq_len`` under the family's context setting, e.g. block_size, if it
    has one). Returns the names whose errors it shows."""
    cls = model_config_class(arch)
    window = not fixed_context(arch)  # the form asks for seq_len
    also = {cls.context_setting: ("seq_len",)} if cls.context_setting and not window else {}
    shown = render_fields(cls, lambda name: key(prefix, arch, name), family_fields(arch), error, also=also)
    if window:
        shown.append("seq_len")
        st.number_input("Context length (seq_len)", 1, 8192, step=16, key=seq_len_key, persist_state="session",
                        help=seq_len_doc + " This family has no fixed context: set the window it trains on.")
        if error is not None and error[0] == "seq_len":
            tf.show_error(*error)
    return shown
