"""Crossing Nets (Wan et al., CVPR 2017): a pose VAE and a depth GAN sharing one latent space.

    from synthgen.models import load
    model = load("runs/default/model")
    joints_mm = model.estimate(depth, center)
"""

from synthgen.models.checkpoint import CheckpointError, load
from synthgen.models.config import (
                                    CrossingNetsConfig,
                                    DiscriminatorConfig,
                                    GaussianStats,
                                    GeneratorConfig,
                                    PoseNormalisation,
                                    Recipe,
                                    VAEConfig,
)
from synthgen.models.crossing_nets import CrossingNets
from synthgen.models.evaluate import pose_metrics, silhouette_metrics
from synthgen.models.train import TrainingData, train

__all__ = [
    "CheckpointError", "CrossingNets", "CrossingNetsConfig", "DiscriminatorConfig", "GaussianStats", "GeneratorConfig",
    "PoseNormalisation", "Recipe", "TrainingData", "VAEConfig", "load", "pose_metrics",
    "silhouette_metrics", "train",
]
