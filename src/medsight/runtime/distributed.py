"""Training on several processes or machines with PyTorch DistributedDataParallel.

``medsight train CONFIG --nproc N`` starts N local processes through PyTorch's own launcher
(``torch.distributed.run``, the engine behind ``torchrun``); on a cluster, ``torchrun`` starts
``python -m medsight.cli train ...`` on every node itself (docs/distributed.md). Either way
each process finds its rank in the environment that the launcher sets (RANK, WORLD_SIZE,
LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT) and joins one process group: gloo on CPU,
NCCL on GPU.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist

from medsight.errors import ConfigError, MedsightError
from medsight.runtime.device import available_cores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group; ``world_size == 1`` means no group at all."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device | None:
        """One GPU per local process when there are GPUs; None: the default (CPU)."""
        if self.enabled and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return None

    def threads(self) -> int:
        """CPU threads per process: the cores shared among this machine's processes."""
        return max(1, available_cores() // self.local_world_size)

    def shard(self, x: Any) -> Any:
        """This rank's contiguous part of a global batch (tensors, or lists of per-sample targets)."""
        if not self.enabled:
            return x
        if isinstance(x, torch.Tensor):
            return torch.tensor_split(x, self.world_size)[self.rank]
        if isinstance(x, (list, tuple)):
            bounds = torch.tensor_split(torch.arange(len(x)), self.world_size)[self.rank]
            return type(x)(x[i] for i in bounds.tolist())
        raise TypeError(f"cannot shard a batch of type {type(x).__name__}")

    def all_sum(self, values: Sequence[float]) -> list[float]:
        if not self.enabled:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def from_environment() -> Distributed:
    """Join the process group the launcher describes in the environment (once per process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    ctx = Distributed(rank=int(os.environ["RANK"]), world_size=world,
                      local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                      local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend)
        log.debug("rank %d of %d joined the %s process group", ctx.rank, ctx.world_size, backend)
    return ctx


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def launch_local(nproc: int, module_args: Sequence[str]) -> None:
    """Run ``python -m medsight.cli <module_args>`` on ``nproc`` local processes (torchrun)."""
    from torch.distributed.run import main as torchrun

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, available_cores() // nproc)))
    try:
        torchrun(["--standalone", f"--nproc_per_node={nproc}", "-m", "medsight.cli", *module_args])
    except Exception as exc:  # torchrun's ChildFailedError: the workers already printed why
        raise MedsightError(f"distributed training failed ({type(exc).__name__}); "
                            "see the workers' messages above") from None
