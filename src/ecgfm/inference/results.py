"""What prediction returns: a :class:`Prediction` per ECG (with its :class:`Finding` list) or a :class:`Failure`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Finding:
    """One positive finding: the label code, its plain-language description, its (calibrated) probability, the
    threshold it crossed and the rule that threshold follows (e.g. ``f1``, ``youden``, ``given``)."""

    label: str
    description: str
    probability: float
    threshold: float
    rule: str = ""

    def __str__(self) -> str:
        return f"{self.label} ({self.description}) {self.probability:.2f}"


@dataclass(frozen=True)
class Prediction:
    """The model's output for one ECG: every label's (calibrated) probability, the positive findings (most likely
    first), how the record was read (its duration, notes such as padding of a record shorter than the input), the
    record's signal quality (``{"ok": bool, "problems": [...]}``), whether findings were withheld and why
    (``abstained``), the uncalibrated sigmoid outputs (``raw_probabilities``) and, for a model reading lead sets, the
    leads it read (``leads``: the ``lead_set``, the recorded leads ``used``, the limb leads ``derived`` from I and
    II, the recorded leads ``ignored``)."""

    record_id: str | None
    source: str | None
    probabilities: dict[str, float]
    findings: list[Finding]
    duration_s: float | None = None
    notes: tuple[str, ...] = ()
    quality: dict[str, Any] | None = None
    abstained: str | None = None
    raw_probabilities: dict[str, float] | None = None
    leads: dict[str, Any] | None = None

    @property
    def quality_ok(self) -> bool | None:
        return None if self.quality is None else bool(self.quality.get("ok"))

    def to_dict(self) -> dict[str, Any]:
        """Nested JSON-ready form (the ``/predict`` response and the ``.json`` output rows)."""
        return {"record_id": self.record_id, "source": self.source, "duration_s": self.duration_s,
                "notes": list(self.notes), "quality": self.quality, "abstained": self.abstained,
                "probabilities": dict(self.probabilities), "raw_probabilities": self.raw_probabilities,
                "leads": self.leads,
                "findings": [vars(f).copy() for f in self.findings]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Prediction":
        """Inverse of :meth:`to_dict`."""
        return cls(data["record_id"], data["source"], dict(data["probabilities"]),
                   [Finding(**f) for f in data["findings"]], data.get("duration_s"), tuple(data.get("notes", ())),
                   data.get("quality"), data.get("abstained"), data.get("raw_probabilities"),
                   data.get("leads"))

    def to_row(self) -> dict[str, Any]:
        """Flat table row: ids, quality, one (calibrated) probability column per label, and the findings."""
        problems = "; ".join((self.quality or {}).get("problems", []))
        return {"record_id": self.record_id, "source": self.source, "duration_s": self.duration_s,
                "notes": "; ".join(self.notes), "quality": "" if self.quality is None else problems or "ok",
                "abstained": self.abstained or "", **({"lead_set": self.leads["lead_set"]} if self.leads else {}),
                **self.probabilities, "n_findings": len(self.findings),
                "findings": "; ".join(str(f) for f in self.findings)}


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, with the reason (the file is named in ``source``)."""

    source: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    """One input read and preprocessed: the model input (whole record, any length), where it came from, and the
    signal-quality verdict on the record as read, and which of the model's lead sets it was read as (models reading
    lead sets; ``lead_set``, ``used``, ``derived``, ``ignored``)."""

    array: np.ndarray
    record_id: str | None
    source: str | None
    notes: tuple[str, ...] = ()
    quality: dict[str, Any] | None = None
    leads: dict[str, Any] | None = None
