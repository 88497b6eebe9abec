"""Reading a store's depth a 64-sample block at a time straight from its shard files: the
shard index is read once, each block's compressed bytes are decoded with numcodecs' zstd, and
a file another writer laid out is read through zarr instead (`_writer_layout`)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import numpy as np
from numcodecs import Zstd
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.codecs.bytes import Endian
from zarr.codecs.sharding import ShardingCodecIndexLocation

from synthgen.data.schema import CorruptStoreError, shard_path


class _ShardBlocks:
    """Reads 64-sample blocks of a store's depth straight from its shard files.

    Zarr's per-call machinery costs ~2 ms, more than decoding a 64-sample chunk (~1 ms), so a
    shuffled reader that makes one call per block spends most of its time there (measured
    here: ~17 k vs ~42 k samples/s for random blocks). This is the Zarr v3 sharding spec's read
    path for the one layout StoreWriter writes (float16, shards split along N, inner chunks
    `bytes(little) + zstd`, index `bytes(little) + crc32c` at the end), checked against the
    array's metadata when opened: any other layout, or an unaligned block, goes through Zarr.
    An inner chunk the index marks absent (all fill value: Zarr does not store those) or a
    missing shard file reads as the fill value, as through Zarr.
    """

    def __init__(self, store_root: Path, array) -> None:
        self.array, self.root = array, store_root
        self.direct = _writer_layout(array)
        if self.direct:
            self.shard_size, self.chunk_size = array.shards[0], array.metadata.codecs[0].chunk_shape[0]
            self.chunks_per_shard = self.shard_size // self.chunk_size
            self.fill = np.full((self.chunk_size,) + array.shape[1:], array.metadata.fill_value, np.float16)
            self._decoded = np.empty_like(self.fill)
        self._indices: dict[int, np.ndarray | None] = {}
        self._zstd = Zstd()

    def read(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Samples [start, stop) of the depth array, float16; valid until the next read. A whole
        inner chunk is decoded straight into `out` (float16, C-contiguous) when given: one copy fewer."""
        if not self.direct or start % self.chunk_size or stop - start > self.chunk_size:
            return self.array[start:stop]
        shard, inner = divmod(start // self.chunk_size, self.chunks_per_shard)
        path = shard_path(self.root, self.array, shard)
        try:
            with open(path, "rb") as file:
                index = self._index(shard, file, path)
                offset, nbytes = (int(v) for v in index[inner]) if index is not None else (_ABSENT, _ABSENT)
                if offset == _ABSENT:
                    return self.fill[:stop - start]
                file.seek(offset)
                raw = file.read(nbytes)
        except FileNotFoundError:
            return self.fill[:stop - start]
        try:
            whole = out is not None and stop - start == self.chunk_size
            block = self._zstd.decode(raw, out=out if whole else self._decoded)  # float16, little-endian: as the host
        except (RuntimeError, ValueError) as error:
            raise CorruptStoreError(f"{path}: inner chunk {inner} does not decode ({error}); the store is damaged "
                                    f"(`synthgen verify` names the chunk)") from None
        return out if whole else block[:stop - start]

    def _index(self, shard: int, file, path: Path) -> np.ndarray | None:
        """(chunks per shard, 2) offsets and sizes, read once per shard and checked (crc32c)."""
        if shard not in self._indices:
            size = 16 * self.chunks_per_shard + 4
            file.seek(-size, os.SEEK_END)
            raw = file.read(size)
            if int.from_bytes(raw[-4:], "little") != google_crc32c.value(raw[:-4]):
                raise CorruptStoreError(f"{path}: the shard index fails its crc32c check; the store is damaged")
            self._indices[shard] = np.frombuffer(raw[:-4], "<u8").reshape(self.chunks_per_shard, 2)
        return self._indices[shard]


_ABSENT = 2**64 - 1  # offset and size of an inner chunk the shard does not hold


def _writer_layout(array) -> bool:
    """Whether `array` has exactly the depth layout StoreWriter writes (see _ShardBlocks)."""
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return False
    sharding = codecs[0]
    inner, index = sharding.codecs, sharding.index_codecs
    return (array.dtype == np.float16 and array.shards is not None and array.shards[1:] == array.shape[1:]
            and tuple(sharding.chunk_shape[1:]) == tuple(array.shape[1:])
            and array.shards[0] % sharding.chunk_shape[0] == 0
            and sharding.index_location == ShardingCodecIndexLocation.end
            and [type(c) for c in inner] == [BytesCodec, ZstdCodec] and inner[0].endian == Endian.little
            and [type(c) for c in index] == [BytesCodec, Crc32cCodec] and index[0].endian == Endian.little
            and array.metadata.chunk_key_encoding.separator == "/" and sys.byteorder == "little")



@dataclass(frozen=True)
class _Block:
    store: int
    start: int
    stop: int
