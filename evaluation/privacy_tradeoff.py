"""The privacy-utility trade-off: train each task at a few epsilons (and without DP), audit each
model, and put utility and attack success side by side.

    python -m evaluation.privacy_tradeoff run [--epsilons 1 3 8 none] [--tasks ...] [--root runs/privacy_tradeoff] [key=value ...]
    python -m evaluation.privacy_tradeoff aggregate [--root ...] [--out reports/privacy_tradeoff]

`run` calls the stages' own command lines (training.train, training.privacy.membership,
evaluation.privacy_audit) for every point, each into <root>/eps_<e>/ (train.runs_dir and
eval.reports_dir set there), with the overrides given (e.g. train.threads or model=small
settings); a point whose output exists is skipped, so a killed grid resumes. `aggregate`
scores every finished point on the partial test set (AUROC and AUPRC of every head with
patient-level bootstrap CIs, evaluation.assess) and reads its audit (privacy.json), then writes
<out>/tradeoff.md (the table for docs/results.md), tradeoff.json and tradeoff.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from data_prep.io import write_json, write_text
from evaluation.assess import EvalSettings, evaluate_task
from evaluation.inputs import read_predictions

log = logging.getLogger(__name__)
TASKS = ("in_hospital_mortality", "phenotyping")


def point_name(epsilon: str) -> str:
    return "no_dp" if epsilon == "none" else f"eps_{float(epsilon):g}"


def point_overrides(epsilon: str, root: Path) -> list[str]:
    run = root / point_name(epsilon)
    privacy = ["privacy.enabled=false"] if epsilon == "none" else \
        ["privacy.enabled=true", f"privacy.target_epsilon={float(epsilon)}"]
    return [*privacy, f"train.runs_dir={run / 'runs'}", f"eval.reports_dir={run / 'reports'}"]


def _stage(module: str, task: str, overrides: list[str], params: str | None) -> None:
    command = [sys.executable, "-m", module, "--task", task, *(["--params", params] if params else []), *overrides]
    log.info("running %s", " ".join(command))
    subprocess.run(command, check=True)


def run_grid(tasks: list[str], epsilons: list[str], root: Path, extra: list[str], params: str | None) -> None:
    for epsilon in epsilons:
        overrides = [*point_overrides(epsilon, root), *extra]
        run = root / point_name(epsilon)
        for task in tasks:
            if not (run / "runs" / task / "predictions.parquet").exists():
                _stage("training.train", task, [*overrides], params)
            if not (run / "runs" / task / "audit" / "membership.parquet").exists():
                _stage("training.privacy.membership", task, overrides, params)
            if not (run / "reports" / task / "privacy.json").exists():
                _stage("evaluation.privacy_audit", task, overrides, params)


def _est(est: Any) -> dict[str, float]:
    return {"value": est.value, "ci_low": est.ci_low, "ci_high": est.ci_high}


def aggregate(root: Path, n_bootstrap: int, seed: int) -> list[dict[str, Any]]:
    """One row per finished (task, point)."""
    rows = []
    for point in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        for task in TASKS:
            predictions = point / "runs" / task / "predictions.parquet"
            privacy = point / "reports" / task / "privacy.json"
            if not predictions.exists() or not privacy.exists():
                continue
            evaluation = evaluate_task(task, read_predictions(predictions), None,
                                       EvalSettings(n_bootstrap=n_bootstrap, seed=seed))
            audit = json.loads(privacy.read_text())
            partial = evaluation.sets["test_partial"]
            rows.append({"task": task, "point": point.name, "epsilon": audit["privacy"].get("epsilon"),
                         "utility": {head: {metric: _est(result.summary[metric]) for metric in ("auroc", "auprc")}
                                     for head, result in partial.heads.items()},
                         "attack": {head: {attack: entry[attack]["auroc"] for attack in ("threshold", "calibrated")
                                           if attack in entry} for head, entry in audit["heads"].items()},
                         "attack_tpr": {head: {attack: {k: v for k, v in entry[attack].items() if k != "auroc"}
                                               for attack in ("threshold", "calibrated") if attack in entry}
                                        for head, entry in audit["heads"].items()}})
    return rows


def _ci(entry: dict[str, float | None]) -> str:
    value, low, high = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    bounds = "" if low is None or high is None or math.isnan(low) else f" ({low:.2f}–{high:.2f})"
    return f"{value:.3f}{bounds}"


HEADER = ["task", "privacy", "epsilon spent", "head", "AUROC (95% CI)", "AUPRC (95% CI)",
          "attack AUROC: threshold", "attack AUROC: calibrated"]


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """One line per (task, point, head): what docs/results.md and the comparison report show."""
    lines = []
    for row in sorted(rows, key=lambda r: (r["task"], r["epsilon"] is None, r["epsilon"] or 0)):
        label = "no DP" if row["epsilon"] is None else row["point"].replace("eps_", "target ε = ")
        spent = "–" if row["epsilon"] is None else f"{row['epsilon']:.2f}"
        for head, metrics in row["utility"].items():
            attack = row["attack"].get(head, {})
            lines.append([row["task"], label, spent, head, _ci(metrics["auroc"]), _ci(metrics["auprc"]),
                          _ci(attack.get("threshold", {})), _ci(attack.get("calibrated", {}))])
    return lines


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Per task: each head's test AUROC (left) and the calibrated attack's AUROC (right) against epsilon."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = sorted({row["task"] for row in rows})
    if not tasks:
        return
    fig, axes = plt.subplots(len(tasks), 2, figsize=(10, 3.6 * len(tasks)), squeeze=False)
    for t, task in enumerate(tasks):
        # one evenly spaced position per point: private ones by epsilon, no DP last
        task_rows = sorted((r for r in rows if r["task"] == task),
                           key=lambda r: (r["epsilon"] is None, r["epsilon"] or 0.0))
        xs = list(range(len(task_rows)))
        names = ["no DP" if r["epsilon"] is None else f"ε = {r['epsilon']:.2g}" for r in task_rows]
        for column, (title, getter) in enumerate((
                ("test AUROC", lambda r, h: r["utility"].get(h, {}).get("auroc")),
                ("attack AUROC (calibrated)", lambda r, h: r["attack"].get(h, {}).get("calibrated")))):
            ax = axes[t][column]
            for shift, head in zip((-0.08, 0.0, 0.08), ("ehr", "cxr", "fused"), strict=True):
                points = [(x + shift, getter(r, head)) for x, r in zip(xs, task_rows, strict=True) if getter(r, head)]
                if not points:
                    continue
                x, est = zip(*points, strict=True)
                value = [e["value"] for e in est]
                low = [e["value"] - (e["ci_low"] if e["ci_low"] is not None else e["value"]) for e in est]
                high = [(e["ci_high"] if e["ci_high"] is not None else e["value"]) - e["value"] for e in est]
                ax.errorbar(x, value, yerr=[low, high], marker="o", capsize=3, label=head)
            ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)  # chance, for both panels
            ax.set_xticks(xs)
            ax.set_xticklabels(names)
            ax.set_xlabel("epsilon spent per patient (δ as in the table)")
            ax.set_title(f"{task}: {title}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


MARKERS = ("<!-- privacy:tradeoff:start -->", "<!-- privacy:tradeoff:end -->")


def write_docs_block(docs: Path, rows: list[dict[str, Any]], png: Path, note: str) -> None:
    """Replace the text between the markers of `docs` with the table and a link to the plot."""
    text = docs.read_text()
    start, end = MARKERS
    if start not in text or end not in text:
        raise SystemExit(f"error: {docs} has no {start} ... {end} block")
    image = docs.parent / "img" / "privacy_tradeoff.png"
    block = [note, ""] if note else []
    if png.exists():
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(png.read_bytes())
        block += [f"![privacy-utility trade-off]({image.relative_to(docs.parent).as_posix()})", ""]
    block.append(markdown_table(rows) if rows else "Not run yet.")
    head, rest = text.split(start, 1)
    write_text(docs, head + start + "\n" + "\n".join(block).rstrip() + "\n" + end + rest.split(end, 1)[1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; `key=value` settings may follow `--epsilons` directly (argparse's `+`
    would otherwise swallow them as epsilons, and the grid would silently run the defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "aggregate"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--epsilons", nargs="+", default=["1", "3", "8", "none"])
    parser.add_argument("--root", type=Path, default=Path("runs/privacy_tradeoff"))
    parser.add_argument("--out", type=Path, default=Path("reports/privacy_tradeoff"))
    parser.add_argument("--params", default=None)
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1002)
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write the table between the privacy:tradeoff markers of this file "
                             "(docs/results.md) and copy the plot beside it (docs/img/privacy_tradeoff.png)")
    parser.add_argument("--note", default="", help="a line placed above the table (the grid's settings)")
    parser.add_argument("overrides", nargs="*", help="key=value settings for every point")
    args = parser.parse_intermixed_args(argv)
    args.overrides = [item for item in args.epsilons if "=" in item] + list(args.overrides)
    args.epsilons = [item for item in args.epsilons if "=" not in item]
    for epsilon in args.epsilons:
        try:
            valid = epsilon == "none" or float(epsilon) > 0
        except ValueError:
            valid = False
        if not valid:
            parser.error(f"--epsilons {epsilon!r}: expected 'none' or a positive number")
    return args


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.action == "run":
        run_grid(args.tasks, args.epsilons, args.root, args.overrides, args.params)
        return
    rows = aggregate(args.root, args.n_bootstrap, args.seed)
    write_json(args.out / "tradeoff.json", rows)
    write_text(args.out / "tradeoff.md", markdown_table(rows))
    plot(rows, args.out / "tradeoff.png")
    if args.docs is not None:
        write_docs_block(args.docs, rows, args.out / "tradeoff.png", args.note)
    log.info("wrote %s/{tradeoff.md, tradeoff.json, tradeoff.png} (%d points)", args.out, len(rows))


if __name__ == "__main__":
    main()
