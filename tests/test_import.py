"""Importing the real benchmarks: tiny fixtures written here in each dataset's own format.

Each fixture is a few frames of sphere "hands" rendered at known joints (camera frame, mm),
written the way the dataset distributes them (NYU RGB PNG + joint_data.mat, ICVL 16-bit PNG +
labels.txt, MSRA15 .bin + joint.txt with y up / z negative, HANDS2017 uint16 PNG +
annotation txt). The import must give back the joints and, through the store's own
un-normalisation, the frame's depth, both to < 1 mm.
"""

import json
import os

import imageio.v3 as iio
import numpy as np
import pytest
import scipy.io
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.conventions import CAMERAS, CUBE_MM, LAYOUTS, NYU_EVAL_JOINTS
from synthgen.data.crops import crop_frame
from synthgen.data.formats import open_dataset
from synthgen.data.formats.common import center_of_mass, import_frames, refine_center
from synthgen.data.reader import open_store
from synthgen.errors import InputError
from synthgen.hand.camera import project, unproject

runner = CliRunner()
WALL_MM = 1000.0  # far background, behind every crop cube
SPHERE_MM = 14.0


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


# --- synthetic hands ------------------------------------------------------------------------


def hands(n, num_joints, seed):
    """(n, J, 3) mm: joints scattered within ±70 mm of a centre 350..550 mm away."""
    rng = np.random.default_rng(seed)
    centre = np.stack([rng.uniform(-40, 40, n), rng.uniform(-30, 30, n), rng.uniform(350, 550, n)], -1)
    return centre[:, None] + np.clip(rng.normal(0, 35, (n, num_joints, 3)), -70, 70)


def render(joints, cam, wall=WALL_MM):
    """(H, W) float64 mm: spheres at the joints in front of a wall, by ray casting."""
    v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64)
    rays = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)  # z = t
    depth = np.full((cam.height, cam.width), wall)
    a = (rays ** 2).sum(-1)
    for p in joints:
        b = -2 * rays @ p
        disc = b ** 2 - 4 * a * (p @ p - SPHERE_MM ** 2)
        hit = disc >= 0
        t = (-b[hit] - np.sqrt(disc[hit])) / (2 * a[hit])
        depth[hit] = np.minimum(depth[hit], t)
    return depth


def write_png16(path, depth_mm):
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.rint(depth_mm).astype(np.uint16))


def write_nyu(root, split, joints):
    cam = CAMERAS["nyu"]
    folder = root / split
    folder.mkdir(parents=True)
    frames = []
    for i, j in enumerate(joints):
        depth = np.rint(render(j, cam)).astype(np.uint16)
        rgb = np.zeros(depth.shape + (3,), np.uint8)
        rgb[..., 1], rgb[..., 2] = depth >> 8, depth & 0xFF  # mm = (G << 8) | B
        iio.imwrite(folder / f"depth_1_{i + 1:07d}.png", rgb)
        frames.append(depth.astype(np.float64))
    uvd = project(joints, cam)
    xyz = joints * [1, -1, 1]  # NYU's joint_xyz is y up (not read)
    scipy.io.savemat(folder / "joint_data.mat", {"joint_uvd": np.stack([uvd] * 3), "joint_xyz": np.stack([xyz] * 3),
                                                 "joint_names": np.array(LAYOUTS["nyu36"].joint_names, dtype=object)})
    return frames


def write_icvl(root, joints, folder="Training", labels="labels.txt"):
    cam = CAMERAS["icvl"]
    lines, frames = [], []
    for i, j in enumerate(joints):
        name = f"201{i % 3}/image_{i:04d}.png" if folder == "Training" else f"{labels[:-4]}/image_{i:04d}.png"
        depth = render(j, cam)
        write_png16(root / folder / "Depth" / name, depth)
        frames.append(np.rint(depth))
        lines.append(name + " " + " ".join(f"{x:.5f}" for x in project(j, cam).ravel()))
    (root / folder / labels).write_text("\n".join(lines) + "\n")
    return frames


