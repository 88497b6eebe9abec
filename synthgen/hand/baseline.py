"""The mesh-rendered baseline: prior → kinematics → skinned mesh and scene → 128² crop → sensor
model → normalised depth.

What the crops hold besides the hand (forearm, sleeve, objects, a background surface), how hands
are seen and shaped, which sensor is imitated and how crops are centred come from a
`SceneConfig` (synthgen.hand.scene): `render` draws baseline v2, every component on; a
`BaselineRenderer` made without one draws the bare hand (`SceneConfig.clean()`). Crops
centred by a centre-of-mass rule are cut where `import` cuts a real frame: the scene is
rendered once in a view wider than the cube, DeepPrior's refinement from the joints' box runs
on that view, and the crop is cut from it at the centre found.

Each chunk of samples is a pure function of (seed, chunk index), so any split of the chunks
across processes or machines yields byte-identical data. The renderer is created lazily, once
per process, because an OpenGL context cannot cross a fork or a pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from threadpoolctl import threadpool_limits

from synthgen.conventions import (
    CAMERAS,
    CENTER_OF_MASS_CAP_MM,
    CROP_SIZE,
    CUBE_MM,
    SYNTHGEN_INPUT,
    InputConvention,
    Intrinsics,
)
from synthgen.hand import camera
from synthgen.hand.kinematics import HandPose, forward_kinematics
from synthgen.hand.mesh import HandMesh, skinning_coefficients
from synthgen.hand.noise import SENSORS, SensorNoise
from synthgen.hand.prior import sample_poses
from synthgen.hand.reference import PyrenderRenderer
from synthgen.hand.render import DepthRenderer
from synthgen.hand.scene import SceneConfig, SceneGeometry, scene_faces
from synthgen.memory import BufferPool

#: Hands skinned, rendered, noised and normalised together: a few MB, so each step's arrays stay
#: in cache. The noise draws follow this blocking, so chunks depend on it (not on the workers).
RENDER_BLOCK = 64
#: Centre-of-mass crops are cut from a view this many cubes wide at the crops' pixel density,
#: which leaves the refinement (cube / 2) (WIDE_VIEW - 1) = 62 mm of room around the joints' box:
#: a centre that would move farther stops there (docs/baseline.md says how often). The centre
#: is found at 1/COM_STRIDE of the view's resolution.
WIDE_VIEW, COM_STRIDE = 1.5, 4
#: How meshes become depth maps: the batched OpenGL renderer, or pyrender's scene (the reference).
RENDERERS = {"batched": DepthRenderer, "pyrender": PyrenderRenderer}


def store_convention(scene: SceneConfig) -> InputConvention:
    """The input convention of a scene's crops (its centring rule; synthgen's depth and crop)."""
    return replace(SYNTHGEN_INPUT, centering=scene.centering)


@dataclass
class RenderedCrops:
    """A batch of baseline samples.

    depth: (n, S, S) float32 normalised crop depth in [-1, 1], background +1.
    pose: (n, 21, 3) float32 joints, mm, camera coordinates.
    center: (n, 3) float32 crop centre, mm, camera coordinates.
    """

    depth: np.ndarray
    pose: np.ndarray
    center: np.ndarray


@dataclass
class BaselineRenderer:
    """Renders chunks of the baseline; picklable, so it can be shipped to worker processes."""

    seed: int
    camera_name: str = "hands2017"
    scene: SceneConfig = field(default_factory=SceneConfig.clean)  # `render` passes baseline v2
    noise: SensorNoise | None = None  # replaces the scene's sensor when given
    cube_mm: float = CUBE_MM
    crop_size: int = CROP_SIZE
    renderer: str = "batched"  # a key of RENDERERS

    def __post_init__(self) -> None:
        if self.renderer not in RENDERERS:
            raise ValueError(f"renderer must be one of {sorted(RENDERERS)}, got {self.renderer!r}")
        self._mesh: HandMesh | None = None
        self._renderer: DepthRenderer | PyrenderRenderer | None = None
        self._scene_renderer: DepthRenderer | PyrenderRenderer | None = None
        self._buffers = BufferPool(4)  # the chunks in flight in one process (made, queued, written)
        if self.noise is None and self.scene.sensor != "none":
            self.noise = SENSORS[self.scene.sensor]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mesh"] = state["_renderer"] = state["_scene_renderer"] = None
        return state

    @property
    def prior(self):
        return self.scene.pose

    def params(self) -> dict:
        """What the store records about how it was made (the renderer only when it is not the
        batched one, so stores of either age record the same and resume across)."""
        return {
            "prior": self.prior.to_dict(),
            "scene": self.scene.to_dict(),
            "noise": None if self.noise is None else self.noise.to_dict(),
            "camera": self.camera_name,
        } | ({} if self.renderer == "batched" else {"renderer": self.renderer})

    def recycle(self, chunk: RenderedCrops) -> None:
        """Take back a written chunk's depth buffer for a later chunk (`write_chunks` calls this):
        fresh 64 MiB buffers cost page faults (synthgen.memory)."""
        self._buffers.give_back(chunk.depth)

    #: `make_chunk` takes a `callback`, called with each rendered block's size (synthgen.data.produce).
    reports_steps = True

    def make_chunk(self, chunk_index: int, count: int, callback: Callable[[int], None] | None = None
                   ) -> RenderedCrops:
        rng = np.random.default_rng([self.seed, chunk_index])
        pose = sample_poses(rng, count, CAMERAS[self.camera_name], self.prior)
        noise_rng = np.random.default_rng([self.seed, chunk_index, 1])
        if not self.scene.has_geometry and self.scene.shape is None and self.scene.centering == "joint-box":
            return self.render_poses(pose, noise_rng=noise_rng, callback=callback)  # the bare hand
        return self.render_scene(pose, np.random.default_rng([self.seed, chunk_index, 2]), noise_rng, callback)

    def render_scene(self, pose: HandPose, scene_rng: np.random.Generator,
                     noise_rng: np.random.Generator | None = None,
                     callback: Callable[[int], None] | None = None) -> RenderedCrops:
        """Render hands in their scene: shape, forearm, objects, background, centring, sensor."""
        self._start()
        scene = self.scene
        if scene.shape is not None:
            pose.proportions = torch.from_numpy(_draw_proportions(scene_rng, len(pose), scene.shape))
        joints = forward_kinematics(pose)[0].numpy()
        rotation = Rotation.from_rotvec(pose.global_rot.double().numpy()).as_matrix()
        extra = SceneGeometry(scene).draw(scene_rng, rotation, pose.translation.double().numpy(),
                                          pose.scale.double().numpy(), joints.astype(np.float64))
        planes = np.concatenate([self._hand_planes(pose), extra], axis=2)
        return self._render_planes(planes, joints, camera.hand_center(joints), noise_rng, callback)

    def render_poses(self, pose: HandPose, noise_rng: np.random.Generator | None = None,
                     centers: np.ndarray | None = None, callback: Callable[[int], None] | None = None
                     ) -> RenderedCrops:
        """Render given hand states (e.g. decoded from a model) as normalised crops.

        `centers` (n, 3) mm fixes the crop centres (e.g. a store's own, so a render lines up
        pixel for pixel with that store's crops); by default each hand's `hand_center`.
        """
        if self.noise is not None and noise_rng is None:
            raise ValueError("a noise model needs an explicit noise_rng, for reproducibility")
        self._start()
        joints = forward_kinematics(pose)[0].numpy()
        centers = camera.hand_center(joints) if centers is None else np.asarray(centers, np.float32)
        intrinsics = [camera.crop_intrinsics(center, self.cube_mm, self.crop_size) for center in centers]
        coefficients = skinning_coefficients(pose).numpy()  # (n, 3, 84), as pose_vertices skins
        basis = self._mesh.skinning_basis

        def skinned_blocks():
            for start in range(0, len(pose), RENDER_BLOCK):
                block = slice(start, start + RENDER_BLOCK)
                planes = (coefficients[block].reshape(-1, basis.shape[0]) @ basis).reshape(-1, 3, basis.shape[1])
                yield planes.transpose(0, 2, 1), intrinsics[block]

        norm = self._buffers.take((len(pose), self.crop_size, self.crop_size), np.float32)
        # The renderer skins block k + 1 before handing back block k: llvmpipe rasterises one
        # block while this thread skins, normalises and bins the next. The skinning GEMM (~34 µs
        # a hand) runs on one BLAS thread: OpenBLAS's idle threads busy-wait between calls, and
        # with a GEMM every block they took ~40 % of the CPU that llvmpipe needs (docs/performance.md).
        with threadpool_limits(1, user_api="blas"):
            for start, depth in zip(range(0, len(pose), RENDER_BLOCK),
                                    self._renderer.render_stream(skinned_blocks())):
                block = slice(start, start + RENDER_BLOCK)
                norm[block] = self._sensed_and_normalised(depth, centers[block], noise_rng)
                if callback is not None:
                    callback(len(depth))
        return RenderedCrops(norm, joints.astype(np.float32), centers)

    def _start(self) -> None:
        if self._renderer is None:
            self._mesh = HandMesh.load()
            self._renderer = RENDERERS[self.renderer](self.crop_size, self.crop_size)

    def _scene_renderer_for(self) -> DepthRenderer | PyrenderRenderer:
        """One renderer of hand + scene: `crop_size`² over the cube, or for centre-of-mass
        crops a wider view at the same pixel density that every crop is cut from."""
        if self._scene_renderer is None:
            faces = np.concatenate([self._mesh.faces, scene_faces(len(self._mesh.vertices))])
            size = self._view_size()
            self._scene_renderer = RENDERERS[self.renderer](size, size, faces=faces)
        return self._scene_renderer

    def _view_size(self) -> int:
        return self.crop_size if self.scene.centering == "joint-box" else int(round(self.crop_size * WIDE_VIEW))

    def _hand_planes(self, pose: HandPose) -> np.ndarray:
        """(n, 3, V) skinned hand vertices, coordinate planes."""
        coefficients = skinning_coefficients(pose).numpy()
        basis = self._mesh.skinning_basis
        with threadpool_limits(1, user_api="blas"):
            return (coefficients.reshape(-1, basis.shape[0]) @ basis).reshape(len(pose), 3, basis.shape[1])

    def _render_planes(self, planes: np.ndarray, joints: np.ndarray, boxes: np.ndarray,
                       noise_rng: np.random.Generator | None, callback: Callable[[int], None] | None
                       ) -> RenderedCrops:
        """Render, centre (the scene's rule), add the sensor and normalise, a block at a time."""
        renderer = self._scene_renderer_for()
        size = self._view_size()
        view_cube = self.cube_mm * size / self.crop_size
        views = [camera.crop_intrinsics(c, view_cube, size) for c in boxes]
        centers = np.array(boxes, dtype=np.float32)
        norm = self._buffers.take((len(planes), self.crop_size, self.crop_size), np.float32)
        blocks = ((planes[s:s + RENDER_BLOCK].transpose(0, 2, 1), views[s:s + RENDER_BLOCK])
                  for s in range(0, len(planes), RENDER_BLOCK))
        with threadpool_limits(1, user_api="blas"):
            for start, depth in zip(range(0, len(planes), RENDER_BLOCK), renderer.render_stream(blocks)):
                block = slice(start, start + RENDER_BLOCK)
                if size != self.crop_size:
                    centers[block] = _centres_of_mass(depth, views[block], boxes[block], self.cube_mm,
                                                      self.scene.centering)
                    depth = _recut(depth, views[block], centers[block], self.cube_mm, self.crop_size)
                norm[block] = self._sensed_and_normalised(depth, centers[block], noise_rng)
                if callback is not None:
                    callback(len(depth))
        return RenderedCrops(norm, joints.astype(np.float32), centers)

    def _sensed_and_normalised(self, depth: np.ndarray, centers: np.ndarray,
                               noise_rng: np.random.Generator | None) -> np.ndarray:
        """Metric crops around `centers` → the sensor model (if any) → normalised depth."""
        if self.noise is not None:
            focal = self.crop_size * centers[:, 2] / self.cube_mm  # camera.crop_intrinsics' f
            depth = self.noise.apply(depth, noise_rng, focal)
        return camera.normalize_depth(depth, centers[:, 2], self.cube_mm)


def _centres_of_mass(images: np.ndarray, views: list[Intrinsics], boxes: np.ndarray, cube: float,
                     rule: str) -> np.ndarray:
    """`import`'s centre-of-mass rule (conventions.CENTERINGS) on wide views, at 1/COM_STRIDE of
    their resolution (the centre is a mean: the coarser grid moves it by a fraction of a mm)."""
    s = COM_STRIDE
    coarse = [Intrinsics(v.fx / s, v.fy / s, v.cx / s, v.cy / s, -(-v.width // s), -(-v.height // s)) for v in views]
    centres = camera.refine_centers(images[:, ::s, ::s], coarse, boxes, cube)
    room = cube / 2 * (WIDE_VIEW - 1)
    return camera.cap_move(boxes, centres, CENTER_OF_MASS_CAP_MM if rule == "capped-center-of-mass" else room)


def _recut(depth: np.ndarray, views: list[Intrinsics], centers: np.ndarray, cube: float, size: int) -> np.ndarray:
    """Crops of `size`² around `centers` cut from wide views of the same camera (nearest pixel).

    Every crop is a pinhole camera with the sensor's orientation, so a crop pixel maps to a view
    pixel by a scale and a shift per axis; what lies outside the view is no data (0)."""
    n, height, width = depth.shape
    grid = np.arange(size, dtype=np.float64)
    crops = [camera.crop_intrinsics(center, cube, size) for center in centers]
    ratio_x = np.array([v.fx / c.fx for v, c in zip(views, crops)])[:, None]
    ratio_y = np.array([v.fy / c.fy for v, c in zip(views, crops)])[:, None]
    crop_cx, crop_cy = np.array([[c.cx, c.cy] for c in crops]).T
    view_cx, view_cy = np.array([[v.cx, v.cy] for v in views]).T
    cols = np.rint(ratio_x * (grid - crop_cx[:, None]) + view_cx[:, None])
    rows = np.rint(ratio_y * (grid - crop_cy[:, None]) + view_cy[:, None])
    cols, rows = cols.astype(np.int64), rows.astype(np.int64)
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]
    flat = (np.arange(n)[:, None, None] * height + np.clip(rows, 0, height - 1)[:, :, None]) * width \
        + np.clip(cols, 0, width - 1)[:, None, :]
    out = depth.reshape(-1)[flat]
    out[~inside] = 0.0
    return out.astype(np.float32, copy=False)


def _draw_proportions(rng: np.random.Generator, n: int, shape) -> np.ndarray:
    """(n, 7) ratios (kinematics.PROPORTIONS): per-finger lengths share half their variation."""
    common = rng.standard_normal((n, 1))
    fingers = shape.finger_length_std * (np.sqrt(0.5) * common + np.sqrt(0.5) * rng.standard_normal((n, 5)))
    palm = shape.palm_width_std * rng.standard_normal((n, 1))
    girth = shape.girth_std * rng.standard_normal((n, 1))
    return np.clip(1 + np.concatenate([fingers, palm, girth], 1), *shape.limit).astype(np.float32)
