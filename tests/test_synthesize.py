"""The synthetic twin: layout, exact MIMIC schemas and formats, determinism, mess, bad settings, CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from data_prep import schemas
from data_prep.errors import PipelineInputError
from data_prep.synthesize import generate_twin
from data_prep.synthetic import catalog

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(n_subjects=40, seed=3, image_size=64)
TIMESTAMP = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("twin") / "synthetic"
    generate_twin(out, **TINY)
    return out


def read(path: Path) -> pd.DataFrame:
    """Read as MIMIC users do: every field as text, empty fields as NaN."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


ALL_TABLES = [("mimic-iv", spec) for spec in schemas.MIMIC_IV_TABLES.values()] + \
             [("mimic-cxr-jpg", spec) for spec in schemas.MIMIC_CXR_TABLES.values()]


@pytest.mark.parametrize(("dataset", "spec"), ALL_TABLES, ids=[s.name for _, s in ALL_TABLES])
def test_every_table_has_the_exact_schema_and_parses_with_its_dtypes(twin, dataset, spec):
    path = spec.locate(twin / dataset)
    assert path.name.endswith(".csv.gz")
    header = spec.read_header(path)
    assert header == spec.column_names
    frame = read(path)
    assert len(frame) > 0
    for name, kind in spec.columns:
        column = frame[name].dropna()
        if str(kind).startswith("int"):
            assert column.str.fullmatch(r"-?\d+").all(), f"{spec.name}.{name} is not integer text"
        elif str(kind) == "double":
            pd.to_numeric(column)  # raises on non-numbers
    for name in ("charttime", "storetime", "intime", "outtime", "admittime", "dischtime", "deathtime",
                 "edregtime", "edouttime"):
        if name in frame:
            assert frame[name].dropna().str.match(TIMESTAMP).all(), f"{spec.name}.{name}"


def test_layout_of_images_and_metadata_match_the_jpegs(twin):
    cxr = twin / "mimic-cxr-jpg"
    meta = read(cxr / "mimic-cxr-2.0.0-metadata.csv.gz")
    jpgs = sorted(p.relative_to(cxr).as_posix() for p in (cxr / "files").rglob("*.jpg"))
    expected = sorted(schemas.cxr_image_relpath(int(r.subject_id), int(r.study_id), r.dicom_id)
                      for r in meta.itertuples())
    assert jpgs == expected
    sample = meta.iloc[0]
    with Image.open(cxr / schemas.cxr_image_relpath(int(sample.subject_id), int(sample.study_id),
                                                    sample.dicom_id)) as image:
        assert image.mode == "L"
        assert (image.height, image.width) == (int(sample.Rows), int(sample.Columns)) == (77, 64)
    for name in ("mimic-iv", "mimic-cxr-jpg", "truth"):
        assert (twin / name).is_dir()
    assert not [p for p in twin.parent.iterdir() if p.name.startswith(".")], "temporary dirs left behind"


