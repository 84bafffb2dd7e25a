"""Train page, Fine-tune mode: a task head on a trunk (``workbench.finetune``), started as a run
like any other (``launcher.start_run``: its own process, the same store, Monitor watches it).

The fields: the task (genre, names, qa, or the visitor's CSV / JSONL file, uploaded: size-capped,
checked on a private temporary copy, stored under ``$WORKBENCH_HOME/uploads/<sha256>.csv`` or
``.jsonl`` only when a run starts; never a path typed here), where the trunk comes from (a finished
GPT or BERT run of this store, an offline Hugging Face model, or a new small GPT / BERT), reinit,
the label budget, freezing, the learning rates, the longest input, steps, batch, evaluation
interval and pooling. **Check** and **Start fine-tuning** run ``preflight_finetune`` (the task file
read, the init run resolved, ``max_len`` within the trunk's positions and ``freeze`` within its
blocks: an HF model's read from its config) before anything starts; each error shows next to the
field its ``ConfigError`` names. Widgets are ``ft_<field>``.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import streamlit as st

import common
import guard
import tokenizer_form as tf
from workbench import launcher
from workbench.config import ConfigError, RunConfig
from workbench.finetune.run import HEAD_FAMILIES, preflight_finetune
from workbench.finetune.settings import POOLINGS, FinetuneConfig
from workbench.io import atomic_write
from workbench.paths import workbench_home
from workbench.runstore import RunInfo, RunStore
from workbench.trainer import resolve_device
from workbench.uploads import MAX_UPLOAD_BYTES

K = "ft_"
MODE_KEY = "train_mode"
PRETRAIN, FINETUNE = "Pretrain a language model", "Fine-tune on a task"
UPLOAD = "upload"
TASKS = {
    "genre": "genre: a passage → comedy / history / tragedy (classification)",
    "names": "names: tag the character names in a line (BIO tagging)",
    "qa": "qa: who says this line? (extractive question answering)",
    UPLOAD: "your CSV or JSONL file (upload)",
}
SOURCES = {"run": "A run in this store", "hf": "A pretrained model (offline)", "scratch": "A new small model (random)"}
BUDGETS = [32, 64, 128, 256, 1024, "all"]
DOCS = FinetuneConfig.field_docs()
DEFAULTS = {
    "task": "genre", "init_source": "run", "arch": "bert", "n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 128,
    "reinit": False, "labels": 256, "freeze": 0, "freeze_all": False, "lr": 5e-4, "head_lr": 0.0, "max_len": 128,
    "max_steps": 300, "batch_size": 16, "eval_interval": 50, "pooling": "auto", "seed": 1337, "device": "auto",
    "run_name": "",
}
BUILT_IN_NOTE = ("Built from the built-in plays and split by play (test: Twelfth Night, The Tempest, Henry V, "
                 "Richard III, Macbeth, Julius Caesar; validation: As You Like It, Henry IV part 1, Othello), so no "
                 "play's text leaks from training into the scores.")


@dataclass
class FieldError:
    field: str
    message: str


def _doc(name: str) -> str:
    return " ".join(DOCS.get(name, "").split())


def mode_switch() -> str:
    """The Pretrain / Fine-tune switch at the top of the Train page; returns the mode."""
    st.session_state.setdefault(MODE_KEY, PRETRAIN)
    st.radio("What to train", [PRETRAIN, FINETUNE], key=MODE_KEY, horizontal=True, persist_state="session",
             label_visibility="collapsed",
             help="Pretrain: a language model on a corpus. Fine-tune: a task head (classify, tag, answer) on a "
                  "trunk: a run you pretrained, a pretrained model, or a new one.")
    return st.session_state[MODE_KEY]


# --- what can be a trunk --------------------------------------------------------------------------

def trunk_runs(store: RunStore) -> list[RunInfo]:
    """The store's runs a head can sit on: GPT or BERT pretraining runs with a checkpoint."""
    out = []
    for r in store.list_runs():
        cfg = r.config or {}
        if cfg.get("finetune") or (cfg.get("model") or {}).get("arch") not in HEAD_FAMILIES:
            continue
        if r.status in ("queued", "running") or not (store.run_dir(r.id) / "ckpt").is_dir():
            continue
        out.append(r)
    return out


@st.cache_data(show_spinner=False)
def hf_models() -> list[str]:
    """Offline Hugging Face models a head can load by name (``hf:NAME``; not the GGUF ones)."""
    from workbench.hf_attention import offline_models

    return [label for label, (_, gguf) in offline_models().items() if gguf is None]


