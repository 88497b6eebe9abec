"""Producing a store chunk by chunk: background writes, worker processes, failures that surface.

The sources here are cheap numpy functions of (seed, chunk index), so these tests exercise the
production machinery (writer thread, spawned workers, error and death reporting) in seconds;
the renderer's own byte identity across workers is tested in test_dask.py and test_robustness.py.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from synthgen.conventions import CROP_SIZE, NUM_JOINTS
from synthgen.data.produce import produce, write_chunks
from synthgen.data.schema import StoreMetadata
from synthgen.data.writer import StoreWriter
from synthgen.errors import InputError, SynthgenError

CHUNK = 64
COUNT = 5 * CHUNK - 7  # five chunks, the last one partial


@dataclass
class Chunk:
    depth: np.ndarray
    pose: np.ndarray
    center: np.ndarray


@dataclass
class NoiseSource:
    """Each chunk a pure function of (seed, chunk index); `fail_at` chunk raises `error`, `die_at`
    chunk kills its spawned worker process with SIGKILL, as the kernel's OOM killer would (in this
    process, which produces chunks too, it is made like any other)."""

    seed: int = 3
    fail_at: int | None = None
    error: str = "SynthgenError"
    die_at: int | None = None

    def make_chunk(self, chunk_index: int, count: int) -> Chunk:
        if chunk_index == self.fail_at:
            raise {"SynthgenError": SynthgenError, "InputError": InputError, "ValueError": ValueError}[self.error](
                f"chunk {chunk_index} refused")
        if chunk_index == self.die_at and multiprocessing.parent_process() is not None:
            os.kill(os.getpid(), signal.SIGKILL)
        rng = np.random.default_rng([self.seed, chunk_index])
        depth = rng.uniform(-1, 1, (count, CROP_SIZE, CROP_SIZE)).astype(np.float32)
        center = rng.uniform(300, 600, (count, 3)).astype(np.float32)
        return Chunk(depth, (center[:, None] + rng.normal(0, 30, (count, NUM_JOINTS, 3))).astype(np.float32), center)


META = StoreMetadata(producer="render", seed=3, created="2024-01-01T00:00:00+00:00", parameters={})


def new_writer(path: Path) -> StoreWriter:
    return StoreWriter.create(path, COUNT, META, chunk_size=CHUNK)


def store_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_workers_write_the_same_bytes_as_one_process_and_report_every_sample(tmp_path):
    one, counts_one = new_writer(tmp_path / "one.zarr"), []
    produce(one, NoiseSource(), on_progress=counts_one.append)
    three, counts_three = new_writer(tmp_path / "three.zarr"), []
    produce(three, NoiseSource(), workers=3, on_progress=counts_three.append)

    assert store_files(tmp_path / "three.zarr") == store_files(tmp_path / "one.zarr")
    assert counts_one == [CHUNK] * 4 + [CHUNK - 7]  # written in order, one report per chunk
    assert sorted(counts_three) == sorted(counts_one)


def test_the_worker_environment_does_not_leak_into_the_caller(tmp_path, monkeypatch):
    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    produce(new_writer(tmp_path / "s.zarr"), NoiseSource(), workers=2)
    assert "LP_NUM_THREADS" not in os.environ


def test_writing_overlaps_making_and_keeps_order_and_bounded_memory(tmp_path, monkeypatch):
    """The writer thread runs one chunk behind the maker; never more than one made chunk waits, so
    at most three chunks are in memory (being written, waiting, being made)."""
    writer, events = new_writer(tmp_path / "s.zarr"), []
    source = NoiseSource()
    original_write = writer.write

    def slow_write(start, batch):
        events.append(("write-start", start // CHUNK))
        time.sleep(0.05)
        original_write(start, batch)
        events.append(("write-end", start // CHUNK))

    def make(chunk_index, count):
        events.append(("make", chunk_index))
        return NoiseSource.make_chunk(source, chunk_index, count)

    monkeypatch.setattr(writer, "write", slow_write)
    monkeypatch.setattr(source, "make_chunk", make)
    write_chunks(writer, source, range(5))

    assert [i for kind, i in events if kind == "write-end"] == [0, 1, 2, 3, 4]
    # chunk 1 was made while chunk 0 was being written
    assert events.index(("make", 1)) < events.index(("write-end", 0))
    for k in range(3, 5):  # at most one chunk waits: k is made only once the writer is done with k - 3
        assert events.index(("write-end", k - 3)) < events.index(("make", k))
    assert writer.missing_chunks() == []


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("error", ["SynthgenError", "InputError", "ValueError"])
def test_a_failing_chunk_raises_its_own_error_and_keeps_the_chunks_before_it(tmp_path, workers, error):
    writer = new_writer(tmp_path / "s.zarr")
    expected = {"SynthgenError": SynthgenError, "InputError": InputError, "ValueError": ValueError}[error]
    with pytest.raises(expected, match="chunk 3 refused"):
        produce(writer, NoiseSource(fail_at=3, error=error), workers=workers)
    assert 3 in writer.missing_chunks()
    if workers == 1:  # in order: everything before the failure was written, nothing after
        assert writer.missing_chunks() == [3, 4]
    assert not (tmp_path / "s.zarr").exists()  # not finalised
    # A worker stopped mid-write may leave a *.partial file; resuming clears it and writes the rest.
    produce(StoreWriter.resume(tmp_path / "s.zarr", COUNT, META, chunk_size=CHUNK), NoiseSource())
    reference = new_writer(tmp_path / "reference.zarr")
    produce(reference, NoiseSource())
    assert store_files(tmp_path / "s.zarr") == store_files(tmp_path / "reference.zarr")


def test_a_failing_write_stops_the_run_and_is_raised(tmp_path, monkeypatch):
    writer, made = new_writer(tmp_path / "s.zarr"), []
    source = NoiseSource()
    monkeypatch.setattr(writer, "write", lambda start, batch: (_ for _ in ()).throw(OSError(28, "No space left")))
    monkeypatch.setattr(source, "make_chunk", lambda i, n: made.append(i) or NoiseSource.make_chunk(source, i, n))
    with pytest.raises(OSError, match="No space left"):
        write_chunks(writer, source, range(5))
    assert len(made) < 5  # stopped early instead of making every chunk for a dead writer


def test_a_worker_that_dies_is_reported_instead_of_waited_for(tmp_path):
    """Every chunk kills the spawned worker that takes it; this process makes the ones it takes."""
    writer = StoreWriter.create(tmp_path / "s.zarr", 30 * CHUNK, META, chunk_size=CHUNK)
    start = time.perf_counter()
    with pytest.raises(SynthgenError, match=r"worker process 1 died \(exit code -9\).*--resume"):
        produce(writer, DyingSource(), workers=2)
    assert time.perf_counter() - start < 25  # this process stopped taking chunks (30 would take 30 s)
    assert writer.missing_chunks()


@dataclass
class DyingSource(NoiseSource):
    """Kills any spawned worker process at its first chunk; in this process each chunk takes a
    second, so that the worker gets some while it still starts up."""

    def make_chunk(self, chunk_index: int, count: int) -> Chunk:
        if multiprocessing.parent_process() is None:
            time.sleep(1.0)
        return NoiseSource(die_at=chunk_index).make_chunk(chunk_index, count)


@dataclass
class ThreadCountingSource(NoiseSource):
    """Refuses to make a chunk unless its process runs torch and llvmpipe on one thread each."""

    def make_chunk(self, chunk_index: int, count: int) -> Chunk:
        import torch

        threads = (torch.get_num_threads(), os.environ.get("LP_NUM_THREADS"))
        if threads != (1, "1"):
            raise SynthgenError(f"worker threads (torch, llvmpipe) = {threads}")
        return super().make_chunk(chunk_index, count)


def test_producing_processes_use_one_thread_each(tmp_path, monkeypatch):
    """Processes are what scales on this machine: a worker with a torch pool or several llvmpipe
    threads of its own would oversubscribe the cores the other workers use. This process, one of
    the producers, gets its threads and environment back afterwards."""
    import torch

    monkeypatch.delenv("LP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        produce(new_writer(tmp_path / "s.zarr"), ThreadCountingSource(), workers=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "s.zarr").is_dir() and os.environ["OMP_NUM_THREADS"] == "4"
    assert "LP_NUM_THREADS" not in os.environ


class TorchThreadRecordingSource(NoiseSource):
    """Records, per chunk, the producing thread and its torch thread count."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: dict[int, tuple[str, int]] = {}

    def make_chunk(self, chunk_index: int, count: int) -> Chunk:
        import threading

        import torch

        self.seen[chunk_index] = (threading.current_thread().name, torch.get_num_threads())
        time.sleep(0.02)  # long enough for the other producers to take chunks meanwhile
        return super().make_chunk(chunk_index, count)


