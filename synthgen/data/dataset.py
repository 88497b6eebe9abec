"""Feed a PyTorch trainer from hand stores: a shuffled batch stream for training, a map-style
dataset for evaluation, on-the-fly augmentation and any joint layout.

Why the stream reads whole blocks: a store's depth is zstd-compressed in inner chunks of 64
samples, and every read decodes whole chunks, so reading samples in a random order decodes 64
samples per sample kept (~100-800 samples/s on 2 CPU cores). The stream
shuffles at two levels instead: each epoch it permutes the store's 64-sample blocks, reads a
buffer of `buffer_blocks` blocks (each one contiguous slice, decoded once) and permutes the
samples inside that buffer. A batch therefore mixes samples of ~16 blocks spread over the whole
store, and every block is decoded exactly once per epoch. Labels (pose, centre: 264 bytes a
sample) are read once into memory when the stream is built, so only depth is read per epoch.

Batches are made where the store is read (the stream is an IterableDataset that yields whole
batches: `DataLoader(stream, batch_size=None, num_workers=W)`, or `stream.loader(W)`): each
buffer is decoded into memory the reader reuses, and each batch is gathered from it into one
slot of a small ring of batch-sized buffers, shared memory in a worker process. A worker's batch
crosses to the training process as a reference to its slot, not as tensors. PyTorch's own
hand-over puts every batch in fresh shared memory, whose pages are zeroed, mapped and freed again
in both processes: ~50-80 µs of CPU a sample (measured), against ~20 µs to read, decode and
shuffle one; the ring's pages are mapped once. A slot is reused only when no tensor of its batch
is alive in either process, so batches can be kept as long as wanted (a batch that finds every
slot held gets memory of its own). Depth comes as the store holds it, float16 (exact, half the
bytes; depth_dtype="float32" on request). `prefetch(threads)` makes the same batches in
background threads of the training process instead (benchmarks/reader.py compares them).

The parts live beside this module: augment.py (rotation, scale, shift, noise), batch_ring.py
(the shared-memory slots), shard_blocks.py (64-sample blocks read from the shard files).
"""

from __future__ import annotations

import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from synthgen.conventions import LAYOUTS
from synthgen.data.augment import Augmentation, transform_crops  # noqa: F401 (re-exported)
from synthgen.data.batch_ring import _BatchRing, _pack
from synthgen.data.layouts import converter
from synthgen.data.reader import HandStore, open_store
from synthgen.data.shard_blocks import _Block, _ShardBlocks
from synthgen.errors import InputError
from synthgen.hand.camera import normalize_joints

JOINT_UNITS = ("mm", "normalised")
DEPTH_DTYPES = {"float32": torch.float32, "float16": torch.float16}
ORDER_STREAM, AUGMENT_STREAM = 0, 1  # independent random streams of one buffer
AUGMENT_SLICE = 16  # samples augmented at once: the warp's temporaries stay in cache (3x faster than 256)

# --- shared by both datasets ---------------------------------------------------------------


def _open_stores(stores: str | Path | Sequence[str | Path]) -> list[HandStore]:
    paths = [stores] if isinstance(stores, (str, Path)) else list(stores)
    if not paths:
        raise InputError("no store given")
    opened = [open_store(p) for p in paths]
    layouts = {(s.metadata.crop_size, s.metadata.cube_mm) for s in opened}
    if len(layouts) > 1:
        raise InputError(f"stores differ in crop size / cube: {sorted(layouts)}")
    return opened


