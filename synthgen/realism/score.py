"""Score a store of (pose, depth) pairs against the mesh-rendered baseline.

    from synthgen.realism import score
    result = score("out/samples.zarr", n=10_000)            # baseline rendered on the fly
    result.scores["pair"]["iou_mean"], result.scores["set"]["fd"]

Steps:
1. take n samples of the store (seeded random subset);
2. pair level: fit the articulated hand to each sample's pose (IK), render it with the mesh
   baseline at the sample's own crop centre, compare silhouettes and depth; run the frozen
   DepthNet on the sample's depth and compare its joints with the sample's pose;
3. set level: DepthNet embeddings of the samples vs of a reference set (a given store, or
   baseline crops rendered here from a fixed seed) → FD (+ bootstrap CI), KID, k-NN
   precision/recall; coverage of the reference's poses;
4. memorisation (when a training store is given): each sample's nearest training embedding,
   against the same distance for reference crops the model never saw.

Everything is seeded (`ScoreSettings.seed`, `reference_seed`), so a score is reproducible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from synthgen.conventions import CAMERAS
from synthgen.data.reader import HandStore, open_store
from synthgen.errors import InputError
from synthgen.hand import camera
from synthgen.hand.baseline import BaselineRenderer
from synthgen.hand.ik import fit_hand
from synthgen.hand.scene import load_scene
from synthgen.models import depthnet
from synthgen.realism import metrics

SCHEMA = "synthgen.score/1"
CANONICAL_LAYOUT = "hands2017"
RENDER_BLOCK = 1024

#: progress(stage, done, total): the CLI draws bars from it.
Progress = Callable[[str, int, int], None]
#: Stages that count steps of a computation; the others count samples.
STAGE_UNITS = {"set metrics": "steps", "memorisation": "steps"}


@dataclass
class ScoreSettings:
    n: int = 10_000  # samples scored (a seeded random subset when the store is larger)
    reference_n: int | None = None  # reference crops; default: as many as scored samples
    reference_seed: int = 7919  # baseline renders when no reference store is given
    reference_scene: str = "clean"  # their scene: "clean", "v2" or a scene file (synthgen.hand.scene.load_scene)
    seed: int = 0  # subsets, KID subsets, bootstrap
    k: int = 3  # precision / recall neighbourhood (Kynkäänniemi et al. use 3)
    coverage_k: int = 5  # coverage neighbourhood (Naeem et al. use 5)
    kid_subsets: int = 50
    kid_subset_size: int = 1000
    bootstrap: int = 50  # FD bootstrap resamples
    train_n: int = 20_000  # training samples embedded for memorisation
    examples: int = 6  # best and worst pairs shown in the report


@dataclass
class ScoreResult:
    scores: dict  # what score.json holds
    per_sample: dict[str, np.ndarray]  # iou, depth_mae_mm, pose_consistency_mm, ... (n,)
    generated: np.ndarray  # (n, S, S) scored crops
    mesh: np.ndarray  # (n, S, S) mesh renders of their poses
    reference_depth: np.ndarray  # (m, S, S) a few reference crops for the report
    nearest_train: dict[str, np.ndarray] = field(default_factory=dict)


def _quiet(stage: str, done: int, total: int) -> None:
    pass


def _subset(count: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(count) if n >= count else np.sort(rng.choice(count, n, replace=False))


def _open(path: str | Path | HandStore, what: str, allow_incomplete: bool) -> HandStore:
    store = path if isinstance(path, HandStore) else open_store(path, allow_incomplete=allow_incomplete)
    if len(store) == 0:
        raise InputError(f"{what} {store.path} is empty: nothing to score")
    if not store.complete:
        written = np.setdiff1d(np.arange(store.num_chunks), store.missing_chunks())
        if len(written) == 0:
            raise InputError(f"{what} {store.path} has no written chunk yet")
    return store


def _written_indices(store: HandStore) -> np.ndarray:
    if store.complete:
        return np.arange(len(store))
    missing = set(store.missing_chunks())
    return np.array([i for i in range(len(store)) if i // store.chunk_size not in missing], np.int64)


def _read(store: HandStore, indices: np.ndarray, stage: str, progress: Progress):
    depth, pose, center = [], [], []
    for s in range(0, len(indices), RENDER_BLOCK):
        batch = store.read(indices[s:s + RENDER_BLOCK])
        depth.append(batch.depth), pose.append(batch.pose), center.append(batch.center)
        progress(stage, min(s + RENDER_BLOCK, len(indices)), len(indices))
    return np.concatenate(depth), np.concatenate(pose), np.concatenate(center)


def _check_compatible(store: HandStore, net: depthnet.FrozenDepthNet, other: HandStore | None) -> None:
    """Refuse what cannot be compared: other crop or cube sizes, depth conventions other than the
    feature network's, poses the mesh hand cannot fit.
    A reference / training store may hold another joint layout (a real benchmark): only its depth
    is used then, and pose coverage is skipped."""
    for checked in (store, other):
        if checked is not None and checked.input_convention.depth != "centre-relative":
            raise InputError(f"{checked.path}: holds {checked.input_convention.depth} depth; the feature network and "
                             f"the mesh baseline read centre-relative crops, which cannot be recovered from it")
    size = store.metadata.crop_size
    if size != net.net.config.crop_size:
        raise InputError(f"{store.path}: crops are {size}² but the feature network takes "
                         f"{net.net.config.crop_size}²")
    if store.joint_layout != CANONICAL_LAYOUT:
        raise InputError(f"{store.path} holds {store.joint_layout} poses; pair scores fit the 21-joint mesh hand, "
                         f"so the scored store must be in the {CANONICAL_LAYOUT} layout")
    if other is not None:
        if other.metadata.crop_size != size:
            raise InputError(f"image sizes differ: {store.path} has {size}² crops, {other.path} has "
                             f"{other.metadata.crop_size}²")
        if other.metadata.cube_mm != store.metadata.cube_mm:
            raise InputError(f"cube sizes differ: {store.path} {store.metadata.cube_mm} mm, {other.path} "
                             f"{other.metadata.cube_mm} mm")


def render_own_poses(pose: np.ndarray, center: np.ndarray, renderer: BaselineRenderer,
                     progress: Progress = _quiet, stage: str = "mesh pairs") -> tuple[np.ndarray, np.ndarray]:
    """(n, 21, 3) mm joints + (n, 3) crop centres → ((n, S, S) mesh crops at those centres,
    (n,) IK residual mm). The hand is fitted to each pose (IK), so the render is the articulated
    mesh hand that best explains that pose."""
    crops = np.empty((len(pose), renderer.crop_size, renderer.crop_size), np.float32)
    residual = np.empty(len(pose), np.float32)
    for s in range(0, len(pose), RENDER_BLOCK):
        fit = fit_hand(torch.from_numpy(np.ascontiguousarray(pose[s:s + RENDER_BLOCK], np.float32)))
        rendered = _Counter(stage, s, len(pose), progress)
        crops[s:s + RENDER_BLOCK] = renderer.render_poses(fit.pose, centers=center[s:s + RENDER_BLOCK],
                                                          callback=rendered).depth
        residual[s:s + RENDER_BLOCK] = np.asarray(fit.residual_mm)
    return crops, residual


def render_reference(n: int, seed: int, camera_name: str, cube_mm: float, crop_size: int,
                     progress: Progress = _quiet, scene: str = "clean") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n fresh baseline crops (seeded) of a scene ("clean", "v2" or a scene file): (depth, pose, center)."""
    renderer = BaselineRenderer(seed=seed, camera_name=camera_name, cube_mm=cube_mm, crop_size=crop_size,
                                scene=load_scene(scene))
    parts = []
    for chunk, s in enumerate(range(0, n, RENDER_BLOCK)):
        parts.append(renderer.make_chunk(chunk, min(RENDER_BLOCK, n - s),
                                         callback=_Counter("reference renders", s, n, progress)))
    return (np.concatenate([p.depth for p in parts]), np.concatenate([p.pose for p in parts]),
            np.concatenate([p.center for p in parts]))


