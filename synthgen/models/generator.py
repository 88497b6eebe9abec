"""The depth generator and the alignment layer that maps pose codes into its input space.

Generator: tanh(z) → FC(23→512)+BN+ReLU → 32×4×4 → 4× [ConvTranspose 32→32, k6 s2 p2, BN,
ReLU] → ConvTranspose 32→1 (k6 s2 p2) + tanh → 1×128×128 normalised depth (background +1).
"""

from __future__ import annotations

import torch
from torch import nn

from synthgen.models.config import GeneratorConfig
from synthgen.models.folding import fold_batchnorm
from synthgen.models.kinematic import KinematicDecoder


class Alignment(nn.Module):
    """FC(23→23) + BN: pose latent + root offset → the generator's input space."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)  # BN's β is the bias
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        # fp32 even under autocast: 23×23 multiplies cost nothing, and the skeleton generator's
        # pose head inverts this map, which would magnify bf16 rounding of its output.
        with torch.autocast(code.device.type, enabled=False):
            return self.bn(self.fc(code.float()))


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c, k = config.channels, config.kernel_size
        pad = (k - 2) // 2  # k6 s2 p2: out = 2·in
        self.fc = nn.Linear(config.input_dim, config.fc_dim, bias=False)
        self.fc_bn = nn.BatchNorm1d(config.fc_dim)
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(c, c, k, 2, pad, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for _ in range(config.num_upsamples)
        )
        self.out = nn.ConvTranspose2d(c, 1, k, 2, pad)
        nn.init.constant_(self.out.bias, config.out_bias_init)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What a stage that trains G updates: all of it (see SkeletonGenerator's)."""
        return list(self.parameters())

    def forward(self, z: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 23) → (B, 1, S, S) in [-1, 1]. The paper's G never sees the crop centre."""
        cfg = self.config
        h = torch.relu(self.fc_bn(self.fc(torch.tanh(z))))
        h = h.view(-1, cfg.channels, cfg.base_size, cfg.base_size)  # (B, 32, 4, 4)
        for up in self.ups:
            h = up(h)  # (B, 32, 2s, 2s)
        return torch.tanh(self.out(h))  # (B, 1, 128, 128)


def crop_coordinates(relative: torch.Tensor, center: torch.Tensor, half_cube: float) -> torch.Tensor:
    """Joints → where they lie in their crop, with the crop camera's perspective
    (`hand.camera.crop_intrinsics`): (u, v) across the crop in [-1, 1] and depth normalised
    like the crop's. relative (B, J, 3): joints minus the crop centre; center (B, 3); both in one
    unit, of which half_cube is half the cube's edge."""
    absolute = relative + center[:, None]
    uv = (center[:, None, 2:3] * absolute[..., :2] / absolute[..., 2:3] - center[:, None, :2]) / half_cube
    return torch.cat([uv, relative[..., 2:3] / half_cube], -1)


