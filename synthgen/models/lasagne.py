"""Convert the Crossing Nets authors' Lasagne release (.npz parameter files) into a synthgen model.

The release (Theano/Lasagne; docs/real-data.md) saves one .npz per
sub-network, arrays arr_0..arr_N in `lasagne.layers.get_all_params` order:

    en_params    W (3J, H), b, W_mu (H, L), b_mu, W_logvar (H, L), b_logvar
    de_params    W (L, H), b, W (H, 3J), b
    align        W (L+3, L+3), BN β, γ, mean, inv_std
    gen_params   W (L+3, 512), BN ×4; 4× [W (32, 32, 6, 6), BN ×4]; W (32, 1, 6, 6), b (1,)
    dis_params   5× [W (32, in, 6, 6), BN ×4]; W (512, 1), b (1,)
    reco_params  3× [W (32, 32, 6, 6), BN ×4]; W (512, L+3), BN ×4; W (L+3, L+3), b
    metr_params  3× [W (32, 32, 6, 6), BN ×4]; W (512, 512), BN ×4; W (512, L+3), b

What the conversion has to respect (Lasagne semantics → PyTorch):

* dense W is (in, out): PyTorch's Linear weight is its transpose;
* BN computes (x − mean)·inv_std·γ + β: running_var = 1/inv_std² − ε of the PyTorch layer;
* Conv2DLayer (flip_filters=True) is a true convolution, PyTorch's Conv2d a correlation: the
  kernel is flipped in both spatial axes;
* TransposedConv2DLayer (flip_filters=False) is the gradient of a true convolution with
  W (in, out, k, k); PyTorch's ConvTranspose2d with the same layout is the gradient of a
  correlation: again the kernel is flipped;
* the encoder's second head is log σ² (its KL term is ½(μ² + e^h − h − 1), its sampler
  σ = e^{h/2}); synthgen's is log σ, so that layer is halved;
* nonlinearities: encoder ReLU, decoder leaky 0.01 (`leaky_rectify`), discriminator and both
  heads leaky 0.2, generator ReLU and tanh output; the real/fake sigmoid is left to the loss.

Coordinates and joints. The release works in x right, **y up**, z forward (its `Camera.to3D`
flips v; its MSRA loader flips only z). synthgen's camera has y down, so every pose-space
layer (the encoder's input, the decoder's output, the root offset in the 23-d code) is
converted by negating y: the converted networks take and give synthgen-frame poses. MSRA's
21 joints are a permutation of synthgen's canonical joints, so an MSRA model is permuted into
the canonical order and works with every command unchanged; ICVL (16) and NYU (36) models
keep their dataset's layout (`CrossingNets.joint_layout`, conventions.LAYOUTS).
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthgen.conventions import LAYOUTS, RELEASE_INPUT
from synthgen.errors import InputError, OutputExistsError
from synthgen.models.config import (
    CrossingNetsConfig,
    DiscriminatorConfig,
    GaussianStats,
    GeneratorConfig,
    PoseNormalisation,
    VAEConfig,
)
from synthgen.models.crossing_nets import CrossingNets

#: The release's parameter files, in the order they are read.
RELEASE_FILES = ("en_params", "de_params", "align", "gen_params", "dis_params", "reco_params", "metr_params")
#: Lasagne's BatchNormLayer default ε: the release's inv_std = 1 / sqrt(var + ε).
LASAGNE_BN_EPS = 1e-4
#: Release frame → synthgen camera frame: y up → y down.
RELEASE_TO_CAMERA = np.array([1.0, -1.0, 1.0])
#: Where a converted model's sampling prior comes from, unless fitted to poses.
PRIOR_FROM_RELEASE = ("latent prior N(mu, s^2 I) fitted to the alignment layer's BN statistics of the training "
                      "codes (lasagne.alignment_code_stats)")
ROOT_FROM_MODEL = ("root offset: where the model's estimator reads the root in the hands its generator draws from "
                   "the latent prior (lasagne.fit_root_offset)")
#: Latent samples and rounds of `fit_root_offset`'s fixed point (~1 mm from 256 × 8 on the ICVL release).
ROOT_FIT_SAMPLES, ROOT_FIT_ROUNDS = 128, 6
#: Leaky slopes of the release: `leaky_rectify` (decoder) and `LeakyRectify(0.2)` (D and heads).
DECODER_LEAK, DISCRIMINATOR_LEAK = 0.01, 0.2


@dataclass(frozen=True)
class ReleaseDataset:
    """How one dataset's release is laid out and what it becomes."""

    release_layout: str  # joint order of the release's pose vectors (conventions.LAYOUTS)
    model_layout: str  # joint order of the converted model

    @property
    def num_joints(self) -> int:
        return LAYOUTS[self.release_layout].num_joints


