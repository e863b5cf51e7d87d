"""Hourly discretization of a stay's events into the benchmark's 76 features.

All stays of a batch are handled at once as one ragged array (rows = stay-hours, with
offsets), so there is no per-stay Python loop: last value per (row, variable) by a
stable de-duplication, forward fill by a grouped ffill, then the recipe's normal values.

Bin edges follow the recipe (mimic3-benchmarks' discretizer): an event at t hours goes to
bin `int(t / bin_hours - eps)`, so bins are closed on the right, (k, k+1], and an event at
exactly the window's end (48.0 h for IHM, outtime for phenotyping) is in the last bin
rather than dropped; t = 0 is in bin 0. Events charted before ICU admission (t < 0) or
after the window's end are ignored.

Two values of one variable at the same time: the larger is kept (for GCS the larger score),
whatever their order in the files. The recipe sorts simultaneous rows by value and keeps
the last one; keeping file order instead would make the tensors depend on how a CSV
happens to be ordered (and on chartevents being read before labevents).

One-hot categoricals keep the benchmark's value strings as columns (47 of them), but every
raw text is first mapped through the variable's aliases (e.g. MIMIC-IV's "To Speech" and
the benchmark's "3 To speech" are one category, encoded in the numbered column, the column of
the recipe's normal value). The unnumbered legacy columns therefore stay 0; they are kept so
the 76-column layout matches the benchmark and MedFuse.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_prep.ehr.variables import VariableMap

BIN_EPSILON = 1e-6  # the recipe's eps: a time on a bin edge belongs to the bin before it


def bin_of_hours(hours: np.ndarray, bin_hours: float) -> np.ndarray:
    """The recipe's bin of each time: int(t / bin_hours - eps), truncated toward zero."""
    return np.trunc(np.asarray(hours, np.float64) / bin_hours - BIN_EPSILON).astype(np.int64)


def window_hours(intime: pd.Series, window_end: pd.Series) -> np.ndarray:
    """Each stay's window length in hours (the end of its last bin)."""
    return (window_end - intime).dt.total_seconds().to_numpy(np.float64) / 3600.0


def stay_lengths(intime: pd.Series, window_end: pd.Series, bin_hours: float) -> np.ndarray:
    """Number of bins of each stay's window (at least one); the recipe's int(T / bin + 1 - eps)."""
    hours = window_hours(intime, window_end)
    return np.maximum(1, np.ceil(np.round(hours / bin_hours, 6))).astype(np.int64)


def encode_events(events: pd.DataFrame, variable_map: VariableMap) -> tuple[np.ndarray, np.ndarray]:
    """(variable index, code) per event: the value, or for categoricals the one-hot column index."""
    names = variable_map.names
    var_index = pd.Categorical(events["variable"].astype(str), categories=names).codes.astype(np.int64)
    codes = events["value"].to_numpy(np.float64, na_value=np.nan, copy=True)
    for index, variable in enumerate(variable_map.variables):
        if not variable.is_categorical:
            continue
        selected = var_index == index
        if not selected.any():
            continue
        column_of = {key: variable.columns.index(column) for key, column in variable.text_lookup.items()}
        text = events["text"].to_numpy(dtype=object)[selected]
        codes[selected] = pd.Series(text, dtype=object).str.strip().str.lower().map(column_of).to_numpy(np.float64)
    return var_index, codes


def last_values(events: pd.DataFrame, stay_ids: np.ndarray, lengths: np.ndarray, variable_map: VariableMap,
                bin_hours: float, end_hours: np.ndarray | None = None) -> np.ndarray:
    """[sum(lengths), n_variables] float64: the last code of each variable in each bin, NaN if none.

    `stay_ids` sorted; `end_hours` per stay is the window's end (default: lengths * bin_hours).
    Events are kept for 0 <= t <= end (within the recipe's eps).
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    raw = np.full((offsets[-1], len(variable_map.variables)), np.nan)
    if events.empty:
        return raw
    position = np.searchsorted(stay_ids, events["stay_id"].to_numpy())
    position = np.minimum(position, len(stay_ids) - 1)
    known = stay_ids[position] == events["stay_id"].to_numpy()
    hours = events["hours"].to_numpy(np.float64)
    end = lengths * bin_hours if end_hours is None else np.asarray(end_hours, np.float64)
    bins = bin_of_hours(hours, bin_hours)
    inside = known & (hours > -BIN_EPSILON) & (hours < end[position] + BIN_EPSILON) & (bins < lengths[position])
    var_index, codes = encode_events(events.loc[inside], variable_map)
    rows = offsets[position[inside]] + bins[inside]
    valid = (var_index >= 0) & ~np.isnan(codes)
    # simultaneous values: ordered by their numeric value (GCS score), else by category code
    magnitude = events["value"].to_numpy(np.float64, na_value=np.nan)[inside][valid]
    tie = np.where(np.isnan(magnitude), codes[valid], magnitude)
    order = np.lexsort((tie, hours[inside][valid], var_index[valid], rows[valid]))
    cells = pd.DataFrame({"row": rows[valid][order], "var": var_index[valid][order], "code": codes[valid][order]})
    last = cells.drop_duplicates(["row", "var"], keep="last")
    raw[last["row"].to_numpy(), last["var"].to_numpy()] = last["code"].to_numpy()
    return raw


def impute(raw: np.ndarray, lengths: np.ndarray, variable_map: VariableMap) -> np.ndarray:
    """Carry each stay's previous value forward; before the first measurement use the normal value."""
    stay_of_row = np.repeat(np.arange(len(lengths)), lengths)
    filled = pd.DataFrame(raw).groupby(stay_of_row).ffill().to_numpy()
    normals = np.array([v.normal_column if v.is_categorical else v.normal for v in variable_map.variables],
                       dtype=np.float64)
    return np.where(np.isnan(filled), normals[None, :], filled)


def features(raw: np.ndarray, imputed: np.ndarray, variable_map: VariableMap) -> np.ndarray:
    """The 76 columns (benchmark order): continuous values, one-hot categoricals, then 17 masks."""
    blocks = []
    for index, variable in enumerate(variable_map.variables):
        if variable.is_categorical:
            onehot = np.zeros((len(imputed), len(variable.columns)), dtype=np.float32)
            onehot[np.arange(len(imputed)), imputed[:, index].astype(np.int64)] = 1.0
            blocks.append(onehot)
        else:
            blocks.append(imputed[:, index:index + 1].astype(np.float32))
    blocks.append((~np.isnan(raw)).astype(np.float32))
    return np.concatenate(blocks, axis=1)


def hourly_features(events: pd.DataFrame, stay_ids: np.ndarray, lengths: np.ndarray,
                    variable_map: VariableMap, bin_hours: float = 1.0,
                    end_hours: np.ndarray | None = None) -> np.ndarray:
    """float32 [sum(lengths), 76] for the stays `stay_ids` (sorted), unnormalized."""
    raw = last_values(events, stay_ids, lengths, variable_map, bin_hours, end_hours)
    return features(raw, impute(raw, lengths, variable_map), variable_map)
