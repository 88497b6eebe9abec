"""Crossing Nets: shapes, training, checkpoints (bit-exact, refused when damaged), resume, metrics."""

from __future__ import annotations

import csv
import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save as save_tensors

from synthgen.conventions import NUM_JOINTS
from synthgen.errors import InputError
from synthgen.models import (
    CheckpointError,
    CrossingNets,
    CrossingNetsConfig,
    Recipe,
    TrainingData,
    checkpoint,
    load,
    pose_metrics,
    silhouette_metrics,
    train,
)
from synthgen.models import losses as L
from synthgen.models.checkpoint import CONFIG, WEIGHTS
from synthgen.models.train import CSV_COLUMNS, LOSS_COLUMNS, EpochSampler, split_indices

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "recipes" / "tiny.toml"


def structured_data(n: int = 60, size: int = 128, seed: int = 0) -> TrainingData:
    """Poses from a 6-d linear latent; depth = a disc per joint at the joint's depth (pose-bound)."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(0, 25, (6, NUM_JOINTS * 3))
    pose_rel = (rng.normal(0, 1, (n, 6)) @ basis).reshape(n, NUM_JOINTS, 3).astype(np.float32)
    center = np.stack([rng.uniform(-50, 50, n), rng.uniform(-50, 50, n), rng.uniform(350, 450, n)], 1)
    pose = (pose_rel + center[:, None]).astype(np.float32)
    depth = np.ones((n, size, size), np.float32)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        f = size * center[i, 2] / 250.0
        for j in pose[i]:
            u = f * (j[0] - center[i, 0]) / j[2] + (size - 1) / 2
            v = f * (j[1] - center[i, 1]) / j[2] + (size - 1) / 2
            disc = (xx - u) ** 2 + (yy - v) ** 2 < 16
            depth[i][disc] = np.minimum(depth[i][disc], np.clip((j[2] - center[i, 2]) / 125.0, -1, 1))
    return TrainingData(depth, pose, center.astype(np.float32), data_digest="test-digest")


def read_losses(path: Path) -> list[dict]:
    with path.open() as f:
        return [{k: r[k] for k in ("step", "stage", *LOSS_COLUMNS)} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return structured_data()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data):
    """One uninterrupted tiny training run, shared by several tests."""
    out = tmp_path_factory.mktemp("tiny")
    model = train(Recipe.from_toml(TINY), data, out)
    return model, out


# --- networks --------------------------------------------------------------------------------


def test_network_shapes_and_parameter_counts():
    model = CrossingNets().eval()
    count = lambda *mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    D = model.discriminator
    assert abs(count(model.generator) - 160_000) < 5_000  # notes: ~160 k
    posterior_path = count(*D.convs[:2], D.posterior, model.vae.dec_fc, model.vae.dec_out)
    assert abs(posterior_path - 164_000) < 5_000  # notes: ~164 k at inference
    assert count(model.vae) == 63 * 40 + 40 + 2 * (40 * 20 + 20) + 20 * 40 + 40 + 40 * 63 + 63

    B = 3
    x = torch.rand(B, 1, 128, 128) * 2 - 1
    with torch.no_grad():
        assert model.generator(torch.randn(B, 23)).shape == (B, 1, 128, 128)
        assert model.align(torch.randn(B, 23)).shape == (B, 23)
        branch = D.branch(x)
        assert branch.shape == (B, 32, 32, 32)
        logit, features = D.trunk(branch)
        assert logit.shape == (B,) and features.shape == (B, 512)
        assert D.posterior(branch).shape == (B, 23) and D.metric(branch).shape == (B, 23)
        mean, log_sigma = model.vae.encode(torch.randn(B, NUM_JOINTS, 3))
        assert mean.shape == log_sigma.shape == (B, 20)
        assert model.vae.decode(mean).shape == (B, NUM_JOINTS, 3)


def test_inference_api_shapes_and_pose_normalisation():
    model = CrossingNets()
    B = 2
    joints = torch.randn(B, NUM_JOINTS, 3) * 30 + torch.tensor([0.0, 0.0, 400.0])
    center = torch.tensor([[0.0, 0.0, 400.0], [10.0, -5.0, 410.0]])
    rel, offset = model.normalize_pose(joints, center)
    assert torch.allclose(rel[:, 0], torch.zeros(B, 3))
    assert torch.allclose(offset, (joints[:, 0] - center) / 50)
    assert torch.allclose(model.denormalize_pose(rel, offset, center), joints, atol=1e-4)

    latent, root = model.encode_pose(joints, center)
    assert latent.shape == (B, 20) and root.shape == (B, 3)
    assert model.decode_pose(latent, root, center).shape == (B, NUM_JOINTS, 3)
    depth = model.generate_depth(torch.cat([latent, root], 1))
    assert depth.shape == (B, 128, 128)
    assert model.estimate(depth, center).shape == (B, NUM_JOINTS, 3)
    assert model.estimate(depth[:, None], center).shape == (B, NUM_JOINTS, 3)
    assert model.training  # inference calls restore the training flag


def test_config_validation_and_recipe_files():
    with pytest.raises(ValueError, match="fc_dim"):
        CrossingNetsConfig.from_dict({"generator": {"channels": 16}})
    with pytest.raises(ValueError, match="bogus"):
        Recipe.from_dict({"joint": {"bogus": 1}})
    with pytest.raises(ValueError, match="pose must be"):
        TrainingData(np.ones((2, 128, 128)), np.zeros((2, 14, 3)), np.zeros((2, 3)))
    for path in sorted((ROOT / "recipes").glob("*.toml")):
        recipe = Recipe.from_toml(path)
        assert recipe.model.code_dim == 23, path


# --- training --------------------------------------------------------------------------------


def test_training_losses_fall_and_outputs(trained):
    model, out = trained
    rows = read_losses(out / "metrics.csv")
    vae = [float(r["vae"]) for r in rows if r["stage"] == "vae"]
    assert np.mean(vae[-3:]) < 0.8 * np.mean(vae[:3])
    recons = [float(r["recons"]) for r in rows if r["recons"]]
    assert np.mean(recons[-3:]) < np.mean(recons[:3])
    assert {r["stage"] for r in rows} == {"vae", "gan", "warmup", "joint", "refine"}
    assert len(rows) == Recipe.from_toml(TINY).total_steps  # log_every = 1

    report = json.loads((out / "eval.json").read_text())
    assert set(report["pose"]["max_error_below"]) == {f"<{t}" for t in range(10, 90, 10)}
    assert len(report["pose"]["per_joint_mm"]) == NUM_JOINTS
    assert 0.0 <= report["generator"]["iou_mean"] <= 1.0
    assert report["checksum"] == model.checksum
    assert (out / "eval.png").stat().st_size > 0
    assert any((out / "checkpoints").glob("step-*/optimizer.safetensors"))

    config = json.loads((out / "model" / CONFIG).read_text())
    assert config["provenance"]["data_digest"] == "test-digest"
    assert config["normalisation"]["unit_mm"] == 50 and config["normalisation"]["root_joint"] == 0
    assert config["joints"]["count"] == NUM_JOINTS
    assert len(config["root_offset"]["cov"]) == 3 and len(config["latent"]["mean"]) == 20
    assert model.sample_root_offsets(5).shape == (5, 3) and model.sample_latents(5).shape == (5, 20)


def test_resume_gives_the_same_losses(tmp_path, data, trained):
    _, reference = trained

    def stop_in_joint_stage(event):
        if event.get("stage") == "joint" and event["stage_step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(Recipe.from_toml(TINY), data, tmp_path, progress=stop_in_joint_stage)
    resumed = train(Recipe.from_toml(TINY), data, tmp_path, resume=True)
    assert read_losses(tmp_path / "metrics.csv") == read_losses(reference / "metrics.csv")
    assert resumed.checksum == load(reference / "model").checksum

    other = Recipe.from_toml(TINY)
    other = replace(other, joint=replace(other.joint, lr=0.5))
    with pytest.raises(CheckpointError, match="trains differently"):
        train(other, data, tmp_path, resume=True)


def test_split_and_sampler_are_deterministic():
    s = split_indices(100, 0.1, 0.5, seed=3)
    assert len(s.val) == 10 and len(s.train) == 90 and len(s.labeled) == 45
    assert not set(s.val) & set(s.train) and set(s.labeled) <= set(s.train)
    sampler = EpochSampler(s.train, 32, seed=1, stream=0)
    first_epoch = np.concatenate([sampler(i) for i in range(3)])[:90]
    assert sorted(first_epoch) == sorted(s.train)  # one pass visits every sample once
    assert np.array_equal(EpochSampler(s.train, 32, 1, 0)(7), sampler(7))


# --- checkpoints -----------------------------------------------------------------------------


def test_save_load_is_bit_exact(tmp_path, trained, data):
    model, _ = trained
    model.save_pretrained(tmp_path / "m")
    loaded = load(tmp_path / "m")
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    depth, center = torch.from_numpy(data.depth[:4]), torch.from_numpy(data.center[:4])
    assert torch.equal(model.estimate(depth, center), loaded.estimate(depth, center))
    code = torch.randn(4, 23)
    assert torch.equal(model.generate_depth(code), loaded.generate_depth(code))
    assert loaded.checksum == model.checksum
    assert json.loads((tmp_path / "m" / CONFIG).read_text())["weights"]["sha256"] == model.checksum
    assert loaded.root_offset == model.root_offset and loaded.latent == model.latent
    assert load(tmp_path / "m" / CONFIG).checksum == model.checksum  # a file inside also works


def test_estimate_is_deterministic(trained, data):
    model, _ = trained
    depth, center = torch.from_numpy(data.depth[:8]), torch.from_numpy(data.center[:8])
    assert torch.equal(model.estimate(depth, center), model.estimate(depth, center))
    assert torch.equal(model.estimate(depth[:1], center[:1]), model.estimate(depth[:1], center[:1]))


@pytest.fixture
def saved(tmp_path) -> Path:
    CrossingNets().save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_corrupted_checkpoint_is_refused(saved):
    weights = saved / WEIGHTS
    blob = bytearray(weights.read_bytes())
    blob[-100:-90] = bytes(b ^ 0xFF for b in blob[-100:-90])
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load(saved)


def test_truncated_checkpoint_is_refused(saved):
    weights = saved / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated"):
        load(saved)


def test_mismatched_architecture_is_refused(saved):
    config = json.loads((saved / CONFIG).read_text())
    config["architecture"]["generator"].update(channels=16, fc_dim=256)
    (saved / CONFIG).write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="architecture"):
        load(saved)


def test_missing_files_are_refused(saved, tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load(tmp_path / "nowhere")
    (saved / CONFIG).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load(saved)


class _Marker:
    """Unpickling this creates a file: proof that something unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_header_length_byte_0x80_is_not_taken_for_a_pickle():
    """A safetensors header length whose low byte is 0x80 looks like pickle's PROTO opcode."""
    for pad in range(256):
        blob = save_tensors({"x" * (pad + 1): torch.zeros(2)})
        if blob[0] == 0x80:
            break
    assert blob[0] == 0x80
    assert set(checkpoint._safetensors_header(Path("w.safetensors"), blob)) >= {"x" * (pad + 1)}


