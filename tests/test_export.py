"""Export to benchmark files: each dataset's own reader gets the store's joints and depth back."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import scipy.io
from PIL import Image
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.conventions import CAMERAS, CROP_SIZE, LAYOUTS, NYU_EVAL_JOINTS
from synthgen.data.export import export_store, paste_crop
from synthgen.data.formats import open_dataset
from synthgen.data.layouts import converter
from synthgen.data.reader import open_store
from synthgen.data.schema import SampleBatch, StoreMetadata
from synthgen.data.writer import StoreWriter
from synthgen.errors import InputError
from synthgen.hand.camera import crop_intrinsics, crop_uv_to_frame, normalize_depth, project

runner = CliRunner()
COUNT = 40


def make_store(path: Path, count: int = COUNT, joint_layout: str = "hands2017", camera: str = "hands2017") -> Path:
    """Hand-sized blobs (a tilted ellipse of depths) with joints spread over them."""
    rng = np.random.default_rng(3)
    center = np.stack([rng.uniform(-60, 60, count), rng.uniform(-40, 40, count), rng.uniform(350, 650, count)],
                      axis=-1).astype(np.float32)
    pose = (center[:, None, :] + rng.normal(0, 25, (count, LAYOUTS[joint_layout].num_joints, 3))).astype(np.float32)
    v, u = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE].astype(np.float32)
    inside = ((u - 60) / 30) ** 2 + ((v - 70) / 45) ** 2 < 1
    depth_mm = np.where(inside, center[:, 2, None, None] + 0.3 * (u - 60) - 0.2 * (v - 70), 0)
    writer = StoreWriter.create(path, count, StoreMetadata(producer="render", seed=3, camera=camera,
                                                           joint_layout=joint_layout), chunk_size=128)
    writer.write(0, SampleBatch(normalize_depth(depth_mm, center[:, 2]), pose, center, joint_layout=joint_layout))
    return writer.finalize()


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("export") / "s.zarr")


@pytest.mark.parametrize("layout", ["nyu", "icvl", "msra", "hands2017"])
def test_native_export_reads_back_through_the_datasets_own_format(store, tmp_path, layout):
    out = tmp_path / layout
    manifest = export_store(store, out, layout=layout, fmt="native")
    frames = open_dataset(layout, out, split=None if layout == "msra" else "train")
    data = open_store(store)
    expected = converter("hands2017", frames.joint_layout)(data.pose[:])
    cam = CAMERAS[layout]

    assert len(frames) == COUNT and manifest["samples"] == COUNT and manifest["camera"] == cam.to_dict()
    assert json.loads((out / "synthgen_export.json").read_text())["joint_names"] == manifest["joint_names"]
    for i in range(COUNT):
        depth, joints = frames.frame(i)
        np.testing.assert_allclose(joints, expected[i], atol=2e-3)
        pasted = paste_crop(data.depth_mm(i), data.center[i], 250.0, cam)
        if layout == "msra":  # .bin keeps float mm
            np.testing.assert_array_equal(depth, pasted)
        else:
            np.testing.assert_array_equal(depth, np.rint(pasted))
        assert (depth > 0).sum() > 500  # the hand is in the frame


@pytest.mark.parametrize("layout", ["nyu", "hands2017"])
def test_full_frames_hold_every_crop_pixel_where_the_crop_camera_projects_it(store, tmp_path, layout):
    """These cameras' focal lengths exceed every crop's, so each crop pixel keeps its own frame pixel."""
    export_store(store, tmp_path / "out", layout=layout, fmt="npz", limit=8)
    depth = np.load(tmp_path / "out" / "samples.npz")["depth"]
    data, cam = open_store(store), CAMERAS[layout]
    rows, cols = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE]
    for i in range(8):
        crop_mm = data.depth_mm(i)
        uv = np.rint(crop_uv_to_frame(np.stack([cols, rows], -1).astype(float), data.center[i], cam)).astype(int)
        np.testing.assert_array_equal(depth[i][uv[..., 1], uv[..., 0]], np.rint(crop_mm))


def test_nyu_files_are_what_nyu_loaders_read(store, tmp_path):
    export_store(store, tmp_path / "nyu", layout="nyu", fmt="native", limit=5)
    mat = scipy.io.loadmat(tmp_path / "nyu" / "train" / "joint_data.mat")
    data = open_store(store)
    xyz = converter("hands2017", "nyu36")(data.pose[:5])

    assert mat["joint_uvd"].shape == mat["joint_xyz"].shape == (1, 5, 36, 3)
    assert [str(name[0]) for name in mat["joint_names"][0]] == list(LAYOUTS["nyu36"].joint_names)
    np.testing.assert_allclose(mat["joint_xyz"][0], xyz * [1, -1, 1], atol=1e-4)  # NYU's y points up
    np.testing.assert_allclose(mat["joint_uvd"][0], project(xyz, CAMERAS["nyu"]), atol=1e-4)
    np.testing.assert_allclose(mat["joint_xyz"][0][:, list(NYU_EVAL_JOINTS)] * [1, -1, 1],
                               LAYOUTS["nyu"].from_canonical(data.pose[:5]), atol=1e-4)
    image = Image.open(tmp_path / "nyu" / "train" / "depth_1_0000001.png")
    assert image.getbands() == ("R", "G", "B")  # depth = (G << 8) | B
    rgb = np.asarray(image).astype(np.int32)
    assert (rgb[..., 0] == 0).all() and ((rgb[..., 1] << 8) | rgb[..., 2]).max() > 300


def test_msra_labels_use_msras_signs_and_order(store, tmp_path):
    export_store(store, tmp_path / "msra", layout="msra", fmt="png16", limit=3)
    folder = tmp_path / "msra" / "P0" / "synthgen"
    lines = (folder / "joint.txt").read_text().splitlines()
    written = np.array([[float(v) for v in line.split()] for line in lines[1:]]).reshape(3, 21, 3)
    expected = LAYOUTS["msra"].from_canonical(open_store(store).pose[:3]) * [1, -1, -1]
    assert lines[0] == "3"
    np.testing.assert_allclose(written, expected, atol=1e-4)
    assert sorted(p.name for p in folder.iterdir()) == ["000000_depth.png", "000001_depth.png", "000002_depth.png",
                                                      "joint.txt"]


def test_png16_and_npz_hold_the_same_depth_and_labels(store, tmp_path):
    export_store(store, tmp_path / "png", layout="icvl", fmt="png16", limit=6)
    export_store(store, tmp_path / "npz", layout="icvl", fmt="npz", limit=6)
    arrays = np.load(tmp_path / "npz" / "samples.npz")
    data, cam = open_store(store), CAMERAS["icvl"]
    xyz = LAYOUTS["icvl"].from_canonical(data.pose[:6])

    assert arrays["depth"].shape == (6, cam.height, cam.width) and arrays["depth"].dtype == np.uint16
    np.testing.assert_allclose(arrays["joints_xyz"], xyz, rtol=1e-6)
    np.testing.assert_allclose(arrays["joints_uvd"], project(xyz, cam), rtol=1e-5)
    np.testing.assert_allclose(arrays["intrinsics"], [[cam.fx, cam.fy, cam.cx, cam.cy]] * 6)
    assert list(arrays["joint_names"]) == list(LAYOUTS["icvl"].joint_names)
    labels = (tmp_path / "png" / "Training" / "labels.txt").read_text().splitlines()
    for i, line in enumerate(labels):
        name, *values = line.split()
        image = iio.imread(tmp_path / "png" / "Training" / "Depth" / name)
        assert image.dtype == np.uint16 and image.shape == (cam.height, cam.width)
        np.testing.assert_array_equal(image, arrays["depth"][i])
        np.testing.assert_allclose(np.reshape(values, (16, 3)).astype(float), arrays["joints_uvd"][i], atol=1e-4)


def test_crop_export_writes_crops_and_their_cameras(store, tmp_path):
    manifest = export_store(store, tmp_path / "crops", layout="icvl", fmt="png16", crop=True, limit=4)
    data = open_store(store)
    rows = (tmp_path / "crops" / "crop_cameras.csv").read_text().splitlines()
    labels = (tmp_path / "crops" / "Training" / "labels.txt").read_text().splitlines()

    assert manifest["frame"] == "crop" and manifest["camera"] is None and rows[0].startswith("index,image,fx")
    for i in range(4):
        fields = rows[i + 1].split(",")
        camera = crop_intrinsics(data.center[i], 250.0, CROP_SIZE)
        np.testing.assert_allclose([float(v) for v in fields[2:6]], [camera.fx, camera.fy, camera.cx, camera.cy],
                                   rtol=1e-6)
        image = iio.imread(tmp_path / "crops" / "Training" / "Depth" / fields[1][len("Depth/"):])
        np.testing.assert_array_equal(image, np.rint(data.depth_mm(i)))
        uvd = np.reshape(labels[i].split()[1:], (16, 3)).astype(float)
        np.testing.assert_allclose(uvd, project(LAYOUTS["icvl"].from_canonical(data.pose[i]), camera), atol=1e-4)


def test_exports_in_the_stores_own_layout_and_refuses_impossible_ones(tmp_path):
    icvl = make_store(tmp_path / "icvl.zarr", 4, joint_layout="icvl", camera="icvl")
    export_store(icvl, tmp_path / "ok", layout="icvl", fmt="native")
    back = open_dataset("icvl", tmp_path / "ok", split="train")
    np.testing.assert_allclose(back.frame(2)[1], open_store(icvl).pose[2], atol=2e-3)
    with pytest.raises(InputError, match="cannot be converted"):
        export_store(icvl, tmp_path / "bad", layout="msra", fmt="native")
    assert not (tmp_path / "bad").exists()


def test_outputs_are_never_half_written_nor_overwritten(store, tmp_path, monkeypatch):
    out = tmp_path / "out"
    export_store(store, out, layout="hands2017", fmt="png16", limit=2)
    with pytest.raises(InputError, match="already exists"):
        export_store(store, out, layout="hands2017", fmt="png16", limit=2)
    with pytest.raises(InputError, match="inside the store"):
        export_store(store, store / "x", layout="hands2017", fmt="png16")

    import synthgen.data.export as export

    written = []

    def disk_full(path, depth):
        written.append(path)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        iio.imwrite(path, np.zeros((2, 2), np.uint16), extension=".png")

    monkeypatch.setattr(export, "_write_png16", disk_full)
    with pytest.raises(OSError):
        export_store(store, out, layout="hands2017", fmt="png16", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the old export, untouched, no leftovers
    assert len(list((out / "training" / "images").iterdir())) == 2
    monkeypatch.undo()
    export_store(store, out, layout="hands2017", fmt="png16", limit=5, overwrite=True)
    assert len(list((out / "training" / "images").iterdir())) == 5


def test_cli_export_and_its_errors(store, tmp_path):
    out = tmp_path / "cli"
    result = runner.invoke(app, ["export", str(store), "--format", "native", "--layout", "msra", "--out", str(out),
                                 "--n", "3"])
    assert result.exit_code == 0, result.output
    assert f"exported 3 samples to {out}" in result.stdout and "P0/synthgen/joint.txt" in result.stdout
    assert len(list((out / "P0" / "synthgen").glob("*_depth.bin"))) == 3
    for args, fragment in (
        (["--format", "native", "--layout", "msra", "--out", str(out)], "already exists"),
        (["--format", "jpeg", "--layout", "msra", "--out", str(tmp_path / "x")], "--format"),
        (["--format", "npz", "--layout", "mano", "--out", str(tmp_path / "x")], "--layout"),
    ):
        result = runner.invoke(app, ["export", str(store), *args])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("synthgen: error:") and fragment in lines[0], result.stderr
    result = runner.invoke(app, ["export", str(tmp_path / "missing.zarr"), "--format", "npz", "--layout", "nyu",
                                 "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "does not exist" in result.stderr
