"""Baseline v2: scene parts, hand shape, sensor models, centre-of-mass crops and scene files."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.conventions import CAMERAS, JOINT_NAMES, Intrinsics
from synthgen.data.formats.common import refine_center
from synthgen.hand import camera
from synthgen.hand.baseline import BaselineRenderer
from synthgen.hand.kinematics import HandPose, forward_kinematics
from synthgen.hand.mesh import HandMesh, pose_vertices
from synthgen.hand.noise import SENSORS, SensorNoise
from synthgen.hand.render import DepthRenderer
from synthgen.hand.scene import SceneConfig, load_scene, scene_faces
from synthgen.realism.sensor import crop_statistics

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def quiet(scene: SceneConfig) -> SceneConfig:
    return replace(scene, sensor="none")


# --- scene files -----------------------------------------------------------------------------

def test_the_shipped_scene_file_spells_out_the_defaults():
    assert SceneConfig.load(ROOT / "recipes" / "scenes" / "v2.toml") == SceneConfig()
    ego = SceneConfig.load(ROOT / "recipes" / "scenes" / "egocentric-tof.toml")
    assert ego.sensor == "tof" and ego.pose.viewpoints == {"egocentric": 1.0}
    assert ego.forearm == SceneConfig().forearm  # what the file does not name stays v2's
    assert load_scene("clean") == SceneConfig.clean() and load_scene("v2", sensor="sr305").sensor == "sr305"


@pytest.mark.parametrize("body, fragment", [
    ("[scene.forearm]\nlength_mm = [-10.0, 200.0]", "forearm.length_mm: sizes must be positive"),
    ("[scene.objects]\nkinds = [\"sphere\", \"anvil\"]", "unknown object kind 'anvil'"),
    ("[scene.background]\nprobability = 1.5", "background.probability: a probability must lie in [0, 1]"),
    ("[scene.objects]\nheld_probability = -0.1", "held_probability: a probability must lie in [0, 1]"),
    ("[scene.objects]\nsize_mm = [30, 20]", "low 30.0 exceeds high 20.0"),
    ("[scene.forearm]\nlenght_mm = [10.0, 200.0]", "unknown key 'lenght_mm'"),
    ("[scene]\nsensor = \"lidar\"", "unknown sensor 'lidar'"),
    ("[scene.pose]\nviewpoints = { overhead = 1.0 }", "unknown viewpoint 'overhead'"),
    ("[scene.forearm]\nprobability = \"yes\"", "expected float"),
    ("[scene\n", "not valid TOML"),
])
def test_bad_scene_parameters_are_refused_before_anything_is_written(tmp_path, body, fragment):
    scene = tmp_path / "scene.toml"
    scene.write_text(body + "\n")
    out = tmp_path / "r.zarr"
    result = runner.invoke(app, ["render", "--n", "64", "--out", str(out), "--scene", str(scene)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == [scene]


def test_render_records_the_scene_and_its_centring(tmp_path):
    out = tmp_path / "v2.zarr"
    result = runner.invoke(app, ["render", "--n", "64", "--out", str(out), "--sensor", "tof"])
    assert result.exit_code == 0, result.output
    import zarr

    attrs = dict(zarr.open_group(str(out), mode="r").attrs)
    assert attrs["input_convention"]["centering"] == "capped-center-of-mass"
    assert attrs["parameters"]["scene"]["sensor"] == "tof"
    assert attrs["parameters"]["noise"]["flying_pixels"] == SENSORS["tof"].flying_pixels
    refused = runner.invoke(app, ["score", str(out), "--reference-scene", str(tmp_path / "missing.toml")])
    assert refused.exit_code == 2 and "scene file not found" in refused.stderr
    assert not (tmp_path / "v2.score").exists()


# --- what the scene draws ----------------------------------------------------------------------

def test_labels_do_not_depend_on_what_hides_the_hand():
    full = BaselineRenderer(seed=3, scene=quiet(SceneConfig())).make_chunk(0, 64)
    bare = quiet(SceneConfig())
    bare = replace(bare, objects=replace(bare.objects, held_probability=0.0, near_probability=0.0),
                   background=replace(bare.background, probability=0.0))
    alone = BaselineRenderer(seed=3, scene=bare).make_chunk(0, 64)
    np.testing.assert_array_equal(full.pose, alone.pose)
    # objects and surfaces only ever add foreground in front of or around the hand
    assert (full.depth < 1).sum() > (alone.depth < 1).sum()


def test_v2_crops_are_deterministic_and_hold_more_than_the_hand():
    scene = SceneConfig()
    a = BaselineRenderer(seed=5, scene=scene).make_chunk(2, 64)
    b = BaselineRenderer(seed=5, scene=scene).make_chunk(2, 64)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.center, b.center)
    clean = BaselineRenderer(seed=5, scene=SceneConfig.clean()).make_chunk(2, 64)
    assert (a.depth < 1).mean() > 1.5 * (clean.depth < 1).mean()  # forearm, sleeve, objects, surfaces
    assert a.depth.min() >= -1 and a.depth.max() <= 1 and np.isfinite(a.depth).all()


def test_forearm_leaves_the_wrist_away_from_the_fingers():
    scene = quiet(SceneConfig())
    scene = replace(scene, objects=replace(scene.objects, held_probability=0.0, near_probability=0.0),
                    background=replace(scene.background, probability=0.0), centering="joint-box")
    with_arm = BaselineRenderer(seed=1, scene=scene).make_chunk(0, 64)
    no_arm = BaselineRenderer(seed=1, scene=replace(scene, forearm=replace(scene.forearm, probability=0.0))).make_chunk(0, 64)
    np.testing.assert_array_equal(with_arm.pose, no_arm.pose)
    added = (with_arm.depth < 1) & (no_arm.depth >= 1)
    # the new pixels lie on the wrist's side of the hand, not the fingertips'
    wrist_uv = [camera.project(p[0], camera.crop_intrinsics(c))[:2] for p, c in zip(with_arm.pose, with_arm.center)]
    tip_uv = [camera.project(p[JOINT_NAMES.index("MTIP")], camera.crop_intrinsics(c))[:2]
              for p, c in zip(with_arm.pose, with_arm.center)]
    nearer_wrist = []
    for mask, w, t in zip(added, wrist_uv, tip_uv):
        rows, cols = np.nonzero(mask)
        if len(rows) < 20:
            continue
        pixels = np.stack([cols, rows], 1)
        nearer_wrist.append((np.linalg.norm(pixels - w, axis=1) < np.linalg.norm(pixels - t, axis=1)).mean())
    assert len(nearer_wrist) > 40 and np.median(nearer_wrist) > 0.9


def test_centre_of_mass_crops_are_cut_where_import_would_cut_them():
    """The stored centre is `import`'s rule run on a full sensor frame of the same scene."""
    scene = replace(quiet(SceneConfig()), shape=None, centering="center-of-mass")
    renderer = BaselineRenderer(seed=2, scene=scene)
    chunk = renderer.make_chunk(0, 64)
    capped = BaselineRenderer(seed=2, scene=replace(scene, centering="capped-center-of-mass")).make_chunk(0, 64)
    # the same hands and scene, drawn again, rendered at the sensor's full resolution
    from scipy.spatial.transform import Rotation

    from synthgen.hand.prior import sample_poses
    from synthgen.hand.scene import SceneGeometry

    cam = CAMERAS["hands2017"]
    pose = sample_poses(np.random.default_rng([2, 0]), 64, cam, scene.pose)
    joints = forward_kinematics(pose)[0].numpy()
    np.testing.assert_allclose(joints, chunk.pose, atol=1e-4)
    extra = SceneGeometry(scene).draw(np.random.default_rng([2, 0, 2]),
                                      Rotation.from_rotvec(pose.global_rot.double().numpy()).as_matrix(),
                                      pose.translation.double().numpy(), pose.scale.double().numpy(),
                                      joints.astype(np.float64))
    mesh = HandMesh.load()
    hand = pose_vertices(mesh, pose).numpy()
    vertices = np.concatenate([hand, extra.transpose(0, 2, 1)], axis=1)
    faces = np.concatenate([mesh.faces, scene_faces(len(mesh.vertices))])
    with DepthRenderer(cam.width, cam.height, faces=faces) as full:
        frames = full.render_batch(vertices, [cam] * 64)
    boxes = camera.hand_center(joints)
    expected = np.stack([refine_center(f, cam, b) for f, b in zip(frames, boxes)])
    moved = np.linalg.norm(expected - boxes, axis=1)
    inside = moved < 55  # farther moves stop at the wide view's room (62 mm)
    assert inside.sum() >= 8
    error = np.linalg.norm(chunk.center[inside] - expected[inside], axis=1)
    # The refinement is a fixed-point iteration: along a forearm, the crop's coarser pixels make
    # some centres stop at another fixed point (docs/baseline.md gives the distribution).
    assert np.median(error) < 2.5 and (error < 5).mean() > 0.5, np.percentile(error, [50, 75, 100])
    assert (np.linalg.norm(chunk.center - boxes, axis=1) <= 62.5 + 1e-3).all()
    # the capped rule: the same centres, stopped 40 mm from the box on the way
    np.testing.assert_allclose(capped.center, camera.cap_move(boxes, chunk.center, 40.0), atol=1e-3)
    assert np.linalg.norm(capped.center - boxes, axis=1).max() <= 40.0 + 1e-3
    np.testing.assert_array_equal(capped.pose, chunk.pose)


