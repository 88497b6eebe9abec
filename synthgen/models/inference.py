"""Inference-only forms of the trained networks: the same functions, computed faster on a CPU.

`DepthGenerator` (Ali + G: code → depth) and `PoseEstimator` (depth → pose through D's branch,
the posterior head and the VAE decoder) are frozen snapshots of a `CrossingNets`, rewritten by
two transformations that are exact in real arithmetic and change only float rounding:

* Batch norm folded into the layer before it. In eval mode BN is a per-channel affine map
  y = s·x + t, so W ← s·W and b ← s·b + t, and one pass over the activations disappears.
* Stride-2 transposed convolutions as stride-1 convolutions on phase images: a transposed conv
  (k 6, stride 2, pad 2, C→C') equals a 3×3 conv C→4C' whose four output groups are the four
  phases (row parity, column parity) of the 2× larger output, interleaved afterwards. The
  multiply count is the same, but oneDNN runs stride-1 3×3 convs far faster than its transposed
  convs (above all the last one, with a single output channel). Channels are ordered (phase,
  channel), so in channels_last memory the interleave copies runs of 2C contiguous values.

Every conv runs channels_last through `Conv` (oneDNN, prepacked weights, fused activation), and
`DepthGenerator` works through a block in sub-batches that keep the activations in cache.

Measured on the default model (docs/performance.md): the fp32 generator rewrite differs from
`CrossingNets.generate_depth` by ~2e-4 mm on average; `PoseEstimator` from
`CrossingNets.estimate` by a few µm per joint (< 5e-3 mm).

bf16 (`DepthGenerator(model, torch.bfloat16)`): the last transposed conv and the output conv —
the two layers at the highest resolutions, 77 % of the multiplies — run in bf16 (oneDNN
accumulates in fp32); Ali, the FC layer, the earlier transposed convs and tanh stay fp32. Rounding
matters most early: a bf16 rounding of the 23-d code or the 512-wide FC layer moves the default
model's depth by 2–7 mm on average, one at 8×8 or 16×16 is magnified by every upsampling after
it (99th percentile 1–2.6 mm), while the last two layers together add ~0.2 mm (measured layer by
layer in docs/performance.md). Whether a model's bf16 path is close enough is measured, not
assumed: see synthgen.sampling.pipeline (precision "auto").
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from synthgen.conventions import CUBE_MM
from synthgen.models.evaluate import foreground
from synthgen.models.folding import fold_batchnorm

#: Trailing convolutions (the last transposed conv, the output conv) that the bf16 path runs in bf16.
BF16_LAYERS = 2
#: Samples per network call inside a block: keeps a layer's activations in cache (a 256-sample
#: block's widest activation is 67 MB in bf16); 1.3x faster than whole blocks on this CPU.
SUB_BATCH = 32


# --- the two rewrites ------------------------------------------------------------------------


def transposed_conv_as_phases(weight: torch.Tensor, padding: int) -> tuple[torch.Tensor, int]:
    """ConvTranspose2d weight (C, C', k, k), stride 2 → Conv2d weight (4C', C, K, K) and its padding.

    Along each axis y[2m + r] = Σ_s x[m + s]·w[r + p - 2s] (phase r, input offset s), which is a
    stride-1 conv with one kernel per phase. Output channel (2·ry + rx)·C' + c is phase (ry, rx) of
    channel c; `interleave_phases` puts the phases back in place.
    """
    cin, cout, kernel, _ = weight.shape
    taps = [(r, s, r + padding - 2 * s) for r in (0, 1) for s in range(-kernel, kernel + 1)
            if 0 <= r + padding - 2 * s < kernel]  # (phase, input offset, kernel index)
    pad = max(abs(s) for _, s, _ in taps)
    out = weight.new_zeros(2, 2, cout, cin, 2 * pad + 1, 2 * pad + 1)
    for ry, sy, ky in taps:
        for rx, sx, kx in taps:
            out[ry, rx, :, :, sy + pad, sx + pad] = weight[:, :, ky, kx].T
    return out.reshape(4 * cout, cin, 2 * pad + 1, 2 * pad + 1), pad


def interleave_phases(y: torch.Tensor) -> torch.Tensor:
    """(B, 4C, H, W) phase-major channels → (B, C, 2H, 2W), channels_last (one copy)."""
    b, c4, h, w = y.shape
    c = c4 // 4
    phases = y.permute(0, 2, 3, 1).reshape(b, h, w, 2, 2 * c).transpose(2, 3)  # (B, H, ry, W, rx·C)
    return phases.reshape(b, 2 * h, 2 * w, c).permute(0, 3, 1, 2)


class Conv:
    """A conv layer frozen for inference, channels_last: conv2d + bias, then ReLU (leak 0), leaky
    ReLU (leak > 0) or nothing (None).

    On the CPU it runs oneDNN's fused convolution, the op torch.compile's CPU backend emits
    (torch.ops.mkldnn._convolution_pointwise; torch is pinned in pyproject.toml), with the weight
    reordered once into oneDNN's blocked layout for inputs of `sample_shape` (C, H, W). That is
    the same function as `reference` (to float rounding; tests/test_inference.py), but F.conv2d
    sends 3×3 convs of a single frame to a slow im2col path (its heuristic wants ≥ 2 samples or
    > 20 480 input values), reorders the weight on every call and applies the activation in a
    second pass over the output.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, stride: int, padding: int, leak: float | None,
                 dtype: torch.dtype, sample_shape: tuple[int, int, int]):
        self.weight = weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
        self.bias = bias.detach().to(dtype)
        self.stride, self.padding, self.leak = stride, padding, leak
        self.attr, self.scalars = (("none", []) if leak is None else ("relu", []) if leak == 0
                                   else ("leaky_relu", [leak]))
        self.packed = None
        if self.weight.device.type == "cpu" and torch.backends.mkldnn.is_available():
            self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(
                self.weight.to_mkldnn(), [padding] * 2, [stride] * 2, [1, 1], 1, [1, *sample_shape])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return self.reference(x)
        return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias, [self.padding] * 2,
                                                      [self.stride] * 2, [1, 1], 1, self.attr, self.scalars, "")

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The same layer with public ops (any device)."""
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return y if self.leak is None else torch.relu_(y) if self.leak == 0 else F.leaky_relu_(y, self.leak)


# --- code → depth ----------------------------------------------------------------------------


class DepthGenerator:
    """`CrossingNets.generate_depth` as an inference snapshot: (B, 23) codes → (B, S, S) depth.

    dtype float32: the same function up to float rounding. bfloat16: see the module docstring.
    Later changes to the model's weights do not reach the snapshot.
    """

    def __init__(self, model, dtype: torch.dtype = torch.float32, sub_batch: int = SUB_BATCH):
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be float32 or bfloat16, got {dtype}")
        ali, g = model.align, model.generator
        self.dtype, self.sub_batch = dtype, int(sub_batch)
        self.channels, self.base_size = g.config.channels, g.config.base_size
        self.snap, self.background = model.config.generator.background_snap, model.normalisation.background
        self.skeleton = g.config.arch == "skeleton"
        size = g.config.base_size
        with torch.no_grad():
            if self.skeleton:
                # Ali and the pose head as the model computes them, unfolded and in fp32: the head
                # inverts Ali (condition number ~1e4), so another rounding of Ali's output moves
                # joints by up to 0.1 mm, and the capsules' edges turn that into ~1 mm of depth
                # at the 99th percentile. Then the capsules (a pure function of joints and radii,
                # `g.capsules`) and the mixing convs with BN folded.
                self.align_module = copy.deepcopy(ali).eval().float()
                self.pose = copy.deepcopy(g.pose).eval().float()
                self.capsules = g.capsules
                (c1, bn1, _), (c2, bn2, _) = g.mix[:3], g.mix[3:]
                self.mix = [Conv(*fold_batchnorm(c.weight, bn), 1, c.padding[0], 0, torch.float32,
                                 (c.in_channels, size, size)) for c, bn in ((c1, bn1), (c2, bn2))]
            else:
                self.align = fold_batchnorm(ali.fc.weight, ali.bn)
                self.fc = fold_batchnorm(g.fc.weight, g.fc_bn)
            self.ups = []  # 3×3 convs with phase-major output channels, each followed by an interleave
            for i, up in enumerate(g.ups):
                conv, bn = up[0], up[1]
                w, b = fold_batchnorm(conv.weight, bn, out_dim=1)
                w, pad = transposed_conv_as_phases(w, conv.padding[0])
                layer_dtype = dtype if i >= len(g.ups) + 1 - BF16_LAYERS else torch.float32
                self.ups.append(Conv(w, b.repeat(4), 1, pad, 0, layer_dtype, (self.channels, size, size)))
                size *= 2
            w, pad = transposed_conv_as_phases(g.out.weight, g.out.padding[0])
            self.out = Conv(w, g.out.bias.repeat(4), 1, pad, None, dtype, (self.channels, size, size))

    @torch.inference_mode()
    def __call__(self, code: torch.Tensor, out: torch.Tensor | None = None,
                 center: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 23) codes → (B, S, S) float32 depth, written into `out` if given (contiguous).
        center: (B, 3) mm crop centres, for a generator that sees them (else ignored)."""
        code = code.to(torch.float32)
        size = self.base_size * 2 ** (len(self.ups) + 1)
        depth = code.new_empty(len(code), size, size) if out is None else out
        if self.skeleton:  # the whole call at once, as `generate_depth` does: the same bits
            inputs = self.pose(self.align_module(code), center)  # the head casts center to fp32
        else:
            inputs = (code,)
        for start in range(0, len(code), self.sub_batch):
            part = slice(start, start + self.sub_batch)
            self._forward([x[part] for x in inputs], depth[part])
        return depth

    def _forward(self, inputs: list[torch.Tensor], out: torch.Tensor) -> None:
        """One sub-batch: inputs = [joints, radii] for the skeleton G, else [code]."""
        if self.skeleton:
            h = self.capsules(*inputs).contiguous(memory_format=torch.channels_last)
            for conv in self.mix:
                h = conv(h)
        else:
            (code,) = inputs
            h = torch.tanh(F.linear(code, *self.align))
            h = torch.relu(F.linear(h, *self.fc))
            h = h.view(-1, self.channels, self.base_size, self.base_size).contiguous(memory_format=torch.channels_last)
        for conv in self.ups:
            h = interleave_phases(conv(h.to(conv.weight.dtype)))
        y = self.out(h.to(self.out.weight.dtype))  # (B, 4, H, W): the output's four phases
        b, _, height, width = y.shape
        phases = y.permute(0, 2, 3, 1).float().tanh_()  # (B, H, W, 2·ry + rx), tanh in fp32
        # Interleave the phases into out (B, 2H, 2W): each (rx = 0, rx = 1) pair moves as one int64.
        pairs = phases.view(torch.int64).view(b, height, width, 2).transpose(2, 3)  # (B, H, ry, W)
        out.view(torch.int64).view(b, height, 2, width).copy_(pairs)
        if self.snap < 1.0:
            out.masked_fill_(out >= self.snap, self.background)


