"""Crop geometries and depth conventions (conventions.DEPTH_CONVENTIONS, CROP_GEOMETRIES).

synthgen's own crops are pinhole crops in the centre-relative normalisation (`hand.camera`).
The Crossing Nets release cuts an integer pixel window and front-aligns the hand; a model
converted from it reads only that. This module cuts and normalises both ways, converts a
centre-relative crop into the front-aligned one (the other way loses the absolute depth), and
re-centres pinhole crops exactly (the centre-jitter augmentation).
"""

from __future__ import annotations

import math

import numpy as np

from synthgen.conventions import BACKGROUND, CROP_SIZE, CUBE_MM, SYNTHGEN_INPUT, InputConvention, Intrinsics
from synthgen.errors import InputError
from synthgen.hand.camera import crop_uv_to_frame, denormalize_depth, normalize_depth, project

#: The release shifts in-cube depth so that the cube's front face sits at 10 mm (data/depth.py
#: cropArea3D: `cropped[cropped != 0] -= (zstart - 10)`), keeping it apart from no-data (0).
FRONT_MARGIN_MM = 10.0
#: Normalised values at or above this are background (as `hand.camera.denormalize_depth`).
_BACKGROUND_FROM = BACKGROUND - 1e-3


# --- cutting a crop from a sensor frame ------------------------------------------------------


def pinhole_crop_mm(depth_mm: np.ndarray, center: np.ndarray, cam: Intrinsics, cube: float = CUBE_MM,
                    size: int = CROP_SIZE) -> np.ndarray:
    """Full frame (H, W) mm → (size, size) mm crop (0 = no data) through synthgen's crop camera
    (camera.crop_intrinsics): each crop pixel takes the frame pixel nearest to where its centre
    lands; outside the frame is no data."""
    cols, rows = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    frame_uv = crop_uv_to_frame(np.stack([cols, rows], axis=-1), center, cam, cube, size)
    u, v = np.rint(frame_uv[..., 0]).astype(np.int64), np.rint(frame_uv[..., 1]).astype(np.int64)
    inside = (u >= 0) & (u < depth_mm.shape[1]) & (v >= 0) & (v < depth_mm.shape[0])
    crop = np.zeros((size, size), np.float32)
    crop[inside] = depth_mm[v[inside], u[inside]]
    return crop



