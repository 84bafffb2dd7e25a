"""Transformer encoder-decoder (Vaswani et al., 2017, in T5's layout): a bidirectional encoder
reads the source, a causal decoder writes the target while cross-attending to the encoder.

Choices, and why:
- pre-LN blocks with a final LayerNorm on each stack (GPT-2 and T5), not the 2017 post-LN:
  they train without warm-up tricks at the small sizes the workbench uses;
- learned absolute positions, one table for the encoder and one for the decoder (GPT-2/BERT
  style; T5 has relative position buckets, the 2017 paper fixed sinusoids);
- one token embedding for encoder, decoder and output head by default (T5 shares all three).

The model maps ids to outputs and nothing else; objectives own the loss::

    out = model(input_ids, attention_mask, decoder_input_ids=shifted_targets)
    out.logits                 # (B, T, vocab)  next target token at every decoder position
    out.encoder_hidden_states  # (B, S, C)      what the decoder cross-attends to

For generation, :meth:`Seq2SeqTransformer.encode` once and :meth:`Seq2SeqTransformer.decode`
per step (``workbench.seq2seq_decode``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig, require
from .base import LanguageModel, ModelOutput
from .layers import MLP, Block, LayerNorm, SelfAttention, check_attention_shape, padding_to_allowed, sdpa

Attentions = tuple[torch.Tensor, ...] | None


@dataclass
class Seq2SeqConfig(ModelConfig):
    """Shape of an encoder-decoder. ``block_size`` bounds both the source and the target."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"seq2seq", "attention"})
    context_setting: ClassVar[str] = "block_size"

    arch: str = "seq2seq"
    """Model family: the registry name in ``workbench.models.FAMILIES``."""
    n_layer: int = 2
    """Number of encoder layers."""
    n_dec_layer: int = 0
    """Number of decoder layers; 0 means the same as ``n_layer``."""
    n_head: int = 2
    """Attention heads per layer (self- and cross-attention); must divide ``n_embd``."""
    n_embd: int = 64
    """Width of the residual stream of both stacks."""
    block_size: int = 64
    """Longest encoder input and longest decoder sequence (size of each position table)."""
    dropout: float = 0.0
    """Dropout on embeddings, attention weights and residual branches (0 to disable)."""
    bias: bool = True
    """Biases in Linear and LayerNorm layers (GPT-2 has them; T5 does not)."""
    share_embeddings: bool = True
    """One token embedding for the encoder and the decoder (T5 shares); False gives each its own."""
    tie_weights: bool = True
    """Share the decoder's token embedding with the output projection (weight tying)."""

    def __post_init__(self) -> None:
        require(self.arch == "seq2seq", "arch", f"Seq2SeqConfig is for arch 'seq2seq', got {self.arch!r}")
        check_attention_shape(self)
        require(isinstance(self.n_dec_layer, int) and not isinstance(self.n_dec_layer, bool)
                and self.n_dec_layer >= 0, "n_dec_layer",
                f"must be an integer >= 0 (0 = as many as n_layer), got {self.n_dec_layer!r}")
        for name in ("bias", "share_embeddings", "tie_weights"):
            require(isinstance(getattr(self, name), bool), name, f"must be true or false, got {getattr(self, name)!r}")

    @property
    def dec_layers(self) -> int:
        """The number of decoder layers actually built (``n_dec_layer``, or ``n_layer`` when 0)."""
        return self.n_dec_layer or self.n_layer

    @property
    def max_context(self) -> int:
        return self.block_size

    def describe(self) -> str:
        """Encoder+decoder layers, heads, width and context.

        >>> Seq2SeqConfig(n_layer=2, n_head=4, n_embd=128).describe()
        'seq2seq 2+2L/4H/128 ctx 64'
        >>> Seq2SeqConfig(n_layer=6, n_dec_layer=2).describe()
        'seq2seq 6+2L/2H/64 ctx 64'
        """
        return f"seq2seq {self.n_layer}+{self.dec_layers}L/{self.n_head}H/{self.n_embd} ctx {self.block_size}"


