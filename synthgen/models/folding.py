"""Batch norm folded into the layer before it: what the inference snapshots run, and how the
skeleton generator's pose head inverts Ali."""

from __future__ import annotations

import torch
from torch import nn


def fold_batchnorm(weight: torch.Tensor, bn: nn.BatchNorm1d | nn.BatchNorm2d,
                   out_dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of `bn(layer(x))` in eval mode, for a bias-free layer (conv, transposed conv, FC).

    In eval mode BN is a per-channel affine map y = s·x + t, so W ← s·W and b ← t.
    out_dim: the weight's output-channel dimension (0 for Conv2d/Linear, 1 for ConvTranspose2d).
    """
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shape = [1] * weight.dim()
    shape[out_dim] = -1
    return (weight * scale.view(shape)).detach(), (bn.bias - bn.running_mean * scale).detach()