def window_bounds(center: np.ndarray, cam: Intrinsics, cube: float = CUBE_MM) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1): the frame pixel window [x0, x1) × [y0, y1) the release cuts around `center`
    (mm, camera frame): floor(u_c ∓ f_x r), floor(v_c ∓ f_y r), r = cube / (2 z_c)."""
    u, v, z = (float(a) for a in project(np.asarray(center, np.float64), cam))
    if z <= 0:
        raise ValueError(f"crop centre must lie in front of the camera, got z = {z} mm")
    rx, ry = cube / 2 * cam.fx / z, cube / 2 * cam.fy / z
    return math.floor(u - rx), math.floor(u + rx), math.floor(v - ry), math.floor(v + ry)


def window_crop_mm(depth_mm: np.ndarray, center: np.ndarray, cam: Intrinsics, cube: float = CUBE_MM,
                   size: int = CROP_SIZE) -> np.ndarray:
    """Full frame (H, W) mm → (size, size) mm crop (0 = no data) in the release's window geometry.

    The window (`window_bounds`) is read with no data outside the frame, resized by OpenCV's
    INTER_NEAREST rule (output pixel i reads input floor(i · in / out)) to `size` along its longer
    side, the shorter side floor(short · size / long), and pasted centred (offset size//2 − n//2).
    """
    x0, x1, y0, y1 = window_bounds(center, cam, cube)
    h_frame, w_frame = depth_mm.shape
    window = np.zeros((y1 - y0, x1 - x0), np.float32)
    fy0, fy1, fx0, fx1 = max(y0, 0), min(y1, h_frame), max(x0, 0), min(x1, w_frame)
    if fy0 < fy1 and fx0 < fx1:
        window[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] = depth_mm[fy0:fy1, fx0:fx1]
    hb, wb = window.shape
    w, h = (size, hb * size // wb) if wb > hb else (wb * size // hb, size)
    rows = np.minimum(np.floor(np.arange(h) * (hb / h)).astype(np.int64), hb - 1)
    cols = np.minimum(np.floor(np.arange(w) * (wb / w)).astype(np.int64), wb - 1)
    out = np.zeros((size, size), np.float32)
    top, left = size // 2 - h // 2, size // 2 - w // 2
    out[top:top + h, left:left + w] = window[np.ix_(rows, cols)]
    return out


# --- depth conventions ------------------------------------------------------------------------


def front_align(crop_mm: np.ndarray, center_z: np.ndarray, cube: float = CUBE_MM) -> np.ndarray:
    """Metric crops (..., S, S) mm (0 = no data) → the release's front-aligned normalisation.

    Steps as the release takes them, in float32: depth in front of the cube is clamped to its
    front face, behind it becomes no data; s = depth − (front face − 10 mm), divided by the cube;
    divided by the crop's largest s and shifted by −½; then (frmToNp) the background becomes +½,
    every other pixel is shifted so that the nearest is −½, and all is doubled: the nearest hand
    pixel is −1, the background +1 (and so are the pixels at the largest s).
    """
    d = np.array(crop_mm, dtype=np.float32, copy=True)
    front = (np.asarray(center_z, np.float64) - cube / 2)[..., None, None]
    back = front + cube
    valid = d != 0
    d = np.where(valid & (d < front), front, d).astype(np.float32)
    d[valid & (d > back)] = 0
    s = np.where(d != 0, d - (front - FRONT_MARGIN_MM), 0).astype(np.float32) / np.float32(cube)
    return _front_align_steps(s)


def _front_align_steps(s: np.ndarray) -> np.ndarray:
    """The release's Frame.normDm and Dataset.frmToNp on s (..., S, S) ≥ 0 (0 = background)."""
    flat = s.reshape(-1, s.shape[-2] * s.shape[-1]).astype(np.float32)
    out = np.ones_like(flat)
    for i, row in enumerate(flat):
        peak = row.max()
        if peak == 0:  # nothing in the cube: normDm leaves zeros, frmToNp turns them into background
            continue
        n = row / peak - np.float32(0.5)
        n[n == n.min()] = 0.5
        rest = n != 0.5
        n[rest] -= n.min() + np.float32(0.5)
        out[i] = n * np.float32(2)
    return out.reshape(s.shape)


def front_align_normalised(depth: np.ndarray, cube: float = CUBE_MM) -> np.ndarray:
    """Centre-relative crops (..., S, S) → front-aligned, exactly as `front_align` of their depth.

    A centre-relative value v stands for depth c_z + v·cube/2 (−1: at or in front of the front
    face; ≥ 1 − 1e-3: background), so s = (v + 1)·cube/2 + 10 mm needs no centre.
    """
    v = np.asarray(depth, dtype=np.float32)
    half = np.float32(cube / 2)
    s = np.where(v >= _BACKGROUND_FROM, 0, (np.maximum(v, -1) + 1) * half + np.float32(FRONT_MARGIN_MM))
    return _front_align_steps(s.astype(np.float32) / np.float32(cube))


def crop_frame(depth_mm: np.ndarray, center: np.ndarray, cam: Intrinsics, cube: float = CUBE_MM,
               size: int = CROP_SIZE, convention: InputConvention = SYNTHGEN_INPUT) -> np.ndarray:
    """Full sensor frame (H, W) mm → the (size, size) normalised crop around `center`, cut and
    normalised as `convention` says (synthgen's own by default: a pinhole crop, [-1, 1] in the
    cube, background +1)."""
    if convention.crop == "window":
        crop_mm = window_crop_mm(depth_mm, center, cam, cube, size)
    else:
        crop_mm = pinhole_crop_mm(depth_mm, center, cam, cube, size)
    if convention.depth == "front-aligned":
        return front_align(crop_mm, center[2], cube)
    return normalize_depth(crop_mm, center[2], cube)


def require_adaptable(stored: InputConvention, wanted: InputConvention) -> None:
    """InputError unless crops normalised as `stored` can be read as `wanted` (the same depth
    convention, or centre-relative to front-aligned: front-aligned depth has lost its absolute
    depth)."""
    if stored.depth != wanted.depth and (stored.depth, wanted.depth) != ("centre-relative", "front-aligned"):
        raise InputError(f"the crops are {stored.depth} and the model reads {wanted.depth} depth, which cannot be "
                         f"recovered from them: import the frames again with --model for that model")


def adapt_depth(depth: np.ndarray, stored: InputConvention, wanted: InputConvention,
                cube: float = CUBE_MM) -> np.ndarray:
    """Crops normalised as `stored` → as `wanted` (a model's input); `require_adaptable` first."""
    require_adaptable(stored, wanted)
    return depth if stored.depth == wanted.depth else front_align_normalised(depth, cube)


def convention_mismatch(stored: InputConvention, wanted: InputConvention) -> list[str]:
    """What differs between crops made as `stored` and a model that reads `wanted`, beyond what
    `adapt_depth` converts: one line each, for the user (an empty list when they agree)."""
    notes = []
    if stored.crop != wanted.crop:
        notes.append(f"the crops are {stored.crop} crops, the model was trained on {wanted.crop} crops (sub-pixel "
                     f"differences); import the frames with --model for that model's exact crops")
    if stored.centering != wanted.centering:
        notes.append(f"the crops are centred by {stored.centering}, the model was trained on {wanted.centering} "
                     f"centres; accuracy may drop (benchmarks/center_offset.py measures by how much)")
    return notes


# --- re-centring pinhole crops ----------------------------------------------------------------


def recenter_crops(depth: np.ndarray, center: np.ndarray, new_center: np.ndarray, cube: float = CUBE_MM
                   ) -> np.ndarray:
    """Centre-relative pinhole crops (n, S, S) around `center` (n, 3) mm → the crops around
    `new_center` (n, 3) mm, as if cut from the frame again.

    A pinhole crop depends on the sensor only through rays, so the new crop's pixel p' reads the
    old crop at f·(p' − pp')/f' + pp (nearest pixel; f = S·c_z/cube, pp = (S − 1)/2 − f·c_xy/c_z),
    and its depth is renormalised around the new centre. What lay outside the old crop or cube
    is no data.
    """
    depth = np.asarray(depth, np.float32)
    center, new_center = np.asarray(center, np.float64), np.asarray(new_center, np.float64)
    n, size = depth.shape[0], depth.shape[-1]
    half_px = (size - 1) / 2
    f_old, f_new = size * center[:, 2] / cube, size * new_center[:, 2] / cube
    pixels = np.arange(size, dtype=np.float64)
    index = []
    for axis in (0, 1):  # x: columns, y: rows
        ray = (pixels[None, :] - half_px) / f_new[:, None] + (new_center[:, axis] / new_center[:, 2])[:, None]
        source = np.rint(f_old[:, None] * (ray - (center[:, axis] / center[:, 2])[:, None]) + half_px)
        index.append(source.astype(np.int64))
    cols, rows = index
    inside = ((rows >= 0) & (rows < size))[:, :, None] & ((cols >= 0) & (cols < size))[:, None, :]
    flat = (np.clip(rows, 0, size - 1)[:, :, None] * size + np.clip(cols, 0, size - 1)[:, None, :]
            + (np.arange(n) * size * size)[:, None, None])
    depth_mm = denormalize_depth(depth, center[:, 2], cube).reshape(-1)[flat]
    depth_mm[~inside] = 0
    return normalize_depth(depth_mm, new_center[:, 2], cube)
