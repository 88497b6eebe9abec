"""Training Crossing Nets: one readable loop over the paper's stages.

1. vae     pose VAE alone (KL + 0.5·SSE).
2. gan     GAN pre-training on depth with uniform(−1, 1) generator inputs (skipped when
           supervised only).
3. warmup  VAE frozen: alignment layer (L_recons) + posterior / metric heads (L_pos + L_smo).
4. joint   VAE frozen: alternating D (L_gan + L_pos + L_smo) and G (L_gan(fm) + L_recons + L_smo).
5. refine  extension (0 steps in the paper's schedule): the joint step's supervised halves
           alone, D's posterior path with L_pos and Ali + G with L_recons (or one of them).

Batches and noise of a step depend only on (seed, stage, step), so `resume=True` from any
checkpoint reproduces the uninterrupted run's losses. Outputs under out_dir: metrics.csv,
checkpoints/step-NNNNNNN/ (model + optimizer state), model/ (final), eval.json, eval.png.
"""

from __future__ import annotations

import csv
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

import synthgen
from synthgen.conventions import LAYOUTS, SYNTHGEN_INPUT, InputConvention
from synthgen.data.crops import recenter_crops
from synthgen.errors import InputError
from synthgen.models import losses as L
from synthgen.models.checkpoint import CheckpointError, load, load_training_state, save_model, save_training_state
from synthgen.models.config import REFINE_HALVES, GaussianStats, PoseNormalisation, Recipe
from synthgen.models.crossing_nets import CrossingNets
from synthgen.models.evaluate import evaluate, write_report
from synthgen.models.flow import fit_latent_flow, gaussian_factor
from synthgen.models.generator import SkeletonGenerator

STAGES = ("vae", "gan", "warmup", "joint", "refine")
LOSS_COLUMNS = ("vae", "kl", "sse", "d_gan", "g_fm", "recons", "skeleton", "pos", "pose", "smo_d", "smo_g")
CSV_COLUMNS = ("step", "stage", "stage_step", *LOSS_COLUMNS, "lr", "samples_per_s")


@dataclass
class TrainingData:
    """Training arrays (any float dtype for depth; cast per batch). Depth may be any (N, S, S)
    array-like that takes sorted index arrays and slices: a numpy array, or the stores
    themselves (synthgen.data.loading.StoreDepth).

    depth (N, S, S) normalised to [-1, 1], background +1; pose (N, J, 3) mm camera
    coordinates in `joint_layout` (a key of conventions.LAYOUTS, which the trained model keeps);
    center (N, 3) mm crop centres; data_digest identifies the source store.
    """

    depth: np.ndarray
    pose: np.ndarray
    center: np.ndarray
    data_digest: str | None = None
    joint_layout: str = "hands2017"
    input_convention: InputConvention = SYNTHGEN_INPUT  # how the crops were made; the trained model keeps it

    def __post_init__(self) -> None:
        n = len(self.depth)
        if self.depth.ndim != 3 or self.depth.shape[1] != self.depth.shape[2]:
            raise ValueError(f"depth must be (N, S, S), got {self.depth.shape}")
        if self.joint_layout not in LAYOUTS:
            raise ValueError(f"unknown joint layout {self.joint_layout!r} (known: {', '.join(LAYOUTS)})")
        joints = LAYOUTS[self.joint_layout].num_joints
        if self.pose.shape != (n, joints, 3):
            raise ValueError(f"pose must be (N={n}, {joints}, 3), joint layout {self.joint_layout}; "
                             f"got {self.pose.shape}")
        if self.center.shape != (n, 3):
            raise ValueError(f"center must be (N={n}, 3), got {self.center.shape}")

    def __len__(self) -> int:
        return len(self.depth)


@dataclass
class Split:
    """Sample indices: held-out `val`, training `train`, and its `labeled` subset (sorted)."""

    train: np.ndarray
    labeled: np.ndarray
    val: np.ndarray


def split_indices(n: int, val_fraction: float, labeled_fraction: float, seed: int) -> Split:
    rng = np.random.default_rng([seed, 0x5EED])
    perm = rng.permutation(n)
    n_val = int(round(n * val_fraction))
    train = perm[n_val:]
    n_lab = max(1, int(round(len(train) * labeled_fraction)))
    labeled = rng.permutation(train)[:n_lab]
    return Split(np.sort(train), np.sort(labeled), np.sort(perm[:n_val]))


