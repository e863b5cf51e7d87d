"""The bad-input matrix: one parametrized test per stage family, one row per case.

Each row is input that once slipped through (a traceback, a silent roll-over, a picture of
garbage) or that must keep failing cleanly. A new case is one more row. Every error must be
one line that names the file (or setting) and says what was expected, and must never quote
a subject, admission or stay identifier.
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ehr_tables import CHART_ROWS, STAYS, write_table, write_tiny_mimic
from PIL import Image

import training.schedule  # noqa: F401 - registers the schedule-name check, as training.train does
from data_prep.config import load_config
from data_prep.cxr.cache import build_cache
from data_prep.ehr.cohorts import TaskWindow
from data_prep.ehr.extract import extract_ehr
from data_prep.ehr.tasks import build_tasks
from data_prep.ehr.variables import load_variable_map
from data_prep.errors import PipelineInputError
from data_prep.io import atomic_path, remove_stale_temporaries, stale_temporaries
from data_prep.schemas import CHARTEVENTS as CHARTEVENTS_SPEC
from data_prep.schemas import ICUSTAYS, MIMIC_IV_TABLES

ROOT = Path(__file__).resolve().parent.parent
# identifiers planted in the rows that errors are about; no message may contain them
SECRET_SUBJECT, SECRET_HADM, SECRET_STAY = 987654, 876543, 765432


def _secret_chart(**changes) -> dict:
    row = {"subject_id": SECRET_SUBJECT, "hadm_id": SECRET_HADM, "stay_id": SECRET_STAY,
           "charttime": "2150-01-01 01:00:00", "storetime": "2150-01-01 01:00:00", "itemid": 220045,
           "value": "80", "valuenum": "80"}
    return {**row, **changes}


def _rewrite(path: Path, edit: Callable[[str], str]) -> None:
    with gzip.open(path, "rt") as handle:
        text = handle.read()
    with gzip.open(path, "wt") as handle:
        handle.write(edit(text))


def _truncate(relpath: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        path = root / relpath
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # as an interrupted download leaves it
    return mutate


def _chart_rows(*extra: dict) -> Callable[[Path], None]:
    return lambda root: write_table(root, CHARTEVENTS_SPEC, [*CHART_ROWS, *extra])


def _extra_field_in_chartevents(root: Path) -> None:
    path = root / "icu" / "chartevents.csv.gz"
    line = f"{SECRET_SUBJECT},{SECRET_HADM},{SECRET_STAY},,2150-01-01 01:00:00,,220045,80,80,,,EXTRA\n"
    _rewrite(path, lambda text: text + line)


def _icustay_intime(value: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        rows = [{"subject_id": s, "hadm_id": h, "stay_id": stay, "first_careunit": f, "last_careunit": last,
                 "intime": value if stay == 101 else i, "outtime": o, "los": 1.0}
                for stay, (s, h, f, last, i, o) in STAYS.items()]
        write_table(root, ICUSTAYS, rows)
    return mutate


def _header_only(spec_name: str) -> Callable[[Path], None]:
    def mutate(root: Path) -> None:
        write_table(root, MIMIC_IV_TABLES[spec_name], [])
    return mutate

# case -> (mutation of the tiny MIMIC-IV root, fragments the one-line error must contain)
EXTRACT_CASES = {
    "truncated chartevents.csv.gz": (_truncate("icu/chartevents.csv.gz"),
                                     ["chartevents.csv.gz", "truncated or corrupt"]),
    "truncated labevents.csv.gz": (_truncate("hosp/labevents.csv.gz"), ["labevents.csv.gz", "truncated or corrupt"]),
    "truncated icustays.csv.gz": (_truncate("icu/icustays.csv.gz"), ["icustays.csv.gz", "truncated or corrupt"]),
    "not gzip at all": (lambda root: (root / "hosp" / "patients.csv.gz").write_bytes(b"\x1f\x8bnot really gzip"),
                        ["patients.csv.gz", "truncated or corrupt"]),
    "chartevents with a header and no rows": (_header_only("chartevents"),
                                              ["chartevents.csv.gz", "no data rows"]),
    "icustays with a header and no rows": (_header_only("icustays"),
                                           ["icustays.csv.gz", "no data rows"]),
    "impossible date in icustays (rolled over before)": (_icustay_intime("2167-02-30 10:00:00"),
                                                         ["icustays.csv.gz", "line 2", "'intime'", "2167-02-30"]),
    "impossible date in chartevents": (_chart_rows(_secret_chart(charttime="2150-02-30 01:00:00")),
                                       ["chartevents.csv.gz", f"line {len(CHART_ROWS) + 2}", "'charttime'",
                                        "2150-02-30"]),
    "row with an extra field quotes no identifier": (_extra_field_in_chartevents,
                                                     ["chartevents.csv.gz", f"line {len(CHART_ROWS) + 2}",
                                                      "12 fields where the header has 11"]),
    "bad stay_id is named by line, not quoted": (_chart_rows(_secret_chart(stay_id=f"{SECRET_STAY}x")),
                                                 ["chartevents.csv.gz", f"line {len(CHART_ROWS) + 2}",
                                                  "'stay_id'", "int64"]),
    "bad valuenum is quoted (not an identifier)": (_chart_rows(_secret_chart(valuenum="eighty")),
                                                   ["chartevents.csv.gz", "'valuenum'", "'eighty'"]),
}


@pytest.mark.parametrize("case", EXTRACT_CASES)
def test_extract_ehr_family(case, tmp_path):
    mutate, fragments = EXTRACT_CASES[case]
    root = write_tiny_mimic(tmp_path / "mimic")
    mutate(root)
    out = tmp_path / "out"
    with pytest.raises(PipelineInputError) as error:
        extract_ehr(root, out, load_variable_map("medfuse"))
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    for secret in (SECRET_SUBJECT, SECRET_HADM, SECRET_STAY):
        assert str(secret) not in message
    assert not out.exists()


WINDOWS = {"in_hospital_mortality": TaskWindow(18, 48, 48), "phenotyping": TaskWindow(18, 0, None)}


def _swap_times_of_stay_101(root: Path) -> None:
    _icustay_intime("2150-01-05 00:00:00")(root)  # after its outtime 2150-01-04


def _move_stay_402_to_its_own_transfer(root: Path) -> None:
    """Stay 401 becomes a transfer; 402, in the same admission, must still be kept (recipe order)."""
    rows = [{"subject_id": s, "hadm_id": h, "stay_id": stay, "first_careunit": f,
             "last_careunit": "SICU" if stay == 401 else last, "intime": i, "outtime": o, "los": 1.0}
            for stay, (s, h, f, last, i, o) in STAYS.items()]
    write_table(root, ICUSTAYS, rows)


# case -> (mutation, task, the rule that must count it, removed by that rule, stay that must (not) be in)
TASK_CASES = {
    "intime after outtime is its own rule": (_swap_times_of_stay_101, "phenotyping",
                                             "valid ICU times (intime <= outtime)", 1, (101, False)),
    "an admission's transfer stay does not remove its other stay": (
        _move_stay_402_to_its_own_transfer, "phenotyping", "exactly one ICU stay left in the admission", 0,
        (402, True)),
}


@pytest.mark.parametrize("case", TASK_CASES)
def test_build_tasks_family(case, tmp_path):
    mutate, task, rule, removed, (stay, kept) = TASK_CASES[case]
    root = write_tiny_mimic(tmp_path / "mimic")
    mutate(root)
    extract_ehr(root, tmp_path / "ehr", load_variable_map("medfuse"))
    flows = build_tasks(root, tmp_path / "ehr", tmp_path / "tasks", list(WINDOWS), WINDOWS, 1002,
                        {"train": 0.7, "val": 0.1, "test": 0.2})
    step = next(s for s in flows[task]["steps"] if s["rule"] == rule)
    assert step["removed"] == removed, flows[task]["steps"]
    labels = pd.read_parquet(tmp_path / "tasks" / task / "labels.parquet")
    assert (stay in set(labels["stay_id"])) is kept
    assert all(s["removed"] == 0 for s in flows[task]["steps"] if s["rule"].startswith("length of stay"))


def _radiograph(seed: int = 0, width: int = 220, height: int = 180) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    blob = 120 + 80 * np.sin(x / 9) * np.cos(y / 13) + rng.normal(0, 8, (height, width))
    return Image.fromarray(np.clip(blob, 0, 255).astype(np.uint8), mode="L")


def _jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    _radiograph().save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _png16() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((120, 100)) * 65535).astype(np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


def _stray_marker() -> bytes:
    """A restart marker where none belongs, mid-scan: libjpeg warns ("premature end of data
    segment") and, without strict mode, decodes the rest of the image as grey garbage."""
    data = _jpeg_bytes()
    return data[: len(data) // 2] + b"\xff\xd3" + data[len(data) // 2:]


def _cut_with_end_marker() -> bytes:
    data = _jpeg_bytes()
    return data[: int(len(data) * 0.9)] + b"\xff\xd9"


# case -> (bytes under the .jpg name, or None for no file; the exclusion reason)
CXR_CASES = {
    "16-bit PNG under a .jpg name": (_png16, "not_a_jpeg"),
    "a stray marker in the entropy data (decoder warning)": (_stray_marker, "decode_warning"),
    "cut short, end marker kept (decoder warning)": (_cut_with_end_marker, "decode_warning"),
    "cut short": (lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2], "truncated"),
    "text, not an image": (lambda: b"this is not a jpeg", "not_an_image"),
    "empty file": (lambda: b"", "not_an_image"),
    "missing": (None, "missing"),
}


@pytest.mark.parametrize("case", CXR_CASES)
def test_cache_cxr_family(case, tmp_path):
    content, reason = CXR_CASES[case]
    root = tmp_path / "cxr"
    relpaths = ["files/p10/p10000001/s50000001/good.jpg", "files/p10/p10000002/s50000002/bad.jpg"]
    for relpath, data in zip(relpaths, [_jpeg_bytes, content], strict=True):
        if data is not None:
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / relpath).write_bytes(data())
    images = pd.DataFrame({"dicom_id": ["good", "bad"], "image_relpath": relpaths})
    summary = build_cache(images, root, tmp_path / "cache", image_size=32, max_failure_fraction=0.5)
    exclusions = pd.read_csv(tmp_path / "cache" / "exclusions.csv")
    assert exclusions[["dicom_id", "reason"]].values.tolist() == [["bad", reason]]
    assert summary["failures_by_reason"] == {reason: 1} and summary["images_cached"] == 1