class _Output:
    """How samples are handed to the trainer: joint layout and units, optional augmentation.

    `layout` None means the stores' own layout (they must agree); otherwise each store's joints
    are converted from its layout (synthgen.data.layouts).
    """

    def __init__(self, stores: list[HandStore], layout: str | None, joints: str, augment: Augmentation | None) -> None:
        own = {s.joint_layout for s in stores}
        if layout is None and len(own) > 1:
            raise InputError(f"the stores hold different joint layouts ({', '.join(sorted(own))}); pass layout=")
        self.layout = own.pop() if layout is None else layout
        self.sources = [s.joint_layout for s in stores]  # names, not converters: spawned workers unpickle them
        for source in self.sources:
            converter(source, self.layout)  # InputError now if there is none
        if joints not in JOINT_UNITS:
            raise InputError(f"joints must be one of {', '.join(JOINT_UNITS)}, got {joints!r}")
        if augment is not None and not isinstance(augment, Augmentation):
            raise InputError(f"augment must be an Augmentation or None, got {type(augment).__name__}")
        conventions = {s.input_convention.depth for s in stores}
        if len(conventions) > 1:
            raise InputError(f"the stores hold depth in different conventions ({', '.join(sorted(conventions))})")
        if augment is not None and not stores[0].input_convention.metric:
            raise InputError(f"augmentation works on metric depth; the stores hold {conventions.pop()} depth")
        self.joints, self.augment = joints, augment
        self.cube_mm = stores[0].metadata.cube_mm
        self.joint_names = LAYOUTS[self.layout].joint_names

    def convert(self, store: int, pose: np.ndarray) -> np.ndarray:
        """A store's (n, J_store, 3) joints in mm -> (n, J, 3) float32 in the output layout."""
        return np.ascontiguousarray(converter(self.sources[store], self.layout)(pose), np.float32)

    def units(self, joints: np.ndarray, center: np.ndarray) -> np.ndarray:
        """Output-layout joints in mm -> the chosen units."""
        if self.joints == "normalised":
            joints = normalize_joints(joints, center, self.cube_mm)
        return np.ascontiguousarray(joints, np.float32)


# --- map-style dataset ---------------------------------------------------------------------


