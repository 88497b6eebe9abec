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


#: DeepPrior's refinement: re-centre on the centre of mass of the depth pixels inside the cube,
#: until it moves less than this or after this many rounds.
REFINE_TOLERANCE_MM = 0.5
REFINE_ITERATIONS = 10


def centers_of_mass(depth_mm: np.ndarray, cams: list[Intrinsics], centers: np.ndarray, cube: float = CUBE_MM
                    ) -> np.ndarray:
    """(n, 3) centres of mass (mm) of the pixels of each (n, H, W) image whose depth lies in the
    cube around its centre and whose pixel lies in the cube's image (DeepPrior's rule: the mean
    pixel and mean depth, unprojected); NaN rows where there are none."""
    depth = np.asarray(depth_mm)
    n, height, width = depth.shape
    centers = np.asarray(centers, np.float64)
    fx, fy, cx, cy = (np.array([getattr(c, k) for c in cams], np.float64) for k in ("fx", "fy", "cx", "cy"))
    half = cube / 2
    u_c, v_c = fx * centers[:, 0] / centers[:, 2] + cx, fy * centers[:, 1] / centers[:, 2] + cy
    du, dv = fx * half / centers[:, 2], fy * half / centers[:, 2]
    u0, u1 = np.maximum(np.ceil(u_c - du), 0), np.minimum(np.floor(u_c + du), width - 1)
    v0, v1 = np.maximum(np.ceil(v_c - dv), 0), np.minimum(np.floor(v_c + dv), height - 1)
    cols, rows = np.arange(width), np.arange(height)
    in_u = (cols >= u0[:, None]) & (cols <= u1[:, None])
    in_v = (rows >= v0[:, None]) & (rows <= v1[:, None])
    mask = (depth > 0) & (np.abs(depth - centers[:, 2, None, None]) <= half) & in_v[:, :, None] & in_u[:, None, :]
    count = mask.sum(axis=(1, 2))
    safe = np.maximum(count, 1)
    uvd = np.stack([(mask.sum(1) * cols).sum(1) / safe, (mask.sum(2) * rows).sum(1) / safe,
                    np.where(mask, depth, 0).sum(axis=(1, 2), dtype=np.float64) / safe], axis=1)
    out = np.stack([(uvd[:, 0] - cx) * uvd[:, 2] / fx, (uvd[:, 1] - cy) * uvd[:, 2] / fy, uvd[:, 2]], axis=1)
    out[count == 0] = np.nan
    return out


def refine_centers(depth_mm: np.ndarray, cams: list[Intrinsics], starts: np.ndarray, cube: float = CUBE_MM
                   ) -> np.ndarray:
    """(n, 3) float32: `centers_of_mass` iterated from each start until it moves less than
    REFINE_TOLERANCE_MM (at most REFINE_ITERATIONS rounds); a centre whose cube is empty stays."""
    centers = np.array(starts, np.float64)
    active = np.ones(len(centers), bool)
    for _ in range(REFINE_ITERATIONS):
        index = np.flatnonzero(active)
        if len(index) == 0:
            break
        moved = centers_of_mass(np.asarray(depth_mm)[index], [cams[i] for i in index], centers[index], cube)
        empty = np.isnan(moved).any(axis=1)
        step = np.linalg.norm(np.where(empty[:, None], 0.0, moved - centers[index]), axis=1)
        centers[index[~empty]] = moved[~empty]
        active[index[empty | (step < REFINE_TOLERANCE_MM)]] = False
    return centers.astype(np.float32)


def cap_move(starts: np.ndarray, centers: np.ndarray, cap_mm: float) -> np.ndarray:
    """(n, 3) float32: each centre moved back onto the segment from its start, at most `cap_mm` away."""
    starts, centers = np.asarray(starts, np.float64), np.asarray(centers, np.float64)
    move = centers - starts
    length = np.linalg.norm(move, axis=-1, keepdims=True)
    return (starts + move * np.minimum(1.0, cap_mm / np.maximum(length, 1e-9))).astype(np.float32)
