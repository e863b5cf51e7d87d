"""The versioned variable map (data_prep/resources/variables_<name>.yaml) as typed objects.

Itemids, unit rules, ranges and category strings are data, so extending the map (a new
itemid, a new text variant) never touches code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from data_prep.errors import PipelineInputError

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
TABLES = ("chartevents", "labevents")


@dataclass(frozen=True)
class Item:
    itemid: int
    table: str
    convert: str | None = None


@dataclass(frozen=True)
class Variable:
    name: str
    benchmark_name: str
    kind: str  # continuous | categorical
    normal: float | str
    items: tuple[Item, ...]
    value_range: tuple[float, float] | None = None
    columns: tuple[str, ...] = ()
    aliases: dict[str, str] = field(default_factory=dict)
    scores: dict[str, int] = field(default_factory=dict)

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    def category_of(self, text: str) -> str | None:
        """The one-hot column a raw text value belongs to (case-insensitive), None if unknown."""
        return self.text_lookup.get(text.strip().lower())

    @property
    def text_lookup(self) -> dict[str, str]:
        lookup = {column.lower(): column for column in self.columns}
        lookup.update({alias.lower(): column for alias, column in self.aliases.items()})
        return lookup

    @property
    def normal_column(self) -> int:
        return self.columns.index(str(self.normal))


@dataclass(frozen=True)
class VariableMap:
    name: str
    variables: tuple[Variable, ...]
    derive_gcs_total: bool

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variables]

    def __getitem__(self, name: str) -> Variable:
        return {v.name: v for v in self.variables}[name]

    def items_of(self, table: str) -> dict[int, tuple[Variable, Item]]:
        """itemid -> (variable, item) for one source table."""
        return {item.itemid: (var, item) for var in self.variables for item in var.items
                if item.table == table}

    def feature_names(self) -> list[str]:
        """The 76 columns in the benchmark's order: channels (one-hot expanded), then masks."""
        names: list[str] = []
        for var in self.variables:
            if var.is_categorical:
                names.extend(f"{var.name}={column}" for column in var.columns)
            else:
                names.append(var.name)
        return names + [f"mask_{var.name}" for var in self.variables]


def load_variable_map(name: str, resources: Path = RESOURCES) -> VariableMap:
    """Load variables_<name>.yaml, following `extends:` and adding `add_items:`."""
    path = resources / f"variables_{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("variables_") for p in resources.glob("variables_*.yaml"))
        raise PipelineInputError(f"data.ehr.variable_map={name!r}: no {path} (known: {', '.join(known)})")
    spec = yaml.safe_load(path.read_text())
    raw = _raw_variables(spec, resources)
    variables = tuple(_variable(var_name, entry, path) for var_name, entry in raw.items())
    return VariableMap(spec["name"], variables, bool(spec.get("derive_gcs_total", False)))


def _raw_variables(spec: dict, resources: Path) -> dict[str, dict]:
    if "extends" not in spec:
        return spec["variables"]
    base = yaml.safe_load((resources / f"variables_{spec['extends']}.yaml").read_text())
    raw = {name: dict(entry) for name, entry in _raw_variables(base, resources).items()}
    for var_name, items in (spec.get("add_items") or {}).items():
        raw[var_name]["items"] = [*raw[var_name].get("items", []), *items]
    return raw


def _variable(name: str, entry: dict, path: Path) -> Variable:
    items = tuple(Item(int(i["itemid"]), i["table"], i.get("convert")) for i in entry.get("items", []))
    bad = [i for i in items if i.table not in TABLES]
    if bad:
        raise PipelineInputError(f"{path}: variable {name!r} itemid {bad[0].itemid}: table must be one of {TABLES}")
    kind = entry["kind"]
    value_range = tuple(float(x) for x in entry["range"]) if "range" in entry else None
    normal = str(entry["normal"]) if kind == "categorical" else float(entry["normal"])
    variable = Variable(name, entry["benchmark_name"], kind, normal, items, value_range,  # type: ignore[arg-type]
                        tuple(str(c) for c in entry.get("columns", ())),
                        {str(k): str(v) for k, v in (entry.get("aliases") or {}).items()},
                        {str(k): int(v) for k, v in (entry.get("scores") or {}).items()})
    if variable.is_categorical and str(normal) not in variable.columns:
        raise PipelineInputError(f"{path}: variable {name!r}: normal value {normal!r} is not one of its columns")
    return variable
