"""The scale a realism score is read against, measured with every score, and the verdict.

Set metrics have no absolute meaning (FD depends on the feature network and, through its bias,
on the number of samples), so every score measures its own yardstick at one size `n`: a second
set of baseline crops independent of the reference (what a perfect generator would score), and
that set blurred, noised and shifted (corrupt.py; what a generator with those failures would
score). The scored store is measured at the same size against the same reference subset, and
its FD placed on that scale gives the verdict. A corruption the feature network barely notices
(noise σ 10 mm) sits near the baseline; blur σ 2 px is the far end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthgen.realism import metrics
from synthgen.realism.corrupt import corrupt

#: (label, corruption kind or None, strength): the rows of the scale, mildest intent first.
SCALE = (("independent baseline", None, 0.0), ("noise σ 10 mm", "noise", 10.0), ("shift 6 px", "shift", 6),
         ("blur σ 1 px", "blur", 1.0), ("blur σ 2 px", "blur", 2.0))
KID_SUBSETS = 20
#: Verdict levels by how many corrupted rows score better than the store (0 .. 4); `verdict`
#: says "like the reference" instead of LEVELS[0] when the store is as close as the baseline set.
LEVELS = ("close to the reference", "moderate", "moderate", "poor", "far from the reference")


@dataclass
class ScaleRow:
    label: str
    fd: float
    kid: float
    precision: float
    recall: float

    def to_dict(self) -> dict:
        return {"label": self.label, "fd": self.fd, "kid": self.kid, "precision": self.precision,
                "recall": self.recall}


def set_row(label: str, features: np.ndarray, reference: np.ndarray, rng: np.random.Generator,
            k: int = 3) -> ScaleRow:
    """FD, KID and k-NN precision / recall of `features` against `reference` (equal sizes)."""
    kid = float(metrics.kid_subset_values(features, reference, rng, KID_SUBSETS, len(reference)).mean())
    precision, recall = metrics.knn_precision_recall(reference, features, k)
    return ScaleRow(label, metrics.fd_of(features, reference), kid, precision, recall)


def scale(baseline_depth: np.ndarray, baseline_center: np.ndarray, reference: np.ndarray, embed,
          rng: np.random.Generator, k: int = 3) -> list[ScaleRow]:
    """The scale's rows: `baseline_depth` (n independent baseline crops, normalised) as is and
    corrupted, each embedded with `embed(depth, center) -> features` and compared with
    `reference` (n reference features)."""
    rows = []
    for label, kind, strength in SCALE:
        depth = baseline_depth if kind is None else corrupt(baseline_depth, kind, strength, rng)
        rows.append(set_row(label, embed(depth, baseline_center), reference, rng, k))
    return rows


def verdict(store: ScaleRow, rows: list[ScaleRow]) -> dict:
    """Where the store's FD falls on the scale: a level, a sentence and the numbers behind it."""
    baseline, corrupted = rows[0], sorted(rows[1:], key=lambda row: row.fd)
    better = [row for row in corrupted if row.fd < store.fd]
    if not better and store.fd <= (baseline.fd + corrupted[0].fd) / 2:
        level, place = "like the reference", f"as close as an independent baseline set (FD {baseline.fd:.3g})"
    elif not better:
        level, place = LEVELS[0], f"closer than every calibrated corruption (mildest: {corrupted[0].label}, " \
                                  f"FD {corrupted[0].fd:.3g}); an independent baseline set scores {baseline.fd:.3g}"
    elif len(better) == len(corrupted):
        level, place = LEVELS[-1], f"beyond every calibrated corruption (strongest: {better[-1].label}, " \
                                   f"FD {better[-1].fd:.3g})"
    else:
        above = corrupted[len(better)]
        level = LEVELS[len(better)]
        place = f"between {better[-1].label} (FD {better[-1].fd:.3g}) and {above.label} (FD {above.fd:.3g})"
    text = (f"{level}: FD {store.fd:.3g} is {place}; precision {store.precision:.2f} and recall "
            f"{store.recall:.2f} (independent baseline: {baseline.precision:.2f} / {baseline.recall:.2f})")
    return {"level": level, "text": text, "metric": "fd", "store": store.to_dict(),
            "scale": [row.to_dict() for row in rows]}
