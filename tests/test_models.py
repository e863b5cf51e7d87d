"""The multi-head fusion model: every registered fusion method and encoder, tiny sizes.

Parametrized over the registries (timm-style), so a newly registered fusion or encoder is
covered without touching this file.
"""

from __future__ import annotations

import pytest
import torch
import yaml

from data_prep.errors import PipelineInputError
from data_prep.params import CONFIG_DIR, compose
from models import MultiHeadFusionModel, build, list_encoders, list_fusions, masked_multihead_bce
from models.fusion import FUSIONS

TASK_LABELS = {"in_hospital_mortality": 1, "phenotyping": 25}
IMAGE_SIZE, MAX_HOURS, FEATURES = 32, 10, 76
TINY_MODEL = {"ehr": {"name": "lstm", "input_size": FEATURES, "hidden_size": 16, "num_layers": 2, "dropout": 0.3},
              "cxr": {"name": "resnet18", "pretrained_path": None},
              "embed_dim": 16}


def fusion_section(name: str) -> dict:
    """The method's own YAML settings when it has one (sizes there are small enough at embed_dim 16)."""
    path = CONFIG_DIR / "fusion" / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {"name": name}


def tiny_model(fusion: str, num_labels: int, **kwargs) -> MultiHeadFusionModel:
    torch.manual_seed(0)
    return build({"model": TINY_MODEL, "fusion": fusion_section(fusion)}, num_labels, **kwargs)


