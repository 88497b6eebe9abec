"""Whole shards of the store's arrays encoded without zarr's asyncio machinery: the same bytes.

Why. Writing one 1024-sample chunk through `zarr.Array.__setitem__` spends most of its Python
time scheduling coroutines and thread-pool tasks (one per inner chunk and codec), holding the
GIL that the sampling threads need between their torch calls: in a py-spy profile of `sample`,
zarr's asyncio orchestration held the GIL ~6x longer than all of synthgen and torch's Python
together (docs/performance.md, "Fresh pages and writing shards directly"). The encoding itself is two library
calls, so a writer that owns whole shards can do it directly.

What. For an array that synthgen's writer creates — split along the sample axis only, codecs
`sharding_indexed` with inner codecs `bytes` (little endian) + `zstd`, index codecs `bytes` +
`crc32c`, index at the end — a complete shard is the inner chunks in order (the Morton order
of chunk coordinates (i, 0, ...) is i), each compressed by numcodecs' Zstd (the codec zarr
itself calls), followed by the little-endian uint64 (offset, nbytes) of every inner chunk and
the crc32c of that index. tests/test_store.py checks every file of a store written this way
against zarr's.
Any other layout gets no encoder (`ShardEncoder.for_array` returns None) and goes through zarr.
"""

from __future__ import annotations

from dataclasses import dataclass

import google_crc32c
import numpy as np
from numcodecs import Zstd


@dataclass(frozen=True)
class ShardEncoder:
    """Encodes one complete shard (shard_shape, dtype) of an array into its file's bytes."""

    shard_shape: tuple[int, ...]
    inner_chunk: int  # samples per inner chunk
    dtype: np.dtype
    level: int
    checksum: bool

    @classmethod
    def for_array(cls, array) -> ShardEncoder | None:
        """The encoder for a zarr v3 array with synthgen's layout, else None."""
        metadata = array.metadata
        codecs = [codec.to_dict() for codec in metadata.codecs]
        if getattr(metadata, "zarr_format", None) != 3 or len(codecs) != 1 or codecs[0]["name"] != "sharding_indexed":
            return None
        config = codecs[0]["configuration"]
        inner, index = config["codecs"], config["index_codecs"]
        shard_shape = tuple(metadata.chunk_grid.chunk_shape)
        chunk_shape = tuple(config["chunk_shape"])
        dtype = np.dtype(metadata.dtype.to_native_dtype())
        supported = (
            config["index_location"] == "end"
            and [c["name"] for c in inner] == ["bytes", "zstd"]
            and (dtype.itemsize == 1 or inner[0].get("configuration", {}).get("endian") == "little")
            and [c["name"] for c in index] == ["bytes", "crc32c"]
            and index[0].get("configuration", {}).get("endian") == "little"
            and chunk_shape[1:] == shard_shape[1:]
            and shard_shape[0] % chunk_shape[0] == 0
            and dtype.byteorder in ("=", "<", "|")
            and np.little_endian
        )
        if not supported:
            return None
        zstd = inner[1]["configuration"]
        return cls(shard_shape, chunk_shape[0], dtype, int(zstd["level"]), bool(zstd["checksum"]))

    def encode(self, shard: np.ndarray) -> bytes:
        """The file bytes of one complete shard: `shard` of exactly shard_shape and dtype."""
        if shard.shape != self.shard_shape or shard.dtype != self.dtype:
            raise ValueError(f"a shard is {self.shard_shape} {self.dtype}, got {shard.shape} {shard.dtype}")
        shard = np.ascontiguousarray(shard)
        codec = Zstd(level=self.level, checksum=self.checksum)
        parts = [codec.encode(shard[start:start + self.inner_chunk])
                 for start in range(0, len(shard), self.inner_chunk)]
        lengths = np.array([len(part) for part in parts], np.uint64)
        index = np.stack([np.cumsum(lengths) - lengths, lengths], axis=1).astype("<u8").tobytes()
        crc = google_crc32c.value(index).to_bytes(4, "little")
        return b"".join([*parts, index, crc])
