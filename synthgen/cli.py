"""The `synthgen` command line: thin wrappers over the library, one clear line per failure."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

import synthgen
from synthgen.conventions import CAMERAS
from synthgen.errors import InputError, OutputExistsError, SynthgenError, command_line_text
from synthgen.tuning import tune_process

_debug = False


class OneLineErrors(TyperGroup):
    """Turns every failure into `synthgen: error: ...` on stderr and a meaningful exit code."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # noqa: D401 - click API
        global _debug
        _debug = "--debug" in (kwargs.get("args") or (args[0] if args else None) or sys.argv[1:])
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except TyperException as e:
            if type(e).__name__ == "NoArgsIsHelpError":
                typer.echo(e.ctx.get_help(), err=True)
                sys.exit(2)
            _fail(e.format_message(), getattr(e, "exit_code", 2))
        except SynthgenError as e:
            if _debug:
                raise
            _fail(command_line_text(e), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except OSError as e:
            if _debug:
                raise
            _fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e), 1)
        except Exception as e:  # a bug: say so in one line, the traceback is one flag away
            if _debug:
                raise
            _fail(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)", 1)
        sys.exit(rv if isinstance(rv, int) else 0)


def _fail(message: str, code: int) -> None:
    first = " ".join(str(message).split())
    print(f"synthgen: error: {first}", file=sys.stderr)
    sys.exit(code)


app = typer.Typer(
    cls=OneLineErrors,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    help="Synthetic paired hand pose / depth data from a Crossing Nets latent space.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"synthgen {synthgen.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on failure.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """synthgen: make, sample and score synthetic hand depth data."""


def main() -> None:
    """The `synthgen` console script, `python -m synthgen` and `python cli.py`."""
    app(prog_name="synthgen")


Renderer = Enum("Renderer", {name: name for name in ("batched", "pyrender")}, type=str)
# The four benchmarks: each names a camera preset, an export layout and an importer.
Camera = Enum("Camera", {name: name for name in CAMERAS}, type=str)


ChunkSizeOption = Annotated[int, typer.Option(
    "--chunk-size", min=64, max=65536,
    help="Samples per shard file (a multiple of 64): the unit of one worker, of --resume and of a checksum.")]
ResumeOption = Annotated[bool, typer.Option(
    help="Finish an interrupted run of this same command (same options); starts it if it never wrote anything.")]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", help="Run on Dask distributed instead of --workers: local:N worker processes, or a running "
                        "scheduler's address tcp://HOST:8786 (its workers must see --out at the same path).")]


def _check_scheduler(scheduler: str | None, workers: int) -> None:
    """Refuse a bad --scheduler (or one combined with --workers) before anything is written."""
    if scheduler is None:
        return
    from synthgen.data.distributed import parse_scheduler

    parse_scheduler(scheduler)
    if workers > 1:
        raise InputError("--scheduler and --workers exclude each other (local:N starts N worker processes)")


@contextmanager
def _progress(total: int, label: str):
    """Progress of `total` samples (synthgen.progress); yields an `advance(n)` hook for the library."""
    from synthgen.progress import ProgressDisplay

    with ProgressDisplay() as display:
        yield display.counter(label, total)


@contextmanager
def _stage_progress(unit: str = "steps", units: dict[str, str] | None = None):
    """Progress per named stage, counted in `unit` (or `units[stage]`); yields a
    `progress(stage, done, total)` hook for the library."""
    from synthgen.progress import ProgressDisplay

    with ProgressDisplay() as display:
        yield lambda stage, done, total: display.stage(stage, done, total, (units or {}).get(stage, unit))


