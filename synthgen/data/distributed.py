"""Produce a store's chunks on a Dask distributed cluster: local processes or many machines.

The same chunk sources as synthgen.data.produce (`make_chunk(chunk_index, count)`, each chunk a
pure function of the seed and its index) are shipped once to every worker, and each task writes
one whole chunk into the store's working directory `<out>.incomplete`. A chunk is one shard file
per array (1024 samples, holding 64-sample inner chunks), so two tasks never write the same file:
the store is byte-identical to a single-process run whatever the number of workers or machines
(on the same software and CPU type: a model's arithmetic may differ across CPU families). The
process that started the run finalises the store once every chunk's marker exists.

Schedulers: `local:N` starts a LocalCluster of N single-threaded worker processes for the run;
`tcp://HOST:PORT` (or `HOST:PORT`) connects to a running `dask scheduler`, whose workers must
have synthgen installed and see the store's directory at the same path (a shared filesystem).
"""

from __future__ import annotations

import copy
import gc
import logging
import os
import re
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from synthgen import tuning
from synthgen.data.produce import ChunkSource, write_chunk
from synthgen.data.writer import StoreWriter
from synthgen.errors import InputError, SynthgenError

LOCAL_PREFIX = "local:"
MAX_LOCAL_WORKERS = 256
CONNECT_TIMEOUT_S = 20
_ADDRESS = re.compile(r"^((tcp|tls|ucx|inproc)://)?[\w.\-\[\]:]+:\d+$")


def parse_scheduler(spec: str) -> int | str:
    """`local:N` → N worker processes; a scheduler address → that address; InputError otherwise."""
    spec = spec.strip()
    if spec.startswith(LOCAL_PREFIX):
        count = spec[len(LOCAL_PREFIX):]
        if not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise InputError(f"{spec}: expected local:N with N in 1..{MAX_LOCAL_WORKERS}", option="scheduler")
        return int(count)
    if not _ADDRESS.match(spec):
        raise InputError(f"{spec!r}: expected local:N or a scheduler address such as tcp://HOST:8786", option="scheduler")
    return spec


@contextmanager
def dask_client(spec: str) -> Iterator:
    """A connected dask.distributed Client for `spec`; a local cluster lives as long as the block.

    Local workers are single-threaded processes (renderers and models are per process), with no
    dashboard and their scratch space in a temporary directory that is removed afterwards.
    """
    from dask.distributed import Client, LocalCluster

    target = parse_scheduler(spec)
    if isinstance(target, int):
        os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe: one render thread per process
        with tempfile.TemporaryDirectory(prefix="synthgen-dask-") as scratch, \
                LocalCluster(n_workers=target, threads_per_worker=1, processes=True, dashboard_address=None,
                             local_directory=scratch, silence_logs=logging.ERROR) as cluster, \
                Client(cluster) as client:
            yield client
        return
    try:
        client = Client(target, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        raise SynthgenError(f"cannot reach the Dask scheduler at {target}: {error}") from None
    with client:
        yield client


# --- on the workers ------------------------------------------------------------------------
# Every chunk of a process is produced in one thread of our own, on a private copy of the
# source: an OpenGL context (the renderer) works only in the thread it was made current in,
# whatever threads Dask runs tasks in, and `release_task` frees the copy in that same thread.

_producer: ThreadPoolExecutor | None = None
_run: dict = {}  # this process's current run: id, writer, source


def _in_producer_thread(function, *args):
    global _producer
    if _producer is None:
        _producer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthgen-producer")
    return _producer.submit(function, *args).result()


def _write(chunk_index: int, working_path: str, source: ChunkSource, run_id: str) -> int:
    if _run.get("id") != run_id:
        if not Path(working_path).is_dir():
            raise SynthgenError(f"{working_path} does not exist on worker host {socket.gethostname()}: the store must "
                                f"be on a filesystem every worker shares, at the same path")
        os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe: one render thread per process
        import torch

        torch.set_num_threads(1)
        # A worker running synthgen's chunk tasks is a data process like `render`'s own, wherever it
        # was started (a remote `dask worker` inherits nothing); Dask starts workers with
        # MALLOC_TRIM_THRESHOLD_ set, which synthgen.tuning undoes.
        tuning.tune_process()
        _release(_run.get("id"))
        _run.update(id=run_id, writer=StoreWriter.open_existing(working_path), source=copy.deepcopy(source))
    return write_chunk(_run["writer"], _run["source"], chunk_index)


def _release(run_id: str | None) -> None:
    if run_id is not None and _run.get("id") == run_id:
        _run.clear()
        gc.collect()  # the source's renderer / model go now, in this thread


def write_chunk_task(chunk_index: int, working_path: str, source: ChunkSource, run_id: str) -> int:
    """One Dask task: produce and write chunk `chunk_index` of run `run_id`; returns its sample count."""
    return _in_producer_thread(_write, chunk_index, working_path, source, run_id)


def release_task(run_id: str) -> None:
    """Free this worker's copy of run `run_id`'s source (renderer, model)."""
    _in_producer_thread(_release, run_id)


# --- on the client -------------------------------------------------------------------------


def produce_on_dask(writer: StoreWriter, source: ChunkSource, scheduler: str, *,
                    on_progress: Callable[[int], None] | None = None, finalize: bool = True) -> Path:
    """Write every chunk the store still lacks on the cluster `scheduler`, then finalise.

    Only missing chunks are submitted, so this also resumes an interrupted run (of any kind).
    The first failing task cancels the rest and its error is raised here.
    """
    todo = writer.missing_chunks()
    if todo:
        from dask.distributed import as_completed

        working, run_id = str(writer.working_path.resolve()), uuid.uuid4().hex
        with dask_client(scheduler) as client:
            shipped = client.scatter(source, broadcast=True, hash=False)  # once per worker, not per task
            futures = [client.submit(write_chunk_task, chunk, working, shipped, run_id, pure=False) for chunk in todo]
            try:
                for future in as_completed(futures):
                    count = future.result()
                    if on_progress:
                        on_progress(count)
            finally:
                client.cancel(futures)
                workers = list(client.scheduler_info()["workers"])
                client.gather([client.submit(release_task, run_id, workers=[worker], allow_other_workers=False,
                                             pure=False) for worker in workers], errors="skip")
    return writer.finalize() if finalize else writer.working_path
