"""The hand store: round trips, self-description, crash safety, multi-process writes, errors."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from synthgen import __version__
from synthgen.conventions import CAMERAS, CROP_SIZE, JOINT_NAMES, NORMALISATION, SCHEMA_VERSION
from synthgen.data.reader import describe, format_description, open_store
from synthgen.data.schema import (
    ChunkAlignmentError,
    IncompleteStoreError,
    InvalidBatchError,
    InvalidMetadataError,
    NotAStoreError,
    SampleBatch,
    SampleIndexError,
    SchemaVersionError,
    StoreExistsError,
    StoreLocationError,
    StoreMetadata,
    SynthgenDataError,
    depth_max_error_mm,
)
from synthgen.data.shards import ShardEncoder
from synthgen.data.writer import StoreWriter
from synthgen.hand.camera import crop_uv_to_frame, normalize_depth, project

CHUNK = 16
FIXED_CREATED = "2024-01-01T00:00:00+00:00"


def make_samples(seed: int, count: int, cube_mm: float = 250.0) -> tuple[np.ndarray, SampleBatch]:
    """Metric crops of a smooth blob (about 15 % foreground) and the batch that stores them."""
    rng = np.random.default_rng(seed)
    center = np.stack([rng.uniform(-80, 80, count), rng.uniform(-60, 60, count), rng.uniform(350, 650, count)],
                      axis=-1).astype(np.float32)
    pose = (center[:, None, :] + rng.normal(0, 35, (count, len(JOINT_NAMES), 3))).astype(np.float32)
    v, u = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE].astype(np.float32)
    radius = rng.uniform(22, 30, (count, 1, 1)).astype(np.float32)
    r2 = ((u - 64) ** 2 + (v - 60) ** 2) / radius**2
    surface = center[:, 2, None, None] - 40 * np.sqrt(np.clip(1 - r2, 0, None)) + 5 * (u - 64) / radius
    depth_mm = np.where(r2 < 1, surface, 0).astype(np.float32)
    depth = normalize_depth(depth_mm, center[:, 2], cube_mm)
    return depth_mm, SampleBatch(depth, pose, center, rng.normal(size=(count, 23)))


def metadata(**overrides) -> StoreMetadata:
    return StoreMetadata(**{"producer": "render", "seed": 7, "created": FIXED_CREATED,
                            "parameters": {"noise_mm": 0.0}, **overrides})


def write_store(path: Path, batch: SampleBatch, meta: StoreMetadata | None = None, finalize: bool = True,
                chunks: list[int] | None = None, overwrite: bool = False) -> StoreWriter:
    writer = StoreWriter.create(path, len(batch), meta or metadata(), with_latent=batch.latent is not None,
                                chunk_size=CHUNK, overwrite=overwrite)
    for chunk in range(writer.num_chunks) if chunks is None else chunks:
        write_chunk(writer, batch, chunk)
    if finalize:
        writer.finalize()
    return writer


def write_chunk(writer: StoreWriter, batch: SampleBatch, chunk: int) -> None:
    start, stop = writer.chunk_bounds(chunk)
    latent = None if batch.latent is None else batch.latent[start:stop]
    writer.write(start, SampleBatch(batch.depth[start:stop], batch.pose[start:stop], batch.center[start:stop], latent))


def store_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- round trips ---------------------------------------------------------------------------


def test_round_trip_is_exact_except_float16_depth_within_stated_bound(tmp_path):
    _, batch = make_samples(0, 3 * CHUNK + 5)  # a partial last chunk
    write_store(tmp_path / "s.zarr", batch)
    store = open_store(tmp_path / "s.zarr")
    back = store.read(slice(None))

    assert len(store) == len(batch) and back.depth.dtype == np.float32
    np.testing.assert_array_equal(back.pose, batch.pose)
    np.testing.assert_array_equal(back.center, batch.center)
    np.testing.assert_array_equal(back.latent, batch.latent)
    error_mm = np.abs(back.depth - batch.depth).max() * store.metadata.cube_mm / 2
    bound_mm = store.attrs["normalisation"]["max_quantisation_error_mm"]
    assert 0 < error_mm <= bound_mm == pytest.approx(0.0305, abs=1e-4)
    np.testing.assert_array_equal(back.depth == 1.0, batch.depth == 1.0)  # background stays exact


def test_the_default_layout_shards_chunks_into_read_chunks(tmp_path):
    """chunk_size samples per shard (the write unit), 64-sample inner chunks (the read unit)."""
    _, batch = make_samples(16, 200)
    writer = StoreWriter.create(tmp_path / "s.zarr", len(batch), metadata(), chunk_size=128)
    for chunk in range(writer.num_chunks):
        start, stop = writer.chunk_bounds(chunk)
        writer.write(start, SampleBatch(batch.depth[start:stop], batch.pose[start:stop], batch.center[start:stop]))
    writer.finalize()
    store = open_store(tmp_path / "s.zarr")

    assert store.depth.shards == (128, CROP_SIZE, CROP_SIZE) and store.depth.chunks == (64, CROP_SIZE, CROP_SIZE)
    assert store.pose.shards == (128, 21, 3) and store.latent is None
    order = np.random.default_rng(0).permutation(200)[:50]
    np.testing.assert_array_equal(store.read(order).pose, batch.pose[order])


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, 64, elements=st.floats(-1, 1, width=32)))
def test_float16_error_never_exceeds_the_stated_bound(values):
    error_mm = np.abs(values.astype(np.float16).astype(np.float32) - values).max() * 125.0
    assert error_mm <= depth_max_error_mm(250.0)


def test_stored_depth_rounds_exactly_as_numpy_at_every_float16_boundary():
    """The writer casts depth to float16 through torch (faster); the bits must be numpy's. Every
    float16 in [-1, 1], the float32 midpoints between neighbours (ties: round half to even) and
    the float32 values just beside each midpoint, subnormals included."""
    from synthgen.data.writer import _as_stored_depth

    halves = np.arange(0, 0x3C01, dtype=np.uint16).view(np.float16).astype(np.float32)  # 0 ... 1
    midpoints = (halves[:-1] + halves[1:]) / 2  # exact in float32
    values = np.concatenate([halves, midpoints, np.nextafter(midpoints, np.float32(0)),
                             np.nextafter(midpoints, np.float32(2))])
    values = np.concatenate([values, -values]).astype(np.float32)
    stored = _as_stored_depth(values)
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(stored.view(np.uint16), values.astype(np.float16).view(np.uint16))
    assert _as_stored_depth(stored) is stored  # already float16: no copy


def test_read_keeps_the_requested_order_and_indexing(tmp_path):
    _, batch = make_samples(1, 2 * CHUNK)
    write_store(tmp_path / "s.zarr", batch)
    store = open_store(tmp_path / "s.zarr")

    np.testing.assert_array_equal(store.read([20, 3, 3, -1]).pose, batch.pose[[20, 3, 3, -1]])
    np.testing.assert_array_equal(store.read(slice(4, 30, 5)).center, batch.center[4:30:5])
    np.testing.assert_array_equal(store.read(np.int64(7)).pose, batch.pose[7:8])
    with pytest.raises(SampleIndexError, match="out of range"):
        store.read(2 * CHUNK)
    with pytest.raises(SampleIndexError):
        store.read([1.5])


def test_a_sample_unnormalises_with_only_the_store(tmp_path):
    """Camera and cube differ from the defaults, so the reader can only have them from the store."""
    cube, camera = 300.0, CAMERAS["nyu"]
    depth_mm, batch = make_samples(2, CHUNK, cube_mm=cube)
    write_store(tmp_path / "s.zarr", batch, metadata(camera="nyu", cube_mm=cube))
    store = open_store(tmp_path / "s.zarr")
    i = 5

    metric = store.depth_mm(i)
    foreground = depth_mm[i] > 0
    np.testing.assert_array_equal(metric > 0, foreground)
    assert np.abs(metric - depth_mm[i])[foreground].max() <= depth_max_error_mm(cube) + 1e-3

    # From the raw attributes alone, without synthgen's reader.
    attrs = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]
    raw = zarr.open_array(str(tmp_path / "s.zarr" / "depth"), mode="r")[i].astype(np.float32)
    center_z = zarr.open_array(str(tmp_path / "s.zarr" / "center"), mode="r")[i, 2]
    by_hand = raw * attrs["normalisation"]["depth_scale_mm"] + center_z
    np.testing.assert_allclose(by_hand[foreground], depth_mm[i][foreground], atol=1.0)

    np.testing.assert_allclose(store.uvd_full_frame(i), project(batch.pose[i], camera), atol=1e-6)
    rows, cols = np.nonzero(foreground)
    expected_uv = crop_uv_to_frame(np.stack([cols, rows], -1), batch.center[i], camera, cube, CROP_SIZE)
    uvd = store.depth_uvd_full_frame(i)
    np.testing.assert_allclose(uvd[:, :2], expected_uv, atol=1e-6)
    assert np.abs(uvd[:, 2] - depth_mm[i][rows, cols]).max() < 1.0
    assert store.crop_camera(i).fx == pytest.approx(CROP_SIZE * batch.center[i, 2] / cube)


def test_attributes_describe_everything_needed(tmp_path):
    checksum = "ab" * 32
    _, batch = make_samples(3, CHUNK)
    write_store(tmp_path / "s.zarr", batch, metadata(producer="sample", model_checksum=checksum))
    attrs = open_store(tmp_path / "s.zarr").attrs

    assert attrs["schema_version"] == SCHEMA_VERSION
    assert attrs["joint_names"] == list(JOINT_NAMES) and attrs["units"] == "mm"
    assert "x right, y down, z forward" in attrs["coordinate_system"]
    assert attrs["intrinsics"] == CAMERAS["hands2017"].to_dict() and attrs["camera"] == "hands2017"
    assert (attrs["cube_mm"], attrs["crop_size"]) == (250.0, CROP_SIZE)
    assert attrs["normalisation"]["text"] == NORMALISATION
    assert attrs["normalisation"]["background"] == 1.0 and attrs["normalisation"]["depth_scale_mm"] == 125.0
    assert (attrs["producer"], attrs["model_checksum"], attrs["seed"]) == ("sample", checksum, 7)
    assert attrs["synthgen_version"] == __version__ and attrs["created"] == FIXED_CREATED
    assert attrs["parameters"] == {"noise_mm": 0.0}
    assert attrs["layout"]["chunk_size"] == CHUNK
    assert attrs["layout"]["arrays"]["depth"]["dtype"] == "float16"
    assert attrs["complete"] is True and attrs["num_samples"] == CHUNK


# --- shard files encoded by the writer ----------------------------------------------------


@pytest.mark.parametrize("chunk_size", [CHUNK, 128])  # one inner chunk per shard; two
def test_directly_encoded_shards_are_the_bytes_zarr_writes(tmp_path, monkeypatch, chunk_size):
    """The writer encodes complete shards itself (synthgen.data.shards): every file of the store,
    shard indexes and the checksums attribute included, must be what zarr writes for the same samples."""
    _, batch = make_samples(3, 2 * chunk_size + 5)  # a short last chunk: zarr writes it in both

    def write(path: Path) -> dict[str, bytes]:
        writer = StoreWriter.create(path, len(batch), metadata(), with_latent=True, chunk_size=chunk_size)
        for chunk in range(writer.num_chunks):
            write_chunk(writer, batch, chunk)
        return store_files(writer.finalize())

    direct = write(tmp_path / "direct.zarr")
    monkeypatch.setattr(ShardEncoder, "for_array", classmethod(lambda cls, array: None))
    through_zarr = write(tmp_path / "zarr.zarr")
    assert len(direct) == len(through_zarr) > 4 * 3
    assert direct == through_zarr


def test_shard_encoder_only_takes_the_layout_it_reproduces(tmp_path):
    sharded = zarr.create_array(tmp_path / "a.zarr", shape=(256, 3), dtype="float32", shards=(128, 3), chunks=(64, 3),
                                compressors=zarr.codecs.ZstdCodec(level=1))
    encoder = ShardEncoder.for_array(sharded)
    assert encoder is not None and encoder.shard_shape == (128, 3) and encoder.inner_chunk == 64
    with pytest.raises(ValueError, match="a shard is"):
        encoder.encode(np.zeros((64, 3), np.float32))
    others = [zarr.create_array(tmp_path / "b.zarr", shape=(256, 3), dtype="float32", chunks=(64, 3)),  # no shards
              zarr.create_array(tmp_path / "c.zarr", shape=(256, 3), dtype="float32", shards=(128, 3), chunks=(64, 3),
                                compressors=zarr.codecs.BloscCodec()),
              zarr.create_array(tmp_path / "d.zarr", shape=(256, 4), dtype="float32", shards=(128, 4), chunks=(64, 2),
                                compressors=zarr.codecs.ZstdCodec(level=1))]  # split along a second axis
    assert [ShardEncoder.for_array(array) for array in others] == [None, None, None]


def test_buffer_pool_takes_back_only_whole_buffers_it_could_have_made():
    """A pool hands a buffer out again only if it got all of one back: never a view of part of
    one (someone may still read the rest), a transposed one or an ordinary numpy array."""
    import pickle

    from synthgen.memory import BufferPool

    pool = BufferPool(2)
    buffer = pool.take((4, 8), np.float32)
    assert buffer.flags.writeable and buffer.flags.c_contiguous and buffer.shape == (4, 8)
    for other in (buffer[1:], buffer.T, np.empty((4, 8), np.float32)):
        pool.give_back(other)
        assert pool.take((4, 8), np.float32).ctypes.data != other.ctypes.data
    pool.give_back(buffer)
    assert pickle.loads(pickle.dumps(pool)).take((4, 8), np.float32).ctypes.data != buffer.ctypes.data  # pickles empty
    assert pool.take((2, 8), np.float32).shape == (2, 8)  # another shape: a new buffer (the old one is dropped)
    pool.give_back(buffer)
    assert pool.take((4, 8), np.float32) is buffer


# --- crash safety --------------------------------------------------------------------------


def test_an_existing_store_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "s.zarr"
    _, batch = make_samples(4, CHUNK)
    write_store(path, batch)
    before = store_files(path)

    with pytest.raises(StoreExistsError, match=str(path)):
        StoreWriter.create(path, CHUNK, metadata())
    assert store_files(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_overwrite_replaces_the_old_store_only_at_finalize(tmp_path):
    path = tmp_path / "s.zarr"
    _, old = make_samples(5, CHUNK)
    _, new = make_samples(6, CHUNK)
    write_store(path, old, metadata(producer="old"))

    writer = write_store(path, new, metadata(producer="new"), finalize=False, overwrite=True)
    assert open_store(path).metadata.producer == "old"  # a crash now would leave the old store
    writer.finalize()

    store = open_store(path)
    assert store.metadata.producer == "new"
    np.testing.assert_array_equal(store.read(slice(None)).pose, new.pose)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]
    assert not (path / ".progress").exists()


def test_an_unusable_location_is_refused_with_the_reason(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreLocationError, match="file/s.zarr.incomplete: Not a directory"):
        StoreWriter.create(blocker / "s.zarr", CHUNK, metadata())
    assert blocker.read_text() == "not a directory"


def test_an_unfinished_run_is_refused_for_reading_and_for_a_fresh_create(tmp_path):
    path = tmp_path / "s.zarr"
    _, batch = make_samples(7, 3 * CHUNK)
    write_store(path, batch, finalize=False, chunks=[0, 2])

    with pytest.raises(IncompleteStoreError, match="not finished"):
        open_store(path)
    with pytest.raises(IncompleteStoreError, match="incomplete"):
        open_store(path.with_name("s.zarr.incomplete"))
    with pytest.raises(StoreExistsError, match="unfinished"):
        StoreWriter.create(path, 3 * CHUNK, metadata())

    store = open_store(path, allow_incomplete=True)
    assert not store.complete and store.missing_chunks() == [1]
    np.testing.assert_array_equal(store.read(slice(2 * CHUNK, 3 * CHUNK)).pose, batch.pose[2 * CHUNK:])
    with pytest.raises(IncompleteStoreError, match=r"\[1\]"):
        store.read(CHUNK + 1)
    assert describe(store)["missing_chunks"] == 1


def test_missing_chunks_drive_a_resume(tmp_path):
    path = tmp_path / "s.zarr"
    _, batch = make_samples(8, 4 * CHUNK)
    writer = write_store(path, batch, finalize=False, chunks=[0, 2])
    assert writer.missing_chunks() == [1, 3]
    with pytest.raises(IncompleteStoreError, match="2 of 4 chunks"):
        writer.finalize()

    resumed = StoreWriter.open_existing(path)  # as `--resume` would, from the final path
    assert resumed.missing_chunks() == [1, 3]
    for chunk in resumed.missing_chunks():
        write_chunk(resumed, batch, chunk)
    assert resumed.finalize() == path
    np.testing.assert_array_equal(open_store(path).read(slice(None)).pose, batch.pose)
    with pytest.raises(StoreExistsError, match="nothing to resume"):
        StoreWriter.open_existing(path)


def _write_chunks_in_worker(working_path: str, chunks: list[int]) -> None:
    writer = StoreWriter.open_existing(working_path)
    _, batch = make_samples(9, writer.num_samples)
    for chunk in chunks:
        write_chunk(writer, batch, chunk)


def test_two_processes_writing_disjoint_chunks_give_the_same_bytes_as_one(tmp_path):
    _, batch = make_samples(9, 4 * CHUNK)
    write_store(tmp_path / "one.zarr", batch)

    writer = StoreWriter.create(tmp_path / "two.zarr", len(batch), metadata(), with_latent=True, chunk_size=CHUNK)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_chunks_in_worker, args=(str(writer.working_path), chunks))
               for chunks in ([0, 2], [1, 3])]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [0, 0]
    writer.finalize()

    assert store_files(tmp_path / "two.zarr") == store_files(tmp_path / "one.zarr")


def test_writes_must_cover_whole_chunks(tmp_path):
    _, batch = make_samples(10, 2 * CHUNK + 3)
    writer = StoreWriter.create(tmp_path / "s.zarr", len(batch), metadata(), with_latent=True, chunk_size=CHUNK)
    with pytest.raises(ChunkAlignmentError, match="do not start a chunk"):
        writer.write(1, SampleBatch(batch.depth[1:CHUNK + 1], batch.pose[1:CHUNK + 1], batch.center[1:CHUNK + 1],
                                    batch.latent[1:CHUNK + 1]))
    with pytest.raises(ChunkAlignmentError, match="end inside a chunk"):
        writer.write(0, SampleBatch(batch.depth[:5], batch.pose[:5], batch.center[:5], batch.latent[:5]))
    with pytest.raises(InvalidBatchError, match="latent"):
        writer.write(0, SampleBatch(batch.depth[:CHUNK], batch.pose[:CHUNK], batch.center[:CHUNK]))
    writer.write(CHUNK, SampleBatch(batch.depth[CHUNK:], batch.pose[CHUNK:], batch.center[CHUNK:],
                                    batch.latent[CHUNK:]))  # two chunks at once, the last one partial
    assert writer.missing_chunks() == [0]


def test_a_chunk_is_marked_written_only_after_its_shards_are_synced(tmp_path, monkeypatch):
    """The marker says a chunk survives a power loss: every shard file of the chunk was synced
    to disk (and left the page cache) before the marker was written."""
    import synthgen.data.writer as writer_module
    import synthgen.outputs as outputs_module

    events = []
    monkeypatch.setattr(outputs_module, "_SYNC_DATA", lambda fd: events.append(("sync", os.readlink(f"/proc/self/fd/{fd}"))))
    marker = writer_module.write_chunk_marker
    monkeypatch.setattr(writer_module, "write_chunk_marker",
                        lambda root, chunk, digests: events.append(("marker", chunk)) or marker(root, chunk, digests))
    _, batch = make_samples(4, 2 * CHUNK)
    write_store(tmp_path / "s.zarr", batch)
    assert [kind for kind, _ in events] == ["sync"] * 4 + ["marker"] + ["sync"] * 4 + ["marker"]
    synced = [Path(path) for kind, path in events if kind == "sync"]
    working = (tmp_path / "s.zarr.incomplete").resolve()
    assert {path.relative_to(working).parts[0] for path in synced} == {"depth", "pose", "center", "latent"}
    assert all(path.name.endswith(".partial") for path in synced)  # synced before the rename


# --- refusals ------------------------------------------------------------------------------


def test_another_schema_version_or_a_non_store_is_refused(tmp_path):
    _, batch = make_samples(11, CHUNK)
    write_store(tmp_path / "s.zarr", batch)
    zarr.open_group(str(tmp_path / "s.zarr"), mode="r+").attrs.update({"schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(SchemaVersionError, match=f"version {SCHEMA_VERSION + 1}"):
        open_store(tmp_path / "s.zarr")

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    (tmp_path / "empty").mkdir()
    for path, message in [(tmp_path / "plain.zarr", "not a synthgen hand store"),
                          (tmp_path / "empty", "not a Zarr store"), (tmp_path / "nothing", "does not exist")]:
        with pytest.raises(NotAStoreError, match=message):
            open_store(path)


@pytest.mark.parametrize(("field", "index", "value", "message"), [
    ("depth", (0, 3, 3), np.nan, "depth has 1 NaN/inf"),
    ("pose", (1, 2, 0), np.inf, "pose has 1 NaN/inf"),
    ("latent", (0, 0), np.nan, "latent has 1 NaN/inf"),
    ("depth", (0, 0, 0), 1.5, r"depth must be normalised to \[-1, 1\]"),
    ("center", (0, 2), -3.0, "center z must be > 0"),
])
def test_bad_values_are_rejected_with_the_array_named(field, index, value, message):
    _, batch = make_samples(12, 2)
    arrays = {"depth": batch.depth.copy(), "pose": batch.pose.copy(), "center": batch.center.copy(),
              "latent": batch.latent.copy()}
    arrays[field][index] = value
    with pytest.raises(InvalidBatchError, match=message):
        SampleBatch(**arrays)


def test_bad_shapes_and_metadata_are_rejected(tmp_path):
    _, batch = make_samples(13, 2)
    with pytest.raises(InvalidBatchError, match=r"pose must be \(2, 21, 3\)"):
        SampleBatch(batch.depth, batch.pose[:, :20], batch.center)
    with pytest.raises(InvalidBatchError, match=r"depth must be \(n, S, S\)"):
        SampleBatch(batch.depth[:, :, :100], batch.pose, batch.center)
    with pytest.raises(InvalidMetadataError, match="unknown camera preset 'kinect'"):
        metadata(camera="kinect")
    with pytest.raises(InvalidMetadataError, match="plain JSON"):
        metadata(parameters={"rng": object()})
    with pytest.raises(InvalidMetadataError, match="sha256"):
        metadata(model_checksum="not-a-hash")
    with pytest.raises(InvalidMetadataError, match="multiple of 64"):
        StoreWriter.create(tmp_path / "s.zarr", 1000, metadata(), chunk_size=100)
    assert list(tmp_path.iterdir()) == []
    assert issubclass(InvalidBatchError, SynthgenDataError) and issubclass(SynthgenDataError, ValueError)


# --- describe ------------------------------------------------------------------------------


def test_describe_reports_layout_sizes_and_bounded_statistics(tmp_path):
    depth_mm, batch = make_samples(14, 5 * CHUNK)
    write_store(tmp_path / "s.zarr", batch)
    store = open_store(tmp_path / "s.zarr")
    info = describe(store, max_samples=40)

    assert (info["num_samples"], info["num_chunks"], info["complete"]) == (5 * CHUNK, 5, True)
    depth = info["arrays"]["depth"]
    assert depth["shape"] == [5 * CHUNK, CROP_SIZE, CROP_SIZE] and depth["dtype"] == "float16"
    assert depth["shards"] == depth["chunks"] == [CHUNK, CROP_SIZE, CROP_SIZE]
    assert depth["compressors"][0].startswith("zstd")
    assert depth["compression_ratio"] > 3 and info["stored_bytes"] < info["raw_bytes"]
    assert info["metadata"]["producer"] == "render"

    stats = info["statistics"]
    assert stats["samples"] == 40  # 4 chunks of 10: whole-chunk reads, never the whole store
    used = np.concatenate([np.arange(c * CHUNK, c * CHUNK + 10) for c in (0, 1, 3, 4)])
    assert stats["foreground_fraction"] == pytest.approx((depth_mm[used] > 0).mean())
    assert stats["center_z_mm"] == {"min": pytest.approx(batch.center[used, 2].min()),
                                    "max": pytest.approx(batch.center[used, 2].max())}
    assert stats["depth"]["max"] == 1.0 and stats["depth"]["min"] == pytest.approx(batch.depth[used].min(), abs=1e-3)
    json.dumps(info)

    text = format_description(info)
    assert "complete" in text and "80 in 5 chunk(s) of 16" in text and "float16" in text
    assert f"foreground {stats['foreground_fraction']:.1%}" in text

