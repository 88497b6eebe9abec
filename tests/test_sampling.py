"""Sampling from Crossing Nets: stores, determinism, the prior, interpolation, walks, videos, CLI errors.

A tiny random CrossingNets (4-channel generator) stands in for the trained model, so these
tests check the machinery, not the model's quality; the one check that needs a trained model
(encode → decode accuracy at interpolation endpoints) skips when the default model is absent.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.data.reader import open_store
from synthgen.hand.camera import hand_center
from synthgen.models import CrossingNets, CrossingNetsConfig, DiscriminatorConfig, GaussianStats, GeneratorConfig
from synthgen.sampling import (
    BLOCK_SIZE,
    DEFAULT_MODEL_DIR,
    LatentPrior,
    PriorSource,
    SamplingPipeline,
    interpolate_codes,
    latent_walk,
    lerp,
    load_model,
    resolve_endpoint,
    slerp,
    truncated_normal,
)
from synthgen.sampling.prior import codes_to_whitened, whitened_to_codes

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, fragment: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("synthgen: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def tiny_model(seed: int = 0) -> CrossingNets:
    torch.manual_seed(seed)
    config = CrossingNetsConfig(generator=GeneratorConfig(channels=4, fc_dim=64),
                                discriminator=DiscriminatorConfig(channels=4, metric_hidden=32))
    root = GaussianStats(mean=(0.1, -0.4, 0.2), cov=((0.3, 0.05, 0.0), (0.05, 0.2, 0.0), (0.0, 0.0, 0.1)))
    rng = np.random.default_rng(seed)
    latent = GaussianStats.of(rng.normal(0.5, 0.3, (500, 20)) @ np.diag(np.linspace(0.2, 1.0, 20)))
    return CrossingNets(config, root_offset=root, latent=latent).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_model().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)


@pytest.fixture(scope="module")
def sampled(model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "s.zarr"
    result = invoke("sample", "--n", 300, "--out", out, "--model", model_dir, "--seed", 5, "--truncation", 2.0,
                    "--prior", "standard", "--precision", "fp32")  # the exact path (auto: tests/test_inference.py)
    assert result.exit_code == 0, result.output
    assert f"wrote 300 samples to {out}" in result.stdout and "MB on disk" in result.stdout
    return out


def pose_file(tmp_path: Path, name: str, array) -> Path:
    path = tmp_path / name
    np.save(path, np.asarray(array))
    return path


def some_poses(n: int, seed: int = 0) -> np.ndarray:
    """Plausible hands in mm camera coordinates, from the baseline's pose prior."""
    from synthgen.conventions import CAMERAS
    from synthgen.hand.kinematics import forward_kinematics
    from synthgen.hand.prior import sample_poses

    pose = sample_poses(np.random.default_rng(seed), n, CAMERAS["hands2017"])
    return forward_kinematics(pose)[0].numpy().astype(np.float32)


# --- the sample store -----------------------------------------------------------------------


def test_sample_store_holds_consistent_arrays_and_metadata(sampled, model, model_dir):
    store = open_store(sampled)
    batch = store.read(slice(0, 300))
    assert batch.depth.shape == (300, 128, 128) and batch.pose.shape == (300, 21, 3)
    assert batch.center.shape == (300, 3) and batch.latent.shape == (300, 23)
    attrs = store.attrs
    assert attrs["producer"] == "sample" and attrs["seed"] == 5 and attrs["model_checksum"] == model.checksum
    params = attrs["parameters"]
    assert params["truncation"] == 2.0 and params["model"] == str(model_dir.resolve())
    assert params["block_size"] == BLOCK_SIZE and params["noise"] is None and params["precision"] == "fp32"
    # pose = (decoded relative pose + root offset) * 50 mm + centre; depth = G(Ali(code))
    latent = torch.from_numpy(batch.latent)
    decoded = model.decode_pose(latent[:, :20], latent[:, 20:], torch.from_numpy(batch.center)).numpy()
    np.testing.assert_allclose(batch.pose, decoded, atol=1e-2)
    np.testing.assert_allclose(batch.depth, model.generate_depth(latent, torch.from_numpy(batch.center)).numpy(),
                               atol=1e-3)
    # centres follow the baseline's placement rule: 350..650 mm, inside the hands2017 frame
    assert batch.center[:, 2].min() >= 350 and batch.center[:, 2].max() <= 650
    u = 475.066 * batch.center[:, 0] / batch.center[:, 2] + 315.945
    assert u.min() >= 0.2 * 640 - 1e-3 and u.max() <= 0.8 * 640 + 1e-3


