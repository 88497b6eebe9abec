"""Realism metrics as pure functions over arrays (float64 inside, documented inputs).

Pair level (a generated crop against the mesh render of its own pose):
    silhouette_iou, masked_depth_mae_mm, joint_error_mm
Set level (embeddings of generated vs reference crops in a frozen feature network):
    FeatureStats + frechet_distance, kernel_inception_distance, knn_precision_recall,
    coverage (Naeem et al. 2020, in pose space), nearest_distances (memorisation),
    bootstrap_interval.

References: FD — Heusel et al. 2017; KID — Bińkowski et al. 2018 (unbiased MMD², cubic
polynomial kernel, mean over random subsets); precision/recall — Kynkäänniemi et al. 2019
(k-NN manifolds); coverage — Naeem et al. 2020.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from synthgen.conventions import CUBE_MM
from synthgen.models.evaluate import foreground, silhouette_iou  # noqa: F401 (re-exported)

# --- pair level ------------------------------------------------------------------------------
# foreground and silhouette_iou are the model evaluation's own (synthgen.models.evaluate), so
# training-time and scoring-time silhouettes are the same numbers.


def masked_depth_mae_mm(a: np.ndarray, b: np.ndarray, cube_mm: float = CUBE_MM) -> np.ndarray:
    """(n,) mean |Δdepth| in mm over pixels that are hand in both crops; NaN where none overlap.

    Both crops share the sample's crop centre, so a normalised difference times cube/2 is mm.
    """
    both = foreground(a) & foreground(b)
    diff = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)) * (cube_mm / 2)
    count = both.sum(axis=(1, 2))
    total = np.where(both, diff, 0.0).sum(axis=(1, 2))
    return np.divide(total, count, out=np.full(len(count), np.nan), where=count > 0)


def joint_error_mm(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(n, J, 3) × 2 in mm → (n,) mean Euclidean joint error per sample."""
    return np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(true, np.float64), axis=-1).mean(axis=-1)


# --- set level: Fréchet distance -------------------------------------------------------------


