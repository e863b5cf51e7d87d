"""MultimodalDataset / collate / build_dataloader on hand-built files in the contract formats."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from data_prep.dataset import (
    DatasetPaths,
    MultimodalDataset,
    build_dataloader,
    collate,
    label_names,
    loader_for,
)
from data_prep.errors import PipelineInputError
from data_prep.transforms import build_transform

IMAGE_SIZE, CROP = 20, 16
LABELS = ["acute_renal_failure", "shock"]


def _image(k: int) -> np.ndarray:
    """A gradient (so flips and affines change it) offset by 10 * (k + 1)."""
    ramp = np.add.outer(np.arange(IMAGE_SIZE), 3 * np.arange(IMAGE_SIZE))
    return (ramp + 10 * (k + 1)).astype(np.uint8)


@pytest.fixture()
def cfg(tmp_path):
    """Six train stays (three paired: one image failed to decode) and two test stays."""
    interim, processed = tmp_path / "interim", tmp_path / "processed"
    stays = np.arange(101, 109)
    subjects = stays + 1000
    labels = pd.DataFrame({
        "subject_id": subjects, "hadm_id": stays + 5000, "stay_id": stays,
        "split": ["train"] * 6 + ["test"] * 2,
        "intime": pd.Timestamp("2150-01-01"), "window_end": pd.Timestamp("2150-01-03"),
        "sex": "F", "age": 60.0,
        LABELS[0]: np.float32([0, 1, 0, 1, 0, 1, 1, 0]), LABELS[1]: np.float32([1, 1, 0, 0, 1, 0, 0, 1])})
    (interim / "tasks" / "phenotyping").mkdir(parents=True)
    labels.to_parquet(interim / "tasks" / "phenotyping" / "labels.parquet")

    dicoms = ["d101", None, "d103", "d104", None, "d106", "d107", None]
    (interim / "cxr").mkdir()
    pd.DataFrame({"stay_id": stays, "subject_id": subjects, "split": labels["split"],
                  "has_cxr": [d is not None for d in dicoms], "dicom_id": dicoms}).to_parquet(
        interim / "cxr" / "pairs_phenotyping.parquet")

    lengths = np.array([3, 5, 1, 4, 2, 6, 3, 2])
    values = np.concatenate([np.full((n, 76), k, np.float16) for k, n in enumerate(lengths)])
    ehr = processed / "ehr" / "phenotyping"
    ehr.mkdir(parents=True)
    np.save(ehr / "values.npy", values)
    # the EHR index is in another order than labels: the join must be by stay_id
    index = pd.DataFrame({"stay_id": stays, "offset": np.r_[0, np.cumsum(lengths)[:-1]],
                          "length": lengths, "split": labels["split"]}).iloc[::-1]
    index.to_parquet(ehr / "index.parquet")

    cache = processed / "cxr"
    cache.mkdir()
    cached = ["d107", "d101", "d106", "d103"]   # d104 failed to decode
    images = np.stack([_image(k) for k in range(4)])
    np.save(cache / "images.npy", images)
    pd.DataFrame({"dicom_id": cached, "row": np.arange(4)}).to_parquet(cache / "index.parquet")
    pd.DataFrame({"dicom_id": ["d104"], "image_relpath": ["files/x.jpg"], "reason": ["truncated"]}
                 ).to_csv(cache / "exclusions.csv", index=False)
    return OmegaConf.create({
        "data": {"interim_dir": str(interim), "processed_dir": str(processed),
                 "cxr": {"image_size": IMAGE_SIZE, "crop_size": CROP,
                         "normalize": {"mean": 0.5, "std": 0.25},
                         "augment": {"flip": True, "rotate_degrees": 10.0, "scale": 0.1,
                                     "translate": 0.1}}},
        "train": {"batch_size": 4, "num_workers": 0}})


def test_partial_items_shapes_and_masks(cfg):
    dataset = MultimodalDataset("phenotyping", "train", "partial", cfg)
    assert len(dataset) == 6
    assert dataset.label_names == LABELS == label_names("phenotyping", cfg)
    items = [dataset[i] for i in range(6)]
    assert [item["has_cxr"] for item in items] == [True, False, True, False, False, True]
    assert [item["stay_id"] for item in items] == [101, 102, 103, 104, 105, 106]
    assert [item["ehr"].shape for item in items] == [(n, 76) for n in (3, 5, 1, 4, 2, 6)]
    assert items[1]["ehr"].dtype == torch.float32 and float(items[1]["ehr"][0, 0]) == 1.0
    assert items[0]["image"].shape == (1, CROP, CROP) and items[0]["image"].dtype == torch.float32
    # d101 is row 1 of the cache: uint8 -> /255, center crop, normalized with mean 0.5, std 0.25
    offset = (IMAGE_SIZE - CROP) // 2
    expected = (_image(1)[offset:offset + CROP, offset:offset + CROP] / 255 - 0.5) / 0.25
    assert torch.allclose(items[0]["image"][0], torch.from_numpy(expected).float(), atol=1e-6)
    assert torch.equal(items[1]["image"], torch.zeros(1, CROP, CROP))
    assert items[5]["labels"].tolist() == [1.0, 0.0]
    assert items[0]["subject_id"] == 1101


def test_paired_keeps_only_cached_images(cfg):
    dataset = MultimodalDataset("phenotyping", "train", "paired", cfg)
    assert dataset.stay_ids.tolist() == [101, 103, 106]   # 104's image is in exclusions
    assert all(dataset[i]["has_cxr"] for i in range(len(dataset)))
    test = MultimodalDataset("phenotyping", "test", "paired", cfg)
    assert test.stay_ids.tolist() == [107]


def test_collate_pads_and_matches_the_batch_contract(cfg):
    dataset = MultimodalDataset("phenotyping", "train", "partial", cfg)
    batch = collate([dataset[i] for i in (0, 1, 2)])
    assert set(batch) == {"ehr", "ehr_lengths", "image", "has_cxr", "labels", "stay_id", "subject_id"}
    assert batch["ehr"].shape == (3, 5, 76) and batch["ehr"].dtype == torch.float32
    assert batch["ehr_lengths"].tolist() == [3, 5, 1] and batch["ehr_lengths"].dtype == torch.int64
    assert float(batch["ehr"][0, 3:].abs().sum()) == 0.0 and float(batch["ehr"][2, 1:].abs().sum()) == 0.0
    assert float(batch["ehr"][2, 0, 0]) == 2.0
    assert batch["image"].shape == (3, 1, CROP, CROP)
    assert batch["has_cxr"].dtype == torch.bool and batch["has_cxr"].tolist() == [True, False, True]
    assert batch["labels"].shape == (3, 2) and batch["labels"].dtype == torch.float32
    assert batch["stay_id"].dtype == torch.int64 and batch["subject_id"].tolist() == [1101, 1102, 1103]


def test_workers_yield_the_same_batches_as_the_main_process(cfg):
    def batches(workers):
        loader = build_dataloader(cfg, "phenotyping", "train", "partial", train=False,
                                  batch_size=4, num_workers=workers)
        return list(loader)
    for single, multi in zip(batches(0), batches(2), strict=True):
        for key in single:
            assert torch.equal(single[key], multi[key]), key


def test_training_augmentation_is_seeded(cfg):
    def first_epoch(seed, workers):
        loader = build_dataloader(cfg, "phenotyping", "train", "paired", train=True, batch_size=3,
                                  num_workers=workers, generator=torch.Generator().manual_seed(seed))
        batches = list(loader)
        order = torch.cat([batch["stay_id"] for batch in batches]).argsort()
        return torch.cat([batch["image"] for batch in batches])[order]
    a, b, c = first_epoch(0, 0), first_epoch(0, 0), first_epoch(1, 0)
    assert torch.equal(a, b) and not torch.equal(a, c)   # same stays, other augmentation
    assert torch.equal(first_epoch(5, 2), first_epoch(5, 2))
    evaluation = MultimodalDataset("phenotyping", "train", "paired", cfg, train=False)
    assert not torch.equal(a, torch.stack([evaluation[i]["image"] for i in range(len(evaluation))]))


def test_eval_transform_is_a_deterministic_center_crop():
    cxr = OmegaConf.create({"image_size": 8, "crop_size": 4, "normalize": {"mean": 0.0, "std": 1.0},
                            "augment": {"flip": True, "rotate_degrees": 30.0}})
    image = torch.arange(64, dtype=torch.float32).reshape(1, 8, 8)
    transform = build_transform(cxr, train=False)
    out = transform(image)
    assert torch.equal(torch.as_tensor(out), image[:, 2:6, 2:6])
    assert torch.equal(torch.as_tensor(transform(image)), torch.as_tensor(out))
    train = build_transform(cxr, train=True)
    assert train(image).shape == (1, 4, 4)


def test_missing_or_stale_inputs_name_the_stage(cfg, tmp_path):
    cache = tmp_path / "processed" / "cxr"
    (cache / "images.npy").rename(cache / "moved.npy")
    with pytest.raises(PipelineInputError, match=r"images.npy not found: run `dvc repro cache_cxr`"):
        MultimodalDataset("phenotyping", "train", "partial", cfg)
    (cache / "moved.npy").rename(cache / "images.npy")
    (cache / "exclusions.csv").unlink()   # d104 is now neither cached nor excluded
    with pytest.raises(PipelineInputError, match="stale cache"):
        MultimodalDataset("phenotyping", "train", "partial", cfg)
    with pytest.raises(PipelineInputError, match="setting 'both'"):
        MultimodalDataset("phenotyping", "train", "both", cfg)
    paths = DatasetPaths.from_config(cfg, "phenotyping")
    with pytest.raises(PipelineInputError, match="run `dvc repro ehr_tensors@phenotyping`"):
        MultimodalDataset("phenotyping", "train", "partial", dataset_paths=DatasetPaths(
            paths.labels, paths.pairs, tmp_path / "nowhere", paths.cache_dir))


def test_pair_cache_and_dataset_chain(tmp_path):
    """pair_task -> needed_images -> build_cache -> MultimodalDataset, through the real files."""
    from PIL import Image

    from data_prep.cxr.cache import build_cache, needed_images
    from data_prep.cxr.pair_task import pair_task
    from data_prep.schemas import CXR_METADATA, cxr_image_relpath

    root = tmp_path / "cxr"
    rows = []
    for k, (view, time) in enumerate([("AP", 120000.5), ("PA", 130000), ("AP", 90000)]):
        subject, study, dicom = 10000 + k, 50000000 + k, f"dicom-{k}"
        row = dict.fromkeys(CXR_METADATA.column_names, "")
        row.update(dicom_id=dicom, subject_id=subject, study_id=study, ViewPosition=view,
                   StudyDate=21500101, StudyTime=time)
        rows.append(row)
        path = root / cxr_image_relpath(subject, study, dicom)
        path.parent.mkdir(parents=True)
        Image.fromarray(np.full((40, 30), 60 * (k + 1), np.uint8)).save(path)
    pd.DataFrame(rows, columns=CXR_METADATA.column_names).to_csv(
        root / "mimic-cxr-2.0.0-metadata.csv", index=False)
    interim, processed = tmp_path / "interim", tmp_path / "processed"
    labels = pd.DataFrame({"subject_id": [10000, 10001, 10002], "hadm_id": [1, 2, 3],
                           "stay_id": [7, 8, 9], "split": "train",
                           "intime": pd.Timestamp("2150-01-01 08:00"),
                           "window_end": pd.Timestamp("2150-01-03 08:00"), "sex": "M", "age": 70.0,
                           "in_hospital_mortality": np.float32([1, 0, 1])})
    (interim / "tasks" / "ihm").mkdir(parents=True)
    labels.to_parquet(interim / "tasks" / "ihm" / "labels.parquet")
    ehr = processed / "ehr" / "ihm"
    ehr.mkdir(parents=True)
    np.save(ehr / "values.npy", np.ones((6, 76), np.float16))
    pd.DataFrame({"stay_id": [7, 8, 9], "offset": [0, 2, 4], "length": [2, 2, 2],
                  "split": "train"}).to_parquet(ehr / "index.parquet")
    pair_task(interim / "tasks" / "ihm" / "labels.parquet", root, ["AP"],
              interim / "cxr" / "pairs_ihm.parquet", interim / "cxr" / "pairs_ihm_counts.json")
    build_cache(needed_images([interim / "cxr" / "pairs_ihm.parquet"]), root, processed / "cxr",
                image_size=IMAGE_SIZE)
    cfg = OmegaConf.create({"data": {"interim_dir": str(interim), "processed_dir": str(processed),
                                     "cxr": {"image_size": IMAGE_SIZE, "crop_size": CROP,
                                             "normalize": {"mean": 0.0, "std": 1.0}}}})
    partial = MultimodalDataset("ihm", "train", "partial", cfg)
    assert [partial[i]["has_cxr"] for i in range(3)] == [True, False, True]   # stay 8: PA only
    assert torch.allclose(partial[2]["image"], torch.full((1, CROP, CROP), 180 / 255), atol=0.02)
    assert MultimodalDataset("ihm", "train", "paired", cfg).stay_ids.tolist() == [7, 9]


def test_length_pooled_loader_visits_every_stay_once_in_similar_length_batches(cfg):
    dataset = MultimodalDataset("phenotyping", "train", "partial", cfg)
    loader = loader_for(dataset, batch_size=2, num_workers=0, train=True, length_pool=8,
                        generator=torch.Generator().manual_seed(0))
    stays = [int(s) for batch in loader for s in batch["stay_id"]]
    assert sorted(stays) == sorted(dataset.stay_ids.tolist())
    evaluation = loader_for(dataset, batch_size=2, num_workers=0, train=False, length_pool=8)
    lengths = [int(n) for batch in evaluation for n in batch["ehr_lengths"]]
    assert lengths == sorted(lengths)
