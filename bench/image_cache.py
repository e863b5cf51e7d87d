"""Benchmark: the image cache's draft-mode decode vs a full-size decode, at MIMIC's real size.

    .venv/bin/python bench/image_cache.py [--images 40] [--size 256]

Writes `--images` synthetic 8-bit grayscale radiographs of MIMIC-CXR-JPG's size (2544 x
3056, JPEG quality 95 as in MIMIC-CXR-JPG) under bench/out/ (git-ignored; reused when
present) in two textures: "mimic-like" (pixel noise tuned so files are ~1.5 MB, MIMIC-CXR-JPG's
mean file size: 570 GB / 377,110 images) and "smooth" (little noise, ~0.4 MB), because
Huffman decoding, which DCT scaling cannot skip, grows with the compressed size. Times per
image, in this one process and run:
  - draft: `decode_square(path, size)`, the cache's code path (libjpeg DCT scaling + resize);
  - entropy floor: the same draft decode without the resize. At 1/8 DCT scaling libjpeg still
    Huffman-decodes every coefficient of the file, so this is what no CPU decoder of baseline
    JPEGs can go below; the cache path's distance to it is what is left to gain;
  - full:  `decode_square(path, size, draft=False)`, full-size decode + the same resize;
  - medfuse: what the predecessor does for every image in every epoch: full decode,
    `.convert("RGB")`, torchvision `Resize(size)`;
and the end-to-end `build_cache` with `--workers` processes. Prints a Markdown section for
bench/RESULTS.md. Target (DESIGN.md section 10): draft >= 4x faster per image than full.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from data_prep.cxr.cache import build_cache
from data_prep.cxr.decode import decode_square

OUT = Path(__file__).resolve().parent / "out"
WIDTH, HEIGHT = 2544, 3056
TEXTURES = {"mimic-like": 1.8, "smooth": 0.4}  # pixel noise sigma (grey levels)


def make_radiograph(seed: int, noise_sigma: float) -> Image.Image:
    """Low-frequency 'anatomy' (built small, upsampled) plus pixel noise."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(40, 215, (24, 20), dtype=np.uint8), mode="L")
    smooth = np.asarray(coarse.resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC), dtype=np.float32)
    noise = rng.normal(0, noise_sigma, (HEIGHT, WIDTH)).astype(np.float32)
    return Image.fromarray(np.clip(np.round(smooth + noise), 0, 255).astype(np.uint8), mode="L")


def ensure_images(n: int, texture: str) -> list[Path]:
    folder = OUT / f"cxr_jpegs_{texture}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"cxr_{k:03d}.jpg" for k in range(n)]
    for k, path in enumerate(paths):
        if not path.exists():
            make_radiograph(k, TEXTURES[texture]).save(path, quality=95)
    return paths


def medfuse_style(path: Path, size: int) -> None:
    from torchvision import transforms

    transforms.Resize(size)(Image.open(path).convert("RGB"))


def draft_only(path: Path, size: int) -> None:
    with Image.open(path) as image:
        image.draft("L", (size, size))
        image.load()


def per_image_seconds(paths: list[Path], decode, repeats: int) -> float:
    """Best of `repeats` passes over all files (the machine is shared), per image."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for path in paths:
            decode(path)
        best = min(best, time.perf_counter() - start)
    return best / len(paths)


def measure(paths: list[Path], size: int, repeats: int, workers: int) -> dict[str, float]:
    timings = {
        "full": per_image_seconds(paths, lambda p: decode_square(p, size, draft=False), repeats),
        "draft": per_image_seconds(paths, lambda p: decode_square(p, size), repeats),
        "floor": per_image_seconds(paths, lambda p: draft_only(p, size), repeats),
        "medfuse": per_image_seconds(paths, lambda p: medfuse_style(p, size), repeats)}
    frame = pd.DataFrame({"dicom_id": [p.stem for p in paths],
                          "image_relpath": [p.name for p in paths]})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        build_cache(frame, paths[0].parent, Path(tmp) / "cache", size, workers=workers)
        timings["build"] = (time.perf_counter() - start) / len(paths)
    timings["kb"] = float(np.mean([p.stat().st_size for p in paths]) / 1024)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=256, help="cache side (data.cxr.image_size)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smooth-images", type=int, default=10)
    args = parser.parse_args()

    results = {texture: measure(ensure_images(n, texture), args.size, args.repeats, args.workers)
               for texture, n in (("mimic-like", args.images), ("smooth", args.smooth_images))}
    rows = []
    for texture, t in results.items():
        n = args.images if texture == "mimic-like" else args.smooth_images
        label = f"{texture} ({n} files, {t['kb']:.0f} KB each)"
        rows += [
            f"| {label} | draft-mode decode + resize (cache's `decode_square`) | "
            f"{t['draft'] * 1e3:.1f} | 1.0x |",
            f"| {label} | entropy-decoding floor: the draft decode alone, no resize | "
            f"{t['floor'] * 1e3:.1f} | {t['floor'] / t['draft']:.2f}x |",
            f"| {label} | full-size decode + the same resize (baseline) | {t['full'] * 1e3:.1f} | "
            f"**{t['full'] / t['draft']:.1f}x** (at most {t['full'] / t['floor']:.1f}x for any CPU decoder) |",
            f"| {label} | MedFuse-style: full decode, RGB, torchvision Resize | "
            f"{t['medfuse'] * 1e3:.1f} | {t['medfuse'] / t['draft']:.1f}x |",
            f"| {label} | `build_cache`, {args.workers} processes, end to end (wall / image) | "
            f"{t['build'] * 1e3:.1f} | {t['build'] / t['draft']:.2f}x (baseline / this: "
            f"{t['full'] / t['build']:.1f}x) |"]
    table = "\n".join(rows)
    print(f"""## Image cache (bench/image_cache.py)

{date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, no GPU;
Python {platform.python_version()}, Pillow {Image.__version__} (libjpeg-turbo). Synthetic 8-bit grayscale
JPEGs of {WIDTH} x {HEIGHT} at quality 95; cache side {args.size}. Best of {args.repeats} passes, one process
(except `build_cache`), one run.

| images | path | ms / image | this path's time / draft path's time |
|---|---|---|---|
{table}
""")


if __name__ == "__main__":
    main()