# --- hand shape -------------------------------------------------------------------------------

def test_proportions_stretch_bones_and_the_mesh_with_them():
    rest = HandPose.rest(2)
    plain, _ = forward_kinematics(rest)
    rest.proportions = torch.tensor([[1.0] * 7, [1.2, 1.2, 1.2, 1.2, 1.2, 1.1, 1.15]])
    shaped, _ = forward_kinematics(rest)
    np.testing.assert_allclose(shaped[0], plain[0], atol=1e-5)  # all ratios 1: the average hand
    mcp, tip = JOINT_NAMES.index("MMCP"), JOINT_NAMES.index("MTIP")
    finger = (shaped[1, tip] - shaped[1, mcp]).norm() / (plain[0, tip] - plain[0, mcp]).norm()
    assert abs(finger.item() - 1.2) < 1e-5
    assert abs(shaped[1, JOINT_NAMES.index("IMCP"), 0] / plain[0, JOINT_NAMES.index("IMCP"), 0] - 1.1) < 1e-5
    vertices = pose_vertices(HandMesh.load(), rest)
    assert vertices[1, :, 1].max() > vertices[0, :, 1].max() + 15  # the fingertips moved out (~0.2 x 99 mm)
    thickness = vertices[:, :, 2].max(1).values - vertices[:, :, 2].min(1).values
    assert thickness[1] > 1.1 * thickness[0]  # girth