def depth_difference(reference: np.ndarray, other: np.ndarray, cube_mm: float = CUBE_MM) -> dict:
    """How far `other` depth crops are from `reference` ones, in mm (both normalised, (N, S, S)).

    mean_mm, p99_mm: mean and 99th percentile of |Δdepth| over the pixels that are hand
    (foreground) in either crop — a pixel that is hand in one and background in the other counts
    with its full jump; max_mm: the largest |Δ| anywhere; silhouette_flips: the fraction of those
    pixels that are hand in only one of the two crops.
    """
    reference, other = np.asarray(reference, np.float32), np.asarray(other, np.float32)
    hand_ref, hand_other = foreground(reference), foreground(other)
    either = hand_ref | hand_other
    diff = np.abs(other - reference) * (cube_mm / 2)
    inside = diff[either]
    if inside.size == 0:
        return {"mean_mm": 0.0, "p99_mm": 0.0, "max_mm": float(diff.max(initial=0.0)), "silhouette_flips": 0.0}
    return {"mean_mm": float(inside.mean()), "p99_mm": float(np.percentile(inside, 99)),
            "max_mm": float(diff.max()), "silhouette_flips": float((hand_ref != hand_other).sum() / either.sum())}


# --- depth → pose ----------------------------------------------------------------------------