DATASETS = {
    "icvl": ReleaseDataset("icvl", "icvl"),
    "msra": ReleaseDataset("msra", "hands2017"),  # a permutation of the canonical joints
    "nyu": ReleaseDataset("nyu36", "nyu36"),
}


# --- reading the release -------------------------------------------------------------------


def find_release_files(directory: str | Path, prefix: str | None = None) -> dict[str, Path]:
    """{sub-network: path} of `<name>.npz` or `<prefix>..._<name>.npz` in `directory` (the release
    saves `path + '_gen_params.npz'`); InputError if any is missing or ambiguous (e.g.
    `-1_gen_params.npz` next to `100_gen_params.npz`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory", option="weights")
    files = [p for p in directory.iterdir() if p.is_file() and p.name.startswith(prefix or "")]
    found, missing = {}, []
    for name in RELEASE_FILES:
        matches = sorted(p for p in files if p.name == f"{name}.npz" or p.name.endswith(f"_{name}.npz"))
        if not matches:
            missing.append(f"{prefix or ''}*_{name}.npz")
        elif len(matches) > 1:
            raise InputError(f"{directory}: several files end in {name}.npz ({', '.join(p.name for p in matches)}); "
                             f"pass --prefix to pick one set")
        else:
            found[name] = matches[0]
    if missing:
        raise InputError(f"{directory}: missing the release file(s) {', '.join(missing)}")
    return found


def read_npz(path: Path) -> list[np.ndarray]:
    """arr_0..arr_{n-1} of a numpy .npz as float64, in order; never unpickles."""
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a numpy .npz archive")
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            expected = [f"arr_{i}" for i in range(len(keys))]
            if keys != set(expected):
                raise InputError(f"{path}: expected arrays arr_0..arr_{len(keys) - 1} (np.savez of a parameter "
                                 f"list), found {sorted(keys)[:4]}")
            arrays = [np.asarray(archive[k]) for k in expected]
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: not a readable numpy .npz file ({error})") from None
    for i, a in enumerate(arrays):
        if not np.issubdtype(a.dtype, np.floating) or not np.isfinite(a).all():
            raise InputError(f"{path}: arr_{i} must hold finite floats, got dtype {a.dtype}")
    return [a.astype(np.float64) for a in arrays]


class _Arrays:
    """One release file's arrays, consumed in order with their shapes checked."""

    def __init__(self, path: Path):
        self.path, self.arrays, self.next = path, read_npz(path), 0

    def take(self, shape: tuple[int, ...], what: str) -> np.ndarray:
        if self.next >= len(self.arrays):
            raise InputError(f"{self.path}: has {len(self.arrays)} arrays; arr_{self.next} ({what}, shape {shape}) "
                             f"is missing")
        a = self.arrays[self.next]
        if a.shape != tuple(shape):
            raise InputError(f"{self.path}: arr_{self.next} ({what}) is {a.shape}, the architecture needs "
                             f"{tuple(shape)} (wrong --dataset, or a different network)")
        self.next += 1
        return a

    def width(self, index: int, ndim: int) -> tuple[int, ...]:
        """Shape of arr_`index`, which must have `ndim` axes (read before the layers are built)."""
        if index >= len(self.arrays):
            raise InputError(f"{self.path}: has {len(self.arrays)} arrays, needs at least {index + 1}")
        shape = self.arrays[index].shape
        if len(shape) != ndim:
            raise InputError(f"{self.path}: arr_{index} is {shape}, expected a {ndim}-d array (a dense layer's W)")
        return shape

    def done(self) -> None:
        if self.next != len(self.arrays):
            raise InputError(f"{self.path}: {len(self.arrays) - self.next} array(s) left over after arr_{self.next - 1}"
                             f" (a different network than the release's)")


