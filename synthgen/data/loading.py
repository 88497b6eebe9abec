"""Whole stores into memory, for training, and a digest that names exactly which data it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from synthgen.data.reader import open_store
from synthgen.errors import InputError


def store_digest(path: str | Path) -> str:
    """sha256 over every file of a store (relative path + bytes), in a fixed order.

    Hashes the compressed chunks on disk, so it costs one read of the store (~1 s per GB) and
    changes whenever any sample or attribute does.
    """
    root = Path(path)
    h = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(root)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def load_arrays(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Concatenate the depth (kept float16: half the memory), pose and center of several stores.

    Returns (depth (N, S, S) float16, pose (N, J, 3) float32, center (N, 3) float32, digest), the
    digest combining the stores' digests in order. Stores must share crop size, cube, joint
    layout (`HandStore.joint_layout`) and input convention (`HandStore.input_convention`).
    """
    stores = [open_store(p) for p in paths]
    layouts = {(s.metadata.crop_size, s.metadata.cube_mm) for s in stores}
    if len(layouts) > 1:
        raise InputError(f"stores differ in crop size / cube: {sorted(layouts)}")
    joint_layouts = sorted({s.joint_layout for s in stores})
    if len(joint_layouts) > 1:
        raise InputError(f"stores differ in joint layout: {joint_layouts}")
    conventions = sorted({s.input_convention.describe() for s in stores})
    if len(conventions) > 1:
        raise InputError(f"stores differ in input convention (how their crops were cut and normalised): {conventions}")
    # read_array: damaged chunks and NaN / out-of-range values are refused here, not trained on.
    depth = np.concatenate([s.read_array("depth").astype(np.float16, copy=False) for s in stores])
    pose = np.concatenate([s.read_array("pose") for s in stores]).astype(np.float32, copy=False)
    center = np.concatenate([s.read_array("center") for s in stores]).astype(np.float32, copy=False)
    digest = hashlib.sha256("".join(store_digest(p) for p in paths).encode()).hexdigest()
    return depth, pose, center, digest
