"""The MIND comparison table (docs/results.md, reports/distillation.md) from per-run scores.

Input rows (one per task, model, seed, test set and head; written by bench/distill_compare.py):
    {"task", "model", "seed", "set", "head", "auroc", "auprc", "parameters", "ms_per_stay"}
Output: one Markdown table per task, one row per model and head, the mean and standard
deviation over seeds of AUROC/AUPRC on the paired and the partial test set, the number of
seeds, the parameter count and the CPU inference time per stay. Only aggregate metrics enter
(no stay, subject or study identifier), so the table is safe to publish beside the report.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from statistics import mean, stdev
from typing import Any

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


def comparison_tables(rows: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """{task: Markdown table} — mean ± SD over seeds."""
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
    tables = {}
    for task, entries in grouped.items():
        lines = ["| model | head | seeds | AUROC paired | AUROC partial | AUPRC paired | AUPRC partial | "
                 "parameters | CPU ms / stay |", "|---|---|---|---|---|---|---|---|---|"]
        for (model, head), e in sorted(entries.items(), key=lambda item: (_model_key(item[0][0]), item[0][1])):
            name = MODEL_NAMES.get(model, model.replace("teacher_", "teacher "))
            params = f"{e['parameters'] / 1e6:.2f} M" if e["parameters"] else "–"
            ms = f"{mean(e['ms']):.2f}" if e["ms"] else "–"
            lines.append(f"| {name} | {HEAD_NAMES.get(head, head)} | {len(e['seeds'])} | "
                         f"{_cell(e['test_paired/auroc'])} | {_cell(e['test_partial/auroc'])} | "
                         f"{_cell(e['test_paired/auprc'])} | {_cell(e['test_partial/auprc'])} | {params} | {ms} |")
        tables[task] = "\n".join(lines)
    return tables


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
