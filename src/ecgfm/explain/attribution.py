"""Which parts of an ECG drive a model's prediction: attributions per lead and per sample, via Captum.

Two methods, both computed on the model's input (the ECG after the model's own preprocessing: its sampling rate,
filter and length) and through the whole prediction path (sliding windows and their aggregation, every ensemble
member), so they explain the record-level logit that :class:`~ecgfm.Predictor` turns into a probability:

- ``"integrated-gradients"`` (Sundararajan et al. 2017, ``captum.attr.IntegratedGradients``): each sample's share of
  the logit's change from a flat 0-mV ECG to this one. The shares add up to that change (completeness; the gap is
  reported as ``convergence_delta``). Summed per lead they say which leads carry the finding.
- ``"lead-occlusion"`` (``captum.attr.FeatureAblation``, one feature per lead): how much the logit drops when one
  lead is replaced by a flat line, all else unchanged. Coarser, no gradients, easy to read.

The reference ECG is a flat 0-mV line: after the 0.5-Hz high-pass the isoelectric baseline is 0 mV, so the flat line
is "no cardiac activity", the usual reference for ECG attributions. A model that reads lead sets (the shipped
default) is explained on the leads the record has: the flat line lies on those leads, with their presence channels
as recorded, and absent leads appear nowhere.

Example::

    from ecgfm.explain import explain
    result = explain("records100/00000/00001_lr.hea")          # the shipped model, its positive findings
    result["NORM"].top_leads()                                  # the leads pushing hardest towards "normal ECG"
    result.plot("NORM").savefig("norm.png")
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from ecgfm.ecg import ECG
from ecgfm.files import atomic_write, atomic_write_text
from scipy.special import expit

from ecgfm.inference.predictor import Predictor

METHODS = ("integrated-gradients", "lead-occlusion")
FIGURE_FORMATS = ("png", "svg", "pdf")
#: How many labels ``explain`` explains by default (the most probable findings).
DEFAULT_MAX_LABELS = 3
#: Integration steps of integrated gradients (Gauss-Legendre): the completeness gap shrinks with more steps, but not
#: steadily (windows scored by their maximum and ReLUs make the path integrand piecewise); ``benchmarks/explain.py``
#: measures it on real records. The cost grows linearly with the steps.
DEFAULT_STEPS = 64
#: Inputs per forward/backward pass (bounds memory: each input passes every window of every ensemble member).
DEFAULT_INTERNAL_BATCH = 16

ModelInput = Union[Predictor, str, os.PathLike, None]


@dataclass(frozen=True)
class LabelExplanation:
    """One label's explanation: the attribution map (leads x samples, logit units) and its per-lead sums."""

    label: str
    description: str
    probability: float
    logit: float
    baseline_logit: float  # the logit of the flat 0-mV reference ECG
    attribution: np.ndarray = field(repr=False)  # (leads, samples) float32, model-input space
    leads: tuple[str, ...] = ()
    convergence_delta: float | None = None  # integrated gradients: sum(attribution) - (logit - baseline_logit)
    temporal: bool = True  # False for lead occlusion: one value per lead, no resolution in time

    @property
    def lead_contribution(self) -> dict[str, float]:
        """Signed logit contribution of each lead: positive leads push towards the label, negative ones against."""
        return {lead: float(v) for lead, v in zip(self.leads, self.attribution.sum(axis=1))}

    def top_leads(self, n: int = 3) -> list[str]:
        """The ``n`` leads that push hardest towards the label (largest positive contribution first)."""
        contribution = self.lead_contribution
        return sorted(contribution, key=lambda lead: -contribution[lead])[:n]

    def segments(self, fs: float, n: int = 3, seconds: float = 0.4) -> list[dict[str, float]]:
        """The ``n`` non-overlapping ``seconds``-long stretches with the largest positive attribution (all leads
        summed), as ``{"start_s", "end_s", "contribution"}``, strongest first: where in time the finding sits."""
        width = max(int(round(seconds * fs)), 1)
        if not self.temporal:
            return []
        over_time = self.attribution.sum(axis=0).astype(np.float64)
        if over_time.size < width:
            return []
        window_sums = np.convolve(over_time, np.ones(width), mode="valid")
        found: list[dict[str, float]] = []
        taken = np.zeros(window_sums.size, dtype=bool)
        for start in np.argsort(-window_sums):
            if len(found) == n or window_sums[start] <= 0:
                break
            if taken[start]:
                continue
            found.append({"start_s": float(start / fs), "end_s": float((start + width) / fs),
                          "contribution": float(window_sums[start])})
            taken[max(start - width + 1, 0):start + width] = True
        return found

    def to_dict(self, fs: float) -> dict[str, Any]:
        """JSON-ready summary (no arrays): probability, logits, lead contributions, top leads and segments."""
        return {"label": self.label, "description": self.description, "probability": self.probability,
                "logit": self.logit, "baseline_logit": self.baseline_logit,
                "convergence_delta": self.convergence_delta, "lead_contribution": self.lead_contribution,
                "top_leads": self.top_leads(), "segments": self.segments(fs)}


