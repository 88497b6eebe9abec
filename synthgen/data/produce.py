"""Fill a store chunk by chunk, in this process or in worker processes.

A *chunk source* is any picklable object with `make_chunk(chunk_index, count)` returning
arrays `depth`, `pose`, `center` (and optionally `latent`) for that chunk, and optionally
`recycle(chunk)`, called once the chunk is written, to reuse its buffers. A source whose
`make_chunk` also takes `callback` (called with the samples each step made) says so with
`reports_steps = True`: progress then moves within chunks. Sources make each
chunk a pure function of (seed, chunk index), and each chunk is written by exactly one process
into its own files, so the store is byte-identical whatever the number of workers.

In every process, chunk k is written (float16 conversion, zstd, checksums, files) by a
background thread while chunk k + 1 is made: zstd, hashing and file I/O release the GIL.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Protocol

from synthgen import tuning
from synthgen.data.schema import SampleBatch
from synthgen.data.writer import StoreWriter
from synthgen.errors import SynthgenError

#: Seconds between checks that every worker process is still alive.
WORKER_POLL_S = 0.5


class ChunkSource(Protocol):
    def make_chunk(self, chunk_index: int, count: int): ...


def _to_batch(chunk) -> SampleBatch:
    return SampleBatch(depth=chunk.depth, pose=chunk.pose, center=chunk.center, latent=getattr(chunk, "latent", None),
                       joint_layout=getattr(chunk, "joint_layout", "hands2017"))


def write_chunk(writer: StoreWriter, source: ChunkSource, chunk_index: int) -> int:
    start, stop = writer.chunk_bounds(chunk_index)
    writer.write(start, _to_batch(source.make_chunk(chunk_index, stop - start)))
    return stop - start


def write_chunks(writer: StoreWriter, source: ChunkSource, chunks: Iterable[int],
                 on_progress: Callable[[int], None] | None = None, *, producers: int = 1,
                 progress_per_step: bool = False) -> None:
    """Make `chunks` in `producers` threads and write them in a background thread meanwhile.

    One producer (the default) makes the chunks in order in this thread. More producers make
    chunks side by side, each in its own thread with one torch thread (set for the duration and
    restored): the source must then be thread-safe, and the chunks are written in the order they
    are finished. At most `producers` made chunks wait for the writer, so memory stays at
    ~2 × producers + 1 chunks. `on_progress` gets each chunk's sample count once it is written
    (from the writer thread), or with `progress_per_step` is handed to `make_chunk` as its
    `callback` (samples generated, per pipeline step). The first failure, of any thread, stops
    the run and is raised here; chunks made before it are still written, for a resume.
    """
    made: queue.Queue = queue.Queue(maxsize=max(1, producers))
    failures: list[BaseException] = []  # in the order they happened
    write_failed = threading.Event()  # a failed producer still lets the chunks made before it be written
    todo, todo_lock = iter(chunks), threading.Lock()
    if on_progress is not None and progress_per_step and producers > 1:
        on_progress = _serialised(on_progress)  # called from every producer thread
    make_kwargs = {"callback": on_progress} if progress_per_step and on_progress else {}
    recycle = getattr(source, "recycle", None)  # optional: takes back a written chunk's buffers

    def write_as_made() -> None:
        while (item := made.get()) is not None:
            if write_failed.is_set():
                continue  # keep taking chunks, so that no producer blocks on a dead writer
            try:
                start, chunk = item
                writer.write(start, _to_batch(chunk))
                if recycle is not None:
                    recycle(chunk)
                if on_progress and not progress_per_step:
                    on_progress(len(chunk.depth))
            except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
                failures.append(error)
                write_failed.set()

    def make() -> None:
        try:
            while not failures:
                with todo_lock:
                    chunk_index = next(todo, None)
                if chunk_index is None:
                    return
                start, stop = writer.chunk_bounds(chunk_index)
                made.put((start, source.make_chunk(chunk_index, stop - start, **make_kwargs)))
        except BaseException as error:  # noqa: BLE001 - raised again in the caller's thread
            failures.append(error)

    writer_thread = threading.Thread(target=write_as_made, name="synthgen-chunk-writer", daemon=True)
    writer_thread.start()
    try:
        if producers <= 1:
            make()
        else:
            with _torch_threads(1):
                threads = [threading.Thread(target=make, name=f"synthgen-producer-{i}", daemon=True)
                           for i in range(producers)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
    finally:
        made.put(None)
        writer_thread.join()
    if failures:
        raise failures[0]


def _reports_steps(source: ChunkSource) -> bool:
    """Whether `source.make_chunk` takes a `callback` for progress within a chunk."""
    return bool(getattr(source, "reports_steps", False))


def _serialised(function: Callable[[int], None]) -> Callable[[int], None]:
    lock = threading.Lock()

    def call(count: int) -> None:
        with lock:
            function(count)

    return call


@contextmanager
def _torch_threads(count: int):
    """torch's intra-op thread count set to `count` while producing (if torch is loaded), then restored."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def produce(writer: StoreWriter, source: ChunkSource, *, workers: int = 1,
            on_progress: Callable[[int], None] | None = None, finalize: bool = True) -> None:
    """Write every chunk the store still lacks, then (by default) finalise it.

    Only missing chunks are produced, so calling this on a reopened unfinished store resumes it.
    With workers > 1, this process and workers - 1 spawned ones take chunks from one queue (a
    slower process simply takes fewer); this one starts at once, while the others import and
    set up. Spawned, not forked, so that neither OpenGL contexts, zarr's event-loop thread nor
    torch's thread pools are inherited in a broken state.
    """
    todo = writer.missing_chunks()
    if workers <= 1 or len(todo) <= 1:
        write_chunks(writer, source, todo, on_progress, progress_per_step=_reports_steps(source))
    else:
        _produce_in_processes(writer, source, todo, min(workers, len(todo)), on_progress)
    if finalize:
        writer.finalize()


