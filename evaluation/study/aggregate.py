"""Aggregate a grid across seeds: means with CIs over patients and seeds, paired differences.

The uncertainty of a method's mean over seeds has two sources: which patients happen to be in
the test set, and which seeds happen to have been run. We use a two-stage (hierarchical)
bootstrap. Every replicate b draws patients with replacement (the patient-level resamples of
evaluation/bootstrap.py, identical for every cell because every cell is scored on the same
paired test stays with the same seed) and, independently, S seeds with replacement from the
S seeds run; the replicate's value is the mean, over the drawn seeds, of each drawn seed's
metric on the drawn patients. The percentile interval over replicates is the CI. A paired
difference (method minus reference, or a joint head minus the same encoder trained alone)
pairs cells by seed and uses the same patient and seed draws for both sides, so what the two
share (the test patients, the seed's data order) cancels. With 3 seeds the seed stage is
coarse; the CI then mostly reflects the patients, and the report says how many seeds each
figure rests on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.assess import EvalSettings, head_rows, set_rows
from evaluation.bootstrap import patient_resamples
from evaluation.inputs import Predictions, predictions_from_frame
from evaluation.scoring import METRICS, score_head
from evaluation.study.collect import cell_provenance, parquet_frame, read_cell
from evaluation.study.grids import Grid, method_label
from models.names import HEADS, MODALITIES

log = logging.getLogger(__name__)
PAIRED = "test_paired"


@dataclass
class CellScores:
    """One cell's metric on the paired set: point and per-patient-resample replicates."""

    seed: int
    point: dict[tuple[str, str], float] = field(default_factory=dict)         # (head, metric)
    replicates: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def _summary(point: float, replicates: np.ndarray, ci_level: float, n_seeds: int) -> dict[str, float]:
    valid = replicates[np.isfinite(replicates)]
    tail = (1 - ci_level) / 2 * 100
    low, high = (np.percentile(valid, [tail, 100 - tail]) if valid.size else (np.nan, np.nan))
    return {"mean": float(point), "low": float(low), "high": float(high), "n_seeds": n_seeds}


class SeedPatientBootstrap:
    """Shared seed draws: replicate b averages the seeds seed_draws[b] (indices into a list)."""

    def __init__(self, n_bootstrap: int, seed: int) -> None:
        self.n_bootstrap, self.seed = n_bootstrap, seed
        self._draws: dict[int, np.ndarray] = {}

    def draws(self, n_seeds: int) -> np.ndarray:
        if n_seeds not in self._draws:
            rng = np.random.default_rng([self.seed, n_seeds])
            self._draws[n_seeds] = rng.integers(0, n_seeds, size=(self.n_bootstrap, n_seeds))
        return self._draws[n_seeds]

    def mean(self, points: list[float], replicates: list[np.ndarray]) -> tuple[float, np.ndarray]:
        """Mean over seeds and its replicates (patients and seeds resampled together)."""
        stacked = np.vstack(replicates)                       # [S, B]
        draws = self.draws(len(points))                       # [B, S]
        columns = np.arange(stacked.shape[1])[:, None]
        return float(np.mean(points)), stacked[draws, columns].mean(axis=1)


def score_cell(predictions: Predictions, rows: np.ndarray, resamples, seed: int) -> CellScores:
    scores = CellScores(seed)
    subjects = predictions.frame["subject_id"].to_numpy()
    for head in predictions.heads:
        selected = head_rows(predictions, rows, head)
        if not selected.any():
            continue
        scored = score_head(predictions.y(selected), predictions.p(head, selected), predictions.labels,
                            resamples.stay_weights(subjects[selected]), micro=False)
        for metric in METRICS:
            scores.point[(head, metric)] = scored.summary[metric].point
            scores.replicates[(head, metric)] = scored.summary[metric].replicates
    return scores


def _aligned_to(reference: Predictions, other: Predictions, name: str) -> Predictions:
    frame = other.frame.set_index("stay_id").reindex(reference.frame["stay_id"].to_numpy())
    if frame["subject_id"].isna().any() or other.labels != reference.labels:
        raise ValueError(f"{name}: its test stays or labels differ from the grid's other cells "
                         "(a different twin or recipe?); collect the grid again after rerunning it")
    return Predictions(frame.reset_index(), other.labels, other.heads)


def load_task_cells(grid: Grid, study_dir: Path, task: str, split: str = "test"
                    ) -> tuple[Predictions | None, dict[tuple[str, ...], dict[int, tuple[Predictions, list]]]]:
    """{method: {seed: (predictions aligned to the first cell, history)}} of the collected cells."""
    cells: dict[tuple[str, ...], dict[int, tuple[Predictions, list]]] = {}
    reference: Predictions | None = None
    for cell in grid.cells():
        loaded = read_cell(study_dir, cell.name, task)
        if loaded is None:
            continue
        content, history = loaded
        predictions = predictions_from_frame(parquet_frame(content), f"{cell.name}:{task}", split)
        if reference is None:
            reference = predictions
        else:
            predictions = _aligned_to(reference, predictions, cell.name)
        cells.setdefault(cell.method, {})[cell.seed] = (predictions, history)
    return reference, cells


def lr_trace(histories: list[list[dict]]) -> dict[str, list[float]]:
    """Per-epoch mean over seeds of each modality's learning-rate multiplier (lr_m / lr_global)."""
    epochs = min((len(h) for h in histories), default=0)
    trace: dict[str, list[float]] = {"epoch": list(range(epochs))}
    for modality in MODALITIES:
        values = [[row[f"lr_{modality}"] / row["lr_global"] for row in h[:epochs]]
                  for h in histories if h and f"lr_{modality}" in h[0] and h[0].get("lr_global")]
        if values:
            trace[modality] = [float(v) for v in np.mean(values, axis=0)]
    return trace


