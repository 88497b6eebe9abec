"""The hand mesh asset, linear-blend skinning and the depth renderer.

The renderer tests pin the two conventions that silently corrupt training data when wrong:
pixel centres (OpenCV, column i at u = i) and metric depth (z, not distance along the ray).
The fingertip test checks what the data promises: rendered depth and joint labels agree.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from packaging.version import Version
from scipy.spatial.transform import Rotation

from synthgen.conventions import CAMERAS, FINGERTIPS, NUM_JOINTS, PARENTS, Intrinsics, finger_chain
from synthgen.hand import camera, skeleton
from synthgen.hand.kinematics import HandPose, forward_kinematics
from synthgen.hand.mesh import DEFAULT_MESH_PATH, HandMesh, pose_vertices
from synthgen.hand.render import DepthRenderer

REPO_ROOT = Path(__file__).resolve().parents[1]
CROP = camera.crop_intrinsics(np.array([30.0, -20.0, 450.0]))


@pytest.fixture(scope="module")
def mesh() -> HandMesh:
    return HandMesh.load()


@pytest.fixture(scope="module")
def crop_renderer():
    with DepthRenderer(CROP.width, CROP.height) as renderer:
        yield renderer


def _facing_poses(rng: np.random.Generator, count: int) -> HandPose:
    """Random articulations seen from the back or the palm (tilted up to 35°, any roll), with
    the hand centre 350-600 mm from the camera."""
    lower, upper = skeleton.ANGLE_LIMITS[:, 0], skeleton.ANGLE_LIMITS[:, 1]
    angles = rng.uniform(lower, upper, size=(count, skeleton.NUM_ANGLES))
    back_to_camera = Rotation.from_rotvec(np.outer(rng.random(count) < 0.5, [np.pi, 0.0, 0.0]))
    roll = Rotation.from_rotvec(np.outer(rng.uniform(-np.pi, np.pi, count), [0.0, 0.0, 1.0]))
    tilt_direction = rng.uniform(0, 2 * np.pi, count)
    tilt_axis = np.column_stack([np.cos(tilt_direction), np.sin(tilt_direction), np.zeros(count)])
    tilt = Rotation.from_rotvec(tilt_axis * np.radians(rng.uniform(0, 35, count))[:, None])
    rotation = torch.tensor((tilt * roll * back_to_camera).as_rotvec(), dtype=torch.float32)
    pose = HandPose(rotation, torch.zeros(count, 3), torch.tensor(angles, dtype=torch.float32), torch.ones(count))
    centers = camera.hand_center(forward_kinematics(pose)[0].numpy())
    targets = np.column_stack([rng.uniform(-60, 60, (count, 2)), rng.uniform(350, 600, count)])
    pose.translation = torch.tensor(targets - centers, dtype=torch.float32)
    return pose


def _quad(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two triangles, counter-clockwise seen from the camera (which looks down +z, y down)."""
    return corners.astype(np.float32), np.array([[0, 2, 1], [0, 3, 2]], dtype=np.int32)


# --- the asset ------------------------------------------------------------------------------


def test_asset_loads_without_pickle_and_is_small(mesh):
    assert DEFAULT_MESH_PATH.stat().st_size < 2_000_000
    with np.load(DEFAULT_MESH_PATH, allow_pickle=False) as data:
        assert int(data["version"]) >= 1
    assert 8_000 <= len(mesh.faces) <= 20_000


def test_mesh_is_one_closed_outward_shell(mesh):
    surface = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    assert surface.is_watertight and surface.is_winding_consistent
    assert surface.body_count == 1
    assert 250_000 < surface.volume < 600_000  # mm³: a hand and a short forearm stub


