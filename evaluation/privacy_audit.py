"""Stage audit@<task>: membership-inference attacks on the trained model, with patient-level CIs.

    python -m evaluation.privacy_audit --task in_hospital_mortality [key=value ...]

Reads runs/<task>/audit/membership.parquet (membership@<task>: the model's and the reference
models' predictions on the training patients, the members, and the test patients, the
non-members) and runs/<task>/history.json (the epsilon spent, when trained privately); writes
<eval.reports_dir>/<task>/privacy.json (DVC metrics) that evaluate@<task> turns into a report
section. Two baseline attacks a reviewer would accept, per head, at the patient level (the
unit of privacy; a patient's score is the mean over their stays):
- threshold (Yeom et al., CSF 2018): a low loss means "member"; score = -loss;
- calibrated: the loss minus its mean under reference models that never saw the candidate
  (offline difficulty calibration, Watson et al., ICLR 2022; our cheaper variant of LiRA,
  Carlini et al., IEEE S&P 2022: reference models trained on the validation patients, a
  mean offset instead of a fitted Gaussian per example); score = -(loss - reference loss).
Each attack's AUROC (0.5 = chance) and its TPR at the false-positive rates of
`privacy.audit.fpr`, with percentile CIs from the seeded patient-level bootstrap (eval.*).
Only aggregates are written: no identifier, no per-patient score.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_prep import paths
from data_prep.config import run_stage, task_stage_config, task_stage_parser
from data_prep.errors import PipelineInputError, StaleInputError
from data_prep.io import write_json
from evaluation.bootstrap import Estimate, estimate, patient_resamples
from evaluation.inputs import read_history
from models.names import HEADS, head_is_defined_without_image

log = logging.getLogger(__name__)
ATTACKS = ("threshold", "calibrated")
MEMBER_SPLIT, NON_MEMBER_SPLIT = "train", "test"
EPS = 1e-7


def label_names(frame: pd.DataFrame) -> list[str]:
    return [column[2:] for column in frame.columns if column.startswith("y_")]


def stay_losses(frame: pd.DataFrame, head: str, labels: Sequence[str]) -> np.ndarray:
    """Mean binary cross-entropy over labels per stay (NaN where the head is undefined)."""
    y = frame[[f"y_{name}" for name in labels]].to_numpy(np.float64)
    p = frame[[f"p_{head}_{name}" for name in labels]].to_numpy(np.float64, na_value=np.nan).clip(EPS, 1 - EPS)
    loss = -(y * np.log(p) + (1 - y) * np.log1p(-p)).mean(axis=1)
    if not head_is_defined_without_image(head):
        loss = np.where(frame["has_cxr"].to_numpy(bool), loss, np.nan)
    return loss


def attack_scores(membership: pd.DataFrame, head: str) -> pd.DataFrame:
    """One row per candidate patient: subject_id, member, and each attack's score (higher = member)."""
    labels = label_names(membership)
    target = membership[membership["model"] == "target"].sort_values("stay_id")
    references = [group.sort_values("stay_id") for name, group in membership.groupby("model") if name != "target"]
    frame = pd.DataFrame({"subject_id": target["subject_id"].to_numpy(),
                          "member": (target["split"] == MEMBER_SPLIT).to_numpy(),
                          "loss": stay_losses(target, head, labels)})
    if references:
        for reference in references:
            if not np.array_equal(reference["stay_id"].to_numpy(), target["stay_id"].to_numpy()):
                raise PipelineInputError("membership.parquet: the reference models' stays differ from the target's")
        reference_loss = np.nanmean(np.stack([stay_losses(r, head, labels) for r in references]), axis=0)
        frame["calibrated_loss"] = frame["loss"].to_numpy() - reference_loss
    frame = frame.dropna(subset=["loss"])
    patients = frame.groupby("subject_id", sort=True).agg(
        member=("member", "first"), **{column: (column, "mean") for column in frame.columns
                                       if column.endswith("loss")}).reset_index()
    out = pd.DataFrame({"subject_id": patients["subject_id"], "member": patients["member"].astype(bool),
                        "threshold": -patients["loss"]})
    if "calibrated_loss" in patients:
        out["calibrated"] = -patients["calibrated_loss"]
    return out


