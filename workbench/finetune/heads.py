"""Task heads on a pretrained trunk: one shared body, a small Linear per task (as HF's
``BertFor...`` classes), ``-100`` as the label the loss ignores.

- :class:`SequenceClassifier`: pooled vector -> label (sentiment, NLI);
- :class:`TokenClassifier`: every position -> label (NER with BIO tags);
- :class:`SpanQA`: every position -> (start, end) scores (extractive QA, SQuAD).

Each works on our trunks (:class:`~workbench.models.GPT`, :class:`~workbench.models.BERT`) and
on Hugging Face models (a ``BertModel`` from :func:`workbench.hf_attention.load_hf`). Around
them: label alignment from words to sub-word tokens, answer spans from characters to tokens
and back, freezing the lower layers, and a separate learning rate for the new head.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.base import LanguageModel

IGNORE_INDEX = -100
"""Label the losses skip (special tokens, later pieces of a word, padding), as in HF."""

Pooling = Literal["cls", "mean", "last", "pooler"]

# --- the trunk's hidden states --------------------------------------------------------------------


def trunk_hidden(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The trunk's last hidden states (B, T, C), whatever the model.

    Ours (a :class:`LanguageModel`) run only ``model.trunk`` (the same ``hidden_states`` that
    ``model(...)`` returns, without computing vocabulary logits a task head never reads); a bare
    trunk (``GPTTrunk``/``BERTTrunk``) returns a tuple whose first item is that. An HF model runs
    its ``base_model`` (the ``BertModel`` inside a ``BertFor...``, the ``LlamaModel`` inside a
    causal LM) and gives ``last_hidden_state``. ``token_type_ids`` only for models with segments.
    """
    extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
    if isinstance(model, LanguageModel):
        return model.trunk(input_ids, attention_mask, **extra)[0]  # (B, T, C)
    if not hasattr(model, "base_model"):  # a bare trunk of ours: (hidden, all hidden, attentions)
        return model(input_ids, attention_mask, **extra)[0]
    out: Any = model.base_model(input_ids=input_ids, attention_mask=attention_mask, **extra)  # HF: the bare body
    return out.last_hidden_state  # (B, T, C)


def is_causal_model(model: nn.Module) -> bool:
    """Whether each position sees only the past (then only the last token has read everything)."""
    config = getattr(model, "config", None)
    if isinstance(model, LanguageModel):
        return "bidirectional" not in type(config).capabilities
    from ..hf_attention import is_causal

    return config is not None and is_causal(config)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None, how: Pooling) -> torch.Tensor:
    """One vector per sequence (B, T, C) -> (B, C).

    ``cls``: the first token (an encoder's [CLS], trained to summarise); ``mean``: the average of
    the real tokens (padding left out); ``last``: the last real token, the only one a causal
    decoder lets read the whole sequence (right padding: the last non-pad position; left padding
    works too).
    """
    B, T, _ = hidden.shape
    if how == "cls":
        return hidden[:, 0]
    mask = torch.ones(B, T, device=hidden.device) if attention_mask is None else attention_mask.to(hidden.dtype)
    if how == "mean":
        summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)  # (B, C)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
    if how == "last":
        positions = torch.arange(1, T + 1, device=hidden.device, dtype=hidden.dtype)  # (T,)
        last = (mask * positions).argmax(dim=1)  # (B,) highest real position
        return hidden[torch.arange(B, device=hidden.device), last]
    raise ValueError(f"unknown pooling {how!r}; use 'cls', 'mean' or 'last'")


