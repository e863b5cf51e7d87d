"""Decoding one chest X-ray JPEG into a small square uint8 array, as cheaply as libjpeg allows.

MIMIC-CXR-JPG images are 8-bit JPEGs, and only that is accepted: anything else under a
`.jpg` name (a 16-bit PNG, say, which Pillow would happily clip to an all-white image) is an
exclusion with its reason, not a cached picture. The decode is libjpeg-turbo's through
simplejpeg in strict mode, so a JPEG whose entropy data are damaged, which libjpeg decodes
with warnings into grey garbage (Pillow discards the warnings), is excluded as well.

The decoder is asked for the smallest DCT-domain scale (1/2, 1/4, 1/8) that leaves both
sides >= size, so a ~2500x3000 radiograph is never decoded at full size (the same pixels
as Pillow's `Image.draft`). The scaled image is then resized so that its SHORTER side is
`size` (aspect ratio kept, as MedFuse's Resize(256)) and center-cropped to a square; crop
and resize happen in one `Image.resize(box=...)` call with an antialiasing bilinear filter.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

JPEG_MAGIC = b"\xff\xd8\xff"
# libjpeg's message -> exclusion reason; the first match wins, anything else is "corrupt"
DECODER_REASONS = (("Premature end of JPEG file", "truncated"),
                   ("precision", "not_8bit_jpeg"),
                   ("Corrupt JPEG data", "decode_warning"),
                   ("Invalid SOS parameters", "decode_warning"))


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


def not_a_jpeg_reason(data: bytes) -> tuple[str, str]:
    """Why bytes without a JPEG signature are excluded: another image format, or no image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return "not_a_jpeg", f"{image.format} {image.mode} content, expected an 8-bit JPEG"
    except (UnidentifiedImageError, OSError, ValueError):
        return "not_an_image", "no image signature"


def draft_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The decoded shape at the largest power-of-two reduction (1/8, 1/4, 1/2) that keeps both
    sides >= size, as Pillow's draft chooses; libjpeg-turbo's other factors (3/8, 5/8, ...)
    would shift and soften the picture relative to a full-size decode."""
    for factor in (8, 4, 2):
        scaled = (-(-height // factor), -(-width // factor))
        if min(scaled) >= size:
            return scaled
    return height, width


def decode_pixels(data: bytes, size: int | None) -> np.ndarray:
    """8-bit grayscale pixels of a JPEG, DCT-scaled so both sides stay >= size (None: full size)."""
    if not data.startswith(JPEG_MAGIC):
        raise ImageDecodeError(*not_a_jpeg_reason(data))
    try:
        scale = {}
        if size is not None:
            height, width = simplejpeg.decode_jpeg_header(data)[:2]
            scale = dict(zip(("min_height", "min_width"), draft_shape(height, width, size), strict=True))
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True, **scale)
    except ValueError as err:
        message = str(err)
        reason = next((r for fragment, r in DECODER_REASONS if fragment in message), "corrupt")
        raise ImageDecodeError(reason, message) from None
    return pixels[:, :, 0]


def decode_square(path: str | Path, size: int, draft: bool = True) -> np.ndarray:
    """Decode a JPEG to a [size, size] uint8 array; `draft=False` decodes at full size (benchmark)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as err:
        raise ImageDecodeError("missing", str(err)) from None
    except OSError as err:
        raise ImageDecodeError("corrupt", str(err)) from None
    pixels = decode_pixels(data, size if draft else None)
    return square_resize(Image.fromarray(pixels, mode="L"), size)
