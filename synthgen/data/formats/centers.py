"""Per-frame hand centres in the files the field distributes (`import --centers FILE`).

* Crossing Nets release, `data/center_uvd_{train,test}.mat`: variable `center_uvd`, (N, 3)
  pixel u, v and depth mm (NYU; ≈ the palm-centre joint).
* A2J, `*_center_*.mat`: variable `centre_pixel`, (N, 1, 3) or (N, 3), pixel u, v and depth mm.
* V2V-PoseNet, `center_{train,test}_refined.txt`: one line per frame, `x y z` in mm in the
  dataset's world frame (y up, as V2V's pixel2world), or `invalid` where its detector found no
  hand. Invalid frames are centred by the import's centring rule instead.

Pixel centres are unprojected with the dataset's intrinsics; every centre comes back in
synthgen's camera frame (y down), in mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthgen.conventions import Intrinsics
from synthgen.errors import InputError
from synthgen.hand.camera import unproject

MAT_VARIABLES = ("center_uvd", "centre_pixel")  # the release's, A2J's
INVALID = "invalid"  # V2V-PoseNet's line for a frame without a detected hand


def read_centers(path: str | Path, cam: Intrinsics, frames: int) -> np.ndarray:
    """(frames, 3) float64 centres in mm (camera frame); rows of NaN for V2V's `invalid` frames.

    InputError (one line) for a file that is missing, of an unknown kind or malformed, whose
    row count is not `frames` (the split's frame count), or with non-finite or non-positive depth.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file", option="centers")
    if path.suffix.lower() == ".mat":
        centers = unproject(_read_mat(path), cam)
    elif path.suffix.lower() == ".txt":
        centers = _read_text(path)
    else:
        raise InputError(f"{path}: expected a .mat ({' or '.join(MAT_VARIABLES)}) or a V2V-PoseNet .txt "
                         f"file, got {path.suffix or 'no extension'}", option="centers")
    if len(centers) != frames:
        raise InputError(f"{path}: has {len(centers)} centres, the split has {frames} frames", option="centers")
    valid = ~np.isnan(centers).any(axis=1)
    if not valid.any():
        raise InputError(f"{path}: every centre is invalid", option="centers")
    if not np.isfinite(centers[valid]).all() or (centers[valid, 2] <= 0).any():
        raise InputError(f"{path}: holds non-finite centres or depths <= 0 mm", option="centers")
    return centers


def _read_mat(path: Path) -> np.ndarray:
    """(N, 3) u, v, depth of a release / A2J centre file."""
    import scipy.io

    try:
        if scipy.io.matlab.matfile_version(path)[0] == 2:
            raise InputError(f"{path}: MATLAB v7.3 (HDF5) files are not read; save it as MATLAB v5", option="centers")
        mat = scipy.io.loadmat(path)
    except (ValueError, TypeError, OSError, IndexError, scipy.io.matlab.MatReadError) as error:
        raise InputError(f"{path}: not a readable MATLAB file ({error})", option="centers") from None
    names = [name for name in MAT_VARIABLES if name in mat]
    if not names:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise InputError(f"{path}: has no {' or '.join(MAT_VARIABLES)} variable (found {found})", option="centers")
    try:
        uvd = np.asarray(mat[names[0]], dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{path}: {names[0]} is not numeric", option="centers") from None
    if uvd.ndim == 3 and uvd.shape[1] == 1:
        uvd = uvd[:, 0]
    if uvd.ndim != 2 or uvd.shape[1] != 3:
        raise InputError(f"{path}: {names[0]} must be (N, 3) or (N, 1, 3) pixel u, v, depth mm, "
                         f"got {uvd.shape}", option="centers")
    if not np.isfinite(uvd).all() or (uvd[:, 2] <= 0).any():
        raise InputError(f"{path}: {names[0]} holds non-finite values or depths <= 0 mm", option="centers")
    return uvd


def _read_text(path: Path) -> np.ndarray:
    """(N, 3) of a V2V-PoseNet centre file, y flipped to point down; NaN rows for `invalid`."""
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if fields == [INVALID]:
            rows.append((np.nan, np.nan, np.nan))
            continue
        try:
            values = [float(f) for f in fields]
        except ValueError:
            values = []
        if len(values) != 3:
            raise InputError(f"{path}:{number}: expected 'x y z' (mm) or '{INVALID}', got {line.strip()[:60]!r}", option="centers")
        rows.append((values[0], -values[1], values[2]))
    if not rows:
        raise InputError(f"{path}: no centres", option="centers")
    return np.array(rows, dtype=np.float64)
