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
argument, else $SYNTHGEN_GL, else $PYOPENGL_PLATFORM, else EGL. EGL works with pyrender's
PyOpenGL pin (3.1.0) on any EGL device, Mesa's llvmpipe (CPU) included; OSMesa needs libosmesa6
and PyOpenGL >= 3.1.7, beyond that pin, so it is opt-in. The headless context is made through
PyOpenGL's EGL (or OSMesa) bindings as pyrender's platform classes make it, without importing
pyrender (it brings trimesh, pyglet and its viewer: ~0.7 s of CPU at every rendering process's
start). What is drawn is this module's own, so both backends give identical depth maps at the
same speed on llvmpipe. `synthgen.hand.reference` draws the same meshes through pyrender's scene.

Throughput: at 128² a hand's ~8.8k front-facing triangles are about a pixel each, and
llvmpipe's time goes to vertex processing, triangle setup and binning in the calling thread and
to rasterisation in its own threads (LP_NUM_THREADS; ~60 / 40 % of the CPU time). `render_stream`
keeps one draw in flight, so llvmpipe rasterises the last draw while this thread bins the next
one and its caller skins, normalises and writes: the same depth maps, in less wall time when a
core is free.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import sys
import weakref
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from synthgen.conventions import Intrinsics
from synthgen.hand.mesh import HandMesh

BACKENDS = ("egl", "osmesa")
Z_NEAR_MM = 10.0  # nearer surfaces are clipped; float32 z_near / z resolves ~1e-4 mm at half a metre
MAX_HANDS_PER_DRAW = 64  # 64 hands of 128² per draw; larger draws were no faster on llvmpipe
MAX_LAYER_PIXELS = 3 << 20  # 12 MB of float depth per draw: bigger images get fewer hands per draw
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


EGL_PLATFORM_DEVICE_EXT = 0x313F  # EGL_EXT_platform_device, which PyOpenGL 3.1.0 does not bind


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
        requested = current if current in BACKENDS else "egl"
    if requested == "osmesa" and _version_tuple(importlib.metadata.version("PyOpenGL")) < (3, 1, 7):
        raise RuntimeError(
            "OSMesa rendering needs PyOpenGL >= 3.1.7 (pyrender pins 3.1.0): "
            "`pip install 'pyopengl==3.1.10'` after installing synthgen (pip check then reports the pin)"
        )
    os.environ["PYOPENGL_PLATFORM"] = requested
    return requested


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:3] if part.isdigit())


def _egl_device_display():
    """The initialised EGLDisplay of EGL device $EGL_DEVICE_ID (default 0), as pyrender's
    EGL platform opens it; every call returns the same display for the same device."""
    from OpenGL import EGL

    query_address = EGL.eglGetProcAddress(b"eglQueryDevicesEXT")
    display_address = EGL.eglGetProcAddress(b"eglGetPlatformDisplayEXT")
    if not (query_address and display_address):
        raise RuntimeError("the EGL library lacks EGL_EXT_device_enumeration, which headless rendering needs")
    query_devices = ctypes.CFUNCTYPE(EGL.EGLBoolean, EGL.EGLint, ctypes.POINTER(ctypes.c_void_p),
                                     ctypes.POINTER(EGL.EGLint))(query_address)
    get_display = ctypes.CFUNCTYPE(EGL.EGLDisplay, EGL.EGLenum, ctypes.c_void_p, ctypes.c_void_p)(display_address)
    devices, count = (ctypes.c_void_p * 16)(), EGL.EGLint(0)
    device_index = int(os.environ.get("EGL_DEVICE_ID", "0"))
    if not query_devices(16, devices, ctypes.byref(count)) or device_index >= count.value:
        raise RuntimeError(f"no EGL device {device_index} for headless rendering ({count.value} found); "
                           "install Mesa's EGL (libegl1, libgl1-mesa-dri) or set SYNTHGEN_GL=osmesa")
    display = get_display(EGL_PLATFORM_DEVICE_EXT, devices[device_index], None)
    major, minor = EGL.EGLint(), EGL.EGLint()
    if not display or not EGL.eglInitialize(display, major, minor):
        raise RuntimeError(f"cannot initialise EGL device {device_index} for headless rendering")
    return display