def test_skin_weights_are_valid_and_fingers_do_not_share_vertices(mesh):
    assert np.all(mesh.skin_weights >= 0)
    np.testing.assert_allclose(mesh.skin_weights.sum(axis=1), 1.0, atol=1e-5)
    weighted = mesh.skin_weights > 0
    assert not np.isin(mesh.skin_joints[weighted], FINGERTIPS).any(), "TIP joints carry no bone"
    finger_of_joint = np.full(NUM_JOINTS, -1)
    for finger in range(5):
        finger_of_joint[list(finger_chain(finger))] = finger
    fingers = np.where(weighted, finger_of_joint[mesh.skin_joints], -1)
    fingers_per_vertex = [len(set(row) - {-1}) for row in fingers]
    assert max(fingers_per_vertex) == 1


def test_load_names_the_bad_array(tmp_path, mesh):
    path = tmp_path / "bad.npz"
    np.savez(path, vertices=mesh.vertices[:, :2], faces=mesh.faces, skin_joints=mesh.skin_joints,
             skin_weights=mesh.skin_weights)
    with pytest.raises(ValueError, match="vertices"):
        HandMesh.load(path)


# --- skinning -------------------------------------------------------------------------------


def test_rest_pose_reproduces_the_asset(mesh):
    posed = pose_vertices(mesh, HandPose.rest(2))
    assert posed.shape == (2, len(mesh.vertices), 3)
    np.testing.assert_allclose(posed[1].numpy(), mesh.vertices, atol=1e-3)


def test_flat_hand_moves_rigidly(mesh):
    rotation = Rotation.from_rotvec([0.3, -1.2, 2.0])
    translation = np.array([10.0, -20.0, 400.0])
    pose = HandPose(
        torch.tensor(rotation.as_rotvec(), dtype=torch.float32)[None],
        torch.tensor(translation, dtype=torch.float32)[None],
        torch.zeros(1, skeleton.NUM_ANGLES),
        torch.tensor([1.1]),
    )
    expected = 1.1 * rotation.apply(mesh.vertices) + translation
    np.testing.assert_allclose(pose_vertices(mesh, pose)[0].numpy(), expected, atol=1e-2)


# --- renderer conventions -------------------------------------------------------------------


@pytest.mark.parametrize("name", [*CAMERAS, "crop"])
def test_sphere_lands_on_its_projected_pixel(name):
    cam = CROP if name == "crop" else CAMERAS[name]
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=6.0)
    rng = np.random.default_rng(1)
    with DepthRenderer(cam.width, cam.height, faces=sphere.faces) as renderer:
        for _ in range(3):
            center_uv = rng.uniform([0.3 * cam.width, 0.3 * cam.height], [0.7 * cam.width, 0.7 * cam.height])
            center = camera.unproject(np.array([*center_uv, rng.uniform(350, 600)]), cam)
            depth = renderer.render(sphere.vertices + center, cam)
            rows, cols = np.nonzero(depth)
            assert len(rows) > 20
            assert abs(cols.mean() - center_uv[0]) < 0.5 and abs(rows.mean() - center_uv[1]) < 0.5


def test_tilted_plane_matches_pixel_centre_rays_exactly():
    """Depth at pixel (i, r) is the plane's z on the ray through u = i, v = r; a half-pixel
    error in the principal point would show up here as ~0.4 mm."""
    normal = np.array([0.4, -0.3, 1.0])
    point = np.array([0.0, 0.0, 450.0])
    span = 400.0
    xy = np.array([[-span, -span], [span, -span], [span, span], [-span, span]])
    z = point[2] - (xy @ normal[:2]) / normal[2]
    vertices, faces = _quad(np.column_stack([xy, z]))
    with DepthRenderer(CROP.width, CROP.height, faces=faces) as renderer:
        depth = renderer.render(vertices, CROP)
    cols, rows = np.meshgrid(np.arange(CROP.width), np.arange(CROP.height))
    rays = np.stack([(cols - CROP.cx) / CROP.fx, (rows - CROP.cy) / CROP.fy, np.ones(cols.shape)], axis=-1)
    expected = (point @ normal) / (rays @ normal)
    assert np.all(depth > 0)
    np.testing.assert_allclose(depth, expected, atol=0.02)


