"""The HTML report as a clinician sees it: rendered by headless Chromium, not blank, with the
headline table and its numbers in the DOM.

Chromium (Debian package `chromium`) is installed by the session fixture when missing; if the
install fails the test fails with the reason (a report nobody can open is a broken report).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image
from test_eval_support import make_predictions, write_run

from evaluation.task_report import task_inputs, write_task_report

TASK = "in_hospital_mortality"
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    install = subprocess.run("apt-get update && apt-get install -y chromium", shell=True,
                             capture_output=True, text=True, timeout=900)
    found = shutil.which("chromium")
    if install.returncode != 0 or not found:
        pytest.fail("could not install Chromium for the report rendering test "
                    f"(apt-get exit {install.returncode}): {install.stderr[-1500:]}")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    params = write_run(root, TASK, make_predictions(120, seed=9), {"n_bootstrap": 100})
    config = yaml.safe_load(params.read_text())
    write_task_report(TASK, task_inputs(config, TASK, root / "dvc.lock"), config, root / "reports" / TASK)
    return root / "reports" / TASK


@pytest.mark.browser
def test_report_renders_with_content(chromium, report, tmp_path):
    screenshot = tmp_path / "report.png"
    done = subprocess.run([chromium, *HEADLESS, f"--screenshot={screenshot}", "--window-size=1280,2000",
                           (report / "report.html").as_uri()], capture_output=True, text=True, timeout=180)
    assert screenshot.is_file(), f"Chromium wrote no screenshot: {done.stderr[-1500:]}"
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1280, 2000)
    pixels = np.asarray(image).reshape(-1, 3)
    non_white = float((pixels.min(axis=1) < 235).mean())
    colours = len(np.unique(pixels, axis=0))
    assert non_white > 0.05, f"the page looks blank ({non_white:.1%} non-white pixels)"
    assert colours > 200, f"only {colours} distinct colours: no text/figures rendered?"


@pytest.mark.browser
def test_headline_table_is_in_the_rendered_dom(chromium, report):
    done = subprocess.run([chromium, *HEADLESS, "--dump-dom", (report / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=180)
    dom = done.stdout
    assert 'id="headline-table"' in dom, f"no headline table in the DOM: {done.stderr[-800:]}"
    metrics = json.loads((report / "metrics.json").read_text())
    headline = dom.split('id="headline-table"')[1].split("</table>")[0]
    for head in ("fused", "ehr", "cxr"):
        key = f"test_paired/{head}/auroc"
        expected = f"{metrics[key]:.3f} ({metrics[key + '_ci_low']:.3f}-{metrics[key + '_ci_high']:.3f})"
        assert expected in headline, f"{expected} missing from the headline table"
    assert "Fused (EHR + CXR)" in headline and "Valid resamples" in headline
