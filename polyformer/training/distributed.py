"""Running the same training script on one device or many, unchanged.

`torchrun` (or any launcher that sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT)
starts one process per device. `init_distributed` reads those variables and joins the process
group: NCCL when the process has a CUDA device, gloo on CPU. Without them it returns a
single-process `DistInfo` and every helper here is a no-op, so the trainer has one code path.

The model is wrapped by `wrap_model`: DDP (every rank holds the whole model; gradients are
averaged across ranks in backward) or FSDP2 (`fully_shard`: parameters, gradients and optimizer
state are sharded; gradients are also averaged). Either way the per-rank loss is scaled by
`world_size` so that the average equals the gradient of the combined batch.

Checkpoints are written by rank 0 alone. Full (unsharded) model and optimizer state dicts are
gathered onto rank 0 with torch.distributed.checkpoint's state-dict helpers and, on resume,
broadcast from rank 0 — so only rank 0 needs to read the checkpoint files.

Launching (the training command itself is unchanged):

    polyformer pretrain ...                                        # one GPU, or CPU
    torchrun --standalone --nproc_per_node 8 -m polyformer.cli.main pretrain ...   # 8 GPUs, DDP
    ... pretrain --fsdp ...                                        # FSDP2 instead of DDP
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank R --rdzv_backend c10d \
        --rdzv_endpoint HOST:29500 -m polyformer.cli.main pretrain ...       # two machines

With several machines the run directory must be on a filesystem every node can reach, or at
least rank 0's; the other ranks never read or write checkpoints.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from polyformer import runtime
from polyformer.core.block import Block
from polyformer.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank, local rank and world size from the launcher's environment variables."""
    try:
        return DistInfo(
            rank=int(os.environ.get("RANK", 0)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
        )
    except ValueError as err:
        raise ConfigError(f"RANK / LOCAL_RANK / WORLD_SIZE must be integers ({err})") from None


def resolve_device(device: str, info: DistInfo) -> torch.device:
    """This rank's device (`polyformer.runtime.resolve_device`), made the current CUDA device when it is one."""
    resolved = runtime.resolve_device(device, info.local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    return resolved


def init_distributed(device: str = "auto", timeout_s: float = 1800.0) -> tuple[DistInfo, torch.device]:
    """Join the launcher's process group (if any) and pick this rank's device."""
    info = env_info()
    resolved = resolve_device(device, info)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = {"backend": backend, "timeout": timedelta(seconds=timeout_s)}
        if resolved.type == "cuda":
            kwargs["device_id"] = resolved
        dist.init_process_group(**kwargs)
    return info, resolved


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op on one process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo, device: torch.device, fsdp: bool = False) -> nn.Module:
    """The module to run forward/backward on: the model itself, DDP around it, or FSDP2-sharded.

    With FSDP2 the model is sharded in place (each block, then the root), so the returned module
    is the same object; with DDP it is a wrapper whose `.module` is the model.
    """
    if not info.enabled:
        return model
    if fsdp:
        return _fully_shard(model, info, device)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def _fully_shard(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    for tensor in [*model.parameters(), *model.buffers()]:  # start every rank from rank 0's weights
        dist.broadcast(tensor.data, src=0)
    mesh = init_device_mesh(device.type, (info.world_size,))
    for module in model.modules():
        if isinstance(module, Block):  # one FSDP unit per Transformer block
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_fsdp(module: nn.Module) -> bool:
    return hasattr(module, "set_requires_gradient_sync")


def gradient_sync(module: nn.Module, sync: bool) -> AbstractContextManager:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if isinstance(module, nn.parallel.DistributedDataParallel) and not sync:
        return module.no_sync()
    if is_fsdp(module):
        module.set_requires_gradient_sync(sync)
    return nullcontext()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks in place (no-op on one process); returns it."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's object on every rank."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's object, in rank order, on every rank."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


# ---- full state dicts -------------------------------------------------------------------------
def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded model state on CPU: complete on rank 0, possibly empty on other ranks."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The unsharded optimizer state keyed by parameter name: complete on rank 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    info: DistInfo,
) -> None:
    """Load full state dicts read by rank 0 (other ranks pass empty dicts and receive them)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=info.enabled)
    set_model_state_dict(model, model_state, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=options)
