"""What every benchmark importer shares: the centring rules (the joints' box, DeepPrior's centre
of mass, centres from a file), the crop of a full sensor frame in a model's input convention,
file checks and the chunked store writing.

A dataset module provides a *frame source*: an object with `camera` (a key of
conventions.CAMERAS), `joint_layout` (a key of conventions.LAYOUTS: the stored joints' order),
`__len__`, `frame(i)` → (depth (H, W) float32 mm with 0 = no data, joints (J, 3) float32 mm in
camera coordinates, x right, y down, z forward) and `parameters()` (JSON provenance). Sources
check their label files and that every depth file exists when they are built, so bad input
is refused before a store is started.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import numpy as np

from synthgen.conventions import (
    CAMERAS,
    CENTER_OF_MASS_CAP_MM,
    CENTERINGS,
    CROP_SIZE,
    CUBE_MM,
    SYNTHGEN_INPUT,
    InputConvention,
    Intrinsics,
)
from synthgen.data.crops import crop_frame
from synthgen.data.schema import SampleBatch, StoreMetadata
from synthgen.data.writer import StoreWriter
from synthgen.errors import InputError
from synthgen.hand.camera import cap_move, centers_of_mass, hand_center, refine_centers

_PROGRESS_EVERY = 64  # frames per progress report


class FrameSource(Protocol):
    camera: str
    joint_layout: str

    def __len__(self) -> int: ...

    def frame(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...

    def parameters(self) -> dict: ...


# --- centring and cropping -----------------------------------------------------------------


def center_of_mass(depth_mm: np.ndarray, cam: Intrinsics, center: np.ndarray, cube: float = CUBE_MM
                   ) -> np.ndarray | None:
    """Centre of mass (mm, camera frame) of the pixels whose depth lies in the cube around
    `center` and whose pixel lies in the cube's image; None if there are none (DeepPrior's rule)."""
    moved = centers_of_mass(np.asarray(depth_mm)[None], [cam], np.asarray(center, np.float64)[None], cube)[0]
    return None if np.isnan(moved).any() else moved


def refine_center(depth_mm: np.ndarray, cam: Intrinsics, start: np.ndarray, cube: float = CUBE_MM) -> np.ndarray:
    """Iterate `center_of_mass` from `start` (conventions.CENTERINGS['center-of-mass']); keeps `start` if the cube is empty."""
    return refine_centers(np.asarray(depth_mm)[None], [cam], np.asarray(start)[None], cube)[0]


# --- files ---------------------------------------------------------------------------------


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise InputError(f"{path}: missing ({what})")
    return path


def require_files(paths: list[Path], what: str) -> None:
    """Every path exists; names the first missing one and how many are missing."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: missing ({what}; {len(missing)} of {len(paths)} missing)")


