"""Data shipped inside the package: the hand mesh, the default model and the realism network.

Found through importlib.resources, so they are where the package is, installed or checked out.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def asset_path(*parts: str) -> Path:
    """The file-system path of a shipped asset (`asset_path("models", "default")`)."""
    resource = files(__name__).joinpath(*parts)
    if not isinstance(resource, Path):
        raise RuntimeError(f"synthgen's assets must be installed as files, not inside an archive ({resource})")
    return resource


HAND_MESH = asset_path("hand_mesh.npz")
DEFAULT_MODEL = asset_path("models", "default")
DEPTHNET = asset_path("depthnet")
