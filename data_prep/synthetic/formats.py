"""MIMIC's value formats, built vectorized with pyarrow (millions of rows, no Python loops).

Timestamps `YYYY-MM-DD HH:MM:SS`, dates `YYYY-MM-DD`, numbers with a fixed number of
decimals that keeps trailing zeros ("15.40"), and nulls written as empty fields.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def timestamps(seconds: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """int64 seconds since 1970 -> 'YYYY-MM-DD HH:MM:SS' strings (null where `missing`)."""
    values = pa.array(np.asarray(seconds, dtype=np.int64).astype("datetime64[s]"),
                      mask=None if missing is None else np.asarray(missing, dtype=bool))
    return pc.cast(values, pa.string())


def dates(seconds: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """int64 seconds -> 'YYYY-MM-DD' (patients.dod is a date in MIMIC-IV)."""
    return pc.utf8_slice_codeunits(timestamps(seconds, missing), 0, 10)


def fixed_decimals(values: np.ndarray, decimals: int, missing: np.ndarray | None = None) -> pa.Array:
    """Format numbers with exactly `decimals` digits after the point ("7.40", "-3.0", "98")."""
    values = np.asarray(values, dtype=np.float64)
    invalid = ~np.isfinite(values) if missing is None else (np.asarray(missing, bool) | ~np.isfinite(values))
    safe = np.where(invalid, 0.0, values)
    scaled = np.rint(np.abs(safe) * 10 ** decimals).astype(np.int64)
    negative = (safe < 0) & (scaled > 0)
    sign = pa.array(np.where(negative, "-", ""))
    if decimals == 0:
        text = pc.binary_join_element_wise(sign, pc.cast(pa.array(scaled), pa.string()), "")
    else:
        whole = pc.cast(pa.array(scaled // 10 ** decimals), pa.string())
        frac = pc.utf8_lpad(pc.cast(pa.array(scaled % 10 ** decimals), pa.string()), decimals, "0")
        # binary_join_element_wise takes its separator as the last argument
        text = pc.binary_join_element_wise(
            pc.binary_join_element_wise(sign, whole, ""), frac, ".")
    return pc.if_else(pa.array(invalid), pa.scalar(None, pa.string()), text)


def one_decimal_labels(values: np.ndarray) -> pa.Array:
    """CheXpert's 1.0 / 0.0 / -1.0 with NaN as an empty field."""
    return fixed_decimals(values, 1)


def strings(values: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(values, dtype=object), type=pa.string(),
                    mask=None if missing is None else np.asarray(missing, dtype=bool))


def integers(values: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64),
                    mask=None if missing is None else np.asarray(missing, dtype=bool))


def floats(values: np.ndarray) -> pa.Array:
    """Float column; NaN becomes an empty field."""
    values = np.asarray(values, dtype=np.float64)
    return pa.array(values, mask=~np.isfinite(values))
