"""The skinned hand mesh: loading the rest-pose asset and posing it with linear-blend skinning.

Posing uses `kinematics.skinning_transforms`, the same rigid frames that give the joints, so a
rendered depth map and its joint labels agree by construction. Pure numpy/torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from synthgen.assets import HAND_MESH
from synthgen.conventions import NUM_JOINTS
from synthgen.hand.kinematics import HandPose, skinning_transforms

#: Built by assets/build_hand_mesh.py (in the repository) from the skeleton; rebuild it, never edit it.
DEFAULT_MESH_PATH = HAND_MESH
INFLUENCES = 4  # (joint, weight) pairs per vertex


@dataclass
class HandMesh:
    """A right hand at rest pose (hand frame, scale 1, mm) with skinning weights.

    vertices: (V, 3) float32.  faces: (F, 3) int32, counter-clockwise seen from outside.
    skin_joints: (V, 4) int32 canonical joint indices, largest weight first, so column 0 is
      the part a vertex belongs to.  skin_weights: (V, 4) float32, rows sum to 1.
    """

    vertices: np.ndarray
    faces: np.ndarray
    skin_joints: np.ndarray
    skin_weights: np.ndarray
    #: (84, V): rows w_j(v) * v_k for joint j and rest axis k (63), then w_j(v) (21). Skinning
    #: is linear in these, so posing a batch is one GEMM (`pose_vertices`): 3x (B = 1) to 6x
    #: (B = 64) faster than blending a 3x4 matrix per vertex.
    skinning_basis: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        num_vertices = len(self.vertices)
        expected = {
            "vertices": ((num_vertices, 3), np.float32),
            "faces": ((len(self.faces), 3), np.int32),
            "skin_joints": ((num_vertices, INFLUENCES), np.int32),
            "skin_weights": ((num_vertices, INFLUENCES), np.float32),
        }
        for name, (shape, dtype) in expected.items():
            array = getattr(self, name)
            if array.shape != shape or array.dtype != dtype:
                raise ValueError(f"{name}: expected {dtype.__name__} {shape}, got {array.dtype} {array.shape}")
        if self.faces.min() < 0 or self.faces.max() >= num_vertices:
            raise ValueError(f"faces index vertices outside [0, {num_vertices})")
        if self.skin_joints.min() < 0 or self.skin_joints.max() >= NUM_JOINTS:
            raise ValueError(f"skin_joints must lie in [0, {NUM_JOINTS})")
        row_sums = self.skin_weights.sum(axis=1)
        if self.skin_weights.min() < 0 or not np.allclose(row_sums, 1.0, atol=1e-5):
            worst = int(np.abs(row_sums - 1.0).argmax())
            raise ValueError(f"skin_weights must be >= 0 with rows summing to 1; row {worst} sums to {row_sums[worst]}")
        dense_weights = np.zeros((num_vertices, NUM_JOINTS), dtype=np.float32)
        np.add.at(dense_weights, (np.arange(num_vertices)[:, None], self.skin_joints), self.skin_weights)
        weighted_positions = (dense_weights[:, :, None] * self.vertices[:, None, :]).reshape(num_vertices, -1)
        self.skinning_basis = np.ascontiguousarray(np.concatenate([weighted_positions, dense_weights], axis=1).T)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MESH_PATH) -> HandMesh:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: reinstall synthgen, or in a checkout build it with "
                                    f"`python assets/build_hand_mesh.py`")
        with np.load(path, allow_pickle=False) as data:
            missing = {"vertices", "faces", "skin_joints", "skin_weights"} - set(data.files)
            if missing:
                raise ValueError(f"{path} lacks {sorted(missing)}")
            return cls(data["vertices"], data["faces"], data["skin_joints"], data["skin_weights"])


def skinning_coefficients(pose: HandPose) -> torch.Tensor:
    """(B, 3, 84): the joints' maps arranged so that a hand's posed vertices, (3, V) coordinate
    planes, are its coefficients @ `HandMesh.skinning_basis` (see `pose_vertices`)."""
    A, b = skinning_transforms(pose)  # (B, 21, 3, 3), (B, 21, 3)
    batch = A.shape[0]
    return torch.cat([A.permute(0, 2, 1, 3).reshape(batch, 3, -1), b.transpose(1, 2)], dim=2)


def pose_vertices(mesh: HandMesh, pose: HandPose) -> torch.Tensor:
    """Linear-blend skinning: (B, V, 3) vertices in camera coordinates, mm.

    posed_i(v) = sum_j w_j(v) (A_j v + b_j)_i = sum_{j,k} A_jik [w_j(v) v_k] + sum_j b_ji w_j(v),
    i.e. the (B, 3, 84) coefficients of the joints' maps times `mesh.skinning_basis`. Computed
    in the dtype and on the device of `pose.angles`.
    """
    coefficients = skinning_coefficients(pose)
    batch = coefficients.shape[0]
    basis = torch.from_numpy(mesh.skinning_basis).to(dtype=pose.angles.dtype, device=pose.angles.device)
    posed = (coefficients.reshape(batch * 3, -1) @ basis).reshape(batch, 3, -1)  # (B, 3, V)
    return posed.transpose(1, 2).contiguous()
