"""How high can G(Ali(Enc(pose))) silhouette IoU go? The pose code's own ceiling, measured.

    python benchmarks/iou_ceiling.py [--model synthgen/assets/models/default] [--n 2000]

G only sees the VAE's 20-d code of a pose (+ root offset), never the pose itself. So on held-out
baseline renders (data/test-clean.zarr, seed 101) this compares, at each frame's own crop centre:

  A. the store's crop with a mesh render of its ground-truth joints (IK fit): the pipeline's floor
  B. the store's crop with a mesh render of Dec(Enc(joints)), what the code keeps of the pose:
     no generator can be expected above it
  A', B'. the same joints moved (rigidly) to one centre on the optical axis at 500 mm and
     rendered there. G never sees the crop centre, and the centre sets the direction the hand is
     seen from (up to ~22 degrees off axis in the baseline's frames): a G that draws every hand
     as seen on the axis, perfectly, scores these
  C. the store's crop with G(Ali(Enc(joints))): the headline IoU (goal >= 0.85)
  D, E. (skeleton generator only) G's drawing of the true joints / of Dec(Enc(joints)) placed at
     the true centre, instead of the joints its pose head places

Writes benchmarks/results/iou_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen.data.loading import load_arrays  # noqa: E402
from synthgen.hand.baseline import BaselineRenderer  # noqa: E402
from synthgen.hand.ik import fit_hand  # noqa: E402
from synthgen.models import load, silhouette_metrics  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "synthgen" / "assets" / "models" / "default")
    parser.add_argument("--store", type=Path, default=ROOT / "data" / "test-clean.zarr")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()

    depth, pose, center, _ = load_arrays([args.store])
    depth, pose, center = np.asarray(depth[: args.n], np.float32), pose[: args.n], center[: args.n]
    model = load(args.model)
    renderer = BaselineRenderer(seed=0)

    def mesh_render(joints: np.ndarray) -> tuple[np.ndarray, float]:
        fit = fit_hand(torch.as_tensor(joints))
        return renderer.render_poses(fit.pose, centers=center).depth.copy(), float(np.median(fit.max_residual_mm))

    latent, offset = model.encode_pose(torch.from_numpy(pose), torch.from_numpy(center))
    decoded = model.decode_pose(latent, offset, torch.from_numpy(center)).numpy()
    centers = torch.from_numpy(center)
    generated = np.concatenate([model.generate_depth(torch.cat([latent[s:s + 250], offset[s:s + 250]], 1),
                                                     centers[s:s + 250]).numpy() for s in range(0, len(pose), 250)])
    on_axis = np.float32([0.0, 0.0, 500.0])

    def mesh_render_on_axis(joints: np.ndarray) -> np.ndarray:
        fit = fit_hand(torch.as_tensor(joints - center[:, None] + on_axis))
        return renderer.render_poses(fit.pose, centers=np.tile(on_axis, (len(joints), 1))).depth.copy()

    truth_render, truth_residual = mesh_render(pose)
    code_render, code_residual = mesh_render(decoded)
    rows = {
        "A. mesh render of the true joints (IK fit)": {**silhouette_metrics(truth_render, depth),
                                                        "ik_residual_median_mm": truth_residual},
        "B. mesh render of Dec(Enc(joints))": {**silhouette_metrics(code_render, depth),
                                               "ik_residual_median_mm": code_residual,
                                               "pose_error_mm": float(np.linalg.norm(decoded - pose, axis=-1).mean())},
        "A'. true joints, seen from the axis": silhouette_metrics(mesh_render_on_axis(pose), depth),
        "B'. Dec(Enc(joints)), seen from the axis": silhouette_metrics(mesh_render_on_axis(decoded), depth),
        "C. G(Ali(Enc(joints)))": silhouette_metrics(generated, depth),
    }
    if hasattr(model.generator, "capsules"):
        code = torch.cat([latent, offset], 1)
        rows["D. skeleton G drawing the true joints"] = silhouette_metrics(
            skeleton_drawing(model, code, torch.from_numpy(pose), torch.from_numpy(center)), depth)
        rows["E. skeleton G drawing Dec(Enc(joints)) at the true centre"] = silhouette_metrics(
            skeleton_drawing(model, code, torch.from_numpy(decoded), torch.from_numpy(center)), depth)
    print(f"{args.store.name}, {len(depth)} frames, model {model.checksum[:12]}")
    print(f"{'':<58} {'IoU':>6} {'masked depth MAE':>17}")
    for name, r in rows.items():
        print(f"{name:<58} {r['iou_mean']:>6.3f} {r['depth_mae_mm']:>14.1f} mm")
    out = ROOT / "benchmarks" / "results" / "iou_ceiling.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"store": str(args.store.relative_to(ROOT)), "model": model.checksum, "rows": rows},
                              indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


@torch.no_grad()
def skeleton_drawing(model, code: torch.Tensor, joints_mm: torch.Tensor, center: torch.Tensor) -> np.ndarray:
    """The skeleton generator's output with its pose head's joints replaced by `joints_mm`
    (radii still from the head), background-snapped like `generate_depth`."""
    model.eval()
    G, out = model.generator, []
    for s in range(0, len(code), 250):
        _, radii = G.joints(model.align(code[s:s + 250]), center[s:s + 250])
        h = G.mix(G.capsules(model.crop_coordinates(joints_mm[s:s + 250], center[s:s + 250]), radii))
        for up in G.ups:
            h = up(h)
        out.append(torch.tanh(G.out(h))[:, 0])
    depth = torch.cat(out)
    snap = model.config.generator.background_snap
    return depth.masked_fill(depth >= snap, model.normalisation.background).numpy() if snap < 1 else depth.numpy()


if __name__ == "__main__":
    main()