class _Counter:
    """A render callback that reports a stage's samples done, starting from `done`."""

    def __init__(self, stage: str, done: int, total: int, progress: Progress) -> None:
        self.stage, self.done, self.total, self.progress = stage, done, total, progress

    def __call__(self, count: int) -> None:
        self.done += count
        self.progress(self.stage, self.done, self.total)


def _embed(net: depthnet.FrozenDepthNet, depth: np.ndarray, center: np.ndarray, cube_mm: float,
           stage: str, progress: Progress) -> depthnet.DepthNetOutput:
    joints, feats = [], []
    for s in range(0, len(depth), RENDER_BLOCK):
        out = net(depth[s:s + RENDER_BLOCK], center[s:s + RENDER_BLOCK], cube_mm)
        joints.append(out.joints_mm), feats.append(out.features)
        progress(stage, min(s + RENDER_BLOCK, len(depth)), len(depth))
    return depthnet.DepthNetOutput(np.concatenate(joints), np.concatenate(feats))


def _summary(values: np.ndarray) -> dict:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return {"mean": None, "median": None, "p05": None, "p95": None}
    return {"mean": float(v.mean()), "median": float(np.median(v)), "p05": float(np.quantile(v, 0.05)),
            "p95": float(np.quantile(v, 0.95))}


