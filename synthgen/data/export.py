"""Write a store as a hand-pose benchmark's own files, so DeepPrior++ / V2V / A2J-style loaders
read synthetic data unchanged (and `synthgen.data.formats` imports it back).

Full frames (default) are drawn in the benchmark's camera (conventions.CAMERAS[layout]), the
intrinsics those loaders hard-code: each crop is a pinhole image of the same rays, so it is
pasted into the frame by its exact crop-to-frame map (nearest pixel, 0 = no data), and joints
are projected with that camera. A frame larger than the crop's 128 pixels is upsampled from it
(blocky: the store holds 128² crops); joints outside the frame are counted in the manifest.
With `crop=True` the 128² crops themselves are written and (u, v) are crop pixels of each
sample's crop camera (`crop_cameras.csv`), for trainers that take crops.

    layout     files under OUT (frames numbered as the dataset numbers them)
    nyu        train/depth_1_NNNNNNN.png (from 1), train/joint_data.mat
    icvl       Training/Depth/synthgen/image_NNNNNNN.png (from 0), Training/labels.txt
    msra       P0/synthgen/NNNNNN_depth.bin (from 0), P0/synthgen/joint.txt
    hands2017  training/images/image_DNNNNNNNN.png (from 1), training/Training_Annotation.txt

Depth files. `native`: each dataset's own encoding: NYU 8-bit RGB PNG with depth mm =
(G << 8) | B; ICVL and HANDS2017 16-bit greyscale PNG, mm; MSRA .bin: six int32 (width,
height, left, top, right, bottom) then float32 mm of the box around the hand, row by row.
`png16`: 16-bit greyscale PNG, mm, for every layout (NYU's name, .png instead of MSRA's .bin).
`npz`: no image files; OUT/samples.npz (below). PNG depth is rounded to whole mm.

Label files, exactly as each dataset writes them (joints in the layout's order):
    nyu        joint_data.mat (MATLAB v5): joint_uvd and joint_xyz (1, N, 36, 3) float64 —
               u, v pixels + depth mm, and x right, y UP, z forward mm (NYU's own sign) —
               and joint_names (1, 36). NYU evaluates 14 of the 36 points
               (conventions.NYU_EVAL_JOINTS); from a canonical store the other 22 are
               anatomical approximations (synthgen.data.layouts.nyu36_from_canonical).
    icvl       labels.txt: `synthgen/image_NNNNNNN.png u v d` × 16 per line (pixels, mm).
    msra       joint.txt: the frame count, then per frame 21 × `x y z` with y UP and z NEGATIVE
               (MSRA's own signs, conventions.camera_to_msra_file).
    hands2017  Training_Annotation.txt: `image_DNNNNNNNN.png` then 21 × x, y, z mm, camera
               coordinates (y down), tab separated.
samples.npz: depth (N, H, W) uint16 mm; joints_xyz (N, J, 3) float32 mm in synthgen's camera
coordinates (x right, y down, z forward; no dataset sign flips) in the layout's order (nyu: the
14 evaluated points); joints_uvd (N, J, 3) float32;
intrinsics (N, 4) fx, fy, cx, cy of each image; center (N, 3) crop centre mm; index (N,) store
sample index; joint_names (J,).
Every export also writes OUT/synthgen_export.json: source store, layout, format, camera
intrinsics, file names, sign conventions, joint names and counts.
"""

from __future__ import annotations

import json
import shutil
import uuid
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from synthgen.conventions import CAMERAS, LAYOUTS, NYU_EVAL_JOINTS, Intrinsics, camera_to_msra_file
from synthgen.data.layouts import converter
from synthgen.data.reader import HandStore, open_store
from synthgen.errors import InputError, OutputExistsError
from synthgen.hand.camera import crop_intrinsics, denormalize_depth, project

