"""A tokenizer family's settings as widgets, shared by the Train and Tokenizers pages.

Every family keeps its settings in its own widgets (``<prefix><kind>_<field>``), so switching
family back and forth loses nothing. The fields come from the family's dataclass
(``tokenizer_config_class(kind).user_fields()``): a setting added there shows up here, with its
docstring as help. :func:`settings` turns the widgets' values into the family's settings.

Two rules for visitors from another machine (token-gated access; :func:`remote_visitor`):
:func:`check_visitor` lets them name a published tokenizer only by its Hub name (a folder on the
server is for visitors on this machine), and :func:`check_cost` caps what one click of the
Tokenizers page's **Train** can cost the server (the teaching BPE is plain Python and trains
inside the dashboard's process).
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import Field
from pathlib import Path
from typing import Any

import streamlit as st

import guard
from workbench.config import ConfigError
from workbench.tokenizers import KINDS, TokenizerConfig, tokenizer_config_class

TRAINABLE = tuple(k for k in KINDS if k != "saved")
"""The families a page can train; kept tokenizers ('saved') are picked by name instead."""
LABELS = {
    "vocab_size": "Vocabulary size (vocab_size)",
    "min_freq": "Minimum count (min_freq)",
    "lowercase": "Lowercase the text (lowercase)",
    "unk": "Add [UNK] for unseen characters (unk)",
    "pretrained": "Hub name or local folder (pretrained)",
    "specials": "Special tokens (specials)",
    "sentinels": "T5 sentinels (sentinels)",
}
"""Widget labels by field (a field without one is labelled by its name)."""
OBJECTIVE_FIELDS = ("specials", "sentinels")
"""Settings every family shares; a run's objective decides them on the Train page."""

FOLDER_ERROR = ("folders on the server can be used only from the machine the dashboard runs on; "
                "give a Hub name such as bert-base-uncased")
REMOTE_MAX_VOCAB = 4096
"""Largest teaching-bpe vocabulary a visitor from another machine may train here."""
REMOTE_MAX_CHARS = 5_000_000
"""Largest corpus (characters) a visitor from another machine may train a teaching BPE on here."""
_HUB_PART = r"[A-Za-z0-9_-][A-Za-z0-9_.-]*"
_HUB_NAME = re.compile(rf"{_HUB_PART}(/{_HUB_PART})?")


# --- the fields ----------------------------------------------------------------------------------

def family_fields(kind: str, objective_fields: bool = True) -> list[Field]:
    """A family's settings in the form's order: its own (vocab_size, min_freq, ...) in the
    dataclass's order, then specials and sentinels (left out with ``objective_fields=False``)."""
    fields = [f for f in tokenizer_config_class(kind).user_fields() if f.name != "kind"]
    own = [f for f in fields if f.name not in OBJECTIVE_FIELDS]
    shared = [f for f in fields if f.name in OBJECTIVE_FIELDS] if objective_fields else []
    return own + shared


def default(kind: str, f: Field) -> Any:
    """A setting's starting value: the dataclass's default, except ``specials``, which is 'all'
    (a kept tokenizer then serves every objective) for every family but 'pretrained' (its
    vocabulary is fixed: 'all' fails for any tokenizer without BERT's five special tokens)."""
    if f.name == "specials":
        return "objective" if kind == "pretrained" else "all"
    return f.default


def key(prefix: str, kind: str, name: str) -> str:
    """The session-state key of one family's setting."""
    return f"{prefix}{kind}_{name}"


def init_state(prefix: str) -> None:
    """Every family's settings start at their defaults (once per session)."""
    for kind in TRAINABLE:
        for f in family_fields(kind):
            st.session_state.setdefault(key(prefix, kind, f.name), default(kind, f))


def load(prefix: str, config: TokenizerConfig, objective_fields: bool = True) -> None:
    """Fill a family's widgets from a config (a preset's tokenizer)."""
    for f in family_fields(config.kind, objective_fields):
        st.session_state[key(prefix, config.kind, f.name)] = getattr(config, f.name)


def settings(prefix: str, kind: str, objective_fields: bool = True) -> dict[str, Any]:
    """The widgets' values as the family's settings: integers as int, text stripped."""
    hints = typing.get_type_hints(tokenizer_config_class(kind))
    out = {}
    for f in family_fields(kind, objective_fields):
        value = st.session_state[key(prefix, kind, f.name)]
        out[f.name] = int(value) if hints[f.name] is int else value.strip() if isinstance(value, str) else value
    return out


def show_error(field: str, message: str) -> None:
    """An error a user can fix, next to the field it names (shown literally, paths redacted)."""
    st.error(f"**{guard.md(field)}**: {guard.md(guard.redact(message))}", icon=":material/error:")