def test_depth_is_metric_z_not_ray_length():
    cam = CAMERAS["hands2017"]
    vertices, faces = _quad(np.array([[-900, -900, 500], [900, -900, 500], [900, 900, 500], [-900, 900, 500]]))
    with DepthRenderer(cam.width, cam.height, faces=faces) as renderer:
        depth = renderer.render(vertices, cam)
    np.testing.assert_allclose(depth, 500.0, atol=0.01)  # ray length at the corners is ~ 590 mm


def test_rendering_is_deterministic_and_checks_its_inputs(mesh, crop_renderer):
    vertices = pose_vertices(mesh, _facing_poses(np.random.default_rng(2), 1))[0].numpy()
    first = crop_renderer.render(vertices, CROP)
    assert first.dtype == np.float32 and first.shape == (CROP.height, CROP.width)
    assert np.array_equal(first, crop_renderer.render(vertices, CROP))
    with pytest.raises(ValueError, match="vertices"):
        crop_renderer.render(vertices[:-1], CROP)
    with pytest.raises(ValueError, match="64x64"):
        crop_renderer.render(vertices, Intrinsics(50, 50, 32, 32, 64, 64))


def _ray_cast_depth(vertices: np.ndarray, faces: np.ndarray, cam: Intrinsics, pixels: np.ndarray) -> np.ndarray:
    """z of the nearest surface on the ray through each (row, col) pixel centre, 0 where none:
    Möller-Trumbore against every triangle, float64, independent of OpenGL."""
    corners = vertices[faces].astype(np.float64)  # (F, 3, 3)
    edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    to_camera = -corners[:, 0]  # ray origin (the camera centre) minus the first corner
    depth = np.zeros(len(pixels))
    for i, (row, col) in enumerate(pixels):
        ray = np.array([(col - cam.cx) / cam.fx, (row - cam.cy) / cam.fy, 1.0])  # z = 1: hit distance is z
        p = np.cross(ray, edge2)
        det = np.sum(edge1 * p, axis=1)
        inv_det = 1.0 / np.where(det == 0, np.inf, det)
        u = np.sum(to_camera * p, axis=1) * inv_det
        q = np.cross(to_camera, edge1)
        v = (q @ ray) * inv_det
        z = np.sum(edge2 * q, axis=1) * inv_det
        hits = (u >= 0) & (v >= 0) & (u + v <= 1) & (z > 0)
        depth[i] = z[hits].min() if hits.any() else 0.0
    return depth


def test_batched_depth_matches_numpy_ray_casting(mesh, crop_renderer):
    """Hands of one batch (different layers, crops and intrinsics) against an independent ray
    caster, at hand pixels and at the background around them: same coverage, same metric z."""
    pose = _facing_poses(np.random.default_rng(4), 3)
    vertices = pose_vertices(mesh, pose).numpy()
    crops = [camera.crop_intrinsics(camera.hand_center(j)) for j in forward_kinematics(pose)[0].numpy()]
    depth = crop_renderer.render_batch(vertices, crops)
    rng = np.random.default_rng(5)
    coverage_mismatches, depth_errors = 0, []
    for hand_vertices, crop, hand_depth in zip(vertices, crops, depth):
        hand, background = np.argwhere(hand_depth > 0), np.argwhere(hand_depth == 0)
        assert len(hand) > 1000 and len(background) > 1000
        pixels = np.concatenate([hand[rng.choice(len(hand), 60)], background[rng.choice(len(background), 40)]])
        expected = _ray_cast_depth(hand_vertices, mesh.faces, crop, pixels)
        rendered = hand_depth[pixels[:, 0], pixels[:, 1]]
        coverage_mismatches += np.sum((expected > 0) != (rendered > 0))
        both = (expected > 0) & (rendered > 0)
        depth_errors.extend(np.abs(expected[both] - rendered[both]))
    assert coverage_mismatches <= 1  # a pixel centre on a silhouette edge may go either way
    assert len(depth_errors) >= 170 and np.median(depth_errors) < 0.001 and max(depth_errors) < 0.01


