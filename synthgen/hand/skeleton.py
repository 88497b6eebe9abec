"""The articulated right hand: rest geometry, degrees of freedom and their limits.

Hand frame (rest pose, scale 1, millimetres): origin at the wrist joint, +y distal (towards the
middle fingertip), +z dorsal (out of the back of the hand), +x = y × z, i.e. towards the
little finger for a right hand. At rest all angles are zero: a flat hand, fingers slightly
fanned, the thumb splayed and pronated as it is in a relaxed flat hand.

Sizes are those of an average adult hand (hand length 186 mm, breadth ~ 84 mm), following
published anthropometry of phalanx and metacarpal lengths; the prior varies them by a scale.
"""

from __future__ import annotations

import math

import numpy as np

from synthgen.conventions import FINGERS

# Palm: where each finger's first joint sits (thumb: the CMC joint), hand frame, mm.
MCP_POSITIONS = np.array(
    [
        [-19.0, 30.0, -9.0],  # thumb CMC
        [-25.0, 88.0, 0.0],  # index MCP
        [-5.0, 91.0, 0.0],  # middle MCP
        [13.5, 86.0, 0.0],  # ring MCP
        [30.0, 77.0, -2.0],  # little MCP
    ],
    dtype=np.float32,
)

# Bone lengths per finger: (first joint → second, second → third, third → tip), mm.
BONE_LENGTHS = np.array(
    [
        [44.0, 32.0, 27.0],  # thumb: metacarpal, proximal, distal (to the tip joint)
        [40.0, 24.0, 19.0],
        [44.0, 28.0, 20.0],
        [41.0, 27.0, 19.0],
        [33.0, 19.0, 17.0],
    ],
    dtype=np.float32,
)

# Finger radii at (first joint, second, third, tip), mm: what the mesh is built from. The tip
# joint sits inside the fingertip, `TIP_INSET` x the tip radius before the end of the finger,
# so the surface seen from any side lies a few mm in front of it.
RADII = np.array(
    [
        [13.0, 10.5, 9.5, 8.5],
        [10.0, 9.0, 8.0, 7.0],
        [10.5, 9.3, 8.3, 7.2],
        [10.0, 8.8, 7.9, 6.9],
        [9.0, 8.0, 7.2, 6.3],
    ],
    dtype=np.float32,
)
TIP_INSET = 0.6


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32)


def _rot_y(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float32)


def _rot_x(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float32)


# Rest orientation of each finger's first joint frame (columns: local x, y along the bone, z
# dorsal). Fingers fan out around +z; the thumb points radially and is pronated about its own
# axis so that its flexion curls it across the palm.
REST_ROTATIONS = np.stack(
    [
        _rot_z(42.0) @ _rot_x(-12.0) @ _rot_y(-65.0),
        _rot_z(7.0),
        _rot_z(0.0),
        _rot_z(-8.0),
        _rot_z(-17.0),
    ]
).astype(np.float32)

# --- degrees of freedom --------------------------------------------------------------------
# 4 per finger: thumb (CMC flexion, CMC abduction, MCP flexion, IP flexion); other fingers
# (MCP flexion, MCP abduction, PIP flexion, DIP flexion). Flexion curls towards the palm;
# abduction is positive towards the thumb side (for the thumb: palmar abduction).
ANGLE_NAMES: tuple[str, ...] = tuple(
    f"{finger}_{dof}"
    for finger, dofs in zip(
        FINGERS,
        [("cmc_flex", "cmc_abd", "mcp_flex", "ip_flex")] + [("mcp_flex", "mcp_abd", "pip_flex", "dip_flex")] * 4,
    )
    for dof in dofs
)
NUM_ANGLES = len(ANGLE_NAMES)

_LIMITS_DEG = np.array(
    [
        # thumb: cmc_flex, cmc_abd, mcp_flex, ip_flex
        [-20.0, 55.0], [-15.0, 50.0], [-10.0, 65.0], [-15.0, 85.0],
        # index: mcp_flex, mcp_abd, pip_flex, dip_flex
        [-25.0, 90.0], [-15.0, 18.0], [0.0, 110.0], [0.0, 80.0],
        # middle
        [-25.0, 90.0], [-12.0, 12.0], [0.0, 110.0], [0.0, 80.0],
        # ring
        [-25.0, 90.0], [-15.0, 12.0], [0.0, 110.0], [0.0, 80.0],
        # little
        [-25.0, 90.0], [-20.0, 12.0], [0.0, 110.0], [0.0, 80.0],
    ],
    dtype=np.float32,
)  # fmt: skip
ANGLE_LIMITS = np.radians(_LIMITS_DEG).astype(np.float32)  # (20, 2) radians, [lower, upper]
