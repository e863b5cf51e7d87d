"""Building the image cache: every needed JPEG decoded once, into one uint8 array.

Workers write straight into the output `.npy` (opened as a memmap in each process), so the
only thing sent back to the parent is the list of failures; the array is never pickled. A
failed image leaves a zero row that is squeezed out before the cache is published, so
`images.npy` holds exactly the rows `index.parquet` points to.

The whole directory is written under a temporary name and renamed into place
(`data_prep.io.atomic_path`), so a killed run leaves either the old cache or the new one.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from data_prep.cxr.decode import ImageDecodeError, decode_square
from data_prep.errors import PipelineInputError, StaleInputError
from data_prep.io import atomic_path, write_json, write_parquet

log = logging.getLogger(__name__)

IMAGES_FILE, INDEX_FILE, EXCLUSIONS_FILE, SUMMARY_FILE = (
    "images.npy", "index.parquet", "exclusions.csv", "summary.json")
CHUNK_IMAGES = 32  # images per task sent to a worker: amortizes IPC without starving the bar
COPY_ROWS = 1024   # rows per block when squeezing out failed rows


def needed_images(pairs_files: Iterable[str | Path]) -> pd.DataFrame:
    """The union of images chosen by every task's pairs file, one row per dicom_id, sorted."""
    frames = []
    for path in pairs_files:
        path = Path(path)
        if not path.is_file():
            raise StaleInputError(f"{path}: not found (run `dvc repro pair_cxr`)")
        pairs = pd.read_parquet(path, columns=["has_cxr", "dicom_id", "image_relpath"])
        frames.append(pairs.loc[pairs["has_cxr"], ["dicom_id", "image_relpath"]])
    images = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["dicom_id", "image_relpath"])
    return images.drop_duplicates("dicom_id").sort_values("dicom_id").reset_index(drop=True)


def _decode_chunk(images_file: str, root: str, size: int,
                  rows: Sequence[int], relpaths: Sequence[str]) -> list[tuple[int, str, str]]:
    """Decode a chunk into rows of the shared array; return (row, reason, detail) failures."""
    array = np.load(images_file, mmap_mode="r+")
    failures = []
    for row, relpath in zip(rows, relpaths, strict=True):
        try:
            array[row] = decode_square(Path(root) / relpath, size)
        except ImageDecodeError as err:
            failures.append((row, err.reason, str(err)))
    array.flush()
    del array
    return failures