class EpochSampler:
    """Batch `step` of a shuffled pass over `pool`; a pure function of (seed, stream, step)."""

    def __init__(self, pool: np.ndarray, batch_size: int, seed: int, stream: int):
        self.pool, self.batch_size, self.seed, self.stream = pool, batch_size, seed, stream
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, self.stream, epoch]).permutation(len(self.pool))}
        return self._perms[epoch]

    def __call__(self, step: int) -> np.ndarray:
        n = len(self.pool)
        pos = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        return np.concatenate([self.pool[self._perm(e)[pos[pos // n == e] % n]] for e in np.unique(pos // n)])


def step_generator(seed: int, stage: int, step: int) -> torch.Generator:
    """The torch RNG of one step: noise and mixtures depend only on (seed, stage, step)."""
    s = np.random.SeedSequence([seed, stage, step]).generate_state(2, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(s) & (2**63 - 1))


def _set_trainable(params, flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def _adam(params, lr: float, betas) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


class Trainer:
    """Holds the model, data and recipe; one `*_step` method per stage."""

    def __init__(self, recipe: Recipe, data: TrainingData, model: CrossingNets, split: Split):
        self.r, self.data, self.model, self.split = recipe, data, model, split
        lab = torch.from_numpy(np.asarray(data.pose[split.labeled], np.float32))
        cen = torch.from_numpy(np.asarray(data.center[split.labeled], np.float32))
        self.rel, self.offset = model.normalize_pose(lab, cen)  # (N_l, J, 3), (N_l, 3), 50 mm units
        self.centers = cen  # (N_l, 3) mm: G's input too when it sees the crop centre
        # The skeleton generator's pose head learns where the labeled joints lie in their crops.
        self.crop_joints = model.crop_coordinates(lab.double(), cen.double()).float() \
            if model.config.generator.arch == "skeleton" else None
        self.codes: torch.Tensor | None = None  # (N_l, 23) [VAE mean, root offset], after stage 1
        self.memory_format = torch.channels_last if recipe.runtime.channels_last else torch.contiguous_format
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if recipe.runtime.precision == "bf16" \
            else nullcontext

    # --- batches -----------------------------------------------------------------------------

    def depth_batch(self, idx: np.ndarray) -> torch.Tensor:
        """(B, 1, S, S) float32 depth of dataset rows `idx`."""
        order = np.argsort(idx)  # sorted reads are kinder to memory-mapped arrays
        d = np.empty((len(idx), *self.data.depth.shape[1:]), np.float32)
        d[order] = self.data.depth[idx[order]]
        return torch.from_numpy(d)[:, None].contiguous(memory_format=self.memory_format)

    def recentred(self, idx: np.ndarray, x: torch.Tensor, z: torch.Tensor, gen: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Crops `x` of rows `idx` re-cut around centres moved by random offsets (data.center_jitter_mm,
        on a data.center_jitter_fraction share of the batch; the other rows are re-cut in place,
        which changes their depth by float rounding only) and their codes `z` with the root
        offsets moved to match; the latent part is unchanged."""
        n, d = len(idx), self.r.data
        direction = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        direction /= direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
        length = d.center_jitter_mm * torch.rand(n, 1, generator=gen, dtype=torch.float64)
        if d.center_jitter_fraction < 1.0:  # the first rows of the (shuffled) batch move, the others stay
            length[round(n * d.center_jitter_fraction):] = 0.0
        shift = direction * length
        center = np.asarray(self.data.center[idx], np.float64)
        depth = recenter_crops(x[:, 0].float().numpy(), center, center + shift.numpy(),
                               self.model.normalisation.cube_mm)
        z = z.clone()
        z[:, -3:] -= (shift / self.model.normalisation.unit_mm).float()
        return torch.from_numpy(depth)[:, None].contiguous(memory_format=self.memory_format), z

    def labeled_rows(self, idx: np.ndarray) -> torch.Tensor:
        """Dataset rows (all labeled) → rows of the labeled arrays (`split.labeled` is sorted)."""
        return torch.from_numpy(np.searchsorted(self.split.labeled, idx))

    def compute_codes(self) -> None:
        """Codes of the labeled poses under the (now frozen) VAE, and their latent and root-offset
        statistics: the prior `sample` draws G's inputs from, so a run that leaves G as it was
        keeps its model's statistics (and with them every sample)."""
        with torch.no_grad():
            self.codes = torch.cat([self.model.vae.encode(self.rel)[0], self.offset], 1)
        if "generator" in self.r.trained_paths:
            self.model.latent = GaussianStats.of(self.codes[:, : self.model.config.vae.latent_dim].numpy())
            self.model.root_offset = GaussianStats.of(self.offset.numpy())

    def fit_prior(self) -> dict:
        """Fit the latent prior's flow to the labeled poses' codes (the Gaussian `model.latent`
        is its base); returns the held-out log-likelihoods before and after."""
        mean, chol = gaussian_factor(self.model.latent)
        p = self.r.prior
        latents = self.codes[:, : self.model.config.vae.latent_dim].numpy()
        for parameter in self.model.prior_flow.parameters():  # a refine stage before may have frozen it
            parameter.requires_grad_(True)
        with torch.enable_grad():
            return fit_latent_flow(self.model.prior_flow, latents, mean, chol, steps=p.steps, batch_size=p.batch_size,
                                   lr=p.lr, seed=self.r.seed)

    # --- stage steps -------------------------------------------------------------------------

    def vae_step(self, opt, rows: torch.Tensor, gen: torch.Generator) -> dict:
        pose = self.rel[rows]
        recon, mean, log_sigma = self.model.vae(pose, gen)
        loss, kl, sse = L.vae_loss(recon, pose, mean, log_sigma, self.r.vae.kl_weight)
        opt["vae"].zero_grad(set_to_none=True)
        loss.backward()
        opt["vae"].step()
        return {"vae": loss.item(), "kl": kl.item(), "sse": sse.item()}

    def gan_step(self, opt, idx: np.ndarray, gen: torch.Generator) -> dict:
        """Real batch = dataset rows `idx`; fakes from uniform noise, at the real crops' centres."""
        m = self.model
        G, D = m.generator, m.discriminator
        real = self.depth_batch(idx)
        noise = torch.rand(real.shape[0], m.config.code_dim, generator=gen) * 2 - 1
        with self.autocast():
            fake = G(noise, torch.from_numpy(np.asarray(self.data.center[idx], np.float32)))
            fake = fake.contiguous(memory_format=self.memory_format)
            _set_trainable(D.trunk_parameters(), True)
            real_logit, real_feat = D.trunk(D.branch(real))
            fake_logit, _ = D.trunk(D.branch(fake.detach()))
            d_loss = L.d_gan_loss(real_logit.float(), fake_logit.float())
        opt["d"].zero_grad(set_to_none=True)
        d_loss.backward()
        opt["d"].step()
        with self.autocast():
            _set_trainable(D.trunk_parameters(), False)
            g_loss = L.feature_matching_loss(real_feat.float(), D.trunk(D.branch(fake))[1].float())
        opt["g"].zero_grad(set_to_none=True)
        g_loss.backward()
        opt["g"].step()
        return {"d_gan": d_loss.item(), "g_fm": g_loss.item()}

    def generate(self, z: torch.Tensor, z_mix: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
        """G(Ali z) (B, 1, S, S), stacked on G(Ali z̃) when z_mix is given: one generator batch.
        Both are drawn at the centres of the labeled `rows` (z̃ mixes codes, not views)."""
        m = self.model
        code, center = (z, self.centers[rows]) if z_mix is None else \
            (torch.cat([z, z_mix]), self.centers[rows].repeat(2, 1))
        return m.generator(m.align(code), center).contiguous(memory_format=self.memory_format)

    def recons_losses(self, x: torch.Tensor, out: torch.Tensor, z: torch.Tensor, rows: torch.Tensor
                      ) -> tuple[dict, torch.Tensor]:
        """G's supervised loss: L_recons, plus the skeleton generator's pose-head loss."""
        lw = self.r.losses
        recons = L.recons_loss(x, out.float(), lw.recons_clip, lw.recons)
        logs, loss = {"recons": recons.item()}, recons
        if self.crop_joints is not None:
            joints, _ = self.model.generator.joints(self.model.align(z), self.centers[rows])
            skeleton = L.skeleton_loss(joints.float(), self.crop_joints[rows])
            loss, logs["skeleton"] = loss + lw.skeleton_weight * skeleton, skeleton.item()
        return logs, loss

    def head_losses(self, x_branch: torch.Tensor, fake_branch: torch.Tensor | None, z: torch.Tensor,
                    z_mix: torch.Tensor | None, rows: torch.Tensor, smo: bool
                    ) -> tuple[dict, torch.Tensor, torch.Tensor | None]:
        """D's L_pos (+ decoded-pose extension) and, if `smo`, L_smo → (logs, loss, f(x) or None)."""
        D, lw = self.model.discriminator, self.r.losses
        post = D.posterior(x_branch).float()
        loss = L.posterior_loss(post, z)
        logs = {"pos": loss.item()}
        if lw.pose_weight > 0:
            latent, offset = post.split([self.model.config.vae.latent_dim, 3], 1)
            pred = self.model.vae.decode(latent) + offset[:, None]
            pose_loss = (pred - (self.rel[rows] + z[:, None, -3:])).pow(2).mean()  # z: jittered offsets too
            loss, logs["pose"] = loss + lw.pose_weight * pose_loss, pose_loss.item()
        f_real = None
        if smo:
            f_real = D.metric(x_branch).float()
            f_fake, f_mix = D.metric(fake_branch).float().chunk(2)
            smo_loss = L.smoothness_loss(z, z_mix, f_real, f_fake, f_mix)
            loss, logs["smo_d"] = loss + smo_loss, smo_loss.item()
        return logs, loss, f_real

    def warmup_step(self, opt, idx: np.ndarray, gen: torch.Generator) -> dict:
        """Alignment layer (L_recons through the frozen G) and heads (L_pos + L_smo) only."""
        D, lw = self.model.discriminator, self.r.losses
        rows = self.labeled_rows(idx)
        x, z = self.depth_batch(idx), self.codes[rows]
        z_mix = L.mix_codes(z, lw.mix_size, gen) if lw.use_smo else None
        with self.autocast():
            out = self.generate(z, z_mix, rows)
            recons_logs, recons = self.recons_losses(x, out[: len(idx)], z, rows)
            fake_branch = D.branch(out.detach()) if lw.use_smo else None
            logs, heads, _ = self.head_losses(D.branch(x), fake_branch, z, z_mix, rows, lw.use_smo)
        opt["warmup"].zero_grad(set_to_none=True)
        (recons + heads).backward()
        opt["warmup"].step()
        return {**recons_logs, **logs}

    def joint_step(self, opt, idx: np.ndarray, real_idx: np.ndarray | None, gen: torch.Generator,
                   adversarial: bool = True) -> dict:
        """One D step then one G step on the same batch (DCGAN order).

        adversarial=False keeps only the supervised halves (D: L_pos, G: L_recons): the
        refinement stage, and the joint stage of the supervised-only ablation. Then a half whose
        optimizer `opt` lacks (refine.train) is skipped: neither half's loss reaches the other.
        """
        D, lw = self.model.discriminator, self.r.losses
        use_gan, use_smo = adversarial and lw.use_gan, adversarial and lw.use_smo
        rows = self.labeled_rows(idx)
        B = len(idx)
        x, z = self.depth_batch(idx), self.codes[rows]
        if self.r.data.center_jitter_mm > 0:
            x, z = self.recentred(idx, x, z, gen)
        z_mix = L.mix_codes(z, lw.mix_size, gen) if use_gan or use_smo else None
        # D's branch sees G(Ali z) only for L_smo, G(Ali z̃) for L_smo and L_gan: its last B rows.
        fake_rows = slice(0, 2 * B) if use_smo else slice(B, 2 * B) if use_gan else None
        logs = {}
        with self.autocast():
            out = self.generate(z, z_mix, rows) if "g" in opt else None
        if "d" in opt:
            with self.autocast():
                # D: L_gan (BCE) + L_pos + L_smo; generated depth detached.
                _set_trainable(D.parameters(), True)
                x_branch = D.branch(x)
                fake_branch = D.branch(out[fake_rows].detach()) if fake_rows else None
                logs, d_loss, f_real = self.head_losses(x_branch, fake_branch, z, z_mix, rows, use_smo)
                if use_gan:
                    real_branch = x_branch if real_idx is None else D.branch(self.depth_batch(real_idx))
                    real_logit, real_feat = D.trunk(real_branch)
                    d_gan = L.d_gan_loss(real_logit.float(), D.trunk(fake_branch[-B:])[0].float())
                    d_loss, logs["d_gan"] = d_loss + d_gan, d_gan.item()
            opt["d"].zero_grad(set_to_none=True)
            d_loss.backward()
            opt["d"].step()
        if "g" in opt:
            with self.autocast():
                # G: L_gan (feature matching) + L_recons + L_smo, through the updated (frozen) D.
                _set_trainable(D.parameters(), False)
                recons_logs, g_loss = self.recons_losses(x, out[:B], z, rows)
                logs.update(recons_logs)
                fake_branch = D.branch(out[fake_rows]) if fake_rows else None
                if use_gan:
                    fm = L.feature_matching_loss(real_feat.float(), D.trunk(fake_branch[-B:])[1].float())
                    g_loss, logs["g_fm"] = g_loss + fm, fm.item()
                if use_smo:
                    f_fake, f_mix = D.metric(fake_branch).float().chunk(2)
                    smo = L.smoothness_loss(z, z_mix, f_real.detach(), f_fake, f_mix)
                    g_loss, logs["smo_g"] = g_loss + smo, smo.item()
            opt["g"].zero_grad(set_to_none=True)
            g_loss.backward()
            opt["g"].step()
        return logs

    def _generate_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return self.generate(self.codes[rows], None, rows)

    # --- BN re-estimation (extension) ----------------------------------------------------------

    @torch.no_grad()
    def recalibrate_bn(self, n_batches: int, batch_size: int) -> None:
        """Re-estimate the BN statistics of the inference paths this recipe trains
        (`Recipe.trained_paths`) as population averages: the posterior path on real training
        depth, Ali + G on the training codes.

        Running averages (momentum 0.1) lag weights that move fast and, in the shared conv
        blocks, mix real and generated batches; inference sees neither effect. A path no stage
        trained keeps its statistics, so its outputs stay bit-identical.
        """
        m, D = self.model, self.model.discriminator
        skeleton = isinstance(m.generator, SkeletonGenerator)  # Ali stays fixed: the pose head inverts it
        depth = EpochSampler(self.split.train, batch_size, self.r.seed, stream=98)
        codes = EpochSampler(self.split.labeled, batch_size, self.r.seed, stream=99)
        paths = {"posterior": ([*D.convs[: D.config.branch_after], D.posterior],
                               lambda i: D.posterior(D.branch(self.depth_batch(depth(i))))),
                 "generator": ([m.generator] if skeleton else [m.align, m.generator],
                               lambda i: self._generate_rows(self.labeled_rows(codes(i))))}
        m.eval()
        for modules, forward in (paths[name] for name in paths if name in self.r.trained_paths):
            bns = [b for mod in modules for b in mod.modules() if isinstance(b, (nn.BatchNorm1d, nn.BatchNorm2d))]
            momenta = [b.momentum for b in bns]
            for b in bns:
                b.reset_running_stats()
                b.momentum = None  # cumulative average over the batches below
                b.train()
            for i in range(n_batches):
                forward(i)
            for b, momentum in zip(bns, momenta):
                b.momentum = momentum
                b.eval()


def _lr(recipe: Recipe, stage: str, step: int, steps: int) -> float:
    """Learning rate of `step`: constant, or cosine from lr down to lr_min_ratio·lr."""
    if stage == "warmup":
        return recipe.joint.warmup_lr
    s = getattr(recipe, stage)
    if getattr(s, "lr_schedule", "constant") == "cosine":
        t = step / max(1, steps)
        return s.lr * (s.lr_min_ratio + (1 - s.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))
    return s.lr


class MetricsLog:
    """metrics.csv: one row per `log_every` steps (losses averaged), plus one at every checkpoint.

    Also writes TensorBoard scalars to out_dir/tensorboard when the tensorboard package is
    installed (it is optional).
    """

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(path.parent / "tensorboard"), purge_step=resume_step)
        except ImportError:
            self.tensorboard = None
        rows = []
        if resume_step is not None and path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, CSV_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        self.sums: dict[str, float] = {}
        self.count, self.samples, self.t0 = 0, 0, time.perf_counter()

    def add(self, logs: dict, samples: int) -> None:
        for k, v in logs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.samples += samples

    def flush(self, step: int, stage: str, stage_step: int, lr: float) -> dict:
        dt = time.perf_counter() - self.t0
        row = {"step": step, "stage": stage, "stage_step": stage_step, "lr": f"{lr:.6g}",
               "samples_per_s": f"{self.samples / dt:.1f}" if dt > 0 else ""}
        row.update({k: f"{v / self.count:.6g}" for k, v in self.sums.items()})
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, CSV_COLUMNS).writerow(row)
        if self.tensorboard is not None:
            for k, v in self.sums.items():
                self.tensorboard.add_scalar(f"{stage}/{k}", v / self.count, step)
            self.tensorboard.add_scalar("lr", lr, step)
        self.sums, self.count, self.samples, self.t0 = {}, 0, 0, time.perf_counter()
        return row


def _trajectory(recipe: dict) -> dict:
    """The parts of a recipe dict that shape the training trajectory (not logging, evaluation
    or the final BN re-estimation): what must match for `resume`."""
    runtime = {k: v for k, v in recipe["runtime"].items() if k in ("precision", "channels_last")}
    data = {k: v for k, v in recipe["data"].items() if k != "in_memory"}  # where depth is read from
    return {k: v for k, v in recipe.items() if k not in ("name", "out_dir", "runtime", "eval")} | {
        "runtime": runtime, "data": data}


def _latest_checkpoint(out_dir: Path) -> Path | None:
    done = sorted(p for p in (out_dir / "checkpoints").glob("step-*") if (p / "training_state.json").exists())
    return done[-1] if done else None


def train(recipe: Recipe, data: TrainingData, out_dir: str | Path | None = None,
          progress: Callable[[dict], None] | None = None, resume: bool = False) -> CrossingNets:
    """Train Crossing Nets on `data` following `recipe`; returns the final model (eval mode).

    progress, if given, is called after every step with {"stage", "stage_step", "stage_steps",
    "step", "total_steps", "losses"} (and once with stage "eval" at the end). resume=True
    continues from the latest checkpoint in out_dir (fresh start if there is none).
    """
    threads = torch.get_num_threads()
    if recipe.runtime.threads:
        torch.set_num_threads(recipe.runtime.threads)
    try:
        return _train(recipe, data, Path(out_dir or recipe.out_dir), progress, resume)
    finally:
        torch.set_num_threads(threads)


def _train(r: Recipe, data: TrainingData, out_dir: Path, progress, resume: bool) -> CrossingNets:
    """The run, top to bottom: check the data, build the model, find where to start, run the
    stages in order, then fit the prior, save and evaluate."""
    out_dir.mkdir(parents=True, exist_ok=True)
    split = _checked_split(r, data)
    torch.manual_seed(r.seed)
    model, trainer = _build(r, data, split)
    stages = _stages(r)
    start = _ResumePoint.find(out_dir, r, model, split) if resume else _ResumePoint()
    log = MetricsLog(out_dir / "metrics.csv", start.step if start.checkpoint is not None else None)
    run = _StageRun(r, model, trainer, split, log, out_dir, progress, r.total_steps,
                    step_global=sum(stage.steps for stage in stages[:start.stage]) + start.stage_step)
    model.train()
    for stage in stages:
        if stage.index >= start.stage and stage.steps:
            run.run(stage, start)
    return _finish(r, data, model, trainer, split, out_dir, progress)


def _checked_split(r: Recipe, data: TrainingData) -> Split:
    split = split_indices(len(data), r.data.val_fraction, r.data.labeled_fraction, r.data.split_seed)
    if len(split.train) == 0:
        raise InputError("no training samples after the held-out split")
    if data.depth.shape[1] != r.model.generator.crop_size:
        raise InputError(f"depth crops are {data.depth.shape[1]}² but the recipe's model makes "
                         f"{r.model.generator.crop_size}²")
    if data.pose.shape[1] != r.model.vae.num_joints:
        raise InputError(f"the data has {data.pose.shape[1]} joints (layout {data.joint_layout}) but the recipe's "
                         f"model.vae.num_joints is {r.model.vae.num_joints}; set it to {data.pose.shape[1]}")
    return split


def _samples(split: Split) -> dict:
    return {"train": len(split.train), "labeled": len(split.labeled), "val": len(split.val)}


def _build(r: Recipe, data: TrainingData, split: Split) -> tuple[CrossingNets, Trainer]:
    """A fresh model (PCA-initialised VAE, root-offset statistics, `init_from` weights) and its trainer."""
    provenance = {"data_digest": data.data_digest, "recipe": r.to_dict(), "synthgen_version": synthgen.__version__,
                  "samples": _samples(split)}
    # Non-canonical layouts keep their own root (NYU's palm centre); the canonical one keeps the default.
    normalisation = PoseNormalisation(root_joint=LAYOUTS[data.joint_layout].root)
    model = CrossingNets(r.model, normalisation, provenance=provenance, joint_layout=data.joint_layout,
                         input_convention=data.input_convention)
    trainer = Trainer(r, data, model, split)
    model.root_offset = GaussianStats.of(trainer.offset.numpy())
    model.vae.init_from_pca(trainer.rel.numpy())
    if r.init_from:
        _init_from(model, r.init_from, r)
    if r.runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, trainer


@dataclass
class _Stage(ABC):
    """One training stage: its place in STAGES, its steps and batch size, and one step of it."""

    index: int
    steps: int
    batch: int
    name = ""
    freezes_vae = False  # the pose side is fixed from here on (`_StageRun.run` then computes the codes once)

    @abstractmethod
    def step(self, trainer: Trainer, opt: dict, labeled: EpochSampler, unlabeled: EpochSampler | None,
             step: int, gen: torch.Generator) -> dict:
        """One optimisation step on batch `step` of the stage's samplers; returns the logged losses."""


class _VaeStage(_Stage):
    name = "vae"

    def step(self, trainer, opt, labeled, unlabeled, step, gen):
        return trainer.vae_step(opt, trainer.labeled_rows(labeled(step)), gen)


class _GanStage(_Stage):
    name = "gan"

    def step(self, trainer, opt, labeled, unlabeled, step, gen):
        return trainer.gan_step(opt, unlabeled(step), gen)


class _WarmupStage(_Stage):
    name, freezes_vae = "warmup", True

    def step(self, trainer, opt, labeled, unlabeled, step, gen):
        return trainer.warmup_step(opt, labeled(step), gen)


class _JointStage(_Stage):
    name, freezes_vae, adversarial = "joint", True, True

    def step(self, trainer, opt, labeled, unlabeled, step, gen):
        real = unlabeled(step) if unlabeled is not None else None
        return trainer.joint_step(opt, labeled(step), real, gen, adversarial=self.adversarial)


class _RefineStage(_JointStage):
    """The joint step's supervised halves alone (the posterior path)."""

    name, adversarial = "refine", False


def _stages(r: Recipe) -> list[_Stage]:
    stages = [_VaeStage(0, r.vae.steps, r.vae.batch_size),
              _GanStage(1, 0 if not r.losses.use_gan else r.gan.steps, r.gan.batch_size),
              _WarmupStage(2, r.joint.warmup_steps, r.joint.batch_size),
              _JointStage(3, r.joint.steps, r.joint.batch_size),
              _RefineStage(4, r.refine.steps, r.refine.batch_size)]
    assert tuple(stage.name for stage in stages) == STAGES
    return stages


@dataclass
class _ResumePoint:
    """Where a run starts: stage index and step within it, the global step and optimiser state
    of the checkpoint it continues (none: a fresh start)."""

    stage: int = 0
    stage_step: int = 0
    step: int | None = None
    optimizers: dict | None = None
    checkpoint: Path | None = None

    @classmethod
    def find(cls, out_dir: Path, r: Recipe, model: CrossingNets, split: Split) -> _ResumePoint:
        """The latest checkpoint in out_dir, loaded into `model` (a fresh start if there is none)."""
        ckpt = _latest_checkpoint(out_dir)
        if ckpt is None:
            return cls()
        state, saved_opt = load_training_state(ckpt)
        if _trajectory(state["recipe"]) != _trajectory(json.loads(json.dumps(r.to_dict()))):
            raise CheckpointError(f"{ckpt}: was written by a recipe that trains differently; resume needs the same "
                                  f"data, model, stages, losses and precision")
        if state["split_seed"] != r.data.split_seed or state["samples"] != _samples(split):
            raise CheckpointError(f"{ckpt}: was trained on a different data split")
        loaded = load(ckpt)
        model.load_state_dict(loaded.state_dict())
        model.root_offset, model.latent = loaded.root_offset, loaded.latent
        return cls(STAGES.index(state["stage"]), state["stage_step"], state["step"], saved_opt, ckpt)


@dataclass
class _StageRun:
    """Runs stages one after the other: optimisers, learning rates, logging, checkpoints, progress."""

    r: Recipe
    model: CrossingNets
    trainer: Trainer
    split: Split
    log: MetricsLog
    out_dir: Path
    progress: Callable[[dict], None] | None
    total: int
    step_global: int

    def run(self, stage: _Stage, start: _ResumePoint) -> None:
        r, model = self.r, self.model
        if stage.freezes_vae:
            _set_trainable(model.vae.parameters(), False)
            self.trainer.compute_codes()
        if stage.name != "vae" and isinstance(model.generator, SkeletonGenerator) \
                and not model.generator.pose.initialised:
            model.generator.pose.init_from_pose_code(model.vae, model.align)  # VAE trained
        opt = _optimizers(model, r, stage.name)
        resuming = stage.index == start.stage
        if resuming and start.optimizers is not None:
            for name, o in opt.items():
                o.load_state_dict(start.optimizers[name])
        labeled = EpochSampler(self.split.labeled, stage.batch, r.seed, stream=stage.index)
        unlabeled = EpochSampler(self.split.train, stage.batch, r.seed, stream=10 + stage.index)
        # the joint stages draw real crops apart from the labeled ones only when some are unlabeled
        if isinstance(stage, _JointStage) and len(self.split.labeled) >= len(self.split.train):
            unlabeled = None
        for step in range(start.stage_step if resuming else 0, stage.steps):
            lr = _lr(r, stage.name, step, stage.steps)
            for o in opt.values():
                for g in o.param_groups:
                    g["lr"] = lr
            logs = stage.step(self.trainer, opt, labeled, unlabeled, step, step_generator(r.seed, stage.index, step))
            self.step_global += 1
            self._after_step(stage, step, lr, opt, logs)

    def _after_step(self, stage: _Stage, step: int, lr: float, opt: dict, logs: dict) -> None:
        r = self.r
        self.log.add(logs, stage.batch)
        save = step + 1 == stage.steps or self.step_global % r.runtime.checkpoint_every == 0
        if save or self.step_global % r.runtime.log_every == 0:
            self.log.flush(self.step_global, stage.name, step + 1, lr)
        if save:
            ck = self.out_dir / "checkpoints" / f"step-{self.step_global:07d}"
            save_model(self.model, ck)
            save_training_state(ck, opt, {"stage": stage.name, "stage_step": step + 1, "step": self.step_global,
                                          "seed": r.seed, "split_seed": r.data.split_seed,
                                          "samples": _samples(self.split), "recipe": r.to_dict()})
        if self.progress is not None:
            self.progress({"stage": stage.name, "stage_step": step + 1, "stage_steps": stage.steps,
                           "step": self.step_global, "total_steps": self.total, "losses": logs})


def _finish(r: Recipe, data: TrainingData, model: CrossingNets, trainer: Trainer, split: Split, out_dir: Path,
            progress) -> CrossingNets:
    """After the stages: codes, the latent prior, BN statistics, the saved model and its evaluation."""
    trainer.compute_codes()
    if model.prior_flow is not None and r.prior.steps:
        model.provenance["prior_fit"] = trainer.fit_prior()
    if r.runtime.recalibrate_bn:
        trainer.recalibrate_bn(r.runtime.recalibrate_batches, r.joint.batch_size)
    model.eval().to(memory_format=torch.contiguous_format)  # as `load` rebuilds it: same outputs, bit for bit
    save_model(model, out_dir / "model")
    if len(split.val):
        val = split.val[: r.eval.max_samples]
        results = evaluate(model, data.depth[val], data.pose[val], data.center[val], r.eval.batch_size)
        write_report(results, out_dir, {"checksum": model.checksum, "data_digest": data.data_digest,
                                        "recipe": r.name, "samples": _samples(split)})
        if progress is not None:
            progress({"stage": "eval", "pose": results["pose"], "generator": results["generator"]})
    return model


def _init_from(model: CrossingNets, path: str, r: Recipe) -> None:
    """Start from the weights of a saved model of the same architecture and joint layout. A
    generator the recipe trains may differ: it keeps the base's tensors whose names and shapes
    match (its convolutions, say), except the pose head's copies of the decoder and Ali⁻¹,
    which are set again from the trained VAE. A VAE decoder the recipe trains alone
    (vae.train = "decoder") may differ too: it starts from its initialisation."""
    base = load(path)
    # Weights carry over between centring rules (a fine-tune re-centres a model), not between
    # depth normalisations or crop geometries.
    if (base.input_convention.depth, base.input_convention.crop) != (model.input_convention.depth,
                                                                      model.input_convention.crop):
        raise InputError(f"init_from {path}: the model reads {base.input_convention.describe()}, the training stores "
                         f"hold {model.input_convention.describe()}")
    trains_generator = "generator" in r.trained_paths
    new_decoder = bool(r.vae.steps) and r.vae.train == "decoder"
    same_generator = base.config.generator == model.config.generator
    comparable = replace(base.config, generator=model.config.generator)
    if new_decoder:
        v = model.config.vae
        comparable = replace(comparable, vae=replace(comparable.vae, decoder=v.decoder, scale_range=v.scale_range,
                                                     kinematic_hidden=v.kinematic_hidden))
    if r.prior.steps:  # a prior the recipe fits may be new
        comparable = replace(comparable, prior=model.config.prior)
    others_differ = comparable != model.config
    if others_differ or base.joint_layout != model.joint_layout or not (same_generator or trains_generator):
        raise InputError(f"init_from {path}: its architecture or joint layout differs from the recipe's model"
                         + ("" if others_differ or same_generator else " (a new generator needs a stage that trains it)"))
    ours, theirs = model.state_dict(), base.state_dict()
    fresh = set()
    if new_decoder:
        fresh |= {k for k in ours if k.startswith(_prefixes(model, model.vae.decoder_modules()))}
    if r.prior.steps:
        fresh |= {k for k in ours if k.startswith("prior_flow.")}
    if not same_generator:
        head = _prefixes(model, [model.generator.pose]) if isinstance(model.generator, SkeletonGenerator) else ()
        radii = _prefixes(model, [model.generator.pose.radii]) if head else ()
        fresh |= {k for k in ours if k.startswith("generator.")
                  and ((k.startswith(head) and not k.startswith(radii)) or k not in theirs
                       or theirs[k].shape != ours[k].shape)}
    model.load_state_dict({k: ours[k] if k in fresh or k not in theirs else theirs[k] for k in ours})
    model.root_offset, model.latent = base.root_offset, base.latent  # a run that trains G refits both
    model.provenance["init_from"] = {"path": str(path), "checksum": base.checksum, "generator_from_base": same_generator,
                                     "fresh": sorted({k.rsplit(".", 1)[0] for k in fresh})}


def _prefixes(model: nn.Module, modules: list[nn.Module]) -> tuple[str, ...]:
    """The state-dict key prefixes of some of `model`'s submodules."""
    return tuple(f"{name}." for name, m in model.named_modules() if any(m is x for x in modules))


def _optimizers(model: CrossingNets, r: Recipe, stage: str) -> dict[str, torch.optim.Optimizer]:
    D = model.discriminator
    if stage == "vae":
        params = [p for m in model.vae.decoder_modules() for p in m.parameters()] if r.vae.train == "decoder" \
            else list(model.vae.parameters())
        _set_trainable(model.vae.parameters(), r.vae.train != "decoder")
        _set_trainable(params, True)
        return {"vae": _adam(params, r.vae.lr, r.vae.betas)}
    if stage == "gan":
        return {"g": _adam(model.generator.trainable_parameters(), r.gan.lr, r.gan.betas),
                "d": _adam(list(D.trunk_parameters()), r.gan.lr, r.gan.betas)}
    if stage == "warmup":
        # Only the alignment layer and the heads learn; G and the trunk are frozen.
        _set_trainable(model.parameters(), False)
        heads = [*D.posterior.parameters(), *D.metric.parameters()]
        params = [*_align_parameters(model), *heads]
        _set_trainable(params, True)
        return {"warmup": _adam(params, r.joint.warmup_lr, r.joint.betas)}
    G_params = _generator_parameters(model)
    if stage == "refine":
        # The posterior path (first conv blocks + posterior head) and/or Ali + G, supervised.
        halves = {"posterior": ("d", [*D.convs[: D.config.branch_after].parameters(), *D.posterior.parameters()]),
                  "generator": ("g", G_params)}
        chosen = [halves[path] for path in REFINE_HALVES[r.refine.train]]
        _set_trainable(model.parameters(), False)
        _set_trainable([p for _, params in chosen for p in params], True)
        return {key: _adam(params, r.refine.lr, r.refine.betas) for key, params in chosen}
    _set_trainable(model.parameters(), False)
    _set_trainable([*G_params, *D.parameters()], True)
    return {"g": _adam(G_params, r.joint.lr, r.joint.betas), "d": _adam(D.parameters(), r.joint.lr, r.joint.betas)}


def _align_parameters(model: CrossingNets) -> list[nn.Parameter]:
    """Ali's parameters, none with the skeleton generator (whose pose head inverts Ali)."""
    return [] if isinstance(model.generator, SkeletonGenerator) else list(model.align.parameters())


def _generator_parameters(model: CrossingNets) -> list[nn.Parameter]:
    """What the generator path trains: Ali + G, or the skeleton generator's trainable part."""
    return [*_align_parameters(model), *model.generator.trainable_parameters()]