def test_producer_threads_write_the_same_bytes_with_one_torch_thread_each(tmp_path):
    import torch

    reference = new_writer(tmp_path / "one.zarr")
    produce(reference, NoiseSource())
    source, counts = TorchThreadRecordingSource(), []
    writer = new_writer(tmp_path / "three.zarr")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        write_chunks(writer, source, range(5), counts.append, producers=3)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    writer.finalize()

    assert store_files(tmp_path / "three.zarr") == store_files(tmp_path / "one.zarr")
    assert sorted(counts) == sorted([CHUNK] * 4 + [CHUNK - 7])  # every chunk once
    assert {torch_threads for _, torch_threads in source.seen.values()} == {1}
    assert len({name for name, _ in source.seen.values()}) > 1  # made side by side


def test_a_failing_producer_thread_stops_the_others_and_its_error_is_raised(tmp_path):
    writer = new_writer(tmp_path / "s.zarr")
    with pytest.raises(InputError, match="chunk 1 refused"):
        write_chunks(writer, NoiseSource(fail_at=1, error="InputError"), range(5), producers=2)
    assert 1 in writer.missing_chunks() and 0 not in writer.missing_chunks()  # made before it: written
    produce(StoreWriter.resume(tmp_path / "s.zarr", COUNT, META, chunk_size=CHUNK), NoiseSource())
    produce(new_writer(tmp_path / "reference.zarr"), NoiseSource())
    assert store_files(tmp_path / "s.zarr") == store_files(tmp_path / "reference.zarr")
