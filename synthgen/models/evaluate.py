"""Held-out evaluation: pose error of the posterior path and the generator's fidelity.

The metric functions are pure (numpy in, numbers out); `evaluate` runs a model over arrays in
batches and `write_report` writes eval.json and eval.png.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from synthgen.conventions import BACKGROUND, CUBE_MM, JOINT_NAMES, LAYOUTS

THRESHOLDS_MM = (10, 20, 30, 40, 50, 60, 70, 80)
FOREGROUND_EPS = 1e-3  # a pixel is foreground where its normalised depth < BACKGROUND − eps


def pose_metrics(pred: np.ndarray, true: np.ndarray, thresholds=THRESHOLDS_MM, joint_names=JOINT_NAMES) -> dict:
    """Joint errors of (N, J, 3) mm predictions (joints named by `joint_names`).

    mean_joint_error_mm: mean Euclidean error over all joints and frames; per_joint_mm: (J,) means;
    max_error_below: {"<t": fraction of frames whose worst joint error is below t mm}.
    """
    err = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(true, np.float64), axis=-1)  # (N, J)
    worst = err.max(axis=1)
    return {
        "frames": int(err.shape[0]),
        "mean_joint_error_mm": float(err.mean()),
        "median_joint_error_mm": float(np.median(err)),
        "per_joint_mm": {name: float(v) for name, v in zip(joint_names, err.mean(axis=0), strict=True)},
        "max_error_below": {f"<{t}": float((worst < t).mean()) for t in thresholds},
    }


def foreground(depth_norm: np.ndarray) -> np.ndarray:
    """Hand pixels of normalised crops: value < BACKGROUND − FOREGROUND_EPS."""
    return np.asarray(depth_norm) < BACKGROUND - FOREGROUND_EPS


def silhouette_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, S, S) × 2 normalised crops → (n,) IoU of the hand silhouettes; two empty crops agree (1)."""
    fa, fb = foreground(a), foreground(b)
    inter = (fa & fb).sum(axis=(1, 2)).astype(np.float64)
    union = (fa | fb).sum(axis=(1, 2)).astype(np.float64)
    return np.divide(inter, union, out=np.ones_like(inter), where=union > 0)


def silhouette_metrics(fake: np.ndarray, real: np.ndarray, mm_per_unit: float = CUBE_MM / 2) -> dict:
    """Generated vs real (N, S, S) normalised depth.

    iou_mean: mean over frames of |F_fake ∩ F_real| / |F_fake ∪ F_real|, foreground F = value <
    1 − 1e-3 (a frame with both empty counts 1); depth_mae_mm: mean |fake − real|·mm_per_unit
    over the pixels foreground in both (125 mm per unit for a 250 mm cube).
    """
    fake, real = np.asarray(fake, np.float32), np.asarray(real, np.float32)
    iou = silhouette_iou(fake, real)
    both = foreground(fake) & foreground(real)
    mae = float(np.abs(fake - real)[both].mean() * mm_per_unit) if both.any() else float("nan")
    return {"frames": int(fake.shape[0]), "iou_mean": float(iou.mean()), "depth_mae_mm": mae}


def evaluate(model, depth: np.ndarray, pose: np.ndarray, center: np.ndarray, batch_size: int = 250,
             examples: int = 4) -> dict:
    """Run the posterior path and G(Ali(Enc(pose))) over held-out frames.

    depth (N, S, S) normalised, pose (N, J, 3) mm, center (N, 3) mm. Returns the metrics of
    `pose_metrics` and `silhouette_metrics`, plus a few example images under "examples".
    """
    preds, fakes = [], []
    for s in range(0, len(depth), batch_size):
        d = torch.from_numpy(np.asarray(depth[s:s + batch_size], np.float32))
        c = torch.from_numpy(np.asarray(center[s:s + batch_size], np.float32))
        p = torch.from_numpy(np.asarray(pose[s:s + batch_size], np.float32))
        preds.append(model.estimate(d, c).numpy())
        latent, offset = model.encode_pose(p, c)
        fakes.append(model.generate_depth(torch.cat([latent, offset], 1), c).numpy())
    pred, fake = np.concatenate(preds), np.concatenate(fakes)
    real = np.asarray(depth, np.float32)
    return {
        "pose": pose_metrics(pred, pose, joint_names=LAYOUTS[model.joint_layout].joint_names),
        "generator": silhouette_metrics(fake, real),
        "examples": {"real": real[:examples], "fake": fake[:examples]},
    }


def write_report(results: dict, out_dir: str | Path, extra: dict | None = None) -> dict:
    """eval.json (numbers only) and eval.png (per-joint errors, threshold curve, examples)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"pose": results["pose"], "generator": results["generator"], **(extra or {})}
    (out_dir / "eval.json").write_text(json.dumps(doc, indent=2))

    pose, gen, ex = results["pose"], results["generator"], results["examples"]
    n_ex = len(ex["real"])
    fig = plt.figure(figsize=(12, 7), layout="constrained")
    grid = fig.add_gridspec(3, max(n_ex, 2) * 2)
    ax = fig.add_subplot(grid[0, :n_ex])
    ax.bar(range(len(pose["per_joint_mm"])), list(pose["per_joint_mm"].values()))
    ax.set_xticks(range(len(pose["per_joint_mm"])), list(pose["per_joint_mm"]), rotation=90, fontsize=7)
    ax.set_ylabel("mean error (mm)")
    ax.set_title(f"per joint; mean {pose['mean_joint_error_mm']:.1f} mm over {pose['frames']} frames")
    ax = fig.add_subplot(grid[0, n_ex:])
    thr = [int(k[1:]) for k in pose["max_error_below"]]
    ax.plot(thr, [100 * v for v in pose["max_error_below"].values()], marker="o")
    ax.set_xlabel("max joint error threshold (mm)")
    ax.set_ylabel("frames (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    for i in range(n_ex):
        for row, (key, label) in enumerate((("real", "real"), ("fake", "G(Ali(Enc(pose)))")), start=1):
            a = fig.add_subplot(grid[row, 2 * i:2 * i + 2])
            a.imshow(ex[key][i], cmap="viridis", vmin=-1, vmax=1)
            a.set_axis_off()
            a.set_title(label, fontsize=8)
    fig.suptitle(f"generator: silhouette IoU {gen['iou_mean']:.3f}, masked |Δdepth| {gen['depth_mae_mm']:.1f} mm")
    fig.savefig(out_dir / "eval.png", dpi=80)
    plt.close(fig)
    return doc
