"""Named study grids: which experiments a study runs, on which twin, with which seeds.

A cell is one `dvc exp run` (both tasks): the grid's `base` overrides (twin size, epochs),
one value of every factor, one seed, and `train.threads=1` (jobs run side by side, one core
each: training/threads.py). `references` are extra cells crossed with the seeds only, such
as the unimodal models of the greedy-learning measurement. A method is a cell without its
seed; `reference_method` is what every other method is compared against (balancing=none).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

from data_prep.errors import PipelineInputError


def study_balancers() -> tuple[str, ...]:
    """none, miles, then every other registered balancer: a new one joins the study by itself."""
    from training.balancers import list_balancers

    return ("none", "miles", *(name for name in list_balancers() if name not in ("none", "miles")))


UNIMODAL_REFERENCES = (("regime=unimodal", "regime.modality=ehr"), ("regime=unimodal", "regime.modality=cxr"))
CELL_OVERRIDES = ("train.threads=1",)
# The study-sized twin: what a paired difference needs is a large *test* set, not a large
# training set. 5,000 patients split 35/10/55 give 9x the default's test patients (the paired
# IHM test set about 1,250 stays with an image and 150 deaths, against the default's 138 and
# 17), so the paired difference against `none` is estimated to about +-0.03 AUROC
# (docs/methods/study.md has the arithmetic; phenotyping's macro AUROC is far tighter), while
# training sees 1,750 patients (1.7x the default's 1,050), so a cell costs under twice a
# default run.
STUDY_TWIN = ("data.synthetic.n_subjects=5000", "data.split.train=0.35", "data.split.val=0.1",
              "data.split.test=0.55")
# The study twin above trains on 1.7x the default's patients, and at that size joint training did
# not leave the image branch behind (docs/results.md, the `main` grid). This one keeps the
# default's training set (5,000 x 0.21 = 1,050 patients, as 1,500 x 0.70), so a balancer meets
# what the default run meets, and puts the rest into validation (300 patients, 2x the default's: MILES's gap
# and the choice rules see less noise) and test (3,650 patients, 12x the default's).
MATCHED_TWIN = ("data.synthetic.n_subjects=5000", "data.split.train=0.21", "data.split.val=0.06",
                "data.split.test=0.73")


@dataclass(frozen=True)
class Cell:
    grid: str
    method: tuple[str, ...]   # the overrides that name the method (no seed)
    seed: int
    base: tuple[str, ...]

    @property
    def overrides(self) -> tuple[str, ...]:
        return (*self.base, *self.method, f"train.seed={self.seed}", *CELL_OVERRIDES)

    @property
    def method_label(self) -> str:
        return method_label(self.method)

    @property
    def name(self) -> str:
        """The experiment's name: `<grid>-<method slug>-s<seed>`, a valid git ref component."""
        return f"{self.grid}-{slug(self.method)}-s{self.seed}"


