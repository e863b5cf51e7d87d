"""Two CPU ranks (gloo): every rank applies the same learning rates and balancer coefficients,
and the gathered predictions hold each val/test stay exactly once."""

from __future__ import annotations

import json
import os
import socket

import pandas as pd
import torch
import torch.multiprocessing as mp
from training_fakes import TASK, tiny_config, write_task_inputs

BALANCERS = {"miles": 2, "ogm_ge": 1}  # MILES: a decision then the epoch it sets; OGM-GE: per-step sums


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker(rank: int, world_size: int, port: int, root: str) -> None:
    from pathlib import Path

    from training.distributed import init_distributed, shutdown
    from training.train import fit

    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world_size)})
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        for name, epochs in BALANCERS.items():
            cfg = tiny_config(Path(root), balancing=name, epochs=epochs, runs_dir=f"{root}/ddp_{name}")
            result = fit(cfg, TASK, ctx=ctx)
            Path(root, f"history_{name}_rank{rank}.json").write_text(json.dumps(result.history))
    finally:
        shutdown(ctx)


def test_two_ranks_agree_on_every_rate_and_coefficient(tmp_path):
    write_task_inputs(tmp_path)
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    labels = pd.read_parquet(tmp_path / "interim" / "tasks" / TASK / "labels.parquet")
    for name in BALANCERS:
        histories = [json.loads((tmp_path / f"history_{name}_rank{r}.json").read_text()) for r in range(2)]
        assert len(histories[0]) == BALANCERS[name]
        for row0, row1 in zip(*histories, strict=True):
            decisions = [k for k in row0 if k.startswith(("lr_", "balancer_", "val_", "train_loss"))]
            assert {k: row0[k] for k in decisions} == {k: row1[k] for k in decisions}
        assert any(k.startswith("balancer_") for k in histories[0][0])
        predictions = pd.read_parquet(tmp_path / f"ddp_{name}" / TASK / "predictions.parquet")
        assert predictions["stay_id"].is_unique
        assert set(predictions["stay_id"]) == set(labels.loc[labels["split"].isin(["val", "test"]), "stay_id"])
