"""Private training (DP-SGD, patient-level) and the membership-inference audit.

- the epsilon we report is Opacus's own accountant's for the same configuration;
- the patient is the unit: sampling draws patients (all their stays together) and a patient's
  stays share one clipping norm (their per-stay gradients are summed before clipping);
- DP training runs end to end on the tiny twin, logs epsilon per epoch and resumes it;
- impossible configurations stop with one line before any training;
- the audit finds membership in a deliberately overfitted model and not in one that never saw
  the members.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from training_fakes import LABELS, TASK, tiny_config, write_task_inputs

from data_prep.dataset import MultimodalDataset, collate
from data_prep.errors import PipelineInputError
from data_prep.params import compose
from data_prep.validation import validate_config
from evaluation.privacy_audit import audit
from models.fusion import list_fusions
from training.privacy import PrivacySettings, PrivateTraining
from training.privacy.compat import make_private_compatible, unsupported_layers
from training.privacy.sampling import EmptyTolerantCollate, PatientPoissonBatchSampler
from training.train import fit


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    write_task_inputs(root)
    return root


def private_config(root, run: str, epsilon: float = 3.0, **train):
    cfg = tiny_config(root, balancing="miles", runs_dir=str(root / run), **train)
    return OmegaConf.merge(cfg, {"privacy": {"enabled": True, "target_epsilon": epsilon}})


# ---- accounting ------------------------------------------------------------------------------
@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_matches_opacus_own_accountant_for_a_known_configuration(accountant):
    """100 patients with one stay each, batch 10, 3 epochs: the noise multiplier and the epsilon
    after 30 steps are those of Opacus's PrivacyEngine.make_private_with_epsilon."""
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    n, batch, epochs, target, delta = 100, 10, 3, 2.0, 1e-3
    dataset = TensorDataset(torch.randn(n, 3), torch.randint(0, 2, (n,)))
    model = torch.nn.Linear(3, 2)
    engine = PrivacyEngine(accountant=accountant)
    _, optimizer, loader = engine.make_private_with_epsilon(
        module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        data_loader=DataLoader(dataset, batch_size=batch), target_epsilon=target, target_delta=delta,
        epochs=epochs, max_grad_norm=1.0)
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            if len(x):
                torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    expected = engine.get_epsilon(delta)

    ours = PrivateTraining(PrivacySettings(enabled=True, target_epsilon=target, delta=delta, accountant=accountant),
                           subject_ids=np.arange(n), batch_size=batch, epochs=epochs)
    assert ours.sample_rate == pytest.approx(1 / len(loader)) and ours.steps_per_epoch == len(loader)
    assert ours.noise_multiplier == pytest.approx(optimizer.noise_multiplier)
    toy = torch.nn.Linear(3, 2)
    ours.attach(toy, torch.optim.SGD(toy.parameters(), lr=0.1))
    for _ in range(epochs * ours.steps_per_epoch):
        ours.empty_step()  # accounting does not depend on the data
    assert ours.epsilon() == pytest.approx(expected, rel=1e-9)
    assert 0.9 * target <= ours.epsilon() <= target * 1.01