def write_msra(root, subject, gesture, joints_canonical):
    """joint.txt in MSRA's order with y up and z negative; .bin frames cropped to the hand's box."""
    cam = CAMERAS["msra"]
    folder = root / subject / gesture
    folder.mkdir(parents=True)
    msra = LAYOUTS["msra"].from_canonical(joints_canonical) * [1, -1, -1]
    (folder / "joint.txt").write_text(f"{len(msra)}\n" + "".join(
        " ".join(f"{x:.5f}" for x in j.ravel()) + "\n" for j in msra))
    frames = []
    for i, j in enumerate(joints_canonical):
        depth = render(j, cam, wall=np.inf)  # MSRA15 keeps only the hand: no data elsewhere
        depth[np.isinf(depth)] = 0
        rows, cols = np.nonzero(depth)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        header = np.array([cam.width, cam.height, left, top, right, bottom], np.int32)
        box = depth[top:bottom, left:right].astype(np.float32)
        (folder / f"{i:06d}_depth.bin").write_bytes(header.tobytes() + box.tobytes())
        full = np.zeros_like(depth)
        full[top:bottom, left:right] = box
        frames.append(full)
    return frames


def write_hands2017(root, joints):
    cam = CAMERAS["hands2017"]
    lines, frames = [], []
    for i, j in enumerate(joints):
        name = f"image_D{i + 1:08d}.png"
        depth = render(j, cam)
        write_png16(root / "training" / "images" / name, depth)
        frames.append(np.rint(depth))
        lines.append(name + "\t" + "\t".join(f"{x:.5f}" for x in j.ravel()))
    (root / "training" / "Training_Annotation.txt").write_text("\n".join(lines) + "\n")
    return frames


# --- round trips ----------------------------------------------------------------------------


def check_round_trip(store_path, frames, joints, cam):
    """Joints and the frame's depth back from the store to < 1 mm."""
    store = open_store(store_path)
    assert len(store) == len(frames) and store.camera == cam
    np.testing.assert_allclose(store.pose[:], joints, atol=1.0)
    assert np.abs(store.pose[:] - joints).max() < 1.0
    for i, frame in enumerate(frames):
        uvd = store.depth_uvd_full_frame(i)  # the store's own way back to full-frame pixels
        assert len(uvd) > 100, f"frame {i}: the hand is missing from the crop"
        u, v = np.rint(uvd[:, 0]).astype(int), np.rint(uvd[:, 1]).astype(int)
        assert np.abs(frame[v, u] - uvd[:, 2]).max() < 1.0
        assert abs(store.center[i, 2] - joints[i][:, 2].mean()) < 60  # centred on the hand, not on the wall
    return store


def test_nyu_round_trip(tmp_path):
    joints = hands(4, 36, seed=1)
    frames = write_nyu(tmp_path, "test", joints)
    out = import_frames(open_dataset("nyu", tmp_path, "test"), tmp_path / "nyu.zarr")
    store = check_round_trip(out, frames, joints, CAMERAS["nyu"])
    assert store.joint_layout == "nyu36" and store.attrs["joint_names"] == list(LAYOUTS["nyu36"].joint_names)
    assert store.attrs["joint_names"][NYU_EVAL_JOINTS[-1]] == "PALM_3"
    assert store.metadata.parameters["split"] == "test"


def test_icvl_round_trip_train_and_test(tmp_path):
    joints = hands(5, 16, seed=2)
    frames = write_icvl(tmp_path, joints)
    store = check_round_trip(import_frames(open_dataset("icvl", tmp_path), tmp_path / "icvl.zarr"), frames, joints,
                             CAMERAS["icvl"])
    assert store.joint_layout == "icvl" and store.attrs["joint_names"][0] == "Palm"
    test_joints = hands(3, 16, seed=3)
    first = write_icvl(tmp_path, test_joints[:2], "Testing", "test_seq_1.txt")
    second = write_icvl(tmp_path, test_joints[2:], "Testing", "test_seq_2.txt")
    check_round_trip(import_frames(open_dataset("icvl", tmp_path, "test"), tmp_path / "t.zarr"), first + second,
                     test_joints, CAMERAS["icvl"])


