"""A smooth random walk through the prior: underdamped Langevin dynamics in whitened code space.

A plain random walk (or a first-order Ornstein-Uhlenbeck process) changes direction at every
step, so a video of it jitters, and it drifts out of the region the networks were trained on.
This walk moves a position x (the 23 whitened numbers of a code: 20 pose-latent dimensions and
3 whitened root-offset dimensions, see synthgen.sampling.prior) with a velocity v:

    dx = v dt,    dv = -x dt - γ v dt + √(2γ) dW

the Langevin dynamics of the potential |x|²/2, whose stationary law is exactly the prior
x ~ N(0, I) (and v ~ N(0, I)). Integrated with the BAOAB splitting (Leimkuhler & Matthews),
which samples a harmonic potential's x-marginal without discretisation bias, the walk stays in
the prior's typical set (|x| ≈ √23) for any number of steps. Position is the integral of a
velocity that changes only by O(√h) per step, so frame-to-frame motion is smooth: consecutive
steps point in nearly the same direction (no flicker), which is what Crossing Nets' smoothness
loss L_smo makes visible as a continuous change of the depth image.

`step_size` s is the RMS Euclidean length of one step in whitened units (|Δx| ≈ h·|v| with
|v| ≈ √23), so h = s / √23; γ = `friction` (default 1: underdamped, so the walk keeps its
direction for ~1/(γh) steps before turning). The walk starts from a prior sample x₀ ~ N(0, I)
and v₀ ~ N(0, I) (stationary from the first frame), all from one explicit torch.Generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from synthgen.errors import InputError
from synthgen.sampling.prior import POSE_LATENT_DIM, ROOT_DIM

CODE_DIM = POSE_LATENT_DIM + ROOT_DIM
MAX_STEP_SIZE = 2.0  # whitened units per step; beyond this consecutive frames are unrelated


def latent_walk(steps: int, step_size: float, generator: torch.Generator | None = None, *,
                friction: float = 1.0, dim: int = CODE_DIM, start: torch.Tensor | None = None) -> torch.Tensor:
    """(steps, dim) float64 whitened positions of a smooth walk whose stationary law is N(0, I).

    Map them to codes with synthgen.sampling.prior.whitened_to_codes(model, x).
    """
    if steps < 1:
        raise InputError(f"a walk needs at least 1 step, got {steps}")
    if not (math.isfinite(step_size) and 0 < step_size <= MAX_STEP_SIZE):
        raise InputError(f"step size must be in (0, {MAX_STEP_SIZE:g}] (RMS latent distance per frame), "
                         f"got {step_size!r}")
    if not (math.isfinite(friction) and friction > 0):
        raise InputError(f"friction must be positive, got {friction!r}")
    h = step_size / math.sqrt(dim)
    c = math.exp(-friction * h)  # O: exact Ornstein-Uhlenbeck velocity refresh over h
    kick = math.sqrt(1 - c * c)
    x = torch.randn(dim, generator=generator, dtype=torch.float64) if start is None else start.double().clone()
    v = torch.randn(dim, generator=generator, dtype=torch.float64)
    out = torch.empty(steps, dim, dtype=torch.float64)
    out[0] = x
    for k in range(1, steps):
        v = v - 0.5 * h * x  # B: half kick from the force -x
        x = x + 0.5 * h * v  # A: half drift
        v = c * v + kick * torch.randn(dim, generator=generator, dtype=torch.float64)  # O
        x = x + 0.5 * h * v  # A
        v = v - 0.5 * h * x  # B
        out[k] = x
    return out


@dataclass
class WalkPath:
    """A walk ready to generate: codes (steps, 23), its one crop centre repeated (steps, 3) mm,
    and what a store records about it."""

    codes: torch.Tensor
    centers: np.ndarray
    params: dict


def walk_path(model, steps: int, step_size: float, seed: int, *, prior: str = "fitted", root: str = "auto",
              camera: str = "hands2017", friction: float = 1.0) -> WalkPath:
    """The walk `synthgen walk` renders: positions from `latent_walk` (seeded by `seed`), turned
    into the model's codes through its latent prior (`whitened_to_codes`), at one crop centre
    drawn like a prior sample's."""
    from synthgen.sampling.pipeline import CENTER_STREAM, LATENT_STREAM, stream_seed
    from synthgen.sampling.prior import CropCenters, whitened_to_codes

    positions = latent_walk(steps, step_size, torch.Generator().manual_seed(stream_seed(seed, 0, LATENT_STREAM)),
                            friction=friction)
    codes = whitened_to_codes(model, positions, prior, root)
    center = CropCenters(camera).sample(1, np.random.default_rng([seed, 0, CENTER_STREAM]))
    params = {"mode": "walk", "steps": steps, "step_size": step_size, "friction": friction, "prior": prior,
              "root": root, "process": "underdamped Langevin, BAOAB, stationary N(0, I)", "center": center[0].tolist()}
    return WalkPath(codes, np.repeat(center, steps, axis=0), params)
