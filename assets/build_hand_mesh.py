"""Rebuild synthgen/assets/hand_mesh.npz, the rest-pose right-hand mesh and its skinning weights.

Run from anywhere: `python assets/build_hand_mesh.py`. The output depends only on
synthgen/hand/skeleton.py, so a change of the skeleton is followed by a rebuild, never by an
edit of the asset.

The hand is an implicit surface, not a union of loose primitives, so that it is one smooth,
watertight skin: tapered capsules per phalanx, a pillow-shaped palm with a thenar bulge and a
short forearm stub. Each finger is blended into the palm with a smooth minimum, but fingers are
joined to each other by a hard minimum, so no webbing grows between them. The signed distance
field is sampled on a grid and meshed with marching cubes.

Skinning: each vertex belongs to the part whose field dominates there (the body or one finger),
so neighbouring fingers never share weights; weights then blend along that finger's chain with a
smoothstep around each joint, and body vertices close to a finger (the knuckles, the thenar
region at the thumb's CMC joint) blend into that finger's first bone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh
from skimage.measure import marching_cubes

# The script is run as a file, so the repository root is not on sys.path by itself.
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from synthgen.conventions import WRIST, finger_chain  # noqa: E402
from synthgen.hand import skeleton  # noqa: E402
from synthgen.hand.kinematics import HandPose, forward_kinematics  # noqa: E402

ASSET_VERSION = 1
OUTPUT = REPO_ROOT / "synthgen" / "assets" / "hand_mesh.npz"

VOXEL_MM = 2.7  # grid step: gives ~18k faces, enough for a 128² crop, cheap to render
TAUBIN_ITERATIONS = 10  # removes marching-cubes facets without shrinking thin fingers

# Palm: a convex outline in the hand's xy plane (wrist sides, hypothenar, the four finger
# MCPs, radial side), extruded and rounded into a pillow ~28 mm thick. It reaches past the
# wrist so that it is defined all through the wrist morph below.
PALM_OUTLINE = np.array(
    [
        [-25.0, -20.0], [25.0, -20.0],  # wrist, radial and ulnar
        [35.0, 40.0],  # hypothenar
        [31.0, 77.0], [13.5, 86.0], [-5.0, 91.0], [-25.0, 88.0],  # little .. index MCP
        [-29.0, 55.0],  # radial side, below the index
    ]
)  # fmt: skip
PALM_CENTER_Z = -5.0  # the palm's mid-plane lies palmar of the knuckle centres (z = 0)
PALM_HALF_THICKNESS = 14.0
PALM_ROUNDING = 11.0  # edge radius of the pillow
PALM_ARCH = 3.0 / 30.0**2  # metacarpal arch: the palm's sides sink 3 mm at 30 mm from its middle
PALM_ARCH_CENTER_X = 2.0

# Thenar eminence: the muscle bulge on the palmar side between wrist and thumb.
THENAR_ENDS = np.array([[-8.0, 14.0, -13.0], [-28.0, 46.0, -15.0]])
THENAR_RADII = (11.0, 10.0)

# Forearm stub: 60 mm beyond the wrist, a wrist ~56 x 31 mm, so crops show the arm entering
# the cube as real captures do.
FOREARM_Y = (-60.0, 15.0)
FOREARM_CENTER_Z = -6.0
FOREARM_SEMI_AXES = (28.0, 15.5)  # x (across the wrist), z (palm to back)
FOREARM_END_ROUNDING = 4.0
# Across the wrist the field morphs from forearm to palm: a union of two nearly coincident
# surfaces would bulge where they overlap.
WRIST_MORPH_Y = (-15.0, 10.0)

# Smooth-minimum radii, mm.
BLEND_BODY = 10.0  # the thenar bulge flows into the palm
BLEND_FINGER_PALM = 5.0  # knuckles: a small natural web, no webbing between fingers
BLEND_THUMB_PALM = 10.0  # the thumb web is broad
BLEND_PHALANGES = 2.0  # hides creases where a finger's capsules meet

# Skinning.
BODY_TO_FINGER_FALLOFF = 8.0  # mm: body vertices within this margin of a finger follow it


# --- signed distance functions (negative inside), points (N, 3) -> (N,) ---------------------


def smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: a fillet of radius ~k where two surfaces meet."""
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * k / 4.0


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def round_cone(p: np.ndarray, a: np.ndarray, b: np.ndarray, ra: float, rb: float) -> np.ndarray:
    """Exact distance to a tapered capsule (spheres of radii ra at a, rb at b, tangent cone)."""
    ba = b - a
    l2 = ba @ ba
    rr = ra - rb
    a2 = l2 - rr * rr
    pa = p - a
    y = pa @ ba
    z = y - l2
    x2 = np.sum((pa * l2 - y[:, None] * ba) ** 2, axis=1)
    y2 = y * y * l2
    z2 = z * z * l2
    k = np.sign(rr) * rr * rr * x2
    near_b = np.sign(z) * a2 * z2 > k
    near_a = np.sign(y) * a2 * y2 < k
    side = (np.sqrt(np.clip(x2 * a2 / l2, 0.0, None)) + y * rr) / l2 - ra
    return np.where(near_b, np.sqrt(x2 + z2) / l2 - rb, np.where(near_a, np.sqrt(x2 + y2) / l2 - ra, side))


