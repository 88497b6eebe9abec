"""A depth-sensor noise model for metric crops, so the baseline can look like a real camera.

Applied to metric depth (mm, 0 = no data) before normalisation. Four effects, each documented
by the parameter that controls it; the defaults resemble a structured-light / ToF sensor at
arm's length (Kinect v2, RealSense SR300-class):

* axial noise, std = sigma_0 + sigma_z2 * z² (mm; z in mm) — grows with distance;
* quantisation to `quantum_mm` (sensors report integer millimetres or coarser);
* edge drop-out: pixels at depth discontinuities (a neighbour more than `edge_jump_mm` away)
  are lost with probability `edge_dropout`;
* holes: `holes_per_frame` (Poisson mean) elliptical blobs of missing data with radii up to
  `hole_radius_px`, as from specular or dark patches.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SensorNoise:
    sigma_0: float = 0.5  # mm, noise floor
    sigma_z2: float = 2.5e-6  # mm per mm²: 0.5 + 2.5e-6 * 500² ≈ 1.1 mm at half a metre
    quantum_mm: float = 1.0
    edge_jump_mm: float = 20.0
    edge_dropout: float = 0.5
    holes_per_frame: float = 1.5
    hole_radius_px: float = 4.0

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, depth_mm: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(B, H, W) or (H, W) metric depth → a noisy copy; missing pixels stay 0."""
        depth = np.array(depth_mm, dtype=np.float32, copy=True)
        batched = depth.ndim == 3
        if not batched:
            depth = depth[None]
        valid = depth > 0
        sigma = self.sigma_0 + self.sigma_z2 * depth**2
        depth = depth + sigma * rng.standard_normal(depth.shape).astype(np.float32)
        if self.quantum_mm > 0:
            depth = np.round(depth / self.quantum_mm) * self.quantum_mm
        depth[~valid] = 0.0

        padded = np.pad(depth, ((0, 0), (1, 1), (1, 1)), mode="edge")
        jump = np.zeros(depth.shape, dtype=bool)
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            neighbour = padded[:, dy : dy + depth.shape[1], dx : dx + depth.shape[2]]
            jump |= np.abs(neighbour - depth) > self.edge_jump_mm
        drop = jump & valid & (rng.random(depth.shape) < self.edge_dropout)

        H, W = depth.shape[1:]
        yy, xx = np.mgrid[0:H, 0:W]
        for b, count in enumerate(rng.poisson(self.holes_per_frame, size=len(depth))):
            for _ in range(count):
                cy, cx = rng.uniform(0, H), rng.uniform(0, W)
                ry, rx = rng.uniform(1.0, self.hole_radius_px, size=2)
                drop[b] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        depth[drop] = 0.0
        return depth if batched else depth[0]