def _check_padding_mask(attention_mask: torch.Tensor | None) -> None:
    # both stacks read the source mask, and cross-attention can only use a per-token one
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError(f"a seq2seq attention_mask is the encoder's (B, S) padding mask (1 = real token, "
                         f"0 = padding), got shape {tuple(attention_mask.shape)}")


def cross_allowed(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The encoder's (B, S) padding mask as bool 'may attend' (B, 1, 1, S) for cross-attention.

    A source that is all padding leaves nothing to attend to; it then attends everywhere,
    so softmax never sees a row of -inf (NaN). Any real token at all keeps padding at weight 0.

    >>> cross_allowed(torch.tensor([[1, 1, 0], [0, 0, 0]])).squeeze(1).squeeze(1).tolist()
    [[True, True, False], [True, True, True]]
    """
    _check_padding_mask(attention_mask)
    if attention_mask is None:
        return None
    m = attention_mask.bool()
    m = m | ~m.any(dim=1, keepdim=True)  # (B, S)
    return m[:, None, None, :]  # (B, 1, 1, S)


class CrossAttention(nn.Module):
    """Multi-head attention with queries from the decoder and keys/values from the encoder."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        assert n_embd % n_head == 0
        self.n_head = n_head
        self.dropout = dropout
        self.q = nn.Linear(n_embd, n_embd, bias=bias)
        self.kv = nn.Linear(n_embd, 2 * n_embd, bias=bias)  # k, v for all heads in one matmul
        self.proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, T, C) decoder states, ``memory`` (B, S, C) encoder output, ``allowed`` from
        :func:`cross_allowed`. Returns (B, T, C) and, when asked, weights (B, nh, T, S)."""
        B, T, C = x.size()
        S = memory.size(1)
        hs = C // self.n_head
        q = self.q(x).view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k, v = self.kv(memory).split(C, dim=2)
        k = k.view(B, S, self.n_head, hs).transpose(1, 2)  # (B, nh, S, hs)
        v = v.view(B, S, self.n_head, hs).transpose(1, 2)  # (B, nh, S, hs)

        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S)
            if allowed is not None:
                scores = scores.masked_fill(~allowed, float("-inf"))
            weights = F.softmax(scores, dim=-1)  # (B, nh, T, S); rows sum to 1 over real source tokens
            y = self.attn_dropout(weights) @ v  # (B, nh, T, hs)
        else:
            dropout_p = self.dropout if self.training else 0.0
            y = sdpa(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.proj(y)), weights


class DecoderBlock(nn.Module):
    """Pre-LN decoder layer: causal self-attention, cross-attention to the encoder, MLP."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        C, nh, p, bias = config.n_embd, config.n_head, config.dropout, config.bias
        self.ln_1 = LayerNorm(C, bias)
        self.attn = SelfAttention(C, nh, p, bias, causal=True)
        self.ln_2 = LayerNorm(C, bias)
        self.cross = CrossAttention(C, nh, p, bias)
        self.ln_3 = LayerNorm(C, bias)
        self.mlp = MLP(C, p, bias)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        self_allowed: torch.Tensor | None = None,
        cross_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        a, self_w = self.attn(self.ln_1(x), self_allowed, need_weights)
        x = x + a
        c, cross_w = self.cross(self.ln_2(x), memory, cross_mask, need_weights)  # memory is already normed
        x = x + c
        x = x + self.mlp(self.ln_3(x))
        return x, self_w, cross_w


