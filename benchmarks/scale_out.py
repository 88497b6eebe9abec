"""`synthgen render` on one process vs Dask distributed (local:2) vs --workers 2, end to end.

    python benchmarks/scale_out.py [--n 16384] [--repeats 1]

Each row is the wall time of the whole command (process start, cluster start and shutdown
included), median over `--repeats`, with runs of the variants interleaved so that load from
other users of this shared machine hits them alike, and the CPU time of all its processes
(less swayed by that load: it tells the cost, the wall time what a free machine would see).
Prints a table and writes benchmarks/results/scale_out.json with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"1 process": [], "Dask local:2": ["--scheduler", "local:2"], "--workers 2": ["--workers", "2"]}


def run(n: int, extra: list[str], out: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, every process of the command) of one run."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "render", "--n", str(n), "--seed", "1", "--out", str(out),
                    "--overwrite", *extra], check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "scale_out.json")
    args = parser.parse_args()
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name, extra in VARIANTS.items():
                wall, cpu_seconds = run(args.n, extra, Path(tmp) / "r.zarr")
                times[name].append(wall)
                cpu[name].append(cpu_seconds)
    load_after = os.getloadavg()
    single = statistics.median(times["1 process"])
    rows = [{"name": name, "seconds": statistics.median(t), "all_seconds": t,
             "samples_per_s": args.n / statistics.median(t), "speedup_vs_1_process": single / statistics.median(t),
             "cpu_seconds": statistics.median(cpu[name]), "all_cpu_seconds": cpu[name]}
            for name, t in times.items()]
    print(f"synthgen render --n {args.n}: {os.cpu_count()} cores, load average {load_before[0]:.2f} before / "
          f"{load_after[0]:.2f} after, median of {args.repeats}")
    print(f"{'variant':<16} {'seconds':>8} {'samples/s':>10} {'speed-up':>9} {'CPU s':>7}")
    for r in rows:
        print(f"{r['name']:<16} {r['seconds']:>8.1f} {r['samples_per_s']:>10,.0f} {r['speedup_vs_1_process']:>8.2f}x "
              f"{r['cpu_seconds']:>7.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "loadavg_before": load_before,
                    "loadavg_after": load_after},
        "n": args.n, "repeats": args.repeats, "rows": rows, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
