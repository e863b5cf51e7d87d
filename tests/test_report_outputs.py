"""evaluate + report on realistic run files: outputs, keys, suppression, privacy, CLI, errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_eval_support import (
    PHENOTYPES,
    ROOT,
    SUBJECT_BASE,
    make_history,
    make_predictions,
    write_run,
)

from data_prep.errors import PipelineInputError
from evaluation.assess import EvalSettings, evaluate_task
from evaluation.experiments import parse_exp_show
from evaluation.index_report import write_index
from evaluation.inputs import read_predictions
from evaluation.metrics_json import flat_metrics
from evaluation.render_md import render_markdown
from evaluation.report_content import ReportContext, build_task_document
from evaluation.task_report import task_inputs, write_task_report

IHM, PHENO = "in_hospital_mortality", "phenotyping"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Both tasks evaluated (IHM through the real CLI, whose log is kept) and the index built."""
    root = tmp_path_factory.mktemp("eval")
    predictions = {IHM: make_predictions(110, seed=1), PHENO: make_predictions(90, PHENOTYPES, seed=2)}
    params = None
    for task, frame in predictions.items():
        params = write_run(root, task, frame, {"n_bootstrap": 100})
    done = subprocess.run([sys.executable, "-m", "evaluation.evaluate", "--params", str(params),
                           "--task", IHM, "--dvc-lock", str(root / "dvc.lock")],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(params.read_text())
    write_task_report(PHENO, task_inputs(config, PHENO, root / "dvc.lock"), config, root / "reports" / PHENO)
    write_index(config, root / "reports" / "index.html", repo=root, exp_show=None)
    return root, config, predictions, done.stdout + done.stderr


def test_every_output_is_written(workspace):
    root = workspace[0]
    for task in (IHM, PHENO):
        folder = root / "reports" / task
        for name in ("metrics.json", "report.md", "report.html"):
            assert (folder / name).stat().st_size > 0
        for head in ("ehr", "cxr", "fused"):
            roc = pd.read_csv(folder / "plots" / f"roc_{head}.csv")
            pr = pd.read_csv(folder / "plots" / f"pr_{head}.csv")
            assert list(roc.columns) == ["fpr", "tpr"] and list(pr.columns) == ["recall", "precision"]
            assert roc["fpr"].is_monotonic_increasing and roc.iloc[-1].tolist() == [1.0, 1.0]
    assert (root / "reports" / "index.html").is_file()


def test_metrics_json_has_stable_flat_keys_and_sane_cis(workspace):
    root = workspace[0]
    metrics = json.loads((root / "reports" / PHENO / "metrics.json").read_text())
    assert all(not isinstance(v, (dict, list)) for v in metrics.values())
    for test_set in ("test_paired", "test_partial"):
        for head in ("ehr", "cxr", "fused"):
            for metric in ("auroc", "auprc", "auroc_micro", "auprc_micro"):
                key = f"{test_set}/{head}/{metric}"
                assert metrics[f"{key}_ci_low"] <= metrics[key] <= metrics[f"{key}_ci_high"], key
                assert metrics[f"{key}_n_valid"] <= 100
            assert f"{test_set}/{head}/calibration_slope" in metrics
    for key in ("test_paired/fused_minus_ehr/auroc", "test_paired/fused_minus_cxr/auroc",
                "test_partial/fused_minus_ehr/auroc_ci_low", "test_partial/subgroup/sex/Female/fused/auroc"):
        assert key in metrics, key
    assert "test_partial/fused_minus_cxr/auroc" not in metrics  # different stays: not paired
    assert metrics["test_paired/fused/auroc"] > metrics["test_paired/cxr/auroc"]  # planted signal


def test_partial_cxr_head_is_scored_only_where_an_image_exists(workspace):
    root, _, predictions, _ = workspace
    metrics = json.loads((root / "reports" / IHM / "metrics.json").read_text())
    test = predictions[IHM][predictions[IHM]["split"] == "test"]
    assert metrics["test_partial/n_stays"] == len(test)
    assert metrics["test_paired/n_stays"] == int(test["has_cxr"].sum())
    assert metrics["test_partial/cxr/auroc"] == metrics["test_paired/cxr/auroc"]


def test_no_identifier_in_any_output_or_log(workspace):
    root, _, predictions, log = workspace
    ids = set()
    for frame in predictions.values():
        ids |= {str(v) for v in frame["subject_id"]} | {str(v) for v in frame["stay_id"]}
    assert str(SUBJECT_BASE) in ids
    pattern = re.compile("|".join(sorted(ids)))
    files = [p for p in (root / "reports").rglob("*") if p.is_file()]
    assert len(files) >= 19
    for path in files:
        text = path.read_bytes().decode("latin-1")
        assert not pattern.search(text), f"an identifier appears in {path.relative_to(root)}"
    assert not pattern.search(log), "an identifier appears in the stage's log"


def test_report_sections_and_data_version(workspace):
    root = workspace[0]
    html = (root / "reports" / PHENO / "report.html").read_text()
    for anchor in ("cohort-flow", "prevalence-table", "headline-table", "differences-table",
                   "per-label-table", "calibration-table", "subgroup-table", "training-curves",
                   "balancer", "configuration-table", "data-version", "limitations"):
        assert f'id="{anchor}"' in html, anchor
    assert "SYNTHETIC DATA" in html and "data:image/png;base64," in html
    assert "<link" not in html and "<script" not in html  # self-contained
    assert "0123456789abcdef0123456789abcdef.dir" in html and "5eed5eed" not in html  # data stages only
    markdown = (root / "reports" / IHM / "report.md").read_text()
    assert "| Paired | Fused (EHR + CXR) |" in markdown
    assert re.search(r"\d\.\d{3} \(\d\.\d{3}-\d\.\d{3}\)", markdown)  # 0.812 (0.771-0.850)


def _evaluation_with(demographics: pd.DataFrame, frame: pd.DataFrame):
    tmp = Path(frame.attrs["path"])
    frame.to_parquet(tmp, index=False)
    predictions = read_predictions(tmp)
    return evaluate_task(IHM, predictions, demographics, EvalSettings(n_bootstrap=50))


def test_small_subgroups_are_suppressed_everywhere(tmp_path):
    frame = make_predictions(100, seed=4)
    frame.attrs["path"] = str(tmp_path / "p.parquet")
    test_subjects = frame.loc[frame["split"] == "test", "subject_id"].unique()
    few_women = set(test_subjects[:4])
    demographics = pd.DataFrame({"stay_id": frame["stay_id"],
                                 "sex": np.where(frame["subject_id"].isin(few_women), "F", "M"),
                                 "age": 50.0})
    evaluation = _evaluation_with(demographics, frame)
    flat = flat_metrics(evaluation)
    assert flat["test_partial/subgroup/sex/Female/n_patients"] == "<10"
    assert flat["test_partial/subgroup/sex/Female/n_events"] == "suppressed"
    assert flat["test_partial/subgroup/sex/Female/fused/auroc"] == "suppressed"
    assert not any(k.startswith("test_partial/subgroup/sex/Female/fused/auroc_ci") for k in flat)
    assert isinstance(flat["test_partial/subgroup/sex/Male/fused/auroc"], float)
    markdown = render_markdown(build_task_document(evaluation, ReportContext()))
    female = next(line for line in markdown.splitlines() if "| Sex | Female |" in line)
    assert "<10" in female and "suppressed" in female and not re.search(r"\d\.\d{3}", female)


def test_histories_without_balancer_or_at_all_render(tmp_path):
    frame = make_predictions(60, seed=5)
    frame.attrs["path"] = str(tmp_path / "p.parquet")
    evaluation = _evaluation_with(None, frame)
    plain = render_markdown(build_task_document(evaluation, ReportContext(
        config={"balancing": {"name": "none"}}, history=[{k: v for k, v in row.items()
                                                         if not k.startswith(("balancer_", "lr_"))}
                                                        for row in make_history()])))
    assert "No per-modality learning-rate or balancer statistics were recorded (balancing: none)" in plain
    empty = render_markdown(build_task_document(evaluation, ReportContext()))
    assert "No training history was recorded." in empty and "cohort flow was not recorded" in empty


def test_bad_predictions_stop_with_one_clear_line(tmp_path):
    frame = make_predictions(30, seed=6).drop(columns=["p_fused_in_hospital_mortality"])
    path = tmp_path / "predictions.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(PipelineInputError, match="p_fused_in_hospital_mortality"):
        read_predictions(path)
    params = write_run(tmp_path, IHM, frame.assign(p_fused_in_hospital_mortality=0.5))
    frame.drop(columns=["has_cxr"]).to_parquet(tmp_path / "runs" / IHM / "predictions.parquet")
    done = subprocess.run([sys.executable, "-m", "evaluation.evaluate", "--params", str(params), "--task", IHM],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "'has_cxr'" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_names_the_task_option():
    done = subprocess.run([sys.executable, "-m", "evaluation.evaluate", "--help"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "--task" in done.stdout


EXP_SHOW = [
    {"rev": "workspace", "name": None, "error": None, "experiments": None, "data": {
        "params": {"params.yaml": {"data": {"fusion": {"name": "late"}, "balancing": {"name": "none"}}}},
        "metrics": {"reports/in_hospital_mortality/metrics.json": {"data": {"test_paired/fused/auroc": 0.7}}}}},
    {"rev": "a" * 40, "name": "main", "error": None, "data": {
        "params": {"params.yaml": {"data": {"fusion": {"name": "joint"}, "balancing": {"name": "miles"}}}},
        "metrics": {"reports/in_hospital_mortality/metrics.json": {"data": {
            "test_paired/fused/auroc": 0.812, "test_paired/fused/auroc_ci_low": 0.771,
            "test_paired/fused/auroc_ci_high": 0.85}},
            "reports/phenotyping/metrics.json": {"error": {"type": "FileNotFoundError"}}}},
     "experiments": [{"name": "brisk-owls", "executor": None, "revs": [{
         "rev": "b" * 40, "name": "brisk-owls", "error": None, "experiments": None, "data": {
             "params": {"params.yaml": {"data": {"fusion": {"name": "gated"}, "balancing": {"name": "ogm_ge"}}}},
             "metrics": {"reports/in_hospital_mortality/metrics.json": {"data": {"test_paired/fused/auroc": 0.79}}}}}]},
         # queued: DVC shows it with the baseline's metrics, which must not read as its own
         {"name": "still-queued", "executor": {"state": "queued"}, "revs": [{
             "rev": "c" * 40, "name": "still-queued", "error": None, "experiments": None, "data": {
                 "params": {"params.yaml": {"data": {"fusion": {"name": "late"}}}},
                 "metrics": {"reports/in_hospital_mortality/metrics.json": {"data": {
                     "test_paired/fused/auroc": 0.812}}}}}]}]},
]


def test_experiments_from_dvc_exp_show_json():
    rows = parse_exp_show(EXP_SHOW)
    assert [(r.name, r.kind) for r in rows] == [("workspace", "workspace"), ("main", "commit"),
                                               ("brisk-owls", "experiment")]
    assert rows[1].metrics == {IHM: EXP_SHOW[1]["data"]["metrics"][
        "reports/in_hospital_mortality/metrics.json"]["data"]}
    assert rows[2].params["balancing"]["name"] == "ogm_ge"


def test_index_compares_experiments_and_links_reports(workspace):
    root, config, _, _ = workspace
    out = write_index(config, root / "index_with_exps.html", repo=root, exp_show=EXP_SHOW)
    html = out.read_text()
    assert 'href="in_hospital_mortality/report.html"' in html and 'href="phenotyping/report.html"' in html
    table = html.split('id="experiments-table"')[1].split("</table>")[0]
    for text in ("brisk-owls", "gated", "ogm_ge", "main", "joint", "0.812 (0.771-0.850)", "miles"):
        assert text in table, text
    workspace_auroc = json.loads((root / "reports" / IHM / "metrics.json").read_text())["test_paired/fused/auroc"]
    assert f"{workspace_auroc:.3f}" in table  # the workspace row shows the files just written
    fallback = write_index(config, root / "index_plain.html", repo=root, exp_show=None).read_text()
    assert "only the workspace is shown" in fallback


def test_paired_differences_between_runs(tmp_path):
    from evaluation.compare import paired_run_differences
    from evaluation.inputs import predictions_from_frame

    frame = make_predictions(80, seed=7)
    reference = predictions_from_frame(frame, "reference")
    shuffled = frame.sample(frac=1.0, random_state=0)  # same stays, other row order
    settings = EvalSettings(n_bootstrap=100)
    same = paired_run_differences(predictions_from_frame(shuffled, "same"), reference, settings)
    assert all(est.value == 0 and est.ci_low == 0 == est.ci_high
               for per_head in same.values() for est in per_head.values())
    noisy = frame.copy()
    rng = np.random.default_rng(0)
    noisy["p_fused_in_hospital_mortality"] = rng.random(len(frame)).astype("float32")
    worse = paired_run_differences(predictions_from_frame(noisy, "noisy"), reference, settings)
    assert worse["fused"]["auroc"].ci_high < 0 and worse["ehr"]["auroc"].value == 0
    other_stays = frame.assign(stay_id=frame["stay_id"] + 1)
    assert paired_run_differences(predictions_from_frame(other_stays, "other"), reference, settings) is None
    cxr_alone = frame.drop(columns=["p_ehr_in_hospital_mortality", "p_fused_in_hospital_mortality"])
    unimodal = paired_run_differences(predictions_from_frame(cxr_alone, "cxr alone"), reference, settings)
    assert set(unimodal) == {"cxr"} and unimodal["cxr"]["auroc"].value == 0  # a unimodal run: its one head


@pytest.mark.parametrize("case", ["no_images", "no_events", "tiny"])
def test_degenerate_test_sets_still_report(tmp_path, case):
    frame = {"no_images": lambda: make_predictions(40, seed=8, cxr_fraction=0.0),
             "no_events": lambda: make_predictions(40, seed=8).assign(y_in_hospital_mortality=0.0),
             "tiny": lambda: make_predictions(6, seed=8)}[case]()
    frame = pd.concat([frame, frame.head(1).assign(split="test")]) if case == "tiny" else frame
    params = write_run(tmp_path, IHM, frame, {"n_bootstrap": 30})
    config = yaml.safe_load(params.read_text())
    write_task_report(IHM, task_inputs(config, IHM, tmp_path / "dvc.lock"), config, tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="headline-table"' in html
    if case == "no_images":
        assert "test_paired/n_stays" not in metrics and "test_partial/cxr/auroc" not in metrics
    if case == "no_events":
        assert metrics["test_partial/fused/auroc"] is None and metrics["test_partial/fused/auroc_n_valid"] == 0
