"""Which process this is: accelerate's distributed-type name and this process's rank and world size."""

from __future__ import annotations

import torch


def distributed_type_name(value) -> str:
    """'FSDP' from DistributedType.FSDP, its str() ('DistributedType.FSDP') or any spelling of the name."""
    return str(value).split(".")[-1].upper()


def rank_and_world(accelerator=None) -> tuple[int, int]:
    """(rank, world) from the accelerator if given, else from an initialised process group, else (0, 1)."""
    if accelerator is not None:
        return accelerator.process_index, accelerator.num_processes
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
