"""The pose prior of the mesh baseline: plausible hands, varied views, reproducible per seed.

A hand is not 20 independent angles. The prior draws, per hand:
  1. a grasp type (open, relaxed, fist, point, pinch, free) that sets mean curls per finger;
  2. per-finger curl noise that is correlated between neighbouring fingers (AR(1) over the
     fingers, rho = `PriorConfig.neighbour_correlation`), and a shared spread;
  3. joint angles from the curls with anatomical coupling: DIP = 2/3 PIP (+ small noise),
     MCP flexion follows the curl more loosely, abduction shrinks as the fingers curl;
  4. a viewpoint: the fingers point within ±`max_inplane_deg` of image-up (tilted
     ±`max_tilt_deg` towards/away from the camera) and the hand rolls freely about that axis,
     so palm, back and side views all occur; a distance and an image position;
  5. a hand size (uniform scale, adult range).
All angles are clipped to `skeleton.ANGLE_LIMITS`. Everything is vectorised numpy driven by an
explicit `np.random.Generator`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from synthgen.conventions import Intrinsics
from synthgen.hand import skeleton
from synthgen.hand.kinematics import HandPose, forward_kinematics

# Mean curl per finger (thumb..little) in [0, 1] for each grasp type.
GRASPS = {
    "open": [0.05, 0.0, 0.0, 0.0, 0.0],
    "relaxed": [0.3, 0.3, 0.35, 0.4, 0.45],
    "fist": [0.8, 0.95, 0.95, 0.95, 0.95],
    "point": [0.7, 0.0, 0.95, 0.95, 0.95],
    "pinch": [0.65, 0.55, 0.2, 0.15, 0.1],
    "free": [0.5, 0.5, 0.5, 0.5, 0.5],
}
GRASP_WEIGHTS = {"open": 0.2, "relaxed": 0.2, "fist": 0.15, "point": 0.1, "pinch": 0.1, "free": 0.25}


@dataclass(frozen=True)
class PriorConfig:
    curl_std: float = 0.18  # per-finger deviation from the grasp's mean curl
    free_curl_std: float = 0.35  # the "free" grasp explores the whole range
    neighbour_correlation: float = 0.6  # AR(1) correlation of curl noise between fingers
    dip_pip_ratio: float = 2 / 3  # the classic DIP ≈ 2/3 PIP coupling
    max_inplane_deg: float = 75.0
    max_tilt_deg: float = 45.0
    distance_mm: tuple[float, float] = (350.0, 650.0)  # hand centre depth range
    image_margin: float = 0.2  # keep the centre this fraction of the frame away from the borders
    scale_mean: float = 1.0
    scale_std: float = 0.06  # adult hand-length spread ~ ±6 %
    scale_range: tuple[float, float] = (0.85, 1.15)

    def to_dict(self) -> dict:
        return asdict(self)


def _correlated_noise(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    """(n, 5) standard normals with correlation rho between neighbouring fingers."""
    eps = rng.standard_normal((n, 5))
    out = np.empty_like(eps)
    out[:, 0] = eps[:, 0]
    for f in range(1, 5):
        out[:, f] = rho * out[:, f - 1] + np.sqrt(1 - rho**2) * eps[:, f]
    return out


def sample_angles(rng: np.random.Generator, n: int, config: PriorConfig = PriorConfig()) -> np.ndarray:
    """(n, 20) joint angles in radians, within limits, order `skeleton.ANGLE_NAMES`."""
    names = list(GRASPS)
    p = np.array([GRASP_WEIGHTS[k] for k in names])
    grasp = rng.choice(len(names), size=n, p=p / p.sum())
    mean_curl = np.array([GRASPS[k] for k in names])[grasp]  # (n, 5)
    std = np.where(np.array(names)[grasp] == "free", config.free_curl_std, config.curl_std)[:, None]
    curl = np.clip(mean_curl + std * _correlated_noise(rng, n, config.neighbour_correlation), -0.15, 1.0)

    lo, hi = skeleton.ANGLE_LIMITS[:, 0].reshape(5, 4), skeleton.ANGLE_LIMITS[:, 1].reshape(5, 4)
    angles = np.empty((n, 5, 4))
    pos = np.clip(curl, 0, 1)
    # MCP / CMC flexion follows the curl loosely (a fist can keep MCPs straighter, a hook).
    flex0 = np.where(curl >= 0, curl * hi[:, 0], -curl / 0.15 * lo[:, 0])
    angles[..., 0] = flex0 + np.radians(12) * rng.standard_normal((n, 5))
    # Middle joint (PIP, thumb MCP): tightly tied to the curl.
    angles[..., 2] = pos * hi[:, 2] + np.radians(8) * rng.standard_normal((n, 5))
    # Distal joint (DIP, thumb IP): the 2/3 coupling with the middle joint.
    angles[..., 3] = config.dip_pip_ratio * angles[..., 2] + np.radians(6) * rng.standard_normal((n, 5))
    # Abduction: a shared spread, shrinking as the finger curls; the thumb abducts on its own.
    spread = rng.uniform(-0.3, 1.0, size=(n, 1))
    abd_range = np.where(spread >= 0, hi[:, 1], -lo[:, 1])
    fan = np.array([0.0, 1.0, 0.2, -0.6, -1.0])  # fingers fan out about the middle finger
    angles[..., 1] = fan * spread * abd_range * (1 - 0.7 * pos) + np.radians(5) * rng.standard_normal((n, 5))
    angles[:, 0, 1] = rng.uniform(lo[0, 1], hi[0, 1], size=n) * (0.5 + 0.5 * pos[:, 0])
    angles = np.clip(angles, lo, hi)
    return angles.reshape(n, 20).astype(np.float32)


def _rotation_from_axes(pointing: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Rotation matrices (n,3,3) whose hand +y maps to `pointing`, rolled by `roll` about it."""
    n = len(pointing)
    y = pointing / np.linalg.norm(pointing, axis=1, keepdims=True)
    ref = np.broadcast_to(np.array([0.0, 0.0, -1.0]), (n, 3))  # towards the camera
    z0 = ref - (ref * y).sum(1, keepdims=True) * y
    z0 /= np.linalg.norm(z0, axis=1, keepdims=True)
    x0 = np.cross(y, z0)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    z = c * z0 + s * x0
    x = np.cross(y, z)
    return np.stack([x, y, z], axis=2)  # columns are the hand axes in camera coordinates