def test_pickles_are_refused_without_unpickling(tmp_path, saved):
    marker = tmp_path / "unpickled"
    pt = tmp_path / "model.pt"
    torch.save({"weights": _Marker(marker)}, pt)
    with pytest.raises(CheckpointError, match="pickle"):
        load(pt)
    raw = tmp_path / "model.data"
    raw.write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(CheckpointError, match="pickle"):
        load(raw)
    (saved / WEIGHTS).write_bytes(pt.read_bytes())  # a torch.save file disguised as safetensors
    with pytest.raises(CheckpointError, match="pickle"):
        load(saved)
    assert not marker.exists()


# --- metrics ---------------------------------------------------------------------------------


def test_pose_metrics_known_values():
    true = np.random.default_rng(0).normal(0, 50, (4, NUM_JOINTS, 3))
    same = pose_metrics(true, true)
    assert same["mean_joint_error_mm"] == 0 and all(v == 1.0 for v in same["max_error_below"].values())

    pred = true.copy()
    pred[:2, 5, 0] += 15.0  # frames 0 and 1: one joint 15 mm off
    m = pose_metrics(pred, true)
    assert m["mean_joint_error_mm"] == pytest.approx(2 * 15 / (4 * NUM_JOINTS))
    assert m["per_joint_mm"]["PMCP"] == pytest.approx(7.5) and m["per_joint_mm"]["Wrist"] == 0
    assert m["max_error_below"]["<10"] == 0.5 and m["max_error_below"]["<20"] == 1.0


