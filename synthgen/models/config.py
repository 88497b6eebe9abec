"""Configurations: the architecture of Crossing Nets (saved with every checkpoint) and the
training recipe (read from a TOML file).

Architecture defaults are those of Wan et al., "Crossing Nets" (CVPR 2017) and their released
code; the paper is arXiv 1702.03431 (docs/model.md). Every field says why it has its value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from synthgen.conventions import BACKGROUND, CROP_SIZE, CUBE_MM, NUM_JOINTS, WRIST


@dataclass
class VAEConfig:
    """Pose VAE: 3J → hidden → (mean, log σ) of a `latent_dim` code → hidden → 3J."""

    num_joints: int = NUM_JOINTS  # canonical 21-joint layout (HANDS2017 / BigHand order)
    hidden_dim: int = 40  # paper: one 40-unit layer each side, initialised from a 40-d PCA
    latent_dim: int = 20  # paper: 20-d pose latent
    decoder_leak: float = 0.01  # Lasagne's LeakyRectify default, used by the released decoder
    noise_std: float = 0.05  # std of ε in z = μ + σ·ε during training (released code)
    # Extension: "kinematic" decodes through the hand skeleton's forward kinematics
    # (`kinematic.KinematicDecoder`: every decoded pose is a valid hand); "mlp" is the paper's.
    decoder: str = "mlp"
    kinematic_hidden: int = 256  # the kinematic decoder's two hidden layers
    scale_range: tuple[float, float] = (0.7, 1.4)  # the kinematic decoder's hand sizes

    def __post_init__(self) -> None:
        if self.decoder not in ("mlp", "kinematic"):
            raise ValueError(f"vae.decoder must be 'mlp' or 'kinematic', got {self.decoder!r}")
        self.scale_range = tuple(float(s) for s in self.scale_range)
        if self.decoder == "kinematic" and self.num_joints != NUM_JOINTS:
            raise ValueError(f"vae.decoder 'kinematic' decodes the {NUM_JOINTS}-joint hand skeleton, "
                             f"not {self.num_joints} joints")


@dataclass
class GeneratorConfig:
    """Depth generator: tanh(z) → FC → 4×4 map → transposed convs → 1×crop_size²."""

    input_dim: int = 23  # [pose latent 20, root offset 3]
    fc_dim: int = 512  # FC(23→512) reshaped to channels×4×4
    channels: int = 32  # every transposed conv has 32 channels (~160 k parameters in all)
    base_size: int = 4  # spatial size after the FC layer
    num_upsamples: int = 4  # 32→32 transposed convs with BN + ReLU, before the output conv
    kernel_size: int = 6  # k6 s2 p2 doubles the size exactly
    out_bias_init: float = 0.8  # output bias starts near the background so tanh starts bright
    crop_size: int = CROP_SIZE
    # Extension, applied by `generate_depth` only: outputs >= background_snap become exactly
    # the background (+1), as missing depth is in real crops; tanh only approaches +1. 1.0 = off
    # (paper). Real hand pixels above 0.9 (within 12 mm of the cube's back face) are ~1e-5.
    background_snap: float = 1.0
    # Extension: "skeleton" = `generator.SkeletonGenerator` (a pose head draws capsules on a
    # base_size² grid that the transposed convs refine; base_size 32, num_upsamples 1); "paper"
    # = the FC + transposed convs above. The fields below are the skeleton's only.
    arch: str = "paper"
    num_joints: int = NUM_JOINTS  # joints the pose head predicts (the model's joint layout)
    bones: tuple[tuple[int, int], ...] = ()  # capsules (joint pairs); empty: the layout's (`skeleton_bones`)
    skeleton_hidden: int = 256  # pose head's residual MLP 23 → hidden → hidden → 3J; radii 23 → hidden/4 → bones
    decoder_hidden: int = 0  # pose head's copy of the VAE decoder; 0: the VAE's hidden_dim
    decoder_leak: float = 0.01  # as VAEConfig.decoder_leak
    decoder: str = "mlp"  # as VAEConfig.decoder (set from it by the model; "kinematic": decoder_hidden
    # is VAEConfig.kinematic_hidden)
    decoder_scale_range: tuple[float, float] = (0.7, 1.4)  # as VAEConfig.scale_range (set from it)
    # The pose head adds a learned residual to the decoder's joints ("what placement misses").
    # False: G draws exactly the decoded pose, so a sample's label is the hand its depth shows.
    pose_residual: bool = True
    pose_scale: float = 0.0  # pose units (unit_mm) → crop units (cube / 2); 0: from the model's normalisation
    cube_mm: float = 0.0  # the crop cube, to read centres in crop units; 0: from the model's normalisation
    # Extension to the extension: G also takes each crop's centre (mm) and places the joints with
    # the crop camera's exact perspective. The centre sets the direction the hand is seen from
    # (up to ~22° off axis in the baseline's frames); without it G can only guess an average view.
    sees_center: bool = False
    sdf_scale: float = 8.0  # signed distances (crop units, 125 mm) are squashed by tanh(scale·d): 16 mm → 0.76
    radius_init_logit: float = -2.7  # softplus(−2.7) = 0.065 crop units ≈ 8 mm, a finger's radius

    def __post_init__(self) -> None:
        if self.arch not in ("paper", "skeleton"):
            raise ValueError(f"generator.arch must be 'paper' or 'skeleton', got {self.arch!r}")
        self.bones = tuple(tuple(int(j) for j in bone) for bone in self.bones)
        self.decoder_scale_range = tuple(float(s) for s in self.decoder_scale_range)
        if self.sees_center and self.arch != "skeleton":
            raise ValueError("generator.sees_center needs arch = 'skeleton'")
        if self.arch == "paper" and self.fc_dim != self.channels * self.base_size**2:
            raise ValueError(f"fc_dim {self.fc_dim} must equal channels·base_size² = "
                             f"{self.channels * self.base_size ** 2}")
        if self.base_size * 2 ** (self.num_upsamples + 1) != self.crop_size:
            raise ValueError(f"base_size·2^(num_upsamples+1) = {self.base_size * 2 ** (self.num_upsamples + 1)}"
                             f" must equal crop_size {self.crop_size}")


@dataclass
class DiscriminatorConfig:
    """Shared conv trunk with a real/fake output, a posterior head and a metric head."""

    channels: int = 32  # every conv has 32 channels
    num_convs: int = 5  # 128 → 4 in five stride-2 convs
    kernel_size: int = 6
    leak: float = 0.2  # LeakyReLU slope in the conv blocks (DCGAN practice, released code)
    branch_after: int = 2  # both heads branch off the output of the second conv block (32×32)
    head_convs: int = 3  # each head: three more conv blocks (32 → 4)
    posterior_dim: int = 23  # [pose latent 20, root offset 3]
    posterior_hidden: int = 23  # posterior head: FC 512 → hidden (+BN, leaky) → 23; paper 23
    metric_hidden: int = 512  # metric head f(·): FC 512 → 512 → 23
    metric_dim: int = 23  # f(x) lives in the generator's input space, to compare with z1 − z2
    head_leak: float = 0.01  # leaky units after the heads' FC + BN (Lasagne default)
    crop_size: int = CROP_SIZE

    def __post_init__(self) -> None:
        if self.branch_after + self.head_convs != self.num_convs:
            raise ValueError("heads must end at the trunk's resolution: branch_after + head_convs == num_convs")
        if self.crop_size % 2**self.num_convs:
            raise ValueError(f"crop_size {self.crop_size} is not divisible by 2^{self.num_convs}")

    @property
    def feature_dim(self) -> int:
        """Flattened size of the last conv block's output (512 for 32 channels at 4×4)."""
        return self.channels * (self.crop_size // 2**self.num_convs) ** 2


@dataclass
class FlowConfig:
    """Extension: the latent prior's normalising flow (`flow.LatentFlow`); 0 layers = none, the
    prior is the Gaussian fitted to the training latents (`CrossingNets.latent`)."""

    layers: int = 0  # affine coupling layers
    hidden: int = 128  # width of each coupling's two hidden layers

    def __post_init__(self) -> None:
        if self.layers < 0 or self.hidden < 1:
            raise ValueError(f"prior.layers must be >= 0 and prior.hidden >= 1, got {self.layers}, {self.hidden}")


@dataclass
class CrossingNetsConfig:
    """The whole architecture; written to config.json next to the weights."""

    vae: VAEConfig = field(default_factory=VAEConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    prior: FlowConfig = field(default_factory=FlowConfig)

    def __post_init__(self) -> None:
        code = self.vae.latent_dim + 3
        if self.generator.input_dim != code or self.discriminator.posterior_dim != code:
            raise ValueError(f"generator input and posterior output must both be latent_dim + 3 = {code}")
        if self.discriminator.metric_dim != code:
            raise ValueError(f"metric head output must be latent_dim + 3 = {code} (L_smo compares it with z)")
        if self.generator.crop_size != self.discriminator.crop_size:
            raise ValueError("generator and discriminator crop sizes differ")

    @property
    def code_dim(self) -> int:
        """Size of the generator's input: pose latent + 3-d root offset."""
        return self.vae.latent_dim + 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CrossingNetsConfig:
        return _from_dict(cls, d)


@dataclass
class PoseNormalisation:
    """How joints in mm become network targets (paper): (xyz − centre) / unit_mm, then the
    root joint is subtracted and its offset (root − centre) / unit_mm kept separately."""

    unit_mm: float = 50.0
    root_joint: int = WRIST  # the wrist, index 0 of the canonical layout
    cube_mm: float = CUBE_MM  # crop cube the depth was normalised with (informational)
    crop_size: int = CROP_SIZE
    background: float = BACKGROUND


@dataclass
class GaussianStats:
    """Mean and covariance of a training-set quantity, to sample plausible new values: the
    root offsets (3-d, unit_mm units) and the VAE mean latents (whose spread is set by the KL
    weight and the latent noise, not N(0, I))."""

    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]

    @classmethod
    def standard(cls, dim: int) -> GaussianStats:
        return cls(tuple([0.0] * dim), tuple(tuple(float(i == j) for j in range(dim)) for i in range(dim)))

    @classmethod
    def of(cls, samples) -> GaussianStats:
        """Fit to (N, D) samples (N >= 2; a single sample gets identity covariance)."""
        x = np.asarray(samples, dtype=np.float64)
        cov = np.cov(x.T).reshape(x.shape[1], x.shape[1]) if len(x) > 1 else np.eye(x.shape[1])
        return cls(tuple(float(v) for v in x.mean(0)), tuple(tuple(float(v) for v in row) for row in cov))

    @classmethod
    def from_dict(cls, d: dict) -> GaussianStats:
        return cls(tuple(d["mean"]), tuple(tuple(r) for r in d["cov"]))


# --- training recipe -----------------------------------------------------------------------


@dataclass
class DataRecipe:
    stores: list[str] = field(default_factory=list)  # Zarr stores the CLI reads; the library trains on arrays
    val_fraction: float = 0.05  # held-out share of the samples, for eval.json
    labeled_fraction: float = 1.0  # share of the training samples that keep their pose
    split_seed: int = 0  # seeds the held-out and labeled splits (independent of `seed`)
    # Posterior training only: each crop is re-cut around its centre moved by a random offset
    # (direction uniform, length uniform in [0, center_jitter_mm]), so the estimator does not
    # depend on how exactly a crop is centred at inference (joint box, centre of mass, a detector).
    center_jitter_mm: float = 0.0
    center_jitter_fraction: float = 1.0  # share of each batch re-cut; the rest stays centred as stored
    # False: depth stays in the stores and every batch is read through the store reader
    # (synthgen.data.loading.StoreDepth): the same batches and the same model, a few batches of
    # memory instead of all the depth (3.3 GB per 100 k crops), each step slower by its reads.
    in_memory: bool = True


@dataclass
class VAEStage:
    steps: int = 4000
    batch_size: int = 200  # paper
    lr: float = 3e-4  # paper: Adam 3e-4, β1 0.5
    betas: tuple[float, float] = (0.5, 0.999)
    kl_weight: float = 1.0  # paper; smaller trades prior match for reconstruction accuracy
    lr_schedule: str = "constant"  # paper; "cosine" decays lr to lr_min_ratio·lr over the stage
    lr_min_ratio: float = 0.02
    # Extension: "decoder" keeps the encoder (and so the latent space every other network reads)
    # fixed and trains the decoder alone, e.g. a kinematic decoder in place of an init_from
    # model's MLP decoder; "all" is the paper's.
    train: str = "all"


@dataclass
class GANStage:
    steps: int = 1000
    batch_size: int = 100  # paper
    lr: float = 3e-4  # paper: Adam 3e-4, β1 0.5
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass
class JointStage:
    warmup_steps: int = 500  # alignment layer + posterior/metric heads only
    warmup_lr: float = 1e-2  # paper
    steps: int = 3000  # alternating D/G steps
    batch_size: int = 200  # paper
    lr: float = 1e-3  # paper
    betas: tuple[float, float] = (0.5, 0.999)
    lr_schedule: str = "constant"  # "constant" (paper) or "cosine" (decays to lr_min_ratio·lr)
    lr_min_ratio: float = 0.05


#: What each `RefineStage.train` value trains.
REFINE_HALVES = {"both": ("posterior", "generator"), "posterior": ("posterior",), "generator": ("generator",)}


@dataclass
class RefineStage:
    """Extension (steps = 0 is the paper): after joint training, only the supervised halves of
    the joint step: the posterior path (D's first conv blocks + posterior head) with L_pos
    (+ losses.pose_weight · decoded-pose MSE) and Ali + G with L_recons, on labeled pairs.
    A refinement step costs a fraction of a joint step, so on a CPU budget this is where
    pose accuracy and silhouette fidelity are cheapest to buy.

    The two halves never interact (each loss reaches only its own network), so `train` may
    keep one frozen: "posterior" improves estimation while every generated sample stays
    bit-identical; "generator" the reverse."""

    steps: int = 0
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: str = "cosine"
    lr_min_ratio: float = 0.02
    train: str = "both"  # "both", "posterior" (Ali + G frozen) or "generator" (D frozen)


@dataclass
class PriorStage:
    """Extension: after the network stages, fit the latent prior's flow (model.prior.layers > 0)
    to the encoded labeled training poses by maximum likelihood (`flow.fit_latent_flow`)."""

    steps: int = 0
    batch_size: int = 1024
    lr: float = 1e-3


@dataclass
class LossRecipe:
    gan: bool = True  # L_gan: D's real/fake BCE, G's feature matching (off: ablation "no L_gan")
    smo: bool = True  # L_smo distance constraint (off: ablation "no L_smo")
    supervised_only: bool = False  # ablation: no GAN pre-training, no L_gan, no L_smo, no unlabeled data
    mix_size: int = 5  # z̃ is a random convex combination of this many batch latents (paper)
    recons_clip: float = 1.0  # L_recons clips squared errors here (paper: 1; 4 = no clipping)
    pose_weight: float = 0.0  # extension: also penalise the posterior's decoded pose (MSE, 50 mm units)
    recons: str = "l2"  # L_recons' error: "l2" (paper, clipped squares) or "l1" (extension, see losses.recons_loss)
    skeleton_weight: float = 1.0  # skeleton generator only: its pose head's L1 to the true joints (losses.skeleton_loss)

    @property
    def use_gan(self) -> bool:
        return self.gan and not self.supervised_only

    @property
    def use_smo(self) -> bool:
        return self.smo and not self.supervised_only


@dataclass
class RuntimeRecipe:
    precision: str = "fp32"  # "fp32" or "bf16" (CPU autocast; the convolutions run in bf16)
    channels_last: bool = False  # NHWC memory format for the convolutional networks
    threads: int = 0  # torch intra-op threads; 0 leaves torch's default
    log_every: int = 50  # steps per metrics.csv row (losses averaged over them)
    checkpoint_every: int = 1000  # steps between periodic checkpoints (each stage also ends with one)
    recalibrate_bn: bool = False  # extension: re-estimate BN statistics (posterior path, Ali + G) after training
    recalibrate_batches: int = 50


@dataclass
class EvalRecipe:
    max_samples: int = 5000  # held-out frames evaluated (all if fewer)
    batch_size: int = 250


@dataclass
class Recipe:
    """Everything `train` needs besides the data; one TOML file (see recipes/)."""

    name: str = "default"
    out_dir: str = "runs/default"
    seed: int = 0  # seeds batch order, noise and initialisation
    init_from: str = ""  # extension: a model directory whose weights (and latent statistics) the first stage starts from
    data: DataRecipe = field(default_factory=DataRecipe)
    model: CrossingNetsConfig = field(default_factory=CrossingNetsConfig)
    vae: VAEStage = field(default_factory=VAEStage)
    gan: GANStage = field(default_factory=GANStage)
    joint: JointStage = field(default_factory=JointStage)
    refine: RefineStage = field(default_factory=RefineStage)
    prior: PriorStage = field(default_factory=PriorStage)
    losses: LossRecipe = field(default_factory=LossRecipe)
    runtime: RuntimeRecipe = field(default_factory=RuntimeRecipe)
    eval: EvalRecipe = field(default_factory=EvalRecipe)

    def __post_init__(self) -> None:
        d = self.data
        if not 0.0 <= d.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
        if not 0.0 < d.labeled_fraction <= 1.0:
            raise ValueError(f"data.labeled_fraction must be in (0, 1], got {d.labeled_fraction}")
        if self.runtime.precision not in ("fp32", "bf16"):
            raise ValueError(f"runtime.precision must be 'fp32' or 'bf16', got {self.runtime.precision!r}")
        if self.losses.recons not in ("l2", "l1"):
            raise ValueError(f"losses.recons must be 'l2' or 'l1', got {self.losses.recons!r}")
        for name in ("vae", "joint", "refine"):
            schedule = getattr(self, name).lr_schedule
            if schedule not in ("constant", "cosine"):
                raise ValueError(f"{name}.lr_schedule must be 'constant' or 'cosine', got {schedule!r}")
        if self.prior.steps and not self.model.prior.layers:
            raise ValueError("prior.steps fits the latent prior's flow: set model.prior.layers > 0")
        for name in ("vae", "gan", "joint", "refine", "prior"):
            if getattr(self, name).steps < 0:
                raise ValueError(f"{name}.steps must be >= 0")
        if self.refine.train not in REFINE_HALVES:
            raise ValueError(f"refine.train must be one of {', '.join(REFINE_HALVES)}, got {self.refine.train!r}")
        if not 0.0 < d.center_jitter_fraction <= 1.0:
            raise ValueError(f"data.center_jitter_fraction must be in (0, 1], got {d.center_jitter_fraction}")
        if not 0.0 <= d.center_jitter_mm <= 100.0:
            raise ValueError(f"data.center_jitter_mm must be in [0, 100], got {d.center_jitter_mm}")
        if self.vae.train not in ("all", "decoder"):
            raise ValueError(f"vae.train must be 'all' or 'decoder', got {self.vae.train!r}")
        if self.vae.train == "decoder" and self.vae.steps and not self.init_from:
            raise ValueError("vae.train = 'decoder' trains a decoder for an existing latent space: set init_from")
        if d.center_jitter_mm and (self.trained_paths != {"posterior"} or self.vae.steps):
            raise ValueError("data.center_jitter_mm moves the crops the posterior path reads: it needs a recipe whose "
                             "only stage is refine with refine.train = 'posterior'")

    @property
    def trained_paths(self) -> set[str]:
        """The inference paths whose weights some stage with steps changes: "posterior" (D's
        first conv blocks + posterior head), "generator" (Ali + G). The VAE stage changes neither."""
        paths = set()
        if (self.losses.use_gan and self.gan.steps) or self.joint.warmup_steps or self.joint.steps:
            paths |= {"posterior", "generator"}
        if self.refine.steps:
            paths |= set(REFINE_HALVES[self.refine.train])
        return paths

    @property
    def total_steps(self) -> int:
        """Training steps over all stages (GAN pre-training is skipped without L_gan)."""
        gan = self.gan.steps if self.losses.use_gan else 0
        return self.vae.steps + gan + self.joint.warmup_steps + self.joint.steps + self.refine.steps

    @classmethod
    def from_toml(cls, path: str | Path) -> Recipe:
        path = Path(path)
        with path.open("rb") as f:
            raw = tomllib.load(f)
        try:
            return _from_dict(cls, raw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_dict(cls, d: dict) -> Recipe:
        return _from_dict(cls, d)

    def to_dict(self) -> dict:
        return asdict(self)


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Build a (nested) dataclass from a dict, rejecting unknown keys by name."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
    kwargs = {}
    for name, value in d.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else known[name].default
        if is_dataclass(default) and isinstance(value, dict):
            kwargs[name] = _from_dict(type(default), value)
        elif isinstance(default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)
