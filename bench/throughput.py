"""Training throughput: the workbench GPT against Hugging Face ``GPT2LMHeadModel`` of the same shape.

Both models are trained in the same process, on the same batches, with the same optimizer
(``workbench.optim.build_optimizer``: AdamW, same lr, betas, weight decay and parameter groups,
built for each model from its own parameters), dropout 0 and the same loss
(``workbench.objectives.CausalLM.loss``: ``model(input_ids).logits`` then ``F.cross_entropy``;
Hugging Face is *not* given ``labels`` so it does no extra shift/loss work). The shape is
nanoGPT's CPU recipe for shakespeare-char: 4 layers, 4 heads, 128 wide, context 64, batch 12,
character vocabulary of the given text (65 symbols for tinyshakespeare), biases on in both (GPT-2
has them), so both have the same 809,856 parameters on tinyshakespeare.

Same activation: the Hugging Face peer is configured with ``activation_function="gelu"``, exact
GELU, which is what our MLP uses (``nn.GELU()``, as nanoGPT). GPT-2's default ``gelu_new`` (the
tanh approximation, a seven-op Python formula in ``transformers``) costs most of the per-step
difference on its own, so comparing against it measured the activation, not the implementation.
By default a third contender, ``hf_gpt2_gelu_new`` (the Hugging Face default), takes its turns in
the same rounds, and its ratio is printed on a separate, labelled line for reference only
(``--no-gelu-new`` leaves it out). Hugging Face runs its default attention implementation
(``sdpa``); ours calls SDPA too, so both end up in the same CPU flash-attention kernel.

Timing: after a warm-up, ``--rounds`` rounds of ``--steps`` timed optimizer steps per model.
Within a round the models take turns every ``--block`` steps (A B C A B C ...), and rounds rotate
which one goes first, so drifting machine load hits all alike. Each model's tokens/s is
``batch * context / median step time`` over all its timed steps (robust to a step stalled by
another process), and a ratio is that of two such figures. Per-round figures are printed too.

Usage::

    python bench/throughput.py --data tinyshakespeare.txt     # defaults: 5 rounds x 80 steps, all threads
    python bench/throughput.py --data tinyshakespeare.txt --rounds 7 --steps 100 --threads 1

``--data`` is required: nanoGPT's ``data/shakespeare_char/prepare.py`` downloads the file from
https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt

The last line printed is machine-readable, and is the like-for-like comparison (both exact GELU)::

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
from tinyshakespeare import URL, data_path_or_exit  # bench/tinyshakespeare.py (beside this script)
import torch.nn as nn

from workbench.config import TrainConfig
from workbench.corpora import load_corpus
from workbench.models import GPT, GPTConfig
from workbench.objectives import Batch, CausalLM
from workbench.optim import build_optimizer
from workbench.tokenizers import CharTokenizer


# nanoGPT's CPU recipe (README: --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128)
N_LAYER, N_HEAD, N_EMBD, BLOCK_SIZE, BATCH_SIZE = 4, 4, 128, 64, 12
LR, WEIGHT_DECAY, BETAS = 1e-3, 0.1, (0.9, 0.99)
VAL_FRACTION = 0.1


@dataclass
class Contender:
    """One model under test, with its optimizer."""

    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    last_loss: float = float("nan")


def load_batches(path: Path, n: int, seed: int = 1337) -> tuple[int, list[Batch]]:
    """Char-tokenize ``path`` and draw ``n`` training batches (train split as nanoGPT: first ``int(0.9 n)``).

    Returns ``(vocab_size, batches)``; every model consumes this exact list.
    """
    corpus = load_corpus(path)
    tok = CharTokenizer.train(corpus.text)  # the vocabulary of the whole file, as nanoGPT's prepare.py
    train, _ = corpus.split(VAL_FRACTION)
    train_ids = torch.tensor(tok.encode(train.text), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    objective = CausalLM()
    return tok.vocab_size, [objective.make_batch(train_ids, BATCH_SIZE, BLOCK_SIZE, gen) for _ in range(n)]


def workbench_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The optimizer the workbench trainer builds, for any model (``build_optimizer`` only walks
    ``model.parameters()``: AdamW, decay on >=2-D params, none on biases and norms), so every
    contender gets exactly the same optimizer, whatever that function does now or later."""
    return build_optimizer(model, TrainConfig(lr=LR, weight_decay=WEIGHT_DECAY, beta1=BETAS[0], beta2=BETAS[1],
                                              optimizer="adamw"), "cpu")