def test_silhouette_metrics_known_values():
    real = np.ones((2, 8, 8), np.float32)
    real[:, 2:6, 0:4] = 0.2  # 16-pixel squares
    same = silhouette_metrics(real, real)
    assert same["iou_mean"] == 1.0 and same["depth_mae_mm"] == 0.0

    fake = np.ones_like(real)
    fake[:, 2:6, 2:6] = 0.28  # overlaps half of each square, 0.08 units (10 mm) deeper
    m = silhouette_metrics(fake, real)
    assert m["iou_mean"] == pytest.approx(8 / 24)
    assert m["depth_mae_mm"] == pytest.approx(10.0, abs=1e-4)
    assert silhouette_metrics(np.ones_like(real), np.ones_like(real))["iou_mean"] == 1.0


def test_recipe_switches(tmp_path, data):
    recipe = Recipe.from_toml(TINY)
    recipe = replace(recipe, losses=replace(recipe.losses, supervised_only=True),
                     vae=replace(recipe.vae, steps=2), joint=replace(recipe.joint, warmup_steps=1, steps=2),
                     refine=replace(recipe.refine, steps=0),
                     runtime=replace(recipe.runtime, recalibrate_bn=False, checkpoint_every=100))
    train(recipe, data, tmp_path)
    rows = read_losses(tmp_path / "metrics.csv")
    assert [r["stage"] for r in rows] == ["vae", "vae", "warmup", "joint", "joint"]
    assert not any(r["d_gan"] or r["g_fm"] or r["smo_d"] or r["smo_g"] for r in rows)
    assert all(r["pos"] and r["recons"] for r in rows if r["stage"] == "joint")
    assert set(CSV_COLUMNS) >= set(LOSS_COLUMNS)


