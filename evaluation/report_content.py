"""What the task report says, section by section (TRIPOD+AI items where they apply).

Builds a `Document` from the evaluation and its context; renderers turn it into HTML or
Markdown. Every count goes through the small-cell formatter; no identifier is ever read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from evaluation.assess import TaskEvaluation
from evaluation.bootstrap import Estimate
from evaluation.document import Document, Figure, Paragraph, Section, Table
from evaluation.formatting import count, number, percent, pretty_label, signed_with_ci, with_ci
from evaluation.plots import HEAD_NAMES, balancer_png, reliability_png, roc_pr_png, training_png
from evaluation.privacy_report import privacy_section
from evaluation.subgroups import SUBGROUP_TITLES

SET_NAMES = {"test_paired": "Paired test set (stays with a chest X-ray)",
             "test_partial": "Partial test set (all test stays)"}
SET_SHORT = {"test_paired": "Paired", "test_partial": "Partial"}
TASK_TITLES = {"in_hospital_mortality": "In-hospital mortality (first 48 hours of the ICU stay)",
               "phenotyping": "Phenotyping (25 acute and chronic conditions)"}
TASK_PHRASES = {"in_hospital_mortality": "in-hospital mortality",
                "phenotyping": "25 acute and chronic conditions (phenotypes)"}
DIFFERENCE_NAMES = {"fused_minus_ehr": "Fused - EHR only", "fused_minus_cxr": "Fused - CXR only",
                    "routed_minus_fused": "Routed - Fused"}
CONFIG_GROUPS = ("fusion", "balancing", "model", "train", "eval")


@dataclass
class ReportContext:
    """Everything besides the predictions that the report shows."""

    config: dict = field(default_factory=dict)        # params.yaml as a plain dict
    cohort: dict | None = None
    pair_counts: dict | None = None
    history: list[dict] = field(default_factory=list)
    data_version: dict[str, str] = field(default_factory=dict)
    synthetic: bool = False
    privacy: dict | None = None                       # audit@<task>'s privacy.json


def metric_names(evaluation: TaskEvaluation) -> list[tuple[str, str]]:
    if evaluation.multilabel:
        return [("auroc", "AUROC (macro)"), ("auprc", "AUPRC (macro)"),
                ("auroc_micro", "AUROC (micro)"), ("auprc_micro", "AUPRC (micro)")]
    return [("auroc", "AUROC"), ("auprc", "AUPRC")]


def _excludes_zero(est: Estimate) -> bool:
    return math.isfinite(est.ci_low) and (est.ci_low > 0 or est.ci_high < 0)


def summary_text(evaluation: TaskEvaluation) -> str:
    cell = evaluation.settings.min_cell_size
    level = f"{round(100 * evaluation.settings.ci_level)}%"
    partial = evaluation.sets.get("test_partial")
    paired = evaluation.sets.get("test_paired")
    task = TASK_PHRASES.get(evaluation.task, pretty_label(evaluation.task).lower())
    auroc = "macro AUROC (average over the outcomes)" if evaluation.multilabel else "AUROC"
    parts = []
    if partial:
        parts.append(f"This report evaluates a model that predicts {task} from the ICU time series "
                     f"(EHR) and the chest X-ray (CXR) on {count(partial.n_stays, cell)} held-out "
                     f"test ICU stays of {count(partial.n_patients, cell)} patients"
                     + (f", {count(paired.n_stays, cell)} of them with a chest X-ray." if paired else "."))
    if paired and "fused" in paired.heads:
        heads = paired.heads
        fused = heads["fused"].summary["auroc"]
        text = (f" On the stays with an X-ray, the combined (fused) prediction reached a {auroc} of "
                f"{with_ci(fused)}")
        others = [f"{ {'ehr': 'EHR-only', 'cxr': 'CXR-only'}[h]} {with_ci(heads[h].summary['auroc'])}"
                  for h in ("ehr", "cxr") if h in heads]
        if others:
            text += " against " + " and ".join(others)
        parts.append(text + f" ({level} confidence intervals in brackets).")
        diff = paired.differences.get("fused_minus_ehr", {}).get("auroc")
        if diff is not None and math.isfinite(diff.value):
            verdict = ("a difference unlikely to be chance alone" if _excludes_zero(diff)
                       else "a difference compatible with no real improvement")
            parts.append(f" Adding the X-ray changed the AUROC by {signed_with_ci(diff)} over the "
                         f"EHR alone, {verdict}.")
        cal = heads["fused"].calibration
        if math.isfinite(cal.slope):
            tone = ("close to ideal" if 0.8 <= cal.slope <= 1.2 else
                    "too extreme (over-confident)" if cal.slope < 0.8 else "too cautious")
            parts.append(f" The fused probabilities have a calibration slope of {cal.slope:.2f}: "
                         f"{tone}.")
    return "".join(parts)


def _cohort_section(context: ReportContext, cell: int) -> Section:
    section = Section("cohort", "Cohort flow")
    cohort = context.cohort
    if not cohort or not cohort.get("steps"):
        section.blocks.append(Paragraph("The cohort flow was not recorded for this run.", "note"))
    else:
        rows = [[str(step.get("rule", "")), count(int(step.get("removed", 0)), cell),
                 count(int(step.get("remaining", 0)), cell)] for step in cohort["steps"]]
        rows.append(["Final cohort", "", count(int(cohort.get("final", 0)), cell)])
        section.blocks.append(Table("cohort-flow", ["Exclusion rule", "Stays removed", "Stays remaining"],
                                    rows, "ICU stays removed by each inclusion rule, in order."))
    splits = (cohort or {}).get("splits") or {}
    stays = (context.pair_counts or {}).get("stays") or {}
    if splits or stays:
        names = [s for s in ("train", "val", "test") if s in splits or s in stays]
        rows = []
        for split in names:
            with_cxr = stays.get(split, {}).get("with_cxr")
            without = stays.get(split, {}).get("without_cxr")
            rows.append([{"train": "Training", "val": "Validation", "test": "Test"}[split],
                         count(int(splits[split]), cell) if split in splits else "n/a",
                         count(int(with_cxr), cell) if with_cxr is not None else "n/a",
                         count(int(without), cell) if without is not None else "n/a"])
        section.blocks.append(Table("splits", ["Split", "Stays", "With chest X-ray", "Without chest X-ray"],
                                    rows, "Patient-level split: no patient is in two splits."))
    return section


def _prevalence_section(evaluation: TaskEvaluation) -> Section:
    cell = evaluation.settings.min_cell_size
    section = Section("prevalence", "Outcome prevalence in the test set")
    names = [n for n in ("test_partial", "test_paired") if n in evaluation.label_counts]
    header = ["Outcome"] + [f"{SET_SHORT[n]}: positive stays (%)" for n in names]
    rows = []
    for k, label in enumerate(evaluation.labels):
        row = [pretty_label(label)]
        for name in names:
            counts = evaluation.label_counts[name][k]
            shown = count(counts.positives, cell)
            row.append(f"{shown} ({percent(counts.prevalence)})" if shown[0].isdigit() else shown)
        rows.append(row)
    section.blocks.append(Table("prevalence-table", header, rows,
                                "Positive stays per outcome; low prevalence lowers the AUPRC a "
                                "model can reach (its chance level equals the prevalence)."))
    return section


def _headline_section(evaluation: TaskEvaluation) -> Section:
    cell = evaluation.settings.min_cell_size
    metrics = metric_names(evaluation)
    section = Section("headline", "Discrimination: how well each prediction separates outcomes")
    header = ["Test set", "Prediction", "Stays", "Patients", "Events" if not evaluation.multilabel
              else "Positive labels"] + [f"{title} (95% CI)" for _, title in metrics] + ["Valid resamples"]
    rows = []
    for name, result in evaluation.sets.items():
        for head, head_result in result.heads.items():
            valid = min(head_result.summary[m].n_valid for m, _ in metrics)
            rows.append([SET_SHORT[name], HEAD_NAMES[head], count(head_result.n_stays, cell),
                         count(head_result.n_patients, cell), count(head_result.n_events, cell)]
                        + [with_ci(head_result.summary[m]) for m, _ in metrics]
                        + [f"{valid}/{result.n_bootstrap}"])
    section.blocks.append(Table("headline-table", header, rows, label_columns=2, caption=
                                "AUROC and AUPRC with 95% patient-level bootstrap confidence intervals."))
    section.blocks.append(Paragraph(
        "Paired: stays with a chest X-ray; all three predictions are scored on the same stays. "
        "Partial: all test stays; the EHR-only and fused predictions are scored on every stay, the "
        "chest-X-ray-only prediction only on the stays that have an image (it makes no prediction "
        "otherwise), so its partial-set row repeats the paired set's stays."
        + (" Macro: the average of the per-outcome values; micro: all stay-outcome pairs pooled."
           if evaluation.multilabel else ""), "note"))
    figure = roc_pr_png(evaluation.paired_curves, pooled=evaluation.multilabel)
    if figure:
        section.blocks.append(Figure("roc-pr", figure, "ROC and precision-recall curves on the "
                                     "paired test set" + (" (all outcomes pooled, micro-average)"
                                                          if evaluation.multilabel else "") + ".",
                                     "ROC and precision-recall curves per prediction"))
    return section


def _differences_section(evaluation: TaskEvaluation) -> Section:
    metrics = metric_names(evaluation)
    section = Section("differences", "Does adding a modality help? Paired differences")
    header = ["Test set", "Comparison"] + [f"Difference in {title} (95% CI)" for _, title in metrics]
    rows = [[SET_SHORT[name], DIFFERENCE_NAMES.get(pair, pair)]
            + [signed_with_ci(values.get(m)) for m, _ in metrics]
            for name, result in evaluation.sets.items() for pair, values in result.differences.items()]
    section.blocks.append(Table("differences-table", header, rows, label_columns=2, caption=
                                "Differences computed within each bootstrap resample (the same "
                                "patients for both predictions). A CI that excludes 0 indicates a "
                                "difference unlikely to be due to chance."))
    return section


def _per_label_section(evaluation: TaskEvaluation) -> Section | None:
    if not evaluation.multilabel or "test_paired" not in evaluation.sets:
        return None
    cell = evaluation.settings.min_cell_size
    paired = evaluation.sets["test_paired"]
    heads = list(paired.heads)
    header = ["Outcome", "Positive stays", "Prevalence"] + \
             [f"AUROC {HEAD_NAMES[h]}" for h in heads] + [f"AUPRC {HEAD_NAMES[h]}" for h in heads]
    rows = []
    for k, label in enumerate(evaluation.labels):
        counts = evaluation.label_counts["test_paired"][k]
        rows.append([pretty_label(label), count(counts.positives, cell), percent(counts.prevalence)]
                    + [with_ci(paired.heads[h].per_label[label]["auroc"]) for h in heads]
                    + [with_ci(paired.heads[h].per_label[label]["auprc"]) for h in heads])
    section = Section("per-label", "Per-outcome results (paired test set)")
    section.blocks.append(Table("per-label-table", header, rows,
                                "n/a: the outcome has only one class in the test set."))
    return section


def _calibration_section(evaluation: TaskEvaluation) -> Section:
    section = Section("calibration", "Calibration: do predicted probabilities match observed rates?")
    rows = []
    for name, result in evaluation.sets.items():
        for head, head_result in result.heads.items():
            cal = head_result.calibration
            rows.append([SET_SHORT[name], HEAD_NAMES[head], number(cal.brier),
                         number(cal.slope), number(cal.intercept)])
    section.blocks.append(Table("calibration-table", ["Test set", "Prediction", "Brier score",
                                                      "Calibration slope", "Calibration intercept"],
                                rows, label_columns=2, caption="Brier score: mean squared error of the probabilities (lower "
                                "is better). Ideal slope 1 and intercept 0." + (
                                    " Outcomes pooled." if evaluation.multilabel else "")))
    paired = evaluation.sets.get("test_paired")
    if paired:
        figure = reliability_png({h: r.calibration for h, r in paired.heads.items()},
                                 evaluation.settings.min_cell_size)
        if figure:
            section.blocks.append(Figure(
                "reliability", figure,
                f"Reliability curve on the paired test set ({evaluation.settings.calibration_bins} "
                f"equal-width bins; bins with fewer than {evaluation.settings.min_cell_size} "
                "stays are not drawn).", "Reliability curves per prediction"))
    return section


def _subgroup_section(evaluation: TaskEvaluation) -> Section:
    cell = evaluation.settings.min_cell_size
    section = Section("subgroups", "Subgroups (partial test set)")
    heads = evaluation.heads
    metric = "Macro AUROC" if evaluation.multilabel else "AUROC"
    header = ["Subgroup", "Level", "Patients", "Events" if not evaluation.multilabel else
              "Positive labels"] + [f"{metric} {HEAD_NAMES[h]} (95% CI)" for h in heads]
    rows = []
    for row in evaluation.subgroups:
        title = SUBGROUP_TITLES.get(row.subgroup, row.subgroup)
        if row.suppressed:
            rows.append([title, row.level, f"<{cell}", "suppressed"] + ["suppressed"] * len(heads))
            continue
        cells = []
        for head in heads:
            if head not in row.auroc:
                cells.append("n/a (no image)")
            elif row.auroc[head] is None:
                cells.append("suppressed")
            else:
                cells.append(with_ci(row.auroc[head]))
        rows.append([title, row.level, count(row.n_patients, cell), count(row.n_events, cell)] + cells)
    section.blocks.append(Table("subgroup-table", header, rows, label_columns=2, caption=
                                f"Groups with fewer than {cell} patients are suppressed. "
                                "Confidence intervals are wide in small groups."))
    return section


def _training_section(context: ReportContext) -> Section:
    section = Section("training", "Training")
    figure = training_png(context.history)
    if figure:
        section.blocks.append(Figure("training-curves", figure,
                                     "Training loss and validation AUROC per prediction head and epoch.",
                                     "Training curves"))
    else:
        section.blocks.append(Paragraph("No training history was recorded.", "note"))
    balancer = balancer_png(context.history)
    name = (context.config.get("balancing") or {}).get("name", "unknown")
    if balancer:
        section.blocks.append(Figure(
            "balancer", balancer,
            f"Modality balancing ({name}): learning rate of each encoder and the balancer's "
            "statistics per epoch. For MILES, u_ehr and u_cxr are the conditional utilization rates "
            "and delta their difference; the slower-learning modality gets a higher learning rate.",
            "Learning rate and utilization per modality"))
    else:
        section.blocks.append(Paragraph(f"No per-modality learning-rate or balancer statistics were "
                                        f"recorded (balancing: {name}).", "note"))
    return section


def _flatten(prefix: str, value, out: list[list[str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out.append([prefix, str(value)])


def _configuration_section(context: ReportContext) -> Section:
    section = Section("configuration", "Configuration and data version")
    rows: list[list[str]] = []
    for group in CONFIG_GROUPS:
        if group in context.config:
            settings: list[list[str]] = []
            _flatten("", context.config[group], settings)
            rows.append([group, " · ".join(f"{key} = {value}" for key, value in settings)])
    data = context.config.get("data") or {}
    for key in ("mimic_iv_root", "mimic_cxr_root"):
        if key in data:
            rows.append([f"data.{key}", str(data[key])])
    section.blocks.append(Table("configuration-table", ["Setting group", "Values"], rows, label_columns=2,
                                caption="The settings (params.yaml) that produced this report."))
    if context.data_version:
        section.blocks.append(Table("data-version", ["Data stage output", "md5"],
                                    [[path, md5] for path, md5 in context.data_version.items()],
                                    label_columns=2, caption=                                    "Content hashes of the prepared data (dvc.lock)."))
    else:
        section.blocks.append(Paragraph("Data version: unversioned (no dvc.lock found).", "note"))
    return section


def _reading_section(evaluation: TaskEvaluation) -> Section:
    s = evaluation.settings
    return Section("how-to-read", "How to read this report", [Paragraph(
        "AUROC (area under the ROC curve) is the probability that a randomly chosen stay with the "
        "outcome gets a higher predicted risk than one without; 0.5 is chance, 1 is perfect. AUPRC "
        "(average precision) summarizes positive predictive value across sensitivities; its chance "
        "level is the outcome's prevalence, so compare it with the prevalence table. "
        f"Brackets hold {round(100 * s.ci_level)}% confidence intervals from {s.n_bootstrap} bootstrap "
        "resamples of patients (all stays of a drawn patient are kept; seed "
        f"{s.seed}). A difference between two predictions is computed within each resample, so its "
        "interval accounts for the two being scored on the same patients. Cells with fewer than "
        f"{s.min_cell_size} patients are suppressed. See docs/reading-the-report.md.")])


def _limitations_section(context: ReportContext) -> Section:
    text = [
        "Single-centre retrospective data (MIMIC-IV, Beth Israel Deaconess Medical Center); "
        "performance may differ in other hospitals and populations.",
        "Stays without a chest X-ray differ from stays with one (X-rays are ordered for a reason); "
        "results on the paired test set do not transfer to all ICU stays.",
        "Phenotype labels come from billing codes (ICD-9/ICD-10 to CCS) and miss or misclassify "
        "some conditions; mortality is in-hospital only.",
        "Confidence intervals reflect sampling variability of the test patients only, not the "
        "variability of training (a different seed can give a different model).",
        "This is a research model; it has not been validated prospectively and must not guide care.",
    ]
    if context.synthetic:
        text.insert(0, "The data are SYNTHETIC (the project's generated twin of MIMIC): the numbers "
                       "show that the pipeline works and say nothing about real patients.")
    return Section("limitations", "Limitations", [Paragraph(" ".join(f"({i}) {t}" for i, t in
                                                                    enumerate(text, 1)))])


SYNTHETIC_BANNER = ("SYNTHETIC DATA: this report was produced on the generated twin of MIMIC-IV "
                    "and MIMIC-CXR. Its numbers describe no real patient and support no clinical claim.")


def build_task_document(evaluation: TaskEvaluation, context: ReportContext) -> Document:
    fusion = (context.config.get("fusion") or {}).get("name", "?")
    balancing = (context.config.get("balancing") or {}).get("name", "?")
    sections = [
        _reading_section(evaluation),
        _cohort_section(context, evaluation.settings.min_cell_size),
        _prevalence_section(evaluation),
        _headline_section(evaluation),
        _differences_section(evaluation),
        _per_label_section(evaluation),
        _calibration_section(evaluation),
        _subgroup_section(evaluation),
        _training_section(context),
        privacy_section(context.privacy, evaluation.settings.min_cell_size),
        _configuration_section(context),
        _limitations_section(context),
    ]
    return Document(
        title=f"Evaluation report: {TASK_TITLES.get(evaluation.task, pretty_label(evaluation.task))}",
        subtitle=f"Fusion: {fusion} · Modality balancing: {balancing} · "
                 f"{evaluation.settings.n_bootstrap} patient-level bootstrap resamples",
        banner=SYNTHETIC_BANNER if context.synthetic else None,
        summary=summary_text(evaluation),
        sections=[s for s in sections if s is not None])