def skeleton_bones(parents: tuple[int, ...], fingers: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """The capsules a `SkeletonGenerator` draws: every (parent, child) bone of a joint layout, and
    links between the bases of neighbouring non-thumb fingers, which span the palm between them."""
    bones = [(p, c) for c, p in enumerate(parents) if p >= 0]
    root = parents.index(-1)
    bases = sorted((fingers[c], c) for c, p in enumerate(parents) if p == root and fingers[c] >= 2)
    bones += [(a, b) for (_, a), (_, b) in zip(bases, bases[1:])]
    return tuple(bones)


class PoseHead(nn.Module):
    """The skeleton generator's pose: joints in crop coordinates and a radius per capsule, from
    G's 23-d input.

    A pose from a 23-d code is what the VAE decoder computes, and an MLP relearning it from
    scratch is slow (12 mm after 3 000 steps, against the decoder's 5.6 mm). So the head is the
    decoder's shape read through a linear map (`init_from_pose_code` sets the map to undo Ali
    and copies the decoder: it starts as Dec's pose, placed in the crop orthographically or,
    with `sees_center`, through the crop camera), plus (`pose_residual`) a residual MLP, zero at
    the start, for what that placement misses; the radii come from a second MLP. Without the
    residual the head draws exactly the decoded pose: the label a sample is stored with.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        j, latent = config.num_joints, config.input_dim - 3
        self.unpack = nn.Linear(config.input_dim, config.input_dim)  # → [pose latent, root offset]
        if config.decoder == "kinematic":
            unit_mm = config.pose_scale * config.cube_mm / 2
            self.decoder = KinematicDecoder(latent, config.decoder_hidden, unit_mm, config.decoder_scale_range)
        else:
            self.dec_fc = nn.Linear(latent, config.decoder_hidden)
            self.dec_out = nn.Linear(config.decoder_hidden, 3 * j)
        self.residual = nn.Sequential(nn.Linear(config.input_dim, config.skeleton_hidden), nn.ReLU(inplace=True),
                                      nn.Linear(config.skeleton_hidden, config.skeleton_hidden), nn.ReLU(inplace=True),
                                      nn.Linear(config.skeleton_hidden, 3 * j)) if config.pose_residual else None
        # Radii: their own MLP, as L_recons trains them and must not reach the joints' layers.
        self.radii = nn.Sequential(nn.Linear(config.input_dim, config.skeleton_hidden // 4), nn.ReLU(inplace=True),
                                   nn.Linear(config.skeleton_hidden // 4, len(config.bones)))
        for last in (self.radii[-1],) + ((self.residual[-1],) if config.pose_residual else ()):
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        # Set by `init_from_pose_code`; saved with the weights so that it happens once per model.
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def forward(self, z: torch.Tensor, center: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 23) → joints (B, J, 3) in crop coordinates (u, v, normalised depth), radii (B, bones).

        With `config.sees_center`, center (B, 3) mm places the pose with the crop camera's
        perspective (as `CrossingNets.crop_coordinates` does), else orthographically."""
        cfg, j = self.config, self.config.num_joints
        if cfg.sees_center and center is None:
            raise ValueError("this generator draws each hand as seen from its crop centre: pass center (B, 3) mm")
        with torch.autocast(z.device.type, enabled=False):  # fp32 always: bf16 would move joints by mm
            z = z.float()
            latent, offset = self.unpack(z).split([cfg.input_dim - 3, 3], 1)
            pose = (self.decode(latent) + offset[:, None]) * cfg.pose_scale  # centre-relative, crop units
            if cfg.sees_center:
                pose = crop_coordinates(pose, center.float() / (cfg.cube_mm / 2), 1.0)
            if self.residual is not None:
                pose = pose + self.residual(z).view(-1, j, 3)
            radii = self.radii(z)
        return pose, nn.functional.softplus(radii + cfg.radius_init_logit)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, latent) → (B, J, 3) root-relative pose in unit_mm: the copy of the VAE decoder."""
        if self.config.decoder == "kinematic":
            return self.decoder(latent)
        hidden = nn.functional.leaky_relu(self.dec_fc(latent), self.config.decoder_leak)
        return self.dec_out(hidden).view(-1, self.config.num_joints, 3)

    def decoder_modules(self) -> list[nn.Module]:
        return [self.decoder] if self.config.decoder == "kinematic" else [self.dec_fc, self.dec_out]

    @torch.no_grad()
    def init_from_pose_code(self, vae: nn.Module, align: Alignment) -> None:
        """Start as Dec(code) + offset: `unpack` inverts Ali's affine map (BN at its running
        statistics), the VAE's decoder layers are copied."""
        weight, bias = fold_batchnorm(align.fc.weight, align.bn)  # Ali(code) = weight·code + bias
        inverse = torch.linalg.inv(weight.double())
        self.unpack.weight.copy_(inverse.float())
        self.unpack.bias.copy_((-inverse @ bias.double()).float())
        for mine, theirs in zip(self.decoder_modules(), vae.decoder_modules(), strict=True):
            mine.load_state_dict(theirs.state_dict())
        self.initialised.fill_(True)