def test_a_hand_renders_the_same_alone_or_in_any_batch(mesh, crop_renderer):
    """70 hands take a full draw and a partial one; each depth map is bit-identical to that hand
    rendered alone or in another batch, and coordinate-plane views render like plain arrays."""
    pose = _facing_poses(np.random.default_rng(6), 70)
    planes = pose_vertices(mesh, pose).numpy().transpose(0, 2, 1).copy()  # (n, 3, V), as skinning yields
    crops = [camera.crop_intrinsics(camera.hand_center(j)) for j in forward_kinematics(pose)[0].numpy()]
    assert crop_renderer.hands_per_draw < 70
    batch = crop_renderer.render_batch(planes.transpose(0, 2, 1), crops)
    assert batch.shape == (70, CROP.height, CROP.width) and batch.dtype == np.float32
    assert np.array_equal(batch[60:], crop_renderer.render_batch(np.ascontiguousarray(planes[60:].transpose(0, 2, 1)),
                                                                 crops[60:]))
    for i in (0, 37, 63, 64, 69):
        assert np.array_equal(batch[i], crop_renderer.render(planes[i].T, crops[i]))
    assert len(np.unique([(hand > 0).sum() for hand in batch])) > 60  # 70 different hands, not one repeated


def test_a_stream_renders_each_batch_as_render_batch_does_one_batch_ahead(mesh, crop_renderer):
    """render_stream keeps one draw in flight: batch k comes back only once batch k + 1 has been
    taken (and submitted), yet every batch, empty or spanning draws, is bit-identical to
    render_batch, even with another renderer's context made current between batches."""
    pose = _facing_poses(np.random.default_rng(8), 150)
    vertices = pose_vertices(mesh, pose).numpy()
    crops = [camera.crop_intrinsics(camera.hand_center(j)) for j in forward_kinematics(pose)[0].numpy()]
    sizes = [3, 0, 64, 70, 1, 12]  # 70 spans two draws; 0 must still come back in its place
    bounds = np.cumsum([0, *sizes])
    expected = [crop_renderer.render_batch(vertices[a:b], crops[a:b]) for a, b in zip(bounds, bounds[1:])]
    taken = []

    def batches():
        for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
            taken.append(k)
            yield vertices[a:b], crops[a:b]

    with DepthRenderer(CROP.width, CROP.height) as other:
        for k, depth in enumerate(crop_renderer.render_stream(batches())):
            assert taken[-1] > k or k == len(sizes) - 1  # the next batch was taken first
            assert depth.shape == (sizes[k], CROP.height, CROP.width)
            assert np.array_equal(depth, expected[k]), k
            other.render(vertices[0], crops[0])  # another context current between batches
    assert k == len(sizes) - 1


def test_starting_a_renderer_imports_neither_pyrender_nor_trimesh_and_tuning_keeps_freed_memory():
    """Start-up: the context is made without importing pyrender (and the trimesh and pyglet it
    pulls in). Memory, once the commands' opt-in ran: with MALLOC_TRIM_THRESHOLD_ set (as Dask
    sets it for its workers), buffers of a few MB freed and allocated again must come back from
    the heap, not as fresh pages."""
    probe = textwrap.dedent(
        """
        import resource, sys
        import numpy as np
        from synthgen.hand.render import DepthRenderer
        from synthgen.tuning import tune_process
        tune_process()
        DepthRenderer(16, 16, faces=np.array([[0, 1, 2]]))
        buffers = [np.ones(1 << 21, np.float32) for _ in range(4)]  # 8 MB each, touched
        del buffers
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            buffers = [np.ones(1 << 21, np.float32) for _ in range(4)]
            del buffers
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
        print(faults, sorted(name for name in ("pyrender", "trimesh", "pyglet") if name in sys.modules))
        """
    )
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": python_path, "MALLOC_TRIM_THRESHOLD_": "65536"})
    assert result.returncode == 0, result.stderr
    faults, imported = result.stdout.split(maxsplit=1)
    assert imported.strip() == "[]"
    assert int(faults) < 2000  # mapped afresh each time, 80 buffers of 2048 pages would fault ~160 000 times