@dataclass(frozen=True)
class Explanation:
    """Explanations of one ECG's predictions: the model input they refer to and one :class:`LabelExplanation` per
    explained label (index by label code: ``explanation["AFIB"]``)."""

    record_id: str | None
    source: str | None
    method: str
    fs: float
    leads: tuple[str, ...]
    signal: np.ndarray = field(repr=False)  # the preprocessed model input (leads, samples), mV
    labels: tuple[LabelExplanation, ...] = ()
    steps: int | None = None  # integrated-gradients steps

    def __getitem__(self, label: str) -> LabelExplanation:
        for item in self.labels:
            if item.label == label:
                return item
        raise KeyError(f"{label!r} was not explained; explained: {', '.join(i.label for i in self.labels)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary of every explained label (``ecgfm explain`` writes this)."""
        return {"record_id": self.record_id, "source": self.source, "method": self.method, "steps": self.steps,
                "fs": self.fs, "leads": list(self.leads), "labels": [item.to_dict(self.fs) for item in self.labels]}

    def write(self, folder: str | os.PathLike, stem: str | None = None, figure_format: str = "png",
              arrays: bool = False, dpi: int = 110) -> list[Path]:
        """Write a figure per explained label (``<stem>_<label>.png``), the JSON summary (``<stem>.json``) and, with
        ``arrays``, the model input and attribution maps (``<stem>.npz``: signal, attribution[labels, leads,
        samples], labels, leads, fs). Each file is written under a temporary name and renamed, so an interrupted run
        leaves no half-written file. Returns the paths written."""
        if figure_format not in FIGURE_FORMATS:
            raise ValueError(f"unknown figure format {figure_format!r}; choose one of {', '.join(FIGURE_FORMATS)}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = safe_stem(stem or self.record_id or "ecg")
        written = []
        for item in self.labels:
            path = folder / f"{stem}_{safe_stem(item.label)}.{figure_format}"
            figure = self.plot(item.label)
            written.append(atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format=figure_format)))
        written.append(atomic_write_text(folder / f"{stem}.json", json.dumps(self.to_dict(), indent=1) + "\n"))
        if arrays:
            def write_npz(tmp: str) -> None:
                with open(tmp, "wb") as fh:  # a file object: np.savez would append .npz to the name
                    np.savez_compressed(fh, signal=self.signal, labels=np.array([i.label for i in self.labels]),
                                        attribution=np.stack([i.attribution for i in self.labels]),
                                        leads=np.array(self.leads), fs=self.fs)

            written.append(atomic_write(folder / f"{stem}.npz", write_npz))
        return written

    def plot(self, label: str | None = None, **kwargs: Any):
        """A 12-lead figure of the model input shaded by one label's attribution (the first explained by default);
        see :func:`ecgfm.plotting.ecg.plot_ecg`."""
        from ecgfm.plotting.ecg import plot_explanation

        return plot_explanation(self, label or self.labels[0].label, **kwargs)


