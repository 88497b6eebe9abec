"""The multi-task discriminator: one conv trunk, three outputs.

Trunk: 5× [Conv k6 s2 p2, 32 ch, BN, LeakyReLU 0.2], 128 → 4, then FC(512→1) real/fake.
Both heads branch off the second block's output (32×32×32):
* posterior head: 3 conv blocks → FC(512→23)+BN+leaky → FC(23→23): depth → [latent 20, root 3]
  (the hidden width is `posterior_hidden`);
* metric head f(·): 3 conv blocks → FC(512→512)+BN+leaky → FC(512→23), for L_smo.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthgen.models.config import DiscriminatorConfig


def conv_block(cin: int, cout: int, k: int, leak: float) -> nn.Sequential:
    """Conv k, stride 2, BN, LeakyReLU: halves the spatial size."""
    return nn.Sequential(nn.Conv2d(cin, cout, k, 2, (k - 2) // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(leak, inplace=True))


class Head(nn.Module):
    """Conv blocks from the branch point, then FC+BN+leaky → FC."""

    def __init__(self, config: DiscriminatorConfig, hidden: int, out: int):
        super().__init__()
        c, k = config.channels, config.kernel_size
        self.convs = nn.Sequential(*(conv_block(c, c, k, config.leak) for _ in range(config.head_convs)))
        self.fc = nn.Linear(config.feature_dim, hidden, bias=False)
        self.bn = nn.BatchNorm1d(hidden)
        self.out = nn.Linear(hidden, out)
        self.leak = config.head_leak

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        """(B, 32, 32, 32) branch features → (B, out)."""
        h = self.convs(branch).flatten(1)  # (B, 512)
        return self.out(F.leaky_relu(self.bn(self.fc(h)), self.leak))


class Discriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        c, k = config.channels, config.kernel_size
        self.convs = nn.ModuleList(
            conv_block(1 if i == 0 else c, c, k, config.leak) for i in range(config.num_convs)
        )
        self.real_fake = nn.Linear(config.feature_dim, 1)
        self.posterior = Head(config, config.posterior_hidden, config.posterior_dim)
        self.metric = Head(config, config.metric_hidden, config.metric_dim)

    def branch(self, depth: torch.Tensor) -> torch.Tensor:
        """(B, 1, S, S) → (B, 32, S/4, S/4): the shared features both heads start from."""
        h = depth
        for conv in self.convs[: self.config.branch_after]:
            h = conv(h)
        return h

    def trunk(self, branch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Branch features → (real/fake logit (B,), last conv features (B, 512))."""
        h = branch
        for conv in self.convs[self.config.branch_after:]:
            h = conv(h)
        features = h.flatten(1)
        return self.real_fake(features).squeeze(1), features

    def trunk_parameters(self):
        """Parameters of the conv trunk and the real/fake output (not the heads)."""
        yield from self.convs.parameters()
        yield from self.real_fake.parameters()
