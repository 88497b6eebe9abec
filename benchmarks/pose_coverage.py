"""How well the baseline's pose prior covers real hand poses: the public NYU and ICVL test labels.

The field's label sets do not name the joints of synthgen's skeleton (NYU's palm centre and
wrist sides, ICVL's palm and its short fingers), so comparing joints converted to their layout
mixes the prior's reach with the joint definitions (both are reported). The measure that
isolates the prior fits synthgen's hand to every real pose through the layout's conversion
(rotation, position, size, the seven shape ratios and the 20 angles, within the skeleton's
limits; Adam on the mean joint distance, two starts) and compares the fitted articulation and
view, at unit size and average shape, with the prior's: what a rendered crop can show.

    python benchmarks/pose_coverage.py --nyu-labels nyu_test_groundtruth_label.txt \
        --icvl-labels icvl_test_groundtruth_label.txt [--n 100000] [--real 2000]

Inputs (public, fetched by the user, never shipped): the field's test label files, one frame per
line, 14 (NYU) or 16 (ICVL) joints × (u, v, depth mm); `xinghaochen/awesome-hand-pose-estimation`
keeps them under evaluation/groundtruth/.

Two measures, for the clean baseline's prior and baseline v2's, `--n` poses each, against up to
`--real` real poses per dataset (a fixed random subset), every pose with its joints' box
centre subtracted (what a crop shows is the pose relative to its centre):

1. In the dataset's layout (conventions.LAYOUTS conversions of the prior's joints):
   PRDC coverage (Naeem et al. 2020, k = 5) and the mean joint distance to the nearest prior
   pose. Mixes the prior's reach with the joint definitions.
2. Articulation and view (the headline): each real pose fitted as described above (a label set
   of a left hand, found by fitting the labels and their mirror image, is mirrored first: a
   right-hand model reads a left hand's crop mirrored), re-posed at unit size and average shape,
   against the prior's hands at unit size. Covered: inside the prior's 5-NN manifold
   (Kynkäänniemi et al. 2019's recall: a ball around every prior pose with the radius of its
   5th nearest prior neighbour). PRDC coverage is printed too; its balls come from the real
   set, whose video frames sit closer together than distinct poses do.
Prints a table; writes benchmarks/results/pose_coverage.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen.conventions import CAMERAS, LAYOUTS  # noqa: E402
from synthgen.data.formats.labels import _read_uvd_lines  # noqa: E402
from synthgen.hand.baseline import _draw_proportions  # noqa: E402
from synthgen.hand.camera import hand_center, unproject  # noqa: E402
from synthgen.hand.ik import _umeyama  # noqa: E402
from synthgen.hand.kinematics import forward_kinematics  # noqa: E402
from synthgen.hand.prior import sample_poses  # noqa: E402
from synthgen.hand.scene import SceneConfig  # noqa: E402
from synthgen.realism import metrics  # noqa: E402

BLOCK = 4096


def read_uvd(path: Path, joints: int, camera: str) -> np.ndarray:
    return unproject(_read_uvd_lines(path, joints), CAMERAS[camera]).astype(np.float32)


def prior_joints(scene: SceneConfig, n: int, seed: int = 0) -> np.ndarray:
    """(n, 21, 3) joints of the scene's pose prior (and hand shapes, when the scene varies them)."""
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n, BLOCK):
        count = min(BLOCK, n - start)
        pose = sample_poses(rng, count, CAMERAS["hands2017"], scene.pose)
        if scene.shape is not None:
            pose.proportions = torch.from_numpy(_draw_proportions(rng, count, scene.shape))
        out.append(forward_kinematics(pose)[0].numpy())
    return np.concatenate(out)


def layout_matrix(layout: str) -> torch.Tensor:
    """(J, 21): the layout's joints as weighted sums of the canonical ones (every conversion is linear)."""
    basis = np.zeros((21, 21, 3))
    basis[np.arange(21), np.arange(21)] = 1.0
    return torch.from_numpy(LAYOUTS[layout].from_canonical(basis)[..., 0].T.copy())


