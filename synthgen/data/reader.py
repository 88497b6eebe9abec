"""Read a hand store and turn its samples back into metric depth and full-frame pixels.

Everything here un-normalises from the store's own attributes (intrinsics, cube, crop size)
through synthgen.hand.camera, so a store stays usable without the code or the run that made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from synthgen.conventions import BACKGROUND, InputConvention, Intrinsics
from synthgen.data.schema import (
    CHECKSUMS_ATTR,
    CorruptStoreError,
    IncompleteStoreError,
    InvalidBatchError,
    NotAStoreError,
    SampleBatch,
    SampleIndexError,
    StoreMetadata,
    check_schema_version,
    missing_chunks,
    shard_path,
    working_path_for,
)
from synthgen.errors import InputError
from synthgen.hand.camera import crop_intrinsics, crop_uv_to_frame, denormalize_depth, project

ARRAY_NAMES = ("depth", "pose", "center", "latent")


#: Above this many separate spans, one integer-indexed read beats a slice read per span.
MAX_SLICE_SPANS = 16


def _take(array: zarr.Array, wanted: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """array[wanted][inverse] for sorted unique `wanted`.

    Zarr's integer (orthogonal) indexing is ~15x slower than a slice on contiguous samples,
    but a slice read costs ~2 ms of overhead. So indices closer than one read chunk are merged
    into spans, each read as a slice, unless the indices are so scattered that integer
    indexing (each touched chunk decoded once, in one call) is cheaper.
    """
    if len(wanted) == 0:
        return array[0:0]
    breaks = np.flatnonzero(np.diff(wanted) >= array.chunks[0]) + 1
    if len(breaks) >= MAX_SLICE_SPANS:
        return array.oindex[wanted][inverse]
    parts = []
    for span in np.split(wanted, breaks):
        first = int(span[0])
        parts.append(array[first:int(span[-1]) + 1][span - first])
    return np.concatenate(parts)[inverse]


class HandStore:
    """An opened store: its arrays (Zarr, read lazily), attributes and un-normalising helpers."""

    def __init__(self, path: Path, group: zarr.Group) -> None:
        self.path = path
        self.attrs: dict[str, Any] = group.attrs.asdict()
        self.metadata = StoreMetadata.from_attrs(self.attrs)
        self.arrays: dict[str, zarr.Array] = {name: group[name] for name in ARRAY_NAMES if name in group}
        self.depth: zarr.Array = self.arrays["depth"]
        self.pose: zarr.Array = self.arrays["pose"]
        self.center: zarr.Array = self.arrays["center"]
        self.latent: zarr.Array | None = self.arrays.get("latent")
        self.num_samples: int = self.attrs["num_samples"]
        self.chunk_size: int = self.attrs["layout"]["chunk_size"]
        self.num_chunks = -(-self.num_samples // self.chunk_size)
        self.complete: bool = self.attrs["complete"]

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"HandStore({str(self.path)!r}, {self.num_samples} samples, {self.metadata.producer}, {state})"

    @property
    def camera(self) -> Intrinsics:
        """The full-frame sensor the crops were cut from."""
        return self.metadata.intrinsics

    @property
    def joint_layout(self) -> str:
        """Order and number of the stored joints: a key of conventions.LAYOUTS."""
        return self.metadata.joint_layout

    @property
    def input_convention(self) -> InputConvention:
        """How the crops were cut, centred and normalised (conventions.InputConvention)."""
        return self.metadata.input_convention

    def _metric_depth(self, depth: np.ndarray, center_z: np.ndarray) -> np.ndarray:
        """Stored depth → mm; InputError for a convention that does not keep absolute depth."""
        if not self.input_convention.metric:
            raise InputError(f"{self.path}: the crops are {self.input_convention.depth} depth, relative to each "
                             f"crop's nearest pixel; depth in mm cannot be recovered from them")
        return denormalize_depth(depth, center_z, self.metadata.cube_mm)

    def missing_chunks(self) -> list[int]:
        """Chunks not written yet; always empty for a complete store."""
        return [] if self.complete else missing_chunks(self.path, self.num_chunks)

    def read(self, index: int | slice | np.ndarray | list[int]) -> SampleBatch:
        """Samples at an index, slice or index array, in the order asked; depth as float32.

        Indices are read sorted and de-duplicated, so each chunk is decoded once per call.
        """
        wanted, arrays = self._rows(index, list(self.arrays))
        try:
            return SampleBatch(depth=arrays["depth"].astype(np.float32), pose=arrays["pose"],
                               center=arrays["center"], latent=arrays.get("latent"), joint_layout=self.joint_layout)
        except InvalidBatchError as error:  # values no writer lets through: the files were altered
            raise CorruptStoreError(f"{self.path}: samples {_span(wanted)} hold invalid values ({error}); "
                                    f"`synthgen verify` checks the whole store") from None

    def read_depth(self, index: int | slice | np.ndarray | list[int]) -> np.ndarray:
        """Depth alone at an index, slice or index array, in the order asked, as stored (float16),
        checked as `read_array` checks it."""
        wanted, arrays = self._rows(index, ["depth"])
        return self._checked("depth", arrays["depth"], f"depth of samples {_span(wanted)}")

    def read_array(self, name: str) -> np.ndarray:
        """One whole array (depth as stored, float16), checked as `read` checks a batch."""
        if name not in self.arrays:
            raise SampleIndexError(f"{self.path} has no array {name!r} (it has {', '.join(self.arrays)})")
        if not self.complete and self.missing_chunks():
            self._require_written(np.arange(self.num_samples))
        return self._checked(name, self._decode(name, lambda array: array[:]), name)

    def _rows(self, index, names: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(the sorted unique sample indices read, {name: values in the order asked}) of `index`."""
        indices = self._indices(index)
        if not self.complete:
            self._require_written(indices)
        wanted, inverse = np.unique(indices, return_inverse=True)
        return wanted, {name: self._decode(name, lambda array: _take(array, wanted, inverse)) for name in names}

    def _checked(self, name: str, values: np.ndarray, what: str) -> np.ndarray:
        """`values` of array `name`, refused if no writer could have written them: depth outside
        [-1, 1] (min/max propagate NaN, so NaN too), other arrays non-finite."""
        if values.size:
            valid = bool(values.min() >= -1 and values.max() <= 1) if name == "depth" else np.isfinite(values).all()
            if not valid:
                holds = "values outside [-1, 1] (or NaN)" if name == "depth" else "NaN/inf values"
                raise CorruptStoreError(f"{self.path}: {what} holds {holds}; `synthgen verify` checks the whole store")
        return values

    def _decode(self, name: str, read) -> np.ndarray:
        """`read(array)` with what Zarr raises on a damaged chunk turned into one clear line."""
        try:
            return read(self.arrays[name])
        except (RuntimeError, ValueError, OSError) as error:  # zstd, shard index crc32c, short reads
            raise CorruptStoreError(f"{self.path}: cannot decode {name}: {error}; the store is damaged "
                                    f"(`synthgen verify` names the chunk)") from None

    def _indices(self, index: int | slice | np.ndarray | list[int]) -> np.ndarray:
        if isinstance(index, slice):
            return np.arange(*index.indices(self.num_samples))
        indices = np.atleast_1d(np.asarray(index))
        if indices.ndim != 1 or not (indices.size == 0 or np.issubdtype(indices.dtype, np.integer)):
            raise SampleIndexError(f"index must be an int, a slice or a 1-D integer array, got {index!r}")
        indices = indices.astype(np.int64)
        if indices.size and (indices.min() < -self.num_samples or indices.max() >= self.num_samples):
            raise SampleIndexError(f"index out of range for {self.num_samples} samples")
        return np.where(indices < 0, indices + self.num_samples, indices)

    def _require_written(self, indices: np.ndarray) -> None:
        unwritten = set(np.unique(indices // self.chunk_size).tolist()) & set(self.missing_chunks())
        if unwritten:
            raise IncompleteStoreError(f"{self.path}: samples asked for lie in unwritten chunk(s) "
                                       f"{sorted(unwritten)[:5]}")

    def _sample(self, index: int) -> SampleBatch:
        if not isinstance(index, (int, np.integer)):
            raise SampleIndexError(f"expected one sample index, got {index!r}")
        return self.read(int(index))

    def crop_camera(self, index: int) -> Intrinsics:
        """The virtual pinhole camera whose image is sample `index`'s depth crop."""
        center = self._sample(index).center[0]
        return crop_intrinsics(center, self.metadata.cube_mm, self.metadata.crop_size)

    def depth_mm(self, index: int) -> np.ndarray:
        """(S, S) float32 metric depth (z, mm) of one crop; 0 where there is no data."""
        sample = self._sample(index)
        return self._metric_depth(sample.depth[0], sample.center[0, 2])

    def uvd_full_frame(self, index: int) -> np.ndarray:
        """(J, 3) joints of one sample as full-frame (u, v) pixels and depth d = z in mm."""
        return project(self._sample(index).pose[0], self.camera)

    def depth_uvd_full_frame(self, index: int) -> np.ndarray:
        """(M, 3) the crop's M foreground pixels as full-frame (u, v) pixels and depth d in mm.

        Row-major order of the crop pixels; this places a crop back into the sensor image.
        """
        sample = self._sample(index)
        depth = self._metric_depth(sample.depth[0], sample.center[0, 2])
        rows, cols = np.nonzero(depth > 0)
        crop_uv = np.stack([cols, rows], axis=-1).astype(np.float64)
        frame_uv = crop_uv_to_frame(crop_uv, sample.center[0], self.camera, self.metadata.cube_mm,
                                    self.metadata.crop_size)
        return np.concatenate([frame_uv, depth[rows, cols, None].astype(np.float64)], axis=-1)


def open_store(path: str | Path, allow_incomplete: bool = False) -> HandStore:
    """Open a store for reading; refuses non-stores, other schema versions and unfinished stores.

    With `allow_incomplete`, `path` may also be a store whose run has not finalised yet (its
    `<path>.incomplete` working directory is opened); only its written chunks can be read.
    """
    path = Path(path)
    working = working_path_for(path)
    if not path.exists() and working.exists():
        if not allow_incomplete:
            raise IncompleteStoreError(f"{path} is not finished yet (its run is writing {working}); "
                                       f"resume the run or open it with allow_incomplete")
        path = working
    if not (path / "zarr.json").is_file():
        raise NotAStoreError(f"{path} is not a Zarr store" if path.exists() else f"{path} does not exist")
    try:
        group = zarr.open_group(str(path), mode="r", zarr_format=3)
    except (ValueError, TypeError, FileNotFoundError, KeyError, AttributeError) as error:  # zarr on malformed JSON
        raise NotAStoreError(f"{path} is not a Zarr v3 group: {error}") from None
    attrs = group.attrs.asdict()
    check_schema_version(attrs, path)
    if not attrs.get("complete", False) and not allow_incomplete:
        raise IncompleteStoreError(f"{path} is incomplete (its run did not finalise); "
                                   f"open it with allow_incomplete to read the written chunks")
    try:  # reading an array's zarr.json: a damaged one raises JSON, Unicode or Zarr validation errors
        missing_arrays = [name for name in ARRAY_NAMES[:3] if name not in group]
        if missing_arrays:
            raise NotAStoreError(f"{path} lacks the array(s) {', '.join(missing_arrays)}")
        store = HandStore(path, group)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        if isinstance(error, NotAStoreError):
            raise
        raise NotAStoreError(f"{path}: store metadata is damaged or malformed "
                             f"({type(error).__name__}: {' '.join(str(error).split())[:200]})") from None
    if store.complete:
        _require_chunk_files(store, attrs.get(CHECKSUMS_ATTR))
    return store


def _span(indices: np.ndarray) -> str:
    return f"{indices[0]}..{indices[-1]}" if len(indices) else "(none)"


def _require_chunk_files(store: HandStore, checksums: Any) -> None:
    """A complete store has a file for every chunk its checksums name (one stat each, ~1 ms per
    100 chunks), so a copy that lost files is refused instead of reading as fill values."""
    if not isinstance(checksums, dict) or not isinstance(checksums.get("arrays"), dict):
        return  # written before checksums existed: `synthgen verify` still checks the values
    for name, digests in checksums["arrays"].items():
        if name not in store.arrays or not isinstance(digests, list):
            continue
        for chunk, digest in enumerate(digests):
            file = shard_path(store.path, store.arrays[name], chunk)
            if digest is not None and not (file.is_file() and file.stat().st_size):
                raise CorruptStoreError(f"{store.path}: {name} chunk {chunk} is missing ({file}); the store is "
                                        f"damaged (`synthgen verify` lists every problem)")


# --- description for `synthgen info` -------------------------------------------------------

#: describe() decodes at most this many chunks, so it is as fast on 100k samples as on 1k.
STATISTICS_CHUNKS = 4


def _codec_name(codec: Any) -> str:
    spec = codec.to_dict()
    options = ", ".join(f"{key}={value}" for key, value in spec.get("configuration", {}).items())
    return f"{spec['name']}({options})"


def _directory_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file())


def _statistics_indices(store: HandStore, max_samples: int) -> np.ndarray:
    """Up to `max_samples` indices: runs at the start of a few evenly spaced written chunks, so
    only those few are decoded (evenly spaced single samples would decode every chunk)."""
    missing = set(store.missing_chunks())
    written = [chunk for chunk in range(store.num_chunks) if chunk not in missing]
    if not written or max_samples <= 0:
        return np.zeros(0, np.int64)
    count = min(len(written), STATISTICS_CHUNKS)
    picked = [written[round(k * (len(written) - 1) / max(count - 1, 1))] for k in range(count)]
    per_chunk = max(1, max_samples // count)
    ranges = []
    for chunk in picked:
        start = chunk * store.chunk_size
        ranges.append(np.arange(start, min(start + store.chunk_size, store.num_samples, start + per_chunk)))
    return np.concatenate(ranges)[:max_samples]


def _min_max(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "max": float(values.max())}


def describe(store: HandStore, max_samples: int = 1024) -> dict[str, Any]:
    """Counts, layout, sizes, metadata and statistics of a store, as plain JSON-able data.

    Statistics come from at most `max_samples` samples in a few evenly spaced chunks, so the
    cost is bounded whatever the store's size.
    """
    arrays = {}
    for name, array in store.arrays.items():
        stored = array.nbytes_stored()
        arrays[name] = {
            "shape": list(array.shape), "dtype": str(array.dtype), "chunks": list(array.chunks),
            "shards": None if array.shards is None else list(array.shards),
            "compressors": [_codec_name(codec) for codec in array.compressors],
            "bytes": int(array.nbytes), "stored_bytes": int(stored),
            "compression_ratio": array.nbytes / stored if stored else None,
        }
    raw_bytes = sum(info["bytes"] for info in arrays.values())
    stored_bytes = _directory_bytes(store.path)
    indices = _statistics_indices(store, max_samples)
    return {
        "path": str(store.path),
        "complete": store.complete,
        "schema_version": store.attrs["schema_version"],
        "num_samples": store.num_samples,
        "chunk_size": store.chunk_size,
        "num_chunks": store.num_chunks,
        "missing_chunks": len(store.missing_chunks()),
        "metadata": store.metadata.to_attrs(),
        "max_quantisation_error_mm": store.attrs["normalisation"]["max_quantisation_error_mm"],
        "arrays": arrays,
        "raw_bytes": raw_bytes,
        "stored_bytes": stored_bytes,
        "compression_ratio": raw_bytes / stored_bytes if stored_bytes else None,
        "statistics": _statistics(store, store.read(indices)) if len(indices) else None,
    }


def _statistics(store: HandStore, batch: SampleBatch) -> dict[str, Any]:
    foreground = batch.depth < BACKGROUND - 1e-3
    extent = batch.pose.max(axis=1) - batch.pose.min(axis=1)  # (n, 3) per-sample bounding box
    stats = {
        "samples": len(batch),
        "foreground_fraction": float(foreground.mean()),
        "pose_extent_mm": {"median": np.median(extent, axis=0).tolist(), "max": extent.max(axis=0).tolist()},
        "center_z_mm": _min_max(batch.center[:, 2]),
        "depth": _min_max(batch.depth),
        "pose_mm": _min_max(batch.pose),
        "center_mm": _min_max(batch.center),
    }
    if batch.latent is not None:
        stats["latent"] = _min_max(batch.latent)
    return stats


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"


def format_description(description: dict[str, Any]) -> str:
    """`describe()` output as the aligned text `synthgen info` prints."""
    d, meta = description, description["metadata"]
    cam = meta["intrinsics"]
    state = "complete" if d["complete"] else f"INCOMPLETE, {d['missing_chunks']} of {d['num_chunks']} chunks missing"
    lines = [
        f"store       {d['path']}  ({state}, schema v{d['schema_version']})",
        f"samples     {d['num_samples']:,} in {d['num_chunks']} chunk(s) of {d['chunk_size']}",
        f"producer    {meta['producer']}  seed={meta['seed']}  "
        f"model={meta['model_checksum'] or ('none (mesh)' if meta['producer'] == 'render' else 'none')}",
        f"            synthgen {meta['synthgen_version']}, created {meta['created']}",
        f"camera      {meta['camera']}: fx={cam['fx']} fy={cam['fy']} cx={cam['cx']} cy={cam['cy']} "
        f"{cam['width']}x{cam['height']}",
        f"crop        {meta['crop_size']}x{meta['crop_size']} of a {meta['cube_mm']:g} mm cube, "
        + (f"depth error <= {d['max_quantisation_error_mm']:.4f} mm" if d["max_quantisation_error_mm"] is not None
           else "relative depth (no mm)"),
        f"input       {InputConvention.from_dict(meta['input_convention']).describe()}",
        f"joints      {meta['joint_layout']} ({d['arrays']['pose']['shape'][1]} joints)",
    ]
    for name, info in d["arrays"].items():
        ratio = f"{info['compression_ratio']:.1f}x" if info["compression_ratio"] else "-"
        split = f"shards {tuple(info['shards'])} of " if info["shards"] else ""
        lines.append(f"{name:<11} {tuple(info['shape'])} {info['dtype']}, {split}chunks {tuple(info['chunks'])}, "
                     f"{'+'.join(info['compressors']) or 'uncompressed'}  {_megabytes(info['bytes'])} -> "
                     f"{_megabytes(info['stored_bytes'])} ({ratio})")
    total_ratio = f"{d['compression_ratio']:.1f}x" if d["compression_ratio"] else "-"
    lines.append(f"on disk     {_megabytes(d['stored_bytes'])} (raw {_megabytes(d['raw_bytes'])}, {total_ratio})")
    if meta["parameters"]:
        lines.append(f"parameters  {json.dumps(meta['parameters'], sort_keys=True)}")
    stats = d["statistics"]
    if stats:
        extent = ", ".join(f"{v:.0f}" for v in stats["pose_extent_mm"]["median"])
        lines += [
            f"statistics  over {stats['samples']} samples from up to {STATISTICS_CHUNKS} chunks:",
            f"            foreground {stats['foreground_fraction']:.1%} of pixels; "
            f"centre z {stats['center_z_mm']['min']:.0f}..{stats['center_z_mm']['max']:.0f} mm",
            f"            median hand extent x, y, z ({extent}) mm; "
            f"depth {stats['depth']['min']:.3f}..{stats['depth']['max']:.3f}; "
            f"pose {stats['pose_mm']['min']:.0f}..{stats['pose_mm']['max']:.0f} mm",
        ]
        if "latent" in stats:
            lines.append(f"            latent {stats['latent']['min']:.3g}..{stats['latent']['max']:.3g}")
    return "\n".join(lines)
