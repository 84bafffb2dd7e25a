"""Training throughput: the workbench GPT against Hugging Face ``GPT2LMHeadModel`` of the same shape.

Both models are trained in the same process, on the same batches, with the same optimizer
(AdamW, same lr, betas, weight decay and parameter groups), dropout 0 and the same loss
(``workbench.objectives.CausalLM.loss``: ``model(input_ids).logits`` then ``F.cross_entropy``;
Hugging Face is *not* given ``labels`` so it does no extra shift/loss work). The shape is
nanoGPT's CPU recipe for shakespeare-char: 4 layers, 4 heads, 128 wide, context 64, batch 12,
character vocabulary (65 symbols of tinyshakespeare.txt), biases on in both (GPT-2 has them), so
both have the same 809,856 parameters. Hugging Face runs its default attention implementation
(``sdpa``) and its default activation (``gelu_new``, GPT-2's tanh approximation); ours is exact
GELU, as nanoGPT's. Both end up in the same CPU flash-attention kernel.

Timing: after a warm-up, ``--rounds`` rounds of ``--steps`` timed optimizer steps per model.
Within a round the models take turns every ``--block`` steps (A B A B ...), and rounds alternate
which one goes first, so drifting machine load hits both alike. Each model's tokens/s is
``batch * context / median step time`` over all its timed steps (robust to a step stalled by
another process), and the ratio is that of the two. Per-round figures are printed too.

Usage::

    python bench/throughput.py                      # defaults: 5 rounds x 80 steps, all threads
    python bench/throughput.py --rounds 7 --steps 100 --threads 1

The last line printed is machine-readable::

    throughput workbench_tok_s=<a> hf_gpt2_tok_s=<b> ratio=<a/b>
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn

from workbench.config import ModelConfig
from workbench.models import GPT
from workbench.objectives import Batch, CausalLM
from workbench.tokenizers import CharTokenizer

# the team's shared folder sits beside the project root: ../shared/data/
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

# nanoGPT's CPU recipe (README: --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128)
N_LAYER, N_HEAD, N_EMBD, BLOCK_SIZE, BATCH_SIZE = 4, 4, 128, 64, 12
LR, WEIGHT_DECAY, BETAS = 1e-3, 0.1, (0.9, 0.99)


@dataclass
class Contender:
    """One model under test, with its optimizer."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    last_loss: float = float("nan")


def load_batches(path: Path, n: int, seed: int = 1337) -> tuple[int, list[Batch]]:
    """Char-tokenize ``path`` and draw ``n`` training batches (train split = first 90%, as nanoGPT).

    Returns ``(vocab_size, batches)``; both models consume this exact list.
    """
    text = path.read_text(encoding="utf-8")
    tok = CharTokenizer.train(text)
    n_val = max(1, int(round(len(text) * 0.1)))
    train_ids = CausalLM().prepare(tok.encode(text[:-n_val]))
    gen = torch.Generator().manual_seed(seed)
    objective = CausalLM()
    return tok.vocab_size, [objective.make_batch(train_ids, BATCH_SIZE, BLOCK_SIZE, gen) for _ in range(n)]


def workbench_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer the workbench trainer uses, for any model.

    ``GPT.configure_optimizer`` only walks ``model.parameters()`` (AdamW, decay on >=2-D params,
    none on biases and norms), so calling it on the Hugging Face model gives both contenders
    exactly the same optimizer, whatever that method does now or later.
    """
    return GPT.configure_optimizer(model, LR, WEIGHT_DECAY, BETAS, "cpu")  # type: ignore[arg-type]


def build_workbench(vocab_size: int, seed: int = 1337) -> Contender:
    """The workbench GPT (dropout 0) and the optimizer its trainer uses.

    Biases on (the ModelConfig default), like GPT-2, so both models have the same parameters.
    """
    torch.manual_seed(seed)
    cfg = ModelConfig(n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, block_size=BLOCK_SIZE,
                      vocab_size=vocab_size, dropout=0.0, bias=True)
    model = GPT(cfg)
    model.train()
    return Contender("workbench", model, workbench_optimizer(model))


def build_hf_gpt2(vocab_size: int, seed: int = 1337) -> tuple[Contender, str]:
    """``GPT2LMHeadModel`` of the same shape, its default attention implementation, dropout 0.

    ``use_cache=False``: a training step has no use for a KV cache and the workbench model builds
    none, so Hugging Face is not charged for one. Returns the contender and the attention
    implementation in use.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=BLOCK_SIZE, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
                     bos_token_id=None, eos_token_id=None)  # GPT-2's 50256 is outside a 65-symbol vocab
    model = GPT2LMHeadModel(cfg)
    model.train()
    return Contender("hf_gpt2", model, workbench_optimizer(model)), str(model.config._attn_implementation)


def train_step(c: Contender, objective: CausalLM, batch: Batch, grad_clip: float) -> float:
    """One optimizer step: loss through the objective, backward, clip, AdamW. Returns the loss."""
    out = objective.loss(c.model, batch)
    out.loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(c.model.parameters(), grad_clip)
    c.optimizer.step()
    c.optimizer.zero_grad(set_to_none=True)
    c.last_loss = out.loss.item()
    return c.last_loss


