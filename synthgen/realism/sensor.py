"""Sensor statistics of metric depth crops, the numbers a sensor model is calibrated on.

Each statistic looks at the crop's foreground: pixels with data inside the cube
(|d − c_z| ≤ cube/2), closed over small gaps (the silhouette a sensor would have seen without
drop-outs). Measured the same way on real frames and on renders, so the two can be compared:

* hole fraction: pixels without data inside the silhouette, farther than EDGE_BAND_PX from its
  border (specular and dark patches, interference);
* edge drop-out: pixels without data in the EDGE_BAND_PX-wide band inside the silhouette's
  border (shadows, mixed pixels, the matching window of a triangulating sensor);
* depth gradient histogram: |d(x+1) − d(x)| and |d(y+1) − d(y)| in mm between neighbouring
  foreground pixels, in GRADIENT_BINS (the first bin, exactly 0 mm, shows quantisation);
* noise: the robust std of the second difference d(x−1) − 2 d(x) + d(x+1) along rows where all
  three are foreground and no step exceeds SMOOTH_MM, divided by √6 (the std of one pixel's
  noise if it is independent between pixels);
* depth step: the most common non-zero |difference| under 4 mm (the quantisation step).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synthgen.conventions import CUBE_MM

EDGE_BAND_PX = 2
CLOSING_PX = 3
SMOOTH_MM = 8.0
GRADIENT_BINS = (0.0, 0.5, 1.5, 3.0, 6.0, 12.0, 25.0, 50.0, np.inf)


def gradient_bin_labels() -> list[str]:
    labels = []
    for lo, hi in zip(GRADIENT_BINS[:-1], GRADIENT_BINS[1:]):
        labels.append(f"≥ {lo:g}" if np.isinf(hi) else f"{lo:g}–{hi:g}")
    return labels


def foreground(depth_mm: np.ndarray, center_z: float, cube: float = CUBE_MM) -> tuple[np.ndarray, np.ndarray]:
    """(pixels with data in the cube, their silhouette closed over gaps of CLOSING_PX)."""
    valid = (depth_mm > 0) & (np.abs(depth_mm - center_z) <= cube / 2)
    structure = np.ones((2 * CLOSING_PX + 1, 2 * CLOSING_PX + 1), bool)
    padded = np.pad(valid, CLOSING_PX + 1)
    closed = ndimage.binary_closing(padded, structure)[CLOSING_PX + 1:-CLOSING_PX - 1, CLOSING_PX + 1:-CLOSING_PX - 1]
    return valid, closed | valid


def crop_statistics(crops_mm: np.ndarray, centers_z: np.ndarray, cube: float = CUBE_MM) -> dict:
    """The statistics above, pooled over (n, H, W) metric crops (0 = no data)."""
    holes = edge = interior_n = band_n = 0
    gradients, second = [], []
    for depth, cz in zip(np.asarray(crops_mm, np.float64), np.atleast_1d(centers_z)):
        valid, silhouette = foreground(depth, float(cz), cube)
        inner = ndimage.binary_erosion(silhouette, iterations=EDGE_BAND_PX, border_value=0)
        band = silhouette & ~inner
        holes += int((inner & ~valid).sum())
        interior_n += int(inner.sum())
        edge += int((band & ~valid).sum())
        band_n += int(band.sum())
        for a, b, ok_a, ok_b in ((depth[:, 1:], depth[:, :-1], valid[:, 1:], valid[:, :-1]),
                                 (depth[1:], depth[:-1], valid[1:], valid[:-1])):
            gradients.append(np.abs(a - b)[ok_a & ok_b])
        left, mid, right = depth[:, :-2], depth[:, 1:-1], depth[:, 2:]
        ok = valid[:, :-2] & valid[:, 1:-1] & valid[:, 2:]
        ok &= (np.abs(mid - left) < SMOOTH_MM) & (np.abs(right - mid) < SMOOTH_MM)
        second.append((left - 2 * mid + right)[ok])
    gradients = np.concatenate(gradients) if gradients else np.zeros(0)
    second = np.concatenate(second) if second else np.zeros(0)
    histogram, _ = np.histogram(gradients, bins=np.array(GRADIENT_BINS[:-1] + (1e9,)))
    steps = gradients[(gradients > 0.05) & (gradients < 4.0)]
    step = None
    if len(steps):
        values, counts = np.unique(np.round(steps, 2), return_counts=True)
        step = float(values[counts.argmax()])
    mad = float(np.median(np.abs(second - np.median(second)))) * 1.4826 if len(second) else float("nan")
    return {
        "crops": int(len(crops_mm)),
        "hole_fraction": holes / max(interior_n, 1),
        "edge_dropout": edge / max(band_n, 1),
        "gradient_histogram": (histogram / max(histogram.sum(), 1)).tolist(),
        "gradient_bins_mm": gradient_bin_labels(),
        "zero_gradient_fraction": float((gradients == 0).mean()) if len(gradients) else float("nan"),
        "noise_mm": mad / np.sqrt(6.0),
        "depth_step_mm": step,
        "foreground_fraction": float(band_n + interior_n) / (np.asarray(crops_mm).size or 1),
    }
