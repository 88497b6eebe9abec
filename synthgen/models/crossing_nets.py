"""Crossing Nets: a pose VAE and a depth GAN that share one latent space.

    pose (mm) ──normalise──► VAE encoder ──► z (20) ─┐
                                                      ├─[z, root offset] (23) ─► Ali ─► G ─► depth
    depth ─► D.branch ─► posterior head ─► (23) ──────┘                 ▲
                   └───► trunk ─► real/fake        metric head f(·) ───┘ (L_smo)

`CrossingNets` holds the four networks plus what is needed to interpret them (joint layout,
pose normalisation, root-offset statistics, provenance). Its inference methods run in eval mode
under `torch.inference_mode` and touch only the sub-networks they need. Poses are (B, J, 3) in
the model's `joint_layout` (a key of conventions.LAYOUTS; canonical "hands2017" unless the model
was trained on or converted from a dataset with another skeleton).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, replace

import numpy as np
import torch
from torch import nn

from synthgen.conventions import LAYOUTS, SYNTHGEN_INPUT, InputConvention
from synthgen.models.config import CrossingNetsConfig, GaussianStats, PoseNormalisation
from synthgen.models.discriminator import Discriminator
from synthgen.models.flow import LatentFlow
from synthgen.models.generator import Alignment, Generator, SkeletonGenerator, crop_coordinates, skeleton_bones
from synthgen.models.vae import PoseVAE


class CrossingNets(nn.Module):
    def __init__(self, config: CrossingNetsConfig | None = None, normalisation: PoseNormalisation | None = None,
                 root_offset: GaussianStats | None = None, latent: GaussianStats | None = None,
                 provenance: dict | None = None, joint_layout: str = "hands2017",
                 input_convention: InputConvention = SYNTHGEN_INPUT):
        super().__init__()
        self.config = config or CrossingNetsConfig()
        if joint_layout not in LAYOUTS or LAYOUTS[joint_layout].num_joints != self.config.vae.num_joints:
            known = {name: layout.num_joints for name, layout in LAYOUTS.items()}
            raise ValueError(f"joint layout {joint_layout!r} does not fit a VAE of {self.config.vae.num_joints} "
                             f"joints (layouts and their joints: {known})")
        self.joint_layout = joint_layout
        self.normalisation = normalisation or PoseNormalisation()
        # Training-set statistics (written to config.json), to sample plausible inputs for G.
        self.root_offset = root_offset or GaussianStats.standard(3)
        self.latent = latent or GaussianStats.standard(self.config.vae.latent_dim)
        self.provenance = dict(provenance or {})  # data digest, recipe, version: written to config.json
        # How its input crops are cut, centred and normalised (what `estimate` must be fed).
        self.input_convention = input_convention
        generator = self.config.generator
        if generator.arch == "skeleton":
            if generator.num_joints != self.config.vae.num_joints:
                raise ValueError(f"the skeleton generator draws {generator.num_joints} joints, the VAE has "
                                 f"{self.config.vae.num_joints}")
            layout, n = LAYOUTS[joint_layout], self.normalisation
            generator = replace(generator,
                                bones=generator.bones or skeleton_bones(layout.parents, layout.fingers),
                                decoder_hidden=generator.decoder_hidden or (
                                    self.config.vae.kinematic_hidden if self.config.vae.decoder == "kinematic"
                                    else self.config.vae.hidden_dim),
                                pose_scale=generator.pose_scale or n.unit_mm / (n.cube_mm / 2),
                                cube_mm=generator.cube_mm or n.cube_mm,
                                decoder=self.config.vae.decoder,
                                decoder_scale_range=self.config.vae.scale_range)
            self.config = replace(self.config, generator=generator)
        if self.config.vae.decoder == "kinematic" and (joint_layout != "hands2017"
                                                       or self.normalisation.root_joint != LAYOUTS[joint_layout].root):
            raise ValueError("the kinematic pose decoder needs the canonical hands2017 layout with the wrist as root")
        self.vae = PoseVAE(self.config.vae, self.normalisation.unit_mm)
        self.align = Alignment(self.config.code_dim)
        self.generator = SkeletonGenerator(generator) if generator.arch == "skeleton" else Generator(generator)
        self.discriminator = Discriminator(self.config.discriminator)
        # The latent prior's flow (None: the Gaussian `latent` is the prior), fitted after training.
        self.prior_flow = LatentFlow(self.config.vae.latent_dim, self.config.prior) if self.config.prior.layers else None

    def train(self, mode: bool = True) -> CrossingNets:
        """As nn.Module.train; with the skeleton generator Ali stays in eval mode: its pose head
        inverts Ali's eval-mode affine map, which batch statistics would blur and move."""
        super().train(mode)
        if self.config.generator.arch == "skeleton":
            self.align.eval()
        return self

    # --- pose normalisation (paper) ----------------------------------------------------------

    def normalize_pose(self, joints: torch.Tensor, center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, J, 3) mm, (B, 3) mm → root-relative pose (B, J, 3) and root offset (B, 3), unit_mm units."""
        n = self.normalisation
        x = (joints - center[:, None, :]) / n.unit_mm
        root = x[:, n.root_joint]
        return x - root[:, None, :], root

    def denormalize_pose(self, relative: torch.Tensor, root_offset: torch.Tensor, center: torch.Tensor
                         ) -> torch.Tensor:
        """Inverse of `normalize_pose`: → (B, J, 3) mm camera coordinates."""
        return (relative + root_offset[:, None, :]) * self.normalisation.unit_mm + center[:, None, :]

    def crop_coordinates(self, joints: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """(B, J, 3) mm, (B, 3) mm → where the joints lie in their crop: (u, v) across the crop
        in [-1, 1] (pixel centres at (p − (S − 1)/2) / (S/2); exact, perspective included) and the
        depth normalised like the crop's, (z − z_c) / (cube / 2). The skeleton generator's targets."""
        return crop_coordinates(joints - center[:, None], center, self.normalisation.cube_mm / 2)

    # --- inference API -----------------------------------------------------------------------

    def estimate(self, depth: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """Pose from depth through the posterior path: depth → 23-d → decoder + root offset.

        depth: (B, 1, S, S) or (B, S, S) normalised crops (background +1); center: (B, 3) mm.
        Returns (B, J, 3) joints in mm, camera coordinates. Runs only D's first conv blocks,
        the posterior head and the VAE decoder. For speed (single frames above all), use
        `synthgen.models.inference.PoseEstimator(model)`: the same function with BN folded and
        prepacked fused convs, < 1e-3 mm per joint from this one.
        """
        depth = _as_float(depth)
        if depth.dim() == 3:
            depth = depth[:, None]
        with self._inference():
            code = self.discriminator.posterior(self.discriminator.branch(depth))  # (B, 23)
            latent, root_offset = code.split([self.config.vae.latent_dim, 3], dim=1)
            return self.denormalize_pose(self.vae.decode(latent), root_offset, _as_float(center))

    def decode_pose(self, latent: torch.Tensor, root_offset: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        """(B, 20) pose latent, (B, 3) root offset (unit_mm), (B, 3) centre mm → (B, J, 3) mm."""
        with self._inference():
            return self.denormalize_pose(self.vae.decode(_as_float(latent)), _as_float(root_offset),
                                         _as_float(center))

    def encode_pose(self, joints: torch.Tensor, center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, J, 3) mm, (B, 3) mm → VAE mean latent (B, 20), root offset (B, 3) in unit_mm."""
        with self._inference():
            relative, root_offset = self.normalize_pose(_as_float(joints), _as_float(center))
            return self.vae.encode(relative)[0], root_offset

    def generate_depth(self, code: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 23) [latent, root offset] → (B, S, S) normalised depth, through Ali and G.

        center: (B, 3) mm crop centres; needed when `config.generator.sees_center`, ignored
        otherwise. Values at or above `config.generator.background_snap` are set to the
        background (+1). The exact reference; `synthgen.models.inference.DepthGenerator` is the
        fast form.
        """
        with self._inference():
            center = None if center is None else _as_float(center)
            depth = self.generator(self.align(_as_float(code)), center)[:, 0]
            snap = self.config.generator.background_snap
            if snap < 1.0:
                depth = depth.masked_fill(depth >= snap, self.normalisation.background)
            return depth

    def sample_root_offsets(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 3) root offsets (unit_mm) from a Gaussian fitted to the training set's."""
        return _sample(self.root_offset, n, generator)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 20) pose latents from a Gaussian fitted to the training poses' VAE means."""
        return _sample(self.latent, n, generator)

    @property
    def checksum(self) -> str:
        """sha256 of the safetensors serialisation of the current weights (= model.safetensors)."""
        from synthgen.models.checkpoint import weights_sha256

        return weights_sha256(self)

    # --- persistence -------------------------------------------------------------------------

    def save_pretrained(self, directory) -> None:
        """Write model.safetensors + config.json to `directory` (see checkpoint.py)."""
        from synthgen.models.checkpoint import save_model

        save_model(self, directory)

    @classmethod
    def from_pretrained(cls, path) -> CrossingNets:
        from synthgen.models.checkpoint import load

        return load(path)

    def extra_repr(self) -> str:
        return (f"joint_layout={self.joint_layout!r}, normalisation={asdict(self.normalisation)}, "
                f"input={self.input_convention.describe()!r}")

    @contextmanager
    def _inference(self):
        """Eval mode and no autograd for the duration; restores training mode afterwards."""
        was_training = self.training
        if was_training:
            self.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            if was_training:
                self.train()


def _sample(stats: GaussianStats, n: int, generator: torch.Generator | None) -> torch.Tensor:
    mean = torch.tensor(stats.mean, dtype=torch.float64)
    cov = torch.tensor(stats.cov, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov + 1e-9 * torch.eye(len(mean), dtype=torch.float64))
    eps = torch.randn(n, len(mean), generator=generator, dtype=torch.float64)
    return (mean + eps @ chol.T).float()


def _as_float(x) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    return x.float() if x.dtype != torch.float32 else x
