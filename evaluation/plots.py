"""Figures for the report (matplotlib, Agg backend, PNG bytes) and plot data for DVC plots.

Each head keeps one colour everywhere so a reader can follow "fused" across figures.
Reliability bins with fewer stays than the small-cell threshold are not drawn (a point over
three stays reveals their outcomes).
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from data_prep.io import write_text  # noqa: E402
from evaluation.calibration import Calibration  # noqa: E402
from evaluation.metrics import Curves  # noqa: E402

HEAD_NAMES = {"ehr": "EHR only", "cxr": "Chest X-ray only", "fused": "Fused (EHR + CXR)",
              "routed": "Routed (fused with an X-ray, else EHR)"}
HEAD_COLOURS = {"ehr": "#1f77b4", "cxr": "#ff7f0e", "fused": "#2ca02c", "routed": "#d62728"}
MODALITY_COLOURS = {"ehr": "#1f77b4", "cxr": "#ff7f0e", "shared": "#7f7f7f", "delta": "#9467bd"}


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def roc_pr_png(curves: dict[str, Curves], pooled: bool) -> bytes | None:
    drawable = {h: c for h, c in curves.items() if c.fpr.size}
    if not drawable:
        return None
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.4))
    for head, curve in drawable.items():
        roc.plot(curve.fpr, curve.tpr, color=HEAD_COLOURS[head], label=HEAD_NAMES[head], lw=1.8)
        pr.plot(curve.recall, curve.precision, color=HEAD_COLOURS[head], label=HEAD_NAMES[head],
                lw=1.8, drawstyle="steps-post")
    roc.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1, label="Chance")
    suffix = " (all labels pooled)" if pooled else ""
    roc.set(xlabel="False positive rate (1 - specificity)", ylabel="True positive rate (sensitivity)",
            title=f"ROC curve{suffix}", xlim=(0, 1), ylim=(0, 1.01))
    pr.set(xlabel="Recall (sensitivity)", ylabel="Precision (positive predictive value)",
           title=f"Precision-recall curve{suffix}", xlim=(0, 1), ylim=(0, 1.01))
    for axis in (roc, pr):
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right" if axis is roc else "upper right", fontsize=9)
    return _png(fig)


def reliability_png(calibrations: dict[str, Calibration], min_cell_size: int) -> bytes | None:
    if not calibrations:
        return None
    fig, axis = plt.subplots(figsize=(5.6, 5))
    axis.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1, label="Perfect calibration")
    for head, cal in calibrations.items():
        shown = [b for b in cal.bins if b.n >= min_cell_size]
        if shown:
            axis.plot([b.mean_predicted for b in shown], [b.observed for b in shown], marker="o",
                      color=HEAD_COLOURS[head], label=HEAD_NAMES[head], lw=1.5)
    axis.set(xlabel="Mean predicted probability", ylabel="Observed event rate",
             title="Reliability (calibration) curve", xlim=(0, 1), ylim=(0, 1))
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=9)
    return _png(fig)


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(row.get("epoch", i), row[key]) for i, row in enumerate(history)
              if isinstance(row.get(key), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def training_png(history: list[dict]) -> bytes | None:
    if not history:
        return None
    fig, (loss, auroc) = plt.subplots(1, 2, figsize=(10, 4))
    drew = False
    for head in HEAD_NAMES:
        for axis, key in ((loss, f"train_loss_{head}"), (auroc, f"val_auroc_{head}")):
            epochs, values = _series(history, key)
            if values:
                axis.plot(epochs, values, marker="o", color=HEAD_COLOURS[head], label=HEAD_NAMES[head])
                drew = True
    loss.set(xlabel="Epoch", ylabel="Training loss (BCE)", title="Training loss per head")
    auroc.set(xlabel="Epoch", ylabel="Validation AUROC", title="Validation AUROC per head")
    for axis in (loss, auroc):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=9)
    if not drew:
        plt.close(fig)
        return None
    return _png(fig)


def balancer_png(history: list[dict]) -> bytes | None:
    """Per-modality learning rates and the balancer's utilization statistics over epochs."""
    lr_keys = [k for k in ("lr_ehr", "lr_cxr", "lr_shared") if _series(history, k)[1]]
    stat_keys = sorted({k for row in history for k, v in row.items()
                        if k.startswith("balancer_") and isinstance(v, (int, float))
                        and not isinstance(v, bool)})
    if not lr_keys and not stat_keys:
        return None
    panels = 2 if stat_keys else 1
    fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4), squeeze=False)
    lr_axis = axes[0][0]
    for key in lr_keys:
        epochs, values = _series(history, key)
        modality = key.removeprefix("lr_")
        lr_axis.plot(epochs, values, marker="o", color=MODALITY_COLOURS.get(modality),
                     label=f"{modality.upper() if modality != 'shared' else 'fusion + fused head'}")
    lr_axis.set(xlabel="Epoch", ylabel="Learning rate", title="Learning rate per modality")
    lr_axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    if stat_keys:
        stat_axis = axes[0][1]
        for key in stat_keys:
            epochs, values = _series(history, key)
            name = key.removeprefix("balancer_")
            colour = MODALITY_COLOURS.get(name.removeprefix("u_"))
            stat_axis.plot(epochs, values, marker="o", color=colour, label=name.replace("_", " "))
        stat_axis.axhline(0, color="#cccccc", lw=0.8)
        stat_axis.set(xlabel="Epoch", ylabel="Value", title="Balancer statistics (u: utilization)")
    for axis in axes[0]:
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=9)
    return _png(fig)


def write_curve_csvs(curves: dict[str, Curves], out_dir: str | Path) -> list[Path]:
    """plots/roc_<head>.csv (fpr,tpr) and plots/pr_<head>.csv (recall,precision) for DVC."""
    out_dir = Path(out_dir)
    written = []
    for head, curve in curves.items():
        for name, frame in ((f"roc_{head}.csv", pd.DataFrame({"fpr": curve.fpr, "tpr": curve.tpr})),
                            (f"pr_{head}.csv", pd.DataFrame({"recall": curve.recall,
                                                             "precision": curve.precision}))):
            write_text(out_dir / name, frame.to_csv(index=False, float_format="%.6f"))
            written.append(out_dir / name)
    return written
