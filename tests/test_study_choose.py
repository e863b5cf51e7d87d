"""The rule that chooses MILES's defaults from the sensitivity grid's validation results."""

from __future__ import annotations

import pytest

from evaluation.study.choose import best_unimodal_multipliers, choose_default

CURRENT = {"balancing.tau": "0.2", "balancing.mu": "0.5", "balancing.scale": "raw"}


def _method(tau: str, scale: str, diff: tuple[float, float, float] | None) -> dict:
    overrides = ["balancing=miles", f"balancing.tau={tau}", "balancing.mu=0.5", f"balancing.scale={scale}"]
    heads = {"fused": {"auroc": {"mean": 0.8, "low": 0.7, "high": 0.9, "n_seeds": 3}}}
    if diff is not None:
        heads["fused"]["diff"] = {"auroc": {"mean": diff[0], "low": diff[1], "high": diff[2], "n_seeds": 3}}
    return {"method": f"miles · {tau} · 0.5 · {scale}", "overrides": overrides,
            "reference": None if diff is None else "none", "heads": heads}


def _summary(*methods: dict, split: str = "val", tasks: tuple[str, ...] = ("ihm",)) -> dict:
    none = {"method": "none", "overrides": ["balancing=none"], "reference": None, "heads": {}}
    return {"split": split, "tasks": {task: {"methods": [none, *methods]} for task in tasks}}


def test_nothing_shown_to_help_keeps_the_current_default():
    choice = choose_default(_summary(_method("0.2", "raw", (0.01, -0.02, 0.04)),
                                     _method("0.05", "raw", (0.03, -0.001, 0.06))), CURRENT)
    assert not choice.changed and choice.method == "miles · 0.2 · 0.5 · raw"
    assert "no setting" in choice.reason


def test_a_setting_shown_to_help_with_a_larger_mean_replaces_the_default():
    choice = choose_default(_summary(_method("0.2", "raw", (0.00, -0.02, 0.02)),
                                     _method("0.05", "raw", (0.03, 0.01, 0.05)),
                                     _method("0.1", "chance_corrected", (0.05, -0.01, 0.11))), CURRENT)
    assert choice.changed and choice.method == "miles · 0.05 · 0.5 · raw"  # the larger mean is not shown
    assert "balancing.tau=0.05" in choice.overrides and "+0.030" in choice.reason


def test_the_default_stays_when_it_is_shown_and_best():
    choice = choose_default(_summary(_method("0.2", "raw", (0.04, 0.01, 0.07)),
                                     _method("0.05", "raw", (0.03, 0.01, 0.05))), CURRENT)
    assert not choice.changed and "stays" in choice.reason


def test_a_setting_must_help_on_every_task_reported():
    two = _summary(_method("0.2", "raw", (0.0, -0.02, 0.02)), _method("0.05", "raw", (0.03, 0.01, 0.05)),
                   tasks=("ihm", "pheno"))
    two["tasks"]["pheno"]["methods"][2]["heads"]["fused"]["diff"]["auroc"]["low"] = -0.01
    assert not choose_default(two, CURRENT).changed


def test_test_set_results_and_a_missing_default_are_refused():
    with pytest.raises(ValueError, match="chosen on validation results, not on split 'test'"):
        choose_default(_summary(_method("0.2", "raw", (0.0, -0.1, 0.1)), split="test"), CURRENT)
    with pytest.raises(ValueError, match="current default .* is not one method"):
        choose_default(_summary(_method("0.05", "raw", (0.0, -0.1, 0.1))), CURRENT)


def test_the_choose_command_reads_the_validation_summary_and_the_current_settings(tmp_path, monkeypatch, capsys):
    import json
    import sys
    from pathlib import Path

    import yaml

    from evaluation.study.__main__ import main

    root = Path(__file__).resolve().parent.parent
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["eval"]["reports_dir"] = str(tmp_path / "reports")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    folder = tmp_path / "reports" / "study" / "sensitivity"
    monkeypatch.setattr(sys, "argv", ["study", "choose", "sensitivity", "--repo", str(tmp_path)])
    from data_prep.errors import PipelineInputError

    with pytest.raises(PipelineInputError, match=r"summary_val\.json: not found \(run `report sensitivity --split"):
        main()
    folder.mkdir(parents=True)
    (folder / "summary_val.json").write_text(json.dumps(_summary(_method("0.2", "raw", (0.0, -0.02, 0.02)),
                                                                 _method("0.05", "raw", (0.03, 0.01, 0.05)))))
    main()
    assert capsys.readouterr().out.startswith("change to miles · 0.05 · 0.5 · raw: ")
    saved = json.loads((folder / "choice.json").read_text())
    assert saved["rule"] == "beats_none" and saved["changed"] is True
    monkeypatch.setattr(sys, "argv", ["study", "choose", "main", "--repo", str(tmp_path)])
    with pytest.raises(PipelineInputError, match="study grid 'main' has no choice rule .*sensitivity"):
        main()


def _unimodal(modality: str, lr: str, auroc: float) -> dict:
    return {"method": f"unimodal {modality} · {lr}", "reference": None,
            "overrides": ["regime=unimodal", f"regime.modality={modality}", f"train.lr={lr}"],
            "heads": {modality: {"auroc": {"mean": auroc, "low": auroc - 0.05, "high": auroc + 0.05, "n_seeds": 3}}}}


def test_the_best_rate_alone_of_each_encoder_becomes_its_mslr_multiplier():
    summary = {"split": "val", "tasks": {"ihm": {"methods": [
        _unimodal("ehr", "1.0e-4", 0.70), _unimodal("ehr", "3.0e-4", 0.74), _unimodal("ehr", "1.0e-3", 0.72),
        _unimodal("cxr", "1.0e-4", 0.60), _unimodal("cxr", "3.0e-4", 0.65), _unimodal("cxr", "1.0e-3", 0.68)]}}}
    choice = best_unimodal_multipliers(summary, 3.0e-4)
    assert choice.changed and choice.overrides == ("balancing.unimodal_multipliers.cxr=3.33333",
                                                   "balancing.unimodal_multipliers.ehr=1")
    assert "mslr_k.yaml" in choice.reason and "0.001 -> 0.680" in choice.reason
    summary["tasks"]["ihm"]["methods"][5]["heads"]["cxr"]["auroc"]["mean"] = 0.65  # a tie: the rate nearer train.lr
    assert not best_unimodal_multipliers(summary, 3.0e-4).changed
    with pytest.raises(ValueError, match="not on split 'test'"):
        best_unimodal_multipliers({**summary, "split": "test"}, 3.0e-4)
