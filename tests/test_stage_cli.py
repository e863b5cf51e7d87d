"""Every stage's command line: `--help` explains the stage, bad settings give one line and exit 2.

The stages run in-process (their `main()` under `run_stage`, as `python -m` would), because a
subprocess per stage would spend most of its time importing torch; the checks fail before
any data are read, so no stage does real work here.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

from data_prep import config

ROOT = Path(__file__).resolve().parent.parent
TASK = "in_hospital_mortality"
# module -> the arguments it needs besides overrides
STAGES = {"data_prep.synthesize": [], "data_prep.extract_ehr": [], "data_prep.build_tasks": [],
          "data_prep.ehr_tensors": ["--task", TASK], "data_prep.pair_cxr": ["--task", TASK],
          "data_prep.cache_cxr": [], "training.teachers": ["--task", TASK], "training.train": ["--task", TASK],
          "evaluation.evaluate": ["--task", TASK], "evaluation.report": []}
TASK_STAGES = [name for name, extra in STAGES.items() if "--task" in extra]


def run_main(module: str, argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", [f"{module.rsplit('.', 1)[-1]}.py", *argv])
    monkeypatch.setattr("data_prep.config.setup_logging", lambda verbose=False: None)  # keep pytest's handlers
    with pytest.raises(SystemExit) as done:
        config.run_stage(importlib.import_module(module).main)
    return done.value.code


@pytest.mark.parametrize("module", [*STAGES, "data_prep.params"])
def test_help_describes_the_stage(module, monkeypatch, capsys):
    assert run_main(module, ["--help"], monkeypatch) == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert out.startswith("usage:") and len(description.split()) >= 5, out


@pytest.mark.parametrize("module", STAGES)
def test_a_mistyped_override_is_one_line_and_exit_2(module, monkeypatch, capsys):
    argv = ["--params", str(ROOT / "params.yaml"), *STAGES[module], "data.cxr.image_size=abc"]
    assert run_main(module, argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: override data\.cxr\.image_size='abc': expected an integer "
                        r"\(params\.yaml has \d+\)\n", err), err


@pytest.mark.parametrize("module", TASK_STAGES)
def test_an_unknown_task_is_one_line_and_exit_2(module, monkeypatch, capsys):
    argv = ["--params", str(ROOT / "params.yaml"), "--task", "nope"]
    assert run_main(module, argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --task 'nope': expected one of task.names") and err.count("\n") == 1


def test_params_rejects_an_unknown_option_in_one_line(monkeypatch, capsys, tmp_path):
    argv = ["--out", str(tmp_path / "params.yaml"), "fusion=no_such_method"]
    assert run_main("data_prep.params", argv, monkeypatch) == 2
    err = capsys.readouterr().err
    assert "fusion/no_such_method" in err and err.count("\n") == 1
    assert not (tmp_path / "params.yaml").exists()