def epoch_seconds(histories: list[list[dict]]) -> float:
    """Median seconds per training epoch over seeds and epochs (the first epoch included)."""
    values = [row["epoch_seconds"] for h in histories for row in h if "epoch_seconds" in row]
    return float(np.median(values)) if values else float("nan")


def score_cells(cells: dict[tuple[str, ...], dict[int, tuple[Predictions, list]]], rows: np.ndarray,
                resamples, jobs: int) -> dict[tuple[str, ...], dict[int, CellScores]]:
    """score_cell for every (method, seed), in `jobs` processes: the bootstrap of a
    phenotyping cell (25 labels x 1,000 resamples) takes seconds, a 78-cell grid minutes."""
    work = [(method, seed, predictions) for method, by_seed in cells.items()
            for seed, (predictions, _) in by_seed.items()]
    if jobs > 1 and len(work) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(jobs, len(work))) as pool:
            done = list(pool.map(score_cell, [predictions for *_, predictions in work], repeat(rows),
                                 repeat(resamples), [seed for _, seed, _ in work]))
    else:
        done = [score_cell(predictions, rows, resamples, seed) for _, seed, predictions in work]
    scores: dict[tuple[str, ...], dict[int, CellScores]] = {}
    for (method, seed, _), cell_scores in zip(work, done, strict=True):
        scores.setdefault(method, {})[seed] = cell_scores
    return scores


def aggregate_task(grid: Grid, study_dir: Path, task: str, settings: EvalSettings,
                   split: str = "test", jobs: int = 1) -> dict[str, Any] | None:
    reference, cells = load_task_cells(grid, study_dir, task, split)
    if reference is None:
        return None
    rows = set_rows(reference, PAIRED)
    subjects = reference.frame["subject_id"].to_numpy()
    resamples = patient_resamples(subjects[rows], settings.n_bootstrap, settings.seed)
    scores = score_cells(cells, rows, resamples, jobs)
    histories = {method: [history for _, history in by_seed.values()] for method, by_seed in cells.items()}
    boot = SeedPatientBootstrap(settings.n_bootstrap, settings.seed)

    def mean(method, head, metric):
        cell_scores = [s for s in scores[method].values() if (head, metric) in s.point]
        if not cell_scores:
            return None
        point, reps = boot.mean([s.point[(head, metric)] for s in cell_scores],
                                [s.replicates[(head, metric)] for s in cell_scores])
        return _summary(point, reps, settings.ci_level, len(cell_scores))

    def diff(method_a, head_a, method_b, head_b, metric):
        seeds = sorted(s for s in scores[method_a] if s in scores.get(method_b, {})
                       and (head_a, metric) in scores[method_a][s].point
                       and (head_b, metric) in scores[method_b][s].point)
        if not seeds:
            return None
        a, b = scores[method_a], scores[method_b]
        point, reps = boot.mean([a[s].point[(head_a, metric)] - b[s].point[(head_b, metric)] for s in seeds],
                                [a[s].replicates[(head_a, metric)] - b[s].replicates[(head_b, metric)]
                                 for s in seeds])
        return _summary(point, reps, settings.ci_level, len(seeds))

    alone = {modality: method for method in cells for modality in MODALITIES
             if method_label(method) == f"unimodal {modality}"}
    reference_seconds = {}
    methods = []
    for method in grid.methods():
        if method not in cells:
            continue
        compared_to = grid.reference_of(method)
        heads = {}
        for head in HEADS:
            per_metric = {metric: mean(method, head, metric) for metric in METRICS}
            if not any(per_metric.values()):
                continue
            entry: dict[str, Any] = dict(per_metric)
            if compared_to in cells:
                entry["diff"] = {metric: diff(method, head, compared_to, head, metric) for metric in METRICS}
            if head in alone and alone[head] != method:
                entry["vs_alone"] = {metric: diff(method, head, alone[head], head, metric) for metric in METRICS}
            heads[head] = entry
        seconds = epoch_seconds(histories[method])
        reference_seconds[method] = seconds
        methods.append({"method": method_label(method), "overrides": list(method),
                        "seeds": sorted(cells[method]), "reference": method_label(compared_to) if compared_to
                        in cells else None, "heads": heads, "epoch_seconds": seconds,
                        "lr_trace": lr_trace(histories[method]), "_compared_to": compared_to})
    for entry in methods:
        compared_to = entry.pop("_compared_to")
        base = reference_seconds.get(compared_to)
        entry["cost_ratio"] = entry["epoch_seconds"] / base if base and compared_to in cells else None
    return {"split": split, "set": PAIRED, "n_stays": int(rows.sum()),
            "n_patients": int(np.unique(subjects[rows]).size), "methods": methods}


def aggregate(grid: Grid, study_dir: Path, tasks: list[str], settings: EvalSettings,
              split: str = "test", jobs: int = 1) -> dict[str, Any]:
    result = {"grid": grid.name, "split": split, "description": grid.description, "budget": grid.budget,
              "seeds": list(grid.seeds), "n_bootstrap": settings.n_bootstrap, "ci_level": settings.ci_level,
              "provenance": cell_provenance(study_dir, [cell.name for cell in grid.cells()]), "tasks": {}}
    for task in tasks:
        summary = aggregate_task(grid, study_dir, task, settings, split, jobs)
        if summary is not None:
            result["tasks"][task] = summary
    return result
