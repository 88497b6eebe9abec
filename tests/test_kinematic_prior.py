"""The kinematic pose decoder (decoded poses are skeleton hands) and the flow prior."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from synthgen.hand import skeleton
from synthgen.hand.ik import fit_hand
from synthgen.hand.kinematics import forward_kinematics
from synthgen.models import CrossingNets, CrossingNetsConfig, load
from synthgen.models.config import FlowConfig, GaussianStats, VAEConfig
from synthgen.models.flow import LatentFlow, fit_latent_flow, gaussian_factor
from synthgen.models.kinematic import KinematicDecoder, rotation_from_6d
from synthgen.sampling.prior import (
    LatentPrior,
    codes_to_whitened,
    latents_to_whitened,
    whitened_to_codes,
    whitened_to_latents,
)

SKELETON = {"arch": "skeleton", "base_size": 32, "num_upsamples": 1, "channels": 8, "sees_center": True,
            "pose_residual": False}


def _perturbed(module: torch.nn.Module, seed: int, std: float = 0.3) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen))
    return module


def kinematic_model(flow_layers: int = 0) -> CrossingNets:
    config = CrossingNetsConfig.from_dict({"vae": {"decoder": "kinematic", "kinematic_hidden": 32},
                                           "generator": SKELETON, "prior": {"layers": flow_layers, "hidden": 16},
                                           "discriminator": {"channels": 8, "metric_hidden": 64}})
    torch.manual_seed(0)
    model = CrossingNets(config)
    _perturbed(model.vae.kinematic, 1)
    model.generator.pose.init_from_pose_code(model.vae, model.align)
    if flow_layers:
        _perturbed(model.prior_flow, 2, 0.05)
    return model.eval()


# --- the kinematic decoder -----------------------------------------------------------------------


def test_rotation_from_6d_is_a_proper_rotation():
    R = rotation_from_6d(torch.randn(64, 6, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(R.transpose(1, 2) @ R, torch.eye(3).expand(64, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(64), atol=1e-5, rtol=0)


def test_decoded_poses_are_hands_of_the_skeleton():
    """Bones have the skeleton's lengths times one size per hand, angles stay inside their
    limits, and the mesh hand's IK reproduces every decoded pose to within micrometres."""
    decoder = _perturbed(KinematicDecoder(20, 32, 50.0), 3, 0.4).eval()
    z = 2 * torch.randn(256, 20, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        joints = decoder(z) * 50.0
        R, angles, scale = decoder.parameters_of(z)
    assert torch.equal(joints[:, 0], torch.zeros(256, 3))  # the wrist is the root
    low, high = torch.as_tensor(skeleton.ANGLE_LIMITS).T
    assert bool(((angles >= low - 1e-6) & (angles <= high + 1e-6)).all())
    assert float(scale.min()) >= 0.7 - 1e-6 and float(scale.max()) <= 1.4 + 1e-6
    assert float(scale.std()) > 0.05 and float(angles.std(0).min()) > 0.02  # varied hands, not a fixed pose
    lengths = torch.as_tensor(skeleton.BONE_LENGTHS)  # (5, 3): MCP→PIP→DIP→TIP per finger
    chains = [(1, 6, 7, 8), (2, 9, 10, 11), (3, 12, 13, 14), (4, 15, 16, 17), (5, 18, 19, 20)]
    for f, chain in enumerate(chains):
        for level in range(3):
            bone = (joints[:, chain[level + 1]] - joints[:, chain[level]]).norm(dim=1)
            torch.testing.assert_close(bone, lengths[f, level] * scale, atol=1e-3, rtol=0)
    fit = fit_hand(joints.double() + torch.tensor([10.0, -20.0, 400.0], dtype=torch.float64))
    assert float(np.median(fit.residual_mm)) < 0.01 and float(np.max(fit.residual_mm)) < 0.5


def test_hand_pose_reproduces_the_decoded_joints_through_forward_kinematics():
    decoder = _perturbed(KinematicDecoder(20, 32, 50.0), 5, 1.0).eval()
    z = torch.randn(32, 20, generator=torch.Generator().manual_seed(6))
    wrist = torch.tensor([[30.0, -10.0, 420.0]]).expand(32, 3)
    with torch.no_grad():
        hand = decoder.hand_pose(z, wrist)
        expected = decoder(z) * 50.0 + wrist[:, None]
    joints, _ = forward_kinematics(hand)
    torch.testing.assert_close(joints, expected, atol=1e-3, rtol=0)


def test_kinematic_decoder_configuration_errors():
    with pytest.raises(ValueError, match="vae.decoder must be"):
        VAEConfig(decoder="splines")
    with pytest.raises(ValueError, match="21-joint hand skeleton"):
        VAEConfig(decoder="kinematic", num_joints=14)


def test_the_skeleton_generator_draws_exactly_the_decoded_pose():
    """Without the pose residual, the joints G draws are the label `decode_pose` gives the sample."""
    model = kinematic_model()
    assert model.generator.pose.residual is None
    code = torch.cat([torch.randn(8, 20), 0.3 * torch.randn(8, 3)], 1)
    center = torch.tensor([[40.0, -30.0, 420.0]]).expand(8, 3)
    with torch.no_grad():
        drawn, _ = model.generator.joints(model.align(code), center)
        label = model.decode_pose(code[:, :20], code[:, 20:], center)
    # Ali and its inverse in fp32: 1e-4 crop units is 0.0125 mm
    torch.testing.assert_close(drawn, model.crop_coordinates(label, center), atol=1e-4, rtol=0)


# --- the flow prior -------------------------------------------------------------------------------


def _gaussian(dim: int = 20, seed: int = 0) -> GaussianStats:
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.2, (dim, dim))
    return GaussianStats.of(rng.normal(0.1, 1, (4000, dim)) @ a)


