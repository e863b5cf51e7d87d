"""The researcher's path, end to end, on a tiny synthetic twin in a throwaway copy of the repo.

`dvc repro` builds everything and writes both reports; `dvc exp run -S fusion=late` then
reruns training and evaluation only (never data preparation) and the reports change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("in_hospital_mortality", "phenotyping")
DATA_STAGES = ("synthesize", "extract_ehr", "build_tasks", "ehr_tensors", "pair_cxr", "cache_cxr")

# Small enough for minutes on 2 CPU cores, large enough for every split to hold both classes.
TINY = {
    "data": {"synthetic": {"n_subjects": 160, "image_size": 64}, "cxr": {"image_size": 32, "crop_size": 32}},
    "model": {"ehr": {"hidden_size": 32}, "cxr": {"name": "resnet18"}, "embed_dim": 32},
    "train": {"epochs": 2, "batch_size": 32},
    "eval": {"n_bootstrap": 50},
    "teachers": {"train": {"epochs": 1},
                 "members": {"ehr_lstm128": {"enabled": False}, "ehr_lstm256": {"enabled": False},
                             "cxr_resnet34": {"enabled": False}}},
}


def deep_update(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_update(target[key], value)
        else:
            target[key] = value


def shrink_configs(repo: Path) -> None:
    """Apply TINY to the default option of each group, so `dvc exp run -S` composes tiny too."""
    defaults = yaml.safe_load((repo / "configs" / "config.yaml").read_text())["defaults"]
    chosen = {k: v for entry in defaults if isinstance(entry, dict) for k, v in entry.items()}
    for group, update in TINY.items():
        path = repo / "configs" / group / f"{chosen[group]}.yaml"
        config = yaml.safe_load(path.read_text())
        deep_update(config, update)
        path.write_text(yaml.safe_dump(config, sort_keys=False))


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{output[-4000:]}"
    return output


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    shrink_configs(repo)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "e2e", "GIT_AUTHOR_EMAIL": "e2e@example.org",
           "GIT_COMMITTER_NAME": "e2e", "GIT_COMMITTER_EMAIL": "e2e@example.org"}
    run([sys.executable, "-m", "data_prep.params"], repo, env)
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "tiny e2e"], repo, env)
    return repo, env


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


@pytest.mark.slow
def test_repro_then_swap_fusion(workspace):
    repo, env = workspace
    run(dvc("repro"), repo, env)
    for task in TASKS:
        for name in ("metrics.json", "report.md", "report.html"):
            assert (repo / "reports" / task / name).is_file(), f"{task}/{name} missing"
        assert (repo / "runs" / task / "predictions.parquet").is_file()
    assert (repo / "reports" / "index.html").is_file()
    before = {t: json.loads((repo / "reports" / t / "metrics.json").read_text()) for t in TASKS}
    html_before = (repo / "reports" / TASKS[0] / "report.html").read_text()

    # Nothing changed: a second repro does nothing.
    assert "Running stage" not in run(dvc("repro"), repo, env)

    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "baseline run"], repo, env)
    log = run(dvc("exp", "run", "-S", "fusion=late"), repo, env)
    for stage in DATA_STAGES:
        assert f"Running stage '{stage}" not in log, f"swapping the fusion reran {stage}"
    assert "Running stage 'train@" in log

    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["fusion"]["name"] == "late"
    after = {t: json.loads((repo / "reports" / t / "metrics.json").read_text()) for t in TASKS}
    html_after = (repo / "reports" / TASKS[0] / "report.html").read_text()
    for task in TASKS:
        assert before[task] != after[task], f"{task}: metrics did not change with the fusion"
    assert html_before != html_after
    assert "late" in html_after

    shown = json.loads(run(dvc("exp", "show", "--json"), repo, env))
    assert shown, "dvc exp show lists no experiments"
    index = (repo / "reports" / "index.html").read_text()
    assert "late" in index and "joint" in index, "the comparison report misses the baseline or the experiment"


@pytest.mark.slow
def test_quick_study_runs_through_the_dvc_queue_resumes_and_reports(workspace):
    """`evaluation.study run quick` queues 6 experiments, runs them, and a second run queues
    none; `report` aggregates them across seeds into the study page, docs and index.html."""
    repo, env = workspace
    run(dvc("repro"), repo, env)  # data stages cached first (a no-op after the test above)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "before the study", "--allow-empty"], repo, env)
    study = [sys.executable, "-m", "evaluation.study"]
    output = run([*study, "run", "quick", "--jobs", "2"], repo, env)
    assert "study quick: 6 done, 0 queued or running, 0 failed before, 0 to queue" in output
    queue_log = repo / "reports" / "study" / "quick" / "queue.log"
    size = queue_log.stat().st_size
    again = run([*study, "run", "quick"], repo, env)
    assert "6 done" in again and "0 to queue" in again
    assert "Running stage 'train@" not in queue_log.read_text()[size:], "a finished cell was retrained"

    run([*study, "report", "quick", "--docs", "docs/results.md"], repo, env)
    summary = json.loads((repo / "reports" / "study" / "quick" / "summary.json").read_text())
    assert set(summary["tasks"]) == set(TASKS)
    for task in TASKS:
        methods = {m["method"]: m for m in summary["tasks"][task]["methods"]}
        assert set(methods) == {"none", "miles", "unimodal cxr"}
        assert all(m["seeds"] == [1, 2] for m in methods.values())
        assert methods["miles"]["heads"]["fused"]["diff"]["auroc"]["n_seeds"] == 2
        assert "vs_alone" in methods["none"]["heads"]["cxr"]
    docs = (repo / "docs" / "results.md").read_text()
    index = (repo / "reports" / "index.html").read_text()
    value = f"{methods['miles']['heads']['fused']['auroc']['mean']:.3f}"
    assert "<!-- study:quick:start -->" in docs and value in docs and value in index


@pytest.mark.slow
def test_quick_study_runs_as_plain_processes_resumes_and_reports(workspace):
    """`study run quick --backend local` trains every (cell, task) without DVC experiments,
    writes the cells where `report` reads them, skips them when run again, and the report
    says how they were run."""
    repo, env = workspace
    params = repo / "params-local.yaml"  # its own reports folder: the DVC study above has the same cell names
    run([sys.executable, "-m", "data_prep.params", "eval.reports_dir=reports-local", "--out", str(params)], repo, env)
    study = [sys.executable, "-m", "evaluation.study"]
    local = [*study, "run", "quick", "--params", str(params), "--backend", "local", "--jobs", "2",
             "--work", "runs/study-local"]
    first = run([*local, "--tasks", TASKS[0]], repo, env)  # one task now, the other later
    assert "'done': 6, 'failed': 0, 'skipped': 0, 'already': 0" in first
    cells = repo / "reports-local" / "study" / "quick" / "cells"
    assert {stamp.parent.name for stamp in cells.glob("*/*/revision.json")} == {TASKS[0]}
    output = run(local, repo, env)
    assert "'done': 6, 'failed': 0, 'skipped': 0, 'already': 6" in output
    stamps = sorted(cells.glob("*/*/revision.json"))
    assert len(stamps) == 12
    assert {json.loads(stamp.read_text())["backend"] for stamp in stamps} == {"local"}
    runs = repo / "runs" / "study-local" / "runs"  # checkpoints go once the outputs are copied
    assert not list(runs.rglob("*.pt")) and not list(runs.glob("quick/*"))
    again = run(local, repo, env)
    assert "'done': 0, 'failed': 0, 'skipped': 0, 'already': 12" in again

    run([*study, "report", "quick", "--params", str(params), "--no-collect", "--no-index"], repo, env)
    summary = json.loads((repo / "reports-local" / "study" / "quick" / "summary.json").read_text())
    assert summary["provenance"]["backends"] == ["local"]
    for task in TASKS:
        methods = {m["method"]: m for m in summary["tasks"][task]["methods"]}
        assert set(methods) == {"none", "miles", "unimodal cxr"}
        assert all(m["seeds"] == [1, 2] for m in methods.values())
    assert "study run --backend local" in (repo / "reports-local" / "study" / "quick" / "results.md").read_text()


@pytest.mark.slow
def test_private_training_and_the_audit_run_through_dvc(workspace):
    """`dvc exp run -S privacy=dp` trains both tasks with DP-SGD and audits them; the epsilon
    spent is in the history and in reports/<task>/privacy.json (a DVC metrics file)."""
    repo, env = workspace
    log = run(dvc("exp", "run", "-S", "privacy=dp", "-S", "privacy.target_epsilon=8"), repo, env)
    for task in TASKS:
        assert f"Running stage 'train@{task}'" in log and f"Running stage 'audit@{task}'" in log
        history = json.loads((repo / "runs" / task / "history.json").read_text())
        assert all(0 < row["privacy_epsilon"] <= 8.0 * 1.01 for row in history)
        privacy = json.loads((repo / "reports" / task / "privacy.json").read_text())
        assert privacy["privacy"]["private"] and privacy["privacy"]["epsilon"] == history[-1]["privacy_epsilon"]
        for head, entry in privacy["heads"].items():
            assert 0 <= entry["threshold"]["auroc"]["value"] <= 1, head
        assert "Privacy" in (repo / "reports" / task / "report.md").read_text()


@pytest.mark.slow
def test_distill_trains_the_teachers_once_and_reuses_them_for_other_student_settings(workspace):
    repo, env = workspace
    log = run(dvc("exp", "run", "-S", "regime=distill"), repo, env)
    for task in TASKS:
        assert f"Running stage 'teachers@{task}'" in log and f"Running stage 'train@{task}'" in log
        assert (repo / "runs" / "teachers" / task / "logits.parquet").is_file()
        metrics = json.loads((repo / "reports" / task / "metrics.json").read_text())
        assert metrics["test_partial/routed/auroc"] is not None  # the routed partial-set prediction
    log = run(dvc("exp", "run", "-S", "regime=distill", "-S", "regime.temperature=4.0"), repo, env)
    assert "Running stage 'teachers@" not in log, "a student setting retrained the teachers"
    assert "Running stage 'train@" in log
