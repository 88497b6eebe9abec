"""The on-disk schema of a synthgen hand store: arrays, attributes, layout and errors.

A store is a Zarr v3 group (directory store) that carries everything needed to turn any
sample back into metric depth and full-frame pixels, with nothing but the store:

    depth   (N, S, S)  float16  normalised crop depth in [-1, 1], background +1 (S = crop_size)
    pose    (N, J, 3)  float32  joints in mm camera coordinates, in the store's joint layout
                                (attribute `joint_layout`; "hands2017" = the canonical 21 joints)
    center  (N, 3)     float32  crop centre in mm camera coordinates
    latent  (N, D)     float32  optional, the generator latent the sample was decoded from
    joint   (J,)       string   the joint names of the layout (a coordinate of pose's joint axis)
    xyz     (3,)       string   "x", "y", "z" (a coordinate of pose's and center's last axis)

Axes are named (Zarr v3 dimension names: sample, v, u, joint, xyz, latent_dim), and a complete
store's group metadata holds every array's (consolidated), so `xarray.open_zarr(path)` gives
depth, pose, center and latent as data variables indexed by joint name.

Every array is split along N only, in shards of `chunk_size` samples (one file per array:
the unit one writer process owns, so processes writing disjoint chunks never share a file)
holding inner chunks of 64 samples (the unit a reader decodes). One chunk index names the same
samples in every array.

Layout, chosen by measuring (benchmarks/store_layout.py, results/store_layout.json): 20k
hand-like crops (81 % background) written chunk by chunk from float32 and read back from the
page cache, samples/s, medians of 3 interleaved runs on the shared 2-core machine (single runs
swing up to 2x, so only large ratios count):

    depth layout                      write  ratio  slice64  chunks  blocks64
    f16 uncompressed, chunks 1024      4346   0.98     2258    5442      1492
    f16 zstd-1, chunks 1024            4704   5.35     1398   12061      1541
    f16 zstd-3, chunks 1024            5763   5.35     1199    5801      1335
    f16 blosc-lz4-shuffle, 1024        5621   4.88     1686   11255      1290
    uint16 codes (4096 steps) zstd-1   4876   6.54     1447   10838      1550
    f16 zstd-1, chunks 256             6366   5.35    10669   17584     11397
    f16 zstd-1, chunks 512             9375   5.35     7378   15453      7538
    f16 zstd-1, shards 1024 / 64  <--  7643   5.35    16046   11199     15533
    f16 zstd-3, shards 1024 / 64       5369   5.35    14223   11674     14326
    f16 blosc-lz4, shards 1024 / 64    7775   4.89    16120   11911     15776
    StoreWriter default, all arrays    5038   5.19

    slice64: 64-sample batches in order; chunks: whole chunks in shuffled order, shuffled
    inside; blocks64: 64-sample batches in shuffled order.

* float16: worst-case error 2**-12 of the half cube (0.0305 mm at a 250 mm cube, see
  `depth_max_error_mm`), far below any depth sensor's noise, and `depth` stays directly usable
  by any Zarr reader. uint16 codes with the same worst case are 18 % smaller on disk but need a
  scale and offset applied by every reader.
* zstd level 1: the same ratio as level 3 on this content, cheaper to write; blosc-lz4 is 9 %
  larger for no consistent speed gain (blosc-zstd-bitshuffle, in an earlier run: ratio 4.56 and
  2-3x slower everywhere).
* shards of 1024 with inner chunks of 64: with plain 1024-sample chunks every 64-sample read
  decodes 1024 samples (1.2-1.7 k samples/s); inner chunks of 64 make 64-sample reads ~10x
  faster, in order or shuffled, while the 1024-sample shard stays the write unit (98 files per
  array for 100k samples). Plain 256-sample chunks come close (faster whole-chunk reads,
  slower 64-sample reads, 4x the files).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from synthgen import __version__
from synthgen.conventions import (
    BACKGROUND,
    CAMERAS,
    CROP_SIZE,
    CUBE_MM,
    DEFAULT_CAMERA,
    DEPTH_CONVENTIONS,
    LAYOUTS,
    SCHEMA_VERSION,
    SYNTHGEN_INPUT,
    UNITS,
    InputConvention,
    Intrinsics,
)
from synthgen.errors import InputError, OutputExistsError, SynthgenError, UnfinishedRunError
from synthgen.outputs import write_bytes_atomically

# --- errors: one type per failure, each message one line a CLI can print -------------------


class SynthgenDataError(InputError, ValueError):
    """Base of every store error: an InputError, so the CLI prints its one-line message."""


class StoreExistsError(SynthgenDataError):
    """The target store (or an unfinished run's working directory) already exists."""


class UnfinishedStoreError(StoreExistsError, UnfinishedRunError):
    """An unfinished run's working directory is where a new store would be written."""

    def __init__(self, path) -> None:
        UnfinishedRunError.__init__(self, path)


class StoreAlreadyThereError(StoreExistsError, OutputExistsError):
    """The finished store is there and replacing it was not asked for (`overwrite`)."""

    def __init__(self, path) -> None:
        OutputExistsError.__init__(self, path)


class StoreLocationError(SynthgenDataError):
    """The store's directory cannot be created there (a parent is a file, no permission, ...)."""


class NotAStoreError(SynthgenDataError):
    """The path is missing or is not a synthgen hand store."""


class SchemaVersionError(SynthgenDataError):
    """The store was written with another schema version than this code reads."""


class IncompleteStoreError(SynthgenDataError):
    """The store (or the requested samples) have not been completely written."""


class CorruptStoreError(SynthgenDataError):
    """A store's files are damaged: a chunk is missing, undecodable or not what was written."""


class StoreWriteError(SynthgenError):
    """Writing a store's files failed (disk full, I/O error): a runtime failure, exit 1."""


class InvalidBatchError(SynthgenDataError):
    """A SampleBatch has a wrong shape, non-finite values or values out of range."""


class InvalidMetadataError(SynthgenDataError):
    """Store metadata or creation parameters are invalid (not JSON, unknown camera, ...)."""


class SampleIndexError(SynthgenDataError, IndexError):
    """A sample index is out of range or not an integer index."""


class ChunkAlignmentError(SynthgenDataError):
    """A write does not cover whole chunks, so it could race with another writer."""


# --- layout --------------------------------------------------------------------------------

DEPTH_DTYPE = "float16"
DEFAULT_CHUNK_SIZE = 1024  # samples per shard: the unit one writer process owns
READ_CHUNK_SIZE = 64  # samples per inner chunk: the unit a reader decodes
ZSTD_LEVEL = 1
LATENT_DIM = 23
INCOMPLETE_SUFFIX = ".incomplete"
#: Chunk markers, resume bookkeeping and the checksums attribute (~270 bytes per chunk in
#: zarr.json) grow with the number of chunks; beyond this, a larger chunk size is the answer.
MAX_CHUNKS = 65536
PROGRESS_DIR = ".progress"
#: Label arrays of named axes, beside the per-sample arrays (not split into chunks).
COORDINATE_NAMES = ("joint", "xyz")


def coordinate_values(joint_layout: str) -> dict[str, list[str]]:
    """The values of the coordinate arrays of a store in `joint_layout`."""
    return {"joint": list(LAYOUTS[joint_layout].joint_names), "xyz": ["x", "y", "z"]}

#: Largest |float16(x) - x| for x in [-1, 1]: half the float16 spacing in [0.5, 1).
DEPTH_MAX_ERROR_NORMALISED = float(np.spacing(np.float16(0.5))) / 2


def depth_max_error_mm(cube_mm: float) -> float:
    """Worst-case float16 quantisation error of stored depth, in mm, for a cube edge."""
    return DEPTH_MAX_ERROR_NORMALISED * cube_mm / 2


def working_path_for(path: Path) -> Path:
    """Where a store is written until `finalize` renames it to `path`."""
    return path.with_name(path.name + INCOMPLETE_SUFFIX)


def chunk_marker(store_root: Path, chunk: int) -> Path:
    """File whose existence says chunk `chunk` is fully written (race-free across processes); it
    holds the chunk's checksums (`write_chunk_marker`)."""
    return store_root / PROGRESS_DIR / f"{chunk:08d}"


# --- checksums -----------------------------------------------------------------------------
# Every array's chunk k is one shard file; its sha256 is taken right after it is written (the
# file is still in the page cache: ~3 ms per 1024-sample depth shard) and kept in the chunk's
# marker, and `finalize` gathers them (with each array's zarr.json) into the attribute
# "checksums", so `synthgen verify` can tell a damaged or altered file from the one that was
# written, chunk by chunk.

CHECKSUM_ALGORITHM = "sha256"
CHECKSUMS_ATTR = "checksums"


def file_sha256(path: Path) -> str | None:
    """Hex sha256 of a file's bytes; None when there is no file (an all-fill shard is not stored)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def shard_path(store_root: Path, array: Any, chunk: int) -> Path:
    """The file holding chunk `chunk` of a sharded Zarr array (split along N only)."""
    return store_root / array.path / array.metadata.encode_chunk_key((chunk,) + (0,) * (array.ndim - 1))


def write_chunk_marker(store_root: Path, chunk: int, digests: dict[str, str | None]) -> None:
    """Mark a chunk done with its per-array digests; atomic, so a marker is whole or absent."""
    write_bytes_atomically(chunk_marker(store_root, chunk), json.dumps(digests, sort_keys=True).encode())


def read_chunk_marker(store_root: Path, chunk: int) -> dict[str, str | None]:
    return json.loads(chunk_marker(store_root, chunk).read_text() or "{}")


def attributes_digest(attrs: dict[str, Any]) -> str:
    """sha256 of the group attributes other than the checksums themselves (canonical JSON)."""
    rest = {key: value for key, value in attrs.items() if key != CHECKSUMS_ATTR}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def missing_chunks(store_root: Path, num_chunks: int) -> list[int]:
    """Chunk indices of a working store that have no completion marker yet."""
    progress = store_root / PROGRESS_DIR
    done = {int(p.name) for p in progress.iterdir() if p.name.isdigit()} if progress.is_dir() else set()
    return [chunk for chunk in range(num_chunks) if chunk not in done]


def check_schema_version(attrs: dict[str, Any], path: Path) -> None:
    """Refuse attributes that are not a synthgen store's, or are another schema version's."""
    if "schema_version" not in attrs:
        raise NotAStoreError(f"{path} is a Zarr group but not a synthgen hand store (no schema_version)")
    if attrs["schema_version"] != SCHEMA_VERSION:
        raise SchemaVersionError(f"{path} has schema version {attrs['schema_version']}, "
                                 f"this synthgen reads version {SCHEMA_VERSION}")


COORDINATE_SYSTEM = (
    "pose and center: mm in camera coordinates, x right, y down, z forward (away from the "
    "camera); pixels (u, v) OpenCV style, the centre of pixel column i is u = i, "
    "u = fx * x / z + cx, v = fy * y / z + cy"
)

# --- metadata ------------------------------------------------------------------------------

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _utc_now() -> str:
    """Now, or SOURCE_DATE_EPOCH when set (reproducible-builds convention): with it, two runs of
    the same command give byte-identical stores, attributes included."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and not epoch.isdigit():
        raise InvalidMetadataError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}")
    moment = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return moment.isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoreMetadata:
    """What a producer says about the data it writes; the writer adds the fixed conventions.

    `intrinsics` defaults to the preset named by `camera`, so the full-frame camera is always
    explicit in the store. `model_checksum` is the sha256 of the model weights, None for the
    mesh baseline. `parameters` is free JSON (noise settings, prior settings, ...) that makes
    the run reproducible together with `seed`. `joint_layout` names the order (and number) of
    the stored joints, a key of conventions.LAYOUTS: canonical unless a model or dataset with
    another skeleton (ICVL's 16, NYU's 36 points) made the poses. `input_convention` says how
    the crops were cut, centred and normalised (conventions.InputConvention): synthgen's own
    unless a store was imported for, or sampled from, a model that reads another.
    """

    producer: str
    seed: int | None
    camera: str = DEFAULT_CAMERA
    intrinsics: Intrinsics | None = None
    cube_mm: float = CUBE_MM
    crop_size: int = CROP_SIZE
    model_checksum: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    synthgen_version: str = __version__
    created: str = field(default_factory=_utc_now)
    joint_layout: str = "hands2017"
    input_convention: InputConvention = SYNTHGEN_INPUT

    def __post_init__(self) -> None:
        if not isinstance(self.input_convention, InputConvention):
            raise InvalidMetadataError(f"input_convention must be an InputConvention, got {self.input_convention!r}")
        if not isinstance(self.producer, str) or not self.producer:
            raise InvalidMetadataError(f"producer must be a non-empty string, got {self.producer!r}")
        if self.joint_layout not in LAYOUTS:
            raise InvalidMetadataError(f"unknown joint layout {self.joint_layout!r} (known: {', '.join(LAYOUTS)})")
        if self.seed is not None and not isinstance(self.seed, (int, np.integer)):
            raise InvalidMetadataError(f"seed must be an integer or None, got {self.seed!r}")
        if self.intrinsics is None:
            if self.camera not in CAMERAS:
                raise InvalidMetadataError(
                    f"unknown camera preset {self.camera!r} (known: {', '.join(CAMERAS)}); pass intrinsics")
            object.__setattr__(self, "intrinsics", CAMERAS[self.camera])
        if not (isinstance(self.cube_mm, (int, float)) and math.isfinite(self.cube_mm) and self.cube_mm > 0):
            raise InvalidMetadataError(f"cube_mm must be a positive number, got {self.cube_mm!r}")
        if not isinstance(self.crop_size, (int, np.integer)) or self.crop_size <= 0:
            raise InvalidMetadataError(f"crop_size must be a positive integer, got {self.crop_size!r}")
        if self.model_checksum is not None and not _SHA256.match(str(self.model_checksum)):
            raise InvalidMetadataError(f"model_checksum must be a lowercase sha256 hex digest or None, "
                                       f"got {self.model_checksum!r}")
        try:
            json.dumps(self.parameters, allow_nan=False)
        except (TypeError, ValueError) as error:
            raise InvalidMetadataError(f"parameters must be plain JSON: {error}") from None
        object.__setattr__(self, "seed", None if self.seed is None else int(self.seed))
        object.__setattr__(self, "cube_mm", float(self.cube_mm))
        object.__setattr__(self, "crop_size", int(self.crop_size))

    def to_attrs(self) -> dict[str, Any]:
        """The producer part of the group attributes (JSON)."""
        return {
            "producer": self.producer,
            "seed": self.seed,
            "camera": self.camera,
            "intrinsics": self.intrinsics.to_dict(),
            "cube_mm": self.cube_mm,
            "crop_size": self.crop_size,
            "model_checksum": self.model_checksum,
            "parameters": self.parameters,
            "synthgen_version": self.synthgen_version,
            "created": self.created,
            "joint_layout": self.joint_layout,
            "input_convention": self.input_convention.to_dict(),
        }

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StoreMetadata:
        try:
            return cls(
                producer=attrs["producer"], seed=attrs["seed"], camera=attrs["camera"],
                intrinsics=Intrinsics(**attrs["intrinsics"]), cube_mm=attrs["cube_mm"],
                crop_size=attrs["crop_size"], model_checksum=attrs["model_checksum"],
                parameters=attrs["parameters"], synthgen_version=attrs["synthgen_version"],
                created=attrs["created"], joint_layout=attrs.get("joint_layout", "hands2017"),  # older stores: canonical
                input_convention=_input_convention(attrs.get("input_convention")),
            )
        except (KeyError, TypeError) as error:
            raise NotAStoreError(f"store attributes are incomplete or malformed: {error!r}") from None


