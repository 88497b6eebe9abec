"""Inverse kinematics: exact recovery of prior poses, graceful fits of noisy and mis-proportioned
joints, limits respected, and a re-posed hand that renders like the original."""

import numpy as np
import pytest
import torch

from synthgen.conventions import BACKGROUND, CAMERAS, NUM_JOINTS, PARENTS
from synthgen.hand import skeleton
from synthgen.hand.baseline import BaselineRenderer
from synthgen.hand.ik import _normal_equations, _posed, fit_hand
from synthgen.hand.kinematics import HandPose, axis_angle_to_matrix, forward_kinematics
from synthgen.hand.prior import sample_poses

LOWER, UPPER = skeleton.ANGLE_LIMITS[:, 0], skeleton.ANGLE_LIMITS[:, 1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The fit is hundreds of small tensor ops; on a shared 2-core machine torch's second
    intra-op thread waits for a core on every op (this file: 19 s with two threads, 6 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def prior_joints(seed: int, n: int) -> tuple[HandPose, np.ndarray]:
    pose = sample_poses(np.random.default_rng(seed), n, CAMERAS["hands2017"])
    return pose, forward_kinematics(pose)[0].numpy()


def stretch_bones(joints: np.ndarray, rng: np.random.Generator, spread: float = 0.1) -> np.ndarray:
    """Every bone (palm bones included) scaled by its own factor in [1 - spread, 1 + spread]."""
    factors = rng.uniform(1 - spread, 1 + spread, size=joints.shape[:2])
    out = joints.astype(np.float64).copy()
    for child, parent in enumerate(PARENTS):
        if parent >= 0:  # parents come before children, so `out[:, parent]` is already moved
            out[:, child] = out[:, parent] + factors[:, child, None] * (joints[:, child] - joints[:, parent])
    return out


def assert_within_limits(pose: HandPose, scale_range=(0.7, 1.4)) -> None:
    angles = pose.angles.numpy()
    assert np.isfinite(angles).all()
    assert (angles >= LOWER).all() and (angles <= UPPER).all()
    assert ((pose.scale >= scale_range[0]) & (pose.scale <= scale_range[1])).all()


def test_normal_equations_match_autograd():
    """The hand-written Jacobian (joint axes from the FK frames) is the derivative of the FK."""
    pose = sample_poses(np.random.default_rng(3), 3, CAMERAS["hands2017"])
    pose = HandPose(**{k: v.double() for k, v in pose.tensors().items()})
    target = forward_kinematics(pose)[0] + torch.randn(3, NUM_JOINTS, 3, generator=torch.Generator().manual_seed(0),
                                                       dtype=torch.float64)
    R = axis_angle_to_matrix(pose.global_rot)
    joints, frames = _posed(R, pose.translation, pose.angles, pose.scale)
    H, grad = _normal_equations(joints, frames, pose.translation, pose.scale, pose.angles, target)
    for b in range(3):
        def residual(params, b=b):
            turn = axis_angle_to_matrix(params[None, :3])  # left increment, tiny but nonzero
            j, _ = _posed(turn @ R[b:b + 1], params[None, 3:6], params[None, 7:], params[6:7])
            return (j[0] - target[b]).reshape(-1)

        x0 = torch.cat([torch.full((3,), 1e-20, dtype=torch.float64), pose.translation[b], pose.scale[b:b + 1],
                        pose.angles[b]])
        J = torch.autograd.functional.jacobian(residual, x0)
        torch.testing.assert_close(H[b], J.T @ J, rtol=1e-6, atol=1e-6 * float(H[b].abs().max()))
        torch.testing.assert_close(grad[b], J.T @ residual(x0), rtol=1e-6, atol=1e-6 * float(grad[b].abs().max()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recovers_prior_poses(seed):
    pose, joints = prior_joints(seed, 300)
    result = fit_hand(joints)
    assert result.residual_mm.shape == result.max_residual_mm.shape == (300,)
    assert np.mean((result.residual_mm < 1.0) & (result.max_residual_mm < 5.0)) >= 0.99
    assert np.median(result.max_residual_mm) < 0.01  # float32 output: essentially exact
    assert_within_limits(result.pose)
    refit, _ = forward_kinematics(result.pose)
    np.testing.assert_allclose(refit.numpy(), joints, atol=5.0)
    np.testing.assert_allclose(result.pose.scale.numpy(), pose.scale.numpy(), atol=1e-3)


def test_noisy_joints_fit_to_noise_level():
    rng = np.random.default_rng(10)
    _, joints = prior_joints(4, 300)
    noisy = joints + rng.normal(0.0, 3.0, joints.shape)
    result = fit_hand(noisy)
    assert result.residual_mm.mean() < 4.0  # |3D N(0, 3²)| averages 4.8 mm; a fit absorbs part of it
    assert np.percentile(result.residual_mm, 99) < 5.5
    # the fit lies closer to the clean joints than the noisy targets do
    fitted = forward_kinematics(result.pose)[0].numpy()
    assert np.linalg.norm(fitted - joints, axis=-1).mean() < np.linalg.norm(noisy - joints, axis=-1).mean()
    assert_within_limits(result.pose)


def test_mis_proportioned_bones_still_fit():
    rng = np.random.default_rng(11)
    _, joints = prior_joints(5, 300)
    result = fit_hand(stretch_bones(joints, rng))
    assert result.residual_mm.max() < 10.0
    assert result.residual_mm.mean() < 4.0
    assert_within_limits(result.pose)


def test_limits_and_scale_range_hold_for_implausible_joints():
    """Random point clouds and hyper-extended fingers: the fit stays a valid hand."""
    rng = np.random.default_rng(12)
    _, joints = prior_joints(6, 20)
    wild = joints + rng.normal(0.0, 30.0, joints.shape)
    clouds = rng.normal(0.0, 60.0, (5, NUM_JOINTS, 3)) + [0.0, 0.0, 500.0]
    degenerate = np.zeros((1, NUM_JOINTS, 3))
    for target in (wild, clouds, degenerate):
        result = fit_hand(target, scale_range=(0.8, 1.2))
        assert_within_limits(result.pose, scale_range=(0.8, 1.2))
        assert np.isfinite(result.residual_mm).all()


def test_deterministic_and_hands_independent():
    rng = np.random.default_rng(13)
    _, joints = prior_joints(7, 64)
    noisy = torch.as_tensor(joints + rng.normal(0.0, 3.0, joints.shape), dtype=torch.float32)
    first, again = fit_hand(noisy), fit_hand(noisy)
    for a, b in zip(first.pose.tensors().values(), again.pose.tensors().values()):
        assert torch.equal(a, b)
    alone = fit_hand(noisy[5:6])
    np.testing.assert_allclose(alone.residual_mm, first.residual_mm[5:6], atol=1e-3)
    assert first.pose.angles.dtype == torch.float32 and first.residual_mm.dtype == np.float32


@pytest.mark.parametrize(
    ("joints", "message"),
    [
        (np.zeros((NUM_JOINTS, 3)), "shape"),
        (np.zeros((2, 20, 3)), "shape"),
        (np.zeros((0, NUM_JOINTS, 3)), "shape"),
        (np.where(np.arange(2)[:, None, None] == 1, np.nan, np.zeros((2, NUM_JOINTS, 3))), "NaN or inf.*index 1"),
        (torch.full((1, NUM_JOINTS, 3), float("inf")), "NaN or inf"),
        ([[0.0, 0.0, 0.0]] * NUM_JOINTS, "numpy array or torch tensor"),
    ],
)
def test_bad_input_is_rejected(joints, message):
    with pytest.raises(ValueError, match=message) as info:
        fit_hand(joints)
    assert "\n" not in str(info.value)


def test_bad_options_are_rejected():
    joints = prior_joints(0, 1)[1]
    with pytest.raises(ValueError, match="iterations"):
        fit_hand(joints, iterations=-1)
    with pytest.raises(ValueError, match="scale_range"):
        fit_hand(joints, scale_range=(1.2, 0.8))


def test_refit_pose_renders_like_the_original():
    pose, joints = prior_joints(8, 6)
    renderer = BaselineRenderer(seed=0)
    original = renderer.render_poses(pose).depth < BACKGROUND
    refit = renderer.render_poses(fit_hand(joints).pose).depth < BACKGROUND
    iou = (original & refit).sum(axis=(1, 2)) / (original | refit).sum(axis=(1, 2))
    assert iou.min() >= 0.9, iou
