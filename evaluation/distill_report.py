"""The MIND comparison table (docs/results.md, reports/distillation.md) from per-run scores.

Input rows (one per task, model, seed, test set and head; written by bench/distill_compare.py):
    {"task", "model", "seed", "set", "head", "auroc", "auprc", "parameters", "ms_per_stay"}
Output: one Markdown table per task, one row per model and head, the mean and standard
deviation over seeds of AUROC/AUPRC on the paired and the partial test set, the number of
seeds, the parameter count and the CPU inference time per stay. Only aggregate metrics enter
(no stay, subject or study identifier), so the table is safe to publish beside the report.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from evaluation.document import Section, Table
from evaluation.plots import HEAD_NAMES

MODEL_ORDER = ("student_distill", "student_plain", "default", "ehr_ensemble", "cxr_ensemble")
MODEL_NAMES = {"student_distill": "Student + distillation (MIND)", "student_plain": "Student, no distillation",
               "default": "Default multi-head model", "ehr_ensemble": "EHR teacher ensemble",
               "cxr_ensemble": "CXR teacher ensemble"}
SETS = ("test_paired", "test_partial")


def _cell(values: list[float]) -> str:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{mean(values):.3f} ± {stdev(values):.3f}"


def _model_key(model: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER), model)


HEADER = ["Model", "Head", "Seeds", "AUROC paired", "AUROC partial", "AUPRC paired", "AUPRC partial",
          "Parameters", "CPU ms / stay"]


def comparison_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[list[str]]]:
    """{task: table rows (HEADER's columns)}: mean ± SD over seeds, one row per model and head."""
    grouped: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
    for row in rows:
        entry = grouped[row["task"]].setdefault((row["model"], row["head"]), {
            "seeds": set(), "parameters": row.get("parameters"), "ms": [], **{f"{s}/{m}": [] for s in SETS
                                                                             for m in ("auroc", "auprc")}})
        entry["seeds"].add(row["seed"])
        entry[f"{row['set']}/auroc"].append(row["auroc"])
        entry[f"{row['set']}/auprc"].append(row["auprc"])
        if row.get("ms_per_stay") is not None:
            entry["ms"].append(row["ms_per_stay"])
    tables: dict[str, list[list[str]]] = {}
    for task, entries in grouped.items():
        lines = []
        for (model, head), e in sorted(entries.items(), key=lambda item: (_model_key(item[0][0]), item[0][1])):
            lines.append([MODEL_NAMES.get(model, model.replace("teacher_", "Teacher ")),
                          HEAD_NAMES.get(head, head), str(len(e["seeds"])),
                          _cell(e["test_paired/auroc"]), _cell(e["test_partial/auroc"]),
                          _cell(e["test_paired/auprc"]), _cell(e["test_partial/auprc"]),
                          f"{e['parameters'] / 1e6:.2f} M" if e["parameters"] else "–",
                          f"{mean(e['ms']):.2f}" if e["ms"] else "–"])
        tables[task] = lines
    return tables


def comparison_tables(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """{task: Markdown table} of `comparison_rows`."""
    return {task: "\n".join(["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
                            + ["| " + " | ".join(line) + " |" for line in lines])
            for task, lines in comparison_rows(rows).items()}


def verdict_text(task_verdict: Mapping[str, float]) -> str:
    return ("Distillation minus no distillation, partial-set AUROC, mean over seeds: " +
            ", ".join(f"{HEAD_NAMES.get(h, h)} {d:+.3f}" for h, d in sorted(task_verdict.items())) + ".")


def distillation_section(path: str | Path) -> Section | None:
    """The index report's MIND comparison section from bench/distill_compare.py's rows.json at
    `path` (<eval.reports_dir>/distillation/rows.json); None when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())
    verdict = distillation_verdict(rows)
    section = Section("distillation", "MIND distillation: student, teachers and the default model")
    for task, lines in comparison_rows(rows).items():
        section.blocks.append(Table(f"distillation-{task}", HEADER, lines, label_columns=2, caption=
                                    f"{task}: mean ± SD over seeds (test sets); teachers and ensembles are "
                                    "trained once. Routed: fused with an X-ray, EHR without (partial set). "
                                    + verdict_text(verdict.get(task, {}))))
    return section


def distillation_verdict(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task and head: mean over seeds of (student with distillation - without), partial set
    AUROC (the routed head: what a deployment serves). Positive: distillation helped."""
    scores: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row["model"] in ("student_distill", "student_plain") and row["set"] == "test_partial":
            scores[(row["task"], row["head"], row["model"])].append(row["auroc"])
    verdict: dict[str, dict[str, float]] = defaultdict(dict)
    for (task, head, model), values in scores.items():
        if model == "student_distill" and (task, head, "student_plain") in scores:
            verdict[task][head] = mean(values) - mean(scores[(task, head, "student_plain")])
    return dict(verdict)
