"""A reusable scratch buffer shared by the engine and the fingerprint sketch."""

from __future__ import annotations

import torch


class Workspace:
    """One reusable float32 buffer, grown on demand and viewed into any shape: fresh large
    allocations cost page faults on every call, and one buffer caps the engine's memory."""

    def __init__(self) -> None:
        self._flat: torch.Tensor | None = None

    def get(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        n = 1
        for d in shape:
            n *= d
        if self._flat is None or self._flat.numel() < n or self._flat.device != device:
            self._flat = torch.empty(n, dtype=torch.float32, device=device)
        return self._flat[:n].view(shape)

    def clear(self) -> None:
        self._flat = None
