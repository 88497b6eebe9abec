"""synthgen's speed targets, measured in one run: prints a table, writes benchmarks/results/run.json.

    python benchmarks/run.py [--quick] [--only render,sample,estimate,score,reader]

Each row is the median of `--repeats` timings. This machine is shared and its timings swing
2-5x with other load (../shared/notes/machine-facts.md), so compare rows of one run, and read
the load average printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SYNTHGEN = [sys.executable, str(ROOT / "cli.py")]
DEFAULT_MODEL = ROOT / "assets" / "models" / "default"
TRAIN_STORE = ROOT / "data" / "train-clean.zarr"


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cli(*args: str, env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([*SYNTHGEN, *args], check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def bench_render(n: int, repeats: int) -> list[dict]:
    """The mesh baseline, end to end (`synthgen render`, process start-up included), 1 and 2 workers."""
    from synthgen.hand.baseline import BaselineRenderer

    from synthgen.conventions import CAMERAS
    from synthgen.hand import camera
    from synthgen.hand.kinematics import forward_kinematics
    from synthgen.hand.mesh import HandMesh, pose_vertices
    from synthgen.hand.prior import sample_poses
    from synthgen.hand.render import DepthRenderer

    rows = []
    source = BaselineRenderer(seed=0)
    source.make_chunk(0, 8)  # context, mesh upload
    t = _median_time(lambda: source.make_chunk(1, 1024), repeats)
    rows.append({"name": "render: in-process, 1 chunk of 1024", "value": 1024 / t, "unit": "frames/s",
                 "target": ">= 500 (issue 2), >= 800 (issue 9)"})
    pose = sample_poses(np.random.default_rng(0), 1024, CAMERAS["hands2017"])
    vertices = pose_vertices(HandMesh.load(), pose).numpy()
    crops = [camera.crop_intrinsics(center) for center in camera.hand_center(forward_kinematics(pose)[0].numpy())]
    with DepthRenderer(128, 128) as renderer:
        renderer.render_batch(vertices[:64], crops[:64])
        t = _median_time(lambda: renderer.render_batch(vertices, crops), repeats)
    rows.append({"name": "render: DepthRenderer.render_batch, 1024 hands", "value": 1024 / t, "unit": "frames/s",
                 "target": "the OpenGL part of the row above"})
    with tempfile.TemporaryDirectory() as tmp:
        for backend, workers in (("egl", 1), ("egl", 2), ("osmesa", 1), ("osmesa", 2)):
            t = _median_time(lambda: _cli("render", "--n", str(n), "--out", f"{tmp}/r.zarr", "--overwrite",
                                          "--workers", str(workers), env={"SYNTHGEN_GL": backend}), repeats)
            rows.append({"name": f"render: CLI, {n} samples, {backend}, {workers} worker(s)", "value": n / t,
                         "unit": "frames/s", "target": "2 workers faster than 1"})
    return rows


def bench_sample(n: int, repeats: int) -> list[dict]:
    """Bare generator forward vs end-to-end `synthgen sample` with the default model."""
    from synthgen.sampling import load_model

    model = load_model(DEFAULT_MODEL)
    codes = torch.randn(256, model.config.code_dim)
    with torch.inference_mode():
        model.generate_depth(codes)
        t_bare = _median_time(lambda: model.generate_depth(codes), repeats)
    rows = [{"name": "sample: bare generator, fp32, batch 256", "value": 256 / t_bare, "unit": "samples/s",
             "target": ">= 1500 (issue 9)"}]
    with tempfile.TemporaryDirectory() as tmp:
        t = _median_time(lambda: _cli("sample", "--n", str(n), "--out", f"{tmp}/s.zarr", "--overwrite"), repeats)
    rows.append({"name": f"sample: CLI end-to-end, {n} samples", "value": n / t, "unit": "samples/s",
                 "target": ">= 0.8x bare"})
    return rows


def bench_estimate(repeats: int) -> list[dict]:
    """Depth → pose through the posterior path, single frames and batches, 2 threads."""
    from synthgen.sampling import load_model

    model = load_model(DEFAULT_MODEL)
    rows = []
    for batch in (1, 256):
        depth = torch.rand(batch, 128, 128) * 2 - 1
        center = torch.tensor([[0.0, 0.0, 500.0]]).repeat(batch, 1)
        with torch.inference_mode():
            for _ in range(5):
                model.estimate(depth, center)
            loops = 200 if batch == 1 else 3
            t = _median_time(lambda: [model.estimate(depth, center) for _ in range(loops)], repeats) / loops
        rows.append({"name": f"estimate: batch {batch}", "value": batch / t, "unit": "frames/s",
                     "target": ">= 300 (issue 3), >= 1000 single-frame (issue 9)" if batch == 1 else ""})
    return rows


def bench_score(n: int) -> list[dict]:
    """`synthgen score` on n default-model samples against n rendered reference crops (no --train)."""
    with tempfile.TemporaryDirectory() as tmp:
        _cli("sample", "--n", str(n), "--out", f"{tmp}/s.zarr")
        t = _cli("score", f"{tmp}/s.zarr", "--n", str(n), "--out", f"{tmp}/report")
    return [{"name": f"score: {n} samples (CLI, incl. {n} reference renders)", "value": t, "unit": "s",
             "target": "10k in minutes, not hours (issue 5)"}]


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
    repeats = 1 if args.quick else args.repeats
    wanted = set(args.only.split(","))
    rows: list[dict] = []
    if "render" in wanted:
        rows += bench_render(2048 if args.quick else 8192, repeats)
    have_model = (DEFAULT_MODEL / "config.json").is_file()
    if "sample" in wanted and have_model:
        rows += bench_sample(2048 if args.quick else 8192, repeats)
    if "estimate" in wanted and have_model:
        rows += bench_estimate(repeats)
    if "score" in wanted and have_model:
        rows += bench_score(1000 if args.quick else 10_000)
    if "reader" in wanted and TRAIN_STORE.is_dir():
        rows += bench_reader(repeats, args.quick)

    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"machine: {machine['cpu_count']} cores, {machine['platform']}, torch {machine['torch']} "
          f"({machine['torch_threads']} threads), load {machine['load_average'][0]:.1f}")
    print(f"{'benchmark':<48} {'value':>10}  {'unit':<10} target")
    for r in rows:
        print(f"{r['name']:<48} {r['value']:>10,.0f}  {r['unit']:<10} {r['target']}")
    out = ROOT / "benchmarks" / "results" / ("run-quick.json" if args.quick else "run.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2, default=float))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
