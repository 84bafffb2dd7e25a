"""Sampling from a causal LM: temperature, top-k and top-p (nucleus) filtering."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.base import eval_mode


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set logits outside the top-k / top-p nucleus to -inf. ``logits``: (B, V).

    >>> filter_logits(torch.tensor([[1.0, 3.0, 2.0]]), top_k=2).tolist()
    [[-inf, 3.0, 2.0]]
    """
    if top_k is not None and top_k > 0:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = F.softmax(sorted_logits, dim=-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``idx`` (B, T) by ``max_new_tokens``; temperature 0 means greedy."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    config = getattr(model, "config", None)
    if config is not None and "seq2seq" in config.capabilities:
        raise ValueError(f"a {config.arch} model maps an input text to an output text; it does not continue text: "
                         f"decode it with workbench.seq2seq_decode (greedy, sampling or beam search)")
    if config is not None and "causal" not in config.capabilities:
        raise ValueError(f"a {config.arch} model reads both sides of a token: it fills in masked tokens, it does not "
                         f"continue text; sample from a run of a causal model (e.g. gpt or lstm)")
    limit = getattr(model, "max_context", None)  # None: no limit (recurrent models)
    with eval_mode(model):
        for _ in range(max_new_tokens):
            context = idx[:, -limit:] if limit else idx  # crop to the model's window
            logits = model(context).logits[:, -1, :].float()  # (B, V)
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)
            else:
                logits = filter_logits(logits / temperature, top_k, top_p)
                next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
            idx = torch.cat([idx, next_id], dim=1)
    return idx


def sample_text(
    model: nn.Module,
    tokenizer,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 0.8,
    top_k: int | None = 40,
    top_p: float | None = None,
    seed: int | None = None,
) -> str:
    """Prompt in, prompt + continuation out (decoded)."""
    device = next(iter([*model.parameters(), *model.buffers()])).device  # an n-gram has buffers (counts) only
    ids = tokenizer.encode(prompt) if prompt else []
    if not ids:
        ids = [tokenizer.encode("\n")[0]] if tokenizer.encode("\n") else [0]
    gen = torch.Generator(device=device.type).manual_seed(seed) if seed is not None else None
    out = generate(model, torch.tensor([ids], device=device), max_new_tokens, temperature, top_k, top_p, gen)
    text = tokenizer.decode(out[0].tolist())
    return text if prompt else text[1:] if text.startswith("\n") else text
