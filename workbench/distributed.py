"""Training on several processes with ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node=N -m workbench train ...`` starts N copies of the CLI; each reads
its place from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``). Rank 0
alone touches the store (the run row, metrics, checkpoints, snapshots); every rank builds the
same model (same seed) and the same data, and DDP averages the gradients.

**The global batch is split, not multiplied**: ``train.batch_size`` is the batch of one
optimizer step whatever the number of processes. Every rank draws the step's whole batch from
the step's seeded generator (as one process would) and keeps its own contiguous slice
(:func:`shard`), so N processes see exactly the examples one process sees, and with an
objective whose loss is a mean over equal-sized slices (causal LM) the same loss curve up to
float rounding. Gradients averaged over ranks equal the gradient of the mean over the batch.

Backends: NCCL on CUDA (one GPU per process: ``cuda:LOCAL_RANK``), gloo on CPU. Multi-node:
``torchrun --nnodes=2 --node_rank=0|1 --rdzv_backend=c10d --rdzv_endpoint=HOST:29500
--nproc_per_node=N -m workbench train ...`` on each machine, the store on rank 0's machine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
import torch.distributed as torch_dist

from .config import ConfigError


@dataclass(frozen=True)
class Dist:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the store, checkpoints and snapshots."""
        return self.rank == 0


SINGLE = Dist()


def from_env(env: dict[str, str] | None = None) -> Dist:
    """The place torchrun gave this process, or :data:`SINGLE` outside torchrun.

    >>> from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    Dist(rank=1, world=2, local_rank=1)
    >>> from_env({})
    Dist(rank=0, world=1, local_rank=0)
    """
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Dist(int(env["RANK"]), world, int(env.get("LOCAL_RANK", env["RANK"])))


def init(device_type: str = "cpu") -> Dist:
    """Join the process group torchrun set up (once; NCCL on CUDA, gloo otherwise) and return
    this process's place; :data:`SINGLE` outside torchrun."""
    d = from_env()
    if d.enabled and not torch_dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(d.local_rank)
        torch_dist.init_process_group(backend=backend)
    return d


def close() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def check_batch(batch_size: int, world: int) -> None:
    """ConfigError naming ``batch_size`` unless the global batch splits evenly over ``world`` processes."""
    if batch_size % world:
        raise ConfigError("batch_size", f"{batch_size} cannot be split evenly over {world} processes; "
                                        f"make it a multiple of {world} (it is the global batch)")


def shard(batch: Any, d: Dist) -> Any:
    """Rank ``d.rank``'s contiguous slice of a batch: every tensor field whose first dimension is
    the batch is cut to ``[rank * b, (rank + 1) * b)`` with ``b = B / world``.

    >>> from workbench.objectives.base import Batch
    >>> b = Batch(torch.arange(8).view(4, 2), torch.zeros(4, 2))
    >>> shard(b, Dist(1, 2, 1)).input_ids.tolist()
    [[4, 5], [6, 7]]
    """
    if not d.enabled:
        return batch
    B = batch.input_ids.size(0)
    if B % d.world:
        raise ValueError(f"a batch of {B} cannot be split evenly over {d.world} processes")
    b = B // d.world
    lo, hi = d.rank * b, (d.rank + 1) * b
    cut = {}
    for f in fields(batch):
        value = getattr(batch, f.name)
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == B:
            cut[f.name] = value[lo:hi]
    return replace(batch, **cut)


def broadcast(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every rank (a run id, a stop request)."""
    if not d.enabled:
        return obj
    box = [obj]
    torch_dist.broadcast_object_list(box, src=0)
    return box[0]


def mean(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of ``t`` over ranks (a logged loss)."""
    if not d.enabled:
        return t
    t = t.detach().clone().float()
    torch_dist.all_reduce(t)
    return t / d.world


def all_true(flag: torch.Tensor, d: Dist) -> torch.Tensor:
    """True on every rank when ``flag`` is true on every rank (still finite everywhere)."""
    if not d.enabled:
        return flag
    t = flag.to(torch.int32).clone()
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MIN)
    return t.bool()


def barrier(d: Dist) -> None:
    if d.enabled:
        torch_dist.barrier()
