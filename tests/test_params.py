"""params.yaml is the composed default, and every option of every config group composes.

Mirrors lightning-hydra-template's config tests: compose with Hydra's API instead of
launching processes, so a broken YAML is caught before `dvc exp run -S ...` hits it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from data_prep.config import check_task, load_config
from data_prep.errors import PipelineInputError
from data_prep.params import CONFIG_DIR, checked_compose, compose, to_yaml

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ("data", "task", "model", "fusion", "balancing", "regime", "privacy", "teachers", "train", "eval")


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
    if group in ("fusion", "balancing", "regime"):
        assert params[group]["name"] == option, "the option's file name must equal its `name`"


def test_unknown_option_is_rejected():
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="fusion/no_such_method"):
        compose(["fusion=no_such_method"])


def test_dvc_hydra_integration_and_analytics_are_configured():
    dvc_config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in dvc_config
    assert "enabled = true" in dvc_config and "config_dir = configs" in dvc_config


def test_checked_compose_turns_bad_overrides_into_one_line():
    with pytest.raises(PipelineInputError, match="fusion/no_such_method") as err:
        checked_compose(["fusion=no_such_method"])
    assert "\n" not in str(err.value)
    with pytest.raises(PipelineInputError, match="data.cxr.image_size='abc': expected an integer"):
        checked_compose(["data.cxr.image_size=abc"])
    assert checked_compose(["data.cxr.image_size=96"])["data"]["cxr"]["image_size"] == 96


@pytest.mark.parametrize(("override", "expected"), [("data.cxr.image_size=abc", "an integer"),
                                                    ("train.epochs=2.5", "an integer"),
                                                    ("train.lr=fast", "a number"),
                                                    ("train.channels_last=0", "a boolean"),
                                                    ("data.cxr.views=AP", "a list")])
def test_load_config_rejects_an_override_of_the_wrong_type(override, expected):
    with pytest.raises(PipelineInputError, match=f"override {override.split('=')[0]}=.*expected {expected}"):
        load_config(ROOT / "params.yaml", [override])


def test_load_config_accepts_overrides_of_the_same_type():
    cfg = load_config(ROOT / "params.yaml", ["train.lr=1", "data.cxr.views=[AP,PA]",
                                             "model.cxr.pretrained_path=/weights.pt", "train.epochs=2"])
    assert (cfg.train.lr, list(cfg.data.cxr.views), cfg.train.epochs) == (1, ["AP", "PA"], 2)


def test_check_task_names_the_known_tasks():
    cfg = load_config(ROOT / "params.yaml")
    check_task(cfg, cfg.task.names[0])
    with pytest.raises(PipelineInputError, match="--task 'nope': expected one of task.names"):
        check_task(cfg, "nope")