class PoseEstimator:
    """`CrossingNets.estimate` as an inference snapshot: (B, S, S) depth, (B, 3) centres → (B, J, 3) mm.

    BN folded into the convs and the FC layer, prepacked channels_last convs with the leaky ReLU
    fused: the per-call overhead that dominates single frames. The result equals `estimate`'s to
    < 5e-3 mm per joint (tests/test_inference.py).
    """

    def __init__(self, model):
        d, vae = model.discriminator, model.vae
        blocks = list(d.convs[: d.config.branch_after]) + list(d.posterior.convs)
        size = d.config.crop_size
        with torch.no_grad():
            self.convs = []
            for conv, bn, act in blocks:
                w, b = fold_batchnorm(conv.weight, bn)
                self.convs.append(Conv(w, b, conv.stride[0], conv.padding[0], act.negative_slope, torch.float32,
                                       (conv.in_channels, size, size)))
                size //= 2
            head = d.posterior
            fc_w, self.fc_b = fold_batchnorm(head.fc.weight, head.bn)
            # The flattened features are read in channels_last order (H, W, C): permute the FC's columns.
            self.fc_w = fc_w.view(len(fc_w), d.config.channels, size, size).permute(0, 2, 3, 1).reshape(len(fc_w), -1)
            self.fc_w = self.fc_w.contiguous()
            self.head_leak = head.leak
            self.out = (head.out.weight.detach(), head.out.bias.detach())
            self.kinematic = vae.kinematic if vae.config.decoder == "kinematic" else None
            self.decoder = () if self.kinematic is not None else (
                vae.dec_fc.weight.detach(), vae.dec_fc.bias.detach(), vae.dec_out.weight.detach(),
                vae.dec_out.bias.detach())
        self.decoder_leak = vae.config.decoder_leak
        self.latent_dim, self.num_joints = vae.config.latent_dim, vae.config.num_joints
        self.unit_mm = model.normalisation.unit_mm

    @torch.inference_mode()
    def __call__(self, depth: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        depth, center = torch.as_tensor(depth, dtype=torch.float32), torch.as_tensor(center, dtype=torch.float32)
        h = depth.reshape(-1, 1, depth.shape[-2], depth.shape[-1])
        for conv in self.convs:
            h = conv(h)
        h = h.permute(0, 2, 3, 1).reshape(len(h), -1)  # a view: NHWC order, matching fc_w
        h = F.leaky_relu_(F.linear(h, self.fc_w, self.fc_b), self.head_leak)
        latent, root = F.linear(h, *self.out).split([self.latent_dim, 3], dim=1)
        if self.kinematic is not None:
            relative = self.kinematic(latent)
        else:
            w1, b1, w2, b2 = self.decoder
            relative = F.linear(F.leaky_relu_(F.linear(latent, w1, b1), self.decoder_leak), w2, b2)
        return (relative.view(-1, self.num_joints, 3) + root[:, None]) * self.unit_mm + center[:, None]
