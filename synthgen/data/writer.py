"""Write a hand store: the one writer every producer (renderer, sampler, walk, ...) uses.

Crash safety: a store is written into `<path>.incomplete/` and only `finalize()` renames it
to `<path>`, so a reader never sees half a dataset and a failed run never destroys an old
store (with `overwrite=True` the old one is removed only at that moment).

Many processes: every call to `write` covers whole chunks (one Zarr shard file per array), and
all state lives on disk (the Zarr arrays and one marker file per finished chunk under
`.progress/`, holding that chunk's checksums), so workers that each `open_existing` the working
directory and write disjoint chunk ranges never touch the same file. `missing_chunks()` tells a
resumed run what is left to do.

Killed at any moment (`kill -9`), a run leaves one of these states, and `resume` finishes each
into the store an uninterrupted run writes, byte for byte:

    nothing at all, or a working directory without `.progress/`   creation never finished: start again
    working directory with `.progress/`, complete = false          write the chunks without a marker
    working directory, complete = true                             finalize was interrupted: finish it
    `<path>` itself                                                 done; nothing to do

Every file is replaced atomically (Zarr writes `*.partial` then renames; so do the markers),
so a killed write leaves at worst a stray `*.partial`, which `resume` deletes.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from synthgen.conventions import BACKGROUND, LAYOUTS
from synthgen.data.schema import (
    CHECKSUM_ALGORITHM,
    CHECKSUMS_ATTR,
    DEFAULT_CHUNK_SIZE,
    DEPTH_DTYPE,
    INCOMPLETE_SUFFIX,
    LATENT_DIM,
    MAX_CHUNKS,
    PROGRESS_DIR,
    READ_CHUNK_SIZE,
    ZSTD_LEVEL,
    ChunkAlignmentError,
    IncompleteStoreError,
    InvalidBatchError,
    InvalidMetadataError,
    NotAStoreError,
    SampleBatch,
    StoreAlreadyThereError,
    StoreExistsError,
    StoreLocationError,
    StoreMetadata,
    StoreWriteError,
    SynthgenDataError,
    UnfinishedStoreError,
    attributes_digest,
    check_schema_version,
    coordinate_values,
    file_sha256,
    missing_chunks,
    read_chunk_marker,
    shard_path,
    store_attrs,
    working_path_for,
    write_chunk_marker,
)
from synthgen.data.shards import ShardEncoder
from synthgen.memory import BufferPool
from synthgen.outputs import write_bytes_atomically


def _array_specs(num_samples: int, crop_size: int, chunk_size: int, read_chunk_size: int,
                 latent_dim: int | None, num_joints: int) -> dict[str, dict]:
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
        "pose": {"shape": (num_samples, num_joints, 3), "dtype": "float32", "fill_value": float("nan"),
                 "dimension_names": ("sample", "joint", "xyz")},
        "center": {"shape": (num_samples, 3), "dtype": "float32", "fill_value": float("nan"),
                   "dimension_names": ("sample", "xyz")},
    }
    if latent_dim is not None:
        specs["latent"] = {"shape": (num_samples, latent_dim), "dtype": "float32", "fill_value": float("nan"),
                           "dimension_names": ("sample", "latent_dim")}
    for spec in specs.values():
        spec["shards"] = (chunk_size,) + spec["shape"][1:]
        spec["chunks"] = (read_chunk_size,) + spec["shape"][1:]
    return specs


def _as_stored_depth(depth: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Depth in the store's dtype (float16), rounded to nearest even as numpy's astype does,
    into `out` (float16, depth's shape) if given.

    Through torch because numpy's float32 → float16 cast is scalar code: 43 ms for a 1024-crop
    chunk against 7 ms (vectorised) here. The bits are numpy's (tests/test_store.py compares every
    rounding boundary in [-1, 1]).
    """
    if depth.dtype == DEPTH_DTYPE:
        return depth
    import torch

    stored = np.empty(depth.shape, DEPTH_DTYPE) if out is None else out
    torch.from_numpy(stored).copy_(torch.from_numpy(np.ascontiguousarray(depth, np.float32)))
    return stored


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
        # Chunks are stored even when all fill: zarr's check for that (a NaN-aware comparison of
        # every float16 shard with its fill value) took half of a rendered chunk's write time,
        # and produced chunks are never all fill, so the files are the same.
        self._arrays = {name: group[name].with_config({"write_empty_chunks": True})
                        for name in ("depth", "pose", "center", "latent") if name in group}
        self._encoders = {name: ShardEncoder.for_array(array) for name, array in self._arrays.items()}
        # float16 depth for one write at a time, reused: a fresh 32 MiB per chunk went back to the
        # kernel when freed and was zeroed again at first touch (docs/performance.md, "Fresh pages").
        self._staging = BufferPool(1)

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
            raise StoreAlreadyThereError(path)
        if working.exists() and not overwrite:
            raise UnfinishedStoreError(working)
        if not isinstance(metadata, StoreMetadata):
            raise InvalidMetadataError(f"metadata must be a StoreMetadata, got {type(metadata).__name__}")
        for name, value in (("num_samples", num_samples), ("chunk_size", chunk_size), ("latent_dim", latent_dim)):
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise InvalidMetadataError(f"{name} must be a positive integer, got {value!r}")
        read_chunk_size = min(READ_CHUNK_SIZE, int(chunk_size))
        if chunk_size % read_chunk_size:
            raise InvalidMetadataError(f"chunk_size must be a multiple of {READ_CHUNK_SIZE}, got {chunk_size}")
        if -(-num_samples // chunk_size) > MAX_CHUNKS:
            raise InvalidMetadataError(f"{num_samples} samples in chunks of {chunk_size} make "
                                       f"{-(-num_samples // chunk_size)} chunks, more than {MAX_CHUNKS}; "
                                       f"use a larger chunk size")
        if working.exists():
            shutil.rmtree(working)
        try:
            working.mkdir(parents=True)
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):  # the place is fine, the disk is not
                raise StoreWriteError(f"cannot create {working}: {error.strerror}") from None
            raise StoreLocationError(f"cannot create {working}: {error.strerror}") from None
        try:
            return cls._create_in(working, int(num_samples), metadata, with_latent, int(latent_dim),
                                  int(chunk_size), read_chunk_size, overwrite)
        except OSError as error:  # disk full, quota, ...: nothing worth resuming was written yet
            shutil.rmtree(working, ignore_errors=True)
            raise StoreWriteError(f"cannot create {working}: {error.strerror or error}") from None

    @classmethod
    def _create_in(cls, working: Path, num_samples: int, metadata: StoreMetadata, with_latent: bool,
                   latent_dim: int, chunk_size: int, read_chunk_size: int, overwrite: bool) -> StoreWriter:
        """Arrays and attributes in a fresh working directory; `.progress/` last, so a directory
        without it is one whose creation was interrupted."""
        specs = _array_specs(num_samples, metadata.crop_size, chunk_size, read_chunk_size,
                             latent_dim if with_latent else None, LAYOUTS[metadata.joint_layout].num_joints)
        compressor = ZstdCodec(level=ZSTD_LEVEL)
        arrays = {name: {"dtype": spec["dtype"], "shards": list(spec["shards"]), "chunks": list(spec["chunks"]),
                         "compressor": compressor.to_dict()} for name, spec in specs.items()}
        attrs = store_attrs(metadata, num_samples=num_samples, chunk_size=chunk_size,
                            read_chunk_size=read_chunk_size, arrays=arrays, complete=False)
        group = zarr.open_group(str(working), mode="w-", zarr_format=3, attributes=attrs)
        for name, spec in specs.items():
            group.create_array(name, compressors=[compressor], **spec)
        _write_coordinates(group, metadata.joint_layout)
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
        if not (working / PROGRESS_DIR).is_dir() and not _marked_complete(working):
            finished = working.with_name(working.name[: -len(INCOMPLETE_SUFFIX)])
            if finished.exists() and not working.exists():
                raise StoreExistsError(f"{finished} is already finished; there is nothing to resume")
            raise NotAStoreError(f"{working} is not an unfinished synthgen store")
        return cls(working, zarr.open_group(str(working), mode="r+", zarr_format=3), overwrite)

    @classmethod
    def resume(cls, path: str | Path, num_samples: int, metadata: StoreMetadata, *, with_latent: bool = False,
               latent_dim: int = LATENT_DIM, chunk_size: int = DEFAULT_CHUNK_SIZE, overwrite: bool = False,
               ignore_parameters: tuple[str, ...] = ()) -> StoreWriter | None:
        """Continue the run that writes `path`, wherever a crash or `kill -9` stopped it.

        Takes the arguments of the `create` that started the run (`overwrite` included) and
        refuses (InputError) a store that another run started, comparing sizes, layout and every
        metadata field but `created` and the parameters named in `ignore_parameters` (e.g. a
        model's path, when its checksum is compared anyway). Returns a writer whose
        `missing_chunks()` are what is left (all of them when the run had not got as far as
        creating its store), or None when `path` is already the finished store of this run.
        """
        path = Path(path)
        working = working_path_for(path)
        if overwrite:  # an interrupted finalize's old store, moved aside to be deleted
            for replaced in path.parent.glob(f"{glob.escape(path.name)}.replaced-*"):
                if replaced.is_dir():
                    shutil.rmtree(replaced)
                else:
                    replaced.unlink()
        if path.exists() and not working.exists():
            try:
                _require_same_run(_group_attrs(path), path, num_samples, metadata, with_latent, latent_dim,
                                  chunk_size, ignore_parameters)
                return None
            except SynthgenDataError:
                if not overwrite:  # else: killed before it began to replace the old store
                    raise
        if working.exists() and ((working / PROGRESS_DIR).is_dir() or _marked_complete(working)):
            writer = cls.open_existing(working, overwrite=overwrite)
            _require_same_run(writer._group.attrs.asdict(), working, num_samples, metadata, with_latent, latent_dim,
                              chunk_size, ignore_parameters)
            for leftover in working.rglob("*.partial"):  # files a killed write never renamed into place
                leftover.unlink()
            return writer
        if working.exists():  # its creation was interrupted: nothing in it is worth keeping
            shutil.rmtree(working)
        return cls.create(path, num_samples, metadata, with_latent=with_latent, latent_dim=latent_dim,
                          chunk_size=chunk_size, overwrite=overwrite)

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
        staging = self._staging.take(batch.depth.shape, DEPTH_DTYPE)  # never touched if depth is float16
        columns = {"depth": _as_stored_depth(batch.depth, out=staging), "pose": batch.pose, "center": batch.center,
                   "latent": batch.latent}
        try:
            for chunk in range(start // self.chunk_size, -(-stop // self.chunk_size)):
                lo, hi = self.chunk_bounds(chunk)
                digests = {name: self._write_shard(name, chunk, columns[name][lo - start:hi - start])
                           for name in self._arrays}
                # Marker last: a crash mid-write leaves the chunk missing, and a resume rewrites it.
                write_chunk_marker(self.working_path, chunk, digests)
        except OSError as error:
            raise StoreWriteError(f"cannot write samples [{start}, {stop}) to {self.working_path}: "
                                  f"{error.strerror or error}; the chunks already written are kept for a resume"
                                  ) from None
        finally:
            self._staging.give_back(staging)  # encoded by now: the next write may overwrite it

    def _write_shard(self, name: str, chunk: int, data: np.ndarray) -> str | None:
        """Write chunk `chunk` of array `name` (its shard file); returns the file's sha256.

        A complete shard is encoded by `ShardEncoder` (zarr's bytes without zarr's asyncio
        overhead; synthgen.data.shards) and its digest taken from memory; a store's short last
        chunk, or an array of another layout, goes through zarr.
        """
        array, encoder = self._arrays[name], self._encoders[name]
        path = shard_path(self.working_path, array, chunk)
        if encoder is None or len(data) != encoder.shard_shape[0]:
            lo, _ = self.chunk_bounds(chunk)
            array[lo:lo + len(data)] = data
            return file_sha256(path)
        encoded = encoder.encode(np.asarray(data, encoder.dtype))
        path.parent.mkdir(parents=True, exist_ok=True)
        # Synced, so that the chunk marker written after its shards means they survive a power
        # loss; dropped from the page cache, since the writer never reads a shard back (digests
        # come from memory) and a 100k store would otherwise push 0.5 GB of other data out of it.
        write_bytes_atomically(path, encoded, sync=True, drop_from_cache=True)
        return hashlib.sha256(encoded).hexdigest()

    def _check_matches_store(self, batch: SampleBatch) -> None:
        depth_shape = self._arrays["depth"].shape[1:]
        if batch.depth.shape[1:] != depth_shape:
            raise InvalidBatchError(f"depth crops are {batch.depth.shape[1:]}, the store holds {depth_shape}")
        if batch.joint_layout != self.metadata.joint_layout:
            raise InvalidBatchError(f"the batch holds {batch.joint_layout} joints, the store "
                                    f"{self.metadata.joint_layout} joints")
        latent = self._arrays.get("latent")
        if latent is None and batch.latent is not None:
            raise InvalidBatchError("the batch has a latent but the store was created without one")
        if latent is not None and batch.latent is None:
            raise InvalidBatchError("the store was created with a latent array and the batch has none")
        if latent is not None and batch.latent.shape[1] != latent.shape[1]:
            raise InvalidBatchError(f"latent has {batch.latent.shape[1]} dimensions, the store holds {latent.shape[1]}")

    def missing_chunks(self) -> list[int]:
        """Chunks not yet written by any process (what a resumed run still has to do)."""
        if self._group.attrs.get("complete", False):
            return []  # an interrupted finalize: every chunk was written (its markers may be gone)
        return missing_chunks(self.working_path, self.num_chunks)

    def samples_missing(self) -> int:
        """How many samples the missing chunks hold."""
        return sum(stop - start for start, stop in map(self.chunk_bounds, self.missing_chunks()))

    def finalize(self) -> Path:
        """Mark the store complete, with its checksums, and move it to its final path; returns it.

        Steps, each atomic: (1) one attribute write sets complete = true and the checksums
        gathered from the chunk markers, (2) `.progress/` is deleted, (3) the arrays' metadata is
        consolidated into the group's (one file write), (4) the directory is renamed. A crash after
        (1) leaves a working directory marked complete, which `resume` finalizes from step (2).
        With `overwrite`, an existing store is moved aside, the new one renamed
        into place and only then the old one deleted, so a crash in between leaves
        `<path>.replaced-*` behind.
        """
        if self.path.exists() and not self._overwrite:
            raise StoreAlreadyThereError(self.path)
        if not self._group.attrs.get("complete", False):
            missing = self.missing_chunks()
            if missing:
                raise IncompleteStoreError(f"{self.working_path}: {len(missing)} of {self.num_chunks} chunks not "
                                           f"written (first missing: {missing[0]})")
            attrs = {**self._group.attrs.asdict(), "complete": True}
            try:
                # One metadata write: Attributes.update would write zarr.json once per key.
                self._group.update_attributes({"complete": True, CHECKSUMS_ATTR: self._checksums(attrs)})
            except OSError as error:
                raise StoreWriteError(f"cannot finalize {self.working_path}: {error.strerror or error}") from None
        shutil.rmtree(self.working_path / PROGRESS_DIR, ignore_errors=True)
        consolidate(self.working_path)
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
        return self.path

    def _checksums(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The "checksums" attribute: per array, the sha256 of each chunk's shard file (None: no
        file, the chunk is all fill), and the digest of every other attribute."""
        per_chunk = [read_chunk_marker(self.working_path, chunk) for chunk in range(self.num_chunks)]
        arrays = {}
        for name, array in self._arrays.items():
            # A marker written before checksums existed is empty: hash that file now.
            arrays[name] = [digests[name] if name in digests else file_sha256(shard_path(self.working_path, array, chunk))
                            for chunk, digests in enumerate(per_chunk)]
        array_metadata = {name: file_sha256(self.working_path / array.path / "zarr.json")
                          for name, array in self._arrays.items()}
        return {"algorithm": CHECKSUM_ALGORITHM,
                "of": "each array's shard file per chunk, each array's zarr.json, and the other attributes",
                "arrays": arrays, "array_metadata": array_metadata, "attributes": attributes_digest(attrs)}


def _write_coordinates(group: zarr.Group, joint_layout: str) -> None:
    """Label arrays for the joint and xyz axes, so xarray and friends index by name."""
    for name, values in coordinate_values(joint_layout).items():
        array = group.create_array(name, shape=(len(values),), dtype=str, dimension_names=(name,))
        array[:] = np.array(values, dtype=object)


def consolidate(path: Path) -> None:
    """Write every array's metadata into the group's zarr.json (one atomic write), so readers
    such as xarray open the store with a single read. Done once the store is complete."""
    with warnings.catch_warnings():  # consolidated metadata is a zarr-python convention, not yet in the v3 spec
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(path), zarr_format=3)


def _group_attrs(path: Path) -> dict[str, Any]:
    """A store directory's group attributes, read without Zarr (NotAStoreError if there are none)."""
    try:
        attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    except (OSError, ValueError, KeyError, TypeError):
        raise NotAStoreError(f"{path} exists and is not a synthgen store") from None
    if not isinstance(attrs, dict):
        raise NotAStoreError(f"{path} exists and is not a synthgen store")
    return attrs


def _marked_complete(working: Path) -> bool:
    """Whether a working directory's attributes say complete (an interrupted finalize)."""
    try:
        return _group_attrs(working).get("complete") is True
    except NotAStoreError:
        return False


def _require_same_run(attrs: dict[str, Any], where: Path, num_samples: int, metadata: StoreMetadata,
                      with_latent: bool, latent_dim: int, chunk_size: int, ignore_parameters: tuple[str, ...]) -> None:
    """A resumed run must be the run that started the store, or it would mix two datasets."""
    check_schema_version(attrs, where)
    old = StoreMetadata.from_attrs(attrs).to_attrs()
    new = json.loads(json.dumps(metadata.to_attrs()))  # tuples -> lists, as stored
    try:
        latent = attrs["layout"]["arrays"].get("latent", {}).get("shards", [None, None])[1]
        compared = [("num_samples", attrs["num_samples"], num_samples),
                    ("chunk_size", attrs["layout"]["chunk_size"], chunk_size),
                    ("latent_dim", latent, latent_dim if with_latent else None)]
    except (KeyError, TypeError, AttributeError, IndexError):
        raise NotAStoreError(f"{where}: its layout attributes are incomplete or malformed") from None
    compared += [(key, old[key], new[key]) for key in old if key not in ("created", "parameters")]
    params = sorted(set(old["parameters"]) | set(new["parameters"]))
    compared += [(f"parameter {key}", old["parameters"].get(key), new["parameters"].get(key))
                 for key in params if key not in ignore_parameters]
    for name, before, now in compared:
        if before != now:
            raise StoreExistsError(f"--resume: {name} differs from the interrupted run's ({before!r} then, "
                                   f"{now!r} now) in {where}; rerun with its options or pass --overwrite "
                                   f"to start again")
