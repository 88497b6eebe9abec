"""The sampling pipeline: 23-d codes + crop centres → (depth, pose) samples, and chunk sources.

    codes (n, 23) = [pose latent 20, root offset 3] ──► VAE decoder ──► pose (n, J, 3) mm
                  └──────────────────────────────────► Ali ─► G ─────► depth (n, S, S)

`SamplingPipeline` runs a (model, device, precision, noise) combination on any codes; the
sources below decide where the codes come from and are what `produce` / `write_store` drive.
Poses come out in the model's joint layout (`model.joint_layout`: the canonical 21 joints, or
a converted ICVL / NYU model's own 16 / 36), and stores written from them say so.

* `PriorSource`: codes from the prior (synthgen.sampling.prior), centres from a `CropCenters`
  rule; chunk k is a pure function of (seed, k).
* `PoseSource`: codes from given poses through the VAE encoder (pose-conditioned generation).

Absolute coordinates. The generated crop is translation-invariant (normalised around a centre
the networks never see), so every sample is placed at a crop centre c (mm, camera frame):

    pose_mm  = (VAE decoder(latent) + root offset) · 50 mm + c        (CrossingNets.decode_pose)
    depth_mm = depth · cube_mm / 2 + c_z, background (≥ 1 - 1e-3) → no data

For `PriorSource`, c follows `CropCenters` (by default the mesh baseline's placement: depth
350..650 mm, anywhere in the chosen camera's frame 20 % away from its borders). For poses given
by the user, c = synthgen.hand.camera.hand_center(joints), the joints' bounding-box centre.

Sensor noise (`noise=SensorNoise(...)`): the generated crop is un-normalised to metric depth
around c_z (background → 0, "no data"), SensorNoise.apply adds axial noise, quantisation, edge
drop-out and holes, and the result is normalised again exactly as the renderer's crops are.
Pixels within 1e-3 of +1 count as no data (the model's `generate_depth` snaps outputs above
`config.generator.background_snap` to +1); fainter haze stays a far surface and is noised like one.

Determinism. Results must not depend on how a run is split. Two things could make them:
(1) random draws — every chunk draws its numbers from generators seeded by (seed, chunk index,
stream) and always draws a whole chunk's worth, so a chunk's samples do not depend on the
number of samples either (sample i of an N-sample store is sample i of any longer store);
sensor noise is seeded per (seed, chunk, 256-sample block). (2) arithmetic — oneDNN picks
different kernels for different batch sizes, and a conv's last bits change with them (batches
of 1 or 7 differ from 256 in ~5 % of the pixels). So the networks *always* run on blocks of
exactly `block_size` (256) samples, the last one padded; `batch_size` only sets how many
samples a pipeline step covers (the progress hook's granularity), never what a network call
sees. The result is byte-identical across --batch-size and --workers on one machine and
precision (thread count does not change the bits: checked in tests/test_sampling.py).

Precision (which generator computes the depth; the pose decoder is always the exact fp32 one):

* "fp32": the exact path, `CrossingNets.generate_depth` itself (the paper G in channels_last,
  which gives the same bits: tests/test_inference.py), called on each block's 32-sample
  sub-batches like the fast path, so that two producers' activations stay small (a whole
  256-sample block of the skeleton G peaked at 2.25 GB RSS).
* "fp32-fast": `synthgen.models.inference.DepthGenerator` in fp32 — BN folded, transposed convs
  as phase convs — the same function up to float rounding (~1e-4 mm), 2-3.6x faster on a CPU.
* "bf16": the same rewrite with its last two convolutions in bf16, ~2-7x faster where the CPU
  has bf16 instructions.
* "auto": the first of bf16, fp32-fast whose depth stays within FAST_TOLERANCE_MM of the exact
  path on a calibration block of prior samples (see `depth_difference`), else fp32.

A fast path is used only after that check (a bf16 or fp32-fast request that fails it is an
InputError), and only on the CPU; "auto" on CUDA is fp32.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from synthgen.assets import DEFAULT_MODEL
from synthgen.conventions import CUBE_MM
from synthgen.data.schema import DEFAULT_CHUNK_SIZE, SampleBatch
from synthgen.data.writer import StoreWriter
from synthgen.errors import InputError
from synthgen.hand import camera
from synthgen.hand.noise import SensorNoise
from synthgen.memory import BufferPool, small_page_array
from synthgen.models.inference import SUB_BATCH, DepthGenerator, depth_difference
from synthgen.sampling.prior import CropCenters, LatentPrior

#: Samples per network call, always (see the module docstring, "Determinism").
BLOCK_SIZE = 256
#: Most producer threads `write_store` starts by default: each holds ~3 chunks of float32 depth.
MAX_PRODUCERS = 4
#: A fast generator path is used only if, on the calibration block, the mean and the 99th
#: percentile of its |Δdepth| from the exact path (mm, over pixels that are hand in either
#: output) both stay below this.
FAST_TOLERANCE_MM = 1.0
PRECISIONS = ("fp32", "fp32-fast", "bf16", "auto")
FAST_DTYPES = {"fp32-fast": torch.float32, "bf16": torch.bfloat16}
DEFAULT_MODEL_DIR = DEFAULT_MODEL

# Random streams of a chunk: independent generators, so adding one never shifts another.
LATENT_STREAM, CENTER_STREAM, NOISE_STREAM = 0, 1, 2


def stream_seed(*keys: int) -> int:
    """A 63-bit seed for torch.Generator from integer keys (seed, chunk, stream, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> np.uint64(1))