# --- state ----------------------------------------------------------------------------------------

def _init_state() -> None:
    for name, value in DEFAULTS.items():
        st.session_state.setdefault(K + name, value)


def _set_action(action: str) -> None:
    st.session_state[K + "action"] = action


def _keep_upload() -> None:
    """The uploader's file (name, bytes) kept in the session (the uploader forgets it when the
    task choice hides it)."""
    f = st.session_state.get(K + "upload")
    st.session_state[K + "upload_file"] = (f.name, f.getvalue()) if f is not None else None


def _fit_max_len(runs: list[RunInfo]) -> None:
    """A run just picked as the trunk: max_len lowered to its positions when it was longer."""
    ss = st.session_state
    picked = next((r for r in runs if r.id == ss.get(K + "init_run")), None)
    positions = int(((picked.config or {}).get("model") or {}).get("block_size") or 0) if picked is not None else 0
    if positions and int(ss.get(K + "max_len", 0)) > positions:
        ss[K + "max_len"] = positions


def _upload_format(name: str) -> str:
    return "jsonl" if Path(name).suffix.lower() in (".jsonl", ".json") else "csv"


# --- from the fields to a config ------------------------------------------------------------------

def _task_spec(path: Path | None) -> str:
    ss = st.session_state
    if ss[K + "task"] != UPLOAD:
        return ss[K + "task"]
    file = ss.get(K + "upload_file")
    if file is None or path is None:
        raise ConfigError("task", "choose a .csv or .jsonl file to upload (columns text,label or tokens,tags), "
                                  "or pick a built-in task")
    return f"{_upload_format(file[0])}:{path}"


def _init_spec() -> str:
    ss = st.session_state
    source = ss[K + "init_source"]
    if source == "scratch":
        return "scratch"
    if source == "hf":
        name = ss.get(K + "init_hf")
        if not name:
            raise ConfigError("init", "no offline pretrained model is installed; pick a run or a new model")
        return "hf:" + name
    run_id = ss.get(K + "init_run")
    if not run_id:
        raise ConfigError("init", "this store has no finished GPT or BERT run to start from: pretrain one first "
                                  "(Pretrain mode), or pick a pretrained model or a new model")
    return str(run_id)


def _config(task_path: Path | None) -> RunConfig:
    """The form's values as a RunConfig (not yet resolved against the store); ConfigError naming a field."""
    ss = st.session_state
    source = ss[K + "init_source"]
    steps, every, lr = int(ss[K + "max_steps"]), int(ss[K + "eval_interval"]), float(ss[K + "lr"])
    finetune = {
        "task": _task_spec(task_path), "init": _init_spec(), "reinit": bool(ss[K + "reinit"]) and source != "scratch",
        "labels": 0 if ss[K + "labels"] == "all" else int(ss[K + "labels"]),
        "freeze": -1 if ss[K + "freeze_all"] else int(ss[K + "freeze"]), "head_lr": float(ss[K + "head_lr"]),
        "pooling": ss[K + "pooling"], "max_len": int(ss[K + "max_len"]),
    }
    train = {"max_steps": steps, "batch_size": int(ss[K + "batch_size"]), "eval_interval": every, "lr": lr,
             "min_lr": lr / 10, "warmup_steps": min(100, steps // 10), "log_interval": max(1, min(10, every)),
             "seed": int(ss[K + "seed"]), "device": ss[K + "device"]}
    d: dict = {"train": train, "finetune": finetune, "name": (ss.get(K + "run_name") or "").strip()}
    if source == "scratch":
        arch = ss[K + "arch"]
        d["model"] = {"arch": arch, **{f: int(ss[K + f]) for f in ("n_layer", "n_head", "n_embd", "block_size")}}
        d["objective"] = {"name": "causal_lm" if arch == "gpt" else "mlm"}
        d["tokenizer"] = {"kind": "char"}
    if lr <= 0:
        raise ConfigError("lr", f"must be > 0, got {lr}")
    try:
        resolve_device(ss[K + "device"])
    except ValueError as exc:
        raise ConfigError("device", str(exc).removeprefix("device: ")) from None
    return RunConfig.from_dict(d)


def _vocab(cfg: RunConfig) -> int:
    """The vocabulary the launch limits size the model with (a scratch char vocabulary is built
    from the task's text in the run: a few hundred at most)."""
    return int(getattr(cfg.model, "vocab_size", 0) or 256)


def _stored_task_file(data: bytes, fmt: str) -> Path:
    """The upload stored under ``$WORKBENCH_HOME/uploads`` by content hash (never the visitor's
    file name: nothing can escape the folder or overwrite another upload)."""
    path = workbench_home() / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}.{fmt}"
    if not path.exists():
        atomic_write(path, data)
    return path


