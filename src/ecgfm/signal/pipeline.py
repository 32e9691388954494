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
from ecgfm.signal.leads import choose_lead_set, reorder_leads

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
class LeadSetMask(Step):
    """Read a record as the largest of ``sets`` it covers (``(name, leads)`` pairs; none given: one set, all of
    ``leads``), in ``leads`` order with every lead outside that set zero, and flag which input leads carry signal.

    The flags (1 = recorded or derived from I and II, 0 = absent) become extra input channels, one per lead, that
    :meth:`Pipeline.to_array` appends after the last step, so a model tells "this lead is missing" from "this lead
    is flat". The choice is kept in ``meta``: ``lead_set``, ``leads_used``, ``leads_derived``, ``leads_ignored``,
    ``lead_presence``. A record covering no set raises :class:`ECGValueError` naming its leads.
    """

    leads: tuple[str, ...] = STANDARD_LEADS
    sets: tuple = ()
    name: ClassVar[str] = "lead_set_mask"

    def __post_init__(self) -> None:  # JSON gives lists; keep tuples so equal specs compare equal
        sets = tuple((str(n), tuple(leads)) for n, leads in self.sets) or (("all", tuple(self.leads)),)
        object.__setattr__(self, "leads", tuple(self.leads))
        object.__setattr__(self, "sets", sets)
        outside = sorted({lead for _, leads in sets for lead in leads} - set(self.leads))
        if outside:
            raise ValueError(f"lead sets name leads {outside} that are not model input leads {list(self.leads)}")

    def __call__(self, ecg: ECG) -> ECG:
        choice = choose_lead_set(ecg.leads, self.sets, ecg.meta.get("source"))
        kept = ecg.replace(signal=ecg.signal[[ecg.leads.index(lead) for lead in choice.used]], leads=choice.used)
        out = reorder_leads(kept, self.leads, derive=bool(choice.derived), missing="zero")
        return out.replace(lead_set=choice.name, leads_used=list(choice.used), leads_derived=list(choice.derived),
                           leads_ignored=list(choice.ignored),
                           lead_presence=[float(lead in choice.present) for lead in self.leads])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "leads": list(self.leads), "sets": [[n, list(leads)] for n, leads in self.sets]}


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
        """Preprocess and return the float32 ``(channels, samples)`` model input: the leads, then (with a
        :class:`LeadSetMask` step) one presence channel per lead, constant over time."""
        return self.model_input(self(ecg))

    def model_input(self, out: ECG) -> np.ndarray:
        """The float32 model input from this pipeline's output ECG (see :meth:`to_array`); kept apart so a caller
        can also read what the pipeline noted in ``out.meta`` (e.g. the lead set a record was read as)."""
        if not self.lead_mask:
            return out.signal
        presence = np.asarray(out.meta["lead_presence"], dtype=np.float32)
        return np.concatenate([out.signal, np.repeat(presence[:, None], out.n_samples, axis=1)])

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [step.to_dict() for step in self.steps]}

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "Pipeline":
        return cls(tuple(step_from_dict(s) for s in spec["steps"]))

    def _find(self, kind: type[Step] | tuple[type[Step], ...]) -> Step | None:
        return next((s for s in reversed(self.steps) if isinstance(s, kind)), None)

    @property
    def fs(self) -> float | None:
        """Output sampling rate, if the pipeline fixes one."""
        step = self._find(Resample)
        return step.fs if step else None

    @property
    def leads(self) -> tuple[str, ...] | None:
        step = self._find((ReorderLeads, LeadSetMask))
        return step.leads if step else None

    @property
    def lead_mask(self) -> bool:
        """Whether the model input carries lead-presence channels after the leads (:class:`LeadSetMask`)."""
        return self._find(LeadSetMask) is not None

    @property
    def channels(self) -> int | None:
        """Input channels of the model: the leads, twice with presence channels."""
        return None if self.leads is None else len(self.leads) * (2 if self.lead_mask else 1)

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
                normalize: str = "none", lead_sets: Sequence[tuple[str, Sequence[str]]] | None = None) -> "Pipeline":
        """The standard model input: plausible mV, 12 standard leads, resampled, filtered, fixed length.

        By default only baseline wander is removed (0.5 Hz high-pass) and amplitudes stay in mV: absolute voltage
        carries diagnostic information (hypertrophy, low voltage), so no per-lead z-scoring. ``lead_sets``
        (``(name, leads)`` pairs) reads any of those sets with lead-presence channels (:class:`LeadSetMask`)
        instead of requiring every lead.
        """
        reorder = (ReorderLeads(tuple(leads)) if lead_sets is None
                   else LeadSetMask(tuple(leads), tuple((n, tuple(s)) for n, s in lead_sets)))
        steps: list[Step] = [CheckUnits(), reorder, Resample(float(fs))]
        if bandpass is not None and (bandpass[0] or bandpass[1]):
            steps.append(Bandpass(bandpass[0], bandpass[1]))
        if notch:
            steps.append(Notch(float(notch)))
        steps.append(CropOrPad(float(seconds)))
        if normalize != "none":
            steps.append(Normalize(normalize))
        return cls(tuple(steps))