class HandDataset(Dataset):
    """One sample per index, in any order: for evaluation, in-order passes and samplers.

    `dataset[i]` is a dict of tensors: depth (1, S, S) float32 normalised, joints (J, 3)
    float32 in `layout` (default: the stores' own) and `joints` units, center (3,) float32 mm,
    index (int). Reads go
    through a small cache of decoded 64-sample blocks, so in-order access decodes each block
    once; random single-sample access is bounded by decoding (~1 k samples/s): for shuffled
    training use `ShuffledHandBatches`. Stores given as a list are concatenated.
    """

    def __init__(self, stores: str | Path | Sequence[str | Path], *, layout: str | None = None,
                 joints: str = "mm", augment: Augmentation | None = None, cache_blocks: int = 8) -> None:
        opened = _open_stores(stores)
        self.paths = [s.path for s in opened]
        self.sizes = [len(s) for s in opened]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.cube_mm = opened[0].metadata.cube_mm
        self.crop_size = opened[0].metadata.crop_size
        self.block_sizes = [s.attrs["layout"]["read_chunk_size"] for s in opened]
        self.output = _Output(opened, layout, joints, augment)
        self.joint_names = self.output.joint_names
        self.cache_blocks = cache_blocks
        self._stores: list[HandStore] | None = None
        self._cache: OrderedDict = OrderedDict()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_stores"], state["_cache"] = None, OrderedDict()
        return state

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _block(self, store_id: int, block: int):
        key = (store_id, block)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if self._stores is None:
            self._stores = [open_store(p) for p in self.paths]
        size = self.block_sizes[store_id]
        store = self._stores[store_id]
        batch = store.read(slice(block * size, min((block + 1) * size, len(store))))
        self._cache[key] = batch
        if len(self._cache) > self.cache_blocks:
            self._cache.popitem(last=False)
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not isinstance(index, (int, np.integer)):
            raise InputError(f"expected one sample index, got {index!r}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = int(index) % len(self)
        store_id = int(np.searchsorted(self.offsets, index, side="right")) - 1
        local = index - int(self.offsets[store_id])
        size = self.block_sizes[store_id]
        batch = self._block(store_id, local // size)
        row = slice(local % size, local % size + 1)
        depth, pose, center = batch.depth[row], self.output.convert(store_id, batch.pose[row]), batch.center[row]
        if self.output.augment is not None:  # torch seeds each worker: reproducible with torch.manual_seed
            rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
            depth, pose = self.output.augment.apply(depth, pose, center, self.cube_mm, rng)
        return {"depth": torch.from_numpy(np.ascontiguousarray(depth, np.float32)),  # (1, S, S): channel first
                "joints": torch.from_numpy(self.output.units(pose, center)[0]),
                "center": torch.from_numpy(center[0].copy()), "index": index}


# --- the training stream -------------------------------------------------------------------


class ShuffledHandBatches(IterableDataset):
    """Shuffled batches over one or more stores, mixed by ratio; one epoch per iteration.

    Each batch is a dict: depth (B, 1, S, S) normalised, float16 as stored (exact; convert on
    the device with `.float()`; augmented depth is rounded to float16, within the store's stated
    quantisation error) or float32 with depth_dtype="float32"; joints (B, J, 3) float32 in
    `layout` (a key of conventions.LAYOUTS; default: the stores' own, converted from each
    store's layout by synthgen.data.layouts) as mm camera coordinates or, with
    joints="normalised", (xyz - center) / (cube / 2); center (B, 3) float32 mm; index (B,)
    int64 sample index inside its store; store (B,) int64 position of that store in `stores`.

    Shuffling: see the module docstring; `buffer_blocks` blocks (of the store's 64-sample read
    chunks) are decoded and permuted together. Which samples an epoch holds, their order inside
    each buffer and each sample's augmentation are functions of (seed, epoch) only, whatever the
    number of workers (only how buffers are cut into batches depends on it). With seed=None (default)
    every iteration draws a fresh seed from torch's RNG (reproducible with torch.manual_seed).
    With an integer seed, call `set_epoch(e)` before each epoch, as with DistributedSampler:
    non-persistent DataLoader workers get a fresh copy of the stream every epoch, so only
    `set_epoch` moves them on (in-process and persistent-worker iteration also advance by
    themselves). Worker processes split the buffers round-robin; each worker's last batch may
    be short (drop it with drop_last).

    Mixing: with `ratios`, an epoch of `samples_per_epoch` samples (default: all stores' samples
    together) takes round(ratio * samples_per_epoch) from each store, cycling through a store
    (reshuffled each pass) when it is asked for more than it holds; blocks of the stores are
    interleaved evenly, so every buffer holds about the same mixture.

    With a DataLoader (the stream makes whole batches, so no sampler and no collate)::

        stream = ShuffledHandBatches(paths, batch_size=256, seed=0)
        loader = DataLoader(stream, batch_size=None, num_workers=2, prefetch_factor=4)  # = stream.loader(2)
        for epoch in range(epochs):
            stream.set_epoch(epoch)
            for batch in loader:
                depth = batch["depth"].to(device).float()

    Each worker reads its share of the one epoch plan (buffers worker, worker + W, ...), so the
    workers together yield every sample once, in an order fixed by (seed, epoch); batches cross
    to the training process in reused shared memory, without a copy (see the module docstring).
    Persistent workers (`persistent_workers=True`) move on to the next epoch by themselves.
    """

    def __init__(self, stores: str | Path | Sequence[str | Path], *, batch_size: int = 256,
                 ratios: Sequence[float] | None = None, layout: str | None = None, joints: str = "mm",
                 augment: Augmentation | None = None, shuffle: bool = True, seed: int | None = None,
                 buffer_blocks: int = 16, samples_per_epoch: int | None = None, drop_last: bool = False,
                 depth_dtype: str = "float16") -> None:
        opened = _open_stores(stores)
        self.paths = [s.path for s in opened]
        self.sizes = [len(s) for s in opened]
        self.block_sizes = [int(s.attrs["layout"]["read_chunk_size"]) for s in opened]
        self.cube_mm = opened[0].metadata.cube_mm
        self.crop_size = opened[0].metadata.crop_size
        self.output = _Output(opened, layout, joints, augment)
        self.joint_names = self.output.joint_names
        for name, value in (("batch_size", batch_size), ("buffer_blocks", buffer_blocks)):
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        self.batch_size, self.buffer_blocks = int(batch_size), int(buffer_blocks)
        if depth_dtype not in DEPTH_DTYPES:
            raise InputError(f"depth_dtype must be one of {', '.join(DEPTH_DTYPES)}, got {depth_dtype!r}")
        self.depth_dtype = DEPTH_DTYPES[depth_dtype]
        self.ratios = self._check_ratios(ratios, shuffle)
        total = sum(self.sizes)
        self.samples_per_epoch = total if samples_per_epoch is None else int(samples_per_epoch)
        self._every_sample_once = ratios is None and self.samples_per_epoch == total
        if self.samples_per_epoch < 1 or (not shuffle and self.samples_per_epoch != total):
            raise InputError(f"samples_per_epoch must be >= 1 (and, unshuffled, all {total} samples), "
                             f"got {samples_per_epoch!r}")
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.epoch = 0
        self._iterations = 0  # iterations since set_epoch, in this process
        # Labels of every sample, read once, in the output layout: workers share them (fork).
        self._pose = [self.output.convert(i, s.pose[:]) for i, s in enumerate(opened)]
        self._center = [s.center[:] for s in opened]
        self._reading: tuple[int, _Reading] | None = None  # this process's, see __iter__

    def _check_ratios(self, ratios: Sequence[float] | None, shuffle: bool) -> np.ndarray:
        if ratios is None:
            return np.asarray(self.sizes, np.float64) / sum(self.sizes)
        ratios = np.asarray(ratios, np.float64)
        if ratios.shape != (len(self.sizes),) or not np.all(np.isfinite(ratios)) or np.any(ratios < 0) \
                or ratios.sum() <= 0:
            raise InputError(f"ratios must be {len(self.sizes)} non-negative numbers, not all 0, got {list(ratios)}")
        if not shuffle:
            raise InputError("ratios need shuffle=True (an in-order pass reads every sample once)")
        return ratios / ratios.sum()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_reading"] = None
        return state

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch `epoch` (later ones in this process follow on from it)."""
        self.epoch, self._iterations = int(epoch), 0

    def loader(self, num_workers: int = 2, **kwargs) -> DataLoader:
        """A DataLoader over this stream (it already yields batches, so batch_size=None)."""
        if num_workers > 0:
            kwargs.setdefault("prefetch_factor", 4)
        return DataLoader(self, batch_size=None, num_workers=num_workers, **kwargs)

    # -- epoch plan: identical in every worker, so they can split it without talking --------

    def _blocks_of(self, store: int) -> list[_Block]:
        size, n = self.block_sizes[store], self.sizes[store]
        return [_Block(store, start, min(start + size, n)) for start in range(0, n, size)]

    def _take(self, store: int, count: int, rng: np.random.Generator) -> list[_Block]:
        """`count` samples of one store as permuted blocks, reshuffling after each full pass."""
        blocks, taken = self._blocks_of(store), []
        while count > 0:
            for index in rng.permutation(len(blocks)):
                block = blocks[index]
                length = min(block.stop - block.start, count)
                taken.append(_Block(store, block.start, block.start + length))
                count -= length
                if count == 0:
                    break
        return taken

    def plan(self, base_seed: int, epoch: int) -> list[list[_Block]]:
        """The epoch's buffers (lists of blocks), in order; buffer k goes to worker k % W."""
        if not self.shuffle:
            blocks = [block for store in range(len(self.sizes)) for block in self._blocks_of(store)]
        else:
            rng = np.random.default_rng([base_seed, epoch])
            counts = self._counts()
            keyed = []
            for store, count in enumerate(counts):
                taken = self._take(store, int(count), rng)
                # Stratified merge: block k of m sits at (k + jitter) / m, so stores interleave evenly.
                keys = (np.arange(len(taken)) + rng.random(len(taken))) / max(len(taken), 1)
                keyed += zip(keys.tolist(), [store] * len(taken), range(len(taken)), taken)
            blocks = [entry[3] for entry in sorted(keyed)]
        return [blocks[i:i + self.buffer_blocks] for i in range(0, len(blocks), self.buffer_blocks)]

    def _counts(self) -> np.ndarray:
        """Samples per store in one epoch: every sample once, or the ratios' share (largest remainders)."""
        if self._every_sample_once:
            return np.asarray(self.sizes, np.int64)
        wanted = self.ratios * self.samples_per_epoch
        counts = np.floor(wanted).astype(np.int64)
        counts[np.argsort(counts - wanted)[: self.samples_per_epoch - counts.sum()]] += 1
        return counts

    # -- iteration --------------------------------------------------------------------------

    def _base_seed(self) -> int:
        if self.seed is not None:
            return int(self.seed)
        info = get_worker_info()
        if info is not None:  # the DataLoader draws one base seed per epoch for all its workers
            return int(info.seed - info.id)
        return int(torch.randint(0, 2**62, (1,)).item())

    def _next_epoch(self) -> tuple[int, int]:
        base_seed, epoch = self._base_seed(), self.epoch + self._iterations
        self._iterations += 1
        return base_seed, epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        # One set of open readers per process: never share Zarr handles across a fork.
        if self._reading is None or self._reading[0] != os.getpid():
            self._reading = (os.getpid(), self._new_reading())
        yield from self._batches(worker, workers, *self._next_epoch(), self._reading[1])

    def prefetch(self, threads: int = 2, queue_depth: int = 4) -> Iterator[dict[str, torch.Tensor]]:
        """One epoch made by `threads` background threads of this process instead of worker
        processes: the same batches in the same order as `DataLoader(num_workers=threads)`.

        Threads need no hand-over between processes (a few µs of CPU a sample even through the
        batch ring, see the module docstring) and no worker start-up each epoch, and they
        overlap the trainer's steps as workers do (torch's ops, file reads and tensor copies
        release the GIL); worker processes keep the reading off the training process's GIL.
        Breaking out of the loop stops the threads.
        """
        if not isinstance(threads, int) or threads < 1 or queue_depth < 1:
            raise InputError(f"threads and queue_depth must be positive integers, got {threads}, {queue_depth}")
        base_seed, epoch = self._next_epoch()
        queues = [queue.Queue(maxsize=queue_depth) for _ in range(threads)]
        stop = threading.Event()

        def put(k: int, item) -> bool:
            while not stop.is_set():
                try:
                    queues[k].put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce(k: int) -> None:
            try:
                for batch in self._batches(k, threads, base_seed, epoch, self._new_reading()):
                    if not put(k, batch):
                        return
                put(k, _EPOCH_END)
            except BaseException as error:  # noqa: BLE001 - re-raised in the consuming thread
                put(k, error)

        producers = [threading.Thread(target=produce, args=(k,), name=f"synthgen-prefetch-{k}", daemon=True)
                     for k in range(threads)]
        for thread in producers:
            thread.start()
        try:
            live = list(range(threads))
            while live:  # round-robin, as the DataLoader takes its workers' batches
                for k in list(live):
                    item = queues[k].get()
                    if item is _EPOCH_END:
                        live.remove(k)
                    elif isinstance(item, BaseException):
                        raise item
                    else:
                        yield item
        finally:
            stop.set()
            for thread in producers:
                thread.join()

    def _new_reading(self) -> _Reading:
        return _Reading(self.paths, self._batch_layout(self.batch_size)[1])

    def _batches(self, worker: int, workers: int, base_seed: int, epoch: int, reading: _Reading
                 ) -> Iterator[dict[str, torch.Tensor]]:
        """Worker `worker` of `workers`'s share of the epoch: buffers worker, worker + workers, ..."""
        buffers = self.plan(base_seed, epoch)
        size = self.batch_size
        pending = None  # fewer than a batch of samples (copied out), carried into the next buffer
        for number in range(worker, len(buffers), workers):
            samples = self._read(buffers[number], reading)
            count = len(samples["index"])
            if self.output.augment is not None:
                self._augment(samples, np.random.default_rng([base_seed, epoch, number, AUGMENT_STREAM]))
            order = (np.random.default_rng([base_seed, epoch, number, ORDER_STREAM]).permutation(count)
                     if self.shuffle else np.arange(count))
            at = 0
            if pending is not None:
                at = min(size - len(pending["index"]), count)
                head = _gather(samples, order[:at])
                pending = {key: np.concatenate([pending[key], head[key]]) for key in pending}
                if len(pending["index"]) < size:
                    continue
                yield self._batch(pending, np.arange(size), reading.ring)
                pending = None
            for start in range(at, count - size + 1, size):
                yield self._batch(samples, order[start:start + size], reading.ring)
                at = start + size
            if at < count:
                pending = _gather(samples, order[at:])
        if pending is not None and not self.drop_last:
            yield self._batch(pending, np.arange(len(pending["index"])), reading.ring)

    def _read(self, blocks: list[_Block], reading: _Reading) -> dict[str, np.ndarray]:
        """Decode the buffer's blocks (one read each) into the reader's reusable depth buffer
        (in the output dtype, float32 to augment), with sample ids and labels.

        Reusing the buffer spares the page faults of fresh memory (~10 ms per 256 float32
        crops); its depth is valid until the next `_read`.
        """
        count = sum(b.stop - b.start for b in blocks)
        dtype = torch.float32 if self.output.augment is not None else self.depth_dtype
        buffer = reading.buffer
        if buffer is None or buffer.dtype != dtype or len(buffer) < count:
            buffer = reading.buffer = torch.empty((count, self.crop_size, self.crop_size), dtype=dtype)
        pose = np.empty((count,) + self._pose[0].shape[1:], np.float32)
        center = np.empty((count, 3), np.float32)
        store_ids = np.empty(count, np.int64)
        indices = np.empty(count, np.int64)
        at = 0
        for block in blocks:
            rows = slice(at, at + block.stop - block.start)
            target = buffer[rows].numpy() if dtype == torch.float16 else None
            depth = reading.depth[block.store].read(block.start, block.stop, out=target)
            if depth is not target:
                buffer[rows].copy_(torch.from_numpy(depth))
            pose[rows] = self._pose[block.store][block.start:block.stop]
            center[rows] = self._center[block.store][block.start:block.stop]
            store_ids[rows] = block.store
            indices[rows] = np.arange(block.start, block.stop)
            at = rows.stop
        return {"depth": buffer[:count].numpy(), "pose": pose, "center": center, "store": store_ids,
                "index": indices}

    def _augment(self, samples: dict[str, np.ndarray], rng: np.random.Generator) -> None:
        """Augment a whole buffer in place, in its stored order, so that what happens to a
        sample depends on (seed, epoch, its buffer) only, not on how batches are cut."""
        depth, pose = samples["depth"], samples["pose"]
        for start in range(0, len(depth), AUGMENT_SLICE):
            rows = slice(start, start + AUGMENT_SLICE)
            depth[rows], pose[rows] = self.output.augment.apply(depth[rows], pose[rows], samples["center"][rows],
                                                                self.cube_mm, rng)

    def _batch_layout(self, count: int) -> tuple[tuple, int]:
        """The byte layout of a batch of `count` samples (see `_pack`)."""
        size = self.crop_size
        return _pack({"depth": ((count, 1, size, size), self.depth_dtype),
                        "joints": ((count, len(self.joint_names), 3), torch.float32),
                        "center": ((count, 3), torch.float32), "index": ((count,), torch.int64),
                        "store": ((count,), torch.int64)})

    def _batch(self, samples: dict[str, np.ndarray], rows: np.ndarray, ring: _BatchRing) -> dict[str, torch.Tensor]:
        """Rows `rows` of `samples` as output tensors, gathered straight into a slot of `ring`."""
        n, size = len(rows), self.crop_size
        batch = ring.batch(self._batch_layout(n))
        source, depth = torch.from_numpy(samples["depth"]), batch["depth"].view(n, size, size)
        if source.dtype == self.depth_dtype:
            torch.index_select(source, 0, torch.from_numpy(rows), out=depth)
        else:  # augmented (float32) depth handed over as float16: rounded as the store would
            depth.copy_(source[torch.from_numpy(rows)])
        center = samples["center"][rows]
        batch["joints"].numpy()[:] = self.output.units(samples["pose"][rows], center)
        batch["center"].numpy()[:] = center
        batch["index"].numpy()[:] = samples["index"][rows]
        batch["store"].numpy()[:] = samples["store"][rows]
        return batch


class _Reading:
    """What one reader (a process or a prefetch thread) keeps: open depth readers per store,
    its reusable depth buffer and the memory its batches are made in."""

    def __init__(self, paths: list[Path], batch_bytes: int) -> None:
        self.depth = [_ShardBlocks(store.path, store.depth) for store in (open_store(p) for p in paths)]
        self.buffer: torch.Tensor | None = None
        self.ring = _BatchRing(batch_bytes)


_EPOCH_END = object()  # a prefetch thread's last item


def _gather(samples: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[rows] for key, value in samples.items()}
