"""MSRA15 (Sun et al. 2015): per subject P0..P8, per gesture, `joint.txt` + `NNNNNN_depth.bin`.

joint.txt: the frame count, then one line of 21 × (x, y, z) mm per frame, in MSRA's order
(wrist, index, middle, ring, little MCP→TIP, thumb) with y up and z negative
(conventions.msra_file_to_camera flips both). The joints are a permutation of synthgen's
canonical 21, so they are stored canonical (layout "hands2017").

A .bin frame: six int32 (width, height, left, top, right, bottom), then float32 depth mm of the
box [left, right) × [top, bottom), row by row; outside the box there is no data.

MSRA15 has no train/test split (it is evaluated leaving one subject out): ROOT is the dataset
(every subject folder in it, in name order) or one subject's folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthgen.conventions import CAMERAS, LAYOUTS, msra_file_to_camera
from synthgen.data.formats.common import require_files
from synthgen.errors import InputError

HEADER = 6  # int32 values before the depth box


class MSRAFrames:
    camera = "msra"
    joint_layout = "hands2017"

    def __init__(self, root: str | Path, split: str | None = None, limit: int | None = None):
        if split is not None:
            raise InputError(f"{split}: MSRA15 has no splits; point the root at the dataset or at one subject "
                             "(P0 .. P8), e.g. to leave one subject out", option="split")
        self.root = Path(root)
        gestures = _gesture_folders(self.root)
        self.paths, joints = [], []
        for folder in gestures:
            xyz = _read_joints(folder / "joint.txt")
            self.paths += [folder / f"{i:06d}_depth.bin" for i in range(len(xyz))]
            joints.append(xyz)
        self.joints = LAYOUTS["msra"].to_canonical(msra_file_to_camera(np.concatenate(joints))).astype(np.float32)
        self.available = len(self.paths)  # frames in the dataset (or subject), before `limit`
        self.paths, self.joints = self.paths[:limit], self.joints[:limit]
        self.gestures = [str(g.relative_to(self.root)) for g in gestures]
        require_files(self.paths, "MSRA15 depth frame")

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return read_bin(self.paths[index]), self.joints[index]

    def parameters(self) -> dict:
        return {"dataset": "msra", "split": None, "root": str(self.root.resolve()), "frames": len(self),
                "gestures": self.gestures,
                "labels": "joint.txt, y and z negated, MSRA order permuted to the canonical joints",
                "depth": "NNNNNN_depth.bin: 6 int32 (width, height, left, top, right, bottom) + float32 mm"}


def read_bin(path: Path) -> np.ndarray:
    """One MSRA15 .bin → the full (height, width) float32 frame, mm, 0 = no data."""
    cam = CAMERAS["msra"]
    blob = path.read_bytes()
    if len(blob) < 4 * HEADER:
        raise InputError(f"{path}: {len(blob)} bytes, too short for the 6-value header")
    width, height, left, top, right, bottom = (int(v) for v in np.frombuffer(blob[:4 * HEADER], np.int32))
    if (width, height) != (cam.width, cam.height) or not (0 <= left <= right <= width and 0 <= top <= bottom <= height):
        raise InputError(f"{path}: header (width {width}, height {height}, box {left} {top} {right} {bottom}) does "
                         f"not describe a box inside a {cam.width}x{cam.height} frame")
    box = np.frombuffer(blob[4 * HEADER:], np.float32)
    if box.size != (right - left) * (bottom - top) or len(blob) % 4:
        raise InputError(f"{path}: holds {box.size} depth values, its header's box needs "
                         f"{(right - left) * (bottom - top)}")
    frame = np.zeros((height, width), np.float32)
    frame[top:bottom, left:right] = box.reshape(bottom - top, right - left)
    return frame


def _gesture_folders(root: Path) -> list[Path]:
    """Folders with a joint.txt: ROOT's own gestures, or those of its subject folders."""
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    here = sorted(p.parent for p in root.glob("*/joint.txt"))
    found = here or sorted(p.parent for p in root.glob("*/*/joint.txt"))
    if not found:
        raise InputError(f"{root}: no MSRA15 gesture folders (*/joint.txt or P*/*/joint.txt)")
    return found


def _read_joints(path: Path) -> np.ndarray:
    """joint.txt → (N, 21, 3) in the file's frame and order."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    try:
        count = int(lines[0][0]) if lines and len(lines[0]) == 1 else -1
        values = np.array([[float(v) for v in fields] for fields in lines[1:]], dtype=np.float64)
    except ValueError:
        raise InputError(f"{path}: expected a frame count, then lines of 63 numbers") from None
    joints = LAYOUTS["msra"].num_joints
    if count < 0 or values.shape != (count, 3 * joints) or not np.isfinite(values).all():
        raise InputError(f"{path}: expected a frame count N, then N lines of {3 * joints} finite numbers; got "
                         f"count {count} and {len(lines) - 1} line(s) of shape {values.shape[1:] or '?'}")
    return values.reshape(count, joints, 3)
