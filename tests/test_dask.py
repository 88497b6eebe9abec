"""Generation on Dask distributed: real clusters of 2 worker processes, byte-identical stores."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.data.distributed import parse_scheduler, produce_on_dask, write_chunk_task
from synthgen.data.loading import store_digest
from synthgen.data.produce import produce, write_chunk
from synthgen.data.reader import open_store
from synthgen.data.schema import StoreMetadata
from synthgen.data.writer import StoreWriter
from synthgen.errors import InputError, SynthgenError
from synthgen.hand.baseline import BaselineRenderer
from synthgen.models import CrossingNets, CrossingNetsConfig, DiscriminatorConfig, GaussianStats, GeneratorConfig
from synthgen.sampling import PriorSource

runner = CliRunner()
CHUNK = 64
COUNT = 4 * CHUNK - 20  # four chunks, the last one partial


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """The creation time is the one attribute a rerun changes; pin it so whole stores compare."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")


@pytest.fixture(autouse=True)
def no_processes_left_behind():
    yield
    left = [p for p in psutil.Process().children(recursive=True)
            if "multiprocessing.resource_tracker" not in " ".join(p.cmdline())]
    gone, alive = psutil.wait_procs(left, timeout=10)
    assert not alive, [p.cmdline() for p in alive]


def tiny_model() -> CrossingNets:
    """A small random CrossingNets: the distributed path, not the model, is under test."""
    torch.manual_seed(0)
    config = CrossingNetsConfig(generator=GeneratorConfig(channels=4, fc_dim=64),
                                discriminator=DiscriminatorConfig(channels=4, metric_hidden=32))
    root = GaussianStats(mean=(0.1, -0.4, 0.2), cov=((0.3, 0.05, 0.0), (0.05, 0.2, 0.0), (0.0, 0.0, 0.1)))
    latent = GaussianStats.of(np.random.default_rng(0).normal(0.5, 0.3, (500, 20)))
    return CrossingNets(config, root_offset=root, latent=latent).eval()


def write_store(path: Path, source, metadata: StoreMetadata, scheduler: str | None, with_latent: bool = False) -> Path:
    writer = StoreWriter.create(path, COUNT, metadata, chunk_size=CHUNK, with_latent=with_latent)
    if scheduler is None:
        produce(writer, source)
        return writer.path
    return produce_on_dask(writer, source, scheduler)


def _page_faults_of_reused_buffers() -> int:
    """Minor page faults of allocating, touching and freeing 8 MB buffers 80 times in this process."""
    import resource

    buffers = [np.ones(1 << 21, np.float32) for _ in range(4)]  # the heap grows once
    del buffers
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        buffers = [np.ones(1 << 21, np.float32) for _ in range(4)]
        del buffers
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_two_workers_write_disjoint_chunks_of_one_store_byte_identically(tmp_path):
    from dask.distributed import Client, LocalCluster, get_task_stream

    renderer = BaselineRenderer(seed=4)
    sampler = PriorSource(tiny_model(), seed=4, chunk_size=CHUNK)
    jobs = {
        "render": (renderer, StoreMetadata(producer="render", seed=4, parameters=renderer.params()), False),
        "sample": (sampler, StoreMetadata(producer="sample", seed=4, parameters=sampler.params()), True),
    }
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, local_directory=tmp_path / "dask",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        for name, (source, metadata, latent) in jobs.items():
            with get_task_stream(client) as tasks:  # the scheduler's record of which worker ran what
                write_store(tmp_path / f"{name}-dask.zarr", source, metadata, cluster.scheduler_address, latent)
            ran_on = {task["worker"] for task in tasks.data if task["key"].startswith("write_chunk_task")}
            assert ran_on == set(client.scheduler_info()["workers"]) and len(ran_on) == 2, name
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_ set, which pins glibc's mmap threshold at
        # 128 kB: every write buffer was mapped afresh, ~50 page faults per sample. A run lifts it.
        faults = client.run(_page_faults_of_reused_buffers)
        assert all(count < 2000 for count in faults.values()), faults  # else ~160 000 each
        # An interrupted one-process run, finished on the cluster: only the missing chunks are sent.
        source, metadata, _ = jobs["render"]
        writer = StoreWriter.create(tmp_path / "resumed.zarr", COUNT, metadata, chunk_size=CHUNK)
        for chunk in (0, 2):
            write_chunk(writer, source, chunk)
        with get_task_stream(client) as tasks:
            produce_on_dask(writer, source, cluster.scheduler_address)
        assert sum(task["key"].startswith("write_chunk_task") for task in tasks.data) == 2
    for name, (source, metadata, latent) in jobs.items():
        single = write_store(tmp_path / f"{name}-one.zarr", source, metadata, None, latent)
        distributed = tmp_path / f"{name}-dask.zarr"
        assert store_digest(distributed) == store_digest(single), name  # every file, attributes included
        assert len(open_store(distributed)) == COUNT
    assert (open_store(tmp_path / "render-dask.zarr").depth[:] < 0.5).mean() > 0.05  # hands, not fill values
    assert store_digest(tmp_path / "resumed.zarr") == store_digest(tmp_path / "render-one.zarr")


def test_cli_render_on_a_local_cluster_matches_one_process(tmp_path):
    common = ["render", "--n", "150", "--seed", "9", "--chunk-size", str(CHUNK)]
    result = runner.invoke(app, [*common, "--out", str(tmp_path / "dask.zarr"), "--scheduler", "local:2"])
    assert result.exit_code == 0, result.output
    assert "wrote 150 samples" in result.stdout and "Dask local:2" in result.stdout
    assert runner.invoke(app, [*common, "--out", str(tmp_path / "one.zarr")]).exit_code == 0
    assert store_digest(tmp_path / "dask.zarr") == store_digest(tmp_path / "one.zarr")
    assert not (tmp_path / "dask.zarr.incomplete").exists()


def test_scheduler_specs_and_errors(tmp_path, monkeypatch):
    assert parse_scheduler("local:3") == 3 and parse_scheduler("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert parse_scheduler("node7:8786") == "node7:8786"
    for bad in ("local:0", "local:x", "local:", "dask", "tcp://host"):
        with pytest.raises(InputError, match="^scheduler "):
            parse_scheduler(bad)
    out = tmp_path / "s.zarr"
    for args, fragment in ((["--scheduler", "local:0"], "local:N"), (["--scheduler", "local:2", "--workers", "2"],
                                                                    "exclude each other")):
        result = runner.invoke(app, ["render", "--n", "10", "--out", str(out), *args])
        assert result.exit_code == 2 and fragment in result.stderr, result.output
        assert "Traceback" not in result.output and not out.exists()

    import synthgen.data.distributed as distributed

    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_S", 1)
    result = runner.invoke(app, ["render", "--n", "10", "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_a_worker_without_the_shared_filesystem_says_so(tmp_path):
    with pytest.raises(SynthgenError, match="filesystem every worker shares"):
        write_chunk_task(0, str(tmp_path / "elsewhere.zarr.incomplete"), BaselineRenderer(seed=0), "run")