def _input_convention(entry: Any) -> InputConvention:
    """The store's input convention; stores written before stores carried one are synthgen's."""
    try:
        return InputConvention.from_dict(entry)
    except ValueError as error:
        raise InvalidMetadataError(f"input_convention: {error}") from None


def store_attrs(metadata: StoreMetadata, *, num_samples: int, chunk_size: int, read_chunk_size: int,
                arrays: dict[str, dict], complete: bool) -> dict[str, Any]:
    """All group attributes: the conventions that make the store self-describing, then the
    producer's metadata, then the layout and completion state."""
    return {
        "schema_version": SCHEMA_VERSION,
        "joint_names": list(LAYOUTS[metadata.joint_layout].joint_names),
        "units": UNITS,
        "coordinate_system": COORDINATE_SYSTEM,
        "normalisation": _normalisation_attrs(metadata),
        **metadata.to_attrs(),
        "layout": {"chunk_size": chunk_size, "read_chunk_size": read_chunk_size, "arrays": arrays},
        "num_samples": num_samples,
        "complete": complete,
    }


def _normalisation_attrs(metadata: StoreMetadata) -> dict[str, Any]:
    """How to read the stored depth: its convention's definition and, for metric conventions,
    the formula back to millimetres."""
    convention = metadata.input_convention.depth
    attrs: dict[str, Any] = {"convention": convention, "text": DEPTH_CONVENTIONS[convention], "background": BACKGROUND,
                             "depth_scale_mm": metadata.cube_mm / 2, "depth_dtype": DEPTH_DTYPE}
    if metadata.input_convention.metric:
        attrs.update(depth_offset="center[:, 2]",
                     depth_mm="depth * depth_scale_mm + center[:, 2]; depth >= background - 1e-3 -> 0 (no data)",
                     max_quantisation_error_mm=depth_max_error_mm(metadata.cube_mm))
    else:
        attrs.update(depth_mm="not recoverable: the depth is relative to the crop's nearest pixel",
                     max_quantisation_error_mm=None)
    return attrs


