"""Realism scores: metric definitions, calibration against controlled corruptions, `synthgen score`.

The calibration tests are what make the numbers trustworthy: they use the shipped DepthNet
on fresh baseline renders and check that the scores rank corruption the way a person would.
"""

import json

import numpy as np
import pytest
from scipy import linalg
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.data.schema import SampleBatch, StoreMetadata
from synthgen.data.writer import StoreWriter
from synthgen.models import depthnet
from synthgen.realism import ScoreSettings, corrupt, metrics, score
from synthgen.realism.score import render_reference

runner = CliRunner()
N = 512
FAST = dict(bootstrap=5, kid_subsets=10, kid_subset_size=256, train_n=256, calibration_n=128)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def net():
    return depthnet.load()


@pytest.fixture(scope="module")
def baselines():
    """Two independent sets of baseline renders (different seeds)."""
    a = render_reference(N, seed=1001, camera_name="hands2017", cube_mm=250.0, crop_size=128)
    b = render_reference(N, seed=2002, camera_name="hands2017", cube_mm=250.0, crop_size=128)
    return a, b


def embed(net, depth, center):
    return net(depth, center).features


def write(path, depth, pose, center, **meta):
    meta = {"producer": "test", "seed": 0, **meta}
    writer = StoreWriter.create(path, len(depth), StoreMetadata(**meta), chunk_size=256)
    for s in range(0, len(depth), 256):
        writer.write(s, SampleBatch(depth[s:s + 256], pose[s:s + 256], center[s:s + 256]))
    return writer.finalize()


# --- metric definitions ----------------------------------------------------------------------


def test_iou_and_depth_error_of_a_render_against_itself_and_a_known_offset(baselines):
    depth = baselines[0][0][:32]
    np.testing.assert_array_equal(metrics.silhouette_iou(depth, depth), 1.0)
    np.testing.assert_array_equal(metrics.masked_depth_mae_mm(depth, depth), 0.0)
    moved = np.where(depth < 0.999, depth + 0.08, depth)  # 0.08 cube units = 10 mm further away
    np.testing.assert_allclose(metrics.masked_depth_mae_mm(moved, depth), 10.0, rtol=1e-5)
    half = depth.copy()
    half[:, :, 64:] = 1.0
    iou = metrics.silhouette_iou(half, depth)
    expected = (depth[:, :, :64] < 0.999).sum((1, 2)) / (depth < 0.999).sum((1, 2))
    np.testing.assert_allclose(iou, expected)
    empty = np.ones((2, 8, 8), np.float32)
    assert metrics.silhouette_iou(empty, empty).tolist() == [1.0, 1.0]
    assert np.isnan(metrics.masked_depth_mae_mm(empty, empty)).all()


def test_frechet_distance_matches_the_scipy_sqrtm_reference():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 16)), rng.normal(0.3, 1.4, size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.3
    m1, c1 = x.mean(0), np.cov(x, rowvar=False)
    m2, c2 = y.mean(0), np.cov(y, rowvar=False)
    reference = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * linalg.sqrtm(c1 @ c2).real)
    assert metrics.fd_of(x, y) == pytest.approx(reference, rel=1e-6)
    streamed = metrics.FeatureStats.empty(16)
    for part in np.array_split(x, 7):
        streamed.update(part)
    np.testing.assert_allclose(streamed.mean_cov()[1], c1, atol=1e-12)
    assert metrics.fd_of(x, x) == pytest.approx(0, abs=1e-6)


def test_kid_precision_recall_and_coverage_on_known_distributions():
    rng = np.random.default_rng(1)
    x, x2 = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    far = rng.normal(3.0, 1.0, size=(600, 8))
    same, _ = metrics.kernel_inception_distance(x, x2, rng, subsets=20, subset_size=300)
    different, _ = metrics.kernel_inception_distance(x, far, rng, subsets=20, subset_size=300)
    assert abs(same) < 0.02 < different
    assert metrics.knn_precision_recall(x, x) == (1.0, 1.0)
    precision, recall = metrics.knn_precision_recall(x, far)
    assert precision < 0.1 and recall < 0.1
    narrow = x2 * 0.1  # all generated samples in the centre: faithful, not diverse
    precision, recall = metrics.knn_precision_recall(x, narrow)
    assert precision > 0.9 and recall < 0.3
    assert metrics.coverage(x, x2) > 0.8 > 0.1 > metrics.coverage(x, far)


# --- calibration on real renders -------------------------------------------------------------


