"""ICVL (Tang et al. 2014): 16-bit PNG depth (mm) + label lines `path u v d × 16`.

    train: <root>/Training/labels.txt,  frames <root>/Training/Depth/<path>
    test:  <root>/Testing/labels.txt or test_seq_*.txt (in name order), frames <root>/Testing/Depth/<path>

Labels are pixel u, v and depth mm, in ICVL's order (palm, then thumb, index, middle, ring,
little, root to tip: layout "icvl"); they are unprojected with the ICVL intrinsics into
synthgen's camera frame (y down). Only the first 48 numbers of a line are labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthgen.conventions import CAMERAS, LAYOUTS
from synthgen.data.formats.common import check_split, parse_label_lines, read_png, require_files
from synthgen.errors import InputError
from synthgen.hand.camera import unproject

FOLDERS = {"train": "Training", "test": "Testing"}


class ICVLFrames:
    camera = "icvl"
    joint_layout = "icvl"

    def __init__(self, root: str | Path, split: str | None = None, limit: int | None = None):
        self.split = check_split("ICVL", split, tuple(FOLDERS))
        self.folder = Path(root) / FOLDERS[self.split]
        self.label_files = _label_files(self.folder, self.split)
        joints = LAYOUTS["icvl"].num_joints
        lines = [entry for path in self.label_files for entry in parse_label_lines(path, 3 * joints)]
        self.available = len(lines)  # frames in the split, before `limit`
        lines = lines[:limit]
        self.paths = [self.folder / "Depth" / name for name, _ in lines]
        self.uvd = np.stack([values.reshape(joints, 3) for _, values in lines])
        if (self.uvd[..., 2] <= 0).any():
            raise InputError(f"{self.label_files[0].parent}: a label has a joint depth <= 0 mm")
        require_files(self.paths, "ICVL depth frame")

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        cam = CAMERAS["icvl"]
        depth = read_png(self.paths[index], (cam.height, cam.width), np.uint16)
        return depth.astype(np.float32), unproject(self.uvd[index], cam).astype(np.float32)

    def parameters(self) -> dict:
        return {"dataset": "icvl", "split": self.split, "root": str(self.folder.parent.resolve()), "frames": len(self),
                "labels": [p.name for p in self.label_files] + ["u, v, depth mm, unprojected with the ICVL intrinsics"],
                "depth": "16-bit PNG, mm"}


def _label_files(folder: Path, split: str) -> list[Path]:
    if (folder / "labels.txt").is_file():
        return [folder / "labels.txt"]
    sequences = sorted(folder.glob("test_seq_*.txt")) if split == "test" else []
    if not sequences:
        wanted = "labels.txt" if split == "train" else "labels.txt or test_seq_*.txt"
        raise InputError(f"{folder}: missing ICVL labels ({wanted})")
    return sequences
