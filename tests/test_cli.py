"""Every command through the real CLI entry point: outputs, and one-line errors with exit codes."""

import os
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.data.reader import open_store

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, code: int, fragment: str) -> None:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("synthgen: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "base.zarr"
    result = invoke("render", "--n", 40, "--out", out, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert "wrote 40 samples" in result.stdout
    return out


def test_render_writes_a_complete_store(baseline):
    store = open_store(baseline)
    assert len(store) == 40
    batch = store.read(slice(0, 40))
    assert batch.depth.shape == (40, 128, 128) and batch.pose.shape == (40, 21, 3)
    assert np.all(batch.depth >= -1) and np.all(batch.depth <= 1)
    foreground = (batch.depth < 1).mean(axis=(1, 2))
    assert np.all(foreground > 0.03) and np.all(foreground < 0.8)  # a hand in every crop
    assert store.attrs["seed"] == 3 and store.attrs["producer"] == "render"


def test_render_is_deterministic_and_seed_dependent(baseline, tmp_path):
    again = tmp_path / "again.zarr"
    assert invoke("render", "--n", 40, "--out", again, "--seed", 3).exit_code == 0
    np.testing.assert_array_equal(open_store(again).read(slice(0, 40)).depth, open_store(baseline).read(slice(0, 40)).depth)
    other = tmp_path / "other.zarr"
    assert invoke("render", "--n", 40, "--out", other, "--seed", 4).exit_code == 0
    assert not np.array_equal(open_store(other).pose[:], open_store(baseline).pose[:])


def test_render_noise_changes_depth_not_poses(baseline, tmp_path):
    noisy = tmp_path / "noisy.zarr"
    assert invoke("render", "--n", 40, "--out", noisy, "--seed", 3, "--noise").exit_code == 0
    clean, dirty = open_store(baseline), open_store(noisy)
    np.testing.assert_array_equal(clean.pose[:], dirty.pose[:])
    assert not np.array_equal(clean.depth[:], dirty.depth[:])
    assert dirty.attrs["parameters"]["noise"]["sigma_0"] > 0


@pytest.mark.parametrize("n", ["0", "-5", "abc"])
def test_render_rejects_bad_counts(tmp_path, n):
    out = tmp_path / "x.zarr"
    assert_one_line_error(invoke("render", "--n", n, "--out", out), 2, "--n")
    assert not os.listdir(tmp_path)


def test_render_rejects_unknown_camera(tmp_path):
    assert_one_line_error(invoke("render", "--n", 4, "--out", tmp_path / "x.zarr", "--camera", "kinect"), 2, "kinect")
    assert not os.listdir(tmp_path)


def test_render_refuses_to_overwrite(baseline):
    before = open_store(baseline).pose[:]
    assert_one_line_error(invoke("render", "--n", 8, "--out", baseline), 2, "already exists")
    np.testing.assert_array_equal(open_store(baseline).pose[:], before)
    assert not baseline.with_name(baseline.name + ".incomplete").exists()


def test_render_overwrite_replaces(tmp_path):
    out = tmp_path / "o.zarr"
    assert invoke("render", "--n", 8, "--out", out).exit_code == 0
    assert invoke("render", "--n", 12, "--out", out, "--overwrite").exit_code == 0
    assert len(open_store(out)) == 12


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_render_unwritable_path_non_root(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    assert_one_line_error(invoke("render", "--n", 4, "--out", locked / "x.zarr"), 2, "locked")


def test_render_unwritable_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert_one_line_error(invoke("render", "--n", 4, "--out", blocker / "x.zarr"), 2, "file")
    assert blocker.read_text() == "not a directory"


def test_info_reports_counts_and_metadata(baseline):
    result = invoke("info", baseline)
    assert result.exit_code == 0, result.output
    assert "40" in result.stdout and "hands2017" in result.stdout and "mm" in result.stdout


def test_info_rejects_a_non_store(tmp_path):
    assert_one_line_error(invoke("info", tmp_path), 2, str(tmp_path))
    assert_one_line_error(invoke("info", tmp_path / "missing.zarr"), 2, "missing.zarr")


def test_no_arguments_shows_help():
    result = invoke()
    assert result.exit_code == 2 and "render" in result.output
