"""Pinhole projection and the training crop, with exact inverses. numpy, float64 inside.

The crop around a centre c = (x_c, y_c, z_c) mm covers the cube edge `cube` at depth z_c and
is resampled to `size`² pixels. Because crop-then-resize of a pinhole image is itself a pinhole
image, the crop is represented as a virtual camera (`crop_intrinsics`) with

    f_crop = size * z_c / cube,   c_crop = (size - 1) / 2 - f_crop * (x_c, y_c) / z_c,

which is independent of the sensor's intrinsics: a crop can be rendered directly at 128² and
mapped back to any full frame exactly (`crop_uv_to_frame`).
"""

from __future__ import annotations

import numpy as np

from synthgen.conventions import BACKGROUND, CROP_SIZE, CUBE_MM, Intrinsics


def project(xyz: np.ndarray, cam: Intrinsics) -> np.ndarray:
    """(..., 3) mm camera coordinates → (..., 3) (u, v, d) with d = z in mm."""
    xyz = np.asarray(xyz, dtype=np.float64)
    z = xyz[..., 2]
    u = cam.fx * xyz[..., 0] / z + cam.cx
    v = cam.fy * xyz[..., 1] / z + cam.cy
    return np.stack([u, v, z], axis=-1)


def unproject(uvd: np.ndarray, cam: Intrinsics) -> np.ndarray:
    """(..., 3) (u, v, d mm) → (..., 3) mm camera coordinates; inverse of `project`."""
    uvd = np.asarray(uvd, dtype=np.float64)
    d = uvd[..., 2]
    x = (uvd[..., 0] - cam.cx) * d / cam.fx
    y = (uvd[..., 1] - cam.cy) * d / cam.fy
    return np.stack([x, y, d], axis=-1)


def crop_intrinsics(center: np.ndarray, cube: float = CUBE_MM, size: int = CROP_SIZE) -> Intrinsics:
    """The virtual camera whose `size`² image is the crop of the cube around `center` (mm)."""
    xc, yc, zc = (float(v) for v in center)
    if zc <= 0:
        raise ValueError(f"crop centre must lie in front of the camera, got z = {zc} mm")
    f = size * zc / cube
    half = (size - 1) / 2
    return Intrinsics(f, f, half - f * xc / zc, half - f * yc / zc, size, size)


def crop_uv_to_frame(uv: np.ndarray, center: np.ndarray, cam: Intrinsics, cube: float = CUBE_MM,
                     size: int = CROP_SIZE) -> np.ndarray:
    """Crop pixel coordinates (..., 2) → full-frame pixel coordinates of the sensor `cam`."""
    crop = crop_intrinsics(center, cube, size)
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack(
        [(uv[..., 0] - crop.cx) / crop.fx * cam.fx + cam.cx, (uv[..., 1] - crop.cy) / crop.fy * cam.fy + cam.cy],
        axis=-1,
    )


def normalize_depth(depth_mm: np.ndarray, center_z: np.ndarray, cube: float = CUBE_MM) -> np.ndarray:
    """Metric crop depth (0 = no data) → [-1, 1], background +1 (see conventions.NORMALISATION).

    depth_mm: (..., H, W); center_z: scalar or (...,) broadcast over the image.
    """
    depth_mm = np.asarray(depth_mm, dtype=np.float32)
    cz = np.asarray(center_z, dtype=np.float32)[..., None, None]
    half = np.float32(cube / 2)
    norm = depth_mm - cz
    norm *= np.float32(1 / half)
    background = (depth_mm <= 0) | (norm > 1)
    np.clip(norm, -1.0, 1.0, out=norm)
    norm[background] = BACKGROUND
    return norm


def denormalize_depth(norm: np.ndarray, center_z: np.ndarray, cube: float = CUBE_MM) -> np.ndarray:
    """Inverse of `normalize_depth`: [-1, 1] → mm, background (≥ 1 - 1e-3) → 0 (no data).

    Values clipped at the front face come back at the front face (center_z - cube/2).
    """
    norm = np.asarray(norm, dtype=np.float32)
    cz = np.asarray(center_z, dtype=np.float32)[..., None, None]
    depth = norm * np.float32(cube / 2) + cz
    depth[norm >= BACKGROUND - 1e-3] = 0.0
    return depth.astype(np.float32)


def normalize_joints(joints_mm: np.ndarray, center: np.ndarray, cube: float = CUBE_MM) -> np.ndarray:
    """(..., J, 3) mm → cube units in [-1, 1] around the crop centre (DeepPrior++ labels)."""
    return (np.asarray(joints_mm, np.float32) - np.asarray(center, np.float32)[..., None, :]) / np.float32(cube / 2)


def denormalize_joints(joints_norm: np.ndarray, center: np.ndarray, cube: float = CUBE_MM) -> np.ndarray:
    return np.asarray(joints_norm, np.float32) * np.float32(cube / 2) + np.asarray(center, np.float32)[..., None, :]


def hand_center(joints_mm: np.ndarray) -> np.ndarray:
    """Crop centre of a hand: the centre of its joints' bounding box, (..., 21, 3) → (..., 3).

    Chosen over the palm centre because it keeps an extended hand (186 mm long) inside the
    250 mm cube from every view; it plays the role of DeepPrior's refined centre of mass.
    """
    joints_mm = np.asarray(joints_mm, dtype=np.float32)
    return ((joints_mm.min(axis=-2) + joints_mm.max(axis=-2)) / 2).astype(np.float32)