@dataclass
class FeatureStats:
    """Streaming mean / covariance of embeddings (float64 sums), as torchmetrics keeps FID state."""

    total: np.ndarray
    outer: np.ndarray
    count: int = 0

    @classmethod
    def empty(cls, dim: int) -> FeatureStats:
        return cls(np.zeros(dim), np.zeros((dim, dim)))

    def update(self, features: np.ndarray) -> None:
        x = np.asarray(features, np.float64)
        self.total += x.sum(axis=0)
        self.outer += x.T @ x
        self.count += len(x)

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count < 2:
            raise ValueError("need at least two embeddings for a covariance")
        mean = self.total / self.count
        cov = (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return mean, cov

    @classmethod
    def of(cls, features: np.ndarray) -> FeatureStats:
        stats = cls.empty(features.shape[1])
        stats.update(features)
        return stats


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^½).

    tr((Σ1 Σ2)^½) is computed as Σ √λ of the symmetric PSD matrix Σ1^½ Σ2 Σ1^½ (same eigenvalues),
    which needs only eigh and stays real, unlike a general sqrtm.
    """
    s1 = _sqrtm_psd(cov1)
    eig = np.linalg.eigvalsh(s1 @ cov2 @ s1)
    trace_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    return float(max(((mean1 - mean2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt, 0.0))


def fd_of(x: np.ndarray, y: np.ndarray) -> float:
    return frechet_distance(*FeatureStats.of(x).mean_cov(), *FeatureStats.of(y).mean_cov())


# --- set level: KID --------------------------------------------------------------------------


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kernel_inception_distance(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, subsets: int = 50,
                              subset_size: int = 1000) -> tuple[float, float]:
    """Unbiased MMD² with k(a, b) = (a·b/d + 1)³, averaged over random subsets → (mean, std)."""
    values = kid_subset_values(x, y, rng, subsets, subset_size)
    return float(np.mean(values)), float(np.std(values))


def kid_subset_size(n_x: int, n_y: int, subset_size: int = 1000) -> int:
    """Samples per KID subset: at most half of the smaller set, so that subsets differ and their
    spread measures something (subsets of a whole set all equal it: a zero-width interval)."""
    if min(n_x, n_y) < 2:
        raise ValueError("KID needs at least two samples per set")
    return max(2, min(subset_size, n_x // 2, n_y // 2))


def kid_subset_values(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, subsets: int = 50,
                      subset_size: int = 1000) -> np.ndarray:
    """(subsets,) unbiased MMD² of random subset pairs drawn without replacement
    (`kid_subset_size` samples each): their mean is KID, their spread its uncertainty at that
    subset size (unlike a with-replacement bootstrap, no duplicates bias MMD² upwards)."""
    size = kid_subset_size(len(x), len(y), subset_size)
    if size < 2:
        raise ValueError("KID needs at least two samples per set")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.array([_mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                                    y[rng.choice(len(y), size, replace=False)]) for _ in range(subsets)])


# --- set level: k-NN manifolds ---------------------------------------------------------------


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), float64, clipped at 0."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.maximum(d, 0)


def nearest_distances(query: np.ndarray, pool: np.ndarray, k: int = 1, exclude_self: bool = False,
                      block: int = 1024) -> np.ndarray:
    """(len(query),) distance from each query row to its k-th nearest row of `pool` (blocked)."""
    query, pool = np.asarray(query, np.float64), np.asarray(pool, np.float64)
    kth = k + 1 if exclude_self else k
    out = np.empty(len(query))
    for s in range(0, len(query), block):
        d = _pairwise_sq(query[s:s + block], pool)
        out[s:s + block] = np.sqrt(np.partition(d, kth - 1, axis=1)[:, kth - 1])
    return out


def _within_any_ball(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, block: int = 1024) -> np.ndarray:
    """(len(points),) bool: inside at least one ball (centre_j, radius_j)."""
    points, centres = np.asarray(points, np.float64), np.asarray(centres, np.float64)
    inside = np.empty(len(points), bool)
    r2 = radii ** 2
    for s in range(0, len(points), block):
        inside[s:s + block] = (_pairwise_sq(points[s:s + block], centres) <= r2[None, :]).any(axis=1)
    return inside


def knn_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Precision: fraction of fake inside the real k-NN manifold (fidelity); recall: fraction of
    real inside the fake manifold (diversity)."""
    real_radii = nearest_distances(real, real, k, exclude_self=True)
    fake_radii = nearest_distances(fake, fake, k, exclude_self=True)
    precision = _within_any_ball(fake, real, real_radii).mean()
    recall = _within_any_ball(real, fake, fake_radii).mean()
    return float(precision), float(recall)


def coverage(reference: np.ndarray, generated: np.ndarray, k: int = 5) -> float:
    """Fraction of reference points whose k-NN ball (within the reference) holds ≥ 1 generated point."""
    radii = nearest_distances(reference, reference, k, exclude_self=True)
    nearest = nearest_distances(reference, generated, 1)
    return float((nearest <= radii).mean())


# --- uncertainty -----------------------------------------------------------------------------


def bootstrap_interval(statistic: Callable[[np.ndarray, np.ndarray], float], x: np.ndarray, y: np.ndarray,
                       rng: np.random.Generator, resamples: int = 50, level: float = 0.95,
                       estimate: float | None = None) -> tuple[float, float]:
    """Bias-corrected percentile bootstrap interval of statistic(x, y), resampling both sets.

    Resampling with replacement duplicates samples, which biases a covariance-based statistic
    such as FD upwards: the plain percentile interval of FD can lie wholly above the estimate.
    The bootstrap's own bias estimate, mean(resampled) - estimate, is therefore subtracted from
    both percentiles: the interval keeps the resamples' spread around the estimate and contains
    it whenever the resamples' mean lies inside their percentile range.
    """
    estimate = statistic(x, y) if estimate is None else estimate
    values = np.array([statistic(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
                       for _ in range(resamples)])
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2]) - (values.mean() - estimate)
    return float(lo), float(hi)
