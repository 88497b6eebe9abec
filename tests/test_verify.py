"""`synthgen verify`: a finished store passes; every kind of damage is named precisely (exit 1).

Each damage is made on a fresh copy of one small store (3 chunks of 16 samples, with latents),
directly on its files, as a disk, a copy or a hand edit would. Value damages are made with the
checksums recomputed afterwards, so the value checks themselves are what catches them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from test_store import make_samples, metadata, write_store
from typer.testing import CliRunner

from synthgen.cli import app
from synthgen.data.reader import open_store
from synthgen.data.schema import (
    CHECKSUMS_ATTR,
    CorruptStoreError,
    IncompleteStoreError,
    attributes_digest,
    file_sha256,
    shard_path,
)
from synthgen.data.verify import verify_store
from synthgen.data.writer import StoreWriter

runner = CliRunner()
N, CHUNKS = 40, 3  # chunks of 16: 16, 16, 8 samples


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("verify") / "good.zarr"
    write_store(path, make_samples(3, N)[1])
    return path


@pytest.fixture
def store(pristine, tmp_path) -> Path:
    copy = tmp_path / "s.zarr"
    shutil.copytree(pristine, copy)
    return copy


def attrs_of(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]


def edit_attrs(path: Path, change) -> None:
    doc = json.loads((path / "zarr.json").read_text())
    change(doc["attributes"])
    (path / "zarr.json").write_text(json.dumps(doc))


def rehash(path: Path) -> None:
    """Record the files' current checksums, as if a buggy writer had written these bytes."""
    group = zarr.open_group(str(path), mode="r")
    arrays = {name: [file_sha256(shard_path(path, group[name], k)) for k in range(CHUNKS)]
              for name in attrs_of(path)["layout"]["arrays"]}

    def update(attrs):
        attrs[CHECKSUMS_ATTR]["arrays"] = arrays
        attrs[CHECKSUMS_ATTR]["attributes"] = attributes_digest(attrs)

    edit_attrs(path, update)


def set_values(path: Path, name: str, index, value, *, keep_checksums: bool = False) -> None:
    array = zarr.open_array(str(path / name), mode="r+")
    array[index] = value
    if not keep_checksums:
        rehash(path)


def problems(path: Path) -> list[str]:
    report = verify_store(path)
    return report.problems


def assert_cli_names(path: Path, fragment: str, code: int = 1) -> None:
    result = invoke("verify", path)
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("synthgen: error:") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.output


# --- a good store ----------------------------------------------------------------------------


def test_a_finished_store_passes_with_counts_and_checksums(store):
    report = verify_store(store)
    assert report.ok and report.problems == [] and report.notes == []
    assert report.num_samples == N and report.num_chunks == CHUNKS
    assert report.files_hashed == 4 * CHUNKS  # depth, pose, center, latent
    result = invoke("verify", store)
    assert result.exit_code == 0, result.output
    assert "ok:" in result.stdout and f"{N} samples in {CHUNKS} chunk(s)" in result.stdout
    assert "12 chunk files match their sha256" in result.stdout
    assert all(line.startswith(("checksums: ", "values: ")) for line in result.stderr.splitlines())  # progress only


def test_checksums_are_recorded_per_chunk_at_finalize(store):
    sums = attrs_of(store)[CHECKSUMS_ATTR]
    assert sums["algorithm"] == "sha256" and sorted(sums["arrays"]) == ["center", "depth", "latent", "pose"]
    group = zarr.open_group(str(store), mode="r")
    for name, digests in sums["arrays"].items():
        assert digests == [file_sha256(shard_path(store, group[name], k)) for k in range(CHUNKS)]
    assert sums["attributes"] == attributes_digest(attrs_of(store))


def test_a_store_without_checksums_passes_with_a_note(store):
    def drop(attrs):
        del attrs[CHECKSUMS_ATTR]

    edit_attrs(store, drop)
    report = verify_store(store)
    assert report.ok and report.files_hashed == 0 and "no checksums" in report.notes[0]
    result = invoke("verify", store)
    assert result.exit_code == 0 and "note: no checksums" in result.stdout


# --- file damage: the checksums --------------------------------------------------------------