def test_truncation_bounds_every_prior_dimension(sampled, model):
    latent = open_store(sampled).latent[:]
    assert np.abs(latent[:, :20]).max() <= 2.0
    whitened = codes_to_whitened(model, torch.from_numpy(latent)).numpy()
    assert np.abs(whitened).max() <= 2.0 + 1e-4  # root offsets too, in whitened units
    assert np.abs(latent[:, :20]).max() > 1.5  # truncated, not shrunk


def test_truncated_normal_is_exact_and_monotone():
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    free, cut = truncated_normal((20000,), None, g()), truncated_normal((20000,), 1.0, g())
    assert abs(free.std().item() - 1) < 0.03 and cut.abs().max() <= 1.0
    assert abs(cut.std().item() - 0.5379) < 0.02  # std of N(0,1) truncated to [-1, 1]
    assert torch.all(torch.sign(free) == torch.sign(cut))  # same uniforms: samples shrink, not change
    assert torch.all(cut.abs() <= free.abs() + 1e-12)


def test_whitened_codes_round_trip(model):
    x = torch.randn(50, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for prior in ("standard", "fitted"):
        back = codes_to_whitened(model, whitened_to_codes(model, x, prior, root="gaussian"), prior)
        np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-4)


def test_fitted_prior_follows_the_models_latent_statistics(model):
    codes = LatentPrior(prior="fitted", root="gaussian").sample(model, 20000, torch.Generator().manual_seed(0)).double()
    np.testing.assert_allclose(codes[:, :20].mean(0).numpy(), np.asarray(model.latent.mean), atol=0.02)
    np.testing.assert_allclose(np.cov(codes[:, :20].numpy().T), np.asarray(model.latent.cov), atol=0.02)
    np.testing.assert_allclose(codes[:, 20:].mean(0).numpy(), np.asarray(model.root_offset.mean), atol=0.02)