def test_two_baseline_samples_are_near_zero_and_far_below_any_corruption(net, baselines):
    (da, _, ca), (db, _, cb) = baselines
    fa, fb = embed(net, da, ca), embed(net, db, cb)
    same = metrics.fd_of(fa, fb)
    rng = np.random.default_rng(0)
    for kind, strength in (("blur", 2.0), ("noise", 25.0), ("shift", 12)):
        corrupted = metrics.fd_of(fa, embed(net, corrupt.corrupt(db, kind, strength, rng), cb))
        assert same < 0.2 * corrupted, (kind, same, corrupted)


@pytest.mark.parametrize("kind, strengths", [("blur", [0, 1, 2, 4]), ("noise", [0, 8, 16, 32]),
                                             ("shift", [0, 3, 6, 12])])
def test_fd_and_kid_grow_monotonically_with_corruption(net, baselines, kind, strengths):
    (da, _, ca), (db, _, cb) = baselines
    fa = embed(net, da, ca)
    fds, kids = [], []
    for strength in strengths:
        fb = embed(net, corrupt.corrupt(db, kind, strength, np.random.default_rng(5)), cb)
        fds.append(metrics.fd_of(fa, fb))
        kids.append(metrics.kernel_inception_distance(fa, fb, np.random.default_rng(0), 20, 256)[0])
    assert np.all(np.diff(fds) > 0), fds
    assert np.all(np.diff(kids) > 0), kids


def test_corruptions_leave_strength_zero_untouched_and_background_at_plus_one(baselines):
    depth = baselines[0][0][:16]
    rng = np.random.default_rng(0)
    for kind in corrupt.CORRUPTIONS:
        np.testing.assert_array_equal(corrupt.corrupt(depth, kind, 0, rng), depth)
    noisy = corrupt.noise(depth, 10.0, rng)
    np.testing.assert_array_equal(noisy[depth >= 0.999], 1.0)
    assert 9.0 < (noisy - depth)[depth < 0.999].std() * 125 < 11.0
    moved = corrupt.shift(depth, 5)
    np.testing.assert_array_equal(moved[:, 5:, 5:], depth[:, :-5, :-5])
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt.corrupt(depth, "rotate", 1, rng)


def test_scoring_a_baseline_store_finds_true_pairs_and_rejects_shuffled_ones(tmp_path, baselines):
    depth, pose, center = (x[:256] for x in baselines[0])
    true = write(tmp_path / "true.zarr", depth, pose, center)
    # Shuffled pairs: each depth crop keeps its own centre but gets another sample's pose.
    perm = np.roll(np.arange(256), 1)
    shuffled_pose = pose[perm] - center[perm, None, :] + center[:, None, :]
    shuffled = write(tmp_path / "shuffled.zarr", depth, shuffled_pose, center)
    settings = ScoreSettings(n=256, **{**FAST, "calibration_n": 256})
    true_scores = score(true, settings=settings).scores
    t = true_scores["pair"]
    s = score(shuffled, settings=settings).scores["pair"]
    # Baseline crops against baseline crops: on the calibration scale, next to the independent set.
    assert true_scores["verdict"]["level"] in ("like the reference", "close to the reference")
    assert true_scores["verdict"]["store"]["fd"] < true_scores["verdict"]["scale"][-1]["fd"]
    assert t["iou_mean"] > 0.999 and t["depth_mae_mm"] < 0.05 and t["ik_residual_median_mm"] < 0.01
    assert t["pose_consistency_mm"] == pytest.approx(t["estimator_floor_mm"], abs=0.05)
    assert s["iou_mean"] < t["iou_mean"] - 0.3
    assert s["pose_consistency_mm"] > 2.5 * t["pose_consistency_mm"]


def test_score_is_reproducible_and_reports_memorisation_of_copies(tmp_path, baselines):
    depth, pose, center = (x[:256] for x in baselines[1])
    store = write(tmp_path / "copies.zarr", depth, pose, center)
    train = write(tmp_path / "train.zarr", *(x[:512] for x in baselines[1]))
    settings = ScoreSettings(n=200, reference_n=256, **{**FAST, "train_n": 512})
    a = score(store, train=train, settings=settings).scores
    b = score(store, train=train, settings=settings).scores
    for key in ("pair", "set", "memorisation"):
        assert a[key] == b[key]
    memo = a["memorisation"]
    # Every scored crop is itself in the training store: distance 0, far below unseen renders.
    assert memo["generated_to_train"]["median"] < 1e-3 < memo["reference_to_train"]["median"]
    assert memo["closer_than_reference_p01"] == 1.0
    assert set(a["set"]) >= {"fd", "kid", "precision", "recall", "coverage", "fd_ci95", "kid_ci95"}
    assert a["verdict"] == b["verdict"]


