"""The training/evaluation dataset: EHR ragged tensors + cached chest X-rays + labels + masks.

Everything that needs pandas happens once in `__init__`, which reduces the inputs to flat
numpy arrays (EHR offset/length, image row or -1, labels); `__getitem__` only slices the two
memory-mapped arrays. The memmaps are opened lazily, on first use in each process (and
re-opened after a fork), so the dataset can be handed to DataLoader workers safely.

Settings: "paired" keeps the stays with a cached image; "partial" keeps every stay, with a
zero image and has_cxr=False where there is none (an image that failed to decode counts as
none; it is listed in the cache's exclusions.csv).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler

from data_prep import paths
from data_prep.cxr.cache import EXCLUSIONS_FILE, IMAGES_FILE, INDEX_FILE, SUMMARY_FILE
from data_prep.errors import PipelineInputError, StaleInputError
from data_prep.sampling import LengthBucketBatchSampler
from data_prep.transforms import build_transform, seed_transform, seed_worker

SETTINGS = ("paired", "partial")
FIXED_LABEL_COLUMNS = ("subject_id", "hadm_id", "stay_id", "split", "intime", "window_end", "sex", "age")


@dataclass(frozen=True)
class DatasetPaths:
    """The four inputs of one task's dataset; `from_config` gives the pipeline's locations."""

    labels: Path
    pairs: Path
    ehr_dir: Path
    cache_dir: Path

    @classmethod
    def from_config(cls, cfg: DictConfig, task: str) -> DatasetPaths:
        return cls(paths.labels_path(cfg, task), paths.pairs_path(cfg, task),
                   paths.ehr_dir(cfg, task), paths.cache_dir(cfg))


def _require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise StaleInputError(f"{path} not found: run `dvc repro {stage}`")
    return path


def label_names_from_file(labels_file: str | Path) -> list[str]:
    """Label columns = every column of labels.parquet after the fixed ones, in file order."""
    names = pq.read_schema(_require(Path(labels_file), "build_tasks")).names
    return [name for name in names if name not in FIXED_LABEL_COLUMNS]


def label_names(task: str, cfg: DictConfig) -> list[str]:
    return label_names_from_file(paths.labels_path(cfg, task))


def _cache_rows(cache_dir: Path, pairs: pd.DataFrame, image_size: int | None) -> np.ndarray:
    """Each stay's row in images.npy, or -1; checks that the cache was built from these pairs."""
    _require(cache_dir / IMAGES_FILE, "cache_cxr")
    index = pd.read_parquet(_require(cache_dir / INDEX_FILE, "cache_cxr"))
    excluded = pd.read_csv(cache_dir / EXCLUSIONS_FILE, usecols=["dicom_id"], dtype="string") \
        if (cache_dir / EXCLUSIONS_FILE).exists() else pd.DataFrame({"dicom_id": []})
    wanted = pairs.loc[pairs["has_cxr"], "dicom_id"].astype(str)
    unknown = ~wanted.isin(index["dicom_id"].astype(str)) & ~wanted.isin(excluded["dicom_id"].astype(str))
    if unknown.any():
        raise StaleInputError(f"{cache_dir / INDEX_FILE}: {int(unknown.sum())} paired images are "
                              f"neither cached nor excluded (stale cache): run `dvc repro cache_cxr`")
    if image_size is not None and (cache_dir / SUMMARY_FILE).exists():
        cached_size = pd.read_json(cache_dir / SUMMARY_FILE, typ="series").get("image_size")
        if cached_size is not None and int(cached_size) != int(image_size):
            raise StaleInputError(f"{cache_dir / IMAGES_FILE}: cached at {int(cached_size)} px but "
                                  f"data.cxr.image_size={image_size}: run `dvc repro cache_cxr`")
    row_of = pd.Series(index["row"].to_numpy(np.int64), index=index["dicom_id"].astype(str))
    rows = pairs["dicom_id"].astype("string").map(row_of)
    return rows.fillna(-1).to_numpy(np.int64)


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run a per-image transform on one intra-op thread.

    Per-image tensors are tiny (128-256 px), so torch's thread pool costs more in
    synchronization than it saves: bench/loader.py measured 21 ms vs 1.6 ms per item on 2
    busy cores. DataLoader workers already run with one thread; this covers num_workers=0,
    where the main process keeps its threads for the model.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class MultimodalDataset(Dataset):
    """One task's split as items {ehr [T,76], image [1,C,C], has_cxr, labels [L], stay_id, subject_id}.

    Give `cfg` (paths, image size, crop, augmentation and normalization from `data.cxr`) or
    explicit `dataset_paths` plus `transform`. `transform` maps a [1,S,S] float tensor in [0,1]
    to [1,C,C]; None uses the evaluation transform of `cfg.data.cxr` (train=False).
    """

    def __init__(self, task: str, split: str, setting: str, cfg: DictConfig | None = None, *,
                 dataset_paths: DatasetPaths | None = None, train: bool = False,
                 transform: Callable | None = None, crop_size: int | None = None) -> None:
        if setting not in SETTINGS:
            raise PipelineInputError(f"setting {setting!r}: expected one of {', '.join(SETTINGS)}")
        if dataset_paths is None:
            if cfg is None:
                raise ValueError("give cfg or dataset_paths")
            dataset_paths = DatasetPaths.from_config(cfg, task)
        if transform is None and cfg is not None:
            transform = build_transform(cfg.data.cxr, train=train)
        self.task, self.split, self.setting, self.paths = task, split, setting, dataset_paths
        self.transform = transform
        self.crop_size = int(crop_size if crop_size is not None else
                             cfg.data.cxr.crop_size if cfg is not None else 0)
        self.label_names = label_names_from_file(dataset_paths.labels)
        image_size = int(cfg.data.cxr.image_size) if cfg is not None else None
        self._build_arrays(image_size)
        self._values: np.ndarray | None = None
        self._images: np.ndarray | None = None
        self._opened_in: int | None = None

    def _build_arrays(self, image_size: int | None) -> None:
        labels = pd.read_parquet(self.paths.labels)
        labels = labels[labels["split"].astype(str) == self.split]
        pairs = pd.read_parquet(_require(self.paths.pairs, f"pair_cxr@{self.task}"),
                                columns=["stay_id", "has_cxr", "dicom_id"])
        ehr_index = pd.read_parquet(_require(self.paths.ehr_dir / "index.parquet",
                                             f"ehr_tensors@{self.task}"),
                                    columns=["stay_id", "offset", "length"])
        _require(self.paths.ehr_dir / "values.npy", f"ehr_tensors@{self.task}")
        frame = labels.merge(pairs, on="stay_id", how="left", validate="one_to_one")
        if frame["has_cxr"].isna().any():
            raise StaleInputError(f"{self.paths.pairs}: {int(frame['has_cxr'].isna().sum())} stays of "
                                  f"{self.paths.labels} are missing: run `dvc repro pair_cxr@{self.task}`")
        frame = frame.merge(ehr_index, on="stay_id", how="left", validate="one_to_one")
        if frame["offset"].isna().any():
            raise StaleInputError(
                f"{self.paths.ehr_dir / 'index.parquet'}: {int(frame['offset'].isna().sum())} stays of "
                f"{self.paths.labels} are missing: run `dvc repro ehr_tensors@{self.task}`")
        frame["has_cxr"] = frame["has_cxr"].astype(bool)
        image_row = _cache_rows(self.paths.cache_dir, frame, image_size)
        if self.setting == "paired":
            keep = image_row >= 0
            frame, image_row = frame[keep], image_row[keep]
        self.stay_ids = frame["stay_id"].to_numpy(np.int64)
        self.subject_ids = frame["subject_id"].to_numpy(np.int64)
        self.ehr_offsets = frame["offset"].to_numpy(np.int64)
        self.ehr_lengths = frame["length"].to_numpy(np.int64)
        self.image_rows = image_row.astype(np.int64)
        self.labels = frame[self.label_names].to_numpy(np.float32, copy=True)

    def __len__(self) -> int:
        return len(self.stay_ids)

    @property
    def ehr_features(self) -> int:
        """Feature columns of the prepared EHR tensors (76 in the mimic3-benchmarks recipe):
        the model's EHR input width comes from here, not from a setting."""
        self._open()
        return int(self._values.shape[1])

    def _open(self) -> None:
        """Open the memmaps in this process (first use, or first use after a fork)."""
        if self._opened_in != os.getpid():
            self._values = np.load(self.paths.ehr_dir / "values.npy", mmap_mode="r")
            self._images = np.load(self.paths.cache_dir / IMAGES_FILE, mmap_mode="r")
            self._opened_in = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_values=None, _images=None, _opened_in=None)
        return state

    def __getitem__(self, i: int) -> dict[str, Any]:
        self._open()
        offset, length = self.ehr_offsets[i], self.ehr_lengths[i]
        ehr = torch.from_numpy(np.asarray(self._values[offset:offset + length], dtype=np.float32))
        row = self.image_rows[i]
        if row >= 0:
            image = torch.from_numpy(self._images[row].astype(np.float32) / 255.0)[None]
            if self.transform is not None:
                with _one_torch_thread():
                    image = self.transform(image)
                image = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
        else:
            side = self.crop_size or self._images.shape[-1]
            image = torch.zeros(1, side, side, dtype=torch.float32)
        return {"ehr": ehr, "image": image, "has_cxr": bool(row >= 0),
                "labels": torch.from_numpy(self.labels[i]), "stay_id": int(self.stay_ids[i]),
                "subject_id": int(self.subject_ids[i])}


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack items into the batch dict of docs/architecture.md, zero-padding EHR to the longest."""
    lengths = torch.tensor([item["ehr"].shape[0] for item in batch], dtype=torch.int64)
    ehr = torch.zeros(len(batch), int(lengths.max()), batch[0]["ehr"].shape[1], dtype=torch.float32)
    for k, item in enumerate(batch):
        ehr[k, :item["ehr"].shape[0]] = item["ehr"]
    return {"ehr": ehr, "ehr_lengths": lengths,
            "image": torch.stack([item["image"] for item in batch]),
            "has_cxr": torch.tensor([item["has_cxr"] for item in batch], dtype=torch.bool),
            "labels": torch.stack([item["labels"] for item in batch]),
            "stay_id": torch.tensor([item["stay_id"] for item in batch], dtype=torch.int64),
            "subject_id": torch.tensor([item["subject_id"] for item in batch], dtype=torch.int64)}


def build_dataloader(cfg: DictConfig, task: str, split: str, setting: str, train: bool,
                     batch_size: int | None = None, num_workers: int | None = None,
                     sampler: Sampler | None = None,
                     generator: torch.Generator | None = None) -> DataLoader:
    """A DataLoader over `MultimodalDataset`; shuffles when training without a sampler.

    Augmentation is deterministic given `generator` (or torch's global seed): workers reseed
    their transform from torch's per-worker seed, and with num_workers=0 the transform is
    seeded once from a draw of the same generator.
    """
    dataset = MultimodalDataset(task, split, setting, cfg, train=train)
    workers = int(num_workers if num_workers is not None else cfg.train.get("num_workers", 0))
    if workers == 0:
        seed_transform(dataset.transform,
                       int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item()))
    return loader_for(dataset, batch_size=int(batch_size or cfg.train.batch_size), num_workers=workers,
                      train=train, sampler=sampler, generator=generator,
                      pin_memory=torch.cuda.is_available())


def loader_for(dataset: MultimodalDataset, *, batch_size: int, num_workers: int, train: bool,
               sampler: Sampler | None = None, generator: torch.Generator | None = None,
               pin_memory: bool = False, drop_last: bool = False, length_pool: int = 0) -> DataLoader:
    """The one DataLoader configuration (collate, worker seeding) that training, the tests and
    bench/loader.py share, so the benchmark measures the loader training actually uses.

    `length_pool` > 0 (and no `sampler`) batches stays of similar EHR length
    (data_prep/sampling.py): pools of that many batches when training, one sorted pass otherwise.
    """
    if length_pool > 0 and sampler is None:
        batches = LengthBucketBatchSampler(dataset.ehr_lengths, batch_size, shuffle=train, pool=length_pool,
                                           drop_last=drop_last, generator=generator)
        return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, collate_fn=collate,
                          worker_init_fn=seed_worker, generator=generator, pin_memory=pin_memory)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None,
                      sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      worker_init_fn=seed_worker, generator=generator, pin_memory=pin_memory,
                      drop_last=drop_last)
