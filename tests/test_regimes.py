"""Regimes: the registry and its configs, and the unimodal regime end to end on the tiny data.

A unimodal model is trained alone on every training stay that has its modality and writes
the same predictions contract as the multi-head model, with its one head, so evaluation
scores it without special cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from training_fakes import LABELS, ROOT, TASK, tiny_config, write_task_inputs

from data_prep.dataset import MultimodalDataset
from data_prep.errors import PipelineInputError
from data_prep.params import compose
from evaluation.assess import EvalSettings, evaluate_task
from evaluation.inputs import read_predictions
from training.regimes import build_regime, list_regimes
from training.train import fit

CONFIG_DIR = ROOT / "configs" / "regime"


def test_every_regime_yaml_is_registered_and_every_registered_regime_has_a_yaml():
    assert {path.stem for path in CONFIG_DIR.glob("*.yaml")} == set(list_regimes())
    assert {"supervised", "unimodal"} <= set(list_regimes())


@pytest.mark.parametrize("name", list_regimes())
def test_every_regime_composes_and_builds(name, tmp_path):
    cfg = OmegaConf.create(compose([f"regime={name}"]))
    regime = build_regime(cfg)
    assert regime.name == name
    assert regime.dataset_setting() in ("paired", "partial")
    model = regime.build_model(num_labels=3, ehr_features=76, channels_last=False)
    assert set(model.head_names) >= {regime.monitored_head}
    assert regime.balancing()["name"]


def test_bad_regime_settings_are_one_line_errors():
    cfg = OmegaConf.create(compose(["regime=unimodal"]))
    with pytest.raises(PipelineInputError, match=r"regime.modality='xray': expected one of ehr, cxr"):
        build_regime(OmegaConf.merge(cfg, {"regime": {"modality": "xray"}}))
    with pytest.raises(PipelineInputError, match=r"regime.name='nope': unknown regime; known: .*unimodal"):
        build_regime(OmegaConf.merge(cfg, {"regime": {"name": "nope"}}))
    with pytest.raises(PipelineInputError, match="unknown settings: bogus"):
        build_regime(OmegaConf.merge(cfg, {"regime": {"bogus": 1}}))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("regimes")
    write_task_inputs(root)
    return root


def unimodal_config(root: Path, modality: str, **train):
    cfg = tiny_config(root, balancing="miles", epochs=2, runs_dir=str(root / f"uni_{modality}"), **train)
    return OmegaConf.merge(cfg, {"regime": {"name": "unimodal", "modality": modality}})


@pytest.mark.parametrize("modality", ["ehr", "cxr"])
def test_unimodal_trains_alone_and_writes_the_predictions_contract(data_root, modality):
    cfg = unimodal_config(data_root, modality)
    result = fit(cfg, TASK)
    predictions = pd.read_parquet(result.run_dir / "predictions.parquet")
    # its one head, and (EHR only: it serves every stay) the routed prediction, which is that head
    routed = ("routed",) if modality == "ehr" else ()
    head_columns = {c.split("_")[1] for c in predictions.columns if c.startswith("p_")}
    assert head_columns == {modality, *routed}
    assert sorted(f"p_{head}_{label}" for head in (modality, *routed) for label in LABELS) == \
        sorted(c for c in predictions.columns if c.startswith("p_"))
    for label in LABELS if routed else ():
        assert predictions[f"p_routed_{label}"].equals(predictions[f"p_ehr_{label}"])
    labels = pd.read_parquet(data_root / "interim" / "tasks" / TASK / "labels.parquet")
    assert set(predictions["stay_id"]) == set(labels.loc[labels["split"].isin(["val", "test"]), "stay_id"])
    if modality == "cxr":
        assert predictions.loc[~predictions["has_cxr"], f"p_cxr_{LABELS[0]}"].isna().all()
    else:
        assert predictions[f"p_ehr_{LABELS[0]}"].notna().all()
    history = json.loads((result.run_dir / "history.json").read_text())
    assert [k for k in history[0] if k.startswith("lr_") and k != "lr_global"] == [f"lr_{modality}"]
    assert f"val_auroc_{modality}" in history[0] and "val_auroc_fused" not in history[0]
    assert not any(k.startswith("balancer_") for k in history[0])  # no balancer with one modality
    best = __import__("torch").load(result.run_dir / "model.pt", weights_only=False)
    assert best["head"] == modality
    assert all(key.split(".")[1] == modality for key in best["model"] if key.split(".")[0] in ("encoders", "heads"))

    # evaluation scores it without special cases: its one head on the paired and partial sets
    evaluation = evaluate_task(TASK, read_predictions(result.run_dir / "predictions.parquet"), None,
                               EvalSettings(n_bootstrap=20, seed=0))
    assert evaluation.heads == (modality, *routed)
    for name, result_set in evaluation.sets.items():
        assert set(result_set.heads) == {modality, *(routed if name == "test_partial" else ())}


def test_unimodal_cxr_trains_on_the_stays_with_an_image(data_root):
    cfg = unimodal_config(data_root, "cxr")
    regime = build_regime(cfg)
    train = MultimodalDataset(TASK, "train", regime.dataset_setting(), cfg)
    everyone = MultimodalDataset(TASK, "train", "partial", cfg)
    assert bool(train.image_rows.min() >= 0) and len(train) == int((everyone.image_rows >= 0).sum())
    ehr = build_regime(unimodal_config(data_root, "ehr"))
    assert len(MultimodalDataset(TASK, "train", ehr.dataset_setting(), cfg)) == len(everyone)


def test_the_dvc_exp_run_overrides_of_the_unimodal_regime_compose():
    from data_prep.params import checked_compose

    params = checked_compose(["regime=unimodal", "regime.modality=cxr"])
    assert params["regime"] == {"name": "unimodal", "objective": "supervised", "modality": "cxr"}
    assert build_regime(OmegaConf.create(params)).dataset_setting() == "paired"
    with pytest.raises(PipelineInputError, match="regime=nope"):
        checked_compose(["regime=nope"])
