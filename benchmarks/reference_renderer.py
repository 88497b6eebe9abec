"""The batched renderer against the pyrender reference, on the same meshes.

    python benchmarks/reference_renderer.py [--n 256] [--seeds 0,1,2]

Per seed: `--n` prior hands rendered to 128² crops by `DepthRenderer` and by `PyrenderRenderer`
(silhouette IoU per hand, median |Δz| over the pixels both call surface), and `--n` baseline v2
crops (forearm, objects, background, centre-of-mass crops, sensor off) made by a
`BaselineRenderer` with each renderer (IoU of the crops' foreground, median |Δz| in mm, centre
differences). Speeds are in-process frames/s of each `BaselineRenderer`, the second of two passes.
Prints a table, writes benchmarks/results/reference_renderer.json (mean ± sd over seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen.conventions import CAMERAS, CUBE_MM  # noqa: E402
from synthgen.hand import camera  # noqa: E402
from synthgen.hand.baseline import BaselineRenderer  # noqa: E402
from synthgen.hand.kinematics import forward_kinematics  # noqa: E402
from synthgen.hand.mesh import HandMesh, pose_vertices  # noqa: E402
from synthgen.hand.prior import sample_poses  # noqa: E402
from synthgen.hand.reference import PyrenderRenderer  # noqa: E402
from synthgen.hand.render import DepthRenderer  # noqa: E402
from synthgen.hand.scene import load_scene  # noqa: E402


def agreement(fast: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-image silhouette IoU (surface: > 0) and the median |Δ| over pixels both call surface."""
    a, b = fast > 0, reference > 0
    iou = (a & b).sum(axis=(1, 2)) / np.maximum((a | b).sum(axis=(1, 2)), 1)
    return iou, float(np.median(np.abs(fast - reference)[a & b]))


def hands(seed: int, n: int) -> dict:
    pose = sample_poses(np.random.default_rng(seed), n, CAMERAS["hands2017"])
    vertices = pose_vertices(HandMesh.load(), pose).numpy()
    views = [camera.crop_intrinsics(c) for c in camera.hand_center(forward_kinematics(pose)[0].numpy())]
    fast = DepthRenderer(128, 128).render_batch(vertices, views)
    reference = PyrenderRenderer(128, 128).render_batch(vertices, views)
    iou, median_dz = agreement(fast, reference)
    return {"iou_mean": float(iou.mean()), "iou_min": float(iou.min()), "median_dz_mm": median_dz}


def scenes(seed: int, n: int) -> dict:
    scene = load_scene("v2", "none")
    crops, rates = {}, {}
    for name in ("batched", "pyrender"):
        source = BaselineRenderer(seed=seed, scene=scene, renderer=name)
        source.make_chunk(1, 64)  # start-up: contexts, shaders
        start = time.perf_counter()
        crops[name] = source.make_chunk(0, n)
        rates[name] = n / (time.perf_counter() - start)
    # normalised depth, background +1 → metric offsets from the background, surface > 0
    fast, reference = ((1.0 - crops[r].depth) * CUBE_MM / 2 for r in ("batched", "pyrender"))
    iou, median_dz = agreement(fast, reference)
    return {"iou_mean": float(iou.mean()), "iou_min": float(iou.min()), "median_dz_mm": median_dz,
            "center_max_diff_mm": float(np.abs(crops["batched"].center - crops["pyrender"].center).max()),
            "batched_fps": rates["batched"], "pyrender_fps": rates["pyrender"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {"hands": [hands(s, args.n) for s in seeds], "v2 scenes": [scenes(s, args.n) for s in seeds]}
    summary = {part: {key: {"mean": float(np.mean([r[key] for r in rows])), "sd": float(np.std([r[key] for r in rows]))}
                      for key in rows[0]} for part, rows in runs.items()}
    print(f"{'what':<12} {'measure':<20} {'mean':>12} {'sd':>10}   ({len(seeds)} seeds x {args.n})")
    for part, measures in summary.items():
        for key, value in measures.items():
            print(f"{part:<12} {key:<20} {value['mean']:>12.5g} {value['sd']:>10.2g}")
    out = ROOT / "benchmarks" / "results" / "reference_renderer.json"
    out.write_text(json.dumps({"n": args.n, "seeds": seeds, "runs": runs, "summary": summary}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