def override_values(overrides: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`("balancing=miles", "balancing.tau=0.1")` -> {"balancing": "miles", "balancing.tau": "0.1"}."""
    return dict(override.split("=", 1) for override in overrides)


def method_label(method: tuple[str, ...]) -> str:
    """`balancing=miles fusion=joint` -> "miles · joint"; unimodal -> "unimodal cxr" (with any other
    values after it: "unimodal cxr · 1.0e-3")."""
    values = override_values(method)
    if values.get("regime") == "unimodal":
        rest = [value for key, value in values.items() if key not in ("regime", "regime.modality")]
        return " · ".join([f"unimodal {values.get('regime.modality', 'ehr')}", *rest])
    return " · ".join(value for key, value in values.items() if key != "regime")


def slug(method: tuple[str, ...]) -> str:
    """Values joined by "-"; a nested key adds its last part (`balancing.tau=0.1` -> tau0p1)."""
    parts = []
    for override in method:
        key, value = override.split("=", 1)
        parts.append(f"{key.rsplit('.', 1)[1]}{value}" if "." in key and key != "regime.modality" else value)
    text = "-".join(parts)
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace(".", "p")).strip("-")


@dataclass(frozen=True)
class Grid:
    name: str
    description: str
    factors: dict[str, tuple[str, ...]]
    seeds: tuple[int, ...]
    base: tuple[str, ...] = ()
    references: tuple[tuple[str, ...], ...] = ()
    reference_method: tuple[str, ...] = ("balancing=none",)
    jobs: int = 2
    budget: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    choose: str | None = None   # the rule `study choose` applies to its validation summary (choose.CHOOSERS)

    def methods(self) -> list[tuple[str, ...]]:
        keys = list(self.factors)
        crossed = [tuple(f"{key}={value}" for key, value in zip(keys, values, strict=True))
                   for values in itertools.product(*(self.factors[key] for key in keys))]
        return crossed + list(self.references)

    def cells(self) -> list[Cell]:
        return [Cell(self.name, method, seed, self.base) for method in self.methods() for seed in self.seeds]

    def reference_of(self, method: tuple[str, ...]) -> tuple[str, ...] | None:
        """The method `method` is compared against: the same cell with the reference's values
        where the grid has it (for `balancing=miles fusion=gated`, `balancing=none
        fusion=gated`), else the reference method itself; None for the reference and for the
        unimodal models."""
        if method in self.references and method != self.reference_method:
            return None
        values = {**override_values(method), **override_values(self.reference_method)}
        derived = tuple(f"{key}={value}" for key, value in values.items())
        for candidate in (derived, self.reference_method):
            if candidate != method and candidate in self.methods():
                return candidate
        return None


GRIDS: dict[str, Grid] = {}


def register_grid(grid: Grid) -> Grid:
    GRIDS[grid.name] = grid
    return grid


def get_grid(name: str) -> Grid:
    if name not in GRIDS:
        raise PipelineInputError(f"study grid {name!r}: expected one of {', '.join(GRIDS)}")
    return GRIDS[name]


register_grid(Grid(
    "quick", "Smoke test of the study machinery: none vs MILES, joint fusion, 2 seeds, unimodal "
    "CXR reference, on whatever twin params.yaml says (the tests shrink it).",
    factors={"balancing": ("none", "miles")}, seeds=(1, 2),
    references=(UNIMODAL_REFERENCES[1],), budget="minutes on the tests' tiny twin"))

register_grid(Grid(
    "greedy", "Issue 15 item 1: is the image branch under-trained by joint training, and does MILES "
    "(the default settings) change that? The jointly trained multi-head model without balancing and "
    "with MILES against each encoder trained alone, on the default twin.",
    factors={"balancing": ("none", "miles"), "fusion": ("joint",)}, seeds=(1, 2, 3),
    references=UNIMODAL_REFERENCES,
    budget="12 experiments; on the 2-core machine with 2 jobs both tasks took 18 minutes (measured "
           "2026-12-06)"))

register_grid(Grid(
    "main", "The balancing comparison: every balancer x two joint-fusion methods x 3 seeds x both "
    "tasks on the study-sized twin, with the unimodal references.",
    factors={"balancing": study_balancers(), "fusion": ("joint", "gated")}, seeds=(1, 2, 3),
    base=STUDY_TWIN, references=UNIMODAL_REFERENCES,
    budget="78 experiments; on the 2-core machine with 2 jobs the in-hospital mortality half took 81 minutes "
           "(measured 2026-12-06) and the phenotyping half about 4 hours more (estimated); on a GPU machine "
           "`--backend local` with 12 jobs, minutes (not yet measured)"))

register_grid(Grid(
    "matched", "The balancing comparison again, on the twin that keeps the default's training size "
    "(MATCHED_TWIN), as the default run's is where MILES acted: every balancer x two joint-fusion methods "
    "x 3 seeds x both tasks, with the unimodal references. Measured 2026-12-06 (both tasks): joint training does "
    "not under-train the image branch here either (docs/results.md).",
    factors={"balancing": study_balancers(), "fusion": ("joint", "gated")}, seeds=(1, 2, 3),
    base=MATCHED_TWIN, references=UNIMODAL_REFERENCES,
    budget="78 experiments; on the 2-core machine with 2 jobs the in-hospital mortality half took 51 minutes "
           "and the phenotyping half about 2 hours (measured 2026-12-06)"))

register_grid(Grid(
    "sensitivity", "MILES's threshold tau, rate factor mu and metric scale, joint fusion, 3 seeds, "
    "on the default twin.",
    factors={"balancing": ("miles",), "balancing.tau": ("0.05", "0.1", "0.2", "0.3"),
             "balancing.mu": ("0.25", "0.5", "0.75"), "balancing.scale": ("raw", "chance_corrected")},
    seeds=(1, 2, 3), references=(("balancing=none",),), choose="beats_none",
    budget="75 experiments; on the 2-core machine with 2 jobs the in-hospital mortality half took 47 minutes "
           "(measured 2026-12-06) and the phenotyping half about 2.5 hours more (estimated)"))

register_grid(Grid(
    "unimodal-lr", "Each encoder trained alone at four learning rates, 3 seeds, on the matched twin: "
    "`study choose unimodal-lr` gives MSLR-K's and MSLR-S's per-modality multipliers (the best "
    "rate alone, relative to train.lr; set in configs/balancing/mslr_k.yaml and mslr_s.yaml).",
    factors={"regime": ("unimodal",), "regime.modality": ("ehr", "cxr"),
             "train.lr": ("1.0e-4", "3.0e-4", "1.0e-3", "3.0e-3")},
    seeds=(1, 2, 3), base=MATCHED_TWIN, reference_method=(),  # a tuning grid: nothing is compared
    choose="best_unimodal_lr",
    budget="24 experiments of one encoder each; on the 2-core machine with 2 jobs the in-hospital mortality "
           "half took 10 minutes and the phenotyping half 16 (measured 2026-12-06)"))

# Issue 15, item 1: if the twin does not leave the image branch under-trained, turn the
# generator's imbalance knob (never the methods) until it does. One grid per value, because a
# grid's base is what changes the data (each gets its own copy); on the matched twin, so that
# training size is the default's and the test set large; in-hospital mortality is where MILES
# acted on the default twin.
IMBALANCE_VALUES = ("1", "2", "4", "8")  # 1: the default knob (its IHM cells are the matched grid's)
for _value in IMBALANCE_VALUES:
    register_grid(Grid(
        f"imbalance-{_value}", f"Greedy learning with data.synthetic.imbalance={_value} (EHR imprint x "
        f"sqrt({_value}), image imprint / sqrt({_value})) on the matched twin: the jointly trained model "
        "without balancing and with MILES against each encoder alone, 3 seeds.",
        factors={"balancing": ("none", "miles")}, seeds=(1, 2, 3),
        base=(*MATCHED_TWIN, f"data.synthetic.imbalance={_value}"), references=UNIMODAL_REFERENCES,
        budget="12 experiments; about 7 minutes for in-hospital mortality and 27 for phenotyping (beside a "
               "CI run) with 2 jobs on the 2-core machine (measured 2026-12-06)"))

register_grid(Grid(
    "greedy-probe", "Greedy learning as Wu et al. (ICML 2022) measured it: the encoders trained by the fused "
    "loss alone, the unimodal heads as probes on detached embeddings (model.unimodal_heads=probe), without "
    "balancing and with MILES, against each encoder alone, 3 seeds, on the matched twin. Asks whether the "
    "multi-head model's own unimodal losses are what keep the image branch from falling behind.",
    factors={"balancing": ("none", "miles")}, seeds=(1, 2, 3),
    base=(*MATCHED_TWIN, "model.unimodal_heads=probe"), references=UNIMODAL_REFERENCES,
    budget="12 experiments; about 7 minutes for in-hospital mortality with 2 jobs on the 2-core machine "
           "(measured 2026-12-06)"))
