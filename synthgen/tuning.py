"""Process-wide settings for data-producing commands: one opt-in, `tune_process()`.

The library never changes its process behind a caller's back; the `synthgen` commands that
produce data call `tune_process()` once at start, the worker processes they spawn apply the
same settings (`apply_inherited`, which reads $SYNTHGEN_TUNED, set here), and a Dask worker
applies them when it takes its first chunk task. Two settings:

* Idle OpenMP threads sleep instead of spinning (OMP_WAIT_POLICY=PASSIVE, unless the user set
  it; libgomp reads it once, when torch loads it, so this must run before torch is imported).
  On a shared CPU a spinning thread holds the core its team-mate needs: `sample` at load ~4 ran
  176 samples/s spinning and 618 passive; on an idle machine passive costs ~5 %
  (docs/performance.md).
* glibc keeps freed heap memory (glibc only). llvmpipe allocates and frees megabytes of binning
  memory on every draw, and writing a chunk (float16 conversion, zstd, shard assembly) buffers of
  0.1-64 MB. Handed back, that memory returned as fresh zeroed pages: ~60 page faults and ~10 %
  of the CPU time per rendered hand with glibc's default trim threshold. Setting that threshold
  also freezes glibc's mmap threshold, at 128 kB where nothing had raised it yet (Dask's workers
  start with MALLOC_TRIM_THRESHOLD_ set): every buffer above it was then mapped and unmapped per
  use, ~50 page faults and ~300 µs of CPU per sample written. Both thresholds are therefore set
  (32 MB is glibc's largest mmap threshold). It only keeps memory the process has used.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

INHERITED = "SYNTHGEN_TUNED"


def tune_process() -> None:
    """Apply both settings to this process and mark them for the processes it starts."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    _keep_freed_heap_memory()
    os.environ[INHERITED] = "1"


def apply_inherited() -> None:
    """In a worker process: apply the settings if the process that started it did."""
    if os.environ.get(INHERITED) == "1":
        tune_process()


def _keep_freed_heap_memory() -> None:
    libc = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc), "mallopt", None) if libc else None
    if mallopt is not None:
        m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
        mallopt(m_trim_threshold, 256 << 20)
        mallopt(m_mmap_threshold, 32 << 20)
