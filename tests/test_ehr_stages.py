"""The three EHR stages run from the command line as DVC runs them (tiny root, default params)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
from ehr_tables import write_tiny_mimic


def run_stage(repo_root, module, *args):
    return subprocess.run([sys.executable, "-m", module, "--params", str(repo_root / "params.yaml"), *args],
                          cwd=repo_root, capture_output=True, text=True)


def test_stages_chain_and_report_bad_input_in_one_line(tmp_path, repo_root):
    root = write_tiny_mimic(tmp_path / "mimic-iv")
    paths = [f"data.mimic_iv_root={root}", f"data.interim_dir={tmp_path / 'interim'}",
             f"data.processed_dir={tmp_path / 'processed'}"]
    for module, extra in [("data_prep.extract_ehr", []), ("data_prep.build_tasks", []),
                          ("data_prep.ehr_tensors", ["--task", "in_hospital_mortality"]),
                          ("data_prep.ehr_tensors", ["--task", "phenotyping"])]:
        result = run_stage(repo_root, module, *extra, *paths)
        assert result.returncode == 0, result.stderr[-2000:]
    index = pd.read_parquet(tmp_path / "processed" / "ehr" / "phenotyping" / "index.parquet")
    values = np.load(tmp_path / "processed" / "ehr" / "phenotyping" / "values.npy", mmap_mode="r")
    assert index["stay_id"].tolist() == [101, 201, 701] and values.shape == (72 + 72 + 24, 76)
    flow = json.loads((tmp_path / "interim" / "tasks" / "in_hospital_mortality" / "cohort.json").read_text())
    assert flow["final"] == 2

    (root / "icu" / "icustays.csv.gz").unlink()
    failed = run_stage(repo_root, "data_prep.extract_ehr", *paths)
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "icustays" in failed.stderr and "Traceback" not in failed.stderr
