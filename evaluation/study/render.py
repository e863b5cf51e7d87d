"""A study's tables, statements and learning-rate figure, as report sections and as Markdown.

The same sections go into reports/study/<grid>/index.html, reports/study/<grid>/results.md,
the comparison report (reports/index.html, evaluation/index_report.py) and, with --docs, the
grid's block of docs/results.md, so every place shows the same numbers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from data_prep.io import write_json, write_text  # noqa: E402
from evaluation.bootstrap import Estimate  # noqa: E402
from evaluation.document import Document, Figure, Paragraph, Section, Table  # noqa: E402
from evaluation.formatting import number, signed_with_ci, with_ci  # noqa: E402
from evaluation.plots import HEAD_NAMES, MODALITY_COLOURS, _png  # noqa: E402
from evaluation.render_html import render_html  # noqa: E402
from evaluation.render_md import render_markdown, render_sections  # noqa: E402
from evaluation.report_content import TASK_TITLES  # noqa: E402
from evaluation.study.grids import Grid  # noqa: E402
from evaluation.study.labels import method_display  # noqa: E402

HEAD_ORDER = ("fused", "ehr", "cxr")
SPLIT_NAMES = {"test": "test", "val": "validation"}
METRIC_NAMES = {"auroc": "AUROC", "auprc": "AUPRC"}


def _estimate(entry: dict | None) -> Estimate | None:
    if not entry:
        return None
    return Estimate(entry["mean"], entry["low"], entry["high"], 0, 0)


def verdict(entry: dict | None) -> str:
    """'higher' / 'lower' when the CI excludes 0, else 'no difference shown'."""
    if not entry or not math.isfinite(entry.get("low", math.nan)):
        return "not estimable"
    if entry["low"] > 0:
        return "higher"
    if entry["high"] < 0:
        return "lower"
    return "no difference shown"


def split_of(summary: dict) -> str:
    return str(summary.get("split", "test"))


def report_name(grid: Grid, split: str) -> str:
    """How a report names itself (titles, section ids, the docs block's markers): a validation
    report says so everywhere, so that no one reads tuning numbers as test results."""
    return grid.name if split == "test" else f"{grid.name}-{split}"


def report_command(grid: Grid, split: str) -> str:
    return f"python -m evaluation.study report {grid.name}" + ("" if split == "test" else f" --split {split}")


def methods_table(task: str, summary: dict, split: str = "test") -> Table:
    header = ["Method", "Seeds", "Head", "AUROC", "AUROC vs reference", "AUPRC", "AUPRC vs reference",
              "AUROC vs encoder alone", "Epoch time vs reference"]
    rows = []
    for method in summary["methods"]:
        for head in HEAD_ORDER:
            entry = method["heads"].get(head)
            if entry is None:
                continue
            diff, alone = entry.get("diff") or {}, entry.get("vs_alone") or {}
            cost = method.get("cost_ratio")
            rows.append([method_display(method), str(len(method["seeds"])), HEAD_NAMES[head],
                         with_ci(_estimate(entry.get("auroc"))), signed_with_ci(_estimate(diff.get("auroc"))),
                         with_ci(_estimate(entry.get("auprc"))), signed_with_ci(_estimate(diff.get("auprc"))),
                         signed_with_ci(_estimate(alone.get("auroc"))),
                         f"{number(cost, 2)}x" if cost is not None else "-"])
    return Table(f"study-{task}", header, rows, label_columns=3, caption=(
        f"{TASK_TITLES.get(task, task)}: paired {SPLIT_NAMES.get(split, split)} set ({summary['n_stays']:,} stays, "
        f"{summary['n_patients']:,} patients), mean over seeds; 95% CIs from a bootstrap over "
        "patients and seeds. 'vs reference' is the paired difference against the method's "
        "reference (no balancing, with the same other settings); 'vs encoder alone' is the "
        "head minus the same encoder trained alone (regime=unimodal); n/a where it does not apply. "
        "AUPRC intervals sit above their estimate: resampling patients raises average precision "
        "(docs/reading-the-report.md), so compare AUPRCs by their paired differences."))


def _greedy_statements(task: str, summary: dict) -> list[str]:
    lines = []
    for method in summary["methods"]:
        if method["reference"] is not None:
            continue
        for head in ("cxr", "ehr"):
            alone = ((method["heads"].get(head) or {}).get("vs_alone") or {}).get("auroc")
            if not alone:
                continue
            finding = {"lower": "under-trained: lower than", "higher": "better than",
                       "no difference shown": "not distinguishable from"}.get(verdict(alone), "not estimable against")
            lines.append(f"{TASK_TITLES.get(task, task)}, {method_display(method)}: the {HEAD_NAMES[head]} head of the "
                         f"jointly trained model is {finding} the same encoder trained alone "
                         f"(AUROC difference {signed_with_ci(_estimate(alone))}, {alone['n_seeds']} seeds).")
    return lines


def _comparison_statements(task: str, summary: dict) -> list[str]:
    groups: dict[str, list[str]] = {"higher": [], "lower": [], "no difference shown": [], "not estimable": []}
    for method in summary["methods"]:
        diff = ((method["heads"].get("fused") or {}).get("diff") or {}).get("auroc")
        if method["reference"] is not None and diff:
            groups[verdict(diff)].append(f"{method_display(method)} ({diff['mean']:+.3f})")
    if not any(groups.values()):
        return []
    parts = [f"{len(v)} {k} ({', '.join(v)})" if v else f"0 {k}" for k, v in groups.items() if k != "not estimable"]
    return [f"{TASK_TITLES.get(task, task)}, fused AUROC against the reference: " + "; ".join(parts) + "."]


def lr_figure(task: str, summary: dict) -> Figure | None:
    """Per-modality learning-rate multipliers of the methods whose rates moved."""
    moving = [m for m in summary["methods"]
              if any(abs(v - 1.0) > 1e-9 for modality in ("ehr", "cxr") for v in m["lr_trace"].get(modality, []))]
    if not moving:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for k, method in enumerate(moving):
        trace = method["lr_trace"]
        for modality, style in (("ehr", "-"), ("cxr", "--")):
            if modality in trace:
                ax.plot(trace["epoch"], trace[modality], style, marker="o", markersize=3,
                        color=plt.cm.tab10(k % 10) if len(moving) > 1 else MODALITY_COLOURS[modality],
                        label=f"{method_display(method)}: {modality.upper()}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning-rate multiplier")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return Figure(f"study-lr-{task}", _png(fig),
                  f"{TASK_TITLES.get(task, task)}: each modality's learning rate relative to the global "
                  "schedule, mean over seeds (solid EHR, dashed CXR).",
                  "Line chart of per-modality learning-rate multipliers by epoch")


def provenance_line(summary: dict) -> str | None:
    """Which backend ran the cells and at which commit(s) (evaluation/study/local.py, runner.py)."""
    provenance = summary.get("provenance") or {}
    if not provenance.get("backends"):
        return None
    how = {"dvc": "DVC experiments (`study run`)", "local": "plain processes (`study run --backend local`)"}
    backends = " and ".join(how.get(b, b) for b in provenance["backends"])
    return f"Cells run as {backends}, code at commit {', '.join(provenance.get('commits') or ['unknown'])}."


def lr_trace_lines(task: str, summary: dict) -> list[str]:
    """The learning-rate figure as text (for Markdown without images): every method whose
    per-modality multiplier moved, epoch by epoch, mean over seeds."""
    lines = []
    for method in summary["methods"]:
        trace = method["lr_trace"]
        if not any(abs(v - 1.0) > 1e-9 for modality in ("ehr", "cxr") for v in trace.get(modality, [])):
            continue
        parts = [f"{modality.upper()} " + " ".join(f"{v:.2f}" for v in trace[modality])
                 for modality in ("ehr", "cxr") if modality in trace]
        lines.append(f"{method_display(method)}: " + "; ".join(parts))
    if not lines:
        return [f"{TASK_TITLES.get(task, task)}: no method changed a modality's learning rate."]
    return [f"{TASK_TITLES.get(task, task)}, learning-rate multipliers by epoch (mean over seeds; 1.00 = the "
            "global schedule): " + " | ".join(lines) + "."]


def study_sections(grid: Grid, summary: dict, figures: bool = True) -> list[Section]:
    sections, split = [], split_of(summary)
    name = report_name(grid, split)
    for index, (task, task_summary) in enumerate(summary["tasks"].items()):
        blocks: list[Any] = [methods_table(task, task_summary, split)]
        provenance = provenance_line(summary)
        if index == 0 and provenance:
            blocks.insert(0, Paragraph(provenance, "note"))
        blocks += [Paragraph(line) for line in _greedy_statements(task, task_summary)
                   + _comparison_statements(task, task_summary)]
        figure = lr_figure(task, task_summary) if figures else None
        if figure:
            blocks.append(figure)
        elif not figures:
            blocks += [Paragraph(line) for line in lr_trace_lines(task, task_summary)]
        title = TASK_TITLES.get(task, task)
        sections.append(Section(f"study-{name}-{task}", f"Study {name}: {title}", blocks,
                                nav=f"{name}: {title.split(' (')[0]}"))
    if not sections:
        sections.append(Section(f"study-{name}", f"Study {name}",
                                [Paragraph("No finished experiments collected yet.", "note")]))
    left_out = summary.get("tasks_left_out") or []
    if left_out:
        sections[0].blocks.insert(0, Paragraph(left_out_line(grid, left_out), "note"))
    return sections


def left_out_line(grid: Grid, tasks: list[str]) -> str:
    """Said where a report covers only some tasks (`--tasks`), so no reader takes it for the grid."""
    names = ", ".join(TASK_TITLES.get(task, task) for task in tasks)
    return (f"Not in this report: {names} (reported with --tasks; `python -m evaluation.study run {grid.name}` "
            "without --tasks trains the rest, then `report` shows every task).")


def study_document(grid: Grid, summary: dict) -> Document:
    split = split_of(summary)
    return Document(title=f"Study {report_name(grid, split)}", subtitle=grid.description, banner=None,
                    summary=f"Seeds {', '.join(map(str, grid.seeds))}; budget: {grid.budget}. Command: "
                            f"`python -m evaluation.study run {grid.name}` then `{report_command(grid, split)}`.",
                    sections=study_sections(grid, summary))


def replace_block(text: str, grid: str, block: str) -> str:
    """Replace (or append) the text between the grid's markers in a Markdown file."""
    start, end = f"<!-- study:{grid}:start -->", f"<!-- study:{grid}:end -->"
    new = f"{start}\n{block.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    return pattern.sub(lambda _: new, text) if pattern.search(text) else text.rstrip() + "\n\n" + new + "\n"


def report_paths(folder: Path, split: str = "test") -> tuple[Path, Path, Path]:
    """A study report's summary.json, results.md and index.html; another split's carry its name
    (summary_val.json, ...) so a validation report never replaces the test report."""
    suffix = "" if split == "test" else f"_{split}"
    return (Path(folder) / f"summary{suffix}.json", Path(folder) / f"results{suffix}.md",
            Path(folder) / f"index{suffix}.html")


def write_study_report(grid: Grid, summary: dict, folder: Path, docs: Path | None = None) -> list[Path]:
    document, split = study_document(grid, summary), split_of(summary)
    written = list(report_paths(folder, split))
    write_json(written[0], summary)
    footer = f"Built by `{report_command(grid, split)}`."
    write_text(written[1], render_markdown(document, footer=footer))
    write_text(written[2], render_html(document, footer=footer))
    if docs is not None:
        body = render_sections(study_sections(grid, summary, figures=False))
        docs = Path(docs)
        text = docs.read_text() if docs.is_file() else "# Results\n"
        write_text(docs, replace_block(text, report_name(grid, split), body))
        written.append(docs)
    return written
