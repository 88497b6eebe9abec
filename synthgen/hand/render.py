"""Metric depth maps of the posed hand mesh, rendered headless with pyrender.

The only module of `synthgen.hand` that knows OpenGL. One `DepthRenderer` holds one offscreen
context and one scene with the hand mesh; each frame overwrites the mesh's vertex buffer in
place (glBufferSubData) and moves the camera intrinsics, which at 128² is several times faster
than building a new pyrender mesh per frame.

Backend: PyOpenGL binds its platform (EGL, OSMesa, GLX) when `OpenGL` is first imported and
cannot switch afterwards, so the choice is made before pyrender is imported: the `backend`
argument, else $SYNTHGEN_GL, else $PYOPENGL_PLATFORM, else EGL when an EGL device can be opened
(probed through ctypes, without importing OpenGL), else OSMesa. EGL comes first because it ships
with the base image, while OSMesa needs libosmesa6 and PyOpenGL >= 3.1.7 beyond pyrender's pin.
With pyrender's multisampling turned off (`_single_sampled_framebuffer`) both give the same
depth maps (same pixels, |dz| < 0.01 mm) at similar speed on Mesa's llvmpipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib.metadata
import os
import sys
import weakref

import numpy as np

from synthgen.conventions import Intrinsics
from synthgen.hand.mesh import HandMesh

BACKENDS = ("egl", "osmesa")
Z_NEAR_MM = 10.0  # 24-bit depth over [10 mm, 5 m] resolves ~0.002 mm at half a metre
Z_FAR_MM = 5000.0
# pyrender's camera looks down -z with y up; ours (OpenCV) looks down +z with y down.
OPENCV_TO_OPENGL_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])


def _egl_device_opens() -> bool:
    """Whether EGL can initialise a device display, as pyrender's EGL platform will ask it to."""
    library = ctypes.util.find_library("EGL")
    if library is None:
        return False
    try:
        egl = ctypes.CDLL(library)
    except OSError:
        return False
    egl.eglGetProcAddress.restype = ctypes.c_void_p
    egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
    query_address = egl.eglGetProcAddress(b"eglQueryDevicesEXT")
    display_address = egl.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if not (query_address and display_address):
        return False
    query_devices = ctypes.CFUNCTYPE(
        ctypes.c_uint, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int)
    )(query_address)
    get_display = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p)(display_address)
    devices = (ctypes.c_void_p * 16)()
    count = ctypes.c_int(0)
    device_index = int(os.environ.get("EGL_DEVICE_ID", "0"))
    if not query_devices(16, devices, ctypes.byref(count)) or device_index >= count.value:
        return False
    egl_platform_device_ext = 0x313F
    display = get_display(egl_platform_device_ext, devices[device_index], None)
    egl.eglInitialize.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    egl.eglTerminate.argtypes = [ctypes.c_void_p]
    if not display or not egl.eglInitialize(display, None, None):
        return False
    egl.eglTerminate(display)
    return True


def select_backend(requested: str | None = None) -> str:
    """Fix the process's OpenGL platform (see the module docstring) and return it."""
    requested = requested or os.environ.get("SYNTHGEN_GL") or None
    if requested is not None and requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {requested!r}")
    current = os.environ.get("PYOPENGL_PLATFORM")
    if "OpenGL.platform" in sys.modules:
        if current not in BACKENDS:
            raise RuntimeError(
                f"OpenGL was imported before synthgen.hand.render with PYOPENGL_PLATFORM={current!r}; "
                f"headless rendering needs one of {BACKENDS}, chosen before the first OpenGL import"
            )
        if requested is not None and requested != current:
            raise RuntimeError(f"this process already uses OpenGL backend {current!r}, cannot switch to {requested!r}")
        return current
    if requested is None:
        requested = current if current in BACKENDS else ("egl" if _egl_device_opens() else "osmesa")
    if requested == "osmesa" and _version_tuple(importlib.metadata.version("PyOpenGL")) < (3, 1, 7):
        raise RuntimeError(
            "OSMesa rendering needs PyOpenGL >= 3.1.7 (pyrender pins 3.1.0); "
            "run `pip install 'pyopengl==3.1.10'` after installing synthgen"
        )
    os.environ["PYOPENGL_PLATFORM"] = requested
    return requested


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


class _SingleContextProgramCache:
    """Wraps pyrender's ShaderProgramCache to key programs by shader files and defines only.

    pyrender keys programs by `OpenGL.contextdata.getContext()`, which under OSMesa returns a
    new object on every call: a program is compiled and kept on every frame (~0.5 MB/frame and
    a large slow-down). Each renderer owns one context and one cache, so the context adds
    nothing to the key; dropping it per renderer fixes the leak without patching pyrender.
    """

    def __init__(self, pyrender_cache) -> None:
        self._pyrender_cache = pyrender_cache
        self._programs: dict = {}

    def get_program(self, vertex_shader, fragment_shader, geometry_shader=None, defines=None):
        key = (vertex_shader, fragment_shader, geometry_shader, tuple(sorted((defines or {}).items())))
        if key not in self._programs:
            self._programs[key] = self._pyrender_cache.get_program(
                vertex_shader, fragment_shader, geometry_shader, defines
            )
        return self._programs[key]

    def clear(self) -> None:
        self._pyrender_cache.clear()
        self._programs = {}


