"""Which torchrun rank this process is, and the few collective calls babelir needs.

Sharded encoding exchanges data through the file system only, so ranks need their rank,
the world size, a barrier and a device; nothing here moves tensors between processes.
"""

from __future__ import annotations

import os


def rank_and_world() -> tuple[int, int]:
    """(rank, world size): an initialised process group, else torchrun's env, else (0, 1)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed() -> tuple[int, int]:
    """Join torchrun's process group if launched by it; returns (rank, world size).

    Only barriers are exchanged (shards go through the file system), so gloo serves on
    CPU and GPU machines alike.
    """
    import torch.distributed as dist

    rank, world = rank_and_world()
    if world > 1 and not dist.is_initialized() and "MASTER_ADDR" in os.environ:
        dist.init_process_group("gloo")
    return rank, world


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rank_device() -> str | None:
    """``cuda:<LOCAL_RANK>`` for a torchrun rank on a GPU machine, else None (auto)."""
    import torch

    if torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return None


def in_process_group() -> bool:
    """True under an initialised ``torch.distributed`` process group."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()