def test_render_batch_checks_its_inputs(mesh, crop_renderer):
    vertices = pose_vertices(mesh, HandPose.rest(2)).numpy() + np.float32([0, 0, 400])
    with pytest.raises(ValueError, match="2 hands but 1 intrinsics"):
        crop_renderer.render_batch(vertices, [CROP])
    with pytest.raises(ValueError, match="vertices"):
        crop_renderer.render_batch(vertices[0], [CROP])
    assert crop_renderer.render_batch(vertices[:0], []).shape == (0, CROP.height, CROP.width)


def test_closing_one_renderer_leaves_the_others_working(mesh, crop_renderer):
    vertices = pose_vertices(mesh, _facing_poses(np.random.default_rng(3), 1))[0].numpy()
    before = crop_renderer.render(vertices, CROP)
    with DepthRenderer(CROP.width, CROP.height) as short_lived:
        short_lived.render(vertices, CROP)
    assert np.array_equal(before, crop_renderer.render(vertices, CROP))
    with pytest.raises(RuntimeError, match="close"):
        short_lived.render(vertices, CROP)


def test_process_keeps_its_backend(crop_renderer):
    other = {"egl": "osmesa", "osmesa": "egl"}[crop_renderer.backend]
    with pytest.raises(RuntimeError, match="cannot switch"):
        DepthRenderer(8, 8, backend=other)


# --- depth and joints agree -----------------------------------------------------------------


def test_rendered_fingertips_lie_just_in_front_of_tip_joints(mesh, crop_renderer):
    """Where a fingertip is seen, the surface at its joint's pixel is 0-15 mm in front of it.

    "Seen" means the surface at that pixel belongs to the fingertip: its depth lies within
    [z - 20, z + 5] of the joint (anything nearer is another part in front of it), and the
    distal phalanx does not point away from the camera within 35° of the line of sight (the
    ray to the tip would then run along the phalanx: the tip is hidden by its own finger).
    """
    pose = _facing_poses(np.random.default_rng(0), 240)
    joints = forward_kinematics(pose)[0].numpy()
    vertices = pose_vertices(mesh, pose).numpy()
    tips, distal = list(FINGERTIPS), [PARENTS[tip] for tip in FINGERTIPS]
    visible = passed = in_image = 0
    for hand_joints, hand_vertices in zip(joints, vertices):
        crop = camera.crop_intrinsics(camera.hand_center(hand_joints))
        depth = crop_renderer.render(hand_vertices, crop)
        bones = hand_joints[tips] - hand_joints[distal]
        sight = hand_joints[tips] / np.linalg.norm(hand_joints[tips], axis=1, keepdims=True)
        end_on = np.sum(bones * sight, axis=1) > np.cos(np.radians(35)) * np.linalg.norm(bones, axis=1)
        for (u, v, z), hidden_by_own_finger in zip(camera.project(hand_joints[tips], crop), end_on):
            col, row = round(u), round(v)
            if not (0 <= col < crop.width and 0 <= row < crop.height):
                continue
            in_image += 1
            surface = depth[row, col]
            if surface > 0 and z - 20 <= surface <= z + 5 and not hidden_by_own_finger:
                visible += 1
                passed += 0 <= z - surface <= 15
    assert visible >= 0.5 * in_image, f"only {visible} of {in_image} fingertips visible"
    assert passed >= 0.95 * visible, f"{passed} of {visible} visible fingertips within 0-15 mm"


# --- resources ------------------------------------------------------------------------------

