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

from dataclasses import asdict, dataclass, field

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
    "natural": [0.1, 0.12, 0.15, 0.18, 0.2],  # the resting open hand, fingers slightly bent
    "count": [0.0, 0.0, 0.0, 0.0, 0.0],  # each finger extended or curled at random (gestures, counting)
}
#: The clean baseline's mixture; baseline v2 sets its own (`PriorConfig.grasp_weights`).
GRASP_WEIGHTS = {"open": 0.2, "relaxed": 0.2, "fist": 0.15, "point": 0.1, "pinch": 0.1, "free": 0.25}
COUNT_CURLS = (0.05, 0.9)  # extended / curled curl of a "count" finger
#: Viewpoint presets: "third-person" is a camera facing the person (fingers roughly up, the
#: `max_inplane_deg` / `max_tilt_deg` / `distance_mm` ranges); "egocentric" a head-mounted
#: camera looking down the arm (fingers pointing away, tilted `egocentric_tilt_deg`, closer).
VIEWPOINTS = ("third-person", "egocentric")


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
    mcp_noise_deg: float = 12.0  # per-finger noise of the first joint's flexion about the curl's
    pip_noise_deg: float = 8.0
    dip_noise_deg: float = 6.0
    abduction_noise_deg: float = 5.0
    spread_range: tuple[float, float] = (-0.3, 1.0)  # shared finger spread, -: fingers together
    grasp_weights: dict[str, float] = field(default_factory=lambda: dict(GRASP_WEIGHTS))  # grasp type → weight
    palm_facing: float = 0.5  # third-person views: the share with the palm towards the camera
    viewpoints: dict[str, float] = field(default_factory=lambda: {"third-person": 1.0})  # preset → weight
    egocentric_inplane_deg: float = 60.0
    egocentric_tilt_deg: tuple[float, float] = (15.0, 75.0)  # fingers tilted away from the camera
    egocentric_distance_mm: tuple[float, float] = (250.0, 500.0)

    def validate(self) -> None:
        """ValueError naming the first bad field."""
        unknown = set(self.grasp_weights) - set(GRASPS)
        if unknown:
            raise ValueError(f"grasp_weights: unknown grasp {sorted(unknown)[0]!r} (known: {', '.join(GRASPS)})")
        if not self.grasp_weights or min(self.grasp_weights.values()) < 0 or sum(self.grasp_weights.values()) <= 0:
            raise ValueError(f"grasp_weights: weights must be >= 0 and not all 0, got {self.grasp_weights}")
        unknown = set(self.viewpoints) - set(VIEWPOINTS)
        if unknown:
            raise ValueError(f"viewpoints: unknown viewpoint {sorted(unknown)[0]!r} (known: {', '.join(VIEWPOINTS)})")
        weights = list(self.viewpoints.values())
        if not weights or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"viewpoints: weights must be >= 0 and not all 0, got {self.viewpoints}")
        for name in ("distance_mm", "egocentric_distance_mm", "scale_range"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name}: expected 0 < low <= high, got {[lo, hi]}")
        lo, hi = self.egocentric_tilt_deg
        if not -90 <= lo <= hi <= 90:
            raise ValueError(f"egocentric_tilt_deg: expected -90 <= low <= high <= 90, got {[lo, hi]}")
        for name in ("curl_std", "free_curl_std", "scale_std", "max_inplane_deg", "max_tilt_deg",
                     "egocentric_inplane_deg"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.palm_facing <= 1:
            raise ValueError(f"palm_facing: expected a value in [0, 1], got {self.palm_facing}")
        if not 0 <= self.image_margin < 0.5:
            raise ValueError(f"image_margin: expected a value in [0, 0.5), got {self.image_margin}")
        if not -1 < self.neighbour_correlation < 1:
            raise ValueError(f"neighbour_correlation: expected a value in (-1, 1), got {self.neighbour_correlation}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PriorConfig:
        """From `to_dict`'s output (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


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
    names = [k for k in GRASPS if k in config.grasp_weights]
    p = np.array([config.grasp_weights[k] for k in names])
    grasp = rng.choice(len(names), size=n, p=p / p.sum())
    mean_curl = np.array([GRASPS[k] for k in names])[grasp]  # (n, 5)
    if "count" in names:  # (the clean baseline's mixture has none: its draws stay as they were)
        count = grasp == names.index("count")
        mean_curl[count] = np.where(rng.random((int(count.sum()), 5)) < 0.5, *COUNT_CURLS)
    std = np.where(np.array(names)[grasp] == "free", config.free_curl_std, config.curl_std)[:, None]
    curl = np.clip(mean_curl + std * _correlated_noise(rng, n, config.neighbour_correlation), -0.15, 1.0)

    lo, hi = skeleton.ANGLE_LIMITS[:, 0].reshape(5, 4), skeleton.ANGLE_LIMITS[:, 1].reshape(5, 4)
    angles = np.empty((n, 5, 4))
    pos = np.clip(curl, 0, 1)
    # MCP / CMC flexion follows the curl loosely (a fist can keep MCPs straighter, a hook).
    flex0 = np.where(curl >= 0, curl * hi[:, 0], -curl / 0.15 * lo[:, 0])
    angles[..., 0] = flex0 + np.radians(config.mcp_noise_deg) * rng.standard_normal((n, 5))
    # Middle joint (PIP, thumb MCP): tightly tied to the curl.
    angles[..., 2] = pos * hi[:, 2] + np.radians(config.pip_noise_deg) * rng.standard_normal((n, 5))
    # Distal joint (DIP, thumb IP): the 2/3 coupling with the middle joint.
    angles[..., 3] = (config.dip_pip_ratio * angles[..., 2]
                      + np.radians(config.dip_noise_deg) * rng.standard_normal((n, 5)))
    # Abduction: a shared spread, shrinking as the finger curls; the thumb abducts on its own.
    spread = rng.uniform(*config.spread_range, size=(n, 1))
    abd_range = np.where(spread >= 0, hi[:, 1], -lo[:, 1])
    fan = np.array([0.0, 1.0, 0.2, -0.6, -1.0])  # fingers fan out about the middle finger
    angles[..., 1] = (fan * spread * abd_range * (1 - 0.7 * pos)
                      + np.radians(config.abduction_noise_deg) * rng.standard_normal((n, 5)))
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


def _egocentric_rows(rng: np.random.Generator, n: int, config: PriorConfig) -> np.ndarray:
    weights = np.array([config.viewpoints.get(name, 0.0) for name in VIEWPOINTS], dtype=np.float64)
    return rng.choice(len(VIEWPOINTS), size=n, p=weights / weights.sum()) == VIEWPOINTS.index("egocentric")


def sample_poses(rng: np.random.Generator, n: int, camera: Intrinsics,
                 config: PriorConfig = PriorConfig()) -> HandPose:
    """n hands placed so that their joints' bounding-box centre lies inside the frame."""
    angles = sample_angles(rng, n, config)
    inplane = np.radians(rng.uniform(-config.max_inplane_deg, config.max_inplane_deg, n))
    tilt = np.radians(rng.uniform(-config.max_tilt_deg, config.max_tilt_deg, n))
    if config.palm_facing == 0.5:  # roll uniform about the pointing axis
        roll = rng.uniform(-np.pi, np.pi, n)
    else:  # roll 0 shows the back of the hand, pi the palm
        roll = rng.uniform(-np.pi / 2, np.pi / 2, n) + np.pi * (rng.random(n) < config.palm_facing)
    scale = np.clip(rng.normal(config.scale_mean, config.scale_std, n), *config.scale_range).astype(np.float32)

    depth = rng.uniform(*config.distance_mm, n)
    m = config.image_margin
    u = rng.uniform(m * camera.width, (1 - m) * camera.width, n)
    v = rng.uniform(m * camera.height, (1 - m) * camera.height, n)
    if set(config.viewpoints) != {"third-person"}:  # (the third-person-only prior draws nothing more)
        ego = _egocentric_rows(rng, n, config)
        k = int(ego.sum())
        inplane[ego] = np.radians(rng.uniform(-config.egocentric_inplane_deg, config.egocentric_inplane_deg, k))
        tilt[ego] = np.radians(rng.uniform(*config.egocentric_tilt_deg, k))
        depth[ego] = rng.uniform(*config.egocentric_distance_mm, k)
    pointing = np.stack([np.sin(inplane) * np.cos(tilt), -np.cos(inplane) * np.cos(tilt), np.sin(tilt)], axis=1)
    R = _rotation_from_axes(pointing, roll)
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