class _EGLContext:
    """A current OpenGL 4.1 core context on an EGL device, with no surface (framebuffers only).

    Made through PyOpenGL's EGL bindings with pyrender's attributes. The device's display is
    left initialised: eglTerminate would end every context on it, pyrender's included.
    """

    def __init__(self) -> None:
        from OpenGL import EGL, arrays

        self._egl = EGL
        self._display = _egl_device_display()
        config_attributes = arrays.GLintArray.asArray([
            EGL.EGL_SURFACE_TYPE, EGL.EGL_PBUFFER_BIT,
            EGL.EGL_BLUE_SIZE, 8, EGL.EGL_GREEN_SIZE, 8, EGL.EGL_RED_SIZE, 8, EGL.EGL_DEPTH_SIZE, 24,
            EGL.EGL_RENDERABLE_TYPE, EGL.EGL_OPENGL_BIT, EGL.EGL_CONFORMANT, EGL.EGL_OPENGL_BIT,
            EGL.EGL_NONE,
        ])
        context_attributes = arrays.GLintArray.asArray([
            EGL.EGL_CONTEXT_MAJOR_VERSION, 4, EGL.EGL_CONTEXT_MINOR_VERSION, 1,
            EGL.EGL_CONTEXT_OPENGL_PROFILE_MASK, EGL.EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT,
            EGL.EGL_NONE,
        ])
        configs, count = (EGL.EGLConfig * 1)(), EGL.EGLint()
        if not (EGL.eglChooseConfig(self._display, config_attributes, configs, 1, count) and count.value
                and EGL.eglBindAPI(EGL.EGL_OPENGL_API)):
            raise RuntimeError(f"EGL offers no OpenGL configuration (error {EGL.eglGetError():#x})")
        self._context = EGL.eglCreateContext(self._display, configs[0], EGL.EGL_NO_CONTEXT, context_attributes)
        if not self._context:
            raise RuntimeError(f"cannot create an OpenGL 4.1 core context on EGL (error {EGL.eglGetError():#x})")
        self.make_current()

    def make_current(self) -> None:
        egl = self._egl
        if ctypes.cast(egl.eglGetCurrentContext(), ctypes.c_void_p).value != self._address:
            if not egl.eglMakeCurrent(self._display, egl.EGL_NO_SURFACE, egl.EGL_NO_SURFACE, self._context):
                raise RuntimeError(f"eglMakeCurrent failed (error {egl.eglGetError():#x})")

    @property
    def _address(self) -> int | None:
        return ctypes.cast(self._context, ctypes.c_void_p).value

    def release(self) -> None:
        egl = self._egl
        if ctypes.cast(egl.eglGetCurrentContext(), ctypes.c_void_p).value == self._address:
            egl.eglMakeCurrent(self._display, egl.EGL_NO_SURFACE, egl.EGL_NO_SURFACE, egl.EGL_NO_CONTEXT)
        egl.eglDestroyContext(self._display, self._context)


class _OSMesaContext:
    """A current OpenGL 3.3 core context of OSMesa, drawing to framebuffers (its own 1x1 buffer unused)."""

    def __init__(self) -> None:
        from OpenGL import arrays, osmesa

        attributes = arrays.GLintArray.asArray([
            osmesa.OSMESA_FORMAT, osmesa.OSMESA_RGBA, osmesa.OSMESA_DEPTH_BITS, 24,
            osmesa.OSMESA_PROFILE, osmesa.OSMESA_CORE_PROFILE,
            osmesa.OSMESA_CONTEXT_MAJOR_VERSION, 3, osmesa.OSMESA_CONTEXT_MINOR_VERSION, 3, 0,
        ])
        self._context = osmesa.OSMesaCreateContextAttribs(attributes, None)
        if not self._context:
            raise RuntimeError("cannot create an OpenGL 3.3 core context with OSMesa")
        self._buffer = arrays.GLubyteArray.zeros((1, 1, 4))
        self.make_current()

    def make_current(self) -> None:
        from OpenGL import GL, osmesa

        if not osmesa.OSMesaMakeCurrent(self._context, self._buffer, GL.GL_UNSIGNED_BYTE, 1, 1):
            raise RuntimeError("OSMesaMakeCurrent failed")

    def release(self) -> None:
        from OpenGL import osmesa

        osmesa.OSMesaDestroyContext(self._context)


