"""Decoding one chest X-ray JPEG into a small square uint8 array, as cheaply as libjpeg allows.

`Image.draft("L", (size, size))` asks libjpeg to decode at 1/2, 1/4 or 1/8 scale in the DCT
domain (the largest reduction that still leaves both sides >= size), so a ~2500x3000
radiograph is never decoded at full size. The drafted image is then resized so that its
SHORTER side is `size` (aspect ratio kept, as MedFuse's Resize(256)) and center-cropped to a
square; crop and resize happen in one `Image.resize(box=...)` call with an antialiasing
bilinear filter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageDecodeError(Exception):
    """One image could not be decoded; `reason` is the short label written to exclusions.csv."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def center_square_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The largest centered square inside a width x height image, as a PIL box.

    Float coordinates (PIL accepts them) keep the crop at the same place whether the image
    was drafted at 1/2, 1/4, 1/8 scale or decoded at full size.
    """
    side = min(width, height)
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def square_resize(image: Image.Image, size: int) -> np.ndarray:
    """Center-crop to a square and resize to size x size (grayscale uint8)."""
    image = image.convert("L")
    box = center_square_box(*image.size)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box), dtype=np.uint8)


def decode_square(path: str | Path, size: int, draft: bool = True) -> np.ndarray:
    """Decode a JPEG to a [size, size] uint8 array; `draft=False` decodes at full size (benchmark)."""
    try:
        with Image.open(path) as image:
            if draft:
                image.draft("L", (size, size))
            image.load()
            return square_resize(image, size)
    except FileNotFoundError as err:
        raise ImageDecodeError("missing", str(err)) from None
    except UnidentifiedImageError as err:
        raise ImageDecodeError("not_an_image", str(err)) from None
    except OSError as err:
        reason = "truncated" if "truncated" in str(err).lower() else "corrupt"
        raise ImageDecodeError(reason, str(err)) from None
    except (ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageDecodeError("corrupt", str(err)) from None
