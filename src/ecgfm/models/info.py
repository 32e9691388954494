"""``ModelInfo``: everything needed to rebuild and correctly use a trained model, stored beside its weights."""
from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from ecgfm.leads import STANDARD_LEADS
from ecgfm.version import __version__

#: Version of the ``ModelInfo`` layout written into every checkpoint / config.json.
INFO_FORMAT_VERSION = 1


def _version() -> str:
    return __version__


@dataclass
class ModelInfo:
    """Self-description of a model: architecture, labels, input contract, preprocessing, thresholds, provenance.

    Attributes:
        arch: registered architecture name (``ecgfm.models.list_models()``).
        arch_kwargs: keyword arguments given to ``ecgfm.models.create`` (JSON values).
        labels: output label codes, one per logit, in logit order (e.g. PTB-XL SCP statements ``"NORM"``, ``"IMI"``).
        label_descriptions: human-readable description per label code.
        leads: input lead order (canonical names, :data:`ecgfm.leads.STANDARD_LEADS` by default).
        lead_mask: whether the input carries one lead-presence channel per lead after the leads (the preprocessing's
            ``lead_set_mask`` step: 1 = recorded or derived, 0 = absent), so the network has ``2 * len(leads)``
            input channels (:attr:`in_leads`); ``False`` for models written before lead sets existed.
        fs: sampling rate (Hz) the model expects; inputs are resampled to it by ``preprocess``.
        window: samples per model input window (the training crop); ``None`` means whole records.
        stride: step (samples) between test-time sliding windows; predictions aggregate over windows.
        aggregate: how window logits combine into a record prediction: ``"max"`` or ``"mean"``.
        preprocess: the preprocessing spec (``Preprocess.to_dict()``) applied before the model.
        thresholds: per-label decision thresholds on the probability scale (filled in by evaluation).
        reading: how records of any length are read: ``input_seconds`` (the model's input; longer records are cut
            into such segments every ``stride_seconds`` over their whole length) and ``aggregate`` (label ->
            ``"max"`` or ``"mean"`` of the segment logits). Empty: the input length of the preprocessing's
            ``crop_or_pad``, half-input strides, and :func:`ecgfm.labels.ptbxl.segment_aggregate` per label.
        training: the training configuration (``TrainConfig`` as a dict) and run facts (epochs run, best epoch).
        data: description of the training data (dataset, version, task, folds, counts, held-out labels).
        metrics: headline metrics (e.g. ``{"val_macro_auc": 0.93}``) with the split they were measured on.
        created / ecgfm_version: provenance; ``extra`` keeps unknown keys from newer versions.
    """

    arch: str
    labels: list[str]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    label_descriptions: dict[str, str] = field(default_factory=dict)
    leads: list[str] = field(default_factory=lambda: list(STANDARD_LEADS))
    lead_mask: bool = False
    fs: float | None = None
    window: int | None = None
    stride: int | None = None
    aggregate: str = "max"
    preprocess: dict[str, Any] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    reading: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    ecgfm_version: str = field(default_factory=_version)
    format_version: int = INFO_FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = [str(label) for label in self.labels]
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("ModelInfo.labels has duplicates")
        if self.aggregate not in ("max", "mean"):
            raise ValueError(f"aggregate must be 'max' or 'mean', got {self.aggregate!r}")
        unknown = set(self.thresholds) - set(self.labels)
        if unknown:
            raise ValueError(f"thresholds for labels the model does not predict: {sorted(unknown)}")
        masked = any(step.get("name") == "lead_set_mask" for step in self.preprocess.get("steps", ()))
        if self.preprocess and masked != self.lead_mask:
            raise ValueError(f"lead_mask={self.lead_mask} but the preprocessing {'appends' if masked else 'has no'} "
                             "lead-presence channels")

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def in_leads(self) -> int:
        """Input channels of the network: the leads, and as many presence channels with ``lead_mask``."""
        return len(self.leads) * (2 if self.lead_mask else 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict (the ``config.json`` of a saved model)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelInfo":
        """Inverse of :meth:`to_dict`; keys this version does not know are kept in ``extra``."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        if "arch" not in kwargs or "labels" not in kwargs:
            raise ValueError("model info needs at least 'arch' and 'labels'")
        kwargs["extra"] = {**kwargs.get("extra", {}), **extra}
        return cls(**kwargs)

    @classmethod
    def from_model(cls, model, labels, **kwargs: Any) -> "ModelInfo":
        """Info for a model built by :func:`ecgfm.models.create` (arch and kwargs are read from the model)."""
        if not getattr(model, "arch_name", ""):
            raise ValueError("model was not built by ecgfm.models.create(); its architecture is unknown")
        labels = list(labels)
        if len(labels) != model.num_labels:
            raise ValueError(f"{len(labels)} label names for a model with {model.num_labels} outputs")
        return cls(arch=model.arch_name, arch_kwargs=dict(model.arch_kwargs), labels=labels, **kwargs)

    def replace(self, **changes: Any) -> "ModelInfo":
        return dataclasses.replace(self, **changes)

    def segment_rule(self) -> tuple[int | None, int | None, list[str]]:
        """``(input samples, stride samples, aggregate per label)`` for records of any length (see ``reading``);
        ``(None, None, ...)`` for a model whose preprocessing fixes no input length (records are taken whole)."""
        from ecgfm.labels.ptbxl import segment_aggregate

        reading = self.reading or {}
        seconds = reading.get("input_seconds") or self.pipeline().input_seconds
        how = [reading.get("aggregate", {}).get(label) or segment_aggregate(label) for label in self.labels]
        if not seconds or not self.fs:
            return None, None, how
        stride = reading.get("stride_seconds") or seconds / 2
        return int(round(seconds * self.fs)), max(1, int(round(stride * self.fs))), how

    def pipeline(self):
        """The preprocessing the model was trained with (:class:`ecgfm.signal.Pipeline`): the one rule for
        turning a raw ECG into this model's input. A model without one cannot be used on raw ECGs."""
        from ecgfm.signal import Pipeline

        if not self.preprocess:
            raise ValueError(f"model {self.arch!r} stores no preprocessing (info.preprocess); it cannot be applied "
                             "to raw ECGs")
        return Pipeline.from_dict(self.preprocess)