def test_a_flipped_byte_is_named_by_array_and_chunk(store):
    group = zarr.open_group(str(store), mode="r")
    file = shard_path(store, group["depth"], 1)
    blob = bytearray(file.read_bytes())
    blob[len(blob) // 3] ^= 0x01
    file.write_bytes(bytes(blob))
    found = problems(store)
    assert any(p.startswith("depth chunk 1: sha256") for p in found), found
    assert all("chunk 0" not in p and "chunk 2" not in p for p in found), found
    assert_cli_names(store, "depth chunk 1")


def test_a_missing_chunk_file_is_named(store):
    group = zarr.open_group(str(store), mode="r")
    shard_path(store, group["pose"], 0).unlink()
    found = problems(store)
    assert f"pose chunk 0: file {shard_path(store, group['pose'], 0)} is missing" in found
    assert_cli_names(store, "pose chunk 0")
    with pytest.raises(CorruptStoreError, match="pose chunk 0 is missing"):
        open_store(store)  # readers refuse it too, instead of reading NaN fill


def test_a_truncated_chunk_fails_its_checksum_and_its_decoding(store):
    group = zarr.open_group(str(store), mode="r")
    file = shard_path(store, group["center"], 2)
    file.write_bytes(file.read_bytes()[:-9])
    found = problems(store)
    assert any(p.startswith("center chunk 2: sha256") for p in found)
    assert any(p.startswith("center chunk 2: cannot be decoded") for p in found)


def test_edited_metadata_breaks_the_attribute_digest(store):
    edit_attrs(store, lambda a: a.update(seed=8))
    assert problems(store) == ["attributes: their sha256 differs from the one recorded at finalize "
                               "(metadata edited or damaged)"]
    assert_cli_names(store, "attributes")


# --- metadata --------------------------------------------------------------------------------


@pytest.mark.parametrize("change, fragment", [
    (lambda a: a.pop("intrinsics"), "metadata: store attributes are incomplete"),
    (lambda a: a.update(num_samples=0), "metadata: num_samples must be a positive integer"),
    (lambda a: a.update(units="m"), "metadata: units must be 'mm'"),
    (lambda a: a["joint_names"].reverse(), "metadata: joint_names are not the hands2017 layout's 21 joints"),
    (lambda a: a["normalisation"].update(depth_scale_mm=100.0), "normalisation.depth_scale_mm must be 125.0"),
    (lambda a: a.update(cube_mm=-1), "metadata: cube_mm must be a positive number, got -1"),
    (lambda a: a["layout"].update(chunk_size="16"), "metadata: layout must hold a positive chunk_size"),
])
def test_incomplete_or_inconsistent_metadata_is_named(store, change, fragment):
    edit_attrs(store, change)
    found = problems(store)
    assert any(fragment in p for p in found), found


# --- arrays: shapes, dtypes, counts ----------------------------------------------------------


def replace_array(path: Path, name: str, shape: tuple, dtype: str) -> None:
    old = zarr.open_array(str(path / name), mode="r")
    shutil.rmtree(path / name)
    group = zarr.open_group(str(path), mode="r+")
    new = group.create_array(name, shape=shape, dtype=dtype, chunks=old.chunks, shards=old.shards,
                             fill_value=0)
    new[:] = np.ones(shape, dtype)


def test_counts_that_disagree_across_arrays_are_named(store):
    replace_array(store, "center", (N - 1, 3), "float32")
    found = problems(store)
    assert f"center: shape ({N - 1}, 3), expected ({N}, 3)" in found, found
    assert_cli_names(store, "center: shape")


def test_a_wrong_dtype_and_a_missing_array_are_named(store):
    replace_array(store, "pose", (N, 21, 3), "float64")
    shutil.rmtree(store / "latent")
    found = problems(store)
    assert any(p.startswith("pose: dtype float64, the layout says float32") for p in found), found
    assert any(p.startswith("latent: array missing") for p in found), found


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, index, value, fragment", [
    ("pose", (20, 3, 1), np.nan, "pose chunk 1: 1 NaN/inf value(s) in 1 sample(s) (first at sample 20)"),
    ("latent", (5, 0), np.inf, "latent chunk 0: 1 NaN/inf value(s) in 1 sample(s) (first at sample 5)"),
    ("depth", (33, 4, 4), 2.0, "depth chunk 2: depth outside [-1, 1] (-0.3225..2) in 1 sample(s) (first at sample 33)"),
    ("depth", (17, 0, 0), np.nan, "depth chunk 1: 1 NaN/inf value(s) in 1 sample(s) (first at sample 17)"),
    ("center", (38, 2), -5.0, "center chunk 2: crop centre z <= 0 mm (behind the camera) in 1 sample(s) "
                              "(first at sample 38)"),
])
def test_values_no_writer_accepts_are_named_with_their_sample(store, name, index, value, fragment):
    set_values(store, name, index, value)  # checksums recomputed: the value check must catch it
    found = problems(store)
    assert any(fragment in p for p in found), found
    assert not any("sha256" in p for p in found)
    assert_cli_names(store, fragment.split(":")[0])


def test_readers_refuse_invalid_values_with_the_store_named(store):
    set_values(store, "pose", (20, 3, 1), np.nan)
    opened = open_store(store)
    opened.read(slice(0, 16))  # chunk 0 is fine
    with pytest.raises(CorruptStoreError, match="samples 16..31 hold invalid values"):
        opened.read(slice(16, 32))
    with pytest.raises(CorruptStoreError, match="pose holds NaN/inf"):
        opened.read_array("pose")


# --- not a finished store ----------------------------------------------------------------------


