"""Property-based tests (hypothesis): corrupted stores, CLI parameters and pose inputs.

The contract under test: whatever the input, synthgen either works or fails with one
`synthgen: error:` line and exit 2 (bad input) or 1 (runtime); no other exception escapes,
no traceback, and `verify` never passes a store whose files changed. Example counts are kept
small (the whole file runs in well under a minute on 2 shared cores); the seeds are derandomised
so a failure reproduces.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_sampling import some_poses, tiny_model
from test_store import make_samples, write_store
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.data.reader import open_store
from synthgen.data.schema import shard_path
from synthgen.data.verify import verify_store
from synthgen.errors import InputError, SynthgenError
from synthgen.hand import skeleton
from synthgen.hand.ik import FLEXION_DOFS
from synthgen.hand.kinematics import HandPose, forward_kinematics
from synthgen.sampling import load_poses

runner = CliRunner()
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_clean_outcome(result, codes=(0, 2)) -> None:
    """Exit 0, or one `synthgen: error:` line with an expected code; never a traceback."""
    event(f"exit {result.exit_code}")
    assert result.exit_code in codes, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("synthgen: error:"), result.stderr


def fresh_dir(root: Path) -> Path:
    path = root / uuid.uuid4().hex[:8]
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def pristine(root) -> Path:
    path = root / "pristine.zarr"
    write_store(path, make_samples(5, 40)[1])  # chunks of 16: 16, 16, 8 samples; with latents
    return path


@pytest.fixture(scope="module")
def model_dir(root) -> Path:
    path = root / "tiny-model"
    tiny_model().save_pretrained(path)
    return path


# --- corrupted chunks: the reader fails cleanly, verify always notices -------------------------

CHUNK_FILES = [(name, chunk) for name in ("depth", "pose", "center", "latent") for chunk in range(3)]


@st.composite
def damage(draw, size: int):
    """(description, function bytes -> bytes or None for delete) for a file of `size` bytes."""
    kind = draw(st.sampled_from(["flip", "truncate", "zero", "garbage", "append", "delete", "empty"]))
    if kind == "flip":
        at, mask = draw(st.integers(0, size - 1)), draw(st.integers(1, 255))
        return kind, lambda b: b[:at] + bytes([b[at] ^ mask]) + b[at + 1:]
    if kind == "truncate":
        keep = draw(st.integers(0, size - 1))
        return kind, lambda b: b[:keep]
    if kind == "zero":
        at = draw(st.integers(0, size - 1))
        length = draw(st.integers(1, 64))
        return kind, lambda b: b[:at] + bytes(min(length, size - at)) + b[at + length:]
    if kind == "garbage":
        blob = draw(st.binary(min_size=1, max_size=256))
        return kind, lambda b: blob
    if kind == "append":
        extra = draw(st.binary(min_size=1, max_size=32))
        return kind, lambda b: b + extra
    return kind, (lambda b: None) if kind == "delete" else (lambda b: b"")


def damage_file(file, data) -> str:
    """Apply a drawn damage to one file (None = delete it); rejects draws that change nothing."""
    original = file.read_bytes()
    kind, apply = data.draw(damage(len(original)), label="damage")
    changed = apply(original)
    assume(changed != original)
    if changed is None:
        file.unlink()
    else:
        file.write_bytes(changed)
    return kind


@FUZZ
@given(target=st.sampled_from(CHUNK_FILES), data=st.data())
def test_reader_and_verify_on_a_corrupted_chunk(pristine, root, target, data):
    store = fresh_dir(root) / "s.zarr"
    shutil.copytree(pristine, store)
    name, chunk = target
    kind = damage_file(shard_path(store, zarr.open_group(str(store), mode="r")[name], chunk), data)

    try:
        opened = open_store(store)
        batch = opened.read(slice(0, 40))
        assert len(batch) == 40
    except SynthgenError as error:
        assert "\n" not in str(error) and str(store) in str(error)
    report = verify_store(store)
    assert any(p.startswith(f"{name} chunk {chunk}") for p in report.problems), (kind, report.problems)
    result = invoke("verify", store)
    assert_clean_outcome(result, codes=(1,))


@FUZZ
@given(which=st.sampled_from(["zarr.json", "depth/zarr.json", "pose/zarr.json", "latent/zarr.json"]),
       data=st.data())
def test_reader_and_verify_on_corrupted_metadata(pristine, root, which, data):
    store = fresh_dir(root) / "s.zarr"
    shutil.copytree(pristine, store)
    original = (store / which).read_bytes()
    kind = damage_file(store / which, data)
    changed = (store / which).read_bytes() if (store / which).exists() else b"null"

    try:
        open_store(store).read([0, 39])
    except SynthgenError as error:
        assert "\n" not in str(error)
    try:
        report = verify_store(store)
    except SynthgenError:
        return  # no longer a store at all: refused as such
    if report.ok:  # only a change that leaves the JSON meaning the same may pass (e.g. whitespace)
        assert json.loads(changed) == json.loads(original), (kind, report)


# --- CLI parameters ----------------------------------------------------------------------------

_HOSTILE = st.one_of(st.sampled_from(["", "x", "nan", "inf", "-inf", "1e400", "0x10", "9" * 40, "-1", "0", "--n"]),
                     st.integers(-10**6, 0), st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def arguments(draw, valid: dict[str, st.SearchStrategy]) -> dict[str, object]:
    """Valid values for every option, then (half the time) one option made hostile, so that
    both outcomes are exercised."""
    args = {name: draw(strategy) for name, strategy in valid.items()}
    bad = draw(st.sampled_from([None] * len(valid) + list(valid)))
    if bad is not None:
        args[bad] = draw(_HOSTILE)
    return args


def options(args: dict[str, object]) -> list:
    return [part for name, value in args.items() for part in (f"--{name}", value)]


@settings(FUZZ, max_examples=25)
@given(args=arguments({"n": st.integers(1, 150), "seed": st.integers(0, 2**31), "chunk-size": st.sampled_from([64, 128]),
                       "truncation": st.floats(0.1, 4.0), "prior": st.sampled_from(["fitted", "standard"]),
                       "camera": st.sampled_from(["nyu", "msra", "icvl", "hands2017"]),
                       "batch-size": st.integers(1, 300)}))
def test_sample_parameters(model_dir, root, args):
    out = fresh_dir(root) / "s.zarr"
    result = invoke("sample", "--out", out, "--model", model_dir, *options(args))
    assert_clean_outcome(result)
    if result.exit_code == 0:
        assert verify_store(out).ok and len(open_store(out)) == int(args["n"])
    else:
        assert not out.exists() and not out.with_name("s.zarr.incomplete").exists()


@settings(FUZZ, max_examples=20)
@given(args=arguments({"steps": st.integers(1, 80), "step-size": st.floats(0.01, 1.0), "seed": st.integers(0, 10**6),
                       "fps": st.floats(1, 120), "prior": st.sampled_from(["fitted", "standard"])}))
def test_walk_parameters(model_dir, root, args):
    work = fresh_dir(root)
    result = invoke("walk", "--out", work / "w.zarr", "--model", model_dir, *options(args))
    assert_clean_outcome(result)
    assert os.listdir(work) == (["w.zarr"] if result.exit_code == 0 else [])
    if result.exit_code == 0:
        assert len(open_store(work / "w.zarr")) == int(args["steps"])


@settings(FUZZ, max_examples=8)
@given(args=arguments({"n": st.integers(1, 20), "seed": st.integers(0, 1000), "chunk-size": st.sampled_from([64, 128]),
                       "camera": st.sampled_from(["hands2017", "icvl"])}))
def test_render_parameters(root, args):
    work = fresh_dir(root)
    result = invoke("render", "--out", work / "r.zarr", *options(args))
    assert_clean_outcome(result)
    assert os.listdir(work) == (["r.zarr"] if result.exit_code == 0 else [])


# --- pose inputs -------------------------------------------------------------------------------

_pose_shapes = st.sampled_from([(3, 21, 3), (2, 63), (21, 3), (4, 20, 3), (0, 21, 3), (1, 21, 4), (21,), (2, 2, 21, 3)])


@FUZZ
@given(data=st.data(), shape=_pose_shapes, finite=st.booleans(), base=st.booleans())
def test_pose_files_load_or_fail_with_one_line(root, data, shape, finite, base):
    """Random arrays, or real hands with random values poked in, through `load_poses`."""
    elements = st.floats(-2000, 2000, width=32) if finite else st.floats(allow_nan=True, allow_infinity=True, width=32)
    values = data.draw(arrays(np.float32, shape, elements=elements), label="values")
    if base and len(shape) == 3 and shape[1:] == (21, 3) and shape[0]:
        mask = data.draw(arrays(np.bool_, shape, elements=st.booleans()), label="mask")  # True: poked in
        values = np.where(mask, values, some_poses(shape[0]))
    path = fresh_dir(root) / "poses.npy"
    np.save(path, values)
    try:
        joints = load_poses(path)
    except InputError as error:
        assert "\n" not in str(error) and str(path) in str(error)
        return
    assert joints.ndim == 3 and joints.shape[1:] == (21, 3) and len(joints) >= 1
    assert np.isfinite(joints).all() and (joints[..., 2].max(axis=1) + joints[..., 2].min(axis=1) > 0).all()


@settings(FUZZ, max_examples=12)
@given(values=arrays(np.float64, st.sampled_from([(2, 21, 3), (2, 63), (1, 21, 3)]),
                     elements=st.floats(allow_nan=True, allow_infinity=True)),
       suffix=st.sampled_from([".npy", ".csv"]))
def test_generate_with_hostile_pose_files(model_dir, root, values, suffix):
    work = fresh_dir(root)
    poses = work / f"p{suffix}"
    if suffix == ".npy":
        np.save(poses, values)
    else:
        np.savetxt(poses, values.reshape(len(values), -1), delimiter=",")
    result = invoke("generate", "--poses", poses, "--out", work / "g.zarr", "--model", model_dir)
    assert_clean_outcome(result)
    assert (work / "g.zarr").exists() == (result.exit_code == 0)


def _hands(angles: np.ndarray) -> np.ndarray:
    """Joints of hands 400 mm in front of the camera, palm towards it, with the given (n, 20) angles."""
    n = len(angles)
    pose = HandPose(global_rot=torch.tensor([[2.0, 0.3, 0.1]]).repeat(n, 1),
                    translation=torch.tensor([[0.0, 0.0, 400.0]]).repeat(n, 1),
                    angles=torch.as_tensor(angles, dtype=torch.float32), scale=torch.ones(n))
    return forward_kinematics(pose)[0].numpy()


LOW, HIGH = skeleton.ANGLE_LIMITS[:, 0], skeleton.ANGLE_LIMITS[:, 1]


@settings(FUZZ, max_examples=30)
@given(t=arrays(np.float64, 20, elements=st.floats(0, 1)))
def test_hands_within_their_joint_limits_are_accepted(root, t):
    path = fresh_dir(root) / "hand.npy"
    np.save(path, _hands((LOW + t * (HIGH - LOW))[None]))
    assert load_poses(path).shape == (1, 21, 3)


@settings(FUZZ, max_examples=30)
@given(t=arrays(np.float64, 20, elements=st.floats(0, 1)),
       bent=st.lists(st.sampled_from([d for d in FLEXION_DOFS if d % 4 in (2, 3) and d >= 4]), min_size=3,
                     max_size=6, unique=True),
       over=st.floats(np.radians(80), np.radians(100)))
def test_hands_bent_far_past_their_limits_are_refused(root, t, bent, over):
    """Three or more finger hinges bent backwards 80-100° past their limit: no hand does that."""
    angles = LOW + t * (HIGH - LOW)
    angles[bent] = LOW[bent] - over
    path = fresh_dir(root) / "hand.npy"
    np.save(path, _hands(angles[None]))
    with pytest.raises(InputError, match=r"pose 0 bends \d+ joints more than 60° past their limits"):
        load_poses(path)
