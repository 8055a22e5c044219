"""Process-group plumbing for `train` under torchrun (DistributedDataParallel); a no-op when run alone.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); we use NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> DistContext:
    """Join the process group torchrun describes, or return a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if world <= 1:
        dev = torch.device("cuda" if want_cuda else "cpu") if device_name == "auto" else torch.device(device_name)
        return DistContext(device=dev)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    return DistContext(rank, world, local, dev)


def teardown(ctx: DistContext) -> None:
    """Leave the group together: no rank closes its connections while another still uses them.

    The DDP wrapper's reducer holds the process group and its pending work; collecting it first lets gloo's
    worker threads be joined here, with the interpreter alive, rather than at interpreter shutdown."""
    if ctx.enabled and dist.is_initialized():
        gc.collect()
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def all_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum of a list of floats over all ranks (float64)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def all_max(ctx: DistContext, value: float) -> float:
    return value if not ctx.enabled else max(all_gather(ctx, value))


def all_gather(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (picklable objects)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