_RSS_PROBE = textwrap.dedent(
    """
    import hashlib

    import numpy as np
    from synthgen.hand import camera
    from synthgen.hand.kinematics import HandPose
    from synthgen.hand.mesh import HandMesh, pose_vertices
    from synthgen.hand.render import DepthRenderer

    def rss_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

    vertices = pose_vertices(HandMesh.load(), HandPose.rest(1))[0].numpy() + np.float32([0, 0, 400])
    crop = camera.crop_intrinsics(np.array([0.0, 90.0, 400.0]))
    small = camera.crop_intrinsics(np.array([0.0, 90.0, 400.0]), size=64)
    first, second = DepthRenderer(128, 128), DepthRenderer(64, 64)
    for _ in range(20):
        first.render(vertices, crop), second.render(vertices, small)
    before = rss_mb()
    for _ in range(250):
        a, b = first.render(vertices, crop), second.render(vertices, small)
    assert (a > 0).sum() > 1000 and (b > 0).sum() > 250
    batch = first.render_batch(np.stack([vertices, vertices + np.float32([20, -10, 30])]), [crop, crop])
    print(first.backend, rss_mb() - before, hashlib.sha256(a.tobytes() + b.tobytes() + batch.tobytes()).hexdigest())
    """
)


def _backend_missing(backend: str) -> str | None:
    """Why `backend` cannot render on this machine, or None."""
    if ctypes.util.find_library({"egl": "EGL", "osmesa": "OSMesa"}[backend]) is None:
        return f"no {backend} library"
    if backend == "osmesa" and Version(importlib.metadata.version("PyOpenGL")) < Version("3.1.7"):
        return "OSMesa needs PyOpenGL >= 3.1.7"
    return None


