"""The flat metrics.json that DVC tracks: stable slash-separated keys, small cells suppressed.

Keys (docs/architecture.md):
  <set>/n_stays|n_patients|n_events                       set in test_paired, test_partial
  <set>/<head>/<metric>[_ci_low|_ci_high|_n_valid]        head in ehr, cxr, fused
  <set>/<head>/brier|calibration_slope|calibration_intercept
  <set>/<a>_minus_<b>/<metric>[_ci_low|_ci_high|_n_valid] paired bootstrap differences
  test_partial/subgroup/<subgroup>/<level>/n_patients|n_events|<head>/auroc[_ci_low|_ci_high]
  n_bootstrap, seed, ci_level
<metric> is auroc, auprc (macro over labels for phenotyping) and, for phenotyping,
auroc_micro, auprc_micro. Undefined values are null.
"""

from __future__ import annotations

import math

from evaluation.assess import TaskEvaluation
from evaluation.bootstrap import Estimate
from evaluation.suppression import SUPPRESSED, count_cell


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _estimate_keys(prefix: str, est: Estimate, with_valid: bool = True) -> dict:
    keys = {prefix: _number(est.value), f"{prefix}_ci_low": _number(est.ci_low),
            f"{prefix}_ci_high": _number(est.ci_high)}
    if with_valid:
        keys[f"{prefix}_n_valid"] = est.n_valid
    return keys


def flat_metrics(evaluation: TaskEvaluation) -> dict:
    cell = evaluation.settings.min_cell_size
    flat: dict = {"n_bootstrap": evaluation.settings.n_bootstrap, "seed": evaluation.settings.seed,
                  "ci_level": evaluation.settings.ci_level}
    for name, result in evaluation.sets.items():
        flat[f"{name}/n_stays"] = count_cell(result.n_stays, cell)
        flat[f"{name}/n_patients"] = count_cell(result.n_patients, cell)
        flat[f"{name}/n_events"] = count_cell(result.n_events, cell)
        for head, head_result in result.heads.items():
            for metric, est in head_result.summary.items():
                flat.update(_estimate_keys(f"{name}/{head}/{metric}", est))
            cal = head_result.calibration
            flat[f"{name}/{head}/brier"] = _number(cal.brier)
            flat[f"{name}/{head}/calibration_slope"] = _number(cal.slope)
            flat[f"{name}/{head}/calibration_intercept"] = _number(cal.intercept)
        for pair, metrics in result.differences.items():
            for metric, est in metrics.items():
                flat.update(_estimate_keys(f"{name}/{pair}/{metric}", est))
    for row in evaluation.subgroups:
        prefix = f"test_partial/subgroup/{row.subgroup}/{row.level}"
        flat[f"{prefix}/n_patients"] = count_cell(row.n_patients, cell)
        flat[f"{prefix}/n_events"] = SUPPRESSED if row.suppressed else count_cell(row.n_events, cell)
        for head in evaluation.heads:
            if row.suppressed or (head in row.auroc and row.auroc[head] is None):
                flat[f"{prefix}/{head}/auroc"] = SUPPRESSED
                continue
            est = row.auroc.get(head)
            if est is None:  # not applicable (CXR head without images)
                continue
            flat.update(_estimate_keys(f"{prefix}/{head}/auroc", est, with_valid=False))
    return flat
