"""torch.distributed set-up: works under ``torchrun`` with no code changes.

``setup()`` joins the process group when ``torchrun`` (or a launcher setting ``WORLD_SIZE``,
``RANK``, ``MASTER_ADDR``...) started this process, picking NCCL on CUDA and gloo otherwise.
When deepfit created the group it also tears it down at exit — with a ``barrier()`` first:
without it, gloo's teardown aborts intermittently when one rank exits before the other.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from deepfit.errors import DistributedError

__all__ = ["DistInfo", "setup", "teardown", "is_main_process", "barrier", "single_process_only", "world_size",
           "from_rank_0", "buffers_from_rank_0"]

_OWNED = False


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise DistributedError(f"environment variable {name}={value!r} is not an integer") from e


def setup(device: torch.device | None = None) -> DistInfo:
    """Join (or describe) the process group. Safe to call more than once."""
    global _OWNED
    if dist.is_available() and dist.is_initialized():
        return DistInfo(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=_env_int("LOCAL_RANK", 0),
            local_world_size=_env_int("LOCAL_WORLD_SIZE", 1),
        )
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo()
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise DistributedError(
                f"WORLD_SIZE={world} but {name} is not set; launch with `torchrun --nproc_per_node N script.py`"
            )
    use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    backend = "nccl" if use_cuda else "gloo"
    local_rank = _env_int("LOCAL_RANK", 0)
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    _OWNED = True
    atexit.register(teardown)
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        local_world_size=_env_int("LOCAL_WORLD_SIZE", world),
    )


def single_process_only(what: str) -> None:
    """Refuse, with a clear error, to run ``what`` under ``torchrun``: a task that does not split
    its work across ranks would have every rank size, train and write the same run (and a rank
    that decided differently would hang the others)."""
    world = _env_int("WORLD_SIZE", 1)
    if world > 1:
        raise DistributedError(f"{what} runs in one process only, but WORLD_SIZE={world} (started by torchrun?); "
                               "run it without torchrun, or train your model with deepfit.Learner, which runs "
                               "under torchrun (as every built-in task does)")


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    """Barrier, then destroy the process group (only if deepfit created it)."""
    global _OWNED
    if _OWNED and dist.is_available() and dist.is_initialized():
        # Free finished collectives' work objects (DDP's reducer holds some) while the interpreter
        # is whole: gloo threads that release Python-owned tensors during finalisation abort
        # ("terminate called without an active exception"; seen once on a busy machine).
        import gc

        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
    _OWNED = False


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def world_size() -> int:
    """Processes in the group (1 when torch.distributed is not initialised)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def from_rank_0(value: Any) -> Any:
    """Rank 0's ``value`` (a picklable object) on every rank; ``value`` itself in one process.

    For what each rank would decide differently — anything read from the clock (an ensemble
    size, whether another model starts, an epoch count) — so that every rank trains the same
    models: a rank that decided alone would leave the others waiting in a collective. Every
    rank must call it at the same point.
    """
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def buffers_from_rank_0(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm statistics) to every rank (nothing in one process).

    DDP broadcasts rank 0's buffers before each forward, so during training the other ranks'
    own updates are overwritten at the next step; after the last step (and after restoring best
    weights) they are not, and each rank's running statistics would end slightly different.
    Rank 0's are those its checkpoints and the artifact hold.
    """
    if world_size() > 1:
        with torch.no_grad():
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