def render(prefix: str, kind: str, *, objective_fields: bool = True, per_row: int = 3,
           error: tuple[str, str] | None = None) -> list[Field]:
    """Draw a family's settings, ``per_row`` to a row; ``error`` (field, message) shows under its
    field. Returns the fields drawn."""
    cls = tokenizer_config_class(kind)
    hints, docs = typing.get_type_hints(cls), cls.field_docs()
    fields = family_fields(kind, objective_fields)
    if not fields:
        return fields
    cols = st.columns(min(per_row, len(fields)))
    for i, f in enumerate(fields):
        k, label, doc = key(prefix, kind, f.name), LABELS.get(f.name, f.name), docs.get(f.name, "")
        with cols[i % len(cols)]:
            if f.name == "specials":
                why = (" A published tokenizer's vocabulary is fixed: 'all' works only if it already has all five."
                       if kind == "pretrained" else " 'all' (the default here) lets a kept tokenizer serve every objective.")
                st.selectbox(label, ["all", "objective"], key=k, persist_state="session", help=doc + why)
            elif hints[f.name] is bool:
                st.checkbox(label, key=k, persist_state="session", help=doc)
            elif hints[f.name] is int:
                low, top, step = {"vocab_size": (1, 100_000, 64), "sentinels": (0, 1000, 1)}.get(f.name, (1, 1_000_000, 1))
                st.number_input(label, low, top, step=step, key=k, persist_state="session", help=doc)
            else:
                st.text_input(label, key=k, max_chars=300, persist_state="session", help=doc)
            if error is not None and error[0] == f.name:
                show_error(*error)
    return fields


# --- visitors from another machine ------------------------------------------------------------------

def remote_visitor() -> bool:
    """Whether this visitor is on another machine (let in with the access token)."""
    return not guard.is_local(guard.client_ip())


def is_hub_name(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face Hub id: ``name`` or ``org/name``.

    >>> [is_hub_name(n) for n in ("bert-base-uncased", "openai-community/gpt2", "sentence-transformers/all-MiniLM-L6-v2")]
    [True, True, True]
    >>> [is_hub_name(n) for n in ("/etc", "~/x", "./x", "../x", ".cache", "a/b/c", "a/..b", "a b", "C:\\\\x", "")]
    [False, False, False, False, False, False, False, False, False, False]
    """
    return bool(_HUB_NAME.fullmatch(name)) and ".." not in name


def display_name(pretrained: str) -> str:
    """How a published tokenizer is named on a page: a Hub name as it is, a folder by its last part.

    >>> display_name("org/name"), display_name("/srv/models/minilm/"), display_name("~/gpt2")
    ('org/name', 'minilm', 'gpt2')
    """
    if is_hub_name(pretrained):
        return pretrained
    return Path(pretrained.rstrip("/\\")).name or pretrained


def check_visitor(config: TokenizerConfig) -> None:
    """A ConfigError (field ``pretrained``) when a visitor from another machine names anything but a
    Hub name: a folder on the server is for visitors on this machine only. A Hub-shaped name that
    is also a folder where the server runs is refused too (the loader would read the folder)."""
    name = getattr(config, "pretrained", None)
    if config.kind != "pretrained" or name is None or not remote_visitor():
        return
    if not is_hub_name(name) or os.path.lexists(name):
        raise ConfigError("pretrained", FOLDER_ERROR)


def check_cost(config: TokenizerConfig, corpus_chars: int | None = None) -> None:
    """A ConfigError when a visitor from another machine asks the dashboard's own process for a
    teaching BPE bigger than :data:`REMOTE_MAX_VOCAB` or on a corpus longer than
    :data:`REMOTE_MAX_CHARS` characters (``corpus_chars``, when known). Visitors on this machine:
    no limit."""
    if config.kind != "teaching-bpe" or not remote_visitor():
        return
    size = getattr(config, "vocab_size", 0)
    if size > REMOTE_MAX_VOCAB:
        raise ConfigError("vocab_size", f"the teaching BPE is plain Python and trains inside this dashboard, so visitors "
                                        f"from another machine may ask for at most {REMOTE_MAX_VOCAB} tokens here, got "
                                        f"{size}; use the bpe family for bigger vocabularies")
    if corpus_chars is not None and corpus_chars > REMOTE_MAX_CHARS:
        raise ConfigError("corpus", f"the teaching BPE is plain Python and trains inside this dashboard, so visitors from "
                                    f"another machine may train it on at most {REMOTE_MAX_CHARS:,} characters here; this "
                                    f"corpus has {corpus_chars:,}. Use a shorter text or the bpe family")
