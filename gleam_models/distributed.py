"""The little DDP plumbing GLEAM-C needs: who am I, and gather features with their gradients.

The same code runs as one plain process or under `torchrun` (RANK/WORLD_SIZE/LOCAL_RANK/
MASTER_ADDR/MASTER_PORT in the environment): gloo on CPU, NCCL on GPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def setup_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group described by the environment (a no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's rows.

    Written with all_reduce rather than reduce_scatter because gloo (CPU) has no reduce_scatter.
    Every rank computes the same full-batch loss, so the summed gradient divided by DDP's
    averaging equals the single-process gradient exactly.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = dist.get_rank() * ctx.rows
        return grad[start:start + ctx.rows]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Rows of every rank, in rank order; gradients flow back to each rank's own rows."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def gather_rows(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """All ranks' rows without gradients; ranks may hold different row counts."""
    if not info.enabled:
        return x
    counts = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(info.world_size)]
    dist.all_gather(counts, torch.tensor([x.shape[0]], device=x.device))
    most = max(int(c) for c in counts)
    padded = torch.zeros((most, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(info.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(c)] for p, c in zip(parts, counts)])
