"""`synthgen verify`: is a store exactly what its writer wrote, and is every value sane?

Checks, each failure one line naming the attribute, array or chunk:

1. a finished synthgen store of this schema version (else the usual open errors, exit 2);
2. metadata: every attribute the schema defines, with valid values, consistent with each other
   (joint names of the joint layout, depth scale = cube / 2, ...);
3. arrays: depth, pose, center (and latent) present with the shapes, dtypes, shards and
   chunks the `layout` attribute records; one sample count N in every array and `num_samples`;
4. checksums: each chunk's shard file and each array's zarr.json have the sha256 recorded at
   `finalize`, and the other attributes hash to the recorded digest (stores written before
   checksums existed get a note);
5. values, chunk by chunk: every chunk decodes; pose, center, latent finite; depth in [-1, 1]
   (what the writer accepts, so anything else was altered after writing); centre z > 0;
6. labels and readers' metadata: the `joint` / `xyz` coordinate arrays hold the layout's names,
   and the consolidated copy of the arrays' metadata in zarr.json matches each array's own
   (stores written before either existed get a note).

Problems are collected rather than raised one at a time, so one run lists everything wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from synthgen.conventions import BACKGROUND, LAYOUTS, SCHEMA_VERSION, UNITS
from synthgen.data.schema import (
    CHECKSUMS_ATTR,
    COORDINATE_NAMES,
    DEPTH_DTYPE,
    NotAStoreError,
    StoreMetadata,
    attributes_digest,
    check_schema_version,
    coordinate_values,
    file_sha256,
    missing_chunks,
    shard_path,
    working_path_for,
)
from synthgen.errors import SynthgenError

#: Shown in full; the rest of a long list is counted.
MAX_LISTED_PROBLEMS = 20


class StoreVerificationError(SynthgenError):
    """`verify` found the store damaged or inconsistent (exit 1: the check ran and failed)."""


@dataclass
class VerifyReport:
    """What `verify_store` checked and found; `problems` empty means the store passed."""

    path: Path
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    num_samples: int = 0
    num_chunks: int = 0
    arrays: dict[str, str] = field(default_factory=dict)  # name -> "shape dtype"
    files_hashed: int = 0
    damaged_files: set[tuple[str, int]] = field(default_factory=set)  # (array, chunk): values not re-checked

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """One line for a store that passed."""
        arrays = ", ".join(f"{name} {desc}" for name, desc in self.arrays.items())
        sums = (f"{self.files_hashed} chunk files match their sha256" if self.files_hashed
                else "no checksums recorded")
        return (f"ok: {self.path}: schema v{SCHEMA_VERSION}, complete, {self.num_samples} samples in "
                f"{self.num_chunks} chunk(s); {arrays}; metadata complete; {sums}; values in range")


def verify_store(path: str | Path, progress: Callable[[str, int, int], None] | None = None) -> VerifyReport:
    """Run every check on the store at `path`; raises only when `path` is no store at all.

    progress(stage, done, total), if given, hears of each chunk hashed and decoded."""
    path = Path(path)
    report = VerifyReport(path)
    if not path.exists() and working_path_for(path).exists():
        _record_incomplete(report, working_path_for(path))
        return report
    if not (path / "zarr.json").is_file():
        raise NotAStoreError(f"{path} is not a Zarr store" if path.exists() else f"{path} does not exist")
    try:
        # Each array's own metadata, not the group's consolidated copy (checked against it below).
        group = zarr.open_group(str(path), mode="r", zarr_format=3, use_consolidated=False)
        attrs = group.attrs.asdict()
    except (ValueError, TypeError, KeyError, OSError, AttributeError) as error:  # zarr on malformed JSON
        raise NotAStoreError(f"{path} is not a Zarr v3 group: {error}") from None
    check_schema_version(attrs, path)

    metadata = _check_metadata(attrs, report)
    if attrs.get("complete") is not True:
        _record_incomplete(report, path, attrs)
        return report
    if metadata is None:
        return report  # without sizes and layout, nothing below can be checked meaningfully
    arrays = _check_arrays(group, attrs, metadata, report)
    _check_coordinates(group, metadata, report)
    _check_consolidated(path, report)
    progress = progress or (lambda stage, done, total: None)
    _check_checksums(path, attrs, arrays, report, progress)
    _check_values(arrays, attrs["layout"]["chunk_size"], report, progress)
    return report


def _record_incomplete(report: VerifyReport, where: Path, attrs: dict[str, Any] | None = None) -> None:
    """Record an unfinished store as the problem, with how far its run got."""
    try:
        layout_attrs = attrs if attrs is not None else zarr.open_group(str(where), mode="r").attrs.asdict()
        num_chunks = -(-int(layout_attrs["num_samples"]) // int(layout_attrs["layout"]["chunk_size"]))
        if layout_attrs.get("complete") is True:
            detail = "every chunk written, its finalize interrupted"
        else:
            detail = f"{len(missing_chunks(where, num_chunks))} of {num_chunks} chunks not written"
    except (ValueError, TypeError, KeyError, OSError, ZeroDivisionError):
        detail = "its attributes are unreadable"
    report.problems.append(f"incomplete: its run did not finish ({detail}, in {where}); resume the run")


# --- 2. metadata ---------------------------------------------------------------------------


def _check_metadata(attrs: dict[str, Any], report: VerifyReport) -> StoreMetadata | None:
    problems = report.problems
    try:
        metadata = StoreMetadata.from_attrs(attrs)
    except SynthgenError as error:
        problems.append(f"metadata: {error}")
        return None
    num_samples, layout = attrs.get("num_samples"), attrs.get("layout")
    if not _positive_int(num_samples):
        problems.append(f"metadata: num_samples must be a positive integer, got {num_samples!r}")
        return None
    if not isinstance(layout, dict) or not _positive_int(layout.get("chunk_size")) \
            or not isinstance(layout.get("arrays"), dict):
        problems.append(f"metadata: layout must hold a positive chunk_size and the arrays, got {layout!r}")
        return None
    report.num_samples = num_samples
    report.num_chunks = -(-num_samples // layout["chunk_size"])
    if attrs.get("units") != UNITS:
        problems.append(f"metadata: units must be {UNITS!r}, got {attrs.get('units')!r}")
    names = list(LAYOUTS[metadata.joint_layout].joint_names)
    if attrs.get("joint_names") != names:
        problems.append(f"metadata: joint_names are not the {metadata.joint_layout} layout's {len(names)} joints")
    norm = attrs.get("normalisation")
    expected = {"background": BACKGROUND, "depth_scale_mm": metadata.cube_mm / 2, "depth_dtype": DEPTH_DTYPE}
    if not isinstance(norm, dict):
        problems.append("metadata: normalisation is missing")
    else:
        for key, value in expected.items():
            if norm.get(key) != value:
                problems.append(f"metadata: normalisation.{key} must be {value!r}, got {norm.get(key)!r}")
    if not isinstance(attrs.get("coordinate_system"), str):
        problems.append("metadata: coordinate_system is missing")
    intr = metadata.intrinsics
    if not (min(intr.fx, intr.fy) > 0 and min(intr.width, intr.height) > 0):
        problems.append(f"metadata: intrinsics must have positive focal lengths and size, got {intr.to_dict()}")
    return metadata


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# --- 3. arrays -----------------------------------------------------------------------------


def _check_arrays(group: zarr.Group, attrs: dict[str, Any], metadata: StoreMetadata,
                  report: VerifyReport) -> dict[str, zarr.Array]:
    """The arrays whose metadata agrees with the layout attribute (only those are read further)."""
    n, recorded = attrs["num_samples"], attrs["layout"]["arrays"]
    joints = len(LAYOUTS[metadata.joint_layout].joint_names)
    expected_shapes = {"depth": (n, metadata.crop_size, metadata.crop_size), "pose": (n, joints, 3),
                       "center": (n, 3), "latent": None}
    arrays: dict[str, zarr.Array] = {}
    on_disk = {entry.name for entry in report.path.iterdir() if (entry / "zarr.json").is_file()}
    for name in sorted(set(recorded) | {"depth", "pose", "center"} | (on_disk - set(COORDINATE_NAMES))):
        if name not in recorded:
            report.problems.append(f"{name}: array present but not in the layout attribute")
            continue
        try:
            array = group[name]
        except (KeyError, ValueError, TypeError, OSError) as error:
            report.problems.append(f"{name}: array missing or its metadata unreadable ({error})")
            continue
        shape, spec = tuple(array.shape), recorded[name]
        if not isinstance(spec, dict):
            report.problems.append(f"{name}: its entry in the layout attribute is malformed")
            continue
        want = expected_shapes.get(name) or (n, spec.get("shards", [None, None])[1])
        found = []
        if shape != want:
            found.append(f"shape {shape}, expected {want}")
        if str(array.dtype) != spec.get("dtype"):
            found.append(f"dtype {array.dtype}, the layout says {spec.get('dtype')}")
        if list(array.shards or array.chunks) != spec.get("shards") or list(array.chunks) != spec.get("chunks"):
            found.append(f"shards {array.shards} / chunks {array.chunks}, the layout says "
                         f"{spec.get('shards')} / {spec.get('chunks')}")
        if found:
            report.problems.append(f"{name}: " + "; ".join(found))
            continue
        arrays[name] = array
        report.arrays[name] = f"{shape} {array.dtype}"
    return arrays


def _check_coordinates(group: zarr.Group, metadata: StoreMetadata, report: VerifyReport) -> None:
    """The label arrays of the joint and xyz axes hold the layout's names."""
    present = [name for name in COORDINATE_NAMES if (report.path / name / "zarr.json").is_file()]
    if not present:
        report.notes.append("no coordinate arrays (joint, xyz): written before synthgen labelled its axes")
        return
    for name, expected in coordinate_values(metadata.joint_layout).items():
        try:
            values = [str(v) for v in group[name][:]] if name in present else None
        except (KeyError, ValueError, TypeError, OSError) as error:
            values = f"unreadable ({error})"
        if values != expected:
            report.problems.append(f"{name}: coordinate values {values!r} are not the layout's {expected!r}")


