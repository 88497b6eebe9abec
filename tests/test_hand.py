"""Conventions, kinematics, prior, camera and noise: the pure-math half of synthgen.hand."""

import numpy as np
import pytest
import torch

from synthgen.conventions import (
    CAMERAS,
    FINGERTIPS,
    JOINT_NAMES,
    LAYOUTS,
    PARENTS,
    camera_to_msra_file,
    msra_file_to_camera,
)
from synthgen.hand import camera, skeleton
from synthgen.hand.kinematics import HandPose, axis_angle_to_matrix, forward_kinematics, skinning_transforms
from synthgen.hand.noise import SensorNoise
from synthgen.hand.prior import sample_angles, sample_poses


def random_poses(seed: int, n: int = 256, cam: str = "hands2017") -> HandPose:
    return sample_poses(np.random.default_rng(seed), n, CAMERAS[cam])


# --- conventions ---------------------------------------------------------------------------

def test_joint_order_is_hands2017():
    assert JOINT_NAMES[:6] == ("Wrist", "TMCP", "IMCP", "MMCP", "RMCP", "PMCP")
    assert JOINT_NAMES[6:9] == ("TPIP", "TDIP", "TTIP")
    assert JOINT_NAMES[-3:] == ("PPIP", "PDIP", "PTIP")
    assert [JOINT_NAMES[i] for i in FINGERTIPS] == ["TTIP", "ITIP", "MTIP", "RTIP", "PTIP"]
    assert PARENTS[JOINT_NAMES.index("IPIP")] == JOINT_NAMES.index("IMCP")
    assert PARENTS[JOINT_NAMES.index("ITIP")] == JOINT_NAMES.index("IDIP")


def test_layouts():
    joints = np.random.default_rng(0).normal(size=(4, 21, 3)).astype(np.float32)
    msra = LAYOUTS["msra"]
    assert msra.joint_names[1:5] == ("IMCP", "IPIP", "IDIP", "ITIP")
    assert msra.joint_names[-4:] == ("TMCP", "TPIP", "TDIP", "TTIP")
    np.testing.assert_array_equal(msra.to_canonical(msra.from_canonical(joints)), joints)
    icvl = LAYOUTS["icvl"].from_canonical(joints)
    assert icvl.shape == (4, 16, 3)
    np.testing.assert_array_equal(icvl[:, 3], joints[:, JOINT_NAMES.index("TTIP")])
    nyu = LAYOUTS["nyu"].from_canonical(joints)
    assert nyu.shape == (4, 14, 3)
    np.testing.assert_array_equal(nyu[:, 0], joints[:, JOINT_NAMES.index("PTIP")])
    with pytest.raises(ValueError, match="does not determine"):
        LAYOUTS["nyu"].to_canonical(nyu)
    file_xyz = camera_to_msra_file(joints)
    assert np.all(file_xyz[..., 1] == -joints[..., 1]) and np.all(file_xyz[..., 2] == -joints[..., 2])
    np.testing.assert_array_equal(msra_file_to_camera(file_xyz), joints)


# --- kinematics ----------------------------------------------------------------------------

