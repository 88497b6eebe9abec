"""Poses → latents: read user poses (npy, csv, store), check them, and encode them.

Accepted inputs (`load_poses`):

* ``.npy``: (N, J, 3) or (N, 3J) float mm, or one pose (J, 3); memory-mapped, not loaded whole;
* ``.csv``: N rows of 3J numbers (x, y, z per joint), comma-separated, ``#`` comments allowed;
* a synthgen store (``path.zarr``): its `pose` array (in the store's joint layout).

J is the layout's joint count. A canonical (21-joint) model takes layouts that are permutations
of the canonical joints (hands2017 = canonical, msra); nyu and icvl name points the 21-joint
skeleton does not determine, so they are refused. A model with its own skeleton (a converted
ICVL or NYU model) takes poses in exactly its layout. Every refusal is an InputError with one
line that names the file and the problem, raised before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthgen.conventions import LAYOUTS
from synthgen.errors import InputError

#: A real hand spans 100..250 mm; a pose whose extent is below this is in other units.
MIN_HAND_EXTENT_MM = 20.0
_CHECK_ROWS = 65536  # rows checked per pass over a memory-mapped file
#: A pose bending this many joints this far past their limits is no hand (`_check_joint_angles`).
ANGLE_TOLERANCE_DEG = 60.0
MIN_JOINTS_PAST_LIMIT = 3


def check_layout(layout: str, model_layout: str = "hands2017") -> None:
    """Refuse a pose-file layout that cannot be turned into the model's layout."""
    if layout not in LAYOUTS:
        raise InputError(f"unknown joint layout {layout!r} (known: {', '.join(LAYOUTS)})")
    if model_layout != "hands2017":
        if layout != model_layout:
            raise InputError(f"{layout}: this model's poses are {model_layout} joints; give poses in that layout",
                             option="layout")
    elif not LAYOUTS[layout].exact:
        raise InputError(f"layout {layout!r} cannot be converted: its {LAYOUTS[layout].num_joints} joints do not "
                         f"determine synthgen's 21 canonical joints (use hands2017 or msra poses)")


def is_store(path: Path) -> bool:
    return path.suffix == ".zarr" or (path / "zarr.json").is_file()


def load_poses(path: str | Path, layout: str = "hands2017", model_layout: str = "hands2017") -> np.ndarray:
    """(N, J, 3) float32 joints in mm in `model_layout` (possibly a read-only memory map), validated."""
    path = Path(path)
    if is_store(path):
        from synthgen.data.reader import open_store

        store = open_store(path)
        if layout not in ("hands2017", store.joint_layout):  # the store names its own layout
            raise InputError(f"{layout} does not apply: the store {path} says its joints are {store.joint_layout}",
                             option="layout")
        if store.joint_layout != model_layout:
            raise InputError(f"{path}: the store holds {store.joint_layout} joints, the model takes {model_layout}")
        joints = store.read_array("pose")
        _check_values(joints, path)
        return joints
    check_layout(layout, model_layout)
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    elif path.suffix.lower() == ".npy":
        raw = _read_npy(path)
    elif path.suffix.lower() == ".csv":
        raw = _read_csv(path)
    else:
        raise InputError(f"{path}: unsupported pose file (expected .npy, .csv or a .zarr store)")
    joints = _shape_joints(raw, LAYOUTS[layout].num_joints, path)
    _check_values(joints, path)
    if layout != model_layout:
        joints = LAYOUTS[layout].to_canonical(joints)
    if model_layout == "hands2017":
        _check_joint_angles(joints, path)
    return joints


def _read_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:  # object arrays, bad headers
        raise InputError(f"{path}: not a numeric .npy array ({error})") from None
    except (OSError, EOFError) as error:
        raise InputError(f"{path}: unreadable .npy file ({error})") from None
    if not isinstance(array, np.ndarray):
        raise InputError(f"{path}: expected one array, got an archive")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise InputError(f"{path}: expected numbers, got dtype {array.dtype}")
    return array


def _read_csv(path: Path) -> np.ndarray:
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, no poses")
    try:
        array = np.loadtxt(path, delimiter=",", comments="#", dtype=np.float64, ndmin=2)
    except ValueError as error:
        first = str(error).splitlines()[0]
        raise InputError(f"{path}: not a CSV of numbers ({first})") from None
    return array


def _shape_joints(raw: np.ndarray, num_joints: int, path: Path) -> np.ndarray:
    want = f"(N, {num_joints}, 3), (N, {3 * num_joints}) or ({num_joints}, 3)"
    if raw.ndim == 2 and raw.shape == (num_joints, 3):
        raw = raw[None]
    elif raw.ndim == 2 and raw.shape[1] == 3 * num_joints:
        raw = raw.reshape(len(raw), num_joints, 3)
    elif raw.ndim == 2 and raw.shape[0] == 0:
        raise InputError(f"{path}: empty, no poses")
    if raw.ndim != 3 or raw.shape[1:] != (num_joints, 3):
        raise InputError(f"{path}: poses must be {want} mm, got shape {tuple(raw.shape)}")
    if len(raw) == 0:
        raise InputError(f"{path}: empty, no poses")
    return raw