def score(store: str | Path | HandStore, reference: str | Path | None = None, train: str | Path | None = None,
          settings: ScoreSettings | None = None, feature_net: str | Path | None = None,
          allow_incomplete: bool = False, progress: Progress = _quiet) -> ScoreResult:
    settings = settings or ScoreSettings()
    if settings.n < 2:
        raise InputError(f"--n must be at least 2, got {settings.n}")
    timing: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timing[name] = round(now - clock, 2)
        clock = now

    rng = np.random.default_rng(settings.seed)
    store = _open(store, "store", allow_incomplete)
    ref_store = None if reference is None else _open(reference, "reference", allow_incomplete)
    train_store = None if train is None else _open(train, "training store", allow_incomplete)
    net = depthnet.load(feature_net or depthnet.DEFAULT_DIR)
    _check_compatible(store, net, ref_store)
    if train_store is not None:
        _check_compatible(store, net, train_store)
    meta = store.metadata
    cube, size = meta.cube_mm, meta.crop_size

    # 1. the scored samples
    available = _written_indices(store)
    if len(available) < 2:
        raise InputError(f"{store.path} holds {len(available)} readable sample(s); scoring needs at least 2")
    indices = available[_subset(len(available), settings.n, rng)]
    depth, pose, center = _read(store, indices, "reading store", progress)
    if not (np.isfinite(pose).all() and np.isfinite(center).all()):
        raise InputError(f"{store.path}: poses or centres contain NaN/inf; the store has no usable poses")
    lap("read")

    # 2. pair level
    camera_name = meta.camera if meta.camera in CAMERAS else "hands2017"
    pair_renderer = BaselineRenderer(seed=0, camera_name=camera_name, cube_mm=cube, crop_size=size)
    mesh, ik_residual = render_own_poses(pose, center, pair_renderer, progress)
    lap("mesh_pairs")
    iou = metrics.silhouette_iou(depth, mesh)
    mae = metrics.masked_depth_mae_mm(depth, mesh, cube)
    generated = _embed(net, depth, center, cube, "feature network", progress)
    on_mesh = _embed(net, mesh, center, cube, "feature network (mesh pairs)", progress)
    consistency = metrics.joint_error_mm(generated.joints_mm, pose)
    floor = metrics.joint_error_mm(on_mesh.joints_mm, pose)
    lap("pair_metrics")

    # 3. set level
    ref_n = settings.reference_n or len(indices)
    if ref_store is None:
        ref_depth, ref_pose, ref_center = render_reference(ref_n, settings.reference_seed, camera_name, cube, size,
                                                           progress, settings.reference_scene)
        reference_info = {"source": "rendered", "seed": settings.reference_seed, "camera": camera_name, "n": ref_n,
                          "scene": str(settings.reference_scene)}
    else:
        ref_available = _written_indices(ref_store)
        ref_idx = ref_available[_subset(len(ref_available), ref_n, rng)]
        ref_depth, ref_pose, ref_center = _read(ref_store, ref_idx, "reading reference", progress)
        reference_info = {"source": "store", "path": str(ref_store.path), "n": len(ref_idx),
                          "producer": ref_store.metadata.producer}
    lap("reference")
    ref = _embed(net, ref_depth, ref_center, cube, "feature network (reference)", progress)
    if len(ref.features) < 2:
        raise InputError("the reference holds fewer than 2 samples")
    steps = iter(range(1, 6))

    def step_done() -> None:
        progress("set metrics", next(steps), 5)

    progress("set metrics", 0, 5)
    fd = metrics.fd_of(generated.features, ref.features)
    step_done()
    fd_ci = metrics.bootstrap_interval(metrics.fd_of, generated.features, ref.features, rng, settings.bootstrap)
    step_done()
    kid_values = metrics.kid_subset_values(generated.features, ref.features, rng, settings.kid_subsets,
                                           settings.kid_subset_size)
    kid, kid_std = float(kid_values.mean()), float(kid_values.std())
    kid_ci = [float(q) for q in np.quantile(kid_values, [0.025, 0.975])]
    step_done()
    precision, recall = metrics.knn_precision_recall(ref.features, generated.features, settings.k)
    step_done()
    if ref_pose.shape[1:] == pose.shape[1:] and (ref_store is None or ref_store.joint_layout == CANONICAL_LAYOUT):
        ref_poses = camera.normalize_joints(ref_pose, ref_center, cube).reshape(len(ref_pose), -1)
        poses = camera.normalize_joints(pose, center, cube).reshape(len(pose), -1)
        pose_coverage = metrics.coverage(ref_poses, poses, settings.coverage_k)
        pose_precision, pose_recall = metrics.knn_precision_recall(ref_poses, poses, settings.k)
    else:  # the reference's poses are in another layout (e.g. an imported benchmark)
        pose_coverage = pose_precision = pose_recall = None
    step_done()
    lap("set_metrics")

    # 4. memorisation
    nearest_train: dict[str, np.ndarray] = {}
    if train_store is None:
        memorisation: dict = {"skipped": "no training store given (--train)"}
    else:
        train_avail = _written_indices(train_store)
        train_idx = train_avail[_subset(len(train_avail), settings.train_n, rng)]
        t_depth, _, t_center = _read(train_store, train_idx, "reading training store", progress)
        train_feats = _embed(net, t_depth, t_center, cube, "feature network (training)", progress).features
        progress("memorisation", 0, 2)
        nearest_train = {"generated": metrics.nearest_distances(generated.features, train_feats)}
        progress("memorisation", 1, 2)
        nearest_train["reference"] = metrics.nearest_distances(ref.features, train_feats)
        progress("memorisation", 2, 2)
        threshold = np.quantile(nearest_train["reference"], 0.01)
        memorisation = {
            "train_path": str(train_store.path), "train_n": len(train_idx),
            "generated_to_train": _summary(nearest_train["generated"]),
            "reference_to_train": _summary(nearest_train["reference"]),
            "median_ratio": float(np.median(nearest_train["generated"]) / np.median(nearest_train["reference"])),
            "closer_than_reference_p01": float((nearest_train["generated"] < threshold).mean()),
        }
        lap("memorisation")

    scores = {
        "schema": SCHEMA,
        "store": {"path": str(store.path), "num_samples": len(store), "num_scored": len(indices),
                  "producer": meta.producer, "model_checksum": meta.model_checksum, "seed": meta.seed,
                  "complete": store.complete, "cube_mm": cube, "crop_size": size},
        "reference": reference_info,
        "feature_network": {"version": net.version, "sha256": net.sha256,
                            "train_stores": net.config.get("provenance", {}).get("stores"),
                            "val_mean_joint_error_mm": net.config.get("provenance", {}).get("val_mean_joint_error_mm")},
        "pair": {
            "iou_mean": float(iou.mean()), "iou_median": float(np.median(iou)),
            "depth_mae_mm": float(np.nanmean(mae)) if np.isfinite(mae).any() else None,
            "depth_mae_median_mm": float(np.nanmedian(mae)) if np.isfinite(mae).any() else None,
            "no_overlap_fraction": float(np.isnan(mae).mean()),
            "pose_consistency_mm": float(consistency.mean()),
            "pose_consistency_median_mm": float(np.median(consistency)),
            "estimator_floor_mm": float(floor.mean()),
            "ik_residual_median_mm": float(np.median(ik_residual)),
        },
        "set": {"fd": fd, "fd_ci95": list(fd_ci), "kid": kid, "kid_std": kid_std, "kid_ci95": kid_ci, "precision": precision,
                "recall": recall, "k": settings.k, "coverage": pose_coverage, "coverage_k": settings.coverage_k,
                "pose_precision": pose_precision, "pose_recall": pose_recall},
        "memorisation": memorisation,
        "settings": asdict(settings),
        "timing_s": timing,
    }
    per_sample = {"index": indices, "iou": iou, "depth_mae_mm": mae, "pose_consistency_mm": consistency,
                  "estimator_floor_mm": floor, "ik_residual_mm": ik_residual}
    return ScoreResult(scores, per_sample, depth, mesh, ref_depth[:64], nearest_train)
