"""Conversion of the Crossing Nets Lasagne release: the converted PyTorch modules against a
NumPy forward pass written from Lasagne's / Theano's definitions.

The reference below knows nothing of PyTorch: dense W is (in, out); BN is
(x − mean)·inv_std·γ + β; Conv2DLayer is a true convolution (kernel flipped, Theano's
filter_flip=True); TransposedConv2DLayer with W (in, out, k, k) is the gradient of that
convolution with respect to its input; the release's poses are y-up and in the dataset's joint
order, its encoder's second head is log σ².
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.conventions import LAYOUTS
from synthgen.errors import InputError
from synthgen.models import load
from synthgen.models.lasagne import (
    DATASETS,
    _Frame,
    _joint_map,
    alignment_code_stats,
    convert_crossing_nets,
    fit_statistics,
)

H, L, C, K = 40, 20, 32, 6  # VAE width, latent, channels, kernel: the paper's
CODE = L + 3
TOL = 1e-5


# --- the release's files, random values in its exact layout --------------------------------


def _dense(rng, n_in, n_out):
    return rng.normal(0, 1 / np.sqrt(n_in), (n_in, n_out))


def _bn(rng, n):
    """beta, gamma, mean, inv_std (Lasagne's BatchNormLayer parameter order)."""
    return [rng.normal(0, 0.1, n), rng.normal(1, 0.1, n), rng.normal(0, 0.1, n), rng.uniform(0.8, 1.25, n)]


def _conv_w(rng, a, b):
    return rng.normal(0, 1 / np.sqrt(a * K * K), (a, b, K, K))


def _deconv_w(rng, a, b):
    """A stride-2 transposed conv sums (K/2)² taps per input channel into each output pixel."""
    return rng.normal(0, 1 / np.sqrt(a * (K // 2) ** 2), (a, b, K, K))


def _conv_blocks(rng, first_in, count):
    arrays = []
    for i in range(count):
        arrays += [_conv_w(rng, C, first_in if i == 0 else C)] + _bn(rng, C)
    return arrays


def release_arrays(num_joints, seed=0):
    rng = np.random.default_rng(seed)
    d = 3 * num_joints
    gen = [_dense(rng, CODE, 512)] + _bn(rng, 512)
    for _ in range(4):
        gen += [_deconv_w(rng, C, C)] + _bn(rng, C)
    gen += [_deconv_w(rng, C, 1), rng.normal(0.8, 0.1, 1)]
    return {
        "en_params": [_dense(rng, d, H), rng.normal(0, 0.1, H), _dense(rng, H, L), rng.normal(0, 0.1, L),
                      _dense(rng, H, L), rng.normal(0, 0.1, L)],
        "de_params": [_dense(rng, L, H), rng.normal(0, 0.1, H), _dense(rng, H, d), rng.normal(0, 0.1, d)],
        "align": [_dense(rng, CODE, CODE)] + _bn(rng, CODE),
        "gen_params": gen,
        "dis_params": _conv_blocks(rng, 1, 5) + [_dense(rng, 512, 1), rng.normal(0, 0.1, 1)],
        "reco_params": _conv_blocks(rng, C, 3) + [_dense(rng, 512, CODE)] + _bn(rng, CODE)
        + [_dense(rng, CODE, CODE), rng.normal(0, 0.1, CODE)],
        "metr_params": _conv_blocks(rng, C, 3) + [_dense(rng, 512, 512)] + _bn(rng, 512)
        + [_dense(rng, 512, CODE), rng.normal(0, 0.1, CODE)],
    }


def write_release(directory, arrays, prefix="-1_"):
    directory.mkdir(parents=True, exist_ok=True)
    for name, values in arrays.items():
        np.savez(directory / f"{prefix}{name}.npz", *[v.astype(np.float32) for v in values])
    return directory


# --- the reference: Lasagne / Theano semantics in NumPy (float64) ---------------------------


def relu(x):
    return np.maximum(x, 0)


def leaky(x, slope):
    return np.where(x > 0, x, slope * x)


def batch_norm(x, beta, gamma, mean, inv_std):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) * inv_std.reshape(shape) * gamma.reshape(shape) + beta.reshape(shape)


def conv(x, w, stride=2, pad=2):
    """Theano conv2d, filter_flip=True: y[o,i,j] = Σ x_pad[c, s·i + a, s·j + b] · w[o, c, k−1−a, k−1−b]."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (xp.shape[2] - k) // stride + 1, (xp.shape[3] - k) // stride + 1
    out = np.zeros((x.shape[0], w.shape[0], ho, wo))
    for a in range(k):
        for b in range(k):
            patch = xp[:, :, a:a + stride * ho:stride, b:b + stride * wo:stride]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, k - 1 - a, k - 1 - b])
    return out


def conv_transpose(y, w, stride=2, crop=2):
    """Lasagne TransposedConv2DLayer, W (in, out, k, k): the adjoint of `conv` with that W,
    i.e. x_pad[c, s·i + a, s·j + b] += Σ_o y[o, i, j] · w[o, c, k−1−a, k−1−b], then cropped."""
    k = w.shape[-1]
    n, _, h, wd = y.shape
    full = np.zeros((n, w.shape[1], stride * (h - 1) + k, stride * (wd - 1) + k))
    for a in range(k):
        for b in range(k):
            full[:, :, a:a + stride * h:stride, b:b + stride * wd:stride] += np.einsum(
                "bihw,io->bohw", y, w[:, :, k - 1 - a, k - 1 - b])
    return full[:, :, crop:crop + stride * h, crop:crop + stride * wd]


class Reference:
    """The release's networks, forward only, in its own frame (y up) and joint order."""

    def __init__(self, arrays):
        self.p = arrays

    def encode(self, pose):
        w1, b1, wm, bm, wv, bv = self.p["en_params"]
        h = relu(pose @ w1 + b1)
        return h @ wm + bm, h @ wv + bv  # mean, log σ²

    def decode(self, z):
        w1, b1, w2, b2 = self.p["de_params"]
        return leaky(z @ w1 + b1, 0.01) @ w2 + b2

    def align(self, code):
        w, *bn = self.p["align"]
        return batch_norm(code @ w, *bn)

    def generate(self, a):
        p = self.p["gen_params"]
        h = relu(batch_norm(np.tanh(a) @ p[0], *p[1:5])).reshape(-1, C, 4, 4)
        for i in range(4):
            w, *bn = p[5 + 5 * i: 10 + 5 * i]
            h = relu(batch_norm(conv_transpose(h, w), *bn))
        return np.tanh(conv_transpose(h, p[25]) + p[26].reshape(1, -1, 1, 1))

    def _blocks(self, x, arrays, count):
        for i in range(count):
            w, *bn = arrays[5 * i: 5 * i + 5]
            x = leaky(batch_norm(conv(x, w), *bn), 0.2)
        return x

    def branch(self, depth):
        return self._blocks(depth, self.p["dis_params"], 2)

    def real_probability(self, depth):
        p = self.p["dis_params"]
        features = self._blocks(self.branch(depth), p[10:25], 3).reshape(len(depth), -1)
        return 1 / (1 + np.exp(-(features @ p[25] + p[26])))

    def head(self, name, depth):
        p = self.p[name]
        h = self._blocks(self.branch(depth), p, 3).reshape(len(depth), -1)
        return leaky(batch_norm(h @ p[15], *p[16:20]), 0.2) @ p[20] + p[21]


# --- frames: release (y up, dataset order) ↔ synthgen (y down, model layout) --------------


FLIP = np.array([1.0, -1.0, 1.0])


def joint_map(dataset):
    spec = DATASETS[dataset]
    names = LAYOUTS[spec.model_layout].joint_names
    return np.array([names.index(n) for n in LAYOUTS[spec.release_layout].joint_names])


def release_to_model_pose(pose, dataset):
    """(B, J, 3) release frame → synthgen frame, model joint order."""
    out = np.empty_like(pose)
    out[:, joint_map(dataset)] = pose * FLIP
    return out


def code_to_model(code):
    return code * np.concatenate([np.ones(L), FLIP])


def err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


# --- tests ---------------------------------------------------------------------------------


def test_reference_transposed_conv_is_the_adjoint_of_the_reference_conv():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(3, 2, K, K))  # conv: 2 → 3 channels; transposed: 3 → 2
    x, y = rng.normal(size=(1, 2, 16, 16)), rng.normal(size=(1, 3, 8, 8))
    assert conv(x, w).shape == y.shape and conv_transpose(y, w).shape == x.shape
    assert np.isclose((conv(x, w) * y).sum(), (x * conv_transpose(y, w)).sum(), rtol=1e-12)
    # and `conv` is a convolution, not a correlation: a one-hot kernel moves an impulse by k−1−a
    impulse, kernel = np.zeros((1, 1, 16, 16)), np.zeros((1, 1, K, K))
    impulse[0, 0, 8, 8], kernel[0, 0, 0, 0] = 1.0, 1.0
    out = conv(impulse, kernel, stride=1, pad=0)
    assert np.argwhere(out[0, 0] == 1.0).tolist() == [[8 - (K - 1), 8 - (K - 1)]]


@pytest.fixture(scope="module")
def icvl(tmp_path_factory):
    arrays = release_arrays(16)
    directory = write_release(tmp_path_factory.mktemp("release") / "icvl", arrays)
    model = convert_crossing_nets(directory, "icvl")
    ref = Reference({k: [v.astype(np.float32).astype(np.float64) for v in vs] for k, vs in arrays.items()})
    return directory, model, ref


def test_generator_alignment_and_discriminator_match_lasagne(icvl):
    _, model, ref = icvl
    rng = np.random.default_rng(2)
    code = rng.normal(0, 1, (3, CODE))  # synthgen frame
    depth = model.generate_depth(torch.tensor(code, dtype=torch.float32)).numpy()
    expected = ref.generate(ref.align(code_to_model(code)))[:, 0]
    assert depth.shape == (3, 128, 128) and err(depth, expected) < TOL
    assert expected.std() > 0.05  # not a flat image: the test could fail

    x = np.tanh(rng.normal(0, 1, (3, 1, 128, 128)))
    d = model.discriminator
    with torch.no_grad():
        xt = torch.tensor(x, dtype=torch.float32)
        branch = d.branch(xt)
        real = torch.sigmoid(d.trunk(branch)[0]).numpy()
        posterior = d.posterior(branch).numpy()
        metric = d.metric(branch).numpy()
    assert err(branch.numpy(), ref.branch(x)) < TOL
    assert err(real, ref.real_probability(x)[:, 0]) < TOL
    assert err(posterior, code_to_model(ref.head("reco_params", x))) < TOL
    assert err(metric, code_to_model(ref.head("metr_params", x))) < TOL


@pytest.mark.parametrize("dataset", ["icvl", "msra", "nyu"])
def test_pose_vae_and_estimate_match_lasagne_with_the_dataset_layout(dataset, tmp_path):
    spec = DATASETS[dataset]
    j = spec.num_joints
    arrays = release_arrays(j, seed=3)
    model = convert_crossing_nets(write_release(tmp_path, arrays), dataset)
    ref = Reference({k: [v.astype(np.float32).astype(np.float64) for v in vs] for k, vs in arrays.items()})
    assert model.joint_layout == spec.model_layout and model.config.vae.num_joints == j
    root = LAYOUTS[spec.release_layout].root  # the release's centerPtIdx: 0, 0, 32
    assert model.normalisation.root_joint == joint_map(dataset)[root] and model.normalisation.unit_mm == 50

    rng = np.random.default_rng(4)
    release_pose = rng.normal(0, 1, (5, j, 3))  # release frame, 50 mm units
    pose = torch.tensor(release_to_model_pose(release_pose, dataset), dtype=torch.float32)
    mean, log_sigma = model.vae.encode(pose)
    ref_mean, ref_log_var = ref.encode(release_pose.reshape(5, -1))
    assert err(mean.detach(), ref_mean) < TOL and err(log_sigma.detach(), ref_log_var / 2) < TOL

    z = rng.normal(0, 1, (5, L))
    decoded = model.vae.decode(torch.tensor(z, dtype=torch.float32)).detach().numpy()
    assert err(decoded, release_to_model_pose(ref.decode(z).reshape(5, j, 3), dataset)) < TOL

    # encode_pose: (joints − centre) / 50 mm, root subtracted, root offset kept (normTranslation)
    center = np.array([[20.0, -30.0, 420.0]] * 5)
    joints_mm = release_to_model_pose(release_pose, dataset) * 50 + center[:, None]
    latent, offset = model.encode_pose(torch.tensor(joints_mm, dtype=torch.float32),
                                       torch.tensor(center, dtype=torch.float32))
    ref_rel = release_pose - release_pose[:, root:root + 1]
    assert err(latent, ref.encode(ref_rel.reshape(5, -1))[0]) < TOL
    assert err(offset, release_pose[:, root] * FLIP) < TOL

    # estimate: depth → posterior head → [latent, root offset] → decoder → mm, camera frame
    depth = np.tanh(rng.normal(0, 1, (2, 1, 128, 128)))
    code = ref.head("reco_params", depth)
    ref_pose = (ref.decode(code[:, :L]).reshape(2, j, 3) + code[:, None, L:]) * 50  # release frame, mm
    estimated = model.estimate(torch.tensor(depth, dtype=torch.float32), torch.tensor(center[:2], dtype=torch.float32))
    assert err((estimated.numpy() - center[:2, None]) / 50, release_to_model_pose(ref_pose, dataset) / 50) < TOL


def test_converted_checkpoint_loads_bit_identically(icvl, tmp_path):
    _, model, _ = icvl
    model.save_pretrained(tmp_path / "m")
    loaded = load(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["joints"]["layout"] == "icvl" and config["joints"]["count"] == 16
    assert config["architecture"]["vae"]["hidden_dim"] == 40 and config["architecture"]["discriminator"]["leak"] == 0.2
    assert loaded.joint_layout == "icvl" and loaded.checksum == model.checksum
    code = torch.randn(2, CODE, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.generate_depth(code), model.generate_depth(code))
    assert loaded.provenance["dataset"] == "icvl" and set(loaded.provenance["files"]) == set(release_arrays(16))


def test_code_statistics_come_from_the_alignment_batch_norm(tmp_path):
    """BN mean = Wᵀμ, var = diag(Wᵀ Σ W) for codes with mean μ and Σ = [s²·I, 0; 0, C]: the
    recovered prior is μ, s²·I (latent) and C (root block), y flipped, never N(0, I)."""
    arrays = release_arrays(16, seed=5)
    rng = np.random.default_rng(6)
    w = arrays["align"][0]
    mu = rng.normal(0, 0.1, CODE)
    root = rng.normal(0, 0.3, (3, 3))
    sigma = np.zeros((CODE, CODE))
    sigma[:L, :L] = 0.15 ** 2 * np.eye(L)
    sigma[L:, L:] = root @ root.T + 0.01 * np.eye(3)
    arrays["align"][3] = w.T @ mu
    arrays["align"][4] = 1 / np.sqrt(np.diag(w.T @ sigma @ w) + 1e-4)
    latent, root = alignment_code_stats(arrays["align"], _Frame(_joint_map(DATASETS["icvl"]), L))
    np.testing.assert_allclose(latent.mean, mu[:L], atol=1e-6)
    np.testing.assert_allclose(latent.cov, sigma[:L, :L], atol=1e-6)
    np.testing.assert_allclose(root.mean, mu[L:] * FLIP, atol=1e-6)
    np.testing.assert_allclose(root.cov, sigma[L:, L:] * np.outer(FLIP, FLIP), atol=1e-6)
    model = convert_crossing_nets(write_release(tmp_path, arrays), "icvl")
    np.testing.assert_allclose(model.latent.mean, mu[:L], atol=1e-6)  # the converted model's prior
    assert "alignment layer" in model.provenance["statistics"]


def test_root_offset_is_where_the_models_estimator_reads_its_own_hands(icvl):
    """fit_root_offset's fixed point: generating at the fitted mean, the posterior reads it back."""
    _, model, _ = icvl
    latent = model.sample_latents(256, torch.Generator().manual_seed(0))
    mean = torch.tensor(model.root_offset.mean, dtype=torch.float32)
    with torch.inference_mode():
        depth = model.generate_depth(torch.cat([latent, mean.expand(256, 3)], 1))
        read = model.discriminator.posterior(model.discriminator.branch(depth[:, None]))[:, -3:]
    np.testing.assert_allclose(read.mean(0).numpy(), mean.numpy(), atol=0.02 * float(read.std(0).max()) + 1e-3)
    assert "fit_root_offset" in model.provenance["statistics"]


def test_fit_statistics_uses_the_store_poses(icvl, tmp_path):
    from synthgen.data.schema import SampleBatch, StoreMetadata
    from synthgen.data.writer import StoreWriter

    _, model, _ = icvl
    rng = np.random.default_rng(7)
    center = np.tile([0.0, 0.0, 400.0], (64, 1)).astype(np.float32)
    pose = (rng.normal(0, 40, (64, 16, 3)) + center[:, None]).astype(np.float32)
    writer = StoreWriter.create(tmp_path / "s.zarr", 64, StoreMetadata("test", 0, camera="icvl", joint_layout="icvl"))
    writer.write(0, SampleBatch(np.ones((64, 128, 128)), pose, center, joint_layout="icvl"))
    writer.finalize()
    fitted = convert_crossing_nets(icvl[0], "icvl")
    fit_statistics(fitted, tmp_path / "s.zarr")
    latent, offset = model.encode_pose(torch.from_numpy(pose), torch.from_numpy(center))
    np.testing.assert_allclose(fitted.latent.mean, latent.numpy().mean(0), atol=1e-5)
    np.testing.assert_allclose(fitted.root_offset.cov, np.cov(offset.numpy().T), atol=1e-5)
    canonical = convert_crossing_nets(write_release(tmp_path / "msra", release_arrays(21)), "msra")
    with pytest.raises(InputError, match="icvl joints"):
        fit_statistics(canonical, tmp_path / "s.zarr")


def test_conversion_refuses_bad_releases(tmp_path):
    arrays = release_arrays(16)
    good = write_release(tmp_path / "good", arrays)
    with pytest.raises(InputError, match="wrong --dataset"):
        convert_crossing_nets(good, "nyu")  # 16 joints are not NYU's 36
    with pytest.raises(InputError, match="unknown dataset"):
        convert_crossing_nets(good, "kinect")
    missing = write_release(tmp_path / "missing", {k: v for k, v in arrays.items() if k != "metr_params"})
    with pytest.raises(InputError, match="metr_params"):
        convert_crossing_nets(missing, "icvl")
    twice = write_release(tmp_path / "twice", arrays)
    write_release(twice, arrays, prefix="100_")
    with pytest.raises(InputError, match="--prefix"):
        convert_crossing_nets(twice, "icvl")
    assert convert_crossing_nets(twice, "icvl", prefix="100_").joint_layout == "icvl"
    bad = {k: list(v) for k, v in arrays.items()}
    bad["gen_params"][5] = bad["gen_params"][5][:, :, :5, :5]  # a 5×5 deconv kernel
    with pytest.raises(InputError, match=r"arr_5 \(deconv 1 W\)"):
        convert_crossing_nets(write_release(tmp_path / "bad", bad), "icvl")
    extra = {k: list(v) for k, v in arrays.items()}
    extra["align"].append(np.zeros(3))
    with pytest.raises(InputError, match="left over"):
        convert_crossing_nets(write_release(tmp_path / "extra", extra), "icvl")
    (tmp_path / "pickled").mkdir()
    for name in arrays:
        (tmp_path / "pickled" / f"{name}.npz").write_bytes(b"\x80\x04not a zip")
    with pytest.raises(InputError, match="not a numpy .npz"):
        convert_crossing_nets(tmp_path / "pickled", "icvl")
    with pytest.raises(InputError, match="root_joint 16 is not a joint index"):
        convert_crossing_nets(good, "icvl", root_joint=16)


def test_cli_convert_then_sample_walk_and_estimate(icvl, tmp_path):
    runner = CliRunner()
    directory = icvl[0]
    out = tmp_path / "icvl-model"
    result = runner.invoke(app, ["convert", "crossingnet", "--weights", str(directory), "--dataset", "icvl",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "16 joints" in result.stdout and (out / "model.safetensors").is_file()
    again = runner.invoke(app, ["convert", "crossingnet", "--weights", str(directory), "--dataset", "icvl",
                                "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr

    store = tmp_path / "s.zarr"
    result = runner.invoke(app, ["sample", "--model", str(out), "--n", "6", "--out", str(store), "--camera", "icvl"])
    assert result.exit_code == 0, result.output
    from synthgen.data.reader import open_store

    data = open_store(store)
    assert data.joint_layout == "icvl" and data.pose.shape == (6, 16, 3)
    assert data.attrs["joint_names"][0] == "Palm"
    net = load(out)
    batch = data.read(slice(0, 6))
    decoded = net.decode_pose(torch.from_numpy(batch.latent[:, :L]), torch.from_numpy(batch.latent[:, L:]),
                              torch.from_numpy(batch.center))
    np.testing.assert_allclose(batch.pose, decoded.numpy(), atol=1e-4)  # the model's own 16 joints

    result = runner.invoke(app, ["estimate", str(store), "--model", str(out), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert list(metrics["per_joint_mm"])[:2] == ["Palm", "TMCP"] and len(metrics["per_joint_mm"]) == 16

    result = runner.invoke(app, ["walk", "--model", str(out), "--steps", "3", "--out", str(tmp_path / "w.zarr"),
                                 "--video", str(tmp_path / "w.gif")])
    assert result.exit_code == 0, result.output
    assert open_store(tmp_path / "w.zarr").pose.shape == (3, 16, 3) and (tmp_path / "w.gif").is_file()

    # the canonical default model cannot score 16-joint poses: a clear refusal, not wrong numbers
    result = runner.invoke(app, ["estimate", str(store), "--json"])
    assert result.exit_code == 2 and "icvl" in result.stderr
