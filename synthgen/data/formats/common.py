"""What every benchmark importer shares: DeepPrior's centre-of-mass centring, the training
crop of a full sensor frame, file checks and the chunked store writing.

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
from pathlib import Path
from typing import Protocol

import numpy as np

from synthgen.conventions import CAMERAS, CROP_SIZE, CUBE_MM, Intrinsics
from synthgen.data.schema import SampleBatch, StoreMetadata
from synthgen.data.writer import StoreWriter
from synthgen.errors import InputError
from synthgen.hand.camera import crop_uv_to_frame, hand_center, normalize_depth, unproject

#: DeepPrior's refinement: re-centre on the centre of mass of the depth pixels inside the cube,
#: until it moves less than this or after this many rounds.
REFINE_TOLERANCE_MM = 0.5
REFINE_ITERATIONS = 10
CENTERING = ("start at the joints' bounding-box centre; then, DeepPrior style, the centre of mass (mean u, v, "
             f"depth) of the depth pixels inside the {CUBE_MM:g} mm cube around the centre, unprojected, repeated "
             f"until it moves < {REFINE_TOLERANCE_MM} mm (at most {REFINE_ITERATIONS} rounds)")
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
    `center` and whose pixel lies in the cube's image; None if there are none.

    DeepPrior's rule: the mean pixel (u, v) and mean depth, unprojected.
    """
    half = cube / 2
    u_c, v_c = cam.fx * center[0] / center[2] + cam.cx, cam.fy * center[1] / center[2] + cam.cy
    du, dv = cam.fx * half / center[2], cam.fy * half / center[2]
    u0, u1 = max(int(np.ceil(u_c - du)), 0), min(int(np.floor(u_c + du)), depth_mm.shape[1] - 1)
    v0, v1 = max(int(np.ceil(v_c - dv)), 0), min(int(np.floor(v_c + dv)), depth_mm.shape[0] - 1)
    if u0 > u1 or v0 > v1:
        return None
    window = depth_mm[v0:v1 + 1, u0:u1 + 1]
    rows, cols = np.nonzero((window > 0) & (np.abs(window - center[2]) <= half))
    if len(rows) == 0:
        return None
    uvd = np.array([cols.mean() + u0, rows.mean() + v0, window[rows, cols].astype(np.float64).mean()])
    return unproject(uvd, cam)


def refine_center(depth_mm: np.ndarray, cam: Intrinsics, start: np.ndarray, cube: float = CUBE_MM) -> np.ndarray:
    """Iterate `center_of_mass` from `start` (see CENTERING); keeps `start` if the cube is empty."""
    center = np.asarray(start, np.float64)
    for _ in range(REFINE_ITERATIONS):
        moved = center_of_mass(depth_mm, cam, center, cube)
        if moved is None:
            break
        step = np.linalg.norm(moved - center)
        center = moved
        if step < REFINE_TOLERANCE_MM:
            break
    return center.astype(np.float32)


def crop_frame(depth_mm: np.ndarray, center: np.ndarray, cam: Intrinsics, cube: float = CUBE_MM,
               size: int = CROP_SIZE) -> np.ndarray:
    """Full sensor frame (H, W) mm → the (size, size) normalised training crop around `center`.

    Each crop pixel takes the frame pixel nearest to where its centre lands (synthgen's crop is
    a pinhole camera, camera.crop_intrinsics); outside the frame is no data. Then the store's
    normalisation (camera.normalize_depth): [-1, 1] in the cube, background +1.
    """
    cols, rows = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    frame_uv = crop_uv_to_frame(np.stack([cols, rows], axis=-1), center, cam, cube, size)
    u, v = np.rint(frame_uv[..., 0]).astype(np.int64), np.rint(frame_uv[..., 1]).astype(np.int64)
    inside = (u >= 0) & (u < depth_mm.shape[1]) & (v >= 0) & (v < depth_mm.shape[0])
    crop = np.zeros((size, size), np.float32)
    crop[inside] = depth_mm[v[inside], u[inside]]
    return normalize_depth(crop, center[2], cube)


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
        raise InputError(f"{dataset} has no --split {split} (choose: {', '.join(allowed)})")
    return split


# --- writing -------------------------------------------------------------------------------


def import_frames(frames: FrameSource, out: str | Path, *, overwrite: bool = False, cube: float = CUBE_MM,
                  size: int = CROP_SIZE, on_progress: Callable[[int], None] | None = None) -> Path:
    """Centre, crop and write every frame of `frames` into a new store at `out`.

    Written chunk by chunk into `<out>.incomplete` and renamed at the end; on any failure the
    unfinished store is removed, so a failed import leaves nothing behind.
    """
    cam = CAMERAS[frames.camera]
    metadata = StoreMetadata(producer="import", seed=None, camera=frames.camera, cube_mm=cube, crop_size=size,
                             joint_layout=frames.joint_layout,
                             parameters={**frames.parameters(), "centering": CENTERING})
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
                c = refine_center(frame, cam, hand_center(joints), cube)
                depth.append(crop_frame(frame, c, cam, cube, size))
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
