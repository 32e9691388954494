"""Knowledge distillation: train one network on a teacher's soft predictions blended with the labels.

The teacher (by default the shipped ensemble, ``ecgfm.models.load("pretrained")``) scores every record of the
training data once, reading each record as its own preprocessing and windows say (:func:`teacher_logits`); the
logits are cached under ``$ECGFM_CACHE_DIR/teacher/``, keyed by the teacher's weights (SHA-256), its preprocessing,
the record ids and a digest of their signals, so a second run (or a resumed one) reads them back. The training split's
targets then become ``alpha * label + (1 - alpha) * sigmoid(teacher logit / T)`` (:func:`soft_targets`; Hinton et al.
2015, with the per-label sigmoid of multi-label outputs); validation and test keep their true labels, so model
choice (best epoch, thresholds) is made on them.

Binary cross-entropy takes soft targets as they are. The trainer's other uses of the training labels stay sensible:
``init_head_bias`` starts each bias at the log-odds of the mean target (the blend of the prevalence and the teacher's
mean probability, which are close on the data the teacher was trained on), and ``class_weights`` count expected
positives (the sum of the targets).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit
from torch import nn

from ecgfm.config import cache_dir
from ecgfm.datasets import LabelledSet
from ecgfm.files import atomic_write
from ecgfm.models import load
from ecgfm.models.hub import checkpoint_state
from ecgfm.models.runner import TorchRunner, record_logits
from ecgfm.signal import Pipeline
from ecgfm.signal.pipeline import LeadSetMask, ReorderLeads


@dataclass(frozen=True)
class Distillation:
    """How a recipe distils: the ``teacher`` (a shipped name or a model path), the weight ``alpha`` of the true
    labels in the training targets (0: the teacher alone), and the ``temperature`` T dividing teacher logits."""

    teacher: str = "pretrained"
    alpha: float = 0.5
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"distillation alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0:
            raise ValueError(f"distillation temperature must be > 0, got {self.temperature}")


def soft_targets(Y: np.ndarray, logits: np.ndarray, alpha: float, temperature: float = 1.0) -> np.ndarray:
    """``alpha * Y + (1 - alpha) * sigmoid(logits / temperature)``; where a label is unknown (NaN), the teacher's
    probability alone."""
    teacher = expit(np.asarray(logits, dtype=np.float64) / temperature)
    Y = np.asarray(Y, dtype=np.float64)
    blended = np.where(np.isnan(Y), teacher, alpha * Y + (1 - alpha) * teacher)
    return blended.astype(np.float32)


def weights_digest(model: nn.Module) -> str:
    """SHA-256 identifying a model's weights: the one its saved folder recorded, else computed from its tensors."""
    return model.info.extra.get("weights_sha256") or checkpoint_state(model)["sha256"]


def teacher_input(data: LabelledSet, teacher_pipeline: Pipeline) -> int:
    """How many leading channels of ``data``'s signals are the teacher's input: all of them when both went
    through the same preprocessing; the leads alone when ``data`` only adds lead-presence channels to it (every
    record must then hold every lead, as PTB-XL's do). ``ValueError`` otherwise."""
    mine = data.pipeline()
    if mine.to_dict() == teacher_pipeline.to_dict():
        return mine.channels or int(data.signal(0).shape[0])
    plain = Pipeline(tuple(ReorderLeads(step.leads) if isinstance(step, LeadSetMask) else step for step in mine.steps))
    if mine.lead_mask and plain.to_dict() == teacher_pipeline.to_dict():
        return len(mine.leads)
    raise ValueError("the teacher was trained with another preprocessing than the data's; load the data with the "
                     f"teacher's pipeline ({teacher_pipeline.to_dict()}) or a lead-set version of it")


def _signals(data: LabelledSet, channels: int, full: int):
    for i in range(len(data)):
        x = data.signal(i)
        if channels < x.shape[0] and not np.all(x[channels:] == 1):
            raise ValueError(f"record {data.ids[i]} lacks leads; the teacher reads complete records only")
        yield x[:channels] if channels < full else x


def _cache_key(teacher: nn.Module, data: LabelledSet, channels: int) -> str:
    digest = hashlib.sha256()
    for i in range(len(data)):
        digest.update(np.ascontiguousarray(data.signal(i)[:channels]).tobytes())
    spec = [weights_digest(teacher), teacher.info.labels, teacher.info.preprocess, teacher.info.reading,
            data.ids.tolist(), digest.hexdigest()]
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def teacher_logits(teacher: nn.Module, data: LabelledSet, batch_size: int = 64, cache: bool = True,
                   num_threads: int | None = None) -> np.ndarray:
    """The teacher's logits ``(N, teacher labels)`` for every record of ``data``, each read over its whole length
    by the teacher's reading rule (``info.segment_rule()``), cached on disk (see the module docstring)."""
    channels = teacher_input(data, teacher.info.pipeline())
    full = int(data.signal(0).shape[0])
    path = cache_dir() / "teacher" / f"logits-{_cache_key(teacher, data, channels)}.npz"
    if cache and path.exists():
        with np.load(path) as stored:
            if stored["ids"].tolist() == data.ids.tolist():
                return stored["logits"]
    runner = TorchRunner(teacher, num_threads=num_threads)
    input_samples, stride, how = teacher.info.segment_rule()
    rows = list(record_logits(runner, _signals(data, channels, full), input_samples, stride, how, batch_size))
    logits = np.stack(rows).astype(np.float32)
    if cache:
        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a path
                np.savez(fh, logits=logits, ids=data.ids, labels=np.array(teacher.info.labels))

        atomic_write(path, write)
    return logits


def distil(data: LabelledSet, distillation: Distillation, teacher: nn.Module | None = None,
           num_threads: int | None = None) -> LabelledSet:
    """``data`` with its training split's targets blended with the teacher's probabilities (labels the teacher
    does not predict keep their true values); validation and test keep their true labels.

    Refuses a teacher that predicts a label ``data`` holds out (``source["excluded_labels"]``): the student would
    learn it through the teacher.
    """
    teacher = teacher if teacher is not None else load(distillation.teacher)
    leaked = sorted(set(data.source.get("excluded_labels", ())) & set(teacher.info.labels))
    if leaked:
        raise ValueError(f"the teacher {distillation.teacher!r} predicts the held-out labels {leaked}; pre-train a "
                         "teacher without them (ecgfm pretrain --recipe default8 --exclude-labels ...) and distil "
                         "from it (--teacher)")
    logits = teacher_logits(teacher, data, num_threads=num_threads)
    shared = [j for j, label in enumerate(data.labels) if label in teacher.info.labels]
    columns = [teacher.info.labels.index(data.labels[j]) for j in shared]
    train = data.split == "train"
    Y = data.Y.copy()
    Y[np.ix_(train, shared)] = soft_targets(data.Y[np.ix_(train, shared)], logits[np.ix_(train, columns)],
                                            distillation.alpha, distillation.temperature)
    described: dict[str, Any] = {**dataclasses.asdict(distillation), "teacher_sha256": weights_digest(teacher),
                                 "teacher_labels": len(columns), "student_labels": len(data.labels)}
    return dataclasses.replace(data, Y=Y, source={**data.source, "distillation": described})