@contextlib.contextmanager
def _single_sampled_framebuffer(pyrender_renderer_module):
    """Make pyrender create its offscreen (EGL) framebuffer without multisampling.

    pyrender renders into a 4x multisampled framebuffer and resolves depth with a blit that
    keeps one sample (Mesa: sample 0, at (0.375, 0.125) in the pixel), so depth maps came out
    shifted by a fraction of a pixel, at ~2.3x the rasterisation cost of OSMesa at 128². A
    depth map wants neither. pyrender builds that framebuffer once, in the first render, via
    a module-level GL function; asking it for 0 samples (a plain buffer) during that call only
    leaves pyrender itself untouched.
    """
    allocate = pyrender_renderer_module.glRenderbufferStorageMultisample
    pyrender_renderer_module.glRenderbufferStorageMultisample = (
        lambda target, samples, internal_format, width, height: allocate(target, 0, internal_format, width, height)
    )
    try:
        yield
    finally:
        pyrender_renderer_module.glRenderbufferStorageMultisample = allocate


_open_egl_renderers = 0  # per process: only the last EGL renderer to close may end the display


def _release(offscreen, backend: str) -> None:
    """Free one renderer's GL context; runs once, from close(), garbage collection or exit."""
    global _open_egl_renderers
    if backend == "egl":
        _open_egl_renderers -= 1
        if _open_egl_renderers > 0:
            _destroy_egl_context_keep_display(offscreen)
            return
    offscreen.delete()


def _destroy_egl_context_keep_display(offscreen) -> None:
    """What pyrender's OffscreenRenderer.delete() does, minus its final eglTerminate.

    All renderers of a process share the device's one EGLDisplay; terminating it for one
    renderer would invalidate the contexts of all the others.
    """
    from OpenGL import EGL

    platform = offscreen._platform
    platform.make_current()
    offscreen._renderer.delete()
    EGL.eglMakeCurrent(platform._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
    EGL.eglDestroyContext(platform._egl_display, platform._egl_context)
    offscreen._renderer = offscreen._platform = None  # the state pyrender's delete() leaves


class DepthRenderer:
    """Renders (V, 3) posed hand vertices to metric depth through a reused offscreen context.

    width, height: image size in pixels; every `render` call's intrinsics must match it.
    backend: "egl" or "osmesa"; None chooses as described in the module docstring. All
      renderers of a process share one backend.
    faces: (F, 3) triangles, counter-clockwise seen from outside (back faces are culled);
      default: the hand asset's. `render` then takes faces.max() + 1 vertices.
    """

    def __init__(self, width: int, height: int, backend: str | None = None, faces: np.ndarray | None = None):
        global _open_egl_renderers
        self.backend = select_backend(backend)
        import pyrender  # only now: it imports OpenGL, which binds the platform chosen above
        from OpenGL import GL

        self._gl = GL
        self.width, self.height = int(width), int(height)
        faces = HandMesh.load().faces if faces is None else np.asarray(faces, dtype=np.int32)
        self.num_vertices = int(faces.max()) + 1
        # Positions only: depth needs no normals, and the vertex buffer stays a plain (V, 3) array.
        self._primitive = pyrender.Primitive(positions=np.zeros((self.num_vertices, 3), np.float32), indices=faces)
        self._camera = pyrender.IntrinsicsCamera(1.0, 1.0, 0.0, 0.0, znear=Z_NEAR_MM, zfar=Z_FAR_MM)
        self._scene = pyrender.Scene()
        self._scene.add(pyrender.Mesh([self._primitive]))
        self._scene.add(self._camera, pose=OPENCV_TO_OPENGL_CAMERA)
        self._renderer = pyrender.OffscreenRenderer(self.width, self.height)
        _open_egl_renderers += self.backend == "egl"
        # Unlike __del__, a finalizer also runs at interpreter exit while imports still work.
        self._finalizer = weakref.finalize(self, _release, self._renderer, self.backend)
        gl_renderer = self._renderer._renderer
        gl_renderer._program_cache = _SingleContextProgramCache(gl_renderer._program_cache)
        self._flags = pyrender.RenderFlags.DEPTH_ONLY
        # The first render uploads the mesh (its vertex buffer exists from now on) and, under
        # EGL, creates pyrender's framebuffer.
        with _single_sampled_framebuffer(pyrender.renderer):
            self._renderer.render(self._scene, self._flags)

    def render(self, vertices: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """(V, 3) mm camera coordinates (OpenCV axes) → (H, W) float32 depth z in mm, 0 = no surface."""
        if self._renderer is None:
            raise RuntimeError("render() after close()")
        if (intrinsics.width, intrinsics.height) != (self.width, self.height):
            raise ValueError(
                f"intrinsics are {intrinsics.width}x{intrinsics.height}, renderer is {self.width}x{self.height}"
            )
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        if vertices.shape != (self.num_vertices, 3):
            raise ValueError(f"vertices: expected ({self.num_vertices}, 3), got {vertices.shape}")
        # OpenCV puts pixel column i at u = i; OpenGL samples it at window x = i + 0.5 (and the
        # same for rows, counted from the bottom, which pyrender flips back).
        self._camera.fx, self._camera.fy = intrinsics.fx, intrinsics.fy
        self._camera.cx, self._camera.cy = intrinsics.cx + 0.5, intrinsics.cy + 0.5
        self._renderer._platform.make_current()
        gl = self._gl
        gl.glBindBuffer(gl.GL_ARRAY_BUFFER, self._primitive._buffers[0])  # the positions VBO
        gl.glBufferSubData(gl.GL_ARRAY_BUFFER, 0, vertices.nbytes, vertices)
        gl.glBindBuffer(gl.GL_ARRAY_BUFFER, 0)
        return np.ascontiguousarray(self._renderer.render(self._scene, self._flags), dtype=np.float32)

    def close(self) -> None:
        """Free the GL context now rather than whenever the garbage collector gets to it."""
        self._finalizer()
        self._renderer = None

    def __enter__(self) -> "DepthRenderer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
