"""Why a phenotyping step was slow, and what each fix buys: LSTM form, batching, threads.

    python bench/phenotyping_step.py lstm [--threads 2] [--hours 300]
    python bench/phenotyping_step.py padding [--pools 1 4 8 16]
    python bench/phenotyping_step.py step [--threads 2] [--busy] [--pool 16] [key=value ...]

`lstm` times forward+backward of the default 2-layer LSTM (width 256, batch 32) on one
padded batch, run as a PackedSequence (the old encoder) and as the padded batch with the
output gathered at each stay's last hour (models/ehr_encoders.py), in the same process.
`padding` reports, for the prepared phenotyping training stays, the hours the LSTM runs
relative to the stays' real hours, with random batches (pool 1) and with length-bucketed
pools (data_prep/sampling.py). `step` times real training steps (Engine.train_one_epoch)
on the first batches of the prepared phenotyping training set (run `dvc repro` first);
`--busy` keeps one core busy with a spinning process, as another job on a shared machine
would. Each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence


def _spin() -> None:
    while True:
        pass


def time_lstm(threads: int, hours: int, repeats: int = 3) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lstm = nn.LSTM(76, 256, num_layers=2, batch_first=True)
    x = torch.randn(32, hours, 76)
    lengths = torch.randint(hours // 4, hours + 1, (32,))
    lengths[0] = hours

    def packed() -> torch.Tensor:
        _, (h, _) = lstm(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        return h[-1]

    def padded() -> torch.Tensor:
        out, _ = lstm(x)
        return out[torch.arange(32), lengths - 1]

    result = {"bench": "lstm", "threads": threads, "hours": hours,
              "max_abs_difference": float((packed() - padded()).abs().max())}
    for name, fn in (("packed", packed), ("padded", padded)):
        fn().sum().backward()
        started = time.perf_counter()
        for _ in range(repeats):
            lstm.zero_grad()
            fn().sum().backward()
        result[f"{name}_s"] = (time.perf_counter() - started) / repeats
    result["speedup"] = result["packed_s"] / result["padded_s"]
    return result


def padding_ratios(pools: list[int], batch_size: int = 32, repeats: int = 20) -> dict:
    from data_prep.config import load_config
    from data_prep.dataset import MultimodalDataset
    from data_prep.sampling import LengthBucketBatchSampler

    lengths = MultimodalDataset("phenotyping", "train", "partial", load_config()).ehr_lengths
    result = {"bench": "padding", "stays": int(lengths.size), "median_hours": float(np.median(lengths)),
              "max_hours": int(lengths.max())}
    for pool in pools:
        ratios = []
        for seed in range(repeats):
            batches = LengthBucketBatchSampler(lengths, batch_size, shuffle=True, pool=pool, drop_last=True,
                                               generator=torch.Generator().manual_seed(seed))
            ratios.append(sum(len(b) * int(lengths[b].max()) for b in batches) / lengths.sum())
        result[f"pool_{pool}"] = float(np.mean(ratios))
    return result


def time_steps(threads: int, pool: int, steps: int, overrides: list[str]) -> dict:
    from data_prep.config import load_config
    from data_prep.dataset import MultimodalDataset
    from models.factory import build
    from training.distributed import DistContext
    from training.engine import Engine
    from training.train import make_loader

    torch.set_num_threads(threads)
    cfg = load_config("params.yaml", [f"train.length_pool={pool}", *overrides])
    ctx = DistContext(device=torch.device("cpu"))
    dataset = MultimodalDataset("phenotyping", "train", "partial", cfg, train=True)
    loader = make_loader(dataset, cfg, ctx, True, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build(cfg, len(dataset.label_names), ehr_features=dataset.ehr_features)
    engine = Engine.from_config(cfg, model, ctx, balancing={"name": "none"}, objective="supervised")
    batches = [batch for _, batch in zip(range(steps + 1), loader, strict=False)]
    engine.train_one_epoch(batches[:1], 0)
    started = time.perf_counter()
    engine.train_one_epoch(batches[1:], 0)
    return {"bench": "step", "threads": threads, "pool": pool, "cxr_encoder": str(cfg.model.cxr.name),
            "steps": len(batches) - 1, "s_per_step": (time.perf_counter() - started) / (len(batches) - 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=("lstm", "padding", "step"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hours", type=int, default=300)
    parser.add_argument("--pools", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--pool", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    spinner = multiprocessing.Process(target=_spin, daemon=True) if args.busy else None
    if spinner:
        spinner.start()
    try:
        if args.bench == "lstm":
            result = time_lstm(args.threads, args.hours)
        elif args.bench == "padding":
            result = padding_ratios(args.pools)
        else:
            result = time_steps(args.threads, args.pool, args.steps, args.overrides)
    finally:
        if spinner:
            spinner.terminate()
    result["busy_core"] = bool(args.busy)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
