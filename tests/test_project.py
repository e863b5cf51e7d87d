"""Project hygiene a newcomer relies on: the README's two commands and CI running the second."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fenced_bash_commands(text: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)\n```", text, flags=re.M | re.S)


def test_readme_starts_with_the_two_commands():
    commands = fenced_bash_commands((ROOT / "README.md").read_text())
    assert len(commands) >= 2
    run_pipeline, run_tests = commands[0], commands[1]
    assert "pip install" in run_pipeline and run_pipeline.rstrip().endswith("dvc repro")
    assert "pip install" in run_tests and "pytest" in run_tests and "[dev]" in run_tests


def test_ci_runs_the_readme_test_command():
    ci = subprocess.run(["bash", "-c", "awk '/^```bash$/{getline; n++; if (n == 2) {print; exit}}' README.md"],
                        cwd=ROOT, capture_output=True, text=True, check=True)
    assert ci.stdout.strip() == fenced_bash_commands((ROOT / "README.md").read_text())[1]
    assert "README.md" in (ROOT / ".ci" / "run").read_text()


def test_generated_folders_are_git_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    for folder in ("/data/", "/runs/", "/reports/", "/.venv/"):
        assert folder in ignored


def test_dvc_stages_take_their_locations_from_the_params_that_set_them():
    """No stage spells a configurable directory literally (data_prep/paths.py derives the same)."""
    import yaml

    stages = yaml.safe_load((Path(__file__).resolve().parent.parent / "dvc.yaml").read_text())["stages"]
    literal = ("data/interim", "data/processed", "data/synthetic", "runs/", "reports/")
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for entry in [*body.get("deps", []), *body.get("outs", [])]:
            path = entry if isinstance(entry, str) else next(iter(entry))
            assert not path.startswith(literal), f"{name}: {path}"
