"""Predict findings for ECGs with a trained model, using the model's own preprocessing, labels and thresholds.

A :class:`Predictor` couples a *backend* (a runner: PyTorch, :class:`~ecgfm.models.runner.TorchRunner`, or ONNX
Runtime; a callable mapping a float32 batch ``(B, leads, samples)`` to logits ``(B, labels)``) with the model's
:class:`~ecgfm.models.ModelInfo`. Every input goes through the preprocessing stored with the model, so an ECG in any
supported format at any sampling rate reaches the network exactly as the training data did; a record of any length
is read over its whole length in input-sized segments (``info.reading``), and one shorter than the input is padded
and says so.

Example::

    from ecgfm import Predictor
    predictor = Predictor.from_pretrained()                  # the shipped foundation model
    result = predictor.predict("records100/00000/00001_lr.hea")
    print(result.findings)                                   # positives at the model's thresholds
    report = predictor.predict_many(["ecgs/"], batch_size=64)  # folders, globs, files; failures listed
"""
from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Union

import numpy as np
from scipy.special import expit

from ecgfm.ecg import ECG
from ecgfm.errors import ECGError, ECGReadError, ECGValueError
from ecgfm.io import read
from ecgfm.io.discover import discover_inputs
from ecgfm.leads import DERIVED_LIMB_LEADS, STANDARD_LEADS
from ecgfm.evaluation.calibration import Calibration
from ecgfm.evaluation.ood import load_ood
from ecgfm.inference.operating import DEFAULT_THRESHOLD, ThresholdSpec, lead_set_operating_points, operating_point
from ecgfm.inference.results import Failure, Finding, Loaded, Prediction
from ecgfm.models.runner import TorchRunner, record_logits
from ecgfm.signal import Pipeline
from ecgfm.signal.quality import assess_quality


ECGInput = Union[str, os.PathLike, ECG]


# ----------------------------------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------------------------------

Backend = Callable[[np.ndarray], np.ndarray]


