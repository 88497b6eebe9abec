"""Depth → pose for a whole store, through a model's posterior path (`PoseEstimator`), and the
metrics of the result against the store's own poses.

The store's crops are read in the model's input convention (synthgen.data.crops): what cannot
be converted is refused, and what can only be approximated (crop geometry, centring rule) is
returned as notes for the caller to show.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from synthgen.conventions import LAYOUTS, NYU_EVAL_JOINTS
from synthgen.data.crops import adapt_depth, convention_mismatch, require_adaptable
from synthgen.data.reader import HandStore
from synthgen.errors import InputError
from synthgen.models.evaluate import pose_metrics
from synthgen.models.inference import PoseEstimator


def convention_notes(store: HandStore, model) -> list[str]:
    """Refuse a store whose crops the model cannot read; the approximations that reading it takes."""
    require_adaptable(store.input_convention, model.input_convention)
    return convention_mismatch(store.input_convention, model.input_convention)


def estimate_store(store: HandStore, model, batch_size: int = 256,
                   on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(N, J, 3) mm poses for every crop of `store`, in the model's joint layout."""
    stored, wanted = store.input_convention, model.input_convention
    require_adaptable(stored, wanted)
    poses = np.empty((len(store), model.config.vae.num_joints, 3), dtype=np.float32)
    estimator = PoseEstimator(model)
    for start in range(0, len(store), batch_size):
        batch = store.read(slice(start, min(start + batch_size, len(store))))
        depth = adapt_depth(batch.depth, stored, wanted, store.metadata.cube_mm)
        poses[start:start + len(batch)] = estimator(torch.from_numpy(depth), torch.from_numpy(batch.center)).numpy()
        if on_progress is not None:
            on_progress(len(batch))
    return poses


def metrics_against_store(poses: np.ndarray, store: HandStore, joint_layout: str) -> dict:
    """Joint errors of `poses` against the store's poses (same layout); for NYU's 36 points also
    on the field's 14 evaluated joints ("nyu14")."""
    if store.joint_layout != joint_layout:
        raise InputError(f"the store's poses are {store.joint_layout} joints, the estimates {joint_layout} joints: "
                         f"they cannot be compared")
    truth = store.read_array("pose")
    metrics = pose_metrics(poses, truth, joint_names=LAYOUTS[joint_layout].joint_names)
    if joint_layout == "nyu36":  # the field evaluates NYU on 14 of its 36 points
        evaluated = list(NYU_EVAL_JOINTS)
        metrics["nyu14"] = pose_metrics(poses[:, evaluated], truth[:, evaluated], joint_names=LAYOUTS["nyu"].joint_names)
    return metrics