def test_msra_round_trip_is_canonical(tmp_path):
    joints = hands(5, 21, seed=4)
    frames = write_msra(tmp_path, "P0", "1", joints[:3]) + write_msra(tmp_path, "P1", "TIP", joints[3:])
    store = check_round_trip(import_frames(open_dataset("msra", tmp_path), tmp_path / "msra.zarr"), frames, joints,
                             CAMERAS["msra"])
    assert store.joint_layout == "hands2017"  # MSRA's order is a permutation of the canonical joints
    one = open_dataset("msra", tmp_path / "P1")  # one subject: leave-one-out
    assert len(one) == 2 and one.gestures == ["TIP"]
    np.testing.assert_allclose(one.frame(1)[1], joints[4], atol=1e-3)


def test_hands2017_round_trip_and_limit(tmp_path):
    joints = hands(4, 21, seed=5)
    frames = write_hands2017(tmp_path, joints)
    check_round_trip(import_frames(open_dataset("hands2017", tmp_path), tmp_path / "h.zarr"), frames, joints,
                     CAMERAS["hands2017"])
    limited = open_dataset("hands2017", tmp_path, limit=2)
    assert len(limited) == 2


def test_refine_center_finds_the_centre_of_mass():
    cam = CAMERAS["icvl"]
    frame = np.zeros((cam.height, cam.width), np.float32)
    frame[90:111, 190:211] = 500.0  # a 21 × 21 px patch centred on pixel (200, 100)
    frame[0:5, 0:5] = 480.0  # far outside the cube in x, y: ignored
    frame[100, 150] = 900.0  # inside the window but behind the cube: ignored
    truth = unproject(np.array([200.0, 100.0, 500.0]), cam)
    start = truth + [25.0, -20.0, 30.0]
    np.testing.assert_allclose(refine_center(frame, cam, start), truth, atol=1e-3)
    np.testing.assert_allclose(center_of_mass(frame, cam, truth), truth, atol=1e-6)
    empty = np.zeros_like(frame)
    np.testing.assert_allclose(refine_center(empty, cam, start), start, atol=1e-4)


def test_crop_frame_places_the_centre_pixel_and_normalises():
    cam = CAMERAS["hands2017"]
    frame = np.full((cam.height, cam.width), 2000.0, np.float32)
    center = np.array([30.0, -20.0, 450.0])
    u, v = np.rint(project(center, cam)[:2]).astype(int)
    frame[v - 2:v + 3, u - 2:u + 3] = 450.0 + 25.0  # 5 × 5 px at the centre's pixel, 25 mm behind it
    crop = crop_frame(frame, center, cam)  # 230 crop px per 475 frame px at 450 mm: ~2 frame px per crop px
    assert crop.shape == (128, 128)
    np.testing.assert_array_equal(crop[63:65, 63:65], np.float32(25.0 / (CUBE_MM / 2)))  # (63.5, 63.5) is the centre
    assert (crop < 1.0).sum() <= 9 and crop.max() == 1.0  # the wall behind the cube is background


# --- the command, train, errors ------------------------------------------------------------


