"""The training reader: epochs, chunk-aware shuffling, workers, mixing, layouts, augmentation."""

from __future__ import annotations

import copy
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader, IterableDataset

from synthgen.conventions import CROP_SIZE, JOINT_NAMES, LAYOUTS, NYU_EVAL_JOINTS
from synthgen.data import batch_ring
from synthgen.data.augment import Augmentation, transform_crops
from synthgen.data.batch_ring import RING_SLOTS
from synthgen.data.dataset import HandDataset, ShuffledHandBatches
from synthgen.data.layouts import converter, nyu36_from_canonical
from synthgen.data.reader import open_store
from synthgen.data.schema import CorruptStoreError, SampleBatch, StoreMetadata, shard_path
from synthgen.data.shard_blocks import _ShardBlocks
from synthgen.data.writer import StoreWriter
from synthgen.errors import InputError
from synthgen.hand.camera import denormalize_depth, denormalize_joints, normalize_depth
from synthgen.hand.noise import SensorNoise

BLOCK = 64  # the store's read chunk


def make_store(path: Path, count: int, seed: int, cube_mm: float = 250.0, joint_layout: str = "hands2017") -> Path:
    """A store of `count` random crops (a disc per sample) in shards of 128 with 64-sample read chunks."""
    rng = np.random.default_rng(seed)
    center = np.stack([rng.uniform(-80, 80, count), rng.uniform(-60, 60, count), rng.uniform(350, 650, count)],
                      axis=-1).astype(np.float32)
    joints = LAYOUTS[joint_layout].num_joints
    pose = (center[:, None, :] + rng.normal(0, 30, (count, joints, 3))).astype(np.float32)
    v, u = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE]
    radius = rng.uniform(15, 40, (count, 1, 1))
    disc = (u - 64) ** 2 + (v - 64) ** 2 < radius**2
    depth_mm = np.where(disc, center[:, 2, None, None] + rng.uniform(-60, 60, (count, 1, 1)), 0)
    depth = normalize_depth(depth_mm, center[:, 2], cube_mm)
    meta = StoreMetadata(producer="render", seed=seed, cube_mm=cube_mm, joint_layout=joint_layout)
    writer = StoreWriter.create(path, count, meta, chunk_size=128)
    for chunk in range(writer.num_chunks):
        start, stop = writer.chunk_bounds(chunk)
        writer.write(start, SampleBatch(depth[start:stop], pose[start:stop], center[start:stop],
                                        joint_layout=joint_layout))
    return writer.finalize()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("data") / "a.zarr", 300, seed=1)  # 4 full blocks + one of 44


@pytest.fixture(scope="module")
def small_store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("data") / "b.zarr", 100, seed=2)


def epoch(stream, **loader) -> list[dict]:
    return list(DataLoader(stream, batch_size=None, **loader)) if loader else list(stream)


def indices(batches: list[dict]) -> np.ndarray:
    return np.concatenate([b["index"].numpy() for b in batches])


# --- the shuffled stream -------------------------------------------------------------------


def test_an_epoch_yields_every_sample_once_with_its_own_data(store):
    stream = ShuffledHandBatches(store, batch_size=32, seed=7)
    batches = epoch(stream)
    order = indices(batches)

    assert sorted(order.tolist()) == list(range(300))
    assert [len(b["index"]) for b in batches] == [32] * 9 + [12]
    assert not np.array_equal(order, np.arange(300))
    data = open_store(store).read(order)
    depth = torch.cat([b["depth"] for b in batches])
    assert depth.shape == (300, 1, CROP_SIZE, CROP_SIZE) and depth.dtype == torch.float16  # as stored
    np.testing.assert_array_equal(depth[:, 0].numpy(), data.depth)
    np.testing.assert_array_equal(torch.cat([b["joints"] for b in batches]).numpy(), data.pose)
    np.testing.assert_array_equal(torch.cat([b["center"] for b in batches]).numpy(), data.center)
    assert torch.cat([b["store"] for b in batches]).eq(0).all()


