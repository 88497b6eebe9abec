"""Controlled corruptions of normalised crops: the yardsticks that calibrate the realism scores.

Each takes (n, S, S) normalised crops (background +1) and a strength, and returns new crops.
Strength 0 returns the input unchanged, so "score grows with strength" is testable from 0.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from synthgen.conventions import BACKGROUND, CUBE_MM
from synthgen.realism.metrics import foreground


def blur(depth: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur over the whole crop, background included: soft, bloated silhouettes and
    smeared depth edges, the typical failure of an under-trained generator."""
    depth = np.asarray(depth, np.float32)
    if sigma_px == 0:
        return depth.copy()
    return ndimage.gaussian_filter(depth, sigma=(0, sigma_px, sigma_px), mode="nearest").astype(np.float32)


def noise(depth: np.ndarray, sigma_mm: float, rng: np.random.Generator, cube_mm: float = CUBE_MM) -> np.ndarray:
    """Independent Gaussian depth noise of `sigma_mm` on hand pixels (background untouched)."""
    depth = np.asarray(depth, np.float32)
    out = depth.copy()
    hand = foreground(depth)
    out[hand] += rng.normal(0, sigma_mm / (cube_mm / 2), hand.sum()).astype(np.float32)
    np.clip(out, -1.0, BACKGROUND - 2e-3, out=out, where=hand)
    return out


def shift(depth: np.ndarray, pixels: int) -> np.ndarray:
    """Translate every crop by `pixels` right and down, filling with background: a hand that is
    off its crop centre (a generator / pose-decoder misalignment)."""
    depth = np.asarray(depth, np.float32)
    if pixels == 0:
        return depth.copy()
    out = np.full_like(depth, BACKGROUND)
    out[:, pixels:, pixels:] = depth[:, :-pixels, :-pixels]
    return out


CORRUPTIONS = ("blur", "noise", "shift")


def corrupt(depth: np.ndarray, kind: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "blur":
        return blur(depth, strength)
    if kind == "noise":
        return noise(depth, strength, rng)
    if kind == "shift":
        return shift(depth, int(strength))
    raise ValueError(f"unknown corruption {kind!r}; choose from {', '.join(CORRUPTIONS)}")
