"""params.yaml is the composed default, and every option of every config group composes.

Mirrors lightning-hydra-template's config tests: compose with Hydra's API instead of
launching processes, so a broken YAML is caught before `dvc exp run -S ...` hits it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from data_prep.params import CONFIG_DIR, compose, to_yaml

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("data", "task", "model", "fusion", "balancing", "train", "eval")


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def test_params_yaml_is_the_composed_default():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == compose(), "params.yaml is stale: run `python -m data_prep.params`"


def test_to_yaml_round_trips():
    params = compose()
    assert yaml.safe_load(to_yaml(params)) == params


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_options(group):
    assert group_options(group), f"configs/{group}/ has no options"


@pytest.mark.parametrize(("group", "option"),
                         [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_option_composes(group, option):
    params = compose([f"{group}={option}"])
    assert set(params) == set(GROUPS)
    if group in ("fusion", "balancing"):
        assert params[group]["name"] == option, "the option's file name must equal its `name`"


def test_unknown_option_is_rejected():
    with pytest.raises(Exception, match="fusion"):
        compose(["fusion=no_such_method"])


def test_dvc_hydra_integration_and_analytics_are_configured():
    dvc_config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in dvc_config
    assert "enabled = true" in dvc_config and "config_dir = configs" in dvc_config
