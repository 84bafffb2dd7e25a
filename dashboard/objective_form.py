"""An objective's settings as widgets, for the Train page (``model_form`` does the same for model
families, with the same generic :func:`model_form.render_fields`).

The fields come from the objective's config dataclass (``objective_config_class(name).user_fields()``,
``name`` left out: the Objective picker is it). Every objective keeps its settings in its own
widgets (``<prefix>objective_<name>_<field>``), so switching preset or objective back and forth
loses nothing; :func:`overrides` turns them into ``objective.<field>`` overrides.

The seq2seq ``task`` is not a text box (a path typed there would make the server read any file):
it is a choice of the built-in tasks or "your TSV file (upload)", with a file uploader. An
uploaded file is checked (size, UTF-8, ``read_tsv``: a ConfigError naming ``task`` with the line
to fix) on a private temporary copy, which the config names while the form is checked; only when
a run starts is it stored under ``$WORKBENCH_HOME/uploads/<sha256>.tsv`` (:func:`stored`). The
visitor sees file names, never the server's folders (:func:`hide_paths`).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import re
import shutil
import tempfile
from dataclasses import Field
from pathlib import Path
from typing import Any

import streamlit as st

import guard
import model_form as mf
from workbench.config import ConfigError, ObjectiveConfig, objective_config_class
from workbench.objectives import OBJECTIVES
from workbench.objectives.seq2seq_tasks import TASKS, Seq2SeqTaskConfig, read_tsv
from workbench.paths import workbench_home
from workbench.uploads import MAX_UPLOAD_BYTES, save_upload

LABELS = {
    "mask_rate": "Mask rate (mask_rate)",
    "mask_token_frac": "Replaced by [MASK] (mask_token_frac)",
    "random_token_frac": "Replaced by a random token (random_token_frac)",
    "keep_frac": "Left unchanged (keep_frac)",
    "whole_word": "Mask whole words (whole_word)",
    "random_next_prob": "Random next segment (random_next_prob)",
    "noise_density": "Noise density (noise_density)",
    "mean_noise_span_length": "Mean span length (mean_noise_span_length)",
    "k": "Predict the last 1/k of the order (k)",
    "selection": "Selection",
    "plm_probability": "Span fraction (plm_probability)",
    "max_span_length": "Longest span (max_span_length)",
    "task": "Task",
    "bucketing": "Bucket pairs by length (bucketing)",
    "max_words": "Words per line, at most (max_words)",
    "score_examples": "Pairs decoded per evaluation (score_examples)",
}
"""Widget labels by field (a field without one is labelled by its name)."""
_FRACTION = (0.0, 1.0, 0.05, "%.2f")  # the config says which ends are allowed
RANGES: dict[str, tuple[Any, ...]] = {
    "mask_rate": (0.0, 1.0, 0.01, "%.2f"),
    "mask_token_frac": _FRACTION,
    "random_token_frac": _FRACTION,
    "keep_frac": _FRACTION,
    "random_next_prob": _FRACTION,
    "noise_density": (0.0, 1.0, 0.01, "%.2f"),
    "mean_noise_span_length": (1.0, 64.0, 0.5, "%.1f"),
    "k": (2, 64, 1),
    "plm_probability": (0.0, 1.0, 0.01, "%.3f"),
    "max_span_length": (1, 512, 1),
    "max_words": (1, 1000, 1),
    "score_examples": (0, 100_000, 16),
}
"""(lowest, highest, step[, format]) of the number fields by name; the others are unbounded."""
UPLOAD = "your TSV file (upload)"
"""The task choice that trains on the visitor's own file of pairs."""
TSV = "tsv:"
CHECK_COPIES = 16
"""Checked TSV files kept in the temporary folder (the oldest go first)."""
TASK_HELP = ("The pairs to learn: a built-in rewrite of the corpus's lines (reverse-words, pig-latin), or your own "
             "file of source<TAB>target lines (the corpus is then not read).")