@app.command()
def render(
    n: Annotated[int, typer.Option("--n", min=1, max=100_000_000, help="Number of samples.")],
    out: Annotated[Path, typer.Option("--out", help="Output Zarr store (a directory).")],
    seed: Annotated[int, typer.Option(min=0, help="Seed: the store is a pure function of it.")] = 0,
    camera: Annotated[Camera, typer.Option(help="Sensor intrinsics preset.")] = Camera.hands2017,
    scene: Annotated[str, typer.Option(
        help="What the crops hold: 'v2' (forearm, sleeve, objects, background, shape variation, the "
             "structured-light sensor, centre-of-mass crops), 'clean' (the bare hand on joint-box crops) or a "
             "scene file (TOML, docs/baseline.md).")] = "v2",
    sensor: Annotated[str | None, typer.Option(
        help="Replace the scene's sensor model: none, structured-light, sr305, tof, active-stereo.")] = None,
    noise: Annotated[bool, typer.Option("--noise/--no-noise", help="Apply the generic sensor-noise model "
                                        "(replaces the scene's sensor).")] = False,
    renderer: Annotated[Renderer, typer.Option(
        help="'batched': many hands per OpenGL draw (fast); 'pyrender': one pyrender scene per hand, the "
             "reference the batched renderer is tested against (same depth maps, ~9x slower).")] = "batched",
    workers: Annotated[int, typer.Option(min=1, max=64, help="Render processes.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store (only once the new one is complete).")] = False,
    chunk_size: ChunkSizeOption = 1024,
    resume: ResumeOption = False,
    scheduler: SchedulerOption = None,
) -> None:
    """Render the mesh-hand baseline: random poses → skinned mesh in its scene → 128² normalised crops."""
    tune_process()
    from synthgen.data.distributed import produce_on_dask
    from synthgen.data.produce import produce
    from synthgen.data.schema import StoreMetadata
    from synthgen.hand.baseline import BaselineRenderer, store_convention
    from synthgen.hand.noise import SensorNoise
    from synthgen.hand.scene import load_scene

    scene_config = load_scene(scene, sensor)
    if noise and sensor is not None:
        raise InputError("--noise and --sensor exclude each other")
    source = BaselineRenderer(seed=seed, camera_name=camera.value, scene=scene_config,
                              noise=SensorNoise() if noise else None, renderer=renderer.value)
    metadata = StoreMetadata(producer="render", seed=seed, camera=camera.value, parameters=source.params(),
                             input_convention=store_convention(scene_config))
    _check_scheduler(scheduler, workers)
    writer = _store_writer(out, n, metadata, chunk_size=chunk_size, overwrite=overwrite, resume=resume)
    if writer is None:
        return
    todo = writer.samples_missing()
    start = time.perf_counter()
    with _progress(todo, "render") as advance:
        if scheduler is None:
            produce(writer, source, workers=workers, on_progress=advance)
        else:
            produce_on_dask(writer, source, scheduler, on_progress=advance)
    elapsed = time.perf_counter() - start
    ran_on = f"{workers} worker(s)" if scheduler is None else f"Dask {scheduler}"
    typer.echo(f"wrote {todo} samples to {out} in {elapsed:.1f} s ({todo / elapsed:,.0f} samples/s, {ran_on})")


def _store_writer(out: Path, n: int, metadata, *, chunk_size: int, overwrite: bool, resume: bool,
                  with_latent: bool = False):
    """A writer for a new store, or with --resume for the interrupted run's (None: already done)."""
    from synthgen.data.writer import StoreWriter

    if chunk_size % 64:
        raise InputError(f"--chunk-size must be a multiple of 64, got {chunk_size}")
    if not resume:
        return StoreWriter.create(out, n, metadata, with_latent=with_latent, overwrite=overwrite, chunk_size=chunk_size)
    writer = StoreWriter.resume(out, n, metadata, with_latent=with_latent, overwrite=overwrite, chunk_size=chunk_size,
                                ignore_parameters=("model",))  # the model is named by its checksum
    if writer is None:
        typer.echo(f"{out} is already complete; nothing to resume")
    return writer


@app.command()
def info(store: Annotated[Path, typer.Argument(help="A synthgen Zarr store.")]) -> None:
    """Counts, shapes, metadata and a few statistics of a store."""
    from synthgen.data.reader import describe, format_description, open_store

    typer.echo(format_description(describe(open_store(store, allow_incomplete=True))))


@app.command()
def verify(store: Annotated[Path, typer.Argument(help="A synthgen Zarr store.")]) -> None:
    """Check a store end to end: schema, metadata, shapes and counts, checksums, every value."""
    from synthgen.data.verify import MAX_LISTED_PROBLEMS, require_valid, verify_store

    with _stage_progress("chunks") as progress:
        report = verify_store(store, progress=progress)
    for note in report.notes:
        typer.echo(f"note: {note}")
    for problem in report.problems[:MAX_LISTED_PROBLEMS]:
        typer.echo(f"problem: {problem}")
    if len(report.problems) > MAX_LISTED_PROBLEMS:
        typer.echo(f"... and {len(report.problems) - MAX_LISTED_PROBLEMS} more")
    require_valid(report)
    typer.echo(report.summary())