def test_recons_l1_is_the_mean_absolute_error_and_l2_clips():
    real = torch.tensor([[1.0, 1.0, -0.5, 0.0]])
    fake = torch.tensor([[-1.0, 0.5, -0.5, 0.25]])
    assert L.recons_loss(real, fake, norm="l1").item() == pytest.approx((2 + 0.5 + 0 + 0.25) / 4)
    assert L.recons_loss(real, fake, clip=1.0).item() == pytest.approx((1 + 0.25 + 0 + 0.0625) / 4)
    assert L.recons_loss(real, fake, clip=4.0).item() == pytest.approx((4 + 0.25 + 0 + 0.0625) / 4)
    with pytest.raises(ValueError, match="losses.recons"):
        Recipe.from_dict({"losses": {"recons": "huber"}})


def test_init_from_continues_a_saved_model(tmp_path, trained, data):
    model, out = trained
    base = Recipe.from_toml(TINY)
    no_steps = replace(base, init_from=str(out / "model"), vae=replace(base.vae, steps=0),
                       gan=replace(base.gan, steps=0), joint=replace(base.joint, warmup_steps=0, steps=0),
                       refine=replace(base.refine, steps=0), runtime=replace(base.runtime, recalibrate_bn=False))
    copy = train(no_steps, data, tmp_path / "copy")
    # Zero steps from a saved model: the same weights and statistics, recorded as its origin.
    assert all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(), model.state_dict().values()))
    assert copy.latent == model.latent and copy.root_offset == model.root_offset
    assert load(tmp_path / "copy" / "model").provenance["init_from"]["checksum"] == model.checksum

    refine = replace(no_steps, losses=replace(base.losses, recons="l1"), refine=replace(base.refine, steps=3))
    train(refine, data, tmp_path / "refine")
    rows = read_losses(tmp_path / "refine" / "metrics.csv")
    assert [r["stage"] for r in rows] == ["refine"] * 3 and all(r["recons"] for r in rows)

    other = replace(no_steps, model=CrossingNetsConfig.from_dict({"generator": {"channels": 4, "fc_dim": 64}}))
    with pytest.raises(InputError, match="init_from"):
        train(other, data, tmp_path / "other")


def test_refining_one_half_leaves_the_other_bit_identical(tmp_path, trained):
    """refine.train: the posterior path and Ali + G never share a loss, so refining one alone
    trains it exactly as refining both does, and the other half (with its BN statistics, and
    for G the latent prior) stays the saved model's: samples or estimates do not change."""
    model, out = trained
    base = Recipe.from_toml(TINY)
    plan = replace(base, init_from=str(out / "model"), vae=replace(base.vae, steps=0), gan=replace(base.gan, steps=0),
                   joint=replace(base.joint, warmup_steps=0, steps=0), losses=replace(base.losses, recons="l1"),
                   runtime=replace(base.runtime, recalibrate_bn=True, recalibrate_batches=2))
    other = structured_data(seed=1)  # other poses: recomputed latent statistics would differ
    runs = {half: train(replace(plan, refine=replace(base.refine, steps=4, train=half)), other, tmp_path / half)
            for half in ("both", "posterior", "generator")}

    def part(m, posterior: bool) -> dict:
        D = m.discriminator
        mods = {"convs": D.convs[: D.config.branch_after], "posterior": D.posterior} if posterior else \
            {"align": m.align, "generator": m.generator}
        return {f"{name}.{k}": v for name, mod in mods.items() for k, v in mod.state_dict().items()}

    def same(a: dict, b: dict) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    both, post, gen = runs["both"], runs["posterior"], runs["generator"]
    assert same(part(post, True), part(both, True)) and same(part(gen, False), part(both, False))
    assert same(part(post, False), part(model, False)) and post.latent == model.latent
    assert same(part(gen, True), part(model, True)) and gen.latent != model.latent
    assert not same(part(post, True), part(model, True)) and not same(part(gen, False), part(model, False))
    rows = {half: read_losses(tmp_path / half / "metrics.csv") for half in runs}
    assert all(r["pos"] and not r["recons"] for r in rows["posterior"])
    assert all(r["recons"] and not r["pos"] for r in rows["generator"])
    with pytest.raises(ValueError, match="refine.train"):
        Recipe.from_dict({"refine": {"train": "decoder"}})


