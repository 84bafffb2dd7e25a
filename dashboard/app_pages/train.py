"""Train: pick a preset, adjust the main hyperparameters, start a run (a separate process).

**Check** and **Start training** run the same checks before anything starts: the config's own
validation, the device, the corpus against the context (``workbench.experiment.preflight``:
a too-short upload is reported here, not by a failed run) and this dashboard's launch limits
(``workbench.limits.LaunchLimits``). Each error shows next to the field it names.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import common
import guard
from workbench import launcher
from workbench.config import ConfigError, RunConfig
from workbench.overrides import apply_overrides, field_docs
from workbench.corpora import CorpusError
from workbench.experiment import count_parameters, preflight
from workbench.presets import PRESETS, get_preset, preset_description
from workbench.trainer import resolve_device
from workbench.uploads import MAX_UPLOAD_BYTES, check_upload, save_upload

DOCS = field_docs(get_preset("gpt-nano"))
K = "tf_"  # session-state prefix of the form's widgets

# fields the form edits, in the order they appear; the rest come from the preset
FORM_FIELDS = (
    "n_layer", "n_head", "n_embd", "block_size", "dropout", "pos_encoding",
    "tokenizer", "vocab_size",
    "batch_size", "lr", "max_steps", "eval_interval", "device", "seed",
    "warmup_steps", "eval_chars", "log_interval", "weight_decay", "grad_clip", "val_fraction",
)
BUILTIN = "Shakespeare (built in)"
UPLOAD = "Upload a .txt file"


@dataclass
class FieldError:
    field: str
    message: str


# --- state --------------------------------------------------------------------------------------

def _preset_values(name: str) -> dict:
    cfg = get_preset(name)
    values = {**cfg.to_dict()["model"], **cfg.to_dict()["data"], **cfg.to_dict()["train"]}
    values["vocab_size"] = cfg.data.vocab_size
    return {f: values[f] for f in FORM_FIELDS}


def _load_preset() -> None:
    """Refill the model and training fields from the chosen preset (the preset picker's
    on_change). The corpus choice, the uploaded file and the run name are the user's: kept."""
    for name, value in _preset_values(st.session_state["train_preset"]).items():
        st.session_state[K + name] = value
    st.session_state.setdefault(K + "corpus_source", BUILTIN)


def _set_action(action: str) -> None:
    st.session_state["train_action"] = action


if "train_preset" not in st.session_state:
    st.session_state["train_preset"] = "gpt-nano"
if any(K + f not in st.session_state for f in FORM_FIELDS):  # first visit (or back from another page)
    _load_preset()


@st.cache_data(show_spinner=False)
def _shakespeare_charset_size() -> int:
    from workbench.corpora import load_shakespeare

    return len(set(load_shakespeare().text))


# --- from the form's values to a config -----------------------------------------------------------

def _overrides() -> dict:
    ss = st.session_state
    out = {f: ss[K + f] for f in FORM_FIELDS}
    for f in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "batch_size", "max_steps",
              "eval_interval", "seed", "warmup_steps", "eval_chars", "log_interval"):
        out[f] = int(out[f])
    for f in ("dropout", "lr", "weight_decay", "grad_clip", "val_fraction"):
        out[f] = float(out[f])
    preset = get_preset(ss["train_preset"])
    # keep the preset's decay ratio: the schedule ends at lr x (min_lr / lr) of the preset
    out["min_lr"] = out["lr"] * (preset.train.min_lr / preset.train.lr) if out["lr"] > 0 else 0.0
    out["name"] = (ss.get(K + "run_name") or "").strip()
    return out


def _preflight_upload(cfg: RunConfig, data: bytes) -> None:
    """``preflight`` on an upload without storing it: the bytes go to a private temporary folder
    that is removed at once (preflight reads a file; the store's uploads folder stays untouched
    until a run actually starts)."""
    with tempfile.TemporaryDirectory(prefix="workbench-check-") as tmp:
        path = Path(tmp) / "upload.txt"
        path.write_bytes(data)
        preflight(apply_overrides(cfg, {"corpus": str(path)}))