@app.command()
def preview(
    store: Annotated[Path, typer.Argument(help="A synthgen Zarr store.")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    n: Annotated[int, typer.Option("--n", min=1, max=256, help="Number of crops.")] = 16,
    columns: Annotated[int, typer.Option(min=1, max=32)] = 4,
    skeleton: Annotated[bool, typer.Option("--skeleton/--no-skeleton", help="Draw the joints.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing PNG.")] = False,
) -> None:
    """A PNG grid of the first N crops (colour-mapped depth, optional skeleton overlay)."""
    import imageio.v3 as iio

    from synthgen.data.preview import crop_panel, grid
    from synthgen.data.reader import open_store
    from synthgen.outputs import atomic_output, check_output_file

    if out.suffix.lower() != ".png":
        raise InputError(f"--out must end in .png, got {out.name}")
    check_output_file(out, overwrite)
    data = open_store(store)
    batch = data.read(slice(0, min(n, len(data))))
    cube = data.metadata.cube_mm
    panels = [crop_panel(batch.depth[i], batch.pose[i] if skeleton else None, batch.center[i], cube,
                         joint_layout=data.joint_layout) for i in range(len(batch))]
    with atomic_output(out, overwrite) as partial:
        iio.imwrite(partial, grid(panels, columns))
    typer.echo(f"wrote {out} ({len(panels)} crops)")


class ExportFormat(str, Enum):
    png16 = "png16"
    native = "native"
    npz = "npz"


@app.command()
def export(
    store: Annotated[Path, typer.Argument(help="A synthgen Zarr store.")],
    file_format: Annotated[ExportFormat, typer.Option(
        "--format", help="png16: 16-bit PNG, mm; native: the dataset's own depth files (NYU RGB PNG, MSRA .bin); "
                         "npz: one samples.npz.")],
    layout: Annotated[Camera, typer.Option(help="Dataset whose files, camera and joint order to write.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory: the dataset's root.")],
    crop: Annotated[bool, typer.Option("--crop/--full-frame", help="Write the 128² crops (with per-frame crop "
                                                                   "cameras) instead of full sensor frames.")] = False,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Export only the first N samples.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output (only once the new one is complete).")
                         ] = False,
) -> None:
    """Write a store as NYU / ICVL / MSRA / HANDS2017 files (depth, intrinsics, labels) for their loaders."""
    from synthgen.data.export import export_store
    from synthgen.data.reader import open_store

    size = len(open_store(store))
    total = size if n is None else min(n, size)
    start = time.perf_counter()
    with _progress(total, "export") as advance:
        manifest = export_store(store, out, layout=layout.value, fmt=file_format.value, crop=crop, limit=n,
                                overwrite=overwrite, on_progress=advance)
    outside = manifest["samples_with_joints_outside_image"]
    labels = ", ".join(manifest["labels"])
    typer.echo(f"exported {manifest['samples']} samples to {out} in {time.perf_counter() - start:.1f} s "
               f"({layout.value}, {file_format.value}, {manifest['frame']} frames; labels {labels})"
               + (f"; {outside} sample(s) have joints outside the image" if outside else ""))


ModelOption = Annotated[Path | None, typer.Option("--model", help="Model directory (default: the shipped model).")]


@app.command()
def train(
    recipe: Annotated[Path, typer.Option("--recipe", help="Training recipe (TOML), see recipes/.")],
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint in the recipe's out_dir.")] = False,
    out_dir: Annotated[Path | None, typer.Option(help="Override the recipe's out_dir.")] = None,
) -> None:
    """Train Crossing Nets on one or more stores: VAE → GAN pre-training → joint training → eval."""
    from synthgen.data.loading import load_arrays, load_labels
    from synthgen.models.config import Recipe
    from synthgen.models.train import TrainingData
    from synthgen.models.train import train as run_training

    if not recipe.is_file():
        raise InputError(f"recipe not found: {recipe}")
    try:
        r = Recipe.from_toml(recipe)
    except (ValueError, UnicodeDecodeError) as error:  # tomllib.TOMLDecodeError is a ValueError
        raise InputError(f"{recipe}: not a valid recipe ({' '.join(str(error).split())})") from None
    stores = [Path(s) for s in r.data.stores]
    if not stores:
        raise InputError(f"{recipe}: data.stores names no store to train on")
    depth, pose, center, digest = (load_arrays if r.data.in_memory else load_labels)(stores)
    from synthgen.data.reader import open_store

    first = open_store(stores[0])
    data = TrainingData(depth=depth, pose=pose, center=center, data_digest=digest, joint_layout=first.joint_layout,
                        input_convention=first.input_convention)
    with _stage_progress() as stage:
        def hook(event: dict) -> None:
            if event["stage"] != "eval":
                stage(event["stage"], event["stage_step"], event["stage_steps"])

        model = run_training(r, data, out_dir, progress=hook, resume=resume)
    results = json.loads((Path(out_dir or r.out_dir) / "eval.json").read_text())
    typer.echo(f"trained {r.name}: held-out mean joint error {results['pose']['mean_joint_error_mm']:.2f} mm, "
               f"G(Ali(Enc(pose))) IoU {results['generator']['iou_mean']:.3f}; model {model.checksum[:12]} "
               f"in {Path(out_dir or r.out_dir) / 'model'}")


