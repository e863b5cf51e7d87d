"""The generator's knobs, validated once so a bad value stops with one line naming the setting."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

from data_prep.errors import PipelineInputError


@dataclass(frozen=True)
class TwinSettings:
    """cfg.data.synthetic, flattened (`signal.ehr` -> `signal_ehr`)."""

    seed: int = 2024
    n_subjects: int = 1500
    scale: float = 1.0            # charting density multiplier (rows grow linearly)
    other_chart_items: float = 0.0  # extra chartevents rows per stay-hour outside the 17 variables
    image_size: int = 256         # JPEG width in pixels
    image_aspect: float = 1.2     # JPEG height / width (MIMIC's portrait films are ~1.2)
    signal_ehr: float = 1.0       # how strongly vitals reflect the EHR-only latent severity
    signal_cxr: float = 1.0       # how strongly radiographs reflect the image-only latent severity
    imbalance: float = 1.0        # >1 strengthens the EHR imprint and weakens the image imprint
    cxr_fraction: float = 0.82    # share of ICU stays with at least one chest X-ray
    workers: int = 1              # image-rendering processes (output is identical for any count)
    jpeg_quality: int = 90

    @property
    def image_height(self) -> int:
        return max(1, int(round(self.image_size * self.image_aspect)))

    @property
    def ehr_amplitude(self) -> float:
        """Visibility of the EHR factors: signal.ehr, raised by sqrt(imbalance)."""
        return self.signal_ehr * math.sqrt(self.imbalance)

    @property
    def cxr_amplitude(self) -> float:
        """Visibility of the image factors: signal.cxr, lowered by sqrt(imbalance)."""
        return self.signal_cxr / math.sqrt(self.imbalance)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_CHECKS: dict[str, tuple[Any, str]] = {
    "seed": (lambda v: v >= 0, "an integer >= 0"),
    "n_subjects": (lambda v: v >= 1, "an integer >= 1"),
    "scale": (lambda v: v > 0, "a number > 0"),
    "other_chart_items": (lambda v: v >= 0, "a number >= 0 (rows per stay-hour)"),
    "image_size": (lambda v: v >= 16, "an integer >= 16 (pixels)"),
    "image_aspect": (lambda v: 0.25 <= v <= 4, "a number in [0.25, 4]"),
    "signal_ehr": (lambda v: v >= 0, "a number >= 0"),
    "signal_cxr": (lambda v: v >= 0, "a number >= 0"),
    "imbalance": (lambda v: v > 0, "a number > 0"),
    "cxr_fraction": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
    "workers": (lambda v: v >= 1, "an integer >= 1"),
    "jpeg_quality": (lambda v: 1 <= v <= 100, "an integer in [1, 100]"),
}

_CONFIG_NAMES = {"signal_ehr": "signal.ehr", "signal_cxr": "signal.cxr"}


def make_settings(**values: Any) -> TwinSettings:
    """Coerce and validate keyword settings; unknown names and bad values raise PipelineInputError."""
    known = {f.name: f for f in fields(TwinSettings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise PipelineInputError(f"data.synthetic.{unknown[0]}: unknown setting "
                                 f"(known: {', '.join(sorted(known))})")
    coerced: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:
            continue
        label = f"data.synthetic.{_CONFIG_NAMES.get(name, name)}"
        kind = int if known[name].type in (int, "int") else float
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PipelineInputError(f"{label}={value!r}: expected {_CHECKS[name][1]}")
        if kind is int and float(value) != int(value):
            raise PipelineInputError(f"{label}={value!r}: expected {_CHECKS[name][1]}")
        number = kind(value)
        valid, expected = _CHECKS[name]
        if not math.isfinite(number) or not valid(number):
            raise PipelineInputError(f"{label}={value!r}: expected {expected}")
        coerced[name] = number
    return TwinSettings(**coerced)


def settings_from_config(synthetic_cfg: Any) -> TwinSettings:
    """Flatten cfg.data.synthetic (with its `signal:` block) into TwinSettings; `out` is not a knob."""
    values = {key: synthetic_cfg[key] for key in synthetic_cfg if key not in ("out", "signal")}
    signal = synthetic_cfg.get("signal") or {}
    for key in signal:
        values[f"signal_{key}"] = signal[key]
    return make_settings(**values)
