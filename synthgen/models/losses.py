"""The Crossing Nets losses as pure functions of tensors (weights all 1, as in the paper)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def vae_loss(recon: torch.Tensor, pose: torch.Tensor, mean: torch.Tensor, log_sigma: torch.Tensor,
             kl_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """kl_weight·KL (paper: 1) + 0.5·SSE (50 mm units); sums over dimensions, mean over the batch.

    Returns (total, kl, sse).
    """
    sse = (recon - pose).pow(2).flatten(1).sum(1).mean()
    kl = 0.5 * (mean.pow(2) + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum(1).mean()
    return kl_weight * kl + 0.5 * sse, kl, sse


def recons_loss(real: torch.Tensor, fake: torch.Tensor, clip: float = 1.0, norm: str = "l2") -> torch.Tensor:
    """L_recons = mean(clip((x − G(Ali z))², 0, clip)) over labeled pairs; the paper clips at 1.

    Clipping at 1 also zeroes the gradient of silhouette errors where hand (≲ 0) meets
    background (+1); clip = 4 (the largest possible squared error) disables clipping.
    norm="l1" (extension) uses mean |x − G(Ali z)| instead: where G is unsure whether a pixel
    is hand or background, the squared error's optimum is their average (a blurred halo that
    reads as hand), the absolute error's is the likelier of the two (a crisp silhouette).
    """
    if norm == "l1":
        return (real - fake).abs().mean()
    return (real - fake).pow(2).clamp(max=clip).mean()


def skeleton_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Extension (skeleton generator): mean |Δ| between the pose head's crop coordinates and
    the true joints' (crop units: 1 = half the cube, 125 mm)."""
    return (predicted - target).abs().mean()


def d_gan_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """Discriminator's BCE: real → 1, generated → 0 (mean of the two)."""
    return 0.5 * (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """Generator's L_gan: squared distance of the batch means of the trunk's last conv features."""
    return (real_features.detach().mean(0) - fake_features.mean(0)).pow(2).mean()


def posterior_loss(posterior: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """L_pos: MSE between the posterior head's 23-d output and [VAE mean, root offset]."""
    return F.mse_loss(posterior, code)


def smoothness_loss(z: torch.Tensor, z_mix: torch.Tensor, f_real: torch.Tensor, f_fake: torch.Tensor,
                    f_fake_mix: torch.Tensor) -> torch.Tensor:
    """L_smo (distance constraint), the released code's form:

    mean[((z − z̃) − (f(x) − f(G(Ali z̃))))² + (f(x) − f(G(Ali z)))²]

    z, z_mix: (B, 23) codes of the labeled batch and their convex mixtures; f_real = f(x),
    f_fake = f(G(Ali z)), f_fake_mix = f(G(Ali z̃)).
    """
    return ((z - z_mix) - (f_real - f_fake_mix)).pow(2).mean() + (f_real - f_fake).pow(2).mean()


def mix_codes(z: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """z̃: for each row, a random convex combination of `k` rows of the batch (Dirichlet(1))."""
    B = z.shape[0]
    idx = torch.randint(0, B, (B, k), generator=generator)
    w = -torch.rand(B, k, generator=generator).clamp_min(1e-12).log()  # Exp(1) → Dirichlet(1) after norm
    w = (w / w.sum(1, keepdim=True)).to(z.dtype)
    return (w[..., None] * z[idx]).sum(1)