def _build(save: bool = False, check: bool = False) -> tuple[RunConfig | None, FieldError | None, int | None]:
    """Validate the form: (config, None, vocab size) or (None, error naming the field, None).

    ``check`` adds what Check and Start run before anything starts: the corpus against the
    context (preflight) and the launch limits. ``save`` stores an upload under its content hash
    (Start only: the stored path goes into the run's config)."""
    ss = st.session_state
    overrides = _overrides()
    upload_data: bytes | None = None
    text_for_vocab: str | None = None
    if ss[K + "corpus_source"] == UPLOAD:
        upload = ss.get(K + "upload")
        if upload is None:
            return None, FieldError("corpus", "choose a .txt file to upload, or pick the built-in Shakespeare"), None
        upload_data = upload.getvalue()
        try:
            text_for_vocab = check_upload(upload_data)
        except CorpusError as exc:
            return None, FieldError("corpus", str(exc)), None
    overrides["corpus"] = "shakespeare"  # an upload's stored path replaces it below
    try:
        cfg = apply_overrides(get_preset(ss["train_preset"]), overrides)
    except ConfigError as exc:
        return None, FieldError(exc.field, exc.message), None
    try:
        resolve_device(cfg.train.device)
    except ValueError as exc:
        return None, FieldError("device", str(exc).removeprefix("device: ")), None
    if cfg.data.tokenizer == "char":
        vocab = len(set(text_for_vocab)) if text_for_vocab is not None else _shakespeare_charset_size()
    else:
        vocab = cfg.data.vocab_size
    if check:
        try:
            if upload_data is not None:
                _preflight_upload(cfg, upload_data)
            else:
                preflight(cfg)
            limits = common.launch_limits()
            limits.check(cfg, count_parameters(cfg, vocab), len(launcher.live_runs(common.get_store())))
        except ConfigError as exc:
            return None, FieldError(exc.field, exc.message), None
        except ValueError as exc:  # CorpusError, or a tokenizer that cannot be trained on the text
            return None, FieldError("corpus", str(exc)), None
    if upload_data is not None:
        try:
            path = save_upload(upload_data) if save else None
        except (CorpusError, OSError) as exc:
            return None, FieldError("corpus", str(exc)), None
        if path is not None:
            cfg = apply_overrides(cfg, {"corpus": str(path)})
    return cfg, None, vocab


action = st.session_state.pop("train_action", None)  # set only by the form's buttons
error: FieldError | None = None
if action is not None:
    cfg, error, vocab = _build(save=action == "launch", check=True)
    if action == "launch" and cfg is not None:
        store = common.get_store()
        try:
            # _build(check=True) has just run preflight on this corpus; start_run checks the limits again
            run_id = launcher.start_run(cfg, store, limits=common.launch_limits(), vocab_size=vocab, preflighted=True)
        except ConfigError as exc:
            error = FieldError(exc.field, exc.message)
        except CorpusError as exc:
            error = FieldError("corpus", str(exc))
        except OSError as exc:
            error = FieldError("run", f"could not start the training process: {exc}")
        else:
            common.select_run(run_id)
            st.session_state["flash"] = (
                f"Started run {guard.code(run_id)} ({common.fmt_params(count_parameters(cfg, vocab))} parameters). "
                "Charts appear after its first log interval."
            )
            st.switch_page(common.PAGES["monitor"], query_params={"run": run_id})

# --- page ---------------------------------------------------------------------------------------------

st.title("Train a model")
st.caption(
    "Pick a preset, change what you like, and start a run. The run trains in its own process: "
    "you can switch pages, refresh or close the browser and it keeps going. "
    "Watch it on **Monitor**, look at its attention on **Attention**, and sample from it on **Sample**."
)

top = st.columns([2, 3], vertical_alignment="bottom")
with top[0]:
    st.selectbox(
        "Preset", list(PRESETS), key="train_preset", on_change=_load_preset, persist_state="session",
        help="A named starting config. Changing it refills the model and training fields below; "
             "your corpus choice, upload and run name stay.",
    )
