"""What prediction returns: a :class:`Prediction` per ECG (with its :class:`Finding` list) or a :class:`Failure`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Finding:
    """One positive finding: the label code, its plain-language description, probability and the threshold crossed."""

    label: str
    description: str
    probability: float
    threshold: float

    def __str__(self) -> str:
        return f"{self.label} ({self.description}) {self.probability:.2f}"


@dataclass(frozen=True)
class Prediction:
    """The model's output for one ECG: every label's probability, the positive findings (most likely first), and
    how the record was read (its duration, and notes such as padding of a record shorter than the input)."""

    record_id: str | None
    source: str | None
    probabilities: dict[str, float]
    findings: list[Finding]
    duration_s: float | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Nested JSON-ready form (the ``/predict`` response and the ``.json`` output rows)."""
        return {"record_id": self.record_id, "source": self.source, "duration_s": self.duration_s,
                "notes": list(self.notes), "probabilities": dict(self.probabilities),
                "findings": [vars(f).copy() for f in self.findings]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Prediction":
        """Inverse of :meth:`to_dict`."""
        return cls(data["record_id"], data["source"], dict(data["probabilities"]),
                   [Finding(**f) for f in data["findings"]], data.get("duration_s"), tuple(data.get("notes", ())))

    def to_row(self) -> dict[str, Any]:
        """Flat table row: ids, one probability column per label, and the findings spelled out."""
        return {"record_id": self.record_id, "source": self.source, "duration_s": self.duration_s,
                "notes": "; ".join(self.notes), **self.probabilities, "n_findings": len(self.findings),
                "findings": "; ".join(str(f) for f in self.findings)}


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, with the reason (the file is named in ``source``)."""

    source: str
    reason: str


@dataclass(frozen=True)
class Loaded:
    """One input read and preprocessed: the model input (whole record, any length) and where it came from."""

    array: np.ndarray
    record_id: str | None
    source: str | None
    notes: tuple[str, ...] = ()
