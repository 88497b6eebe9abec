"""Fill a store chunk by chunk, in this process or in worker processes.

A *chunk source* is any picklable object with `make_chunk(chunk_index, count)` returning
arrays `depth`, `pose`, `center` (and optionally `latent`) for that chunk. Sources make each
chunk a pure function of (seed, chunk index), and each chunk is written by exactly one process
into its own files, so the store is byte-identical whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from typing import Protocol

from synthgen.data.schema import SampleBatch
from synthgen.data.writer import StoreWriter


class ChunkSource(Protocol):
    def make_chunk(self, chunk_index: int, count: int): ...


def _to_batch(chunk) -> SampleBatch:
    return SampleBatch(depth=chunk.depth, pose=chunk.pose, center=chunk.center, latent=getattr(chunk, "latent", None),
                       joint_layout=getattr(chunk, "joint_layout", "hands2017"))


def write_chunk(writer: StoreWriter, source: ChunkSource, chunk_index: int) -> int:
    start, stop = writer.chunk_bounds(chunk_index)
    writer.write(start, _to_batch(source.make_chunk(chunk_index, stop - start)))
    return stop - start


_worker_state: tuple[StoreWriter, ChunkSource] | None = None


def _init_worker(working_path: str, source: ChunkSource) -> None:
    """One renderer / model per process, one thread each: processes, not threads, scale here."""
    global _worker_state
    import torch

    torch.set_num_threads(1)
    _worker_state = (StoreWriter.open_existing(working_path), source)


def _work(chunk_index: int) -> int:
    writer, source = _worker_state
    return write_chunk(writer, source, chunk_index)


def produce(writer: StoreWriter, source: ChunkSource, *, workers: int = 1,
            on_progress: Callable[[int], None] | None = None, finalize: bool = True) -> None:
    """Write every chunk the store still lacks, then (by default) finalise it.

    Only missing chunks are produced, so calling this on a reopened unfinished store resumes it.
    Worker processes are spawned (not forked) so that neither OpenGL contexts nor torch's
    thread pools are inherited in a broken state.
    """
    todo = writer.missing_chunks()
    if workers <= 1 or len(todo) <= 1:
        for chunk_index in todo:
            done = write_chunk(writer, source, chunk_index)
            if on_progress:
                on_progress(done)
    else:
        os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe: one render thread per process
        ctx = mp.get_context("spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(str(writer.working_path), source)) as pool:
            for done in pool.imap_unordered(_work, todo):
                if on_progress:
                    on_progress(done)
    if finalize:
        writer.finalize()
