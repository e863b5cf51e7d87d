"""train@<task> end to end on tiny contract-format data with the real model and dataset:
outputs and their contracts, determinism, kill-and-resume equality, NaN handling, LR traces."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
from training_fakes import LABELS, ROOT, TASK, tiny_config, write_task_inputs

from training.balancers import list_balancers
from training.balancers.none import NoBalancing
from training.checkpoint import load_checkpoint
from training.schedule import global_lr
from training.train import TrainingDivergedError, fit

VOLATILE = ("epoch_seconds",)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    write_task_inputs(root)
    return root


def run(data_root, name, balancing="miles", epochs=3, resume=False, **train):
    train.setdefault("runs_dir", str(data_root / name))
    cfg = tiny_config(data_root, balancing=balancing, epochs=epochs, **train)
    return fit(cfg, TASK, resume=resume)


def stable(history):
    return [{k: v for k, v in row.items() if k not in VOLATILE} for row in history]


@pytest.fixture(scope="module")
def straight(data_root):
    return run(data_root, "straight")


def test_outputs_follow_the_contract(straight, data_root):
    run_dir = straight.run_dir
    for name in ("model.pt", "last.pt", "predictions.parquet", "history.json"):
        assert (run_dir / name).is_file(), name
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    labels = pd.read_parquet(data_root / "interim" / "tasks" / TASK / "labels.parquet")
    expected = labels[labels["split"].isin(["val", "test"])]
    # every val/test stay (partial set), once, whatever the training setting
    assert sorted(predictions["stay_id"]) == sorted(expected["stay_id"])
    assert predictions["stay_id"].is_unique
    assert predictions["stay_id"].dtype == "int64" and predictions["subject_id"].dtype == "int64"
    pairs = pd.read_parquet(data_root / "interim" / "cxr" / f"pairs_{TASK}.parquet").set_index("stay_id")
    assert (predictions["has_cxr"].to_numpy() == pairs.loc[predictions["stay_id"], "has_cxr"].to_numpy()).all()
    merged = predictions.merge(labels, on="stay_id")
    for label in LABELS:
        assert (merged[f"y_{label}"] == merged[label]).all()
        for head in ("ehr", "cxr", "fused"):
            column = predictions[f"p_{head}_{label}"]
            assert column.dtype == "float32" or str(column.dtype) == "Float32"
            present = column.dropna()
            assert ((present >= 0) & (present <= 1)).all()
        assert predictions.loc[~predictions["has_cxr"], f"p_cxr_{label}"].isna().all()
        assert predictions.loc[predictions["has_cxr"], f"p_cxr_{label}"].notna().all()


def test_history_and_dvclive_hold_the_lr_traces(straight):
    history = json.loads((straight.run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1, 2]
    for row in history:
        for key in ("lr_ehr", "lr_cxr", "lr_shared", "train_loss_fused", "val_auroc_fused", "val_auprc_cxr",
                    "balancer_u_ehr", "balancer_u_cxr", "balancer_delta", "balancer_action"):
            assert key in row, key
        assert row["lr_shared"] == pytest.approx(global_lr(row["epoch"], 3e-4, 3, {"name": "cosine", "min_lr_fraction": 0.1}))
    # MILES acts on the next epoch: the slowed group runs at mu * alpha, the other at alpha
    for before, after in zip(history, history[1:], strict=False):
        slowed = before["balancer_action"].removeprefix("slow_") if before["balancer_action"].startswith("slow") else None
        for group in ("ehr", "cxr"):
            factor = 0.5 if group == slowed else 1.0
            assert after[f"lr_{group}"] == pytest.approx(factor * after["lr_shared"])
    live = straight.run_dir / "dvclive"
    metrics = json.loads((live / "metrics.json").read_text())
    assert {"lr_ehr", "lr_cxr", "lr_shared", "balancer_delta"} <= set(metrics)
    trace = pd.read_csv(live / "plots" / "metrics" / "lr_cxr.tsv", sep="\t")
    assert trace["lr_cxr"].tolist() == pytest.approx([row["lr_cxr"] for row in history])


def test_same_seed_gives_identical_predictions(straight, data_root):
    again = run(data_root, "again")
    first = pd.read_parquet(straight.run_dir / "predictions.parquet")
    second = pd.read_parquet(again.run_dir / "predictions.parquet")
    pd.testing.assert_frame_equal(first, second)
    assert stable(straight.history) == stable(again.history)


def test_killed_then_resumed_run_matches_the_uninterrupted_one(straight, data_root):
    stopped = run(data_root, "resumed", stop_after_epoch=2)
    assert [row["epoch"] for row in stopped.history] == [0, 1]
    assert not (stopped.run_dir / "predictions.parquet").exists()
    assert load_checkpoint(stopped.run_dir / "last.pt")["epoch"] == 1
    resumed = run(data_root, "resumed", resume=True)
    pd.testing.assert_frame_equal(pd.read_parquet(straight.run_dir / "predictions.parquet"),
                                  pd.read_parquet(resumed.run_dir / "predictions.parquet"))
    assert stable(resumed.history) == stable(straight.history)
    dvclive = pd.read_csv(resumed.run_dir / "dvclive" / "plots" / "metrics" / "lr_ehr.tsv", sep="\t")
    assert dvclive["step"].tolist() == [0, 1, 2]


def test_resume_starts_over_when_the_settings_changed(data_root, caplog):
    stopped = run(data_root, "changed", stop_after_epoch=1)
    assert load_checkpoint(stopped.run_dir / "last.pt")["epoch"] == 0
    with caplog.at_level("WARNING", logger="training.train"):
        restarted = run(data_root, "changed", balancing="none", epochs=2, resume=True)
    assert "written with a different config: starting over" in caplog.text
    fresh = run(data_root, "fresh_none", balancing="none", epochs=2)
    assert stable(restarted.history) == stable(fresh.history)


def test_resume_of_a_finished_run_rewrites_the_same_outputs(straight, data_root, tmp_path):
    import shutil

    copy = tmp_path / "finished"
    shutil.copytree(straight.run_dir.parent, copy)
    (copy / TASK / "predictions.parquet").unlink()
    resumed = run(data_root, "unused", resume=True, runs_dir=str(copy))
    assert resumed.run_dir == copy / TASK
    assert stable(resumed.history) == stable(straight.history)
    pd.testing.assert_frame_equal(pd.read_parquet(straight.run_dir / "predictions.parquet"),
                                  pd.read_parquet(copy / TASK / "predictions.parquet"))


def test_resume_starts_over_when_the_code_fingerprint_differs(data_root, monkeypatch, caplog):
    import training.train as train_module

    run(data_root, "code", epochs=2, stop_after_epoch=1)
    real = train_module.run_fingerprint
    monkeypatch.setattr(train_module, "run_fingerprint", lambda cfg, inputs: {**real(cfg, inputs), "code": "other"})
    with caplog.at_level("WARNING", logger="training.train"):
        result = run(data_root, "code", epochs=2, resume=True)
    assert "different code" in caplog.text and [row["epoch"] for row in result.history] == [0, 1]


def test_a_run_that_fails_before_its_first_epoch_leaves_the_previous_plots(straight, data_root, monkeypatch):
    from training.engine import Engine

    plots = straight.run_dir / "dvclive" / "plots" / "metrics" / "lr_ehr.tsv"
    before = plots.read_text()

    def broken(self, loader, epoch):
        raise RuntimeError("failed in the first epoch")

    monkeypatch.setattr(Engine, "train_one_epoch", broken)
    with pytest.raises(RuntimeError, match="first epoch"):
        run(data_root, "straight")
    assert plots.read_text() == before


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_root, monkeypatch):
    def poisoned(self, step, loss):
        return loss.plus("poison", loss.total * math.nan) if self.epoch == 1 else loss

    monkeypatch.setattr(NoBalancing, "adjust_loss", poisoned)
    with pytest.raises(TrainingDivergedError, match=r"non-finite training loss at epoch 1, step 0.*last\.pt"):
        run(data_root, "diverged", balancing="none")
    state = load_checkpoint(data_root / "diverged" / TASK / "last.pt")
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (data_root / "diverged" / TASK / "predictions.parquet").exists()


def test_none_trains_two_epochs_and_learns(data_root):
    result = run(data_root, "none2", balancing="none", epochs=2, lr=3e-3)
    assert [row["lr_ehr"] for row in result.history] == [row["lr_shared"] for row in result.history]
    assert result.history[-1]["train_loss_ehr"] < result.history[0]["train_loss_ehr"]


@pytest.mark.parametrize("name", list_balancers())
def test_every_balancer_runs_one_epoch(data_root, name):
    result = run(data_root, f"smoke_{name}", balancing=name, epochs=1)
    assert (result.run_dir / "predictions.parquet").is_file()
    assert all(math.isfinite(result.history[0][f"train_loss_{h}"]) for h in ("ehr", "cxr", "fused"))


def test_cli_reports_a_missing_cache_in_one_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    done = subprocess.run([sys.executable, "-m", "training.train", "--params", str(params), "--task", TASK,
                           f"data.interim_dir={tmp_path}/none", f"train.runs_dir={tmp_path}/runs"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "run `dvc repro build_tasks`" in lines[0], done.stderr


def test_a_new_run_removes_checkpoint_temporaries_a_killed_run_left(data_root):
    run_dir = data_root / "stale" / TASK
    run_dir.mkdir(parents=True)
    leftover = run_dir / ".atomic-999999999-last.pt.abc123"  # no such process: its writer is gone
    leftover.write_bytes(b"half a checkpoint")
    run(data_root, "stale", balancing="none", epochs=1)
    assert not leftover.exists()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".atomic-")]


def test_dvc_repro_resumes_training_and_keeps_the_best_checkpoint():
    import yaml

    train = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]
    assert "--resume" in train["cmd"].split()
    persisted = {next(iter(out)): out[next(iter(out))] for out in train["outs"] if isinstance(out, dict)}
    assert persisted["${train.runs_dir}/${item}/model.pt"]["persist"] and persisted["${train.runs_dir}/${item}/last.pt"]["persist"]
    assert "regime" in train["params"]
