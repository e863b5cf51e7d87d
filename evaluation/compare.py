"""Paired differences between two runs scored on the same test stays.

Both runs are scored on resamples drawn from the same seed and the same set of patients, so
their per-resample metrics pair up and the difference (e.g. MILES - none) gets a paired CI.
Runs whose test stays or outcomes differ are not comparable this way: the result is None.
"""

from __future__ import annotations

import numpy as np

from evaluation.assess import EvalSettings, head_rows, set_rows
from evaluation.bootstrap import Estimate, difference, patient_resamples
from evaluation.inputs import Predictions
from evaluation.scoring import score_head

SET = "test_paired"


def _aligned(a: Predictions, b: Predictions) -> Predictions | None:
    """`b` reordered to `a`'s stays, or None if the two runs do not share stays and outcomes."""
    if a.labels != b.labels or len(a.frame) != len(b.frame):
        return None
    frame = b.frame.set_index("stay_id").reindex(a.frame["stay_id"].to_numpy())
    if frame.index.hasnans or frame["subject_id"].isna().any():
        return None
    frame = frame.reset_index()
    same = (np.array_equal(frame["subject_id"].to_numpy(), a.frame["subject_id"].to_numpy())
            and np.array_equal(frame["has_cxr"].to_numpy(bool), a.frame["has_cxr"].to_numpy(bool))
            and np.array_equal(Predictions(frame, b.labels, b.heads).y(), a.y()))
    return Predictions(frame, b.labels, b.heads) if same else None


def paired_run_differences(experiment: Predictions, reference: Predictions, settings: EvalSettings
                           ) -> dict[str, dict[str, Estimate]] | None:
    """{head: {metric: experiment - reference}} on the paired test set, or None if not comparable."""
    aligned = _aligned(reference, experiment)
    if aligned is None:
        return None
    rows = set_rows(reference, SET)
    if not rows.any():
        return None
    resamples = patient_resamples(reference.frame["subject_id"].to_numpy()[rows],
                                  settings.n_bootstrap, settings.seed)
    result: dict[str, dict[str, Estimate]] = {}
    for head in reference.heads:
        if head not in aligned.heads:
            continue
        selected = head_rows(reference, rows, head)
        if not selected.any():
            continue
        weights = resamples.stay_weights(reference.frame["subject_id"].to_numpy()[selected])
        ours = score_head(aligned.y(selected), aligned.p(head, selected), aligned.labels, weights)
        theirs = score_head(reference.y(selected), reference.p(head, selected), reference.labels, weights)
        result[head] = {m: difference(ours.summary[m].point, ours.summary[m].replicates,
                                      theirs.summary[m].point, theirs.summary[m].replicates,
                                      settings.ci_level)
                        for m in ("auroc", "auprc")}
    return result
