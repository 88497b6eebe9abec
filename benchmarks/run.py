"""synthgen's speed targets, measured in one run: prints a table, writes benchmarks/results/run.json.

    python benchmarks/run.py [--quick] [--only render,sample,estimate,score,reader]

Each row is the median of `--repeats` timings. This machine is shared and its timings swing
2-5x with other load, so compare rows of one run, and read
the load average printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SYNTHGEN = [sys.executable, str(ROOT / "cli.py")]
sys.path.insert(0, str(ROOT))
from synthgen.tuning import tune_process  # noqa: E402

DEFAULT_MODEL = ROOT / "synthgen" / "assets" / "models" / "default"
TRAIN_STORE = ROOT / "data" / "train-clean.zarr"


def _median_time(fn, repeats: int, clock=time.perf_counter) -> float:
    """Median seconds of fn by `clock`: wall time, or time.process_time for the CPU time of
    every thread of this process (zarr encodes in its own threads)."""
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def _interleaved_medians(fns: dict, repeats: int) -> dict:
    """Median seconds of each fn, timed in turns (A, B, A, B, ...) so that load swings hit all alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _cli_timed_with_peak_rss(*args: str) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MB) of one `synthgen` run.

    The peak is the child's own VmHWM (/proc, polled until it exits; exec resets it), not
    wait4's ru_maxrss, which also counts the pages the child shared with this large process
    between fork and exec (~300 MB more here).
    """
    start = time.perf_counter()
    process = subprocess.Popen([*SYNTHGEN, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_kb = 0
    status_file = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            lines = status_file.read_text().splitlines()
            peak_kb = max([peak_kb] + [int(line.split()[1]) for line in lines if line.startswith("VmHWM:")])
        except (OSError, ValueError, IndexError):
            pass
        time.sleep(0.02)
    if process.returncode:
        raise RuntimeError(f"synthgen {' '.join(args)} failed")
    return time.perf_counter() - start, peak_kb / 1024


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cli(*args: str, env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([*SYNTHGEN, *args], check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def _backends() -> list[str]:
    """EGL, and OSMesa where it can run (libOSMesa and PyOpenGL >= 3.1.7, beyond pyrender's pin)."""
    import ctypes.util
    import importlib.metadata

    version = tuple(int(p) for p in importlib.metadata.version("PyOpenGL").split(".")[:3] if p.isdigit())
    return ["egl"] + (["osmesa"] if ctypes.util.find_library("OSMesa") and version >= (3, 1, 7) else [])


def bench_render(n: int, repeats: int) -> list[dict]:
    """The mesh baseline in-process (wall and CPU time) and end to end (`synthgen render`, 1 and 2
    workers, whole commands and their start-up apart)."""
    from synthgen.conventions import CAMERAS
    from synthgen.hand import camera
    from synthgen.hand.baseline import BaselineRenderer
    from synthgen.hand.kinematics import forward_kinematics
    from synthgen.hand.mesh import HandMesh, pose_vertices
    from synthgen.hand.prior import sample_poses
    from synthgen.hand.render import DepthRenderer
    from synthgen.hand.scene import SceneConfig

    rows = []
    v2 = BaselineRenderer(seed=0, scene=SceneConfig())
    v2.make_chunk(0, 8)
    t = _median_time(lambda: v2.make_chunk(1, 1024), repeats)
    rows.append({"name": "render v2 (every component): in-process, 1 chunk of 1024", "value": 1024 / t,
                 "unit": "frames/s", "target": ">= 500"})
    source = BaselineRenderer(seed=0)  # the bare hand (--scene clean)
    source.make_chunk(0, 8)  # context, mesh upload
    cpu_times = []

    def one_chunk():
        start = time.process_time()
        source.make_chunk(1, 1024)
        cpu_times.append(time.process_time() - start)

    t = _median_time(one_chunk, repeats)
    rows.append({"name": "render clean: in-process, 1 chunk of 1024", "value": 1024 / t, "unit": "frames/s",
                 "target": ">= 500, >= 800"})
    cpu_us_per_frame = statistics.median(cpu_times) / 1024 * 1e6
    rows.append({"name": "render clean: in-process, CPU time (all threads)", "unit": "us/frame",
                 "value": cpu_us_per_frame, "target": "1e6 / this = frames/s per core"})
    pose = sample_poses(np.random.default_rng(0), 1024, CAMERAS["hands2017"])
    vertices = pose_vertices(HandMesh.load(), pose).numpy()
    crops = [camera.crop_intrinsics(center) for center in camera.hand_center(forward_kinematics(pose)[0].numpy())]
    with DepthRenderer(128, 128) as renderer:
        renderer.render_batch(vertices[:64], crops[:64])
        t = _median_time(lambda: renderer.render_batch(vertices, crops), repeats)
    rows.append({"name": "render: DepthRenderer.render_batch, 1024 hands", "value": 1024 / t, "unit": "frames/s",
                 "target": "the OpenGL part of the row above"})
    # Whole commands (baseline v2, render's default), interleaved; a run of two 64-sample chunks
    # (one per worker) measures a command's start-up and shutdown, and (n - 128) / (t(n) - t(128))
    # its rate once running.
    small = 128
    # "egl1": one process whose llvmpipe rasterises in one thread (LP_NUM_THREADS=1), as each
    # worker process does: the per-process rate that 2 workers should double.
    backends = _backends()
    variants = [(backend, workers, count) for backend in backends for workers in (1, 2)
                for count in (small, n)] + [("egl1", 1, small), ("egl1", 1, n)]
    with tempfile.TemporaryDirectory() as tmp:
        t = _interleaved_medians({(backend, workers, count): lambda b=backend, w=workers, c=count: _cli(
            "render", "--n", str(c), "--out", f"{tmp}/r.zarr", "--overwrite", "--workers", str(w),
            *(["--chunk-size", "64"] if c == small else []),
            env={"SYNTHGEN_GL": "egl", "LP_NUM_THREADS": "1"} if b == "egl1" else {"SYNTHGEN_GL": b})
            for backend, workers, count in variants}, repeats)
    rate = {key: (n - small) / (t[key + (n,)] - t[key + (small,)]) for key in {v[:2] for v in variants}}
    for backend in backends:
        for workers in (1, 2):
            whole, start_up = t[backend, workers, n], t[backend, workers, small]
            rows += [{"name": f"render: CLI, {n} samples, {backend}, {workers} worker(s)", "value": n / whole,
                      "unit": "frames/s", "target": "2 workers faster than 1"},
                     {"name": f"render: CLI, {backend}, {workers} worker(s), excl. start-up", "value":
                      rate[backend, workers], "unit": "frames/s", "target": ">= 500 per process"},
                     {"name": f"render: CLI start-up + shutdown, {backend}, {workers} worker(s)",
                      "value": start_up * 1000, "unit": "ms", "target": f"(a {small}-sample run)"}]
    rows += [{"name": "render: CLI, egl, 1 worker, 1 llvmpipe thread, excl. start-up", "value": rate["egl1", 1],
              "unit": "frames/s", "target": "a worker process's configuration"},
             {"name": "render: 2 workers / 1 (1 llvmpipe thread each)", "value": rate["egl", 2] / rate["egl1", 1],
              "unit": "x", "target": "near-linear with processes: ~2 on 2 cores"},
             # What all cores could render at the in-process CPU cost per frame (writing not
             # counted): how close the processes come to it is how linearly they scale.
             {"name": f"render: 2 workers / {os.cpu_count()} cores at in-process CPU per frame",
              "value": rate["egl", 2] / (os.cpu_count() * 1e6 / cpu_us_per_frame),
              "unit": "x", "target": "near-linear with processes: ~1"}]
    return rows


def bench_sample(n: int, big_n: int, repeats: int) -> list[dict]:
    """The depth generator alone on one 256-sample block, per precision path, and end-to-end
    `synthgen sample` (--precision auto, the default, and fp32, the exact path), interleaved."""
    import copy

    from synthgen.models.inference import DepthGenerator
    from synthgen.sampling import load_model
    from synthgen.sampling.pipeline import SamplingPipeline, bf16_supported
    from synthgen.sampling.prior import CropCenters

    model = load_model(DEFAULT_MODEL)
    exact = copy.deepcopy(model).eval()
    if model.config.generator.arch == "paper":  # as SamplingPipeline runs it: same bits
        exact.generator.to(memory_format=torch.channels_last)
    paths = {"fp32 (exact)": exact.generate_depth, "fp32-fast": DepthGenerator(model)}
    if bf16_supported():
        paths["bf16"] = DepthGenerator(model, torch.bfloat16)
    codes = torch.randn(256, model.config.code_dim)
    centers = torch.from_numpy(CropCenters().sample(256, np.random.default_rng(0)))  # as `sample` places crops
    with torch.inference_mode():
        for generate in paths.values():
            generate(codes, center=centers)
        t = _interleaved_medians({name: lambda g=generate: g(codes, center=centers) for name, generate in paths.items()},
                                 max(repeats, 5))
    rows = [{"name": f"sample: bare generator, {name}, batch 256", "value": 256 / t[name], "unit": "samples/s",
             "target": ">= 1500"} for name in paths]
    # The path `sample --precision auto` runs (the fastest within its depth tolerance: the bare
    # rate an end-to-end run can approach), as `sample` runs it on a CPU: one block per producer
    # thread, one torch thread each.
    producers = torch.get_num_threads()
    fastest_name = SamplingPipeline(model).use_precision("auto").precision
    fastest = paths["fp32 (exact)" if fastest_name == "fp32" else fastest_name]
    blocks = [torch.randn(256, model.config.code_dim) for _ in range(producers)]

    def bare_split() -> float:
        """Samples/s of the fastest path, one block per thread, one torch thread each."""
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(producers) as pool, torch.inference_mode():
                list(pool.map(lambda block: fastest(block, center=centers), blocks))
                return 256 * producers / _median_time(
                    lambda: list(pool.map(lambda block: fastest(block, center=centers), blocks)), max(repeats, 5))
        finally:
            torch.set_num_threads(producers)  # the count it had

    def bare_rates() -> tuple[float, float]:
        """Samples/s of the fastest path: one block with all threads; one block per thread."""
        with torch.inference_mode():
            whole = 256 / _median_time(lambda: fastest(codes, center=centers), max(repeats, 5))
        return whole, bare_split()

    rows.append({"name": f"sample: bare generator, {fastest_name}, {producers} threads x 1",
                 "value": bare_split(), "unit": "samples/s", "target": "the CLI's configuration"})
    rows += _sample_cost_split(model, repeats)
    # Whole commands, interleaved, and a 128-sample run of each for start-up + shutdown (imports,
    # model load, the precision check): (n - 128) / (t(n) - t(128)) is the rate once running.
    small = 128
    with tempfile.TemporaryDirectory() as tmp:
        t = _interleaved_medians({(p, c): lambda p=p, c=c: _cli("sample", "--n", str(c), "--out", f"{tmp}/{p}.zarr",
                                                              "--overwrite", "--precision", p)
                                  for p in ("auto", "fp32") for c in (small, n)}, repeats)
        # The main job, `repeats` times, each between two measurements of the bare generator: the
        # machine's speed drifts within minutes, so each run is compared with the bare rate around it.
        big = []
        for _ in range(repeats):
            shutil.rmtree(f"{tmp}/big.zarr", ignore_errors=True)
            before = bare_rates()
            seconds, peak = _cli_timed_with_peak_rss("sample", "--n", str(big_n), "--out", f"{tmp}/big.zarr")
            after = bare_rates()
            rate = (big_n - small) / (seconds - t["auto", small])
            bare = max(statistics.mean(pair) for pair in zip(before, after))  # the faster configuration
            big.append((seconds, rate, bare, rate / bare, peak))
    for precision in ("auto", "fp32"):
        target = ">= 0.8x bare" + (", >= 1250 (100k in 80 s)" if precision == "auto" else "")
        rows += [{"name": f"sample: CLI, {n} samples, --precision {precision}", "value": n / t[precision, n],
                  "unit": "samples/s", "target": target},
                 {"name": f"sample: CLI, --precision {precision}, excl. start-up", "unit": "samples/s",
                  "value": (n - small) / (t[precision, n] - t[precision, small]), "target": target},
                 {"name": f"sample: CLI start-up + shutdown, --precision {precision}", "unit": "ms",
                  "value": t[precision, small] * 1000, "target": f"(a {small}-sample run)"}]
    seconds, rate, bare, ratio, _ = (statistics.median(column) for column in zip(*big))
    rows += [{"name": f"sample: CLI, {big_n} samples, one run", "value": seconds, "unit": "s",
              "target": "<= 80 s for 100k"},
             {"name": f"sample: CLI, {big_n} samples, excl. start-up", "value": rate, "unit": "samples/s",
              "target": "the main job once running"},
             {"name": f"sample: bare generator, {fastest_name}, around those runs", "value": bare, "unit": "samples/s",
              "target": "the faster configuration, mean of before and after each"},
             {"name": f"sample: end-to-end / bare, {big_n} samples (median)", "value": ratio, "unit": "x",
              "target": ">= 0.8"},
             {"name": f"sample: end-to-end / bare, {big_n} samples (lowest)", "value": min(r[3] for r in big),
              "unit": "x", "target": f"of {len(big)} runs"},
             {"name": f"sample: CLI peak RSS, {big_n} samples", "value": max(r[4] for r in big), "unit": "MB",
              "target": "< 1500"}]
    return rows


def _sample_cost_split(model, repeats: int) -> list[dict]:
    """CPU time of one 1024-sample chunk of `sample` by part, one torch thread: the generator
    alone, the whole chunk (codes, pose decoder, generator) and writing it (float16, SampleBatch
    checks, zstd + zarr, checksums). On C cores perfectly overlapped, end-to-end / bare can be at
    most generator / (chunk + write): the ceiling row."""
    from synthgen.data.schema import StoreMetadata
    from synthgen.data.writer import StoreWriter
    from synthgen.sampling.pipeline import PriorSource

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        source = PriorSource(model, seed=0, precision="auto")
        size = source.chunk_size
        codes, centers = source.draw(0, size)
        out = np.empty((size, model.config.generator.crop_size, model.config.generator.crop_size), np.float32)
        pipeline = source.pipeline

        def generator_alone():
            for start in range(0, size, pipeline.block_size):
                pipeline.generate_depth(codes[start:start + pipeline.block_size],
                                        centers[start:start + pipeline.block_size],
                                        out=out[start:start + pipeline.block_size])

        chunk = source.make_chunk(0, size)
        generator_ms = _median_time(generator_alone, repeats + 2, time.process_time) * 1000
        chunk_ms = _median_time(lambda: source.make_chunk(1, size), repeats + 2, time.process_time) * 1000
        with tempfile.TemporaryDirectory() as tmp:
            metadata = StoreMetadata(producer="sample", seed=0, camera="hands2017", model_checksum=model.checksum)
            writer = StoreWriter.create(f"{tmp}/split.zarr", size * (repeats + 3), metadata, with_latent=True)
            chunks = iter(range(repeats + 3))
            writer.write(next(chunks) * size, chunk.to_batch())
            write_ms = _median_time(lambda: writer.write(next(chunks) * size, chunk.to_batch()), repeats + 2,
                                    time.process_time) * 1000
    finally:
        torch.set_num_threads(threads)
    name = f"sample: 1 chunk of {size}, 1 thread, CPU time"
    return [{"name": f"{name}: generator ({source.precision})", "value": generator_ms, "unit": "ms", "target": ""},
            {"name": f"{name}: make_chunk", "value": chunk_ms, "unit": "ms", "target": "codes, decoder, generator"},
            {"name": f"{name}: write", "value": write_ms, "unit": "ms", "target": "float16, checks, zstd, files, sha256"},
            {"name": "sample: ceiling of end-to-end / bare", "value": generator_ms / (chunk_ms + write_ms),
             "unit": "x", "target": "generator / (make_chunk + write): all cores busy, no overlap loss"}]


def bench_estimate(repeats: int) -> list[dict]:
    """Depth → pose, single frames and batches, 2 threads: `CrossingNets.estimate` (the exact module)
    and `PoseEstimator` (its inference form, what `synthgen estimate` runs), interleaved."""
    from synthgen.models.inference import PoseEstimator
    from synthgen.sampling import load_model

    model = load_model(DEFAULT_MODEL)
    paths = {"exact module": model.estimate, "PoseEstimator": PoseEstimator(model)}
    rows = []
    for batch in (1, 256):
        depth = torch.rand(batch, 128, 128) * 2 - 1
        center = torch.tensor([[0.0, 0.0, 500.0]]).repeat(batch, 1)
        loops = 200 if batch == 1 else 3
        with torch.inference_mode():
            for estimate in paths.values():
                for _ in range(5):
                    estimate(depth, center)
            t = _interleaved_medians({name: lambda e=estimate: [e(depth, center) for _ in range(loops)]
                                      for name, estimate in paths.items()}, max(repeats, 5))
        rows += [{"name": f"estimate: batch {batch}, {name}", "value": batch * loops / t[name], "unit": "frames/s",
                  "target": ">= 300, >= 1000 single-frame" if batch == 1 else ""} for name in paths]
    return rows


def bench_score(n: int) -> list[dict]:
    """`synthgen score` on n default-model samples against n rendered reference crops (no --train)."""
    with tempfile.TemporaryDirectory() as tmp:
        _cli("sample", "--n", str(n), "--out", f"{tmp}/s.zarr")
        t = _cli("score", f"{tmp}/s.zarr", "--n", str(n), "--out", f"{tmp}/report")
    return [{"name": f"score: {n} samples (CLI, incl. {n} reference renders)", "value": t, "unit": "s",
             "target": "10k in minutes, not hours"}]


def bench_reader(repeats: int, quick: bool) -> list[dict]:
    """Shuffled epochs of data/train-clean.zarr through ShuffledHandBatches: 2 DataLoader workers
    and 2 prefetch threads, taken in turn (benchmarks/reader.py has the full reader table)."""
    from reader import headline_rows  # benchmarks/reader.py, next to this script

    return headline_rows(TRAIN_STORE, repeats, quick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat (a smoke test)")
    parser.add_argument("--only", default="render,sample,estimate,score,reader")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tune_process()  # in-process rows measure the process as the commands set it up (synthgen.tuning)
    repeats = 1 if args.quick else args.repeats
    wanted = set(args.only.split(","))
    rows: list[dict] = []
    if "render" in wanted:
        rows += bench_render(2048 if args.quick else 16384, repeats)
    have_model = (DEFAULT_MODEL / "config.json").is_file()
    if "sample" in wanted and have_model:
        rows += bench_sample(2048 if args.quick else 16384, 4096 if args.quick else 100_000, repeats)
    if "estimate" in wanted and have_model:
        rows += bench_estimate(repeats)
    if "score" in wanted and have_model:
        rows += bench_score(1000 if args.quick else 10_000)
    if "reader" in wanted and TRAIN_STORE.is_dir():
        rows += bench_reader(repeats, args.quick)

    machine = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"machine: {machine['cpu']}, {machine['cpu_count']} cores, {machine['platform']}, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), load {machine['load_average'][0]:.1f}")
    width = max([len("benchmark")] + [len(r["name"]) for r in rows])
    print(f"{'benchmark':<{width}} {'value':>10}  {'unit':<10} target")
    for r in rows:
        value = f"{r['value']:>10.2f}" if r["unit"] == "x" else f"{r['value']:>10,.0f}"
        print(f"{r['name']:<{width}} {value}  {r['unit']:<10} {r['target']}")
    out = ROOT / "benchmarks" / "results" / ("run-quick.json" if args.quick else "run.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2, default=float))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