@contextmanager
def _one_thread_each():
    """One torch / OpenMP / BLAS thread and one llvmpipe rasteriser thread per producing process,
    for processes, not threads, scale here: as the environment spawned workers start with, and
    for this process while it produces (torch's pool is resized, then restored)."""
    overrides = {"OMP_NUM_THREADS": "1", "LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", "1")}
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        with _torch_threads(1):
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _produce_in_processes(writer: StoreWriter, source: ChunkSource, todo: list[int], workers: int,
                          on_progress: Callable[[int], None] | None) -> None:
    """Produce `todo` in this process and `workers - 1` spawned ones. A helper's error is raised
    here, and so is a helper's death (killed, out of memory), instead of waiting for its chunk."""
    context = mp.get_context("spawn")
    tasks, events = context.Queue(), context.Queue()
    for chunk_index in todo:
        tasks.put(chunk_index)
    for _ in range(workers):
        tasks.put(None)  # one stop sign per producing process, this one included
    progress_lock, stop, failures = threading.Lock(), threading.Event(), []

    def report(count: int) -> None:  # from this process's writer thread and from the watcher
        if on_progress:
            with progress_lock:
                on_progress(count)

    def own_chunks():
        while not stop.is_set() and (chunk_index := tasks.get()) is not None:
            yield chunk_index

    helpers = [context.Process(target=_worker_main, args=(str(writer.working_path), source, tasks, events, rank),
                               name=f"synthgen-worker-{rank}", daemon=True) for rank in range(1, workers)]
    with _one_thread_each():
        for helper in helpers:
            helper.start()
        watcher = threading.Thread(target=_watch_helpers, args=(helpers, events, report, stop, failures),
                                   name="synthgen-worker-watcher", daemon=True)
        watcher.start()
        try:
            write_chunks(writer, source, own_chunks(), report, progress_per_step=_reports_steps(source))
            watcher.join()  # until every helper has finished, or one failed
        except BaseException:
            stop.set()
            raise
        finally:
            stop.set()
            watcher.join()
            for helper in helpers:
                if helper.is_alive():  # only after a failure: a finished helper exits by itself
                    helper.terminate()
                helper.join()
            tasks.cancel_join_thread()  # after a failure, chunks nobody will take must not block our exit
            tasks.close()
            events.close()
    if failures:
        raise failures[0]


def _watch_helpers(helpers: list, events, report: Callable[[int], None], stop: threading.Event,
                   failures: list[BaseException]) -> None:
    """Relay the helpers' progress until all have finished or `stop` is set (this process failed);
    on a helper's error or death, record it and set `stop` (this process then takes no more chunks)."""
    finished: set[int] = set()
    try:
        while len(finished) < len(helpers) and not stop.is_set():
            try:
                kind, rank, value = events.get(timeout=WORKER_POLL_S)
            except queue.Empty:
                dead = [rank for rank, helper in enumerate(helpers, start=1)
                        if rank not in finished and helper.exitcode is not None]
                if dead and events.empty():
                    code = helpers[dead[0] - 1].exitcode
                    raise SynthgenError(f"worker process {dead[0]} died (exit code {code}) before finishing its "
                                        f"chunks; the chunks already written are kept for --resume") from None
                continue
            if kind == "progress":
                report(value)
            elif kind == "failed":
                raise _worker_error(*value)
            elif kind == "finished":
                finished.add(rank)
    except BaseException as error:  # noqa: BLE001 - raised again by the producing thread
        failures.append(error)
        stop.set()


def _worker_error(payload: bytes, description: str) -> BaseException:
    """The exception a worker raised, or a SynthgenError describing it where it does not unpickle."""
    try:
        return pickle.loads(payload)
    except Exception:  # noqa: BLE001 - e.g. an exception class whose __init__ takes other arguments
        return SynthgenError(description)


def _worker_main(working_path: str, source: ChunkSource, tasks, events, rank: int) -> None:
    """One worker process (one renderer / model): chunks from `tasks` until its stop sign, each
    reported on `events` as it is made (per step) or written (per chunk)."""
    try:
        tuning.apply_inherited()
        writer = StoreWriter.open_existing(working_path)
        write_chunks(writer, source, iter(tasks.get, None), lambda count: events.put(("progress", rank, count)),
                     progress_per_step=_reports_steps(source))
        events.put(("finished", rank, None))
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which raises it
        description = f"worker process {rank}: {type(error).__name__}: {error}"
        try:
            payload = pickle.dumps(error)
        except Exception:  # noqa: BLE001 - an unpicklable error still reaches the user, in words
            payload = pickle.dumps(SynthgenError(description))
        events.put(("failed", rank, (payload, description)))
