"""Batch memory a reader reuses: a small ring of batch-sized slots, in shared memory inside a
DataLoader worker, so a worker's batch crosses to the training process as a reference to its
slot instead of fresh shared memory per batch (synthgen.data.dataset's docstring has the numbers).

Shared memory is made through torch's storage sharing (`_typed_storage()._new_shared`), a private
torch API: this module is the one place that depends on it.
"""

from __future__ import annotations

import copy
import math
import weakref

import numpy as np
import torch
from torch.utils.data import get_worker_info


def _new_tensor(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor, in shared memory inside a DataLoader worker (no copy on hand-over)."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    numel = math.prod(shape)
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel, device="cpu")
    return torch.empty(0, dtype=dtype).new(storage).view(shape)


SLOT_HEADER = 64  # bytes before a slot's batch: its two holder flags, then padding (fields stay aligned)
HELD_BY_TRAINER, HELD_BY_READER = 0, 1  # header byte k is 1 while a batch over the slot is alive there
RING_SLOTS = 8  # batches alive at once per reader: DataLoader prefetch (4 in `loader()`) + in use + arriving


def _pack(shapes: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> tuple[tuple, int]:
    """A batch's byte layout: fields (name, byte offset, shape, dtype) packed in order at 64-byte
    boundaries, and the bytes they take."""
    fields, at = [], 0
    for name, (shape, dtype) in shapes.items():
        fields.append((name, at, shape, dtype))
        at += -(-math.prod(shape) * dtype.itemsize // 64) * 64
    return tuple(fields), at


def _release(flags: np.ndarray, at: int, keep: object) -> None:
    """Clear a slot's holder flag; `keep` is whatever had to stay alive as long as the batch."""
    flags[at] = 0


def _slot_batch(memory: torch.Tensor, start: int, layout: tuple[tuple, int], holder: int,
                keep: object = None) -> dict[str, torch.Tensor]:
    """Tensors laid out as `layout` over the slot at byte `start` of `memory` (uint8). The slot's
    `holder` flag stays 1 until no tensor of the batch (nor any view of one) is alive in this
    process: they share one storage, made over `payload`, which it keeps alive until the last goes."""
    fields, nbytes = layout
    flags = memory.numpy()
    payload = flags[start + SLOT_HEADER:start + SLOT_HEADER + nbytes]
    flags[start + holder] = 1
    weakref.finalize(payload, _release, flags, start + holder, keep)
    data = torch.from_numpy(payload)
    return {name: data[offset:offset + math.prod(shape) * dtype.itemsize].view(dtype).view(shape)
            for name, offset, shape, dtype in fields}


class _Mapped(dict):
    """The rings of one DataLoader's workers mapped in the training process (data pointer -> ring)."""


_MAPPED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # the DataLoader's base seed -> _Mapped


def _receive(memory: torch.Tensor, start: int, layout: tuple[tuple, int], loader: int | None) -> dict:
    """A worker's batch (`_SharedBatch`) unpickled in the training process, as tensors over its slot.

    Every batch from one DataLoader keeps all its workers' rings alive here, so that PyTorch,
    which maps a shared storage again once no tensor holds it, maps each ring once rather than
    once per batch (page faults: ~2.5 µs of CPU a sample, measured); the last batch gone unmaps them.
    """
    mapped = None
    if loader is not None:  # a ring's slot, not memory of its own
        mapped = _MAPPED.get(loader)
        if mapped is None:
            mapped = _MAPPED[loader] = _Mapped()
        mapped[memory.data_ptr()] = memory
    return _slot_batch(memory, start, layout, HELD_BY_TRAINER, keep=mapped)


class _BatchRing:
    """One reader's batch memory: `RING_SLOTS` batch-sized slots in one block (shared memory in a
    DataLoader worker, touched only as used), a slot taken again once its last batch is gone from
    the reader and from the training process; a batch that finds none free gets memory of its own.

    Why: PyTorch hands a worker's tensors over in fresh shared memory, whose pages the kernel
    zeroes in the worker, maps again in the trainer and frees after: ~20-35 µs of CPU a sample
    in each process, more than reading the sample (measured). A ring's pages are made once and
    stay mapped in both processes.
    """

    def __init__(self, slot_bytes: int) -> None:
        self.slot_bytes = SLOT_HEADER + slot_bytes
        self.memory = _new_tensor((RING_SLOTS * self.slot_bytes,), torch.uint8)
        self.flags = self.memory.numpy()
        info = get_worker_info()
        self.loader = None if info is None else info.seed - info.id  # shared by the DataLoader's workers

    def batch(self, layout: tuple[tuple, int]) -> dict[str, torch.Tensor]:
        """Uninitialised tensors laid out as `layout` (at most the slot's bytes) in a free slot."""
        for start in range(0, len(self.flags), self.slot_bytes):
            if not self.flags[start:start + 2].any():
                memory, loader = self.memory, self.loader
                break
        else:
            memory, start, loader = _new_tensor((self.slot_bytes,), torch.uint8), 0, None
        tensors = _slot_batch(memory, start, layout, HELD_BY_READER)
        return _SharedBatch(tensors, (memory, start, layout, loader)) if memory.is_shared() else tensors


class _SharedBatch(dict):
    """A batch made in a DataLoader worker: a dict of its tensors there, pickled (by the
    DataLoader, to the training process) as its slot, which `_receive` maps there as tensors.
    A batch changed in the worker (a value replaced, a key added), or sent again while the
    training process still holds it, pickles as plain tensors."""

    def __init__(self, tensors: dict[str, torch.Tensor], slot: tuple) -> None:
        super().__init__(tensors)
        self._made, self._slot = tensors, slot

    def __copy__(self) -> _SharedBatch:  # the DataLoader's default_convert copies the batch
        clone = _SharedBatch(self._made, self._slot)
        clone.update(self)
        return clone

    def __deepcopy__(self, memo: dict) -> dict:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self):
        memory, start = self._slot[:2]
        flags = memory.numpy()
        changed = self.keys() != self._made.keys() or any(self[key] is not v for key, v in self._made.items())
        if changed or flags[start + HELD_BY_TRAINER]:
            return dict, (dict(self),)
        flags[start + HELD_BY_TRAINER] = 1  # before the reader may see the slot free
        return _receive, self._slot