@app.command()
def estimate(
    store: Annotated[Path, typer.Argument(help="A store of depth crops (with their crop centres).")],
    model: ModelOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the poses (N, J, 3) mm as .npy, in the model's "
                                                              "joint layout.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics against the store's poses as JSON.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=65536)] = 256,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out file.")] = False,
) -> None:
    """Depth → pose through the model's posterior path (its inference form: within 5e-3 mm of the exact one).

    The store's crops are read in the model's input convention: centre-relative crops are
    front-aligned for a converted release model; a mismatch that cannot be converted is refused
    and one that can only be approximated (crop geometry, centring rule) is warned about."""
    import numpy as np

    from synthgen.data.reader import open_store
    from synthgen.models.estimate import convention_notes, estimate_store, metrics_against_store
    from synthgen.outputs import atomic_output, check_output_file
    from synthgen.sampling import load_model

    if out is not None and out.suffix != ".npy":
        raise InputError(f"--out must end in .npy, got {out.name}")
    if out is not None:
        check_output_file(out, overwrite)
    net = load_model(model)
    data = open_store(store)
    if as_json and data.joint_layout != net.joint_layout:
        raise InputError(f"--json compares with the store's poses, which are {data.joint_layout} joints; the model "
                         f"estimates {net.joint_layout} joints")
    for note in convention_notes(data, net):
        typer.echo(f"warning: {note}", err=True)
    start = time.perf_counter()
    with _progress(len(data), "estimate") as advance:
        poses = estimate_store(data, net, batch_size, on_progress=advance)
    elapsed = time.perf_counter() - start
    if out is not None:
        with atomic_output(out, overwrite) as partial:
            np.save(partial, poses)
    if as_json:
        metrics = metrics_against_store(poses, data, net.joint_layout)
        metrics.update(num_samples=len(data), frames_per_s=len(data) / elapsed, model_checksum=net.checksum)
        typer.echo(json.dumps(metrics, indent=2))
    else:
        typer.echo(f"estimated {len(data)} poses in {elapsed:.2f} s ({len(data) / elapsed:,.0f} frames/s)"
                   + (f" -> {out}" if out else ""))


# --- sampling from the model (synthgen.sampling) -----------------------------------------------


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class Precision(str, Enum):
    fp32 = "fp32"
    fp32_fast = "fp32-fast"
    bf16 = "bf16"
    auto = "auto"


class PoseLayout(str, Enum):
    hands2017 = "hands2017"
    msra = "msra"
    nyu = "nyu"
    icvl = "icvl"
    nyu36 = "nyu36"


class PathMode(str, Enum):
    linear = "linear"
    slerp = "slerp"


class RootRule(str, Enum):
    auto = "auto"
    centred = "centred"
    gaussian = "gaussian"


RootOption = Annotated[RootRule, typer.Option(
    "--root", help="Root offset: centred = the one that centres the decoded hand's joint box in its crop, as in "
                   "synthgen's training crops; gaussian = drawn from the model's root-offset Gaussian, independent "
                   "of the pose; auto (default) = centred for models trained on joint-box crops, else gaussian.")]


class LatentPriorKind(str, Enum):
    standard = "standard"
    gaussian = "gaussian"
    fitted = "fitted"


SamplingModel = Annotated[Path | None, typer.Option(
    "--model", help="Model directory (config.json + model.safetensors); default: the shipped model (synthgen/assets/models/default).")]
DeviceOption = Annotated[Device, typer.Option(help="Where the networks run (auto: cuda when available).")]
PrecisionOption = Annotated[Precision, typer.Option(
    help="Depth generator path. auto: the fastest one that stays within 1 mm of fp32 (mean and 99th percentile "
         "over hand pixels, measured on 256 prior samples at start): bf16 where the CPU has it, else fp32-fast; "
         "fp32: the exact networks; fp32-fast / bf16: the folded rewrite (docs/performance.md), refused if outside "
         "that tolerance.")]
BatchOption = Annotated[int, typer.Option(
    "--batch-size", min=1, max=65536,
    help="Samples per pipeline step (progress granularity). Networks always run on fixed 256-sample blocks, "
         "so the output does not depend on it.")]
VideoOption = Annotated[Path | None, typer.Option("--video", help="Write a video: out.mp4 or out.gif.")]
FpsOption = Annotated[float, typer.Option(min=1.0, max=120.0, help="Video frame rate.")]
PriorOption = Annotated[LatentPriorKind, typer.Option(
    help="Pose-latent prior: fitted (default) = the model's prior fitted to the training poses' latents (its "
         "normalising flow where it has one, else the Gaussian); gaussian = the Gaussian of those latents; "
         "standard = the VAE prior N(0, I).")]


def _stored_bytes(path: Path) -> int:
    return sum(entry.stat().st_size for entry in Path(path).rglob("*") if entry.is_file())


def _summary(n: int, what: str, out: Path, elapsed: float) -> str:
    return (f"wrote {n} {what} to {out} in {elapsed:.1f} s ({n / max(elapsed, 1e-9):,.0f} samples/s, "
            f"{_stored_bytes(out) / 1e6:,.1f} MB on disk)")


def _refuse_existing(out: Path | None, overwrite: bool) -> None:
    if out is not None and out.exists() and not overwrite:
        raise OutputExistsError(out)


def _model_params(model: Path | None) -> str:
    from synthgen.sampling import DEFAULT_MODEL_DIR

    return str((model or DEFAULT_MODEL_DIR).resolve())