def test_centred_root_offsets_put_every_hand_in_the_middle_of_its_crop(model):
    """The training crops are centred on the joints' bounding box; sampled hands must be too."""
    codes = LatentPrior(prior="fitted").sample(model, 600, torch.Generator().manual_seed(2))
    centers = np.tile(np.float32([[10.0, -20.0, 500.0]]), (600, 1))
    pose = model.decode_pose(codes[:, :20], codes[:, 20:], torch.from_numpy(centers)).numpy()
    np.testing.assert_allclose(hand_center(pose), centers, atol=1e-3)
    # Same latents, Gaussian offsets: hands scattered around the centre (the training wrist spread).
    gaussian = LatentPrior(prior="fitted", root="gaussian").sample(model, 600, torch.Generator().manual_seed(2))
    np.testing.assert_array_equal(gaussian[:, :20], codes[:, :20])
    loose = model.decode_pose(gaussian[:, :20], gaussian[:, 20:], torch.from_numpy(centers)).numpy()
    assert np.linalg.norm(hand_center(loose) - centers, axis=1).mean() > 20.0
    # Decoded in fixed blocks: the offsets of the first 100 codes do not depend on how many are mapped.
    x = torch.randn(600, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    np.testing.assert_array_equal(whitened_to_codes(model, x[:100], "fitted").numpy(),
                                  whitened_to_codes(model, x, "fitted")[:100].numpy())


# --- determinism ------------------------------------------------------------------------------


def test_samples_do_not_depend_on_batch_size_or_store_size(model):
    reference = PriorSource(model, seed=9, batch_size=256).make_chunk(0, 300)
    for batch_size in (1, 7, 64):
        other = PriorSource(model, seed=9, batch_size=batch_size).make_chunk(0, 300)
        for name in ("depth", "pose", "center", "latent"):
            assert getattr(other, name).tobytes() == getattr(reference, name).tobytes(), (batch_size, name)
    prefix = PriorSource(model, seed=9).make_chunk(0, 10)  # a 10-sample store = the first 10 samples
    assert prefix.depth.tobytes() == reference.depth[:10].tobytes()
    assert prefix.pose.tobytes() == reference.pose[:10].tobytes()


def test_progress_hook_counts_steps(model):
    calls = []
    PriorSource(model, seed=1, batch_size=300).make_chunk(0, 600, callback=calls.append)
    assert calls == [512, 88]  # steps of 2 blocks (300 rounded up to whole 256-sample blocks)


def _shard_bytes(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and "c" in p.relative_to(store).parts}


def test_store_is_byte_identical_across_batch_sizes_and_workers(model_dir, tmp_path):
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    common = ("--n", 1100, "--model", model_dir, "--seed", 2, "--noise")
    assert invoke("sample", *common, "--out", one, "--batch-size", 7, "--workers", 1).exit_code == 0
    result = invoke("sample", *common, "--out", two, "--batch-size", 256, "--workers", 2)
    assert result.exit_code == 0, result.output
    a, b = open_store(one), open_store(two)
    for name in ("depth", "pose", "center", "latent"):
        assert a.arrays[name][:].tobytes() == b.arrays[name][:].tobytes(), name
    shards = _shard_bytes(one)
    assert shards and shards == _shard_bytes(two)
    assert a.attrs["parameters"]["noise"]["sigma_0"] > 0


def test_producer_threads_write_the_same_bytes_and_count_every_sample(model, tmp_path):
    """write_store's default on a CPU: chunks made side by side, one torch thread each."""
    from synthgen.data.schema import StoreMetadata
    from synthgen.data.writer import StoreWriter
    from synthgen.sampling import write_store

    metadata = StoreMetadata(producer="sample", seed=3, created="2024-01-01T00:00:00+00:00", parameters={})
    counts = {}
    for producers in (1, 3):
        writer = StoreWriter.create(tmp_path / f"{producers}.zarr", 1100, metadata, with_latent=True, chunk_size=256)
        source = PriorSource(model, seed=3, chunk_size=256, precision="fp32-fast", batch_size=100)
        done = []
        write_store(writer, source, producers=producers, on_progress=done.append)
        counts[producers] = sum(done)
    assert counts == {1: 1100, 3: 1100}
    assert _shard_bytes(tmp_path / "1.zarr") == _shard_bytes(tmp_path / "3.zarr")


def test_written_chunks_hand_their_depth_buffers_back(model, tmp_path, monkeypatch):
    """write_store reuses a written chunk's depth buffer for a later chunk (fresh 64 MiB buffers
    cost page faults), and the store is the same as with a fresh buffer for every chunk."""
    import synthgen.memory
    from synthgen.data.schema import StoreMetadata
    from synthgen.data.writer import StoreWriter
    from synthgen.sampling import write_store

    metadata = StoreMetadata(producer="sample", seed=3, created="2024-01-01T00:00:00+00:00", parameters={})
    allocate = synthgen.memory.small_page_array

    def write(name: str) -> int:
        """Writes 9 chunks (the last one short) with 2 producers; returns how many full-chunk
        depth buffers were allocated."""
        allocated = []

        def counted(shape, dtype):  # every buffer, the writer's float16 staging too
            allocated.append((tuple(shape), np.dtype(dtype)))
            return allocate(shape, dtype)

        monkeypatch.setattr(synthgen.memory, "small_page_array", counted)
        writer = StoreWriter.create(tmp_path / name, 8 * 128 + 40, metadata, with_latent=True, chunk_size=128)
        write_store(writer, PriorSource(model, seed=3, chunk_size=128, precision="fp32-fast"), producers=2)
        return allocated.count(((128, 128, 128), np.dtype(np.float32)))

    assert write("recycled.zarr") <= 2 + 2 + 1  # at most the chunks in flight: 2 made, 2 queued, 1 written
    monkeypatch.setattr(PriorSource, "recycle", lambda self, chunk: None)
    assert write("fresh.zarr") == 8
    assert _shard_bytes(tmp_path / "recycled.zarr") == _shard_bytes(tmp_path / "fresh.zarr")


def test_pipeline_depth_alone_is_the_depth_of_a_whole_step(model):
    """`generate_depth` (what benchmarks time as the generator) gives the same bits as a full
    pipeline call, for a whole block and a short one, and takes at most one block."""
    source = PriorSource(model, seed=2, chunk_size=512, precision="fp32-fast")
    codes, centers = source.draw(0, 300)
    whole = source.pipeline(codes, centers).depth
    np.testing.assert_array_equal(source.pipeline.generate_depth(codes[:BLOCK_SIZE], centers[:BLOCK_SIZE]),
                                  whole[:BLOCK_SIZE])
    np.testing.assert_array_equal(source.pipeline.generate_depth(codes[BLOCK_SIZE:], centers[BLOCK_SIZE:]),
                                  whole[BLOCK_SIZE:])
    with pytest.raises(ValueError, match="at most one block"):
        source.pipeline.generate_depth(codes, centers)


def test_generated_depth_stays_in_the_normalised_range(model):
    """No clamp after the networks: every precision path must end in tanh (and the snap to +1)."""
    for precision in ("fp32", "fp32-fast"):
        depth = PriorSource(model, seed=1, chunk_size=256, precision=precision).make_chunk(0, 256).depth
        assert -1.0 <= depth.min() < depth.max() <= 1.0


def test_noise_changes_depth_only(model_dir, sampled, tmp_path):
    noisy = tmp_path / "noisy.zarr"
    assert invoke("sample", "--n", 300, "--out", noisy, "--model", model_dir, "--seed", 5, "--truncation", 2.0,
                  "--prior", "standard", "--noise").exit_code == 0
    clean, dirty = open_store(sampled), open_store(noisy)
    np.testing.assert_array_equal(clean.pose[:], dirty.pose[:])
    assert not np.array_equal(clean.depth[:], dirty.depth[:])


def test_resume_finishes_an_interrupted_run_identically(model_dir, tmp_path, monkeypatch):
    args = ("--n", 2100, "--model", model_dir, "--seed", 4)
    reference = tmp_path / "ref.zarr"
    assert invoke("sample", *args, "--out", reference).exit_code == 0
    out = tmp_path / "run.zarr"
    real = PriorSource.make_chunk

    def crash_on_chunk_2(self, chunk_index, count, callback=None):
        if chunk_index == 2:
            raise KeyboardInterrupt
        return real(self, chunk_index, count, callback)

    monkeypatch.setattr(PriorSource, "make_chunk", crash_on_chunk_2)
    assert invoke("sample", *args, "--out", out).exit_code == 130
    monkeypatch.setattr(PriorSource, "make_chunk", real)
    assert not out.exists() and (tmp_path / "run.zarr.incomplete").is_dir()
    assert_one_line_error(invoke("sample", "--n", 2100, "--model", model_dir, "--seed", 5, "--out", out, "--resume"),
                          "seed differs")
    result = invoke("sample", *args, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert "wrote 52 samples" in result.stdout  # only the missing chunk
    for name in ("depth", "pose", "latent"):
        assert open_store(out).arrays[name][:].tobytes() == open_store(reference).arrays[name][:].tobytes()


# --- pose-conditioned generation --------------------------------------------------------------


def test_generate_from_npy_csv_and_store(model, model_dir, tmp_path):
    from synthgen.conventions import LAYOUTS
    from synthgen.hand.camera import hand_center

    joints = some_poses(20)
    npy, csv = pose_file(tmp_path, "p.npy", joints), tmp_path / "p.csv"
    np.savetxt(csv, joints.reshape(20, 63), delimiter=",", header="x,y,z per joint")
    msra = pose_file(tmp_path, "msra.npy", LAYOUTS["msra"].from_canonical(joints))
    stores = {}
    for name, args in (("npy", (npy,)), ("csv", (csv,)), ("msra", (msra, "--layout", "msra"))):
        stores[name] = tmp_path / f"{name}.zarr"
        result = invoke("generate", "--poses", *args, "--out", stores[name], "--model", model_dir)
        assert result.exit_code == 0, result.output
    first = open_store(stores["npy"]).read(slice(0, 20))
    np.testing.assert_array_equal(first.pose, joints)  # the given poses are the labels
    np.testing.assert_allclose(first.center, hand_center(joints), atol=1e-4)
    latent, root = model.encode_pose(torch.from_numpy(joints), torch.from_numpy(hand_center(joints)))
    np.testing.assert_allclose(first.latent, torch.cat([latent, root], 1).numpy(), atol=1e-4)
    for name in ("csv", "msra"):
        other = open_store(stores[name]).read(slice(0, 20))
        np.testing.assert_allclose(other.pose, joints, atol=1e-3)
        np.testing.assert_allclose(other.depth, first.depth, atol=2e-3)
    again = tmp_path / "again.zarr"
    assert invoke("generate", "--poses", stores["npy"], "--out", again, "--model", model_dir).exit_code == 0
    assert open_store(again).depth[:].tobytes() == open_store(stores["npy"]).depth[:].tobytes()
    assert open_store(again).attrs["parameters"]["layout"] == "hands2017"


# --- interpolation ----------------------------------------------------------------------------


def test_lerp_and_slerp_math():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(20, generator=gen), 2.0 * torch.randn(20, generator=gen)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    for path in (lerp(a, b, t), slerp(a, b, t)):
        assert torch.equal(path[0], a.double()) and torch.equal(path[-1], b.double())
    line = lerp(a, b, t)
    torch.testing.assert_close(line[5], (a.double() + b.double()) / 2)
    arc = slerp(a, b, t)
    expected_norm = (1 - t) * a.double().norm() + t * b.double().norm()
    torch.testing.assert_close(arc.norm(dim=1), expected_norm)  # norms interpolate linearly
    ua, ub = a.double() / a.double().norm(), b.double() / b.double().norm()
    omega = torch.arccos(ua @ ub)
    angles = torch.arccos(torch.clamp((arc / arc.norm(dim=1, keepdim=True)) @ ua, -1, 1))
    torch.testing.assert_close(angles, t * omega)  # constant angular speed along the great circle
    same = slerp(a, b / b.norm() * a.norm(), t)  # equal norms: slerp stays on the sphere
    torch.testing.assert_close(same.norm(dim=1), torch.full((11,), a.double().norm().item(), dtype=torch.float64))
    chord = lerp(a, b / b.norm() * a.norm(), t)
    assert torch.all(chord[1:-1].norm(dim=1) < a.double().norm())  # the straight line cuts inside the sphere
    c = a * 3.0
    torch.testing.assert_close(slerp(a, c, t), lerp(a, c, t))  # parallel: falls back to the line


def test_interpolate_codes_endpoints_and_root_offset():
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(23, generator=gen), torch.randn(23, generator=gen)
    for mode in ("linear", "slerp"):
        codes = interpolate_codes(a, b, 9, mode)
        assert codes.shape == (9, 23) and torch.equal(codes[0], a) and torch.equal(codes[-1], b)
        torch.testing.assert_close(codes[4, 20:], (a[20:] + b[20:]) / 2)  # root offset always linear


def test_interpolate_cli_endpoints_are_exact(model, model_dir, sampled, tmp_path):
    out = tmp_path / "path.zarr"
    joints = some_poses(1)
    one = pose_file(tmp_path, "one.npy", joints[0])
    result = invoke("interpolate", "--from", f"{sampled}:7", "--to", one, "--steps", 6, "--out", out,
                    "--model", model_dir)
    assert result.exit_code == 0, result.output
    path, source = open_store(out).read(slice(0, 6)), open_store(sampled).read(7)
    np.testing.assert_array_equal(path.latent[0], source.latent[0])  # same model: the stored latent itself
    np.testing.assert_array_equal(path.center[0], source.center[0])
    np.testing.assert_allclose(path.pose[0], source.pose[0], atol=1e-3)
    pipeline = SamplingPipeline(model)
    end = resolve_endpoint(str(one), pipeline)
    np.testing.assert_allclose(path.latent[-1], end.code.numpy(), atol=1e-6)
    assert open_store(out).attrs["parameters"]["mode"] == "slerp"
    seed_end = resolve_endpoint("seed:5", pipeline)  # = sample 0 of `sample --seed 5` (untruncated)
    codes, _ = PriorSource(model, seed=5).draw(0, 1)
    torch.testing.assert_close(seed_end.code, codes[0])


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="the trained default model is absent")
def test_trained_model_endpoints_decode_to_their_poses(tmp_path):
    model = load_model(None)
    pipeline = SamplingPipeline(model)
    joints = some_poses(8, seed=11)
    for i in range(len(joints)):
        end = resolve_endpoint(str(pose_file(tmp_path, f"p{i}.npy", joints[i])), pipeline)
        decoded = pipeline.decode(end.code[None], end.center[None])[0]
        assert np.linalg.norm(decoded - joints[i], axis=1).mean() < 15.0


# --- walks and videos -------------------------------------------------------------------------


def test_walk_is_smooth_and_stays_in_the_typical_set():
    step = 0.15
    x = latent_walk(20000, step, torch.Generator().manual_seed(0))
    deltas = x[1:] - x[:-1]
    lengths = deltas.norm(dim=1)
    assert abs(lengths.mean().item() - step) < 0.3 * step and lengths.max().item() < 3 * step  # no jumps
    cosines = torch.nn.functional.cosine_similarity(deltas[1:], deltas[:-1], dim=1)
    assert cosines.mean().item() > 0.9  # consecutive steps point the same way: no flicker
    radius = x.norm(dim=1)
    assert abs(radius.mean().item() - math.sqrt(23)) < 0.15 * math.sqrt(23)
    var = x.var(dim=0)
    assert var.min().item() > 0.4 and var.max().item() < 1.8  # stationary law ≈ the prior N(0, I)
    again = latent_walk(100, step, torch.Generator().manual_seed(0))
    assert torch.equal(again, x[:100])


def test_walk_video_and_store(model_dir, tmp_path):
    import imageio.v3 as iio

    video, out = tmp_path / "walk.mp4", tmp_path / "walk.zarr"
    result = invoke("walk", "--steps", 12, "--step-size", 0.2, "--seed", 3, "--out", out, "--video", video,
                    "--model", model_dir)
    assert result.exit_code == 0, result.output
    frames = iio.imread(video)
    assert frames.shape == (12, 288, 800, 3)
    store = open_store(out)
    assert len(store) == 12 and store.attrs["producer"] == "walk" and store.attrs["seed"] == 3
    steps = np.diff(store.latent[:, :20], axis=0)
    assert np.linalg.norm(steps, axis=1).max() < 0.6
    assert np.ptp(store.center[:], axis=0).max() == 0  # one fixed crop centre


def test_interpolate_gif(model_dir, tmp_path):
    import imageio.v3 as iio

    gif = tmp_path / "path.gif"
    result = invoke("interpolate", "--from", "seed:1", "--to", "seed:2", "--steps", 5, "--mode", "linear",
                    "--video", gif, "--model", model_dir)
    assert result.exit_code == 0, result.output
    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 5 and frames.shape[1:3] == (288, 800)


# --- errors: one line, exit 2, nothing written ------------------------------------------------


def test_default_model_missing_is_a_clear_error(tmp_path, monkeypatch):
    import synthgen.sampling.pipeline as pipeline

    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path / "nowhere")
    out = tmp_path / "x.zarr"
    assert_one_line_error(invoke("sample", "--n", 4, "--out", out), "default model")
    assert not out.exists() and not (tmp_path / "x.zarr.incomplete").exists()


