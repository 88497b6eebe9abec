"""The reference renderer: posed meshes drawn one at a time through pyrender's scene graph.

`PyrenderRenderer` has `DepthRenderer`'s interface (synthgen.hand.render), so anything that
renders with one can render with the other (`render --renderer pyrender`). Each mesh becomes
a `pyrender.Mesh` (from a `trimesh.Trimesh`), seen by a `pyrender.IntrinsicsCamera` built from
the image's intrinsics and drawn depth-only by an `OffscreenRenderer`: a standard, independent
path to the same depth maps, which the batched renderer is tested against, and the natural
place to start from for a mesh of one's own. It is ~9x slower than the batched renderer.

Pixel centres: synthgen's intrinsics are OpenCV's (pixel column i is u = i, rows top-down);
pyrender's camera samples window position (i + s_x, rows bottom-up), where s is the sample the
depth map is read from: the pixel centre (0.5, 0.5) when the context draws single-sampled
(OSMesa), or sample 0 of pyrender's 4x multisampled framebuffer (EGL), whose depth survives
the resolve (on Mesa; its position is asked of the driver). The principal point is moved by
that offset, so both renderers sample the same point of each pixel.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from functools import cache

import numpy as np

from synthgen.conventions import Intrinsics
from synthgen.hand.mesh import HandMesh
from synthgen.hand.render import Z_NEAR_MM, select_backend

Z_FAR_MM = 10_000.0  # pyrender's 24-bit depth resolves ~2e-3 mm at half a metre with these planes
#: pyrender's camera looks down -z with y up; synthgen's (OpenCV's) down +z with y down.
_OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
_PYRENDER_SAMPLES = 4  # pyrender 0.1.45's offscreen framebuffer, when the platform has framebuffers


class PyrenderRenderer:
    """Posed mesh vertices (mm, camera coordinates) → metric depth, through pyrender.

    width, height: image size; faces: (F, 3) counter-clockwise from outside (default: the hand's).
    """

    def __init__(self, width: int, height: int, backend: str | None = None, faces: np.ndarray | None = None):
        self.backend = select_backend(backend)
        import pyrender  # after the backend is fixed: pyrender reads $PYOPENGL_PLATFORM on import
        import trimesh

        self._pyrender, self._trimesh = pyrender, trimesh
        self.width, self.height = int(width), int(height)
        self.faces = np.asarray(HandMesh.load().faces if faces is None else faces)
        self.num_vertices = int(self.faces.max()) + 1
        self._renderer, self._sample, self._lock = _offscreen_renderer(self.width, self.height)

    def render(self, vertices: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """(V, 3) mm camera coordinates → (H, W) float32 depth z in mm, 0 = no surface."""
        if self._renderer is None:
            raise RuntimeError("render() after close()")
        vertices = np.asarray(vertices, dtype=np.float64)
        if vertices.shape != (self.num_vertices, 3):
            raise ValueError(f"vertices: expected ({self.num_vertices}, 3), got {vertices.shape}")
        if (intrinsics.width, intrinsics.height) != (self.width, self.height):
            raise ValueError(f"intrinsics are {intrinsics.width}x{intrinsics.height}, "
                             f"renderer is {self.width}x{self.height}")
        pyrender = self._pyrender
        scene = pyrender.Scene()
        surface = self._trimesh.Trimesh(vertices, self.faces, process=False)
        scene.add(pyrender.Mesh.from_trimesh(surface, smooth=False))
        sx, sy = self._sample
        scene.add(pyrender.IntrinsicsCamera(intrinsics.fx, intrinsics.fy, intrinsics.cx + sx,
                                            intrinsics.cy + 1.0 - sy, znear=Z_NEAR_MM, zfar=Z_FAR_MM),
                  pose=_OPENCV_TO_OPENGL)
        with self._lock:  # one OffscreenRenderer (one GL context) per size, shared by the process's threads
            depth = self._renderer.render(scene, flags=pyrender.RenderFlags.DEPTH_ONLY)
        return np.ascontiguousarray(depth, dtype=np.float32)

    def render_batch(self, vertices: np.ndarray, intrinsics: Sequence[Intrinsics]) -> np.ndarray:
        """(n, V, 3) and n intrinsics → (n, H, W) float32 depth, one `render` each."""
        if len(vertices) != len(intrinsics):
            raise ValueError(f"{len(vertices)} meshes but {len(intrinsics)} intrinsics")
        out = np.empty((len(vertices), self.height, self.width), dtype=np.float32)
        for k, (mesh_vertices, intr) in enumerate(zip(vertices, intrinsics)):
            out[k] = self.render(mesh_vertices, intr)
        return out

    def render_stream(self, batches: Iterable[tuple[np.ndarray, Sequence[Intrinsics]]]) -> Iterator[np.ndarray]:
        """The depth maps of each (vertices, intrinsics) batch in turn."""
        for vertices, intrinsics in batches:
            yield self.render_batch(vertices, intrinsics)

    def close(self) -> None:
        self._renderer = None

    def __enter__(self) -> PyrenderRenderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@cache
def _offscreen_renderer(width: int, height: int):
    """One pyrender `OffscreenRenderer` per image size and process, its sample position and the
    lock its users take.

    Kept until the process ends: deleting one terminates the EGL display, which would end every
    other context on it (the batched renderers' included)."""
    import pyrender

    renderer = pyrender.OffscreenRenderer(width, height)
    return renderer, _sample_position(renderer), threading.Lock()


def _sample_position(renderer) -> tuple[float, float]:
    """Where in a pixel (window coordinates, y up) the depth map is sampled: sample 0 of a
    framebuffer like pyrender's multisampled one, or the centre when the platform has none."""
    if not renderer._platform.supports_framebuffers():
        return 0.5, 0.5
    from OpenGL import GL

    renderer._platform.make_current()
    framebuffer, buffer = GL.glGenFramebuffers(1), GL.glGenRenderbuffers(1)
    try:
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, buffer)
        GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, _PYRENDER_SAMPLES, GL.GL_DEPTH_COMPONENT24, 1, 1)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, framebuffer)
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_RENDERBUFFER, buffer)
        position = np.zeros(2, dtype=np.float32)
        GL.glGetMultisamplefv(GL.GL_SAMPLE_POSITION, 0, position)
    finally:
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        GL.glDeleteFramebuffers(1, [framebuffer])
        GL.glDeleteRenderbuffers(1, [buffer])
    return float(position[0]), float(position[1])
