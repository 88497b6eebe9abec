"""NYU Hand Pose (Tompson et al. 2014): `<root>/<split>/joint_data.mat` + `depth_1_NNNNNNN.png`.

The depth PNGs are RGB with depth mm = (G << 8) | B. joint_data.mat (MATLAB v5) holds
`joint_uvd` (kinects, frames, 36, 3): pixel u, v and depth mm of the 36 points of each frame;
view 1 (the frontal Kinect, the benchmark's view) is index 0 / `depth_1_*`. Joints are
unprojected from joint_uvd with the NYU intrinsics (conventions.CAMERAS["nyu"]) into synthgen's
camera frame (y down); joint_xyz is not used (it is y up). All 36 points are stored (layout
"nyu36"); the 14 evaluated ones are conventions.NYU_EVAL_JOINTS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthgen.conventions import CAMERAS, LAYOUTS
from synthgen.data.formats.common import check_split, read_png, require_file, require_files
from synthgen.errors import InputError
from synthgen.hand.camera import unproject

VIEW = 1  # Kinect 1: depth_1_*.png, joint_uvd[0]


class NYUFrames:
    camera = "nyu"
    joint_layout = "nyu36"

    def __init__(self, root: str | Path, split: str | None = None, limit: int | None = None):
        self.split = check_split("NYU", split, ("train", "test"))
        self.folder = Path(root) / self.split
        self.labels = require_file(self.folder / "joint_data.mat", "NYU labels")
        uvd = _read_joint_uvd(self.labels)[VIEW - 1]
        self.available = len(uvd)  # frames in the split, before `limit`
        self.uvd = uvd[:limit]
        self.paths = [self.folder / f"depth_{VIEW}_{i + 1:07d}.png" for i in range(len(self.uvd))]
        require_files(self.paths, "NYU depth frame")

    def __len__(self) -> int:
        return len(self.uvd)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        cam = CAMERAS["nyu"]
        rgb = read_png(self.paths[index], (cam.height, cam.width, 3), np.uint8)
        depth = (rgb[..., 1].astype(np.uint16) << 8) | rgb[..., 2]
        return depth.astype(np.float32), unproject(self.uvd[index], cam).astype(np.float32)

    def parameters(self) -> dict:
        return {"dataset": "nyu", "split": self.split, "root": str(self.folder.parent.resolve()), "frames": len(self),
                "labels": f"{self.labels.name}: joint_uvd of view {VIEW}, unprojected with the NYU intrinsics",
                "depth": f"depth_{VIEW}_NNNNNNN.png, mm = (G << 8) | B"}


def _read_joint_uvd(path: Path) -> np.ndarray:
    import scipy.io

    try:
        if scipy.io.matlab.matfile_version(path)[0] == 2:  # v7.3 = HDF5, which loadmat cannot read
            raise InputError(f"{path}: MATLAB v7.3 (HDF5) files are not read; NYU's joint_data.mat is MATLAB v5")
        mat = scipy.io.loadmat(path, variable_names=["joint_uvd"])
    except (ValueError, TypeError, OSError, IndexError, scipy.io.matlab.MatReadError) as error:  # matfile_version: IndexError on junk
        raise InputError(f"{path}: not a readable MATLAB file ({error})") from None
    if "joint_uvd" not in mat:
        raise InputError(f"{path}: has no joint_uvd variable")
    uvd = np.asarray(mat["joint_uvd"], dtype=np.float64)
    joints = LAYOUTS["nyu36"].num_joints
    if uvd.ndim != 4 or uvd.shape[2:] != (joints, 3) or uvd.shape[0] < VIEW or uvd.shape[1] == 0:
        raise InputError(f"{path}: joint_uvd must be (kinects, frames, {joints}, 3), got {uvd.shape}")
    if not np.isfinite(uvd[VIEW - 1]).all() or (uvd[VIEW - 1][..., 2] <= 0).any():
        raise InputError(f"{path}: joint_uvd of view {VIEW} holds non-finite or non-positive depths")
    return uvd
