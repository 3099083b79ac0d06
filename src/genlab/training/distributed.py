"""Multi-process training under ``torchrun``: process-group setup and a replica consistency check."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from genlab.training.tensor_tree import map_tensors


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_distributed(wait_for_others: bool = True) -> None:
    """Leave the process group. ``wait_for_others=False`` after an error: the other ranks may be waiting in a
    collective this one will never join, and a barrier would hang the whole job instead of letting it fail."""
    if dist.is_available() and dist.is_initialized():
        # Every rank finishes its last collective before any tears gloo down: a rank that destroyed the group
        # while another was still in one aborted now and then ("terminate called without an active exception").
        if wait_for_others:
            dist.barrier()
        dist.destroy_process_group()


def max_replica_difference(module: torch.nn.Module) -> float:
    """Largest absolute difference of any parameter between this rank and rank 0 (0.0 when in sync)."""
    flat = torch.cat([p.detach().reshape(-1).float() for p in module.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    difference = (flat - reference).abs().max()
    dist.all_reduce(difference, op=dist.ReduceOp.MAX)
    return float(difference)


def gather_to_rank_zero(value: Any) -> list[Any] | None:
    """Every rank's ``value`` (tensors moved to the CPU), in rank order, on rank 0; None on the other ranks.

    A collective: every rank must call it at the same point.
    """
    value = _on_cpu(value)
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def _on_cpu(value: Any) -> Any:
    return map_tensors(lambda tensor: tensor.detach().cpu(), value)


def all_ranks_agree(flag: bool, device: torch.device) -> bool:
    """True only if ``flag`` is true on every rank (used to stop all ranks together on a bad loss)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0.5)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if ``flag`` is true on any rank (used to roll every rank back together when one sees a divergence)."""
    return not all_ranks_agree(not flag, device)