def weighted_roc(member: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) at every distinct threshold, highest first,
    from (0, 0) to (1, 1); tied scores form one point. Weights are bootstrap multiplicities.

    Written out instead of sklearn's roc_curve because the audit calls it for every bootstrap
    resample (thousands of times): sklearn's input validation cost ~4 ms a call, 20 s a stage.
    Unlike roc_curve it keeps collinear points, so TPR at a fixed FPR is exact."""
    order = np.argsort(-score, kind="mergesort")
    ranked, positive = score[order], member[order]
    weight = np.ones(ranked.size) if weights is None else np.asarray(weights, dtype=np.float64)[order]
    true_positives = np.cumsum(weight * positive)
    false_positives = np.cumsum(weight * ~positive)
    last_of_tie = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    tps = np.r_[0.0, true_positives[last_of_tie]]
    fps = np.r_[0.0, false_positives[last_of_tie]]
    return fps / fps[-1], tps / tps[-1]


def tpr_at_fpr(member: np.ndarray, score: np.ndarray, fpr: float, weights: np.ndarray | None = None) -> float:
    """The attack's true-positive rate at the largest threshold whose false-positive rate is <= fpr."""
    if member.all() or not member.any():
        return math.nan
    fprs, tprs = weighted_roc(member, score, weights)
    return float(tprs[fprs <= fpr + 1e-12].max())


def _auroc(member: np.ndarray, score: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve by the trapezoid rule (ties count one half, as in sklearn)."""
    if member.all() or not member.any():
        return math.nan
    fprs, tprs = weighted_roc(member, score, weights)
    return float(np.sum(np.diff(fprs) * (tprs[1:] + tprs[:-1]) / 2))


def attack_metrics(scores: pd.DataFrame, attack: str, fprs: Sequence[float], n_bootstrap: int, seed: int,
                   ci_level: float) -> dict[str, Estimate]:
    """AUROC and TPR@FPR of one attack, with patient-level bootstrap CIs (members and
    non-members resampled together; a resample holding one group only is invalid)."""
    member, score = scores["member"].to_numpy(bool), scores[attack].to_numpy(np.float64)
    resamples = patient_resamples(scores["subject_id"].to_numpy(), n_bootstrap, seed)
    weights = resamples.stay_weights(scores["subject_id"].to_numpy())
    out = {"auroc": estimate(_auroc(member, score),
                             np.array([_auroc(member[w > 0], score[w > 0], w[w > 0]) for w in weights]), ci_level)}
    for fpr in fprs:
        out[f"tpr_at_fpr_{fpr:g}"] = estimate(
            tpr_at_fpr(member, score, fpr),
            np.array([tpr_at_fpr(member[w > 0], score[w > 0], fpr, w[w > 0]) for w in weights]), ci_level)
    return out


def _estimate_dict(est: Estimate) -> dict[str, float | None]:
    return {key: (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in {"value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high}.items()}


def privacy_spent(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The epsilon spent by the end of training (covers every checkpoint written), from history."""
    rows = [row for row in history if row.get("privacy_epsilon") is not None]
    if not rows:
        return {"private": False}
    return {"private": True, "epsilon": rows[-1]["privacy_epsilon"], "delta": rows[-1].get("privacy_delta"),
            "noise_multiplier": rows[-1].get("privacy_noise_multiplier"), "epochs": len(rows)}


def audit(membership: pd.DataFrame, history: list[dict[str, Any]], fprs: Sequence[float], n_bootstrap: int,
          seed: int, ci_level: float) -> dict[str, Any]:
    """privacy.json: who was attacked, with what, and how well it worked, per head."""
    heads = [head for head in HEADS if any(c.startswith(f"p_{head}_") for c in membership.columns)]
    n_references = int((membership["model"].drop_duplicates() != "target").sum())
    result: dict[str, Any] = {"privacy": privacy_spent(history), "unit": "patient", "reference_models": n_references,
                              "fpr": list(fprs), "ci_level": ci_level, "n_bootstrap": n_bootstrap, "heads": {}}
    for head in heads:
        scores = attack_scores(membership, head)
        entry: dict[str, Any] = {"members": int(scores["member"].sum()), "non_members": int((~scores["member"]).sum())}
        for attack in ATTACKS:
            if attack in scores:
                entry[attack] = {name: _estimate_dict(est) for name, est in
                                 attack_metrics(scores, attack, fprs, n_bootstrap, seed, ci_level).items()}
        result["heads"][head] = entry
    return result


def main() -> None:
    args = task_stage_parser(__doc__.splitlines()[0]).parse_args()
    cfg = task_stage_config(args)
    source = paths.membership_path(cfg, args.task)
    if not Path(source).is_file():
        raise StaleInputError(f"{source} not found: run `dvc repro membership@{args.task}`")
    result = audit(pd.read_parquet(source), read_history(paths.run_dir(cfg, args.task) / "history.json"),
                   [float(f) for f in cfg.privacy.audit.fpr], int(cfg.eval.n_bootstrap), int(cfg.eval.seed),
                   float(cfg.eval.ci_level))
    write_json(paths.privacy_report_path(cfg, args.task), result)
    log.info("%s: wrote %s", args.task, paths.privacy_report_path(cfg, args.task))


if __name__ == "__main__":
    run_stage(main)
