"""Measure Zarr v3 layouts for the depth array, to choose the store's default by numbers.

Each option stores N hand-like normalised depth crops (see `hand_like_crops`) the way a
producer does (one whole chunk per write call) and is timed on:

* write: samples/s for writing all N samples chunk by chunk;
* ratio: 16-bit size (N * 128² * 2 bytes) / bytes on disk of the depth array;
* slice64: contiguous reads of 64-sample batches, in order (a sequential scan / exporter);
* chunks: chunk-aware shuffled reads (shuffle the chunk order, read a whole chunk, shuffle the
  samples inside it): what a training loader does to be fast;
* blocks64: 64-sample batches in shuffled batch order (a loader that is not chunk-aware);
* err mm: worst depth error against the float32 input, in mm at a 250 mm cube.

Reads come from the page cache (the store was just written), so they measure decoding, not
the disk. The machine is shared: every option is run once per repeat, repeats outermost, and
the median kept. The last line times the real StoreWriter with its default layout.

    nice python benchmarks/store_layout.py            # 20k samples, ~10 min
    nice python benchmarks/store_layout.py --samples 4096 --repeats 1   # quick look
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from synthgen.conventions import BACKGROUND, CROP_SIZE, CUBE_MM
from synthgen.data.schema import SampleBatch, StoreMetadata
from synthgen.data.writer import StoreWriter

RESULTS = Path(__file__).parent / "results" / "store_layout.json"
HALF_CUBE_MM = CUBE_MM / 2

# --- hand-like data ------------------------------------------------------------------------


def _ellipsoid_depth(grid_u, grid_v, centre_u, centre_v, radius_along, radius_across, angle, depth,
                     tilt, bulge):
    """Depth of an ellipsoidal blob (+inf outside it): a smooth surface with a tilt along its axis.

    All parameters are (B, 1, 1); returns (B, H, W) normalised depth.
    """
    du, dv = grid_u - centre_u, grid_v - centre_v
    along = du * np.cos(angle) + dv * np.sin(angle)
    across = -du * np.sin(angle) + dv * np.cos(angle)
    r2 = (along / radius_along) ** 2 + (across / radius_across) ** 2
    surface = depth + tilt * along / radius_along - bulge * np.sqrt(np.clip(1 - r2, 0, None))
    return np.where(r2 < 1, surface, np.inf)


def hand_like_crops(count: int, rng: np.random.Generator, batch: int = 512) -> np.ndarray:
    """(count, 128, 128) float32 normalised crops that compress like rendered hands, not noise.

    A palm, a wrist running out of the crop and five fingers, each an ellipsoid with a smooth
    depth gradient, composited by nearest depth over a +1 background: about 80-85 % of the
    pixels are background, as in real crops of a 250 mm cube.
    """
    size = CROP_SIZE
    grid_v, grid_u = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((count, size, size), np.float32)
    for start in range(0, count, batch):
        n = min(batch, count - start)

        def draw(low, high):
            return rng.uniform(low, high, (n, 1, 1)).astype(np.float32)

        palm_u, palm_v, palm_angle = draw(56, 72), draw(56, 72), draw(-0.6, 0.6)
        palm_depth = draw(-0.15, 0.15)
        parts = [
            _ellipsoid_depth(grid_u, grid_v, palm_u, palm_v, draw(20, 26), draw(17, 22), palm_angle + np.pi / 2,
                             palm_depth, draw(-0.2, 0.2), draw(0.10, 0.16)),
            _ellipsoid_depth(grid_u, grid_v, palm_u + 10 * np.sin(palm_angle), palm_v + 40 * np.cos(palm_angle),
                             draw(18, 24), draw(11, 15), palm_angle + np.pi / 2, palm_depth + draw(0.0, 0.15),
                             draw(-0.2, 0.2), draw(0.08, 0.14)),
        ]
        for finger in range(5):
            spread = palm_angle - np.pi / 2 + (finger - 2) * draw(0.25, 0.4)
            length = draw(12, 22)
            reach = draw(12, 16) + length
            parts.append(_ellipsoid_depth(
                grid_u, grid_v, palm_u + reach * np.cos(spread), palm_v + reach * np.sin(spread), length,
                draw(3.5, 5.0), spread, palm_depth + draw(-0.25, 0.15), draw(-0.3, 0.3), draw(0.03, 0.06)))
        depth = np.min(np.stack(parts), axis=0)
        depth = np.where(np.isfinite(depth), np.clip(depth, -1, 1), BACKGROUND)
        out[start:start + n] = depth
    return out


# --- layouts -------------------------------------------------------------------------------

def quantise_uint16(depth: np.ndarray, steps: int) -> np.ndarray:
    """uint16 codes of normalised depth; 4096 steps over [-1, 1] give float16's 0.031 mm worst case."""
    return np.round((depth + 1) * np.float32(steps / 2)).astype(np.uint16)


