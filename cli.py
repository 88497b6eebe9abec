"""The `synthgen` command line: thin wrappers over the library, one clear line per failure."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from synthgen.errors import InputError, SynthgenError

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
            _fail(str(e), e.exit_code)
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


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on failure.")] = False) -> None:
    """synthgen: make, sample and score synthetic hand depth data."""


class Camera(str, Enum):
    nyu = "nyu"
    icvl = "icvl"
    msra = "msra"
    hands2017 = "hands2017"


@contextmanager
def _progress(total: int, label: str):
    """A rich progress bar with samples/s and ETA; yields an `advance(n)` hook for the library."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]} samples/s"), TimeElapsedColumn(), TimeRemainingColumn())
    start = time.perf_counter()
    with Progress(*columns, transient=False, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task(label, total=total, rate="-")

        def advance(n: int) -> None:
            done = bar.tasks[0].completed + n
            bar.update(task, advance=n, rate=f"{done / max(time.perf_counter() - start, 1e-9):,.0f}")

        yield advance


@app.command()
def render(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of samples.")],
    out: Annotated[Path, typer.Option("--out", help="Output Zarr store (a directory).")],
    seed: Annotated[int, typer.Option(min=0, help="Seed: the store is a pure function of it.")] = 0,
    camera: Annotated[Camera, typer.Option(help="Sensor intrinsics preset.")] = Camera.hands2017,
    noise: Annotated[bool, typer.Option("--noise/--no-noise", help="Apply the sensor-noise model.")] = False,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Render processes.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store (only once the new one is complete).")] = False,
) -> None:
    """Render the mesh-hand baseline: random poses → skinned mesh → 128² normalised crops."""
    from synthgen.data.produce import produce
    from synthgen.data.schema import StoreMetadata
    from synthgen.data.writer import StoreWriter
    from synthgen.hand.baseline import BaselineRenderer
    from synthgen.hand.noise import SensorNoise

    source = BaselineRenderer(seed=seed, camera_name=camera.value, noise=SensorNoise() if noise else None)
    metadata = StoreMetadata(producer="render", seed=seed, camera=camera.value, parameters=source.params())
    writer = StoreWriter.create(out, n, metadata, overwrite=overwrite)
    start = time.perf_counter()
    with _progress(n, "render") as advance:
        produce(writer, source, workers=workers, on_progress=advance)
    elapsed = time.perf_counter() - start
    typer.echo(f"wrote {n} samples to {out} in {elapsed:.1f} s ({n / elapsed:,.0f} samples/s, {workers} worker(s))")


@app.command()
def info(store: Annotated[Path, typer.Argument(help="A synthgen Zarr store.")]) -> None:
    """Counts, shapes, metadata and a few statistics of a store."""
    from synthgen.data.reader import describe, format_description, open_store

    typer.echo(format_description(describe(open_store(store, allow_incomplete=True))))


@app.command()
def preview(
    store: Annotated[Path, typer.Argument(help="A synthgen Zarr store.")],
    out: Annotated[Path, typer.Option("--out", help="PNG to write.")],
    n: Annotated[int, typer.Option("--n", min=1, max=256, help="Number of crops.")] = 16,
    columns: Annotated[int, typer.Option(min=1, max=32)] = 4,
    skeleton: Annotated[bool, typer.Option("--skeleton/--no-skeleton", help="Draw the joints.")] = True,
) -> None:
    """A PNG grid of the first N crops (colour-mapped depth, optional skeleton overlay)."""
    import imageio.v3 as iio

    from synthgen.data.preview import crop_panel, grid
    from synthgen.data.reader import open_store

    data = open_store(store)
    if out.suffix.lower() != ".png":
        raise InputError(f"--out must end in .png, got {out.name}")
    batch = data.read(slice(0, min(n, len(data))))
    cube = data.metadata.cube_mm
    panels = [crop_panel(batch.depth[i], batch.pose[i] if skeleton else None, batch.center[i], cube)
              for i in range(len(batch))]
    iio.imwrite(out, grid(panels, columns))
    typer.echo(f"wrote {out} ({len(panels)} crops)")


if __name__ == "__main__":
    app()
