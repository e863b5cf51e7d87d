"""icu/chartevents, generated in chunks of stays so memory stays bounded at any scale.

Each charting *panel* (heart rate, a blood-pressure triple, a GCS triple, ...) is a function
registered with its hourly rate; it receives the events' stays and times and returns rows.
Irregular sampling is a Poisson process per stay and panel; `scale` multiplies every rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_prep.schemas import CHARTEVENTS
from data_prep.synthetic import catalog, formats
from data_prep.synthetic.latent import HOUR
from data_prep.synthetic.physiology import trend

ROWS_PER_CHUNK = 400_000
IMPOSSIBLE_FRACTION = 0.003


@dataclass
class ItemRows:
    """Rows of one itemid family: numeric rows have `text` None and are formatted to `decimals`."""

    idx: np.ndarray
    hours: np.ndarray
    itemid: np.ndarray
    valuenum: np.ndarray
    decimals: int = 0
    text: np.ndarray | None = None


Panel = Callable[[pd.DataFrame, np.ndarray, np.ndarray, np.random.Generator], list[ItemRows]]
# name -> (events per hour at scale 1 given the stay context, panel function)
PANELS: dict[str, tuple[Callable[[pd.DataFrame], np.ndarray], Panel]] = {}


def register_panel(name: str, rate: Callable[[pd.DataFrame], np.ndarray] | float):
    def decorator(func: Panel) -> Panel:
        PANELS[name] = (rate if callable(rate) else (lambda ctx, r=rate: np.full(len(ctx), r)), func)
        return func
    return decorator


def _col(ctx: pd.DataFrame, name: str, idx: np.ndarray) -> np.ndarray:
    return ctx[name].to_numpy()[idx]


def _items(idx, hours, itemid, valuenum, decimals=0, text=None) -> ItemRows:
    itemid = np.broadcast_to(np.asarray(itemid, dtype=np.int32), idx.shape)
    return ItemRows(idx, hours, itemid, np.asarray(valuenum, dtype=np.float64), decimals, text)


@register_panel("heart_rate", 1.0)
def heart_rate(ctx, idx, hours, rng):
    value = _col(ctx, "hr0", idx) + trend(ctx, idx, hours, "hr") + _col(ctx, "hr_noise", idx) * rng.normal(size=idx.size)
    return [_items(idx, hours, 220045, np.clip(np.rint(value), 25, 220))]


@register_panel("blood_pressure", lambda ctx: np.where(ctx["arterial_line"], 1.25, 1.0))
def blood_pressure(ctx, idx, hours, rng):
    sbp = _col(ctx, "sbp0", idx) + trend(ctx, idx, hours, "sbp") + 8 * rng.normal(size=idx.size)
    dbp = 0.55 * _col(ctx, "sbp0", idx) + trend(ctx, idx, hours, "dbp") + 6 * rng.normal(size=idx.size)
    sbp, dbp = np.clip(np.rint(sbp), 50, 250), np.clip(np.rint(dbp), 25, 150)
    mbp = np.rint((sbp + 2 * dbp) / 3)
    # arterial-line stays chart mostly ABP (and NIBP now and then)
    arterial = _col(ctx, "arterial_line", idx) & (rng.random(idx.size) < 0.8)
    pick = lambda a, n: np.where(arterial, a, n)  # noqa: E731
    return [_items(idx, hours, pick(220050, 220179), sbp), _items(idx, hours, pick(220051, 220180), dbp),
            _items(idx, hours, pick(220052, 220181), mbp)]


@register_panel("respiratory_rate", 1.0)
def respiratory_rate(ctx, idx, hours, rng):
    value = _col(ctx, "rr0", idx) + trend(ctx, idx, hours, "rr") + 2.5 * rng.normal(size=idx.size)
    itemid = np.where(_col(ctx, "intubated", idx), 224690, 220210)
    return [_items(idx, hours, itemid, np.clip(np.rint(value), 4, 60))]


@register_panel("spo2", 1.0)
def spo2(ctx, idx, hours, rng):
    value = _col(ctx, "spo2_0", idx) + trend(ctx, idx, hours, "spo2") + 1.2 * rng.normal(size=idx.size)
    return [_items(idx, hours, 220277, np.clip(np.rint(value), 60, 100))]


@register_panel("temperature", 0.25)
def temperature(ctx, idx, hours, rng):
    celsius = _col(ctx, "temp0", idx) + 0.3 * rng.normal(size=idx.size)
    fahrenheit = _col(ctx, "temp_fahrenheit", idx)
    value = np.where(fahrenheit, celsius * 9 / 5 + 32, celsius)
    return [_items(idx, hours, np.where(fahrenheit, 223761, 223762), np.round(value, 1), decimals=1)]


@register_panel("gcs", 0.25)
def gcs(ctx, idx, hours, rng):
    n = idx.size
    stroke, intubated = _col(ctx, "stroke", idx), _col(ctx, "intubated", idx)
    eye = np.where(stroke, rng.integers(1, 4, n), np.where(intubated, rng.integers(1, 5, n), 4 - (rng.random(n) < 0.15)))
    motor = np.where(stroke, rng.integers(3, 6, n), 6 - (rng.random(n) < 0.15) * rng.integers(1, 3, n))
    verbal = np.where(stroke, rng.integers(1, 4, n), 5 - (rng.random(n) < 0.2) * rng.integers(1, 3, n))
    plain = _col(ctx, "gcs_plain_text", idx)
    texts = []
    for level, numbered, plain_names in ((eye, catalog.GCS_EYE, catalog.GCS_EYE_PLAIN),
                                         (motor, catalog.GCS_MOTOR, catalog.GCS_MOTOR_PLAIN),
                                         (verbal, catalog.GCS_VERBAL, catalog.GCS_VERBAL_PLAIN)):
        texts.append(np.where(plain, np.asarray(plain_names, dtype=object)[level - 1],
                              np.asarray(numbered, dtype=object)[level - 1]))
    verbal = np.where(intubated, 1, verbal)
    texts[2] = np.where(intubated, catalog.GCS_VERBAL_INTUBATED, texts[2])
    return [_items(idx, hours, 220739, eye, text=texts[0]), _items(idx, hours, 223901, motor, text=texts[1]),
            _items(idx, hours, 223900, verbal, text=texts[2])]


@register_panel("glucose", lambda ctx: 0.12 + 0.15 * (ctx["glucose0"] > 160))
def glucose(ctx, idx, hours, rng):
    value = _col(ctx, "glucose0", idx) + trend(ctx, idx, hours, "glucose") + 22 * rng.normal(size=idx.size)
    itemid = rng.choice(np.array([225664, 220621, 226537]), size=idx.size, p=[0.6, 0.3, 0.1])
    return [_items(idx, hours, itemid, np.clip(np.rint(value), 20, 900))]


@register_panel("fio2", lambda ctx: np.where(ctx["intubated"], 0.5, 0.04))
def fio2(ctx, idx, hours, rng):
    percent = np.clip(_col(ctx, "fio2_0", idx) + 5 * rng.normal(size=idx.size), 21, 100)
    fraction = _col(ctx, "fio2_as_fraction", idx)
    rows = [_items(idx[~fraction], hours[~fraction], 223835, np.rint(percent[~fraction]))]
    rows.append(_items(idx[fraction], hours[fraction], 223835, np.round(percent[fraction] / 100, 2), decimals=2))
    return rows


@register_panel("ph", lambda ctx: np.where(ctx["intubated"], 0.25, 0.06))
def ph(ctx, idx, hours, rng):
    value = _col(ctx, "ph0", idx) + trend(ctx, idx, hours, "ph") + 0.03 * rng.normal(size=idx.size)
    itemid = np.where(_col(ctx, "intubated", idx), 223830, 220274)
    return [_items(idx, hours, itemid, np.round(np.clip(value, 6.8, 7.8), 2), decimals=2)]


@register_panel("capillary_refill", 0.12)
def capillary_refill(ctx, idx, hours, rng):
    abnormal = rng.random(idx.size) < 0.1 + 0.3 * (ctx["severity"].to_numpy()[idx] > 1)
    text = np.asarray(catalog.CAPILLARY_REFILL, dtype=object)[abnormal.astype(int)]
    itemid = np.where(rng.random(idx.size) < 0.5, 223951, 224308)
    return [_items(idx, hours, itemid, np.full(idx.size, np.nan), text=text)]


@register_panel("daily_weight", 1 / 24)
def daily_weight(ctx, idx, hours, rng):
    return [_items(idx, hours, 224639, np.round(_col(ctx, "weight_kg", idx) + rng.normal(size=idx.size), 1), decimals=1)]


@register_panel("irrelevant_text", 0.5)
def irrelevant_text(ctx, idx, hours, rng):
    """Items outside the 17 variables, mostly text ("Yes", rhythms): extraction must filter them."""
    kind = rng.integers(0, 4, size=idx.size)
    rhythm = np.where(_col(ctx, "dysrhythmia", idx), "AF (Atrial Fibrillation)", "SR (Sinus Rhythm)")
    device = np.where(_col(ctx, "intubated", idx), "Endotracheal tube", "Nasal cannula")
    text = np.select([kind == 0, kind == 1, kind == 2], [rhythm, "Yes", device], "Bed locked").astype(object)
    itemid = np.asarray([220048, 224641, 226732, 227969], dtype=np.int32)[kind]
    return [_items(idx, hours, itemid, np.full(idx.size, np.nan), text=text)]


@register_panel("peep", lambda ctx: np.where(ctx["intubated"], 0.25, 0.0))
def peep(ctx, idx, hours, rng):
    return [_items(idx, hours, 220339, rng.integers(5, 13, size=idx.size).astype(float))]


@register_panel("other_items", 0.0)
def other_items(ctx, idx, hours, rng):
    """Numeric items outside the 17 variables (alarm limits): off by default; the ETL benchmark
    raises their rate (`other_chart_items`) so most rows must be filtered out, as on real MIMIC-IV."""
    itemids = np.asarray([220046, 220047, 223769, 223770], dtype=np.int32)
    limits = np.asarray([120.0, 50.0, 100.0, 90.0])
    kind = rng.integers(0, len(itemids), size=idx.size)
    return [_items(idx, hours, itemids[kind], limits[kind] + 10 * rng.integers(-1, 2, size=idx.size))]


def once_per_stay_rows(ctx: pd.DataFrame, rng: np.random.Generator) -> list[ItemRows]:
    """Admission weight (kg or lb) for every stay and height (cm or in) for some, in the first hours."""
    n = len(ctx)
    idx = np.arange(n)
    hours = rng.uniform(0, 4, size=n)
    lb = ctx["weight_in_lb"].to_numpy()
    weight = np.where(lb, ctx["weight_kg"].to_numpy() * 2.20462, ctx["weight_kg"].to_numpy())
    rows = [_items(idx, hours, np.where(lb, 226531, 226512), np.round(weight, 1), decimals=1)]
    has = ctx["height_charted"].to_numpy()
    inches = ctx["height_in_inches"].to_numpy()[has]
    height = np.where(inches, ctx["height_cm"].to_numpy()[has] / 2.54, ctx["height_cm"].to_numpy()[has])
    rows.append(_items(idx[has], hours[has] + 0.1, np.where(inches, 226707, 226730), np.rint(height)))
    return rows


def chunk_rows(ctx: pd.DataFrame, scale: float, rng: np.random.Generator,
               rates: dict[str, float] | None = None) -> pa.Table:
    """All chartevents rows of the stays in `ctx` (a slice of the stay context), sorted by stay and time.

    `rates` replaces the hourly rate of the named panels (e.g. {"other_items": 30.0}).
    """
    los = ctx["los_hours"].to_numpy()
    parts = once_per_stay_rows(ctx, rng)
    for name, (rate, panel) in PANELS.items():
        hourly = np.full(len(ctx), rates[name]) if rates and name in rates else rate(ctx)
        counts = rng.poisson(hourly * scale * los)
        idx = np.repeat(np.arange(len(ctx)), counts)
        hours = rng.random(idx.size) * los[idx]
        early = rng.random(idx.size) < 0.01  # a few rows charted just before intime
        hours = np.where(early, -rng.random(idx.size), hours)
        parts += [p for p in panel(ctx, idx, hours, rng) if p.idx.size]
    return assemble(ctx, parts, rng)


def assemble(ctx: pd.DataFrame, parts: list[ItemRows], rng: np.random.Generator) -> pa.Table:
    idx = np.concatenate([p.idx for p in parts])
    charttime = ctx["intime"].to_numpy()[idx] + (np.concatenate([p.hours for p in parts]) * HOUR).astype(np.int64)
    charttime -= charttime % 60
    itemid = np.concatenate([p.itemid for p in parts])
    valuenum = np.concatenate([p.valuenum for p in parts])
    is_text = np.concatenate([np.full(p.idx.size, p.text is not None) for p in parts])
    decimals = np.concatenate([np.full(p.idx.size, p.decimals) for p in parts])
    text = np.concatenate([p.text if p.text is not None else np.full(p.idx.size, None, dtype=object) for p in parts])
    valuenum, warning = add_impossible_values(valuenum, itemid, is_text, rng)
    order = np.lexsort((itemid, charttime, idx))
    idx, charttime, itemid, valuenum = idx[order], charttime[order], itemid[order], valuenum[order]
    is_text, decimals, text, warning = is_text[order], decimals[order], text[order], warning[order]
    n = idx.size
    value = formats.strings(text, missing=~is_text)
    for places in np.unique(decimals[~is_text]):
        rows = pa.array(~is_text & (decimals == places))
        value = pc.if_else(rows, formats.fixed_decimals(valuenum, int(places)), value)
    units = np.asarray([catalog.CHART_ITEMS[i][3] for i in sorted(catalog.CHART_ITEMS)], dtype=object)
    unit = units[np.searchsorted(np.asarray(sorted(catalog.CHART_ITEMS)), itemid)]
    unit = np.where(is_text | (unit == ""), None, unit)
    unit = np.where((itemid == 223835) & ~is_text, "%", unit)
    store_delay = np.where(rng.random(n) < 0.02, -rng.integers(60, 1800, n), rng.integers(0, 2700, n))
    columns = {
        "subject_id": formats.integers(ctx["subject_id"].to_numpy()[idx]),
        "hadm_id": formats.integers(ctx["hadm_id"].to_numpy()[idx]),
        "stay_id": formats.integers(ctx["stay_id"].to_numpy()[idx]),
        "caregiver_id": formats.integers(rng.integers(10000, 99999, n), missing=rng.random(n) < 0.03),
        "charttime": formats.timestamps(charttime),
        "storetime": formats.timestamps(charttime + store_delay, missing=rng.random(n) < 0.01),
        "itemid": pa.array(itemid, pa.int32()),
        "value": value,
        "valuenum": formats.floats(np.where(is_text & np.isnan(valuenum), np.nan, valuenum)),
        "valueuom": formats.strings(unit, missing=np.equal(unit, None)),
        "warning": pa.array(warning, pa.int32(), mask=is_text),
    }
    return pa.table({name: columns[name] for name in CHARTEVENTS.column_names})


# itemid -> impossible replacements (physiologically impossible: extraction must drop them)
IMPOSSIBLE_VALUES = {220045: (0.0, 999.0), 223762: (2.0, -1.0), 223761: (0.0, 200.0), 220277: (150.0, -5.0),
                     220179: (-40.0, 400.0), 220050: (0.0, 999.0), 220210: (-3.0, 180.0), 224639: (0.0, 2000.0)}


def add_impossible_values(valuenum: np.ndarray, itemid: np.ndarray, is_text: np.ndarray,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    valuenum = valuenum.copy()
    warning = np.zeros(valuenum.size, dtype=np.int32)
    hit = (rng.random(valuenum.size) < IMPOSSIBLE_FRACTION) & ~is_text
    for item, choices in IMPOSSIBLE_VALUES.items():
        rows = np.flatnonzero(hit & (itemid == item))
        valuenum[rows] = np.asarray(choices)[rng.integers(0, len(choices), rows.size)]
        warning[rows] = 1
    return valuenum, warning


def chartevents_chunks(ctx: pd.DataFrame, scale: float, seed: int, other_items: float = 0.0) -> Iterator[pa.Table]:
    """Chunks of about ROWS_PER_CHUNK rows; each chunk has its own seeded stream (deterministic).

    `other_items`: rows per stay-hour (at scale 1) of numeric items outside the 17 variables.
    """
    rows_per_stay = (9.0 + other_items) * scale * max(ctx["los_hours"].mean(), 1.0) if len(ctx) else 1.0
    stays_per_chunk = max(1, int(ROWS_PER_CHUNK / rows_per_stay))
    for number, start in enumerate(range(0, len(ctx), stays_per_chunk)):
        rng = np.random.default_rng([seed, 101, number])
        yield chunk_rows(ctx.iloc[start:start + stays_per_chunk].reset_index(drop=True), scale, rng,
                         {"other_items": other_items} if other_items else None)
