"""Gathering evaluation results across processes without double counting."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["gather_rows"]


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a (N_rank, ...) tensor from every rank (N may differ per rank).

    Evaluation shards are not padded (see ShardedEpochSampler), so each rank may hold a different
    number of rows; they are padded to the largest for all_gather and trimmed again.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    world = dist.get_world_size()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    largest = int(max(s.item() for s in sizes))
    padded = torch.zeros((largest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    chunks = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(chunks, padded)
    return torch.cat([c[: int(s.item())] for c, s in zip(chunks, sizes, strict=True)])