# ---- the unit of privacy is the patient ----------------------------------------------------
def test_poisson_sampling_draws_patients_with_all_their_stays():
    subject_ids = np.array([7, 7, 8, 9, 9, 9, 10])
    sampler = PatientPoissonBatchSampler(subject_ids, sample_rate=0.3, steps=4000,
                                         generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 4000
    drawn = np.zeros((len(batches), 4))
    for b, batch in enumerate(batches):
        patients = subject_ids[batch]
        for k, patient in enumerate((7, 8, 9, 10)):
            in_batch = int((patients == patient).sum())
            assert in_batch in (0, int((subject_ids == patient).sum()))  # all of a patient's stays, or none
            drawn[b, k] = in_batch > 0
    assert np.allclose(drawn.mean(axis=0), 0.3, atol=0.03)  # each patient, not each stay, has rate q
    assert any(len(batch) == 0 for batch in batches)  # empty batches happen and are yielded


def test_empty_batches_collate_to_zero_rows_with_the_right_shapes(data_root):
    cfg = tiny_config(data_root)
    dataset = MultimodalDataset(TASK, "train", "partial", cfg, train=True)
    collate_fn = EmptyTolerantCollate(dataset[0])
    empty, one = collate_fn([]), collate_fn([dataset[1]])
    assert set(empty) == set(one)
    for key in set(one) - {"ehr"}:  # EHR is padded to the longest stay: its time axis varies
        assert empty[key].shape[0] == 0 and empty[key].shape[1:] == one[key].shape[1:]
    assert empty["ehr"].shape[0] == 0 and empty["ehr"].shape[2] == one["ehr"].shape[2]


def _no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def test_a_patient_with_two_stays_gets_one_clipping_norm(data_root):
    """After the backward pass, each patient's per-sample gradient is the gradient of the sum
    of *their* stays' losses (checked against plain autograd on those stays alone), so clipping
    bounds a patient's whole contribution, not each stay's."""
    import models

    cfg = private_config(data_root, "unit")
    dataset = MultimodalDataset(TASK, "train", "partial", cfg, train=False)
    two_stays = [i for i in range(len(dataset)) if (dataset.subject_ids == dataset.subject_ids[i]).sum() == 2][:2]
    assert dataset.subject_ids[two_stays[0]] == dataset.subject_ids[two_stays[1]]
    others = [i for i in range(len(dataset)) if dataset.subject_ids[i] != dataset.subject_ids[two_stays[0]]][:3]
    items = [dataset[i] for i in two_stays + others]
    assert any(item["has_cxr"] for item in items) and not all(item["has_cxr"] for item in items)
    batch = EmptyTolerantCollate(items[0])(items)  # the DP loader's collate

    torch.manual_seed(0)
    model, substitutions = make_private_compatible(_no_dropout(models.build(cfg, len(LABELS), ehr_features=76)))
    assert any("LSTM -> DPLSTM" in s for s in substitutions) and any("BatchNorm2d" in s for s in substitutions)
    reference = __import__("copy").deepcopy(model)
    privacy = PrivateTraining.from_config(cfg, dataset, balancing={"name": "miles"}, objective="supervised")
    optimizer = privacy.attach(model, torch.optim.SGD(model.parameters(), lr=0.1))
    objective = privacy.wrap_objective(__import__("training.objectives", fromlist=["x"]).build_objective(
        "supervised", model))
    model.train()
    objective.loss(objective.forward(batch), {}).total.backward()
    privacy.group_by_patient(batch["subject_id"])
    patients = torch.unique(batch["subject_id"])
    assert all(p.grad_sample.shape[0] == len(patients) for p in optimizer.params)

    # plain autograd: the patient's two stays alone, loss = sum of their per-stay losses
    reference.train()
    ref_objective = privacy.wrap_objective(__import__("training.objectives", fromlist=["x"]).build_objective(
        "supervised", reference))
    first = int(dataset.subject_ids[two_stays[0]])
    pair = collate([item for item in items if item["subject_id"] == first])
    (ref_objective.loss(ref_objective.forward(pair), {}).total * 2).backward()
    row = int((patients == first).nonzero())
    for (name, p), ref in zip(model.named_parameters(), reference.parameters(), strict=True):
        expected = ref.grad if ref.grad is not None else torch.zeros_like(ref)
        assert torch.allclose(p.grad_sample[row], expected, atol=1e-5, rtol=1e-3), name


def test_the_ehr_encoders_per_sample_gradients_follow_the_batch_order_under_dp():
    """Opacus 1.6's DPLSTM returns per-sample gradients in the order of a *packed* sequence
    (sorted by length), which would pair one stay's LSTM gradient with another stay's other
    gradients. Our encoder runs the padded batch, so row i is stay i for any order of lengths."""
    import copy

    from opacus.grad_sample.grad_sample_module import GradSampleHooks

    from models.ehr_encoders import LSTMEncoder

    torch.manual_seed(0)
    encoder, _ = make_private_compatible(_no_dropout(LSTMEncoder(input_size=3, hidden_size=5, num_layers=1)))
    reference = copy.deepcopy(encoder)
    GradSampleHooks(encoder)
    ehr = torch.randn(4, 6, 3)

    def per_sample_matches(lengths):
        encoder.zero_grad()
        for p in encoder.parameters():
            p.grad_sample = None
        encoder(ehr, lengths).sum(dim=1).mean().backward()
        matches = []
        for i in range(4):
            reference.zero_grad()
            reference(ehr[i:i + 1], lengths[i:i + 1]).sum().backward()
            matches.append(all(torch.allclose(p.grad_sample[i], r.grad, atol=1e-6)
                               for p, r in zip(encoder.parameters(), reference.parameters(), strict=True)))
        return matches

    assert all(per_sample_matches(torch.tensor([3, 6, 2, 5])))
    assert all(per_sample_matches(torch.tensor([6, 5, 3, 2])))


@pytest.mark.parametrize("fusion", list_fusions())
def test_every_fusion_can_be_made_private(fusion):
    import models

    cfg = OmegaConf.create(compose([f"fusion={fusion}", "model=small"]))
    model, _ = make_private_compatible(models.build(cfg, 3, ehr_features=76))
    assert unsupported_layers(model) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm | torch.nn.LSTM) for m in model.modules())


