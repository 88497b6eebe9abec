"""What a generated sample is drawn from: the latent prior and the crop-centre rule.

A sample of the Crossing Nets latent space is a 23-d code

    code = [pose latent (20), root offset (3)]

drawn as 23 standard-normal numbers x ("whitened" coordinates) mapped to a code by

* pose latent: `prior="fitted"` (default): the prior fitted to the training poses' VAE mean
  latents — the model's normalising flow where it has one (`models.flow.LatentFlow`,
  m + L·f(x[:20]), which follows the clusters and curves of the training codes), else
  `prior="gaussian"`: the Gaussian fitted to them (`model.latent`: mean m, covariance C),
  m + L·x[:20] with L Lᵀ = C — what the aligned generator saw in training when the KL term left
  the means' spread well below 1 (a converted release model's latents have a std of ~0.1);
  `prior="standard"`: the VAE prior N(0, I₂₀), the latent is x[:20] itself;
* root offset: the root joint's offset from the crop centre in `unit_mm` (50 mm) units.
  `root="auto"` (default) is "centred" for models trained on joint-box crops (synthgen's) and
  "gaussian" for the others (a converted release model: its crops are centred on the hand's
  centre of mass or a given centre, and its root-offset Gaussian is where its own estimator reads
  the root in the hands its generator draws, lasagne.fit_root_offset).
  `root="centred"`: not drawn but *derived*, offset = −(bounding-box centre of the
  decoded root-relative pose), so the hand's joint box is centred on the crop centre exactly as
  in every training crop (`hand_center`); x[20:] is then unused. `root="gaussian"`: from the
  training set's Gaussian (`model.root_offset`) as m + L·x[20:], the same formula as
  `CrossingNets.sample_root_offsets` — independent of the pose, which the training data's
  offsets are not (the wrist's place in the box depends on the articulation and view), so it
  puts hands up to ~70 mm (1 σ) off-centre: inputs the generator never saw. Measured on the
  default model (4096 samples, `synthgen score`): see docs/realism.md.

The walk (synthgen.sampling.walk) moves in the same whitened coordinates, so it stays inside
whichever prior was chosen.

Truncation (`truncation=T`) draws every one of the 23 standard-normal numbers from N(0, 1)
truncated to [-T, T],
exactly, by the inverse CDF: x = Φ⁻¹(U(Φ(-T), Φ(T))). The same uniform numbers are used
whatever T, so a seed's samples shrink monotonically towards the mean as T falls instead of
being replaced by other samples, and no rejection loop makes the number of random draws
depend on the data.

The generated depth crop is translation-invariant: it is normalised around a crop centre the
networks never see. Each sample is therefore *placed* at a crop centre (`CropCenters`):

    pose_mm = (decoded root-relative pose + root offset) · unit_mm + centre

and its depth is read as `depth_mm = depth · cube_mm / 2 + centre_z` (background → no data).
The default rule is the mesh baseline's placement (synthgen.hand.prior.PriorConfig): centre
depth uniform in 350..650 mm, image position uniform in the frame of the chosen camera at least
20 % of its size from the borders, so generated and rendered stores cover the same sensor
volume. `CropCenters(fixed=(0, 0, 450))` places every sample at one nominal point instead.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from synthgen.conventions import CAMERAS, DEFAULT_CAMERA
from synthgen.errors import InputError
from synthgen.hand.prior import PriorConfig
from synthgen.models.flow import gaussian_factor

POSE_LATENT_DIM = 20
ROOT_DIM = 3

# --- the latent prior ----------------------------------------------------------------------


def check_truncation(truncation: float | None) -> float | None:
    """None (no truncation) or a finite T > 0; anything else is an InputError."""
    if truncation is None:
        return None
    t = float(truncation)
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"truncation must be a positive number of standard deviations, got {truncation!r}")
    return t


def truncated_normal(shape: tuple[int, ...], truncation: float | None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normals truncated to [-T, T] (float64), by the inverse CDF of uniform draws.

    `truncation=None` is the untruncated normal (the uniforms are kept away from 0 and 1, so
    the largest value is about 8.2 σ).
    """
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    if truncation is None:
        lo, hi = 0.0, 1.0
    else:
        lo = 0.5 * math.erfc(truncation / math.sqrt(2))  # Φ(-T)
        hi = 1.0 - lo
    eps = 2.0**-53
    u = (lo + (hi - lo) * u).clamp(eps, 1 - eps)
    z = torch.special.ndtri(u)
    if truncation is not None:
        z = z.clamp(-truncation, truncation)  # guard the last ulp of ndtri
    return z


