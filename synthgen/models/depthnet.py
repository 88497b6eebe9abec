"""DepthNet: the project's independent depth → pose regressor and the realism scores' feature network.

Why a second network: a generator must not be judged by its own discriminator (it was trained
to fool, and to agree with, exactly that network). DepthNet is a plain residual-free CNN
trained only on mesh-rendered baseline crops, never on generated depth, and then frozen. Its
two jobs in `synthgen.realism`:

- pose consistency: predict joints from a generated crop and compare with the paired pose;
- set-level scores (FD, KID, precision/recall): embeddings = six groups, the spatial mean and
  standard deviation of the first stage, the spatial means of the other three stages and the
  hidden layer (32 + 32 + 64 + 128 + 128 + 256 = 640-d), each group scaled to unit total
  variance on training crops (scales fixed in config.json). Early groups carry blur, noise and
  edge statistics, late ones pose; without the scaling the 256-d hidden layer would dominate
  every distance and blur or noise would barely register (measured: FD ×1.3 → ×3.7 for
  10 mm noise, ×14 for a 1 px blur, relative to two independent baseline samples).

Weights ship in `synthgen/assets/depthnet/` (safetensors + config.json with provenance: training stores,
their digest, seed, steps, held-out error). `VERSION` names the architecture + training recipe;
scores computed with different versions are not comparable, so score.json records it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as st_save
from torch import nn
from torch.nn import functional as F

import synthgen
from synthgen.assets import DEPTHNET
from synthgen.conventions import CUBE_MM, NUM_JOINTS
from synthgen.models.checkpoint import (
    CONFIG,
    WEIGHTS,
    CheckpointError,
    _checkpoint_dir,
    _read_bytes,
    _read_json,
    _verified_tensors,
)
from synthgen.outputs import write_bytes_atomically

FORMAT = "synthgen.depthnet"
VERSION = "depthnet-v1"
DEFAULT_DIR = DEPTHNET
#: channels_last runs these convolutions 1.3–1.5× faster on CPU (measured, training and inference).
CHANNELS_LAST = torch.channels_last
SCALE_SAMPLES = 4096  # training crops that fix the embedding's group scales


@dataclass
class DepthNetConfig:
    """Widths are the smallest that still reach ~10 mm on mesh renders at ~1k crops/s on one core."""

    crop_size: int = 128
    num_joints: int = NUM_JOINTS
    widths: tuple[int, ...] = (16, 32, 64, 128, 128)  # stem + one stride-2 stage each: 128² → 4²
    hidden: int = 256

    @property
    def feature_groups(self) -> dict[str, int]:
        """Name → width of each embedding group, in order."""
        w = self.widths
        return {"stage1_mean": w[1], "stage1_std": w[1], **{f"stage{i}_mean": w[i] for i in range(2, len(w))},
                "hidden": self.hidden}

    @property
    def feature_dim(self) -> int:
        return sum(self.feature_groups.values())

    @classmethod
    def from_dict(cls, d: dict) -> DepthNetConfig:
        return cls(**{**d, "widths": tuple(d["widths"])})


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    """Stride-2 downsampling conv then a 3×3 conv, each with BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class DepthNet(nn.Module):
    """(B, 1, S, S) normalised crops → (B, J, 3) joints in cube units around the crop centre."""

    def __init__(self, config: DepthNetConfig):
        super().__init__()
        self.config = config
        first, *rest = config.widths
        # A single 5×5 stride-2 stem instead of a full stage at 64² (~16 % fewer MACs).
        self.stem = nn.Sequential(nn.Conv2d(1, first, 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(first),
                                  nn.ReLU(inplace=True))
        self.stages = nn.ModuleList(_stage(a, b) for a, b in zip([first] + rest[:-1], rest))
        side = config.crop_size // 2 ** len(config.widths)
        self.hidden = nn.Linear(rest[-1] * side * side, config.hidden)
        self.out = nn.Linear(config.hidden, config.num_joints * 3)

    def forward(self, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (joints (B, J, 3) cube units, features (B, feature_dim))."""
        x = self.stem(depth)  # (B, C0, S/2, S/2)
        pooled = []
        for i, stage in enumerate(self.stages):
            x = stage(x)  # (B, C_i, S/2^(i+2), S/2^(i+2))
            pooled.append(x.mean(dim=(2, 3)))  # (B, C_i)
            if i == 0:
                pooled.append(x.std(dim=(2, 3)))
        h = F.relu(self.hidden(x.flatten(1)))  # (B, hidden)
        joints = self.out(h).view(len(depth), self.config.num_joints, 3)
        return joints, torch.cat(pooled + [h], dim=1)


# --- inference -------------------------------------------------------------------------------


@dataclass
class DepthNetOutput:
    joints_mm: np.ndarray  # (n, J, 3) float32, camera coordinates
    features: np.ndarray  # (n, feature_dim) float32


def group_scales(net: DepthNet, depth: np.ndarray) -> list[float]:
    """1 / √(total variance) of each embedding group over `depth` (training crops): the fixed
    scaling that makes every group weigh the same in a distance."""
    net.eval()
    with torch.no_grad():
        feats = np.concatenate([net(torch.from_numpy(depth[s:s + 256].astype(np.float32))[:, None])[1].numpy()
                                for s in range(0, len(depth), 256)])
    bounds = np.cumsum([0, *net.config.feature_groups.values()])
    return [float(1 / np.sqrt(feats[:, a:b].var(axis=0).sum())) for a, b in zip(bounds[:-1], bounds[1:])]


class FrozenDepthNet:
    """A loaded DepthNet in eval mode, run in fixed-size blocks so results never depend on how
    the caller batches (BatchNorm is frozen; the block size only bounds memory)."""

    block_size = 256

    def __init__(self, net: DepthNet, config: dict):
        self.net = net.eval().to(memory_format=CHANNELS_LAST)
        self.config = config
        self.version = config["version"]
        self.sha256 = config["weights"]["sha256"]
        widths = list(net.config.feature_groups.values())
        self.feature_scale = np.repeat(np.asarray(config["features"]["group_scales"], np.float32), widths)

    @torch.no_grad()
    def __call__(self, depth: np.ndarray, center: np.ndarray, cube_mm: float = CUBE_MM) -> DepthNetOutput:
        depth = np.asarray(depth)
        n = len(depth)
        joints = np.empty((n, self.net.config.num_joints, 3), np.float32)
        features = np.empty((n, self.net.config.feature_dim), np.float32)
        for start in range(0, n, self.block_size):
            block = torch.from_numpy(np.ascontiguousarray(depth[start:start + self.block_size], np.float32))
            j, f = self.net(block[:, None].contiguous(memory_format=CHANNELS_LAST))
            joints[start:start + len(block)] = j.numpy()
            features[start:start + len(block)] = f.numpy() * self.feature_scale
        joints_mm = joints * np.float32(cube_mm / 2) + np.asarray(center, np.float32)[:, None, :]
        return DepthNetOutput(joints_mm, features)


# --- checkpoints -----------------------------------------------------------------------------


def save(net: DepthNet, directory: str | Path, provenance: dict, scales: list[float]) -> str:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    blob = st_save({k: v.detach().contiguous() for k, v in net.state_dict().items()})
    digest = hashlib.sha256(blob).hexdigest()
    write_bytes_atomically(directory / WEIGHTS, blob)
    config = {
        "format": FORMAT, "version": VERSION, "synthgen_version": synthgen.__version__,
        "architecture": asdict(net.config), "output": "joints in cube units: (xyz_mm - crop_centre) / (cube_mm / 2)",
        "features": {"groups": net.config.feature_groups, "group_scales": scales,
                     "definition": "concat of groups × group_scales; see synthgen/models/depthnet.py"},
        "provenance": provenance, "weights": {"file": WEIGHTS, "sha256": digest, "bytes": len(blob)},
    }
    write_bytes_atomically(directory / CONFIG, json.dumps(config, indent=2).encode())
    return digest


def load(path: str | Path = DEFAULT_DIR) -> FrozenDepthNet:
    """Load a DepthNet checkpoint (safetensors + config.json, sha256-verified, never unpickled)."""
    directory = _checkpoint_dir(Path(path))
    config = _read_json(directory / CONFIG)
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{directory / CONFIG}: not a DepthNet config (format {config.get('format')!r})")
    try:
        net = DepthNet(DepthNetConfig.from_dict(config["architecture"]))
        if len(config["features"]["group_scales"]) != len(net.config.feature_groups):
            raise ValueError("one scale per feature group expected")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG}: invalid architecture or feature scales ({e})") from None
    blob = _read_bytes(directory / WEIGHTS)
    tensors = _verified_tensors(directory / WEIGHTS, blob, config.get("weights", {}).get("sha256"), net.state_dict())
    net.load_state_dict(tensors, strict=True)
    return FrozenDepthNet(net, config)


# --- training --------------------------------------------------------------------------------


@dataclass
class TrainSettings:
    steps: int = 6000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val_size: int = 2048
    shift_px: int = 4  # random crop translation: the generator's crops are not centred exactly like renders
    widths: tuple[int, ...] = DepthNetConfig.widths  # the network's stage widths (narrower trains faster)
    notes: dict = field(default_factory=dict)


def _augment(depth: torch.Tensor, joints: torch.Tensor, shift_px: int, gen: torch.Generator, crop: int):
    """Random integer translation of the crop (background fill) with the matching joint shift."""
    if shift_px == 0:
        return depth, joints
    b = len(depth)
    padded = F.pad(depth, (shift_px,) * 4, value=1.0)
    dx, dy = torch.randint(0, 2 * shift_px + 1, (2, b), generator=gen)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + crop, dx[i]:dx[i] + crop] for i in range(b)])
    # A crop shifted by +s px shows the hand at -s px: joints move by -s px in cube units (2/crop per px).
    shift = torch.stack([shift_px - dx, shift_px - dy], 1).float() * (2.0 / crop)
    joints = joints.clone()
    joints[..., :2] += shift[:, None, :]
    return out, joints


def train(depth: np.ndarray, joints_norm: np.ndarray, settings: TrainSettings,
          on_step: Callable[[int, float], None] | None = None,
          draw: Callable[[torch.Generator, int], np.ndarray] | None = None) -> tuple[DepthNet, dict]:
    """Train on (N, S, S) normalised crops (float16 ok) and (N, J, 3) cube-unit joints.

    The last `val_size` samples are held out. `draw(generator, batch_size)` picks each batch's
    indices (default: uniform over the training part), e.g. to mix sources by ratio. Loss: mean
    Euclidean joint distance (the metric itself). AdamW with a cosine schedule. Returns the net
    and a summary with the val error (None when val_size is 0).
    """
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    crop = depth.shape[-1]
    config = DepthNetConfig(crop_size=crop, num_joints=joints_norm.shape[1], widths=tuple(settings.widths))
    net = DepthNet(config).to(memory_format=CHANNELS_LAST)
    opt = torch.optim.AdamW(net.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    n_train = len(depth) - settings.val_size
    mm = CUBE_MM / 2
    start = time.time()
    for step in range(settings.steps):
        lr = settings.lr * 0.5 * (1 + math.cos(math.pi * step / settings.steps))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = (np.sort(draw(gen, settings.batch_size)) if draw is not None
               else torch.randint(0, n_train, (settings.batch_size,), generator=gen).sort().values.numpy())
        x = torch.from_numpy(depth[idx].astype(np.float32))[:, None]
        y = torch.from_numpy(joints_norm[idx])
        x, y = _augment(x, y, settings.shift_px, gen, crop)
        x = x.contiguous(memory_format=CHANNELS_LAST)
        pred, _ = net(x)
        loss = (pred - y).norm(dim=-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step, loss.item() * mm)
    net.eval()
    val = joint_errors_mm(net, depth[n_train:], joints_norm[n_train:])
    summary = {"steps": settings.steps, "batch_size": settings.batch_size, "lr": settings.lr, "seed": settings.seed,
               "shift_px": settings.shift_px, "train_samples": n_train, "val_samples": len(val),
               "val_mean_joint_error_mm": float(val.mean()) if len(val) else None,
               "train_seconds": round(time.time() - start, 1)}
    return net, summary


@torch.no_grad()
def joint_errors_mm(net: DepthNet, depth: np.ndarray, joints_norm: np.ndarray, cube_mm: float = CUBE_MM,
                    block: int = 256) -> np.ndarray:
    """(n,) mean joint error in mm of an eval-mode net on normalised crops and cube-unit joints."""
    errors = [np.zeros(0, np.float32)]
    for s in range(0, len(depth), block):
        x = torch.from_numpy(depth[s:s + block].astype(np.float32))[:, None].contiguous(memory_format=CHANNELS_LAST)
        errors.append(((net(x)[0] - torch.from_numpy(joints_norm[s:s + block])).norm(dim=-1).mean(-1)
                       * (cube_mm / 2)).numpy())
    return np.concatenate(errors)


def main(argv: list[str] | None = None) -> None:
    """python -m synthgen.models.depthnet --stores A.zarr B.zarr --out synthgen/assets/depthnet [--steps N]"""
    import argparse

    from synthgen.data.loading import load_arrays
    from synthgen.hand.camera import normalize_joints

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--stores", nargs="+", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=TrainSettings.steps)
    p.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    depth, pose, center, digest = load_arrays(args.stores)
    # Shuffle once (seeded) so the held-out tail mixes every store.
    order = np.random.default_rng(args.seed).permutation(len(depth))
    depth, pose, center = depth[order], pose[order], center[order]
    joints = normalize_joints(pose, center).astype(np.float32)
    settings = TrainSettings(steps=args.steps, batch_size=args.batch_size, seed=args.seed)

    def report(step: int, loss_mm: float) -> None:
        if step % 200 == 0 or step == settings.steps - 1:
            print(f"step {step:6d}  loss {loss_mm:6.2f} mm", flush=True)

    net, summary = train(depth, joints, settings, report)
    provenance = {"stores": [str(s) for s in args.stores], "data_sha256": digest, **summary,
                  "command": "python -m synthgen.models.depthnet " + " ".join(argv or [])}
    save(net, args.out, provenance, group_scales(net, depth[:SCALE_SAMPLES]))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