def _check_consolidated(path: Path, report: VerifyReport) -> None:
    """The group's consolidated copy of the arrays' metadata agrees with each array's own."""
    try:
        group_json = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError) as error:
        report.problems.append(f"zarr.json unreadable: {error}")
        return
    consolidated = group_json.get("consolidated_metadata") if isinstance(group_json, dict) else None
    if consolidated is None:
        report.notes.append("no consolidated metadata: readers such as xarray open it more slowly")
        return
    entries = consolidated.get("metadata") if isinstance(consolidated, dict) else None
    if not isinstance(entries, dict):
        report.problems.append("zarr.json: its consolidated metadata is malformed")
        return
    for name, entry in sorted(entries.items()):
        if _without_attributes(_read_json(path / name / "zarr.json")) != _without_attributes(entry):
            report.problems.append(f"{name}: its consolidated metadata in zarr.json differs from its own zarr.json")
    on_disk = {entry.name for entry in path.iterdir() if (entry / "zarr.json").is_file()}
    for name in sorted(on_disk - set(entries)):
        report.problems.append(f"{name}: missing from the consolidated metadata in zarr.json")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _without_attributes(document) -> dict | None:
    return {k: v for k, v in document.items() if k != "attributes"} if isinstance(document, dict) else None


# --- 4. checksums --------------------------------------------------------------------------


