"""The depth generator and the alignment layer that maps pose codes into its input space.

Generator: tanh(z) → FC(23→512)+BN+ReLU → 32×4×4 → 4× [ConvTranspose 32→32, k6 s2 p2, BN,
ReLU] → ConvTranspose 32→1 (k6 s2 p2) + tanh → 1×128×128 normalised depth (background +1).
"""

from __future__ import annotations

import torch
from torch import nn

from synthgen.models.config import GeneratorConfig


class Alignment(nn.Module):
    """FC(23→23) + BN: pose latent + root offset → the generator's input space."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)  # BN's β is the bias
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(code))


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c, k = config.channels, config.kernel_size
        pad = (k - 2) // 2  # k6 s2 p2: out = 2·in
        self.fc = nn.Linear(config.input_dim, config.fc_dim, bias=False)
        self.fc_bn = nn.BatchNorm1d(config.fc_dim)
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(c, c, k, 2, pad, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for _ in range(config.num_upsamples)
        )
        self.out = nn.ConvTranspose2d(c, 1, k, 2, pad)
        nn.init.constant_(self.out.bias, config.out_bias_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, 23) → (B, 1, S, S) in [-1, 1]."""
        cfg = self.config
        h = torch.relu(self.fc_bn(self.fc(torch.tanh(z))))
        h = h.view(-1, cfg.channels, cfg.base_size, cfg.base_size)  # (B, 32, 4, 4)
        for up in self.ups:
            h = up(h)  # (B, 32, 2s, 2s)
        return torch.tanh(self.out(h))  # (B, 1, 128, 128)
