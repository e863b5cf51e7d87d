"""Validation metrics on gathered predictions: AUROC and AUPRC per head, macro over labels.

These are the numbers early stopping and the balancers act on, so they are computed from
the predictions of all ranks (never per rank) and every rank gets the same values. The
evaluation stage computes the reported metrics (with CIs) from predictions.parquet.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from models.names import head_is_defined_without_image

SCORERS = {"auroc": roc_auc_score, "auprc": average_precision_score}
EPS = 1e-7


def macro_scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Macro AUROC/AUPRC over the labels that have both classes; NaN when none has.

    `prevalence` is the mean positive rate over those same labels: the AUPRC a random
    scorer gets on average, i.e. the chance level of the macro AUPRC (MILES's
    `scale: chance_corrected` needs it; AUROC's chance level is 0.5 whatever the labels).
    """
    defined = [k for k in range(labels.shape[1]) if 0 < labels[:, k].sum() < labels.shape[0]]
    if not defined:
        return {name: math.nan for name in (*SCORERS, "prevalence")}
    scores = {name: float(np.mean([scorer(labels[:, k], probs[:, k]) for k in defined]))
              for name, scorer in SCORERS.items()}
    scores["prevalence"] = float(np.mean([labels[:, k].mean() for k in defined]))
    return scores


def mean_bce(labels: np.ndarray, probs: np.ndarray) -> float:
    if labels.shape[0] == 0:
        return math.nan
    p = np.clip(probs.astype(np.float64), EPS, 1 - EPS)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def head_rows(head: str, has_cxr: np.ndarray, subset: str) -> np.ndarray:
    """Rows a head is scored on: the CXR head only where there is an image; `paired` keeps
    only stays with both modalities for every head (MILES compares heads on the same stays)."""
    if not head_is_defined_without_image(head) or subset == "paired":
        return has_cxr.astype(bool)
    return np.ones_like(has_cxr, dtype=bool)


def validation_metrics(labels: np.ndarray, probs: dict[str, np.ndarray],
                       has_cxr: np.ndarray) -> dict[str, dict[str, dict[str, float]]]:
    """{"all" | "paired": {head: {"auroc", "auprc", "prevalence", "loss"}}} from gathered validation
    predictions; `prevalence` is computed on the head's own rows (on `paired`, the same for every head)."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for subset in ("all", "paired"):
        result[subset] = {}
        for head in probs:
            rows = head_rows(head, has_cxr, subset)
            scores = macro_scores(labels[rows], probs[head][rows]) if rows.any() else \
                {name: math.nan for name in (*SCORERS, "prevalence")}
            scores["loss"] = mean_bce(labels[rows], probs[head][rows])
            result[subset][head] = scores
    return result