def chunk_size(n_images: int, workers: int) -> int:
    """CHUNK_IMAGES, or smaller so each worker gets at least 4 chunks: with few images, fixed
    chunks of 32 left one worker decoding most of them while the other idled."""
    return max(1, min(CHUNK_IMAGES, -(-n_images // (4 * max(1, workers)))))


def _decode_all(images_file: Path, root: Path, size: int, relpaths: list[str],
                workers: int) -> list[tuple[int, str, str]]:
    step = chunk_size(len(relpaths), workers)
    chunks = [(list(range(start, min(start + step, len(relpaths)))),
               relpaths[start:start + step]) for start in range(0, len(relpaths), step)]
    failures: list[tuple[int, str, str]] = []
    with tqdm(total=len(relpaths), desc="cache_cxr", unit="img") as bar:
        if workers <= 1:
            for rows, chunk in chunks:
                failures += _decode_chunk(str(images_file), str(root), size, rows, chunk)
                bar.update(len(rows))
            return failures
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_decode_chunk, str(images_file), str(root), size, rows, chunk):
                       len(rows) for rows, chunk in chunks}
            for future in as_completed(futures):
                failures += future.result()
                bar.update(futures[future])
    return sorted(failures)


def _squeeze(images_file: Path, keep: np.ndarray, out_file: Path) -> None:
    """Copy the rows in `keep` into a new array, block by block (bounded memory)."""
    source = np.load(images_file, mmap_mode="r")
    target = np.lib.format.open_memmap(out_file, mode="w+", dtype=np.uint8,
                                       shape=(len(keep), *source.shape[1:]))
    for start in range(0, len(keep), COPY_ROWS):
        target[start:start + COPY_ROWS] = source[keep[start:start + COPY_ROWS]]
    target.flush()
    del source, target


def build_cache(images: pd.DataFrame, cxr_root: str | Path, out_dir: str | Path, image_size: int,
                workers: int = 1, max_failure_fraction: float = 0.05) -> dict:
    """Decode `images` (dicom_id, image_relpath) under `cxr_root` into the cache at `out_dir`.

    Raises PipelineInputError, and publishes nothing, when more than `max_failure_fraction`
    of the images fail; below that, failures are listed in exclusions.csv. The tolerance is
    checked here but not written into the outputs: they depend only on the images and the
    size, so changing the tolerance reruns this check without changing the cache (and DVC
    then has nothing downstream to retrain).
    """
    cxr_root, out_dir = Path(cxr_root), Path(out_dir)
    relpaths = images["image_relpath"].astype(str).tolist()
    n_needed = len(relpaths)
    with atomic_path(out_dir) as tmp_dir:
        tmp_dir.mkdir()
        raw_file = tmp_dir / "decoding.npy"
        np.lib.format.open_memmap(raw_file, mode="w+", dtype=np.uint8,
                                  shape=(n_needed, image_size, image_size)).flush()
        failures = _decode_all(raw_file, cxr_root, image_size, relpaths, workers)
        summary = _summarize(n_needed, failures, image_size)
        if summary["failure_fraction"] > max_failure_fraction:
            raise PipelineInputError(
                f"{cxr_root}: {len(failures)} of {n_needed} images could not be decoded "
                f"({_reasons_text(summary['failures_by_reason'])}), more than "
                f"data.cxr.max_failure_fraction={max_failure_fraction} (set PIPELINE_VERBOSE=1 "
                f"for per-file detail)")
        failed_rows = np.array([row for row, _, _ in failures], dtype=np.int64)
        keep = np.setdiff1d(np.arange(n_needed, dtype=np.int64), failed_rows)
        if len(failed_rows):
            _squeeze(raw_file, keep, tmp_dir / IMAGES_FILE)
            raw_file.unlink()
        else:
            raw_file.rename(tmp_dir / IMAGES_FILE)
        index = pd.DataFrame({"dicom_id": images["dicom_id"].to_numpy()[keep].astype(str),
                              "row": np.arange(len(keep), dtype=np.int64)})
        write_parquet(tmp_dir / INDEX_FILE, index)
        exclusions = pd.DataFrame({
            "dicom_id": [str(images["dicom_id"].iat[row]) for row, _, _ in failures],
            "image_relpath": [relpaths[row] for row, _, _ in failures],
            "reason": [reason for _, reason, _ in failures]})
        exclusions.to_csv(tmp_dir / EXCLUSIONS_FILE, index=False)
        write_json(tmp_dir / SUMMARY_FILE, summary)
    return summary


def _summarize(n_needed: int, failures: list[tuple[int, str, str]], image_size: int) -> dict:
    by_reason = Counter(reason for _, reason, _ in failures)
    for _, _, detail in failures:
        log.debug("excluded image: %s", detail)
    if failures:
        log.info("%d of %d images excluded (%s)", len(failures), n_needed, _reasons_text(by_reason))
    return {"image_size": image_size, "images_needed": n_needed,
            "images_cached": n_needed - len(failures), "images_failed": len(failures),
            "failures_by_reason": dict(sorted(by_reason.items())),
            "failure_fraction": len(failures) / n_needed if n_needed else 0.0,
            "decode": "strict 8-bit JPEG decode, DCT-scaled (1/2, 1/4, 1/8), shorter side resized, "
                      "center square crop"}


def _reasons_text(by_reason: dict) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(by_reason.items())) or "none"