def read_png(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A PNG as an array of exactly `shape` and `dtype`; InputError otherwise."""
    import imageio.v3 as iio

    try:
        image = iio.imread(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable PNG ({error})") from None
    if image.shape[:len(shape)] != shape or image.dtype != dtype:
        raise InputError(f"{path}: expected a {np.dtype(dtype).name} image of shape {shape}, got "
                         f"{image.dtype} {image.shape}")
    return image


def parse_label_lines(path: Path, values: int) -> list[tuple[str, np.ndarray]]:
    """Lines `name v1 v2 ...` → [(name, first `values` numbers)]; blank lines skipped."""
    out = []
    for number, line in enumerate(require_file(path, "labels").read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            numbers = np.array([float(f) for f in fields[1:values + 1]], dtype=np.float64)
        except ValueError:
            raise InputError(f"{path}:{number}: expected a file name and {values} numbers") from None
        if len(numbers) != values or not np.isfinite(numbers).all():
            raise InputError(f"{path}:{number}: expected a file name and {values} finite numbers, got "
                             f"{len(fields) - 1} field(s)")
        out.append((fields[0], numbers))
    if not out:
        raise InputError(f"{path}: no labelled frames")
    return out


def check_split(dataset: str, split: str | None, allowed: tuple[str, ...]) -> str:
    split = split or "train"
    if split not in allowed:
        raise InputError(f"{split}: {dataset} has no such split (choose: {', '.join(allowed)})", option="split")
    return split


# --- writing -------------------------------------------------------------------------------


def frame_center(depth_mm: np.ndarray, joints: np.ndarray, cam: Intrinsics, centering: str,
                 cube: float = CUBE_MM) -> np.ndarray:
    """The crop centre of one labelled frame by a centring rule (conventions.CENTERINGS):
    "joint-box", "center-of-mass" (DeepPrior's refinement started at the joint box) or
    "capped-center-of-mass" (the same, its move capped)."""
    box = hand_center(joints)
    if centering == "joint-box":
        return box
    if centering == "center-of-mass":
        return refine_center(depth_mm, cam, box, cube)
    if centering == "capped-center-of-mass":
        return cap_move(box, refine_center(depth_mm, cam, box, cube), CENTER_OF_MASS_CAP_MM)
    raise InputError(f"not given: centring {centering!r} needs centres from a file", option="centers")


def import_frames(frames: FrameSource, out: str | Path, *, overwrite: bool = False, cube: float = CUBE_MM,
                  size: int = CROP_SIZE, convention: InputConvention = SYNTHGEN_INPUT,
                  centers: np.ndarray | None = None, centers_source: dict | None = None,
                  on_progress: Callable[[int], None] | None = None) -> Path:
    """Centre, crop and write every frame of `frames` into a new store at `out`.

    Crops are cut, centred and normalised as `convention` says (a model's input convention;
    synthgen's own by default). `centers` (frames, 3) mm, from a centre file (formats.centers),
    replaces the centring rule; its NaN rows (frames the file marks invalid) fall back to
    "center-of-mass", or to the convention's own rule if that is not "given". The store records
    the convention, with centring "given" when a file placed the centres.

    Written chunk by chunk into `<out>.incomplete` and renamed at the end; on any failure the
    unfinished store is removed, so a failed import leaves nothing behind.
    """
    cam = CAMERAS[frames.camera]
    if centers is None and convention.centering == "given":
        raise InputError("not given: the model reads crops cut at centres from a file (centring 'given')",
                         option="centers")
    if centers is not None and len(centers) < len(frames):
        raise InputError(f"{len(centers)} centres for {len(frames)} frames")
    fallback = convention.centering if convention.centering != "given" else "center-of-mass"
    stored = replace(convention, centering="given") if centers is not None else convention
    parameters = {**frames.parameters(), "centering": CENTERINGS[stored.centering]}
    if centers is not None:
        parameters["centers"] = {**(centers_source or {}), "invalid_frames": int(np.isnan(centers[:len(frames)]).any(1).sum()),
                                 "invalid_frames_centred_by": fallback}
    metadata = StoreMetadata(producer="import", seed=None, camera=frames.camera, cube_mm=cube, crop_size=size,
                             joint_layout=frames.joint_layout, parameters=parameters, input_convention=stored)
    writer = StoreWriter.create(out, len(frames), metadata, overwrite=overwrite)
    try:
        for chunk in range(writer.num_chunks):
            start, stop = writer.chunk_bounds(chunk)
            depth, pose, center = [], [], []
            for i in range(start, stop):
                frame, joints = frames.frame(i)
                if frame.shape != (cam.height, cam.width):
                    raise InputError(f"frame {i}: depth is {frame.shape}, the {frames.camera} sensor is "
                                     f"{(cam.height, cam.width)}")
                if not np.isfinite(joints).all() or hand_center(joints)[2] <= 0:
                    raise InputError(f"frame {i}: joints are not finite or lie behind the camera")
                given = None if centers is None or np.isnan(centers[i]).any() else centers[i]
                c = (given if given is not None else frame_center(frame, joints, cam, fallback, cube)).astype(np.float32)
                depth.append(crop_frame(frame, c, cam, cube, size, convention))
                pose.append(joints)
                center.append(c)
                if on_progress is not None and (i + 1 - start) % _PROGRESS_EVERY == 0:
                    on_progress(_PROGRESS_EVERY)
            writer.write(start, SampleBatch(np.stack(depth), np.stack(pose), np.stack(center),
                                            joint_layout=frames.joint_layout))
            if on_progress is not None and (stop - start) % _PROGRESS_EVERY:
                on_progress((stop - start) % _PROGRESS_EVERY)
        return writer.finalize()
    except BaseException:
        shutil.rmtree(writer.working_path, ignore_errors=True)
        raise
