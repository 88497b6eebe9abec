"""score.json + report.html (+ its PNG figures and per-sample CSV) for a ScoreResult.

The output directory appears complete or not at all: everything is written into a sibling
temporary directory that is renamed into place last; an existing directory is replaced only
with `overwrite`.
"""

from __future__ import annotations

import html
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from synthgen.errors import InputError, OutputExistsError
from synthgen.realism import metrics
from synthgen.realism.score import ScoreResult

DIFF_RANGE_MM = 50.0

#: One line per headline number: key in score.json → what it means.
KEY_DOCS = {
    "pair.iou_mean": "silhouette IoU, generated crop vs mesh render of its own pose (1 = same outline)",
    "pair.depth_mae_mm": "mean |Δdepth| in mm where both are hand",
    "pair.pose_consistency_mm": "DepthNet's joints from the generated crop vs the paired pose, mean mm",
    "pair.estimator_floor_mm": "the same for the mesh renders: DepthNet's own error on these poses",
    "set.fd": "Fréchet distance of DepthNet embeddings, generated vs reference (0 = same distribution)",
    "set.kid": "kernel (MMD²) distance of the same embeddings; unbiased, ≈0 for one distribution",
    "set.precision": "fraction of generated crops inside the reference's k-NN manifold (fidelity)",
    "set.recall": "fraction of reference crops inside the generated k-NN manifold (diversity)",
    "set.coverage": "fraction of reference poses with a generated pose in their k-NN ball",
    "set.pose_precision": "fraction of generated poses inside some reference pose's k-NN ball (poses on the manifold)",
    "set.pose_recall": "fraction of reference poses inside some generated pose's k-NN ball",
}


def _lookup(scores: dict, dotted: str):
    value = scores
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def check_output_dir(out: Path, overwrite: bool) -> None:
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    if not out.parent.is_dir():
        raise InputError(f"directory {out.parent} does not exist", option="out")


def write_report(result: ScoreResult, out: str | Path, overwrite: bool = False) -> Path:
    out = Path(out)
    check_output_dir(out, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "score.json").write_text(json.dumps(result.scores, indent=2, allow_nan=False) + "\n")
        _per_sample_csv(result, tmp / "per_sample.csv")
        figures = _figures(result, tmp)
        (tmp / "report.html").write_text(_html(result, figures))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _per_sample_csv(result: ScoreResult, path: Path) -> None:
    columns = list(result.per_sample)
    data = np.column_stack([result.per_sample[c].astype(np.float64) for c in columns])
    np.savetxt(path, data, delimiter=",", header=",".join(columns), comments="", fmt="%.6g")


