"""Interpolation between two samples of the latent space: linear or spherical.

An endpoint is a 23-d code [pose latent 20, root offset 3] plus a crop centre (mm). Between two
endpoints, frame k of K (t = k / (K - 1)) is

    pose latent:  lerp  (1 - t)·a + t·b
                  slerp direction along the great circle from â to b̂ (angle Ω = ∠(a, b)),
                        sin((1-t)Ω)/sin Ω · â + sin(tΩ)/sin Ω · b̂, times the linearly
                        interpolated norm (1 - t)·|a| + t·|b|
    root offset:  linear (it is a physical offset, in 50 mm units)
    crop centre:  linear

Slerp keeps intermediate latents at the prior's typical radius (≈ √20) where a straight line
cuts through the low-norm interior, which a VAE decodes as an "average" hand. It falls back to
lerp for (anti)parallel endpoints, where the great circle is undefined. Both modes return the
endpoints exactly (frame 0 = a, frame K-1 = b, bit for bit).

Endpoints (`resolve_endpoint`):
  ``seed:N``          sample 0 of `synthgen sample --seed N` (the prior, default centre rule);
  ``store.zarr:I``    sample I of a store: its stored latent when the store was made by the
                      same model (equal checksum), otherwise its pose through the VAE encoder;
                      its stored crop centre;
  ``pose.npy|.csv``   a file holding one pose (mm, camera coordinates), encoded by the VAE,
                      centred at hand_center(joints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synthgen.errors import InputError
from synthgen.sampling.prior import POSE_LATENT_DIM

MODES = ("linear", "slerp")
_PARALLEL_EPS = 1e-6


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(D,), (D,), (K,) → (K, D) float64 points on the segment; endpoints exact."""
    a64, b64, t64 = a.double(), b.double(), t.double()[:, None]
    out = (1 - t64) * a64 + t64 * b64
    return _pin_endpoints(out, a64, b64, t)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(D,), (D,), (K,) → (K, D) float64: great-circle direction, linearly interpolated norm."""
    a64, b64, t64 = a.double(), b.double(), t.double()[:, None]
    na, nb = a64.norm(), b64.norm()
    if na < _PARALLEL_EPS or nb < _PARALLEL_EPS:
        return lerp(a, b, t)
    ua, ub = a64 / na, b64 / nb
    omega = torch.arccos(torch.clamp(ua @ ub, -1.0, 1.0))
    sin_omega = torch.sin(omega)
    if sin_omega < _PARALLEL_EPS:
        return lerp(a, b, t)
    direction = (torch.sin((1 - t64) * omega) * ua + torch.sin(t64 * omega) * ub) / sin_omega
    out = direction * ((1 - t64) * na + t64 * nb)
    return _pin_endpoints(out, a64, b64, t)


def _pin_endpoints(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    out[t == 0] = a
    out[t == 1] = b
    return out


def interpolate_codes(a: torch.Tensor, b: torch.Tensor, steps: int, mode: str = "slerp") -> torch.Tensor:
    """Two 23-d codes → (steps, 23) float32: the pose latent by `mode`, the root offset linearly."""
    if mode not in MODES:
        raise InputError(f"interpolation mode must be one of {', '.join(MODES)}, got {mode!r}")
    if steps < 2:
        raise InputError(f"an interpolation needs at least 2 steps, got {steps}")
    t = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    a, b = torch.as_tensor(a).reshape(-1), torch.as_tensor(b).reshape(-1)
    path = (slerp if mode == "slerp" else lerp)(a[:POSE_LATENT_DIM], b[:POSE_LATENT_DIM], t)
    root = lerp(a[POSE_LATENT_DIM:], b[POSE_LATENT_DIM:], t)
    return torch.cat([path, root], dim=1).float()


def interpolate_centers(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """(3,), (3,) mm → (steps, 3) float32 centres on the segment."""
    t = np.linspace(0.0, 1.0, steps)[:, None]
    out = (1 - t) * np.asarray(a, np.float64) + t * np.asarray(b, np.float64)
    return out.astype(np.float32)


# --- endpoints -----------------------------------------------------------------------------


@dataclass
class Endpoint:
    """One end of an interpolation: code (23,), crop centre (3,) mm, the pose it came from."""

    code: torch.Tensor
    center: np.ndarray
    pose: np.ndarray | None
    source: str

    def to_dict(self) -> dict:
        return {"source": self.source, "code": [round(float(v), 6) for v in self.code],
                "center": [float(v) for v in self.center]}


_SEED = re.compile(r"^seed:(\d+)$")
_INDEXED = re.compile(r"^(.+):(-?\d+)$")


def resolve_endpoint(spec: str, pipeline, *, layout: str = "hands2017") -> Endpoint:
    """Turn `seed:N`, `store.zarr:INDEX` or a one-pose file into an Endpoint (InputError if bad)."""
    from synthgen.sampling.conditional import encode_poses, load_poses
    from synthgen.sampling.pipeline import PriorSource

    spec = str(spec).strip()
    if match := _SEED.match(spec):
        source = PriorSource(pipeline.model, seed=int(match.group(1)))
        codes, centers = source.draw(0, 1)
        return Endpoint(codes[0], centers[0], pipeline.decode(codes, centers)[0], spec)
    if spec.startswith("seed:"):
        raise InputError(f"endpoint {spec!r}: expected seed:N with N a non-negative integer")
    match = _INDEXED.match(spec)
    if match and not Path(spec).exists():
        return _store_endpoint(Path(match.group(1)), int(match.group(2)), pipeline, spec)
    path = Path(spec)
    if path.suffix == ".zarr" or (path / "zarr.json").is_file():
        raise InputError(f"endpoint {spec!r}: name a sample of the store as {spec}:INDEX")
    joints = load_poses(path, layout, pipeline.model.joint_layout)
    if len(joints) != 1:
        raise InputError(f"endpoint {spec!r}: the file holds {len(joints)} poses; an endpoint needs exactly one "
                         f"(or use store.zarr:INDEX)")
    codes, centers = encode_poses(pipeline, np.asarray(joints))
    return Endpoint(codes[0], centers[0], np.asarray(joints[0], np.float32), spec)


def _store_endpoint(path: Path, index: int, pipeline, spec: str) -> Endpoint:
    from synthgen.data.reader import open_store

    store = open_store(path)
    if not -len(store) <= index < len(store):
        raise InputError(f"endpoint {spec!r}: index {index} out of range for {len(store)} samples")
    sample = store.read(index)
    pose, center = sample.pose[0], sample.center[0]
    same_model = (sample.latent is not None and sample.latent.shape[1] == pipeline.model.config.code_dim
                  and store.metadata.model_checksum == pipeline.model.checksum)
    if same_model:
        code = torch.from_numpy(sample.latent[0].copy())
    elif store.joint_layout != pipeline.model.joint_layout:
        raise InputError(f"endpoint {spec!r}: the store holds {store.joint_layout} joints, the model takes "
                         f"{pipeline.model.joint_layout}")
    else:
        code = pipeline.encode(pose[None], center[None])[0]
    return Endpoint(code, center, pose, spec)
