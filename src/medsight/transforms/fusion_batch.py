"""A batch of images with their clinical table rows, made by ``transforms.clinical.with_clinical``
and read by the fusion model (``models/fusion.py``); below both, so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class FusionBatch:
    """Images ``(N, C, *spatial)`` with their table rows ``(N, F)``, used like an image batch.

    ``to`` moves both (the memory format and dtype apply to the images); indexing and ``len``
    act on the case axis; ``ndim``/``shape`` are the images'.
    """

    images: torch.Tensor
    table: torch.Tensor

    def to(self, *args: Any, **kwargs: Any) -> "FusionBatch":
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        return FusionBatch(self.images.to(*args, **kwargs),
                           self.table.to(device=device, dtype=dtype, non_blocking=non_blocking))

    def __getitem__(self, index: Any) -> "FusionBatch":
        return FusionBatch(self.images[index], self.table[index])

    def __len__(self) -> int:
        return len(self.images)

    @property
    def ndim(self) -> int:
        return self.images.ndim

    @property
    def shape(self) -> torch.Size:
        return self.images.shape

    def contiguous(self) -> "FusionBatch":
        return FusionBatch(self.images.contiguous(), self.table.contiguous())

    def tensor_split(self, sections: int) -> list["FusionBatch"]:
        """Per-process slices under DistributedDataParallel (``Distributed.shard``)."""
        idx = torch.tensor_split(torch.arange(len(self)), sections)
        return [self[i] for i in idx]
