"""The study command's parts: grids, seed x patient aggregation, rendering (no DVC needed).

The DVC path itself (queue, run, collect, report, resume) runs in tests/test_end_to_end.py.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from data_prep.errors import PipelineInputError
from evaluation.assess import EvalSettings
from evaluation.study.aggregate import SeedPatientBootstrap, aggregate
from evaluation.study.choose import CHOOSERS
from evaluation.study.collect import cell_dir
from evaluation.study.grids import GRIDS, MATCHED_TWIN, Grid, get_grid, study_balancers
from evaluation.study.render import replace_block, verdict, write_study_report
from training.balancers import list_balancers

SETTINGS = EvalSettings.from_config({"n_bootstrap": 200, "seed": 7, "ci_level": 0.95, "min_cell_size": 10})


def test_every_grid_has_unique_valid_names_and_the_main_grid_every_balancer():
    for grid in GRIDS.values():
        names = [cell.name for cell in grid.cells()]
        assert len(names) == len(set(names)), grid.name
        assert all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", name) for name in names), grid.name
        assert all("train.threads=1" in cell.overrides for cell in grid.cells())
        assert grid.choose is None or grid.choose in CHOOSERS, grid.name
    assert set(study_balancers()) == set(list_balancers())
    main = get_grid("main")
    assert set(main.factors["balancing"]) == set(list_balancers()) and len(main.factors["fusion"]) >= 2
    assert len(main.seeds) >= 3
    with pytest.raises(PipelineInputError, match="study grid 'nope': expected one of"):
        get_grid("nope")


def test_the_matched_twin_trains_on_as_many_patients_as_the_default_and_tests_on_more():
    """The twin that can test a balancer keeps the default's training size (a larger one removed
    the imbalance) and grows only the held-out sets."""
    from data_prep.params import checked_compose

    default, matched = checked_compose([]), checked_compose(list(MATCHED_TWIN))
    def patients(params: dict, split: str) -> float:
        return params["data"]["synthetic"]["n_subjects"] * params["data"]["split"][split]
    assert patients(matched, "train") == pytest.approx(patients(default, "train"))
    assert patients(matched, "test") >= 10 * patients(default, "test")
    assert patients(matched, "val") >= patients(default, "val")
    assert get_grid("matched").base == MATCHED_TWIN == get_grid("unimodal-lr").base
    assert get_grid("matched").factors == get_grid("main").factors


def test_each_method_is_compared_with_none_under_the_same_other_settings():
    main = get_grid("main")
    assert main.reference_of(("balancing=miles", "fusion=gated")) == ("balancing=none", "fusion=gated")
    assert main.reference_of(("balancing=none", "fusion=gated")) is None
    assert main.reference_of(("regime=unimodal", "regime.modality=cxr")) is None
    sensitivity = get_grid("sensitivity")
    method = sensitivity.methods()[0]
    assert sensitivity.reference_of(method) == ("balancing=none",)


def test_seed_patient_bootstrap_mean_and_spread():
    boot = SeedPatientBootstrap(400, 0)
    patients_only = [np.full(400, 0.7) + np.random.default_rng(1).normal(0, 0.01, 400)] * 3
    point, same = boot.mean([0.7, 0.7, 0.7], patients_only)
    assert point == pytest.approx(0.7)
    spread_seeds = [patients_only[0] - 0.05, patients_only[0], patients_only[0] + 0.05]
    point, varied = boot.mean([0.65, 0.7, 0.75], spread_seeds)
    assert point == pytest.approx(0.7)
    assert np.ptp(np.percentile(varied, [2.5, 97.5])) > 2 * np.ptp(np.percentile(same, [2.5, 97.5]))


def _write_cell(folder, name, task, y, probabilities, has_cxr, subjects, history):
    frame = pd.DataFrame({"subject_id": subjects, "stay_id": np.arange(len(y)) + 100, "split": "test",
                          "has_cxr": has_cxr, "y_death": y})
    for head, p in probabilities.items():
        frame[f"p_{head}_death"] = np.where(has_cxr | (head != "cxr"), p, np.nan)
    validation = frame.assign(split="val", stay_id=frame["stay_id"] + 100_000)  # same scores, its own stays
    target = cell_dir(folder, name, task)
    target.mkdir(parents=True)
    pd.concat([frame, validation], ignore_index=True).to_parquet(target / "predictions.parquet")
    (target / "history.json").write_text(json.dumps(history))


def toy_grid() -> Grid:
    return Grid("toy", "toy", factors={"balancing": ("none", "miles")}, seeds=(1, 2, 3),
                references=(("regime=unimodal", "regime.modality=cxr"),))


def _history(lr_cxr: float, seconds: float) -> list[dict]:
    return [{"epoch": e, "lr_global": 1e-3, "lr_ehr": 1e-3, "lr_cxr": lr_cxr * 1e-3, "epoch_seconds": seconds}
            for e in range(3)]


@pytest.fixture()
def toy_study(tmp_path):
    """none: noisy heads; miles: a better CXR head; CXR alone: better still (greedy learning)."""
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    subjects = np.repeat(np.arange(n // 2), 2)
    has_cxr = rng.random(n) < 0.8
    for seed in (1, 2, 3):
        noise = np.random.default_rng(seed).normal(0, 1, (4, n))
        weak, strong = y + 2.0 * noise[0], y + 0.6 * noise[1]
        ehr = y + 0.8 * noise[2]
        _write_cell(tmp_path, f"toy-none-s{seed}", "task", y, {"ehr": ehr, "cxr": weak, "fused": ehr + weak},
                    has_cxr, subjects, _history(1.0, 10.0))
        _write_cell(tmp_path, f"toy-miles-s{seed}", "task", y,
                    {"ehr": ehr, "cxr": y + 1.0 * noise[0], "fused": ehr + y + 1.0 * noise[0]},
                    has_cxr, subjects, _history(2.0, 11.0))
        _write_cell(tmp_path, f"toy-unimodal-cxr-s{seed}", "task", y, {"cxr": strong}, has_cxr, subjects,
                    _history(1.0, 5.0))
    return tmp_path


def test_aggregate_finds_the_planted_differences(toy_study):
    summary = aggregate(toy_grid(), toy_study, ["task"], SETTINGS)["tasks"]["task"]
    methods = {m["method"]: m for m in summary["methods"]}
    assert set(methods) == {"none", "miles", "unimodal cxr"}
    none, miles, alone = methods["none"], methods["miles"], methods["unimodal cxr"]
    assert none["reference"] is None and miles["reference"] == "none" and alone["reference"] is None
    assert set(alone["heads"]) == {"cxr"} and miles["heads"]["cxr"]["auroc"]["n_seeds"] == 3
    cxr_gain = miles["heads"]["cxr"]["diff"]["auroc"]
    assert cxr_gain["mean"] > 0 and cxr_gain["low"] > 0, "miles' better CXR head must show"
    assert verdict(miles["heads"]["ehr"]["diff"]["auroc"]) == "no difference shown"  # same EHR head
    greedy = none["heads"]["cxr"]["vs_alone"]["auroc"]
    assert greedy["high"] < 0, "the jointly trained CXR head is worse than CXR alone"
    assert miles["lr_trace"]["cxr"] == [2.0, 2.0, 2.0] and miles["cost_ratio"] == pytest.approx(1.1)
    written = pd.read_parquet(cell_dir(toy_study, "toy-none-s1", "task") / "predictions.parquet")
    assert summary["n_stays"] == int(written.loc[written["split"] == "test", "has_cxr"].sum())


def test_report_files_and_the_docs_block_say_the_same_and_are_replaced_in_place(toy_study, tmp_path):
    grid = toy_grid()
    summary = aggregate(grid, toy_study, ["task"], SETTINGS)
    docs = tmp_path / "results.md"
    docs.write_text("# Results\n\nIntro.\n\n<!-- study:toy:start -->\nold\n<!-- study:toy:end -->\n\nOutro.\n")
    written = write_study_report(grid, summary, tmp_path / "out", docs=docs)
    text = docs.read_text()
    assert "old" not in text and text.count("<!-- study:toy:start -->") == 1 and "Outro." in text
    miles_cxr = summary["tasks"]["task"]["methods"][1]["heads"]["cxr"]["auroc"]["mean"]
    assert f"{miles_cxr:.3f}" in text and f"{miles_cxr:.3f}" in (tmp_path / "out" / "index.html").read_text()
    assert "under-trained" in text
    assert {p.name for p in written} == {"summary.json", "results.md", "index.html"}
    write_study_report(grid, summary, tmp_path / "out", docs=docs)
    assert docs.read_text() == text  # idempotent


def test_a_report_of_some_tasks_says_which_are_left_out(toy_study, tmp_path):
    grid = toy_grid()
    summary = aggregate(grid, toy_study, ["task"], SETTINGS)
    write_study_report(grid, summary, tmp_path / "all")
    assert "Not in this report" not in (tmp_path / "all" / "results.md").read_text()
    summary["tasks_left_out"] = ["phenotyping"]
    write_study_report(grid, summary, tmp_path / "some")
    for name in ("results.md", "index.html"):
        assert "Not in this report: Phenotyping (25 acute and chronic conditions)" in \
            (tmp_path / "some" / name).read_text(), name


def test_a_validation_report_has_files_of_its_own_and_leaves_the_test_report_alone(toy_study, tmp_path):
    grid = toy_grid()
    write_study_report(grid, aggregate(grid, toy_study, ["task"], SETTINGS), tmp_path / "out")
    test_files = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    validation = aggregate(grid, toy_study, ["task"], SETTINGS, split="val")
    assert validation["split"] == "val"
    docs = tmp_path / "results.md"
    write_study_report(grid, aggregate(grid, toy_study, ["task"], SETTINGS), tmp_path / "other", docs=docs)
    test_block = docs.read_text()
    written = write_study_report(grid, validation, tmp_path / "out", docs=docs)
    assert {p.name for p in written} == {"summary_val.json", "results_val.md", "index_val.html", "results.md"}
    assert {name: (tmp_path / "out" / name).read_bytes() for name in test_files} == test_files
    # it calls itself a validation report everywhere, in a docs block of its own
    text = (tmp_path / "out" / "results_val.md").read_text()
    assert "paired validation set" in text and "paired test set" not in text
    assert "Study toy-val" in text and "report toy --split val" in text
    page = (tmp_path / "out" / "index_val.html").read_text()
    assert '<a href="#study-toy-val-task">toy-val: task</a>' in page  # the navigation names each task
    assert docs.read_text().startswith(test_block.rstrip()) and "<!-- study:toy-val:start -->" in docs.read_text()


def test_replace_block_appends_when_the_markers_are_missing():
    assert replace_block("# R\n", "g", "body").endswith("<!-- study:g:start -->\nbody\n<!-- study:g:end -->\n")


def test_cells_with_other_test_stays_are_refused(toy_study):
    other = cell_dir(toy_study, "toy-miles-s3", "task") / "predictions.parquet"
    frame = pd.read_parquet(other)
    frame["stay_id"] += 10_000
    frame.to_parquet(other)
    with pytest.raises(ValueError, match="toy-miles-s3: its test stays or labels differ"):
        aggregate(toy_grid(), toy_study, ["task"], SETTINGS)


def test_the_local_backend_runs_dvc_yamls_data_stages_in_order_and_gives_a_study_twin_its_own_data(tmp_path):
    from pathlib import Path

    from evaluation.study.local import data_overrides, data_stage_commands

    root = Path(__file__).resolve().parent.parent
    tasks = ["in_hospital_mortality", "phenotyping"]
    modules = [command[2] for command in data_stage_commands(root, tasks)]
    assert modules == ["data_prep.synthesize", "data_prep.extract_ehr", "data_prep.build_tasks",
                       "data_prep.ehr_tensors", "data_prep.ehr_tensors", "data_prep.pair_cxr", "data_prep.pair_cxr",
                       "data_prep.cache_cxr"]
    assert [command[-1] for command in data_stage_commands(root, tasks)][3:5] == tasks
    assert data_overrides(get_grid("greedy"), tmp_path) == []  # the default twin, where dvc repro put it
    study = dict(item.split("=", 1) for item in data_overrides(get_grid("main"), tmp_path))
    assert set(study) == {"data.synthetic.out", "data.mimic_iv_root", "data.mimic_cxr_root", "data.interim_dir",
                          "data.processed_dir"}
    assert all(value.startswith(str(tmp_path)) for value in study.values())


def test_the_local_backend_runs_each_grid_seed_by_seed_in_the_order_given():
    from evaluation.study.local import ordered_jobs

    main, sensitivity = get_grid("main"), get_grid("sensitivity")
    jobs = ordered_jobs([main, sensitivity], ["in_hospital_mortality", "phenotyping"])
    assert len(jobs) == 2 * (len(main.cells()) + len(sensitivity.cells()))
    first_seed = 2 * len(main.methods())
    assert {job.cell.seed for job in jobs[:first_seed]} == {main.seeds[0]}
    assert {job.cell.method for job in jobs[:first_seed]} == set(main.methods())  # every method once first
    assert {job.grid.name for job in jobs[: 2 * len(main.cells())]} == {"main"}


def test_tasks_can_be_run_a_subset_at_a_time_in_the_settings_order():
    from evaluation.study.__main__ import selected_tasks

    config = {"task": {"names": ["in_hospital_mortality", "phenotyping"]}}
    assert selected_tasks(config, None) == ["in_hospital_mortality", "phenotyping"]
    assert selected_tasks(config, ["phenotyping", "in_hospital_mortality"]) == ["in_hospital_mortality", "phenotyping"]
    assert selected_tasks(config, ["phenotyping"]) == ["phenotyping"]
    with pytest.raises(PipelineInputError, match="--tasks decompensation: expected tasks from task.names"):
        selected_tasks(config, ["decompensation"])


def test_a_report_from_a_summary_never_written_says_which_file_and_what_to_run(tmp_path, monkeypatch, capsys):
    import sys
    from pathlib import Path

    import yaml

    from evaluation.study.__main__ import main

    root = Path(__file__).resolve().parent.parent
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"]["reports_dir"] = str(tmp_path / "reports")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(sys, "argv", ["study", "report", "quick", "--repo", str(tmp_path), "--from-summary"])
    with pytest.raises(PipelineInputError, match=r"study/quick/summary\.json: not found \(run `report quick` once"):
        main()


def test_a_tuning_grid_of_unimodal_cells_aggregates_and_chooses_each_encoders_best_rate(tmp_path):
    """The unimodal-lr shape: unimodal cells at several rates, nothing compared, each rate its own row."""
    from evaluation.study.choose import best_unimodal_multipliers

    grid = Grid("lr", "lr", factors={"regime": ("unimodal",), "regime.modality": ("ehr", "cxr"),
                                     "train.lr": ("1.0e-4", "1.0e-3")}, seeds=(1, 2), reference_method=())
    rng = np.random.default_rng(3)
    n = 300
    y, subjects, has_cxr = rng.integers(0, 2, n), np.repeat(np.arange(n // 2), 2), np.ones(n, bool)
    noise_by_rate = {("ehr", "1.0e-4"): 0.5, ("ehr", "1.0e-3"): 2.0, ("cxr", "1.0e-4"): 2.0, ("cxr", "1.0e-3"): 0.5}
    for cell in grid.cells():
        values = dict(override.split("=", 1) for override in cell.method)
        modality, lr = values["regime.modality"], values["train.lr"]
        scores = y + noise_by_rate[modality, lr] * np.random.default_rng(cell.seed).normal(0, 1, n)
        _write_cell(tmp_path, cell.name, "task", y, {modality: scores}, has_cxr, subjects, _history(1.0, 5.0))
    summary = aggregate(grid, tmp_path, ["task"], SETTINGS, split="val")
    methods = summary["tasks"]["task"]["methods"]
    assert len({m["method"] for m in methods}) == 4 and all(m["reference"] is None for m in methods)
    choice = best_unimodal_multipliers(summary, 1.0e-4)
    assert choice.overrides == ("balancing.unimodal_multipliers.cxr=10", "balancing.unimodal_multipliers.ehr=1")


def test_the_comparison_report_shows_each_registered_grids_test_summary_only(toy_study, tmp_path, monkeypatch):
    """reports/index.html takes a grid's test summary, never its validation one (chosen-on data)
    nor a folder that is no grid."""
    from evaluation.index_report import study_sections_found
    from evaluation.study.render import study_sections

    grid = toy_grid()
    monkeypatch.setitem(GRIDS, grid.name, grid)
    root = tmp_path / "study"
    test_summary = aggregate(grid, toy_study, ["task"], SETTINGS)
    write_study_report(grid, test_summary, root / grid.name)
    write_study_report(grid, aggregate(grid, toy_study, ["task"], SETTINGS, split="val"), root / grid.name)
    write_study_report(grid, test_summary, root / "not-a-grid")
    found = study_sections_found(root)
    assert found and repr(found) == repr(study_sections(grid, json.loads(json.dumps(test_summary))))