def build(store: RunStore, save: bool) -> tuple[RunConfig | None, FieldError | None]:
    """Check the form (``save``: store the upload, for a launch): (resolved config, None) or (None, error)."""
    ss = st.session_state
    file = ss.get(K + "upload_file") if ss[K + "task"] == UPLOAD else None
    if file is not None and len(file[1]) > MAX_UPLOAD_BYTES:
        return None, FieldError("task", f"{file[0]} is {len(file[1]) / 1e6:.1f} MB; the limit is "
                                        f"{MAX_UPLOAD_BYTES / 1e6:.0f} MB: upload a smaller file")
    with tempfile.TemporaryDirectory(prefix="workbench-ft-check-") as tmp:
        tmp_path = Path(tmp) / f"upload.{_upload_format(file[0])}" if file is not None else None
        try:
            if tmp_path is not None:
                tmp_path.write_bytes(file[1])
            # the task read, the init run resolved, max_len and freeze checked against the trunk's shape
            cfg = preflight_finetune(_config(tmp_path), store)
            common.launch_limits().check(cfg, 0, len(launcher.live_runs(store)))
            if save and file is not None:
                fmt = _upload_format(file[0])
                cfg = replace(cfg, finetune=replace(cfg.finetune, task=f"{fmt}:{_stored_task_file(file[1], fmt)}"))
        except (ValueError, OSError) as exc:  # ConfigError; an upload that cannot be written
            field = exc.field if isinstance(exc, ConfigError) else "task"
            message = exc.message if isinstance(exc, ConfigError) else str(exc)
            if tmp_path is not None:  # the visitor's file name, never the server's folders
                message = message.replace(str(tmp_path), file[0]).replace(tmp_path.name, file[0])
            return None, FieldError(field, message)
    return cfg, None


def describe(cfg: RunConfig) -> str:
    """``FinetuneConfig.describe`` with an uploaded task file named by the visitor's file name."""
    fc = cfg.finetune
    assert fc is not None
    file = st.session_state.get(K + "upload_file")
    if fc.task.partition(":")[0] in ("csv", "jsonl") and file is not None:
        fc = replace(fc, task=f"{fc.task.partition(':')[0]}:{file[0]}")
    return guard.redact(fc.describe())


def _launch(store: RunStore) -> FieldError | None:
    """Start the run (and go to Monitor), or the error that stopped it."""
    cfg, error = build(store, save=True)
    if error is not None:
        return error
    assert cfg is not None
    try:
        run_id = launcher.start_run(cfg, store, limits=common.launch_limits(), vocab_size=_vocab(cfg), preflighted=True)
    except OSError as exc:
        return FieldError("run", f"could not start the training process: {exc}")
    except ValueError as exc:
        return FieldError(exc.field if isinstance(exc, ConfigError) else "run",
                          exc.message if isinstance(exc, ConfigError) else str(exc))
    common.select_run(run_id)
    st.session_state["flash"] = (f"Started fine-tuning run {guard.code(run_id)} "
                                 f"({guard.md(describe(cfg))}). "
                                 "Charts appear after its first log interval.")
    st.switch_page(common.PAGES["monitor"], query_params={"run": run_id})
    return None


# --- drawing --------------------------------------------------------------------------------------

class _Errors:
    """The error of the last Check / Start, shown next to the field it names."""

    def __init__(self, error: FieldError | None) -> None:
        self.error, self.shown = error, False

    def at(self, *fields: str) -> None:
        if self.error is not None and self.error.field in fields:
            tf.show_error(self.error.field, self.error.message)
            self.shown = True