def explain(ecg_or_path: ECG | str | os.PathLike, model: ModelInput = None, labels: Sequence[str] | None = None,
            method: str = "integrated-gradients", steps: int = DEFAULT_STEPS,
            max_labels: int = DEFAULT_MAX_LABELS, internal_batch_size: int = DEFAULT_INTERNAL_BATCH) -> Explanation:
    """Explain a model's predictions for one ECG.

    Args:
        ecg_or_path: an :class:`~ecgfm.ECG` or a file in any format ``ecgfm.read`` reads.
        model: a :class:`~ecgfm.Predictor` (PyTorch backend), a model folder / checkpoint, or ``None`` for the
            shipped foundation model.
        labels: label codes to explain; by default the positive findings at the model's thresholds (at most
            ``max_labels``, most probable first), or the single most probable label when there is none.
        method: ``"integrated-gradients"`` or ``"lead-occlusion"`` (see the module docstring).
        steps: integrated-gradients steps (more: smaller completeness gap, proportionally slower).

    Raises:
        ECGReadError: the file cannot be read or preprocessed (names the file and the reason).
        ValueError: an unknown method or label, or a predictor without a PyTorch backend.
    """
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    predictor = _as_predictor(model)
    module = _torch_module(predictor)
    loaded = predictor.preprocess(ecg_or_path)
    array, record_id, source = loaded.array, loaded.record_id, loaded.source
    logits = predictor.record_logits([array])[0]  # the logits `ecgfm predict` turns into probabilities
    probabilities = expit(logits)
    chosen = _choose_labels(predictor, probabilities, labels, max_labels)
    targets = [predictor.labels.index(label) for label in chosen]
    leads = predictor.pipeline.leads or tuple(f"lead{i}" for i in range(array.shape[0]))
    if predictor.pipeline.lead_mask:  # explain the leads read, with the presence channels held as they are
        module, array, leads = _leads_read(module, array, leads)
    attributions, deltas, baseline_logits = _attribute(module, array, targets, method, steps, internal_batch_size)
    items = tuple(
        LabelExplanation(label=label, description=predictor.descriptions[label],
                         probability=float(probabilities[target]), logit=float(logits[target]),
                         baseline_logit=float(baseline_logits[k]), attribution=attributions[k], leads=tuple(leads),
                         convergence_delta=None if deltas is None else float(deltas[k]),
                         temporal=method == "integrated-gradients")
        for k, (label, target) in enumerate(zip(chosen, targets)))
    return Explanation(record_id=record_id, source=source, method=method, fs=float(predictor.pipeline.fs or 0.0),
                       leads=tuple(leads), signal=array, labels=items,
                       steps=steps if method == "integrated-gradients" else None)


def safe_stem(text: str) -> str:
    """A file-name-safe version of a record id or label code (``LAO/LAE`` -> ``LAO-LAE``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "ecg"


def _as_predictor(model: ModelInput) -> Predictor:
    if isinstance(model, Predictor):
        return model
    return Predictor.from_pretrained(model)


def _torch_module(predictor: Predictor):
    """The predictor's differentiable record-level module (segments, windows and aggregation included)."""
    from ecgfm.models.windowing import RecordModel

    model = getattr(predictor.backend, "model", None)
    if model is None:
        raise ValueError(f"explanations need gradients, so a PyTorch backend; this predictor uses "
                         f"{getattr(predictor.backend, 'name', type(predictor.backend).__name__)!r} "
                         "(load it with Predictor.from_pretrained(..., backend='torch'))")
    return RecordModel(model).to(predictor.backend.device).eval()


