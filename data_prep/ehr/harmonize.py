"""Unit harmonization, impossible-value drops and text parsing of matched event rows.

MedFuse's conversions mostly never fire (inches stay inches, FiO2 always divided by 100);
here a unit rule is attached to an itemid in the variable map and every conversion and
every dropped row is counted, so the extraction summary shows what happened to the data.
All per-row work is vectorized over a whole block (numpy / pyarrow.compute); Python runs
once per block, per variable or per distinct category text, never per row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


class ItemLookup:
    """One source table's itemids with their variable, unit rule and limits as arrays.

    A block is harmonized by indexing these arrays with each row's item position, so the
    work per block is a fixed number of vectorized calls whatever its row count.
    """

    def __init__(self, items: dict[int, tuple[Variable, Item]], variables: tuple[Variable, ...],
                 itemid_type: pa.DataType) -> None:
        code_of_name = {var.name: code for code, var in enumerate(variables)}
        self.variables = variables
        self.itemids = pa.array(list(items), itemid_type)
        self.rule_names = tuple(sorted({item.convert for _, item in items.values() if item.convert}))
        self.item_code = np.array([code_of_name[var.name] for var, _ in items.values()], np.int16)
        self.item_rule = np.array([self.rule_names.index(item.convert) if item.convert else -1
                                   for _, item in items.values()], np.int16)
        self.categorical = np.array([var.is_categorical for var in variables], bool)
        self.low = np.array([var.value_range[0] if var.value_range else -np.inf for var in variables])
        self.high = np.array([var.value_range[1] if var.value_range else np.inf for var in variables])
        # rows leave harmonize grouped by variable name (then in file order): the order of ties
        # in the final stable (stay_id, hours) sort
        self.name_rank = np.argsort(np.argsort([var.name for var in variables], kind="stable"))


@dataclass
class Harmonized:
    """A block's kept rows: `rows` index the block, in output order; the rest align with it.

    Only categorical rows keep their raw text (the block's `value` at that row).
    """

    rows: np.ndarray
    code: np.ndarray
    value: np.ndarray
    has_text: np.ndarray


def harmonize(itemid: pa.Array, value: pa.Array, valuenum: pa.Array, lookup: ItemLookup,
              counts: ExtractCounts) -> Harmonized:
    """Map a block's matched rows to (variable code, value, text), harmonized and counted.

    Continuous rows take `valuenum`, else `value` parsed as a number; categorical rows keep
    the raw text and get the score of the category it maps to. Unparseable text and values
    outside the variable's physiological range are dropped and counted.
    """
    item = pc.index_in(itemid, value_set=lookup.itemids).fill_null(-1).to_numpy(zero_copy_only=False)
    if (item < 0).any():
        raise ValueError("harmonize got rows of itemids outside the variable map")
    code = lookup.item_code[item]
    categorical = lookup.categorical[code]
    continuous = ~categorical
    values = np.array(valuenum.to_numpy(zero_copy_only=False), dtype=np.float64, copy=True)
    _parse_missing_numbers(values, continuous, value, valuenum)
    parseable = continuous & ~np.isnan(values)
    conversions = _convert_units(values, code, lookup.item_rule[item], continuous, parseable, lookup)
    impossible = parseable & ((values < lookup.low[code]) | (values > lookup.high[code]))
    known = _score_categories(values, code, categorical, value, lookup)
    keep = (parseable & ~impossible) | known
    _count(counts, lookup, code, keep, continuous & ~parseable, categorical & ~known, impossible, conversions)
    rows = np.flatnonzero(keep)
    rows = rows[np.argsort(lookup.name_rank[code[rows]], kind="stable")]
    return Harmonized(rows, code[rows], values[rows], categorical[rows])


def _parse_missing_numbers(values: np.ndarray, continuous: np.ndarray, value: pa.Array, valuenum: pa.Array) -> None:
    """Continuous rows without `valuenum` parse `value` (as pandas would: rare, so per subset)."""
    missing = np.flatnonzero(continuous & np.isnan(values))
    if not len(missing):
        return
    taken = pa.array(missing)
    texts = pc.if_else(pc.is_null(valuenum.take(taken)), value.take(taken), pa.scalar(None, pa.string()))
    values[missing] = pd.to_numeric(np.asarray(texts.to_pylist(), dtype=object), errors="coerce")


def _convert_units(values: np.ndarray, code: np.ndarray, rule: np.ndarray, continuous: np.ndarray,
                   parseable: np.ndarray, lookup: ItemLookup) -> list[tuple[int, str, int]]:
    """Apply each (variable, rule) present; return (code, rule, rows converted) in first-seen order."""
    with_rule = np.flatnonzero(continuous & (rule >= 0))
    if not len(with_rule):
        return []
    pairs = code[with_rule].astype(np.int64) * 1024 + rule[with_rule]
    unique, first = np.unique(pairs, return_index=True)
    done = []
    for pair in unique[np.argsort(first, kind="stable")]:
        pair_code, pair_rule = int(pair // 1024), int(pair % 1024)
        selected = with_rule[(pairs == pair) & parseable[with_rule]]
        converted_values, converted = UNIT_RULES[lookup.rule_names[pair_rule]](values[selected])
        values[selected] = converted_values
        done.append((pair_code, lookup.rule_names[pair_rule], int(converted.sum())))
    return done


def _score_categories(values: np.ndarray, code: np.ndarray, categorical: np.ndarray, value: pa.Array,
                      lookup: ItemLookup) -> np.ndarray:
    """Categorical rows: score of the category their text maps to; returns which rows mapped.

    Texts repeat heavily (a few spellings per variable), so each distinct text is looked up
    once in Python and the rows take the result by dictionary index.
    """
    known = np.zeros(len(code), bool)
    rows = np.flatnonzero(categorical)
    if not len(rows):
        return known
    encoded = pc.dictionary_encode(value.take(pa.array(rows)))
    entries = encoded.dictionary.to_pylist()
    index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    for variable_code in np.unique(code[rows]):
        variable = lookup.variables[variable_code]
        lookup_text = variable.text_lookup
        categories = [lookup_text.get(text.strip().lower()) for text in entries]
        entry_known = np.array([c is not None for c in categories] + [False])
        entry_score = np.array([float(variable.scores[c]) if c is not None and c in variable.scores else np.nan
                                for c in categories] + [np.nan])
        mine = code[rows] == variable_code
        known[rows[mine]] = entry_known[index[mine]]
        values[rows[mine]] = entry_score[index[mine]]
    return known


def _count(counts: ExtractCounts, lookup: ItemLookup, code: np.ndarray, keep: np.ndarray,
           unparseable: np.ndarray, unknown_text: np.ndarray, impossible: np.ndarray,
           conversions: list[tuple[int, str, int]]) -> None:
    """Tally by variable in name order (as the per-variable loop of the pandas version did)."""
    n = len(lookup.variables)
    matched = np.bincount(code, minlength=n)
    kept = np.bincount(code, weights=keep, minlength=n)
    failed = np.bincount(code, weights=unparseable | unknown_text, minlength=n)
    dropped = np.bincount(code, weights=impossible, minlength=n)
    for variable_code in sorted(np.flatnonzero(matched), key=lambda c: lookup.variables[c].name):
        variable = lookup.variables[variable_code]
        counts.rows_matched[variable.name] += int(matched[variable_code])
        counts.text_unparseable[variable.name] += int(failed[variable_code])
        for pair_code, rule, converted in conversions:
            if pair_code == variable_code:
                counts.unit_conversions[rule] += converted
        if not variable.is_categorical and variable.value_range is not None:
            counts.impossible_dropped[variable.name] += int(dropped[variable_code])
        counts.rows_kept[variable.name] += int(kept[variable_code])