def fit_through_layout(real: np.ndarray, layout: str, steps: int = 400) -> dict:
    """Fit synthgen's hand (HandPose with proportions) to (n, J, 3) real joints of `layout`."""
    from synthgen.hand import skeleton
    from synthgen.hand.kinematics import HandPose

    M = layout_matrix(layout)
    target = torch.from_numpy(real.astype(np.float64))
    n = len(real)
    lower = torch.as_tensor(skeleton.ANGLE_LIMITS[:, 0], dtype=torch.float64)
    upper = torch.as_tensor(skeleton.ANGLE_LIMITS[:, 1], dtype=torch.float64)
    best = None
    for curl in (0.15, 0.5):
        rest = HandPose(torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                        (lower + curl * (upper - lower))[None].clone(), torch.ones(1, dtype=torch.float64))
        source = (M @ forward_kinematics(rest)[0][0])
        R, t, s = _umeyama(source, target, (0.5, 1.5))
        rotvec = torch.from_numpy(Rotation.from_matrix(R.numpy()).as_rotvec()).requires_grad_()
        t = t.clone().requires_grad_()
        log_s = torch.log(s).clone().requires_grad_()
        angle_logit = torch.full((n, 20), float(np.log(curl / (1 - curl))), dtype=torch.float64, requires_grad=True)
        log_shape = torch.zeros(n, 7, dtype=torch.float64, requires_grad=True)
        params = [rotvec, t, log_s, angle_logit, log_shape]
        opt = torch.optim.Adam(params, lr=0.03)

        def joints():
            pose = HandPose(rotvec, t, lower + (upper - lower) * torch.sigmoid(angle_logit), torch.exp(log_s),
                            torch.exp(log_shape.clamp(-0.4, 0.4)))
            return pose, M @ forward_kinematics(pose)[0]

        for step in range(steps):
            if step == steps // 2:
                for group in opt.param_groups:
                    group["lr"] = 0.01
            opt.zero_grad()
            error = (joints()[1] - target).norm(dim=-1).mean(1)
            error.sum().backward()
            opt.step()
        with torch.no_grad():
            pose, fitted = joints()
            error = (fitted - target).norm(dim=-1).mean(1)
            pose = HandPose(**{k: v.detach().clone() for k, v in pose.tensors().items()})
        if best is None:
            best = {"pose": pose, "error": error}
        else:
            better = error < best["error"]
            for name in ("global_rot", "translation", "angles", "scale", "proportions"):
                getattr(best["pose"], name)[better] = getattr(pose, name)[better]
            best["error"] = torch.where(better, error, best["error"])
    return best


def unit_hands(pose) -> np.ndarray:
    """(n, 21, 3) canonical joints of the same articulation and view at size 1 and average shape."""
    from synthgen.hand.kinematics import HandPose

    unit = HandPose(pose.global_rot.detach().double(), torch.zeros_like(pose.translation, dtype=torch.float64),
                    pose.angles.detach().double(), torch.ones(len(pose), dtype=torch.float64))
    return forward_kinematics(unit)[0].numpy()


def centred(joints: np.ndarray) -> np.ndarray:
    return (joints - hand_center(joints)[:, None]).reshape(len(joints), -1).astype(np.float64)


def nearest_mean_joint_distance(real: np.ndarray, prior: np.ndarray, joints: int) -> np.ndarray:
    """Per real pose, the mean joint distance (mm) to the prior pose nearest in that measure's
    squared-sum proxy (the Euclidean nearest), computed exactly for the nearest 8 by the proxy."""
    out = np.empty(len(real))
    for s in range(0, len(real), 256):
        q = real[s:s + 256]
        d2 = (q ** 2).sum(1)[:, None] + (prior ** 2).sum(1)[None] - 2 * q @ prior.T
        candidates = np.argpartition(d2, 8, axis=1)[:, :8]
        diff = (q[:, None] - prior[candidates]).reshape(len(q), 8, joints, 3)
        out[s:s + 256] = np.linalg.norm(diff, axis=-1).mean(-1).min(1)
    return out