def _check_checksums(path: Path, attrs: dict[str, Any], arrays: dict[str, zarr.Array],
                     report: VerifyReport, progress: Callable[[str, int, int], None]) -> None:
    checksums = attrs.get(CHECKSUMS_ATTR)
    if checksums is None:
        report.notes.append("no checksums recorded (written before synthgen stored them): values checked only")
        return
    if not isinstance(checksums, dict) or not isinstance(checksums.get("arrays"), dict):
        report.problems.append(f"checksums: malformed attribute {CHECKSUMS_ATTR!r}")
        return
    if checksums.get("attributes") != attributes_digest(attrs):
        report.problems.append("attributes: their sha256 differs from the one recorded at finalize "
                               "(metadata edited or damaged)")
    for name, recorded in (checksums.get("array_metadata") or {}).items():
        if file_sha256(path / name / "zarr.json") != recorded:
            report.problems.append(f"{name}: its zarr.json differs from the one recorded at finalize "
                                   f"(array metadata edited or damaged)")
    total = len(arrays) * report.num_chunks
    for index, (name, array) in enumerate(arrays.items()):
        digests = checksums["arrays"].get(name)
        if not isinstance(digests, list) or len(digests) != report.num_chunks:
            report.problems.append(f"{name}: checksums missing or not one per chunk")
            continue
        for chunk, recorded in enumerate(digests):
            progress("checksums", index * report.num_chunks + chunk, total)
            file = shard_path(path, array, chunk)
            actual = file_sha256(file)
            report.files_hashed += actual is not None
            if actual == recorded:
                continue
            report.damaged_files.add((name, chunk))
            if actual is None:
                report.problems.append(f"{name} chunk {chunk}: file {file} is missing")
            elif recorded is None:
                report.problems.append(f"{name} chunk {chunk}: file {file} should not exist (the chunk was all fill)")
            else:
                report.problems.append(f"{name} chunk {chunk}: sha256 {actual[:12]}… differs from the recorded "
                                       f"{str(recorded)[:12]}… (file changed since it was written)")
    progress("checksums", total, total)


