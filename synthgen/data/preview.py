"""Pictures of crops for people: colour-mapped depth with the skeleton drawn over it."""

from __future__ import annotations

import numpy as np

from synthgen.conventions import BACKGROUND, CUBE_MM, LAYOUTS
from synthgen.hand import camera

FINGER_COLOURS = np.array(
    [[255, 255, 255], [255, 80, 80], [255, 200, 40], [80, 220, 80], [60, 160, 255], [200, 90, 255]], dtype=np.uint8
)  # wrist/palm, thumb, index, middle, ring, little


def colorize_depth(depth_norm: np.ndarray) -> np.ndarray:
    """(H, W) normalised crop → (H, W, 3) uint8: near bright, far dark, background black."""
    from matplotlib import colormaps

    fg = depth_norm < BACKGROUND - 1e-3
    rgb = np.zeros(depth_norm.shape + (3,), dtype=np.uint8)
    if fg.any():
        d = depth_norm[fg]
        lo, hi = float(d.min()), float(d.max())
        t = (d - lo) / max(hi - lo, 1e-6)
        rgb[fg] = (colormaps["magma"](1.0 - 0.85 * t)[:, :3] * 255).astype(np.uint8)
    return rgb


def _draw_line(img: np.ndarray, a: np.ndarray, b: np.ndarray, colour: np.ndarray) -> None:
    limit = 2 * max(img.shape[:2])
    if not (np.isfinite(a).all() and np.isfinite(b).all()) or np.abs(np.concatenate([a, b])).max() > limit:
        return  # a joint far outside the crop (or behind the camera): no bone is better than a wild one
    n = int(np.ceil(np.abs(b - a).max())) + 1
    for t in np.linspace(0.0, 1.0, max(n, 2)):
        x, y = np.round(a + t * (b - a)).astype(int)
        if 0 <= y < img.shape[0] and 0 <= x < img.shape[1]:
            img[y, x] = colour


def draw_skeleton(img: np.ndarray, uv: np.ndarray, joint_layout: str = "hands2017") -> np.ndarray:
    """Draw bones and joints given (J, 2) pixel coordinates in `img`'s frame (in place)."""
    layout = LAYOUTS[joint_layout]
    for j, p in enumerate(layout.parents):
        if p >= 0:
            _draw_line(img, uv[p], uv[j], FINGER_COLOURS[layout.fingers[j]])
    for j, (x, y) in enumerate(uv):
        if 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
            x, y = int(round(x)), int(round(y))
            img[max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2] = FINGER_COLOURS[layout.fingers[j]]
    return img


def crop_panel(depth_norm: np.ndarray, pose_mm: np.ndarray | None, center: np.ndarray,
               cube: float = CUBE_MM, upscale: int = 2, joint_layout: str = "hands2017") -> np.ndarray:
    """One crop as an RGB panel, optionally with its skeleton, enlarged `upscale` times."""
    img = np.repeat(np.repeat(colorize_depth(depth_norm), upscale, 0), upscale, 1)
    if pose_mm is not None:
        intr = camera.crop_intrinsics(center, cube, depth_norm.shape[0])
        uv = camera.project(pose_mm, intr)[:, :2]
        draw_skeleton(img, (uv + 0.5) * upscale - 0.5, joint_layout)
    return img


def grid(panels: list[np.ndarray], columns: int = 4, gap: int = 2) -> np.ndarray:
    """Tile equally sized RGB panels with a grey gap."""
    h, w, _ = panels[0].shape
    rows = int(np.ceil(len(panels) / columns))
    out = np.full((rows * (h + gap) + gap, columns * (w + gap) + gap, 3), 60, dtype=np.uint8)
    for i, p in enumerate(panels):
        r, c = divmod(i, columns)
        out[gap + r * (h + gap) : gap + r * (h + gap) + h, gap + c * (w + gap) : gap + c * (w + gap) + w] = p
    return out
