"""cache_cxr: cached pixels match a direct decode, bad images are excluded and counted, atomic output."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from data_prep.cxr.cache import build_cache, needed_images
from data_prep.cxr.decode import ImageDecodeError, decode_square
from data_prep.errors import PipelineInputError

SIZE = 48


def _radiograph(seed: int, width: int = 220, height: int = 180) -> Image.Image:
    """A grayscale image with large-scale structure (so resizing is meaningful) and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    blob = 120 + 80 * np.sin(x / (9 + seed)) * np.cos(y / 13) + rng.normal(0, 8, (height, width))
    return Image.fromarray(np.clip(blob, 0, 255).astype(np.uint8), mode="L")


@pytest.fixture()
def cxr_tree(tmp_path):
    """Four good JPEGs, one truncated, one not a JPEG, one missing; returns (root, images frame)."""
    root = tmp_path / "mimic-cxr-jpg"
    rows = []
    for k in range(7):
        relpath = f"files/p10/p1000{k}/s5000000{k}/img{k}.jpg"
        rows.append({"dicom_id": f"img{k}", "image_relpath": relpath})
        if k == 6:
            continue  # missing
        path = root / relpath
        path.parent.mkdir(parents=True)
        _radiograph(k, width=220 + 10 * k).save(path, quality=92)
        if k == 4:
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        if k == 5:
            path.write_bytes(b"this is not a jpeg")
    return root, pd.DataFrame(rows)


def test_decode_matches_full_size_decode(cxr_tree):
    root, images = cxr_tree
    path = root / images["image_relpath"][0]
    drafted = decode_square(path, SIZE).astype(float)
    full = decode_square(path, SIZE, draft=False).astype(float)
    assert drafted.shape == (SIZE, SIZE)
    assert np.abs(drafted - full).mean() < 1.5
    # the center square was kept: the image is 220 wide, so columns were cropped, not squashed
    reference = np.asarray(Image.open(path).convert("L").crop((20, 0, 200, 180)).resize(
        (SIZE, SIZE), Image.Resampling.BILINEAR), dtype=float)
    assert np.abs(full - reference).mean() < 0.5


def test_decode_errors_have_reasons(cxr_tree):
    root, images = cxr_tree
    reasons = {}
    for k in (4, 5, 6):
        with pytest.raises(ImageDecodeError) as err:
            decode_square(root / images["image_relpath"][k], SIZE)
        reasons[k] = err.value.reason
    assert reasons == {4: "truncated", 5: "not_an_image", 6: "missing"}


@pytest.mark.parametrize("workers", [1, 2])
def test_cache_content_index_and_exclusions(cxr_tree, tmp_path, workers):
    root, images = cxr_tree
    out = tmp_path / "cache"
    summary = build_cache(images, root, out, image_size=SIZE, workers=workers, max_failure_fraction=0.5)
    array = np.load(out / "images.npy", mmap_mode="r")
    index = pd.read_parquet(out / "index.parquet")
    assert array.dtype == np.uint8 and array.shape == (4, SIZE, SIZE)
    assert index["dicom_id"].tolist() == ["img0", "img1", "img2", "img3"]
    for dicom_id, row in zip(index["dicom_id"], index["row"], strict=True):
        k = int(dicom_id[-1])
        direct = decode_square(root / images["image_relpath"][k], SIZE, draft=False)
        assert np.abs(array[row].astype(float) - direct).mean() < 1.5
    exclusions = pd.read_csv(out / "exclusions.csv")
    assert dict(zip(exclusions["dicom_id"], exclusions["reason"], strict=True)) == {
        "img4": "truncated", "img5": "not_an_image", "img6": "missing"}
    assert exclusions["image_relpath"].tolist() == images["image_relpath"][4:].tolist()
    assert summary["images_failed"] == 3 and summary["images_cached"] == 4
    assert json.loads((out / "summary.json").read_text())["failures_by_reason"] == {
        "missing": 1, "not_an_image": 1, "truncated": 1}
    assert sorted(p.name for p in out.iterdir()) == [
        "exclusions.csv", "images.npy", "index.parquet", "summary.json"]


