"""The conventions every part of synthgen shares: units, joint order, layouts, cameras, crops.

One module so that a joint index, an intrinsics preset or the depth normalisation can never
disagree between the renderer, the Zarr writer, the models and the exporters.

* Units: millimetres, float32.
* Camera coordinates: x right, y down, z forward (away from the camera).
* Pixel coordinates: (u, v) continuous, OpenCV style: the centre of pixel column i is u = i,
  so u = fx * x / z + cx and v = fy * y / z + cy.
* Canonical skeleton: 21 joints in HANDS2017 / BigHand order (below).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SCHEMA_VERSION = 1
UNITS = "mm"

# --- canonical skeleton --------------------------------------------------------------------

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
_F = ("T", "I", "M", "R", "P")

#: HANDS2017 / BigHand order: wrist; the five MCPs; then PIP, DIP, TIP of each finger.
#: For the thumb, "MCP" is the carpometacarpal joint, "PIP" the anatomical MCP and "DIP" the IP.
JOINT_NAMES: tuple[str, ...] = (
    ("Wrist",)
    + tuple(f"{f}MCP" for f in _F)
    + tuple(f"{f}{j}" for f in _F for j in ("PIP", "DIP", "TIP"))
)
NUM_JOINTS = len(JOINT_NAMES)
WRIST = 0


def finger_chain(finger: int) -> tuple[int, int, int, int]:
    """Joint indices (MCP, PIP, DIP, TIP) of finger 0..4 (thumb..pinky)."""
    return (1 + finger, 6 + 3 * finger, 7 + 3 * finger, 8 + 3 * finger)


#: Parent of every joint (-1 for the wrist): the bones of the skeleton.
PARENTS: tuple[int, ...] = tuple(
    [-1, 0, 0, 0, 0, 0]
    + [p for f in range(5) for p in (finger_chain(f)[0], finger_chain(f)[1], finger_chain(f)[2])]
)
FINGERTIPS: tuple[int, ...] = tuple(finger_chain(f)[3] for f in range(5))

# --- other joint layouts -------------------------------------------------------------------


def _idx(*names: str) -> list[int]:
    return [JOINT_NAMES.index(n) for n in names]


@dataclass(frozen=True)
class JointLayout:
    """A dataset's joint order, as a function of the canonical 21 joints.

    ``exact`` layouts are a pure permutation. The others (NYU, ICVL) name points that the
    21-joint skeleton does not carry exactly (NYU's wrist sides and palm centre, ICVL's palm);
    they are the documented nearest anatomical equivalents, so conversions *to* them are
    well-defined and conversions *from* them are not offered.
    """

    name: str
    joint_names: tuple[str, ...]
    exact: bool
    #: Bones: parent of every joint (-1 for the root of the drawing), to draw a skeleton.
    parents: tuple[int, ...] = ()
    #: 0 for palm / wrist points, 1..5 for thumb..little: the colour of a joint in pictures.
    fingers: tuple[int, ...] = ()
    #: The joint whose offset from the crop centre Crossing Nets keeps separately (the
    #: released code's `centerPtIdx`: palm / wrist, NYU's palm centre).
    root: int = 0

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    def from_canonical(self, joints: np.ndarray) -> np.ndarray:
        """(..., 21, 3) canonical joints → (..., J, 3) in this layout (same coordinates)."""
        if self.name not in _CONVERTERS:
            raise ValueError(f"layout {self.name!r} has no conversion from the canonical 21 joints")
        return _CONVERTERS[self.name](np.asarray(joints))

    def to_canonical(self, joints: np.ndarray) -> np.ndarray:
        """(..., J, 3) → (..., 21, 3); only for exact layouts."""
        if not self.exact:
            raise ValueError(f"layout {self.name!r} does not determine all 21 canonical joints")
        inverse = np.argsort(_PERMUTATIONS[self.name])
        return np.asarray(joints)[..., inverse, :]


_MSRA_ORDER = _idx(
    "Wrist",
    "IMCP", "IPIP", "IDIP", "ITIP",
    "MMCP", "MPIP", "MDIP", "MTIP",
    "RMCP", "RPIP", "RDIP", "RTIP",
    "PMCP", "PPIP", "PDIP", "PTIP",
    "TMCP", "TPIP", "TDIP", "TTIP",
)  # fmt: skip
_ICVL_ORDER = _idx(
    "Wrist",
    "TMCP", "TPIP", "TTIP",
    "IMCP", "IPIP", "ITIP",
    "MMCP", "MPIP", "MTIP",
    "RMCP", "RPIP", "RTIP",
    "PMCP", "PPIP", "PTIP",
)  # fmt: skip
_PERMUTATIONS = {"hands2017": list(range(NUM_JOINTS)), "msra": _MSRA_ORDER}


def _nyu14(j: np.ndarray) -> np.ndarray:
    """NYU's 14 evaluated joints: P1 P2 R1 R2 M1 M2 I1 I2 T1 T2 T3 W1 W2 C.

    Tips and PIPs map directly; T2 = thumb IP, T3 = thumb MCP; W1/W2 are the ulnar/radial
    sides of the wrist, placed 40 % of the pinky-to-index MCP span from the wrist; C is
    the palm centre (mean of wrist and the four finger MCPs).
    """
    ids = _idx("PTIP", "PPIP", "RTIP", "RPIP", "MTIP", "MPIP", "ITIP", "IPIP", "TTIP", "TDIP", "TPIP")
    wrist = j[..., WRIST, :]
    span = j[..., JOINT_NAMES.index("IMCP"), :] - j[..., JOINT_NAMES.index("PMCP"), :]
    w1 = wrist - 0.2 * span
    w2 = wrist + 0.2 * span
    centre = j[..., _idx("Wrist", "IMCP", "MMCP", "RMCP", "PMCP"), :].mean(axis=-2)
    return np.concatenate([j[..., ids, :], w1[..., None, :], w2[..., None, :], centre[..., None, :]], axis=-2)


_CONVERTERS = {
    "hands2017": lambda j: j[..., _PERMUTATIONS["hands2017"], :],
    "msra": lambda j: j[..., _MSRA_ORDER, :],
    "icvl": lambda j: j[..., _ICVL_ORDER, :],
    "nyu": _nyu14,
}

#: NYU's 36 stored points (joint_data.mat order): per finger F1 (little) .. F4 (index), then
#: the thumb, tip (KNU3) to base (KNU1), each as A/B pairs; then six palm points.
NYU36_NAMES: tuple[str, ...] = tuple(
    f"{finger}_KNU{k}_{side}" for finger in ("F1", "F2", "F3", "F4", "TH") for k in (3, 2, 1) for side in "AB"
) + tuple(f"PALM_{i}" for i in range(1, 7))
#: Indices of NYU's 14 evaluated joints (layout "nyu") among its 36 stored points.
NYU_EVAL_JOINTS: tuple[int, ...] = (0, 3, 6, 9, 12, 15, 18, 21, 24, 25, 27, 30, 31, 32)
_NYU_PALM_CENTRE = 32  # PALM_3: the released Crossing Nets code's NYU root (centerPtIdx)


def _chains(chains: list[list[int]], num_joints: int, root: int) -> tuple[int, ...]:
    """Parents from finger chains listed base first; a chain's base hangs off `root`."""
    parents = [root] * num_joints
    parents[root] = -1
    for chain in chains:
        for parent, child in zip(chain, chain[1:]):
            parents[child] = parent
    return tuple(parents)