# --- one batch of samples ------------------------------------------------------------------


def _as_float32(name: str, value: Any) -> np.ndarray:
    try:
        return np.ascontiguousarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InvalidBatchError(f"{name} is not numeric: {error}") from None


def _require_finite(name: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InvalidBatchError(f"{name} has {bad} NaN/inf value(s)")


@dataclass
class SampleBatch:
    """n samples as the store holds them; the unit every producer hands to the writer.

    depth:  (n, S, S) float32, normalised crop depth in [-1, 1], background +1
    pose:   (n, J, 3) float32, mm camera coordinates, J joints in `joint_layout`
    center: (n, 3) float32, mm crop centre (z > 0)
    latent: (n, D) float32 or None
    joint_layout: a key of conventions.LAYOUTS (canonical by default); the writer refuses a
            batch whose layout is not its store's

    Inputs are coerced to contiguous float32 and checked, so a bad producer fails here with
    the array's name rather than as silent NaNs in a 100k-sample store.
    """

    depth: np.ndarray
    pose: np.ndarray
    center: np.ndarray
    latent: np.ndarray | None = None
    joint_layout: str = "hands2017"

    def __post_init__(self) -> None:
        if self.joint_layout not in LAYOUTS:
            raise InvalidBatchError(f"unknown joint layout {self.joint_layout!r} (known: {', '.join(LAYOUTS)})")
        self.depth = _as_float32("depth", self.depth)
        self.pose = _as_float32("pose", self.pose)
        self.center = _as_float32("center", self.center)
        n = len(self.depth) if self.depth.ndim else 0
        if self.depth.ndim != 3 or self.depth.shape[1] != self.depth.shape[2]:
            raise InvalidBatchError(f"depth must be (n, S, S), got shape {self.depth.shape}")
        joints = LAYOUTS[self.joint_layout].num_joints
        if self.pose.shape != (n, joints, 3):
            raise InvalidBatchError(f"pose must be ({n}, {joints}, 3), got shape {self.pose.shape} "
                                    f"({self.joint_layout} joints)")
        if self.center.shape != (n, 3):
            raise InvalidBatchError(f"center must be ({n}, 3), got shape {self.center.shape}")
        # min/max propagate NaN, so this one pass also rejects NaN and inf.
        if n and not (self.depth.min() >= -1.0 and self.depth.max() <= 1.0):
            _require_finite("depth", self.depth)
            raise InvalidBatchError(
                f"depth must be normalised to [-1, 1], got [{self.depth.min():.4g}, {self.depth.max():.4g}]")
        _require_finite("pose", self.pose)
        _require_finite("center", self.center)
        if n and self.center[:, 2].min() <= 0:
            raise InvalidBatchError(f"center z must be > 0 mm (in front of the camera), "
                                    f"got {self.center[:, 2].min():.4g}")
        if self.latent is not None:
            self.latent = _as_float32("latent", self.latent)
            if self.latent.ndim != 2 or len(self.latent) != n:
                raise InvalidBatchError(f"latent must be ({n}, D), got shape {self.latent.shape}")
            _require_finite("latent", self.latent)

    def __len__(self) -> int:
        return len(self.depth)
