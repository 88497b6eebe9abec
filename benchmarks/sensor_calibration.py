"""Sensor statistics of real depth crops next to baseline v2's renders (docs/sensors.md).

    python benchmarks/sensor_calibration.py --nyu-root NYU_ROOT --sr305 SR305_DIR [--n 512]

Inputs (public, fetched by the user, never shipped):
  --nyu-root  a NYU test split holding depth_1_0000001.png and a joint_data.mat with its labels
              (benchmarks/real_frames.py builds one from the public frame and the field's
              labels), read with `synthgen.data.formats.nyu`; Kinect-class structured light.
  --sr305     the SR305 frames of LadaOndris/hand-recognition (datasets/custom/, MIT): 19
              640x480 PNGs, depth unit 0.125 mm, f = 476.007 px, principal point (313.683,
              242.755); Intel RealSense SR305, coded (structured) light.

Real crops are cut the way `import` cuts them: NYU at DeepPrior's centre of mass started at
the labelled joints' box; SR305 (no labels) started at the centre of mass of the largest blob
within 100 mm of the nearest surface, crops whose foreground exceeds 55 % of the pixels (the
blob was the body, not the hand) left out. Renders: baseline v2 with each sensor preset, hands
placed at the real crops' distances (NYU 700-800 mm, SR305 500-700 mm), third-person views.
Statistics: synthgen.realism.sensor.crop_statistics. Prints a table; writes
benchmarks/results/sensors.json, docs/sensors.png (crops) and docs/sensors_hist.png.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen.conventions import CAMERAS, Intrinsics  # noqa: E402
from synthgen.data.crops import pinhole_crop_mm  # noqa: E402
from synthgen.data.formats.common import refine_center  # noqa: E402
from synthgen.hand.baseline import BaselineRenderer  # noqa: E402
from synthgen.hand.camera import denormalize_depth, hand_center, unproject  # noqa: E402
from synthgen.hand.scene import SceneConfig  # noqa: E402
from synthgen.realism.sensor import crop_statistics  # noqa: E402

SR305 = Intrinsics(476.007, 476.007, 313.683, 242.755, 640, 480)
SR305_UNIT_MM = 0.125


def nyu_crops(root: Path) -> tuple[np.ndarray, np.ndarray]:
    from synthgen.data.formats.nyu import NYUFrames

    frames = NYUFrames(root, split="test")
    crops, centres = [], []
    for i in range(len(frames)):
        depth, joints = frames.frame(i)
        centre = refine_center(depth, CAMERAS["nyu"], hand_center(joints))
        crops.append(pinhole_crop_mm(depth, centre, CAMERAS["nyu"]))
        centres.append(centre)
    return np.stack(crops), np.stack(centres)


def sr305_crops(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import imageio.v3 as iio
    from scipy import ndimage

    crops, centres = [], []
    for path in sorted(folder.glob("*/*.png")):
        depth = iio.imread(path).astype(np.float32) * SR305_UNIT_MM
        near = np.percentile(depth[depth > 0], 0.2)
        labels, count = ndimage.label((depth > 0) & (depth < near + 100))
        sizes = ndimage.sum(np.ones_like(depth), labels, range(1, count + 1))
        rows, cols = np.nonzero(labels == 1 + int(np.argmax(sizes)))
        start = unproject(np.array([cols.mean(), rows.mean(), depth[rows, cols].mean()]), SR305)
        centre = refine_center(depth, SR305, start)
        crop = pinhole_crop_mm(depth, centre, SR305)
        if (crop > 0).mean() <= 0.55:
            crops.append(crop)
            centres.append(centre)
    return np.stack(crops), np.stack(centres)


def rendered(sensor: str, distance: tuple[float, float], n: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    scene = SceneConfig()
    scene = replace(scene, sensor=sensor, pose=replace(scene.pose, distance_mm=distance,
                                                       viewpoints={"third-person": 1.0}))
    chunk = BaselineRenderer(seed=seed, scene=scene).make_chunk(0, n)
    mm = denormalize_depth(chunk.depth, chunk.center[:, 2])
    mm[chunk.depth >= 1] = 0.0
    return mm, chunk.center


def figure(rows: list[tuple[str, np.ndarray, np.ndarray]], path: Path, per_row: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), per_row, figsize=(per_row * 1.2, len(rows) * 1.35))
    for (label, crops, centres), line in zip(rows, axes):
        for k, ax in enumerate(line):
            ax.axis("off")
            if k < len(crops):
                norm = np.clip((crops[k] - centres[k, 2]) / 125.0, -1, 1)
                norm[(crops[k] <= 0) | ((crops[k] - centres[k, 2]) / 125.0 > 1)] = 1
                ax.imshow(norm, cmap="viridis", vmin=-1, vmax=1)
        line[0].set_title(label, fontsize=8, loc="left")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.04, hspace=0.25)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def histogram_figure(stats: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    names = list(stats)
    bins = stats[names[0]]["gradient_bins_mm"]
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ax.bar(np.arange(len(bins)) + k * width, stats[name]["gradient_histogram"], width, label=name)
    ax.set_xticks(np.arange(len(bins)) + 0.4 - width / 2, bins, fontsize=8)
    ax.set_xlabel("|depth difference| between neighbouring foreground pixels (mm)")
    ax.set_ylabel("fraction")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nyu-root", type=Path, required=True)
    parser.add_argument("--sr305", type=Path, required=True)
    parser.add_argument("--n", type=int, default=512, help="renders per preset")
    args = parser.parse_args()

    nyu, nyu_c = nyu_crops(args.nyu_root)
    sr, sr_c = sr305_crops(args.sr305)
    sets = {
        f"real NYU (Kinect), {len(nyu)} frame": (nyu, nyu_c),
        "v2 structured-light, 700-800 mm": rendered("structured-light", (700.0, 800.0), args.n),
        "v2 no sensor, 700-800 mm": rendered("none", (700.0, 800.0), args.n),
        f"real SR305, {len(sr)} frames": (sr, sr_c),
        "v2 sr305, 500-700 mm": rendered("sr305", (500.0, 700.0), args.n),
        "v2 tof, 500-700 mm": rendered("tof", (500.0, 700.0), args.n),
        "v2 active-stereo, 500-700 mm": rendered("active-stereo", (500.0, 700.0), args.n),
    }
    stats = {name: crop_statistics(crops, centres[:, 2]) for name, (crops, centres) in sets.items()}
    print(f"{'crops':34s} {'holes':>6s} {'edge':>6s} {'noise':>6s} {'step':>6s} {'Δ=0':>6s}  gradient histogram")
    for name, s in stats.items():
        print(f"{name:34s} {s['hole_fraction']:6.3f} {s['edge_dropout']:6.3f} {s['noise_mm']:6.2f} "
              f"{s['depth_step_mm'] or 0:6.2f} {s['zero_gradient_fraction']:6.2f}  "
              + " ".join(f"{v:.3f}" for v in s["gradient_histogram"]))
    out = ROOT / "benchmarks" / "results" / "sensors.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(stats, indent=1) + "\n")
    names = list(sets)
    figure([(names[0] + " + " + names[3], np.concatenate([nyu, sr[:7]]), np.concatenate([nyu_c, sr_c[:7]])),
            (names[1], *(a[:8] for a in sets[names[1]])),
            (names[4], *(a[:8] for a in sets[names[4]])),
            (names[5], *(a[:8] for a in sets[names[5]]))], ROOT / "docs" / "sensors.png")
    histogram_figure({k: stats[k] for k in (names[0], names[1], names[3], names[4])}, ROOT / "docs" / "sensors_hist.png")


if __name__ == "__main__":
    main()