# ---- end to end ------------------------------------------------------------------------------
def test_private_training_end_to_end_logs_epsilon_and_resumes_the_accountant(data_root):
    cfg = OmegaConf.merge(private_config(data_root, "dp_ehr", epochs=3),
                          {"regime": {"name": "unimodal", "modality": "ehr"}})
    whole = fit(cfg, TASK)
    epsilons = [row["privacy_epsilon"] for row in whole.history]
    assert len(epsilons) == 3 and epsilons[0] > 0 and all(b > a for a, b in zip(epsilons[:-1], epsilons[1:], strict=True))
    assert 0.9 * 3.0 <= epsilons[-1] <= 3.0 * 1.01  # the budget is spent, not exceeded
    predictions = pd.read_parquet(whole.run_dir / "predictions.parquet")
    assert predictions[f"p_ehr_{LABELS[0]}"].notna().all()

    resumed_cfg = OmegaConf.merge(cfg, {"train": {"runs_dir": str(data_root / "dp_ehr_resumed")}})
    fit(OmegaConf.merge(resumed_cfg, {"train": {"stop_after_epoch": 1}}), TASK)
    resumed = fit(resumed_cfg, TASK, resume=True)
    assert [row["privacy_epsilon"] for row in resumed.history] == pytest.approx(epsilons)
    assert [row["val_auroc_ehr"] for row in resumed.history] == pytest.approx(
        [row["val_auroc_ehr"] for row in whole.history])


def test_private_multihead_training_under_miles_keeps_per_modality_rates(data_root):
    cfg = private_config(data_root, "dp_multi", epsilon=8.0, epochs=1, batch_size=30)
    result = fit(cfg, TASK)
    row = result.history[-1]
    assert {"lr_ehr", "lr_cxr", "privacy_epsilon", "privacy_noise_multiplier"} <= set(row)
    assert 0 < row["privacy_epsilon"] <= 8.0 * 1.01
    best = torch.load(result.run_dir / "model.pt", weights_only=False)
    assert any(".norm." in key for key in best["model"])  # group norm stands in for batch norm
    assert pd.read_parquet(result.run_dir / "predictions.parquet")[f"p_fused_{LABELS[0]}"].notna().all()


# ---- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("setting", "message"), [
    ({"target_epsilon": 0.0}, r"privacy.target_epsilon=0.0: expected a finite number > 0"),
    ({"target_epsilon": -1.0}, r"privacy.target_epsilon=-1.0"),
    ({"delta": 1.0}, r"privacy.delta=1.0: expected a number > 0 and < 1"),
    ({"max_grad_norm": 0.0}, r"privacy.max_grad_norm=0.0"),
    ({"accountant": "moments"}, r"privacy.accountant='moments': expected one of rdp, prv, gdp"),
])
def test_impossible_privacy_settings_are_one_line_errors(setting, message):
    cfg = OmegaConf.merge(OmegaConf.create(compose([])), {"privacy": setting})
    with pytest.raises(PipelineInputError, match=message) as err:
        validate_config(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("change", "message"), [
    ({"privacy": {"target_epsilon": 1e-7}}, r"privacy.target_epsilon=1e-07: cannot be met"),
    ({"privacy": {"delta": 0.5}}, r"privacy.delta=0.5: expected below 1/N"),
    ({"balancing": {"name": "ogm_ge"}}, r"balancing.name=ogm_ge: it rescales"),
])
def test_configurations_that_cannot_hold_the_guarantee_stop_before_training(data_root, change, message):
    cfg = OmegaConf.merge(private_config(data_root, "refused"), change)
    if "balancing" in change:
        cfg.balancing = OmegaConf.create(compose(["balancing=ogm_ge"]))["balancing"]
    with pytest.raises(PipelineInputError, match=message) as err:
        fit(cfg, TASK)
    assert "\n" not in str(err.value)
    assert not (data_root / "refused" / TASK / "last.pt").exists()


