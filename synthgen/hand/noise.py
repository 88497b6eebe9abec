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

Three more, off in the defaults above and set by the per-camera presets (`SENSORS`):

* disparity quantisation (`disparity_quantum`, 1/mm): triangulating sensors measure disparity
  in fixed steps, so the depth step grows as z²: step = `disparity_quantum` · z²;
* projector shadow (`shadow_baseline_mm`): a structured-light projector beside the camera does
  not light the surface just beside a nearer edge, so a band of no data as wide as the disparity
  difference (f · b · (1/z_near − 1/z_far) pixels) follows every step down in depth, on the
  side away from the projector (sign: + = the band lies to the right of the nearer surface);
* flying pixels (`flying_pixels`): time-of-flight pixels that straddle an edge report a depth
  between the two surfaces; each edge pixel does so with this probability.
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
    disparity_quantum: float = 0.0
    shadow_baseline_mm: float = 0.0
    flying_pixels: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, depth_mm: np.ndarray, rng: np.random.Generator, focal_px: np.ndarray | float | None = None
              ) -> np.ndarray:
        """(B, H, W) or (H, W) metric depth → a noisy copy; missing pixels stay 0.

        focal_px: the image's focal length in pixels (per image or one for all), which the
        projector shadow's width needs; required when `shadow_baseline_mm` is set.
        """
        depth = np.array(depth_mm, dtype=np.float32, copy=True)
        batched = depth.ndim == 3
        if not batched:
            depth = depth[None]
        valid = depth > 0
        if self.shadow_baseline_mm:
            if focal_px is None:
                raise ValueError("a projector shadow needs the image's focal length (focal_px)")
            valid &= ~_projector_shadow(depth, valid, np.broadcast_to(np.asarray(focal_px, np.float32), len(depth)),
                                        self.shadow_baseline_mm)
        if self.flying_pixels > 0:
            depth = _flying_pixels(depth, valid, self.edge_jump_mm, self.flying_pixels, rng)
        # Only pixels with data get noise: the draws follow the surfaces, not the image size.
        surface = depth[valid]
        surface += (self.sigma_0 + self.sigma_z2 * surface**2) * rng.standard_normal(surface.shape, dtype=np.float32)
        if self.disparity_quantum > 0:
            steps = np.round(1.0 / (self.disparity_quantum * np.maximum(surface, 1.0)))
            surface = 1.0 / (self.disparity_quantum * np.maximum(steps, 1.0))
        if self.quantum_mm > 0:
            surface = np.round(surface / self.quantum_mm) * self.quantum_mm
        depth[:] = 0.0
        depth[valid] = surface

        # a 4-neighbour differs by more than edge_jump_mm (the image border is no edge)
        jump = np.zeros(depth.shape, dtype=bool)
        across = np.abs(np.diff(depth, axis=2)) > self.edge_jump_mm
        jump[:, :, 1:] |= across
        jump[:, :, :-1] |= across
        down = np.abs(np.diff(depth, axis=1)) > self.edge_jump_mm
        jump[:, 1:] |= down
        jump[:, :-1] |= down
        jump &= valid
        drop = np.zeros(depth.shape, dtype=bool)
        drop[jump] = rng.random(int(jump.sum())) < self.edge_dropout

        H, W = depth.shape[1:]
        counts = rng.poisson(self.holes_per_frame, size=len(depth))
        image = np.repeat(np.arange(len(depth)), counts)
        cy, cx = rng.uniform(0, H, len(image)), rng.uniform(0, W, len(image))
        ry, rx = rng.uniform(1.0, self.hole_radius_px, size=(2, len(image)))
        reach = int(np.ceil(self.hole_radius_px))
        for b, y, x, a, c in zip(image, cy, cx, ry, rx):  # each hole within its bounding box
            y0, y1 = max(int(y) - reach, 0), min(int(y) + reach + 1, H)
            x0, x1 = max(int(x) - reach, 0), min(int(x) + reach + 1, W)
            yy, xx = np.ogrid[y0:y1, x0:x1]
            drop[b, y0:y1, x0:x1] |= ((yy - y) / a) ** 2 + ((xx - x) / c) ** 2 <= 1.0
        depth[drop] = 0.0
        return depth if batched else depth[0]


