"""Stores for training: whole into memory, or depth read on demand (`StoreDepth`), and a digest
that names exactly which data it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from synthgen.data.reader import HandStore, open_store
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


def _check_compatible(stores) -> None:
    layouts = {(s.metadata.crop_size, s.metadata.cube_mm) for s in stores}
    if len(layouts) > 1:
        raise InputError(f"stores differ in crop size / cube: {sorted(layouts)}")
    joint_layouts = sorted({s.joint_layout for s in stores})
    if len(joint_layouts) > 1:
        raise InputError(f"stores differ in joint layout: {joint_layouts}")
    conventions = sorted({s.input_convention.describe() for s in stores})
    if len(conventions) > 1:
        raise InputError(f"stores differ in input convention (how their crops were cut and normalised): {conventions}")


def load_arrays(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Concatenate the depth (kept float16: half the memory), pose and center of several stores.

    Returns (depth (N, S, S) float16, pose (N, J, 3) float32, center (N, 3) float32, digest), the
    digest combining the stores' digests in order. Stores must share crop size, cube, joint
    layout (`HandStore.joint_layout`) and input convention (`HandStore.input_convention`).
    """
    stores = [open_store(p) for p in paths]
    _check_compatible(stores)
    # read_array: damaged chunks and NaN / out-of-range values are refused here, not trained on.
    depth = np.concatenate([s.read_array("depth").astype(np.float16, copy=False) for s in stores])
    return (depth, *_labels(stores, paths))


def _labels(stores: list[HandStore], paths: list[Path]) -> tuple[np.ndarray, np.ndarray, str]:
    """The stores' poses and centres, whole (float32), and the digest naming them in order."""
    pose = np.concatenate([s.read_array("pose") for s in stores]).astype(np.float32, copy=False)
    center = np.concatenate([s.read_array("center") for s in stores]).astype(np.float32, copy=False)
    digest = hashlib.sha256("".join(store_digest(p) for p in paths).encode()).hexdigest()
    return pose, center, digest


class StoreDepth:
    """The depth of several stores as one (N, S, S) float16 array, read on demand.

    Indexing with an integer array or a slice reads those crops through each store's reader
    (`HandStore.read_depth`: the inner chunks they fall in are decoded, nothing else is kept), so
    a trainer holds only its batches: 100 k crops are 3.3 GB in memory, a few MB read this way.
    The values are the stored ones, so training on it gives what training on `load_arrays`'
    depth gives, at the cost of decoding a 64-crop chunk per scattered crop.
    """

    ndim = 3
    dtype = np.dtype(np.float16)

    def __init__(self, stores: list[HandStore]) -> None:
        self.stores = stores
        sizes = np.array([len(s) for s in self.stores], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        size = self.stores[0].metadata.crop_size
        self.shape = (int(self.starts[-1]), size, size)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        rows = np.arange(*index.indices(len(self))) if isinstance(index, slice) else np.asarray(index, np.int64)
        if rows.ndim != 1:
            raise IndexError(f"StoreDepth takes a slice or a 1-D index array, got {index!r}")
        out = np.empty((len(rows), *self.shape[1:]), np.float16)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for k, store in enumerate(self.stores):
            mine = np.flatnonzero(which == k)
            if len(mine):
                out[mine] = store.read_depth(rows[mine] - self.starts[k])
        return out


def load_labels(paths: list[Path]) -> tuple[StoreDepth, np.ndarray, np.ndarray, str]:
    """As `load_arrays`, with the depth left in the stores (`StoreDepth`): poses and centres
    (264 bytes a sample) are read whole."""
    stores = [open_store(p) for p in paths]
    _check_compatible(stores)
    return (StoreDepth(stores), *_labels(stores, paths))