# --- the conversion ------------------------------------------------------------------------


def convert_crossing_nets(directory: str | Path, dataset: str, *, prefix: str | None = None,
                          root_joint: int | None = None, poses: np.ndarray | None = None,
                          poses_source: str = "poses") -> CrossingNets:
    """The release's weights in `directory` → a CrossingNets in eval mode (synthgen's frame).

    dataset: "icvl", "msra" or "nyu" (fixes the joint layout and the pose normalisation's root:
    the release's `centerPtIdx`, overridable by `root_joint`, an index in the release's order).
    The latent prior is never N(0, I) (the release's encoded poses have a per-dimension std of
    ~0.1): the Gaussian of `poses` (N, J, 3) mm in the model's layout (formats.labels) when
    given, else the one recovered from the alignment layer's BN statistics
    (`alignment_code_stats`). The root-offset Gaussian is then fitted with the model's own
    networks (`fit_root_offset`); `fit_statistics` replaces both with those of a store's poses.
    The model reads the release's input convention (conventions.RELEASE_INPUT: front-aligned
    depth, window crop).
    """
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})")
    spec = DATASETS[dataset]
    files = find_release_files(directory, prefix)
    arrays = {name: _Arrays(path) for name, path in files.items()}

    # Widths come from the release's own arrays; everything else is the paper's architecture.
    pose_dim, hidden = arrays["en_params"].width(0, 2)
    if pose_dim != 3 * spec.num_joints:
        raise InputError(f"{files['en_params']}: arr_0 is {(pose_dim, hidden)}, but {dataset}'s release encodes "
                         f"{spec.num_joints} joints ({3 * spec.num_joints} × H): wrong --dataset?")
    latent_dim = arrays["en_params"].width(2, 2)[1]
    metric_hidden = arrays["metr_params"].width(15, 2)[1]
    config = CrossingNetsConfig(
        vae=VAEConfig(num_joints=spec.num_joints, hidden_dim=hidden, latent_dim=latent_dim, decoder_leak=DECODER_LEAK),
        generator=GeneratorConfig(input_dim=latent_dim + 3),
        discriminator=DiscriminatorConfig(leak=DISCRIMINATOR_LEAK, posterior_dim=latent_dim + 3,
                                          posterior_hidden=latent_dim + 3, metric_hidden=metric_hidden,
                                          metric_dim=latent_dim + 3, head_leak=DISCRIMINATOR_LEAK),
    )
    release_root = LAYOUTS[spec.release_layout].root if root_joint is None else int(root_joint)
    if not 0 <= release_root < spec.num_joints:
        raise InputError(f"{release_root} is not a joint index of {dataset} (0..{spec.num_joints - 1})", option="root_joint")
    joint_map = _joint_map(spec)
    model = CrossingNets(config, PoseNormalisation(root_joint=int(joint_map[release_root])),
                         joint_layout=spec.model_layout)
    frame = _Frame(joint_map, latent_dim)
    with torch.no_grad():
        _load_vae(model, arrays["en_params"], arrays["de_params"], frame)
        _load_alignment(model.align, arrays["align"], frame)
        _load_generator(model, arrays["gen_params"])
        _load_discriminator(model, arrays["dis_params"])
        _load_head(model.discriminator.posterior, arrays["reco_params"], frame)
        _load_head(model.discriminator.metric, arrays["metr_params"], frame)
    for a in arrays.values():
        a.done()

    model.latent, model.root_offset = alignment_code_stats(arrays["align"].arrays, frame)
    model.input_convention = RELEASE_INPUT[dataset]
    model.provenance = {
        "converted_from": "Crossing Nets release (Theano/Lasagne .npz)",
        "dataset": dataset,
        "release_layout": spec.release_layout,
        "release_root_joint": release_root,
        "release_frame": "x right, y up, z forward (converted to y down)",
        "files": {name: {"name": path.name, "sha256": _sha256(path)} for name, path in files.items()},
        "statistics": PRIOR_FROM_RELEASE,
    }
    model.eval()
    if poses is not None:
        fit_pose_statistics(model, poses, poses_source)
    fit_root_offset(model)
    model.provenance["statistics"] += "; " + ROOT_FROM_MODEL
    return model