class SkeletonGenerator(nn.Module):
    """Extension (`arch = "skeleton"`): G draws the hand from a skeleton it predicts itself.

    The paper's G must turn a 23-d code into pixels through a 4×4 bottleneck: where a finger is
    has to be learned as a global-to-spatial map, and on a CPU budget it stays a mitten. Here a
    pose head (`PoseHead`) places the joints in the crop and sizes a capsule per bone; the
    capsules are drawn analytically on a coarse grid (signed distance, surface depth) and
    transposed convs refine them to the crop. The interface is unchanged (23-d in, one crop
    out). The head learns the pose from labeled poses only (`joints`, losses.skeleton_loss):
    the drawing sees its joints detached, so L_recons shapes the radii and the convs, and
    cannot bend the skeleton to hide its own errors.
    """

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        bones = torch.tensor(config.bones, dtype=torch.long)
        self.register_buffer("bone_start", bones[:, 0].clone(), persistent=False)
        self.register_buffer("bone_end", bones[:, 1].clone(), persistent=False)
        n, grid, c, k = len(config.bones), config.base_size, config.channels, config.kernel_size
        self.pose = PoseHead(config)
        # Pixel centres of the coarse grid in crop coordinates: cell i covers crop pixels
        # [s·i, s·i + s) of the crop's S pixels, whose centres sit at (p − (S − 1)/2) / (S / 2).
        s, size = config.crop_size // grid, config.crop_size
        centres = (torch.arange(grid, dtype=torch.float32) * s + (s - 1) / 2 - (size - 1) / 2) / (size / 2)
        self.register_buffer("grid_v", centres.view(grid, 1).expand(grid, grid).reshape(-1).clone(), persistent=False)
        self.register_buffer("grid_u", centres.view(1, grid).expand(grid, grid).reshape(-1).clone(), persistent=False)
        self.mix = nn.Sequential(nn.Conv2d(2 * n, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                 nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        pad = (k - 2) // 2
        self.ups = nn.ModuleList(
            nn.Sequential(nn.ConvTranspose2d(c, c, k, 2, pad, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for _ in range(config.num_upsamples)
        )
        self.out = nn.ConvTranspose2d(c, 1, k, 2, pad)
        nn.init.constant_(self.out.bias, config.out_bias_init)

    def joints(self, z: torch.Tensor, center: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 23) → joints (B, J, 3) in crop coordinates (u, v, normalised depth), radii (B, bones)."""
        return self.pose(z, center)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """All but the pose head's copies of Ali⁻¹ and the VAE decoder, which stay as
        `init_from_pose_code` set them (the VAE and Ali are fixed while this G trains)."""
        frozen = {id(p) for m in (self.pose.unpack, *self.pose.decoder_modules()) for p in m.parameters()}
        return [p for p in self.parameters() if id(p) not in frozen]

    def capsules(self, joints: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
        """Per-capsule features on the coarse grid, (B, 2·bones, g, g): squashed signed distance
        to the capsule's surface and the depth of that surface (its axis' depth away from it)."""
        a, b = joints[:, self.bone_start], joints[:, self.bone_end]  # (B, n, 3)
        ab = b - a
        du = self.grid_u - a[..., 0:1]  # (B, n, g²)
        dv = self.grid_v - a[..., 1:2]
        length2 = ab[..., 0:1].square() + ab[..., 1:2].square()
        t = ((du * ab[..., 0:1] + dv * ab[..., 1:2]) / (length2 + 1e-6)).clamp(0, 1)
        dist2 = (du - t * ab[..., 0:1]).square() + (dv - t * ab[..., 1:2]).square()
        r = radii[..., None]
        sdf = torch.sqrt(dist2 + 1e-8) - r
        surface = a[..., 2:3] + t * ab[..., 2:3] - torch.sqrt((r.square() - dist2).clamp(min=0) + 1e-8)
        grid = self.config.base_size
        features = torch.cat([torch.tanh(sdf * self.config.sdf_scale), surface.clamp(-1, 1)], 1)
        return features.view(-1, features.shape[1], grid, grid)

    def forward(self, z: torch.Tensor, center: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 23) → (B, 1, S, S) in [-1, 1]; center (B, 3) mm if `config.sees_center`."""
        joints, radii = self.joints(z, center)
        h = self.mix(self.capsules(joints.detach(), radii))
        for up in self.ups:
            h = up(h)
        return torch.tanh(self.out(h))