def dequantise_uint16(codes: np.ndarray, steps: int) -> np.ndarray:
    return codes.astype(np.float32) * (2 / steps) - 1


@dataclass(frozen=True)
class Layout:
    name: str
    dtype: str  # "float16" or "uint16/<steps>"
    compressor: object | None
    chunk: int
    inner_chunk: int | None = None  # set → shards of `chunk` samples with inner chunks

    @property
    def quantisation_steps(self) -> int | None:
        return int(self.dtype.split("/")[1]) if self.dtype.startswith("uint16") else None

    def encode(self, depth: np.ndarray) -> np.ndarray:
        """float32 normalised depth (what producers hand over) → the stored dtype."""
        steps = self.quantisation_steps
        return depth.astype(np.float16) if steps is None else quantise_uint16(depth, steps)

    def decode(self, stored: np.ndarray) -> np.ndarray:
        steps = self.quantisation_steps
        return stored.astype(np.float32) if steps is None else dequantise_uint16(stored, steps)


def zstd(level: int) -> ZstdCodec:
    return ZstdCodec(level=level)


LZ4_SHUFFLE = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")

LAYOUTS = [
    Layout("f16 none c1024", "float16", None, 1024),
    Layout("f16 zstd1 c1024", "float16", zstd(1), 1024),
    Layout("f16 zstd3 c1024", "float16", zstd(3), 1024),
    Layout("f16 blosc-lz4-shuffle c1024", "float16", LZ4_SHUFFLE, 1024),
    Layout("u16/4096 zstd1 c1024", "uint16/4096", zstd(1), 1024),
    Layout("f16 zstd1 c256", "float16", zstd(1), 256),
    Layout("f16 zstd1 c512", "float16", zstd(1), 512),
    Layout("f16 zstd1 shard1024/64", "float16", zstd(1), 1024, 64),
    Layout("f16 zstd3 shard1024/64", "float16", zstd(3), 1024, 64),
    Layout("f16 blosc-lz4-shuffle shard1024/64", "float16", LZ4_SHUFFLE, 1024, 64),
]


def create_depth_array(path: Path, layout: Layout, count: int):
    dtype = "float16" if layout.quantisation_steps is None else "uint16"
    size = CROP_SIZE
    if layout.inner_chunk is None:
        chunks, shards = (layout.chunk, size, size), None
    else:
        chunks, shards = (layout.inner_chunk, size, size), (layout.chunk, size, size)
    return zarr.create_array(
        store=str(path), shape=(count, size, size), dtype=dtype, chunks=chunks, shards=shards,
        compressors=[layout.compressor] if layout.compressor is not None else None, fill_value=0,
    )


def stored_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- timings -------------------------------------------------------------------------------


def time_write(array, data: np.ndarray, layout: Layout) -> float:
    start = time.perf_counter()
    for begin in range(0, len(data), layout.chunk):
        array[begin:begin + layout.chunk] = layout.encode(data[begin:begin + layout.chunk])
    return len(data) / (time.perf_counter() - start)


def time_slices(array, layout: Layout, batch: int, rng: np.random.Generator | None) -> float:
    """Read `batch`-sample slices in order, or in shuffled order when `rng` is given."""
    starts = np.arange(0, array.shape[0], batch)
    if rng is not None:
        rng.shuffle(starts)
    start = time.perf_counter()
    for begin in starts:
        layout.decode(array[begin:begin + batch])
    return array.shape[0] / (time.perf_counter() - start)