def measure(name: str, real: np.ndarray, layout: str, priors: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    real_c = centred(real)
    joints = LAYOUTS[layout].num_joints
    for prior_name, canonical in priors.items():
        prior_c = centred(LAYOUTS[layout].from_canonical(canonical))
        cover = metrics.coverage(real_c, prior_c, k=5)
        nearest = nearest_mean_joint_distance(real_c, prior_c, joints)
        rows.append({"dataset": name, "prior": prior_name, "real_poses": len(real), "prior_poses": len(canonical),
                     "coverage_k5": cover, "nearest_median_mm": float(np.median(nearest)),
                     "within_10mm": float((nearest <= 10).mean()), "within_15mm": float((nearest <= 15).mean())})
        print(f"{name:5s} {prior_name:10s} coverage {cover:.3f}  nearest median {np.median(nearest):5.1f} mm  "
              f"≤10 mm {(nearest <= 10).mean():.3f}  ≤15 mm {(nearest <= 15).mean():.3f}")
    return rows


def handedness(real: np.ndarray, layout: str, probe: int = 200) -> tuple[bool, float, float]:
    """Whether the labels are of a left hand (synthgen's is a right hand): fit both the labels
    and their mirror image (x → −x) on a probe subset; the better-fitting one wins."""
    sub = real[:probe]
    mirrored = sub.copy()
    mirrored[..., 0] *= -1
    as_is = float(fit_through_layout(sub, layout, steps=300)["error"].median())
    flipped = float(fit_through_layout(mirrored, layout, steps=300)["error"].median())
    return flipped < as_is, as_is, flipped


def support_coverage(real: np.ndarray, prior: np.ndarray, k: int = 5) -> float:
    """Fraction of real points inside the prior's k-NN manifold (Kynkäänniemi et al. 2019's recall)."""
    return metrics.knn_precision_recall(real, prior, k)[1]


def articulation_rows(name: str, real: np.ndarray, layout: str, unit_priors: dict[str, np.ndarray]) -> dict:
    left, as_is, flipped = handedness(real, layout)
    if left:
        real = real.copy()
        real[..., 0] *= -1
    fit = fit_through_layout(real, layout)
    fitted = centred(unit_hands(fit["pose"]))
    scale = fit["pose"].scale.numpy()
    entry = {"dataset": name, "left_hand": left, "probe_fit_mm": {"as_is": as_is, "mirrored": flipped},
             "fit_error_median_mm": float(fit["error"].median()), "scale_median": float(np.median(scale)),
             "scale_p5_p95": np.percentile(scale, [5, 95]).tolist()}
    for prior_name, canonical in unit_priors.items():
        entry[f"support_coverage_{prior_name}"] = support_coverage(fitted, centred(canonical))
        entry[f"prdc_coverage_{prior_name}"] = metrics.coverage(fitted, centred(canonical), k=5)
    print(f"{name:5s} {'left' if left else 'right'} hand (fit {as_is:.1f} mm as is, {flipped:.1f} mm mirrored); "
          f"fitted through the layout: residual {entry['fit_error_median_mm']:.1f} mm, size {entry['scale_median']:.2f} "
          f"({entry['scale_p5_p95'][0]:.2f}-{entry['scale_p5_p95'][1]:.2f})")
    for prior_name in unit_priors:
        print(f"      {prior_name:6s} articulation + view: covered (inside the prior's 5-NN manifold) "
              f"{entry[f'support_coverage_{prior_name}']:.3f}, PRDC coverage {entry[f'prdc_coverage_{prior_name}']:.3f}")
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nyu-labels", type=Path, required=True)
    parser.add_argument("--icvl-labels", type=Path, required=True)
    parser.add_argument("--n", type=int, default=20_000, help="prior poses per prior")
    parser.add_argument("--real", type=int, default=1000, help="real poses per dataset (a fixed random subset)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pose_coverage.json")
    args = parser.parse_args()

    scenes = {"clean": SceneConfig.clean(), "v2": SceneConfig()}
    priors = {name: prior_joints(scene, args.n) for name, scene in scenes.items()}
    unit_priors = {name: prior_joints(replace(scene, shape=None, pose=replace(scene.pose, scale_std=0.0)), args.n, seed=1)
                   for name, scene in scenes.items()}
    rng = np.random.default_rng(0)
    rows, fits = [], []
    for name, path, joints, camera in (("nyu", args.nyu_labels, 14, "nyu"), ("icvl", args.icvl_labels, 16, "icvl")):
        real = read_uvd(path, joints, camera)
        real = real[np.sort(rng.choice(len(real), min(args.real, len(real)), replace=False))]
        rows += measure(name, real, name, priors)
        fits.append(articulation_rows(name, real, name, unit_priors))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"layout_rows": rows, "articulation_rows": fits, "n": args.n, "real": args.real},
                                   indent=1) + "\n")


if __name__ == "__main__":
    main()
