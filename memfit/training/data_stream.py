"""The training data as an endless stream of loader batches that a resumed run re-enters where it stopped, and that
yields only blocks of the length the plan was made for."""

from __future__ import annotations

import itertools
from typing import Optional

import torch


class DataStream:
    """Loader batches forever, epoch after epoch, remembering (epoch, batches consumed in it). Each epoch's order is a
    function of (seed, epoch) through accelerate's seedable sampler, so a resumed run re-creates the epoch and skips the
    consumed batches (collated, never run through the model) instead of storing indices."""

    def __init__(self, loader, epoch: int = 0, consumed: int = 0, seq_len: Optional[int] = None):
        self.loader, self.epoch, self.consumed, self._it = loader, epoch, consumed, None
        self.seq_len = seq_len  # the planned block length: every batch taken is checked against it

    def take(self, n: int) -> list[dict[str, torch.Tensor]]:
        return [self._next() for _ in range(n)]

    def _next(self) -> dict[str, torch.Tensor]:
        while True:
            if self._it is None:
                if hasattr(self.loader, "set_epoch"):
                    self.loader.set_epoch(self.epoch)
                self._it = iter(self.loader)
                for _ in itertools.islice(self._it, self.consumed):
                    pass
            batch = next(self._it, None)
            if batch is not None:
                self.consumed += 1
                check_block_length(batch["input_ids"][0], self.seq_len)
                return batch
            self._it, self.epoch, self.consumed = None, self.epoch + 1, 0


def check_block_length(block, planned: Optional[int]) -> None:
    """The loop trains only blocks of the length the plan measured: a longer one could OOM, a shorter one wastes the
    planned memory, and either way the plan's numbers would not describe the run."""
    if planned is not None and len(block) != planned:
        raise ValueError(f"training blocks have {len(block)} tokens but the plan was made for {planned}: re-plan at "
                         f"--seq-len {len(block)}, or pack the data at {planned}")
