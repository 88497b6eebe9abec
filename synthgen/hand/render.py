"""Metric depth maps of posed hand meshes, rendered headless with OpenGL, many hands per draw.

The only module of `synthgen.hand` that knows OpenGL. Rendered one at a time through pyrender,
a 128² hand cost about as much in Python and PyOpenGL calls as llvmpipe (Mesa's CPU rasteriser)
spent drawing it. A `DepthRenderer` therefore draws a batch of hands with a constant handful of
calls: their vertices go into one buffer, one multi-draw call sends hand k to layer k of a
layered depth texture (its own intrinsics from a uniform array), and one glGetTexImage reads
every layer. Each layer has the image's own viewport, so a hand's depth map does not depend on
the other hands of its batch. The depth buffer is float32 and holds z_near / z ("reversed"
depth: precise at every distance, no far plane), which the readback turns back into metric z.

Backend: PyOpenGL binds its platform (EGL, OSMesa, GLX) when `OpenGL` is first imported and
cannot switch afterwards, so the choice is made before OpenGL is imported: the `backend`
argument, else $SYNTHGEN_GL, else $PYOPENGL_PLATFORM, else EGL when an EGL device can be opened
(probed through ctypes, without importing OpenGL), else OSMesa. EGL comes first because it ships
with the base image, while OSMesa needs libosmesa6 and PyOpenGL >= 3.1.7 beyond pyrender's pin.
pyrender's platform classes only create the context; what is drawn is this module's own, so
both backends give identical depth maps at the same speed on llvmpipe.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.metadata
import os
import sys
import weakref
from collections.abc import Sequence

import numpy as np

from synthgen.conventions import Intrinsics
from synthgen.hand.mesh import HandMesh

BACKENDS = ("egl", "osmesa")
Z_NEAR_MM = 10.0  # nearer surfaces are clipped; float32 z_near / z resolves ~1e-4 mm at half a metre
MAX_HANDS_PER_DRAW = 64  # 64 hands of 128² per draw; larger draws were no faster on llvmpipe
MAX_LAYER_PIXELS = 1 << 20  # 4 MB of float depth per draw: bigger images get fewer hands per draw
LAYER_EXTENSION = "GL_ARB_shader_viewport_layer_array"  # gl_Layer from the vertex shader

_VERTEX_SHADER = f"""#version 330 core
#extension {LAYER_EXTENSION} : require
// Hand k of a draw is the k-th sub-draw of glMultiDrawElementsBaseVertex; its base vertex
// 3 * k * vertices_per_hand (it is stored as x, y, z planes) is included in gl_VertexID.
// It goes to layer k.
layout(location = 0) in float x;  // mm, camera coordinates, OpenCV axes (y down, z forward)
layout(location = 1) in float y;
layout(location = 2) in float z;
uniform int vertices_per_hand;
uniform vec2 image_size;
uniform float z_near;
uniform vec4 intrinsics[HANDS];  // per hand: fx, fy, cx + 0.5, cy + 0.5

void main() {{
    int hand = gl_VertexID / (3 * vertices_per_hand);
    vec4 k = intrinsics[hand];
    // Window position times z. OpenCV pixel column i is u = i, which GL samples at window
    // x = i + 0.5, hence the + 0.5. Rows are not flipped: the texture's bottom-up rows come
    // back in image order, and front faces turn clockwise.
    vec2 window_xy = k.xy * vec2(x, y) + k.zw * z;
    gl_Layer = hand;
    // Window depth (z_ndc + 1) / 2 = z_near / z: clipped nearer than z_near, no far plane.
    gl_Position = vec4(2.0 * window_xy / image_size - z, 2.0 * z_near - z, z);
}}
"""
_FRAGMENT_SHADER = """#version 330 core
void main() {}  // depth only
"""


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


def _create_context(backend: str):
    """A current OpenGL context from pyrender's headless platform classes."""
    if backend == "egl":
        from pyrender.platforms.egl import EGLPlatform as Platform  # installs PyOpenGL's EGL platform
    else:
        from pyrender.platforms.osmesa import OSMesaPlatform as Platform
    platform = Platform(1, 1)  # its default framebuffer is never drawn to
    platform.init_context()
    platform.make_current()
    return platform


def _keep_freed_heap_memory() -> None:
    """Stop glibc handing freed heap memory back to the kernel (process-wide; glibc only).

    llvmpipe allocates and frees megabytes of binning memory on every draw. With glibc's
    default (adaptive) trim threshold that memory went back to the kernel and returned as
    fresh zeroed pages: ~60 page faults and ~10 % of the CPU time per rendered hand. It only
    keeps memory the process has already used.
    """
    libc = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(libc), "mallopt", None) if libc else None
    if mallopt is not None:
        m_trim_threshold = -1  # <malloc.h>
        mallopt(m_trim_threshold, 256 << 20)


_open_egl_renderers = 0  # per process: only the last EGL renderer to close may end the display


def _release(platform, backend: str) -> None:
    """Free one renderer's GL context; runs once, from close(), garbage collection or exit."""
    global _open_egl_renderers
    if backend == "egl":
        _open_egl_renderers -= 1
        if _open_egl_renderers > 0:
            _destroy_egl_context_keep_display(platform)
            return
    platform.delete_context()