def test_an_untrained_flow_is_the_gaussian_prior():
    mean, chol = gaussian_factor(_gaussian())
    flow = LatentFlow(20, FlowConfig(layers=4, hidden=16))
    x = torch.randn(50, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(flow(x, mean, chol), mean + x @ chol.T, atol=1e-5, rtol=0)
    latent = mean + x @ chol.T
    log_p = flow.log_prob(latent, mean, chol).double()
    cov = chol @ chol.T
    expected = torch.distributions.MultivariateNormal(mean, cov).log_prob(latent)
    torch.testing.assert_close(log_p, expected, atol=1e-3, rtol=0)


def test_flow_inverse_undoes_forward():
    mean, chol = gaussian_factor(_gaussian())
    flow = _perturbed(LatentFlow(20, FlowConfig(layers=6, hidden=16)), 7, 0.05)
    x = torch.randn(100, 20, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    back, _ = flow.inverse(flow(x, mean, chol), mean, chol)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=0)


def test_fitting_the_flow_to_clustered_latents_beats_the_gaussian():
    """Two tight clusters: a Gaussian puts its mass between them, the fitted flow does not."""
    rng = np.random.default_rng(0)
    centres = np.zeros((2, 4))
    centres[0, 0], centres[1, 0] = -2.0, 2.0
    latents = (centres[rng.integers(0, 2, 6000)] + 0.15 * rng.normal(size=(6000, 4))).astype(np.float32)
    stats = GaussianStats.of(latents)
    mean, chol = gaussian_factor(stats)
    flow = LatentFlow(4, FlowConfig(layers=6, hidden=32))
    report = fit_latent_flow(flow, latents, mean, chol, steps=400, batch_size=256, lr=3e-3, seed=0)
    ll = report["held_out_log_likelihood"]
    assert ll["flow"] > ll["gaussian"] + 1.0
    with torch.no_grad():
        drawn = flow(torch.randn(2000, 4, generator=torch.Generator().manual_seed(3)), mean.float(), chol.float())
    between = (drawn[:, 0].abs() < 1.0).float().mean()  # the Gaussian puts ~35 % there
    assert float(between) < 0.1


def test_fitted_prior_uses_the_flow_and_round_trips_in_fixed_blocks():
    model = kinematic_model(flow_layers=4)
    model.latent = _gaussian()
    whitened = torch.randn(300, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    fitted = whitened_to_codes(model, whitened, "fitted", "gaussian")
    gaussian = whitened_to_codes(model, whitened, "gaussian", "gaussian")
    assert not torch.allclose(fitted[:, :20], gaussian[:, :20], atol=1e-3)
    # a row's code does not depend on how many rows are mapped with it
    assert torch.equal(whitened_to_codes(model, whitened[:7], "fitted", "gaussian"), fitted[:7])
    back = codes_to_whitened(model, fitted, "fitted")
    torch.testing.assert_close(back, whitened, atol=2e-4, rtol=0)
    lat = whitened_to_latents(model, whitened[:, :20], "fitted")
    torch.testing.assert_close(latents_to_whitened(model, lat, "fitted"), whitened[:, :20], atol=2e-4, rtol=0)
    # without a flow, "fitted" is the Gaussian
    plain = kinematic_model()
    plain.latent = model.latent
    assert torch.equal(whitened_to_codes(plain, whitened, "fitted", "gaussian"),
                       whitened_to_codes(plain, whitened, "gaussian", "gaussian"))
    assert LatentPrior(prior="gaussian").to_dict()["prior"] == "gaussian"


def test_a_kinematic_model_with_a_flow_survives_save_and_load(tmp_path):
    model = kinematic_model(flow_layers=4)
    model.latent = _gaussian()
    model.save_pretrained(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.config == model.config and loaded.config.prior.layers == 4
    codes = LatentPrior().sample(model, 16, torch.Generator().manual_seed(0))
    again = LatentPrior().sample(loaded, 16, torch.Generator().manual_seed(0))
    assert torch.equal(codes, again)
    center = torch.tensor([[0.0, 0.0, 450.0]]).expand(16, 3)
    assert torch.equal(model.generate_depth(codes, center), loaded.generate_depth(codes, center))
    assert math.isfinite(float(loaded.decode_pose(codes[:, :20], codes[:, 20:], center).sum()))


def test_configs_without_the_new_fields_load_as_before():
    config = CrossingNetsConfig.from_dict({"vae": {"hidden_dim": 40}})
    assert config.vae.decoder == "mlp" and config.prior.layers == 0 and config.generator.pose_residual
    assert CrossingNets(config).prior_flow is None
    with pytest.raises(ValueError, match="prior.layers"):
        replace(config, prior=FlowConfig(layers=-1))
