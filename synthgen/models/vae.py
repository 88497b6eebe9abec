"""The pose VAE: root-relative joints (50 mm units) ↔ a 20-d latent code.

Encoder FC(3J→40, ReLU) → mean FC(40→20), log σ FC(40→20); decoder FC(20→40, leaky 0.01) →
FC(40→3J). Its first and last layers start from a 40-component PCA of the training poses.
With `config.decoder = "kinematic"` the decoder is `kinematic.KinematicDecoder` instead: every
decoded pose is a hand of the skeleton (the encoder is unchanged).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from synthgen.models.config import VAEConfig
from synthgen.models.kinematic import KinematicDecoder


class PoseVAE(nn.Module):
    def __init__(self, config: VAEConfig, unit_mm: float = 50.0):
        super().__init__()
        self.config = config
        d = 3 * config.num_joints
        self.enc_fc = nn.Linear(d, config.hidden_dim)
        self.enc_mean = nn.Linear(config.hidden_dim, config.latent_dim)
        self.enc_log_sigma = nn.Linear(config.hidden_dim, config.latent_dim)
        if config.decoder == "kinematic":
            self.kinematic = KinematicDecoder(config.latent_dim, config.kinematic_hidden, unit_mm, config.scale_range)
        else:
            self.dec_fc = nn.Linear(config.latent_dim, config.hidden_dim)
            self.dec_out = nn.Linear(config.hidden_dim, d)

    def decoder_modules(self) -> list[nn.Module]:
        """The decoder's layers (what a decoder-only VAE stage trains)."""
        return [self.kinematic] if self.config.decoder == "kinematic" else [self.dec_fc, self.dec_out]

    def encode(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, J, 3) root-relative pose, 50 mm units → mean, log σ, each (B, latent)."""
        h = F.relu(self.enc_fc(pose.flatten(1)))
        return self.enc_mean(h), self.enc_log_sigma(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) → (B, J, 3) root-relative pose, 50 mm units."""
        if self.config.decoder == "kinematic":
            return self.kinematic(z)
        h = F.leaky_relu(self.dec_fc(z), self.config.decoder_leak)
        return self.dec_out(h).view(-1, self.config.num_joints, 3)

    def forward(self, pose: torch.Tensor, generator: torch.Generator | None = None):
        """Training pass: returns (reconstruction, mean, log σ); z = μ + σ·ε, ε ~ N(0, noise_std²)."""
        mean, log_sigma = self.encode(pose)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype) * self.config.noise_std
        return self.decode(mean + log_sigma.exp() * eps), mean, log_sigma

    @torch.no_grad()
    def init_from_pca(self, poses: np.ndarray) -> None:
        """Set the encoder's first and decoder's last layer from a PCA of (N, J, 3) poses.

        enc_fc projects onto the principal components (W = Vᵀ, b = −Vᵀ·mean); dec_out maps
        component coefficients back (W = V, b = mean; the kinematic decoder has no such layer and
        keeps its initialisation). Needs N ≥ 2; components beyond the data's rank stay at their
        random initialisation.
        """
        x = np.asarray(poses, dtype=np.float64).reshape(len(poses), -1)
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        k = min(self.config.hidden_dim, vt.shape[0])
        comps = torch.as_tensor(vt[:k], dtype=torch.float32)  # (k, 3J)
        mean_t = torch.as_tensor(mean, dtype=torch.float32)
        self.enc_fc.weight[:k] = comps
        self.enc_fc.bias[:k] = -comps @ mean_t
        if self.config.decoder == "kinematic":
            return
        self.dec_out.weight[:, :k] = comps.T
        self.dec_out.bias.copy_(mean_t)