EXPORT_LAYOUTS = ("nyu", "icvl", "msra", "hands2017")
EXPORT_FORMATS = ("png16", "native", "npz")
READ_BLOCK = 1024  # samples decoded per store read
MANIFEST = "synthgen_export.json"
INCOMPLETE = ".incomplete"
MAX_DEPTH_MM = np.iinfo(np.uint16).max


def paste_crop(depth_mm: np.ndarray, center: np.ndarray, cube_mm: float, frame: Intrinsics) -> np.ndarray:
    """A (S, S) metric crop → the (H, W) frame of camera `frame`, nearest pixel, 0 elsewhere.

    Crop and frame share the centre of projection and the optical axis's direction, so the
    map between them is a scale and shift per axis (camera.crop_uv_to_frame): each frame pixel
    takes the crop pixel its centre falls in.
    """
    size = depth_mm.shape[-1]
    crop = crop_intrinsics(center, cube_mm, size)
    out = np.zeros((frame.height, frame.width), np.float32)
    axes = []
    for f_frame, c_frame, f_crop, c_crop, length in ((frame.fx, frame.cx, crop.fx, crop.cx, frame.width),
                                                     (frame.fy, frame.cy, crop.fy, crop.cy, frame.height)):
        first = int(np.ceil((-0.5 - c_crop) / f_crop * f_frame + c_frame))
        last = int(np.floor((size - 0.5 - c_crop) / f_crop * f_frame + c_frame))
        pixels = np.arange(max(first, 0), min(last, length - 1) + 1)
        source = np.clip(np.rint((pixels - c_frame) / f_frame * f_crop + c_crop).astype(np.int64), 0, size - 1)
        axes.append((pixels, source))
    (us, cols), (vs, rows) = axes
    if len(us) and len(vs):
        out[vs[0]:vs[-1] + 1, us[0]:us[-1] + 1] = depth_mm[np.ix_(rows, cols)]
    return out


def _to_uint16_mm(depth_mm: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(depth_mm), 0, MAX_DEPTH_MM).astype(np.uint16)


# --- per-dataset files ---------------------------------------------------------------------


class _Dataset(ABC):
    """Where one benchmark keeps its frames and labels, and how it encodes them."""

    label_layout: str  # the joints its label file holds
    folder: str  # the split's folder under OUT

    @abstractmethod
    def image_name(self, index: int, fmt: str) -> str:
        """Depth file of sample `index`, relative to the folder."""

    @abstractmethod
    def write_labels(self, root: Path, names: list[str], xyz: np.ndarray, uvd: np.ndarray) -> list[str]:
        """Write the label file(s) under root/folder; returns their paths relative to root."""

    def write_native(self, path: Path, depth_mm: np.ndarray) -> None:
        _write_png16(path, depth_mm)


def _write_png16(path: Path, depth_mm: np.ndarray) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, _to_uint16_mm(depth_mm), extension=".png")


def _numbers(values: np.ndarray, sep: str = " ") -> str:
    return sep.join(f"{v:.4f}" for v in values.ravel())


class _NYU(_Dataset):
    label_layout, folder = "nyu36", "train"

    def image_name(self, index: int, fmt: str) -> str:
        return f"depth_1_{index + 1:07d}.png"

    def write_native(self, path: Path, depth_mm: np.ndarray) -> None:
        import imageio.v3 as iio

        mm = _to_uint16_mm(depth_mm)
        rgb = np.zeros(mm.shape + (3,), np.uint8)
        rgb[..., 1], rgb[..., 2] = mm >> 8, mm & 0xFF
        iio.imwrite(path, rgb, extension=".png")

    def write_labels(self, root, names, xyz, uvd):
        import scipy.io

        y_up = xyz * np.array([1.0, -1.0, 1.0])
        names_cell = np.empty((1, len(LAYOUTS["nyu36"].joint_names)), dtype=object)
        names_cell[0, :] = LAYOUTS["nyu36"].joint_names
        scipy.io.savemat(root / self.folder / "joint_data.mat", {
            "joint_uvd": uvd[None].astype(np.float64), "joint_xyz": y_up[None].astype(np.float64),
            "joint_names": names_cell}, do_compression=True)
        return [f"{self.folder}/joint_data.mat"]


