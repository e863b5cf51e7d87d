"""Choose a method's default settings from a study's *validation* results, by a rule fixed in advance.

Issue 15 asks for MILES's default metric scale, tau and mu to be chosen from the sensitivity
grid's validation results, never the test set. Eyeballing a 24-row table invites choosing
whatever looks best by chance, so the rule is code, written before the grid ran
(docs/methods/study.md, "Choosing the defaults"):

1. A candidate is a setting whose fused-head AUROC difference against `balancing=none` (the
   paired validation difference, mean over seeds, CI over patients and seeds) has its CI above
   0 on every task reported: it is shown to help, not merely ranked first.
2. Among candidates, the largest mean difference (averaged over tasks) wins, and it replaces
   the current default only if its mean is larger than the current default's.
3. Otherwise the current default (the paper's rule) stays, and the reason says which case held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HEAD, METRIC = "fused", "auroc"


@dataclass(frozen=True)
class Choice:
    method: str          # the chosen method's label (as in the study tables)
    overrides: tuple[str, ...]
    changed: bool        # True when it differs from the current default
    reason: str


def _fused_diffs(summary: dict[str, Any]) -> dict[str, dict[str, dict]]:
    """{method label: {task: fused AUROC difference against its reference}} for compared methods."""
    diffs: dict[str, dict[str, dict]] = {}
    for task, task_summary in summary["tasks"].items():
        for method in task_summary["methods"]:
            diff = ((method["heads"].get(HEAD) or {}).get("diff") or {}).get(METRIC)
            if method["reference"] is not None and diff:
                diffs.setdefault(method["method"], {})[task] = diff
    return diffs


def _overrides(summary: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    return {method["method"]: tuple(method["overrides"])
            for task_summary in summary["tasks"].values() for method in task_summary["methods"]}


def choose_default(summary: dict[str, Any], current: dict[str, str]) -> Choice:
    """Apply the rule to a validation summary; `current` maps keys to the current default's values
    (for MILES: {"balancing.tau": "0.2", "balancing.mu": "0.5", "balancing.scale": "raw"})."""
    if summary.get("split") != "val":
        raise ValueError(f"defaults are chosen on validation results, not on split {summary.get('split')!r}")
    tasks = list(summary["tasks"])
    diffs = {label: by_task for label, by_task in _fused_diffs(summary).items() if set(by_task) == set(tasks)}
    overrides = _overrides(summary)
    wanted = {f"{key}={value}" for key, value in current.items()}
    defaults = [label for label in diffs if wanted <= set(overrides[label])]
    if len(defaults) != 1:
        raise ValueError(f"the current default ({', '.join(sorted(wanted))}) is not one method of the summary")
    default = defaults[0]

    def mean(label: str) -> float:
        return sum(diffs[label][task]["mean"] for task in tasks) / len(tasks)

    shown = [label for label in diffs if all(diffs[label][task]["low"] > 0 for task in tasks)]
    where = " and ".join(tasks)
    if not shown:
        return Choice(default, overrides[default], False,
                      f"no setting's validation {HEAD} {METRIC.upper()} was shown above balancing=none "
                      f"(CI above 0) on {where}; the current default stays (its difference {mean(default):+.3f}).")
    best = max(shown, key=mean)
    if best == default or mean(best) <= mean(default):
        return Choice(default, overrides[default], False,
                      f"the current default is shown above balancing=none on {where} "
                      f"({mean(default):+.3f}) and no shown setting has a larger mean; it stays."
                      if default in shown else
                      f"{len(shown)} setting(s) shown above balancing=none on {where}, none with a larger mean "
                      f"difference than the current default's ({mean(default):+.3f}); it stays.")
    return Choice(best, overrides[best], True,
                  f"{best} is shown above balancing=none on {where} (validation {HEAD} {METRIC.upper()} "
                  f"difference {mean(best):+.3f}, CI above 0) and has the largest mean of the "
                  f"{len(shown)} shown; the current default's was {mean(default):+.3f}.")