def _width(model: nn.Module) -> int:
    config = model.config
    for name in ("n_embd", "hidden_size", "d_model"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    raise ValueError(f"cannot tell the hidden width of {type(model).__name__}: its config has no n_embd/hidden_size")


# --- heads ----------------------------------------------------------------------------------------


class TaskHead(nn.Module):
    """Base of the heads: ``self.trunk`` is the pretrained model, everything else is the head."""

    def __init__(self, model: nn.Module, n_out: int, dropout: float) -> None:
        super().__init__()
        self.trunk = model
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(_width(model), n_out)
        nn.init.normal_(self.head.weight, std=0.02)  # BERT's init: small logits, so the first steps are gentle
        nn.init.zeros_(self.head.bias)

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.drop(trunk_hidden(self.trunk, input_ids, attention_mask, token_type_ids))  # (B, T, C)


def trunk_pooler(model: nn.Module) -> nn.Module | None:
    """The trunk's own [CLS] pooler (Linear + tanh over the first token: BERT's, trained by
    next-sentence prediction), or None: ours (``model.pooler``) or an HF model's (``base_model.pooler``)."""
    if isinstance(model, LanguageModel):
        return getattr(model, "pooler", None)
    return getattr(getattr(model, "base_model", model), "pooler", None)


class SequenceClassifier(TaskHead):
    """Pooled vector -> dropout -> Linear(C, n_labels). ``pooling`` None picks ``last`` for a
    causal trunk, ``pooler`` for a Hugging Face encoder that has one (what
    ``BertForSequenceClassification`` does), ``cls`` for ours."""

    def __init__(self, model: nn.Module, n_labels: int, pooling: Pooling | None = None, dropout: float = 0.1) -> None:
        super().__init__(model, n_labels, dropout)
        hf_pooler = not isinstance(model, LanguageModel) and trunk_pooler(model) is not None
        self.pooling: Pooling = pooling or ("last" if is_causal_model(model) else "pooler" if hf_pooler else "cls")
        if self.pooling == "pooler" and trunk_pooler(model) is None:
            raise ValueError(f"pooling 'pooler': {type(model).__name__} has no pooler; use cls, mean or last")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (logits (B, n_labels), mean cross-entropy over labels != -100, or None without labels)."""
        hidden = trunk_hidden(self.trunk, input_ids, attention_mask, token_type_ids)  # (B, T, C)
        if self.pooling == "pooler":  # tanh(W h_[CLS] + b), the trunk's own pretrained layer
            pooled = trunk_pooler(self.trunk)(hidden)  # type: ignore[misc]  (B, C)
        else:
            pooled = pool(hidden, attention_mask, self.pooling)  # (B, C)
        logits = self.head(self.drop(pooled))  # (B, n_labels)
        loss = None if labels is None else F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        return logits, loss


class TokenClassifier(TaskHead):
    """Every position -> dropout -> Linear(C, n_labels): a tag per token."""

    def __init__(self, model: nn.Module, n_labels: int, dropout: float = 0.1) -> None:
        super().__init__(model, n_labels, dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (logits (B, T, n_labels), mean cross-entropy over positions whose label != -100)."""
        logits = self.head(self.hidden(input_ids, attention_mask, token_type_ids))  # (B, T, n_labels)
        if labels is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


class SpanQA(TaskHead):
    """Linear(C, 2): a start and an end score per position; the answer is the best span."""

    def __init__(self, model: nn.Module, dropout: float = 0.1) -> None:
        super().__init__(model, 2, dropout)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                start_positions: torch.Tensor | None = None, end_positions: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """-> (start logits (B, T), end logits (B, T), loss or None).

        The loss is the mean of the start and end cross-entropies (HF's
        ``BertForQuestionAnswering``); a position of -100 or outside the window (an answer cut
        off by truncation) is ignored, as HF ignores positions clamped to T.
        """
        logits = self.head(self.hidden(input_ids, attention_mask, token_type_ids))  # (B, T, 2)
        start_logits, end_logits = logits.unbind(dim=-1)  # (B, T) each
        if start_positions is None or end_positions is None:
            return start_logits, end_logits, None
        T = start_logits.size(1)

        def ce(scores: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            positions = positions.masked_fill((positions < 0) | (positions >= T), IGNORE_INDEX)
            return F.cross_entropy(scores, positions, ignore_index=IGNORE_INDEX)

        return start_logits, end_logits, (ce(start_logits, start_positions) + ce(end_logits, end_positions)) / 2


def best_span(start_logits: torch.Tensor, end_logits: torch.Tensor, mask: torch.Tensor | None = None,
              max_len: int = 30) -> tuple[int, int] | list[tuple[int, int]]:
    """The (start, end) token pair with the highest start + end score such that
    start <= end < start + max_len and both lie where ``mask`` is true (the context tokens:
    not the question, not [CLS]/[SEP]/padding). (T,) scores give one pair, (B, T) a list.
    """
    if start_logits.dim() == 2:
        masks = [None] * len(start_logits) if mask is None else list(mask)
        return [best_span(s, e, m, max_len) for s, e, m in zip(start_logits, end_logits, masks)]  # type: ignore[misc]
    T = start_logits.size(0)
    allowed = torch.ones(T, dtype=torch.bool, device=start_logits.device) if mask is None else mask.bool()
    if not allowed.any():
        raise ValueError("best_span: the mask allows no position")
    ones = torch.ones(T, T, dtype=torch.bool, device=start_logits.device)
    window = torch.triu(ones) & ~torch.triu(ones, diagonal=max_len)  # (T, T) [s, e]: s <= e < s + max_len
    valid = window & allowed[:, None] & allowed[None, :]
    scores = (start_logits[:, None] + end_logits[None, :]).float().masked_fill(~valid, float("-inf"))  # (T, T)
    flat = int(scores.flatten().argmax())
    return flat // T, flat % T


# --- labels and spans: words and characters -> tokens ---------------------------------------------


def align_word_labels(word_offsets: Sequence[tuple[int, int]], token_offsets: Sequence[tuple[int, int]],
                      word_labels: Sequence[int]) -> list[int]:
    """Word-level labels (BIO tag ids) onto sub-word tokens, for :class:`TokenClassifier`.

    The first token of each word gets the word's label; later pieces of the word, special tokens
    (offsets ``(0, 0)``) and tokens in no word (a lone space) get -100, so the loss and the
    metrics count each word once (HF's ``label_all_tokens=False``); predict a word's tag from
    its first piece. A token belongs to the word its characters overlap (byte-level BPE offsets
    include the space before a word). Offsets are ``[start, end)`` characters of one text.
    """
    if len(word_offsets) != len(word_labels):
        raise ValueError(f"{len(word_offsets)} words but {len(word_labels)} labels")
    ends = [end for _, end in word_offsets]
    labels, prev_word = [], -1
    for start, end in token_offsets:
        w = bisect_right(ends, start)  # first word ending after the token starts
        inside = start < end and w < len(word_offsets) and word_offsets[w][0] < end
        if inside and w != prev_word:
            labels.append(int(word_labels[w]))
            prev_word = w
        else:
            labels.append(IGNORE_INDEX)
    return labels


def char_span_to_tokens(offsets: Sequence[tuple[int, int]], start_char: int, end_char: int,
                        allowed: Sequence[bool] | None = None) -> tuple[int, int] | None:
    """Characters ``[start_char, end_char)`` of an answer -> its first and last token (inclusive).

    Only tokens where ``allowed`` is true count (the context's: with a question/context pair,
    the question's offsets point into the question); special tokens never do. None when those
    tokens do not cover the whole answer (cut off by truncation): the caller decides (HF points
    such examples at [CLS]).
    """
    ok = [i for i, (s, e) in enumerate(offsets) if s < e and (allowed is None or allowed[i])]
    if not ok or offsets[ok[0]][0] > start_char or offsets[ok[-1]][1] < end_char:
        return None
    start_tok = next(i for i in ok if offsets[i][1] > start_char)
    end_tok = next(i for i in reversed(ok) if offsets[i][0] < end_char)
    return start_tok, max(start_tok, end_tok)


def tokens_to_char_span(offsets: Sequence[tuple[int, int]], start_tok: int, end_tok: int,
                        text: str | None = None) -> tuple[int, int]:
    """Tokens ``start_tok..end_tok`` (inclusive) -> characters ``[start, end)``; with ``text``,
    the whitespace at either end is trimmed (byte-level BPE tokens carry the space before a
    word: 'Ġcat' covers ' cat'), so ``text[start:end]`` is the answer as written."""
    start, end = offsets[start_tok][0], offsets[end_tok][1]
    if text is not None:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
    return start, end


# --- freezing and optimizer groups ----------------------------------------------------------------


def _embeddings_and_blocks(model: nn.Module) -> tuple[list[nn.Module], nn.ModuleList]:
    """(embedding modules, the stack of blocks) of our GPT/BERT trunks and HF BERT-like models."""
    if isinstance(model, TaskHead):
        model = model.trunk
    if isinstance(model, LanguageModel):
        model = model.trunk
    if isinstance(getattr(model, "blocks", None), nn.ModuleList):  # our GPTTrunk
        return [m for m in (model.wte, getattr(model, "wpe", None)) if m is not None], model.blocks
    if isinstance(getattr(model, "layers", None), nn.ModuleList) and hasattr(model, "embeddings"):  # our BERTTrunk
        return [model.embeddings], model.layers
    base = getattr(model, "base_model", model)
    if hasattr(base, "embeddings") and isinstance(getattr(getattr(base, "encoder", None), "layer", None), nn.ModuleList):
        return [base.embeddings], base.encoder.layer  # HF BertModel and its kin
    raise TypeError(f"freeze knows our GPT/BERT trunks and HF BERT-like models, not {type(model).__name__}")


def freeze(model: nn.Module, k: int, embeddings: bool = True) -> int:
    """Freeze the embeddings (when ``embeddings``) and the first ``k`` blocks of the trunk, so
    only the upper layers and the head learn; ``k=-1`` freezes the whole trunk (a linear probe:
    only the head trains). Everything else in the trunk is made trainable first, so calls do not
    accumulate. ``model``: a head (its trunk is frozen) or a bare model. Returns the number of
    parameters (elements) now frozen.
    """
    trunk = model.trunk if isinstance(model, TaskHead) else model
    embs, blocks = _embeddings_and_blocks(trunk)
    if k < -1 or k > len(blocks):
        raise ValueError(f"cannot freeze {k} blocks: the trunk has {len(blocks)} blocks "
                         f"(use 0..{len(blocks)}, or -1 to freeze the whole trunk)")
    for p in trunk.parameters():
        p.requires_grad_(True)
    frozen: list[nn.Module] = [trunk] if k == -1 else [*(embs if embeddings else []), *blocks[:k]]
    params = {id(p): p for m in frozen for p in m.parameters()}  # tied weights once
    for p in params.values():
        p.requires_grad_(False)
    return sum(p.numel() for p in params.values())


def param_groups(head_model: TaskHead, lr: float, head_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Optimizer groups: the trunk at ``lr``, the new head at ``head_lr`` (a fresh Linear wants a
    larger step than pretrained weights, which a large step would wreck), each split as
    :func:`workbench.optim.param_groups` splits a model (weight decay on matrices only). Every
    group has its absolute ``lr`` (for a plain ``torch.optim.AdamW(groups)``) and an ``lr_scale``
    relative to ``lr``, which the trainer multiplies into its schedule. Frozen parameters are
    left out; empty groups are dropped."""
    from ..optim import param_groups as split

    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    parts = {"trunk": (head_model.trunk, lr),
             "head": (nn.ModuleList(m for n, m in head_model.named_children() if n != "trunk"), head_lr)}
    groups = []
    for name, (module, part_lr) in parts.items():
        for g in split(module, weight_decay):
            groups.append({**g, "lr": part_lr, "lr_scale": part_lr / lr, "name": name})
    return [g for g in groups if g["params"]]