def test_centre_jitter_recuts_the_crops_and_moves_the_root_offsets(tmp_path, trained, data):
    """data.center_jitter_mm: the posterior reads crops re-cut around moved centres, its root-offset
    targets move with them, the latent targets and Ali + G stay as they were."""
    from synthgen.data.crops import recenter_crops
    from synthgen.models.train import Split, Trainer, step_generator

    model, out = trained
    base = Recipe.from_toml(TINY)
    plan = replace(base, init_from=str(out / "model"), vae=replace(base.vae, steps=0), gan=replace(base.gan, steps=0),
                   joint=replace(base.joint, warmup_steps=0, steps=0), losses=replace(base.losses, recons="l1"),
                   refine=replace(base.refine, steps=4, train="posterior"),
                   data=replace(base.data, center_jitter_mm=20.0))
    idx = np.arange(8)
    trainer = Trainer(plan, data, model, Split(idx, idx, idx[:0]))
    trainer.compute_codes()
    x, z = trainer.depth_batch(idx), trainer.codes[torch.from_numpy(idx)]
    moved_x, moved_z = trainer.recentred(idx, x, z, step_generator(0, 4, 0))
    shift = (z[:, -3:] - moved_z[:, -3:]).double().numpy() * model.normalisation.unit_mm  # mm
    assert torch.equal(moved_z[:, :-3], z[:, :-3])
    assert (np.linalg.norm(shift, axis=1) <= 20.0 + 1e-4).all() and np.linalg.norm(shift, axis=1).max() > 1.0
    center = data.center[idx].astype(np.float64)
    np.testing.assert_allclose(moved_x[:, 0].numpy(), recenter_crops(x[:, 0].numpy(), center, center + shift),
                               atol=1e-5)
    half = replace(plan, data=replace(plan.data, center_jitter_fraction=0.5))
    trainer = Trainer(half, data, model, Split(idx, idx, idx[:0]))
    trainer.compute_codes()
    part_x, part_z = trainer.recentred(idx, x, z, step_generator(0, 4, 0))
    np.testing.assert_allclose(part_x[4:].numpy(), x[4:].numpy(), atol=1e-6)  # re-cut in place
    assert torch.equal(part_z[4:], z[4:]) and not torch.equal(part_z[:4], z[:4])
    jittered = train(plan, data, tmp_path / "jitter")
    plain = train(replace(plan, data=replace(plan.data, center_jitter_mm=0.0)), data, tmp_path / "plain")
    assert torch.equal(jittered.generator.out.weight, model.generator.out.weight)
    assert not torch.equal(jittered.discriminator.posterior.out.weight, plain.discriminator.posterior.out.weight)


# --- the skeleton generator (extension) --------------------------------------------------------

SKELETON = {"arch": "skeleton", "base_size": 32, "num_upsamples": 1, "channels": 8}


def test_skeleton_bones_are_the_layouts_bones_and_palm_links():
    from synthgen.conventions import LAYOUTS, PARENTS, finger_chain
    from synthgen.models.generator import skeleton_bones

    canonical = LAYOUTS["hands2017"]
    bones = skeleton_bones(canonical.parents, canonical.fingers)
    mcp = [finger_chain(f)[0] for f in range(5)]
    assert bones[:20] == tuple((p, c) for c, p in enumerate(PARENTS) if p >= 0)
    assert bones[20:] == ((mcp[1], mcp[2]), (mcp[2], mcp[3]), (mcp[3], mcp[4]))  # index..pinky, not the thumb
    nyu = LAYOUTS["nyu"]
    assert len(skeleton_bones(nyu.parents, nyu.fingers)) == 13 + 3  # 13 bones; P2-R2, R2-M2, M2-I2
    model = CrossingNets(CrossingNetsConfig.from_dict({"generator": SKELETON}))
    assert model.config.generator.bones == bones  # filled in from the model's joint layout
    with pytest.raises(ValueError, match="generator.arch"):
        CrossingNetsConfig.from_dict({"generator": {"arch": "unet"}})


