"""Training-step throughput of the default configuration (samples/s), on CPU or CUDA unchanged.

    python bench/step_time.py [--steps 5] [--batch-size N] [--task phenotyping] [key=value ...]

Times the real `training.engine.Engine.train_one_epoch` (forward, masked multi-head loss, backward,
gradient clipping, AdamW step, AMP and channels_last on CUDA) on synthetic batches of the
contract's shapes: EHR [B, hours, 76], images [B, 1, crop, crop]. No data files are needed.
Reports samples/s, ms/step and, on CUDA, the peak GPU memory; `--out` writes JSON.

`--epoch` instead times one whole epoch of `training.train.fit` (data loading, augmentation,
validation) on contract-format files of the default size written by tests/training_fakes.py
under bench/out/default_epoch/ (1,400 training stays, 75% with an image).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import models
from data_prep.config import load_config
from training.distributed import DistContext, resolve_device
from training.engine import Engine

NUM_LABELS = {"phenotyping": 25, "in_hospital_mortality": 1}
EHR_FEATURES = 76  # the contract's feature count (data_prep/ehr: 17 variables -> 76 columns)


def synthetic_batches(n: int, batch_size: int, hours: int, crop: int, num_labels: int, cxr_fraction: float,
                      device: torch.device) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(n):
        batch = {"ehr": torch.randn(batch_size, hours, EHR_FEATURES, generator=generator),
                 "ehr_lengths": torch.randint(hours // 2, hours + 1, (batch_size,), generator=generator),
                 "image": torch.randn(batch_size, 1, crop, crop, generator=generator),
                 "has_cxr": torch.rand(batch_size, generator=generator) < cxr_fraction,
                 "labels": (torch.rand(batch_size, num_labels, generator=generator) < 0.3).float()}
        batches.append({k: v if k == "ehr_lengths" else v.to(device) for k, v in batch.items()})
    return batches


def measure(cfg, task: str, steps: int, warmup: int, hours: int, cxr_fraction: float) -> dict:
    device = resolve_device(str(cfg.train.device))
    ctx = DistContext(device=device)
    torch.manual_seed(0)
    model = models.build(cfg, NUM_LABELS[task], ehr_features=EHR_FEATURES,
                         channels_last=device.type == "cuda" and bool(cfg.train.channels_last))
    model.to(device)
    engine = Engine.from_config(cfg, model, ctx, balancing={"name": "none"}, objective="supervised")
    batch_size = int(cfg.train.batch_size)
    batches = synthetic_batches(steps, batch_size, hours, int(cfg.data.cxr.crop_size), NUM_LABELS[task],
                                cxr_fraction, device)
    engine.train_one_epoch(batches[:warmup], 0)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    engine.train_one_epoch(batches, 0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "task": task, "batch_size": batch_size, "steps": steps, "hours": hours, "crop": int(cfg.data.cxr.crop_size),
            "cxr_encoder": str(cfg.model.cxr.name), "amp": str(cfg.train.amp) if device.type == "cuda" else "off",
            "samples_per_s": steps * batch_size / seconds, "ms_per_step": 1000 * seconds / steps,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def full_epoch(cfg) -> dict:
    import sys
    from pathlib import Path

    from omegaconf import OmegaConf

    root_dir = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root_dir / "tests"))
    from training_fakes import TASK, write_task_inputs

    from training.train import fit

    root = root_dir / "bench" / "out" / "default_epoch"
    if not (root / "interim").exists():
        write_task_inputs(root, n_stays=2334, image_size=int(cfg.data.cxr.image_size), hours=(40, 49))
    cfg = OmegaConf.merge(cfg, {"data": {"interim_dir": str(root / "interim"), "processed_dir": str(root / "processed")},
                                "train": {"epochs": 1, "runs_dir": str(root / "runs")}})
    started = time.perf_counter()
    history = fit(cfg, TASK).history
    return {"epoch_seconds": history[0]["epoch_seconds"], "run_seconds": time.perf_counter() - started,
            "device": str(resolve_device(str(cfg.train.device)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--task", default="phenotyping", choices=sorted(NUM_LABELS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--hours", type=int, default=48, help="EHR sequence length (IHM: 48)")
    parser.add_argument("--cxr-fraction", type=float, default=1.0, help="share of rows with an image")
    parser.add_argument("--epoch", action="store_true", help="time one whole epoch of fit() instead")
    parser.add_argument("--out", help="write the result as JSON here")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    cfg = load_config(args.params, args.overrides)
    result = full_epoch(cfg) if args.epoch else \
        measure(cfg, args.task, args.steps, args.warmup, args.hours, args.cxr_fraction)
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