class Embeddings(nn.Module):
    """Token + learned position embeddings, then dropout: ids (B, T) -> (B, T, C)."""

    def __init__(self, wte: nn.Embedding, block_size: int, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.wte = wte  # may be the other stack's module (shared embeddings)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        if T > self.wpe.num_embeddings:
            raise ValueError(f"sequence of length {T} is longer than the model's block_size={self.wpe.num_embeddings}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        return self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)


class Encoder(nn.Module):
    """Bidirectional stack: source ids (B, S) -> (B, S, C) after the final norm."""

    def __init__(self, config: Seq2SeqConfig, wte: nn.Embedding) -> None:
        super().__init__()
        self.embed = Embeddings(wte, config.block_size, config.n_embd, config.dropout)
        self.blocks = nn.ModuleList(
            Block(config.n_embd, config.n_head, config.dropout, config.bias, causal=False) for _ in range(config.n_layer)
        )
        self.ln_f = LayerNorm(config.n_embd, config.bias)

    def forward(
        self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, Attentions]:
        """Returns (hidden (B, S, C), one (B, nh, S, S) per layer or None)."""
        _check_padding_mask(attention_mask)
        x = self.embed(idx)  # (B, S, C)
        allowed = padding_to_allowed(attention_mask)  # (B, 1, 1, S): every token sees every real token
        attentions: list[torch.Tensor] = []
        for block in self.blocks:
            x, weights = block(x, allowed, need_weights=output_attentions)
            if weights is not None:
                attentions.append(weights)
        return self.ln_f(x), (tuple(attentions) if output_attentions else None)


class Decoder(nn.Module):
    """Causal stack that cross-attends to the encoder: target ids (B, T) -> (B, T, C) after the final norm."""

    def __init__(self, config: Seq2SeqConfig, wte: nn.Embedding) -> None:
        super().__init__()
        self.embed = Embeddings(wte, config.block_size, config.n_embd, config.dropout)
        self.blocks = nn.ModuleList(DecoderBlock(config) for _ in range(config.dec_layers))
        self.ln_f = LayerNorm(config.n_embd, config.bias)

    def forward(
        self,
        idx: torch.Tensor,
        memory: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, Attentions, Attentions, Attentions]:
        """Returns (hidden (B, T, C), all hidden states or None, self-attentions (B, nh, T, T)
        or None, cross-attentions (B, nh, T, S) or None)."""
        x = self.embed(idx)  # (B, T, C)
        self_allowed = padding_to_allowed(decoder_attention_mask)  # the causal triangle is added per layer
        cross_mask = cross_allowed(attention_mask)  # (B, 1, 1, S)
        hidden: list[torch.Tensor] = [x] if output_hidden_states else []
        self_attn: list[torch.Tensor] = []
        cross_attn: list[torch.Tensor] = []
        for block in self.blocks:
            x, self_w, cross_w = block(x, memory, self_allowed, cross_mask, need_weights=output_attentions)
            if output_hidden_states:
                hidden.append(x)
            if output_attentions:
                self_attn.append(self_w)
                cross_attn.append(cross_w)
        x = self.ln_f(x)
        if output_attentions:
            return x, (tuple(hidden) if output_hidden_states else None), tuple(self_attn), tuple(cross_attn)
        return x, (tuple(hidden) if output_hidden_states else None), None, None


class Seq2SeqTrunk(nn.Module):
    """Both stacks: (source ids, target ids) -> decoder hidden states, plus the encoder's."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        enc_wte = nn.Embedding(config.vocab_size, config.n_embd)
        dec_wte = enc_wte if config.share_embeddings else nn.Embedding(config.vocab_size, config.n_embd)
        self.encoder = Encoder(config, enc_wte)
        self.decoder = Decoder(config, dec_wte)

    def forward(
        self,
        input_ids: torch.Tensor,
        decoder_input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> tuple[torch.Tensor, Attentions, Attentions, torch.Tensor, Attentions, Attentions]:
        """Returns the decoder's (hidden, all hidden or None, self-attentions or None) (the other
        families' trunk triple), then (encoder hidden, encoder attentions, cross-attentions)."""
        memory, enc_attn = self.encoder(input_ids, attention_mask, output_attentions)  # (B, S, C)
        x, all_hidden, self_attn, cross_attn = self.decoder(
            decoder_input_ids, memory, attention_mask, decoder_attention_mask, output_attentions, output_hidden_states
        )
        return x, all_hidden, self_attn, memory, enc_attn, cross_attn


class Seq2SeqTransformer(LanguageModel):
    """Encoder-decoder transformer: ``trunk`` (both stacks) + ``lm_head`` (decoder hidden -> vocabulary)."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("Seq2SeqConfig.vocab_size must be set from the tokenizer before building the model")
        self.config = config
        self.trunk = Seq2SeqTrunk(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.trunk.decoder.embed.wte.weight  # weight tying (Press & Wolf, 2017)

        self.apply(self._init_weights)
        # GPT-2's residual scaling, per stack: every residual branch adds variance to the stream,
        # and a decoder layer has three (self, cross, MLP) where an encoder layer has two
        stacks = ((self.trunk.encoder, 2 * config.n_layer), (self.trunk.decoder, 3 * config.dec_layers))
        for stack, branches in stacks:
            for name, p in stack.named_parameters():
                if name.endswith("proj.weight"):
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(branches))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self, non_embedding: bool = False) -> int:
        """Parameter count (shared and tied weights counted once); optionally without the two
        position tables."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a shared tensor once
        if non_embedding:
            n -= self.trunk.encoder.embed.wpe.weight.numel() + self.trunk.decoder.embed.wpe.weight.numel()
        return n

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, output_attentions: bool = False
    ) -> tuple[torch.Tensor, Attentions]:
        """Source ids (B, S) -> (encoder output (B, S, C), per-layer (B, nh, S, S) weights or None).

        ``attention_mask``: (B, S), 1 for real tokens and 0 for padding (as in HF).
        """
        return self.trunk.encoder(input_ids, attention_mask, output_attentions)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        enc_out: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, Attentions, Attentions]:
        """Target prefix (B, T) on an encoder output (B, S, C) -> (logits (B, T, vocab), decoder
        hidden (B, T, C), self-attentions (B, nh, T, T) and cross-attentions (B, nh, T, S) or None).

        ``attention_mask`` is the encoder's (B, S) padding mask (cross-attention skips padding);
        ``decoder_attention_mask`` (B, T) marks target padding; the causal triangle is always on.
        """
        x, _, self_attn, cross_attn = self.trunk.decoder(
            decoder_input_ids, enc_out, attention_mask, decoder_attention_mask, output_attentions
        )
        return self.lm_head(x), x, self_attn, cross_attn

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ) -> ModelOutput:
        """Source ids (B, S) and target prefix (B, T) -> logits (B, T, vocab) for the next target token.

        ``decoder_input_ids`` is the target shifted right behind a start token (teacher forcing).
        ``output_attentions`` takes the eager attention path; ``output_hidden_states`` returns the
        decoder's embeddings and each decoder layer's output.
        """
        if decoder_input_ids is None or isinstance(decoder_input_ids, bool):
            raise ValueError(
                "a seq2seq model needs decoder_input_ids (B, T): the target shifted right behind a start "
                "token, e.g. torch.cat([start, labels[:, :-1]], dim=1); pass output_attentions/"
                "output_hidden_states by keyword, and generate with workbench.seq2seq_decode.greedy_decode"
            )
        x, all_hidden, self_attn, memory, enc_attn, cross_attn = self.trunk(
            input_ids, decoder_input_ids, attention_mask, decoder_attention_mask, output_attentions, output_hidden_states
        )
        return ModelOutput(
            logits=self.lm_head(x),  # (B, T, vocab)
            hidden_states=x,
            all_hidden_states=all_hidden,
            attentions=self_attn,
            encoder_hidden_states=memory,
            encoder_attentions=enc_attn,
            cross_attentions=cross_attn,
        )