# --- 5. values -----------------------------------------------------------------------------


def _check_values(arrays: dict[str, zarr.Array], chunk_size: int, report: VerifyReport,
                  progress: Callable[[str, int, int], None]) -> None:
    """Decode every chunk once; memory stays at one chunk per array."""
    total = len(arrays) * report.num_chunks
    for index, (name, array) in enumerate(arrays.items()):
        for chunk in range(report.num_chunks):
            progress("values", index * report.num_chunks + chunk, total)
            if (name, chunk) in report.damaged_files and not (shard_path(report.path, array, chunk)).is_file():
                continue  # a missing file reads as fill values: one problem, not two
            start = chunk * chunk_size
            try:
                values = array[start:min(start + chunk_size, report.num_samples)]
            except (RuntimeError, ValueError, OSError) as error:
                report.problems.append(f"{name} chunk {chunk}: cannot be decoded ({' '.join(str(error).split())})")
                continue
            problem = _value_problem(name, values)
            if problem:
                bad, text = problem
                report.problems.append(f"{name} chunk {chunk}: {text} (first at sample {start + bad})")
    progress("values", total, total)


def _value_problem(name: str, values: np.ndarray) -> tuple[int, str] | None:
    """(first bad sample within the chunk, what is wrong), or None."""
    flat = values.reshape(len(values), -1).astype(np.float32)
    finite = np.isfinite(flat)
    if not finite.all():
        rows = ~finite.all(axis=1)
        return int(np.argmax(rows)), f"{int((~finite).sum())} NaN/inf value(s) in {int(rows.sum())} sample(s)"
    if name == "depth":
        outside = (flat < -1) | (flat > 1)
        if outside.any():
            rows = outside.any(axis=1)
            return int(np.argmax(rows)), (f"depth outside [-1, 1] ({flat.min():.4g}..{flat.max():.4g}) in "
                                          f"{int(rows.sum())} sample(s)")
    if name == "center" and (values[:, 2] <= 0).any():
        rows = values[:, 2] <= 0
        return int(np.argmax(rows)), f"crop centre z <= 0 mm (behind the camera) in {int(rows.sum())} sample(s)"
    return None


def require_valid(report: VerifyReport) -> None:
    """Raise StoreVerificationError with the first problem (and how many more) unless the store passed."""
    if report.ok:
        return
    more = len(report.problems) - 1
    raise StoreVerificationError(f"{report.path}: {report.problems[0]}"
                                 + (f" (and {more} more problem(s), listed above)" if more else ""))