# --- the fields ----------------------------------------------------------------------------------

def objective_fields(name: str) -> list[Field]:
    """An objective's settings in its dataclass's order (``name`` left out: the picker is it)."""
    return [f for f in objective_config_class(name).user_fields() if f.name != "name"]


def key(prefix: str, name: str, field: str) -> str:
    """The session-state key of one objective's setting."""
    return f"{prefix}objective_{name}_{field}"


def _keyfn(prefix: str, name: str):
    return lambda field: key(prefix, name, field)


def _has_task(name: str | None) -> bool:
    """Whether the objective's ``task`` is the seq2seq task (a choice and an upload, not a text box)."""
    return name in OBJECTIVES and issubclass(objective_config_class(name), Seq2SeqTaskConfig)


def init_state(prefix: str) -> None:
    """Every objective's settings start at their defaults (once per session)."""
    for name in OBJECTIVES:
        mf.init_fields(objective_config_class(name), _keyfn(prefix, name), objective_fields(name))


def load(prefix: str, config: ObjectiveConfig) -> None:
    """Fill an objective's widgets from its config (a preset's): a ``tsv:PATH`` task shows as the
    upload choice, using that file until one is uploaded."""
    mf.load_fields(config, _keyfn(prefix, config.name), objective_fields(config.name))
    if _has_task(config.name):
        k = key(prefix, config.name, "task")
        task = st.session_state[k]
        st.session_state[k + "_path"] = task[len(TSV):] if task.startswith(TSV) else None
        if task.startswith(TSV):
            st.session_state[k] = UPLOAD


def overrides(prefix: str, name: str | None) -> dict[str, Any]:
    """The objective's widget values as ``objective.<field>`` overrides, each of its field's type;
    an uploaded task file as ``tsv:`` its checked temporary copy (a ConfigError naming ``task``
    when there is none, or it is not a valid TSV)."""
    if name not in OBJECTIVES:
        return {}
    values = mf.field_values(objective_config_class(name), _keyfn(prefix, name), objective_fields(name))
    if _has_task(name) and values["task"] == UPLOAD:
        values["task"] = TSV + str(_task_file(prefix, name))
    return {f"objective.{field}": value for field, value in values.items()}


def stored(prefix: str, name: str | None) -> dict[str, Any]:
    """When a run starts: the uploaded task file stored under ``$WORKBENCH_HOME/uploads`` by
    content hash, as a ``objective.task`` override (none for another objective or task)."""
    if not _has_task(name) or st.session_state.get(key(prefix, name, "task")) != UPLOAD:
        return {}
    file = st.session_state.get(key(prefix, name, "task") + "_file")
    return {"objective.task": TSV + str(save_upload(file[1], suffix=".tsv"))} if file is not None else {}


def hide_paths(message: str, prefix: str) -> str:
    """``message`` with the folders of the task files (a preset's, a checked copy, a stored
    upload) left out, ``.../name``: the visitor sees file names only."""
    for name in OBJECTIVES:
        preset = st.session_state.get(key(prefix, name, "task") + "_path")
        if preset:
            message = message.replace(preset, ".../" + Path(preset).name)
    message = message.replace(str(_check_dir()) + "/", ".../")
    return re.sub(re.escape(str(workbench_home() / "uploads")) + r"/(?=[0-9a-f]{16}\.tsv)", ".../", message)


# --- an uploaded task file -----------------------------------------------------------------------

@functools.cache
def _check_dir() -> Path:
    """This server's private folder of checked TSV copies (the config names one while the form is
    checked; the store's uploads folder is written only when a run starts)."""
    folder = tempfile.mkdtemp(prefix="workbench-tsv-check-")
    atexit.register(shutil.rmtree, folder, True)  # removed when the server stops
    return Path(folder)