def test_an_unfinished_store_is_reported_with_its_progress(tmp_path):
    out = tmp_path / "part.zarr"
    write_store(out, make_samples(3, N)[1], finalize=False, chunks=[0])
    found = problems(out)
    assert len(found) == 1 and found[0].startswith("incomplete: its run did not finish (2 of 3 chunks not written")
    assert_cli_names(out, "incomplete")
    with pytest.raises(IncompleteStoreError):
        open_store(out)


def test_not_a_store_and_other_schema_versions_are_usage_errors(store, tmp_path):
    assert_cli_names(tmp_path / "nothing.zarr", "does not exist", code=2)
    (tmp_path / "file.zarr").write_text("x")
    assert_cli_names(tmp_path / "file.zarr", "is not a Zarr store", code=2)
    edit_attrs(store, lambda a: a.update(schema_version=99))
    assert_cli_names(store, "schema version 99", code=2)


def test_many_problems_are_all_listed_and_counted(store):
    group = zarr.open_group(str(store), mode="r")
    for name in ("depth", "pose", "center"):
        for chunk in range(CHUNKS):
            shard_path(store, group[name], chunk).unlink()
    result = invoke("verify", store)
    assert result.exit_code == 1
    listed = [line for line in result.stdout.splitlines() if line.startswith("problem:")]
    assert len(listed) == 9 and "(and 8 more problem(s), listed above)" in result.stderr


def test_resumed_and_multi_chunk_writes_record_the_same_checksums(tmp_path):
    """Checksums come from chunk markers; a write spanning chunks, or a resume, must not lose any."""
    _, batch = make_samples(3, N)
    one = tmp_path / "one.zarr"
    writer = StoreWriter.create(one, N, metadata(), with_latent=True, chunk_size=16)
    writer.write(0, batch)  # all three chunks in one call
    writer.finalize()
    two = tmp_path / "two.zarr"
    write_store(two, batch, finalize=False, chunks=[2, 0])
    StoreWriter.resume(two, N, metadata(), with_latent=True, chunk_size=16).write(16, type(batch)(
        batch.depth[16:32], batch.pose[16:32], batch.center[16:32], batch.latent[16:32]))
    StoreWriter.open_existing(two).finalize()
    assert attrs_of(one)[CHECKSUMS_ATTR] == attrs_of(two)[CHECKSUMS_ATTR]
    assert verify_store(one).ok and verify_store(two).ok


# --- named axes and consolidated metadata ------------------------------------------------------


def test_xarray_reads_the_arrays_as_variables_indexed_by_joint_name(store):
    """Readers other than synthgen's: named dimensions, label coordinates, consolidated metadata."""
    xr = pytest.importorskip("xarray")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "failed to open consolidated metadata"
        ds = xr.open_zarr(store)
    assert sorted(ds.data_vars) == ["center", "depth", "latent", "pose"]  # latent is data, not a coordinate
    assert ds.pose.dims == ("sample", "joint", "xyz") and ds.depth.dims == ("sample", "v", "u")
    assert ds.latent.dims == ("sample", "latent_dim")
    names = open_store(store).attrs["joint_names"]
    assert [str(n) for n in ds.joint.values] == names and [str(n) for n in ds.xyz.values] == ["x", "y", "z"]
    ours = open_store(store)
    np.testing.assert_array_equal(ds.pose.sel(joint=names[4], xyz="z").values, ours.pose[:][:, 4, 2])
    np.testing.assert_array_equal(ds.depth[7].values, ours.depth[7])
    assert ds.attrs["num_samples"] == len(ours) and ds.attrs["joint_layout"] == ours.joint_layout


def test_consolidated_metadata_that_disagrees_with_an_array_is_named(store):
    group_json = json.loads((store / "zarr.json").read_text())
    assert set(group_json["consolidated_metadata"]["metadata"]) == {"center", "depth", "latent", "pose", "joint", "xyz"}
    group_json["consolidated_metadata"]["metadata"]["pose"]["shape"][0] += 1
    (store / "zarr.json").write_text(json.dumps(group_json))
    assert "pose: its consolidated metadata in zarr.json differs from its own zarr.json" in problems(store)


def test_wrong_joint_names_are_named(store):
    zarr.open_group(str(store), mode="r+", use_consolidated=False)["joint"][0] = "thumb"
    assert any(p.startswith("joint: coordinate values") for p in problems(store))


def test_a_store_without_coordinates_or_consolidated_metadata_passes_with_notes(store):
    for name in ("joint", "xyz"):
        shutil.rmtree(store / name)
    group_json = json.loads((store / "zarr.json").read_text())
    del group_json["consolidated_metadata"]
    (store / "zarr.json").write_text(json.dumps(group_json))
    report = verify_store(store)
    assert report.ok, report.problems
    assert any("no coordinate arrays" in n for n in report.notes) and any("no consolidated" in n for n in report.notes)
    assert open_store(store).pose.shape[1:] == (21, 3)
