"""The training data as an endless stream of loader batches that a resumed run re-enters where it stopped."""

from __future__ import annotations

import itertools

import torch


class DataStream:
    """Loader batches forever, epoch after epoch, remembering (epoch, batches consumed in it). Each epoch's order is a
    function of (seed, epoch) through accelerate's seedable sampler, so a resumed run re-creates the epoch and skips the
    consumed batches (collated, never run through the model) instead of storing indices."""

    def __init__(self, loader, epoch: int = 0, consumed: int = 0):
        self.loader, self.epoch, self.consumed, self._it = loader, epoch, consumed, None

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
                return batch
            self._it, self.epoch, self.consumed = None, self.epoch + 1, 0
