"""A training DataLoader whose position is saved in the checkpoint, so a resumed run is exact.

Lightning stores the ``state_dict()`` of every training loader that has one (its stateful
dataloader protocol) in the checkpoint, and hands it back with ``load_state_dict()`` before the
resumed run draws its first batch. The state is the epoch and the number of batches of it already
trained; the :class:`~crosspose.data.dataset.ShardedEpochSampler` then yields the rest of that
epoch's permutation, so a run killed at any step (mid-epoch included) continues with exactly the
batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch.utils.data import DataLoader

from crosspose.core.errors import CheckpointError
from crosspose.data.dataset import ShardedEpochSampler

__all__ = ["ResumableDataLoader"]


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ShardedEpochSampler` with ``state_dict`` / ``load_state_dict``.

    Args:
        *args, **kwargs: as for :class:`torch.utils.data.DataLoader` (``sampler`` must be a
            :class:`ShardedEpochSampler`).
        trainer: returns the Lightning trainer driving the loader, or None. Its progress counters
            say how many batches of the epoch were *trained* (the loader only knows how many it
            handed out) and which epoch the next iterator belongs to.
    """

    def __init__(self, *args: Any, trainer: Callable[[], Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, ShardedEpochSampler):
            raise TypeError("ResumableDataLoader needs a ShardedEpochSampler")
        self._trainer = trainer or (lambda: None)
        self._handed_out = 0

    def _fit_loop(self) -> Any:
        trainer = self._trainer()
        return getattr(trainer, "fit_loop", None)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]  # a generator over the base iterator
        sampler: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        loop = self._fit_loop()
        if loop is not None and sampler._resume is None:
            # Lightning creates the first iterator before it sets the sampler's epoch, and worker
            # processes draw their indices at creation: give the sampler the epoch Lightning will set
            sampler.set_epoch(int(loop.epoch_progress.current.processed))
        self._handed_out = sampler._resume[1] // (self.batch_size or 1) if sampler._resume else 0
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Epoch and batches trained so far in it (Lightning's count when a trainer drives the loader)."""
        loop = self._fit_loop()
        done = self._handed_out
        if loop is not None:
            done = int(loop.epoch_loop.batch_progress.current.processed)
        sampler: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        return {"sampler": sampler.state_dict(samples_done=done * int(self.batch_size or 1)),
                "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`; the batch size must be the saved one (positions are in samples)."""
        if state.get("batch_size") != self.batch_size:
            raise CheckpointError(f"the checkpoint was trained with batch size {state.get('batch_size')}, "
                                  f"this run uses {self.batch_size}: an exact resume needs the same")
        sampler: ShardedEpochSampler = self.sampler  # type: ignore[assignment]
        position = dict(state["sampler"])
        if position["samples_done"] >= len(self) * int(self.batch_size or 1):
            # the epoch was trained to its end (a partial last batch is dropped): the next one is next
            position["epoch"], position["samples_done"] = position["epoch"] + 1, 0
        sampler.load_state_dict(position)
