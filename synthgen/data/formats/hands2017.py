"""HANDS2017 / BigHand2.2M (Yuan et al. 2017): uint16 PNG depth (mm) + an annotation text file.

    train: <root>/training/Training_Annotation.txt, frames <root>/training/images/<name>

An annotation line is `image_DNNNNNNNN.png x y z × 21`: mm in camera coordinates (y down),
in the canonical joint order (wrist, five MCPs, then PIP, DIP, TIP per finger). The test
split's joint annotations are not public, so only the training split can be imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthgen.conventions import CAMERAS, NUM_JOINTS
from synthgen.data.formats.common import check_split, parse_label_lines, read_png, require_files


class Hands2017Frames:
    camera = "hands2017"
    joint_layout = "hands2017"

    def __init__(self, root: str | Path, split: str | None = None, limit: int | None = None):
        self.split = check_split("HANDS2017", split, ("train",))
        self.folder = Path(root) / "training"
        self.labels = self.folder / "Training_Annotation.txt"
        lines = parse_label_lines(self.labels, 3 * NUM_JOINTS)
        self.available = len(lines)  # frames in the split, before `limit`
        lines = lines[:limit]
        self.paths = [self.folder / "images" / name for name, _ in lines]
        self.joints = np.stack([values.reshape(NUM_JOINTS, 3) for _, values in lines]).astype(np.float32)
        require_files(self.paths, "HANDS2017 depth frame")

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        cam = CAMERAS["hands2017"]
        return read_png(self.paths[index], (cam.height, cam.width), np.uint16).astype(np.float32), self.joints[index]

    def parameters(self) -> dict:
        return {"dataset": "hands2017", "split": self.split, "root": str(self.folder.parent.resolve()),
                "frames": len(self), "labels": f"{self.labels.name}: x, y, z mm, camera frame",
                "depth": "uint16 PNG, mm"}
