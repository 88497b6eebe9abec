"""Sampling pipelines: compose the pose decoder and the depth generator with a latent strategy.

    from synthgen.models import load
    from synthgen.sampling import DEFAULT_MODEL_DIR, PriorSource, SamplingPipeline, LatentPrior

    model = load(DEFAULT_MODEL_DIR)
    source = PriorSource(model, seed=0, prior=LatentPrior(truncation=2.0))
    samples = source.make_chunk(0, 16)          # GeneratedSamples: depth, pose, center, latent

Strategies: the prior (prior.py), interpolation between endpoints (interpolate.py), a smooth
random walk (walk.py) and given poses (conditional.py); video.py turns any path into frames.
"""

from synthgen.sampling.conditional import encode_poses, load_poses
from synthgen.sampling.interpolate import Endpoint, interpolate_codes, lerp, resolve_endpoint, slerp
from synthgen.sampling.pipeline import (
                                        BLOCK_SIZE,
                                        DEFAULT_MODEL_DIR,
                                        GeneratedSamples,
                                        PoseSource,
                                        PriorSource,
                                        SamplingPipeline,
                                        load_model,
                                        resolve_device,
                                        write_samples,
                                        write_sequence,
                                        write_store,
)
from synthgen.sampling.prior import CropCenters, LatentPrior, truncated_normal, whitened_to_codes
from synthgen.sampling.walk import latent_walk

__all__ = [
    "BLOCK_SIZE", "CropCenters", "DEFAULT_MODEL_DIR", "Endpoint", "GeneratedSamples", "LatentPrior", "PoseSource",
    "PriorSource", "SamplingPipeline", "encode_poses", "interpolate_codes", "latent_walk", "lerp", "load_model",
    "load_poses", "resolve_device", "resolve_endpoint", "slerp", "truncated_normal", "whitened_to_codes",
    "write_samples", "write_sequence", "write_store",
]