def test_intervals_contain_their_estimates_and_small_sets_are_warned(tmp_path, baselines):
    """FD's bootstrap interval is bias-corrected (resampling with replacement inflates FD);
    KID's subsets are half the smaller set, so they differ; sets below the feature dimension
    get a warning in score.json."""
    store = write(tmp_path / "s.zarr", *(x[:300] for x in baselines[1]))
    result = score(store, settings=ScoreSettings(n=300, **{**FAST, "bootstrap": 20})).scores
    fd, (lo, hi) = result["set"]["fd"], result["set"]["fd_ci95"]
    assert lo < fd < hi
    kid, (k_lo, k_hi) = result["set"]["kid"], result["set"]["kid_ci95"]
    assert result["set"]["kid_subset_size"] == 150 and k_lo < kid < k_hi and k_hi - k_lo > 0
    warned = " ".join(result["warnings"])
    assert "300 scored samples are fewer than the feature network's" in warned
    assert "300 reference crops are fewer" in warned


def test_the_verdict_places_a_blurred_store_at_the_far_end(tmp_path, baselines):
    depth, pose, center = (x[:256] for x in baselines[1])
    blurred = write(tmp_path / "blur.zarr", corrupt.blur(depth, 3.0), pose, center)
    verdict = score(blurred, settings=ScoreSettings(n=256, **FAST)).scores["verdict"]
    assert verdict["level"] == "far from the reference" and "beyond every calibrated corruption" in verdict["text"]
    fds = [row["fd"] for row in verdict["scale"]]
    assert fds[0] == min(fds) and verdict["n"] == 128


# --- the command -------------------------------------------------------------------------------


def test_score_command_writes_json_report_and_refuses_to_overwrite(tmp_path, baselines):
    store = write(tmp_path / "s.zarr", *(x[:128] for x in baselines[0]))
    out = tmp_path / "report"
    result = invoke("score", store, "--n", 128, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads((out / "score.json").read_text())
    for key in ("iou_mean", "depth_mae_mm", "pose_consistency_mm"):
        assert isinstance(doc["pair"][key], float)
    for key in ("fd", "kid", "precision", "recall"):
        assert isinstance(doc["set"][key], float)
    assert doc["feature_network"]["version"] == depthnet.VERSION
    html = (out / "report.html").read_text()
    assert "examples.png" in html and (out / "examples.png").stat().st_size > 5000
    assert "Verdict:" in html and (out / "summary.png").stat().st_size > 5000 and "Provenance" in html
    assert "verdict: " in result.stderr
    before = (out / "score.json").read_bytes()
    again = invoke("score", store, "--n", 128, "--out", out)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert (out / "score.json").read_bytes() == before


def test_score_refuses_bad_input_with_one_line(tmp_path, baselines):
    depth, pose, center = (x[:64] for x in baselines[0])
    store = write(tmp_path / "s.zarr", depth, pose, center)
    small = write(tmp_path / "small.zarr", depth[:, ::2, ::2], pose, center, crop_size=64)
    StoreWriter.create(tmp_path / "empty.zarr", 256, StoreMetadata(producer="test", seed=0))  # nothing written yet
    empty = tmp_path / "empty.zarr"
    posefree = tmp_path / "posefree.zarr"
    import shutil

    shutil.copytree(store, posefree)
    shutil.rmtree(posefree / "pose")
    cases = [
        (("score", store, "--reference", small), "image sizes differ"),
        (("score", small), "crops are 64²"),
        (("score", empty), "not finished"),
        (("score", empty, "--allow-incomplete"), "no written chunk"),
        (("score", posefree), "pose"),
        (("score", tmp_path / "missing.zarr"), "does not exist"),
        (("score", store, "--n", 1), "--n"),
        (("score", store, "--n", 3), "need at least 4 scored and 4 reference samples, got 3 and 3"),
        (("score", store, "--feature-net", tmp_path), "--feature-net"),
    ]
    for args, message in cases:
        result = invoke(*args, "--out", tmp_path / "never")
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("synthgen: error:") and message in lines[0], (args, lines)
        assert not (tmp_path / "never").exists()