def _task_box(errors: _Errors) -> None:
    ss = st.session_state
    st.subheader("Task", divider="gray")
    st.selectbox("Task", list(TASKS), key=K + "task", format_func=TASKS.__getitem__, persist_state="session",
                 help=_doc("task"))
    if ss[K + "task"] == UPLOAD:
        st.file_uploader(f"Your .csv or .jsonl file (UTF-8, up to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)",
                         type=["csv", "jsonl", "json"], key=K + "upload", on_change=_keep_upload,
                         max_upload_size=MAX_UPLOAD_BYTES // (1024 * 1024),
                         help="Classification: columns text,label. Tagging: tokens,tags (space-separated; tags in "
                              "BIO form: O, B-X, I-X). An optional split column (train/val/test) keeps your split; "
                              "without it the rows are split 80/10/10. Checked when you press Check or Start; stored "
                              "under `$WORKBENCH_HOME/uploads` by content hash when a run starts.")
        if ss.get(K + "upload") is not None:
            _keep_upload()
        file = ss.get(K + "upload_file")
        if file is not None:
            st.caption(f"Examples from {guard.code(file[0])} ({len(file[1]):,} bytes).")
    else:
        st.caption(BUILT_IN_NOTE)
    errors.at("task")
    st.selectbox("Label budget (training examples)", BUDGETS, key=K + "labels", persist_state="session",
                 format_func=lambda b: "all" if b == "all" else f"{b:,}", help=_doc("labels"))
    errors.at("labels", "label_seed")


def _init_box(store: RunStore, errors: _Errors) -> RunConfig | None:
    """The trunk's source and settings; returns the picked run's config (for captions), if any."""
    ss = st.session_state
    st.subheader("Start from", divider="gray")
    st.radio("Trunk", list(SOURCES), key=K + "init_source", format_func=SOURCES.__getitem__, persist_state="session",
             help=_doc("init"))
    source, base = ss[K + "init_source"], None
    if source == "run":
        runs = trunk_runs(store)
        labels = {r.id: r.label for r in runs}
        if runs:
            if ss.get(K + "init_run") is None:
                ss[K + "init_run"] = runs[0].id
                _fit_max_len(runs)
            options = list(labels) + ([ss[K + "init_run"]] if ss.get(K + "init_run") not in labels else [])
            st.selectbox("Run", options, key=K + "init_run", format_func=lambda i: labels.get(i, f"{i} (gone)"),
                         on_change=_fit_max_len, args=(runs,),
                         help="A GPT or BERT pretraining run with a checkpoint: its best checkpoint and its tokenizer "
                              "are the trunk.")
            picked = next((r for r in runs if r.id == ss.get(K + "init_run")), None)
            if picked is not None:
                try:
                    base = RunConfig.from_dict(picked.config)
                except ValueError:
                    base = None
                if base is not None:
                    st.caption(f"{guard.md(base.model.describe())} · {guard.md(base.objective.name)} · "
                               f"{base.model.max_context} positions.")
        else:
            ss[K + "init_run"] = None
            st.info("No finished GPT or BERT run in this store yet: pretrain one first (switch to Pretrain above), "
                    "or start from a pretrained or a new model.", icon=":material/info:")
    elif source == "hf":
        names = hf_models()
        if names:
            if ss.get(K + "init_hf") not in names:
                ss[K + "init_hf"] = names[0]
            st.selectbox("Pretrained model", names, key=K + "init_hf",
                         help="Shipped in an installed Python package, loaded offline (all-MiniLM-L6-v2: a 6-layer "
                              "BERT sentence encoder, 22 M parameters).")
        else:
            st.info("No offline pretrained model is installed.", icon=":material/info:")
    else:
        st.radio("Model family", list(HEAD_FAMILIES), key=K + "arch", horizontal=True, persist_state="session",
                 help="gpt: causal (each token sees the ones before it; pooling takes the last token). bert: "
                      "bidirectional (pooling takes [CLS]). A character tokenizer is trained on the task's text.")
        c = st.columns(4)
        for col, (label, name, low, high, step) in zip(c, (("Layers", "n_layer", 1, 24, 1), ("Heads", "n_head", 1, 16, 1),
                                                          ("Width (n_embd)", "n_embd", 8, 1024, 8),
                                                          ("Positions (block_size)", "block_size", 8, 1024, 8))):
            col.number_input(label, low, high, step=step, key=K + name, persist_state="session")
        errors.at("arch", "n_layer", "n_head", "n_embd", "block_size", "vocab_size")
    errors.at("init")
    st.checkbox("Reinitialise the trunk (same architecture, random weights)", key=K + "reinit",
                persist_state="session", disabled=source == "scratch", help=_doc("reinit"))
    errors.at("reinit")
    return base


