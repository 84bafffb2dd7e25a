"""Generating with an encoder-decoder: greedy, sampled and beam-search decoding, and scoring.

Every function encodes the source once and then re-runs the decoder on the whole growing
prefix at each step. There is no KV cache: the models here are small and a target is at most
``block_size`` long, so the quadratic re-run costs less than the bookkeeping a cache needs.

Sequences come back without the start token; a row that emits ``eos_id`` keeps it and stops
there (``greedy_decode`` / ``sample_decode`` fill the rest of the row with ``pad_id``, by
default ``eos_id`` again). ``eos_id=None`` decodes every row to ``max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .generate import filter_logits
from .models.base import eval_mode
from .models.seq2seq import Seq2SeqTransformer
from .objectives.encoder_decoder import EOS, PAD


def _check_length(model: Seq2SeqTransformer, max_new_tokens: int) -> None:
    # the decoder reads start + all but the last new token: at most max_new_tokens positions
    limit = model.config.block_size
    if not 1 <= max_new_tokens <= limit:
        raise ValueError(f"max_new_tokens must be in [1, block_size={limit}] (the decoder's position table), "
                         f"got {max_new_tokens}")


@torch.no_grad()
def sample_decode(
    model: Seq2SeqTransformer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    start_id: int,
    eos_id: int | None,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    pad_id: int | None = None,
) -> torch.Tensor:
    """Sample a target for each source row: (B, S) -> LongTensor (B, <= max_new_tokens).

    ``temperature`` 0 takes the most likely token (greedy); otherwise logits are divided by it
    and filtered by ``top_k`` / ``top_p`` (nucleus), as in ``workbench.generate``. Decoding
    stops when every row has emitted ``eos_id``.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    _check_length(model, max_new_tokens)
    fill = eos_id if pad_id is None else pad_id
    B = input_ids.size(0)
    with eval_mode(model):
        enc_out, _ = model.encode(input_ids, attention_mask)  # (B, S, C), once
        out = torch.full((B, 1), start_id, dtype=torch.long, device=input_ids.device)  # (B, 1)
        done = torch.zeros(B, dtype=torch.bool, device=input_ids.device)  # (B,)
        for _ in range(max_new_tokens):
            logits = model.decode(out, enc_out, attention_mask)[0][:, -1, :].float()  # (B, V)
            if temperature == 0:
                next_id = logits.argmax(dim=-1)  # (B,)
            else:
                logits = filter_logits(logits / temperature, top_k, top_p)
                next_id = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(1)  # (B,)
            if fill is not None:  # finished rows only pad; the causal decoder never lets that reach others
                next_id = next_id.masked_fill(done, fill)
            out = torch.cat([out, next_id[:, None]], dim=1)  # (B, t + 1)
            if eos_id is not None:
                done |= next_id == eos_id
                if done.all():
                    break
    return out[:, 1:]


def greedy_decode(
    model: Seq2SeqTransformer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    start_id: int,
    eos_id: int | None,
    max_new_tokens: int,
    pad_id: int | None = None,
) -> torch.Tensor:
    """The most likely token at every step: (B, S) -> LongTensor (B, <= max_new_tokens).

    Rows stop at ``eos_id`` (kept); the tensor is as long as the longest row, the others are
    filled with ``pad_id`` (default ``eos_id``).
    """
    return sample_decode(model, input_ids, attention_mask, start_id, eos_id, max_new_tokens,
                         temperature=0.0, pad_id=pad_id)