# --- sensor models ---------------------------------------------------------------------------

def _step_image(near=500.0, far=600.0):
    depth = np.full((1, 32, 64), far, np.float32)
    depth[:, :, :32] = near
    return depth


def test_projector_shadow_is_as_wide_as_the_disparity_step():
    noise = SensorNoise(sigma_0=0.0, sigma_z2=0.0, quantum_mm=0.0, edge_dropout=0.0, holes_per_frame=0.0,
                        shadow_baseline_mm=75.0)
    focal = 100.0
    out = noise.apply(_step_image(), np.random.default_rng(0), focal)
    width = int(np.floor(focal * 75.0 * (1 / 500 - 1 / 600)))  # 2.5 → 2 pixels
    missing = np.nonzero(out[0, 0] == 0)[0]
    np.testing.assert_array_equal(missing, np.arange(32, 32 + width))
    mirrored = replace(noise, shadow_baseline_mm=-75.0).apply(_step_image()[:, :, ::-1], np.random.default_rng(0), focal)
    np.testing.assert_array_equal(mirrored[0, 0, ::-1], out[0, 0])
    with pytest.raises(ValueError, match="focal length"):
        noise.apply(_step_image(), np.random.default_rng(0))


def test_flying_pixels_lie_between_the_two_surfaces_and_disparity_steps_grow_with_depth():
    noise = SensorNoise(sigma_0=0.0, sigma_z2=0.0, quantum_mm=0.0, edge_dropout=0.0, holes_per_frame=0.0,
                        flying_pixels=1.0)
    out = noise.apply(_step_image(), np.random.default_rng(1))
    edge = out[0, :, 31]
    assert ((edge > 500) & (edge < 600)).all()
    np.testing.assert_array_equal(out[0, :, :31], 500.0)
    stepped = SensorNoise(sigma_0=0.0, sigma_z2=0.0, quantum_mm=0.0, edge_dropout=0.0, holes_per_frame=0.0,
                          disparity_quantum=3.4e-6)
    ramp = np.linspace(400, 900, 4000, dtype=np.float32)[None, None]
    levels = np.unique(stepped.apply(ramp, np.random.default_rng(0)))
    steps = np.diff(levels)
    z = levels[:-1]
    np.testing.assert_allclose(steps, 3.4e-6 * z * z, rtol=0.05)


