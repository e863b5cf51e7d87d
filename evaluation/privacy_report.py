"""The report's privacy section, from <reports>/<task>/privacy.json (audit@<task>).

Kept in its own module so the task report needs one line to show it (report_content.py).
Only aggregates appear: the epsilon spent, the attacks' AUROC and TPR at low FPR with CIs,
and how many patients were attacked (counts below eval.min_cell_size are suppressed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from evaluation.document import Figure, Paragraph, Section, Table
from evaluation.formatting import count

ATTACK_NAMES = {"threshold": "Loss threshold", "calibrated": "Calibrated (reference models)"}


def _ci(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("value") is None or math.isnan(float(entry["value"])):
        return "–"
    low, high = entry.get("ci_low"), entry.get("ci_high")
    bounds = "" if low is None or high is None else f" ({float(low):.2f} to {float(high):.2f})"
    return f"{float(entry['value']):.3f}{bounds}"


def privacy_section(privacy: dict[str, Any] | None, min_cell_size: int = 10) -> Section | None:
    """None when the audit has not run (older runs, reduced pipelines)."""
    if not privacy:
        return None
    spent = privacy.get("privacy") or {}
    if spent.get("private"):
        guarantee = (f"Trained with DP-SGD: (ε = {float(spent['epsilon']):.2f}, δ = {float(spent['delta']):.2g}) "
                     "differential privacy per patient (all of a patient's ICU stays together), for the "
                     "weights and everything computed from them.")
    else:
        guarantee = "Trained without differential privacy: no formal guarantee; the audit below is empirical."
    fprs = [float(f) for f in privacy.get("fpr", [])]
    header = ["Head", "Attack", "Members / non-members", "Attack AUROC (95% CI)",
              *[f"TPR at FPR {f:g}" for f in fprs]]
    rows = []
    for head, entry in (privacy.get("heads") or {}).items():
        counts = f"{count(entry['members'], min_cell_size)} / {count(entry['non_members'], min_cell_size)}"
        for attack, name in ATTACK_NAMES.items():
            if attack in entry:
                rows.append([head, name, counts, _ci(entry[attack].get("auroc")),
                             *[_ci(entry[attack].get(f"tpr_at_fpr_{f:g}")) for f in fprs]])
    references = int(privacy.get("reference_models", 0) or 0)
    calibrated = (f"Calibrated attack: {references} reference models trained on the validation patients "
                  "(docs/privacy.md)." if references else
                  "Only the loss-threshold attack was run (privacy.audit.reference_models=0, the embedded "
                  "default); set it to 2 or more for the calibrated attack (docs/privacy.md).")
    blocks = [Paragraph(guarantee),
              Paragraph("Membership-inference audit: can an attacker holding the model tell a training patient "
                        "from a test patient? An attack AUROC of 0.5 is chance; the TPR at a low FPR is the share "
                        f"of training patients exposed while at most that share of outsiders is accused. {calibrated}",
                        kind="note"),
              Table("privacy-audit", header, rows, caption="Attacks at the patient level, patient-level bootstrap CIs")]
    return Section("privacy", "Privacy", blocks)


def tradeoff_section(folder: str | Path) -> Section | None:
    """The comparison report's privacy-utility trade-off, from what `python -m
    evaluation.privacy_tradeoff aggregate` wrote to `folder` (tradeoff.json, tradeoff.png);
    None when it has not run."""
    from evaluation.privacy_tradeoff import HEADER, table_rows

    folder = Path(folder)
    if not (folder / "tradeoff.json").is_file():
        return None
    rows = json.loads((folder / "tradeoff.json").read_text())
    blocks: list[Any] = [Paragraph(
        "Each point is one model trained with DP-SGD at a target epsilon per patient (or without DP), "
        "scored on the partial test set, and audited: an attack AUROC of 0.5 means the attacker cannot tell "
        "training patients from test patients. Lower epsilon is a stronger guarantee; compare how much "
        "AUROC it costs with how much attack success it removes (docs/privacy.md).", "note")]
    if (folder / "tradeoff.png").is_file():
        blocks.append(Figure("privacy-tradeoff", (folder / "tradeoff.png").read_bytes(),
                             "Left: test AUROC of each head by epsilon; right: the calibrated membership attack's "
                             "AUROC (dotted lines: chance). Bars: 95% patient-level bootstrap CIs.",
                             "Privacy-utility trade-off: AUROC and attack AUROC against epsilon"))
    blocks.append(Table("privacy-tradeoff", HEADER, table_rows(rows), label_columns=4,
                        caption="Utility on the partial test set and the audit's attack AUROC, 95% CIs."))
    return Section("privacy-tradeoff", "Privacy-utility trade-off", blocks)