with top[1]:
    st.caption(guard.md(preset_description(st.session_state["train_preset"])))

# summary of the values in the form (as last submitted / as loaded from the preset)
cfg_now, err_now, vocab_now = _build(save=False) if error is None else (None, error, None)
m = st.columns(4)
if cfg_now is not None:
    n_params = count_parameters(cfg_now, vocab_now)
    approx = "≈ " if cfg_now.data.tokenizer == "bpe" else ""
    m[0].metric("Parameters", approx + common.fmt_params(n_params), help=f"{n_params:,} weights (count_parameters)")
    m[1].metric("Vocabulary", approx + str(vocab_now),
                help="char: distinct characters of the corpus; bpe: the target vocabulary size")
    m[2].metric("Tokens per step", f"{cfg_now.train.batch_size * cfg_now.seq_len:,}",
                help="batch_size x block_size tokens are predicted at every optimizer step")
    m[3].metric("Context", f"{cfg_now.seq_len} tokens")
else:
    m[0].metric("Parameters", "—")
    m[1].caption(f"Fix **{guard.md(err_now.field)}** in the form below to see the size of the model.")
st.caption(
    f"{common.cuda_summary()}. The numbers above follow the form after you press **Check** or change the preset."
)
try:
    limits_text = common.launch_limits().describe()
except ConfigError as exc:
    st.error(f"This dashboard's launch limits are misconfigured: {guard.md(exc)}. Nothing can be started until "
             "the server's environment is fixed.", icon=":material/error:")
else:
    st.caption(
        f":material/shield: Launches from this dashboard are limited to {guard.md(limits_text)} "
        "(set by the server's `WORKBENCH_MAX_RUNS`, `WORKBENCH_MAX_PARAMS`, `WORKBENCH_MAX_TOKENS_PER_STEP` "
        "and `WORKBENCH_MAX_STEPS`). The command line and notebooks are not limited.",
    )


def _field_error(name: str) -> None:
    if error is not None and error.field == name:
        st.error(f"**{guard.md(name)}**: {guard.md(guard.redact(error.message))}", icon=":material/error:")


