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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. fusion=late")
    parser.add_argument("--out", default="params.yaml")
    args = parser.parse_args()
    from data_prep.io import write_text

    write_text(args.out, to_yaml(compose(args.overrides)))


if __name__ == "__main__":
    main()