def _training_box(base: RunConfig | None, errors: _Errors) -> None:
    ss = st.session_state
    st.subheader("Training", divider="gray")
    c = st.columns(2)
    with c[0]:
        st.number_input("Learning rate (trunk)", 0.0, 1.0, step=1e-4, format="%.5f", key=K + "lr",
                        persist_state="session", help="Peak learning rate of the trunk (cosine decay to a tenth).")
        errors.at("lr", "min_lr")
    with c[1]:
        st.number_input("Head learning rate (0 = same)", 0.0, 1.0, step=1e-4, format="%.5f", key=K + "head_lr",
                        persist_state="session", help=_doc("head_lr"))
        errors.at("head_lr")
    c = st.columns(2)
    with c[0]:
        st.number_input("Freeze the first k blocks", 0, 64, step=1, key=K + "freeze", persist_state="session",
                        disabled=bool(ss[K + "freeze_all"]), help=_doc("freeze"))
        if base is not None:
            st.caption(f"The picked run has {getattr(base.model, 'n_layer', '?')} blocks and "
                       f"{base.model.max_context} positions (max_len at most {base.model.max_context}).")
    with c[1]:
        st.checkbox("Whole trunk (head only)", key=K + "freeze_all", persist_state="session",
                    help="Freeze every layer of the trunk: only the new head learns (a linear probe of what the "
                         "trunk already knows).")
    errors.at("freeze")
    c = st.columns(2)
    with c[0]:
        st.number_input("Longest input (max_len, tokens)", 8, 4096, step=8, key=K + "max_len", persist_state="session",
                        help=_doc("max_len"))
        errors.at("max_len")
    with c[1]:
        st.selectbox("Pooling", list(POOLINGS), key=K + "pooling", persist_state="session", help=_doc("pooling"))
        errors.at("pooling")
    c = st.columns(3)
    for col, (label, name, low, high, step) in zip(c, (("Steps (max_steps)", "max_steps", 1, 1_000_000, 50),
                                                      ("Batch size", "batch_size", 1, 4096, 1),
                                                      ("Evaluate every", "eval_interval", 1, 100_000, 10))):
        with col:
            st.number_input(label, low, high, step=step, key=K + name, persist_state="session",
                            help="The validation metrics and the confusion matrix are taken at each evaluation."
                            if name == "eval_interval" else None)
            errors.at(name)
    c = st.columns(3)
    with c[0]:
        st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key=K + "device", persist_state="session")
        errors.at("device")
    with c[1]:
        st.number_input("Seed", 0, 2**31 - 1, step=1, key=K + "seed", persist_state="session")
        errors.at("seed")
    with c[2]:
        st.text_input("Run name (optional)", key=K + "run_name", persist_state="session", max_chars=80)


def page() -> None:
    """The Fine-tune mode of the Train page (the caller stops the script after it)."""
    _init_state()
    store = common.get_store()
    action = st.session_state.pop(K + "action", None)
    error: FieldError | None = None
    checked: RunConfig | None = None
    if action == "launch":
        error = _launch(store)
    elif action == "check":
        checked, error = build(store, save=False)

    st.title("Train a model")
    st.caption("Fine-tuning puts a small task head on a trunk and trains both (or only the head) on labelled "
               "examples. Watch the task's scores and its confusion matrix on **Monitor**, and try the model on your "
               "own text on **Sample / Translate**.")
    mode_switch()
    errors = _Errors(error)
    left, right = st.columns(2, gap="large")
    with left:
        _task_box(errors)
        base = _init_box(store, errors)
    with right:
        _training_box(base, errors)
    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.button("Check", key=K + "check", icon=":material/fact_check:", on_click=_set_action, args=("check",),
               help="Read the task, resolve the trunk and check the settings, without starting anything.")
    bar.button("Start fine-tuning", key=K + "launch", type="primary", icon=":material/play_arrow:",
               on_click=_set_action, args=("launch",))
    if error is not None and not errors.shown:
        tf.show_error(error.field, error.message)
    elif error is not None:
        bar.markdown(f":red[:material/error: Nothing was started: fix **{guard.md(error.field)}** above.]")
    elif checked is not None:
        bar.markdown(f":green[:material/check_circle: These settings are valid: "
                     f"{guard.md(describe(checked))}.]")
    try:
        limits_text = common.launch_limits().describe()
    except ConfigError:
        limits_text = None
    if limits_text:
        st.caption(f":material/shield: Launches from this dashboard are limited to {guard.md(limits_text)}.")