class Predictor:
    """Run a trained model on ECGs: preprocessing, batching, thresholds and plain-language findings.

    Args:
        backend: callable mapping a float32 batch ``(B, leads, samples)`` to logits ``(B, labels)``
            (:class:`ecgfm.models.runner.TorchRunner` or :class:`ecgfm.inference.onnx.OnnxBackend`).
        info: the model's :class:`~ecgfm.models.ModelInfo` (labels, descriptions, thresholds, preprocessing).
        batch_size / num_workers: defaults for :meth:`predict_many`.
    """

    def __init__(self, backend: Backend, info, batch_size: int = 32, num_workers: int = 2,
                 threshold: ThresholdSpec = None, on_poor_quality: str = "flag",
                 folder: str | os.PathLike | None = None):
        self.backend = backend
        self.info = info
        self.input_samples, self.stride, self.segment_how = info.segment_rule()
        self.reader = InputReader(info.pipeline().any_length(), self.input_samples, on_poor_quality)
        self.pipeline = self.reader.pipeline
        self.labels: list[str] = list(info.labels)
        self.descriptions: dict[str, str] = {lab: info.label_descriptions.get(lab, lab) for lab in self.labels}
        self.calibration = Calibration.of(info)
        self.folder = folder
        self.ood = load_ood(folder) if hasattr(backend, "with_features") else None
        point = operating_point(info, threshold, folder)
        self._thresholds, self.rules = point.thresholds, point.rules
        self.lead_set_thresholds = lead_set_operating_points(info) if threshold is None else {}
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)

    @property
    def thresholds(self) -> dict[str, float]:
        """Per-label decision thresholds (calibrated probability scale); assign a dict (any subset of the labels)
        to change them: the labels given then follow the rule ``given``."""
        return self._thresholds

    @thresholds.setter
    def thresholds(self, values: dict[str, float]) -> None:
        unknown = sorted(set(values) - set(self.labels))
        if unknown:
            raise ValueError(f"thresholds for labels the model does not predict: {unknown}")
        changed = {lab for lab in values if float(values[lab]) != self._thresholds.get(lab)}
        self.lead_set_thresholds = {}  # thresholds set by hand apply to every lead set
        self._thresholds = {lab: float(values.get(lab, DEFAULT_THRESHOLD)) for lab in self.labels}
        self.rules = {lab: "given" if lab in changed else rule for lab, rule in self.rules.items()}

    def configured(self, threshold: ThresholdSpec = None, on_poor_quality: str | None = None) -> "Predictor":
        """This predictor (same model, no reloading) with another operating point or quality policy; ``None``
        keeps the current one."""
        other = copy.copy(self)
        if threshold is not None:
            point = operating_point(self.info, threshold, self.folder)
            other._thresholds, other.rules = point.thresholds, point.rules
            other.lead_set_thresholds = {}
        if on_poor_quality is not None:
            other.reader = dataclasses.replace(self.reader, on_poor_quality=on_poor_quality)
        return other

    # -- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, device: str = "cpu",
                        backend: str = "torch", num_threads: int | None = None, channels_last: bool | None = None,
                        **kwargs: Any) -> "Predictor":
        """Load a model (a shipped name, a model folder, a run folder, a ``.pt`` checkpoint or an ``.onnx`` file;
        ``None``: the default shipped model) and wrap it for prediction.

        Args:
            device: torch device for the PyTorch backend (``"auto"``, ``"cpu"``, ``"cuda"``).
            backend: ``"torch"`` or ``"onnx"`` (ONNX Runtime; exported on first use if no ``.onnx`` exists yet).
            num_threads: intra-op threads for the backend (``None`` keeps the library default).
            channels_last: run the PyTorch model's convolutions as 2-D channels-last ones (see
                :class:`~ecgfm.models.runner.TorchRunner`); ``None``: on for CPU when the architecture supports it.
            **kwargs: ``batch_size`` / ``num_workers`` defaults for :meth:`predict_many`; ``threshold`` (``None``:
                the model's own; a rule such as ``"f1"``, ``"youden"``, ``"sens>=0.9"``, ``"ppv>=0.8"`` fitted on the
                model's stored validation records; a number; a JSON/CSV file or mapping of label -> threshold);
                ``on_poor_quality`` (``"flag"``: findings with the quality problems listed; ``"abstain"``: findings
                withheld, with the reason; ``"error"``: the record fails).
        """
        if backend == "torch":
            from ecgfm.models import load
            from ecgfm.training.trainer import resolve_device

            device = str(resolve_device(device))
            model = load(name_or_path, device=device)
            return cls(TorchRunner(model, device, num_threads, channels_last), model.info,
                       folder=getattr(model, "folder", None), **kwargs)
        if backend == "onnx":
            from ecgfm.inference.onnx import OnnxBackend, onnx_model_for

            onnx_path, info = onnx_model_for(name_or_path)
            return cls(OnnxBackend(onnx_path, num_threads=num_threads), info, folder=onnx_path.parent, **kwargs)
        raise ValueError(f"unknown backend {backend!r}; choose 'torch' or 'onnx'")

    # -- one ECG, or arrays, the scikit-learn way --------------------------------------------------------------------

    def preprocess(self, ecg_or_path: ECGInput) -> Loaded:
        """Read (if a path) and preprocess one ECG, keeping its whole length.

        Raises:
            ECGReadError: naming the file and the reason.
        """
        return self.reader.read(ecg_or_path)

    def record_logits(self, arrays: Iterable[np.ndarray]) -> np.ndarray:
        """Logits ``(N, labels)`` of preprocessed records of any length (see :meth:`preprocess`)."""
        rows = list(record_logits(self.backend, arrays, self.input_samples, self.stride, self.segment_how,
                                  self.batch_size))
        return np.stack(rows) if rows else np.zeros((0, len(self.labels)), np.float32)

    def predict_proba(self, X, fs: float | None = None, leads=None) -> np.ndarray:
        """Per-label probabilities ``(N, labels)`` for what :meth:`predict` takes: ECGs, file paths, or raw signals
        ``(N, leads, samples)`` / ``(leads, samples)`` in mV with their rate ``fs`` (and lead names, default the 12
        standard leads). Inputs are preprocessed like every other; any failure raises, naming the input."""
        items = as_ecgs(X, fs, leads)
        raw = expit(self.record_logits(self.preprocess(item).array for item in items))
        return self.calibration.apply(raw).astype(np.float32)

    def predict(self, ecg_or_path: ECGInput) -> Prediction:
        """Predict one ECG (an :class:`~ecgfm.ECG` or a file of any supported format).

        Raises:
            ECGReadError: if the file cannot be read or preprocessed (message names the file and the reason).
        """
        loaded = self.preprocess(ecg_or_path)
        return self._prediction(*self._outputs([loaded.array])[0], loaded)

    def _outputs(self, arrays: Iterable[np.ndarray]) -> list[tuple[np.ndarray, float | None]]:
        """Each record's raw sigmoid outputs and, when the model has an out-of-distribution scorer, the distance of
        its embedding from the training records (computed in the same pass for a single network)."""
        rule = (self.backend, arrays, self.input_samples, self.stride, self.segment_how, self.batch_size)
        if self.ood is None:
            return [(expit(logits), None) for logits in record_logits(*rule)]
        items = list(record_logits(*rule, features=True))
        scores = self.ood.score(np.stack([embedding for _, embedding in items])) if items else []
        return [(expit(logits), float(score)) for (logits, _), score in zip(items, scores)]

    def _prediction(self, raw: np.ndarray, ood_score: float | None, loaded: Loaded) -> Prediction:
        """The prediction from one record's raw sigmoid outputs: calibrated, thresholded, or withheld when the
        quality policy says so (a failed signal-quality check, or a record unlike the training data)."""
        probs = self.calibration.apply(raw[None])[0]
        quality = loaded.quality
        if ood_score is not None and quality is not None:
            unusual = ood_score > self.ood.threshold
            quality = {**quality, "ood_score": round(ood_score, 3), "ood_threshold": round(self.ood.threshold, 3)}
            if unusual:
                quality = {**quality, "ok": False, "problems": quality["problems"] + [
                    f"unlike the training records (out-of-distribution score {ood_score:.1f} > "
                    f"{self.ood.threshold:.1f}, the validation records' {self.ood.quantile:.0%} quantile)"]}
        abstained = None
        if self.reader.on_poor_quality == "abstain" and quality and not quality["ok"]:
            abstained = "poor signal quality: " + "; ".join(quality["problems"])
        thresholds, rules = self._thresholds, self.rules
        if loaded.leads and loaded.leads["lead_set"] in self.lead_set_thresholds:
            point = self.lead_set_thresholds[loaded.leads["lead_set"]]
            thresholds, rules = point.thresholds, point.rules
        findings = [] if abstained else sorted(
            (Finding(lab, self.descriptions[lab], float(p), thresholds[lab], rules[lab])
             for lab, p in zip(self.labels, probs) if p >= thresholds[lab]), key=lambda f: -f.probability)
        duration = loaded.array.shape[-1] / self.pipeline.fs if self.pipeline.fs else None
        return Prediction(loaded.record_id, loaded.source, {lab: float(p) for lab, p in zip(self.labels, probs)},
                          findings, None if duration is None else round(duration, 3), loaded.notes, quality,
                          abstained, {lab: float(p) for lab, p in zip(self.labels, raw)}, loaded.leads)

    # -- many ECGs ----------------------------------------------------------------------------------------------------

    def iter_predict(self, items: Iterable[ECGInput], batch_size: int | None = None, num_workers: int | None = None,
                     loader: str = "thread") -> Iterator[Prediction | Failure]:
        """Yield a :class:`Prediction` or :class:`Failure` per input, in input order.

        With ``num_workers > 0``, reading and preprocessing run in parallel with the model, a few batches ahead (memory
        stays bounded for any number of files), in ``loader="thread"`` threads (the default) or ``loader="process"``
        worker processes (a torch ``DataLoader``). Threads measured as fast or faster in ``benchmarks/predict.py``
        (no start-up or pickling cost; NumPy/SciPy and the model release the GIL for their heavy work); processes
        avoid the GIL entirely and may win with many cores. ``num_workers=0`` reads inline.
        """
        batch_size = max(1, int(batch_size or self.batch_size))
        num_workers = self.num_workers if num_workers is None else int(num_workers)
        slots: list[Loaded | Failure] = []
        seen: set[str | None] = set()
        for loaded in self._load_all(items, num_workers, 2 * batch_size, loader):
            if isinstance(loaded, Loaded) and loaded.record_id in seen:  # two files with one name: say which
                loaded = dataclasses.replace(loaded, record_id=str(loaded.source))
            seen.add(getattr(loaded, "record_id", None))
            slots.append(loaded)
            if sum(not isinstance(s, Failure) for s in slots) >= batch_size:
                yield from self._run_slots(slots)
                slots = []
        if slots:
            yield from self._run_slots(slots)

    def predict_many(self, items: Iterable[ECGInput], batch_size: int | None = None, num_workers: int | None = None,
                     progress: bool = False, loader: str = "thread"):
        """Predict files, folders, glob patterns and :class:`~ecgfm.ECG` objects; failures are collected, not raised."""
        from ecgfm.inference.outputs import PredictionReport

        start = time.perf_counter()
        inputs, failures = expand_items(items)
        report = PredictionReport(failures=list(failures))
        results = self.iter_predict(inputs, batch_size=batch_size, num_workers=num_workers, loader=loader)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(inputs), unit="ECG", desc="predict")
        for result in results:
            (report.failures if isinstance(result, Failure) else report.predictions).append(result)
        report.seconds = time.perf_counter() - start
        return report

    def _load_all(self, items: Iterable[ECGInput], num_workers: int, prefetch: int,
                  loader: str) -> Iterator[Loaded | Failure]:
        """Loaded inputs (or failures) in input order, read inline, by worker processes or by threads."""
        if loader not in ("process", "thread"):
            raise ValueError(f"loader must be 'process' or 'thread', got {loader!r}")
        if num_workers <= 0:
            yield from (self.reader.load(item) for item in items)
        elif loader == "process":
            from torch.utils.data import DataLoader

            dataset = _LoadDataset(list(items), self.reader)
            if not len(dataset):
                return
            yield from DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_as_is,
                                  prefetch_factor=max(2, prefetch // num_workers))
        else:
            with ThreadPoolExecutor(num_workers, thread_name_prefix="ecgfm-load") as pool:
                pending: deque[Future] = deque()
                for item in items:
                    pending.append(pool.submit(self.reader.load, item))
                    if len(pending) >= prefetch:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()

    def _run_slots(self, slots: list[Loaded | Failure]) -> Iterator[Prediction | Failure]:
        """Run the model over the loaded slots and yield results in slot order; an input that breaks the model is
        reported as a failure and the others are still predicted."""
        loaded = [s for s in slots if not isinstance(s, Failure)]
        try:
            outputs = iter(self._outputs(s.array for s in loaded))
        except Exception:  # noqa: BLE001 - isolate the input that breaks the model, below
            outputs = None
        for slot in slots:
            if isinstance(slot, Failure):
                yield slot
            elif outputs is not None:
                yield self._prediction(*next(outputs), slot)
            else:
                yield self._predict_alone(slot)

    def _predict_alone(self, slot: Loaded) -> Prediction | Failure:
        try:
            return self._prediction(*self._outputs([slot.array])[0], slot)
        except Exception as exc:  # noqa: BLE001 - one bad input must not stop a batch; the reason is reported
            return Failure(str(slot.source), f"model failed on this input: {type(exc).__name__}: {exc}")


#: What a predictor does with a record that fails a signal-quality check (``ecgfm.signal.quality``).
QUALITY_POLICIES = ("flag", "abstain", "error")


@dataclass(frozen=True)
class InputReader:
    """How one input becomes a model input: read (if a path), judge its signal quality as recorded, preprocess it
    whole, and note a record shorter than the model's input (it is zero-padded to it). ``on_poor_quality``: what a
    failed quality check does (``flag``: noted in the prediction; ``abstain``: findings withheld; ``error``: the
    record fails); ``assess=False`` skips the quality checks (embeddings)."""

    pipeline: Pipeline
    input_samples: int | None = None
    on_poor_quality: str = "flag"
    assess: bool = True

    def __post_init__(self) -> None:
        if self.on_poor_quality not in QUALITY_POLICIES:
            raise ValueError(f"on_poor_quality must be one of {', '.join(QUALITY_POLICIES)}, got "
                             f"{self.on_poor_quality!r}")

    def read(self, item: ECGInput) -> Loaded:
        """The loaded input; raises ``ECGReadError`` naming the file and the reason."""
        ecg = item if isinstance(item, ECG) else read(item)
        source = ecg.meta.get("source") or (None if isinstance(item, ECG) else str(item))
        record_id = ecg.meta.get("record_id") or (Path(source).stem if source else None)
        try:
            out = self.pipeline(ecg)
            array = self.pipeline.model_input(out)
        except ECGReadError:
            raise
        except (ECGError, ValueError) as exc:  # preprocessing refused the content (units, missing leads, ...)
            raise ECGReadError(source, f"preprocessing failed: {exc}{self._lead_hint(ecg)}") from exc
        leads = None
        if "lead_set" in out.meta:
            leads = {"lead_set": out.meta["lead_set"], "used": out.meta["leads_used"],
                     "derived": out.meta["leads_derived"], "ignored": out.meta["leads_ignored"]}
        expected = STANDARD_LEADS if leads is None else leads["used"] + leads["derived"]
        quality = _quality(ecg, expected) if self.assess else None
        if quality and not quality["ok"] and self.on_poor_quality == "error":
            raise ECGReadError(source, "poor signal quality: " + "; ".join(quality["problems"]))
        notes = ()
        if self.input_samples is not None and array.shape[-1] < self.input_samples and self.pipeline.fs:
            notes = (f"short record: {array.shape[-1] / self.pipeline.fs:.2f} s, zero-padded to the model's "
                     f"{self.input_samples / self.pipeline.fs:g}-s input",)
        return Loaded(array, str(record_id) if record_id is not None else None, source, notes, quality, leads)

    def _lead_hint(self, ecg: ECG) -> str:
        """Where a model needing every lead refuses a record lacking some: which shipped model reads it."""
        derivable = set(DERIVED_LIMB_LEADS) if {"I", "II"} <= set(ecg.leads) else set()
        if self.pipeline.lead_mask or set(self.pipeline.leads or ()) <= set(ecg.leads) | derivable:
            return ""
        return (". The default model, 'anylead', reads 12 leads, the six limb leads, I+II, V1-V6 or lead I alone "
                "(--model anylead, or no --model)")

    def load(self, item: ECGInput) -> Loaded | Failure:
        """:meth:`read`, with any failure returned as a :class:`Failure` (batch jobs report, never stop)."""
        try:
            return self.read(item)
        except ECGError as exc:
            return Failure(_source_of(item), getattr(exc, "reason", None) or str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop a batch; the reason is reported
            return Failure(_source_of(item), f"{type(exc).__name__}: {exc}")


def _quality(ecg: ECG, expected_leads=STANDARD_LEADS) -> dict[str, Any]:
    """The record's signal-quality verdict: ``ok``, the problems in plain language, and the heart rate."""
    report = assess_quality(ecg, expected_leads)  # the verdict alone: to_dict() would serialise every check
    return {"ok": report.ok, "problems": report.problems, "heart_rate": report.heart_rate}


def as_ecgs(X, fs: float | None = None, leads=None) -> list[ECGInput]:
    """What :meth:`Predictor.predict_proba` takes, as a list of ECGs or paths: one ECG or path, a list of them, or
    raw signals in mV with their rate."""
    if isinstance(X, (str, os.PathLike, ECG)):
        return [X]
    if isinstance(X, np.ndarray) and X.dtype.kind in "fiu":
        if fs is None:
            raise ECGValueError("raw signals need their sampling rate: predict_proba(X, fs=500)")
        signals = X[None] if X.ndim == 2 else X
        if signals.ndim != 3:
            raise ECGValueError(f"raw signals must be (N, leads, samples) or (leads, samples), got {X.shape}")
        names = tuple(leads) if leads is not None else STANDARD_LEADS[:signals.shape[1]]
        return [ECG(signal, fs, names, {"record_id": str(i)}) for i, signal in enumerate(signals)]
    return list(X)


class _LoadDataset:
    """Inputs as a map-style dataset for a ``DataLoader``: item ``i`` is ``reader.load(items[i])``."""

    def __init__(self, items: list[ECGInput], reader: InputReader):
        self.items, self.reader = items, reader

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return self.reader.load(self.items[index])


def _as_is(item):
    """DataLoader ``collate_fn`` keeping NumPy arrays and failures as they are (no tensor conversion)."""
    return item


def _source_of(item: ECGInput) -> str:
    if isinstance(item, ECG):
        return str(item.meta.get("source") or item.record_id or "<ECG object>")
    return str(item)


def expand_items(items: Iterable[ECGInput]) -> tuple[list[ECGInput], list[Failure]]:
    """Expand path arguments (folders, globs) into files, keeping :class:`~ecgfm.ECG` objects as they are."""
    if isinstance(items, (str, os.PathLike, ECG)):
        items = [items]
    out: list[ECGInput] = []
    failures: list[Failure] = []
    for item in items:
        if isinstance(item, ECG):
            out.append(item)
        else:
            files, skipped = discover_inputs([item])
            out.extend(files)
            failures.extend(Failure(source, reason) for source, reason in skipped)
    return out, failures