def _joint_map(spec: ReleaseDataset) -> np.ndarray:
    """(J,) index in the model's layout of each release joint."""
    model_names = LAYOUTS[spec.model_layout].joint_names
    return np.array([model_names.index(n) for n in LAYOUTS[spec.release_layout].joint_names])


class _Frame:
    """The release's pose and code spaces in terms of synthgen's (y negated, joints permuted)."""

    def __init__(self, joint_map: np.ndarray, latent_dim: int):
        j = len(joint_map)
        #: model flat index (joint·3 + axis) of every release flat index
        self.pose_index = (3 * joint_map[:, None] + np.arange(3)).ravel()
        self.pose_sign = np.tile(RELEASE_TO_CAMERA, j)
        self.code_sign = np.concatenate([np.ones(latent_dim), RELEASE_TO_CAMERA])

    def pose_rows(self, w: np.ndarray) -> np.ndarray:
        """Dense W (3J, out) reading a release pose → the same layer reading a synthgen pose."""
        out = np.empty_like(w)
        out[self.pose_index] = w * self.pose_sign[:, None]
        return out

    def pose_columns(self, w: np.ndarray) -> np.ndarray:
        """Dense W (in, 3J) or bias (3J,) writing a release pose → writing a synthgen pose."""
        out = np.empty_like(w)
        out[..., self.pose_index] = w * self.pose_sign
        return out


def _set(param: torch.Tensor, value: np.ndarray) -> None:
    param.copy_(torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).reshape(param.shape))


def _dense(linear: nn.Linear, w: np.ndarray, b: np.ndarray | None) -> None:
    _set(linear.weight, w.T)  # Lasagne (in, out) → PyTorch (out, in)
    if b is not None:
        _set(linear.bias, b)


def _batch_norm(bn: nn.BatchNorm1d | nn.BatchNorm2d, a: _Arrays, what: str) -> None:
    n = bn.num_features
    beta, gamma = a.take((n,), f"{what} BN beta"), a.take((n,), f"{what} BN gamma")
    mean, inv_std = a.take((n,), f"{what} BN mean"), a.take((n,), f"{what} BN inv_std")
    var = 1.0 / np.square(inv_std) - bn.eps  # PyTorch divides by sqrt(var + eps)
    if (inv_std <= 0).any() or (var <= 0).any():
        raise InputError(f"{a.path}: {what} BN inv_std must lie in (0, {bn.eps ** -0.5:.0f}); got "
                         f"[{inv_std.min():.3g}, {inv_std.max():.3g}]")
    _set(bn.weight, gamma)
    _set(bn.bias, beta)
    _set(bn.running_mean, mean)
    _set(bn.running_var, var)


def _flipped(w: np.ndarray) -> np.ndarray:
    """Theano convolves (flips the kernel), PyTorch correlates: flip both spatial axes."""
    return w[..., ::-1, ::-1]


def _conv_block(block: nn.Sequential, a: _Arrays, what: str) -> None:
    conv, bn = block[0], block[1]
    _set(conv.weight, _flipped(a.take(tuple(conv.weight.shape), f"{what} W")))  # both (out, in, k, k)
    _batch_norm(bn, a, what)


def _load_vae(model: CrossingNets, en: _Arrays, de: _Arrays, frame: _Frame) -> None:
    vae, c = model.vae, model.config.vae
    d, h, z = 3 * c.num_joints, c.hidden_dim, c.latent_dim
    _dense(vae.enc_fc, frame.pose_rows(en.take((d, h), "encoder W")), en.take((h,), "encoder b"))
    _dense(vae.enc_mean, en.take((h, z), "mean W"), en.take((z,), "mean b"))
    # log σ² → log σ: halve the layer.
    _dense(vae.enc_log_sigma, 0.5 * en.take((h, z), "log-variance W"), 0.5 * en.take((z,), "log-variance b"))
    _dense(vae.dec_fc, de.take((z, h), "decoder W"), de.take((h,), "decoder b"))
    _dense(vae.dec_out, frame.pose_columns(de.take((h, d), "decoder output W")),
           frame.pose_columns(de.take((d,), "decoder output b")))