def test_crop_coordinates_are_the_crop_cameras_pixels():
    from synthgen.conventions import Intrinsics
    from synthgen.hand import camera

    rng = np.random.default_rng(0)
    center = np.array([[40.0, -30.0, 420.0], [-60.0, 10.0, 600.0]])
    joints = center[:, None] + rng.normal(0, 40, (2, NUM_JOINTS, 3))
    got = CrossingNets().crop_coordinates(torch.from_numpy(joints), torch.from_numpy(center)).numpy()
    for i in range(2):
        cam: Intrinsics = camera.crop_intrinsics(center[i])
        uvd = camera.project(joints[i], cam)
        np.testing.assert_allclose(got[i, :, :2], (uvd[:, :2] - 63.5) / 64, atol=1e-9)
        np.testing.assert_allclose(got[i, :, 2], (joints[i, :, 2] - center[i, 2]) / 125, atol=1e-12)


def test_skeleton_capsules_are_signed_distance_and_surface_depth():
    model = CrossingNets(CrossingNetsConfig.from_dict({"generator": SKELETON}))
    G = model.generator
    joints = torch.zeros(1, NUM_JOINTS, 3)
    joints[0, :, 2] = 0.5  # every capsule far behind the one under test
    start, end = G.bone_start[0].item(), G.bone_end[0].item()  # wrist → thumb MCP
    joints[0, :, 0] = 0.9  # the other capsules collapse to a point at the right edge
    joints[0, start] = torch.tensor([-0.5, -10 / 64, -0.2])
    joints[0, end] = torch.tensor([0.5, -10 / 64, 0.0])  # a horizontal bone through grid row 13's centres
    radii = torch.full((1, len(G.config.bones)), 0.1)
    features = G.capsules(joints, radii)
    n = len(G.config.bones)
    assert features.shape == (1, 2 * n, 32, 32)
    u = G.grid_u.view(32, 32)[13]
    assert torch.allclose(G.grid_v.view(32, 32)[13], torch.full((32,), -10 / 64))
    on_axis = (u > -0.5) & (u < 0.5)
    # On the axis: distance −r, surface r in front of the axis, whose depth runs linearly −0.2 → 0.
    sdf = torch.atanh(features[0, 0, 13].clamp(-0.999999, 0.999999)) / G.config.sdf_scale
    assert torch.allclose(sdf[on_axis], torch.full_like(sdf[on_axis], -0.1), atol=1e-4)
    axis_depth = -0.2 + 0.2 * (u[on_axis] + 0.5)
    assert torch.allclose(features[0, n, 13][on_axis], axis_depth - 0.1, atol=1e-4)
    # Two rows down (0.125 crop units from the axis): outside, at distance 0.025 from the surface.
    sdf_below = torch.atanh(features[0, 0, 15].clamp(-0.999999, 0.999999)) / G.config.sdf_scale
    assert torch.allclose(sdf_below[on_axis], torch.full_like(sdf_below[on_axis], 0.025), atol=1e-4)


def test_skeleton_generator_trains_saves_and_loads(tmp_path, data):
    """A refine-only run: L_recons and the pose head's loss fall; the model saves and loads bit-exactly."""
    base = Recipe.from_toml(TINY)
    recipe = replace(base, model=CrossingNetsConfig.from_dict({"generator": SKELETON,
                                                               "discriminator": {"channels": 8, "metric_hidden": 64}}),
                     gan=replace(base.gan, steps=0), joint=replace(base.joint, warmup_steps=0, steps=0),
                     refine=replace(base.refine, steps=40, lr=3e-3, train="generator"),
                     losses=replace(base.losses, recons="l1"), runtime=replace(base.runtime, checkpoint_every=100))
    model = train(recipe, data, tmp_path)
    rows = [r for r in read_losses(tmp_path / "metrics.csv") if r["stage"] == "refine"]
    skeleton, recons = [float(r["skeleton"]) for r in rows], [float(r["recons"]) for r in rows]
    assert np.mean(skeleton[-5:]) < 0.7 * np.mean(skeleton[:5])
    assert np.mean(recons[-5:]) < 0.8 * np.mean(recons[:5])
    loaded = load(tmp_path / "model")
    assert loaded.config == model.config and loaded.config.generator.arch == "skeleton"
    code = torch.randn(5, 23)
    assert torch.equal(loaded.generate_depth(code), model.generate_depth(code))