@pytest.mark.parametrize("args, fragment", [
    (("--n", 0), "--n"),
    (("--n", -3), "--n"),
    (("--n", "abc"), "--n"),
    (("--n", 4, "--truncation", 0), "truncation"),
    (("--n", 4, "--truncation", -1), "truncation"),
    (("--n", 4, "--model", "MISSING"), "no such checkpoint"),
    (("--n", 4, "--model", "CORRUPT"), "cannot load model"),
    (("--n", 4, "--chunk-size", 100), "multiple of 64"),
    (("--n", 4, "--device", "tpu"), "tpu"),
    (("--n", 4, "--workers", 0), "--workers"),
])
def test_sample_errors(args, fragment, model_dir, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    paths = {"MISSING": tmp_path / "missing", "CORRUPT": corrupt}
    args = [paths.get(a, a) if isinstance(a, str) else a for a in args]
    if "--model" not in args:
        args += ["--model", model_dir]
    before = set(os.listdir(tmp_path))
    assert_one_line_error(invoke("sample", "--out", tmp_path / "x.zarr", *args), fragment)
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_sample_refuses_cuda_without_a_device(model_dir, tmp_path):
    assert_one_line_error(invoke("sample", "--n", 4, "--out", tmp_path / "x.zarr", "--model", model_dir,
                                 "--device", "cuda"), "CUDA")
    assert not os.listdir(tmp_path)


def test_sample_refuses_to_overwrite(sampled, model_dir):
    before = open_store(sampled).latent[:]
    assert_one_line_error(invoke("sample", "--n", 8, "--out", sampled, "--model", model_dir), "already exists")
    np.testing.assert_array_equal(open_store(sampled).latent[:], before)


def _bad_pose_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = some_poses(3)
    nan, inf = good.copy(), good.copy()
    nan[1, 4, 2] = np.nan
    inf[2, 0, 0] = np.inf
    files = {
        "wrong shape": (pose_file(tmp_path, "shape.npy", good[:, :20]), "shape"),
        "nan": (pose_file(tmp_path, "nan.npy", nan), "pose 1 holds NaN"),
        "inf": (pose_file(tmp_path, "inf.npy", inf), "pose 2 holds NaN or inf"),
        "empty npy": (pose_file(tmp_path, "empty.npy", np.zeros((0, 21, 3), np.float32)), "empty"),
        "objects": (pose_file(tmp_path, "obj.npy", np.array([{"a": 1}], dtype=object)), "numeric"),
        "metres": (pose_file(tmp_path, "metres.npy", good / 1000), "mm"),
        "behind": (pose_file(tmp_path, "behind.npy", good * np.array([1, 1, -1], np.float32)), "behind the camera"),
        "missing": (tmp_path / "nope.npy", "no such file"),
        "suffix": (tmp_path / "poses.txt", "unsupported"),
    }
    (tmp_path / "poses.txt").write_text("1,2,3\n")
    for name, text in (("empty csv", ""), ("bad csv", "1,2,x\n"), ("short csv", "1,2,3\n4,5,6\n")):
        path = tmp_path / (name.replace(" ", "_") + ".csv")
        path.write_text(text)
        files[name] = (path, {"empty csv": "empty", "bad csv": "not a CSV", "short csv": "shape"}[name])
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    files["corrupt npy"] = (tmp_path / "corrupt.npy", ".npy")
    return files


def test_generate_refuses_bad_pose_files(model_dir, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    files = _bad_pose_files(inputs)
    for name, (path, fragment) in files.items():
        result = invoke("generate", "--poses", path, "--out", tmp_path / "x.zarr", "--model", model_dir)
        assert_one_line_error(result, fragment)
        assert sorted(os.listdir(tmp_path)) == ["inputs"], name


def test_generate_refuses_layouts_and_outputs(model_dir, sampled, tmp_path):
    poses = pose_file(tmp_path, "p.npy", some_poses(2))
    for layout in ("nyu", "icvl"):
        assert_one_line_error(invoke("generate", "--poses", poses, "--out", tmp_path / "x.zarr", "--layout", layout,
                                     "--model", model_dir), "cannot be converted")
    assert_one_line_error(invoke("generate", "--poses", poses, "--out", tmp_path / "x.zarr", "--layout", "kinect",
                                 "--model", model_dir), "kinect")
    assert_one_line_error(invoke("generate", "--poses", sampled, "--out", tmp_path / "x.zarr", "--layout", "msra",
                                 "--model", model_dir), "does not apply")
    assert_one_line_error(invoke("generate", "--poses", poses, "--out", sampled, "--model", model_dir),
                          "already exists")
    assert sorted(os.listdir(tmp_path)) == ["p.npy"]


@pytest.mark.parametrize("case", ["no outputs", "bad seed", "index range", "many poses", "store without index",
                                  "one step", "video suffix", "existing video", "video dir", "nan endpoint"])
def test_interpolate_errors(case, model_dir, sampled, tmp_path):
    two = pose_file(tmp_path, "two.npy", some_poses(2))
    bad = some_poses(1)
    bad[0, 3, 1] = np.nan
    nan = pose_file(tmp_path, "nan.npy", bad)
    (tmp_path / "old.mp4").write_bytes(b"old")
    out = ("--out", tmp_path / "x.zarr")
    args, fragment = {
        "no outputs": (("--from", "seed:1", "--to", "seed:2", "--steps", 4), "--out"),
        "bad seed": (("--from", "seed:x", "--to", "seed:2", "--steps", 4, *out), "seed:N"),
        "index range": (("--from", f"{sampled}:300", "--to", "seed:2", "--steps", 4, *out), "out of range"),
        "many poses": (("--from", two, "--to", "seed:2", "--steps", 4, *out), "exactly one"),
        "store without index": (("--from", sampled, "--to", "seed:2", "--steps", 4, *out), "INDEX"),
        "one step": (("--from", "seed:1", "--to", "seed:2", "--steps", 1, *out), "--steps"),
        "video suffix": (("--from", "seed:1", "--to", "seed:2", "--steps", 4, "--video", tmp_path / "v.avi"), ".mp4"),
        "existing video": (("--from", "seed:1", "--to", "seed:2", "--steps", 4, "--video", tmp_path / "old.mp4"),
                           "already exists"),
        "video dir": (("--from", "seed:1", "--to", "seed:2", "--steps", 4, "--video", tmp_path / "no" / "v.mp4"),
                      "does not exist"),
        "nan endpoint": (("--from", nan, "--to", "seed:2", "--steps", 4, *out), "NaN"),
    }[case]
    before = set(os.listdir(tmp_path))
    assert_one_line_error(invoke("interpolate", *args, "--model", model_dir), fragment)
    assert set(os.listdir(tmp_path)) == before
    assert (tmp_path / "old.mp4").read_bytes() == b"old"


@pytest.mark.parametrize("args, fragment", [
    (("--steps", 10, "--step-size", 0), "step size"),
    (("--steps", 10, "--step-size", -1), "step size"),
    (("--steps", 10, "--step-size", "nan"), "step size"),
    (("--steps", 10, "--step-size", 5), "step size"),
    (("--steps", 0, "--step-size", 0.1), "--steps"),
    (("--steps", 5000, "--video", "GIF"), "limited to 1500 frames"),
])
def test_walk_errors(args, fragment, model_dir, tmp_path):
    args = [tmp_path / "w.gif" if a == "GIF" else a for a in args]
    assert_one_line_error(invoke("walk", *args, "--out", tmp_path / "w.zarr", "--model", model_dir), fragment)
    assert_one_line_error(invoke("walk", "--steps", 5, "--model", model_dir), "--out")
    assert not os.listdir(tmp_path)


def test_metadata_is_json_with_the_run_parameters(sampled):
    attrs = json.loads((sampled / "zarr.json").read_text())["attributes"]
    assert attrs["parameters"]["centers"]["camera"] == "hands2017"
    assert attrs["parameters"]["prior"]["truncation"] == 2.0


def test_sample_with_a_generator_that_sees_the_centre_draws_each_crop_at_its_own_centre(tmp_path):
    """The skeleton generator with `sees_center`: `sample` passes every sample's centre, so the
    store's depth is G's drawing at that centre, whatever --batch-size."""
    torch.manual_seed(0)
    config = CrossingNetsConfig(generator=GeneratorConfig(arch="skeleton", base_size=32, num_upsamples=1, channels=4,
                                                          background_snap=0.9, sees_center=True),
                                discriminator=DiscriminatorConfig(channels=4, metric_hidden=32))
    model = CrossingNets(config).eval()
    model.generator.pose.init_from_pose_code(model.vae, model.align)
    model.save_pretrained(tmp_path / "skeleton")
    stores = {}
    for batch in (64, 256):
        out = tmp_path / f"b{batch}.zarr"
        result = invoke("sample", "--n", 300, "--out", out, "--model", tmp_path / "skeleton", "--seed", 1,
                        "--batch-size", batch, "--precision", "fp32")
        assert result.exit_code == 0, result.output
        stores[batch] = open_store(out).read(slice(0, 300))
    a, b = stores[64], stores[256]
    assert a.depth.tobytes() == b.depth.tobytes()
    expected = model.generate_depth(torch.from_numpy(a.latent), torch.from_numpy(a.center)).numpy()
    np.testing.assert_allclose(a.depth, expected, atol=1e-3)  # the store keeps float16 depth
    moved = model.generate_depth(torch.from_numpy(a.latent[:8]), torch.from_numpy(a.center[8:16])).numpy()
    assert not np.allclose(moved, a.depth[:8], atol=1e-3)  # the centre changes the drawing