def build_workbench(vocab_size: int, seed: int = 1337) -> Contender:
    """The workbench GPT (dropout 0, exact GELU) and the optimizer its trainer uses.

    Biases on, like GPT-2, so both models have the same parameters.
    """
    torch.manual_seed(seed)
    cfg = GPTConfig(n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, block_size=BLOCK_SIZE,
                    vocab_size=vocab_size, dropout=0.0, bias=True)
    model = GPT(cfg)
    model.train()
    return Contender("workbench", model, workbench_optimizer(model))


def build_hf_gpt2(vocab_size: int, activation: str = "gelu", name: str = "hf_gpt2",
                  seed: int = 1337) -> tuple[Contender, str]:
    """``GPT2LMHeadModel`` of the same shape, its default attention implementation, dropout 0.

    ``activation``: ``"gelu"`` (exact GELU, as ours: the fair comparison) or ``"gelu_new"``
    (GPT-2's default tanh approximation). ``use_cache=False``: a training step has no use for a
    KV cache and the workbench model builds none, so Hugging Face is not charged for one.
    Returns the contender and the attention implementation in use.
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=BLOCK_SIZE, n_embd=N_EMBD, n_layer=N_LAYER, n_head=N_HEAD,
                     activation_function=activation, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     use_cache=False, bos_token_id=None, eos_token_id=None)  # GPT-2's 50256 is outside a char vocab
    model = GPT2LMHeadModel(cfg)
    model.train()
    return Contender(name, model, workbench_optimizer(model)), str(model.config._attn_implementation)


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
    data: Path,
    steps: int = 80,
    rounds: int = 5,
    warmup: int = 10,
    block: int = 5,
    grad_clip: float = 1.0,
    gelu_new: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Interleaved timing; returns median tokens/s of each model and the ratios.

    Keys: ``workbench_tok_s``, ``hf_gpt2_tok_s`` (exact GELU), ``ratio`` (their ratio: the fair
    figure) and, with ``gelu_new``, ``hf_gpt2_gelu_new_tok_s`` and ``ratio_vs_gelu_new``.

    Within a round the models take turns every ``block`` steps (A B C A B C ..., on the same
    batches), so load from other processes hits all alike; rounds rotate which model goes
    first. Each model's throughput is ``batch * context / median step time`` over all its timed
    steps: a step stalled by another process moves a median, not a mean, and since the models
    sample the same stretches of time in equal shares, their medians are taken under the same
    conditions (a median over per-round figures can pick a different round for each model).
    Per-round figures and the median of the per-round ratios are logged as a cross-check.
    """
    n_batches = warmup + rounds * steps
    vocab_size, batches = load_batches(data, n_batches)
    wb = build_workbench(vocab_size)
    hf, attn_impl = build_hf_gpt2(vocab_size, "gelu", "hf_gpt2")
    contenders = [wb, hf]
    if gelu_new:
        contenders.append(build_hf_gpt2(vocab_size, "gelu_new", "hf_gpt2_gelu_new")[0])
    peers = contenders[1:]
    objective = CausalLM()
    n_params = {c.name: sum(p.numel() for p in c.model.parameters()) for c in contenders}
    log(f"data: {data} ({vocab_size} symbols); shape: {N_LAYER}L/{N_HEAD}H/{N_EMBD}, context {BLOCK_SIZE}, "
        f"batch {BATCH_SIZE}, biases on, dropout 0, AdamW lr={LR} betas={BETAS} wd={WEIGHT_DECAY}, "
        f"grad_clip={grad_clip}")
    log("activation: exact GELU in both (workbench nn.GELU; hf_gpt2 activation_function='gelu')"
        + ("; hf_gpt2_gelu_new = Hugging Face's default 'gelu_new', for reference only" if gelu_new else ""))
    log(f"params: {', '.join(f'{k}={v:,}' for k, v in n_params.items())}; workbench attention: SDPA "
        f"(is_causal=True); hf attention implementation: {attn_impl}")
    log(f"timing: {warmup} warm-up steps each, then {rounds} rounds x {steps} steps per model, taking turns "
        f"every {block} steps, first mover rotating")

    warm = batches[:warmup]
    for c in contenders:
        time_steps(c, objective, warm, grad_clip)

    tok_per_step = BATCH_SIZE * BLOCK_SIZE
    all_times: dict[str, list[float]] = {c.name: [] for c in contenders}
    round_ratios: dict[str, list[float]] = {p.name: [] for p in peers}
    for r in range(rounds):
        chunk = batches[warmup + r * steps : warmup + (r + 1) * steps]
        k = r % len(contenders)
        order = contenders[k:] + contenders[:k]
        times: dict[str, list[float]] = {c.name: [] for c in contenders}
        for i in range(0, steps, block):  # A B C A B C ... in blocks of `block` steps, same batches
            for c in order:
                times[c.name] += time_steps(c, objective, chunk[i : i + block], grad_clip)
        for name, t in times.items():
            all_times[name] += t
        tps = {name: tok_per_step / statistics.median(t) for name, t in times.items()}
        for p in peers:
            round_ratios[p.name].append(tps[wb.name] / tps[p.name])
        log(f"round {r + 1}/{rounds} ({order[0].name} first): "
            + " ".join(f"{name}={v:,.0f} tok/s" for name, v in tps.items())
            + " " + " ".join(f"ratio_vs_{p.name}={round_ratios[p.name][-1]:.3f}" for p in peers))

    tps = {name: tok_per_step / statistics.median(t) for name, t in all_times.items()}
    log("last training loss: " + " ".join(f"{c.name}={c.last_loss:.3f}" for c in contenders)
        + " (all must be learning)")
    log(f"median step time over all {rounds * steps} timed steps: "
        + ", ".join(f"{name} {1e3 * tok_per_step / v:.2f} ms" for name, v in tps.items())
        + "; median of the per-round ratios: "
        + ", ".join(f"vs {p.name} {statistics.median(round_ratios[p.name]):.3f}" for p in peers))
    res = {"workbench_tok_s": tps[wb.name], "hf_gpt2_tok_s": tps[hf.name], "ratio": tps[wb.name] / tps[hf.name],
           "ratio_per_round_median": statistics.median(round_ratios[hf.name])}
    if gelu_new:
        res["hf_gpt2_gelu_new_tok_s"] = tps["hf_gpt2_gelu_new"]
        res["ratio_vs_gelu_new"] = tps[wb.name] / tps["hf_gpt2_gelu_new"]
    return res


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: parse options, set threads, run :func:`benchmark`, print the summary line last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"tinyshakespeare.txt (required; from {URL}) or another text file")
    parser.add_argument("--steps", type=int, default=80, help="timed optimizer steps per model per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (order rotates)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per model before timing")
    parser.add_argument("--block", type=int, default=5, help="steps a model runs before the next takes its turn")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="global grad-norm clip, as the trainer (0 = off)")
    parser.add_argument("--no-gelu-new", action="store_true",
                        help="leave out the reference contender with Hugging Face's default gelu_new activation")
    args = parser.parse_args(argv)
    data = data_path_or_exit(args.data, "bench/throughput.py")

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}, device cpu")
    print("peer: Hugging Face GPT2LMHeadModel with activation_function='gelu' (exact GELU, same as ours)")
    res = benchmark(data, args.steps, args.rounds, args.warmup, args.block, args.grad_clip, not args.no_gelu_new)
    if "ratio_vs_gelu_new" in res:
        print(f"reference only (not like-for-like): hf_gpt2 with its default gelu_new activation "
              f"{res['hf_gpt2_gelu_new_tok_s']:.0f} tok/s, workbench/that = {res['ratio_vs_gelu_new']:.3f}")
    print(f"fair comparison (both exact GELU): workbench/hf_gpt2 = {res['ratio']:.3f}")
    print(f"throughput workbench_tok_s={res['workbench_tok_s']:.0f} hf_gpt2_tok_s={res['hf_gpt2_tok_s']:.0f} "
          f"ratio={res['ratio']:.3f}")


if __name__ == "__main__":
    main()