def convex_polygon_2d(q: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Exact 2D distance to a convex counter-clockwise polygon, q (N, 2)."""
    starts, ends = outline, np.roll(outline, -1, axis=0)
    edge = ends - starts  # (E, 2)
    rel = q[:, None, :] - starts[None]  # (N, E, 2)
    t = np.clip(np.sum(rel * edge, axis=2) / np.sum(edge * edge, axis=1), 0.0, 1.0)
    dist = np.linalg.norm(rel - t[..., None] * edge, axis=2).min(axis=1)
    outside = np.any(edge[None, :, 0] * rel[..., 1] - edge[None, :, 1] * rel[..., 0] < 0, axis=1)
    return np.where(outside, dist, -dist)


def palm(p: np.ndarray) -> np.ndarray:
    inset = convex_polygon_2d(p[:, :2], PALM_OUTLINE) + PALM_ROUNDING
    arch = PALM_ARCH * (p[:, 0] - PALM_ARCH_CENTER_X) ** 2
    height = np.abs(p[:, 2] + arch - PALM_CENTER_Z) - (PALM_HALF_THICKNESS - PALM_ROUNDING)
    q = np.stack([inset, height], axis=1)
    return np.linalg.norm(np.clip(q, 0.0, None), axis=1) + np.minimum(q.max(axis=1), 0.0) - PALM_ROUNDING


def forearm(p: np.ndarray) -> np.ndarray:
    """Elliptic cylinder along y, closed with a rounded flat end at the proximal cut."""
    semi = np.array(FOREARM_SEMI_AXES) - FOREARM_END_ROUNDING
    xz = np.stack([p[:, 0], p[:, 2] - FOREARM_CENTER_Z], axis=1) / semi
    k0 = np.linalg.norm(xz, axis=1)
    k1 = np.linalg.norm(xz / semi, axis=1)
    ellipse = k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)  # close to exact for a mild ellipse
    half_length = (FOREARM_Y[1] - FOREARM_Y[0]) / 2 - FOREARM_END_ROUNDING
    along = np.abs(p[:, 1] - (FOREARM_Y[0] + FOREARM_Y[1]) / 2) - half_length
    q = np.stack([ellipse, along], axis=1)
    return np.linalg.norm(np.clip(q, 0.0, None), axis=1) + np.minimum(q.max(axis=1), 0.0) - FOREARM_END_ROUNDING


def body(p: np.ndarray) -> np.ndarray:
    """Palm, thenar bulge and forearm: everything the wrist joint carries."""
    to_palm = smoothstep(p[:, 1], *WRIST_MORPH_Y)
    arm_and_palm = (1.0 - to_palm) * forearm(p) + to_palm * palm(p)
    thenar = round_cone(p, THENAR_ENDS[0], THENAR_ENDS[1], *THENAR_RADII)
    return smooth_min(arm_and_palm, thenar, BLEND_BODY)


class FingerGeometry:
    """A straight rest-pose finger: its joints, axis and the capsule of each phalanx."""

    def __init__(self, finger: int, rest_joints: np.ndarray):
        self.joints = finger_chain(finger)
        self.points = rest_joints[list(self.joints)].astype(np.float64)  # (4, 3): first joint .. TIP
        self.radii = skeleton.RADII[finger].astype(np.float64)
        self.axis = self.points[3] - self.points[0]
        self.axis /= np.linalg.norm(self.axis)
        # The last capsule's end sphere reaches TIP_INSET x tip radius beyond the TIP joint.
        tip_end = self.points[3] - (1.0 - skeleton.TIP_INSET) * self.radii[3] * self.axis
        self.capsule_ends = [self.points[0], self.points[1], self.points[2], tip_end]
        self.joint_offsets = (self.points[:3] - self.points[0]) @ self.axis  # along the axis
        self.blend = BLEND_THUMB_PALM if finger == 0 else BLEND_FINGER_PALM

    def distance(self, p: np.ndarray) -> np.ndarray:
        d = round_cone(p, self.capsule_ends[0], self.capsule_ends[1], self.radii[0], self.radii[1])
        for i in (1, 2):
            phalanx = round_cone(p, self.capsule_ends[i], self.capsule_ends[i + 1], self.radii[i], self.radii[i + 1])
            d = smooth_min(d, phalanx, BLEND_PHALANGES)
        return d


def hand_sdf(p: np.ndarray, fingers: list[FingerGeometry]) -> np.ndarray:
    """Each finger blends smoothly into the body; fingers meet each other with a hard min."""
    d_body = body(p)
    return np.min([smooth_min(d_body, f.distance(p), f.blend) for f in fingers], axis=0)


# --- mesh -----------------------------------------------------------------------------------


def build_surface(fingers: list[FingerGeometry]) -> trimesh.Trimesh:
    lo = np.array([-105.0, FOREARM_Y[0] - 3 * VOXEL_MM, -50.0])
    hi = np.array([65.0, 200.0, 30.0])
    axes = [np.arange(a, b + VOXEL_MM, VOXEL_MM) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    sdf = hand_sdf(grid.reshape(-1, 3), fingers).reshape(grid.shape[:3])
    if (sdf[[0, -1]] <= 0).any() or (sdf[:, [0, -1]] <= 0).any() or (sdf[:, :, [0, -1]] <= 0).any():
        raise RuntimeError("the hand touches the sampling box: enlarge it")
    # skimage's "descent" orientation is the one whose faces wind counter-clockwise seen from
    # outside for a field that grows outwards (checked below through the sign of the volume).
    verts, faces, _, _ = marching_cubes(sdf, level=0.0, spacing=(VOXEL_MM,) * 3, gradient_direction="descent")
    mesh = trimesh.Trimesh(verts + lo, faces, process=True)
    mesh.update_faces(mesh.nondegenerate_faces())
    mesh.remove_unreferenced_vertices()
    trimesh.smoothing.filter_taubin(mesh, iterations=TAUBIN_ITERATIONS)
    return mesh


def skinning_weights(vertices: np.ndarray, fingers: list[FingerGeometry]) -> tuple[np.ndarray, np.ndarray]:
    """(V, 4) joint indices and weights, largest weight first.

    The four slots are the wrist and the three bones of the finger nearest to the vertex; a
    finger's TIP joint carries no bone, so it never appears.
    """
    d_body = body(vertices)
    d_fingers = np.stack([f.distance(vertices) for f in fingers], axis=1)  # (V, 5)
    nearest = d_fingers.argmin(axis=1)
    d_nearest = d_fingers[np.arange(len(vertices)), nearest]
    # 1 on the finger itself and at the body/finger seam, fading to 0 deeper into the body.
    finger_share = np.where(d_nearest <= d_body, 1.0, 1.0 - smoothstep(d_nearest - d_body, 0.0, BODY_TO_FINGER_FALLOFF))

    joints = np.zeros((len(vertices), 4), dtype=np.int32)
    weights = np.zeros((len(vertices), 4), dtype=np.float64)
    for f_index, f in enumerate(fingers):
        rows = nearest == f_index
        s = (vertices[rows] - f.points[0]) @ f.axis
        # Fraction of the vertex carried by bone k or a later one: rises across joint k.
        beyond = [smoothstep(s, off - r, off + r) for off, r in zip(f.joint_offsets, f.radii[:3])]
        beyond = [finger_share[rows] * b for b in beyond] + [np.zeros_like(s)]
        joints[rows] = (WRIST, *f.joints[:3])
        weights[rows, 0] = 1.0 - beyond[0]
        for k in range(3):
            weights[rows, k + 1] = beyond[k] - beyond[k + 1]

    order = np.argsort(-weights, axis=1, kind="stable")
    joints = np.take_along_axis(joints, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    weights /= weights.sum(axis=1, keepdims=True)
    return joints, weights.astype(np.float32)


def main() -> None:
    rest_joints = forward_kinematics(HandPose.rest(1))[0][0].double().numpy()
    fingers = [FingerGeometry(f, rest_joints) for f in range(5)]
    mesh = build_surface(fingers)
    if not (mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0 and mesh.body_count == 1):
        raise RuntimeError("the hand surface is not one closed, outward-facing shell")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    skin_joints, skin_weights = skinning_weights(vertices, fingers)
    np.savez(
        OUTPUT,
        version=np.int32(ASSET_VERSION),
        vertices=vertices.astype(np.float32),
        faces=np.asarray(mesh.faces, dtype=np.int32),
        skin_joints=skin_joints,
        skin_weights=skin_weights,
    )
    print(f"{OUTPUT}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, {OUTPUT.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
