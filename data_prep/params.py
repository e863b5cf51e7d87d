"""Compose configs/ into params.yaml, the way DVC's Hydra integration does.

`dvc exp run -S group=option` recomposes params.yaml itself; this module exists so that
the committed default can be regenerated after editing a group file, and so a test can
check that the committed params.yaml is exactly the composed default.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
HEADER = ("# Generated from configs/ by `python -m data_prep.params`; edit the group files, not this.\n"
          "# `dvc exp run -S fusion=late` recomposes it through DVC's Hydra integration.\n")


def compose(overrides: list[str] | None = None, config_dir: str | Path = CONFIG_DIR) -> dict[str, Any]:
    """The composed configuration as plain containers (interpolations resolved)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def to_yaml(params: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=100)


def checked_compose(overrides: list[str]) -> dict[str, Any]:
    """compose(), with bad overrides turned into one PipelineInputError line instead of Hydra's traceback.

    Hydra does not type-check plain YAML groups, so a dotted `key=value` override must keep
    the type of the value it replaces in the composition of the group choices alone.
    """
    from hydra.errors import HydraException
    from omegaconf import OmegaConf

    from data_prep.config import check_override_type
    from data_prep.errors import PipelineInputError

    try:
        params = compose(overrides)
    except HydraException as err:
        lines = [line.strip() for line in str(err).split("Config search path")[0].splitlines() if line.strip()]
        message = " ".join(lines[:2]) + (f" {', '.join(lines[2:])}" if lines[2:] else "")
        raise PipelineInputError(f"overrides {' '.join(overrides)}: {message}") from None
    dotted = [item for item in overrides if "=" in item and "." in item.split("=", 1)[0]
              and not item.startswith(("+", "~"))]
    if dotted:
        groups = OmegaConf.create(compose([item for item in overrides if item not in dotted]))
        for item in dotted:
            key = item.split("=", 1)[0]
            check_override_type(key, OmegaConf.select(groups, key),
                                OmegaConf.select(OmegaConf.create(params), key), where="configs/")
    from data_prep.validation import validate_config

    validate_config(OmegaConf.create(params))
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. fusion=late")
    parser.add_argument("--out", default="params.yaml", help="output file (default: params.yaml)")
    args = parser.parse_args()
    from data_prep.io import write_text

    write_text(args.out, to_yaml(checked_compose(args.overrides)))


if __name__ == "__main__":
    from data_prep.config import run_stage

    run_stage(main)