def test_shuffling_is_chunk_aware_each_block_is_read_once_and_batches_mix_blocks(store, monkeypatch):
    stream = ShuffledHandBatches(store, batch_size=64, seed=3, buffer_blocks=4)
    reads = []
    real_read = ShuffledHandBatches._read
    monkeypatch.setattr(ShuffledHandBatches, "_read",
                        lambda self, blocks, reading: reads.append(blocks) or real_read(self, blocks, reading))
    batches = epoch(stream)

    blocks = [(b.start, b.stop) for buffer in reads for b in buffer]
    assert sorted(blocks) == [(0, 64), (64, 128), (128, 192), (192, 256), (256, 300)]  # one read per block
    assert [len(buffer) for buffer in reads] == [4, 1]
    first = batches[0]["index"].numpy()
    assert len(set((first // BLOCK).tolist())) == 4  # a batch mixes all blocks of its buffer


def test_order_is_a_function_of_seed_and_epoch(store):
    stream = ShuffledHandBatches(store, batch_size=50, seed=11)
    first = indices(epoch(stream))
    stream.set_epoch(0)
    assert np.array_equal(indices(epoch(stream)), first)
    second = indices(epoch(stream))  # in-process iteration moves on by itself
    stream.set_epoch(1)
    assert np.array_equal(indices(epoch(stream)), second) and not np.array_equal(first, second)
    other = indices(epoch(ShuffledHandBatches(store, batch_size=50, seed=12)))
    assert not np.array_equal(first, other)
    torch.manual_seed(0)
    unseeded = ShuffledHandBatches(store, batch_size=50)
    a, b = indices(epoch(unseeded)), indices(epoch(unseeded))
    assert not np.array_equal(a, b) and sorted(a) == sorted(b) == list(range(300))


def test_two_dataloader_workers_split_the_epoch_reproducibly(store):
    stream = ShuffledHandBatches(store, batch_size=32, seed=5, buffer_blocks=2)
    runs = []
    for _ in range(2):
        stream.set_epoch(3)
        runs.append(epoch(stream, num_workers=2))
    order = indices(runs[0])
    assert sorted(order.tolist()) == list(range(300))
    assert np.array_equal(order, indices(runs[1]))
    stream.set_epoch(3)
    in_process = indices(epoch(stream))
    assert sorted(in_process.tolist()) == sorted(order.tolist())
    data = open_store(store).read(order)
    np.testing.assert_array_equal(torch.cat([b["depth"] for b in runs[0]])[:, 0].numpy(), data.depth)
    np.testing.assert_array_equal(torch.cat([b["joints"] for b in runs[0]]).numpy(), data.pose)
    # Each worker's short last batch, or none of them with drop_last.
    assert sorted(len(b["index"]) for b in runs[0])[:2] == [12, 32]
    dropped = ShuffledHandBatches(store, batch_size=32, seed=5, buffer_blocks=2, drop_last=True)
    assert {len(b["index"]) for b in epoch(dropped, num_workers=2)} == {32}


def check_epoch(batches: list[dict], data) -> np.ndarray:
    """Every sample of `data` exactly once, each with its own depth, pose and centre; the order."""
    order = indices(batches)
    assert sorted(order.tolist()) == list(range(len(data)))
    expected = data.read(order)
    np.testing.assert_array_equal(torch.cat([b["depth"] for b in batches])[:, 0].numpy(), expected.depth)
    np.testing.assert_array_equal(torch.cat([b["joints"] for b in batches]).numpy(), expected.pose)
    np.testing.assert_array_equal(torch.cat([b["center"] for b in batches]).numpy(), expected.center)
    return order


def test_worker_batches_are_exact_seeded_and_their_memory_is_reused_only_when_dropped(tmp_path, monkeypatch):
    path = make_store(tmp_path / "e.zarr", 640, seed=8)
    data = open_store(path)
    # 40 batches, 20 per worker: more than a worker's ring holds, so keeping them all (list)
    # makes the workers fall back to memory of their own without touching a kept batch.
    stream = ShuffledHandBatches(path, batch_size=16, seed=9, buffer_blocks=2)
    orders = []
    for epoch_number in (0, 1):
        stream.set_epoch(epoch_number)
        orders.append(check_epoch(epoch(stream, num_workers=2), data))
    assert not np.array_equal(orders[0], orders[1])
    other_seed = ShuffledHandBatches(path, batch_size=16, seed=10, buffer_blocks=2)
    assert not np.array_equal(check_epoch(epoch(other_seed, num_workers=2), data), orders[0])

    # Another DataLoader, of persistent workers that move on by themselves: the same two epochs.
    persistent = DataLoader(ShuffledHandBatches(path, batch_size=16, seed=9, buffer_blocks=2), batch_size=None,
                            num_workers=2, persistent_workers=True)
    for expected in orders:
        assert np.array_equal(check_epoch(list(persistent), data), expected)

    # Dropping each batch as training does: every one is right when it arrives, and all 40 are
    # made in the workers' rings (one block of memory each, counted across the fork).
    allocations = torch.zeros(1, dtype=torch.int64).share_memory_()
    real_new_tensor = batch_ring._new_tensor

    def counted(shape, dtype):
        allocations.add_(1)
        return real_new_tensor(shape, dtype)

    monkeypatch.setattr(batch_ring, "_new_tensor", counted)
    stream.set_epoch(0)
    seen = []
    for batch in stream.loader(2, multiprocessing_context="fork"):
        rows = batch["index"].numpy().copy()
        np.testing.assert_array_equal(batch["depth"][:, 0].numpy(), data.read(rows).depth)
        seen.append(rows)
    assert np.array_equal(np.concatenate(seen), orders[0])
    assert len(seen) == 40 > 2 * RING_SLOTS and int(allocations) == 2


class _InWorker(IterableDataset):
    """Wraps the stream, turning each batch into the batches `change` returns, in the worker."""

    def __init__(self, stream: ShuffledHandBatches, change) -> None:
        self.stream, self.change = stream, change

    def __iter__(self):
        return (changed for batch in self.stream for changed in self.change(batch))


def _halve_depth(batch: dict) -> list[dict]:
    batch["depth"] = batch["depth"].float() / 2  # a new tensor: the batch goes as plain tensors
    return [batch]


def _shift_joints(batch: dict) -> list[dict]:
    batch["joints"] += 1.0  # in place, in the slot
    return [batch]


def _deep_copy(batch: dict) -> list[dict]:
    return [copy.deepcopy(batch)]


def _twice(batch: dict) -> list[dict]:
    return [batch, batch]  # the second goes while the training process holds the first


def test_batches_changed_inside_a_worker_arrive_as_changed(store):
    data = open_store(store)
    for change in (_halve_depth, _shift_joints, _deep_copy):
        stream = ShuffledHandBatches(store, batch_size=32, seed=1)
        batches = epoch(_InWorker(stream, change), num_workers=2)
        order = indices(batches)
        assert sorted(order.tolist()) == list(range(300)), change
        expected = data.read(order)
        depth = torch.cat([b["depth"] for b in batches])[:, 0].numpy()
        joints = torch.cat([b["joints"] for b in batches]).numpy()
        np.testing.assert_array_equal(depth, expected.depth / 2 if change is _halve_depth else expected.depth)
        np.testing.assert_array_equal(joints, expected.pose + 1 if change is _shift_joints else expected.pose)
        assert all(type(b) is dict for b in batches)

    # A batch sent twice: the first copy is dropped (its slot may be reused), the second kept.
    seen, kept = set(), []
    for batch in DataLoader(_InWorker(ShuffledHandBatches(store, batch_size=8, seed=1), _twice), batch_size=None,
                            num_workers=2):
        key = tuple(batch["index"].tolist())
        if key in seen:
            kept.append(batch)
        seen.add(key)
    assert sorted(indices(kept).tolist()) == list(range(300))
    np.testing.assert_array_equal(torch.cat([b["depth"] for b in kept])[:, 0].numpy(), data.read(indices(kept)).depth)


def test_prefetch_threads_give_the_dataloaders_batches_in_its_order(store):
    stream = ShuffledHandBatches(store, batch_size=32, seed=5, buffer_blocks=2, augment=Augmentation())
    stream.set_epoch(2)
    from_processes = epoch(stream, num_workers=2)
    stream.set_epoch(2)
    from_threads = list(stream.prefetch(threads=2))
    assert len(from_threads) == len(from_processes)
    for a, b in zip(from_threads, from_processes):
        for key in ("depth", "joints", "center", "index", "store"):
            assert torch.equal(a[key], b[key]), key
    before = threading.active_count()
    for _ in stream.prefetch(threads=3, queue_depth=1):
        break  # leaving early stops the threads
    assert threading.active_count() == before
    with pytest.raises(InputError, match="threads"):
        next(stream.prefetch(threads=0))


def test_in_order_pass_and_float32_depth(store):
    batches = epoch(ShuffledHandBatches(store, batch_size=128, shuffle=False, depth_dtype="float32"),
                    num_workers=2)
    assert sorted(indices(batches).tolist()) == list(range(300))
    assert np.array_equal(indices(epoch(ShuffledHandBatches(store, batch_size=128, shuffle=False))), np.arange(300))
    assert batches[0]["depth"].dtype == torch.float32
    order = indices(batches)
    np.testing.assert_array_equal(torch.cat([b["depth"] for b in batches])[:, 0].numpy(),
                                  open_store(store).depth[:][order].astype(np.float32))


def test_layouts_and_normalised_joints(store):
    data = open_store(store)
    for layout in ("hands2017", "msra", "icvl", "nyu", "nyu36"):
        batch = next(iter(ShuffledHandBatches(store, batch_size=20, seed=0, layout=layout)))
        pose = data.read(batch["index"].numpy()).pose
        assert batch["joints"].shape == (20, LAYOUTS[layout].num_joints, 3)
        np.testing.assert_allclose(batch["joints"].numpy(), converter("hands2017", layout)(pose), rtol=1e-6)
    batch = next(iter(ShuffledHandBatches(store, batch_size=20, seed=0, layout="msra", joints="normalised")))
    expected = LAYOUTS["msra"].from_canonical(data.read(batch["index"].numpy()).pose)
    joints = batch["joints"].numpy()
    assert np.abs(joints).max() < 1.5 and np.abs(joints).mean() < 0.5  # cube units around the centre
    np.testing.assert_allclose(denormalize_joints(joints, batch["center"].numpy(), 250.0), expected, atol=1e-3)


def test_stores_in_other_layouts_are_read_in_their_own_or_converted(tmp_path, store):
    icvl = make_store(tmp_path / "icvl.zarr", 70, seed=4, joint_layout="icvl")
    own = next(iter(ShuffledHandBatches(icvl, batch_size=70, shuffle=False)))
    np.testing.assert_array_equal(own["joints"].numpy(), open_store(icvl).pose[:])
    mixed = ShuffledHandBatches([store, icvl], layout="icvl", batch_size=400, seed=0)
    assert mixed.joint_names == LAYOUTS["icvl"].joint_names and next(iter(mixed))["joints"].shape == (370, 16, 3)
    with pytest.raises(InputError, match="different joint layouts"):
        ShuffledHandBatches([store, icvl])
    with pytest.raises(InputError, match="cannot be converted"):
        HandDataset(icvl, layout="hands2017")


def test_nyu36_keeps_the_14_evaluated_points_and_fills_the_rest_anatomically():
    pose = np.random.default_rng(0).normal(0, 40, (5, 21, 3)) + [0, 0, 500]
    nyu36 = nyu36_from_canonical(pose)
    np.testing.assert_allclose(nyu36[:, list(NYU_EVAL_JOINTS)], LAYOUTS["nyu"].from_canonical(pose), atol=1e-9)
    np.testing.assert_allclose(converter("nyu36", "nyu")(nyu36), LAYOUTS["nyu"].from_canonical(pose), atol=1e-9)
    names = LAYOUTS["nyu36"].joint_names
    tip, dip = JOINT_NAMES.index("ITIP"), JOINT_NAMES.index("IDIP")
    np.testing.assert_allclose(nyu36[:, names.index("F4_KNU3_A")], pose[:, tip])
    np.testing.assert_allclose(nyu36[:, names.index("F4_KNU3_B")], pose[:, dip])
    assert np.isfinite(nyu36).all()


def test_mixing_takes_each_store_by_ratio_and_cycles_a_small_store(store, small_store):
    stream = ShuffledHandBatches([store, small_store], ratios=[0.25, 0.75], samples_per_epoch=400, batch_size=50,
                                 seed=2, buffer_blocks=4)
    batches = epoch(stream)
    which = torch.cat([b["store"] for b in batches]).numpy()
    order = indices(batches)
    assert len(order) == 400 and (which == 0).sum() == 100 and (which == 1).sum() == 300
    assert len(set(order[which == 0].tolist())) == 100  # 100 of the 300, none twice
    assert Counter(order[which == 1].tolist()) == {i: 3 for i in range(100)}  # three full passes
    shares = [float((b["store"] == 1).float().mean()) for b in batches]
    assert max(abs(share - 0.75) for share in shares) <= 0.3  # interleaved, not one store after the other
    data = [open_store(store), open_store(small_store)]
    for b in batches[:2]:
        for row in range(len(b["index"])):
            expected = data[int(b["store"][row])].read(int(b["index"][row]))
            np.testing.assert_array_equal(b["joints"][row].numpy(), expected.pose[0])


def test_stream_refuses_bad_arguments(store, tmp_path):
    other_cube = make_store(tmp_path / "c.zarr", 10, seed=3, cube_mm=300.0)
    cases = [
        (dict(stores=[store, other_cube]), "crop size / cube"),
        (dict(stores=store, layout="mano"), "unknown joint layout"),
        (dict(stores=store, joints="cm"), "joints must be one of"),
        (dict(stores=store, ratios=[0.5, 0.5]), "ratios must be 1"),
        (dict(stores=store, ratios=[-1.0]), "ratios must be"),
        (dict(stores=store, ratios=[1.0], shuffle=False), "need shuffle=True"),
        (dict(stores=store, batch_size=0), "batch_size must be"),
        (dict(stores=store, depth_dtype="int8"), "depth_dtype"),
        (dict(stores=store, augment="yes"), "augment must be"),
        (dict(stores=store, shuffle=False, samples_per_epoch=10), "samples_per_epoch"),
        (dict(stores=[]), "no store given"),
        (dict(stores=tmp_path / "missing.zarr"), "does not exist"),
    ]
    for kwargs, fragment in cases:
        with pytest.raises(InputError, match=fragment):
            ShuffledHandBatches(kwargs.pop("stores"), **kwargs)


def test_direct_shard_reads_equal_zarrs_and_catch_damage(tmp_path):
    path = make_store(tmp_path / "d.zarr", 300, seed=6)
    data = open_store(path)
    depth = data.depth[:]
    depth[64:128] = 1.0  # an all-background block: Zarr stores no inner chunk for it
    writer_arrays = zarr.open_group(str(path), mode="r+")
    writer_arrays["depth"][64:128] = depth[64:128]
    blocks = _ShardBlocks(data.path, open_store(path).depth)
    assert blocks.direct
    for start in range(0, 300, BLOCK):
        np.testing.assert_array_equal(blocks.read(start, min(start + BLOCK, 300)), depth[start:start + BLOCK])
    assert blocks._indices[0][1].tolist() == [2**64 - 1] * 2  # that block was read as "absent": fill
    np.testing.assert_array_equal(blocks.read(10, 20), depth[10:20])  # unaligned: through Zarr
    out = np.empty((BLOCK, CROP_SIZE, CROP_SIZE), np.float16)
    assert blocks.read(128, 192, out=out) is out  # a whole chunk, decoded in place
    np.testing.assert_array_equal(out, depth[128:192])

    plain = zarr.create_array(str(tmp_path / "plain.zarr"), shape=(100, 8, 8), chunks=(10, 8, 8), dtype="float16")
    plain[:] = np.arange(6400, dtype=np.float16).reshape(100, 8, 8)
    other = _ShardBlocks(tmp_path / "plain.zarr", plain)
    assert not other.direct and np.array_equal(other.read(20, 30), plain[20:30])

    shard = shard_path(data.path, data.depth, 1)
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the shard index
    shard.write_bytes(bytes(raw))
    with pytest.raises(CorruptStoreError, match="crc32c"):
        _ShardBlocks(data.path, open_store(path).depth).read(128, 192)


# --- the map-style dataset -----------------------------------------------------------------


def test_map_style_dataset_reads_any_index_and_batches_with_a_dataloader(store, small_store):
    dataset = HandDataset([store, small_store], layout="icvl")
    data = [open_store(store), open_store(small_store)]
    assert len(dataset) == 400
    for index, (which, local) in ((0, (0, 0)), (299, (0, 299)), (300, (1, 0)), (-1, (1, 99))):
        item = dataset[index]
        expected = data[which].read(local)
        assert item["depth"].shape == (1, CROP_SIZE, CROP_SIZE)
        np.testing.assert_array_equal(item["depth"][0].numpy(), expected.depth[0])
        np.testing.assert_allclose(item["joints"].numpy(), LAYOUTS["icvl"].from_canonical(expected.pose[0]), rtol=1e-6)
    batch = next(iter(DataLoader(dataset, batch_size=16, shuffle=True, num_workers=2)))
    assert batch["depth"].shape == (16, 1, CROP_SIZE, CROP_SIZE) and batch["joints"].shape == (16, 16, 3)
    with pytest.raises(IndexError):
        dataset[400]


# --- augmentation --------------------------------------------------------------------------


def marked_crops(angle_count: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops with a 3-pixel disc at each joint's projection, at that joint's depth."""
    cube, size = 250.0, CROP_SIZE
    center = np.array([[20.0, -10.0, 500.0]] * angle_count)
    focal = size * center[0, 2] / cube
    grid = np.array([(du, dv) for du in (-36, -18, 0, 18, 36) for dv in (-36, -18, 0, 18, 36)][:21], float)
    z = 500.0 + np.linspace(-40, 40, 21)
    xyz = np.stack([(grid[:, 0] / focal + 20 / 500) * z, (grid[:, 1] / focal - 10 / 500) * z, z], axis=-1)
    v, u = np.mgrid[0:size, 0:size]
    depth_mm = np.zeros((size, size))
    for (du, dv), depth in zip(grid, z):
        depth_mm[(u - 63.5 - du) ** 2 + (v - 63.5 - dv) ** 2 <= 9] = depth
    depth = normalize_depth(np.repeat(depth_mm[None], angle_count, axis=0), center[:, 2], cube)
    return depth, np.repeat(xyz[None], angle_count, axis=0).astype(np.float32), center.astype(np.float32)


def crop_pixels(joints: np.ndarray, center: np.ndarray) -> np.ndarray:
    focal = CROP_SIZE * center[:, 2, None] / 250.0
    u = focal * (joints[..., 0] / joints[..., 2] - (center[:, 0] / center[:, 2])[:, None]) + 63.5
    v = focal * (joints[..., 1] / joints[..., 2] - (center[:, 1] / center[:, 2])[:, None]) + 63.5
    return np.stack([u, v], axis=-1)


def test_augmented_joints_land_on_their_augmented_depth():
    angles = np.array([0.0, 0.7, -2.5, np.pi])
    depth, joints, center = marked_crops(len(angles))
    scale, shift = np.array([1.0, 1.08, 0.92, 1.0]), np.array([0.0, 6.0, -9.0, 3.0])
    new_depth, new_joints = transform_crops(depth, joints, center, 250.0, angle=angles, scale=scale, shift_mm=shift)

    metric = denormalize_depth(new_depth, center[:, 2], 250.0)
    uv = np.rint(crop_pixels(new_joints, center)).astype(int)
    for k in range(len(angles)):
        landed = metric[k, uv[k, :, 1], uv[k, :, 0]]
        np.testing.assert_allclose(landed, new_joints[k, :, 2], atol=0.02)
        np.testing.assert_allclose(new_joints[k, :, 2], 500 + scale[k] * (joints[k, :, 2] - 500) + shift[k], atol=1e-3)
    # In-plane distances scale by `scale`; a half turn mirrors every offset through the centre.
    before, after = crop_pixels(joints, center), crop_pixels(new_joints, center)
    spread = np.linalg.norm(after - after.mean(1, keepdims=True), axis=-1) / np.linalg.norm(
        before - before.mean(1, keepdims=True), axis=-1)
    np.testing.assert_allclose(spread, np.broadcast_to(scale[:, None], spread.shape), rtol=1e-4)
    np.testing.assert_allclose(after[3] - 63.5, -(before[3] - 63.5), atol=1e-3)
    assert (new_depth[0] == depth[0]).mean() > 0.999  # the identity keeps the crop


def test_a_positive_quarter_turn_is_clockwise_on_screen():
    depth, joints, center = marked_crops()
    depth[0, 10:20, 100:110] = 0.0  # a patch right of the centre, above it
    turned, turned_joints = transform_crops(depth, joints, center, 250.0, angle=np.array([np.pi / 2]),
                                            scale=np.array([1.0]), shift_mm=np.array([0.0]))
    np.testing.assert_allclose(turned[0], np.rot90(depth[0], k=-1), atol=1e-6)
    before, after = crop_pixels(joints, center)[0] - 63.5, crop_pixels(turned_joints, center)[0] - 63.5
    np.testing.assert_allclose(after, np.stack([-before[:, 1], before[:, 0]], axis=-1), atol=1e-3)


def test_augmentation_draws_within_its_ranges_and_adds_sensor_noise():
    depth, joints, center = marked_crops(64)
    rng = np.random.default_rng(0)
    shifted, moved = Augmentation(rotation_deg=0, scale=(1, 1), depth_shift_mm=8).apply(depth, joints, center,
                                                                                         250.0, rng)
    offsets = moved[..., 2] - joints[..., 2]
    assert np.allclose(offsets, offsets[:, :1], atol=1e-3) and np.abs(offsets).max() <= 8 and offsets.std() > 2
    np.testing.assert_allclose(moved[..., :2] / moved[..., 2:], joints[..., :2] / joints[..., 2:], atol=1e-6)

    noisy, same = Augmentation(rotation_deg=0, scale=(1, 1), depth_shift_mm=0, noise=SensorNoise()).apply(
        depth, joints, center, 250.0, rng)
    np.testing.assert_allclose(same, joints, atol=1e-3)
    hand = depth < 1
    assert (noisy[hand] != depth[hand]).mean() > 0.5 and (noisy[~hand] == 1).all()
    assert (noisy[hand] == 1).any()  # holes and edge drop-out remove data
    with pytest.raises(InputError, match="scale"):
        Augmentation(scale=(1.1, 0.9))
    with pytest.raises(InputError, match="rotation_deg"):
        Augmentation(rotation_deg=-1)


def test_augmented_stream_is_reproducible_and_keeps_labels_on_the_hand(store):
    stream = ShuffledHandBatches(store, batch_size=64, seed=4, augment=Augmentation(), layout="msra")
    a, b = epoch(stream), None
    stream.set_epoch(0)
    b = epoch(stream, num_workers=2)
    key = lambda batches: np.argsort(indices(batches))  # noqa: E731 - same samples, worker order differs
    for name in ("depth", "joints"):
        np.testing.assert_array_equal(torch.cat([x[name] for x in a]).numpy()[key(a)],
                                      torch.cat([x[name] for x in b]).numpy()[key(b)])
    plain = LAYOUTS["msra"].from_canonical(open_store(store).read(indices(a)).pose)
    assert not np.allclose(torch.cat([x["joints"] for x in a]).numpy(), plain)