class Scaled(torch.nn.Module):
    """A module holding a parameter of its own that no per-sample gradient rule covers."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(3))
        self.linear = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.linear(x) * self.scale


def test_a_layer_opacus_cannot_handle_is_named_in_one_line():
    with pytest.raises(PipelineInputError, match=r"no per-sample gradient rule for <model> \(Scaled\)"):
        make_private_compatible(Scaled())


# ---- the audit -------------------------------------------------------------------------------
def _trained_predictions(memorize: bool, n: int = 120, seed: int = 0):
    """An MLP on random features: fitted to the members' random labels (memorization: the only
    way to fit them) or to a disjoint set of patients (it never saw the members)."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(3 * n, 16, generator=generator)
    rng = np.random.default_rng(seed)
    labels = torch.from_numpy((rng.random(3 * n) < 0.5).astype(np.float32))
    train = slice(0, n) if memorize else slice(2 * n, 3 * n)
    torch.manual_seed(seed)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 128), torch.nn.ReLU(), torch.nn.Linear(128, 1))
    optimizer = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    for _ in range(300):
        optimizer.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(mlp(features[train])[:, 0], labels[train]).backward()
        optimizer.step()
    with torch.no_grad():
        probs = torch.sigmoid(mlp(features[: 2 * n])[:, 0]).numpy()
    return labels[: 2 * n].numpy(), probs