@app.command()
def sample(
    n: Annotated[int, typer.Option("--n", min=1, max=100_000_000, help="Number of samples.")],
    out: Annotated[Path, typer.Option("--out", help="Output Zarr store (a directory).")],
    model: SamplingModel = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed: with the model, the store is a pure function of it.")] = 0,
    batch_size: BatchOption = 1024,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.auto,
    truncation: Annotated[float | None, typer.Option(
        help="Truncate every prior dimension to [-T, T] standard deviations (fewer, more typical hands).")] = None,
    prior: PriorOption = LatentPriorKind.fitted,
    noise: Annotated[bool, typer.Option("--noise/--no-noise", help="Apply the sensor-noise model to the depth.")] = False,
    camera: Annotated[Camera, typer.Option(help="Sensor whose frame the crops are placed in.")] = Camera.hands2017,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes (CPU only).")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store (only once the new one is complete).")] = False,
    resume: ResumeOption = False,
    chunk_size: ChunkSizeOption = 1024,
    scheduler: SchedulerOption = None,
    root: RootOption = RootRule.auto,
) -> None:
    """Sample the prior: latents → pose (VAE decoder) + depth (generator) → a store with latents."""
    tune_process()
    from synthgen.data.schema import StoreMetadata
    from synthgen.hand.noise import SensorNoise
    from synthgen.sampling import CropCenters, LatentPrior, PriorSource, load_model, resolve_device, write_store

    latent_prior = LatentPrior(truncation, prior.value, root.value)
    dev = resolve_device(device.value)
    if workers > 1 and dev.type != "cpu":
        raise InputError("--workers > 1 runs CPU processes; use --workers 1 with --device cuda")
    _check_scheduler(scheduler, workers)
    if scheduler is not None and dev.type != "cpu":
        raise InputError("--scheduler runs CPU worker processes; use it with --device cpu")
    if not resume:
        _refuse_existing(out, overwrite)
    net = load_model(model)
    source = PriorSource(net, seed=seed, prior=latent_prior, centers=CropCenters(camera.value),
                         noise=SensorNoise() if noise else None, device=dev.type, precision=precision.value,
                         batch_size=batch_size)
    error = source.pipeline.generator_error  # resolves --precision (fast-path check) before anything is written
    params = {**source.params(), "model": _model_params(model), "generator_error_mm": error}
    metadata = StoreMetadata(producer="sample", seed=seed, camera=camera.value, model_checksum=net.checksum,
                             parameters=params, joint_layout=net.joint_layout, input_convention=net.input_convention)
    writer = _store_writer(out, n, metadata, chunk_size=chunk_size, overwrite=overwrite, resume=resume,
                           with_latent=True)
    if writer is None:
        return
    source.chunk_size = writer.chunk_size
    todo = writer.samples_missing()
    start = time.perf_counter()
    with _progress(todo, "sample") as advance:
        if scheduler is None:
            path = write_store(writer, source, workers=workers, on_progress=advance)
        else:
            from synthgen.data.distributed import produce_on_dask

            path = produce_on_dask(writer, source, scheduler, on_progress=advance)
    typer.echo(_summary(todo, "samples", path, time.perf_counter() - start))


@app.command()
def generate(
    poses: Annotated[Path, typer.Option("--poses", help="Poses in mm: .npy (N, 21, 3), .csv (N rows of 63) or a store.")],
    out: Annotated[Path, typer.Option("--out", help="Output Zarr store (a directory).")],
    layout: Annotated[PoseLayout, typer.Option(help="Joint order of the file (a permutation of the 21 joints, or "
                                                    "the model's own layout).")] = PoseLayout.hands2017,
    model: SamplingModel = None,
    camera: Annotated[Camera, typer.Option(help="Sensor the poses' camera coordinates belong to.")] = Camera.hands2017,
    noise: Annotated[bool, typer.Option("--noise/--no-noise", help="Apply the sensor-noise model to the depth.")] = False,
    seed: Annotated[int, typer.Option(min=0, help="Seeds the sensor noise.")] = 0,
    batch_size: BatchOption = 1024,
    device: DeviceOption = Device.cpu,
    precision: PrecisionOption = Precision.auto,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store (only once the new one is complete).")] = False,
) -> None:
    """Pose-conditioned generation: given poses → VAE encoder → generator → depth, one crop per pose."""
    tune_process()
    from synthgen.data.schema import StoreMetadata
    from synthgen.data.writer import StoreWriter
    from synthgen.hand.noise import SensorNoise
    from synthgen.sampling import PoseSource, load_model, load_poses, resolve_device, write_store

    net = load_model(model)
    joints = load_poses(poses, layout.value, net.joint_layout)
    dev = resolve_device(device.value)
    _refuse_existing(out, overwrite)
    source = PoseSource(net, joints=joints, seed=seed, noise=SensorNoise() if noise else None, device=dev.type,
                        precision=precision.value, batch_size=batch_size)
    error = source.pipeline.generator_error
    params = {**source.params(), "poses": str(poses.resolve()), "layout": layout.value, "model": _model_params(model),
              "generator_error_mm": error}
    metadata = StoreMetadata(producer="generate", seed=seed if noise else None, camera=camera.value,
                             model_checksum=net.checksum, parameters=params, joint_layout=net.joint_layout,
                             input_convention=net.input_convention)
    writer = StoreWriter.create(out, len(joints), metadata, with_latent=True, overwrite=overwrite)
    source.chunk_size = writer.chunk_size
    start = time.perf_counter()
    with _progress(len(joints), "generate") as advance:
        path = write_store(writer, source, on_progress=advance)
    typer.echo(_summary(len(joints), "samples", path, time.perf_counter() - start))