def _leads_read(module: nn.Module, array: np.ndarray, leads: Sequence[str]):
    """For a model with lead-presence channels (``Pipeline.lead_mask``): a module taking only the leads the record
    was read with (it adds the record's own presence channels), those leads' rows of ``array``, and their names.

    Attributing the presence channels too would make the reference "no lead recorded" rather than "a flat ECG on the
    same leads", and would report leads the record does not have.
    """
    n = len(leads)
    present = np.flatnonzero(array[n:, 0] > 0.5)
    device = next(module.parameters()).device
    wrapped = _WithPresence(module, torch.from_numpy(np.array(array[n:], dtype=np.float32)),
                            torch.from_numpy(present))
    return wrapped.to(device).eval(), array[present], tuple(leads[k] for k in present)


class _WithPresence(nn.Module):
    """``module`` on ``(B, leads read, T)``: those leads put back in their rows (the others zero, as the record was
    read), the presence channels appended."""

    def __init__(self, module: nn.Module, presence: torch.Tensor, rows: torch.Tensor):
        super().__init__()
        self.module = module
        self.register_buffer("presence", presence)
        self.register_buffer("rows", rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = x.new_zeros((x.shape[0], self.presence.shape[0], x.shape[2]))
        full[:, self.rows] = x
        return self.module(torch.cat([full, self.presence.to(x.dtype).expand(x.shape[0], -1, -1)], dim=1))


def _choose_labels(predictor: Predictor, probabilities: np.ndarray, labels: Sequence[str] | None,
                   max_labels: int) -> list[str]:
    if labels:
        unknown = [label for label in labels if label not in predictor.labels]
        if unknown:
            raise ValueError(f"the model does not predict {', '.join(map(repr, unknown))}; it predicts "
                             f"{', '.join(predictor.labels)}")
        return list(dict.fromkeys(labels))
    if max_labels < 1:
        raise ValueError(f"max_labels must be >= 1, got {max_labels}")
    thresholds = np.array([predictor.thresholds[label] for label in predictor.labels])
    order = np.argsort(-probabilities)
    positive = [predictor.labels[i] for i in order if probabilities[i] >= thresholds[i]]
    return positive[:max_labels] or [predictor.labels[int(order[0])]]


def _attribute(module, array: np.ndarray, targets: list[int], method: str, steps: int, internal_batch_size: int):
    """Attributions ``(targets, leads, samples)``, IG convergence deltas (or None) and the flat ECG's logits."""
    from captum.attr import FeatureAblation, IntegratedGradients

    module = module.eval()
    device = next(module.parameters()).device
    x = torch.from_numpy(np.array(array, dtype=np.float32))[None].to(device)
    inputs = x.expand(len(targets), *x.shape[1:]).contiguous()  # one row per explained label
    baselines = torch.zeros_like(inputs)
    with torch.no_grad():
        baseline_logits = module(torch.zeros_like(x))[0, targets].cpu().numpy()
    if method == "integrated-gradients":
        attributions, deltas = IntegratedGradients(module).attribute(
            inputs, baselines=baselines, target=targets, n_steps=steps, method="gausslegendre",
            internal_batch_size=max(internal_batch_size, 1), return_convergence_delta=True)
        deltas = deltas.detach().cpu().numpy()
    else:
        lead_mask = torch.arange(inputs.shape[1], device=device)[None, :, None].expand_as(inputs)
        with torch.no_grad():
            attributions = FeatureAblation(module).attribute(inputs, baselines=baselines, target=targets,
                                                             feature_mask=lead_mask)
        # FeatureAblation gives every sample of a lead the lead's whole logit drop; spread it over the lead's
        # samples so that, as for integrated gradients, a lead's attributions sum to its contribution.
        attributions = attributions / inputs.shape[2]
        deltas = None
    return attributions.detach().cpu().numpy().astype(np.float32), deltas, baseline_logits