def _permuted_parents(order: list[int]) -> tuple[int, ...]:
    """Parents of an exact layout: the canonical bones, renumbered."""
    position = {canonical: i for i, canonical in enumerate(order)}
    return tuple(-1 if PARENTS[c] < 0 else position[PARENTS[c]] for c in order)


_CANONICAL_FINGERS = tuple(0 if j == WRIST else 1 + (j - 1 if j <= 5 else (j - 6) // 3) for j in range(NUM_JOINTS))

LAYOUTS: dict[str, JointLayout] = {
    "hands2017": JointLayout("hands2017", JOINT_NAMES, exact=True, parents=PARENTS, fingers=_CANONICAL_FINGERS),
    "msra": JointLayout("msra", tuple(JOINT_NAMES[i] for i in _MSRA_ORDER), exact=True,
                        parents=_permuted_parents(_MSRA_ORDER), fingers=tuple(_CANONICAL_FINGERS[i] for i in _MSRA_ORDER)),
    "icvl": JointLayout("icvl", ("Palm",) + tuple(JOINT_NAMES[i] for i in _ICVL_ORDER[1:]), exact=False,
                        parents=_chains([[0, 1 + 3 * f, 2 + 3 * f, 3 + 3 * f] for f in range(5)], 16, 0),
                        fingers=(0,) + tuple(1 + f for f in range(5) for _ in range(3))),
    "nyu": JointLayout(
        "nyu", ("P1", "P2", "R1", "R2", "M1", "M2", "I1", "I2", "T1", "T2", "T3", "W1", "W2", "C"), exact=False,
        parents=_chains([[13, 1, 0], [13, 3, 2], [13, 5, 4], [13, 7, 6], [13, 10, 9, 8]], 14, 13),
        fingers=(5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 1, 0, 0, 0), root=13,
    ),
    "nyu36": JointLayout(
        "nyu36", NYU36_NAMES, exact=False,
        parents=_chains([[_NYU_PALM_CENTRE] + list(range(6 * f + 5, 6 * f - 1, -1)) for f in range(5)], 36,
                        _NYU_PALM_CENTRE),
        fingers=tuple(f for f in (5, 4, 3, 2, 1) for _ in range(6)) + (0,) * 6, root=_NYU_PALM_CENTRE,
    ),
}


def msra_file_to_camera(xyz: np.ndarray) -> np.ndarray:
    """MSRA15's joint.txt stores y up and z negative; flip both into camera coordinates."""
    return np.asarray(xyz) * np.array([1.0, -1.0, -1.0], dtype=np.float32)


camera_to_msra_file = msra_file_to_camera  # the flip is its own inverse

# --- cameras -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, OpenCV convention (pixel centres at integers)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def to_dict(self) -> dict:
        return asdict(self)


CAMERAS: dict[str, Intrinsics] = {
    "nyu": Intrinsics(588.03, 587.07, 320.0, 240.0, 640, 480),
    "icvl": Intrinsics(241.42, 241.42, 160.0, 120.0, 320, 240),
    "msra": Intrinsics(241.42, 241.42, 160.0, 120.0, 320, 240),
    "hands2017": Intrinsics(475.066, 475.066, 315.945, 245.287, 640, 480),
}
DEFAULT_CAMERA = "hands2017"

# --- training crops ------------------------------------------------------------------------

CROP_SIZE = 128  # pixels, square
CUBE_MM = 250.0  # edge of the cube around the hand centre (Crossing Nets / V2V for HANDS2017)
BACKGROUND = 1.0  # normalised value of missing depth and of anything behind the cube

NORMALISATION = (
    "depth_norm = clip((depth_mm - center_z) / (cube_mm / 2), -1, 1); missing depth (0) and "
    "depth behind the cube -> +1; depth in front of the cube -> -1. The crop is the square "
    "[u_c - f*s, u_c + f*s] x [v_c - f*s, v_c + f*s], s = cube_mm / (2 * center_z), (u_c, v_c) "
    "the projection of center, resampled to crop_size^2 by nearest pixel centre; equivalently a "
    "pinhole camera with f_crop = crop_size * center_z / cube_mm and principal point "
    "(crop_size - 1) / 2 - f_crop * center_xy / center_z."
)

# --- input conventions: how a model's depth crops are cut and normalised -------------------

#: Depth normalisations a crop can be stored in or a model can read (name → definition).
DEPTH_CONVENTIONS: dict[str, str] = {
    "centre-relative": NORMALISATION,
    "front-aligned": (
        "Crossing Nets release (data/depth.py cropArea3D, data/util.py Frame.normDm, data/dataset.py frmToNp): "
        "inside the cube, s = max(depth_mm, center_z - cube_mm/2) - (center_z - cube_mm/2) + 10 mm "
        "(depth in front of the cube is clamped to its front face; depth behind it and missing depth are "
        "background); then depth_norm = 2 (s - s_near) / s_far - 1, s_near / s_far the nearest / farthest "
        "in-cube pixel of the crop: the nearest hand pixel is -1, pixels at s_far and the background +1. "
        "Relative: absolute depth in mm cannot be recovered from the crop."
    ),
}
#: Crop geometries (name → definition).
CROP_GEOMETRIES: dict[str, str] = {
    "pinhole": "a pinhole camera looking through the cube (see NORMALISATION): every crop pixel takes the frame "
               "pixel nearest to where its centre lands",
    "window": "Crossing Nets release / DeepPrior: the integer window [floor(u_c - f*r), floor(u_c + f*r)) x "
              "[floor(v_c - f_y*r), floor(v_c + f_y*r)), r = cube_mm / (2 * center_z), outside the frame no data, "
              "resized with OpenCV's INTER_NEAREST (source index floor(i * w / crop_size)) keeping its aspect, "
              "and pasted centred into the crop_size^2 image",
}
#: Centring rules (name → definition).
CENTERINGS: dict[str, str] = {
    "joint-box": "the centre of the labelled joints' bounding box (synthgen's renders and training crops)",
    "center-of-mass": "DeepPrior's refinement from the joints' bounding-box centre: the centre of mass (mean u, v, "
                      "depth) of the depth pixels inside the cube, unprojected, repeated until it moves < 0.5 mm",
    "capped-center-of-mass": "the center-of-mass refinement, its move from the joints' bounding-box centre capped "
                             "at CENTER_OF_MASS_CAP_MM (40 mm): a centre that would move farther stops on the way "
                             "(a forearm in the cube cannot pull the crop off the hand)",
    "given": "centres read from a file the field distributes (import --centers): the Crossing Nets release's "
             "center_uvd_*.mat, A2J's centre_pixel .mat, V2V-PoseNet's center_*_refined.txt",
}


#: How far "capped-center-of-mass" lets the refinement move the centre, mm.
CENTER_OF_MASS_CAP_MM = 40.0


@dataclass(frozen=True)
class InputConvention:
    """How a model's input crops are made: the depth normalisation, the crop geometry and the
    centring rule it was trained with. Stores record the convention of their depth; every
    command that feeds a store to a model checks (and where possible converts) it."""

    depth: str = "centre-relative"
    crop: str = "pinhole"
    centering: str = "joint-box"

    def __post_init__(self) -> None:
        for field_name, known in (("depth", DEPTH_CONVENTIONS), ("crop", CROP_GEOMETRIES), ("centering", CENTERINGS)):
            value = getattr(self, field_name)
            if value not in known:
                raise ValueError(f"unknown {field_name} convention {value!r} (known: {', '.join(known)})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> InputConvention:
        """From config.json / store attributes; absent (older files) → synthgen's own convention."""
        return cls(**(d or {}))

    @property
    def metric(self) -> bool:
        """Whether depth in mm can be recovered from a crop and its centre alone."""
        return self.depth == "centre-relative"

    def describe(self) -> str:
        return f"{self.depth} depth, {self.crop} crop, {self.centering} centring"


#: synthgen's own models and renders.
SYNTHGEN_INPUT = InputConvention()
#: The Crossing Nets release: NYU crops at the released centres, ICVL / MSRA at the detector's
#: centre of mass (approximated by DeepPrior's refinement when no centre file is given).
RELEASE_INPUT = {
    "nyu": InputConvention("front-aligned", "window", "given"),
    "icvl": InputConvention("front-aligned", "window", "center-of-mass"),
    "msra": InputConvention("front-aligned", "window", "center-of-mass"),
}