def time_steps(c: Contender, objective: CausalLM, batches: Sequence[Batch], grad_clip: float) -> list[float]:
    """Train ``c`` on ``batches``, one step each; returns each step's wall time in seconds."""
    times = []
    for batch in batches:
        t0 = time.perf_counter()
        train_step(c, objective, batch, grad_clip)
        times.append(time.perf_counter() - t0)
    return times


def benchmark(
    steps: int = 80,
    rounds: int = 5,
    warmup: int = 10,
    block: int = 5,
    grad_clip: float = 1.0,
    data: Path = DEFAULT_DATA,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Interleaved timing of both models; returns median tokens/s of each and their ratio.

    Within a round the two models take turns every ``block`` steps (A B A B ..., on the same
    batches), so load from other processes hits both alike; rounds alternate which model goes
    first. Each model's throughput is ``batch * context / median step time`` over all its timed
    steps: a step stalled by another process moves a median, not a mean, and since both models
    sample the same stretches of time in equal shares, their medians are taken under the same
    conditions (a median over per-round figures can pick a different round for each model).
    Per-round figures and the median of the per-round ratios are logged as a cross-check.
    """
    n_batches = warmup + rounds * steps
    vocab_size, batches = load_batches(data, n_batches)
    wb = build_workbench(vocab_size)
    hf, attn_impl = build_hf_gpt2(vocab_size)
    objective = CausalLM()
    n_wb = sum(p.numel() for p in wb.model.parameters())
    n_hf = sum(p.numel() for p in hf.model.parameters())
    log(f"shape: {N_LAYER}L/{N_HEAD}H/{N_EMBD}, context {BLOCK_SIZE}, batch {BATCH_SIZE}, vocab {vocab_size}, "
        f"biases on, dropout 0, AdamW lr={LR} betas={BETAS} wd={WEIGHT_DECAY}, grad_clip={grad_clip}")
    log(f"params: workbench={n_wb:,} hf_gpt2={n_hf:,}; workbench attention: SDPA (is_causal=True); "
        f"hf attention implementation: {attn_impl}")
    log(f"timing: {warmup} warm-up steps each, then {rounds} rounds x {steps} steps per model, taking turns "
        f"every {block} steps, first mover alternating")

    warm = batches[:warmup]
    for c in (wb, hf):
        time_steps(c, objective, warm, grad_clip)

    tok_per_step = BATCH_SIZE * BLOCK_SIZE
    all_times: dict[str, list[float]] = {wb.name: [], hf.name: []}
    round_ratios: list[float] = []
    for r in range(rounds):
        chunk = batches[warmup + r * steps : warmup + (r + 1) * steps]
        order = (wb, hf) if r % 2 == 0 else (hf, wb)
        times: dict[str, list[float]] = {wb.name: [], hf.name: []}
        for i in range(0, steps, block):  # A B A B ... in blocks of `block` steps, same batches
            for c in order:
                times[c.name] += time_steps(c, objective, chunk[i : i + block], grad_clip)
        for name, t in times.items():
            all_times[name] += t
        a = tok_per_step / statistics.median(times[wb.name])
        b = tok_per_step / statistics.median(times[hf.name])
        round_ratios.append(a / b)
        log(f"round {r + 1}/{rounds} ({order[0].name} first): workbench={a:,.0f} tok/s hf_gpt2={b:,.0f} tok/s "
            f"ratio={a / b:.3f}")

    a = tok_per_step / statistics.median(all_times[wb.name])
    b = tok_per_step / statistics.median(all_times[hf.name])
    per_round = statistics.median(round_ratios)
    log(f"last training loss: workbench={wb.last_loss:.3f} hf_gpt2={hf.last_loss:.3f} (both must be learning)")
    log(f"median step time over all {rounds * steps} timed steps: workbench {1e3 * tok_per_step / a:.2f} ms, "
        f"hf_gpt2 {1e3 * tok_per_step / b:.2f} ms; median of the per-round ratios {per_round:.3f}")
    return {"workbench_tok_s": a, "hf_gpt2_tok_s": b, "ratio": a / b, "ratio_per_round_median": per_round}


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: parse options, set threads, run :func:`benchmark`, print the summary line last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=80, help="timed optimizer steps per model per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (order alternates)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per model before timing")
    parser.add_argument("--block", type=int, default=5, help="steps a model runs before the other takes its turn")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="global grad-norm clip, as the trainer (0 = off)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="text file for the char tokenizer and batches")
    args = parser.parse_args(argv)

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}, device cpu")
    res = benchmark(args.steps, args.rounds, args.warmup, args.block, args.grad_clip, args.data)
    print(f"throughput workbench_tok_s={res['workbench_tok_s']:.0f} hf_gpt2_tok_s={res['hf_gpt2_tok_s']:.0f} "
          f"ratio={res['ratio']:.3f}")


if __name__ == "__main__":
    main()
