"""Response schemas of the HTTP service: they document the API in ``/docs``."""
from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, Field


class FindingOut(BaseModel):
    label: str = Field(description="Label code, e.g. an SCP-ECG statement such as 'AFIB'.")
    description: str = Field(description="Plain-language meaning of the label.")
    probability: float
    threshold: float = Field(description="The decision threshold for this label (calibrated probability scale).")
    rule: str = Field("", description="The rule the threshold follows, e.g. f1, youden or given.")


class QualityOut(BaseModel):
    ok: bool = Field(description="No signal-quality check failed.")
    problems: list[str] = Field(default_factory=list, description="The failed checks, in plain language.")
    heart_rate: float | None = Field(None, description="Ventricular rate (bpm) from the detected beats.")


class LeadsOut(BaseModel):
    lead_set: str = Field(description="The model's lead set the record was read as, e.g. '12-lead', 'limb6', 'I'.")
    used: list[str] = Field(description="The recorded leads the model read.")
    derived: list[str] = Field(default_factory=list, description="Limb leads derived from I and II.")
    ignored: list[str] = Field(default_factory=list, description="Recorded leads outside the set, not read.")


class PredictionOut(BaseModel):
    record_id: str | None
    source: str | None = Field(description="The uploaded file the ECG was read from.")
    duration_s: float | None = Field(None, description="Length of the record (s); all of it is read.")
    notes: list[str] = Field(default_factory=list, description="How the record was read, e.g. padding of a record "
                                                               "shorter than the model's input.")
    quality: QualityOut | None = Field(None, description="The record's signal quality as recorded.")
    abstained: str | None = Field(None, description="Why findings were withheld (on_poor_quality=abstain).")
    probabilities: dict[str, float] = Field(description="Calibrated probability of every label.")
    raw_probabilities: dict[str, float] | None = Field(None, description="The model's uncalibrated sigmoid outputs.")
    leads: LeadsOut | None = Field(None, description="Which leads were read, for a model that reads lead sets.")
    findings: list[FindingOut] = Field(description="Labels at or above their threshold, most likely first.")


class SegmentOut(BaseModel):
    start_s: float
    end_s: float
    contribution: float = Field(description="Summed attribution (logit units) of all leads in this stretch.")


class LabelExplanationOut(BaseModel):
    label: str
    description: str
    probability: float
    logit: float
    baseline_logit: float = Field(description="The logit of a flat 0-mV ECG, the reference of the attributions.")
    convergence_delta: float | None = Field(description="Integrated gradients: sum of attributions minus "
                                                        "(logit - baseline_logit); small when exact.")
    lead_contribution: dict[str, float] = Field(description="Each lead's signed contribution to the logit.")
    top_leads: list[str] = Field(description="The leads pushing hardest towards the label.")
    segments: list[SegmentOut] = Field(description="The 0.4-s stretches with the largest positive attribution.")
    figure: str | None = Field(None, description="With figure=true: the 12-lead figure as a PNG data URI.")


class ExplanationOut(BaseModel):
    record_id: str | None
    source: str | None
    method: str
    steps: int | None
    fs: float
    leads: list[str]
    labels: list[LabelExplanationOut]


class FailureOut(BaseModel):
    source: str
    reason: str


class BatchOut(BaseModel):
    predictions: list[PredictionOut]
    failures: list[FailureOut]


class LabelOut(BaseModel):
    label: str
    description: str
    threshold: float


class HealthOut(BaseModel):
    status: str
    model: str
    labels: int
    backend: str


# -- the model card as the service shows it ---------------------------------------------------------------------------

#: An absolute path inside a string (POSIX, ``~``, Windows drive or ``file://``), starting at a word boundary so label
#: codes such as ``LAO/LAE`` and URLs (``https://...``) are left alone.
_ABSOLUTE_PATH = re.compile(r"""(?:(?<=^)|(?<=[\s=(\[{'",;]))(?:file://)?(?:~|[A-Za-z]:)?[\\/][^\s'",;()\[\]{}]*""")


def _base_name(match: re.Match) -> str:
    parts = [part for part in re.split(r"[\\/]", match.group(0)) if part]
    return parts[-1] if parts else ""


def without_local_paths(value: Any) -> Any:
    """``value`` (JSON-like) with every absolute path reduced to its base name (``/data/ptbxl`` -> ``ptbxl``) and
    non-finite numbers as ``None`` (valid JSON): the training machine's folders are nobody's business."""
    if isinstance(value, dict):
        return {without_local_paths(key): without_local_paths(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_local_paths(item) for item in value]
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(_base_name, value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