#: Widest projector shadow drawn, in pixels.
MAX_SHADOW_PX = 12


def _projector_shadow(depth: np.ndarray, valid: np.ndarray, focal: np.ndarray, baseline: float) -> np.ndarray:
    """(B, H, W) bool: pixels the projector cannot light because a nearer surface `k` pixels
    towards it stands at least `k` pixels of disparity in front."""
    # In disparity pixels (f b / z) the test is: some nearer pixel k columns towards the
    # projector stands at least k above this one, i.e. max_k (disparity(u - k) - k) >= disparity(u).
    fb = (np.asarray(focal, np.float32) * np.float32(abs(baseline)))[:, None, None]
    disparity = np.where(valid, fb / np.maximum(depth, 1.0), -np.inf).astype(np.float32)
    if baseline < 0:
        disparity = disparity[:, :, ::-1]
    reach = np.full(depth.shape, -np.inf, np.float32)
    for k in range(1, MAX_SHADOW_PX + 1):
        np.maximum(reach[:, :, k:], disparity[:, :, :-k] - np.float32(k), out=reach[:, :, k:])
    shadow = reach >= disparity
    if baseline < 0:
        shadow = shadow[:, :, ::-1]
    return shadow & valid


def _flying_pixels(depth: np.ndarray, valid: np.ndarray, jump_mm: float, probability: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Edge pixels (a 4-neighbour farther by > jump_mm) take a depth between theirs and the
    farther neighbour's, with the given probability."""
    padded = np.pad(np.where(valid, depth, 0.0), ((0, 0), (1, 1), (1, 1)), mode="edge")
    farther = np.zeros_like(depth)
    H, W = depth.shape[1:]
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        neighbour = padded[:, dy : dy + H, dx : dx + W]
        farther = np.maximum(farther, np.where(neighbour > depth + jump_mm, neighbour, 0.0))
    edge = valid & (farther > 0) & (rng.random(depth.shape) < probability)
    mix = rng.random(depth.shape).astype(np.float32)
    return np.where(edge, depth + mix * (farther - depth), depth).astype(np.float32)


#: Per-camera presets (docs/sensors.md gives the measurements and sources behind each).
SENSORS: dict[str, SensorNoise] = {
    # Kinect v1 / PrimeSense class (NYU): calibrated on the NYU test frame (docs/sensors.md).
    # Disparity step 3.4e-6 z² (1.9 mm at 750 mm, then stored as whole mm); little independent
    # per-pixel noise (the matching window smooths it into the quantisation steps).
    "structured-light": SensorNoise(sigma_0=0.1, sigma_z2=0.2e-6, quantum_mm=1.0, edge_jump_mm=10.0,
                                    edge_dropout=0.5, holes_per_frame=1.0, hole_radius_px=3.0,
                                    disparity_quantum=3.4e-6, shadow_baseline_mm=75.0),
    # Intel RealSense SR305 (coded light): calibrated on 14 SR305 frames; 0.125 mm depth unit.
    "sr305": SensorNoise(sigma_0=0.1, sigma_z2=0.0, quantum_mm=0.125, edge_jump_mm=10.0, edge_dropout=0.35,
                         holes_per_frame=2.0, hole_radius_px=3.0, shadow_baseline_mm=50.0),
    # Time of flight (Kinect v2 / Azure Kinect class): from published noise studies, not
    # calibrated here: ~1-2 mm axial noise at arm's length, mixed depths at edges.
    "tof": SensorNoise(sigma_0=1.0, sigma_z2=1.0e-6, quantum_mm=1.0, edge_jump_mm=10.0, edge_dropout=0.2,
                       holes_per_frame=0.5, hole_radius_px=3.0, flying_pixels=0.5),
    # Active stereo (RealSense D400 class): RMS error z² · subpixel / (f · b) with subpixel 0.08,
    # f ≈ 640 px, b = 50 mm; the left imager's occlusion band. From the vendor's figures.
    "active-stereo": SensorNoise(sigma_0=0.2, sigma_z2=2.5e-6, quantum_mm=1.0, edge_jump_mm=10.0, edge_dropout=0.5,
                                 holes_per_frame=2.0, hole_radius_px=4.0, shadow_baseline_mm=-50.0),
}