@torch.no_grad()
def sequence_log_prob(
    model: Seq2SeqTransformer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    start_id: int,
    targets: torch.Tensor,
    target_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(targets | source) under teacher forcing: (B, S), (B, T) -> (B,).

    ``target_mask`` (B, T): 1 where a target token counts, 0 for padding after a shorter row.
    """
    start = torch.full_like(targets[:, :1], start_id)
    decoder_input_ids = torch.cat([start, targets[:, :-1]], dim=1)  # (B, T): the target shifted right
    with eval_mode(model):
        logits = model(input_ids, attention_mask, decoder_input_ids=decoder_input_ids).logits.float()  # (B, T, V)
    logp = F.log_softmax(logits, dim=-1).gather(-1, targets[..., None]).squeeze(-1)  # (B, T)
    if target_mask is not None:
        logp = logp * target_mask.to(logp.dtype)
    return logp.sum(dim=1)


def _normalise(score: float, length: int, length_penalty: float) -> float:
    """GNMT/HF length normalisation: summed log-prob / length ** length_penalty.

    >>> _normalise(-6.0, 3, 1.0), _normalise(-6.0, 3, 0.0)
    (-2.0, -6.0)
    """
    return score / length**length_penalty


def _best_reachable(score: float, length: int, max_len: int, length_penalty: float) -> float:
    """Highest normalised score an open hypothesis (summed log-prob ``score``, ``length`` tokens
    so far) can still end with. More tokens only lower the sum (a log-prob is <= 0); dividing a
    negative sum by ``len ** penalty`` helps most at the longest ending for a positive penalty,
    at the shortest otherwise. The bound is exact, so stopping on it never loses the best.

    >>> _best_reachable(-6.0, 1, 3, 1.0), _best_reachable(-6.0, 1, 3, 0.0)
    (-2.0, -6.0)
    """
    final_len = max_len if length_penalty > 0 else min(length + 1, max_len)
    return _normalise(score, final_len, length_penalty)


def _by_score(hyps: list[tuple[float, torch.Tensor]], keep: int) -> list[tuple[float, torch.Tensor]]:
    return sorted(hyps, key=lambda h: -h[0])[:keep]  # stable: on a tie the earlier (shorter) one wins


@torch.no_grad()
def beam_search(
    model: Seq2SeqTransformer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    start_id: int,
    eos_id: int | None,
    max_new_tokens: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
) -> list[torch.Tensor]:
    """The best-scoring target for each source row: (B, S) -> B LongTensors of length <= max_new_tokens.

    A hypothesis's score is its summed log-prob divided by ``len ** length_penalty`` (``len``
    counts the generated tokens, EOS included): 0 compares raw log-probs (favours short
    outputs), 1 the per-token average. Each step extends the ``beam_size`` open hypotheses,
    keeps the best ``2 * beam_size`` candidates (so ``beam_size`` of them stay open after some
    end), moves those that end in ``eos_id`` and rank within ``beam_size`` to the finished ones
    (kept), and stops once no open hypothesis can still beat the best finished one (an exact
    bound, see :func:`_best_reachable`). With ``beam_size=1`` and ``length_penalty=0`` this is
    greedy decoding. Rows are searched one after the other, on one encoder pass for all.
    """
    if not (isinstance(beam_size, int) and beam_size >= 1):
        raise ValueError(f"beam_size must be an integer >= 1 (1 = greedy), got {beam_size!r}")
    _check_length(model, max_new_tokens)
    with eval_mode(model):
        enc_out, _ = model.encode(input_ids, attention_mask)  # (B, S, C), once for every row
        return [
            _beam_one(model, enc_out[b : b + 1], attention_mask[b : b + 1] if attention_mask is not None else None,
                      start_id, eos_id, max_new_tokens, beam_size, length_penalty)
            for b in range(input_ids.size(0))
        ]


def _beam_one(
    model: Seq2SeqTransformer,
    memory: torch.Tensor,
    mask: torch.Tensor | None,
    start_id: int,
    eos_id: int | None,
    max_new_tokens: int,
    beam_size: int,
    length_penalty: float,
) -> torch.Tensor:
    """Beam search for one source: ``memory`` (1, S, C), ``mask`` (1, S) -> the best tokens (t,)."""
    alive = torch.full((1, 1), start_id, dtype=torch.long, device=memory.device)  # (n, t + 1), start first
    scores = [0.0]  # summed log-prob of each open hypothesis
    finished: list[tuple[float, torch.Tensor]] = []  # (normalised score, tokens without start), best first
    for t in range(1, max_new_tokens + 1):  # t = tokens generated once this step is done
        n = alive.size(0)
        m = mask.expand(n, -1) if mask is not None else None
        logits = model.decode(alive, memory.expand(n, -1, -1), m)[0][:, -1, :].float()  # (n, V)
        V = logits.size(-1)
        cand = (torch.tensor(scores, device=logits.device)[:, None] + F.log_softmax(logits, dim=-1)).view(-1)  # (n*V,)
        top, flat = cand.topk(min(2 * beam_size, cand.numel()))
        next_alive, next_scores = [], []
        for rank, (s, i) in enumerate(zip(top.tolist(), flat.tolist())):
            src, tok = divmod(i, V)
            seq = torch.cat([alive[src], alive.new_tensor([tok])])  # (t + 1,)
            if tok == eos_id:
                if rank < beam_size:  # an EOS outside the top beam_size would not have made the beam
                    finished.append((_normalise(s, t, length_penalty), seq[1:]))
            elif len(next_alive) < beam_size:
                next_alive.append(seq)
                next_scores.append(s)
        finished = _by_score(finished, beam_size)
        if not next_alive:
            break
        alive, scores = torch.stack(next_alive), next_scores  # (n', t + 1)
        if t == max_new_tokens:  # out of room: the open hypotheses end here, unfinished
            finished = _by_score(finished + [(_normalise(s, t, length_penalty), q[1:]) for s, q in zip(scores, alive)],
                                 beam_size)
        elif finished and _best_reachable(max(scores), t, max_new_tokens, length_penalty) <= finished[0][0]:
            break  # no open hypothesis can beat the best finished one any more
    return finished[0][1]


# --- text in, text out ------------------------------------------------------------------------------

START = PAD
"""The layout the seq2seq objectives train (``objectives.encoder_decoder``): the encoder reads
``source [SEP]``, the decoder starts from ``[PAD]`` and ends its target with ``[SEP]``."""


def encode_sources(tokenizer: Any, texts: Sequence[str], block_size: int,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``source [SEP]`` for each text (truncated to ``block_size``), padded with [PAD]:
    (B, S) ids and (B, S) attention mask (1 on real positions)."""
    pad, eos = tokenizer.special_id(START), tokenizer.special_id(EOS)
    rows = [ids[: block_size - 1] + [eos] for ids in tokenizer.encode_batch(list(texts))]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    for j, r in enumerate(rows):
        input_ids[j, : len(r)] = torch.tensor(r, dtype=torch.long)
    mask = (torch.arange(width)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()
    return input_ids.to(device), mask.to(device)


def translate(model: Seq2SeqTransformer, tokenizer: Any, texts: Sequence[str], beam_size: int = 1,
              length_penalty: float = 1.0, max_new_tokens: int | None = None, temperature: float = 0.0,
              top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
              batch_size: int = 32) -> list[str]:
    """Decode a target text for each source text with a seq2seq-task model.

    ``beam_size`` > 1: beam search (``length_penalty``); otherwise greedy at ``temperature`` 0,
    sampling (``top_k``, ``top_p``, ``seed``) above it. ``max_new_tokens`` defaults to the
    decoder's ``block_size``. Each output is cut at its first [SEP] and decoded to text.
    """
    if not (isinstance(beam_size, int) and beam_size >= 1):
        raise ValueError(f"beam_size must be an integer >= 1 (1 = greedy), got {beam_size!r}")
    if beam_size > 1 and temperature > 0:
        raise ValueError("beam search is deterministic: use temperature 0 with beam_size > 1, or beam_size 1 to sample")
    limit = model.config.block_size
    max_new = limit if max_new_tokens is None else max_new_tokens
    start, eos = tokenizer.special_id(START), tokenizer.special_id(EOS)
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    out: list[str] = []
    for i in range(0, len(texts), batch_size):
        input_ids, mask = encode_sources(tokenizer, texts[i : i + batch_size], limit, device)
        if beam_size > 1:
            rows = beam_search(model, input_ids, mask, start, eos, max_new, beam_size, length_penalty)
        else:
            rows = list(sample_decode(model, input_ids, mask, start, eos, max_new, temperature, top_k, top_p, gen))
        for row in rows:
            ids = row.tolist()
            out.append(tokenizer.decode(ids[: ids.index(eos)] if eos in ids else ids).strip())
    return out