def make_batch(has_cxr: list[bool], num_labels: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    size = len(has_cxr)
    lengths = torch.randint(1, MAX_HOURS + 1, (size,), generator=generator)
    lengths[0] = MAX_HOURS
    ehr = torch.randn(size, MAX_HOURS, FEATURES, generator=generator)
    ehr = ehr * (torch.arange(MAX_HOURS)[None, :, None] < lengths[:, None, None])  # zero padding
    mask = torch.tensor(has_cxr)
    image = torch.randn(size, 1, IMAGE_SIZE, IMAGE_SIZE, generator=generator) * mask[:, None, None, None]
    labels = torch.randint(0, 2, (size, num_labels), generator=generator).float()
    return {"ehr": ehr, "ehr_lengths": lengths, "image": image, "has_cxr": mask, "labels": labels}


PAIRED = [True, True, True, True]
PARTIAL = [True, False, True, False, True]  # >= 2 images: BatchNorm at 1x1 needs 2 values per channel


# ---- registries and configs ------------------------------------------------------------

def test_every_fusion_has_a_config_and_a_missing_image_rule():
    stems = {path.stem for path in (CONFIG_DIR / "fusion").glob("*.yaml")}
    assert stems == set(list_fusions())
    for name in list_fusions():
        assert FUSIONS.get(name).missing_image_rule, f"fusion {name!r} declares no missing_image_rule"
        assert fusion_section(name)["name"] == name


def test_unknown_names_and_settings_are_one_line_errors():
    with pytest.raises(PipelineInputError, match=r"fusion.name='nope'.*known: .*joint"):
        build({"model": TINY_MODEL, "fusion": {"name": "nope"}}, 1)
    with pytest.raises(PipelineInputError, match=r"fusion .*joint.*hidden_sise"):
        build({"model": TINY_MODEL, "fusion": {"name": "joint", "hidden_sise": 3}}, 1)
    with pytest.raises(PipelineInputError, match=r"model.cxr.name='resnet7'"):
        build({"model": {**TINY_MODEL, "cxr": {"name": "resnet7"}}, "fusion": {"name": "late"}}, 1)


def test_the_ehr_input_width_comes_from_the_prepared_data():
    ehr = {key: value for key, value in TINY_MODEL["ehr"].items() if key != "input_size"}
    model = build({"model": {**TINY_MODEL, "ehr": ehr}, "fusion": {"name": "joint"}}, 1, ehr_features=FEATURES + 3)
    assert model.encoders["ehr"].lstm.input_size == FEATURES + 3
    with pytest.raises(PipelineInputError, match=rf"model.ehr.input_size={FEATURES}: the prepared EHR tensors "
                                                 rf"have {FEATURES + 3} features"):
        build({"model": TINY_MODEL, "fusion": {"name": "joint"}}, 1, ehr_features=FEATURES + 3)
    with pytest.raises(PipelineInputError, match="EHR input width is unknown"):
        build({"model": {**TINY_MODEL, "ehr": ehr}, "fusion": {"name": "joint"}}, 1)


def test_a_unimodal_model_has_one_encoder_one_head_and_one_group():
    from models import build_unimodal

    for modality in ("ehr", "cxr"):
        model = build_unimodal({"model": TINY_MODEL}, modality, 2, ehr_features=FEATURES)
        assert model.head_names == (modality,) and set(model.encoders) == {modality}
        batch = make_batch(PARTIAL, 2)
        logits = model(batch)
        assert set(logits) == {modality} and logits[modality].shape == (batch["labels"].shape[0], 2)
        if modality == "cxr":
            assert (logits["cxr"][~batch["has_cxr"]] == 0).all()
        groups = model.modality_parameters()
        assert groups["shared"] == [] and len(groups[modality]) == len(list(model.parameters()))
    with pytest.raises(PipelineInputError, match="regime.modality='xray'"):
        build_unimodal({"model": TINY_MODEL}, "xray", 2, ehr_features=FEATURES)


# ---- forward, missing images, loss -----------------------------------------------------

@pytest.mark.parametrize("num_labels", TASK_LABELS.values(), ids=TASK_LABELS.keys())
@pytest.mark.parametrize("fusion", list_fusions())
def test_forward_shapes_paired_and_partial(fusion, num_labels):
    model = tiny_model(fusion, num_labels).eval()
    for has_cxr in (PAIRED, PARTIAL):
        batch = make_batch(has_cxr, num_labels)
        with torch.no_grad():
            logits = model(batch)
        assert set(logits) == {"ehr", "cxr", "fused"}
        for head, values in logits.items():
            assert values.shape == (len(has_cxr), num_labels), head
            assert torch.isfinite(values).all(), head
        missing = ~batch["has_cxr"]
        assert (logits["cxr"][missing] == 0).all()


@pytest.mark.parametrize("fusion", list_fusions())
def test_rows_without_image_ignore_image_content_and_cxr_logits(fusion):
    model = tiny_model(fusion, 25).eval()
    batch = make_batch(PARTIAL, 25)
    missing = ~batch["has_cxr"]
    with torch.no_grad():
        logits = model(batch)
        noisy = dict(batch, image=batch["image"] + 5.0 * missing[:, None, None, None])
        noisy_logits = model(noisy)
    for head in logits:
        torch.testing.assert_close(noisy_logits[head], logits[head], rtol=0, atol=0)

    total, per_head = masked_multihead_bce(logits, batch["labels"], batch["has_cxr"])
    garbage = dict(logits, cxr=torch.where(missing[:, None], torch.full_like(logits["cxr"], 1e4),
                                            logits["cxr"]))
    garbage_total, garbage_per_head = masked_multihead_bce(garbage, batch["labels"], batch["has_cxr"])
    assert garbage_total == total and garbage_per_head["cxr"] == per_head["cxr"]
    changed = dict(logits, cxr=logits["cxr"] + 1.0)  # rows with an image do count
    assert masked_multihead_bce(changed, batch["labels"], batch["has_cxr"])[1]["cxr"] != per_head["cxr"]


def test_cxr_encoder_runs_only_on_rows_with_an_image():
    model = tiny_model("joint", 1)
    seen: list[int] = []
    model.encoders["cxr"].register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    model(make_batch(PARTIAL, 1))
    model(make_batch([False, False], 1))
    assert seen == [sum(PARTIAL)]


def test_loss_weights_and_no_image_batch():
    batch = make_batch([False, False, False], 2)
    logits = {head: torch.randn(3, 2, requires_grad=True) for head in ("ehr", "cxr", "fused")}
    total, per_head = masked_multihead_bce(logits, batch["labels"], batch["has_cxr"],
                                           {"ehr": 0.5, "fused": 2.0})
    assert per_head["cxr"] == 0
    torch.testing.assert_close(total, 0.5 * per_head["ehr"] + 2.0 * per_head["fused"])
    total.backward()
    assert (logits["cxr"].grad == 0).all() and torch.isfinite(logits["ehr"].grad).all()


def test_late_fusion_averages_logits_and_falls_back_to_ehr():
    model = tiny_model("late", 3).eval()
    batch = make_batch(PARTIAL, 3)
    with torch.no_grad():
        logits = model(batch)
    has = batch["has_cxr"]
    torch.testing.assert_close(logits["fused"][~has], logits["ehr"][~has])
    torch.testing.assert_close(logits["fused"][has], (logits["ehr"][has] + logits["cxr"][has]) / 2)


def test_gated_fusion_uses_only_the_ehr_candidate_without_image():
    model = tiny_model("gated", 3).eval()
    batch = make_batch(PARTIAL, 3)
    with torch.no_grad():
        embeddings = model.embed(batch)
        gate_ehr, gate_cxr = model.fusion.gate_values(embeddings["ehr"], embeddings["cxr"], batch["has_cxr"])
    missing = ~batch["has_cxr"]
    assert (gate_cxr[missing] == 0).all()
    torch.testing.assert_close(gate_ehr[missing], torch.ones_like(gate_ehr[missing]), atol=1e-5, rtol=0)
    torch.testing.assert_close(gate_ehr + gate_cxr, torch.ones_like(gate_ehr), atol=1e-5, rtol=0)


# ---- gradients and parameter groups ----------------------------------------------------

@pytest.mark.parametrize("fusion", list_fusions())
def test_gradients_reach_every_parameter(fusion):
    model = tiny_model(fusion, 25).train()
    batch = make_batch(PARTIAL, 25)  # both modalities, and rows without image for the missing token
    total, _ = masked_multihead_bce(model(batch), batch["labels"], batch["has_cxr"])
    total.backward()
    for group, parameters in model.modality_parameters().items():
        for parameter in parameters:
            assert parameter.grad is not None, f"{group}: a parameter got no gradient"
            assert torch.isfinite(parameter.grad).all(), f"{group}: non-finite gradient"
    names_without_grad = [name for name, p in model.named_parameters() if p.grad is None]
    assert names_without_grad == []


def test_probe_heads_learn_without_training_the_encoders():
    """model.unimodal_heads=probe: a unimodal head's loss reaches its head but not its encoder
    (only the fused loss trains the encoders), so the head measures what fusion taught it."""
    def encoder_grads(mode: str, head: str) -> tuple[float, float]:
        torch.manual_seed(0)
        model = build({"model": {**TINY_MODEL, "unimodal_heads": mode}, "fusion": fusion_section("joint")}, 1).train()
        batch = make_batch(PAIRED, 1)
        _, per_head = masked_multihead_bce(model(batch), batch["labels"], batch["has_cxr"])
        per_head[head].backward()
        encoder = sum(float(p.grad.abs().sum()) for p in model.encoders["cxr"].parameters() if p.grad is not None)
        on_head = sum(float(p.grad.abs().sum()) for p in model.heads[head].parameters() if p.grad is not None)
        return encoder, on_head
    assert encoder_grads("probe", "cxr")[0] == 0.0 and encoder_grads("probe", "cxr")[1] > 0
    assert encoder_grads("joint", "cxr")[0] > 0
    assert encoder_grads("probe", "fused")[0] > 0  # the fused loss still trains the encoder
    from data_prep.validation import (
        CHOICE_RULES,  # the config check's copy (data_prep cannot import models)
    )
    from models.multihead import UNIMODAL_HEAD_MODES
    assert CHOICE_RULES["model.unimodal_heads"] == UNIMODAL_HEAD_MODES
    with pytest.raises(ValueError, match="model.unimodal_heads='nope': expected one of joint, probe"):
        build({"model": {**TINY_MODEL, "unimodal_heads": "nope"}, "fusion": fusion_section("joint")}, 1)
    with pytest.raises(ValueError, match="model.unimodal_heads=probe with LateFusion: .* nothing would train"):
        build({"model": {**TINY_MODEL, "unimodal_heads": "probe"}, "fusion": fusion_section("late")}, 1)


@pytest.mark.parametrize("unimodal_heads_in", ["encoder", "shared"])
@pytest.mark.parametrize("fusion", list_fusions())
def test_parameter_groups_cover_every_parameter_once(fusion, unimodal_heads_in):
    model = tiny_model(fusion, 2)
    groups = model.modality_parameters(unimodal_heads_in)
    assert set(groups) == {"ehr", "cxr", "shared"}
    flat = [id(p) for parameters in groups.values() for p in parameters]
    assert len(flat) == len(set(flat))
    assert set(flat) == {id(p) for p in model.parameters()}
    head_group = {"encoder": ("ehr", "cxr"), "shared": ("shared", "shared")}[unimodal_heads_in]
    for modality, group in zip(("ehr", "cxr"), head_group, strict=True):
        assert {id(p) for p in model.heads[modality].parameters()} <= {id(p) for p in groups[group]}
    assert {id(p) for p in model.encoders["cxr"].parameters()} <= {id(p) for p in groups["cxr"]}
    modules = model.modality_modules(unimodal_heads_in)
    assert model.encoders["ehr"] in modules["ehr"] and model.fusion in modules["shared"]
    with pytest.raises(ValueError, match="unimodal_heads_in"):
        model.modality_parameters("fusion")


# ---- config-composed models train ------------------------------------------------------

def _train_one_step(cfg: dict, num_labels: int) -> None:
    torch.manual_seed(0)
    model = build(cfg, num_labels, ehr_features=FEATURES).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)  # a change means a gradient
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    batch = make_batch(PARTIAL, num_labels)
    total, _ = masked_multihead_bce(model(batch), batch["labels"], batch["has_cxr"])
    assert torch.isfinite(total)
    total.backward()
    optimizer.step()
    for group, parameters in model.modality_parameters().items():
        names = {id(p): n for n, p in model.named_parameters()}
        changed = [not torch.equal(before[names[id(p)]], p.detach()) for p in parameters]
        assert all(changed), f"{group}: {changed.count(False)} parameters did not change"


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONFIG_DIR / "fusion").glob("*.yaml")))
def test_each_fusion_config_builds_and_trains_one_step(option):
    _train_one_step(compose([f"fusion={option}", "model=small"]), 25)


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml")))
def test_each_model_config_builds_and_trains_one_step(option):
    _train_one_step(compose([f"model={option}"]), 1)


