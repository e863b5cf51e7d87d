"""MIND distillation: the loss against hand-computed values, teachers reused across student
settings, the routed prediction, bad teacher input, and teachers + student end to end.

Hand-computed values use only `math` (the logistic function and the binary cross-entropy
written out), so they check the objective's arithmetic, not restate it.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from training_fakes import LABELS, ROOT, TASK, ToyModel, toy_batch, toy_teachers, write_task_inputs

from data_prep import paths
from data_prep.errors import PipelineInputError, StaleInputError
from data_prep.params import checked_compose, compose
from evaluation.assess import EvalSettings, evaluate_task
from evaluation.inputs import read_predictions
from training.balancers import build_balancer, list_balancers
from training.objectives import Step, build_objective
from training.objectives.supervised import Supervised
from training.predictions import PredictionSet, predictions_frame
from training.teacher_logits import (
    TeacherLogits,
    logits_frame,
    read_teacher_logits,
    write_teacher_logits,
)
from training.teachers import (
    EXECUTION_KEYS,
    STAGE_PARAMS,
    enabled_members,
    member_config,
    train_teachers,
)


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bce(logit: float, target: float) -> float:
    """-(q log sigma(x) + (1 - q) log(1 - sigma(x)))"""
    return -(target * math.log(sig(logit)) + (1 - target) * math.log(1 - sig(logit)))


# ---- the loss ---------------------------------------------------------------------------------
# three stays, one label; stay 12 has no image (its CXR teacher logit is NaN, its student CXR
# logit a value that must be ignored)
STAYS = np.array([10, 11, 12])
EHR_A, EHR_B, CXR_A = [0.0, 2.0, -2.0], [2.0, 2.0, 0.0], [4.0, -4.0, float("nan")]
S_EHR, S_CXR, S_FUSED = [1.0, 0.0, -1.0], [2.0, -2.0, 50.0], [0.5, 0.5, -0.5]


def hand_table() -> TeacherLogits:
    column = lambda values: np.array(values, dtype=np.float32)[:, None]  # noqa: E731
    return TeacherLogits(stay_ids=STAYS, split=np.full(3, "train"), has_cxr=np.array([True, True, False]),
                         labels=np.zeros((3, 1), np.float32), label_names=["death"],
                         members={"ehr_a": "ehr", "ehr_b": "ehr", "cxr_a": "cxr"},
                         logits={"ehr_a": column(EHR_A), "ehr_b": column(EHR_B), "cxr_a": column(CXR_A)})


def hand_step(order=(0, 1, 2)) -> Step:
    order = list(order)
    outputs = {head: torch.tensor(values, requires_grad=True)[order, None]
               for head, values in (("ehr", S_EHR), ("cxr", S_CXR), ("fused", S_FUSED))}
    batch = {"stay_id": torch.from_numpy(STAYS[order]), "has_cxr": torch.tensor([True, True, False])[order],
             "labels": torch.tensor([[1.0], [0.0], [1.0]])[order]}
    return Step(batch, {}, outputs)


def expected_terms(temperature: float, rule: str = "mean_probability", fused: bool = False) -> dict[str, float]:
    t = temperature
    if rule == "mean_probability":
        q_ehr = [(sig(a / t) + sig(b / t)) / 2 for a, b in zip(EHR_A, EHR_B, strict=True)]
    else:
        q_ehr = [sig((a + b) / 2 / t) for a, b in zip(EHR_A, EHR_B, strict=True)]
    q_cxr = [sig(z / t) for z in CXR_A[:2]]  # stay 12: no image, no term
    terms = {"distill_ehr": t * t * sum(bce(s / t, q) for s, q in zip(S_EHR, q_ehr, strict=True)) / 3,
             "distill_cxr": t * t * sum(bce(s / t, q) for s, q in zip(S_CXR[:2], q_cxr, strict=True)) / 2}
    if fused:
        q_fused = [(q_ehr[0] + q_cxr[0]) / 2, (q_ehr[1] + q_cxr[1]) / 2, q_ehr[2]]
        terms["distill_fused"] = t * t * sum(bce(s / t, q) for s, q in zip(S_FUSED, q_fused, strict=True)) / 3
    return terms


@pytest.mark.parametrize(("temperature", "weight", "rule", "fused"),
                         [(2.0, 0.5, "mean_probability", False), (1.0, 1.0, "mean_probability", False),
                          (4.0, 0.25, "mean_logit", False), (2.0, 1.0, "mean_probability", True)])
def test_distillation_loss_matches_hand_computed_values(temperature, weight, rule, fused):
    objective = build_objective({"name": "distill", "teachers": hand_table(), "temperature": temperature,
                                 "weight": weight, "ensemble": rule,
                                 "fused_teacher": "ensembles" if fused else "none"}, ToyModel(num_labels=1))
    weights = {"ehr": 1.0, "cxr": 1.0, "fused": 1.0}
    step = hand_step()
    loss = objective.loss(step, weights)
    supervised = Supervised(ToyModel(num_labels=1)).loss(step, weights)
    expected = expected_terms(temperature, rule, fused)
    assert set(loss.terms) == set(expected)
    for name, value in expected.items():
        assert loss.terms[name].item() == pytest.approx(weight * value, rel=1e-5)
    assert loss.total.item() == pytest.approx(supervised.total.item() + weight * sum(expected.values()), rel=1e-5)
    for head in supervised.per_head:  # the supervised head losses are untouched
        torch.testing.assert_close(loss.per_head[head], supervised.per_head[head])


def test_a_missing_image_contributes_neither_value_nor_gradient_to_the_cxr_term():
    objective = build_objective({"name": "distill", "teachers": hand_table(), "temperature": 2.0}, ToyModel(1))
    step = hand_step(order=(2, 0, 1))  # the stays in another order than the table: looked up by stay_id
    terms = objective.distillation_terms(step)
    assert terms["distill_cxr"].item() == pytest.approx(expected_terms(2.0)["distill_cxr"], rel=1e-5)
    assert terms["distill_ehr"].item() == pytest.approx(expected_terms(2.0)["distill_ehr"], rel=1e-5)
    leaf = step.outputs["cxr"]
    leaf.retain_grad()
    terms["distill_cxr"].backward()
    assert torch.isfinite(leaf.grad).all()
    assert leaf.grad[0].item() == 0.0 and leaf.grad[1].item() != 0.0 and leaf.grad[2].item() != 0.0


def test_bad_distillation_settings_and_unknown_stays_are_one_line_errors():
    model = ToyModel(num_labels=1)
    with pytest.raises(PipelineInputError, match="regime.temperature=0"):
        build_objective({"name": "distill", "teachers": hand_table(), "temperature": 0}, model)
    with pytest.raises(PipelineInputError, match="regime.ensemble='median'"):
        build_objective({"name": "distill", "teachers": hand_table(), "ensemble": "median"}, model)
    with pytest.raises(PipelineInputError, match="regime.fused_teacher='x'"):
        build_objective({"name": "distill", "teachers": hand_table(), "fused_teacher": "x"}, model)
    with pytest.raises(PipelineInputError, match="no teacher logits"):
        build_objective("distill", model)
    with pytest.raises(PipelineInputError, match="no row for 1 stays"):
        hand_table().rows(np.array([10, 99]))


@pytest.mark.parametrize("balancer_name", list_balancers())
def test_distillation_composes_with_every_balancer(balancer_name):
    from training_fakes import balanced_step

    torch.manual_seed(0)
    model = ToyModel()
    batch = toy_batch(n=16)
    batch["has_cxr"][:4] = False
    batch["stay_id"] = torch.arange(100, 116)
    teachers = toy_teachers(batch["stay_id"].numpy(), 2, missing_image=range(100, 104))
    objective = build_objective({"name": "distill", "teachers": teachers, "temperature": 2.0, "weight": 1.0},
                                model)
    balancer = build_balancer({"name": balancer_name}, model, seed=3)
    balancer.on_epoch_start(0)
    step, loss = balanced_step(balancer, batch, objective=objective)
    assert set(loss.terms) == {"distill_ehr", "distill_cxr"} and all(v.item() > 0 for v in loss.terms.values())
    balancer.after_backward(step)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


# ---- teachers reused when only the student changes ---------------------------------------------
def teachers_stage() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["teachers"]["do"]


def stage_values(params: dict) -> dict:
    cfg = OmegaConf.create(params)
    return {key: OmegaConf.select(cfg, key) for key in teachers_stage()["params"]}


def test_the_teachers_stage_reads_exactly_its_dvc_params():
    assert tuple(teachers_stage()["params"]) == STAGE_PARAMS
    assert [key for key in STAGE_PARAMS if key.startswith("train.")] == [f"train.{k}" for k in EXECUTION_KEYS]
    assert not any(key.split(".")[0] in ("model", "fusion", "balancing") for key in STAGE_PARAMS)
    deps = teachers_stage()["deps"]
    assert "training/objectives/distill.py" not in deps and "training/regimes/distill.py" not in deps
    train_deps = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]["do"]["deps"]
    assert "${train.runs_dir}/teachers/${item}" in train_deps and teachers_stage()["outs"] == train_deps[-1:]


STUDENT_CHANGES = [["regime.temperature=4.0"], ["regime.weight=0.0"], ["regime.ensemble=mean_logit"],
                   ["regime.fused_teacher=ensembles"], ["regime.student.embed_dim=32"], ["model=small"],
                   ["fusion=late"], ["balancing=ogm_ge"], ["train.lr=0.001", "train.epochs=3", "train.seed=7"]]


@pytest.mark.parametrize("change", STUDENT_CHANGES, ids=lambda c: c[0])
def test_student_settings_leave_the_teachers_stage_and_every_member_unchanged(change):
    base, changed = checked_compose(["regime=distill"]), checked_compose(["regime=distill", *change])
    assert stage_values(changed) == stage_values(base)  # DVC: teachers@<task> is up to date
    for name, member in enabled_members(OmegaConf.create(base)).items():
        assert member_config(OmegaConf.create(changed), member) == member_config(OmegaConf.create(base), member), name


def test_teacher_settings_do_retrain_the_teachers():
    base = checked_compose(["regime=distill"])
    for change in (["teachers.train.epochs=2"], ["teachers.members.cxr_resnet50.enabled=true"],
                   ["data.cxr.crop_size=48"]):
        assert stage_values(checked_compose(["regime=distill", *change])) != stage_values(base), change


# ---- the routed prediction ---------------------------------------------------------------------
def prediction_set(heads) -> PredictionSet:
    rng = np.random.default_rng(0)
    has_cxr = np.array([True, False, True, False])
    return PredictionSet(stay_id=np.arange(4), subject_id=np.arange(4), has_cxr=has_cxr,
                         labels=np.array([[1.0], [0.0], [0.0], [1.0]], np.float32),
                         probs={h: rng.random((4, 1)).astype(np.float32) for h in heads})


def test_routed_is_the_fused_head_with_an_image_and_the_ehr_head_without():
    preds = prediction_set(("ehr", "cxr", "fused"))
    frame = predictions_frame({"test": preds}, ["death"])
    routed = frame["p_routed_death"].to_numpy(np.float32)
    np.testing.assert_array_equal(routed[[0, 2]], preds.probs["fused"][[0, 2], 0])
    np.testing.assert_array_equal(routed[[1, 3]], preds.probs["ehr"][[1, 3], 0])
    assert frame["p_routed_death"].notna().all() and frame.loc[~frame["has_cxr"], "p_cxr_death"].isna().all()
    # an EHR-only model routes every stay to its head; a CXR-only model cannot serve a stay without an image
    ehr_only = predictions_frame({"test": prediction_set(("ehr",))}, ["death"])
    np.testing.assert_array_equal(ehr_only["p_routed_death"], ehr_only["p_ehr_death"])
    assert "p_routed_death" not in predictions_frame({"test": prediction_set(("cxr",))}, ["death"]).columns


# ---- bad teacher input -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    write_task_inputs(root)
    return root


def distill_config(root: Path, weight: float = 1.0, runs: str = "runs", balancing: str = "none"):
    """regime=distill shrunk to seconds: two tiny EHR members, one ResNet-18 member, 2 epochs."""
    cfg = OmegaConf.create(compose(["regime=distill", f"balancing={balancing}"]))
    tiny = {"data": {"interim_dir": str(root / "interim"), "processed_dir": str(root / "processed"),
                     "cxr": {"image_size": 40, "crop_size": 32}},
            "regime": {"weight": weight, "student": {"ehr": {"hidden_size": 8}, "embed_dim": 8}},
            "teachers": {"train": {"epochs": 2, "batch_size": 16},
                         "members": {"ehr_lstm64": {"encoder": {"hidden_size": 8}},
                                     "ehr_lstm128": {"encoder": {"hidden_size": 16}},
                                     "ehr_lstm256": {"enabled": False}, "cxr_resnet34": {"enabled": False}}},
            "fusion": {"hidden_size": 16},
            "train": {"epochs": 2, "batch_size": 16, "runs_dir": str(root / runs), "device": "cpu",
                      "num_workers": 0}}
    return OmegaConf.merge(cfg, tiny)


def test_a_student_without_its_teachers_outputs_names_the_stage_to_run(data_root):
    from training.train import fit

    with pytest.raises(StaleInputError, match=rf"run `dvc repro teachers@{TASK}`"):
        fit(distill_config(data_root, runs="no_teachers"), TASK)


@pytest.fixture(scope="module")
def trained(data_root):
    """Teachers, then the student with and without distillation, on the tiny twin."""
    from training.train import fit

    cfg = distill_config(data_root)
    summary = train_teachers(cfg, TASK)
    student = fit(cfg, TASK)
    plain = fit(distill_config(data_root, weight=0.0, runs="plain"), TASK)
    return cfg, summary, student, plain


def test_mismatched_teacher_logits_are_refused(trained, tmp_path):
    from training.train import fit

    cfg = trained[0]
    table = read_teacher_logits(paths.teacher_logits_path(cfg, TASK), TASK)
    cases = {"missing": "training stays are missing", "labels": "y_<label> differs",
             "names": "do not match the task's"}
    for case, message in cases.items():
        runs = tmp_path / case
        shutil.copytree(paths.teachers_dir(cfg, TASK), runs / "teachers" / TASK)
        target = paths.teacher_logits_path({"train": {"runs_dir": str(runs)}}, TASK)
        frame = pd.read_parquet(target)
        labels, members = list(table.label_names), dict(table.members)
        if case == "missing":
            frame = frame.drop(index=frame.index[frame["split"] == "train"][0])
        elif case == "labels":
            column = f"y_{labels[0]}"
            first = frame.index[frame["split"] == "train"][0]
            frame.loc[first, column] = 1.0 - frame.loc[first, column]
        else:
            frame = frame.rename(columns={c: c.replace(labels[-1], "other") for c in frame.columns})
            labels = [*labels[:-1], "other"]
        write_teacher_logits(target, frame, members, labels)
        with pytest.raises(PipelineInputError, match=message):
            fit(OmegaConf.merge(cfg, {"train": {"runs_dir": str(runs)}}), TASK)


# ---- end to end on the tiny twin ---------------------------------------------------------------
def test_teachers_then_student_end_to_end(trained, data_root):
    cfg, summary, student, plain = trained
    assert summary["trained"] and set(summary["members"]) == {"ehr_lstm64", "ehr_lstm128", "cxr_resnet18"}
    table = read_teacher_logits(paths.teacher_logits_path(cfg, TASK), TASK)
    labels = pd.read_parquet(data_root / "interim" / "tasks" / TASK / "labels.parquet")
    assert set(table.stay_ids) == set(labels["stay_id"]) and table.label_names == list(LABELS)
    assert np.isnan(table.logits["cxr_resnet18"][~table.has_cxr]).all()
    assert np.isfinite(table.logits["cxr_resnet18"][table.has_cxr]).all()
    assert np.isfinite(table.logits["ehr_lstm64"]).all()

    # the distillation term is in the student's total loss; without it the total is the head sum
    for result, distilled in ((student, True), (plain, False)):
        for row in result.history:
            heads = sum(row[f"train_loss_{h}"] for h in ("ehr", "cxr", "fused"))
            assert (row["train_loss_total"] > heads + 1e-4) == distilled
    best = torch.load(student.run_dir / "model.pt", weights_only=False)
    assert best["model"]["encoders.ehr.lstm.weight_hh_l0"].shape[1] == 8  # the student's sizes

    # the routed prediction is scored on the partial test set, next to the three heads
    predictions = read_predictions(student.run_dir / "predictions.parquet")
    assert predictions.heads == ("ehr", "cxr", "fused", "routed")
    evaluation = evaluate_task(TASK, predictions, None, EvalSettings(n_bootstrap=20, seed=0))
    assert "routed" in evaluation.sets["test_partial"].heads and "routed" not in evaluation.sets["test_paired"].heads
    assert "routed_minus_fused" in evaluation.sets["test_partial"].differences


def test_teachers_are_reused_when_the_stage_runs_again_with_other_student_settings(trained):
    cfg = trained[0]
    member = paths.teachers_dir(cfg, TASK) / "ehr_lstm64" / "model.pt"
    before = member.stat().st_mtime_ns
    train_teachers(OmegaConf.merge(cfg, {"regime": {"temperature": 5.0}, "train": {"lr": 1e-3}}), TASK)
    assert member.stat().st_mtime_ns == before  # a finished member with the same settings is not retrained


def test_a_regime_without_teachers_trains_none(data_root):
    cfg = OmegaConf.merge(distill_config(data_root, runs="supervised"), {"regime": {"name": "supervised"}})
    summary = train_teachers(cfg, TASK)
    assert summary == {"trained": False, "reason": "regime=supervised uses no teachers"}
    assert not paths.teacher_logits_path(cfg, TASK).exists()


def test_logits_frame_round_trips(tmp_path):
    frame = logits_frame(np.array([3, 1, 2]), np.array(["train", "val", "test"]), np.array([True, False, True]),
                         np.array([[1.0], [0.0], [1.0]]), ["death"],
                         {"e": np.array([[0.1], [0.2], [0.3]]), "c": np.array([[1.0], [np.nan], [2.0]])})
    write_teacher_logits(tmp_path / "logits.parquet", frame, {"e": "ehr", "c": "cxr"}, ["death"])
    table = read_teacher_logits(tmp_path / "logits.parquet", TASK)
    assert table.stay_ids.tolist() == [1, 2, 3] and table.members == {"e": "ehr", "c": "cxr"}
    np.testing.assert_allclose(table.logits["e"][:, 0], [0.2, 0.3, 0.1], rtol=1e-6)
    assert np.isnan(table.logits["c"][0, 0])


# ---- the comparison table ----------------------------------------------------------------------
def test_the_comparison_table_averages_seeds_and_states_the_verdict(tmp_path):
    import json

    from evaluation.distill_report import (
        comparison_rows,
        distillation_section,
        distillation_verdict,
    )

    rows = [{"task": "ihm", "model": model, "seed": seed, "set": "test_partial", "head": "routed",
             "auroc": auroc, "auprc": 0.5, "parameters": 2_000_000, "ms_per_stay": 1.0}
            for model, seed, auroc in (("student_distill", 1, 0.70), ("student_distill", 2, 0.74),
                                       ("student_distill", 3, 0.72), ("student_plain", 1, 0.69),
                                       ("student_plain", 2, 0.71), ("student_plain", 3, 0.70))]
    table = comparison_rows(rows)["ihm"]
    distilled = next(line for line in table if line[0].startswith("Student + distillation"))
    assert distilled[2] == "3" and distilled[4] == "0.720 ± 0.020" and distilled[3] == "–"
    assert distilled[7] == "2.00 M"
    assert distillation_verdict(rows)["ihm"]["routed"] == pytest.approx(0.02)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    section = distillation_section(tmp_path / "rows.json")
    assert "+0.020" in section.blocks[0].caption
    assert distillation_section(tmp_path / "absent.json") is None