PRIORS = ("standard", "gaussian", "fitted")


ROOTS = ("auto", "centred", "gaussian")
DECODE_BLOCK = 256  # fixed decoder block: the bits never depend on how many codes are mapped


def centring_root_offsets(model, latent: torch.Tensor) -> torch.Tensor:
    """(n, 20) pose latents → (n, 3) float64 root offsets (unit_mm) that centre each decoded hand's
    joint bounding box on the crop centre, as `hand_center` centres every training crop."""
    def centre(block: torch.Tensor) -> torch.Tensor:
        rel = model.vae.decode(block).double()  # (k, J, 3) root-relative, unit_mm
        return -(rel.amax(dim=1) + rel.amin(dim=1)) / 2

    return _in_blocks(centre, latent, ROOT_DIM)


def _check_prior(prior: str) -> None:
    if prior not in PRIORS:
        raise InputError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")


def _uses_flow(model, prior: str) -> bool:
    return prior == "fitted" and getattr(model, "prior_flow", None) is not None


def _in_blocks(fn, x: torch.Tensor, width: int) -> torch.Tensor:
    """(n, width) float64: fn over fixed, zero-padded blocks of DECODE_BLOCK rows of x (float32
    inside), so a row's bits never depend on how many rows are mapped with it."""
    out = torch.empty(len(x), width, dtype=torch.float64)
    with torch.inference_mode():
        for s in range(0, len(x), DECODE_BLOCK):
            block = x[s:s + DECODE_BLOCK].float()
            padded = torch.cat([block, block.new_zeros(DECODE_BLOCK - len(block), block.shape[1])])
            out[s:s + len(block)] = fn(padded)[:len(block)].double()
    return out


def whitened_to_latents(model, whitened: torch.Tensor, prior: str = "fitted") -> torch.Tensor:
    """(n, 20) standard-normal numbers → (n, 20) float64 pose latents under `prior`."""
    _check_prior(prior)
    whitened = whitened.to(torch.float64)
    if prior == "standard":
        return whitened
    mean, chol = gaussian_factor(model.latent)
    if _uses_flow(model, prior):
        return _in_blocks(lambda x: model.prior_flow(x, mean, chol), whitened, whitened.shape[1])
    return mean + whitened @ chol.T


def latents_to_whitened(model, latent: torch.Tensor, prior: str = "fitted") -> torch.Tensor:
    """Inverse of `whitened_to_latents` (float64)."""
    _check_prior(prior)
    latent = latent.to(torch.float64)
    if prior == "standard":
        return latent
    mean, chol = gaussian_factor(model.latent)
    if _uses_flow(model, prior):
        return _in_blocks(lambda x: model.prior_flow.inverse(x, mean, chol)[0], latent, latent.shape[1])
    return torch.linalg.solve_triangular(chol, (latent - mean).T, upper=False).T


def resolve_root(model, root: str) -> str:
    """"auto" → the root rule that matches how the model's crops were centred: "centred" for
    joint-box crops (synthgen's), "gaussian" otherwise (a converted release model's crops are
    centred on the hand's centre of mass or a given centre, not on the joints' box)."""
    if root not in ROOTS:
        raise InputError(f"root must be one of {', '.join(ROOTS)}, got {root!r}")
    if root != "auto":
        return root
    return "centred" if model.input_convention.centering == "joint-box" else "gaussian"


def whitened_to_codes(model, whitened: torch.Tensor, prior: str = "fitted", root: str = "auto") -> torch.Tensor:
    """(n, 23) standard-normal numbers → (n, 23) float32 codes [latent, root offset]."""
    root = resolve_root(model, root)
    whitened = whitened.to(torch.float64)
    parts = whitened.split([POSE_LATENT_DIM, ROOT_DIM], dim=1)
    latent = whitened_to_latents(model, parts[0], prior)
    if root == "centred":
        offset = centring_root_offsets(model, latent.float())
    else:
        mean, chol = gaussian_factor(model.root_offset)
        offset = mean + parts[1] @ chol.T
    return torch.cat([latent, offset], dim=1).float()