def test_channels_last_cxr_encoder():
    model = tiny_model("joint", 1, channels_last=True)
    conv = model.encoders["cxr"].backbone.layer1[0].conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert torch.isfinite(model(make_batch(PAIRED, 1))["fused"]).all()


# ---- encoders --------------------------------------------------------------------------

FEATURE_SIZES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "densenet121": 1024}


@pytest.mark.parametrize("name", list_encoders())
def test_cxr_encoder_maps_one_channel_images_to_embeddings(name):
    from models.cxr_encoders import CXR_ENCODERS

    encoder = CXR_ENCODERS.create(name).eval()
    if name in FEATURE_SIZES:
        assert encoder.feat_dim == FEATURE_SIZES[name]
    with torch.no_grad():
        features = encoder(torch.randn(2, 1, IMAGE_SIZE, IMAGE_SIZE))
    assert features.shape == (2, encoder.feat_dim) and torch.isfinite(features).all()


def test_pretrained_rgb_resnet_is_folded_to_one_channel(tmp_path):
    import torchvision

    torch.manual_seed(1)
    rgb = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18_rgb.pth"
    torch.save(rgb.state_dict(), path)
    model = build({"model": {**TINY_MODEL, "cxr": {"name": "resnet18", "pretrained_path": str(path)}},
                   "fusion": {"name": "late"}}, 1)
    backbone = model.encoders["cxr"].backbone
    torch.testing.assert_close(backbone.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(backbone.layer4[1].conv2.weight, rgb.layer4[1].conv2.weight)
    torch.testing.assert_close(backbone.bn1.running_var, rgb.bn1.running_var)


def test_pretrained_file_problems_are_clear_errors(tmp_path):
    import torchvision

    from models.cxr_encoders import resnet18

    missing = tmp_path / "absent.pth"
    with pytest.raises(PipelineInputError, match=r"absent\.pth: pretrained CXR weights not found"):
        resnet18(pretrained_path=missing)
    wrong = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), wrong)
    with pytest.raises(PipelineInputError, match=r"resnet34\.pth: .*'resnet18'.*unexpected keys \[layer1\.2"):
        resnet18(pretrained_path=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(PipelineInputError, match=r"garbage\.pth: cannot be read"):
        resnet18(pretrained_path=garbage)


def test_lstm_encoder_respects_lengths():
    from models.ehr_encoders import EHR_ENCODERS

    torch.manual_seed(0)
    encoder = EHR_ENCODERS.create("lstm", input_size=FEATURES, hidden_size=8, num_layers=2).eval()
    lengths = torch.tensor([3, MAX_HOURS, 1])
    ehr = torch.randn(3, MAX_HOURS, FEATURES)
    padded = ehr * (torch.arange(MAX_HOURS)[None, :, None] < lengths[:, None, None])
    with torch.no_grad():
        clean = encoder(padded, lengths)
        noisy = encoder(ehr, lengths)  # garbage after each true length
        alone = torch.cat([encoder(ehr[i:i + 1, :n], torch.tensor([n])) for i, n in enumerate(lengths.tolist())])
    assert clean.shape == (3, 8)
    torch.testing.assert_close(noisy, clean)
    torch.testing.assert_close(alone, clean)
    assert not torch.allclose(clean[0], encoder(padded, torch.tensor([4, MAX_HOURS, 1]))[0])


def test_lstm_encoder_equals_the_packed_sequences_final_hidden_state():
    """The padded-batch encoder (fast CPU backward) computes MedFuse's packed-LSTM embedding."""
    from torch.nn.utils.rnn import pack_padded_sequence

    from models.ehr_encoders import EHR_ENCODERS

    torch.manual_seed(0)
    encoder = EHR_ENCODERS.create("lstm", input_size=FEATURES, hidden_size=8, num_layers=2).eval()
    lengths = torch.tensor([3, MAX_HOURS, 1, 5])
    ehr = torch.randn(4, MAX_HOURS, FEATURES)
    packed = pack_padded_sequence(ehr, lengths, batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        _, (final_hidden, _) = encoder.lstm(packed)
        torch.testing.assert_close(encoder(ehr, lengths), final_hidden[-1])


def test_the_package_exports_the_factory_functions_even_after_its_modules_are_imported():
    """models/__init__ loads its exports lazily; `models.build` must stay the function when
    its module has been imported directly (a submodule named like an export would shadow it)."""
    import importlib

    import models

    importlib.import_module("models.factory")
    assert callable(models.build) and models.build.__name__ == "build"
    assert callable(models.build_unimodal)
    assert models.MultiHeadFusionModel.__name__ == "MultiHeadFusionModel"
