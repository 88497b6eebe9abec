"""Crash safety and hostile input, for every command.

1. kill -9 of a real `render` / `sample` process at random moments (seeded), then the same
   command with --resume: the store is byte-identical to an uninterrupted run's.
2. Every file-system change of a store's life, one at a time, as the moment of death (and a
   torn write at each file write), then `StoreWriter.resume`: identical bytes again.
3. A table of fault classes x commands (`CASES`): one `synthgen: error:` line, exit 2 (bad
   input) or 1 (runtime), no traceback, and not one byte of any input or output changed.
4. A full disk (a real 1 MB tmpfs) and a read-only directory (a real read-only mount), inside a
   user + mount namespace (`unshare -rm`, no root needed) where the system allows it; the same
   failures injected in-process everywhere else.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import pickle
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from test_sampling import some_poses, tiny_model
from test_store import make_samples, metadata, store_files
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.data.reader import open_store
from synthgen.data.schema import (
    CHECKSUMS_ATTR,
    SampleBatch,
    StoreWriteError,
    attributes_digest,
    file_sha256,
    shard_path,
)
from synthgen.data.verify import verify_store
from synthgen.data.writer import StoreWriter
from synthgen.models.checkpoint import CONFIG, OPTIMIZER, TRAINING_STATE, WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, code: int, fragment: str) -> str:
    """Assert the failure contract; returns the line."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("synthgen: error:") and fragment in lines[0], lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def snapshot(root: Path) -> dict[str, str]:
    """Every file and directory under root, with a digest of each file's bytes."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(root.rglob("*"))}


def cli_process(*args: object, env: dict | None = None, **popen) -> subprocess.Popen:
    """The real command line in its own process (`python -m cli ...`)."""
    return subprocess.Popen([sys.executable, "-m", "synthgen", *map(str, args)], cwd=ROOT, env=env, **popen)


# --- 1. kill -9 at random moments, then --resume --------------------------------------------------

KILL_COMMANDS = {
    # 6 chunks of 64 mesh renders; 4 chunks of 128 samples of the shipped model.
    "render": ["render", "--n", 384, "--chunk-size", 64, "--seed", 5],
    "sample": ["sample", "--n", 512, "--chunk-size", 128, "--seed", 5, "--batch-size", 128],
}
KILLS = 3


def run_state(out: Path) -> str:
    """What a kill left behind, in words (for the log), checking that nothing looks complete early."""
    working = out.with_name(out.name + ".incomplete")
    if out.exists():
        assert verify_store(out).ok, "a store at the final path must be complete and intact"
        return "finished store"
    if not working.exists():
        return "nothing written"
    complete = json.loads((working / "zarr.json").read_text())["attributes"]["complete"]
    if not (working / ".progress").is_dir():
        return "finalize interrupted" if complete else "creation interrupted"
    return f"{_markers(out)} chunk(s) written"


@pytest.mark.skipif(not (ROOT / "synthgen/assets/models/default/config.json").is_file(), reason="no default model")
@pytest.mark.parametrize("command", sorted(KILL_COMMANDS))
def test_kill_9_at_random_moments_then_resume_is_byte_identical(tmp_path, command, capsys):
    """SIGKILL at seeded random moments of each phase of a run, each kill followed by the same
    command with --resume: (1) during start-up, (2) inside the first chunk written after it,
    (3) inside a later chunk, (4) just after the last chunk (finalize). Then --resume to the end,
    compared file by file with a run never killed."""
    args = KILL_COMMANDS[command]
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000", "OMP_NUM_THREADS": "1", "LP_NUM_THREADS": "1"}
    reference = tmp_path / "reference.zarr"
    started = time.monotonic()
    proc = cli_process(*args, "--out", reference, env=env, stdout=subprocess.DEVNULL)
    while not reference.with_name("reference.zarr.incomplete").exists() and proc.poll() is None:
        time.sleep(0.01)
    startup = time.monotonic() - started
    assert proc.wait() == 0
    duration = time.monotonic() - started
    chunks = -(-args[2] // args[4])
    per_chunk = (duration - startup) / chunks

    out, rng, log = tmp_path / "killed.zarr", random.Random(f"kill-{command}"), []
    for kill in range(1, KILLS + 2):
        resume = ["--resume"] if kill > 1 else []  # the first run is the plain command
        proc = cli_process(*args, "--out", out, *resume, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        if kill == 1:
            when = f"+{rng.uniform(0, 0.9 * startup):.2f} s"
            time.sleep(float(when[1:-2]))
        else:
            left = chunks - _markers(out)
            wait_for = {2: 1, 3: rng.randint(1, max(left - 2, 1)), 4: left}[kill]
            target = _markers(out) + wait_for
            while _markers(out) < target and proc.poll() is None:
                time.sleep(0.005)
            offset = rng.uniform(0, 0.8 * per_chunk if kill < 4 else 0.1)
            time.sleep(offset)
            when = f"{offset:.2f} s after chunk marker {target}"
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGKILL)
            assert proc.wait() == -signal.SIGKILL
        log.append(f"kill {kill} at {when}: {run_state(out) if alive else 'too late, the run had ended'}")
    assert sum("too late" not in entry for entry in log) >= KILLS, log

    finish = cli_process(*args, "--out", out, "--resume", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    stdout, stderr = finish.communicate()
    assert finish.returncode == 0, stderr
    with capsys.disabled():
        print(f"\n{command} ({chunks} chunks; uninterrupted {duration:.1f} s, start-up {startup:.1f} s): "
              + "; ".join(log) + f"; resume: {stdout.split(' to ')[0].strip()}")
    assert store_files(out) == store_files(reference)
    assert sorted(os.listdir(tmp_path)) == ["killed.zarr", "reference.zarr"]


def _markers(out: Path) -> int:
    progress = out.with_name(out.name + ".incomplete") / ".progress"
    try:
        return sum(p.name.isdigit() for p in progress.iterdir())
    except FileNotFoundError:
        return 0


# --- 2. death at every file-system change of a store's life ---------------------------------------


class Killed(BaseException):
    """The process is gone: raised by every file-system change from the moment of death on.

    A BaseException, so `except Exception` clean-up code (Zarr deletes its temporary file on
    an Exception) does not run, just as it would not after SIGKILL."""


class DeathAt:
    """Counts file-system changes and dies at number `at` (None: only count).

    With `torn`, the death at a file opened for writing happens halfway through its first
    write, leaving a torn file behind, as a kill during write(2) would."""

    def __init__(self, monkeypatch, at: int | None, torn: bool = False):
        self.count, self.at, self.torn, self.dead = 0, at, torn, False
        self.file_writes: list[int] = []  # which changes opened a file for writing (where a tear can happen)
        for name in ("mkdir", "rename", "replace", "unlink", "remove", "rmdir"):
            monkeypatch.setattr(os, name, self._wrap(getattr(os, name)))
        real_open, real_os_open = io.open, os.open

        def open_(file, mode="r", *args, **kwargs):
            if not any(flag in mode for flag in "wax+"):
                return real_open(file, mode, *args, **kwargs)
            self.file_writes.append(self.count + 1)
            if self._step() == "tear":
                return _TornFile(real_open(file, mode, *args, **kwargs))
            return real_open(file, mode, *args, **kwargs)

        def os_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and self._step():
                raise Killed
            return real_os_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr("builtins.open", open_)
        monkeypatch.setattr(os, "open", os_open)

    def _step(self) -> str | None:
        if self.dead:
            raise Killed
        self.count += 1
        if self.at is not None and self.count == self.at:
            self.dead = True
            if self.torn:
                return "tear"
            raise Killed
        return None

    def _wrap(self, real):
        def changed(*args, **kwargs):
            if self._step():  # a torn rename or mkdir is just a death before it
                raise Killed
            return real(*args, **kwargs)
        return changed


class _TornFile:
    def __init__(self, file):
        self._file = file

    def write(self, data):
        if isinstance(data, str):
            self._file.write(data[: len(data) // 2])
        else:
            raw = memoryview(data).cast("B")
            self._file.write(bytes(raw[: len(raw) // 2]))
        self._file.close()
        raise Killed

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


N_CRASH, CHUNK_CRASH = 40, 16  # three chunks: 16, 16, 8 samples
BATCH = make_samples(11, N_CRASH)[1]


def _write_run(path: Path, overwrite: bool = False, resume: bool = False) -> None:
    """A whole run, as `render`/`sample` do it: create (or resume), every missing chunk, finalize."""
    meta = metadata(seed=11)
    if resume:
        writer = StoreWriter.resume(path, N_CRASH, meta, with_latent=True, chunk_size=CHUNK_CRASH, overwrite=overwrite)
        if writer is None:
            return
    else:
        writer = StoreWriter.create(path, N_CRASH, meta, with_latent=True, chunk_size=CHUNK_CRASH, overwrite=overwrite)
    for chunk in writer.missing_chunks():
        start, stop = writer.chunk_bounds(chunk)
        writer.write(start, SampleBatch(BATCH.depth[start:stop], BATCH.pose[start:stop], BATCH.center[start:stop],
                                        BATCH.latent[start:stop]))
    writer.finalize()


def _old_store(path: Path) -> None:
    writer = StoreWriter.create(path, 16, metadata(seed=99), chunk_size=CHUNK_CRASH)
    _, batch = make_samples(99, 16)
    writer.write(0, SampleBatch(batch.depth, batch.pose, batch.center))
    writer.finalize()


@pytest.mark.parametrize("overwrite", [False, True], ids=["new", "overwrite"])
def test_death_at_every_file_system_change_then_resume_is_byte_identical(tmp_path, monkeypatch, overwrite):
    reference = tmp_path / "reference" / "s.zarr"
    reference.parent.mkdir()
    _write_run(reference)
    expected = store_files(reference)
    old_files = None
    with pytest.MonkeyPatch.context() as counting:
        probe = tmp_path / "probe" / "s.zarr"
        probe.parent.mkdir()
        if overwrite:
            _old_store(probe)
        counter = DeathAt(counting, at=None)
        _write_run(probe, overwrite=overwrite)
        total, file_writes = counter.count, counter.file_writes
    assert total > 30 and len(file_writes) > 10  # arrays, shards, markers, attributes, renames, removals

    for torn in (False, True):
        for at in file_writes if torn else range(1, total + 1):
            work = tmp_path / f"{'torn' if torn else 'kill'}-{at}"
            work.mkdir()
            path = work / "s.zarr"
            if overwrite:
                _old_store(path)
                old_files = store_files(path)
            with pytest.MonkeyPatch.context() as dying:
                DeathAt(dying, at=at, torn=torn)
                with pytest.raises(Killed):
                    _write_run(path, overwrite=overwrite)
                _drain_zarr()
            # What a reader sees right after the death: the old store, the new complete one, or
            # (only between finalize's two renames) none, with the new one complete beside it.
            if path.exists():
                assert store_files(path) in (old_files, expected) if overwrite else store_files(path) == expected
            else:
                assert not overwrite or _complete(work / "s.zarr.incomplete"), at
            _write_run(path, overwrite=overwrite, resume=True)
            assert store_files(path) == expected, (torn, at)
            assert os.listdir(work) == ["s.zarr"], (torn, at, os.listdir(work))


def _drain_zarr() -> None:
    """Let Zarr's I/O tasks still in flight after the death end, while every change still dies.

    A real SIGKILL stops every thread at once; here Zarr's event-loop thread would go on with
    the writes it had started and make them after the patches are gone, racing the resume."""
    import asyncio

    from zarr.core.sync import sync

    async def others_finished() -> None:
        while pending := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
            await asyncio.wait(pending)

    sync(others_finished())


def _complete(working: Path) -> bool:
    return json.loads((working / "zarr.json").read_text())["attributes"]["complete"] is True


def test_resume_refuses_another_run_and_leaves_it_untouched(tmp_path):
    path = tmp_path / "s.zarr"
    writer = StoreWriter.create(path, N_CRASH, metadata(seed=11), with_latent=True, chunk_size=CHUNK_CRASH)
    writer.write(0, SampleBatch(BATCH.depth[:16], BATCH.pose[:16], BATCH.center[:16], BATCH.latent[:16]))
    before = snapshot(tmp_path)
    for change, fragment in ((dict(meta=metadata(seed=12)), "seed differs"),
                             (dict(n=N_CRASH + 1), "num_samples differs"),
                             (dict(chunk=32), "chunk_size differs"),
                             (dict(meta=metadata(seed=11, parameters={"noise_mm": 1.0})), "parameter noise_mm differs"),
                             (dict(latent=False), "latent_dim differs")):
        with pytest.raises(Exception, match=fragment):
            StoreWriter.resume(path, change.get("n", N_CRASH), change.get("meta", metadata(seed=11)),
                               with_latent=change.get("latent", True), chunk_size=change.get("chunk", CHUNK_CRASH))
    assert snapshot(tmp_path) == before


# --- 3. fault classes x commands ------------------------------------------------------------------


class _TouchOnUnpickle:
    """Unpickling this creates a file: the world snapshot would show that something unpickled."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _rehash(store: Path) -> None:
    """Record a store's current file digests, as if the writer had written these bytes."""
    group = zarr.open_group(str(store), mode="r")
    doc = json.loads((store / "zarr.json").read_text())
    attrs = doc["attributes"]
    chunks = -(-attrs["num_samples"] // attrs["layout"]["chunk_size"])
    attrs[CHECKSUMS_ATTR]["arrays"] = {name: [file_sha256(shard_path(store, group[name], k)) for k in range(chunks)]
                                       for name in attrs["layout"]["arrays"]}
    attrs[CHECKSUMS_ATTR]["attributes"] = attributes_digest(attrs)
    (store / "zarr.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """Every input the cases name: good and broken models, stores, pose files, recipes."""
    root = tmp_path_factory.mktemp("world")
    w: dict[str, Path] = {"root": root}
    w["model"] = root / "model"
    tiny_model().save_pretrained(w["model"])
    w["store"] = root / "good.zarr"
    assert invoke("sample", "--n", 40, "--out", w["store"], "--model", w["model"], "--seed", 2,
                  "--chunk-size", 64).exit_code == 0
    w["big"] = root / "big.zarr"  # big enough that its preview / estimate outputs fill a small disk
    assert invoke("sample", "--n", 2048, "--out", w["big"], "--model", w["model"], "--seed", 3).exit_code == 0

    def copy(src: str, name: str) -> Path:
        w[name] = root / name
        (shutil.copytree if w[src].is_dir() else shutil.copy)(w[src], w[name])
        return w[name]

    # models
    blob = bytearray((copy("model", "m-corrupt") / WEIGHTS).read_bytes())
    blob[-100:-90] = bytes(b ^ 0xFF for b in blob[-100:-90])
    (w["m-corrupt"] / WEIGHTS).write_bytes(bytes(blob))
    weights = copy("model", "m-truncated") / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-500])
    config = json.loads((copy("model", "m-mismatch") / CONFIG).read_text())
    config["architecture"]["generator"].update(channels=8, fc_dim=128)
    (w["m-mismatch"] / CONFIG).write_text(json.dumps(config))
    (copy("model", "m-badjson") / CONFIG).write_text("{not json")
    bait = {"weights": torch.zeros(3), "payload": _TouchOnUnpickle(root / "UNPICKLED")}
    torch.save(bait, root / "model.pt")
    w["m-pt"] = root / "model.pt"
    w["m-pkl"] = root / "model.pkl"
    w["m-pkl"].write_bytes(pickle.dumps(bait))
    torch.save(bait, copy("model", "m-disguised") / WEIGHTS)  # a torch.save zip named model.safetensors
    w["png"] = root / "picture.png"
    w["png"].write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    w["dir"] = root / "plain-dir"
    w["dir"].mkdir()

    # stores
    attrs_file = copy("store", "s-v99") / "zarr.json"
    doc = json.loads(attrs_file.read_text())
    doc["attributes"]["schema_version"] = 99
    attrs_file.write_text(json.dumps(doc))
    group = zarr.open_group(str(copy("store", "s-corrupt")), mode="r")
    shard = shard_path(w["s-corrupt"], group["depth"], 0)
    blob = bytearray(shard.read_bytes())
    blob[len(blob) // 2: len(blob) // 2 + 8] = bytes(8)
    shard.write_bytes(bytes(blob))
    zarr.open_array(str(copy("store", "s-nan") / "pose"), mode="r+")[20, 3, 1] = np.nan
    _rehash(w["s-nan"])
    shard_path(copy("store", "s-missing-chunk"), group["pose"], 0).unlink()
    w["s-incomplete"] = root / "unfinished.zarr"
    shutil.copytree(w["store"], root / "unfinished.zarr.incomplete")
    working = root / "unfinished.zarr.incomplete"
    doc = json.loads((working / "zarr.json").read_text())
    doc["attributes"]["complete"] = False
    (working / "zarr.json").write_text(json.dumps(doc))
    (working / ".progress").mkdir()
    (working / ".progress" / "00000000").write_text("{}")  # its only chunk is written; finalize never ran

    # pose files
    good = some_poses(3)
    for name, values in {"p-good": good, "p-one": good[:1], "p-shape": good[:, :20], "p-flat-shape": good.reshape(3, -1)[:, :60]}.items():
        w[name] = root / f"{name}.npy"
        np.save(w[name], values)
    nan, inf = good.copy(), good.copy()
    nan[1, 4, 2] = np.nan
    inf[2, 0, 0] = np.inf
    for name, values in {"p-nan": nan, "p-inf": inf, "p-nan-one": nan[1:2]}.items():
        w[name] = root / f"{name}.npy"
        np.save(w[name], values)
    w["p-nan-csv"] = root / "p-nan.csv"
    np.savetxt(w["p-nan-csv"], nan.reshape(3, -1), delimiter=",")
    bent = good.copy()
    for finger in range(1, 5):  # index..little: bend PIP->DIP->TIP back over the knuckle
        pip, dip, tip = 6 + 3 * finger, 7 + 3 * finger, 8 + 3 * finger
        bent[:, dip] = 2 * bent[:, pip] - bent[:, dip]
        bent[:, tip] = 2 * bent[:, pip] - bent[:, tip]
    w["p-bent"] = root / "p-bent.npy"
    np.save(w["p-bent"], bent)
    w["p-bent-one"] = root / "p-bent-one.npy"
    np.save(w["p-bent-one"], bent[:1])
    w["p-garbage"] = root / "p-garbage.npy"
    w["p-garbage"].write_bytes(b"\x93NUMPY\x01\x00garbage")
    w["p-many"] = root / "p-many.npy"
    np.save(w["p-many"], some_poses(2000, seed=4))
    w["p-pickle"] = root / "p-pickle.npy"
    np.save(w["p-pickle"], np.array([{"a": 1}], dtype=object), allow_pickle=True)

    # recipes (the tiny recipe on the good store, then broken variants)
    tiny = (ROOT / "recipes/tiny.toml").read_text()
    for name, stores in {"r-good": "good.zarr", "r-v99": "s-v99", "r-nan": "s-nan", "r-corrupt": "s-corrupt",
                         "r-incomplete": "unfinished.zarr", "r-missing-store": "nowhere.zarr"}.items():
        w[name] = root / f"{name}.toml"
        w[name].write_text(tiny.replace("stores = []", f'stores = ["{root / stores}"]').replace(
            'out_dir = "runs/tiny"', f'out_dir = "{root / "run"}"'))
    w["r-bad-toml"] = root / "r-bad.toml"
    w["r-bad-toml"].write_text("name = [unclosed\n")
    w["r-unknown-key"] = root / "r-unknown.toml"
    w["r-unknown-key"].write_text(tiny.replace("seed = 0", "seed = 0\nbogus_key = 1"))

    # a training run's checkpoint, broken two ways (for train --resume)
    for name, damage in (("t-badstate", "state"), ("t-truncated", "optimizer")):
        ckpt = root / name / "checkpoints" / "step-0000004"
        ckpt.mkdir(parents=True)
        (ckpt / TRAINING_STATE).write_text("{not json" if damage == "state" else json.dumps({"optimizer_sha256": "0"}))
        (ckpt / OPTIMIZER).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":" if damage == "optimizer" else b"")
        w[name] = root / name
    existing = root / "existing"
    existing.mkdir()
    (existing / "grid.png").write_bytes(b"old png")
    (existing / "poses.npy").write_bytes(b"old npy")
    (existing / "walk.mp4").write_bytes(b"old mp4")
    (existing / "folder.png").mkdir()
    w["existing"] = existing
    w["out"] = root / "outputs"
    w["out"].mkdir()
    return w


M = ("--model", "@model")
FROM = ("--to", "seed:1", "--steps", 3, "--out", "@out/i.zarr")

# (fault class, command, arguments with @name for a world path, exit code, fragment of the message)
CASES = [
    # bad arguments
    ("bad-args", "render", ("render", "--n", 0, "--out", "@out/r.zarr"), 2, "--n"),
    ("bad-args", "render", ("render", "--n", "many", "--out", "@out/r.zarr"), 2, "--n"),
    ("bad-args", "render", ("render", "--n", 10**9, "--out", "@out/r.zarr"), 2, "--n"),
    ("bad-args", "render", ("render", "--n", 4, "--out", "@out/r.zarr", "--camera", "kinect"), 2, "kinect"),
    ("bad-args", "render", ("render", "--n", 4, "--out", "@out/r.zarr", "--chunk-size", 100), 2, "multiple of 64"),
    ("bad-args", "render", ("render", "--n", 4, "--out", "@out/r.zarr", "--workers", 0), 2, "--workers"),
    ("bad-args", "info", ("info",), 2, "Missing argument"),
    ("bad-args", "preview", ("preview", "@store", "--out", "@out/grid.jpg"), 2, ".png"),
    ("bad-args", "preview", ("preview", "@store", "--out", "@out/grid.png", "--n", 0), 2, "--n"),
    ("bad-args", "train", ("train",), 2, "--recipe"),
    ("bad-args", "estimate", ("estimate", "@store", *M, "--batch-size", 0), 2, "--batch-size"),
    ("bad-args", "estimate", ("estimate", "@store", *M, "--out", "@out/poses.txt"), 2, ".npy"),
    ("bad-args", "sample", ("sample", "--n", -3, "--out", "@out/s.zarr", *M), 2, "--n"),
    ("bad-args", "sample", ("sample", "--n", 4, "--out", "@out/s.zarr", *M, "--truncation", "nan"), 2, "truncation"),
    ("bad-args", "sample", ("sample", "--n", 4, "--out", "@out/s.zarr", *M, "--prior", "uniform"), 2, "uniform"),
    ("bad-args", "sample", ("sample", "--n", 4, "--out", "@out/s.zarr", *M, "--device", "tpu"), 2, "tpu"),
    ("bad-args", "generate", ("generate", "--poses", "@p-good", "--out", "@out/g.zarr", *M, "--layout", "kinect"),
     2, "kinect"),
    ("bad-args", "generate", ("generate", "--poses", "@p-good", "--out", "@out/g.zarr", *M, "--precision", "fp8"),
     2, "fp8"),
    ("bad-args", "interpolate", ("interpolate", "--from", "seed:0", "--to", "seed:1", "--steps", 1, *M,
                                 "--out", "@out/i.zarr"), 2, "--steps"),
    ("bad-args", "interpolate", ("interpolate", "--from", "seed:x", *FROM, *M), 2, "seed:N"),
    ("bad-args", "interpolate", ("interpolate", "--from", "seed:0", *FROM, *M, "--mode", "cubic"), 2, "cubic"),
    ("bad-args", "walk", ("walk", "--steps", 5, "--step-size", "nan", "--out", "@out/w.zarr", *M), 2, "step size"),
    ("bad-args", "walk", ("walk", "--steps", 0, "--out", "@out/w.zarr", *M), 2, "--steps"),
    ("bad-args", "walk", ("walk", "--steps", 5, "--fps", 0, "--video", "@out/w.mp4", *M), 2, "--fps"),
    ("bad-args", "verify", ("verify",), 2, "Missing argument"),
    ("bad-args", "(none)", ("bogus-command",), 2, "bogus-command"),
    ("bad-args", "(none)", ("render", "--bogus", "--n", 4, "--out", "@out/r.zarr"), 2, "--bogus"),
    # missing files
    ("missing-file", "info", ("info", "@out/nowhere.zarr"), 2, "does not exist"),
    ("missing-file", "preview", ("preview", "@out/nowhere.zarr", "--out", "@out/grid.png"), 2, "does not exist"),
    ("missing-file", "preview", ("preview", "@store", "--out", "@out/no-dir/grid.png"), 2, "does not exist"),
    ("missing-file", "train", ("train", "--recipe", "@out/nowhere.toml"), 2, "recipe not found"),
    ("missing-file", "train", ("train", "--recipe", "@r-missing-store"), 2, "does not exist"),
    ("missing-file", "estimate", ("estimate", "@out/nowhere.zarr", *M), 2, "does not exist"),
    ("missing-file", "estimate", ("estimate", "@store", *M, "--out", "@out/no-dir/p.npy"), 2, "does not exist"),
    ("missing-file", "sample", ("sample", "--n", 4, "--out", "@out/s.zarr", "--model", "@out/nowhere"), 2,
     "no such checkpoint"),
    ("missing-file", "generate", ("generate", "--poses", "@out/nowhere.npy", "--out", "@out/g.zarr", *M), 2,
     "no such file"),
    ("missing-file", "interpolate", ("interpolate", "--from", "@out/nowhere.npy", *FROM, *M), 2, "no such file"),
    ("missing-file", "interpolate", ("interpolate", "--from", "@out/nowhere.zarr:0", *FROM, *M), 2, "does not exist"),
    ("missing-file", "walk", ("walk", "--steps", 4, "--out", "@out/w.zarr", "--model", "@out/nowhere"), 2,
     "no such checkpoint"),
    ("missing-file", "walk", ("walk", "--steps", 4, "--video", "@out/no-dir/w.mp4", *M), 2, "does not exist"),
    ("missing-file", "verify", ("verify", "@out/nowhere.zarr"), 2, "does not exist"),
    # wrong file types
    ("wrong-type", "info", ("info", "@png"), 2, "not a Zarr store"),
    ("wrong-type", "info", ("info", "@dir"), 2, "not a Zarr store"),
    ("wrong-type", "preview", ("preview", "@png", "--out", "@out/grid.png"), 2, "not a Zarr store"),
    ("wrong-type", "preview", ("preview", "@store", "--out", "@existing/folder.png"), 2, "is a directory"),
    ("wrong-type", "train", ("train", "--recipe", "@png"), 2, "not a valid recipe"),
    ("wrong-type", "train", ("train", "--recipe", "@dir"), 2, "recipe not found"),
    ("wrong-type", "train", ("train", "--recipe", "@r-bad-toml"), 2, "not a valid recipe"),
    ("wrong-type", "train", ("train", "--recipe", "@r-unknown-key"), 2, "bogus_key"),
    ("wrong-type", "estimate", ("estimate", "@dir", *M), 2, "not a Zarr store"),
    ("wrong-type", "sample", ("sample", "--n", 4, "--out", "@out/s.zarr", "--model", "@png"), 2, "checkpoint directory"),
    ("wrong-type", "sample", ("sample", "--n", 4, "--out", "@out/s.zarr", "--model", "@store"), 2, "config.json"),
    ("wrong-type", "generate", ("generate", "--poses", "@png", "--out", "@out/g.zarr", *M), 2, "unsupported pose file"),
    ("wrong-type", "generate", ("generate", "--poses", "@dir", "--out", "@out/g.zarr", *M), 2, "not a file"),
    ("wrong-type", "generate", ("generate", "--poses", "@p-garbage", "--out", "@out/g.zarr", *M), 2, ".npy"),
    ("wrong-type", "generate", ("generate", "--poses", "@p-pickle", "--out", "@out/g.zarr", *M), 2, "numeric"),
    ("wrong-type", "interpolate", ("interpolate", "--from", "@png", *FROM, *M), 2, "unsupported pose file"),
    ("wrong-type", "walk", ("walk", "--steps", 4, "--out", "@out/w.zarr", "--model", "@dir"), 2, "missing"),
    ("wrong-type", "verify", ("verify", "@png"), 2, "not a Zarr store"),
    # a store of another schema version
    *[("schema-version", cmd, args, 2, "schema version 99") for cmd, args in (
        ("info", ("info", "@s-v99")),
        ("preview", ("preview", "@s-v99", "--out", "@out/grid.png")),
        ("train", ("train", "--recipe", "@r-v99")),
        ("estimate", ("estimate", "@s-v99", *M)),
        ("generate", ("generate", "--poses", "@s-v99", "--out", "@out/g.zarr", *M)),
        ("interpolate", ("interpolate", "--from", "@s-v99:0", *FROM, *M)),
        ("verify", ("verify", "@s-v99")))],
    # NaN/inf or wrong-shape poses, in files and in stores
    ("bad-poses", "generate", ("generate", "--poses", "@p-nan", "--out", "@out/g.zarr", *M), 2, "pose 1 holds NaN"),
    ("bad-poses", "generate", ("generate", "--poses", "@p-inf", "--out", "@out/g.zarr", *M), 2, "pose 2 holds NaN or inf"),
    ("bad-poses", "generate", ("generate", "--poses", "@p-nan-csv", "--out", "@out/g.zarr", *M), 2, "pose 1 holds NaN"),
    ("bad-poses", "generate", ("generate", "--poses", "@p-shape", "--out", "@out/g.zarr", *M), 2, "shape (3, 20, 3)"),
    ("bad-poses", "generate", ("generate", "--poses", "@p-flat-shape", "--out", "@out/g.zarr", *M), 2, "shape (3, 60)"),
    ("bad-poses", "generate", ("generate", "--poses", "@s-nan", "--out", "@out/g.zarr", *M), 2, "NaN/inf"),
    ("bad-poses", "interpolate", ("interpolate", "--from", "@p-nan-one", *FROM, *M), 2, "NaN"),
    ("bad-poses", "interpolate", ("interpolate", "--from", "@p-shape", *FROM, *M), 2, "shape"),
    ("bad-poses", "interpolate", ("interpolate", "--from", "@s-nan:20", *FROM, *M), 2, "invalid values"),
    ("bad-poses", "estimate", ("estimate", "@s-nan", *M, "--json"), 2, "invalid values"),
    ("bad-poses", "preview", ("preview", "@s-nan", "--out", "@out/grid.png", "--n", 32), 2, "invalid values"),
    ("bad-poses", "train", ("train", "--recipe", "@r-nan"), 2, "pose holds NaN/inf"),
    ("bad-poses", "verify", ("verify", "@s-nan"), 1, "pose chunk 0: 1 NaN/inf value(s)"),
    # out-of-limit joint angles
    ("angle-limits", "generate", ("generate", "--poses", "@p-bent", "--out", "@out/g.zarr", *M), 2,
     "pose 0 bends 4 joints more than 60° past their limits"),
    ("angle-limits", "generate", ("generate", "--poses", "@p-good", "--layout", "msra", "--out", "@out/g.zarr", *M),
     2, "past their limits"),
    ("angle-limits", "interpolate", ("interpolate", "--from", "@p-bent-one", *FROM, *M), 2, "past their limits"),
    # corrupted or truncated checkpoints
    *[("checkpoint-damaged", cmd, (*args, "--model", f"@m-{kind}"), 2, fragment)
      for kind, fragment in (("corrupt", "sha256"), ("truncated", "truncated"), ("badjson", "not valid JSON"))
      for cmd, args in (("sample", ("sample", "--n", 4, "--out", "@out/s.zarr")),
                        ("generate", ("generate", "--poses", "@p-good", "--out", "@out/g.zarr")),
                        ("interpolate", ("interpolate", "--from", "seed:0", *FROM)),
                        ("walk", ("walk", "--steps", 4, "--out", "@out/w.zarr")),
                        ("estimate", ("estimate", "@store")))],
    ("checkpoint-damaged", "train", ("train", "--recipe", "@r-good", "--out-dir", "@t-badstate", "--resume"), 2,
     "not valid JSON"),
    ("checkpoint-damaged", "train", ("train", "--recipe", "@r-good", "--out-dir", "@t-truncated", "--resume"), 2,
     "truncated"),
    # a config that does not match its weights
    *[("config-mismatch", cmd, (*args, "--model", "@m-mismatch"), 2, "architecture in config.json")
      for cmd, args in (("sample", ("sample", "--n", 4, "--out", "@out/s.zarr")),
                        ("generate", ("generate", "--poses", "@p-good", "--out", "@out/g.zarr")),
                        ("interpolate", ("interpolate", "--from", "seed:0", *FROM)),
                        ("walk", ("walk", "--steps", 4, "--out", "@out/w.zarr")),
                        ("estimate", ("estimate", "@store")))],
    # a pickle handed as a model (never unpickled: the files are checked by their first bytes)
    *[("pickle-model", cmd, (*args, "--model", f"@m-{kind}"), 2, "refusing a pickle")
      for kind in ("pt", "pkl", "disguised")
      for cmd, args in (("sample", ("sample", "--n", 4, "--out", "@out/s.zarr")),
                        ("generate", ("generate", "--poses", "@p-good", "--out", "@out/g.zarr")),
                        ("interpolate", ("interpolate", "--from", "seed:0", *FROM)),
                        ("walk", ("walk", "--steps", 4, "--out", "@out/w.zarr")),
                        ("estimate", ("estimate", "@store")))],
    # damaged stores (a chunk rewritten, a chunk file lost)
    ("store-damaged", "info", ("info", "@s-missing-chunk"), 2, "pose chunk 0 is missing"),
    ("store-damaged", "preview", ("preview", "@s-corrupt", "--out", "@out/grid.png"), 2, "cannot decode depth"),
    ("store-damaged", "train", ("train", "--recipe", "@r-corrupt"), 2, "cannot decode depth"),
    ("store-damaged", "estimate", ("estimate", "@s-corrupt", *M), 2, "cannot decode depth"),
    ("store-damaged", "generate", ("generate", "--poses", "@s-missing-chunk", "--out", "@out/g.zarr", *M), 2,
     "pose chunk 0 is missing"),
    ("store-damaged", "interpolate", ("interpolate", "--from", "@s-corrupt:3", *FROM, *M), 2, "cannot decode depth"),
    ("store-damaged", "verify", ("verify", "@s-corrupt"), 1, "depth chunk 0: sha256"),
    # an unfinished store: refused by every reader
    ("incomplete-store", "preview", ("preview", "@s-incomplete", "--out", "@out/grid.png"), 2, "not finished yet"),
    ("incomplete-store", "train", ("train", "--recipe", "@r-incomplete"), 2, "not finished yet"),
    ("incomplete-store", "estimate", ("estimate", "@s-incomplete", *M), 2, "not finished yet"),
    ("incomplete-store", "generate", ("generate", "--poses", "@s-incomplete", "--out", "@out/g.zarr", *M), 2,
     "not finished yet"),
    ("incomplete-store", "interpolate", ("interpolate", "--from", "@s-incomplete:0", *FROM, *M), 2,
     "not finished yet"),
    ("incomplete-store", "verify", ("verify", "@s-incomplete"), 1, "incomplete: its run did not finish"),
    # existing outputs are never replaced without --overwrite
    ("existing-output", "render", ("render", "--n", 4, "--out", "@store"), 2, "already exists"),
    ("existing-output", "sample", ("sample", "--n", 4, "--out", "@store", *M), 2, "already exists"),
    ("existing-output", "generate", ("generate", "--poses", "@p-good", "--out", "@store", *M), 2, "already exists"),
    ("existing-output", "interpolate", ("interpolate", "--from", "seed:0", "--to", "seed:1", "--steps", 3,
                                        "--out", "@store", *M), 2, "already exists"),
    ("existing-output", "walk", ("walk", "--steps", 3, "--video", "@existing/walk.mp4", *M), 2, "already exists"),
    ("existing-output", "preview", ("preview", "@store", "--out", "@existing/grid.png"), 2, "already exists"),
    ("existing-output", "estimate", ("estimate", "@store", *M, "--out", "@existing/poses.npy"), 2, "already exists"),
    ("existing-output", "render", ("render", "--n", 4, "--out", "@s-incomplete"), 2, "unfinished run"),
]


def _resolve(world: dict[str, Path], args: tuple) -> list[str]:
    def one(arg):
        if not isinstance(arg, str) or not arg.startswith("@"):
            return str(arg)
        name, _, rest = arg[1:].partition("/")
        name, colon, index = name.partition(":")
        return str(world[name]) + (f"/{rest}" if rest else "") + (f":{index}" if colon else "")
    return [one(a) for a in args]


@pytest.mark.parametrize("fault, command, args, code, fragment", CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_fault(world, fault, command, args, code, fragment):
    before = snapshot(world["root"])
    one_line_error(invoke(*_resolve(world, args)), code, fragment)
    assert snapshot(world["root"]) == before  # nothing written, nothing overwritten, nothing unpickled
    assert not (world["root"] / "UNPICKLED").exists()


def test_every_fault_class_is_tried_on_every_command_it_applies_to():
    """The table's coverage, as the issue asks: fault class -> commands."""
    table: dict[str, set[str]] = {}
    for fault, command, *_ in CASES:
        table.setdefault(fault, set()).add(command)
    everything = {"render", "info", "preview", "train", "estimate", "sample", "generate", "interpolate", "walk", "verify"}
    model_commands = {"sample", "generate", "interpolate", "walk", "estimate"}
    readers = {"info", "preview", "train", "estimate", "generate", "interpolate", "verify"}
    assert table["bad-args"] >= everything
    assert table["missing-file"] >= everything - {"render"}  # render reads no file
    assert table["schema-version"] >= readers
    assert table["pickle-model"] >= model_commands and table["config-mismatch"] >= model_commands
    assert table["checkpoint-damaged"] >= model_commands | {"train"}
    assert table["incomplete-store"] >= readers - {"info"}  # info describes unfinished stores on purpose


def test_info_describes_an_unfinished_store_and_readers_can_opt_in(world):
    result = invoke("info", world["s-incomplete"])
    assert result.exit_code == 0 and "INCOMPLETE" in result.stdout
    assert len(open_store(world["s-incomplete"], allow_incomplete=True).read([0, 1])) == 2


def test_debug_shows_the_traceback(world):
    result = runner.invoke(app, ["--debug", "info", str(world["s-v99"])])
    assert result.exit_code != 0 and type(result.exception).__name__ == "SchemaVersionError"
    quiet = invoke("info", world["s-v99"])
    assert quiet.exception is None or isinstance(quiet.exception, SystemExit)


# --- 4. full disk and read-only directory ---------------------------------------------------------


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /tmp && echo ok"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "ok"


UNSHARE = _unshare_works()


def _in_namespace(script: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a shell script in a private user + mount namespace (mounts vanish with it)."""
    return subprocess.run(["unshare", "-rm", "sh", "-ec", script], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, timeout=300)


FS_DRIVER = r"""
import hashlib, json, shutil, sys
from pathlib import Path
from typer.testing import CliRunner
from synthgen.cli import app
root = Path(sys.argv[1])
def tree():
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}
results = []
for args in json.loads(sys.argv[2]):
    before = tree()
    r = CliRunner().invoke(app, args)
    after = tree()
    results.append({"args": args, "code": r.exit_code, "stderr": r.stderr, "output": r.output,
                    "changed": sorted(k for k in before if after.get(k) != before[k]),
                    "new": sorted(k for k in after if k not in before)})
    for name in {k.split("/")[0] for k in after if k not in before}:  # back to the same state for the next case
        path = root / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
print(json.dumps(results))
"""


def _fs_cases(world, mnt: Path) -> list[list[str]]:
    """Every command that writes, aimed at `mnt` (which holds `old.zarr`)."""
    model = str(world["model"])
    cases = [
        ["render", "--n", 256, "--chunk-size", 64, "--out", mnt / "r.zarr"],
        ["render", "--n", 256, "--chunk-size", 64, "--out", mnt / "old.zarr", "--overwrite"],
        ["sample", "--n", 4096, "--out", mnt / "s.zarr", "--model", model],
        ["generate", "--poses", world["p-many"], "--out", mnt / "g.zarr", "--model", model],
        ["walk", "--steps", 2000, "--out", mnt / "w.zarr", "--model", model],
        ["interpolate", "--from", "seed:0", "--to", "seed:1", "--steps", 2000, "--out", mnt / "i.zarr", "--model", model],
        ["walk", "--steps", 200, "--video", mnt / "w.mp4", "--model", model],
        ["preview", world["big"], "--out", mnt / "grid.png", "--n", 256],
        ["estimate", world["big"], "--model", model, "--out", mnt / "poses.npy"],
        ["train", "--recipe", world["r-good"], "--out-dir", mnt / "run"],
    ]
    return [[str(a) for a in case] for case in cases]


def _run_fs_driver(mnt: Path, setup: str, cases: list[list[str]]) -> list[dict]:
    script = f"{setup}\n{sys.executable} -c {_quote(FS_DRIVER)} {_quote(str(mnt))} {_quote(json.dumps(cases))}"
    done = _in_namespace(script)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


#: A progress line (synthgen.progress), which a command that ran a while prints before any error.
PROGRESS_LINE = re.compile(r"^[\w ()-]+: [\d,]+/[\d,]+ \w+ \(\d+ %\)")


def _one_line(r: dict) -> str:
    lines = [line for line in r["stderr"].splitlines() if line.strip() and not PROGRESS_LINE.match(line)]
    assert r["code"] in (1, 2) and len(lines) == 1 and lines[0].startswith("synthgen: error:"), r
    assert "Traceback" not in r["output"], r
    return lines[0]


@pytest.mark.skipif(not UNSHARE, reason="needs `unshare -rm` (unprivileged user namespaces) for a real tmpfs")
def test_a_full_disk_fails_cleanly_and_keeps_what_existed(world, tmp_path):
    """A 2 MB tmpfs holding an old store, filled up to 100 kB, then every writing command (each
    output needs >= 200 kB): exit 1, one line, the old store untouched, nothing new under an
    output's final name, no partial files."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    setup = (f"mount -t tmpfs -o size=2m none {mnt}\n"
             f"cp -r {world['store']} {mnt}/old.zarr\n"
             f"free=$(df -k --output=avail {mnt} | tail -1)\n"
             f"dd if=/dev/zero of={mnt}/filler bs=1k count=$((free - 100)) 2>/dev/null")
    results = _run_fs_driver(mnt, setup, _fs_cases(world, mnt))
    for r in results:
        line = _one_line(r)
        assert r["code"] == 1 and ("No space left on device" in line or "ffmpeg did not finish it" in line), r
        assert r["changed"] == [], r
        finals = [p for p in r["new"] if p.split("/")[0] in ("r.zarr", "s.zarr", "g.zarr", "w.zarr", "i.zarr",
                                                               "w.mp4", "grid.png", "poses.npy", "run/model")]
        assert finals == [], r
        assert not [p for p in r["new"] if p.endswith((".partial", ".tmp")) or ".partial." in p], r
    mid_run = [r for r in results if "kept for a resume" in r["stderr"]]
    assert len(mid_run) >= 3, results  # the store writers fail between chunks, keeping what they wrote


@pytest.mark.skipif(not UNSHARE, reason="needs `unshare -rm` (unprivileged user namespaces) for a read-only mount")
def test_a_read_only_directory_fails_cleanly_and_changes_nothing(world, tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    setup = f"mount -t tmpfs -o size=4m none {mnt}\ncp -r {world['store']} {mnt}/old.zarr\nmount -o remount,ro {mnt}"
    for r in _run_fs_driver(mnt, setup, _fs_cases(world, mnt)):
        line = _one_line(r)
        assert "Read-only file system" in line or "not writable" in line, r
        assert r["changed"] == [] and r["new"] == [], r


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions (the mount test covers root)")
def test_a_directory_without_write_permission_is_refused(world, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        for args in (("render", "--n", 4, "--out", locked / "r.zarr"),
                     ("sample", "--n", 4, "--out", locked / "s.zarr", "--model", world["model"]),
                     ("preview", world["store"], "--out", locked / "grid.png"),
                     ("estimate", world["store"], "--model", world["model"], "--out", locked / "p.npy")):
            one_line_error(invoke(*args), 2, "locked")
        assert os.listdir(locked) == []
    finally:
        locked.chmod(stat.S_IRWXU)


def test_no_space_in_the_middle_of_a_store_keeps_the_written_chunks_for_resume(world, tmp_path, monkeypatch):
    """ENOSPC injected where the writer writes a shard file (what a full disk raises there), after 2 chunks."""
    import synthgen.data.writer as writer

    real_write, calls = writer.write_bytes_atomically, {"n": 0}

    def write_file(path, data, **options):
        calls["n"] += 1
        if calls["n"] > 2 * 4:  # depth, pose, center, latent of two chunks
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, data, **options)

    def args(out: Path) -> tuple:
        return ("sample", "--n", 256, "--chunk-size", 64, "--out", out, "--model", world["model"], "--seed", 4)

    out, reference = tmp_path / "s.zarr", tmp_path / "ref.zarr"
    monkeypatch.setattr(writer, "write_bytes_atomically", write_file)
    line = one_line_error(invoke(*args(out)), 1, "No space left on device")
    # Producer threads finish chunks in any order (on a loaded machine chunk 0 too can come
    # third), and the writer writes them as finished: the failing write is the third chunk's.
    failed = re.search(r"cannot write samples \[(\d+), (\d+)\)", line)
    assert failed and "kept for a resume" in line, line
    start, stop = map(int, failed.groups())
    assert start in (0, 64, 128, 192) and stop == start + 64
    monkeypatch.setattr(writer, "write_bytes_atomically", real_write)
    assert not out.exists() and _markers(out) == 2
    result = invoke(*args(out), "--resume")
    assert result.exit_code == 0 and "wrote 128 samples" in result.stdout, result.output
    assert invoke(*args(reference)).exit_code == 0
    without_created = lambda files: {k: v for k, v in files.items() if k != "zarr.json"}  # noqa: E731
    assert without_created(store_files(out)) == without_created(store_files(reference))
    assert verify_store(out).ok


def test_no_space_for_a_png_or_npy_leaves_no_file(world, tmp_path, monkeypatch):
    """A write that fails halfway (a full disk) leaves neither the output nor a partial file."""
    import imageio.v3 as iio

    def half_then_full(path, *args, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(iio, "imwrite", half_then_full)
    one_line_error(invoke("preview", world["store"], "--out", tmp_path / "grid.png"), 1,
                   f"cannot write {tmp_path / 'grid.png'}: No space left on device")
    monkeypatch.setattr(np, "save", lambda path, array: half_then_full(path))
    one_line_error(invoke("estimate", world["store"], "--model", world["model"], "--out", tmp_path / "p.npy"), 1,
                   "No space left on device")
    assert os.listdir(tmp_path) == []


def test_store_write_errors_are_runtime_errors():
    assert StoreWriteError("x").exit_code == 1
