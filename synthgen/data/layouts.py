"""Joints from the layout a store holds into the layout a trainer or a dataset's files want.

A store's poses are in its `joint_layout` (conventions.LAYOUTS): the canonical 21 joints for
synthetic stores, a benchmark's own points for imported ones. What can be converted:

* the same layout: unchanged;
* from an exact layout (hands2017, msra: permutations of the canonical 21) to any layout;
* from NYU's 36 points ("nyu36") to NYU's 14 evaluated ones ("nyu"): conventions.NYU_EVAL_JOINTS.

NYU's files hold 36 points, but the canonical skeleton determines only the 14 that NYU
evaluates (layout "nyu", itself partly approximate: W1, W2, C). `nyu36_from_canonical` fills the
other 22 with the nearest anatomical equivalents, so NYU loaders (which need all 36 finite)
read them; NYU trainers use only the 14 evaluated points.
"""

from __future__ import annotations

import numpy as np

from synthgen.conventions import JOINT_NAMES, LAYOUTS, NYU36_NAMES, NYU_EVAL_JOINTS
from synthgen.errors import InputError

#: Share of a bone from its distal joint back to its base at which a NYU "A" point (the neck
#: of that bone) is placed: the neck lies just below the bone's head.
NECK = 0.2
_NYU_FINGERS = {"F1": "P", "F2": "R", "F3": "M", "F4": "I", "TH": "T"}


def _nyu36_rule() -> dict[str, dict[str, float]]:
    """Each of NYU's 36 points as weights of canonical joints (or of NYU-14 points W1, W2, C).

    Per finger (thumb: CMC, MCP, IP in the canonical MCP, PIP, DIP slots), tip to base:
    KNU3_A = TIP, KNU3_B = DIP, KNU2_A = neck of the middle phalanx, KNU2_B = PIP,
    KNU1_A = neck of the proximal phalanx, KNU1_B = MCP. Palm: PALM_1..3 = NYU-14's W1, W2, C
    (the evaluated points); PALM_4 = halfway between the little-finger MCP and W1 (ulnar palm),
    PALM_5 = C, PALM_6 = the wrist.
    """
    rule: dict[str, dict[str, float]] = {}
    for nyu, f in _NYU_FINGERS.items():
        rule |= {
            f"{nyu}_KNU3_A": {f"{f}TIP": 1.0}, f"{nyu}_KNU3_B": {f"{f}DIP": 1.0},
            f"{nyu}_KNU2_A": {f"{f}DIP": 1 - NECK, f"{f}PIP": NECK}, f"{nyu}_KNU2_B": {f"{f}PIP": 1.0},
            f"{nyu}_KNU1_A": {f"{f}PIP": 1 - NECK, f"{f}MCP": NECK}, f"{nyu}_KNU1_B": {f"{f}MCP": 1.0},
        }
    rule |= {"PALM_1": {"W1": 1.0}, "PALM_2": {"W2": 1.0}, "PALM_3": {"C": 1.0},
             "PALM_4": {"PMCP": 0.5, "W1": 0.5}, "PALM_5": {"C": 1.0}, "PALM_6": {"Wrist": 1.0}}
    return rule


def _nyu36_weights() -> np.ndarray:
    """(36, 21 + 14) weights over [canonical joints, NYU-14 points]."""
    sources = list(JOINT_NAMES) + list(LAYOUTS["nyu"].joint_names)
    weights = np.zeros((len(NYU36_NAMES), len(sources)))
    for row, name in enumerate(NYU36_NAMES):
        for source, weight in _nyu36_rule()[name].items():
            weights[row, sources.index(source)] = weight
    return weights


_NYU36_WEIGHTS = _nyu36_weights()


def nyu36_from_canonical(joints: np.ndarray) -> np.ndarray:
    """(..., 21, 3) canonical joints → (..., 36, 3) NYU points (see `_nyu36_rule`)."""
    joints = np.asarray(joints, np.float64)
    both = np.concatenate([joints, LAYOUTS["nyu"].from_canonical(joints)], axis=-2)
    return np.einsum("pj,...jc->...pc", _NYU36_WEIGHTS, both)


def converter(source: str, target: str):
    """A function (..., J_source, 3) → (..., J_target, 3); InputError when there is none."""
    for name in (source, target):
        if name not in LAYOUTS:
            raise InputError(f"unknown joint layout {name!r} (known: {', '.join(LAYOUTS)})")
    if source == target:
        return lambda joints: np.asarray(joints)
    if source == "nyu36" and target == "nyu":
        return lambda joints: np.asarray(joints)[..., list(NYU_EVAL_JOINTS), :]
    if LAYOUTS[source].exact:
        to_target = nyu36_from_canonical if target == "nyu36" else LAYOUTS[target].from_canonical
        return lambda joints: to_target(LAYOUTS[source].to_canonical(joints))
    raise InputError(f"joints stored in layout {source!r} cannot be converted to {target!r}")
