"""Write a hand store: the one writer every producer (renderer, sampler, walk, ...) uses.

Crash safety: a store is written into `<path>.incomplete/` and only `finalize()` renames it
to `<path>`, so a reader never sees half a dataset and a failed run never destroys an old
store (with `overwrite=True` the old one is removed only at that moment).

Many processes: every call to `write` covers whole chunks (one Zarr shard file per array), and
all state lives on disk (the Zarr arrays and one empty marker file per finished chunk under
`.progress/`), so workers that each `open_existing` the working directory and write disjoint
chunk ranges never touch the same file. `missing_chunks()` tells a resumed run what is left to do.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from synthgen.conventions import BACKGROUND, NUM_JOINTS
from synthgen.data.schema import (
    DEFAULT_CHUNK_SIZE,
    DEPTH_DTYPE,
    INCOMPLETE_SUFFIX,
    LATENT_DIM,
    PROGRESS_DIR,
    READ_CHUNK_SIZE,
    ZSTD_LEVEL,
    ChunkAlignmentError,
    IncompleteStoreError,
    InvalidBatchError,
    InvalidMetadataError,
    NotAStoreError,
    SampleBatch,
    StoreExistsError,
    StoreLocationError,
    StoreMetadata,
    check_schema_version,
    chunk_marker,
    missing_chunks,
    store_attrs,
    working_path_for,
)


def _array_specs(num_samples: int, crop_size: int, chunk_size: int, read_chunk_size: int,
                 latent_dim: int | None) -> dict[str, dict]:
    """Shape, dtype, sharding and axis names of every array; unwritten samples read as fill.

    Every array is split along N only, into shards of `chunk_size` samples (one file each:
    the unit one writer owns) holding inner chunks of `read_chunk_size` samples (the unit a
    reader decodes).

    Depth fills with background and the float arrays with NaN, so a sample that was never
    written is recognisable in an incomplete store instead of looking like a hand at 0 mm.
    """
    specs = {
        "depth": {"shape": (num_samples, crop_size, crop_size), "dtype": DEPTH_DTYPE, "fill_value": BACKGROUND,
                  "dimension_names": ("sample", "v", "u")},
        "pose": {"shape": (num_samples, NUM_JOINTS, 3), "dtype": "float32", "fill_value": float("nan"),
                 "dimension_names": ("sample", "joint", "xyz")},
        "center": {"shape": (num_samples, 3), "dtype": "float32", "fill_value": float("nan"),
                   "dimension_names": ("sample", "xyz")},
    }
    if latent_dim is not None:
        specs["latent"] = {"shape": (num_samples, latent_dim), "dtype": "float32", "fill_value": float("nan"),
                           "dimension_names": ("sample", "latent")}
    for spec in specs.values():
        spec["shards"] = (chunk_size,) + spec["shape"][1:]
        spec["chunks"] = (read_chunk_size,) + spec["shape"][1:]
    return specs


class StoreWriter:
    """Writes samples into one store's working directory; use `create` or `open_existing`."""

    def __init__(self, working_path: Path, group: zarr.Group, overwrite: bool) -> None:
        self.working_path = working_path
        self.path = working_path.with_name(working_path.name[: -len(INCOMPLETE_SUFFIX)])
        self._group = group
        self._overwrite = overwrite
        attrs = group.attrs.asdict()
        check_schema_version(attrs, working_path)
        self.metadata = StoreMetadata.from_attrs(attrs)
        self.num_samples: int = attrs["num_samples"]
        self.chunk_size: int = attrs["layout"]["chunk_size"]
        self.num_chunks = -(-self.num_samples // self.chunk_size)
        self._arrays = {name: group[name] for name in ("depth", "pose", "center", "latent") if name in group}

    @classmethod
    def create(cls, path: str | Path, num_samples: int, metadata: StoreMetadata, *, with_latent: bool = False,
               latent_dim: int = LATENT_DIM, overwrite: bool = False,
               chunk_size: int = DEFAULT_CHUNK_SIZE) -> StoreWriter:
        """Start a new store of `num_samples` samples at `path` (written to `<path>.incomplete/`).

        Refuses an existing `path` (unless `overwrite`, which replaces it only at `finalize`)
        and an unfinished run's working directory (resume it with `open_existing`, or pass
        `overwrite` to discard it) before writing anything.
        """
        path = Path(path)
        working = working_path_for(path)
        if path.exists() and not overwrite:
            raise StoreExistsError(f"{path} already exists; pass --overwrite to replace it")
        if working.exists() and not overwrite:
            raise StoreExistsError(f"{working} holds an unfinished run; resume it (--resume) or pass --overwrite to discard it")
        if not isinstance(metadata, StoreMetadata):
            raise InvalidMetadataError(f"metadata must be a StoreMetadata, got {type(metadata).__name__}")
        for name, value in (("num_samples", num_samples), ("chunk_size", chunk_size), ("latent_dim", latent_dim)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise InvalidMetadataError(f"{name} must be a positive integer, got {value!r}")
        read_chunk_size = min(READ_CHUNK_SIZE, int(chunk_size))
        if chunk_size % read_chunk_size:
            raise InvalidMetadataError(f"chunk_size must be a multiple of {READ_CHUNK_SIZE}, got {chunk_size}")
        if working.exists():
            shutil.rmtree(working)
        try:
            working.mkdir(parents=True)
        except OSError as error:
            raise StoreLocationError(f"cannot create {working}: {error.strerror}") from None

        specs = _array_specs(int(num_samples), metadata.crop_size, int(chunk_size), read_chunk_size,
                             latent_dim if with_latent else None)
        compressor = ZstdCodec(level=ZSTD_LEVEL)
        arrays = {name: {"dtype": spec["dtype"], "shards": list(spec["shards"]), "chunks": list(spec["chunks"]),
                         "compressor": compressor.to_dict()} for name, spec in specs.items()}
        attrs = store_attrs(metadata, num_samples=int(num_samples), chunk_size=int(chunk_size),
                            read_chunk_size=read_chunk_size, arrays=arrays, complete=False)
        group = zarr.open_group(str(working), mode="w-", zarr_format=3, attributes=attrs)
        for name, spec in specs.items():
            group.create_array(name, compressors=[compressor], **spec)
        (working / PROGRESS_DIR).mkdir()
        return cls(working, group, overwrite)

    @classmethod
    def open_existing(cls, path: str | Path, *, overwrite: bool = False) -> StoreWriter:
        """Reopen an unfinished store, in a worker process or to resume a crashed run.

        `path` is the working directory `<path>.incomplete` or the final `<path>` it belongs to;
        `overwrite` is as for `create`, for the process that will `finalize`.
        """
        path = Path(path)
        working = path if path.name.endswith(INCOMPLETE_SUFFIX) else working_path_for(path)
        if not (working / PROGRESS_DIR).is_dir():
            finished = working.with_name(working.name[: -len(INCOMPLETE_SUFFIX)])
            if finished.exists() and not working.exists():
                raise StoreExistsError(f"{finished} is already finished; there is nothing to resume")
            raise NotAStoreError(f"{working} is not an unfinished synthgen store")
        return cls(working, zarr.open_group(str(working), mode="r+", zarr_format=3), overwrite)

    def chunk_bounds(self, chunk: int) -> tuple[int, int]:
        """Sample range [start, stop) of chunk `chunk`: the unit a producer writes."""
        if not 0 <= chunk < self.num_chunks:
            raise ChunkAlignmentError(f"chunk {chunk} out of range 0..{self.num_chunks - 1}")
        start = chunk * self.chunk_size
        return start, min(start + self.chunk_size, self.num_samples)

    def write(self, start: int, batch: SampleBatch) -> None:
        """Write samples [start, start + len(batch)), which must be whole chunks, then mark them done."""
        stop = start + len(batch)
        if start < 0 or stop > self.num_samples or start % self.chunk_size:
            raise ChunkAlignmentError(f"samples [{start}, {stop}) do not start a chunk of {self.chunk_size} "
                                      f"inside 0..{self.num_samples}")
        if stop % self.chunk_size and stop != self.num_samples:
            raise ChunkAlignmentError(f"samples [{start}, {stop}) end inside a chunk of {self.chunk_size}; "
                                      f"write whole chunks")
        self._check_matches_store(batch)
        self._arrays["depth"][start:stop] = batch.depth.astype(DEPTH_DTYPE)
        self._arrays["pose"][start:stop] = batch.pose
        self._arrays["center"][start:stop] = batch.center
        if batch.latent is not None:
            self._arrays["latent"][start:stop] = batch.latent
        # Markers last: a crash mid-write leaves the chunk missing, and a resume rewrites it.
        for chunk in range(start // self.chunk_size, -(-stop // self.chunk_size)):
            chunk_marker(self.working_path, chunk).touch()

    def _check_matches_store(self, batch: SampleBatch) -> None:
        depth_shape = self._arrays["depth"].shape[1:]
        if batch.depth.shape[1:] != depth_shape:
            raise InvalidBatchError(f"depth crops are {batch.depth.shape[1:]}, the store holds {depth_shape}")
        latent = self._arrays.get("latent")
        if latent is None and batch.latent is not None:
            raise InvalidBatchError("the batch has a latent but the store was created without one")
        if latent is not None and batch.latent is None:
            raise InvalidBatchError("the store was created with a latent array and the batch has none")
        if latent is not None and batch.latent.shape[1] != latent.shape[1]:
            raise InvalidBatchError(f"latent has {batch.latent.shape[1]} dimensions, the store holds {latent.shape[1]}")

    def missing_chunks(self) -> list[int]:
        """Chunks not yet written by any process (what a resumed run still has to do)."""
        return missing_chunks(self.working_path, self.num_chunks)

    def finalize(self) -> Path:
        """Mark the store complete and move it to its final path; returns that path.

        With `overwrite`, an existing store is moved aside, the new one renamed into place and
        only then the old one deleted, so a crash in between leaves `<path>.replaced-*` behind,
        never no store at all. A crash before the rename leaves a working directory that
        `open_existing(...).finalize()` completes.
        """
        missing = self.missing_chunks()
        if missing:
            raise IncompleteStoreError(f"{self.working_path}: {len(missing)} of {self.num_chunks} chunks not written "
                                       f"(first missing: {missing[0]})")
        if self.path.exists() and not self._overwrite:
            raise StoreExistsError(f"{self.path} already exists; pass --overwrite to replace it")
        self._group.attrs.update({"complete": True})
        if self.path.exists():
            replaced = self.path.with_name(f"{self.path.name}.replaced-{uuid.uuid4().hex[:8]}")
            self.path.rename(replaced)
            self.working_path.rename(self.path)
            if replaced.is_dir():
                shutil.rmtree(replaced)
            else:
                replaced.unlink()
        else:
            self.working_path.rename(self.path)
        shutil.rmtree(self.path / PROGRESS_DIR)
        return self.path