def test_sensor_statistics_measure_holes_and_edges():
    crop = np.zeros((1, 64, 64), np.float32)
    crop[0, 16:48, 16:48] = 500.0
    clean = crop_statistics(crop, [500.0])
    assert clean["hole_fraction"] == 0 and clean["edge_dropout"] == 0 and clean["zero_gradient_fraction"] == 1
    holed = crop.copy()
    holed[0, 30:32, 30:32] = 0.0  # 4 interior pixels
    stats = crop_statistics(holed, [500.0])
    interior = (32 - 4) ** 2  # the silhouette less its 2-pixel border band
    assert stats["hole_fraction"] == pytest.approx(4 / interior)
    assert stats["edge_dropout"] == 0


@pytest.mark.parametrize("name", sorted(SENSORS))
def test_every_sensor_preset_keeps_missing_pixels_missing(name):
    depth = np.zeros((2, 64, 64), np.float32)
    depth[:, 20:44, 20:44] = 450.0
    out = SENSORS[name].apply(depth, np.random.default_rng(0), 150.0)
    assert (out[depth == 0] == 0).all() and out.dtype == np.float32
    kept = out[(depth > 0) & (out > 0)]
    assert len(kept) > 0.5 * (depth > 0).sum() and np.abs(kept - 450).max() < 20


def test_batched_centre_of_mass_matches_one_frame_at_a_time():
    rng = np.random.default_rng(0)
    cam = Intrinsics(300.0, 300.0, 80.0, 60.0, 160, 120)
    frames = np.zeros((6, 120, 160), np.float32)
    starts = []
    for k in range(6):
        y, x = rng.integers(20, 80), rng.integers(20, 120)
        frames[k, y:y + 25, x:x + 20] = rng.uniform(400, 700) + rng.normal(0, 20, (25, 20))
        starts.append(camera.unproject(np.array([x + 10 + rng.normal(0, 5), y + 12, 550.0]), cam))
    starts = np.array(starts)
    batched = camera.refine_centers(frames, [cam] * 6, starts)
    for frame, start, centre in zip(frames, starts, batched):
        np.testing.assert_allclose(refine_center(frame, cam, start), centre, rtol=0, atol=1e-4)


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").glob("**/*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_and_scene_file_parses(path):
    if path.parent.name == "scenes":
        SceneConfig.load(path)
    else:
        from synthgen.models.config import Recipe

        Recipe.from_toml(path)


def test_import_caps_the_centre_of_mass_move():
    from synthgen.data.formats.common import frame_center

    cam = Intrinsics(300.0, 300.0, 80.0, 60.0, 160, 120)
    frame = np.zeros((120, 160), np.float32)
    frame[20:100, 60:64] = 500.0  # a long thin "forearm" below a small "hand"
    frame[20:30, 55:70] = 500.0
    joints = camera.unproject(np.array([[62.0, 22.0, 500.0], [66.0, 28.0, 500.0]]), cam)
    free = frame_center(frame, joints, cam, "center-of-mass")
    capped = frame_center(frame, joints, cam, "capped-center-of-mass")
    box = camera.hand_center(joints)
    assert np.linalg.norm(free - box) > 40.0
    assert np.linalg.norm(capped - box) == pytest.approx(40.0, abs=1e-3)
    direction = (free - box) / np.linalg.norm(free - box)
    np.testing.assert_allclose(capped, box + 40.0 * direction, atol=1e-3)
