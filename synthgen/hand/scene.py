"""What surrounds the hand in a baseline crop: forearm and sleeve, held and nearby objects, a
background surface, and how the hand is seen and shaped.

A real depth crop of a hand is rarely a hand alone: the forearm (bare or in a sleeve) fills the
lower part of the cube, a held object hides fingers, a table or the body lies inside the cube.
`SceneConfig` says how often each appears and how big it is; `SceneGeometry.draw` turns a batch
of posed hands into extra surfaces in camera coordinates, one fixed-topology mesh per hand, so
the batched renderer draws hand and scene in the same draw. Absent parts collapse to a point
(zero-area triangles draw nothing). The labels are untouched: joints hidden by an object or a
surface keep their exact positions.

Geometry (hand frame: wrist at the origin, fingers along +y, palm facing -z, mm, times the
hand's size):
* forearm: an elliptic tube from inside the hand mesh's wrist stub (y = -40) back along the
  forearm axis, which leaves the hand at a wrist flexion and deviation; it widens towards the
  elbow. A sleeve is a wider tube over its far part, with an annulus where it ends.
* objects: superquadrics (Barr 1981; sphere, box and cylinder are exponent pairs), one or two
  parts each (bottle = body + neck, mug = body + handle, tool = handle + head). A held object
  sits against the palm, oriented across it; a nearby one anywhere around the hand.
* background: a plane facing the camera (tilted up to `max_tilt_deg`), behind every joint by a
  gap: a wall, the body or a table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import tomllib

from synthgen.errors import InputError
from synthgen.hand.prior import PriorConfig

OBJECT_KINDS = ("sphere", "box", "cylinder", "bottle", "mug", "tool")
SENSOR_NAMES = ("none", "structured-light", "sr305", "tof", "active-stereo")
SCENE_CENTERINGS = ("joint-box", "center-of-mass", "capped-center-of-mass")

# Mesh resolution of the scene parts (vertices per hand: 2 tubes, 4 superquadrics, a plane).
_TUBE_RINGS, _TUBE_SEGMENTS = 6, 12
_SQ_RINGS, _SQ_SEGMENTS = 7, 12
_PARTS = 4  # two objects of up to two parts each
_WRIST_STUB_Y, _WRIST_STUB_Z = -40.0, -6.0  # where the tube starts, inside the hand mesh's wrist stub


@dataclass(frozen=True)
class ForearmConfig:
    """The forearm and its sleeve. Widths are the average hand's, times the hand's size."""

    probability: float = 1.0
    length_mm: tuple[float, float] = (180.0, 300.0)  # from the wrist joint, before the crop's far side
    wrist_width_mm: tuple[float, float] = (52.0, 64.0)
    thickness_ratio: tuple[float, float] = (0.6, 0.8)  # thickness / width
    elbow_growth: tuple[float, float] = (1.1, 1.5)  # width at the far end / at the wrist
    flexion_deg: tuple[float, float] = (-45.0, 45.0)  # wrist flexion (+ bends the palm side in)
    deviation_deg: tuple[float, float] = (-15.0, 25.0)  # radial (-) / ulnar (+) deviation
    sleeve_probability: float = 0.6
    sleeve_start_mm: tuple[float, float] = (40.0, 160.0)  # from the wrist joint
    sleeve_margin_mm: tuple[float, float] = (4.0, 20.0)  # extra radius of the sleeve


@dataclass(frozen=True)
class ObjectConfig:
    """Objects held in the hand and lying near it (sizes: the largest half-axis, mm)."""

    held_probability: float = 0.25
    near_probability: float = 0.2
    kinds: tuple[str, ...] = OBJECT_KINDS
    size_mm: tuple[float, float] = (20.0, 60.0)
    near_distance_mm: tuple[float, float] = (50.0, 130.0)  # from the hand's centre


@dataclass(frozen=True)
class BackgroundConfig:
    """A surface behind the hand, inside the cube or beyond it."""

    probability: float = 0.3
    gap_mm: tuple[float, float] = (30.0, 200.0)  # behind the farthest joint
    max_tilt_deg: float = 60.0


@dataclass(frozen=True)
class ShapeConfig:
    """Hand shape beyond size (kinematics.PROPORTIONS): Gaussian ratios, clipped to `limit`."""

    finger_length_std: float = 0.05
    palm_width_std: float = 0.05
    girth_std: float = 0.08
    limit: tuple[float, float] = (0.8, 1.25)


#: Baseline v2's pose prior: more resting and gesturing hands ("natural", "count") and fewer
#: fists, finger spread and DIP coupling closer to real hands, fingers pointing anywhere in the
#: upper half-plane and up to 70° towards or away from the camera, the palm shown in 70 % of
#: third-person views, one view in five egocentric (docs/baseline.md: coverage of real poses).
V2_POSE = PriorConfig(
    grasp_weights={"open": 0.1, "relaxed": 0.15, "natural": 0.3, "count": 0.2, "fist": 0.05, "point": 0.05,
                   "pinch": 0.05, "free": 0.1},
    spread_range=(-0.8, 1.0), dip_pip_ratio=0.8, max_inplane_deg=90.0, max_tilt_deg=70.0, palm_facing=0.7,
    viewpoints={"third-person": 0.8, "egocentric": 0.2})


@dataclass(frozen=True)
class SceneConfig:
    """Everything the baseline draws around the pose prior's hand. The defaults are baseline v2:
    every component on. `SceneConfig.clean()` is the bare hand (baseline v1)."""

    forearm: ForearmConfig = field(default_factory=ForearmConfig)
    objects: ObjectConfig = field(default_factory=ObjectConfig)
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    shape: ShapeConfig | None = field(default_factory=ShapeConfig)
    pose: PriorConfig = field(default_factory=lambda: V2_POSE)
    sensor: str = "structured-light"
    centering: str = "capped-center-of-mass"

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def clean(cls) -> SceneConfig:
        """The bare hand, no sensor, crops on the joints' box (the original baseline)."""
        return cls(forearm=replace(ForearmConfig(), probability=0.0),
                   objects=replace(ObjectConfig(), held_probability=0.0, near_probability=0.0),
                   background=replace(BackgroundConfig(), probability=0.0), shape=None,
                   pose=PriorConfig(), sensor="none", centering="joint-box")

    @property
    def has_geometry(self) -> bool:
        return (self.forearm.probability > 0 or self.objects.held_probability > 0
                or self.objects.near_probability > 0 or self.background.probability > 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, where: str = "scene") -> SceneConfig:
        """From a `[scene]` table: every key optional, unknown keys and bad values refused
        (InputError naming the key)."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a table")
        parts = {"forearm": ForearmConfig, "objects": ObjectConfig, "background": BackgroundConfig,
                 "shape": ShapeConfig, "pose": PriorConfig}
        defaults, kwargs = cls(), {}
        for key, value in data.items():
            if key in parts:
                if key == "shape" and value is False:
                    kwargs[key] = None
                    continue
                base = getattr(defaults, key) or parts[key]()
                kwargs[key] = _dataclass_from(parts[key], base, value, f"{where}.{key}")
            elif key in ("sensor", "centering"):
                if not isinstance(value, str):
                    raise InputError(f"{where}.{key}: expected a string, got {value!r}")
                kwargs[key] = value
            else:
                raise InputError(f"{where}: unknown key {key!r} (known: {', '.join([*parts, 'sensor', 'centering'])})")
        try:
            return replace(defaults, **kwargs)
        except InputError as error:
            raise InputError(f"{where}.{error}") from None

    @classmethod
    def load(cls, path: str | Path) -> SceneConfig:
        """A scene file: TOML with a `[scene]` table (or the table's keys at top level)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"scene file not found: {path}")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise InputError(f"{path}: not valid TOML ({error})") from None
        return cls.from_dict(data.get("scene", data), f"{path}: scene")


def load_scene(spec: str | Path, sensor: str | None = None) -> SceneConfig:
    """"v2" (the defaults), "clean" (`SceneConfig.clean()`) or a scene file; `sensor` replaces
    the scene's sensor model."""
    if str(spec) == "v2":
        scene = SceneConfig()
    elif str(spec) == "clean":
        scene = SceneConfig.clean()
    else:
        scene = SceneConfig.load(spec)
    if sensor is not None:
        try:
            scene = replace(scene, sensor=sensor)
        except InputError as error:
            raise InputError(str(error).removeprefix("sensor: "), option="sensor") from None
    return scene


def _dataclass_from(kind, base, values: dict, where: str):
    if not isinstance(values, dict):
        raise InputError(f"{where}: expected a table")
    known = {f.name: f for f in fields(kind)}
    out = {}
    for key, value in values.items():
        if key not in known:
            raise InputError(f"{where}: unknown key {key!r} (known: {', '.join(known)})")
        current = getattr(base, key)
        if isinstance(current, tuple) and isinstance(value, list):
            value = tuple(value)
        if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(current, tuple) and current and isinstance(current[0], float):
            value = tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
        if type(value) is not type(current) and not (isinstance(current, dict) and isinstance(value, dict)):
            raise InputError(f"{where}.{key}: expected {type(current).__name__}, got {value!r}")
        out[key] = value
    return replace(base, **out)


def _validate(scene: SceneConfig) -> None:
    def probability(name: str, p: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise InputError(f"{name}: a probability must lie in [0, 1], got {p}")

    def interval(name: str, r: tuple[float, float], zero_allowed: bool = False) -> None:
        if len(r) != 2 or not all(np.isfinite(r)):
            raise InputError(f"{name}: expected [low, high], got {list(r)}")
        if r[0] > r[1]:
            raise InputError(f"{name}: low {r[0]} exceeds high {r[1]}")
        if r[0] < 0 or (r[0] == 0 and not zero_allowed):
            raise InputError(f"{name}: sizes must be positive, got {list(r)}")

    f, o, b, s = scene.forearm, scene.objects, scene.background, scene.shape
    probability("forearm.probability", f.probability)
    probability("forearm.sleeve_probability", f.sleeve_probability)
    for name in ("length_mm", "wrist_width_mm", "thickness_ratio", "sleeve_start_mm", "sleeve_margin_mm"):
        interval(f"forearm.{name}", getattr(f, name))
    interval("forearm.elbow_growth", f.elbow_growth)
    for name in ("flexion_deg", "deviation_deg"):
        r = getattr(f, name)
        if len(r) != 2 or r[0] > r[1] or max(abs(r[0]), abs(r[1])) > 90:
            raise InputError(f"forearm.{name}: expected [low, high] within [-90, 90], got {list(r)}")
    probability("objects.held_probability", o.held_probability)
    probability("objects.near_probability", o.near_probability)
    if not o.kinds:
        raise InputError("objects.kinds: name at least one kind")
    for kind in o.kinds:
        if kind not in OBJECT_KINDS:
            raise InputError(f"objects.kinds: unknown object kind {kind!r} (known: {', '.join(OBJECT_KINDS)})")
    interval("objects.size_mm", o.size_mm)
    interval("objects.near_distance_mm", o.near_distance_mm)
    probability("background.probability", b.probability)
    interval("background.gap_mm", b.gap_mm, zero_allowed=True)
    if not 0.0 <= b.max_tilt_deg < 90.0:
        raise InputError(f"background.max_tilt_deg: expected a value in [0, 90), got {b.max_tilt_deg}")
    if s is not None:
        for name in ("finger_length_std", "palm_width_std", "girth_std"):
            if not 0.0 <= getattr(s, name) <= 0.5:
                raise InputError(f"shape.{name}: expected a value in [0, 0.5], got {getattr(s, name)}")
        interval("shape.limit", s.limit)
        if not s.limit[0] <= 1.0 <= s.limit[1]:
            raise InputError(f"shape.limit: must contain 1, got {list(s.limit)}")
    try:
        scene.pose.validate()
    except ValueError as error:
        raise InputError(f"pose.{error}") from None
    if scene.sensor not in SENSOR_NAMES:
        raise InputError(f"sensor: unknown sensor {scene.sensor!r} (known: {', '.join(SENSOR_NAMES)})")
    if scene.centering not in SCENE_CENTERINGS:
        raise InputError(f"centering: unknown rule {scene.centering!r} (known: {', '.join(SCENE_CENTERINGS)})")


# --- meshes of fixed topology ------------------------------------------------------------------


def _grid_faces(rows: int, cols: int) -> np.ndarray:
    """Quads between consecutive rows of a (rows, cols) vertex grid (columns wrap around)."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols), indexing="ij")
    a = r * cols + c
    b = r * cols + (c + 1) % cols
    d, e = a + cols, b + cols
    return np.concatenate([np.stack([a, d, b], -1), np.stack([b, d, e], -1)]).reshape(-1, 3)


def _orient_outwards(faces: np.ndarray, vertices: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Flip faces so that they turn counter-clockwise seen from outside (`inside`: a point per face)."""
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    normal = np.cross(v1 - v0, v2 - v0)
    outward = ((v0 + v1 + v2) / 3 - inside)
    flip = (normal * outward).sum(1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def _superquadric_unit() -> tuple[np.ndarray, np.ndarray]:
    """(eta, omega) of the parameter grid plus poles, and outward faces of a unit sphere on it."""
    eta = np.linspace(-np.pi / 2, np.pi / 2, _SQ_RINGS + 2)[1:-1]
    omega = np.linspace(-np.pi, np.pi, _SQ_SEGMENTS, endpoint=False)
    grid = np.stack(np.meshgrid(eta, omega, indexing="ij"), -1).reshape(-1, 2)
    params = np.concatenate([grid, [[-np.pi / 2, 0.0], [np.pi / 2, 0.0]]])
    faces = [_grid_faces(_SQ_RINGS, _SQ_SEGMENTS)]
    south, north = len(grid), len(grid) + 1
    top = (_SQ_RINGS - 1) * _SQ_SEGMENTS
    for c in range(_SQ_SEGMENTS):
        faces.append([[south, c, (c + 1) % _SQ_SEGMENTS]])
        faces.append([[north, top + (c + 1) % _SQ_SEGMENTS, top + c]])
    faces = np.concatenate(faces)
    e, w = params[:, 0], params[:, 1]
    sphere = np.stack([np.cos(e) * np.cos(w), np.cos(e) * np.sin(w), np.sin(e)], -1)
    return params, _orient_outwards(faces, sphere, np.zeros(3))


def _signed_power(x: np.ndarray, p: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.abs(x) ** p


@dataclass(frozen=True)
class _Template:
    tube_faces: np.ndarray  # forearm: rings x segments
    sleeve_faces: np.ndarray  # sleeve tube + the annulus at its near end (indices into its block)
    sq_params: np.ndarray
    sq_faces: np.ndarray
    counts: dict

    @property
    def num_vertices(self) -> int:
        return sum(self.counts.values())


def _template() -> _Template:
    tube_n = _TUBE_RINGS * _TUBE_SEGMENTS
    theta = np.linspace(0, 2 * np.pi, _TUBE_SEGMENTS, endpoint=False)
    unit_tube = np.stack([np.cos(theta)[None].repeat(_TUBE_RINGS, 0), np.linspace(0, -1, _TUBE_RINGS)[:, None]
                          .repeat(_TUBE_SEGMENTS, 1), np.sin(theta)[None].repeat(_TUBE_RINGS, 0)], -1).reshape(-1, 3)
    tube_faces = _grid_faces(_TUBE_RINGS, _TUBE_SEGMENTS)
    axis_points = unit_tube * np.array([0.0, 1.0, 0.0])
    tube_faces = _orient_outwards(tube_faces, unit_tube, axis_points[tube_faces].mean(1))
    # Sleeve: an inner ring (on the forearm) then the tube's rings; the annulus faces the wrist.
    sleeve_faces = _grid_faces(_TUBE_RINGS + 1, _TUBE_SEGMENTS)
    unit_sleeve = np.concatenate([unit_tube[:_TUBE_SEGMENTS] * [0.5, 1, 0.5], unit_tube])
    sleeve_inside = np.where((sleeve_faces < _TUBE_SEGMENTS).any(1)[:, None],
                             unit_sleeve[sleeve_faces].mean(1) + [0, -1, 0],  # annulus: outside is +y
                             (unit_sleeve * [0, 1, 0])[sleeve_faces].mean(1))
    sleeve_faces = _orient_outwards(sleeve_faces, unit_sleeve, sleeve_inside)
    sq_params, sq_faces = _superquadric_unit()
    counts = {"forearm": tube_n, "sleeve": tube_n + _TUBE_SEGMENTS, "parts": _PARTS * len(sq_params), "plane": 4}
    return _Template(tube_faces, sleeve_faces, sq_params, sq_faces, counts)


TEMPLATE = _template()


def scene_faces(hand_vertices: int) -> np.ndarray:
    """Faces of the scene parts, indexed after a hand's `hand_vertices` vertices."""
    t, offset, out = TEMPLATE, hand_vertices, []
    out.append(t.tube_faces + offset)
    offset += t.counts["forearm"]
    out.append(t.sleeve_faces + offset)
    offset += t.counts["sleeve"]
    for _ in range(_PARTS):
        out.append(t.sq_faces + offset)
        offset += len(t.sq_params)
    out.append(np.array([[0, 1, 2], [0, 2, 3]]) + offset)  # the plane, counter-clockwise seen from the camera side
    return np.concatenate(out).astype(np.int32)


# --- drawing a batch ------------------------------------------------------------------------------

# (e1, e2) exponents of each part shape, and per object kind its parts: shape, relative
# half-axes (x, y, z; z is the part's long axis) and where the part sits relative to the first
# (in units of the first's half-axes).
_SHAPES = {"sphere": (0.9, 0.9), "box": (0.2, 0.2), "cylinder": (0.2, 1.0)}
_ORIGIN = (0, 0, 0)
_OBJECTS = {
    "sphere": [("sphere", (1.0, 1.0, 1.0), _ORIGIN)],
    "box": [("box", (0.8, 0.55, 1.0), _ORIGIN)],
    "cylinder": [("cylinder", (0.45, 0.45, 1.0), _ORIGIN)],
    "bottle": [("cylinder", (0.45, 0.45, 1.0), _ORIGIN), ("cylinder", (0.17, 0.17, 0.35), (0, 0, 1.3))],
    "mug": [("cylinder", (0.6, 0.6, 0.7), _ORIGIN), ("box", (0.25, 0.08, 0.4), (1.2, 0, 0))],
    "tool": [("cylinder", (0.15, 0.15, 1.0), _ORIGIN), ("box", (0.5, 0.25, 0.2), (0, 0, 1.1))],
}


def _unit_part(e1: float, e2: float) -> np.ndarray:
    """(P, 3) the superquadric of exponents (e1, e2) and unit half-axes on the template's grid."""
    eta, omega = TEMPLATE.sq_params[:, 0], TEMPLATE.sq_params[:, 1]
    return np.stack([_signed_power(np.cos(eta), e1) * _signed_power(np.cos(omega), e2),
                     _signed_power(np.cos(eta), e1) * _signed_power(np.sin(omega), e2),
                     _signed_power(np.sin(eta), e1)], -1)


_UNIT_PARTS = {shape: _unit_part(*exponents) for shape, exponents in _SHAPES.items()}


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                     2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                     2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1).reshape(n, 3, 3)


def _axis_rotation(axis: int, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    R = np.zeros((len(angle), 3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R[:, axis, axis] = 1
    R[:, i, i], R[:, i, j], R[:, j, i], R[:, j, j] = c, -s, s, c
    return R


class SceneGeometry:
    """Draws the scene around a batch of posed hands (see the module docstring)."""

    def __init__(self, config: SceneConfig):
        self.config = config

    @property
    def num_vertices(self) -> int:
        return TEMPLATE.num_vertices

    def draw(self, rng: np.random.Generator, rotation: np.ndarray, wrist: np.ndarray, scale: np.ndarray,
             joints: np.ndarray) -> np.ndarray:
        """(n, 3, E) coordinate planes (mm, camera frame) of the scene parts of n hands.

        rotation (n, 3, 3) hand frame → camera, wrist (n, 3) mm, scale (n,), joints (n, 21, 3) mm.
        Draws in a fixed order from `rng`, whatever is switched off.
        """
        n = len(wrist)
        local = [self._forearm(rng, n, scale)]  # hand-frame parts first
        held = self._objects(rng, n, scale, held=True)
        local = np.concatenate([*local[0], held], axis=1)
        posed = np.einsum("nij,nvj->nvi", rotation, local) + wrist[:, None]
        near = self._objects(rng, n, scale, held=False, joints=joints)
        plane = self._plane(rng, joints)
        return np.concatenate([posed, near, plane], axis=1).astype(np.float32).transpose(0, 2, 1)

    # -- forearm and sleeve, hand frame
    def _forearm(self, rng: np.random.Generator, n: int, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = self.config.forearm
        present = rng.random(n) < f.probability
        length = rng.uniform(*f.length_mm, n) * scale
        width = rng.uniform(*f.wrist_width_mm, n) * scale
        thickness = width * rng.uniform(*f.thickness_ratio, n)
        growth = rng.uniform(*f.elbow_growth, n)
        flexion = np.radians(rng.uniform(*f.flexion_deg, n))
        deviation = np.radians(rng.uniform(*f.deviation_deg, n))
        sleeve = present & (rng.random(n) < f.sleeve_probability)
        sleeve_start = rng.uniform(*f.sleeve_start_mm, n) * scale
        margin = rng.uniform(*f.sleeve_margin_mm, n)

        bend = _axis_rotation(0, -flexion) @ _axis_rotation(2, deviation)  # wrist: palm side is -z
        start = np.array([0.0, _WRIST_STUB_Y, _WRIST_STUB_Z]) * scale[:, None]
        theta = np.linspace(0, 2 * np.pi, _TUBE_SEGMENTS, endpoint=False)
        t = np.linspace(0, 1, _TUBE_RINGS)

        def tube(t0, t1, extra):  # (n, rings, segments, 3) hand frame
            along = t0[:, None] + (t1 - t0)[:, None] * t[None]  # distance from the stub start
            widen = 1 + (growth[:, None] - 1) * along / np.maximum(length[:, None], 1)
            a = (width[:, None] / 2 * widen + extra[:, None])[..., None]
            b = (thickness[:, None] / 2 * widen + extra[:, None])[..., None]
            ring = np.stack([a * np.cos(theta), -along[..., None].repeat(_TUBE_SEGMENTS, -1), b * np.sin(theta)], -1)
            return np.einsum("nij,nrsj->nrsi", bend, ring) + start[:, None, None]

        forearm = tube(np.zeros(n), length, np.zeros(n)).reshape(n, -1, 3)
        s0 = np.minimum(sleeve_start, length)
        sleeve_tube = tube(s0, length, margin)
        inner = tube(s0, s0, np.zeros(n))[:, :1]
        sleeve_mesh = np.concatenate([inner, sleeve_tube], axis=1).reshape(n, -1, 3)
        forearm[~present] = 0.0
        sleeve_mesh[~sleeve] = 0.0
        return forearm, sleeve_mesh

    # -- objects
    def _object_parts(self, rng: np.random.Generator, n: int, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 2, P, 3) two parts in the object's own frame (collapsed when absent), and the
        object's half-extent along its own x (to rest it against the palm)."""
        kinds = self.config.objects.kinds
        kind = rng.integers(0, len(kinds), n)
        aspect = rng.uniform(0.75, 1.25, (n, 3))
        out = np.zeros((n, 2, len(TEMPLATE.sq_params), 3))
        half_x = np.zeros(n)
        for k, name in enumerate(kinds):
            rows = kind == k
            if not rows.any():
                continue
            first = size[rows, None] * np.array(_OBJECTS[name][0][1]) * aspect[rows]
            for p, (shape, axes, offset) in enumerate(_OBJECTS[name]):
                radii = size[rows, None] * np.array(axes) * aspect[rows]
                out[rows, p] = _UNIT_PARTS[shape][None] * radii[:, None] + (first * np.array(offset))[:, None]
            half_x[rows] = first[:, 0]
        return out, half_x

    def _objects(self, rng: np.random.Generator, n: int, scale: np.ndarray, held: bool,
                 joints: np.ndarray | None = None) -> np.ndarray:
        o = self.config.objects
        present = rng.random(n) < (o.held_probability if held else o.near_probability)
        size = rng.uniform(*o.size_mm, n)
        parts, half_x = self._object_parts(rng, n, size)
        if held:  # across the palm: long axis along the hand's x, resting against the palm (-z)
            spin = _axis_rotation(2, rng.uniform(-0.5, 0.5, n)) @ _axis_rotation(1, np.full(n, np.pi / 2))
            palm = np.array([0.0, 45.0, -12.0]) * scale[:, None]
            lift = np.stack([np.zeros(n), rng.uniform(-15, 25, n), -(half_x + rng.uniform(0, 8, n))], -1)
            centre = palm + lift
        else:  # anywhere around the hand's centre
            spin = _random_rotations(rng, n)
            direction = rng.standard_normal((n, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            box = (joints.min(1) + joints.max(1)) / 2
            centre = box + direction * rng.uniform(*o.near_distance_mm, n)[:, None]
        placed = np.einsum("nij,nkpj->nkpi", spin, parts) + centre[:, None, None]
        placed[~present] = 0.0
        return placed.reshape(n, -1, 3)

    # -- background plane, camera frame
    def _plane(self, rng: np.random.Generator, joints: np.ndarray) -> np.ndarray:
        b = self.config.background
        n = len(joints)
        present = rng.random(n) < b.probability
        tilt = np.radians(rng.uniform(0, b.max_tilt_deg, n))
        azimuth = rng.uniform(-np.pi, np.pi, n)
        normal = np.stack([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), -np.cos(tilt)], -1)
        gap = rng.uniform(*b.gap_mm, n)
        # Camera side is n·x > c: every joint in front of the plane by at least the gap.
        c = (joints * normal[:, None]).sum(-1).min(1) - gap
        box = (joints.min(1) + joints.max(1)) / 2
        foot = box + (c - (box * normal).sum(1))[:, None] * normal  # box centre projected on the plane
        u = np.cross(normal, [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        v = np.cross(normal, u)
        half = 600.0
        corners = np.stack([foot + half * (-u - v), foot + half * (u - v), foot + half * (u + v),
                            foot + half * (-u + v)], 1)
        corners = _facing_camera(corners)
        corners[~present] = 0.0
        return corners


def _facing_camera(corners: np.ndarray) -> np.ndarray:
    """Order each quad's corners counter-clockwise as the camera sees them (y-up convention of
    the renderer: its front faces are counter-clockwise in camera coordinates with y up)."""
    v0, v1, v2 = corners[:, 0], corners[:, 1], corners[:, 2]
    normal = np.cross(v1 - v0, v2 - v0)
    toward_camera = (normal * -v0).sum(1) > 0
    out = corners.copy()
    out[~toward_camera] = corners[~toward_camera][:, ::-1]
    return out