def _load_alignment(align: nn.Module, a: _Arrays, frame: _Frame) -> None:
    n = align.fc.in_features
    _dense(align.fc, a.take((n, n), "alignment W") * frame.code_sign[:, None], None)
    _batch_norm(align.bn, a, "alignment")


def _load_generator(model: CrossingNets, a: _Arrays) -> None:
    g, c = model.generator, model.config.generator
    _dense(g.fc, a.take((c.input_dim, c.fc_dim), "FC W"), None)
    _batch_norm(g.fc_bn, a, "FC")
    for i, up in enumerate(g.ups):
        deconv = up[0]
        _set(deconv.weight, _flipped(a.take(tuple(deconv.weight.shape), f"deconv {i + 1} W")))  # both (in, out, k, k)
        _batch_norm(up[1], a, f"deconv {i + 1}")
    _set(g.out.weight, _flipped(a.take(tuple(g.out.weight.shape), "output deconv W")))
    _set(g.out.bias, a.take((1,), "output deconv b"))


def _load_discriminator(model: CrossingNets, a: _Arrays) -> None:
    d = model.discriminator
    for i, block in enumerate(d.convs):
        _conv_block(block, a, f"conv {i + 1}")
    _dense(d.real_fake, a.take((d.config.feature_dim, 1), "real/fake W"), a.take((1,), "real/fake b"))


def _load_head(head: nn.Module, a: _Arrays, frame: _Frame) -> None:
    for i, block in enumerate(head.convs):
        _conv_block(block, a, f"head conv {i + 1}")
    hidden, out = head.fc.out_features, head.out.out_features
    _dense(head.fc, a.take((head.fc.in_features, hidden), "head FC W"), None)
    _batch_norm(head.bn, a, "head FC")
    # The head's output lives in the code space [latent, root offset]: its root offset gets y down.
    w, b = a.take((hidden, out), "head output W"), a.take((out,), "head output b")
    _dense(head.out, w * frame.code_sign, b * frame.code_sign)


def alignment_code_stats(align_arrays: list[np.ndarray], frame: _Frame) -> tuple[GaussianStats, GaussianStats]:
    """Gaussians of the training codes' pose latent and root offset, recovered from the
    alignment layer's BN statistics, in synthgen's frame.

    BN saw a = Wᵀ·code over the training codes: its mean is Wᵀ·μ and its variance
    diag(Wᵀ Σ W). μ is solved for directly (W is well conditioned). Σ has more unknowns than BN
    keeps variances, and inverting W as if BN's outputs were uncorrelated gives latent stds of
    7–15 where the release's encoded poses have ~0.1; so Σ is fitted by least squares in the
    family the VAE suggests: an isotropic latent s²·I and a full 3×3 root-offset block (7
    unknowns, 23 variances). Measured on the ICVL release: s = 0.20 (encoded real test poses:
    0.06–0.14 per dimension); decoded hands have a median bone of 26.4 mm (real: 28.4 mm).
    """
    w, mean, inv_std = align_arrays[0], align_arrays[3], align_arrays[4]
    var = np.maximum(1.0 / np.square(inv_std) - LASAGNE_BN_EPS, 0.0)
    latent = w.shape[0] - 3
    mu = np.linalg.lstsq(w.T, mean, rcond=None)[0] * frame.code_sign
    w_latent, w_root = w[:latent].T, w[latent:].T  # (outputs, L), (outputs, 3)
    pairs = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
    design = np.column_stack([np.square(w_latent).sum(1)]
                             + [w_root[:, i] * w_root[:, j] * (1 if i == j else 2) for i, j in pairs])
    solution = np.linalg.lstsq(design, var, rcond=None)[0]
    root = np.zeros((3, 3))
    for (i, j), value in zip(pairs, solution[1:]):
        root[i, j] = root[j, i] = value
    values, vectors = np.linalg.eigh(root)
    root = (vectors * np.maximum(values, 1e-6)) @ vectors.T  # nearest positive definite
    sign = frame.code_sign[latent:]
    root *= np.outer(sign, sign)
    latent_cov = max(float(solution[0]), 1e-6) * np.eye(latent)
    return (GaussianStats(tuple(float(v) for v in mu[:latent]), tuple(tuple(float(v) for v in r) for r in latent_cov)),
            GaussianStats(tuple(float(v) for v in mu[latent:]), tuple(tuple(float(v) for v in r) for r in root)))


