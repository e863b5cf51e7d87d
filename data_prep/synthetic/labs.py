"""hosp/labevents and icu/outputevents for the ICU stays.

Labs come in panels (one specimen, several itemids). hadm_id is empty in some rows and some
labs are drawn before ICU admission, as in MIMIC, so a pipeline must attach labs by subject
and time. Values keep MIMIC's fixed decimals ("7.40").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from data_prep import schemas
from data_prep.synthetic import catalog, formats
from data_prep.synthetic.latent import HOUR, sorted_unique_ids
from data_prep.synthetic.physiology import trend

# panel -> (itemids, rate per hour if intubated, rate otherwise)
LAB_PANELS: dict[str, tuple[tuple[int, ...], float, float]] = {
    "blood_gas": ((50820, 50817, 50809, 50816), 1 / 6, 1 / 24),
    "chemistry": ((50931, 50912, 50983), 1 / 8, 1 / 8),
    "hematology": ((51222, 51301), 1 / 12, 1 / 12),
}
HADM_MISSING_FRACTION = 0.15


def lab_values(itemid: int, ctx: pd.DataFrame, idx: np.ndarray, hours: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(size=idx.size)
    col = lambda name: ctx[name].to_numpy()[idx]  # noqa: E731
    if itemid == 50820:
        return col("ph0") + trend(ctx, idx, hours, "ph") + 0.03 * noise
    if itemid == 50817:
        return np.clip(col("spo2_0") + trend(ctx, idx, hours, "spo2") + noise, 60, 100)
    if itemid in (50809, 50931):
        return np.clip(col("glucose0") + trend(ctx, idx, hours, "glucose") + 20 * noise, 20, 900)
    if itemid == 50816:
        return np.clip(col("fio2_0") + 5 * noise, 21, 100)
    if itemid == 50912:
        return np.clip(col("creatinine0") * (1 + 0.15 * noise), 0.2, 15)
    if itemid == 50983:
        return 139 + 3.5 * noise
    if itemid == 51222:
        return np.clip(11 + 1.8 * noise, 4, 19)
    return np.clip(9 + 3.5 * noise + 4 * (col("severity") > 1), 0.5, 60)  # 51301, white cells


def labevents(ctx: pd.DataFrame, scale: float, rng: np.random.Generator) -> pa.Table:
    los = ctx["los_hours"].to_numpy()
    intubated = ctx["intubated"].to_numpy()
    parts = []
    for panel_number, (itemids, rate_vent, rate_other) in enumerate(LAB_PANELS.values()):
        span = los + 12  # from 12 h before intime (emergency department) to outtime
        counts = rng.poisson(np.where(intubated, rate_vent, rate_other) * scale * span)
        idx = np.repeat(np.arange(len(ctx)), counts)
        if not intubated.any():
            itemids = tuple(i for i in itemids if i != 50816)
        hours = rng.random(idx.size) * span[idx] - 12
        for itemid in itemids:
            keep = intubated[idx] if itemid == 50816 else np.ones(idx.size, bool)
            parts.append(pd.DataFrame({"idx": idx[keep], "hours": hours[keep], "panel": panel_number,
                                       "draw": np.flatnonzero(keep), "itemid": itemid,
                                       "valuenum": lab_values(itemid, ctx, idx[keep], hours[keep], rng)}))
    rows = pd.concat(parts, ignore_index=True)
    charttime = ctx["intime"].to_numpy()[rows["idx"]] + (rows["hours"].to_numpy() * HOUR).astype(np.int64)
    rows["charttime"] = charttime - charttime % 60
    rows = rows.sort_values(["idx", "charttime", "itemid"], kind="stable").reset_index(drop=True)
    n = len(rows)
    specimen_key = rows["idx"].astype(np.int64) * 10**7 + rows["panel"] * 10**6 + rows["draw"]
    specimen_codes = pd.factorize(specimen_key)[0]
    specimen_ids = rng.permutation(sorted_unique_ids(rng, specimen_codes.max() + 1 if n else 0, 10_000_000))
    itemid = rows["itemid"].to_numpy()
    decimals = np.array([catalog.LAB_ITEMS[i][4] for i in itemid], dtype=np.int64) if n else np.zeros(0, int)
    valuenum = rows["valuenum"].to_numpy()
    valuenum = np.rint(valuenum * 10.0 ** decimals) / 10.0 ** decimals
    unreadable = rng.random(n) < 0.01  # "___": a value MIMIC de-identified or the lab did not report
    value = formats.strings(np.full(n, "___", dtype=object))
    for places in np.unique(decimals):
        value = pc.if_else(pa.array((decimals == places) & ~unreadable),
                                   formats.fixed_decimals(valuenum, int(places)), value)
    valuenum = np.where(unreadable, np.nan, valuenum)
    low = np.array([catalog.LAB_ITEMS[i][5] for i in itemid], dtype=float) if n else np.zeros(0)
    high = np.array([catalog.LAB_ITEMS[i][6] for i in itemid], dtype=float) if n else np.zeros(0)
    abnormal = (valuenum < low) | (valuenum > high)
    units = np.array([catalog.LAB_ITEMS[i][3] for i in itemid], dtype=object)
    priority = rng.choice(np.array(["ROUTINE", "STAT", ""], dtype=object), n, p=[0.6, 0.3, 0.1])
    store = rows["charttime"].to_numpy() + rng.integers(1800, 3 * 3600, n)
    columns = {
        "labevent_id": formats.integers(np.arange(1, n + 1)),
        "subject_id": formats.integers(ctx["subject_id"].to_numpy()[rows["idx"]]),
        "hadm_id": formats.integers(ctx["hadm_id"].to_numpy()[rows["idx"]],
                                    missing=rng.random(n) < HADM_MISSING_FRACTION),
        "specimen_id": formats.integers(specimen_ids[specimen_codes] if n else np.zeros(0, np.int64)),
        "itemid": pa.array(itemid.astype(np.int32), pa.int32()),
        "order_provider_id": formats.strings(np.char.add("P", rng.integers(10000, 99999, n).astype(str)),
                                             missing=rng.random(n) < 0.7),
        "charttime": formats.timestamps(rows["charttime"].to_numpy()),
        "storetime": formats.timestamps(store, missing=unreadable),
        "value": value,
        "valuenum": formats.floats(valuenum),
        "valueuom": formats.strings(units),
        "ref_range_lower": formats.floats(low),
        "ref_range_upper": formats.floats(high),
        "flag": formats.strings(np.full(n, "abnormal", dtype=object), missing=~abnormal),
        "priority": formats.strings(priority, missing=priority == ""),
        "comments": formats.strings(np.full(n, "___", dtype=object), missing=~unreadable),
    }
    return pa.table({name: columns[name] for name in schemas.LABEVENTS.column_names})


def outputevents(ctx: pd.DataFrame, scale: float, rng: np.random.Generator) -> pa.Table:
    los = ctx["los_hours"].to_numpy()
    counts = rng.poisson(0.4 * scale * los)
    idx = np.repeat(np.arange(len(ctx)), counts)
    hours = np.sort(rng.random(idx.size) * los[idx])
    order = np.lexsort((hours, idx))
    idx, hours = idx[order], hours[order]
    charttime = ctx["intime"].to_numpy()[idx] + (hours * HOUR).astype(np.int64)
    charttime -= charttime % 60
    volume = np.clip(np.rint(ctx["urine0"].to_numpy()[idx] + 35 * rng.normal(size=idx.size)), 0, 1500)
    n = idx.size
    columns = {
        "subject_id": formats.integers(ctx["subject_id"].to_numpy()[idx]),
        "hadm_id": formats.integers(ctx["hadm_id"].to_numpy()[idx]),
        "stay_id": formats.integers(ctx["stay_id"].to_numpy()[idx]),
        "caregiver_id": formats.integers(rng.integers(10000, 99999, n)),
        "charttime": formats.timestamps(charttime),
        "storetime": formats.timestamps(charttime + rng.integers(0, 3600, n)),
        "itemid": pa.array(np.where(ctx["foley"].to_numpy()[idx], 226559, 226560).astype(np.int32)),
        "value": formats.floats(volume),
        "valueuom": formats.strings(np.full(n, "ml", dtype=object)),
    }
    return pa.table({name: columns[name] for name in schemas.OUTPUTEVENTS.column_names})