class DepthRenderer:
    """Renders posed hand vertices (mm, camera coordinates) to metric depth, a batch at a time.

    width, height: image size in pixels; every call's intrinsics must match it.
    backend: "egl" or "osmesa"; None chooses as described in the module docstring. All
      renderers of a process share one backend.
    faces: (F, 3) triangles, counter-clockwise seen from outside (back faces are culled);
      default: the hand asset's. A hand then has faces.max() + 1 vertices.
    """

    def __init__(self, width: int, height: int, backend: str | None = None, faces: np.ndarray | None = None):
        self.backend = select_backend(backend)
        self.width, self.height = int(width), int(height)
        faces = HandMesh.load().faces if faces is None else np.asarray(faces)
        self.num_vertices = int(faces.max()) + 1
        hands = min(MAX_HANDS_PER_DRAW, max(1, MAX_LAYER_PIXELS // (self.width * self.height)))
        self.hands_per_draw = 1 << (hands.bit_length() - 1)  # a power of two, like each draw's layer count

        self._context = (_EGLContext if self.backend == "egl" else _OSMesaContext)()
        # Unlike __del__, a finalizer also runs at interpreter exit while imports still work.
        self._finalizer = weakref.finalize(self, self._context.release)
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

        # (layers, slot) -> (framebuffer, depth texture); draws alternate between slots 0 and 1,
        # so the one in flight is never the one drawn into next.
        self._targets: dict[tuple[int, int], tuple[int, int]] = {}
        self._index_counts = np.full(self.hands_per_draw, indices.size, dtype=np.int32)
        self._index_offsets = (ctypes.c_void_p * self.hands_per_draw)()  # all hands share the faces
        self._base_vertices = np.arange(self.hands_per_draw, dtype=np.int32) * 3 * self.num_vertices
        self._intrinsics = np.zeros((self.hands_per_draw, 4), dtype=np.float32)
        self._readback = np.empty((self.hands_per_draw, self.height, self.width), dtype=np.float32)
        self._slot = 0

    def render(self, vertices: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
        """(V, 3) mm camera coordinates (OpenCV axes) → (H, W) float32 depth z in mm, 0 = no surface."""
        return self.render_batch(np.asarray(vertices)[None], [intrinsics])[0]

    def render_batch(self, vertices: np.ndarray, intrinsics: Sequence[Intrinsics]) -> np.ndarray:
        """(n, V, 3) mm camera coordinates and n intrinsics → (n, H, W) float32 depth z in mm, 0 = no surface.

        Each hand's depth map is the one `render` gives it alone, bit for bit. The vertices are
        drawn from (n, 3, V) coordinate planes, copied unless `vertices` is already a float32
        view of such planes (`planes.transpose(0, 2, 1)`, as linear-blend skinning yields them).
        """
        return next(self.render_stream([(vertices, intrinsics)]))

    def render_stream(self, batches: Iterable[tuple[np.ndarray, Sequence[Intrinsics]]]) -> Iterator[np.ndarray]:
        """The depth maps of each (vertices, intrinsics) batch in turn, each as `render_batch` gives it.

        Pipelined: a draw is read back only once the next one has been submitted, so the next
        batch is taken from `batches` (and skinned, if it is a generator) before the last one
        is yielded, and llvmpipe rasterises each draw while this thread prepares the next.
        """
        if self._context is None:
            raise RuntimeError("render() after close()")
        pending: deque[list] = deque()  # [depth, draws not yet read back] per batch, in order
        in_flight = None  # (slot, hands, out, batch entry) of the draw not yet read back
        for vertices, intrinsics in batches:
            planes = self._check_batch(vertices, intrinsics)
            entry = [np.empty((len(planes), self.height, self.width), dtype=np.float32), 0]
            pending.append(entry)
            for start in range(0, len(planes), self.hands_per_draw):
                stop = min(start + self.hands_per_draw, len(planes))
                self._context.make_current()
                slot = self._submit(planes[start:stop], intrinsics[start:stop])
                entry[1] += 1
                if in_flight is not None:
                    self._read_back(*in_flight)
                in_flight = (slot, stop - start, entry[0][start:stop], entry)
            while pending and pending[0][1] == 0:
                yield pending.popleft()[0]
        if in_flight is not None:
            self._context.make_current()
            self._read_back(*in_flight)
        while pending:
            yield pending.popleft()[0]

    def _check_batch(self, vertices: np.ndarray, intrinsics: Sequence[Intrinsics]) -> np.ndarray:
        """The batch's (n, 3, V) float32 coordinate planes, after checking it against this renderer."""
        vertices = np.asarray(vertices)
        if vertices.ndim != 3 or vertices.shape[1:] != (self.num_vertices, 3):
            raise ValueError(f"vertices: expected (n, {self.num_vertices}, 3), got {vertices.shape}")
        if len(intrinsics) != len(vertices):
            raise ValueError(f"{len(vertices)} hands but {len(intrinsics)} intrinsics")
        for intr in intrinsics:
            if (intr.width, intr.height) != (self.width, self.height):
                raise ValueError(f"intrinsics are {intr.width}x{intr.height}, renderer is {self.width}x{self.height}")
        return np.ascontiguousarray(vertices.transpose(0, 2, 1), dtype=np.float32)

    def _submit(self, planes: np.ndarray, intrinsics: Sequence[Intrinsics]) -> int:
        """Draw up to `hands_per_draw` hands, one per layer, and hand the draw to llvmpipe's
        rasteriser (glFlush); returns the target slot to read it back from."""
        gl, hands = self._gl, len(planes)
        gl.glBufferSubData(gl.GL_ARRAY_BUFFER, 0, planes.nbytes, planes)
        self._intrinsics[:hands] = [(c.fx, c.fy, c.cx + 0.5, c.cy + 0.5) for c in intrinsics]
        gl.glUniform4fv(self._intrinsics_location, hands, self._intrinsics)
        # Clearing and reading back cost per layer, so a small draw gets a small texture.
        slot, self._slot = self._slot, 1 - self._slot
        framebuffer, _ = self._target(1 << (hands - 1).bit_length(), slot)
        gl.glBindFramebuffer(gl.GL_FRAMEBUFFER, framebuffer)
        gl.glClear(gl.GL_DEPTH_BUFFER_BIT)
        gl.glMultiDrawElementsBaseVertex(gl.GL_TRIANGLES, self._index_counts, gl.GL_UNSIGNED_INT,
                                         self._index_offsets, hands, self._base_vertices)
        gl.glFlush()
        return slot

    def _read_back(self, slot: int, hands: int, out: np.ndarray, entry: list) -> None:
        """Wait for a submitted draw and turn its window depth into metric depth in `out`."""
        gl, layers = self._gl, 1 << (hands - 1).bit_length()
        gl.glBindTexture(gl.GL_TEXTURE_2D_ARRAY, self._target(layers, slot)[1])
        gl.glGetTexImage(gl.GL_TEXTURE_2D_ARRAY, 0, gl.GL_DEPTH_COMPONENT, gl.GL_FLOAT, self._readback[:layers])
        window_depth = self._readback[:hands]
        np.divide(Z_NEAR_MM, window_depth, out=out, where=window_depth > 0)
        out[window_depth <= 0] = 0.0
        entry[1] -= 1

    def _target(self, layers: int, slot: int) -> tuple[int, int]:
        """Slot `slot`'s framebuffer with a layered float depth texture of `layers` layers, made on first use."""
        if (layers, slot) not in self._targets:
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
            self._targets[layers, slot] = framebuffer, texture
        return self._targets[layers, slot]

    def close(self) -> None:
        """Free the GL context now rather than whenever the garbage collector gets to it."""
        self._finalizer()
        self._context = None

    def __enter__(self) -> DepthRenderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