def test_init_from_may_swap_in_a_new_generator_only_if_it_is_trained(tmp_path, trained, data):
    model, out = trained
    base = Recipe.from_toml(TINY)
    config = CrossingNetsConfig.from_dict({"generator": SKELETON, "discriminator": {"channels": 8, "metric_hidden": 64}})
    swap = replace(base, init_from=str(out / "model"), model=config, vae=replace(base.vae, steps=0),
                   gan=replace(base.gan, steps=0), joint=replace(base.joint, warmup_steps=0, steps=0),
                   refine=replace(base.refine, steps=2, train="generator"),
                   runtime=replace(base.runtime, recalibrate_bn=False))
    swapped = train(swap, data, tmp_path / "swap")
    kept = [k for k in model.state_dict() if not k.startswith(("generator.", "align."))]
    assert all(torch.equal(swapped.state_dict()[k], model.state_dict()[k]) for k in kept)
    assert load(tmp_path / "swap" / "model").provenance["init_from"]["generator_from_base"] is False
    with pytest.raises(InputError, match="new generator needs a stage that trains it"):
        train(replace(swap, refine=replace(swap.refine, train="posterior")), data, tmp_path / "frozen")


def test_pose_head_starts_as_the_vae_decoders_pose_through_ali(trained):
    """init_from_pose_code: the head undoes Ali and copies the decoder, so before any training
    its joints are Dec(latent) + root offset, placed orthographically in the crop."""
    model, _ = trained
    config = replace(model.config, generator=CrossingNetsConfig.from_dict({"generator": SKELETON}).generator)
    skeleton = CrossingNets(config, model.normalisation, joint_layout=model.joint_layout)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("generator.")}
    skeleton.load_state_dict(state | {f"generator.{k}": v for k, v in skeleton.generator.state_dict().items()})
    head = skeleton.generator.pose
    assert not head.initialised
    head.init_from_pose_code(skeleton.vae, skeleton.align)
    assert head.initialised and skeleton.config.generator.pose_scale == pytest.approx(50 / 125)
    code = torch.randn(6, 23)
    skeleton.eval()
    with torch.no_grad():
        joints, radii = skeleton.generator.joints(skeleton.align(code))
        expected = (skeleton.vae.decode(code[:, :20]) + code[:, None, 20:]) * 0.4
    torch.testing.assert_close(joints, expected, rtol=0, atol=1e-4)
    assert torch.allclose(radii, torch.full_like(radii, 0.065), atol=1e-3)


def test_a_generator_that_sees_the_centre_places_the_decoded_pose_with_the_crop_cameras_perspective(trained):
    model, _ = trained
    generator = CrossingNetsConfig.from_dict({"generator": {**SKELETON, "sees_center": True}}).generator
    skeleton = CrossingNets(replace(model.config, generator=generator), model.normalisation,
                            joint_layout=model.joint_layout)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("generator.")}
    skeleton.load_state_dict(state | {f"generator.{k}": v for k, v in skeleton.generator.state_dict().items()})
    skeleton.generator.pose.init_from_pose_code(skeleton.vae, skeleton.align)
    skeleton.eval()
    code = torch.randn(4, 23)
    center = torch.tensor([[120.0, -80.0, 380.0], [0.0, 0.0, 500.0], [-150.0, 60.0, 640.0], [30.0, 90.0, 420.0]])
    with torch.no_grad():
        joints, _ = skeleton.generator.joints(skeleton.align(code), center)
        decoded = skeleton.decode_pose(code[:, :20], code[:, 20:], center)
    torch.testing.assert_close(joints, skeleton.crop_coordinates(decoded, center), rtol=0, atol=1e-4)
    # The same code seen from elsewhere is another crop; without a centre there is none.
    depth = skeleton.generate_depth(code[:1].repeat(2, 1), center[[0, 2]])
    assert not torch.equal(depth[0], depth[1])
    with pytest.raises(ValueError, match="pass center"):
        skeleton.generate_depth(code)
    with pytest.raises(ValueError, match="sees_center"):
        CrossingNetsConfig.from_dict({"generator": {"sees_center": True}})


