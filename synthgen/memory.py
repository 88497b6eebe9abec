"""Large arrays that are filled once per chunk and reused, in ordinary 4 KiB pages.

numpy asks the kernel for transparent huge pages for every array of 4 MB or more. Faulting in
a fresh huge page needs 2 MB of contiguous memory that, on a VM, the host must back first, so
the first touch of a large array can take tens of times longer one run than the next, while 4 KiB
pages cost the same every time; passes over the memory afterwards cost the same either way
(docs/performance.md, "Huge pages", has the measurements). The buffers that
`sample` reuses chunk after chunk are touched fresh only a few times per run, and this makes
those few times predictable.
"""

from __future__ import annotations

import mmap
from collections import deque

import numpy as np


def small_page_array(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised, writable, C-contiguous array (like np.empty) in anonymous 4 KiB pages."""
    dtype = np.dtype(dtype)
    memory = mmap.mmap(-1, max(1, int(np.prod(shape)) * dtype.itemsize))
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # Linux; elsewhere the kernel's default
        memory.madvise(mmap.MADV_NOHUGEPAGE)
    return np.ndarray(shape, dtype, buffer=memory)


def is_whole_small_page_array(array: np.ndarray) -> bool:
    """Whether `array` is all of a `small_page_array` (not a view of part of one): what a buffer
    pool may take back."""
    return isinstance(array.base, mmap.mmap) and len(array.base) == max(1, array.nbytes) and array.flags.c_contiguous


class BufferPool:
    """Whole `small_page_array`s handed back for reuse, so that a producer touches fresh memory
    only for the chunks in flight at once. Thread-safe (deque operations are atomic); keeps at
    most `size` buffers; pickles empty (worker processes start their own)."""

    def __init__(self, size: int):
        self._free: deque[np.ndarray] = deque(maxlen=size)

    def take(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A buffer of this shape and dtype (contents undefined): a handed-back one, else a new one."""
        try:
            buffer = self._free.pop()
        except IndexError:
            buffer = None
        if buffer is None or buffer.shape != tuple(shape) or buffer.dtype != np.dtype(dtype):
            buffer = small_page_array(tuple(shape), dtype)
        return buffer

    def give_back(self, array: np.ndarray) -> None:
        """Hand back an array nobody will read again; ignored unless it is a whole pool-made buffer."""
        if is_whole_small_page_array(array):
            self._free.append(array)

    def __getstate__(self) -> dict:
        return {"size": self._free.maxlen}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["size"])
