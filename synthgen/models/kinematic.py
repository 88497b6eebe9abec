"""A pose decoder whose every output is a hand of the kinematic skeleton.

The paper's decoder maps a latent code to 63 free numbers: its poses are point sets whose bone
lengths drift and whose joints bend past their limits, so no articulated hand (and no mesh
render) matches them (the mesh hand's inverse kinematics leaves ~13 mm per joint on such poses).
`KinematicDecoder` instead maps the code through an MLP to the skeleton's parameters and runs
them through the forward kinematics the mesh baseline is rendered with:

    z (20) → MLP → 6-d rotation (Zhou et al., CVPR 2019: continuous, Gram-Schmidt to a matrix)
                 → 20 joint angles, each lo + (hi − lo)·sigmoid(·) inside `skeleton.ANGLE_LIMITS`
                 → hand size, inside `scale_range` the same way
           → forward kinematics (wrist at the origin) → root-relative joints / unit_mm

so a decoded pose is exactly a hand the mesh can take, by construction, and `hand_pose` returns
its parameters (a `HandPose`) for a renderer or a user who wants angles rather than points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.spatial.transform import Rotation
from torch import nn

from synthgen.hand import skeleton
from synthgen.hand.kinematics import HandPose, forward_kinematics

ROTATION_DIM = 6


def rotation_from_6d(x: torch.Tensor) -> torch.Tensor:
    """(B, 6) → (B, 3, 3) rotation matrices whose first two columns are the Gram-Schmidt
    orthonormalisation of x[:, :3] and x[:, 3:]."""
    a = F.normalize(x[:, :3], dim=1, eps=1e-8)
    b = x[:, 3:] - (a * x[:, 3:]).sum(1, keepdim=True) * a
    b = F.normalize(b, dim=1, eps=1e-8)
    return torch.stack([a, b, torch.cross(a, b, dim=1)], dim=2)


class KinematicDecoder(nn.Module):
    """(B, latent) → (B, 21, 3) root-relative joints in unit_mm units, always a skeleton hand."""

    def __init__(self, latent_dim: int, hidden_dim: int, unit_mm: float,
                 scale_range: tuple[float, float] = (0.7, 1.4)):
        super().__init__()
        self.unit_mm = float(unit_mm)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.fc1 = nn.Linear(latent_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, ROTATION_DIM + skeleton.NUM_ANGLES + 1)
        limits = torch.as_tensor(skeleton.ANGLE_LIMITS, dtype=torch.float32)
        self.register_buffer("angle_low", limits[:, 0].clone(), persistent=False)
        self.register_buffer("angle_span", (limits[:, 1] - limits[:, 0]).clone(), persistent=False)
        with torch.no_grad():  # start at the identity rotation, mid-range angles, scale 1-ish
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            self.out.bias[:ROTATION_DIM] = torch.tensor([1.0, 0, 0, 0, 1.0, 0])

    def parameters_of(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, latent) → rotation (B, 3, 3), angles (B, 20) radians, scale (B,)."""
        h = F.silu(self.fc2(F.silu(self.fc1(z))))
        rot, angle_logit, scale_logit = self.out(h).split([ROTATION_DIM, skeleton.NUM_ANGLES, 1], 1)
        angles = self.angle_low + self.angle_span * torch.sigmoid(angle_logit)
        lo, hi = self.scale_range
        scale = lo + (hi - lo) * torch.sigmoid(scale_logit[:, 0] + _logit((1 - lo) / (hi - lo)))
        return rotation_from_6d(rot), angles, scale

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # fp32 even under autocast: bf16 would move the joints by millimetres.
        with torch.autocast(z.device.type, enabled=False):
            R, angles, scale = self.parameters_of(z.float())
            zero = torch.zeros(len(z), 3, dtype=angles.dtype, device=z.device)
            local, _ = forward_kinematics(HandPose(zero, zero, angles, scale))  # wrist at the origin, hand frame
            return (local @ R.transpose(1, 2)) / self.unit_mm

    def hand_pose(self, z: torch.Tensor, wrist_mm: torch.Tensor) -> HandPose:
        """The decoded hands as `HandPose`s with their wrists at wrist_mm (B, 3), camera mm."""
        R, angles, scale = self.parameters_of(z)
        rotvec = Rotation.from_matrix(R.detach().double().cpu().numpy()).as_rotvec()
        return HandPose(torch.as_tensor(rotvec, dtype=z.dtype), wrist_mm.to(z.dtype), angles, scale)


def _logit(p: float) -> float:
    return float(torch.logit(torch.tensor(p, dtype=torch.float64)))
