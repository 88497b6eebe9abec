"""Input conventions: the release's crop and depth normalisation (pinned by hand-computed values),
centre files, pose label files, stores and models that carry their convention, and the
commands that must honour it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
import torch

from synthgen.conventions import CAMERAS, RELEASE_INPUT, SYNTHGEN_INPUT, InputConvention, Intrinsics
from synthgen.data.crops import (
    adapt_depth,
    crop_frame,
    front_align,
    front_align_normalised,
    recenter_crops,
    window_bounds,
    window_crop_mm,
)
from synthgen.data.formats.centers import read_centers
from synthgen.data.formats.labels import read_pose_labels
from synthgen.data.reader import open_store
from synthgen.errors import InputError
from synthgen.hand.camera import normalize_depth, project, unproject
from synthgen.models import load
from synthgen.models.checkpoint import read_input_convention
from synthgen.models.config import Recipe
from synthgen.models.lasagne import convert_crossing_nets
from synthgen.sampling import DEFAULT_MODEL_DIR
from tests.test_convert import release_arrays, write_release
from tests.test_import import hands, invoke, render, write_icvl, write_nyu

# --- the release's depth normalisation: hand-computed -------------------------------------------


def test_front_align_matches_hand_computed_values():
    # centre 400 mm, cube 250: the cube spans 275..525 mm; s = depth - 265 for in-cube depth.
    crop = np.array([[0, 400, 450], [480, 600, 300], [200, 0, 0]], np.float32)
    out = front_align(crop, 400.0)
    # s: 400 -> 135, 450 -> 185, 480 -> 215 (farthest), 300 -> 35, 200 -> clamped to 275 -> 10 (nearest),
    # 600 behind the cube and 0 -> background. Hand pixels: 2 (s - 10) / 215 - 1.
    expected = np.array([[1, 2 * 125 / 215 - 1, 2 * 175 / 215 - 1],
                         [1, 1, 2 * 25 / 215 - 1],
                         [-1, 1, 1]], np.float32)
    np.testing.assert_allclose(out, expected, atol=2e-7)
    assert out.dtype == np.float32


def test_front_align_of_an_empty_cube_is_all_background():
    np.testing.assert_array_equal(front_align(np.zeros((2, 4, 4), np.float32), np.array([400.0, 500.0])),
                                  np.ones((2, 4, 4), np.float32))


def test_centre_relative_crops_front_align_like_their_depth():
    rng = np.random.default_rng(0)
    center_z = np.array([380.0, 520.0])
    depth_mm = rng.uniform(250, 650, (2, 16, 16)).astype(np.float32)
    depth_mm[:, :4] = 0  # no data
    relative = normalize_depth(depth_mm, center_z)
    np.testing.assert_allclose(front_align_normalised(relative), front_align(depth_mm, center_z), atol=1e-5)
    assert (front_align_normalised(relative).min(axis=(1, 2)) == -1).all()


def test_adapt_depth_converts_one_way_only():
    crop = normalize_depth(np.array([[[0, 380, 420]]], np.float32), np.array([400.0]))
    assert adapt_depth(crop, SYNTHGEN_INPUT, SYNTHGEN_INPUT) is crop
    np.testing.assert_allclose(adapt_depth(crop, SYNTHGEN_INPUT, RELEASE_INPUT["nyu"]), [[[1, -1, 1]]])
    with pytest.raises(InputError, match="cannot be recovered"):
        adapt_depth(crop, RELEASE_INPUT["nyu"], SYNTHGEN_INPUT)


# --- the release's window crop: hand-computed ----------------------------------------------------

CAM = Intrinsics(100.0, 100.0, 20.0, 20.0, 40, 40)
FRAME = (1000 + 40 * np.arange(40)[:, None] + np.arange(40)[None, :]).astype(np.float32)  # every pixel unique


def test_window_crop_square_window():
    # centre on the axis at 1 m: u = v = 20, f·r = 100·125/1000 = 12.5 -> window [7, 32) on both axes.
    assert window_bounds(np.array([0.0, 0.0, 1000.0]), CAM) == (7, 32, 7, 32)
    crop = window_crop_mm(FRAME, np.array([0.0, 0.0, 1000.0]), CAM, size=8)
    source = [0, 3, 6, 9, 12, 15, 18, 21]  # floor(i · 25 / 8)
    np.testing.assert_array_equal(crop, FRAME[7 + np.array(source)][:, 7 + np.array(source)])


def test_window_crop_keeps_the_aspect_and_pastes_centred():
    cam = Intrinsics(100.0, 80.0, 20.0, 20.0, 40, 40)  # f_y·r = 10: rows [10, 30), 20 of them
    crop = window_crop_mm(FRAME, np.array([0.0, 0.0, 1000.0]), cam, size=8)
    # 25 × 20 → 8 × floor(20 · 8 / 25) = 8 × 6, pasted at row 8//2 − 6//2 = 1
    assert (crop[0] == 0).all() and (crop[7] == 0).all()
    rows, cols = np.array([0, 3, 6, 10, 13, 16]), np.array([0, 3, 6, 9, 12, 15, 18, 21])  # floor(i·20/6), floor(i·25/8)
    np.testing.assert_array_equal(crop[1:7], FRAME[10 + rows][:, 7 + cols])


def test_window_crop_reads_no_data_outside_the_frame():
    center = unproject(np.array([2.0, 2.0, 1000.0]), CAM)  # window [-11, 14)
    crop = window_crop_mm(FRAME, center, CAM, size=25)
    assert (crop[:11] == 0).all() and (crop[:, :11] == 0).all()
    np.testing.assert_array_equal(crop[11:, 11:], FRAME[:14, :14])


# --- re-centring pinhole crops -------------------------------------------------------------------


def test_recentred_crop_matches_a_crop_cut_at_the_new_centre():
    cam = CAMERAS["hands2017"]
    joints = hands(1, 21, seed=3)[0]
    frame = render(joints, cam, wall=np.inf)
    frame[np.isinf(frame)] = 0  # the hand alone
    old = joints.mean(0)
    new = old + np.array([9.0, -6.0, 8.0])
    direct = crop_frame(frame, new, cam)
    moved = recenter_crops(crop_frame(frame, old, cam)[None], old[None], new[None])[0]
    hand = (direct < 1) & (moved < 1)
    assert ((direct < 1) != (moved < 1)).mean() < 0.01  # silhouettes: nearest-pixel resampling twice
    assert np.median(np.abs(direct[hand] - moved[hand])) * 125 < 0.5  # mm
    np.testing.assert_array_equal(recenter_crops(direct[None], new[None], new[None])[0], direct)


def test_center_jitter_is_refused_outside_posterior_training():
    with pytest.raises(ValueError, match="center_jitter_mm"):
        Recipe.from_dict({"data": {"center_jitter_mm": 10.0}})
    recipe = Recipe.from_dict({"data": {"center_jitter_mm": 10.0}, "vae": {"steps": 0}, "gan": {"steps": 0},
                               "joint": {"warmup_steps": 0, "steps": 0},
                               "refine": {"steps": 10, "train": "posterior"}})
    assert recipe.data.center_jitter_mm == 10.0
    with pytest.raises(ValueError, match="center_jitter_fraction"):
        Recipe.from_dict({"data": {"center_jitter_fraction": 0.0}})


# --- centre files --------------------------------------------------------------------------------


def test_centre_files_of_the_release_a2j_and_v2v(tmp_path):
    cam = CAMERAS["nyu"]
    uvd = np.array([[300.0, 200.0, 700.0], [350.0, 260.0, 650.0]])
    scipy.io.savemat(tmp_path / "release.mat", {"center_uvd": uvd})
    scipy.io.savemat(tmp_path / "a2j.mat", {"centre_pixel": uvd[:, None]})
    expected = unproject(uvd, cam)
    np.testing.assert_allclose(read_centers(tmp_path / "release.mat", cam, 2), expected)
    np.testing.assert_allclose(read_centers(tmp_path / "a2j.mat", cam, 2), expected)
    (tmp_path / "v2v.txt").write_text("10.5 -20.0 700.0\ninvalid\n")  # world frame: y up
    centers = read_centers(tmp_path / "v2v.txt", cam, 2)
    np.testing.assert_allclose(centers[0], [10.5, 20.0, 700.0])
    assert np.isnan(centers[1]).all()


@pytest.mark.parametrize("name, content, fragment", [
    ("short.txt", "1 2 300\n", "has 1 centres, the split has 2 frames"),
    ("bad.txt", "1 2 300\n1 2\n", ":2: expected 'x y z'"),
    ("words.txt", "a b c\n1 2 3\n", ":1: expected 'x y z'"),
    ("depth.txt", "1 2 300\n1 2 -5\n", "depths <= 0"),
    ("c.npy", "", "expected a .mat"),
    ("junk.mat", "not matlab", "not a readable MATLAB file"),
])
def test_bad_centre_files_are_one_line_errors(tmp_path, name, content, fragment):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=fragment.replace("(", r"\(")) as error:
        read_centers(tmp_path / name, CAMERAS["nyu"], 2)
    assert "\n" not in str(error.value)


def test_mat_centres_of_the_wrong_shape_or_name(tmp_path):
    scipy.io.savemat(tmp_path / "shape.mat", {"center_uvd": np.ones((2, 2))})
    scipy.io.savemat(tmp_path / "name.mat", {"centers": np.ones((2, 3))})
    with pytest.raises(InputError, match=r"must be \(N, 3\)"):
        read_centers(tmp_path / "shape.mat", CAMERAS["nyu"], 2)
    with pytest.raises(InputError, match="has no center_uvd or centre_pixel"):
        read_centers(tmp_path / "name.mat", CAMERAS["nyu"], 2)


# --- import with centres and a model's convention -----------------------------------------------


@pytest.fixture(scope="module")
def release_nyu(tmp_path_factory):
    """A converted NYU release model (random weights) and a NYU split of 3 frames."""
    root = tmp_path_factory.mktemp("nyu")
    model_dir = root / "model"
    convert_crossing_nets(write_release(root / "release", release_arrays(36)), "nyu").save_pretrained(model_dir)
    joints = hands(3, 36, seed=11)
    write_nyu(root / "NYU", "test", joints)
    return root, model_dir, joints


def test_import_for_a_release_model_cuts_its_crops_at_the_given_centres(release_nyu, tmp_path):
    root, model_dir, joints = release_nyu
    cam = CAMERAS["nyu"]
    centers_uvd = project(joints.mean(1), cam) + [3.0, -2.0, 15.0]
    scipy.io.savemat(tmp_path / "c.mat", {"center_uvd": centers_uvd})
    out = tmp_path / "s.zarr"
    result = invoke("import", "nyu", root / "NYU", "--split", "test", "--out", out, "--model", model_dir,
                    "--centers", tmp_path / "c.mat")
    assert result.exit_code == 0, result.output
    store = open_store(out)
    assert store.input_convention == InputConvention("front-aligned", "window", "given")
    attrs = json.loads((out / "zarr.json").read_text())["attributes"]
    assert attrs["normalisation"]["convention"] == "front-aligned" and attrs["parameters"]["centers"]["file"] == "c.mat"
    batch = store.read(slice(0, 3))
    np.testing.assert_allclose(batch.center, unproject(centers_uvd, cam), atol=1e-3)
    frame = np.rint(render(joints[1], cam)).astype(np.float32)
    expected = front_align(window_crop_mm(frame, unproject(centers_uvd[1], cam), cam), batch.center[1, 2])
    np.testing.assert_allclose(batch.depth[1], expected, atol=1e-3)  # float16 storage
    assert (batch.depth.reshape(3, -1).min(1) == -1).all()
    with pytest.raises(InputError, match="relative to each crop's nearest pixel"):
        store.depth_mm(0)


def test_import_needs_centres_for_a_model_trained_at_given_centres(release_nyu, tmp_path):
    root, model_dir, _ = release_nyu
    result = invoke("import", "nyu", root / "NYU", "--split", "test", "--out", tmp_path / "s.zarr",
                    "--model", model_dir)
    assert result.exit_code == 2 and "--centers not given" in result.output
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("content, fragment", [("1 2 300\n", "has 1 centres, the split has 3 frames"),
                                               ("1 2 300\nx\n1 2 3\n", ":2: expected 'x y z'")])
def test_import_refuses_bad_centres_and_writes_nothing(release_nyu, tmp_path, content, fragment):
    root, _, _ = release_nyu
    (tmp_path / "c.txt").write_text(content)
    out = tmp_path / "s.zarr"
    result = invoke("import", "nyu", root / "NYU", "--split", "test", "--out", out, "--centers", tmp_path / "c.txt")
    assert result.exit_code == 2 and fragment in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "s.zarr.incomplete").exists()


def test_estimate_front_aligns_centre_relative_crops_for_a_release_model(release_nyu, tmp_path):
    root, model_dir, _ = release_nyu
    plain, aligned = tmp_path / "plain.zarr", tmp_path / "aligned.zarr"
    assert invoke("import", "nyu", root / "NYU", "--split", "test", "--out", plain).exit_code == 0
    stored = open_store(plain).input_convention  # the shipped default model's convention
    assert (stored.depth, stored.crop) == (SYNTHGEN_INPUT.depth, SYNTHGEN_INPUT.crop)
    assert stored.centering == load(DEFAULT_MODEL_DIR).input_convention.centering
    result = invoke("estimate", plain, "--model", model_dir, "--out", tmp_path / "p.npy")
    assert result.exit_code == 0, result.output
    assert "warning: the crops are pinhole crops" in result.output
    model = load(model_dir)
    batch = open_store(plain).read(slice(0, 3))
    direct = model.estimate(torch.from_numpy(front_align_normalised(batch.depth)), torch.from_numpy(batch.center))
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), direct.numpy(), atol=5e-3)
    # a front-aligned store cannot feed a centre-relative model
    scipy.io.savemat(tmp_path / "c.mat", {"center_uvd": project(batch.center.astype(np.float64), CAMERAS["nyu"])})
    assert invoke("import", "nyu", root / "NYU", "--split", "test", "--out", aligned, "--model", model_dir,
                  "--centers", tmp_path / "c.mat").exit_code == 0
    from synthgen.models import CrossingNets
    from synthgen.models.config import CrossingNetsConfig, VAEConfig

    own = tmp_path / "own"
    CrossingNets(CrossingNetsConfig(vae=VAEConfig(num_joints=36)), joint_layout="nyu36").save_pretrained(own)
    result = invoke("estimate", aligned, "--model", own)
    assert result.exit_code == 2 and "cannot be recovered" in result.output


# --- models carry their convention; converted models their prior -------------------------------


def test_models_save_and_load_their_input_convention(release_nyu, tmp_path):
    _, model_dir, _ = release_nyu
    assert read_input_convention(model_dir) == RELEASE_INPUT["nyu"]
    assert load(model_dir).input_convention == RELEASE_INPUT["nyu"]
    config = json.loads((model_dir / "config.json").read_text())
    del config["input_convention"]  # a config written before models carried one
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    (tmp_path / "old" / "model.safetensors").write_bytes((model_dir / "model.safetensors").read_bytes())
    assert load(tmp_path / "old").input_convention == SYNTHGEN_INPUT


def test_convert_fits_the_prior_to_a_pose_label_file(tmp_path):
    release = write_release(tmp_path / "release", release_arrays(16))
    joints = hands(30, 16, seed=4)
    write_icvl(tmp_path / "ICVL", joints, folder="Testing", labels="test_seq_1.txt")
    labels = tmp_path / "ICVL" / "Testing" / "test_seq_1.txt"
    np.testing.assert_allclose(read_pose_labels(labels, "icvl"), joints, atol=1e-3)
    bare = tmp_path / "bare.txt"  # the field's icvl_test_groundtruth_label.txt: numbers only
    bare.write_text("".join(" ".join(line.split()[1:]) + "\n" for line in labels.read_text().splitlines()))
    np.testing.assert_allclose(read_pose_labels(bare, "icvl"), joints, atol=1e-3)
    out = tmp_path / "model"
    result = invoke("convert", "crossingnet", "--weights", release, "--dataset", "icvl", "--out", out,
                    "--poses", labels)
    assert result.exit_code == 0, result.output
    model = load(out)
    latent, _ = model.encode_pose(torch.from_numpy(joints.astype(np.float32)),
                                  torch.from_numpy(joints.mean(1).astype(np.float32)))
    np.testing.assert_allclose(model.latent.mean, latent.numpy().mean(0), atol=1e-5)
    assert "30 encoded poses of test_seq_1.txt" in model.provenance["statistics"]


@pytest.mark.parametrize("dataset, content, fragment", [
    ("icvl", "a.png 1 2 3\n", "expected 48 numbers"),
    ("icvl", "", "no labels"),
    ("nyu", "1 2 3\n", "only the 14 evaluated joints"),
    ("msra", "two\n", "not an MSRA15 joint.txt"),
])
def test_pose_label_files_that_do_not_parse_are_refused(tmp_path, dataset, content, fragment):
    labels = tmp_path / "labels.txt"
    labels.write_text(content)
    out = tmp_path / "model"
    release = write_release(tmp_path / "release", release_arrays({"icvl": 16, "nyu": 36, "msra": 21}[dataset]))
    result = invoke("convert", "crossingnet", "--weights", release, "--dataset", dataset, "--out", out,
                    "--poses", labels)
    assert result.exit_code == 2 and fragment in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_relative_depth_is_refused_where_millimetres_are_needed(tmp_path):
    from synthgen.data.augment import Augmentation
    from synthgen.data.dataset import HandDataset
    from synthgen.data.export import export_store
    from synthgen.data.schema import SampleBatch, StoreMetadata
    from synthgen.data.writer import StoreWriter

    path = tmp_path / "aligned.zarr"
    meta = StoreMetadata("test", 0, camera="icvl", joint_layout="icvl", input_convention=RELEASE_INPUT["icvl"])
    writer = StoreWriter.create(path, 4, meta)
    pose = hands(4, 16, seed=1).astype(np.float32)
    writer.write(0, SampleBatch(np.ones((4, 128, 128)), pose, pose.mean(1), joint_layout="icvl"))
    writer.finalize()
    attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    assert attrs["input_convention"] == {"depth": "front-aligned", "crop": "window", "centering": "center-of-mass"}
    assert attrs["normalisation"]["max_quantisation_error_mm"] is None
    with pytest.raises(InputError, match="cannot be recovered"):
        export_store(path, tmp_path / "out", layout="icvl", fmt="png16")
    with pytest.raises(InputError, match="augmentation works on metric depth"):
        HandDataset(path, augment=Augmentation())
    assert len(HandDataset(path)) == 4  # reading as stored is fine
    info = invoke("info", path)
    assert info.exit_code == 0 and "relative depth (no mm)" in info.output
    assert "front-aligned depth, window crop, center-of-mass centring" in info.output
    result = invoke("score", path, "--n", 4)
    assert result.exit_code == 2 and "front-aligned depth" in result.output


def test_import_centering_overrides_the_models_rule(release_nyu, tmp_path):
    root, _, joints = release_nyu
    box, com = tmp_path / "box.zarr", tmp_path / "com.zarr"
    assert invoke("import", "nyu", root / "NYU", "--split", "test", "--out", box,
                  "--centering", "joint-box").exit_code == 0
    assert invoke("import", "nyu", root / "NYU", "--split", "test", "--out", com,
                  "--centering", "center-of-mass").exit_code == 0
    np.testing.assert_allclose(open_store(box).read(slice(0, 3)).center,
                               (joints.min(1) + joints.max(1)) / 2, atol=1e-3)
    assert open_store(box).input_convention.centering == "joint-box"
    assert open_store(com).input_convention.centering == "center-of-mass"
    assert not np.allclose(open_store(com).read(slice(0, 3)).center, open_store(box).read(slice(0, 3)).center)
    (tmp_path / "c.txt").write_text("1 2 300\n" * 3)
    result = invoke("import", "nyu", root / "NYU", "--split", "test", "--out", tmp_path / "x.zarr",
                    "--centering", "joint-box", "--centers", tmp_path / "c.txt")
    assert result.exit_code == 2 and "not both" in result.output


def test_estimate_json_reports_nyus_14_evaluated_joints(release_nyu, tmp_path):
    from synthgen.conventions import NYU_EVAL_JOINTS

    root, model_dir, joints = release_nyu
    store = tmp_path / "s.zarr"
    assert invoke("import", "nyu", root / "NYU", "--split", "test", "--out", store).exit_code == 0
    result = invoke("estimate", store, "--model", model_dir, "--json", "--out", tmp_path / "p.npy")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    predicted = np.load(tmp_path / "p.npy")[:, list(NYU_EVAL_JOINTS)]
    truth = open_store(store).read_array("pose")[:, list(NYU_EVAL_JOINTS)]
    expected = np.linalg.norm(predicted - truth, axis=-1).mean()
    assert metrics["nyu14"]["mean_joint_error_mm"] == pytest.approx(expected, rel=1e-5)
    assert set(metrics["nyu14"]["per_joint_mm"]) == {"P1", "P2", "R1", "R2", "M1", "M2", "I1", "I2", "T1", "T2", "T3",
                                                     "W1", "W2", "C"}