def _order_by_iou(result: ScoreResult) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(result.per_sample["iou"], kind="stable")
    k = min(result.scores["settings"]["examples"], len(order) // 2 or 1)
    return order[::-1][:k], order[:k]


def _figures(result: ScoreResult, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figures = {}
    if result.scores.get("verdict"):
        _summary_figure(result, plt).savefig(out / "summary.png", dpi=90)
        plt.close("all")
        figures["summary"] = "summary.png"
    ps = result.per_sample
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    axes[0].hist(ps["iou"], bins=40, range=(0, 1), color="#4477aa")
    axes[0].set_xlabel("silhouette IoU vs mesh render")
    mae = ps["depth_mae_mm"][np.isfinite(ps["depth_mae_mm"])]
    axes[1].hist(mae, bins=40, color="#4477aa")
    axes[1].set_xlabel("masked |Δdepth| (mm)")
    hi = float(np.quantile(np.concatenate([ps["pose_consistency_mm"], ps["estimator_floor_mm"]]), 0.99))
    axes[2].hist(ps["pose_consistency_mm"], bins=40, range=(0, hi), alpha=0.7, label="generated depth",
                 color="#4477aa")
    axes[2].hist(ps["estimator_floor_mm"], bins=40, range=(0, hi), alpha=0.6, label="mesh render (floor)",
                 color="#ee6677")
    axes[2].set_xlabel("DepthNet joints vs paired pose (mm)")
    axes[2].legend()
    for ax in axes:
        ax.set_ylabel("samples")
    fig.tight_layout()
    fig.savefig(out / "distributions.png", dpi=90)
    plt.close(fig)
    figures["distributions"] = "distributions.png"

    best, worst = _order_by_iou(result)
    titles = ("generated", "mesh render of its pose", f"difference (±{DIFF_RANGE_MM:.0f} mm)")
    fig, axes = plt.subplots(len(best), 6, figsize=(13, 2.2 * len(best)), squeeze=False)
    cube = result.scores["store"]["cube_mm"]
    for group, (label, picks) in enumerate((("best", best), ("worst", worst))):
        for r, i in enumerate(picks):
            gen, mesh = result.generated[i], result.mesh[i]
            both = metrics.foreground(gen) & metrics.foreground(mesh)
            panels = (np.where(metrics.foreground(gen), gen, np.nan), np.where(metrics.foreground(mesh), mesh, np.nan),
                      np.where(both, (gen - mesh) * cube / 2, np.nan))
            for c, (img, cmap, lim) in enumerate(zip(panels, ("magma_r", "magma_r", "coolwarm"),
                                                     (0.6, 0.6, DIFF_RANGE_MM))):
                ax = axes[r, 3 * group + c]
                ax.imshow(img, cmap=cmap, vmin=-lim, vmax=lim)
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{label}: {titles[c]}", fontsize=8)
            axes[r, 3 * group].set_ylabel(f"#{int(ps['index'][i])}  IoU {ps['iou'][i]:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "examples.png", dpi=80)
    plt.close(fig)
    figures["examples"] = "examples.png"

    if result.nearest_train:
        fig, ax = plt.subplots(figsize=(6, 3.4))
        both = np.concatenate(list(result.nearest_train.values()))
        bins = np.linspace(0, np.quantile(both, 0.995), 50)
        ax.hist(result.nearest_train["generated"], bins=bins, alpha=0.7, label="generated → train", density=True)
        ax.hist(result.nearest_train["reference"], bins=bins, alpha=0.6, label="unseen reference → train",
                density=True)
        ax.set_xlabel("distance to nearest training crop (DepthNet embedding)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "memorisation.png", dpi=90)
        plt.close(fig)
        figures["memorisation"] = "memorisation.png"
    return figures


def _summary_figure(result: ScoreResult, plt):
    """The report at a glance: the verdict, the calibration scale with the store on it, and
    generated crops above reference crops."""
    verdict = result.scores["verdict"]
    fig = plt.figure(figsize=(13, 5.6))
    grid = fig.add_gridspec(3, 9, height_ratios=(0.5, 1, 1), width_ratios=(3.2, 0.3) + (1,) * 7)
    title = fig.add_subplot(grid[0, :])
    title.axis("off")
    title.text(0, 0.75, f"Verdict: {verdict['level']}", fontsize=15, weight="bold")
    title.text(0, 0.1, _wrap(verdict["text"], 150), fontsize=9)
    scale = fig.add_subplot(grid[1:, 0])
    rows = verdict["scale"] + [verdict["store"]]
    labels = [row["label"] for row in rows]
    colours = ["#999999"] * (len(rows) - 1) + ["#cc3311"]
    scale.barh(range(len(rows)), [row["fd"] for row in rows], color=colours)
    scale.set_yticks(range(len(rows)), labels, fontsize=8)
    scale.invert_yaxis()
    scale.set_xscale("log")
    scale.set_xlabel(f"FD vs the reference, n = {verdict['n']} (log)", fontsize=8)
    for i, row in enumerate(rows):
        scale.text(row["fd"], i, f" {row['fd']:.3g}", va="center", fontsize=8)
    pictures = ((result.generated, "generated"), (result.reference_depth, "reference"))
    for r, (crops, label) in enumerate(pictures, start=1):
        for c in range(min(7, len(crops))):
            ax = fig.add_subplot(grid[r, 2 + c])
            crop = crops[c]
            ax.imshow(np.where(metrics.foreground(crop), crop, np.nan), cmap="magma_r", vmin=-0.6, vmax=0.6)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return html.escape(str(value))


def _html(result: ScoreResult, figures: dict[str, str]) -> str:
    s = result.scores
    rows = "".join(f"<tr><td><code>{k}</code></td><td>{_fmt(_lookup(s, k))}</td><td>{html.escape(doc)}</td></tr>"
                   for k, doc in KEY_DOCS.items())
    extra = {"set.fd_ci95": _lookup(s, "set.fd_ci95"), "set.kid_ci95": _lookup(s, "set.kid_ci95"),
             "set.kid_std": _lookup(s, "set.kid_std"),
             "pair.no_overlap_fraction": _lookup(s, "pair.no_overlap_fraction"),
             "pair.ik_residual_median_mm": _lookup(s, "pair.ik_residual_median_mm")}
    rows += "".join(f"<tr><td><code>{k}</code></td><td>{_fmt(v)}</td><td></td></tr>" for k, v in extra.items())
    mem = s["memorisation"]
    if "skipped" in mem:
        mem_html = f"<p>Skipped: {html.escape(mem['skipped'])}.</p>"
    else:
        mem_html = (f"<p>Median distance to the nearest training crop: generated "
                    f"{_fmt(mem['generated_to_train']['median'])}, unseen reference "
                    f"{_fmt(mem['reference_to_train']['median'])} (ratio {_fmt(mem['median_ratio'])}; "
                    f"≪ 1 would mean copies). Generated crops closer than the reference's 1st percentile: "
                    f"{_fmt(mem['closer_than_reference_p01'])}.</p>")
    summary = figures.get("summary")
    imgs = "".join(f'<h2>{html.escape(name)}</h2><img src="{file}" alt="{html.escape(name)}">'
                   for name, file in figures.items() if name != "summary")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>synthgen score: {html.escape(s['store']['path'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td{{padding:2px 10px;border-bottom:1px solid #ddd}}
img{{max-width:100%}}.warn{{color:#a33}}</style></head><body>
<h1>Realism score</h1>
{_verdict_html(s)}
{f'<img src="{summary}" alt="summary">' if summary else ""}
{_warnings_html(s)}
<h2>Provenance</h2>{_provenance_html(s)}
<h2>Scores</h2>
<table><tr><th>key</th><th>value</th><th>meaning</th></tr>{rows}</table>
<h2>memorisation</h2>{mem_html}
{imgs}
<p>Time per stage: {html.escape(", ".join(f"{k} {v:.0f} s" for k, v in s["timing_s"].items()))}</p>
</body></html>
"""


def _verdict_html(s: dict) -> str:
    verdict = s.get("verdict")
    if not verdict:
        return "<p class=warn>No verdict (see the warnings).</p>"
    rows = "".join(f"<tr><td>{html.escape(row['label'])}</td><td>{_fmt(row['fd'])}</td><td>{_fmt(row['kid'])}</td>"
                   f"<td>{row['precision']:.2f}</td><td>{row['recall']:.2f}</td></tr>"
                   for row in verdict["scale"] + [verdict["store"]])
    return (f"<p style='font-size:130%'><b>Verdict: {html.escape(verdict['level'])}</b></p>"
            f"<p>{html.escape(verdict['text'])}.</p>"
            f"<p>The scale, measured with this score at n = {verdict['n']} per set against the same reference "
            f"crops: an independent set of baseline crops, and that set corrupted.</p>"
            f"<table><tr><th>set</th><th>FD</th><th>KID</th><th>precision</th><th>recall</th></tr>{rows}</table>")


def _warnings_html(s: dict) -> str:
    if not s.get("warnings"):
        return ""
    return "<h2>Warnings</h2><ul>" + "".join(f"<li class=warn>{html.escape(w)}</li>" for w in s["warnings"]) + "</ul>"


def _provenance_html(s: dict) -> str:
    store, ref, net, settings = s["store"], s["reference"], s["feature_network"], s["settings"]
    model = store["model_checksum"]
    made = f"model {model[:12]}…" if model else "the mesh baseline (no model)"
    if ref["source"] == "rendered":
        reference = (f"{ref['n']:,} baseline crops rendered here: scene {html.escape(ref['scene'])}, seed {ref['seed']}, "
                     f"camera {html.escape(ref['camera'])}")
    else:
        reference = f"{ref['n']:,} crops of <code>{html.escape(ref['path'])}</code> (made by {html.escape(str(ref['producer']))})"
    items = [
        f"Scored: {store['num_scored']:,} of {store['num_samples']:,} samples of <code>{html.escape(store['path'])}</code>, "
        f"made by <code>{html.escape(str(store['producer']))}</code> from {made}, seed {store['seed']}"
        f"{'' if store['complete'] else ' (incomplete store: its written chunks)'}.",
        f"Reference: {reference}.",
        f"Feature network: DepthNet {html.escape(net['version'])} (sha256 {html.escape(net['sha256'][:12])}…), trained on "
        f"{html.escape(', '.join(map(str, net['train_stores'] or ['?'])))}; its own held-out joint error "
        f"{_fmt(net['val_mean_joint_error_mm'])} mm.",
        f"Settings: seed {settings['seed']}, k = {settings['k']}, {settings['bootstrap']} bootstrap resamples for FD's "
        f"interval (bias-corrected percentile), {settings['kid_subsets']} KID subsets of "
        f"{s['set'].get('kid_subset_size', '?')} samples.",
    ]
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"