def fit_statistics(model: CrossingNets, store_path: str | Path, batch_size: int = 1024) -> None:
    """Replace the model's latent and root-offset Gaussians with those of a store's poses (the
    statistics `sample` draws from), as training does; the store must hold the model's layout."""
    from synthgen.data.reader import open_store

    store = open_store(store_path)
    if store.joint_layout != model.joint_layout:
        raise InputError(f"{store_path}: the store holds {store.joint_layout} joints, the model "
                         f"{model.joint_layout}", option="stats")
    if len(store) < 2:
        raise InputError(f"{store_path}: needs at least 2 samples to fit a covariance", option="stats")
    latents, offsets = [], []
    for start in range(0, len(store), batch_size):
        batch = store.read(slice(start, min(start + batch_size, len(store))))
        latent, offset = model.encode_pose(torch.from_numpy(batch.pose), torch.from_numpy(batch.center))
        latents.append(latent.numpy())
        offsets.append(offset.numpy())
    model.latent = GaussianStats.of(np.concatenate(latents))
    model.root_offset = GaussianStats.of(np.concatenate(offsets))
    model.provenance["statistics"] = f"latent and root offset fitted to {len(store)} poses of {Path(store_path).name}"


def fit_pose_statistics(model: CrossingNets, poses: np.ndarray, source: str, batch_size: int = 4096) -> None:
    """Replace the model's latent prior with the Gaussian of the VAE means of `poses` (N, J, 3) mm,
    camera frame, the model's joint layout (formats.labels.read_pose_labels). The latent is
    root-relative, so no crop centre is needed; the root-offset Gaussian stays as it was."""
    poses = np.asarray(poses, np.float32)
    if poses.ndim != 3 or poses.shape[1:] != (model.config.vae.num_joints, 3):
        raise InputError(f"{source}: poses are {poses.shape[1:]}, the model encodes "
                         f"({model.config.vae.num_joints}, 3)", option="poses")
    latents = []
    for start in range(0, len(poses), batch_size):
        batch = torch.from_numpy(poses[start:start + batch_size])
        latents.append(model.encode_pose(batch, batch.mean(dim=1))[0].numpy())
    model.latent = GaussianStats.of(np.concatenate(latents))
    model.provenance["statistics"] = f"latent prior: the Gaussian of {len(poses)} encoded poses of {source}"


def fit_root_offset(model: CrossingNets, samples: int | None = None, rounds: int | None = None,
                    seed: int = 0) -> None:
    """Set the root-offset Gaussian to where the model's own estimator reads the root joint in
    the hands its generator draws from the latent prior.

    The release centres its crops on the hand's centre of mass (NYU: a given palm centre), so
    the root offset that goes with a pose is not the joint-box one synthgen's models use, and
    the alignment BN's estimate of it is loose. Fixed point: draw latents, generate at offset r,
    read the offsets back through the posterior path, set r to their mean; repeat. The
    Gaussian of the last read-back offsets is kept. Measured on the ICVL release with a prior
    fitted to the real test poses: `sample`'s labels then lie 14.5 mm (mean per joint) from the
    model's own estimate of the generated crops (benchmarks/real_frames.py), against 23.3 mm with
    the joint-box root rule.
    """
    samples, rounds = samples or ROOT_FIT_SAMPLES, rounds or ROOT_FIT_ROUNDS
    generator = torch.Generator().manual_seed(seed)
    latent = model.sample_latents(samples, generator)
    root = torch.zeros(3)
    with torch.inference_mode():
        for _ in range(rounds):
            depth = model.generate_depth(torch.cat([latent, root.expand(samples, 3)], 1))
            read = model.discriminator.posterior(model.discriminator.branch(depth[:, None]))[:, -3:]
            root = read.mean(0)
    model.root_offset = GaussianStats.of(read.double().numpy())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_converted(model: CrossingNets, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write the checkpoint to `<out>.incomplete` and rename it into place, so a failed
    conversion never leaves a half model; an existing `out` is replaced only with `overwrite`."""
    import shutil

    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    working = out.with_name(out.name + ".incomplete")
    if working.exists():
        shutil.rmtree(working)
    model.save_pretrained(working)
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    working.rename(out)
    return out
