"""Utility: do synthgen samples improve a pose regressor as much as true renders would?

    python benchmarks/utility.py [--seeds 0,1,2,3,4] [--steps 4000] [--labeled 1000]
        [--fractions 0.25,0.5] [--synthetic data/samples-100k.zarr] [--oracle data/oracle-100k.zarr]
        [--few-label STORE] [--quick] [--oracle-curve] [--doc-only]

An independent regressor (the DepthNet CNN, trained from scratch: not a Crossing Nets network)
is trained, per seed (initialisation and batch order), on:

  L          the first `--labeled` crops of data/train-clean.zarr (mesh renders with labels);
  L + S      L plus synthgen samples (`--synthetic`, `synthgen sample --n 100000 --seed 1`), a
             fixed fraction of every batch drawn from the samples (mixing by ratio), per fraction;
  L + O      the same with as many true mesh renders instead (`--oracle`, `synthgen render
             --n 100000 --seed 3`, not seen by any model): the oracle, what a perfect generator
             would give;
  S only     samples only (train on synthetic, test on renders), next to O only;
  L + S(n)   at the better fraction, 10 k and 30 k added samples (the first n); for O too with
             `--oracle-curve`;
  L + F      optional (`--few-label`): samples of a model that saw only L's labels.

Every run is evaluated on held-out renders (data/test-clean.zarr, seed 101; data/test-noisy.zarr,
seed 102; 4096 each). The headline is

    utility = (err_L − err_L+S) / (err_L − err_L+O)    (per seed, same fraction)

1 means the samples are worth as much as true renders, 0 nothing, < 0 harmful. Gains are paired
by seed (same initialisation and batch order) and tested with a one-sided paired t-test.

Protocol choices for a 2-core CPU: crops are average-pooled to 64² (the regressor's input, for
training and test alike), the network's stages are half as wide as DepthNet's (WIDTHS) and each
run is `--steps` batches of 64. Writes
benchmarks/results/utility.json, docs/utility.md and docs/utility.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen.data.reader import open_store  # noqa: E402
from synthgen.hand.camera import normalize_joints  # noqa: E402
from synthgen.models import depthnet  # noqa: E402

DATA = ROOT / "data"
POOL = 2  # 128² crops → 64²
WIDTHS = (8, 16, 32, 64, 64)  # DepthNet's stages at half width: 3x faster to train at 64²
READ_BLOCK = 4096
CURVE = (10_000, 30_000)


def arrays(path: Path, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(depth (n, 64, 64) float16, joints in cube units) of a store's first n samples (all if None)."""
    store = open_store(path)
    n = len(store) if n is None else min(n, len(store))
    depth = np.empty((n, store.metadata.crop_size // POOL, store.metadata.crop_size // POOL), np.float16)
    joints = np.empty((n, store.read(slice(0, 1)).pose.shape[1], 3), np.float32)
    for s in range(0, n, READ_BLOCK):
        batch = store.read(slice(s, min(n, s + READ_BLOCK)))
        pooled = F.avg_pool2d(torch.from_numpy(np.asarray(batch.depth, np.float32))[:, None], POOL)[:, 0]
        depth[s:s + len(pooled)] = pooled.numpy()
        joints[s:s + len(pooled)] = normalize_joints(batch.pose, batch.center)
    return depth, joints


class Pool:
    """Labeled crops followed by sources of added crops, one array each, drawn by ratio."""

    def __init__(self, labeled: tuple[np.ndarray, np.ndarray], sources: dict[str, tuple[np.ndarray, np.ndarray]]):
        names = ["L", *sources]
        parts = [labeled, *sources.values()]
        self.depth = np.concatenate([p[0] for p in parts])
        self.joints = np.concatenate([p[1] for p in parts])
        starts = np.cumsum([0] + [len(p[0]) for p in parts])
        self.ranges = {name: (int(a), int(b)) for name, a, b in zip(names, starts[:-1], starts[1:])}

    def draw(self, source: str | None, count: int | None, fraction: float):
        """Batches with `fraction` of rows from the first `count` rows of `source` (None: L only;
        fraction 1: the source only)."""
        lab = self.ranges["L"]

        def draw(gen: torch.Generator, b: int) -> np.ndarray:
            added = 0 if source is None else round(b * fraction)
            rows = [torch.randint(lab[0], lab[1], (b - added,), generator=gen)]
            if added:
                lo, hi = self.ranges[source]
                rows.append(torch.randint(lo, lo + min(count or hi - lo, hi - lo), (added,), generator=gen))
            return torch.cat(rows).numpy()

        return draw


def run_arm(pool: Pool, tests: dict, draw, steps: int, seed: int) -> dict:
    settings = depthnet.TrainSettings(steps=steps, val_size=0, seed=seed, shift_px=4 // POOL, widths=WIDTHS)
    start = time.perf_counter()
    net, _ = depthnet.train(pool.depth, pool.joints, settings, draw=draw)
    errors = {name: float(depthnet.joint_errors_mm(net, d, j).mean()) for name, (d, j) in tests.items()}
    return {**errors, "seconds": round(time.perf_counter() - start, 1)}


def paired(better: list[float], worse: list[float]) -> dict:
    """Per-seed gains worse − better, their mean ± sd, and a one-sided paired t-test (gain > 0)."""
    from scipy.stats import ttest_rel

    gain = np.subtract(worse, better)
    p = float(ttest_rel(worse, better, alternative="greater").pvalue) if len(gain) > 1 else None
    return {"gain_mm": gain.tolist(), "mean": float(gain.mean()), "sd": float(gain.std(ddof=1)) if len(gain) > 1
            else 0.0, "p_one_sided": p}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--labeled", type=int, default=1000)
    p.add_argument("--synthetic", type=Path, default=DATA / "samples-100k.zarr")
    p.add_argument("--oracle", type=Path, default=DATA / "oracle-100k.zarr")
    p.add_argument("--few-label", type=Path, default=None, help="samples of a model trained on L's labels only")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--fractions", default="0.25,0.5")
    p.add_argument("--oracle-curve", action="store_true", help="also the 10 k / 30 k points with true renders")
    p.add_argument("--quick", action="store_true", help="L, L + O and L + S at the first fraction only")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "utility.json")
    p.add_argument("--doc-only", action="store_true", help="rewrite docs/utility.{md,png} from --out's results")
    args = p.parse_args()
    if args.doc_only:
        write_doc(json.loads(args.out.read_text()))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    if not all(0 < f < 1 for f in fractions):
        p.error("--fractions must lie strictly between 0 and 1")
    torch.set_num_threads(2)

    sources = {"S": arrays(args.synthetic), "O": arrays(args.oracle)}
    if args.few_label is not None:
        sources["F"] = arrays(args.few_label)
    n_add = min(len(s[0]) for s in sources.values())
    pool = Pool(arrays(DATA / "train-clean.zarr", args.labeled), sources)
    tests = {name: arrays(DATA / f"{name}.zarr") for name in ("test-clean", "test-noisy")}
    results: dict[str, dict[str, list]] = {}

    def arm(name: str, source: str | None, fraction: float, count: int | None = None) -> None:
        for seed in seeds:
            r = run_arm(pool, tests, pool.draw(source, count or n_add, fraction), args.steps, seed)
            entry = results.setdefault(name, {"test-clean": [], "test-noisy": [], "seconds": []})
            for k, v in r.items():
                entry[k].append(v)
            print(f"seed {seed}  {name:34s} test-clean {r['test-clean']:5.1f} mm  test-noisy {r['test-noisy']:5.1f} mm"
                  f"  ({r['seconds']:.0f} s)", flush=True)

    arm("L", None, 0.0)
    for f in fractions[:1] if args.quick else fractions:
        arm(f"L + O, {f:.0%}", "O", f)
        arm(f"L + S, {f:.0%}", "S", f)
    utility = {}
    for f in fractions[:1] if args.quick else fractions:
        err_l, err_o, err_s = (np.array(results[k]["test-clean"]) for k in ("L", f"L + O, {f:.0%}", f"L + S, {f:.0%}"))
        utility[f] = ((err_l - err_s) / (err_l - err_o)).tolist()
    best = max(utility, key=lambda f: np.mean(utility[f]))
    if not args.quick:
        arm("S only", "S", 1.0)
        arm("O only", "O", 1.0)
        for n in CURVE:
            arm(f"L + S {n // 1000}k, {best:.0%}", "S", best, n)
            if args.oracle_curve:
                arm(f"L + O {n // 1000}k, {best:.0%}", "O", best, n)
        if "F" in sources:
            arm(f"L + F, {best:.0%}", "F", best)
    write(args, results, utility, best, n_add, seeds)


def write(args, results: dict, utility: dict, best: float, n_add: int, seeds: list[int]) -> None:
    f = f"{best:.0%}"
    clean = {k: v["test-clean"] for k, v in results.items()}
    summary = {
        "utility": {f"{k:.0%}": {"per_seed": v, "mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1))
                                 if len(v) > 1 else 0.0} for k, v in utility.items()},
        "best_fraction": best,
        "gain_synthgen": paired(clean[f"L + S, {f}"], clean["L"]),
        "gain_oracle": paired(clean[f"L + O, {f}"], clean["L"]),
    }
    if "S only" in clean:
        summary["synthetic_only_over_renders_only"] = float(np.mean(clean["S only"]) / np.mean(clean["O only"]))
    if f"L + F, {f}" in clean:
        summary["gain_few_label"] = paired(clean[f"L + F, {f}"], clean["L"])
    doc = {"protocol": {"steps": args.steps, "batch_size": 64, "input": "128² crops average-pooled to 64²",
                        "widths": list(WIDTHS),
                        "labeled": args.labeled, "added": n_add, "seeds": seeds, "synthetic": str(args.synthetic),
                        "oracle": str(args.oracle), "few_label": str(args.few_label) if args.few_label else None},
           "summary": summary, "runs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    if args.out.name == "utility.json":
        write_doc(doc)
    print(json.dumps(summary, indent=2))


def _cell(values: list[float]) -> str:
    spread = f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
    return f"{np.mean(values):.1f}{spread}"


def write_doc(doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, s, pr = doc["runs"], doc["summary"], doc["protocol"]
    best = f"{s['best_fraction']:.0%}"
    rows = "".join(f"| {name} | {_cell(r['test-clean'])} | {_cell(r['test-noisy'])} | "
                   f"{', '.join(f'{v:.1f}' for v in r['test-clean'])} |\n" for name, r in runs.items())
    util = "".join(f"| {k} | {v['mean']:.2f} ± {v['sd']:.2f} | {', '.join(f'{u:.2f}' for u in v['per_seed'])} |\n"
                   for k, v in s["utility"].items())

    def gain(name: str, g: dict) -> str:
        return (f"| {name} | {g['mean']:.1f} ± {g['sd']:.1f} | {', '.join(f'{v:.1f}' for v in g['gain_mm'])} | "
                f"{g['p_one_sided']:.3g} |\n")

    gains = gain(f"L + synthgen, {best}", s["gain_synthgen"]) + gain(f"L + true renders, {best}", s["gain_oracle"])
    if "gain_few_label" in s:
        gains += gain(f"L + few-label model's samples, {best}", s["gain_few_label"])
    ratio = (f"\nSynthetic-only training: {s['synthetic_only_over_renders_only']:.2f}× the error of training on as "
             "many true renders.\n" if "synthetic_only_over_renders_only" in s else "")
    text = (
        "# Utility: do synthgen samples train a better pose regressor?\n\n"
        f"An independent CNN pose regressor (the DepthNet architecture at stage widths {tuple(pr['widths'])}, from "
        f"scratch; {pr['steps']} steps of "
        f"{pr['batch_size']}, {pr['input']}) trained on {pr['labeled']} labeled mesh renders (L), alone or with "
        f"{pr['added']} added crops making up a fixed fraction of every batch: synthgen samples (S) or as many "
        "true mesh renders (O, the oracle). Mean joint error in mm on held-out renders (4096 clean, 4096 with "
        f"the sensor-noise model), mean ± sd over seeds {', '.join(map(str, pr['seeds']))}. Reproduce: "
        "`make utility` (renders the oracle set, samples the default model, runs `python benchmarks/utility.py`).\n\n"
        "**utility = (err_L − err_L+S) / (err_L − err_L+O)** per seed on test-clean: 1 = the samples are worth "
        "true renders, 0 = worthless.\n\n"
        "| fraction of each batch | utility | per seed |\n|---|---|---|\n" + util +
        "\n| gain over L (test-clean) | mm | per seed | paired t-test p (one-sided) |\n|---|---|---|---|\n" + gains +
        ratio +
        f"\nTraining and testing the {sum(len(r['seconds']) for r in runs.values())} regressors took "
        f"{sum(sum(r['seconds']) for r in runs.values()) / 60:.0f} min on this machine's 2 cores. The test renders, "
        "the labeled set and the oracle all come from the mesh baseline synthgen's default model is trained on: "
        "utility says how much of that distribution's value the samples carry, not how a regressor fares on "
        "real sensor frames ([real-data.md](real-data.md)).\n"
        "\n| training data | test-clean | test-noisy | test-clean per seed |\n|---|---|---|---|\n" + rows +
        "\n![error against samples added](utility.png)\n")
    (ROOT / "docs" / "utility.md").write_text(text)

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for source, label, color in (("S", "synthgen samples", "tab:blue"), ("O", "true renders (oracle)", "tab:gray")):
        xs, means, sds = [0], [np.mean(runs["L"]["test-clean"])], [np.std(runs["L"]["test-clean"], ddof=1)]
        for n in CURVE:
            name = f"L + {source} {n // 1000}k, {best}"
            if name in runs:
                xs.append(n)
                means.append(np.mean(runs[name]["test-clean"]))
                sds.append(np.std(runs[name]["test-clean"], ddof=1))
        xs.append(pr["added"])
        values = runs[f"L + {source}, {best}"]["test-clean"]
        means.append(np.mean(values))
        sds.append(np.std(values, ddof=1))
        line = "-" if len(xs) > 2 else ""  # without the 10 k / 30 k runs, no line to suggest a curve
        ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=label, color=color, linestyle=line)
    ax.set_xscale("symlog", linthresh=10_000)
    ax.set_xlabel(f"crops added to {pr['labeled']} labeled renders ({best} of each batch)")
    ax.set_ylabel("mean joint error on test-clean (mm)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "utility.png", dpi=120)


if __name__ == "__main__":
    main()