def time_chunk_shuffled(array, layout: Layout, rng: np.random.Generator) -> float:
    """Shuffle the chunk (shard) order, read each whole, then shuffle the samples inside it."""
    starts = np.arange(0, array.shape[0], layout.chunk)
    rng.shuffle(starts)
    start = time.perf_counter()
    for begin in starts:
        block = layout.decode(array[begin:begin + layout.chunk])
        block[rng.permutation(len(block))]
    return array.shape[0] / (time.perf_counter() - start)


def measure_layout(layout: Layout, data: np.ndarray, workdir: Path, rng: np.random.Generator) -> dict:
    path = workdir / "layout.zarr"
    array = create_depth_array(path, layout, len(data))
    result = {
        "write": time_write(array, data, layout),
        "slice64": time_slices(array, layout, 64, None),
        "chunks": time_chunk_shuffled(array, layout, rng),
        "blocks64": time_slices(array, layout, 64, rng),
        "ratio": data.nbytes / 2 / stored_bytes(path),
        "max_error_mm": float(np.abs(layout.decode(array[: layout.chunk]) - data[: layout.chunk]).max()) * HALF_CUBE_MM,
    }
    shutil.rmtree(path)
    return result


def measure_store_writer(data: np.ndarray, pose: np.ndarray, center: np.ndarray, workdir: Path) -> dict:
    """The real writer with its default layout: depth + pose + center per chunk, markers included."""
    path = workdir / "writer.zarr"
    writer = StoreWriter.create(path, len(data), StoreMetadata(producer="benchmark", seed=None))
    start = time.perf_counter()
    for chunk in range(writer.num_chunks):
        begin, end = writer.chunk_bounds(chunk)
        writer.write(begin, SampleBatch(data[begin:end], pose[begin:end], center[begin:end]))
    writer.finalize()
    result = {"write": len(data) / (time.perf_counter() - start),
              "ratio": (data.nbytes // 2 + pose.nbytes + center.nbytes) / stored_bytes(path)}
    shutil.rmtree(path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    data = hand_like_crops(args.samples, rng)
    pose = rng.normal(0, 40, (args.samples, 21, 3)).astype(np.float32) + np.float32([0, 0, 450])
    center = pose.mean(axis=1)
    foreground = float((data < BACKGROUND).mean())
    print(f"{args.samples} hand-like crops, {foreground:.1%} foreground pixels, {args.repeats} repeat(s)", flush=True)

    # Repeats outermost, so load from other users of the machine hits every layout alike.
    runs: dict[str, list[dict]] = {layout.name: [] for layout in LAYOUTS}
    writer_runs = []
    with tempfile.TemporaryDirectory(prefix="store_layout_") as tmp:
        for repeat in range(args.repeats):
            for layout in LAYOUTS:
                runs[layout.name].append(measure_layout(layout, data, Path(tmp), rng))
            writer_runs.append(measure_store_writer(data, pose, center, Path(tmp)))
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    results = {name: {key: statistics.median(run[key] for run in layout_runs) for key in layout_runs[0]}
               for name, layout_runs in runs.items()}
    writer = {key: statistics.median(run[key] for run in writer_runs) for key in writer_runs[0]}

    header = (f"{'layout':36} {'write/s':>8} {'ratio':>6} {'slice64/s':>10} {'chunks/s':>9} {'blocks64/s':>10} "
              f"{'err mm':>7}")
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(f"{name:36} {r['write']:8.0f} {r['ratio']:6.2f} {r['slice64']:10.0f} {r['chunks']:9.0f} "
              f"{r['blocks64']:10.0f} {r['max_error_mm']:7.4f}")
    print(f"StoreWriter default (depth+pose+center, markers): {writer['write']:.0f} samples/s, "
          f"ratio {writer['ratio']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "samples": args.samples, "repeats": args.repeats, "foreground_fraction": foreground,
        "zarr": zarr.__version__, "layouts": results, "store_writer_default": writer,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