def test_mimic_value_formats(twin):
    patients = read(twin / "mimic-iv/hosp/patients.csv.gz")
    assert patients["anchor_year_group"].str.fullmatch(r"20\d\d - 20\d\d").all()
    assert patients["anchor_year"].astype(int).between(2110, 2210).all()
    assert patients["dod"].dropna().str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    chexpert = read(twin / "mimic-cxr-jpg/mimic-cxr-2.0.0-chexpert.csv.gz")
    values = set(chexpert[list(schemas.CHEXPERT_LABELS)].stack().dropna().unique())
    assert values <= {"1.0", "0.0", "-1.0"} and {"1.0", "0.0"} <= values
    assert chexpert.isna().any().any(), "blank (unmentioned) labels are expected"
    meta = read(twin / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    assert meta["StudyDate"].str.fullmatch(r"2[12]\d{6}").all()
    time = meta["StudyTime"].astype(float)
    assert ((time // 10000 < 24) & (time // 100 % 100 < 60)).all()
    labs = read(twin / "mimic-iv/hosp/labevents.csv.gz")
    ph = labs.loc[labs["itemid"] == "50820", "value"].dropna()
    assert ph[ph != "___"].str.fullmatch(r"\d\.\d\d").all()  # trailing zeros kept, e.g. "7.40"
    assert labs["hadm_id"].isna().any() and labs["hadm_id"].notna().any()
    diagnoses = read(twin / "mimic-iv/hosp/diagnoses_icd.csv.gz")
    assert not diagnoses["icd_code"].str.contains(r"\.").any()
    assert set(diagnoses["icd_version"]) == {"9", "10"}


def test_itemids_are_real_mimic_ids_and_dictionaries_cover_them(twin):
    chart = read(twin / "mimic-iv/icu/chartevents.csv.gz")
    d_items = read(twin / "mimic-iv/icu/d_items.csv.gz")
    used = set(chart["itemid"].astype(int))
    assert used <= set(d_items["itemid"].astype(int))
    for itemid in (220045, 220277, 220739, 223900, 223901, 223835, 226512, 224639):
        assert itemid in used
    assert {220048, 224641} & used, "irrelevant items must be present so extraction has to filter"
    gcs = chart.loc[chart["itemid"] == "220739", ["value", "valuenum"]]
    assert set(gcs["value"]) <= set(catalog.GCS_EYE) | set(catalog.GCS_EYE_PLAIN)
    assert gcs["valuenum"].astype(float).between(1, 4).all()
    labs = read(twin / "mimic-iv/hosp/labevents.csv.gz")
    assert set(labs["itemid"].astype(int)) <= set(read(twin / "mimic-iv/hosp/d_labitems.csv.gz")["itemid"].astype(int))


def test_diagnosis_codes_map_to_the_phenotype_resource(twin):
    resource = yaml.safe_load((ROOT / "data_prep/resources/phenotypes.yaml").read_text())["phenotypes"]
    groups = {p["name"]: {(9, str(c)) for c in p["icd9"]} | {(10, str(c)) for c in p["icd10"]} for p in resource}
    for name, by_version in catalog.PHENOTYPE_CODES.items():
        assert {(v, c) for v, codes in by_version.items() for c in codes} <= groups[name], name
    every = set().union(*groups.values())
    assert not {(v, c) for v, codes in catalog.IRRELEVANT_CODES.items() for c in codes} & every
    truth = pd.read_parquet(twin / "truth/stays.parquet")
    diagnoses = read(twin / "mimic-iv/hosp/diagnoses_icd.csv.gz")
    coded = {(int(h), int(v), c) for h, v, c in diagnoses[["hadm_id", "icd_version", "icd_code"]].itertuples(index=False)}
    for row in truth.head(20).itertuples():
        found = {(v, c) for h, v, c in coded if h == row.hadm_id} & groups["septicemia"]
        assert bool(found) == row.coded_septicemia


def test_realistic_mess_is_present(twin):
    chart = read(twin / "mimic-iv/icu/chartevents.csv.gz")
    stays = read(twin / "mimic-iv/icu/icustays.csv.gz")
    meta = read(twin / "mimic-cxr-jpg/mimic-cxr-2.0.0-metadata.csv.gz")
    images = pd.read_parquet(twin / "truth/images.parquet")
    assert {"LATERAL", "PA", "AP"} <= set(meta["ViewPosition"])
    assert stays["stay_id"].nunique() > images["stay_id"].nunique(), "some stays have no CXR"
    assert (~images["in_stay"]).any(), "some images lie outside their stay"
    assert stays["subject_id"].duplicated().any(), "several stays per patient"
    assert (stays["first_careunit"] != stays["last_careunit"]).any()
    assert (stays["los"].astype(float) < 2).any() and (stays["los"].astype(float) >= 2).any()
    text = chart[chart["valuenum"].isna()]["value"]
    assert text.isin(["Yes", "SR (Sinus Rhythm)", "AF (Atrial Fibrillation)", "Nasal cannula",
                      "Endotracheal tube", "Bed locked"]).any()
    assert (chart["storetime"] < chart["charttime"]).any()
    patients = read(twin / "mimic-iv/hosp/patients.csv.gz")
    assert patients["dod"].notna().any()


def test_impossible_values_and_minors_at_default_density(tmp_path):
    """Rare mess needs more rows than the tiny twin: a 150-subject twin without images suffices."""
    from data_prep.synthetic.settings import make_settings
    from data_prep.synthetic.twin import build_tables

    build_tables(tmp_path / "iv", tmp_path / "cxr", make_settings(n_subjects=150, seed=1, image_size=16))
    chart = read(tmp_path / "iv/icu/chartevents.csv.gz")
    hr = chart.loc[chart["itemid"] == "220045", "valuenum"].astype(float)
    assert hr.isin([0.0, 999.0]).any()
    temp_c = chart.loc[chart["itemid"] == "223762", "valuenum"].astype(float)
    assert (temp_c < 25).any(), "impossible Celsius temperatures are planted"
    spo2 = chart.loc[chart["itemid"] == "220277", "valuenum"].astype(float)
    assert (spo2 > 100).any() or (spo2 < 0).any(), "impossible SpO2 values are planted"
    assert (read(tmp_path / "iv/hosp/patients.csv.gz")["anchor_age"].astype(int) < 18).any()
    fio2 = chart.loc[chart["itemid"] == "223835", "valuenum"].astype(float)
    assert (fio2 <= 1).any() and (fio2 > 1).any(), "FiO2 charted as fraction and as percent"


def test_same_seed_same_bytes_other_seed_differs(twin, tmp_path):
    again = tmp_path / "again"
    generate_twin(again, **TINY)
    assert tree_digest(again) == tree_digest(twin)
    other = tmp_path / "other"
    generate_twin(other, **{**TINY, "seed": 4})
    assert tree_digest(other)["mimic-iv/icu/chartevents.csv.gz"] != tree_digest(twin)["mimic-iv/icu/chartevents.csv.gz"]


def test_image_bytes_do_not_depend_on_worker_count(tmp_path):
    one = tmp_path / "one"
    two = tmp_path / "two"
    generate_twin(one, n_subjects=40, seed=5, image_size=32, workers=1)
    generate_twin(two, n_subjects=40, seed=5, image_size=32, workers=2)
    assert tree_digest(one) == tree_digest(two)


@pytest.mark.parametrize(("setting", "value", "named"), [
    ("n_subjects", -5, "n_subjects"), ("image_size", 0, "image_size"), ("scale", 0, "scale"),
    ("other_chart_items", -1.0, "other_chart_items"),
    ("signal_ehr", -1.0, "signal.ehr"), ("imbalance", "big", "imbalance")])
def test_bad_settings_fail_with_one_line_naming_the_setting(tmp_path, setting, value, named):
    with pytest.raises(PipelineInputError) as err:
        generate_twin(tmp_path / "out", **{**TINY, setting: value})
    message = str(err.value)
    assert named in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_unwritable_output_fails_with_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(PipelineInputError, match="data.synthetic.out"):
        generate_twin(blocker / "twin", **TINY)


def test_cli_help_and_overrides_write_the_tree(tmp_path):
    done = subprocess.run([sys.executable, "-m", "data_prep.synthesize", "--help"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "key=value" in done.stdout
    out = tmp_path / "cli_twin"
    done = subprocess.run([sys.executable, "-m", "data_prep.synthesize", f"data.synthetic.out={out}",
                           "data.synthetic.n_subjects=12", "data.synthetic.image_size=32",
                           "data.synthetic.workers=1"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "mimic-iv/icu/chartevents.csv.gz").is_file()
    assert len(read(out / "mimic-iv/hosp/patients.csv.gz")) == 12
    done = subprocess.run([sys.executable, "-m", "data_prep.synthesize", f"data.synthetic.out={out}",
                           "data.synthetic.image_size=0"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "image_size" in done.stderr


def test_rendered_pixels_carry_the_image_factors(twin):
    """Lung-field brightness follows the haze and heart width follows the cardiothoracic ratio."""
    truth = pd.read_parquet(twin / "truth/images.parquet")
    frontal = truth[truth["view"].isin(["AP", "PA"])]
    lung_brightness, heart_width = [], []
    for row in frontal.itertuples():
        path = twin / "mimic-cxr-jpg" / schemas.cxr_image_relpath(row.subject_id, row.study_id, row.dicom_id)
        pixels = np.asarray(Image.open(path), dtype=float)
        h, w = pixels.shape
        lung_brightness.append(pixels[int(0.3 * h):int(0.5 * h), int(0.12 * w):int(0.3 * w)].mean())
        heart_row = pixels[int(0.66 * h), :]
        heart_width.append((heart_row > 140).sum())
    assert len(frontal) >= 30
    assert pd.Series(lung_brightness).corr(frontal["haze"].reset_index(drop=True), method="spearman") > 0.6
    assert pd.Series(heart_width).corr(frontal["heart_ctr"].reset_index(drop=True), method="spearman") > 0.5


def test_other_chart_items_adds_only_rows_outside_the_variable_map(tmp_path):
    """The ETL benchmark's realistic mix: extra numeric alarm-limit rows that extraction must filter."""
    from data_prep.ehr.variables import load_variable_map
    from data_prep.synthetic.settings import make_settings
    from data_prep.synthetic.twin import build_tables

    def chart(other: float) -> pd.DataFrame:
        out = tmp_path / f"other{other:g}"
        build_tables(out / "iv", out / "cxr", make_settings(n_subjects=30, seed=2, image_size=16,
                                                            other_chart_items=other))
        return read(out / "iv/icu/chartevents.csv.gz")

    plain, mixed = chart(0.0), chart(30.0)
    wanted = {str(item) for item in load_variable_map("medfuse").items_of("chartevents")}
    assert len(mixed) > 3 * len(plain)
    extra = mixed.loc[~mixed["itemid"].isin(set(plain["itemid"]))]
    assert set(extra["itemid"]) == {"220046", "220047", "223769", "223770"}
    assert not set(extra["itemid"]) & wanted
    assert extra["valuenum"].astype(float).notna().all()
    kept = mixed["itemid"].isin(wanted).mean()
    assert 0.1 < kept < 0.35, f"about a fifth of rows belong to the 17 variables, got {kept:.2f}"
    # the relevant rows keep the default charting density
    assert mixed["itemid"].isin(wanted).sum() == pytest.approx(plain["itemid"].isin(wanted).sum(), rel=0.1)