def test_a_kinematic_decoder_and_a_flow_prior_are_fitted_to_a_trained_models_latent_space(tmp_path, trained, data):
    """vae.train = "decoder": the encoder (and every network reading its latent space) stays
    the base model's, the new kinematic decoder learns; the prior stage fits the flow."""
    model, out = trained
    base = Recipe.from_toml(TINY)
    config = CrossingNetsConfig.from_dict({"vae": {"decoder": "kinematic", "kinematic_hidden": 32},
                                           "generator": {"channels": 8, "fc_dim": 128},
                                           "discriminator": {"channels": 8, "metric_hidden": 64},
                                           "prior": {"layers": 2, "hidden": 16}})
    recipe = replace(base, init_from=str(out / "model"), model=config,
                     vae=replace(base.vae, steps=20, train="decoder", lr=1e-2),
                     gan=replace(base.gan, steps=0), joint=replace(base.joint, warmup_steps=0, steps=0),
                     refine=replace(base.refine, steps=0), prior=replace(base.prior, steps=30, batch_size=32),
                     runtime=replace(base.runtime, recalibrate_bn=False))
    fitted = train(recipe, data, tmp_path / "kin")
    kept = [k for k in model.state_dict() if not k.startswith(("vae.dec_", "generator.pose"))]
    assert all(torch.equal(fitted.state_dict()[k], model.state_dict()[k]) for k in kept)
    rows = [r for r in read_losses(tmp_path / "kin" / "metrics.csv") if r["stage"] == "vae"]
    sse = [float(r["sse"]) for r in rows]
    assert np.mean(sse[-5:]) < 0.8 * np.mean(sse[:5])
    loaded = load(tmp_path / "kin" / "model")
    report = loaded.provenance["prior_fit"]
    assert set(report["held_out_log_likelihood"]) == {"gaussian", "flow"} and report["steps"] == 30
    assert loaded.prior_flow is not None and loaded.config.vae.decoder == "kinematic"
    z = torch.randn(4, 20)
    assert torch.equal(loaded.vae.decode(z), fitted.vae.decode(z))
    with pytest.raises(ValueError, match="set init_from"):
        Recipe.from_dict({**recipe.to_dict(), "init_from": ""})
    with pytest.raises(ValueError, match="model.prior.layers"):
        Recipe.from_dict({**recipe.to_dict(), "model": {**recipe.model.to_dict(), "prior": {"layers": 0, "hidden": 16}}})


def test_the_prior_stage_fits_the_flow_after_a_refine_stage_froze_everything_else(tmp_path, trained, data):
    """A generator-only refine freezes every other parameter; the prior stage after it still
    trains the flow, and a run that trains G refits the root-offset statistics."""
    _, out = trained
    base = Recipe.from_toml(TINY)
    config = CrossingNetsConfig.from_dict({"generator": {"channels": 8, "fc_dim": 128},
                                           "discriminator": {"channels": 8, "metric_hidden": 64},
                                           "prior": {"layers": 2, "hidden": 16}})
    recipe = replace(base, init_from=str(out / "model"), model=config, vae=replace(base.vae, steps=0),
                     gan=replace(base.gan, steps=0), joint=replace(base.joint, warmup_steps=0, steps=0),
                     refine=replace(base.refine, steps=3, train="generator"),
                     prior=replace(base.prior, steps=20, batch_size=32),
                     runtime=replace(base.runtime, recalibrate_bn=False))
    fitted = train(recipe, data, tmp_path / "g")
    report = load(tmp_path / "g" / "model").provenance["prior_fit"]
    assert report["steps"] == 20
    assert report["held_out_log_likelihood"]["flow"] != report["held_out_log_likelihood"]["gaussian"]
    assert fitted.root_offset is not None


def test_training_through_the_store_reader_gives_the_in_memory_model(tmp_path, data):
    """data.in_memory = false: depth read per batch from the stores (StoreDepth) trains the same
    model, bit for bit, as the whole arrays in memory."""
    from synthgen.data.loading import StoreDepth, load_arrays, load_labels
    from synthgen.data.schema import SampleBatch, StoreMetadata
    from synthgen.data.writer import StoreWriter

    paths, half = [tmp_path / "a.zarr", tmp_path / "b.zarr"], len(data) // 2
    for path, rows in zip(paths, (slice(0, half), slice(half, None))):
        writer = StoreWriter.create(path, len(data.depth[rows]), StoreMetadata(producer="test", seed=0), chunk_size=64)
        writer.write(0, SampleBatch(depth=data.depth[rows], pose=data.pose[rows], center=data.center[rows]))
        writer.finalize()
    depth, pose, center, digest = load_labels(paths)
    assert isinstance(depth, StoreDepth) and depth.shape == data.depth.shape and len(depth) == len(data)
    in_memory = load_arrays(paths)
    np.testing.assert_array_equal(depth[np.array([3, half + 7, 5, half])], in_memory[0][[3, half + 7, 5, half]])
    np.testing.assert_array_equal(depth[half - 5:half + 5], in_memory[0][half - 5:half + 5])
    models = [train(Recipe.from_toml(TINY), TrainingData(d, p, c, data_digest=h), tmp_path / name)
              for name, (d, p, c, h) in (("memory", in_memory), ("stream", (depth, pose, center, digest)))]
    assert models[0].checksum == models[1].checksum