# --- model, device, precision --------------------------------------------------------------


def load_model(path: str | Path | None = None):
    """Load a Crossing Nets checkpoint directory; None = the shipped default. InputError if bad."""
    from synthgen.models import CheckpointError, load

    if path is None:
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise InputError(f"not given and the default model {DEFAULT_MODEL_DIR} is not installed: name a directory "
                             f"with config.json + model.safetensors", option="model")
        path = DEFAULT_MODEL_DIR
    try:
        return load(path)
    except CheckpointError as error:
        raise InputError(f"cannot load model: {error}") from None


def resolve_device(name: str) -> torch.device:
    """'cpu' | 'cuda' | 'auto' (cuda when available) → torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("cuda: no CUDA device is available to this torch build", option="device")
    if name not in ("cpu", "cuda"):
        raise InputError(f"device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def bf16_supported() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU (AVX-512 BF16 or AMX): the bf16 path's speed."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# --- the pipeline --------------------------------------------------------------------------


@dataclass
class GeneratedSamples:
    """n generated samples, as the store holds them.

    depth:  (n, S, S) float32 normalised crop depth in [-1, 1], background +1
    pose:   (n, J, 3) float32 joints, mm, camera coordinates, in the model's joint layout
    center: (n, 3) float32 crop centre, mm, camera coordinates
    latent: (n, 23) float32 code [pose latent 20, root offset 3 (unit_mm)]
    joint_layout: the pose's joint layout (the model's)
    """

    depth: np.ndarray
    pose: np.ndarray
    center: np.ndarray
    latent: np.ndarray
    joint_layout: str = "hands2017"

    def __len__(self) -> int:
        return len(self.depth)

    def to_batch(self) -> SampleBatch:
        return SampleBatch(depth=self.depth, pose=self.pose, center=self.center, latent=self.latent,
                           joint_layout=self.joint_layout)


class SamplingPipeline:
    """Codes + centres → samples with one model on one device, in fixed network blocks.

    A new pipeline runs the exact fp32 modules; `use_precision` switches to a faster path, after
    measuring it (an explicit step: it generates one block of prior samples both ways).
    The pipeline holds its own copy of the model, so the caller's model is never modified.
    """

    def __init__(self, model, *, device: str | torch.device = "cpu", noise: SensorNoise | None = None,
                 cube_mm: float = CUBE_MM, block_size: int = BLOCK_SIZE):
        if noise is not None and not model.input_convention.metric:
            raise InputError(f"the sensor-noise model works on metric depth; this model generates "
                             f"{model.input_convention.depth} depth, which has none")
        self.device = torch.device(device)
        self.model = copy.deepcopy(model).to(self.device).eval()
        if self.device.type == "cpu" and self.model.config.generator.arch == "paper":
            # NHWC transposed convs: same bits here, ~1.4x faster (docs/performance.md). Not for
            # the skeleton G, whose 1×1 mixing conv gives other bits in NHWC: fp32 stays exact.
            self.model.generator.to(memory_format=torch.channels_last)
        self.noise = noise
        self.cube_mm = float(cube_mm)
        self.block_size = int(block_size)
        self.generator_error: dict | None = None
        self._fast: DepthGenerator | None = None
        self.precision = "fp32"

    def use_precision(self, precision: str, *, check: bool = True) -> SamplingPipeline:
        """Run the generator in `precision`: "fp32", "fp32-fast", "bf16" or "auto" (module
        docstring); returns the pipeline. A fast path is measured first, on one block of prior
        samples against the exact modules, and refused (or, for "auto", passed over) if it
        moves the depth by `FAST_TOLERANCE_MM` or more; `generator_error` then holds what was
        measured. check=False trusts an explicit fast path that an earlier pipeline of the same
        model already measured (worker processes)."""
        self._fast, self.generator_error = None, None
        self.precision = self._choose_precision(precision, check)
        return self

    # 1 → 5: the whole pipeline, on given codes.
    def __call__(self, codes: torch.Tensor | np.ndarray, centers: np.ndarray, *,
                 noise_seed: Sequence[int] | None = None, batch_size: int | None = None,
                 callback: Callable[[int], None] | None = None, depth_out: np.ndarray | None = None
                 ) -> GeneratedSamples:
        """codes (n, 23), centres (n, 3) mm → GeneratedSamples.

        noise_seed: integer keys seeding the sensor noise (required when the pipeline has a noise
        model); block b's noise uses keys + [b], so it is independent of `batch_size`.
        batch_size: samples per step (rounded up to whole blocks); `callback(k)` fires after each
        step with the k samples it finished.
        depth_out: a C-contiguous (n, S, S) float32 array to write the depth into (a recycled buffer).
        """
        # 1. Check and place the inputs.
        codes, centers = self._check_inputs(codes, centers)
        n, block = len(codes), self.block_size
        if self.noise is not None and noise_seed is None:
            raise ValueError("a noise model needs an explicit noise_seed, for reproducibility")
        steps_of = max(1, math.ceil((batch_size or block) / block))  # blocks per step
        size = self.model.config.generator.crop_size
        if depth_out is None:
            depth = small_page_array((n, size, size), np.float32)  # 4 KiB pages: see synthgen.memory
        elif depth_out.shape != (n, size, size) or depth_out.dtype != np.float32 or not depth_out.flags.c_contiguous:
            raise ValueError(f"depth_out must be a C-contiguous ({n}, {size}, {size}) float32 array")
        else:
            depth = depth_out
        pose = np.empty((n, self.model.config.vae.num_joints, 3), np.float32)
        done_in_step = 0
        for b, start in enumerate(range(0, n, block)):
            stop = min(start + block, n)
            # 2. Decode poses and generate depth on exactly one block (padded): bits never depend
            #    on n or batch_size.
            self._run_block(codes[start:stop], centers[start:stop], pose[start:stop], depth[start:stop])
            # 3. Optional sensor noise on metric depth, seeded per block.
            if self.noise is not None:
                depth[start:stop] = self._add_noise(depth[start:stop], centers[start:stop, 2],
                                                    np.random.default_rng([*map(int, noise_seed), b]))
            # 4. Report progress per step.
            done_in_step += stop - start
            if callback is not None and ((b + 1) % steps_of == 0 or stop == n):
                callback(done_in_step)
                done_in_step = 0
        # 5. The typed output.
        return GeneratedSamples(depth=depth, pose=pose, center=centers, latent=codes.numpy(),
                                joint_layout=self.model.joint_layout)

    def encode(self, joints: np.ndarray, centers: np.ndarray) -> torch.Tensor:
        """(n, J, 3) mm joints, (n, 3) mm centres → (n, 23) codes [VAE mean latent, root offset]."""
        joints = torch.from_numpy(np.array(joints, np.float32))  # a copy: memory maps are read-only
        centers_t = torch.as_tensor(np.asarray(centers, np.float32))
        out = []
        for start in range(0, len(joints), self.block_size):
            j, c = joints[start:start + self.block_size], centers_t[start:start + self.block_size]
            k = len(j)
            latent, root = self.model.encode_pose(_pad(j, self.block_size).to(self.device),
                                                  _pad(c, self.block_size).to(self.device))
            out.append(torch.cat([latent, root], dim=1)[:k].float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.model.config.code_dim)

    def decode(self, codes: torch.Tensor, centers: np.ndarray) -> np.ndarray:
        """(n, 23) codes, (n, 3) centres → (n, J, 3) mm joints (no depth), in fixed blocks."""
        codes, centers = self._check_inputs(codes, centers)
        out = np.empty((len(codes), self.model.config.vae.num_joints, 3), np.float32)
        for start in range(0, len(codes), self.block_size):
            stop = min(start + self.block_size, len(codes))
            out[start:stop] = self._decode_block(codes[start:stop], centers[start:stop])
        return out

    def generate_depth(self, codes: torch.Tensor, centers: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Depth alone of at most one block of codes (k ≤ block_size, (k, 23)) and their crop
        centres (k, 3) mm, through the path `precision` chose: what a pipeline step spends on the
        generator (benchmarks time it)."""
        if len(codes) > self.block_size:
            raise ValueError(f"at most one block ({self.block_size} codes), got {len(codes)}")
        return self._generate_block(codes, centers, self._fast, out)

    # --- internals ---------------------------------------------------------------------------

    def _check_inputs(self, codes, centers) -> tuple[torch.Tensor, np.ndarray]:
        codes = torch.as_tensor(np.asarray(codes, np.float32) if isinstance(codes, np.ndarray) else codes)
        codes = codes.detach().to("cpu", torch.float32).contiguous()
        centers = np.ascontiguousarray(centers, dtype=np.float32)
        dim = self.model.config.code_dim
        if codes.ndim != 2 or codes.shape[1] != dim:
            raise InputError(f"codes must be (n, {dim}), got {tuple(codes.shape)}")
        if centers.shape != (len(codes), 3):
            raise InputError(f"centers must be ({len(codes)}, 3), got {centers.shape}")
        if not torch.isfinite(codes).all() or not np.isfinite(centers).all():
            raise InputError("codes and centers must be finite")
        if len(centers) and centers[:, 2].min() <= 0:
            raise InputError("crop centres must lie in front of the camera (z > 0 mm)")
        return codes, centers

    def _decode_block(self, codes: torch.Tensor, centers: np.ndarray) -> np.ndarray:
        k, latent_dim = len(codes), self.model.config.vae.latent_dim
        padded = _pad(codes, self.block_size).to(self.device)
        c = _pad(torch.from_numpy(centers), self.block_size).to(self.device)
        joints = self.model.decode_pose(padded[:, :latent_dim], padded[:, latent_dim:], c)
        return joints[:k].float().cpu().numpy()

    def _generate_block(self, codes: torch.Tensor, centers: np.ndarray, fast: DepthGenerator | None = None,
                        out: np.ndarray | None = None) -> np.ndarray:
        """Depth of one (padded) block, into `out` (k, S, S) float32 if given: through `fast` if
        given, else the exact model. A full block's fast path writes straight into `out`."""
        k, size = len(codes), self.model.config.generator.crop_size
        out = np.empty((k, size, size), np.float32) if out is None else out
        target = torch.from_numpy(out)
        with torch.inference_mode():
            padded = _pad(codes, self.block_size).to(self.device)
            c = torch.from_numpy(np.ascontiguousarray(centers, np.float32))
            c = torch.cat([c, c[-1:].expand(self.block_size - k, 3)]).to(self.device)  # padding: a real centre
            if fast is not None and k == self.block_size:
                fast(padded, out=target, center=c)
            elif fast is not None:
                target.copy_(fast(padded, center=c)[:k])
            else:
                for start in range(0, k, SUB_BATCH):  # always whole sub-batches of the padded block
                    stop = min(start + SUB_BATCH, k)
                    depth = self.model.generate_depth(padded[start:start + SUB_BATCH], c[start:start + SUB_BATCH])
                    target[start:stop].copy_(depth[:stop - start])
        return out  # in [-1, 1]: every path ends in tanh, and snaps to the background +1

    def _run_block(self, codes: torch.Tensor, centers: np.ndarray, pose: np.ndarray, depth: np.ndarray) -> None:
        pose[:] = self._decode_block(codes, centers)
        self._generate_block(codes, centers, self._fast, out=depth)

    def _add_noise(self, depth: np.ndarray, center_z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        metric = camera.denormalize_depth(depth, center_z, self.cube_mm)
        return camera.normalize_depth(self.noise.apply(metric, rng), center_z, self.cube_mm)

    def _choose_precision(self, precision: str, check: bool) -> str:
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "fp32" or (precision == "auto" and self.device.type != "cpu"):
            return "fp32"
        if self.device.type != "cpu":
            raise InputError(f"precision {precision} is a CPU path; use fp32 or auto on {self.device.type}")
        if precision == "bf16" and not bf16_supported():
            raise InputError("precision bf16: this CPU has no bf16 support in oneDNN; use fp32-fast, fp32 or auto")
        if precision != "auto":
            candidates = [precision]
        else:  # fastest first
            candidates = ["bf16", "fp32-fast"] if bf16_supported() else ["fp32-fast"]
        if not check and precision != "auto":
            self._fast = DepthGenerator(self.model, FAST_DTYPES[candidates[0]])
            return candidates[0]
        # Calibrate on one block of prior samples: how far each fast path moves the depth.
        codes = LatentPrior().sample(self.model, self.block_size, torch.Generator().manual_seed(0))
        centers = CropCenters().sample(self.block_size, np.random.default_rng(0))
        exact = self._generate_block(codes, centers)
        for name in candidates:
            fast = DepthGenerator(self.model, FAST_DTYPES[name])
            error = depth_difference(exact, self._generate_block(codes, centers, fast), self.cube_mm)
            if error["mean_mm"] < FAST_TOLERANCE_MM and error["p99_mm"] < FAST_TOLERANCE_MM:
                self._fast, self.generator_error = fast, error
                return name
            if precision != "auto":
                raise InputError(f"precision {name} moves this model's depth by {error['mean_mm']:.2f} mm on average, "
                                 f"{error['p99_mm']:.2f} mm at the 99th percentile (limit {FAST_TOLERANCE_MM:g} mm); "
                                 f"use fp32 or auto")
        return "fp32"


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the first dimension to `size` rows (the network block)."""
    if len(x) == size:
        return x
    return torch.cat([x, x.new_zeros((size - len(x),) + tuple(x.shape[1:]))])


# --- chunk sources -------------------------------------------------------------------------


@dataclass
class _PipelineSource:
    """Shared by the sources: builds its pipeline lazily, once per process (picklable)."""

    model: object
    seed: int = 0
    noise: SensorNoise | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int | None = None
    cube_mm: float = CUBE_MM

    def __post_init__(self) -> None:
        self._pipeline: SamplingPipeline | None = None
        self._precision_checked = False
        self._buffers = BufferPool(MAX_PRODUCERS + 2)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_pipeline"] = None
        return state

    def recycle(self, chunk: GeneratedSamples) -> None:
        """Take back a chunk nobody will read again (`write_chunks` calls this once the chunk is
        written), so that a later chunk reuses its depth buffer.

        A 1024-crop float32 chunk is 64 MiB, above glibc's mmap threshold: a fresh buffer per
        chunk was returned to the kernel when freed and came back as new pages, zeroed again at
        first touch (~10 % of `sample`'s CPU; docs/performance.md, "Fresh pages").
        """
        self._buffers.give_back(chunk.depth)

    def _depth_buffer(self, count: int) -> np.ndarray:
        size = self.model.config.generator.crop_size
        return self._buffers.take((count, size, size), np.float32)

    @property
    def pipeline(self) -> SamplingPipeline:
        if self._pipeline is None:
            self._pipeline = SamplingPipeline(self.model, device=self.device, noise=self.noise,
                                              cube_mm=self.cube_mm)
            self._pipeline.use_precision(self.precision, check=not self._precision_checked)
            # Resolved and checked once; worker processes (which unpickle this) reuse it unchecked.
            self.precision, self._precision_checked = self._pipeline.precision, True
        return self._pipeline

    def _bounds(self, chunk_index: int, count: int) -> int:
        if not 0 < count <= self.chunk_size:
            raise ValueError(f"chunk of {count} samples, expected 1..{self.chunk_size}")
        return chunk_index * self.chunk_size


@dataclass
class PriorSource(_PipelineSource):
    """Samples from the prior: chunk k is a pure function of (seed, k) (and the model)."""

    prior: LatentPrior = field(default_factory=LatentPrior)
    centers: CropCenters = field(default_factory=CropCenters)

    def draw(self, chunk_index: int, count: int) -> tuple[torch.Tensor, np.ndarray]:
        """Chunk k's codes (count, 23) and centres (count, 3), without running the networks.

        A whole chunk is always drawn, so sample i does not depend on the store's size.
        """
        self._bounds(chunk_index, count)
        generator = torch.Generator().manual_seed(stream_seed(self.seed, chunk_index, LATENT_STREAM))
        codes = self.prior.sample(self.model, self.chunk_size, generator)[:count]
        rng = np.random.default_rng([self.seed, chunk_index, CENTER_STREAM])
        return codes, self.centers.sample(self.chunk_size, rng)[:count]

    def make_chunk(self, chunk_index: int, count: int, callback: Callable[[int], None] | None = None
                   ) -> GeneratedSamples:
        codes, centers = self.draw(chunk_index, count)
        return self.pipeline(codes, centers, noise_seed=(self.seed, chunk_index, NOISE_STREAM),
                             batch_size=self.batch_size, callback=callback, depth_out=self._depth_buffer(count))

    def params(self) -> dict:
        return {"prior": self.prior.to_dict(), "truncation": self.prior.truncation, "centers": self.centers.to_dict(),
                "noise": None if self.noise is None else self.noise.to_dict(), "block_size": BLOCK_SIZE,
                "precision": self.precision, "device": self.device}


@dataclass
class PoseSource(_PipelineSource):
    """Pose-conditioned generation: given joints (N, J, 3) mm (model layout) → encoder → codes → depth.

    The stored pose is the given pose (the label the depth was conditioned on); the stored
    latent is [VAE mean latent, root offset], whose decoding differs from it by the VAE's
    reconstruction error. Each crop is centred at hand_center(joints).
    """

    joints: np.ndarray | None = None

    def make_chunk(self, chunk_index: int, count: int, callback: Callable[[int], None] | None = None
                   ) -> GeneratedSamples:
        start = self._bounds(chunk_index, count)
        joints = np.ascontiguousarray(self.joints[start:start + count], dtype=np.float32)
        centers = camera.hand_center(joints)
        codes = self.pipeline.encode(joints, centers)
        out = self.pipeline(codes, centers, noise_seed=(self.seed, chunk_index, NOISE_STREAM),
                            batch_size=self.batch_size, callback=callback, depth_out=self._depth_buffer(count))
        out.pose = joints
        return out

    def params(self) -> dict:
        return {"noise": None if self.noise is None else self.noise.to_dict(), "block_size": BLOCK_SIZE,
                "precision": self.precision, "device": self.device, "centers": "hand_center(joints)"}


# --- streaming into a store ----------------------------------------------------------------


def write_store(writer: StoreWriter, source, *, workers: int = 1, producers: int | None = None,
                on_progress: Callable[[int], None] | None = None, finalize: bool = True) -> Path:
    """Produce every chunk the store still lacks (so it also resumes), then finalise.

    workers == 1: `producers` threads make chunks side by side, one torch thread each, while a
    writer thread converts, compresses and writes the finished ones (synthgen.data.produce's
    `write_chunks`). By default there is one producer per torch thread on the CPU (at most
    MAX_PRODUCERS) and one on CUDA. On two cores, two single-threaded producers sampled ~25 %
    faster than one producer with two threads: the writer's work then shares the cores instead
    of stalling a two-thread team at every layer (docs/benchmarks.md). The bits are the same:
    every block runs the same kernels whatever the thread count. `on_progress` counts generated
    samples, per pipeline step. workers > 1: spawned processes instead, one producer each.
    """
    from synthgen.data.produce import produce, write_chunks

    if workers > 1:
        produce(writer, source, workers=workers, on_progress=on_progress, finalize=False)
    else:
        pipeline = source.pipeline  # built (and its precision checked) once, before any thread uses it
        if producers is None:
            producers = 1 if pipeline.device.type != "cpu" else min(torch.get_num_threads(), MAX_PRODUCERS)
        write_chunks(writer, source, writer.missing_chunks(), on_progress, producers=producers,
                     progress_per_step=True)
    return writer.finalize() if finalize else writer.working_path


def write_samples(writer: StoreWriter, samples: GeneratedSamples, *, finalize: bool = True) -> Path:
    """Write samples that are already in memory (interpolations, walks) chunk by chunk."""
    for chunk_index in range(writer.num_chunks):
        start, stop = writer.chunk_bounds(chunk_index)
        writer.write(start, SampleBatch(depth=samples.depth[start:stop], pose=samples.pose[start:stop],
                                        center=samples.center[start:stop], latent=samples.latent[start:stop],
                                        joint_layout=samples.joint_layout))
    return writer.finalize() if finalize else writer.working_path


def write_path(kind: str, codes: torch.Tensor, centers: np.ndarray, pipeline: SamplingPipeline, *,
               out: str | Path | None, video: str | Path | None, fps: float = 24.0, overwrite: bool = False,
               camera: str = "hands2017", seed: int | None = None, params: dict | None = None,
               on_progress: Callable[[int], None] | None = None) -> dict:
    """An interpolation or walk (`kind`) → a new store at `out` (with its metadata: the model,
    the camera, `params`) and/or a video; returns what `write_sequence` returns."""
    from synthgen.data.schema import StoreMetadata

    params = params or {}
    writer = None
    if out is not None:
        model = pipeline.model
        metadata = StoreMetadata(producer=kind, seed=seed, camera=camera, model_checksum=model.checksum,
                                 parameters=params, joint_layout=model.joint_layout,
                                 input_convention=model.input_convention)
        writer = StoreWriter.create(out, len(codes), metadata, with_latent=True, overwrite=overwrite)
    return write_sequence(pipeline, codes, centers, writer=writer, video_path=video, fps=fps,
                          mode=params.get("mode", ""), on_progress=on_progress)


def write_sequence(pipeline: SamplingPipeline, codes: torch.Tensor, centers: np.ndarray, *,
                   writer: StoreWriter | None = None, video_path: str | Path | None = None, fps: float = 24.0,
                   mode: str = "", seed: int = 0, on_progress: Callable[[int], None] | None = None) -> dict:
    """Frames of a path (interpolation, walk) → a store and/or a video, one chunk at a time.

    Memory stays bounded by one chunk whatever the length. Returns {"store": path or None,
    "video": path or None, "frames": n, "mesh": whether the IK mesh panel was drawn}.
    """
    from synthgen.sampling.video import MeshPanels, VideoWriter, write_frames

    n = len(codes)
    step = writer.chunk_size if writer is not None else DEFAULT_CHUNK_SIZE
    # The mesh panel fits the 21-joint hand model: only for canonical poses.
    canonical = pipeline.model.joint_layout == "hands2017"
    mesh = MeshPanels() if video_path is not None and canonical else None
    video = VideoWriter(video_path, fps) if video_path is not None else None
    try:
        for start in range(0, n, step):
            stop = min(start + step, n)
            samples = pipeline(codes[start:stop], centers[start:stop], noise_seed=(seed, start // step, NOISE_STREAM))
            if writer is not None:
                writer.write(start, samples.to_batch())
            if video is not None:
                write_frames(video, samples, mesh, first_index=start, total=n, mode=mode, cube_mm=pipeline.cube_mm,
                             joint_layout=pipeline.model.joint_layout)
            if on_progress is not None:
                on_progress(stop - start)
    except BaseException:
        if video is not None:
            video.abort()
        raise
    result = {"store": None, "video": None, "frames": n, "mesh": bool(mesh and mesh.available)}
    if video is not None:
        result["video"] = video.close()
    if writer is not None:
        result["store"] = writer.finalize()
    return result