def test_a_stricter_tolerance_still_fails_but_does_not_change_a_cache_that_passes(tmp_path):
    """The tolerance is checked, not recorded: the same images give byte-identical outputs
    whatever it is, so DVC has nothing downstream to retrain when only it changes."""
    root = tmp_path / "cxr"
    relpaths = ["files/p10/p1/s1/a.jpg", "files/p10/p1/s1/b.jpg"]
    (root / relpaths[0]).parent.mkdir(parents=True)
    (root / relpaths[0]).write_bytes(_jpeg_bytes())
    images = pd.DataFrame({"dicom_id": ["a", "b"], "image_relpath": relpaths})  # b is missing
    outputs = {}
    for tolerance in (0.5, 0.9):
        out = tmp_path / f"cache_{tolerance}"
        build_cache(images, root, out, image_size=32, max_failure_fraction=tolerance)
        outputs[tolerance] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert outputs[0.5] == outputs[0.9]
    with pytest.raises(PipelineInputError, match="data.cxr.max_failure_fraction=0.1"):
        build_cache(images, root, tmp_path / "cache_strict", image_size=32, max_failure_fraction=0.1)


# case -> (overrides of the committed params.yaml, the one-line error's start)
CONFIG_CASES = {
    "misspelled key": (["train.epoch=3"], "override train.epoch: unknown setting (closest known key: train.epochs"),
    "misspelled group": (["trian.lr=0.1"], "override trian.lr: unknown setting (closest known key: train.lr"),
    "one element of a list": (["data.cxr.views.0=PA"], "override data.cxr.views.0: data.cxr.views is a list"),
    "no epoch": (["train.epochs=0"], "train.epochs=0: expected an integer >= 1"),
    "negative epochs": (["train.epochs=-2"], "train.epochs=-2: expected an integer >= 1"),
    "empty batch": (["train.batch_size=0"], "train.batch_size=0: expected an integer >= 1"),
    "negative learning rate": (["train.lr=-1"], "train.lr=-1: expected a number > 0"),
    "unknown schedule": (["train.schedule.name=cosin"], "train.schedule.name='cosin': unknown learning-rate "
                                                        "schedule (known: constant, cosine, step)"),
    "zero threads": (["train.threads=0"], "train.threads=0: expected 'auto' or a positive integer"),
    "threads not a number": (["train.threads=many"], "train.threads='many': expected 'auto' or a positive"),
    "negative length pool": (["train.length_pool=-1"], "train.length_pool=-1: expected an integer >= 0"),
    "teachers' negative length pool": (["teachers.train.length_pool=-1"],
                                       "teachers.train.length_pool=-1: expected an integer >= 0"),
    "teachers' zero epochs": (["teachers.train.epochs=0"], "teachers.train.epochs=0: expected an integer >= 1"),
    "unknown setting": (["train.setting=both"], "train.setting='both': expected one of paired, partial"),
    "unknown unimodal-head mode": (["model.unimodal_heads=frozen"],
                                   "model.unimodal_heads='frozen': expected one of joint, probe"),
    "tolerance above 1": (["data.cxr.max_failure_fraction=2"], "data.cxr.max_failure_fraction=2: expected a "
                                                              "number >= 0 and <= 1"),
    "crop larger than the cached image": (["data.cxr.crop_size=500"], "data.cxr.crop_size=500: expected at most"),
    "split not adding up": (["data.split.train=0.9"], "data.split: train + val + test = 1.2, expected 1"),
    "warm-up covering every epoch": (["train.schedule.warmup_epochs=6"], "train.schedule.warmup_epochs=6: "
                                                                         "expected fewer than train.epochs=6"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_config_family(case):
    overrides, expected = CONFIG_CASES[case]
    with pytest.raises(PipelineInputError) as error:
        load_config(ROOT / "params.yaml", overrides)
    assert str(error.value).startswith(expected) and "\n" not in str(error.value), str(error.value)


def test_config_accepts_a_deliberately_new_key_and_valid_settings():
    cfg = load_config(ROOT / "params.yaml", ["+train.new_setting=1", "train.epochs=1", "train.schedule.name=step"])
    assert cfg.train.new_setting == 1 and cfg.train.epochs == 1


def test_config_known_keys_follow_the_params_file(tmp_path):
    """Known keys come from the loaded file, so a new config group (say, federated) needs no code."""
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text() + "federated:\n  rounds: 3\n")
    assert load_config(params, ["federated.rounds=5"]).federated.rounds == 5
    with pytest.raises(PipelineInputError, match="closest known key: federated.rounds"):
        load_config(params, ["federated.round=5"])
    assert load_config(ROOT / "params.yaml", ["regime.objective=supervised"]).regime.objective == "supervised"


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from data_prep.io import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)
""")


def _killed_write(final: Path) -> None:
    result = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(final)], cwd=ROOT)
    assert result.returncode == -signal.SIGKILL


def test_a_write_killed_by_sigkill_is_cleaned_by_the_next_write(tmp_path):
    final = tmp_path / "runs" / "last.pt"
    _killed_write(final)
    left = stale_temporaries(final.parent)
    assert len(left) == 1 and left[0].name.startswith(".atomic-") and not final.exists()
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in final.parent.iterdir()) == ["last.pt"]


def test_stage_start_cleaning_keeps_live_writers_and_other_files(tmp_path):
    _killed_write(tmp_path / "model.pt")
    legacy = tmp_path / ".ehr.k2j4_x9q.tmp"  # the name atomic_path used before the prefix
    (legacy / "ehr").mkdir(parents=True)
    live = tmp_path / f".atomic-{os.getpid()}-cohort.json.abcd1234"  # a writer that is still running
    live.mkdir()
    (tmp_path / ".gitignore").write_text("x")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".gitignore", live.name])

