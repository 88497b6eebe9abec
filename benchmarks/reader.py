"""Training-reader throughput over a store: prints a table, writes benchmarks/results/reader.json.

    python benchmarks/reader.py [--store data/train-clean.zarr] [--mix data/train-noisy.zarr]
                                [--epochs 2] [--quick]

Rows: PyTorch's default hand-over of batches from 2 worker processes (fresh shared memory per
batch, nothing read: what a reader paid before its batch ring), the naive reader (per-sample
random access through a DataLoader, for scale), and
`synthgen.data.dataset.ShuffledHandBatches` with 2 DataLoader worker processes, with 2 prefetch
threads (`.prefetch`) and in the training process, float16 (default) and float32 depth, in
order, with augmentation and with two stores mixed by ratio. A row is samples delivered to the training
loop per second of wall time, worker start-up included; rows with several epochs report the
median, the 2-worker and prefetch epochs taken in turn so that both see the same load. The
machine is shared: the load average before and after is printed and saved, and each row also
gives the CPU time per sample of all its processes (main + workers), whose inverse times the
2 cores bounds the rate on an idle machine.

`headline_rows` gives benchmarks/run.py its reader rows.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from synthgen.data.augment import Augmentation
from synthgen.data.batch_ring import _new_tensor
from synthgen.data.dataset import HandDataset, ShuffledHandBatches

ROOT = Path(__file__).resolve().parents[1]
TARGET = 20_000  # samples/s, shuffled epoch with 2 workers (the goal for a training reader)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader's workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _consume(batches, limit: int | None = None) -> tuple[int, float, float]:
    """Iterate like a training loop would (touching every batch); returns (samples, seconds,
    CPU seconds of every process involved, counted once the workers have exited)."""
    start, cpu, count, checksum = time.perf_counter(), _cpu_seconds(), 0, 0.0
    iterator, batch = iter(batches), None
    for batch in iterator:
        checksum += float(batch["depth"][:, 0, 64, 64].sum()) + float(batch["joints"][:, 0, 2].sum())
        count += len(batch["joints"])
        if limit is not None and count >= limit:
            break
    wall = time.perf_counter() - start
    del iterator, batch  # shuts the workers down, so their CPU time is counted
    gc.collect()
    return count, wall, _cpu_seconds() - cpu


class HandOverOnly(IterableDataset):
    """Batches shaped like the reader's, made without reading anything, in fresh shared memory
    each: the cost of PyTorch's default hand-over from worker processes alone."""

    def __init__(self, batches: int, batch: int, dtype: torch.dtype) -> None:
        self.batches, self.batch, self.dtype = batches, batch, dtype

    def __iter__(self):
        info = get_worker_info()
        source = torch.ones((self.batch, 128, 128), dtype=torch.float16)
        for _ in range(info.id, self.batches, info.num_workers):
            depth = _new_tensor((self.batch, 1, 128, 128), self.dtype)
            depth.view(self.batch, 128, 128).copy_(source)
            yield {"depth": depth, "joints": _new_tensor((self.batch, 21, 3), torch.float32)}


def row(name: str, runs: list[tuple[int, float, float]], **extra) -> dict:
    """Median wall-clock rate, and CPU microseconds per sample summed over all processes: the
    cost that decides the rate on an idle machine (bound: cores / cost)."""
    rates = [n / t for n, t, _ in runs]
    cpu_us = statistics.median(c / n * 1e6 for n, _, c in runs)
    return {"name": name, "samples": runs[0][0], "runs": len(runs), "samples_per_s": statistics.median(rates),
            "all_samples_per_s": rates, "cpu_us_per_sample": cpu_us,
            "idle_2_core_bound_samples_per_s": 2e6 / cpu_us, **extra}


def shuffled_epochs(store: Path, epochs: int, batch: int, limit: int | None = None) -> tuple[list, list]:
    """Shuffled epochs through `DataLoader(stream, batch_size=None, num_workers=2)` (as
    `stream.loader(2)`) and through `stream.prefetch(threads=2)`, in turn (ABBA: both see the
    same load): (loader runs, prefetch runs)."""
    stream = ShuffledHandBatches(store, batch_size=batch, seed=0)  # float16 depth, the default
    loader_runs, prefetch_runs = [], []
    makers = [(loader_runs, lambda: stream.loader(2)), (prefetch_runs, lambda: stream.prefetch(threads=2))]
    for epoch in range(epochs):
        for runs, make in makers[::-1] if epoch % 2 else makers:
            stream.set_epoch(epoch)
            runs.append(_consume(make(), limit))
    return loader_runs, prefetch_runs


