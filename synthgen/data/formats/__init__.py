"""Real hand-pose benchmarks, each read in its own files, into synthgen stores.

    from synthgen.data.formats import open_dataset, import_frames
    frames = open_dataset("icvl", "/data/ICVL", split="train")
    import_frames(frames, "icvl-train.zarr")

One module per dataset (nyu, icvl, msra, hands2017) turns its files into frames (metric depth
+ joints in synthgen's camera frame); common.py centres the hand (a model's centring rule, or
centres read by centers.py), crops it in a model's input convention (synthgen.data.crops) and
writes the store; labels.py reads pose-only label files (`convert --poses`). Intrinsics and sign
conventions: conventions.CAMERAS and docs/real-data.md.
"""

from __future__ import annotations

from pathlib import Path

from synthgen.data.formats.common import FrameSource, import_frames
from synthgen.data.formats.hands2017 import Hands2017Frames
from synthgen.data.formats.icvl import ICVLFrames
from synthgen.data.formats.msra import MSRAFrames
from synthgen.data.formats.nyu import NYUFrames
from synthgen.errors import InputError

FORMATS = {"nyu": NYUFrames, "icvl": ICVLFrames, "msra": MSRAFrames, "hands2017": Hands2017Frames}


def open_dataset(name: str, root: str | Path, split: str | None = None, limit: int | None = None) -> FrameSource:
    """The frames of one benchmark split; InputError for unknown names, missing or malformed files."""
    if name not in FORMATS:
        raise InputError(f"unknown dataset {name!r} (known: {', '.join(FORMATS)})")
    if not Path(root).is_dir():
        raise InputError(f"{root}: not a directory")
    return FORMATS[name](root, split, limit)


__all__ = ["FORMATS", "FrameSource", "import_frames", "open_dataset"]
