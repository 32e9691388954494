"""A composable preprocessing pipeline with a JSON-serialisable spec.

A model stores ``pipeline.to_dict()`` beside its weights, so inference applies exactly the preprocessing it was trained
with: ``Pipeline.from_dict(spec)(ecg)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.signal.units import check_plausible_millivolts
from ecgfm.leads import STANDARD_LEADS
from ecgfm.signal import filters
from ecgfm.signal.leads import reorder_leads

_STEPS: dict[str, type["Step"]] = {}


class Step:
    """One preprocessing step: a frozen dataclass whose fields are its JSON parameters."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _STEPS[cls.name] = cls

    def __call__(self, ecg: ECG) -> ECG:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}}


@dataclass(frozen=True)
class CheckUnits(Step):
    """Refuse signals whose amplitudes cannot be millivolts (microvolts, raw ADC counts, volts)."""

    name: ClassVar[str] = "check_units"

    def __call__(self, ecg: ECG) -> ECG:
        check_plausible_millivolts(ecg.signal, ecg.meta.get("source"), fs=ecg.fs, leads=ecg.leads)
        return ecg


@dataclass(frozen=True)
class ReorderLeads(Step):
    """Select/reorder leads, deriving missing limb leads from I and II."""

    leads: tuple[str, ...] = STANDARD_LEADS
    derive: bool = True
    missing: str = "error"
    name: ClassVar[str] = "reorder_leads"

    def __call__(self, ecg: ECG) -> ECG:
        return reorder_leads(ecg, self.leads, derive=self.derive, missing=self.missing)


@dataclass(frozen=True)
class Resample(Step):
    """Polyphase resampling to ``fs`` Hz."""

    fs: float
    name: ClassVar[str] = "resample"

    def __call__(self, ecg: ECG) -> ECG:
        if ecg.fs == self.fs:
            return ecg
        return ecg.replace(signal=filters.resample(ecg.signal, ecg.fs, self.fs), fs=self.fs)


@dataclass(frozen=True)
class Bandpass(Step):
    """Zero-phase Butterworth band-pass; ``low`` removes baseline wander, ``high`` muscle noise."""

    low: float | None = 0.5
    high: float | None = 40.0
    order: int = 4
    name: ClassVar[str] = "bandpass"

    def __call__(self, ecg: ECG) -> ECG:
        return ecg.replace(signal=filters.bandpass(ecg.signal, ecg.fs, self.low, self.high, self.order))


@dataclass(frozen=True)
class Notch(Step):
    """Powerline notch at ``freq`` Hz (50 or 60)."""

    freq: float = 50.0
    quality: float = 30.0
    name: ClassVar[str] = "notch"

    def __call__(self, ecg: ECG) -> ECG:
        return ecg.replace(signal=filters.notch(ecg.signal, ecg.fs, self.freq, self.quality))


@dataclass(frozen=True)
class CropOrPad(Step):
    """Fix the length to ``seconds`` (center crop or zero-pad at the end)."""

    seconds: float = 10.0
    mode: str = "center"
    name: ClassVar[str] = "crop_or_pad"

    def __call__(self, ecg: ECG) -> ECG:
        n_samples = int(round(self.seconds * ecg.fs))
        return ecg.replace(signal=filters.crop_or_pad(ecg.signal, n_samples, self.mode))


@dataclass(frozen=True)
class Normalize(Step):
    """Per-lead normalisation (``zscore``, ``center`` or ``none``)."""

    method: str = "zscore"
    name: ClassVar[str] = "normalize"

    def __call__(self, ecg: ECG) -> ECG:
        return ecg.replace(signal=filters.normalize(ecg.signal, self.method))


def step_from_dict(spec: dict[str, Any]) -> Step:
    """Rebuild a step from its ``to_dict()`` form."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in _STEPS:
        raise ValueError(f"unknown preprocessing step {name!r}; known: {', '.join(sorted(_STEPS))}")
    cls = _STEPS[name]
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    return cls(**params)


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of preprocessing steps, applied to an :class:`ECG`."""

    steps: tuple[Step, ...]

    def __call__(self, ecg: ECG) -> ECG:
        for step in self.steps:
            ecg = step(ecg)
        return ecg

    def to_array(self, ecg: ECG) -> np.ndarray:
        """Preprocess and return the float32 ``(leads, samples)`` model input."""
        return self(ecg).signal

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "Pipeline":
        return cls(tuple(step_from_dict(s) for s in spec["steps"]))

    def _find(self, kind: type[Step]) -> Step | None:
        return next((s for s in reversed(self.steps) if isinstance(s, kind)), None)

    @property
    def fs(self) -> float | None:
        """Output sampling rate, if the pipeline fixes one."""
        step = self._find(Resample)
        return step.fs if step else None

    @property
    def leads(self) -> tuple[str, ...] | None:
        step = self._find(ReorderLeads)
        return step.leads if step else None

    @property
    def input_seconds(self) -> float | None:
        """The length ``crop_or_pad`` fixes (s), if any: the model's input length."""
        crop = self._find(CropOrPad)
        return crop.seconds if crop else None

    def any_length(self) -> "Pipeline":
        """The same steps without ``crop_or_pad``: every sample of a record kept, for reading it in segments."""
        return Pipeline(tuple(step for step in self.steps if not isinstance(step, CropOrPad)))

    @property
    def n_samples(self) -> int | None:
        """Output length in samples, if the pipeline fixes rate and duration."""
        crop = self._find(CropOrPad)
        return int(round(crop.seconds * self.fs)) if crop and self.fs else None

    @classmethod
    def default(cls, fs: float = 100.0, seconds: float = 10.0, leads: Sequence[str] = STANDARD_LEADS,
                bandpass: tuple[float | None, float | None] | None = (0.5, None), notch: float | None = None,
                normalize: str = "none") -> "Pipeline":
        """The standard model input: plausible mV, 12 standard leads, resampled, filtered, fixed length.

        By default only baseline wander is removed (0.5 Hz high-pass) and amplitudes stay in mV: absolute voltage
        carries diagnostic information (hypertrophy, low voltage), so no per-lead z-scoring.
        """
        steps: list[Step] = [CheckUnits(), ReorderLeads(tuple(leads)), Resample(float(fs))]
        if bandpass is not None and (bandpass[0] or bandpass[1]):
            steps.append(Bandpass(bandpass[0], bandpass[1]))
        if notch:
            steps.append(Notch(float(notch)))
        steps.append(CropOrPad(float(seconds)))
        if normalize != "none":
            steps.append(Normalize(normalize))
        return cls(tuple(steps))