def test_cli_import_info_preview_and_train_on_icvl(tmp_path):
    joints = hands(40, 16, seed=6)
    write_icvl(tmp_path / "ICVL", joints)
    store = tmp_path / "icvl.zarr"
    result = invoke("import", "icvl", tmp_path / "ICVL", "--out", store)
    assert result.exit_code == 0, result.output
    assert "40 icvl frames (icvl joints, centre-relative depth, pinhole crop)" in result.stdout
    again = invoke("import", "icvl", tmp_path / "ICVL", "--out", store)
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert invoke("info", store).exit_code == 0
    assert invoke("preview", store, "--out", tmp_path / "p.png", "--n", 4).exit_code == 0

    recipe = open("recipes/tiny.toml").read().replace("stores = []", f'stores = ["{store}"]')
    (tmp_path / "tiny.toml").write_text(recipe + "\n[model.vae]\nnum_joints = 16\n")
    result = invoke("train", "--recipe", tmp_path / "tiny.toml", "--out-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["joints"]["layout"] == "icvl" and config["normalisation"]["root_joint"] == 0
    result = invoke("estimate", store, "--model", tmp_path / "run" / "model", "--json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.stdout)["per_joint_mm"])[0] == "Palm"

    (tmp_path / "wrong.toml").write_text(recipe)  # a 21-joint model for 16-joint data
    result = invoke("train", "--recipe", tmp_path / "wrong.toml", "--out-dir", tmp_path / "run2")
    assert result.exit_code != 0 and "num_joints" in result.stderr


@pytest.mark.parametrize("case", ["missing frame", "bad label", "missing labels", "no split", "msra split",
                                  "hands test", "bad mat", "nyu shape", "msra box", "not a dir"])
def test_import_refuses_bad_input_before_writing(case, tmp_path):
    root, out = tmp_path / "data", tmp_path / "out.zarr"
    if case == "missing frame":
        write_icvl(root, hands(3, 16, seed=7))
        os.remove(root / "Training" / "Depth" / "2011" / "image_0001.png")
        args, fragment = ("icvl", root), "missing (ICVL depth frame; 1 of 3 missing)"
    elif case == "bad label":
        write_icvl(root, hands(2, 16, seed=7))
        with open(root / "Training" / "labels.txt", "a") as f:
            f.write("2010/x.png 1 2 3\n")
        args, fragment = ("icvl", root), "labels.txt:3: expected a file name and 48"
    elif case == "missing labels":
        (root / "Testing").mkdir(parents=True)
        args, fragment = ("icvl", root, "--split", "test"), "missing ICVL labels"
    elif case == "no split":
        write_icvl(root, hands(1, 16, seed=7))
        args, fragment = ("icvl", root, "--split", "val"), "--split val: ICVL has no such split"
    elif case == "msra split":
        write_msra(root, "P0", "1", hands(1, 21, seed=7))
        args, fragment = ("msra", root, "--split", "test"), "--split test: MSRA15 has no splits"
    elif case == "hands test":
        write_hands2017(root, hands(1, 21, seed=7))
        args, fragment = ("hands2017", root, "--split", "test"), "--split test: HANDS2017 has no such split"
    elif case == "bad mat":
        (root / "train").mkdir(parents=True)
        (root / "train" / "joint_data.mat").write_bytes(b"not matlab at all" * 10)
        args, fragment = ("nyu", root), "not a readable MATLAB file"
    elif case == "nyu shape":
        (root / "train").mkdir(parents=True)
        scipy.io.savemat(root / "train" / "joint_data.mat", {"joint_uvd": np.ones((3, 2, 14, 3))})
        args, fragment = ("nyu", root), "joint_uvd must be (kinects, frames, 36, 3)"
    elif case == "msra box":
        write_msra(root, "P0", "1", hands(2, 21, seed=7))
        path = root / "P0" / "1" / "000001_depth.bin"
        path.write_bytes(path.read_bytes()[:-8])
        args, fragment = ("msra", root), "its header's box needs"
    else:
        args, fragment = ("icvl", tmp_path / "nowhere"), "not a directory"
    result = invoke("import", *args, "--out", out)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists() and not out.with_name(out.name + ".incomplete").exists()


def test_a_bad_frame_mid_import_leaves_nothing_behind(tmp_path):
    write_hands2017(tmp_path, hands(3, 21, seed=8))
    iio.imwrite(tmp_path / "training" / "images" / "image_D00000002.png", np.zeros((240, 320), np.uint16))
    with pytest.raises(InputError, match=r"image_D00000002.png: expected a uint16 image of shape \(480, 640\)"):
        import_frames(open_dataset("hands2017", tmp_path), tmp_path / "h.zarr")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training"]
