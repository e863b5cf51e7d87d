"""Realistic fixtures for the evaluation tests (no tests here): a run's files as training and
data preparation write them (docs/architecture.md), with distinctive identifiers
(subject ids from 19999991, stay ids from 38888881) so an identifier scan of the outputs can
tell a leak from a coincidence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
SUBJECT_BASE = 19999991
STAY_BASE = 38888881
PHENOTYPES = [f"phenotype_{k:02d}" for k in range(25)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_predictions(n_patients: int = 120, labels: list[str] | None = None, seed: int = 0,
                     cxr_fraction: float = 0.6, base_rate: float = -1.5) -> pd.DataFrame:
    """val + test stays, 1-3 per patient; the fused head sees both signals, so it is best."""
    labels = labels or ["in_hospital_mortality"]
    rng = np.random.default_rng(seed)
    stays_per_patient = rng.integers(1, 4, n_patients)
    subject = np.repeat(SUBJECT_BASE + 7 * np.arange(n_patients), stays_per_patient)
    n = subject.size
    split = np.where(np.repeat(rng.random(n_patients) < 0.25, stays_per_patient), "val", "test")
    has_cxr = rng.random(n) < cxr_fraction
    frame = {"subject_id": subject.astype(np.int64), "stay_id": (STAY_BASE + 3 * np.arange(n)).astype(np.int64),
             "split": split, "has_cxr": has_cxr}
    for k, label in enumerate(labels):
        ehr, cxr = rng.normal(size=n), rng.normal(size=n)
        shift = base_rate - 0.08 * k
        y = rng.random(n) < _sigmoid(shift + 1.2 * ehr + 1.0 * cxr)
        frame[f"y_{label}"] = y.astype(np.float32)
        frame[f"p_ehr_{label}"] = _sigmoid(shift + 1.2 * ehr + 0.4 * rng.normal(size=n)).astype(np.float32)
        p_cxr = _sigmoid(shift + 1.0 * cxr + 0.4 * rng.normal(size=n)).astype(np.float32)
        frame[f"p_cxr_{label}"] = np.where(has_cxr, p_cxr, np.nan).astype(np.float32)
        fused = np.where(has_cxr, shift + 1.2 * ehr + 1.0 * cxr, shift + 1.2 * ehr)
        frame[f"p_fused_{label}"] = _sigmoid(fused + 0.3 * rng.normal(size=n)).astype(np.float32)
    return pd.DataFrame(frame)


def make_history(epochs: int = 4, balancer: bool = True) -> list[dict]:
    rows = []
    for epoch in range(epochs):
        row = {"epoch": epoch, "lr_ehr": 3e-4 * (0.9 ** epoch), "lr_cxr": 3e-4 * (1.2 ** epoch),
               "lr_shared": 3e-4}
        for i, head in enumerate(("ehr", "cxr", "fused")):
            row[f"train_loss_{head}"] = 0.7 - 0.05 * epoch * (i + 1) / 2
            row[f"val_auroc_{head}"] = 0.6 + 0.03 * epoch * (3 - i) / 2
            row[f"val_auprc_{head}"] = 0.3 + 0.02 * epoch
        if balancer:
            row.update({"balancer_u_ehr": 0.3 - 0.02 * epoch, "balancer_u_cxr": 0.05 + 0.03 * epoch,
                        "balancer_delta": 0.25 - 0.05 * epoch, "balancer_action": "boost_cxr"})
        rows.append(row)
    return rows


def write_run(root: Path, task: str, predictions: pd.DataFrame, eval_overrides: dict | None = None,
              history: list[dict] | None = None) -> Path:
    """Lay out one task's inputs under `root` like the pipeline does; returns params.yaml."""
    run_dir = root / "runs" / task
    run_dir.mkdir(parents=True, exist_ok=True)
    predictions.to_parquet(run_dir / "predictions.parquet", index=False)
    (run_dir / "history.json").write_text(json.dumps(history if history is not None else make_history()))
    tasks = root / "data" / "interim" / "tasks" / task
    tasks.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    n = len(predictions)
    patient_sex = dict(zip(predictions["subject_id"].unique(),
                           rng.choice(["F", "M"], predictions["subject_id"].nunique()), strict=True))
    labels = pd.DataFrame({"subject_id": predictions["subject_id"], "hadm_id": predictions["stay_id"] + 1,
                           "stay_id": predictions["stay_id"], "split": predictions["split"],
                           "sex": predictions["subject_id"].map(patient_sex), "age": rng.uniform(18, 95, n)})
    labels.to_parquet(tasks / "labels.parquet", index=False)
    splits = predictions["split"].value_counts().to_dict()
    (tasks / "cohort.json").write_text(json.dumps({
        "task": task, "final": n + 300,
        "steps": [{"rule": "all ICU stays", "removed": 0, "remaining": n + 712},
                  {"rule": "age >= 18", "removed": 4, "remaining": n + 708},
                  {"rule": "stay >= 48 h", "removed": 408, "remaining": n + 300}],
        "splits": {"train": 300, **{k: int(v) for k, v in splits.items()}}}))
    cxr = root / "data" / "interim" / "cxr"
    cxr.mkdir(parents=True, exist_ok=True)
    stays = {split: {"with_cxr": int(g["has_cxr"].sum()), "without_cxr": int((~g["has_cxr"]).sum())}
             for split, g in predictions.groupby("split")}
    (cxr / f"pairs_{task}_counts.json").write_text(json.dumps({"stays": stays}))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"]["runs_dir"] = str(root / "runs")
    params["data"]["interim_dir"] = str(root / "data" / "interim")
    params["eval"]["reports_dir"] = str(root / "reports")
    params["eval"].update(eval_overrides or {"n_bootstrap": 200})
    params_path = root / "params.yaml"
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "build_tasks": {"cmd": "x", "outs": [{"path": "data/interim/tasks", "md5": "0123456789abcdef0123456789abcdef.dir"}]},
        f"train@{task}": {"cmd": "y", "outs": [{"path": f"runs/{task}/model.pt", "md5": "5eed5eed5eed5eed5eed5eed5eed5eed"}]}}}))
    return params_path


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, dirs_exist_ok=True)
