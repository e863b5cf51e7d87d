"""Choose settings from a study's *validation* results, by rules fixed in advance.

Each rule is registered under a name, and a grid names the rule that reads it (`Grid.choose`):

- `beats_none` (the `sensitivity` grid): MILES's default metric scale, tau and mu, below.
- `best_unimodal_lr` (the `unimodal-lr` grid): MSLR-K's and MSLR-S's per-modality
  multipliers, each encoder's best learning rate alone (Yao and Mihalcea 2022) relative to
  `train.lr`; until that grid has run they are 1.0, which is plain joint training.

The `beats_none` rule:

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

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import OmegaConf

from evaluation.study.grids import override_values
from models.registry import Registry

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
    _require_validation(summary)
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
    if mean(best) <= mean(default):  # the default itself among them included
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


def _require_validation(summary: dict[str, Any]) -> None:
    if summary.get("split") != "val":
        raise ValueError(f"settings are chosen on validation results, not on split {summary.get('split')!r}")


def best_unimodal_multipliers(summary: dict[str, Any], base_lr: float) -> Choice:
    """For each modality, the `train.lr` whose encoder trained alone has the best mean validation
    AUROC over seeds (averaged over tasks), as a multiplier of `base_lr`. A tuning step, not a
    claim, so the best mean wins without a CI test; ties go to the rate nearer `base_lr`."""
    _require_validation(summary)
    scores: dict[str, dict[float, list[float]]] = {}
    for task_summary in summary["tasks"].values():
        for method in task_summary["methods"]:
            values = override_values(method["overrides"])
            if values.get("regime") != "unimodal" or "train.lr" not in values:
                continue
            modality = values.get("regime.modality", "ehr")
            auroc = ((method["heads"].get(modality) or {}).get(METRIC) or {}).get("mean")
            if auroc is not None:
                scores.setdefault(modality, {}).setdefault(float(values["train.lr"]), []).append(auroc)
    if not scores:
        raise ValueError("no unimodal cells with a train.lr in the summary (expected the unimodal-lr grid)")
    chosen = {modality: max(by_lr, key=lambda lr: (sum(by_lr[lr]) / len(by_lr[lr]), -abs(math.log(lr / base_lr))))
              for modality, by_lr in sorted(scores.items())}
    multipliers = {modality: round(lr / base_lr, 6) for modality, lr in chosen.items()}
    overrides = tuple(f"balancing.unimodal_multipliers.{m}={value:g}" for m, value in multipliers.items())
    label = ", ".join(f"{m} x{value:g}" for m, value in multipliers.items())
    detail = "; ".join(f"{m}: " + ", ".join(f"{lr:g} -> {sum(v) / len(v):.3f}" for lr, v in sorted(by_lr.items()))
                       for m, by_lr in sorted(scores.items()))
    return Choice(label, overrides, any(value != 1.0 for value in multipliers.values()),
                  f"best mean validation AUROC of each encoder alone by learning rate ({detail}); set these "
                  "as unimodal_multipliers in configs/balancing/mslr_k.yaml and mslr_s.yaml.")


CHOOSERS: Registry[Choice] = Registry("study choice rule")
"""name -> rule(grid, validation summary, composed settings) -> Choice; `Grid.choose` names one."""


@CHOOSERS.register("beats_none")
def _beats_none(grid: Any, summary: dict[str, Any], config: dict[str, Any]) -> Choice:
    """The current values of the grid's dotted factors (balancing.tau, ...) are the default."""
    settings = OmegaConf.create(config)
    current = {key: str(OmegaConf.select(settings, key)) for key in sorted(k for k in grid.factors if "." in k)}
    return choose_default(summary, current)


@CHOOSERS.register("best_unimodal_lr")
def _best_unimodal_lr(grid: Any, summary: dict[str, Any], config: dict[str, Any]) -> Choice:
    return best_unimodal_multipliers(summary, float(config["train"]["lr"]))