def _frame(labels, target_probs, reference_probs):
    n2 = len(labels)
    rows = []
    for model, probs in (("target", target_probs), ("reference_0", reference_probs)):
        rows.append(pd.DataFrame({"subject_id": np.arange(n2), "stay_id": np.arange(n2) + 10_000,
                                  "split": np.where(np.arange(n2) < n2 // 2, "train", "test"), "has_cxr": True,
                                  "y_outcome": labels, "p_ehr_outcome": probs, "model": model}))
    return pd.concat(rows, ignore_index=True)


def test_audit_detects_membership_in_an_overfitted_model_and_not_in_an_unseen_one():
    labels, memorized = _trained_predictions(memorize=True)
    _, unseen = _trained_predictions(memorize=False)
    _, reference = _trained_predictions(memorize=False, seed=1)
    overfitted = audit(_frame(labels, memorized, reference), [], [0.1], 200, 0, 0.95)["heads"]["ehr"]
    threshold, calibrated = overfitted["threshold"], overfitted["calibrated"]
    assert threshold["auroc"]["value"] > 0.85 and threshold["auroc"]["ci_low"] > 0.75
    assert threshold["tpr_at_fpr_0.1"]["value"] > 0.5
    # random labels carry no per-stay difficulty for the reference models to remove, so
    # calibration only adds their noise here: weaker, still clearly above chance
    assert calibrated["auroc"]["value"] > 0.65 and calibrated["auroc"]["ci_low"] > 0.55
    never_saw = audit(_frame(labels, unseen, reference), [], [0.1], 200, 0, 0.95)["heads"]["ehr"]
    for attack in ("threshold", "calibrated"):
        auroc = never_saw[attack]["auroc"]
        assert abs(auroc["value"] - 0.5) < 0.12 and auroc["ci_low"] < 0.5 < auroc["ci_high"]
    assert overfitted["members"] == overfitted["non_members"] == 120


def test_audit_reports_the_epsilon_spent_and_no_identifiers():
    labels, memorized = _trained_predictions(memorize=True, n=40)
    history = [{"privacy_epsilon": 1.5, "privacy_delta": 1e-3, "privacy_noise_multiplier": 1.1},
               {"privacy_epsilon": 2.9, "privacy_delta": 1e-3, "privacy_noise_multiplier": 1.1}]
    result = audit(_frame(labels, memorized, memorized), history, [0.01, 0.1], 50, 0, 0.95)
    assert result["privacy"] == {"private": True, "epsilon": 2.9, "delta": 1e-3, "noise_multiplier": 1.1,
                                 "epochs": 2}
    text = json.dumps(result)
    assert "subject_id" not in text and "10000" not in text


def test_the_tradeoff_table_goes_between_the_markers_only(tmp_path):
    from evaluation.privacy_tradeoff import MARKERS, write_docs_block

    estimate = {"value": 0.7, "ci_low": 0.6, "ci_high": 0.8}
    rows = [{"task": TASK, "point": point, "epsilon": epsilon,
             "utility": {"fused": {"auroc": estimate, "auprc": estimate}},
             "attack": {"fused": {"threshold": {"value": 0.52, "ci_low": 0.45, "ci_high": 0.6}}}}
            for point, epsilon in (("no_dp", None), ("eps_3", 2.97))]
    docs = tmp_path / "results.md"
    docs.write_text(f"# Results\nbefore\n{MARKERS[0]}\nNot run yet.\n{MARKERS[1]}\nafter\n")
    write_docs_block(docs, rows, tmp_path / "missing.png", "settings note")
    text = docs.read_text()
    assert text.startswith("# Results\nbefore\n") and text.endswith(f"{MARKERS[1]}\nafter\n")
    table = [line for line in text.splitlines() if line.startswith(f"| {TASK}")]
    assert [line.split(" | ")[1] for line in table] == ["target ε = 3", "no DP"]  # private first, by epsilon
    assert "2.97" in table[0] and "0.700 (0.60–0.80)" in table[0] and "0.520 (0.45–0.60)" in table[0]
    assert "settings note" in text and "Not run yet." not in text


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_audits_weighted_roc_matches_sklearn_with_ties_and_bootstrap_weights(seed):
    """The audit computes its ROC itself (thousands of bootstrap resamples); it must give
    sklearn's AUROC and the exact TPR at a fixed FPR (sklearn's curve with every point kept)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from evaluation.privacy_audit import _auroc, tpr_at_fpr

    rng = np.random.default_rng(seed)
    member = rng.random(400) < 0.4
    score = np.round(rng.normal(size=400) + member, 1)  # rounded: many ties
    weights = rng.integers(0, 4, size=400).astype(float)
    assert _auroc(member, score, weights) == pytest.approx(roc_auc_score(member, score, sample_weight=weights),
                                                           abs=1e-12)
    assert _auroc(member, score) == pytest.approx(roc_auc_score(member, score), abs=1e-12)
    fprs, tprs, _ = roc_curve(member, score, sample_weight=weights, drop_intermediate=False)
    for fpr in (0.01, 0.1, 0.5):
        assert tpr_at_fpr(member, score, fpr, weights) == pytest.approx(tprs[fprs <= fpr + 1e-12].max(), abs=1e-12)


def test_the_tradeoff_command_keeps_settings_that_follow_the_epsilons():
    from evaluation.privacy_tradeoff import parse_args

    args = parse_args(["run", "--epsilons", "none", "8", "train.epochs=2", "model.embed_dim=128"])
    assert args.epsilons == ["none", "8"]
    assert args.overrides == ["train.epochs=2", "model.embed_dim=128"]
    with pytest.raises(SystemExit):
        parse_args(["run", "--epsilons", "0"])


def test_the_comparison_report_shows_the_tradeoff_table_and_plot(tmp_path):
    """What `privacy_tradeoff aggregate` wrote becomes a section of reports/index.html with the
    same lines as docs/results.md; nothing when the grid has not run."""
    import json

    from evaluation.document import Figure, Table
    from evaluation.privacy_report import tradeoff_section
    from evaluation.privacy_tradeoff import markdown_table

    assert tradeoff_section(tmp_path) is None
    estimate = {"value": 0.7, "ci_low": 0.6, "ci_high": 0.8}
    rows = [{"task": TASK, "point": "eps_1", "epsilon": 0.99, "utility": {"ehr": {"auroc": estimate, "auprc": estimate}},
             "attack": {"ehr": {"calibrated": {"value": 0.51, "ci_low": 0.45, "ci_high": 0.58}}}}]
    (tmp_path / "tradeoff.json").write_text(json.dumps(rows))
    (tmp_path / "tradeoff.png").write_bytes(b"\x89PNG fake")
    section = tradeoff_section(tmp_path)
    table = next(block for block in section.blocks if isinstance(block, Table))
    assert any(isinstance(block, Figure) for block in section.blocks)
    assert [" | ".join(cells) for cells in table.rows] == [
        line.strip("| ") for line in markdown_table(rows).splitlines()[2:]]
    assert table.rows[0][1] == "target ε = 1" and table.rows[0][7] == "0.510 (0.45–0.58)"
