"""synthgen: paired synthetic hand pose / depth data from a Crossing Nets latent space."""

__version__ = "0.1.0"
