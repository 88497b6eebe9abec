"""`synthgen train` and `synthgen estimate` end to end on a tiny store and the tiny recipe."""

import json

import numpy as np
import pytest
import tomllib
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.data.loading import load_arrays, store_digest
from synthgen.data.reader import open_store
from synthgen.models import load

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    store = root / "train.zarr"
    assert invoke("render", "--n", 48, "--out", store, "--seed", 11).exit_code == 0
    recipe = tomllib.loads(open("recipes/tiny.toml").read())
    lines = open("recipes/tiny.toml").read().replace('stores = []', f'stores = ["{store}"]')
    assert f'"{store}"' in lines, "recipes/tiny.toml must name its stores as `stores = []`"
    path = root / "tiny.toml"
    path.write_text(lines)
    out = root / "run"
    result = invoke("train", "--recipe", path, "--out-dir", out)
    assert result.exit_code == 0, result.output
    assert recipe["name"] in result.stdout and "mean joint error" in result.stdout
    return store, out


def test_train_writes_model_metrics_and_eval(trained):
    store, out = trained
    doc = json.loads((out / "eval.json").read_text())
    assert doc["pose"]["mean_joint_error_mm"] > 0 and 0 <= doc["generator"]["iou_mean"] <= 1
    assert (out / "eval.png").stat().st_size > 10_000
    rows = (out / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,stage") and len(rows) > 10
    model = load(out / "model")
    assert model.checksum and len(model.checksum) == 64


def test_estimate_json_and_npy(trained, tmp_path):
    store, out = trained
    result = invoke("estimate", store, "--model", out / "model", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["num_samples"] == 48 and metrics["mean_joint_error_mm"] > 0
    assert set(metrics["max_error_below"]) >= {"<10", "<80"}
    npy = tmp_path / "poses.npy"
    assert invoke("estimate", store, "--model", out / "model", "--out", npy).exit_code == 0
    poses = np.load(npy)
    assert poses.shape == (48, 21, 3) and np.isfinite(poses).all()
    truth = np.asarray(open_store(store).pose[:])
    assert abs(np.linalg.norm(poses - truth, axis=-1).mean() - metrics["mean_joint_error_mm"]) < 1e-3
    again = invoke("estimate", store, "--model", out / "model", "--out", npy)
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_estimate_refuses_missing_and_corrupt_models(trained, tmp_path):
    store, out = trained
    missing = invoke("estimate", store, "--model", tmp_path / "nope")
    assert missing.exit_code == 2 and missing.stderr.startswith("synthgen: error:")
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in (out / "model").iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = broken / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-100] ^= 0xFF
    weights.write_bytes(bytes(blob))
    result = invoke("estimate", store, "--model", broken)
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_train_refuses_a_missing_recipe(tmp_path):
    result = invoke("train", "--recipe", tmp_path / "none.toml")
    assert result.exit_code == 2 and "recipe not found" in result.stderr


def test_store_digest_tracks_content(trained, tmp_path):
    store, _ = trained
    d1 = store_digest(store)
    assert d1 == store_digest(store) and len(d1) == 64
    depth, pose, center, digest = load_arrays([store, store])
    assert depth.shape == (96, 128, 128) and depth.dtype == np.float16 and pose.shape == (96, 21, 3)
    other = tmp_path / "other.zarr"
    assert invoke("render", "--n", 8, "--out", other, "--seed", 12).exit_code == 0
    assert store_digest(other) != d1
    assert load_arrays([store, other])[3] != digest
