"""On-the-fly augmentation of depth crops and their joints: in-plane rotation, scale, shift and
sensor noise, applied consistently to the metric depth, the joints and the crop centre."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthgen.errors import InputError
from synthgen.hand.camera import denormalize_depth, normalize_depth
from synthgen.hand.noise import SensorNoise


def _warp_crops(depth_mm: np.ndarray, angle: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rotate by `angle` (radians) and zoom by `scale` each (n, S, S) crop about its centre pixel.

    Nearest-neighbour resampling: depth must not be blended across a silhouette (that would
    invent surfaces between hand and background). Pixels that come from outside the crop are
    0 (no data). Each output pixel reads the input at R(-angle) / scale times its offset from
    the centre (numpy: twice as fast as torch's grid_sample for nearest on one CPU thread).
    """
    n, size = depth_mm.shape[0], depth_mm.shape[-1]
    half = np.float32((size - 1) / 2)
    offset = np.arange(size, dtype=np.float32) - half
    du, dv = offset[None, None, :], offset[None, :, None]
    cos = (np.cos(angle) / scale).astype(np.float32)[:, None, None]
    sin = (np.sin(angle) / scale).astype(np.float32)[:, None, None]
    source_u = np.rint(cos * du + sin * dv + half).astype(np.int32)
    source_v = np.rint(cos * dv - sin * du + half).astype(np.int32)
    inside = (source_u >= 0) & (source_u < size) & (source_v >= 0) & (source_v < size)
    flat = source_v * size + source_u + (np.arange(n, dtype=np.int32) * size * size)[:, None, None]
    warped = np.take(np.ascontiguousarray(depth_mm, np.float32).reshape(-1), np.where(inside, flat, 0))
    warped[~inside] = 0.0
    return warped


def transform_crops(depth: np.ndarray, joints: np.ndarray, center: np.ndarray, cube_mm: float, *,
                    angle: np.ndarray, scale: np.ndarray, shift_mm: np.ndarray,
                    noise: SensorNoise | None = None, rng: np.random.Generator | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Apply given in-plane rotations, scales and depth shifts to normalised crops and their joints.

    One affine map of the crop's (u, v, d) space per sample, so image and labels stay exactly
    consistent in uvd: (u, v) about the crop centre pixel -> scale * R(angle) (u, v), with
    R(a) = [[cos a, -sin a], [sin a, cos a]] in (u right, v down) pixels, i.e. a positive
    angle turns the image clockwise as displayed; d -> c_z + scale * (d - c_z) + shift_mm.
    Joints are mapped through the crop's pinhole camera (f = S * c_z / cube) and back. The
    crop centre is unchanged, so a depth shift moves the hand inside its cube, as an error
    in the hand-centre estimate would. `noise` (with `rng`) is then applied to the metric
    depth, as a sensor would.

    depth (n, S, S) normalised, joints (n, J, 3) mm, center (n, 3) mm; angle, scale, shift_mm (n,).
    Returns (depth normalised float32, joints mm float32).
    """
    depth = np.asarray(depth, np.float32)
    center = np.asarray(center, np.float64)
    size = depth.shape[-1]
    cz = center[:, 2]
    depth_mm = _warp_crops(denormalize_depth(depth, cz, cube_mm), angle, scale)
    cz_px = cz[:, None, None]
    depth_mm = np.where(depth_mm > 0, cz_px + scale[:, None, None] * (depth_mm - cz_px) + shift_mm[:, None, None],
                        0.0).astype(np.float32)
    if noise is not None:
        depth_mm = noise.apply(depth_mm, rng)

    joints = np.asarray(joints, np.float64)
    focal = (size * cz / cube_mm)[:, None]
    ray_x, ray_y = (center[:, 0] / cz)[:, None], (center[:, 1] / cz)[:, None]
    du = focal * (joints[..., 0] / joints[..., 2] - ray_x)  # crop pixels from the centre pixel
    dv = focal * (joints[..., 1] / joints[..., 2] - ray_y)
    cos, sin, s = np.cos(angle)[:, None], np.sin(angle)[:, None], scale[:, None]
    du, dv = s * (cos * du - sin * dv), s * (sin * du + cos * dv)
    z = cz[:, None] + s * (joints[..., 2] - cz[:, None]) + shift_mm[:, None]
    moved = np.stack([(du / focal + ray_x) * z, (dv / focal + ray_y) * z, z], axis=-1)
    return normalize_depth(depth_mm, cz, cube_mm), moved.astype(np.float32)


@dataclass(frozen=True)
class Augmentation:
    """Random per-sample augmentation; see `transform_crops` for what each one does exactly.

    Each sample draws angle ~ U(-rotation_deg, rotation_deg) degrees, scale ~ U(*scale) and
    shift ~ U(-depth_shift_mm, depth_shift_mm); `noise` adds the sensor model on top.
    The defaults follow DeepPrior++-style training (any in-plane angle, +-10 % size,
    a centre error of up to 10 mm); pass 0 / (1, 1) to switch one off.
    """

    rotation_deg: float = 180.0
    scale: tuple[float, float] = (0.9, 1.1)
    depth_shift_mm: float = 10.0
    noise: SensorNoise | None = None

    def __post_init__(self) -> None:
        low, high = (float(v) for v in self.scale)
        if not 0 < low <= high:
            raise InputError(f"augmentation scale must be 0 < low <= high, got {self.scale!r}")
        if not 0 <= self.rotation_deg <= 180:
            raise InputError(f"augmentation rotation_deg must be in [0, 180], got {self.rotation_deg!r}")
        if not 0 <= self.depth_shift_mm < 1000:
            raise InputError(f"augmentation depth_shift_mm must be in [0, 1000), got {self.depth_shift_mm!r}")

    def apply(self, depth: np.ndarray, joints: np.ndarray, center: np.ndarray, cube_mm: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n = len(depth)
        angle = np.deg2rad(rng.uniform(-self.rotation_deg, self.rotation_deg, n))
        scale = rng.uniform(self.scale[0], self.scale[1], n)
        shift = rng.uniform(-self.depth_shift_mm, self.depth_shift_mm, n)
        return transform_crops(depth, joints, center, cube_mm, angle=angle, scale=scale, shift_mm=shift,
                               noise=self.noise, rng=rng)
