"""Poses → latents: read user poses (npy, csv, store), check them, and encode them.

Accepted inputs (`load_poses`):

* ``.npy``: (N, J, 3) or (N, 3J) float mm, or one pose (J, 3); memory-mapped, not loaded whole;
* ``.csv``: N rows of 3J numbers (x, y, z per joint), comma-separated, ``#`` comments allowed;
* a synthgen store (``path.zarr``): its `pose` array (already canonical).

J is the layout's joint count. Only layouts that are permutations of the canonical 21 joints
(hands2017 = canonical, msra) can be converted; nyu and icvl name points the 21-joint skeleton
does not determine, so they are refused. Every refusal is an InputError with one line that
names the file and the problem, raised before anything is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthgen.conventions import LAYOUTS, NUM_JOINTS
from synthgen.errors import InputError

#: A real hand spans 100..250 mm; a pose whose extent is below this is in other units.
MIN_HAND_EXTENT_MM = 20.0
_CHECK_ROWS = 65536  # rows checked per pass over a memory-mapped file


def check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise InputError(f"unknown joint layout {layout!r} (known: {', '.join(LAYOUTS)})")
    if not LAYOUTS[layout].exact:
        raise InputError(f"layout {layout!r} cannot be converted: its {LAYOUTS[layout].num_joints} joints do not "
                         f"determine synthgen's 21 canonical joints (use hands2017 or msra poses)")


def is_store(path: Path) -> bool:
    return path.suffix == ".zarr" or (path / "zarr.json").is_file()


def load_poses(path: str | Path, layout: str = "hands2017") -> np.ndarray:
    """(N, 21, 3) float32 canonical joints in mm (possibly a read-only memory map), validated."""
    path = Path(path)
    check_layout(layout)
    if is_store(path):
        if layout != "hands2017":
            raise InputError(f"{path}: a synthgen store holds canonical joints; --layout {layout} does not apply")
        from synthgen.data.reader import open_store

        raw = open_store(path).pose[:]
    elif not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    elif path.suffix.lower() == ".npy":
        raw = _read_npy(path)
    elif path.suffix.lower() == ".csv":
        raw = _read_csv(path)
    else:
        raise InputError(f"{path}: unsupported pose file (expected .npy, .csv or a .zarr store)")
    joints = _shape_joints(raw, LAYOUTS[layout].num_joints, path)
    _check_values(joints, path)
    if layout != "hands2017":
        joints = LAYOUTS[layout].to_canonical(joints)
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


def _check_values(joints: np.ndarray, path: Path) -> None:
    """Finite, in front of the camera, in mm — checked in blocks so a memory map stays one."""
    for start in range(0, len(joints), _CHECK_ROWS):
        block = np.asarray(joints[start:start + _CHECK_ROWS], dtype=np.float64)
        finite = np.isfinite(block).all(axis=(1, 2))
        if not finite.all():
            row = start + int(np.argmin(finite))
            raise InputError(f"{path}: pose {row} holds NaN or inf")
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


def as_canonical(joints: np.ndarray) -> np.ndarray:
    """Float32 copy of (n, 21, 3) joints (from a memory map or a float64 array)."""
    joints = np.asarray(joints, dtype=np.float32)
    if joints.shape[1:] != (NUM_JOINTS, 3):
        raise InputError(f"joints must be (n, {NUM_JOINTS}, 3), got {joints.shape}")
    return joints


def encode_poses(pipeline, joints: np.ndarray, centers: np.ndarray | None = None):
    """Joints (n, 21, 3) mm → (codes (n, 23) [VAE mean latent, root offset], centres (n, 3)).

    Centres default to hand_center(joints), the rule every pose-conditioned sample uses.
    """
    from synthgen.hand.camera import hand_center

    joints = as_canonical(joints)
    centers = hand_center(joints) if centers is None else np.asarray(centers, np.float32)
    return pipeline.encode(joints, centers), centers