def codes_to_whitened(model, codes: torch.Tensor, prior: str = "standard") -> torch.Tensor:
    """Inverse of `whitened_to_codes` with root="gaussian" (float64); for centred codes the root
    part is the offset's position in the training Gaussian (informative only)."""
    codes = codes.to(torch.float64)
    latent, offset = codes.split([POSE_LATENT_DIM, ROOT_DIM], dim=1)
    mean, chol = gaussian_factor(model.root_offset)
    root = torch.linalg.solve_triangular(chol, (offset - mean).T, upper=False).T
    return torch.cat([latents_to_whitened(model, latent, prior), root], dim=1)


@dataclass(frozen=True)
class LatentPrior:
    """The prior over 23-d codes; see the module docstring."""

    truncation: float | None = None
    prior: str = "fitted"
    root: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "truncation", check_truncation(self.truncation))
        if self.prior not in PRIORS:
            raise InputError(f"prior must be one of {', '.join(PRIORS)}, got {self.prior!r}")
        if self.root not in ROOTS:
            raise InputError(f"root must be one of {', '.join(ROOTS)}, got {self.root!r}")

    def sample(self, model, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 23) float32 codes [pose latent, root offset (unit_mm)]."""
        whitened = truncated_normal((n, POSE_LATENT_DIM + ROOT_DIM), self.truncation, generator)
        return whitened_to_codes(model, whitened, self.prior, self.root)

    def to_dict(self) -> dict:
        latent = {"standard": f"N(0, I_{POSE_LATENT_DIM})",
                  "gaussian": "model.latent mean + L x, x ~ N(0, I_20) (fitted to training VAE means)",
                  "fitted": "the model's fitted prior: model.latent mean + L f(x), f its normalising flow "
                            "(identity when it has none), x ~ N(0, I_20), fitted to training VAE means"}[self.prior]
        root = {"centred": "-(joint bounding-box centre of the decoded pose): hand centred in its crop",
                "gaussian": "model.root_offset mean + L x, x ~ N(0, I_3)",
                "auto": "centred for a model trained on joint-box crops, else gaussian"}[self.root]
        return {"prior": self.prior, "pose_latent": latent, "root": self.root, "root_offset": root,
                "truncation": self.truncation}


# --- crop centres --------------------------------------------------------------------------

_BASELINE = PriorConfig()


@dataclass(frozen=True)
class CropCenters:
    """Where generated crops are placed in the sensor's camera frame (mm).

    Default: the mesh baseline's rule — depth uniform in `distance_mm`, image position uniform
    in the camera's frame with `image_margin` of its width/height kept free at every border.
    `fixed`: one nominal centre for every sample.
    """

    camera: str = DEFAULT_CAMERA
    distance_mm: tuple[float, float] = _BASELINE.distance_mm
    image_margin: float = _BASELINE.image_margin
    fixed: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.camera not in CAMERAS:
            raise InputError(f"unknown camera preset {self.camera!r} (known: {', '.join(CAMERAS)})")
        lo, hi = self.distance_mm
        if not 0 < lo <= hi:
            raise InputError(f"distance_mm must satisfy 0 < min <= max, got {self.distance_mm}")
        if not 0 <= self.image_margin < 0.5:
            raise InputError(f"image_margin must be in [0, 0.5), got {self.image_margin}")
        if self.fixed is not None and not self.fixed[2] > 0:
            raise InputError(f"a fixed crop centre must lie in front of the camera, got {self.fixed}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 3) float32 centres; always consumes the same draws for the same n."""
        depth = rng.uniform(*self.distance_mm, n)
        u01 = rng.uniform(self.image_margin, 1 - self.image_margin, (n, 2))
        if self.fixed is not None:
            return np.tile(np.asarray(self.fixed, np.float32), (n, 1))
        cam = CAMERAS[self.camera]
        u, v = u01[:, 0] * cam.width, u01[:, 1] * cam.height
        xyz = np.stack([(u - cam.cx) * depth / cam.fx, (v - cam.cy) * depth / cam.fy, depth], axis=1)
        return xyz.astype(np.float32)

    def to_dict(self) -> dict:
        return asdict(self)
