"""The realism reference table: the default model's scores next to baseline and corrupted rows.

    python benchmarks/realism_table.py [--n 4096]

Every row is scored with the same settings against the same reference store (baseline crops
rendered with seed 7919), so rows are comparable (FD is biased by sample count: compare only
rows of one table). Needs the local stores the Makefile's `model` target renders:
data/test-clean.zarr (seed 101), data/test-noisy.zarr (seed 102, sensor noise),
data/train-clean.zarr (the default model's training data, for memorisation) and
data/default-10k.zarr (`synthgen sample --n 10000 --seed 0`). Writes
benchmarks/results/realism.json, docs/realism.md and the default model's report to
docs/realism/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen.data.reader import open_store  # noqa: E402
from synthgen.data.writer import StoreWriter  # noqa: E402
from synthgen.realism import ScoreSettings, score, write_report  # noqa: E402
from synthgen.realism.corrupt import corrupt  # noqa: E402

DATA = ROOT / "data"
REFERENCE = DATA / "reference-7919.zarr"
COLUMNS = [("pair.iou_mean", "IoU", "{:.3f}"), ("pair.depth_mae_mm", "depth MAE mm", "{:.1f}"),
           ("pair.pose_consistency_mm", "pose cons. mm", "{:.1f}"), ("set.fd", "FD", "{:.3g}"),
           ("set.kid", "KID", "{:.2g}"), ("set.precision", "precision", "{:.2f}"),
           ("set.recall", "recall", "{:.2f}"), ("set.coverage", "coverage", "{:.2f}")]


def corrupted_copy(source: Path, kind: str, strength: float, out: Path, n: int) -> Path:
    store = open_store(source)
    batch = store.read(slice(0, min(n, len(store))))
    batch.depth = corrupt(batch.depth, kind, strength, np.random.default_rng(0))
    meta = dataclasses.replace(store.metadata, parameters={**store.metadata.parameters,
                                                           "corruption": {"kind": kind, "strength": strength}})
    writer = StoreWriter.create(out, len(batch.depth), meta)
    writer.write(0, batch)
    return writer.finalize()


def lookup(doc: dict, dotted: str):
    for part in dotted.split("."):
        doc = doc[part]
    return doc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--model-only", action="store_true",
                   help="re-score only the model row; keep the other rows from benchmarks/results/realism.json")
    args = p.parse_args()
    previous = {}
    if args.model_only:
        previous = {r["row"]: r for r in json.loads((ROOT / "benchmarks" / "results" / "realism.json").read_text())
                    if r["scores"]["store"]["num_scored"] == args.n}
    if not REFERENCE.exists():
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "render", "--n", str(args.n), "--seed", "7919",
                        "--out", str(REFERENCE)], check=True)
    settings = ScoreSettings(n=args.n, reference_n=args.n)
    tmp = Path(tempfile.mkdtemp())
    rows = [("baseline (test-clean, seed 101)", DATA / "test-clean.zarr", None),
            ("baseline + sensor noise model (test-noisy)", DATA / "test-noisy.zarr", None)]
    for kind, strength, label in (("blur", 1.0, "blur σ 1 px"), ("blur", 2.0, "blur σ 2 px"),
                                  ("noise", 10.0, "noise σ 10 mm"), ("shift", 6, "shift 6 px")):
        path = tmp / f"{kind}{strength}.zarr"
        if f"baseline, {label}" not in previous:
            corrupted_copy(DATA / "test-clean.zarr", kind, strength, path, args.n)
        rows.append((f"baseline, {label}", path, None))
    rows.append(("**default model** (`sample --n 10000 --seed 0`)", DATA / "default-10k.zarr",
                 DATA / "train-clean.zarr"))
    results = []
    for label, store, train in rows:
        if label in previous and train is None:
            results.append(previous[label])
            continue
        start = time.perf_counter()
        result = score(store, reference=REFERENCE, train=train, settings=settings)
        seconds = time.perf_counter() - start
        results.append({"row": label, "store": str(store.relative_to(ROOT)) if store.is_relative_to(ROOT) else
                        store.name, "seconds": round(seconds, 1), "scores": result.scores})
        print(f"{label:50s} " + "  ".join(f"{h} {f.format(lookup(result.scores, k))}" for k, h, f in COLUMNS)
              + f"  ({seconds:.0f} s)", flush=True)
        if train is not None:
            out = ROOT / "docs" / "realism"
            write_report(result, out, overwrite=True)
    shutil.rmtree(tmp)
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "realism.json").write_text(json.dumps(results, indent=2) + "\n")
    header = "| row | " + " | ".join(h for _, h, _ in COLUMNS) + " |\n|---|" + "---|" * len(COLUMNS) + "\n"
    body = "".join(f"| {r['row']} | " + " | ".join(f.format(lookup(r["scores"], k)) for k, _, f in COLUMNS)
                   + " |\n" for r in results)
    model = results[-1]["scores"]
    memo = model["memorisation"]
    text = (f"# Realism scores (`synthgen score`, {args.n} samples per row)\n\n"
            f"Reference: {args.n} baseline crops rendered with seed 7919; feature network "
            f"{model['feature_network']['version']} (sha256 {model['feature_network']['sha256'][:12]}…). "
            f"Generated by `python benchmarks/realism_table.py`.\n\n{header}{body}\n"
            f"Default model: pose-consistency floor (DepthNet on the mesh renders of the same poses) "
            f"{model['pair']['estimator_floor_mm']:.1f} mm; FD 95 % bootstrap interval "
            f"[{model['set']['fd_ci95'][0]:.3g}, {model['set']['fd_ci95'][1]:.3g}]; memorisation: median distance to "
            f"the nearest training crop {memo['generated_to_train']['median']:.3g} vs {memo['reference_to_train']['median']:.3g} "
            f"for unseen baseline crops (ratio {memo['median_ratio']:.2f}). Scoring took "
            f"{results[-1]['seconds']:.0f} s. Full report: [docs/realism/report.html](realism/report.html).\n")
    (ROOT / "docs" / "realism.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
