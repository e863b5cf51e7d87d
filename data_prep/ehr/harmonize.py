"""Unit harmonization, impossible-value drops and text parsing of matched event rows.

MedFuse's conversions mostly never fire (inches stay inches, FiO2 always divided by 100);
here a unit rule is attached to an itemid in the variable map and every conversion and
every dropped row is counted, so the extraction summary shows what happened to the data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd

from data_prep.ehr.variables import Item, Variable

# rule name -> f(values) -> (converted values, which rows were converted)
UnitRule = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
UNIT_RULES: dict[str, UnitRule] = {}


def unit_rule(name: str) -> Callable[[UnitRule], UnitRule]:
    def register(rule: UnitRule) -> UnitRule:
        UNIT_RULES[name] = rule
        return rule
    return register


@unit_rule("fahrenheit_to_celsius")
def _fahrenheit_to_celsius(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (values - 32.0) * 5.0 / 9.0, np.ones(len(values), dtype=bool)


@unit_rule("pound_to_kilogram")
def _pound_to_kilogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values * 0.45359237, np.ones(len(values), dtype=bool)


@unit_rule("inch_to_centimeter")
def _inch_to_centimeter(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return values * 2.54, np.ones(len(values), dtype=bool)


@unit_rule("percent_to_fraction")
def _percent_to_fraction(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FiO2 is charted both as 21..100 (%) and as 0.21..1.0; only the former is divided."""
    converted = values > 1.0
    return np.where(converted, values / 100.0, values), converted


class ExtractCounts:
    """The tallies written to extract_summary.json (all by variable or rule name, never by id)."""

    def __init__(self) -> None:
        self.rows_scanned: dict[str, int] = {}
        self.rows_matched: Counter[str] = Counter()
        self.rows_kept: Counter[str] = Counter()
        self.unit_conversions: Counter[str] = Counter()
        self.impossible_dropped: Counter[str] = Counter()
        self.text_unparseable: Counter[str] = Counter()
        self.unattached: Counter[str] = Counter()
        self.derived: Counter[str] = Counter()

    def as_dict(self) -> dict[str, object]:
        return {"rows_scanned": dict(self.rows_scanned), "rows_matched": dict(self.rows_matched),
                "rows_kept": dict(self.rows_kept), "unit_conversions": dict(self.unit_conversions),
                "impossible_values_dropped": dict(self.impossible_dropped),
                "text_values_unparseable": dict(self.text_unparseable),
                "rows_not_attached_to_a_stay": dict(self.unattached),
                "rows_derived": dict(self.derived)}


def harmonize(frame: pd.DataFrame, items: dict[int, tuple[Variable, Item]],
              counts: ExtractCounts) -> pd.DataFrame:
    """Map matched rows (itemid, value, valuenum, ...) to (variable, value, text), harmonized.

    Continuous rows take `valuenum`, else `value` parsed as a number; categorical rows keep
    the raw text and get the score of the category it maps to. Unparseable text and values
    outside the variable's physiological range are dropped and counted.
    """
    parts = []
    for variable, rows in _rows_by_variable(frame, items):
        counts.rows_matched[variable.name] += len(rows)
        parse = _parse_categorical if variable.is_categorical else _parse_continuous
        kept = parse(variable, rows, items, counts)
        counts.rows_kept[variable.name] += len(kept)
        parts.append(kept)
    if not parts:
        return frame.iloc[:0].assign(variable=pd.Series(dtype=object), text=pd.Series(dtype=object))
    return pd.concat(parts, ignore_index=True)


def _rows_by_variable(frame: pd.DataFrame, items: dict[int, tuple[Variable, Item]]):
    names = frame["itemid"].map({itemid: var.name for itemid, (var, _) in items.items()})
    variables = {var.name: var for var, _ in items.values()}
    for name, rows in frame.groupby(names, sort=True):
        yield variables[name], rows


def _parse_continuous(variable: Variable, rows: pd.DataFrame, items: dict[int, tuple[Variable, Item]],
                      counts: ExtractCounts) -> pd.DataFrame:
    values = rows["valuenum"].to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    missing = np.isnan(values)
    if missing.any():
        values[missing] = pd.to_numeric(rows["value"].to_numpy()[missing], errors="coerce")
    parseable = ~np.isnan(values)
    counts.text_unparseable[variable.name] += int((~parseable).sum())
    rules = rows["itemid"].map({itemid: item.convert for itemid, (_, item) in items.items()}).to_numpy(object)
    for rule in [r for r in pd.unique(rules) if isinstance(r, str)]:
        selected = (rules == rule) & parseable
        converted_values, converted = UNIT_RULES[rule](values[selected])
        values[selected] = converted_values
        counts.unit_conversions[rule] += int(converted.sum())
    keep = parseable
    if variable.value_range is not None:
        low, high = variable.value_range
        impossible = parseable & ((values < low) | (values > high))
        counts.impossible_dropped[variable.name] += int(impossible.sum())
        keep = parseable & ~impossible
    kept = rows.loc[keep, [c for c in rows.columns if c not in ("value", "valuenum")]]
    return kept.assign(variable=variable.name, value=values[keep], text=None)


def _parse_categorical(variable: Variable, rows: pd.DataFrame, items: dict[int, tuple[Variable, Item]],
                       counts: ExtractCounts) -> pd.DataFrame:
    text = rows["value"].astype(object)
    categories = text.str.strip().str.lower().map(variable.text_lookup)
    known = categories.notna().to_numpy()
    counts.text_unparseable[variable.name] += int((~known).sum())
    scores = categories[known].map(variable.scores).astype(np.float64)
    kept = rows.loc[known, [c for c in rows.columns if c not in ("value", "valuenum")]]
    return kept.assign(variable=variable.name, value=scores.to_numpy(), text=text[known].to_numpy())
