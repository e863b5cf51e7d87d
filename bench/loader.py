"""Benchmark: data-loader throughput vs the model's training step, in batches per second.

    .venv/bin/python bench/loader.py [--stays 640] [--batches 16] [--steps 4]

Builds, under bench/out/loader/ (git-ignored), one task's files in the contract formats of
docs/architecture.md (labels.parquet with 25 labels, pairs, 48-hour EHR tensors, a 128 px
uint8 image cache with an image for 2 stays in 3), then measures in one run:
  - the DataLoader of `data_prep.dataset.build_dataloader` (train=True: MONAI flip + affine +
    random crop to 112, batch 32, partial setting) with num_workers 0 and 2;
  - one training step (forward + backward + AdamW) on the same batches: `models.build` with
    the default params.yaml model when it imports, else an inline ResNet-34 (1-channel conv1)
    + 2-layer LSTM(76 -> 256) with a linear head.
The loader must deliver batches faster than the model consumes them (DESIGN.md section 10).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from data_prep.config import load_config
from data_prep.dataset import build_dataloader

OUT = Path(__file__).resolve().parent / "out" / "loader"
TASK, HOURS, IMAGE_SIZE, CROP, N_LABELS = "phenotyping", 48, 128, 112, 25
REPO = Path(__file__).resolve().parent.parent


def write_fixture(n_stays: int) -> None:
    rng = np.random.default_rng(0)
    stays = np.arange(n_stays) + 30_000_000
    interim, processed = OUT / "interim", OUT / "processed"
    (interim / "tasks" / TASK).mkdir(parents=True, exist_ok=True)
    labels = pd.DataFrame({"subject_id": stays - 20_000_000, "hadm_id": stays - 10_000_000,
                           "stay_id": stays, "split": "train", "intime": pd.Timestamp("2150-01-01"),
                           "window_end": pd.Timestamp("2150-01-03"), "sex": "F", "age": 60.0})
    for k in range(N_LABELS):
        labels[f"label_{k:02d}"] = rng.integers(0, 2, n_stays).astype(np.float32)
    labels.to_parquet(interim / "tasks" / TASK / "labels.parquet")
    has = rng.random(n_stays) < 2 / 3
    dicoms = np.where(has, [f"d{s}" for s in stays], None)
    (interim / "cxr").mkdir(exist_ok=True)
    pd.DataFrame({"stay_id": stays, "subject_id": labels["subject_id"], "split": "train",
                  "has_cxr": has, "dicom_id": dicoms}).to_parquet(interim / "cxr" / f"pairs_{TASK}.parquet")
    ehr = processed / "ehr" / TASK
    ehr.mkdir(parents=True, exist_ok=True)
    np.save(ehr / "values.npy", rng.normal(size=(n_stays * HOURS, 76)).astype(np.float16))
    pd.DataFrame({"stay_id": stays, "offset": np.arange(n_stays) * HOURS, "length": HOURS,
                  "split": "train"}).to_parquet(ehr / "index.parquet")
    cache = processed / "cxr"
    cache.mkdir(parents=True, exist_ok=True)
    cached = dicoms[has]
    np.save(cache / "images.npy", rng.integers(0, 256, (len(cached), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8))
    pd.DataFrame({"dicom_id": cached.astype(str), "row": np.arange(len(cached))}).to_parquet(
        cache / "index.parquet")
    pd.DataFrame(columns=["dicom_id", "image_relpath", "reason"]).to_csv(cache / "exclusions.csv", index=False)


def bench_config():
    return load_config(REPO / "params.yaml", [
        f"data.interim_dir={OUT / 'interim'}", f"data.processed_dir={OUT / 'processed'}",
        f"data.cxr.image_size={IMAGE_SIZE}", f"data.cxr.crop_size={CROP}", "train.batch_size=32"])


def loader_batches_per_second(cfg, workers: int, n_batches: int) -> float:
    loader = build_dataloader(cfg, TASK, "train", "partial", train=True, num_workers=workers,
                              generator=torch.Generator().manual_seed(0))
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per epoch, not per batch
    start = time.perf_counter()
    for _ in range(n_batches):
        next(iterator)
    return n_batches / (time.perf_counter() - start)


class InlineModel(torch.nn.Module):
    """MedFuse-sized stand-in: ResNet-34 on 1x112x112 + 2-layer LSTM(76 -> 256), joint head."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        self.cnn = torchvision.models.resnet34(weights=None, num_classes=256)
        self.cnn.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.lstm = torch.nn.LSTM(76, 256, num_layers=2, batch_first=True, dropout=0.3)
        self.head = torch.nn.Linear(512, N_LABELS)

    def forward(self, batch):
        _, (hidden, _) = self.lstm(batch["ehr"])
        return {"fused": self.head(torch.cat([hidden[-1], self.cnn(batch["image"])], dim=1))}


def build_model(cfg) -> tuple[torch.nn.Module, str]:
    try:
        from models import build

        model = build(cfg, N_LABELS, ehr_features=76)
        return model, f"models.build ({cfg.model.cxr.name} + {cfg.model.ehr.name}, fusion {cfg.fusion.name})"
    except Exception as err:  # models/ is written in parallel; the bench must still run
        return InlineModel(), f"inline ResNet-34 + LSTM (models.build unavailable: {type(err).__name__})"


def model_batches_per_second(cfg, batch: dict, n_steps: int) -> tuple[float, str]:
    model, description = build_model(cfg)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        logits = model(batch)
        has_cxr = batch["has_cxr"].float()[:, None]
        loss = sum(torch.nn.functional.binary_cross_entropy_with_logits(
            out, batch["labels"], weight=has_cxr if head == "cxr" else None) for head, out in logits.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up (allocator, first-call overheads)
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return n_steps / (time.perf_counter() - start), description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, default=640)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    write_fixture(args.stays)
    cfg = bench_config()
    loader = {workers: loader_batches_per_second(cfg, workers, args.batches) for workers in (0, 2)}
    batch = next(iter(build_dataloader(cfg, TASK, "train", "partial", train=True, num_workers=0)))
    model_rate, description = model_batches_per_second(cfg, batch, args.steps)
    augment = OmegaConf.to_container(cfg.data.cxr.augment)
    print(f"""## Data loader (bench/loader.py)

{date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, no GPU (none lent
to this task); torch {torch.__version__}, {torch.get_num_threads()} threads. Batch 32, cache {IMAGE_SIZE} px, crop
{CROP}, augmentation {augment}, {HOURS}-hour EHR sequences, partial setting (2/3 of stays with an image).

| what | batches / s | ratio to the training step |
|---|---|---|
| DataLoader, num_workers=0 | {loader[0]:.2f} | **{loader[0] / model_rate:.1f}x** |
| DataLoader, num_workers=2 | {loader[2]:.2f} | **{loader[2] / model_rate:.1f}x** |
| training step (forward + backward + AdamW), {description} | {model_rate:.2f} | 1.0x |

The loader must be faster than the step (ratio > 1). Loader: {args.batches} batches after the first; step: {args.steps} steps after a warm-up; one run.
""")


if __name__ == "__main__":
    main()
