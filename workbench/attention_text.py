"""Attention of a trained run's model on any text: what the dashboard's "Your text" and the
notebooks call, so every family is read the same way.

A decoder or an encoder reads the text once (:func:`workbench.attention.capture`). An
encoder-decoder reads it as a source and writes its own greedy output; that output, shifted
right behind the start token as in training, is the decoder's input, so one forward pass gives
the encoder's, the decoder's and the cross-attention (:func:`workbench.attention.capture_seq2seq`).
A permutation-LM run adds its two streams on a seeded factorization order (the snapshots' own).
"""

from __future__ import annotations

from typing import Any

import torch

from .attention import AttentionMaps, capture, capture_seq2seq

MAX_TEXT_CHARS = 20_000
"""Longest text accepted: more than any model here reads (the context cuts it anyway)."""


def _check_text(text: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the text is empty: type a sentence to see what the model attends to")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"the text has {len(text):,} characters; at most {MAX_TEXT_CHARS:,}: shorten it")
    return text


def capture_text(model: Any, tokenizer: Any, text: str, source: str = "", objective: str = "",
                 seed: int = 0) -> dict[str, AttentionMaps]:
    """Attention maps of ``model`` on ``text``, by kind: {"self"} for a decoder or an encoder
    ({"self", "content", "query"} when ``objective`` is "plm"), {"encoder", "decoder", "cross"} for
    an encoder-decoder. The text is cut to the model's context (the first tokens are kept); each
    map's ``source`` says so when it was cut.

    Raises ValueError for an empty or oversized text, or one with no token in the vocabulary.
    """
    text = _check_text(text)
    context = model.max_context
    ids = tokenizer.encode(text)
    if not ids:
        raise ValueError("the tokenizer makes no tokens of this text: try other words")
    show = tokenizer.display_token
    if "seq2seq" in model.config.capabilities:
        return _seq2seq(model, tokenizer, ids, source)
    kept = ids[:context]
    note = f"{source} · first {context} of {len(ids)} tokens" if len(ids) > context else source
    maps = {"self": capture(model, kept, [show(i) for i in kept])}
    if objective == "plm" and len(kept) >= 2 and "permutation" in model.config.capabilities:
        from .attention import capture_two_stream

        mask_id = tokenizer.special_id("[MASK]") if "[MASK]" in getattr(tokenizer, "special_tokens", ()) else None
        maps.update(capture_two_stream(model, kept, tokens=[show(i) for i in kept], mask_token_id=mask_id, seed=seed))
    for m in maps.values():
        m.source = note
    return maps


def _seq2seq(model: Any, tokenizer: Any, ids: list[int], source: str) -> dict[str, AttentionMaps]:
    """Encoder input ``text [SEP]``; decoder input: start + the model's greedy output (cut at its end)."""
    from .seq2seq_decode import EOS, START, greedy_decode

    context = model.max_context
    eos, start = tokenizer.special_id(EOS), tokenizer.special_id(START)
    enc = ids[: context - 1] + [eos]  # (S,)
    x = torch.tensor([enc], dtype=torch.long, device=next(model.parameters()).device)
    out = greedy_decode(model, x, None, start, eos, max_new_tokens=context - 1)[0].tolist()
    if eos in out:
        out = out[: out.index(eos) + 1]
    dec = [start] + out[:-1]  # what teacher forcing feeds: row t is the position that wrote out[t]
    show = tokenizer.display_token
    maps = capture_seq2seq(model, enc, dec[:context], [show(i) for i in enc], [show(i) for i in dec[:context]])
    note = f"{source} · first {context - 1} of {len(ids)} tokens" if len(ids) > context - 1 else source
    for m in maps.values():
        m.source = note
    return maps


def induction_scores_of(model: Any, tokenizer: Any, seed: int = 0, n_probes: int = 2) -> Any:
    """Induction score (L, nh) of a run's model on random ordinary tokens seen twice (special tokens
    excluded); see :func:`workbench.head_stats.model_induction_scores`. An encoder-decoder's encoder."""
    from .head_stats import model_induction_scores

    special = [tokenizer.special_id(t) for t in getattr(tokenizer, "special_tokens", ())]
    return model_induction_scores(model, tokenizer.vocab_size, exclude=special, seed=seed, n_probes=n_probes)