with st.form("train_form", border=True):
    c_model, c_data, c_train = st.columns(3, gap="large")
    with c_model:
        st.subheader("Model", divider="gray")
        st.number_input("Layers (n_layer)", 1, 48, step=1, key=K + "n_layer", persist_state="session", help=DOCS["n_layer"])
        _field_error("n_layer")
        st.number_input("Heads per layer (n_head)", 1, 64, step=1, key=K + "n_head", persist_state="session", help=DOCS["n_head"])
        _field_error("n_head")
        st.number_input("Width (n_embd)", 1, 4096, step=8, key=K + "n_embd", persist_state="session", help=DOCS["n_embd"])
        _field_error("n_embd")
        st.number_input("Context length (block_size)", 1, 8192, step=16, key=K + "block_size", persist_state="session", help=DOCS["block_size"])
        _field_error("block_size")
        _field_error("seq_len")
        st.number_input("Dropout", 0.0, 0.95, step=0.05, format="%.2f", key=K + "dropout", persist_state="session", help=DOCS["dropout"])
        _field_error("dropout")
        st.selectbox("Position encoding", ["learned", "sinusoidal"], key=K + "pos_encoding", persist_state="session", help=DOCS["pos_encoding"])

    with c_data:
        st.subheader("Data", divider="gray")
        st.radio("Corpus", [BUILTIN, UPLOAD], key=K + "corpus_source", persist_state="session", help=DOCS["corpus"])
        st.file_uploader(
            f"Your .txt file (UTF-8, up to {MAX_UPLOAD_BYTES // (1024 * 1024)} MB)", type=["txt"], key=K + "upload",
            max_upload_size=MAX_UPLOAD_BYTES // (1024 * 1024),
            help="Used when the corpus is 'Upload a .txt file'. Stored under `$WORKBENCH_HOME/uploads` by content "
                 "hash when a run starts (Check stores nothing).",
        )
        _field_error("corpus")
        st.selectbox("Tokenizer", ["char", "bpe"], key=K + "tokenizer", persist_state="session", help=DOCS["tokenizer"])
        _field_error("tokenizer")
        st.number_input("BPE vocabulary size", 260, 100_000, step=256, key=K + "vocab_size", persist_state="session", help=DOCS["vocab_size"])
        _field_error("vocab_size")
        st.number_input("Validation fraction", 0.01, 0.49, step=0.01, format="%.2f", key=K + "val_fraction", persist_state="session",
                        help=DOCS["val_fraction"])
        _field_error("val_fraction")
        st.text_input("Run name (optional)", key=K + "run_name", persist_state="session", max_chars=80,
                      help="Shown next to the run id in the run pickers.")

    with c_train:
        st.subheader("Training", divider="gray")
        st.number_input("Batch size", 1, 4096, step=1, key=K + "batch_size", persist_state="session", help=DOCS["batch_size"])
        _field_error("batch_size")
        st.number_input("Learning rate (peak)", 0.0, 1.0, step=1e-4, format="%.5f", key=K + "lr", persist_state="session",
                        help=DOCS["lr"] + " Decays (cosine) to a tenth of it, as in the preset.")
        _field_error("lr")
        _field_error("min_lr")
        st.number_input("Steps (max_steps)", 1, 1_000_000, step=50, key=K + "max_steps", persist_state="session", help=DOCS["max_steps"])
        _field_error("max_steps")
        st.number_input("Evaluate every (eval_interval)", 1, 100_000, step=10, key=K + "eval_interval", persist_state="session",
                        help=DOCS["eval_interval"] + " Attention snapshots are taken at each evaluation.")
        _field_error("eval_interval")
        st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key=K + "device", persist_state="session", help=DOCS["device"])
        _field_error("device")
        st.number_input("Seed", 0, 2**31 - 1, step=1, key=K + "seed", persist_state="session", help=DOCS["seed"])

    with st.expander("More settings"):
        e = st.columns(5)
        e[0].number_input("Warm-up steps", 0, 100_000, step=10, key=K + "warmup_steps", persist_state="session", help=DOCS["warmup_steps"])
        e[1].number_input("Validation text scored (characters, 0 = all)", 0, 10_000_000, step=4096, key=K + "eval_chars",
                          persist_state="session", help=DOCS["eval_chars"])
        e[2].number_input("Log every (log_interval)", 1, 100_000, step=1, key=K + "log_interval", persist_state="session", help=DOCS["log_interval"])
        e[3].number_input("Weight decay", 0.0, 10.0, step=0.01, format="%.3f", key=K + "weight_decay", persist_state="session", help=DOCS["weight_decay"])
        e[4].number_input("Gradient clip", 0.0, 100.0, step=0.1, format="%.2f", key=K + "grad_clip", persist_state="session", help=DOCS["grad_clip"])
        for name in ("warmup_steps", "eval_chars", "log_interval", "weight_decay", "grad_clip"):
            _field_error(name)

    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.form_submit_button("Check", key="check", icon=":material/fact_check:", on_click=_set_action, args=("check",),
                           help="Validate the settings and update the parameter count, without starting anything.")
    bar.form_submit_button("Start training", key="launch", type="primary", icon=":material/play_arrow:",
                           on_click=_set_action, args=("launch",))
    shown_inline = {"n_layer", "n_head", "n_embd", "block_size", "seq_len", "dropout", "corpus", "tokenizer", "vocab_size",
                    "val_fraction", "batch_size", "lr", "min_lr", "max_steps", "eval_interval", "device", "warmup_steps",
                    "eval_chars", "log_interval", "weight_decay", "grad_clip"}
    if error is not None and error.field not in shown_inline:
        st.error(f"**{guard.md(error.field)}**: {guard.md(guard.redact(error.message))}", icon=":material/error:")
    elif error is not None:
        bar.markdown(f":red[:material/error: Nothing was started: fix **{guard.md(error.field)}** above.]")
    elif action == "check":
        bar.markdown(":green[:material/check_circle: These settings are valid.]")
