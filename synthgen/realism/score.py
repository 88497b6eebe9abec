"""Score a store of (pose, depth) pairs against the mesh-rendered baseline.

    from synthgen.realism import score
    result = score("out/samples.zarr", n=10_000)            # baseline rendered on the fly
    result.scores["pair"]["iou_mean"], result.scores["set"]["fd"]

Steps:
1. take n samples of the store (seeded random subset);
2. pair level: fit the articulated hand to each sample's pose (IK), render it with the mesh
   baseline at the sample's own crop centre, compare silhouettes and depth; run the frozen
   DepthNet on the sample's depth and compare its joints with the sample's pose;
3. the reference: a given store, or baseline crops rendered here from a fixed seed;
4. set level: DepthNet embeddings of the samples vs of the reference → FD (+ bias-corrected
   bootstrap interval), KID (+ its subsets' spread), k-NN precision/recall; coverage of the
   reference's poses; warnings where a set is too small for a metric;
5. calibration and verdict (calibration.py): an independent baseline set, blurred, noised and
   shifted, scored against the reference at one size, and the store's place on that scale;
6. memorisation (when a training store is given): each sample's nearest training embedding,
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
from synthgen.realism import calibration, metrics

SCHEMA = "synthgen.score/1"
CANONICAL_LAYOUT = "hands2017"
RENDER_BLOCK = 1024

#: progress(stage, done, total): the CLI draws bars from it.
Progress = Callable[[str, int, int], None]
#: Stages that count steps of a computation; the others count samples.
STAGE_UNITS = {"set metrics": "steps", "calibration": "steps", "memorisation": "steps"}
#: Below this many samples per KID subset, score.json warns that KID's interval is wide.
MIN_KID_SUBSET = 100
#: Below this many samples per set, score.json warns that the verdict is coarse.
MIN_CALIBRATION = 500


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
    calibration_n: int = 1000  # samples per set of the calibration scale and the verdict (calibration.py)
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
    """Score `store` against `reference` (default: baseline crops rendered here) → ScoreResult.

    The stages, in order: read the scored samples, pair metrics, the reference, set metrics,
    the calibration scale and verdict, memorisation (with `train`)."""
    run = _Scoring.open(store, reference, train, settings or ScoreSettings(), feature_net, allow_incomplete,
                        progress)
    scored = run.read_scored()
    pair = run.pair_metrics(scored)
    ref = run.reference(len(scored.indices))
    set_scores = run.set_metrics(scored, pair.embedding, ref)
    verdict = run.calibrate(pair.embedding, ref)
    memorisation, nearest_train = run.memorisation(pair.embedding, ref.embedding)
    scores = {"schema": SCHEMA, "verdict": verdict, "warnings": run.warnings, **run.provenance(scored, ref),
              "pair": pair.scores, "set": set_scores, "memorisation": memorisation,
              "settings": asdict(run.settings), "timing_s": run.timing}
    return ScoreResult(scores, {"index": scored.indices, **pair.per_sample}, scored.depth, pair.mesh,
                       ref.depth[:64], nearest_train)


@dataclass
class _Scored:
    indices: np.ndarray
    depth: np.ndarray
    pose: np.ndarray
    center: np.ndarray


@dataclass
class _Pair:
    scores: dict
    per_sample: dict[str, np.ndarray]
    mesh: np.ndarray
    embedding: depthnet.DepthNetOutput


@dataclass
class _Reference:
    depth: np.ndarray
    pose: np.ndarray
    center: np.ndarray
    info: dict
    embedding: depthnet.DepthNetOutput
    indices: np.ndarray | None = None  # which crops of a reference store


@dataclass
class _Scoring:
    """One scoring run: its inputs, random stream, warnings and stage timings."""

    store: HandStore
    ref_store: HandStore | None
    train_store: HandStore | None
    net: depthnet.FrozenDepthNet
    settings: ScoreSettings
    progress: Progress
    rng: np.random.Generator
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    _clock: float = field(default_factory=time.perf_counter)

    @classmethod
    def open(cls, store, reference, train, settings: ScoreSettings, feature_net, allow_incomplete: bool,
             progress: Progress) -> _Scoring:
        if settings.n < 2:
            raise InputError(f"at least 2 samples must be scored, got n = {settings.n}")
        rng = np.random.default_rng(settings.seed)
        store = _open(store, "store", allow_incomplete)
        ref_store = None if reference is None else _open(reference, "reference", allow_incomplete)
        train_store = None if train is None else _open(train, "training store", allow_incomplete)
        net = depthnet.load(feature_net or depthnet.DEFAULT_DIR)
        _check_compatible(store, net, ref_store)
        if train_store is not None:
            _check_compatible(store, net, train_store)
        return cls(store, ref_store, train_store, net, settings, progress, rng)

    @property
    def cube(self) -> float:
        return self.store.metadata.cube_mm

    @property
    def camera_name(self) -> str:
        return self.store.metadata.camera if self.store.metadata.camera in CAMERAS else "hands2017"

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timing[name] = round(now - self._clock, 2)
        self._clock = now

    def embed(self, depth: np.ndarray, center: np.ndarray, stage: str) -> depthnet.DepthNetOutput:
        return _embed(self.net, depth, center, self.cube, stage, self.progress)

    def read_scored(self) -> _Scored:
        """Stage 1: a seeded subset of n samples of the store."""
        available = _written_indices(self.store)
        if len(available) < 2:
            raise InputError(f"{self.store.path} holds {len(available)} readable sample(s); scoring needs at least 2")
        indices = available[_subset(len(available), self.settings.n, self.rng)]
        depth, pose, center = _read(self.store, indices, "reading store", self.progress)
        if not (np.isfinite(pose).all() and np.isfinite(center).all()):
            raise InputError(f"{self.store.path}: poses or centres contain NaN/inf; the store has no usable poses")
        self.lap("read")
        return _Scored(indices, depth, pose, center)

    def pair_metrics(self, scored: _Scored) -> _Pair:
        """Stage 2: each sample against the mesh render of its own pose, and DepthNet's reading."""
        renderer = BaselineRenderer(seed=0, camera_name=self.camera_name, cube_mm=self.cube,
                                    crop_size=self.store.metadata.crop_size)
        mesh, ik_residual = render_own_poses(scored.pose, scored.center, renderer, self.progress)
        self.lap("mesh_pairs")
        iou = metrics.silhouette_iou(scored.depth, mesh)
        mae = metrics.masked_depth_mae_mm(scored.depth, mesh, self.cube)
        generated = self.embed(scored.depth, scored.center, "feature network")
        on_mesh = self.embed(mesh, scored.center, "feature network (mesh pairs)")
        consistency = metrics.joint_error_mm(generated.joints_mm, scored.pose)
        floor = metrics.joint_error_mm(on_mesh.joints_mm, scored.pose)
        overlap = np.isfinite(mae).any()
        scores = {
            "iou_mean": float(iou.mean()), "iou_median": float(np.median(iou)),
            "depth_mae_mm": float(np.nanmean(mae)) if overlap else None,
            "depth_mae_median_mm": float(np.nanmedian(mae)) if overlap else None,
            "no_overlap_fraction": float(np.isnan(mae).mean()),
            "pose_consistency_mm": float(consistency.mean()),
            "pose_consistency_median_mm": float(np.median(consistency)),
            "estimator_floor_mm": float(floor.mean()),
            "ik_residual_median_mm": float(np.median(ik_residual)),
        }
        per_sample = {"iou": iou, "depth_mae_mm": mae, "pose_consistency_mm": consistency,
                      "estimator_floor_mm": floor, "ik_residual_mm": ik_residual}
        self.lap("pair_metrics")
        return _Pair(scores, per_sample, mesh, generated)

    def reference(self, n_scored: int) -> _Reference:
        """Stage 3: the reference crops (a store's subset, or baseline crops rendered here) and
        their embedding."""
        ref_n = self.settings.reference_n or n_scored
        if self.ref_store is None:
            depth, pose, center = render_reference(ref_n, self.settings.reference_seed, self.camera_name, self.cube,
                                                   self.store.metadata.crop_size, self.progress,
                                                   self.settings.reference_scene)
            info = {"source": "rendered", "seed": self.settings.reference_seed, "camera": self.camera_name,
                    "n": ref_n, "scene": str(self.settings.reference_scene)}
        else:
            available = _written_indices(self.ref_store)
            idx = available[_subset(len(available), ref_n, self.rng)]
            depth, pose, center = _read(self.ref_store, idx, "reading reference", self.progress)
            info = {"source": "store", "path": str(self.ref_store.path), "n": len(idx),
                    "producer": self.ref_store.metadata.producer}
        self.lap("reference")
        if len(depth) < 2:
            raise InputError("the reference holds fewer than 2 samples")
        embedding = self.embed(depth, center, "feature network (reference)")
        return _Reference(depth, pose, center, info, embedding, None if self.ref_store is None else idx)

    def set_metrics(self, scored: _Scored, generated: depthnet.DepthNetOutput, ref: _Reference) -> dict:
        """Stage 4: the two sets of embeddings (and of poses) against each other."""
        s, x, y = self.settings, generated.features, ref.embedding.features
        if min(len(x), len(y)) <= s.k:
            raise InputError(f"set metrics compare each sample with its {s.k} nearest neighbours: they need at least "
                             f"{s.k + 1} scored and {s.k + 1} reference samples, got {len(x)} and {len(y)}")
        self._warn_small_sets(len(x), len(y))
        steps = iter(range(1, 6))
        self.progress("set metrics", 0, 5)

        def step_done() -> None:
            self.progress("set metrics", next(steps), 5)

        fd = metrics.fd_of(x, y)
        step_done()
        fd_ci = metrics.bootstrap_interval(metrics.fd_of, x, y, self.rng, s.bootstrap, estimate=fd)
        step_done()
        kid_values = metrics.kid_subset_values(x, y, self.rng, s.kid_subsets, s.kid_subset_size)
        step_done()
        precision, recall = metrics.knn_precision_recall(y, x, s.k)
        step_done()
        poses = self._pose_set_metrics(scored, ref)
        step_done()
        self.lap("set_metrics")
        return {"fd": fd, "fd_ci95": list(fd_ci), "kid": float(kid_values.mean()), "kid_std": float(kid_values.std()),
                "kid_ci95": [float(q) for q in np.quantile(kid_values, [0.025, 0.975])],
                "kid_subset_size": metrics.kid_subset_size(len(x), len(y), s.kid_subset_size),
                "precision": precision, "recall": recall, "k": s.k, "coverage_k": s.coverage_k, **poses}

    def _pose_set_metrics(self, scored: _Scored, ref: _Reference) -> dict:
        same_layout = ref.pose.shape[1:] == scored.pose.shape[1:] and (
            self.ref_store is None or self.ref_store.joint_layout == CANONICAL_LAYOUT)
        if not same_layout:  # the reference's poses are in another layout (e.g. an imported benchmark)
            return {"coverage": None, "pose_precision": None, "pose_recall": None}
        ref_poses = camera.normalize_joints(ref.pose, ref.center, self.cube).reshape(len(ref.pose), -1)
        poses = camera.normalize_joints(scored.pose, scored.center, self.cube).reshape(len(scored.pose), -1)
        pose_precision, pose_recall = metrics.knn_precision_recall(ref_poses, poses, self.settings.k)
        return {"coverage": metrics.coverage(ref_poses, poses, self.settings.coverage_k),
                "pose_precision": pose_precision, "pose_recall": pose_recall}

    def _warn_small_sets(self, n: int, m: int) -> None:
        dim = self.net.net.config.feature_dim
        for what, count in (("scored samples", n), ("reference crops", m)):
            if count < dim:
                self.warnings.append(
                    f"{count} {what} are fewer than the feature network's {dim} dimensions: FD's covariance is "
                    f"rank-deficient and FD is biased upwards; compare FD only between scores of equal n, "
                    f"or read the verdict, KID and precision / recall")
        size = metrics.kid_subset_size(n, m, self.settings.kid_subset_size)
        if size < MIN_KID_SUBSET:
            self.warnings.append(f"KID subsets hold {size} samples (half the smaller set): its interval is wide")

    def calibrate(self, generated: depthnet.DepthNetOutput, ref: _Reference) -> dict | None:
        """Stage 5: the calibration scale at a common size, and the store's place on it."""
        n = min(self.settings.calibration_n, len(generated.features), len(ref.embedding.features))
        if n <= self.settings.k:
            self.warnings.append(f"no verdict: the scale needs more than {self.settings.k} samples per set, "
                                 f"calibration_n is {n}")
            return None
        if n < MIN_CALIBRATION:
            self.warnings.append(f"the verdict is measured at n = {n}: below {MIN_CALIBRATION} the scale's milder "
                                 f"rows lie within each other's sampling noise")
        baseline = self._independent_baseline(n, ref)
        if baseline is None:
            return None
        ref_features = ref.embedding.features[self.rng.choice(len(ref.embedding.features), n, replace=False)]
        ours = generated.features[self.rng.choice(len(generated.features), n, replace=False)]
        stage = iter(range(1, 7))
        self.progress("calibration", 0, 6)

        def embed(depth: np.ndarray, center: np.ndarray) -> np.ndarray:
            features = _embed(self.net, depth, center, self.cube, "calibration (embedding)", _quiet).features
            self.progress("calibration", next(stage), 6)
            return features

        rows = calibration.scale(baseline[0], baseline[1], ref_features, embed, self.rng, self.settings.k)
        store_row = calibration.set_row("scored store", ours, ref_features, self.rng, self.settings.k)
        self.progress("calibration", 6, 6)
        self.lap("calibration")
        return {**calibration.verdict(store_row, rows), "n": n}

    def _independent_baseline(self, n: int, ref: _Reference) -> tuple[np.ndarray, np.ndarray] | None:
        """n baseline crops the reference does not hold: rendered from the next seed in the
        reference's scene, or for a reference store, crops of it the reference subset left out."""
        if self.ref_store is None:
            depth, _, center = render_reference(n, self.settings.reference_seed + 1, self.camera_name, self.cube,
                                                self.store.metadata.crop_size, _quiet, self.settings.reference_scene)
            return depth, center
        left = np.setdiff1d(_written_indices(self.ref_store), ref.indices)
        if len(left) < n:
            self.warnings.append(f"no verdict: the reference store has {len(left)} crops besides the {ref.info['n']} "
                                 f"used, {n} needed for an independent baseline set")
            return None
        depth, _, center = _read(self.ref_store, np.sort(self.rng.choice(left, n, replace=False)), "calibration",
                                 _quiet)
        return depth, center

    def memorisation(self, generated: depthnet.DepthNetOutput,
                     reference: depthnet.DepthNetOutput) -> tuple[dict, dict[str, np.ndarray]]:
        """Stage 6 (with a training store): nearest training crops of samples and of unseen reference crops."""
        if self.train_store is None:
            return {"skipped": "no training store given (--train)"}, {}
        available = _written_indices(self.train_store)
        idx = available[_subset(len(available), self.settings.train_n, self.rng)]
        depth, _, center = _read(self.train_store, idx, "reading training store", self.progress)
        train = self.embed(depth, center, "feature network (training)").features
        self.progress("memorisation", 0, 2)
        nearest = {"generated": metrics.nearest_distances(generated.features, train)}
        self.progress("memorisation", 1, 2)
        nearest["reference"] = metrics.nearest_distances(reference.features, train)
        self.progress("memorisation", 2, 2)
        threshold = np.quantile(nearest["reference"], 0.01)
        self.lap("memorisation")
        return {
            "train_path": str(self.train_store.path), "train_n": len(idx),
            "generated_to_train": _summary(nearest["generated"]),
            "reference_to_train": _summary(nearest["reference"]),
            "median_ratio": float(np.median(nearest["generated"]) / np.median(nearest["reference"])),
            "closer_than_reference_p01": float((nearest["generated"] < threshold).mean()),
        }, nearest

    def provenance(self, scored: _Scored, ref: _Reference) -> dict:
        meta, net = self.store.metadata, self.net
        return {
            "store": {"path": str(self.store.path), "num_samples": len(self.store), "num_scored": len(scored.indices),
                      "producer": meta.producer, "model_checksum": meta.model_checksum, "seed": meta.seed,
                      "complete": self.store.complete, "cube_mm": self.cube, "crop_size": meta.crop_size},
            "reference": ref.info,
            "feature_network": {"version": net.version, "sha256": net.sha256,
                                "train_stores": net.config.get("provenance", {}).get("stores"),
                                "val_mean_joint_error_mm": net.config.get("provenance", {}).get(
                                    "val_mean_joint_error_mm")},
        }