def _destroy_egl_context_keep_display(platform) -> None:
    """What pyrender's EGLPlatform.delete_context() does, minus its final eglTerminate.

    All renderers of a process share the device's one EGLDisplay; terminating it for one
    renderer would invalidate the contexts of all the others.
    """
    from OpenGL import EGL

    EGL.eglMakeCurrent(platform._egl_display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE, EGL.EGL_NO_CONTEXT)
    EGL.eglDestroyContext(platform._egl_display, platform._egl_context)
    platform._egl_context = platform._egl_display = None  # so the platform's own __del__ does nothing


class DepthRenderer:
    """Renders posed hand vertices (mm, camera coordinates) to metric depth, a batch at a time.

    width, height: image size in pixels; every call's intrinsics must match it.
    backend: "egl" or "osmesa"; None chooses as described in the module docstring. All
      renderers of a process share one backend.
    faces: (F, 3) triangles, counter-clockwise seen from outside (back faces are culled);
      default: the hand asset's. A hand then has faces.max() + 1 vertices.
    """

    def __init__(self, width: int, height: int, backend: str | None = None, faces: np.ndarray | None = None):
        global _open_egl_renderers
        self.backend = select_backend(backend)
        self.width, self.height = int(width), int(height)
        faces = HandMesh.load().faces if faces is None else np.asarray(faces)
        self.num_vertices = int(faces.max()) + 1
        hands = min(MAX_HANDS_PER_DRAW, max(1, MAX_LAYER_PIXELS // (self.width * self.height)))
        self.hands_per_draw = 1 << (hands.bit_length() - 1)  # a power of two, like each draw's layer count

        _keep_freed_heap_memory()
        self._platform = _create_context(self.backend)  # imports OpenGL, bound to the backend above
        _open_egl_renderers += self.backend == "egl"
        # Unlike __del__, a finalizer also runs at interpreter exit while imports still work.
        self._finalizer = weakref.finalize(self, _release, self._platform, self.backend)
        from OpenGL import GL
        from OpenGL.GL import shaders

        self._gl = GL
        extensions = {GL.glGetStringi(GL.GL_EXTENSIONS, i) for i in range(GL.glGetIntegerv(GL.GL_NUM_EXTENSIONS))}
        if LAYER_EXTENSION.encode() not in extensions:
            driver = GL.glGetString(GL.GL_RENDERER).decode()
            raise RuntimeError(f"the OpenGL driver ({driver}) lacks {LAYER_EXTENSION}, which batched rendering needs")
        program = shaders.compileProgram(
            shaders.compileShader(_VERTEX_SHADER.replace("HANDS", str(self.hands_per_draw)), GL.GL_VERTEX_SHADER),
            shaders.compileShader(_FRAGMENT_SHADER, GL.GL_FRAGMENT_SHADER),
            validate=False,  # would check against buffers and a framebuffer not bound yet
        )
        GL.glUseProgram(program)
        GL.glUniform1i(GL.glGetUniformLocation(program, "vertices_per_hand"), self.num_vertices)
        GL.glUniform2f(GL.glGetUniformLocation(program, "image_size"), self.width, self.height)
        GL.glUniform1f(GL.glGetUniformLocation(program, "z_near"), Z_NEAR_MM)
        self._intrinsics_location = GL.glGetUniformLocation(program, "intrinsics")

        GL.glBindVertexArray(GL.glGenVertexArrays(1))
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, GL.glGenBuffers(1))
        GL.glBufferData(GL.GL_ARRAY_BUFFER, self.hands_per_draw * self.num_vertices * 3 * 4, None, GL.GL_STREAM_DRAW)
        for axis in range(3):  # coordinate planes: hand k's x, y, z are rows 3k, 3k + 1, 3k + 2
            plane_offset = ctypes.c_void_p(axis * self.num_vertices * 4)
            GL.glEnableVertexAttribArray(axis)
            GL.glVertexAttribPointer(axis, 1, GL.GL_FLOAT, GL.GL_FALSE, 0, plane_offset)
        indices = np.ascontiguousarray(faces, dtype=np.uint32)
        GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, GL.glGenBuffers(1))
        GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, indices.nbytes, indices, GL.GL_STATIC_DRAW)

        GL.glViewport(0, 0, self.width, self.height)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_GREATER)  # reversed depth: nearer is larger, background 0
        GL.glClearDepth(0.0)
        GL.glEnable(GL.GL_CULL_FACE)
        GL.glFrontFace(GL.GL_CW)  # counter-clockwise in the y-up camera is clockwise in y-down rows

        self._targets: dict[int, tuple[int, int]] = {}  # layers -> (framebuffer, depth texture)
        self._index_counts = np.full(self.hands_per_draw, indices.size, dtype=np.int32)
        self._index_offsets = (ctypes.c_void_p * self.hands_per_draw)()  # all hands share the faces
        self._base_vertices = np.arange(self.hands_per_draw, dtype=np.int32) * 3 * self.num_vertices
        self._intrinsics = np.zeros((self.hands_per_draw, 4), dtype=np.float32)
        self._readback = np.empty((self.hands_per_draw, self.height, self.width), dtype=np.float32)

    def render(self, vertices: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """(V, 3) mm camera coordinates (OpenCV axes) → (H, W) float32 depth z in mm, 0 = no surface."""
        return self.render_batch(np.asarray(vertices)[None], [intrinsics])[0]

    def render_batch(self, vertices: np.ndarray, intrinsics: Sequence[Intrinsics]) -> np.ndarray:
        """(n, V, 3) mm camera coordinates and n intrinsics → (n, H, W) float32 depth z in mm, 0 = no surface.

        Each hand's depth map is the one `render` gives it alone, bit for bit. The vertices are
        drawn from (n, 3, V) coordinate planes, copied unless `vertices` is already a float32
        view of such planes (`planes.transpose(0, 2, 1)`, as linear-blend skinning yields them).
        """
        if self._platform is None:
            raise RuntimeError("render() after close()")
        vertices = np.asarray(vertices)
        if vertices.ndim != 3 or vertices.shape[1:] != (self.num_vertices, 3):
            raise ValueError(f"vertices: expected (n, {self.num_vertices}, 3), got {vertices.shape}")
        planes = np.ascontiguousarray(vertices.transpose(0, 2, 1), dtype=np.float32)
        if len(intrinsics) != len(vertices):
            raise ValueError(f"{len(vertices)} hands but {len(intrinsics)} intrinsics")
        for intr in intrinsics:
            if (intr.width, intr.height) != (self.width, self.height):
                raise ValueError(f"intrinsics are {intr.width}x{intr.height}, renderer is {self.width}x{self.height}")
        depth = np.empty((len(vertices), self.height, self.width), dtype=np.float32)
        self._platform.make_current()
        for start in range(0, len(vertices), self.hands_per_draw):
            stop = min(start + self.hands_per_draw, len(vertices))
            self._draw(planes[start:stop], intrinsics[start:stop], depth[start:stop])
        return depth

    def _draw(self, planes: np.ndarray, intrinsics: Sequence[Intrinsics], out: np.ndarray) -> None:
        """One draw of up to `hands_per_draw` hands, one per layer, read back into `out`."""
        gl, hands = self._gl, len(planes)
        gl.glBufferSubData(gl.GL_ARRAY_BUFFER, 0, planes.nbytes, planes)
        self._intrinsics[:hands] = [(c.fx, c.fy, c.cx + 0.5, c.cy + 0.5) for c in intrinsics]
        gl.glUniform4fv(self._intrinsics_location, hands, self._intrinsics)
        # Clearing and reading back cost per layer, so a small draw gets a small texture.
        layers = 1 << (hands - 1).bit_length()
        framebuffer, texture = self._target(layers)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, framebuffer)
        gl.glClear(gl.GL_DEPTH_BUFFER_BIT)
        gl.glMultiDrawElementsBaseVertex(gl.GL_TRIANGLES, self._index_counts, gl.GL_UNSIGNED_INT,
                                         self._index_offsets, hands, self._base_vertices)
        gl.glBindTexture(gl.GL_TEXTURE_2D_ARRAY, texture)
        gl.glGetTexImage(gl.GL_TEXTURE_2D_ARRAY, 0, gl.GL_DEPTH_COMPONENT, gl.GL_FLOAT, self._readback[:layers])
        window_depth = self._readback[:hands]
        np.divide(Z_NEAR_MM, window_depth, out=out, where=window_depth > 0)
        out[window_depth <= 0] = 0.0

    def _target(self, layers: int) -> tuple[int, int]:
        """The framebuffer with a layered float depth texture of `layers` layers, made on first use."""
        if layers not in self._targets:
            gl = self._gl
            texture = gl.glGenTextures(1)
            gl.glBindTexture(gl.GL_TEXTURE_2D_ARRAY, texture)
            gl.glTexImage3D(gl.GL_TEXTURE_2D_ARRAY, 0, gl.GL_DEPTH_COMPONENT32F, self.width, self.height, layers, 0,
                            gl.GL_DEPTH_COMPONENT, gl.GL_FLOAT, None)
            framebuffer = gl.glGenFramebuffers(1)
            gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, framebuffer)
            gl.glFramebufferTexture(gl.GL_FRAMEBUFFER, gl.GL_DEPTH_ATTACHMENT, texture, 0)
            gl.glDrawBuffer(gl.GL_NONE)
            gl.glReadBuffer(gl.GL_NONE)
            status = gl.glCheckFramebufferStatus(gl.GL_FRAMEBUFFER)
            if status != gl.GL_FRAMEBUFFER_COMPLETE:
                raise RuntimeError(f"OpenGL framebuffer of {layers} depth layers is incomplete (status {status:#x})")
            self._targets[layers] = framebuffer, texture
        return self._targets[layers]

    def close(self) -> None:
        """Free the GL context now rather than whenever the garbage collector gets to it."""
        self._finalizer()
        self._platform = None

    def __enter__(self) -> "DepthRenderer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
