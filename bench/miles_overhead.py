"""Epoch time with MILES vs without a balancer on the same small run (target: < 5% overhead).

    python bench/miles_overhead.py [--stays 400] [--epochs 3] [--repeats 2] [key=value ...]

Writes contract-format inputs (tests/training_fakes.py) under bench/out/miles_overhead/, then
trains the same configuration with `balancing=none` and `balancing=miles`, alternating, and
compares the median epoch time (epochs after the first). Because wall-clock noise on a shared
machine can exceed the effect, it also times MILES's own per-epoch work directly (its
decision from the validation metrics; the validation pass itself runs for early stopping
with or without MILES).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from training_fakes import TASK, tiny_config, write_task_inputs  # noqa: E402

from training.balancers import build_balancer  # noqa: E402
from training.train import fit  # noqa: E402


def decision_seconds(repeats: int = 1000) -> float:
    """Mean time of one MILES epoch-end decision on a realistic metrics dict."""
    balancer = build_balancer({"name": "miles"}, torch.nn.Linear(1, 1))
    metrics = {s: {h: {"auroc": v, "auprc": v, "loss": 0.5} for h, v in (("fused", 0.8), ("ehr", 0.78), ("cxr", 0.6))}
               for s in ("all", "paired")}
    started = time.perf_counter()
    for epoch in range(repeats):
        balancer.on_epoch_end(epoch, metrics, {})
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "miles_overhead"))
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    root = Path(args.out)
    if not (root / "interim").exists():
        write_task_inputs(root, n_stays=args.stays, image_size=72)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    epoch_times: dict[str, list[float]] = {"none": [], "miles": []}
    for repeat in range(args.repeats):
        for name in ("none", "miles"):
            cfg = tiny_config(root, balancing=name, epochs=args.epochs, runs_dir=str(root / f"runs_{name}_{repeat}"))
            cfg.data.cxr.image_size, cfg.data.cxr.crop_size = 72, 64
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(args.overrides))
            history = fit(cfg, TASK).history
            epoch_times[name] += [row["epoch_seconds"] for row in history[1:]]
    medians = {name: statistics.median(times) for name, times in epoch_times.items()}
    result = {"stays": args.stays, "epochs": args.epochs, "repeats": args.repeats, "device": str(cfg.train.device),
              "median_epoch_seconds": medians, "ratio_miles_over_none": medians["miles"] / medians["none"],
              "miles_decision_seconds": decision_seconds(),
              "decision_share_of_epoch": decision_seconds() / medians["none"], "epoch_times": epoch_times}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
