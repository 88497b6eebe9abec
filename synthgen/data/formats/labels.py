"""Pose-only label files in a dataset's own format (`convert ... --poses LABELS`).

* ICVL: lines of 16 joints × (u, v, depth mm), optionally after a file name: `labels.txt`,
  `test_seq_*.txt`, or the field's `icvl_test_groundtruth_label.txt` (numbers only).
* NYU: `joint_data.mat` (MATLAB v5, `joint_uvd` of Kinect view 1; all 36 points). The field's
  `nyu_test_groundtruth_label.txt` holds only the 14 evaluated joints and is refused: a NYU
  model encodes all 36.
* MSRA15: a gesture's `joint.txt` (a frame count, then 21 joints × xyz, y up, z negative).

Every file comes back as (N, J, 3) mm in synthgen's camera frame (y down), in the joint order
of the model converted for that dataset (lasagne.DATASETS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthgen.conventions import CAMERAS, LAYOUTS, msra_file_to_camera
from synthgen.errors import InputError
from synthgen.hand.camera import unproject


def read_pose_labels(path: str | Path, dataset: str) -> np.ndarray:
    """(N, J, 3) float32 mm camera-frame poses of a label file of `dataset` (icvl, nyu, msra);
    InputError (one line) for a file that is missing or does not parse as that dataset's labels."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file", option="poses")
    if dataset == "icvl":
        uvd = _read_uvd_lines(path, LAYOUTS["icvl"].num_joints)
        poses = unproject(uvd, CAMERAS["icvl"])
    elif dataset == "nyu":
        poses = _read_nyu(path)
    elif dataset == "msra":
        from synthgen.data.formats.msra import _read_joints

        try:
            joints = _read_joints(path)
        except (IndexError, InputError) as error:
            raise InputError(f"{path}: not an MSRA15 joint.txt ({error})", option="poses") from None
        poses = LAYOUTS["msra"].to_canonical(msra_file_to_camera(joints))
    else:
        raise InputError(f"{dataset}: no label format for it (known: icvl, nyu, msra)", option="dataset")
    if len(poses) < 2:
        raise InputError(f"{path}: needs at least 2 poses to fit a prior, found {len(poses)}", option="poses")
    if not np.isfinite(poses).all() or (poses[..., 2] <= 0).any():
        raise InputError(f"{path}: holds non-finite joints or joints at depth <= 0 mm", option="poses")
    return poses.astype(np.float32)


def _read_uvd_lines(path: Path, joints: int) -> np.ndarray:
    """Lines `[name] u v d ...` with exactly 3·joints numbers → (N, joints, 3)."""
    rows = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(f) for f in fields[_first_number(fields):]]
        except ValueError:
            values = []
        if len(values) != 3 * joints:
            raise InputError(f"{path}:{number}: expected {3 * joints} numbers ({joints} joints × u, v, depth), "
                             f"optionally after a file name; got {line.strip()[:60]!r}", option="poses")
        rows.append(values)
    if not rows:
        raise InputError(f"{path}: no labels", option="poses")
    return np.array(rows, dtype=np.float64).reshape(-1, joints, 3)


def _first_number(fields: list[str]) -> int:
    """0 if the line starts with a number, 1 if it starts with a file name."""
    try:
        float(fields[0])
        return 0
    except ValueError:
        return 1


def _read_nyu(path: Path) -> np.ndarray:
    from synthgen.data.formats.nyu import VIEW, _read_joint_uvd

    if path.suffix.lower() != ".mat":
        raise InputError(f"{path}: a NYU model encodes all 36 points of joint_data.mat (joint_uvd); "
                         f"text files such as nyu_test_groundtruth_label.txt hold only the 14 evaluated joints", option="poses")
    try:
        uvd = _read_joint_uvd(path)[VIEW - 1]
    except InputError as error:
        raise InputError(f"{error}", option="poses") from None
    return unproject(uvd, CAMERAS["nyu"])