def check_tsv(file_name: str, data: bytes) -> Path:
    """A checked temporary copy of an uploaded TSV: its size, UTF-8 and every line (``read_tsv``),
    or a ConfigError naming ``task`` that names the file by ``file_name`` and the line to fix."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise ConfigError("task", f"{file_name} is {len(data) / 1e6:.1f} MB; the limit is "
                                  f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB: upload a smaller file")
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError("task", f"{file_name} line {line} is not UTF-8 (byte {exc.start}): re-save it as UTF-8 "
                                  f"(e.g. iconv -f latin1 -t utf-8)") from None
    folder = _check_dir()
    path = folder / f"{hashlib.sha256(data).hexdigest()[:16]}.tsv"
    if path.exists():  # checked before: only valid files are kept
        path.touch()
        return path
    path.write_bytes(data)
    try:
        read_tsv(path)
    except ConfigError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError("task", exc.message.replace(str(path), file_name)) from None
    for old in sorted(folder.glob("*.tsv"), key=lambda p: p.stat().st_mtime)[:-CHECK_COPIES]:
        old.unlink(missing_ok=True)
    return path


def _task_file(prefix: str, name: str) -> Path:
    """The task's file: the upload's checked copy, else the preset's file, else a ConfigError."""
    k = key(prefix, name, "task")
    file = st.session_state.get(k + "_file")
    if file is not None:
        return check_tsv(*file)
    if st.session_state.get(k + "_path"):
        return Path(st.session_state[k + "_path"])
    raise ConfigError("task", "choose a .tsv file of source<TAB>target lines to upload, or pick a built-in task")


def _keep_upload(k: str) -> None:
    """The uploader's file (name, bytes) kept in the session: the uploader forgets it when the
    objective is switched away; removing the file (its ×) forgets it here too."""
    f = st.session_state.get(k + "_upload")
    st.session_state[k + "_file"] = (f.name, f.getvalue()) if f is not None else None
    if f is not None:
        st.session_state[k + "_path"] = None


def _task_widget(k: str, label: str, doc: str) -> None:
    """The task's choice and, for an upload, the file uploader with what is in use."""
    st.selectbox(label, [*TASKS, UPLOAD], key=k, persist_state="session", help=TASK_HELP)
    if st.session_state.get(k) != UPLOAD:
        return
    st.file_uploader(f"Your .tsv file (UTF-8, up to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)", type=["tsv", "txt"],
                     key=k + "_upload", on_change=_keep_upload, args=(k,),
                     max_upload_size=MAX_UPLOAD_BYTES // (1024 * 1024),
                     help="One 'source<TAB>target' pair per line. Checked at once; stored under "
                          "`$WORKBENCH_HOME/uploads` by content hash when a run starts (Check stores nothing).")
    if st.session_state.get(k + "_upload") is not None:
        _keep_upload(k)
    file, preset = st.session_state.get(k + "_file"), st.session_state.get(k + "_path")
    if file is not None:
        st.caption(f"Pairs from {guard.code(file[0])} ({len(file[1]):,} bytes).")
    elif preset:
        st.caption(f"Pairs from the preset's file {guard.code('tsv:.../' + Path(preset).name)}; upload one to replace it.")


# --- drawing -------------------------------------------------------------------------------------

def render(prefix: str, name: str | None, *, error: tuple[str, str] | None = None, per_row: int = 4) -> list[str]:
    """Draw the objective's settings (nothing for one without any), ``per_row`` to a row;
    ``error`` (field, message) shows under its field. Returns the names whose errors it shows."""
    if name not in OBJECTIVES or not objective_fields(name):
        return []
    custom = {"task": _task_widget} if _has_task(name) else None
    with st.container(border=True):
        st.caption(f"**Settings of {guard.md(name)}**")
        return mf.render_fields(objective_config_class(name), _keyfn(prefix, name), objective_fields(name), error,
                                labels=LABELS, ranges=RANGES, custom=custom, per_row=per_row)
