"""Realism of synthetic (pose, depth) pairs, scored against the mesh-rendered baseline.

    from synthgen.realism import score, write_report
    result = score("out/samples.zarr", train="data/train-clean.zarr")
    write_report(result, "out/score")

See score.py for the steps, metrics.py for the definitions, calibration.py for the scale the
verdict is read on (and corrupt.py for its corruptions), and synthgen.models.depthnet for the
frozen feature network.
"""

from synthgen.realism.report import write_report
from synthgen.realism.score import ScoreResult, ScoreSettings, score

__all__ = ["ScoreResult", "ScoreSettings", "score", "write_report"]