@pytest.fixture(scope="module")
def probe():
    """Runs _RSS_PROBE once per backend, each in a fresh process (the backend is fixed per process)."""
    results: dict[str, tuple[str, float, str]] = {}

    def run(backend: str) -> tuple[str, float, str]:
        if reason := _backend_missing(backend):
            pytest.skip(reason)
        if backend not in results:
            python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
            env = {**os.environ, "SYNTHGEN_GL": backend, "PYTHONPATH": python_path}
            env.pop("PYOPENGL_PLATFORM", None)
            result = subprocess.run(
                [sys.executable, "-c", _RSS_PROBE], env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, result.stderr
            used_backend, growth_mb, digest = result.stdout.split()
            results[backend] = used_backend, float(growth_mb), digest
        return results[backend]

    return run


@pytest.mark.parametrize("backend", ["osmesa", "egl"])
def test_two_renderers_over_500_frames_do_not_grow_memory(backend, probe):
    """Regression for pyrender's per-frame shader recompilation under OSMesa (~0.5 MB/frame),
    which the renderer no longer goes through; and for leaks in its own per-draw state."""
    used_backend, growth_mb, _ = probe(backend)
    assert used_backend == backend
    assert growth_mb < 5.0


def test_both_backends_render_identical_depth(probe):
    """EGL and OSMesa run the same shaders on the same rasteriser: bit-identical depth maps."""
    assert probe("egl")[2] == probe("osmesa")[2]


def test_a_baseline_renderer_reuses_a_recycled_chunks_buffer_with_the_same_result():
    """`write_chunks` hands written chunks back (fresh 64 MiB buffers cost page faults); the next
    chunk renders into the same memory, and renders what it renders into a fresh buffer."""
    from synthgen.hand.baseline import BaselineRenderer

    renderer = BaselineRenderer(seed=5)
    first = renderer.make_chunk(0, 16)
    expected = renderer.make_chunk(1, 16).depth.copy()
    address = first.depth.ctypes.data
    renderer.recycle(first)
    again = renderer.make_chunk(1, 16)
    assert again.depth.ctypes.data == address
    np.testing.assert_array_equal(again.depth, expected)


def test_a_baseline_renderer_skins_on_one_blas_thread_and_restores_the_pool(monkeypatch):
    """OpenBLAS's idle threads busy-wait between the per-block skinning GEMMs and took ~40 % of
    the CPU llvmpipe needs; rendering runs with one BLAS thread and gives the pool back after."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from synthgen.hand import baseline

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    seen = []
    normalize = baseline.camera.normalize_depth

    def spy(*args, **kwargs):
        seen.append(blas_threads())
        return normalize(*args, **kwargs)

    monkeypatch.setattr(baseline.camera, "normalize_depth", spy)
    with threadpool_limits(2, user_api="blas"):
        before = blas_threads()
        crops = baseline.BaselineRenderer(seed=5).make_chunk(0, 2 * baseline.RENDER_BLOCK)
        assert blas_threads() == before and before and max(before) == 2
    assert len(seen) == 2 and all(threads == [1] * len(before) for threads in seen)
    assert crops.depth.shape == (2 * baseline.RENDER_BLOCK, 128, 128) and (crops.depth < 1).any()


# --- the pyrender reference -------------------------------------------------------------------


def _agreement(fast: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Silhouette IoU and median |Δz| (same units) over the pixels both call surface."""
    a, b = fast > 0, reference > 0
    return (a & b).sum() / (a | b).sum(), float(np.median(np.abs(fast - reference)[a & b]))


def test_pyrender_reference_draws_the_hands_the_batched_renderer_draws(mesh, crop_renderer):
    """pyrender's scene (trimesh mesh, IntrinsicsCamera, OffscreenRenderer) on the same posed
    hands: the same silhouettes and metric depth, to pyrender's 24-bit depth precision."""
    from synthgen.hand.reference import PyrenderRenderer

    pose = _facing_poses(np.random.default_rng(11), 48)
    vertices = pose_vertices(mesh, pose).numpy()
    centres = camera.hand_center(forward_kinematics(pose)[0].numpy())
    views = [camera.crop_intrinsics(c) for c in centres]
    reference = PyrenderRenderer(CROP.width, CROP.height)
    expected = reference.render_batch(vertices, views)
    fast = crop_renderer.render_batch(vertices, views)
    for k in range(len(fast)):
        iou, median_dz = _agreement(fast[k], expected[k])
        assert iou >= 0.99 and median_dz < 0.1, (k, iou, median_dz)
    assert (expected > 0).sum(axis=(1, 2)).min() > 500  # hands, not empty images
    np.testing.assert_array_equal(reference.render(vertices[3], views[3]), expected[3])
    with pytest.raises(ValueError, match="vertices"):
        reference.render(vertices[0, :-1], views[0])
    with pytest.raises(ValueError, match="intrinsics are"):
        reference.render(vertices[0], camera.crop_intrinsics(centres[0], size=64))


def test_render_with_pyrender_gives_the_batched_stores_crops(tmp_path):
    """`render --renderer pyrender`: baseline v2 (forearm, objects, background, centre-of-mass
    crops), sensor off so no random stream depends on the silhouette, crop for crop."""
    from typer.testing import CliRunner

    from synthgen.cli import app
    from synthgen.data.reader import open_store

    stores = {}
    for renderer in ("batched", "pyrender"):
        out = tmp_path / f"{renderer}.zarr"
        result = CliRunner().invoke(app, ["render", "--n", "64", "--seed", "4", "--sensor", "none",
                                          "--renderer", renderer, "--out", str(out)])
        assert result.exit_code == 0, result.output
        stores[renderer] = open_store(out)
    fast, reference = (stores[r].depth[:].astype(np.float32) for r in ("batched", "pyrender"))
    iou, median_dz = _agreement(1 - fast, 1 - reference)  # background is +1
    assert iou >= 0.99 and median_dz * 125.0 < 0.1  # normalised by half the 250 mm cube
    moved = np.abs(stores["pyrender"].center[:] - stores["batched"].center[:]).max(axis=1)
    assert np.median(moved) < 0.01 and (moved < 0.05).mean() >= 0.95  # a pixel at the edge of the
    # centre-of-mass rule's depth band may move a rare crop (docs/baseline.md)
    np.testing.assert_array_equal(stores["pyrender"].pose[:], stores["batched"].pose[:])
    assert stores["pyrender"].metadata.parameters["renderer"] == "pyrender"