def _matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(R).as_rotvec().astype(np.float32)


def sample_poses(rng: np.random.Generator, n: int, camera: Intrinsics,
                 config: PriorConfig = PriorConfig()) -> HandPose:
    """n hands placed so that their joints' bounding-box centre lies inside the frame."""
    angles = sample_angles(rng, n, config)
    inplane = np.radians(rng.uniform(-config.max_inplane_deg, config.max_inplane_deg, n))
    tilt = np.radians(rng.uniform(-config.max_tilt_deg, config.max_tilt_deg, n))
    pointing = np.stack([np.sin(inplane) * np.cos(tilt), -np.cos(inplane) * np.cos(tilt), np.sin(tilt)], axis=1)
    R = _rotation_from_axes(pointing, rng.uniform(-np.pi, np.pi, n))
    scale = np.clip(rng.normal(config.scale_mean, config.scale_std, n), *config.scale_range).astype(np.float32)

    depth = rng.uniform(*config.distance_mm, n)
    m = config.image_margin
    u = rng.uniform(m * camera.width, (1 - m) * camera.width, n)
    v = rng.uniform(m * camera.height, (1 - m) * camera.height, n)
    target = np.stack([(u - camera.cx) * depth / camera.fx, (v - camera.cy) * depth / camera.fy, depth], axis=1)

    pose = HandPose(
        global_rot=torch.from_numpy(_matrix_to_axis_angle(R)),
        translation=torch.zeros(n, 3),
        angles=torch.from_numpy(angles),
        scale=torch.from_numpy(scale),
    )
    joints, _ = forward_kinematics(pose)
    box_centre = (joints.amin(1) + joints.amax(1)) / 2
    pose.translation = torch.from_numpy(target.astype(np.float32)) - box_centre
    return pose
