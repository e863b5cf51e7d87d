"""What reports/index.html says: links to each task's report and the experiments compared.

Experiment metrics come from what DVC recorded (metrics.json of each experiment); all values
are on the paired test set, the one where the three predictions share the same stays.
"""

from __future__ import annotations

from evaluation.bootstrap import Estimate
from evaluation.document import Document, LinkList, Paragraph, Section, Table
from evaluation.experiments import Experiment
from evaluation.formatting import signed_with_ci, with_ci
from evaluation.plots import HEAD_NAMES
from evaluation.report_content import SYNTHETIC_BANNER, TASK_TITLES

SET = "test_paired"
HEAD_ORDER = ("fused", "ehr", "cxr")
KIND_NAMES = {"workspace": "current", "commit": "commit", "experiment": "experiment"}


def metric_estimate(metrics: dict, head: str, metric: str) -> Estimate | None:
    key = f"{SET}/{head}/{metric}"
    value = metrics.get(key)
    if not isinstance(value, (int, float)):
        return None
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    nan = float("nan")
    return Estimate(float(value), float(low) if isinstance(low, (int, float)) else nan,
                    float(high) if isinstance(high, (int, float)) else nan, 0, 0)


def _name(params: dict, group: str) -> str:
    return str((params.get(group) or {}).get("name", "?"))


def experiments_table(experiments: list[Experiment], tasks: list[str]) -> Table:
    header = ["Run", "Type", "Fusion", "Balancing", "Task"] + \
             [f"AUROC {HEAD_NAMES[h]}" for h in HEAD_ORDER] + [f"AUPRC {HEAD_NAMES[h]}" for h in HEAD_ORDER]
    rows = []
    for exp in experiments:
        for task in tasks:
            metrics = exp.metrics.get(task)
            if metrics is None:
                continue
            rows.append([exp.name, KIND_NAMES[exp.kind], _name(exp.params, "fusion"),
                         _name(exp.params, "balancing"), task.replace("_", " ")]
                        + [with_ci(metric_estimate(metrics, h, "auroc")) for h in HEAD_ORDER]
                        + [with_ci(metric_estimate(metrics, h, "auprc")) for h in HEAD_ORDER])
    return Table("experiments-table", header, rows, label_columns=5, caption=(
        "Paired test set; 95% patient-level bootstrap CIs; for phenotyping the macro average over "
        "the 25 outcomes. Values are those DVC recorded for each run."))


def differences_table(differences: dict[tuple[str, str], dict[str, dict[str, Estimate]]]) -> Table:
    header = ["Run", "Task"] + [f"Difference in AUROC, {HEAD_NAMES[h]}" for h in HEAD_ORDER] + \
             ["Difference in AUPRC, Fused (EHR + CXR)"]
    rows = [[name, task.replace("_", " ")]
            + [signed_with_ci(per_head.get(h, {}).get("auroc")) for h in HEAD_ORDER]
            + [signed_with_ci(per_head.get("fused", {}).get("auprc"))]
            for (name, task), per_head in differences.items()]
    return Table("experiment-differences", header, rows, label_columns=2, caption=(
        "Run minus the workspace, on the same test stays and the same bootstrap resamples (paired "
        "CIs). A CI that excludes 0 indicates a difference unlikely to be chance."))


def build_index_document(tasks: list[str], available: list[str], experiments: list[Experiment],
                         differences: dict, synthetic: bool, exp_show_worked: bool) -> Document:
    links = [(TASK_TITLES.get(t, t), f"{t}/report.html") for t in tasks if t in available]
    missing = [t for t in tasks if t not in available]
    report_section = Section("reports", "Task reports", [LinkList(links)])
    if missing:
        report_section.blocks.append(Paragraph(f"No report yet for: {', '.join(missing)}.", "note"))
    comparison = Section("experiments", "Experiments compared", [experiments_table(experiments, tasks)])
    if not exp_show_worked:
        comparison.blocks.append(Paragraph(
            "DVC could not list experiments here (`dvc exp show` failed or this is not a DVC "
            "repository); only the workspace is shown.", "note"))
    comparison.blocks.append(Paragraph(
        "Experiments' outputs live in DVC's cache, not in the workspace, so this table shows the "
        "parameters and metrics DVC recorded for each (`dvc exp show`). Run `dvc exp show` for "
        "every metric, or `dvc exp apply <name>` and `dvc repro` to rebuild an experiment's "
        "full report.", "note"))
    sections = [report_section, comparison]
    if differences:
        sections.append(Section("paired-differences", "Paired differences against the workspace",
                                [differences_table(differences)]))
    return Document(
        title="EHR + chest X-ray fusion: reports and experiments",
        subtitle=f"{len(experiments)} run(s) compared across {len(tasks)} task(s)",
        banner=SYNTHETIC_BANNER if synthetic else None,
        summary=("Each task report holds the cohort, the headline discrimination table with "
                 "confidence intervals, calibration, subgroups and the training traces. The table "
                 "below compares the runs DVC knows (fusion method and modality balancing)."),
        sections=sections)
