"""Checkpoints as plain dicts (as torchvision's reference scripts), written atomically.

`last.pt` holds everything a resumed run needs to continue exactly where a killed one
stopped: model, optimizer, AMP scaler, balancer, history, early-stopping state and every
random number generator. The LR schedule needs no state: it is a function of the epoch.

A checkpoint also records the run's fingerprint (configuration, training code, input data):
`--resume` (which `dvc repro` always passes) continues only a run with the same fingerprint
and otherwise starts over, so an interrupted run resumes and a changed experiment never
continues another one's weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from data_prep.io import atomic_path


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """torch.save to a temporary sibling, then rename: a kill never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    # Our own file, holding RNG states (numpy arrays, tuples): not loadable with weights_only.
    return torch.load(Path(path), map_location=map_location, weights_only=False)


# ---- what a resume must match -------------------------------------------------------------
RESULT_NEUTRAL_SETTINGS = ("eval", "train.stop_after_epoch", "train.runs_dir", "privacy.audit")
"""Settings that cannot change what training computes; every other setting of the composed
configuration (present and future) must match for a run to be continued."""

CODE_PACKAGES = ("models", "training")
CODE_FILES = ("data_prep/dataset.py", "data_prep/transforms.py")
"""The training stage's code (as dvc.yaml's train deps): a checkpoint from other code is not continued."""


def _digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


def config_fingerprint(cfg: Mapping[str, Any]) -> str:
    """Hash of the configuration without the result-neutral settings."""
    plain = copy.deepcopy(OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg))
    for dotted in RESULT_NEUTRAL_SETTINGS:
        *parents, leaf = dotted.split(".")
        node = plain
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return _digest(json.dumps(plain, sort_keys=True, default=str).encode())


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def code_fingerprint(root: Path = PROJECT_ROOT) -> str:
    """Hash of the training stage's source files."""
    files = sorted(path for package in CODE_PACKAGES for path in (root / package).rglob("*.py"))
    files += [root / name for name in CODE_FILES]
    hasher = hashlib.sha256()
    for path in files:
        hasher.update(str(path.relative_to(root)).encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()[:16]


def data_fingerprint(paths: Sequence[Path]) -> str:
    """Hash of the run's input files: the small index files whole, the large arrays by size
    and header (a re-prepared array of another shape or dtype differs; same-shape rewrites
    show in the index files written beside them)."""
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(str(path.name).encode())
        if not path.is_file():
            hasher.update(b"missing")
            continue
        size = path.stat().st_size
        hasher.update(str(size).encode())
        with path.open("rb") as handle:
            hasher.update(handle.read(1 << 20) if path.suffix == ".npy" else handle.read())
    return hasher.hexdigest()[:16]


def run_fingerprint(cfg: Mapping[str, Any], inputs: Sequence[Path]) -> dict[str, str]:
    """What a resume must match: {"config", "code", "data"} hashes."""
    return {"config": config_fingerprint(cfg), "code": code_fingerprint(), "data": data_fingerprint(inputs)}


def resume_mismatch(saved: Mapping[str, str] | None, current: Mapping[str, str]) -> str | None:
    """The first part (config, code, data) that differs, or None when the run can continue."""
    if not saved:
        return "config"
    for part, value in current.items():
        if saved.get(part) != value:
            return part
    return None