def test_too_many_failures_fail_and_leave_old_cache(cxr_tree, tmp_path):
    root, images = cxr_tree
    out = tmp_path / "cache"
    build_cache(images.iloc[:4], root, out, image_size=SIZE, workers=1, max_failure_fraction=0.0)
    before = np.load(out / "images.npy").copy()
    with pytest.raises(PipelineInputError, match=r"3 of 7 images could not be decoded"):
        build_cache(images, root, out, image_size=SIZE, workers=1, max_failure_fraction=0.2)
    np.testing.assert_array_equal(np.load(out / "images.npy"), before)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_needed_images_is_the_union_over_tasks(tmp_path):
    def pairs(dicoms):
        return pd.DataFrame({"has_cxr": [d is not None for d in dicoms], "dicom_id": dicoms,
                             "image_relpath": [f"files/{d}.jpg" if d else None for d in dicoms]})
    pairs(["b", None, "a"]).to_parquet(tmp_path / "pairs_x.parquet")
    pairs(["a", "c"]).to_parquet(tmp_path / "pairs_y.parquet")
    union = needed_images([tmp_path / "pairs_x.parquet", tmp_path / "pairs_y.parquet"])
    assert union["dicom_id"].tolist() == ["a", "b", "c"]
    with pytest.raises(PipelineInputError, match="run `dvc repro pair_cxr`"):
        needed_images([tmp_path / "pairs_z.parquet"])


def test_stage_cli(cxr_tree, tmp_path, repo_root):
    root, images = cxr_tree
    interim, processed = tmp_path / "interim", tmp_path / "processed"
    (interim / "cxr").mkdir(parents=True)
    pairs = images.iloc[:5].assign(has_cxr=True)
    pairs.to_parquet(interim / "cxr" / "pairs_in_hospital_mortality.parquet")
    pairs.iloc[:2].to_parquet(interim / "cxr" / "pairs_phenotyping.parquet")
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.cache_cxr", "--params", str(repo_root / "params.yaml"),
         f"data.interim_dir={interim}", f"data.processed_dir={processed}",
         f"data.mimic_cxr_root={root}", f"data.cxr.image_size={SIZE}", f"data.cxr.crop_size={SIZE}",
         "data.cxr.workers=1",
         "data.cxr.max_failure_fraction=0.25"],
        capture_output=True, text=True, cwd=repo_root)
    assert result.returncode == 0, result.stderr
    assert np.load(processed / "cxr" / "images.npy").shape == (4, SIZE, SIZE)
    assert "img4" not in result.stderr  # identifiers stay out of INFO logs


def test_synthetic_twin_pairs_and_caches(tmp_path):
    """Integration on a tiny synthetic twin: its metadata parses, its paths exist, all decode."""
    from data_prep.cxr.metadata import image_relpaths, read_metadata
    from data_prep.cxr.pairing import pair_stays
    from data_prep.synthesize import generate_twin

    generate_twin(tmp_path / "twin", n_subjects=40, seed=0, image_size=64)
    root = tmp_path / "twin" / "mimic-cxr-jpg"
    metadata = read_metadata(root)
    assert metadata["study_datetime"].notna().all()
    stays = pd.read_csv(tmp_path / "twin" / "mimic-iv" / "icu" / "icustays.csv.gz",
                        parse_dates=["intime", "outtime"])
    labels = stays.assign(split="train", window_end=stays["outtime"])
    pairs, counts = pair_stays(labels, metadata, views=["AP"])
    assert 0 < counts["images_chosen"] < len(stays)
    assert counts["images_removed_view"] > 0
    chosen = pairs[pairs["has_cxr"]]
    assert all((root / relpath).is_file() for relpath in chosen["image_relpath"])
    images = pd.DataFrame({"dicom_id": metadata["dicom_id"], "image_relpath": image_relpaths(metadata)})
    summary = build_cache(images, root, tmp_path / "cache", image_size=SIZE, workers=1)
    assert summary["images_cached"] == len(metadata) - summary["images_failed"]
    assert summary["failure_fraction"] <= 0.05


@pytest.mark.parametrize(("n_images", "workers", "expected"), [(40, 2, 5), (10_000, 2, 32), (3, 4, 1), (0, 2, 1)])
def test_chunks_give_every_worker_several_tasks(n_images, workers, expected):
    """Fixed chunks of 32 left one of two workers with most of a small cache (bench/RESULTS.md)."""
    from data_prep.cxr.cache import chunk_size

    size = chunk_size(n_images, workers)
    assert size == expected
    if n_images >= 4 * workers:
        assert -(-n_images // size) >= 4 * workers
