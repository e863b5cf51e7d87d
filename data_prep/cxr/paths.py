"""Where the CXR stages read and write, derived from the configuration in one place."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def labels_path(cfg: DictConfig, task: str) -> Path:
    return Path(cfg.data.interim_dir) / "tasks" / task / "labels.parquet"


def pairs_path(cfg: DictConfig, task: str) -> Path:
    return Path(cfg.data.interim_dir) / "cxr" / f"pairs_{task}.parquet"


def counts_path(cfg: DictConfig, task: str) -> Path:
    return Path(cfg.data.interim_dir) / "cxr" / f"pairs_{task}_counts.json"


def cache_dir(cfg: DictConfig) -> Path:
    return Path(cfg.data.processed_dir) / "cxr"


def ehr_dir(cfg: DictConfig, task: str) -> Path:
    return Path(cfg.data.processed_dir) / "ehr" / task