class _ICVL(_Dataset):
    label_layout, folder = "icvl", "Training"

    def image_name(self, index: int, fmt: str) -> str:
        return f"Depth/synthgen/image_{index:07d}.png"

    def write_labels(self, root, names, xyz, uvd):
        lines = [f"{name[len('Depth/'):]} {_numbers(joints)}\n" for name, joints in zip(names, uvd)]
        (root / self.folder / "labels.txt").write_text("".join(lines))
        return [f"{self.folder}/labels.txt"]


class _MSRA(_Dataset):
    label_layout, folder = "msra", "P0/synthgen"

    def image_name(self, index: int, fmt: str) -> str:
        return f"{index:06d}_depth.{'bin' if fmt == 'native' else 'png'}"

    def write_native(self, path: Path, depth_mm: np.ndarray) -> None:
        rows, cols = np.nonzero(depth_mm > 0)
        left, top, right, bottom = ((cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) if len(rows)
                                    else (0, 0, 0, 0))
        header = np.array([depth_mm.shape[1], depth_mm.shape[0], left, top, right, bottom], np.int32)
        box = np.ascontiguousarray(depth_mm[top:bottom, left:right], np.float32)
        path.write_bytes(header.tobytes() + box.tobytes())

    def write_labels(self, root, names, xyz, uvd):
        lines = [f"{len(xyz)}\n"] + [f"{_numbers(camera_to_msra_file(joints))}\n" for joints in xyz]
        (root / self.folder / "joint.txt").write_text("".join(lines))
        return [f"{self.folder}/joint.txt"]


class _Hands2017(_Dataset):
    label_layout, folder = "hands2017", "training"

    def image_name(self, index: int, fmt: str) -> str:
        return f"images/image_D{index + 1:08d}.png"

    def write_labels(self, root, names, xyz, uvd):
        lines = [f"{Path(name).name}\t{_numbers(joints, chr(9))}\n" for name, joints in zip(names, xyz)]
        (root / self.folder / "Training_Annotation.txt").write_text("".join(lines))
        return [f"{self.folder}/Training_Annotation.txt"]


DATASETS: dict[str, _Dataset] = {"nyu": _NYU(), "icvl": _ICVL(), "msra": _MSRA(), "hands2017": _Hands2017()}

SIGNS = {
    "nyu": "joint_uvd: u, v pixels, d mm; joint_xyz: x right, y UP, z forward, mm (NYU's convention)",
    "icvl": "labels.txt: u, v pixels, d mm",
    "msra": "joint.txt: x right, y UP, z NEGATIVE, mm (MSRA's convention: synthgen's x, -y, -z)",
    "hands2017": "Training_Annotation.txt: x right, y down, z forward, mm (camera coordinates)",
}


# --- npz, streamed (a store may not fit in memory as frames) -------------------------------


class _NpzWriter:
    """samples.npz written array by array; depth is streamed frame by frame (np.load reads it)."""

    def __init__(self, path: Path, count: int, shape: tuple[int, int]) -> None:
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True)
        self._depth = self._zip.open("depth.npy", "w", force_zip64=True)
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint16)), "fortran_order": False,
                  "shape": (count,) + shape}
        np.lib.format.write_array_header_2_0(self._depth, header)

    def add_frame(self, depth_mm: np.ndarray) -> None:
        self._depth.write(_to_uint16_mm(depth_mm).tobytes())

    def finish(self, arrays: dict[str, np.ndarray]) -> None:
        self._depth.close()
        for name, array in arrays.items():
            with self._zip.open(f"{name}.npy", "w", force_zip64=True) as file:
                np.lib.format.write_array(file, np.asarray(array), allow_pickle=False)
        self._zip.close()

    def abort(self) -> None:
        self._depth.close()
        self._zip.close()


