"""The mesh-rendered baseline: prior → kinematics → skinned mesh → 128² crop → normalised depth.

Each chunk of samples is a pure function of (seed, chunk index), so any split of the chunks
across processes or machines yields byte-identical data. The renderer is created lazily, once
per process, because an OpenGL context cannot cross a fork or a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from synthgen.conventions import CAMERAS, CROP_SIZE, CUBE_MM
from synthgen.hand import camera
from synthgen.hand.kinematics import HandPose, forward_kinematics
from synthgen.hand.mesh import HandMesh, skinning_coefficients
from synthgen.hand.noise import SensorNoise
from synthgen.hand.prior import PriorConfig, sample_poses
from synthgen.hand.render import DepthRenderer
from synthgen.memory import BufferPool


#: Hands skinned, rendered, noised and normalised together: a few MB, so each step's arrays stay
#: in cache. The noise draws follow this blocking, so chunks depend on it (not on the workers).
RENDER_BLOCK = 64


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
    noise: SensorNoise | None = None
    prior: PriorConfig = field(default_factory=PriorConfig)
    cube_mm: float = CUBE_MM
    crop_size: int = CROP_SIZE

    def __post_init__(self) -> None:
        self._mesh: HandMesh | None = None
        self._renderer: DepthRenderer | None = None
        self._buffers = BufferPool(4)  # the chunks in flight in one process (made, queued, written)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mesh"] = state["_renderer"] = None
        return state

    def params(self) -> dict:
        """What the store records about how it was made."""
        return {
            "prior": self.prior.to_dict(),
            "noise": None if self.noise is None else self.noise.to_dict(),
            "camera": self.camera_name,
        }

    def recycle(self, chunk: RenderedCrops) -> None:
        """Take back a written chunk's depth buffer for a later chunk (`write_chunks` calls this):
        fresh 64 MiB buffers cost page faults (synthgen.memory)."""
        self._buffers.give_back(chunk.depth)

    def make_chunk(self, chunk_index: int, count: int) -> RenderedCrops:
        rng = np.random.default_rng([self.seed, chunk_index])
        pose = sample_poses(rng, count, CAMERAS[self.camera_name], self.prior)
        return self.render_poses(pose, noise_rng=np.random.default_rng([self.seed, chunk_index, 1]))

    def render_poses(self, pose: HandPose, noise_rng: np.random.Generator | None = None,
                     centers: np.ndarray | None = None) -> RenderedCrops:
        """Render given hand states (e.g. decoded from a model) as normalised crops.

        `centers` (n, 3) mm fixes the crop centres (e.g. a store's own, so a render lines up
        pixel for pixel with that store's crops); by default each hand's `hand_center`.
        """
        if self.noise is not None and noise_rng is None:
            raise ValueError("a noise model needs an explicit noise_rng, for reproducibility")
        if self._renderer is None:
            self._mesh = HandMesh.load()
            self._renderer = DepthRenderer(self.crop_size, self.crop_size)
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
                if self.noise is not None:
                    depth = self.noise.apply(depth, noise_rng)
                norm[block] = camera.normalize_depth(depth, centers[block, 2], self.cube_mm)
        return RenderedCrops(norm, joints.astype(np.float32), centers)