def _write_path(kind: str, codes, centers, net, pipeline, *, out: Path | None, video: Path | None, fps: float,
                overwrite: bool, camera: str, seed: int | None, params: dict) -> None:
    """Shared tail of `interpolate` and `walk`: frames → store and/or video, then one summary line."""
    from synthgen.sampling.pipeline import write_path

    start = time.perf_counter()
    with _progress(len(codes), kind) as advance:
        result = write_path(kind, codes, centers, pipeline, out=out, video=video, fps=fps, overwrite=overwrite,
                            camera=camera, seed=seed, params=params, on_progress=advance)
    elapsed = time.perf_counter() - start
    targets = " and ".join(str(p) for p in (result["store"], result["video"]) if p is not None)
    if video is not None and not result["mesh"]:
        why = ("synthgen.hand.ik is not available" if net.joint_layout == "hands2017"
               else f"the hand model has no {net.joint_layout} joints")
        typer.echo(f"synthgen: note: the video's mesh panel is empty: {why}", err=True)
    typer.echo(f"wrote {len(codes)} frames ({params['mode']}) to {targets} in {elapsed:.1f} s")


def _path_pipeline(out: Path | None, video: Path | None, overwrite: bool, steps: int, model: Path | None,
                   device: Device):
    """Shared start of `interpolate` and `walk`: refuse bad outputs, then the model and its exact pipeline."""
    from synthgen.sampling import SamplingPipeline, load_model, resolve_device

    tune_process()
    _check_path_outputs(out, video, overwrite, steps)
    dev = resolve_device(device.value)
    net = load_model(model)
    return net, SamplingPipeline(net, device=dev)


def _check_path_outputs(out: Path | None, video: Path | None, overwrite: bool, frames: int) -> None:
    from synthgen.sampling.video import check_video_path

    if out is None and video is None:
        raise InputError("nothing to write: give --out STORE and/or --video FILE")
    if video is not None:
        check_video_path(video, overwrite, frames)
    _refuse_existing(out, overwrite)


