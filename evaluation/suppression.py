"""Small-cell suppression: counts of fewer than `min_cell_size` patients are never shown.

A count of 3 deaths among women over 80 can identify people, so such cells read "<10" (the
threshold) and their metrics read "suppressed", in the report *and* in metrics.json. Zero is
shown: it identifies no one.
"""

from __future__ import annotations

SUPPRESSED = "suppressed"


def is_small(count: int, min_cell_size: int) -> bool:
    return 0 < count < min_cell_size


def count_cell(count: int, min_cell_size: int) -> int | str:
    """The count itself, or "<min_cell_size" when it is a small cell."""
    return f"<{min_cell_size}" if is_small(int(count), min_cell_size) else int(count)