#: Farther than this from the camera a coordinate is not a hand in mm (and float32 would overflow).
MAX_COORDINATE_MM = 1e6


def _check_values(joints: np.ndarray, path: Path) -> None:
    """Finite, in front of the camera, in mm — checked in blocks so a memory map stays one."""
    for start in range(0, len(joints), _CHECK_ROWS):
        block = np.asarray(joints[start:start + _CHECK_ROWS], dtype=np.float64)
        finite = np.isfinite(block).all(axis=(1, 2))
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise InputError(f"{path}: pose {row} holds NaN or inf")
        reach = np.abs(block).max(axis=(1, 2))
        if reach.max() > MAX_COORDINATE_MM:
            row = start + int(np.argmax(reach))
            raise InputError(f"{path}: pose {row} has a coordinate of {reach.max():.3g} mm; poses must be mm in "
                             f"camera coordinates, within {MAX_COORDINATE_MM:.0e} mm of the camera")
        centre_z = (block[..., 2].min(axis=1) + block[..., 2].max(axis=1)) / 2
        if centre_z.min() <= 0:
            row = start + int(np.argmin(centre_z))
            raise InputError(f"{path}: pose {row} lies behind the camera (centre z = {centre_z.min():.3g}); "
                             f"poses must be mm in camera coordinates, z forward")
        extent = (block.max(axis=1) - block.min(axis=1)).max(axis=1)
        if extent.min() < MIN_HAND_EXTENT_MM:
            row = start + int(np.argmin(extent))
            raise InputError(f"{path}: pose {row} spans only {extent.min():.3g} units; poses must be in mm "
                             f"(a hand spans 100-250 mm)")


def _check_joint_angles(joints: np.ndarray, path: Path) -> None:
    """Refuse a pose no hand can take: a wrong joint order (--layout) or not a hand at all.

    A pose is refused when at least MIN_JOINTS_PAST_LIMIT of its 15 flexions (read off the
    positions, `ik.flexion_angles`) lie more than ANGLE_TOLERANCE_DEG past their anatomical
    limits. Measured on 50k prior hands with Gaussian joint noise, that refuses 0 hands at
    3 mm noise and 2e-5 at 4 mm, but 86-100 % of hands given in MSRA order as hands2017 (or the
    reverse) or with reversed finger chains (noise of a few mm swings a 20 mm distal bone by
    tens of degrees, hence the wide tolerance). Poses from a synthgen store are not checked:
    synthgen wrote them.
    """
    from synthgen.hand.ik import FLEXION_DOFS, limit_excess_deg
    from synthgen.hand.skeleton import ANGLE_NAMES

    for start in range(0, len(joints), _CHECK_ROWS):
        excess = limit_excess_deg(np.asarray(joints[start:start + _CHECK_ROWS], dtype=np.float64))
        past = excess > ANGLE_TOLERANCE_DEG
        bad = past.sum(axis=1) >= MIN_JOINTS_PAST_LIMIT
        if bad.any():
            row = int(np.argmax(bad))
            worst = ", ".join(f"{ANGLE_NAMES[FLEXION_DOFS[k]]} +{excess[row, k]:.0f}°" for k in np.flatnonzero(past[row]))
            raise InputError(f"{path}: pose {start + row} bends {int(past[row].sum())} joints more than "
                             f"{ANGLE_TOLERANCE_DEG:.0f}° past their limits ({worst}); a wrong joint layout, or not a hand?")


def as_model_joints(joints: np.ndarray, num_joints: int) -> np.ndarray:
    """Float32 copy of (n, J, 3) joints (from a memory map or a float64 array), J the model's."""
    joints = np.asarray(joints, dtype=np.float32)
    if joints.shape[1:] != (num_joints, 3):
        raise InputError(f"joints must be (n, {num_joints}, 3), got {joints.shape}")
    return joints


def encode_poses(pipeline, joints: np.ndarray, centers: np.ndarray | None = None):
    """Joints (n, J, 3) mm → (codes (n, 23) [VAE mean latent, root offset], centres (n, 3)).

    Centres default to hand_center(joints), the rule every pose-conditioned sample uses.
    """
    from synthgen.hand.camera import hand_center

    joints = as_model_joints(joints, pipeline.model.config.vae.num_joints)
    centers = hand_center(joints) if centers is None else np.asarray(centers, np.float32)
    return pipeline.encode(joints, centers), centers
