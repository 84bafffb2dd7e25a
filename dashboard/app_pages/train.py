"""Train: pick a preset, adjust the main hyperparameters, start a run (a separate process).

**Check** and **Start training** run the same checks before anything starts: the config's own
validation, the device, the corpus against the context (``workbench.experiment.preflight``:
a too-short upload is reported here, not by a failed run), a kept or published tokenizer that
cannot be loaded, and this dashboard's launch limits (``workbench.limits.LaunchLimits``). Each
error shows next to the field it names.

The tokenizer and the model family sit above the form, outside it: picking a family shows that
family's own settings at once (a form would only redraw on submit). Every family keeps its settings
in its own widgets (``tf_tok_<kind>_<field>``, ``tf_model_<arch>_<field>``), so switching back and
forth loses nothing; a kept tokenizer (Tokenizers page) becomes ``{"tokenizer": "saved",
"saved_name": NAME}``. The widgets are ``tokenizer_form``'s (with the rules for visitors from
another machine, shared with the Tokenizers page) and ``model_form``'s (with the Objective picker,
which offers only the objectives the model family can serve). Under the pickers, the objective's
own settings (``objective_form``: ``tf_objective_<name>_<field>``; the seq2seq task is a choice of
the built-in tasks or an uploaded TSV file, stored like a corpus upload only when a run starts).

Under the form, **What a batch looks like** shows one training batch of the current settings
(``workbench.batch_view``): each position's input and target, and the attention mask.

A switch under the title picks the mode: **Pretrain** (this page's form) or **Fine-tune** (a task
head on a trunk: ``finetune_form``, which draws the whole page in that mode).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import batch_panel
import common
import finetune_form
import guard
import model_form as mf
import objective_form as of
import tokenizer_form as tf
from workbench import launcher
from workbench.config import ConfigError, RunConfig
from workbench.overrides import apply_overrides, field_docs
from workbench.experiment import count_parameters, estimate_vocab_size, preflight
from workbench.models import FAMILIES
from workbench.presets import PRESETS, get_preset, preset_description
from workbench.tokenizers import TOKENIZERS, Tokenizer, TokenizerError, build_tokenizer
from workbench.tokenizers.library import KeptTokenizer, TokenizerLibrary
from workbench.trainer import resolve_device
from workbench.uploads import MAX_UPLOAD_BYTES, check_upload, save_upload

DOCS = field_docs(get_preset("gpt-nano"))
K = "tf_"  # session-state prefix of the form's widgets

# data and training fields the form edits (the model's: model_form), in order; the rest come from the preset
FORM_FIELDS = (
    "batch_size", "lr", "max_steps", "eval_interval", "device", "seed",
    "warmup_steps", "eval_chars", "log_interval", "weight_decay", "grad_clip", "val_fraction",
)
BUILTIN = "Shakespeare (built in)"
UPLOAD = "Upload a .txt file"

# (comments, not docstrings: Streamlit's magic would draw a bare string of a page script)
# the Tokenizer picker: the trainable families (settings in TOK + kind + "_" + field), then kept ones as KEPT + name;
# specials and sentinels are not shown: the objective decides them
KEPT = "kept:"
TOK = K + "tok_"
TOK_CHOICE = TOK + "choice"
ARCH, OBJECTIVE = K + "arch", K + "objective"  # the Model family and Objective pickers
# fields whose errors show next to them: the tokenizer box's, and every one _field_error draws (it adds them)
INLINE = {"tokenizer", "saved_name", *(f.name for kind in tf.TRAINABLE for f in tf.family_fields(kind, False))}


@dataclass
class FieldError:
    field: str
    message: str


# --- state --------------------------------------------------------------------------------------

def _load_preset_tokenizer(name: str) -> None:
    """The preset's tokenizer becomes the picked one, with the preset's settings."""
    tok = get_preset(name).tokenizer
    ss = st.session_state
    if tok.kind == "saved":
        ss[TOK_CHOICE] = KEPT + getattr(tok, "saved_name", "")
        return
    ss[TOK_CHOICE] = tok.kind
    tf.load(TOK, tok, objective_fields=False)


def _load_preset() -> None:
    """Refill the model family, objective, model, tokenizer and training fields from the chosen preset
    (the preset picker's on_change). The corpus choice, the uploaded file and the run name are the user's: kept."""
    cfg = get_preset(st.session_state["train_preset"])
    values = {**cfg.data.to_dict(), **cfg.train.to_dict()}
    for name in FORM_FIELDS:
        st.session_state[K + name] = values[name]
    mf.load(K, cfg.model)
    of.load(K, cfg.objective)
    st.session_state.update({ARCH: cfg.model.arch, OBJECTIVE: cfg.objective.name, K + "seq_len": cfg.seq_len or 64})
    _load_preset_tokenizer(st.session_state["train_preset"])
    st.session_state.setdefault(K + "corpus_source", BUILTIN)


def _set_action(action: str) -> None:
    st.session_state["train_action"] = action


if "train_preset" not in st.session_state:
    st.session_state["train_preset"] = "gpt-nano"
tf.init_state(TOK)
mf.init_state(K)
of.init_state(K)
if (any(K + f not in st.session_state for f in FORM_FIELDS) or TOK_CHOICE not in st.session_state
        or st.session_state.get(ARCH) not in FAMILIES):
    _load_preset()  # first visit (or back from another page)
PRESET_NOW = get_preset(st.session_state["train_preset"])
st.session_state.setdefault(K + "seq_len", PRESET_NOW.seq_len or 64)  # drawn only for families without a context
mf.fix_objective(OBJECTIVE, st.session_state[ARCH], PRESET_NOW.objective.name)  # one the family can serve


KEPT_NOW: dict[str, KeptTokenizer] = {k.name: k for k in TokenizerLibrary().list()}  # each run: another tab may add one
KEPT_LABELS = {KEPT + k.name: f"kept: {k.name} ({k.kind}, {k.vocab_size})" for k in KEPT_NOW.values()}
TOK_OPTIONS = [*tf.TRAINABLE, *KEPT_LABELS]
_gone = st.session_state.get(TOK_CHOICE)
gone_warning = None
if _gone not in TOK_OPTIONS:  # a kept tokenizer deleted since (on the Tokenizers page, or the CLI)
    _load_preset_tokenizer(st.session_state["train_preset"])
    if isinstance(_gone, str) and _gone.startswith(KEPT):
        gone_warning = (f"The kept tokenizer {guard.code(_gone[len(KEPT):])} is gone (deleted since you picked it); "
                        "the preset's tokenizer is picked instead.")


@st.cache_data(show_spinner=False, max_entries=32)
def _builtin_char_vocab(sections_json: str) -> int:
    """``estimate_vocab_size`` of a char config on the built-in corpus (it reads the corpus):
    keyed by the sections it depends on."""
    return estimate_vocab_size(RunConfig.from_dict(json.loads(sections_json)))


@st.cache_resource(show_spinner="Loading the published tokenizer…", max_entries=16)
def _published_tokenizer(tokenizer_json: str) -> Tokenizer:
    """A 'pretrained' tokenizer section's tokenizer, loaded once per name (keyed by the tokenizer
    section alone: changing lr or steps loads nothing); the parameter count and the batch panel
    share it."""
    return build_tokenizer(RunConfig.from_dict({"tokenizer": json.loads(tokenizer_json)}).tokenizer, "")


def _vocab_size(cfg: RunConfig, text: str | None) -> int:
    """The vocabulary the parameter count uses: ``estimate_vocab_size`` (exact for characters: the
    training split's characters and the special tokens; a kept or published tokenizer's own size;
    a trained family's setting)."""
    kind = cfg.tokenizer.kind
    if kind == "char":
        if text is not None:
            return estimate_vocab_size(cfg, text)
        d = cfg.to_dict()  # the key: what the vocabulary depends on, and what keeps that config valid
        key = {"model": {"arch": d["model"]["arch"]}, "train": {"seq_len": d["train"]["seq_len"]},
               **{k: d[k] for k in ("objective", "data", "tokenizer")}}
        return _builtin_char_vocab(json.dumps(key, sort_keys=True))
    if kind == "pretrained":
        return _published_tokenizer(json.dumps(cfg.tokenizer.to_dict(), sort_keys=True)).vocab_size
    return estimate_vocab_size(cfg)


def _as_field_error(exc: Exception, cfg: RunConfig | None) -> FieldError:
    """The form field an error belongs to: a ConfigError names it; a TokenizerError (a kept one gone
    or lacking a special token, a published one that cannot be loaded, an untrainable text) is the
    tokenizer's; the rest (CorpusError, an upload that cannot be stored) is the corpus's."""
    if isinstance(exc, ConfigError):
        field, message = exc.field, exc.message
    elif isinstance(exc, TokenizerError) and cfg is not None:
        field, message = {"saved": "saved_name", "pretrained": "pretrained"}.get(cfg.tokenizer.kind, "tokenizer"), str(exc)
    else:
        field, message = "corpus", str(exc)
    return FieldError(field, of.hide_paths(message, K))  # a task file's folder is not shown: its name is


# --- from the form's values to a config -----------------------------------------------------------

def _overrides() -> dict:
    ss = st.session_state
    floats = ("lr", "weight_decay", "grad_clip", "val_fraction")  # the other numbers are integers
    out = {f: ss[K + f] if f == "device" else float(ss[K + f]) if f in floats else int(ss[K + f]) for f in FORM_FIELDS}
    out.update(mf.overrides(K, ss[ARCH], PRESET_NOW, ss[K + "seq_len"]), objective=ss[OBJECTIVE])
    out.update(of.overrides(K, ss[OBJECTIVE]))  # an uploaded task file: its checked temporary copy
    choice = ss[TOK_CHOICE]
    if choice.startswith(KEPT):
        out.update(tokenizer="saved", saved_name=choice[len(KEPT):])
    else:
        out.update(tokenizer=choice, **tf.settings(TOK, choice, objective_fields=False))
    # keep the preset's decay ratio: the schedule ends at lr x (min_lr / lr) of the preset
    out["min_lr"] = out["lr"] * (PRESET_NOW.train.min_lr / PRESET_NOW.train.lr) if out["lr"] > 0 else 0.0
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
    upload = ss.get(K + "upload") if ss[K + "corpus_source"] == UPLOAD else None
    if ss[K + "corpus_source"] == UPLOAD and upload is None:
        return None, FieldError("corpus", "choose a .txt file to upload, or pick the built-in Shakespeare"), None
    cfg = None
    try:
        text_for_vocab = check_upload(upload.getvalue()) if upload is not None else None
        # the built-in corpus; an upload's stored path replaces it below
        cfg = apply_overrides(get_preset(ss["train_preset"]), {**_overrides(), "corpus": "shakespeare"})
        tf.check_visitor(cfg.tokenizer)  # a visitor from another machine: Hub names only, no server folders
        try:
            resolve_device(cfg.train.device)
        except ValueError as exc:
            raise ConfigError("device", str(exc).removeprefix("device: ")) from None
        vocab = _vocab_size(cfg, text_for_vocab)
        if check:
            if upload is not None:
                _preflight_upload(cfg, upload.getvalue())
            else:
                preflight(cfg)
            common.launch_limits().check(cfg, count_parameters(cfg, vocab), len(launcher.live_runs(common.get_store())))
        if upload is not None and save:
            cfg = apply_overrides(cfg, {"corpus": str(save_upload(upload.getvalue()))})
        if save:  # an uploaded task file, stored as the upload is
            cfg = apply_overrides(cfg, of.stored(K, ss[OBJECTIVE]))
    except (ValueError, OSError) as exc:  # ConfigError, TokenizerError, CorpusError; an upload not stored
        return None, _as_field_error(exc, cfg), None
    return cfg, None, vocab


if st.session_state.get(finetune_form.MODE_KEY) == finetune_form.FINETUNE:  # the other mode: its own form
    finetune_form.page()
    st.stop()

action = st.session_state.pop("train_action", None)  # set only by the form's buttons
error: FieldError | None = None
if action is not None:
    cfg, error, vocab = _build(save=action == "launch", check=True)
    if action == "launch" and cfg is not None:
        store = common.get_store()
        try:
            # _build(check=True) has just run preflight on this corpus; start_run checks the limits again
            run_id = launcher.start_run(cfg, store, limits=common.launch_limits(), vocab_size=vocab, preflighted=True,
                                        nproc=int(st.session_state.get(K + "nproc") or 1))
        except OSError as exc:
            error = FieldError("run", f"could not start the training process: {exc}")
        except ValueError as exc:  # ConfigError, TokenizerError, CorpusError
            error = _as_field_error(exc, cfg)
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
finetune_form.mode_switch()

if gone_warning:
    st.warning(gone_warning, icon=":material/warning:")
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
    approx = "" if cfg_now.tokenizer.kind in ("char", "saved", "pretrained") else "≈ "
    m[0].metric("Parameters", approx + common.fmt_params(n_params), help=f"{n_params:,} weights (count_parameters)")
    m[1].metric("Vocabulary", approx + str(vocab_now),
                help="char: the distinct characters of the corpus; a kept or published tokenizer: its own size; "
                     "the other families: the vocabulary size asked for (≈: a text may fill less of it)")
    m[2].metric("Tokens per step", f"{cfg_now.train.batch_size * cfg_now.seq_len:,}",
                help="batch_size x context tokens are predicted at every optimizer step")
    m[3].metric("Context", f"{cfg_now.seq_len} tokens")
else:
    m[0].metric("Parameters", "—")
    m[1].caption(f"Fix **{guard.md(err_now.field)}** in the form below to see the size of the model.")
st.caption(
    f"{common.cuda_summary()}. The numbers above follow the tokenizer at once, and the form after you press **Check** or change the preset."
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


def _field_error(name: str, err: FieldError | None = None) -> None:
    """The error about ``name`` (after Check / Start: ``error``), if any, here."""
    INLINE.add(name)
    err = err or error
    if err is not None and err.field == name:
        tf.show_error(name, err.message)


def _tokenizer_box() -> None:
    """The Tokenizer picker and the picked family's settings (live: outside the form). Errors
    show next to them as soon as a value is wrong, and again after Check / Start."""
    tok_error = error if error is not None else err_now
    with st.container(border=True):
        st.subheader("Tokenizer", divider="gray")
        cols = st.columns([2, 3], gap="large")
        with cols[0]:
            st.selectbox(
                "Tokenizer", TOK_OPTIONS, key=TOK_CHOICE, persist_state="session",
                format_func=lambda o: KEPT_LABELS.get(o, o),
                help=DOCS["tokenizer"] + " Tokenizers kept on the **Tokenizers** page are listed as 'kept: NAME'; "
                     "a run copies the one it uses, so deleting it later never breaks the run.",
            )
            _field_error("tokenizer", tok_error)
            _field_error("saved_name", tok_error)
        choice = st.session_state[TOK_CHOICE]
        with cols[1]:
            if choice.startswith(KEPT):
                kept = KEPT_NOW[choice[len(KEPT):]]
                cpt = kept.stats.get("chars_per_token")
                st.caption(
                    f"{guard.md(kept.describe())}"
                    + (f"; {cpt:.2f} characters per token on its validation text" if cpt else "")
                    + ". Used as it is: nothing is trained."
                )
                return
            st.caption(guard.md(TOKENIZERS[choice].description) + ". Trained on the corpus's training split when the run starts.")
            shown = tf.render(TOK, choice, objective_fields=False, per_row=4,
                              error=(tok_error.field, tok_error.message) if tok_error is not None else None)
            if not shown:
                st.caption("No settings: the vocabulary is every character of the training split.")


_err = error or err_now  # the pickers' errors show at once, as the tokenizer's
INLINE.update(mf.pickers(ARCH, OBJECTIVE, DOCS, error=_err and (_err.field, _err.message)))
INLINE.update(of.render(K, st.session_state[OBJECTIVE], error=_err and (_err.field, _err.message)))
_tokenizer_box()


def _num(label: str, name: str, low: float, high: float, step: float, fmt: str | None = None, doc: str = "",
         also: tuple[str, ...] = (), optimizer: bool = False) -> None:
    """A number field of the form, with the errors about it (and about ``also``) under it; an
    ``optimizer`` setting is greyed out for families fitted by counting, which have none."""
    st.number_input(label, low, high, step=step, format=fmt, key=K + name, persist_state="session", help=DOCS[name] + doc,
                    disabled=optimizer and COUNTING)
    for field in (name, *also):
        _field_error(field)


COUNTING = "counting" in FAMILIES[st.session_state[ARCH]].config_cls.capabilities  # n-grams: no optimizer

with st.form("train_form", border=True):
    c_model, c_data, c_train = st.columns(3, gap="large")
    with c_model:
        st.subheader("Model", divider="gray")
        INLINE.update(mf.render(K, st.session_state[ARCH], seq_len_key=K + "seq_len", seq_len_doc=DOCS["seq_len"],
                                error=error and (error.field, error.message)))

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
        _num("Validation fraction", "val_fraction", 0.01, 0.49, 0.01, "%.2f")
        st.text_input("Run name (optional)", key=K + "run_name", persist_state="session", max_chars=80,
                      help="Shown next to the run id in the run pickers.")

    with c_train:
        st.subheader("Training", divider="gray")
        if COUNTING:
            st.caption(f"{guard.md(st.session_state[ARCH])} is fitted by counting: no optimizer, so no learning rate, "
                       "warm-up, weight decay or clipping. Each step reads the next batch_size × seq_len tokens of the "
                       "training split, in order, at most once.")
        _num("Batch size", "batch_size", 1, 4096, 1)
        _num("Learning rate (peak)", "lr", 0.0, 1.0, 1e-4, "%.5f", " Decays (cosine) to a tenth of it, as in the preset.",
             also=("min_lr",), optimizer=True)
        _num("Steps (max_steps)", "max_steps", 1, 1_000_000, 50)
        _num("Evaluate every (eval_interval)", "eval_interval", 1, 100_000, 10,
             doc=" Attention snapshots are taken at each evaluation.")
        st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key=K + "device", persist_state="session", help=DOCS["device"])
        _field_error("device")
        st.number_input("Seed", 0, 2**31 - 1, step=1, key=K + "seed", persist_state="session", help=DOCS["seed"])

    with st.expander("More settings"):
        for col, args in zip(st.columns(5), (("Warm-up steps", "warmup_steps", 0, 100_000, 10),
                                 ("Validation text scored (characters, 0 = all)", "eval_chars", 0, 10_000_000, 4096),
                                 ("Log every (log_interval)", "log_interval", 1, 100_000, 1),
                                 ("Weight decay", "weight_decay", 0.0, 10.0, 0.01, "%.3f"),
                                 ("Gradient clip", "grad_clip", 0.0, 100.0, 0.1, "%.2f"))):
            with col:
                _num(*args, optimizer=args[1] in ("warmup_steps", "weight_decay", "grad_clip"))
        st.number_input("Processes (DDP)", 1, 64, step=1, key=K + "nproc", persist_state="session",
                        help="Train with this many processes on this machine (torchrun, DistributedDataParallel: one "
                             "GPU each, or gloo on the CPU). The batch size stays the batch of one step, split between "
                             "them, so it must divide evenly. Across machines, start `torchrun` yourself (README).")
        _field_error("nproc")

    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.form_submit_button("Check", key="check", icon=":material/fact_check:", on_click=_set_action, args=("check",),
                           help="Validate the settings and update the parameter count, without starting anything.")
    bar.form_submit_button("Start training", key="launch", type="primary", icon=":material/play_arrow:",
                           on_click=_set_action, args=("launch",))
    if error is not None and error.field not in INLINE:
        tf.show_error(error.field, error.message)
    elif error is not None:
        bar.markdown(f":red[:material/error: Nothing was started: fix **{guard.md(error.field)}** above.]")
    elif action == "check":
        bar.markdown(":green[:material/check_circle: These settings are valid.]")


# --- what a batch looks like ------------------------------------------------------------------------

upload = st.session_state.get(K + "upload") if st.session_state[K + "corpus_source"] == UPLOAD else None
upload_bytes = upload.getvalue() if upload is not None and cfg_now is not None else None
batch_panel.show(cfg_now, err_now, upload_bytes,
                 check_upload(upload_bytes) if upload_bytes is not None else None,  # already checked by _build
                 KEPT_NOW.get(getattr(cfg_now.tokenizer, "saved_name", "")) if cfg_now is not None else None,
                 lambda exc: _as_field_error(exc, cfg_now), key_prefix=K,
                 tokenizer=(_published_tokenizer(json.dumps(cfg_now.tokenizer.to_dict(), sort_keys=True))
                            if cfg_now is not None and cfg_now.tokenizer.kind == "pretrained" else None))
