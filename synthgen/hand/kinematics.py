"""Batched forward kinematics: (global rotation, translation, joint angles, scale) → joints.

Pure torch, differentiable, no Python loop over the batch. Besides the 21 joint positions it
returns the rigid frame of every joint, which linear-blend skinning uses to pose the mesh with
exactly the same transforms (so depth and joints agree by construction).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from synthgen.conventions import NUM_JOINTS, finger_chain
from synthgen.hand import skeleton


@dataclass
class HandPose:
    """A batch of hand states; every field has leading batch dimension B.

    global_rot: (B, 3) axis-angle, hand frame → camera frame.
    translation: (B, 3) mm, camera position of the wrist joint.
    angles: (B, 20) radians, order `skeleton.ANGLE_NAMES`.
    scale: (B,) uniform size factor (1 = the average adult hand).
    proportions: (B, 7) or None: the hand's shape beyond its size, as ratios to the average
      hand (`PROPORTIONS`): each finger's length (thumb..little), the palm's width and the
      girth of palm and fingers. None: the average shape.
    """

    global_rot: torch.Tensor
    translation: torch.Tensor
    angles: torch.Tensor
    scale: torch.Tensor
    proportions: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.angles.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        """The fields that are set, by name (proportions only when given)."""
        return {name: value for name, value in vars(self).items() if value is not None}

    @classmethod
    def rest(cls, batch: int = 1) -> HandPose:
        z = torch.zeros
        return cls(z(batch, 3), z(batch, 3), z(batch, skeleton.NUM_ANGLES), torch.ones(batch))


#: The columns of `HandPose.proportions`.
PROPORTIONS = ("thumb_length", "index_length", "middle_length", "ring_length", "little_length",
               "palm_width", "girth")


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, (..., 3) → (..., 3, 3); stable at zero angle."""
    theta = aa.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    k = aa / theta
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    K = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).reshape(*aa.shape[:-1], 3, 3)
    s = torch.sin(theta)[..., None]
    c = torch.cos(theta)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(K)
    return eye + s * K + (1 - c) * (K @ K)


def _flexion(angle: torch.Tensor) -> torch.Tensor:
    """Rotation about local -x: curls local +y towards the palm (-z)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([o, z, z, z, c, s, z, -s, c], dim=-1).reshape(*angle.shape, 3, 3)


def _abduction(angle: torch.Tensor) -> torch.Tensor:
    """Rotation about local +z: moves local +y towards -x (the thumb side)."""
    c, s = torch.cos(angle), torch.sin(angle)
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return torch.stack([c, -s, z, s, c, z, z, z, o], dim=-1).reshape(*angle.shape, 3, 3)


def forward_kinematics(pose: HandPose) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose a batch of hands.

    Returns
      joints: (B, 21, 3) mm, camera coordinates, canonical joint order.
      rotations: (B, 21, 3, 3) camera-frame orientation of each joint's frame (a tip copies
        its parent's); the frame's origin is the joint itself.
    """
    angles = pose.angles
    B = angles.shape[0]
    dtype, device = angles.dtype, angles.device
    scale = pose.scale.to(dtype).reshape(B, 1, 1)
    R_root = axis_angle_to_matrix(pose.global_rot.to(dtype))  # (B, 3, 3)
    t_root = pose.translation.to(dtype)  # (B, 3)

    a = angles.reshape(B, 5, 4)  # per finger: (flex0, abd0, flex1, flex2)
    rest_R = torch.as_tensor(skeleton.REST_ROTATIONS, dtype=dtype, device=device)  # (5, 3, 3)
    mcp = torch.as_tensor(skeleton.MCP_POSITIONS, dtype=dtype, device=device)  # (5, 3)
    lengths = torch.as_tensor(skeleton.BONE_LENGTHS, dtype=dtype, device=device)  # (5, 3)
    lengths = lengths.expand(B, 5, 3)
    if pose.proportions is not None:
        shape = pose.proportions.to(dtype)
        lengths = lengths * shape[:, :5, None]
        mcp = mcp * torch.stack([shape[:, 5], torch.ones_like(shape[:, 5]), torch.ones_like(shape[:, 5])], -1)[:, None]

    # First joint of each finger: fixed in the palm, abduction then flexion in its rest frame.
    R1 = R_root[:, None] @ rest_R @ _abduction(a[..., 1]) @ _flexion(a[..., 0])  # (B, 5, 3, 3)
    p1 = t_root[:, None] + (scale * mcp) @ R_root.transpose(1, 2)  # (B, 5, 3)
    rots, pts = [R1], [p1]
    R, p = R1, p1
    for level, flex in enumerate((a[..., 2], a[..., 3], None)):
        bone = torch.zeros(B, 5, 3, dtype=dtype, device=device)
        bone[..., 1] = lengths[:, :, level] * scale[..., 0]
        p = p + (R @ bone[..., None])[..., 0]
        if flex is not None:
            R = R @ _flexion(flex)
        rots.append(R)
        pts.append(p)

    joints = torch.empty(B, NUM_JOINTS, 3, dtype=dtype, device=device)
    rotations = torch.empty(B, NUM_JOINTS, 3, 3, dtype=dtype, device=device)
    joints[:, 0] = t_root
    rotations[:, 0] = R_root
    for f in range(5):
        for level, j in enumerate(finger_chain(f)):
            joints[:, j] = pts[level][:, f]
            rotations[:, j] = rots[level][:, f]
    return joints, rotations


@functools.lru_cache(maxsize=1)
def _rest_frames() -> tuple[torch.Tensor, torch.Tensor]:
    """Joints and frames of the rest pose (float64), the reference every skinning map starts from."""
    rest = HandPose.rest(1)
    return forward_kinematics(HandPose(**{k: t.double() for k, t in rest.tensors().items()}))


def _part_stretch(proportions: torch.Tensor) -> torch.Tensor:
    """(B, 21, 3) per-joint scale of its part along its frame's axes (x across, y along the
    bone, z through the palm): the palm by width and girth, a finger by girth and its length."""
    girth = proportions[:, 6]
    stretch = torch.empty(len(proportions), NUM_JOINTS, 3, dtype=proportions.dtype, device=proportions.device)
    stretch[:, 0] = torch.stack([proportions[:, 5], torch.ones_like(girth), girth], -1)
    for f in range(5):
        part = torch.stack([girth, proportions[:, f], girth], -1)
        for j in finger_chain(f):
            stretch[:, j] = part
    return stretch


def skinning_transforms(pose: HandPose) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-joint affine maps from the rest mesh (hand frame, scale 1) to the posed camera frame.

    Returns (A, b) with A (B, 21, 3, 3), b (B, 21, 3): a rest vertex v bound to joint j goes to
    A[:, j] @ v + b[:, j]. A includes the hand's scale, so bone offsets scale with the bones.
    """
    joints, rotations = forward_kinematics(pose)
    rest_joints, rest_rot = (t.to(dtype=pose.angles.dtype, device=pose.angles.device) for t in _rest_frames())
    scale = pose.scale.to(pose.angles.dtype).reshape(-1, 1, 1, 1)
    if pose.proportions is None:
        A = scale * rotations @ rest_rot.transpose(-1, -2)  # (B, 21, 3, 3)
    else:  # stretch each part in its own frame: along its bone by the finger's length, across by girth
        A = scale * rotations @ torch.diag_embed(_part_stretch(pose.proportions.to(pose.angles.dtype))) \
            @ rest_rot.transpose(-1, -2)

    b = joints - (A @ rest_joints[..., None])[..., 0]
    return A, b