def headline_rows(store: Path, repeats: int, quick: bool = False) -> list[dict]:
    """benchmarks/run.py's reader rows: median samples/s of a shuffled epoch of `store`, 2
    DataLoader workers and 2 prefetch threads (`--quick`: 16 k samples, one run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the DataLoader's workers
    try:
        loader_runs, prefetch_runs = shuffled_epochs(store, 1 if quick else repeats, 256, 16384 if quick else None)
    finally:
        torch.set_num_threads(threads)
    rows = []
    for name, runs in (("reader: shuffled epoch, DataLoader 2 workers", loader_runs),
                       ("reader: shuffled epoch, prefetch 2 threads", prefetch_runs)):
        r = row(name, runs)
        rows.append({"name": name, "value": r["samples_per_s"], "unit": "samples/s",
                     "target": f">= {TARGET:,}", "samples": r["samples"], "runs": r["runs"],
                     "cpu_us_per_sample": r["cpu_us_per_sample"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=ROOT / "data" / "train-clean.zarr")
    parser.add_argument("--mix", type=Path, default=ROOT / "data" / "train-noisy.zarr",
                        help="second store for the mixing row (skipped if missing)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per shuffled 2-worker row")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="fewer samples per row (a smoke test)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reader.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    batch = args.batch_size
    load_before = os.getloadavg()
    rows = []

    for dtype in (torch.float32, torch.float16):
        ceiling = DataLoader(HandOverOnly(64 if args.quick else 256, batch, dtype), batch_size=None, num_workers=2,
                             prefetch_factor=4)
        rows.append(row(f"PyTorch's hand-over alone (fresh shared memory, no reading): 2 workers, {str(dtype)[6:]}",
                        [_consume(ceiling)]))

    naive = HandDataset(args.store)
    naive_samples = 256 if args.quick else 1024
    loader = DataLoader(naive, batch_size=batch, shuffle=True, num_workers=2)
    rows.append(row("naive: per-sample random access, shuffle=True, 2 workers", [_consume(loader, naive_samples)]))

    partial = 8192 if args.quick else None
    loader_runs, prefetch_runs = shuffled_epochs(args.store, 1 if args.quick else args.epochs, batch, partial)
    rows.append(row("ShuffledHandBatches: shuffled epoch, DataLoader 2 workers (float16 depth)", loader_runs,
                    target=TARGET))

    full = ShuffledHandBatches(args.store, batch_size=batch, seed=0, depth_dtype="float32")
    rows.append(row("ShuffledHandBatches: shuffled epoch, 2 workers, depth_dtype=float32",
                    [_consume(full.loader(2), partial)]))

    rows.append(row("ShuffledHandBatches.prefetch: shuffled epoch, 2 worker threads (float16 depth)",
                    prefetch_runs, target=TARGET))
    rows.append(row("ShuffledHandBatches.prefetch: shuffled epoch, 2 worker threads, depth_dtype=float32",
                    [_consume(full.prefetch(threads=2), partial)]))

    stream = ShuffledHandBatches(args.store, batch_size=batch, seed=0)
    rows.append(row("ShuffledHandBatches: shuffled epoch, in the training process (no workers)",
                    [_consume(stream, partial)]))

    in_order = ShuffledHandBatches(args.store, batch_size=batch, shuffle=False)
    rows.append(row("ShuffledHandBatches: in order, 2 workers", [_consume(in_order.loader(2), partial)]))

    some = 4096 if args.quick else 32768
    augmented = ShuffledHandBatches(args.store, batch_size=batch, seed=0, augment=Augmentation(),
                                    layout="nyu", joints="normalised", samples_per_epoch=some)
    rows.append(row("ShuffledHandBatches: + rotation/scale/shift, nyu layout, 2 workers",
                    [_consume(augmented.loader(2))]))

    if args.mix.exists():
        mixed = ShuffledHandBatches([args.store, args.mix], ratios=[0.7, 0.3], batch_size=batch, seed=0,
                                    samples_per_epoch=some)
        runs = [_consume(mixed.loader(2))]
        first = next(iter(mixed))
        share = float((first["store"] == 0).float().mean())
        rows.append(row(f"ShuffledHandBatches: 2 stores mixed 0.7/0.3, 2 workers (first batch {share:.2f}/"
                        f"{1 - share:.2f})", runs))

    load_after = os.getloadavg()
    result = {
        "machine": {"cores": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                    "loadavg_before": load_before, "loadavg_after": load_after},
        "store": str(args.store), "batch_size": batch, "rows": rows,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(f"store {args.store} ({len(naive):,} samples), batch {batch}, {os.cpu_count()} cores, "
          f"load average {load_before[0]:.2f} before / {load_after[0]:.2f} after")
    print(f"{'reader':<82} {'samples':>8} {'samples/s':>10} {'CPU us/sample':>14} {'2-core bound':>13}  target")
    for r in rows:
        target = f">= {r['target']:,}" if "target" in r else ""
        print(f"{r['name']:<82} {r['samples']:>8} {r['samples_per_s']:>10,.0f} {r['cpu_us_per_sample']:>14,.0f} "
              f"{r['idle_2_core_bound_samples_per_s']:>13,.0f}  {target}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
