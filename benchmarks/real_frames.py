"""The authors' released models and real benchmark frames, run the way a user runs them.

    python benchmarks/real_frames.py --release DIR --centers center_uvd_test.mat \
        --nyu-frame depth_1_0000001.png --nyu-labels nyu_test_groundtruth_label.txt \
        --icvl-labels icvl_test_groundtruth_label.txt [--n 2000]

Inputs (public, fetched by the user, never shipped; docs/real-data.md says where from):
  --release      the Crossing Nets release's pretrained_model/ folder (ICVL_pretrained/params,
                 NYU_pretrained/params)
  --centers      its data/center_uvd_test.mat (NYU test centres)
  --nyu-frame    NYU test frame 1 (depth_1_0000001.png)
  --nyu-labels   the field's NYU test labels: 14 joints × (u, v, depth) per line
  --icvl-labels  the field's ICVL test labels: 16 joints × (u, v, depth) per line

Everything goes through the `synthgen` command (convert, import, estimate, sample):
1. NYU frame 1: NYU-14 mean joint error of the converted NYU model (crops in its own convention
   at the release's centre; centre-relative crops converted on the fly) and of the default model
   (crops centred on the labelled joints' box, on the centre of mass, at the release's centre).
2. ICVL: median bone length of `sample` with the converted ICVL model under each prior (the
   release's own, one fitted to the test labels with `convert --poses`, N(0, I)) against the
   real test labels; and how far each sample's label lies from the model's own estimate of its
   depth. Writes docs/real/icvl_bones.png and docs/real/icvl_samples.png.
Prints a table; writes benchmarks/results/real_frames.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.io

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthgen.conventions import CAMERAS, LAYOUTS, NYU_EVAL_JOINTS  # noqa: E402
from synthgen.data.reader import open_store  # noqa: E402
from synthgen.hand.camera import unproject  # noqa: E402

SYNTHGEN = Path(sys.executable).parent / "synthgen"
DEFAULT_MODEL = ROOT / "synthgen" / "assets" / "models" / "default"


def run(*args) -> str:
    """One `synthgen` command; its stdout (raises with its stderr on failure)."""
    result = subprocess.run([str(SYNTHGEN), *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"synthgen {' '.join(map(str, args))}: {result.stderr.strip()}")
    return result.stdout


def bones(joints: np.ndarray, layout: str) -> np.ndarray:
    parents = LAYOUTS[layout].parents
    return np.concatenate([np.linalg.norm(joints[:, c] - joints[:, p], axis=-1)
                           for c, p in enumerate(parents) if p >= 0])


# --- NYU frame 1 ---------------------------------------------------------------------------------


def nyu_root(work: Path, frame: Path, labels_uvd: np.ndarray) -> Path:
    """A NYU test split of one frame: its PNG and a joint_data.mat whose 36 points hold the 14
    labelled joints at their indices (the other 22 at the palm centre: never evaluated)."""
    uvd = np.repeat(labels_uvd[13:14], 36, axis=0)
    uvd[list(NYU_EVAL_JOINTS)] = labels_uvd
    folder = work / "NYU" / "test"
    folder.mkdir(parents=True)
    shutil.copy(frame, folder / "depth_1_0000001.png")
    scipy.io.savemat(folder / "joint_data.mat", {"joint_uvd": uvd[None, None]})
    return folder.parent


def nyu14_error(work: Path, store: Path, model: Path, truth: np.ndarray) -> float:
    poses = work / "poses.npy"
    run("estimate", store, "--model", model, "--out", poses, "--overwrite")
    predicted = np.load(poses)[0]
    predicted = predicted[list(NYU_EVAL_JOINTS)] if len(predicted) == 36 else \
        LAYOUTS["nyu"].from_canonical(predicted)
    return float(np.linalg.norm(predicted - truth, axis=-1).mean())


def measure_nyu(work: Path, args) -> list[dict]:
    labels = np.loadtxt(args.nyu_labels, max_rows=1).reshape(14, 3)
    truth = unproject(labels, CAMERAS["nyu"])
    root = nyu_root(work, args.nyu_frame, labels)
    centre = work / "center_1.mat"
    scipy.io.savemat(centre, {"center_uvd": scipy.io.loadmat(args.centers)["center_uvd"][:1]})
    model = work / "nyu-model"
    run("convert", "crossingnet", "--weights", args.release / "NYU_pretrained" / "params", "--dataset", "nyu",
        "--out", model)
    cases = [
        ("converted NYU", model, ["--model", model, "--centers", centre], "its own (front-aligned window crop), "
                                                                           "release centre"),
        ("converted NYU", model, ["--centers", centre], "centre-relative pinhole crop, release centre "
                                                        "(front-aligned by estimate)"),
        ("default", args.default_model, ["--model", args.default_model], "its own convention"),
        ("default", args.default_model, ["--centering", "center-of-mass"], "centre of mass of the depth pixels"),
        ("default", args.default_model, ["--centering", "joint-box"], "labelled joints' box centre"),
        ("default", args.default_model, ["--centers", centre], "release centre (palm joint)"),
    ]
    rows = []
    for i, (name, net, options, crops) in enumerate(cases):
        store = work / f"nyu-{i}.zarr"
        run("import", "nyu", root, "--split", "test", "--out", store, *options)
        rows.append({"model": name, "crops": crops, "nyu14_mean_mm": nyu14_error(work, store, net, truth),
                     "center_mm": open_store(store).read(0).center[0].tolist()})
    return rows


# --- ICVL priors -----------------------------------------------------------------------------------


def measure_icvl(work: Path, args) -> tuple[list[dict], dict[str, np.ndarray], Path]:
    labels = np.loadtxt(args.icvl_labels).reshape(-1, 16, 3)
    real = unproject(labels, CAMERAS["icvl"])
    weights = args.release / "ICVL_pretrained" / "params"
    release, fitted = work / "icvl-release", work / "icvl-poses"
    run("convert", "crossingnet", "--weights", weights, "--dataset", "icvl", "--out", release)
    run("convert", "crossingnet", "--weights", weights, "--dataset", "icvl", "--out", fitted, "--poses",
        args.icvl_labels)
    distributions = {"real ICVL test labels": bones(real, "icvl")}
    rows = [{"prior": "real ICVL test labels", "median_bone_mm": float(np.median(distributions["real ICVL test labels"]))}]
    for name, model, prior in (("release (alignment BN)", release, "fitted"), ("convert --poses", fitted, "fitted"),
                               ("N(0, I)", release, "standard")):
        store = work / f"icvl-{len(rows)}.zarr"
        run("sample", "--model", model, "--n", args.n, "--camera", "icvl", "--prior", prior, "--seed", 0,
            "--out", store)
        pose = open_store(store).read_array("pose")
        distributions[name] = bones(pose, "icvl")
        estimate = json.loads(run("estimate", store, "--model", model, "--json"))
        rows.append({"prior": name, "median_bone_mm": float(np.median(distributions[name])),
                     "label_vs_own_estimate_mm": estimate["mean_joint_error_mm"]})
    return rows, distributions, fitted


def figures(distributions: dict[str, np.ndarray], fitted: Path, work: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    edges = np.linspace(0, 150, 76)
    for name, values in distributions.items():
        ax.hist(values, bins=edges, histtype="step", density=True, linewidth=1.6,
                label=f"{name} (median {np.median(values):.1f} mm)")
    ax.set_xlabel("bone length (mm)")
    ax.set_ylabel("density")
    ax.set_title("ICVL: bone lengths of the converted model's samples, by prior")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "icvl_bones.png", dpi=110)
    plt.close(fig)
    grid = work / "grid.zarr"
    run("sample", "--model", fitted, "--n", 16, "--camera", "icvl", "--seed", 0, "--out", grid)
    run("preview", grid, "--n", 16, "--out", out / "icvl_samples.png", "--overwrite")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True)
    parser.add_argument("--centers", type=Path, required=True)
    parser.add_argument("--nyu-frame", type=Path, required=True)
    parser.add_argument("--nyu-labels", type=Path, required=True)
    parser.add_argument("--icvl-labels", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--figures", type=Path, default=ROOT / "docs" / "real")
    parser.add_argument("--default-model", type=Path, default=DEFAULT_MODEL,
                        help="the synthgen model measured as 'default' (a candidate before it ships)")
    parser.add_argument("--nyu-only", action="store_true", help="skip the ICVL priors and figures")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nyu = measure_nyu(work, args)
        icvl = []
        if not args.nyu_only:
            icvl, distributions, fitted = measure_icvl(work, args)
            figures(distributions, fitted, work, args.figures)

    print("NYU test frame 1, NYU-14 mean joint error")
    for row in nyu:
        print(f"  {row['model']:<14} {row['crops']:<72} {row['nyu14_mean_mm']:6.2f} mm")
    print(f"ICVL, converted model, {args.n} samples per prior (median bone; label vs the model's own estimate)")
    for row in icvl:
        own = row.get("label_vs_own_estimate_mm")
        print(f"  {row['prior']:<24} {row['median_bone_mm']:6.1f} mm" + (f"   {own:5.1f} mm" if own else ""))
    out = ROOT / "benchmarks" / "results" / ("real_frames_nyu.json" if args.nyu_only else "real_frames.json")
    out.write_text(json.dumps({"nyu_frame_1": nyu, "icvl_priors": icvl, "samples": args.n}, indent=2))
    print(f"wrote {out} and {args.figures}/icvl_bones.png, icvl_samples.png")


if __name__ == "__main__":
    main()