# --- the export ----------------------------------------------------------------------------


def _check(store: HandStore, layout: str, fmt: str, out: Path, overwrite: bool) -> None:
    if layout not in EXPORT_LAYOUTS:
        raise InputError(f"unknown export layout {layout!r} (choose: {', '.join(EXPORT_LAYOUTS)})")
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"unknown export format {fmt!r} (choose: {', '.join(EXPORT_FORMATS)})")
    converter(store.joint_layout, DATASETS[layout].label_layout if fmt != "npz" else layout)
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    if out.resolve() == store.path.resolve() or store.path.resolve() in out.resolve().parents:
        raise InputError(f"{out} lies inside the store {store.path}", option="out")


def export_store(store_path: str | Path, out: str | Path, *, layout: str, fmt: str, crop: bool = False,
                 limit: int | None = None, overwrite: bool = False,
                 on_progress: Callable[[int], None] | None = None) -> dict:
    """Export the first `limit` (default all) samples of a store; returns the manifest.

    Written into `<out>.incomplete` and renamed when complete (an existing `out` is replaced
    only then, and only with `overwrite`); on failure nothing is left behind.
    """
    store = open_store(store_path)
    out = Path(out)
    if not store.input_convention.metric:
        raise InputError(f"{store_path}: holds {store.input_convention.depth} depth; the benchmarks' files hold "
                         f"depth in mm, which cannot be recovered from it")
    _check(store, layout, fmt, out, overwrite)
    count = len(store) if limit is None else min(int(limit), len(store))
    if count < 1:
        raise InputError(f"must be >= 1 (nothing to export), got {limit}", option="n")
    working = out.with_name(out.name + INCOMPLETE)
    if working.exists():
        shutil.rmtree(working)
    working.mkdir(parents=True)
    try:
        manifest = _write(store, working, layout, fmt, crop, count, on_progress)
        (working / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(working, ignore_errors=True)
        raise
    _replace(working, out)
    manifest["out"] = str(out)
    return manifest


def _replace(working: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f"{out.name}.replaced-{uuid.uuid4().hex[:8]}")
        out.rename(old)
        working.rename(out)
        if old.is_dir():
            shutil.rmtree(old)
        else:
            old.unlink()
    else:
        working.rename(out)


def _write(store: HandStore, root: Path, layout: str, fmt: str, crop: bool, count: int,
           on_progress: Callable[[int], None] | None) -> dict:
    dataset = DATASETS[layout]
    label_layout = layout if fmt == "npz" else dataset.label_layout
    to_labels = converter(store.joint_layout, label_layout)
    cube, size = store.metadata.cube_mm, store.metadata.crop_size
    frame = CAMERAS[layout]
    shape = (size, size) if crop else (frame.height, frame.width)
    folder = root / dataset.folder
    npz = None
    if fmt == "npz":
        npz = _NpzWriter(root / "samples.npz", count, shape)
    names, xyz, uvd, intrinsics, centers = [], [], [], [], []
    try:
        for start in range(0, count, READ_BLOCK):
            batch = store.read(slice(start, min(start + READ_BLOCK, count)))
            depth_mm = denormalize_depth(batch.depth, batch.center[:, 2], cube)
            joints = to_labels(batch.pose).astype(np.float64)
            for row in range(len(batch)):
                camera = crop_intrinsics(batch.center[row], cube, size) if crop else frame
                image = depth_mm[row] if crop else paste_crop(depth_mm[row], batch.center[row], cube, frame)
                if npz is not None:
                    npz.add_frame(image)
                else:
                    name = dataset.image_name(start + row, fmt)
                    (folder / name).parent.mkdir(parents=True, exist_ok=True)
                    (dataset.write_native if fmt == "native" else _write_png16)(folder / name, image)
                    names.append(name)
                xyz.append(joints[row])
                uvd.append(project(joints[row], camera))
                intrinsics.append((camera.fx, camera.fy, camera.cx, camera.cy))
            centers.append(batch.center)
            if on_progress:
                on_progress(len(batch))
        xyz, uvd, intrinsics, centers = np.stack(xyz), np.stack(uvd), np.array(intrinsics), np.concatenate(centers)
        label_files = []
        if npz is not None:
            npz.finish({"joints_xyz": xyz.astype(np.float32), "joints_uvd": uvd.astype(np.float32),
                        "intrinsics": intrinsics.astype(np.float32), "center": centers,
                        "index": np.arange(count, dtype=np.int64),
                        "joint_names": np.array(LAYOUTS[label_layout].joint_names)})
            npz = None
        else:
            label_files = dataset.write_labels(root, names, xyz, uvd)
    finally:
        if npz is not None:
            npz.abort()
    if crop:
        _write_crop_cameras(root / "crop_cameras.csv", names, intrinsics, centers, cube)
    outside = ~((uvd[..., 0] >= -0.5) & (uvd[..., 0] <= shape[1] - 0.5)
                & (uvd[..., 1] >= -0.5) & (uvd[..., 1] <= shape[0] - 0.5))
    return {
        "source_store": str(store.path.resolve()), "source_producer": store.metadata.producer,
        "source_seed": store.metadata.seed, "source_created": store.metadata.created,
        "source_joint_layout": store.joint_layout, "samples": count, "layout": layout, "format": fmt,
        "frame": "crop" if crop else "full",
        "camera": (None if crop else frame.to_dict()), "image_size": {"width": shape[1], "height": shape[0]},
        "crop_cameras": "crop_cameras.csv" if crop else None,
        "depth": {"png16": "16-bit greyscale PNG, mm, 0 = no data", "npz": "samples.npz depth, uint16 mm",
                  "native": _NATIVE[layout]}[fmt],
        "images": None if fmt == "npz" else f"{dataset.folder}/{dataset.image_name(0, fmt)} ...",
        "labels": label_files or ["samples.npz"],
        "label_conventions": (SIGNS[layout] if fmt != "npz"
                              else "joints_xyz: x right, y down, z forward, mm; joints_uvd: u, v pixels, d mm"),
        "joint_layout": label_layout, "joint_names": list(LAYOUTS[label_layout].joint_names),
        "evaluated_joints": list(NYU_EVAL_JOINTS) if label_layout == "nyu36" else None,
        "approximated_joints": _approximated(store.joint_layout, label_layout),
        "samples_with_joints_outside_image": int(outside.any(axis=1).sum()),
    }


_NATIVE = {
    "nyu": "8-bit RGB PNG, depth mm = (G << 8) | B",
    "icvl": "16-bit greyscale PNG, mm",
    "msra": ".bin: int32 width, height, left, top, right, bottom; float32 mm of the box, row-major",
    "hands2017": "16-bit greyscale PNG, mm",
}


def _approximated(source: str, target: str) -> str | None:
    if source == target or (LAYOUTS[target].exact and LAYOUTS[source].exact) or source == "nyu36":
        return None
    if target == "nyu36":
        return ("the 14 evaluated points as layout 'nyu' (W1, W2, C approximate); the other 22 are "
                "synthgen.data.layouts.nyu36_from_canonical's anatomical approximations")
    return f"layout {target!r} from the canonical joints: see conventions.LAYOUTS[{target!r}]"


def _write_crop_cameras(path: Path, names: list[str], intrinsics: np.ndarray, centers: np.ndarray,
                        cube: float) -> None:
    lines = ["index,image,fx,fy,cx,cy,center_x,center_y,center_z,cube_mm\n"]
    for i, (camera, center) in enumerate(zip(intrinsics, centers)):
        image = names[i] if names else ""
        lines.append(f"{i},{image},{_numbers(camera, ',')},{_numbers(center, ',')},{cube:g}\n")
    path.write_text("".join(lines))