def test_rest_pose_matches_skeleton():
    joints, rotations = forward_kinematics(HandPose.rest(1))
    np.testing.assert_allclose(joints[0, 1:6].numpy(), skeleton.MCP_POSITIONS, atol=1e-5)
    np.testing.assert_allclose(joints[0, 0].numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(rotations[0, 0].numpy(), np.eye(3), atol=1e-6)


def test_bone_lengths_preserved_and_rotations_orthonormal():
    pose = random_poses(1)
    joints, rotations = forward_kinematics(pose)
    rest, _ = forward_kinematics(HandPose.rest(1))
    for j, p in enumerate(PARENTS):
        if p < 0:
            continue
        posed = (joints[:, j] - joints[:, p]).norm(dim=-1)
        expected = (rest[0, j] - rest[0, p]).norm() * pose.scale
        torch.testing.assert_close(posed, expected, atol=1e-3, rtol=1e-5)
    eye = torch.eye(3).expand_as(rotations)
    torch.testing.assert_close(rotations @ rotations.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(()), atol=1e-5)


def test_global_rotation_and_translation_are_rigid():
    pose = HandPose.rest(1)
    pose.angles = torch.from_numpy(sample_angles(np.random.default_rng(2), 1))
    local, _ = forward_kinematics(pose)
    moved = HandPose(torch.tensor([[0.3, -1.2, 0.5]]), torch.tensor([[10.0, -20.0, 400.0]]), pose.angles, pose.scale)
    world, _ = forward_kinematics(moved)
    R = axis_angle_to_matrix(moved.global_rot)[0]
    torch.testing.assert_close(world[0], local[0] @ R.T + moved.translation[0], atol=1e-3, rtol=0)


def test_flexion_curls_towards_palm():
    pose = HandPose.rest(1)
    pose.angles[0, 4 + 2] = 1.0  # index PIP
    joints, _ = forward_kinematics(pose)
    assert joints[0, JOINT_NAMES.index("ITIP"), 2] < -10.0  # palm side is -z in the hand frame


def test_skinning_transforms_reproduce_joints():
    pose = random_poses(3, 16)
    A, b = skinning_transforms(pose)
    joints, _ = forward_kinematics(pose)
    rest, _ = forward_kinematics(HandPose.rest(1))
    mapped = (A @ rest[0][None, :, :, None])[..., 0] + b
    torch.testing.assert_close(mapped, joints, atol=1e-3, rtol=0)


# --- prior ---------------------------------------------------------------------------------

def test_prior_respects_limits_and_coupling():
    angles = sample_angles(np.random.default_rng(4), 5000)
    lo, hi = skeleton.ANGLE_LIMITS[:, 0], skeleton.ANGLE_LIMITS[:, 1]
    assert np.all(angles >= lo - 1e-6) and np.all(angles <= hi + 1e-6)
    fingers = angles.reshape(-1, 5, 4)
    pip, dip = fingers[:, 1:, 2], fingers[:, 1:, 3]
    ratio = np.polyfit(pip.ravel(), dip.ravel(), 1)[0]
    assert 0.5 < ratio < 0.8  # DIP ≈ 2/3 PIP
    curls = fingers[:, :, 2]
    corr = np.corrcoef(curls.T)
    assert corr[1, 2] > 0.3 and corr[2, 3] > 0.3  # neighbouring fingers move together
    assert angles.std(0).min() > np.radians(3)  # every DoF is exercised


def test_prior_is_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = random_poses(7, 64), random_poses(7, 64), random_poses(8, 64)
    for name in ("global_rot", "translation", "angles", "scale"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=0, rtol=0)
    assert not torch.allclose(a.angles, c.angles)


@pytest.mark.parametrize("cam", sorted(CAMERAS))
def test_prior_places_hands_in_view(cam):
    pose = random_poses(5, 512, cam)
    joints, _ = forward_kinematics(pose)
    centre = camera.hand_center(joints.numpy())
    uvd = camera.project(centre, CAMERAS[cam])
    assert np.all((uvd[:, 0] > 0) & (uvd[:, 0] < CAMERAS[cam].width))
    assert np.all((uvd[:, 1] > 0) & (uvd[:, 1] < CAMERAS[cam].height))
    extent = np.abs(joints.numpy() - centre[:, None]).max()
    assert extent < 125.0  # every joint inside the 250 mm cube
    assert 0.8 < pose.scale.min() and pose.scale.max() < 1.2


# --- camera and crops ----------------------------------------------------------------------

@pytest.mark.parametrize("cam", sorted(CAMERAS))
def test_projection_round_trip_is_exact(cam):
    joints = forward_kinematics(random_poses(9, 128, cam))[0].numpy()
    back = camera.unproject(camera.project(joints, CAMERAS[cam]), CAMERAS[cam])
    assert np.abs(back - joints).max() < 1e-3


@pytest.mark.parametrize("cam", sorted(CAMERAS))
def test_crop_round_trip_within_a_millimetre(cam):
    intr = CAMERAS[cam]
    joints = forward_kinematics(random_poses(10, 128, cam))[0].numpy()
    centers = camera.hand_center(joints)
    for j, c in zip(joints, centers):
        crop = camera.crop_intrinsics(c)
        uvd_crop = camera.project(j, crop)
        assert np.all((uvd_crop[:, :2] > -0.5) & (uvd_crop[:, :2] < 127.5))
        # crop pixels → full-frame pixels agrees with projecting directly
        uv_full = camera.crop_uv_to_frame(uvd_crop[:, :2], c, intr)
        np.testing.assert_allclose(uv_full, camera.project(j, intr)[:, :2], atol=1e-6)
        # normalised joints and back
        norm = camera.normalize_joints(j, c)
        assert np.abs(norm).max() <= 1.0
        assert np.abs(camera.denormalize_joints(norm, c) - j).max() < 1e-3
        # crop pixel + depth (quantised to float16 as stored) back to mm
        d_norm = np.float16((uvd_crop[:, 2] - c[2]) / 125.0).astype(np.float32)
        uvd = np.column_stack([uvd_crop[:, :2], d_norm * 125.0 + c[2]])
        assert np.abs(camera.unproject(uvd, crop) - j).max() < 1.0


def test_crop_centre_lands_in_crop_centre():
    crop = camera.crop_intrinsics(np.array([40.0, -30.0, 500.0]))
    uv = camera.project(np.array([40.0, -30.0, 500.0]), crop)
    np.testing.assert_allclose(uv[:2], [63.5, 63.5])
    corner = camera.project(np.array([40.0 + 125.0, -30.0 - 125.0, 500.0]), crop)
    np.testing.assert_allclose(corner[:2], [127.5, -0.5])  # the cube's edge is the crop's edge


def test_depth_normalisation_convention_and_inverse():
    cz = 500.0
    depth = np.array([[0.0, 300.0, 400.0, 500.0, 600.0, 624.0, 700.0]], dtype=np.float32)[None]
    norm = camera.normalize_depth(depth, np.array([cz]))
    np.testing.assert_allclose(norm[0, 0], [1.0, -1.0, -0.8, 0.0, 0.8, 0.992, 1.0], atol=1e-6)
    back = camera.denormalize_depth(norm, np.array([cz]))
    np.testing.assert_allclose(back[0, 0], [0.0, 375.0, 400.0, 500.0, 600.0, 624.0, 0.0], atol=1e-3)
    with pytest.raises(ValueError, match="in front of the camera"):
        camera.crop_intrinsics(np.array([0.0, 0.0, -5.0]))


# --- noise ---------------------------------------------------------------------------------

def test_sensor_noise_statistics_and_determinism():
    depth = np.full((8, 64, 64), 500.0, dtype=np.float32)
    depth[:, :, :16] = 0.0
    noise = SensorNoise(holes_per_frame=0.0, quantum_mm=0.0)
    a = noise.apply(depth, np.random.default_rng(0))
    b = noise.apply(depth, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert np.all(a[:, :, :16] == 0)  # missing stays missing
    body = a[:, 2:-2, 20:-2]
    expected = noise.sigma_0 + noise.sigma_z2 * 500.0**2
    assert abs(body.std() - expected) < 0.1 * expected
    assert abs(body.mean() - 500.0) < 0.05
    edge_column = a[:, :, 16]
    assert 0.3 < (edge_column == 0).mean() < 0.7  # edge drop-out ≈ 0.5 at the discontinuity
    holes = SensorNoise(holes_per_frame=5.0).apply(depth, np.random.default_rng(1))
    assert (holes[:, :, 20:] == 0).mean() > 0.005
    quantised = SensorNoise(quantum_mm=1.0, holes_per_frame=0.0).apply(depth, np.random.default_rng(2))
    assert np.all(quantised == np.round(quantised))