@app.command()
def interpolate(
    from_: Annotated[str, typer.Option("--from", help="Start: pose.npy|.csv (one pose), store.zarr:INDEX or seed:N.")],
    to: Annotated[str, typer.Option("--to", help="End, as --from.")],
    steps: Annotated[int, typer.Option("--steps", min=2, max=100000, help="Frames, endpoints included.")],
    mode: Annotated[PathMode, typer.Option(help="Pose-latent path: straight line or great circle.")] = PathMode.slerp,
    out: Annotated[Path | None, typer.Option("--out", help="Write the frames as a store.")] = None,
    video: VideoOption = None,
    fps: FpsOption = 24.0,
    layout: Annotated[PoseLayout, typer.Option(help="Joint order of pose-file endpoints.")] = PoseLayout.hands2017,
    model: SamplingModel = None,
    camera: Annotated[Camera, typer.Option(help="Sensor recorded in the store.")] = Camera.hands2017,
    device: DeviceOption = Device.cpu,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Interpolate between two poses / samples in latent space (linear or slerp) → store and/or video."""
    from synthgen.sampling import interpolate_codes, resolve_endpoint
    from synthgen.sampling.interpolate import interpolate_centers

    net, pipeline = _path_pipeline(out, video, overwrite, steps, model, device)
    a = resolve_endpoint(from_, pipeline, layout=layout.value)
    b = resolve_endpoint(to, pipeline, layout=layout.value)
    codes = interpolate_codes(a.code, b.code, steps, mode.value)
    centers = interpolate_centers(a.center, b.center, steps)
    params = {"mode": mode.value, "steps": steps, "from": a.to_dict(), "to": b.to_dict(), "model": _model_params(model)}
    _write_path("interpolate", codes, centers, net, pipeline, out=out, video=video, fps=fps, overwrite=overwrite,
                camera=camera.value, seed=None, params=params)


@app.command()
def walk(
    steps: Annotated[int, typer.Option("--steps", min=1, max=1000000, help="Frames.")],
    step_size: Annotated[float, typer.Option("--step-size", help="RMS latent distance per frame (prior std units; "
                                                                 "the prior's radius is ~4.8).")] = 0.15,
    seed: Annotated[int, typer.Option(min=0, help="Seeds the start point and the walk's noise.")] = 0,
    prior: PriorOption = LatentPriorKind.fitted,
    out: Annotated[Path | None, typer.Option("--out", help="Write the frames as a store.")] = None,
    video: VideoOption = None,
    fps: FpsOption = 24.0,
    model: SamplingModel = None,
    camera: Annotated[Camera, typer.Option(help="Sensor the walk's fixed crop centre is placed in.")] = Camera.hands2017,
    device: DeviceOption = Device.cpu,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    root: RootOption = RootRule.auto,
) -> None:
    """A smooth random walk through the prior (underdamped Langevin) → store and/or video."""
    from synthgen.sampling.walk import walk_path

    net, pipeline = _path_pipeline(out, video, overwrite, steps, model, device)
    path = walk_path(net, steps, step_size, seed, prior=prior.value, root=root.value, camera=camera.value)
    codes, centers, params = path.codes, path.centers, {**path.params, "model": _model_params(model)}
    _write_path("walk", codes, centers, net, pipeline, out=out, video=video, fps=fps, overwrite=overwrite,
                camera=camera.value, seed=seed, params=params)



# --- realism (synthgen.realism) -----------------------------------------------------------------


@app.command()
def score(
    store: Annotated[Path, typer.Argument(help="The store to score (e.g. from `synthgen sample`).")],
    reference: Annotated[Path | None, typer.Option(
        help="Reference store; default: mesh-baseline crops rendered here from --reference-seed.")] = None,
    train: Annotated[Path | None, typer.Option(
        help="The model's training store: enables the memorisation check.")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Report directory (score.json, report.html, figures); default: STORE with suffix .score.")] = None,
    n: Annotated[int, typer.Option(min=2, help="Samples scored (a seeded random subset of a larger store).")] = 10_000,
    reference_n: Annotated[int | None, typer.Option(min=2, help="Reference crops; default: as many as --n.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of subsets, KID subsets and bootstrap.")] = 0,
    calibration_n: Annotated[int, typer.Option(
        min=2, help="Samples per set of the calibration scale the verdict is read on (at most --n).")] = 1000,
    reference_seed: Annotated[int, typer.Option(help="Seed of the rendered reference.")] = 7919,
    reference_scene: Annotated[str, typer.Option(
        help="Scene of the rendered reference: 'clean' (the bare hand), 'v2' or a scene file (docs/baseline.md).")
    ] = "clean",
    feature_net: Annotated[Path | None, typer.Option(
        help="DepthNet directory; default: the shipped one (scores are comparable only within one version).")] = None,
    allow_incomplete: Annotated[bool, typer.Option(help="Score the written chunks of an unfinished store.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report directory.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Also print score.json to stdout.")] = False,
) -> None:
    """Score realism against the mesh-rendered baseline: a verdict on a calibration scale, pair IoU / depth /
    pose consistency, FD, KID, precision / recall, coverage, memorisation → score.json + report.html."""
    tune_process()
    from synthgen.hand.scene import load_scene
    from synthgen.models import CheckpointError
    from synthgen.realism import ScoreSettings, write_report
    from synthgen.realism import score as score_store
    from synthgen.realism.report import check_output_dir
    from synthgen.realism.score import STAGE_UNITS

    out = out if out is not None else store.with_suffix(".score")
    check_output_dir(out, overwrite)
    load_scene(reference_scene)  # a bad scene is refused before anything is read
    settings = ScoreSettings(n=n, reference_n=reference_n, seed=seed, reference_seed=reference_seed,
                             reference_scene=reference_scene, calibration_n=calibration_n)
    start = time.perf_counter()
    try:
        with _stage_progress("samples", STAGE_UNITS) as hook:
            result = score_store(store, reference=reference, train=train, settings=settings, feature_net=feature_net,
                                 allow_incomplete=allow_incomplete, progress=hook)
    except CheckpointError as e:
        raise InputError(f"--feature-net: {e}") from None
    write_report(result, out, overwrite=overwrite)
    s = result.scores
    if as_json:
        typer.echo(json.dumps(s, indent=2))
    pair, st = s["pair"], s["set"]
    typer.echo(f"scored {s['store']['num_scored']} samples in {time.perf_counter() - start:.0f} s: "
               f"IoU {pair['iou_mean']:.3f}, depth MAE {pair['depth_mae_mm'] or float('nan'):.1f} mm, "
               f"pose consistency {pair['pose_consistency_mm']:.1f} mm (floor {pair['estimator_floor_mm']:.1f}), "
               f"FD {st['fd']:.3g}, KID {st['kid']:.3g}, precision {st['precision']:.2f}, recall {st['recall']:.2f}, "
               f"pose coverage {'n/a' if st['coverage'] is None else format(st['coverage'], '.2f')}, pose precision "
               f"{'n/a' if st['pose_precision'] is None else format(st['pose_precision'], '.2f')}, IK residual "
               f"{pair['ik_residual_median_mm']:.1f} mm -> {out}/report.html",
               err=as_json)
    if s["verdict"]:
        typer.echo(f"verdict: {s['verdict']['text']}", err=as_json)
    for warning in s["warnings"]:
        typer.echo(f"synthgen: warning: {warning}", err=True)


# --- the authors' release and real benchmarks ----------------------------------------------------


convert_app = typer.Typer(no_args_is_help=True, help="Convert models made elsewhere into synthgen checkpoints.")
app.add_typer(convert_app, name="convert")


class Centering(str, Enum):
    joint_box = "joint-box"
    center_of_mass = "center-of-mass"
    capped_center_of_mass = "capped-center-of-mass"


class ReleaseDataset(str, Enum):
    icvl = "icvl"
    msra = "msra"
    nyu = "nyu"


@convert_app.command("crossingnet")
def convert_crossingnet(
    weights: Annotated[Path, typer.Option("--weights", help="Directory with the release's *_params.npz / *_align.npz.")],
    dataset: Annotated[ReleaseDataset, typer.Option(help="Dataset the weights were trained on (joint layout, root).")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write (config.json + model.safetensors).")],
    prefix: Annotated[str | None, typer.Option(help="File-name prefix of one parameter set, e.g. '100_', when "
                                                       "the directory holds several.")] = None,
    stats: Annotated[Path | None, typer.Option(help="A store of the same dataset (synthgen import): fit the "
                                                      "latent and root-offset Gaussians `sample` draws from.")] = None,
    poses: Annotated[Path | None, typer.Option(
        help="A pose label file in the dataset's own format (ICVL labels / test_seq_*.txt, NYU joint_data.mat, "
             "MSRA joint.txt): fit the latent prior `sample` draws from to these poses. Without it (or --stats) "
             "the prior is recovered from the release's alignment layer.")] = None,
    root_joint: Annotated[int | None, typer.Option(help="Root joint index in the release's order (default: its "
                                                           "centerPtIdx: ICVL 0, MSRA 0, NYU 32).", min=0)] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model directory.")] = False,
) -> None:
    """Authors' Lasagne Crossing Nets weights → a synthgen checkpoint for sample/walk/interpolate/estimate."""
    from synthgen.data.formats.labels import read_pose_labels
    from synthgen.models.lasagne import convert_crossing_nets, fit_statistics, save_converted

    _refuse_existing(out, overwrite)
    if stats is not None and poses is not None:
        raise InputError("pass --stats or --poses, not both (both set the latent prior)")
    labels = None if poses is None else read_pose_labels(poses, dataset.value)
    net = convert_crossing_nets(weights, dataset.value, prefix=prefix, root_joint=root_joint, poses=labels,
                                poses_source=None if poses is None else poses.name)
    if stats is not None:
        fit_statistics(net, stats)
    save_converted(net, out, overwrite=overwrite)
    typer.echo(f"converted {dataset.value} weights from {weights} -> {out} ({net.joint_layout} layout, "
               f"{net.config.vae.num_joints} joints, model {net.checksum[:12]}; reads "
               f"{net.input_convention.describe()}; {net.provenance['statistics']})")


@app.command("import")
def import_dataset(
    dataset: Annotated[Camera, typer.Argument(help="Benchmark: nyu, icvl, msra or hands2017.")],
    root: Annotated[Path, typer.Argument(help="The dataset's folder, as distributed (see docs/real-data.md).")],
    out: Annotated[Path, typer.Option("--out", help="Output Zarr store (a directory).")],
    split: Annotated[str | None, typer.Option(help="train or test (NYU, ICVL; HANDS2017 train only). MSRA15 has "
                                                      "none: point ROOT at the dataset or one subject.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Import only the first N frames.")] = None,
    centers: Annotated[Path | None, typer.Option(
        "--centers", help="Per-frame hand centres, one per frame of the split: the Crossing Nets release's "
                          "center_uvd_*.mat, A2J's centre_pixel .mat or V2V-PoseNet's center_*_refined.txt.")] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="Cut, centre and normalise the crops as this model reads them (its input convention); "
                        "default: the shipped default model's.")] = None,
    centering: Annotated[Centering | None, typer.Option(
        help="Centre the crops by this rule instead of the model's: joint-box (the labelled joints' box) or "
             "center-of-mass (DeepPrior's refinement on the depth pixels).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store (only once the new one is complete).")] = False,
) -> None:
    """A real benchmark's depth frames + labels → hand-centred 128² crops in a store (`estimate`, `train`, `score`)."""
    from dataclasses import replace

    from synthgen.conventions import SYNTHGEN_INPUT
    from synthgen.data.formats import import_frames, open_dataset
    from synthgen.data.formats.centers import read_centers
    from synthgen.data.schema import file_sha256
    from synthgen.models.checkpoint import read_input_convention
    from synthgen.sampling.pipeline import DEFAULT_MODEL_DIR

    _refuse_existing(out, overwrite)
    if model is None and not (DEFAULT_MODEL_DIR / "config.json").is_file():
        convention = SYNTHGEN_INPUT  # the shipped model's, without its files
    else:
        convention = read_input_convention(model or DEFAULT_MODEL_DIR)
    if centering is not None:
        if centers is not None:
            raise InputError("pass --centers or --centering, not both")
        convention = replace(convention, centering=centering.value)
    frames = open_dataset(dataset.value, root, split, limit)
    given = None if centers is None else read_centers(centers, CAMERAS[frames.camera], frames.available)
    source = None if centers is None else {"file": centers.name, "sha256": file_sha256(centers)}
    start = time.perf_counter()
    with _progress(len(frames), f"import {dataset.value}") as advance:
        path = import_frames(frames, out, overwrite=overwrite, convention=convention, centers=given,
                             centers_source=source, on_progress=advance)
    typer.echo(_summary(len(frames), f"{dataset.value} frames ({frames.joint_layout} joints, "
                                     f"{convention.depth} depth, {convention.crop} crop)", path,
                        time.perf_counter() - start))

