"""Predict findings for ECG files with a trained model, using the model's own preprocessing, labels and thresholds.

A :class:`Predictor` couples a *backend* (PyTorch or ONNX Runtime; a callable mapping a float32 batch
``(B, leads, samples)`` to logits ``(B, labels)``) with the model's :class:`~ecgfm.models.ModelInfo`. Every input goes
through the preprocessing stored with the model (``info.preprocess``), so an ECG in any supported format at any
sampling rate reaches the network exactly as the training data did.

Example::

    from ecgfm import Predictor
    predictor = Predictor.from_pretrained()                  # the shipped foundation model
    result = predictor.predict("records100/00000/00001_lr.hea")
    print(result.findings)                                   # positives at the model's thresholds
    report = predictor.predict_many(["ecgs/"], batch_size=64)  # folders, globs, files; failures listed
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Union

import numpy as np

from ecgfm.ecg import ECG
from ecgfm.errors import ECGError, ECGReadError
from ecgfm.io import read
from ecgfm.io.discover import discover_inputs
from ecgfm.signal import Pipeline

#: Threshold used for a label the model stores none for (calibrated thresholds come from evaluation).
DEFAULT_THRESHOLD = 0.5
#: The file name of an exported ONNX model inside a model folder (beside ``config.json``).
ONNX_NAME = "model.onnx"

ECGInput = Union[str, os.PathLike, ECG]


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
    """The model's output for one ECG: every label's probability and the positive findings, most likely first."""

    record_id: str | None
    source: str | None
    probabilities: dict[str, float]
    findings: list[Finding]

    def to_dict(self) -> dict[str, Any]:
        """Nested JSON-ready form (the ``/predict`` response and the ``.json`` output rows)."""
        return {"record_id": self.record_id, "source": self.source, "probabilities": dict(self.probabilities),
                "findings": [vars(f).copy() for f in self.findings]}

    def to_row(self) -> dict[str, Any]:
        """Flat table row: ids, one probability column per label, and the findings spelled out."""
        return {"record_id": self.record_id, "source": self.source, **self.probabilities,
                "n_findings": len(self.findings),
                "findings": "; ".join(str(f) for f in self.findings)}


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted, with the reason (the file is named in ``source``)."""

    source: str
    reason: str


@dataclass
class PredictionReport:
    """Results of :meth:`Predictor.predict_many`: predictions in input order and the per-file failures."""

    predictions: list[Prediction] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_frame(self):
        """Predictions as a pandas table (one row per ECG; see :meth:`Prediction.to_row`)."""
        import pandas as pd

        return pd.DataFrame([p.to_row() for p in self.predictions])

    def failures_frame(self):
        import pandas as pd

        return pd.DataFrame([vars(f) for f in self.failures], columns=["source", "reason"])

    def write(self, path: str | os.PathLike) -> Path:
        """Write the predictions as CSV, JSON (nested findings) or Parquet, chosen by the file extension."""
        path = Path(path)
        kind = output_format(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        if kind == "json":
            tmp.write_text(json.dumps([p.to_dict() for p in self.predictions], indent=1) + "\n")
        elif kind == "csv":
            self.to_frame().to_csv(tmp, index=False, float_format="%.6g")
        else:
            self.to_frame().to_parquet(tmp, index=False)
        os.replace(tmp, path)  # never leave a half-written results file under the final name
        return path


#: Output formats of :meth:`PredictionReport.write` by file extension.
OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def output_format(path: str | os.PathLike) -> str:
    """``csv`` / ``json`` / ``parquet`` from a file name; ``ValueError`` for anything else."""
    kind = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise ValueError(f"cannot tell the output format of {str(path)!r}: use one of "
                         f"{', '.join(OUTPUT_FORMATS)}")
    return kind


# ----------------------------------------------------------------------------------------------------------------------
# Backends
# ----------------------------------------------------------------------------------------------------------------------

Backend = Callable[[np.ndarray], np.ndarray]


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits, float32."""
    # float64 then clip: exp overflow-free probabilities for any logit.
    return (1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80, 80)))).astype(np.float32)


def _info_pipeline(info) -> Pipeline:
    """The preprocessing stored with the model; a model without one cannot be used safely on raw files."""
    spec = info.preprocess
    if not spec:
        raise ValueError(f"model {info.arch!r} stores no preprocessing spec (info.preprocess); "
                         "it cannot be applied to raw ECG files")
    return Pipeline.from_dict(spec)


class Predictor:
    """Run a trained model on ECGs: preprocessing, batching, thresholds and plain-language findings.

    Args:
        backend: callable mapping a float32 batch ``(B, leads, samples)`` to logits ``(B, labels)``
            (:class:`ecgfm.inference.TorchBackend` or :class:`ecgfm.inference.onnx.OnnxBackend`).
        info: the model's :class:`~ecgfm.models.ModelInfo` (labels, descriptions, thresholds, preprocessing).
        batch_size / num_workers: defaults for :meth:`predict_many`.
    """

    def __init__(self, backend: Backend, info, batch_size: int = 32, num_workers: int = 2):
        self.backend = backend
        self.info = info
        self.pipeline = _info_pipeline(info)
        self.labels: list[str] = list(info.labels)
        self.descriptions: dict[str, str] = {lab: info.label_descriptions.get(lab, lab) for lab in self.labels}
        self.thresholds: dict[str, float] = {lab: float(info.thresholds.get(lab, DEFAULT_THRESHOLD))
                                             for lab in self.labels}
        self._threshold_vector = np.array([self.thresholds[lab] for lab in self.labels], dtype=np.float32)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)

    # -- construction ---------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | None = None, device: str = "cpu",
                        backend: str = "torch", num_threads: int | None = None, channels_last: bool | None = None,
                        **kwargs: Any) -> "Predictor":
        """Load a model and wrap it for prediction.

        Args:
            name_or_path: ``None`` for the shipped foundation model; a folder with ``model.safetensors`` +
                ``config.json`` (a fine-tuned model); a training checkpoint ``.pt``; or, for ``backend="onnx"``,
                an ``.onnx`` file with ``config.json`` beside it (a folder holding ``model.onnx`` works too).
            device: torch device for the PyTorch backend (``"cpu"``, ``"cuda"``).
            backend: ``"torch"`` or ``"onnx"`` (ONNX Runtime; exported on first use if no ``.onnx`` exists yet).
            num_threads: intra-op threads for the backend (``None`` keeps the library default).
            channels_last: run the PyTorch model's convolutions as 2-D channels-last ones
                (:mod:`ecgfm.models.layout`; 1.2x faster on CPU for the shipped model, logits equal to float
                rounding). ``None``: on for CPU when the architecture supports it.
            **kwargs: ``batch_size`` / ``num_workers`` defaults for :meth:`predict_many`.
        """
        if backend == "torch":
            from ecgfm.models.layout import default_channels_last

            model, info = load_model(name_or_path, device=device)
            if channels_last is None:
                channels_last = default_channels_last(model, device)
            backend_ = TorchBackend(model, info, device=device, num_threads=num_threads, channels_last=channels_last)
            return cls(backend_, info, **kwargs)
        if backend == "onnx":
            from ecgfm.inference.onnx import OnnxBackend, onnx_model_for

            onnx_path, info = onnx_model_for(name_or_path)
            return cls(OnnxBackend(onnx_path, num_threads=num_threads), info, **kwargs)
        raise ValueError(f"unknown backend {backend!r}; choose 'torch' or 'onnx'")

    # -- single ECG -------------------------------------------------------------------------------------------------

    def preprocess(self, ecg_or_path: ECGInput) -> tuple[np.ndarray, str | None, str | None]:
        """Read (if a path) and preprocess one ECG; returns ``(model_input, record_id, source)``.

        Raises:
            ECGReadError: naming the file and the reason.
        """
        return preprocess_input(ecg_or_path, self.pipeline)

    def predict_logits(self, batch: np.ndarray) -> np.ndarray:
        """Record logits ``(B, labels)`` for a preprocessed float32 batch ``(B, leads, samples)``."""
        return np.asarray(self.backend(np.ascontiguousarray(batch, dtype=np.float32)))

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """Per-label probabilities ``(B, labels)`` for a preprocessed float32 batch ``(B, leads, samples)``."""
        return sigmoid(self.predict_logits(batch))

    def predict(self, ecg_or_path: ECGInput) -> Prediction:
        """Predict one ECG (an :class:`~ecgfm.ECG` or a file of any supported format).

        Raises:
            ECGReadError: if the file cannot be read or preprocessed (message names the file and the reason).
        """
        array, record_id, source = self.preprocess(ecg_or_path)
        return self._prediction(self.predict_proba(array[None])[0], record_id, source)

    def _prediction(self, probs: np.ndarray, record_id: str | None, source: str | None) -> Prediction:
        positive = np.flatnonzero(probs >= self._threshold_vector)
        findings = [Finding(self.labels[i], self.descriptions[self.labels[i]], float(probs[i]),
                            float(self._threshold_vector[i])) for i in positive]
        findings.sort(key=lambda f: -f.probability)
        return Prediction(record_id, source, {lab: float(p) for lab, p in zip(self.labels, probs)}, findings)

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
        slots: list[tuple[np.ndarray, str | None, str | None] | Failure] = []
        n_loaded = 0
        for loaded in self._load_all(items, num_workers, 2 * batch_size, loader):
            slots.append(loaded)
            n_loaded += not isinstance(loaded, Failure)
            if n_loaded >= batch_size:
                yield from self._run_slots(slots)
                slots, n_loaded = [], 0
        if slots:
            yield from self._run_slots(slots)

    def predict_many(self, items: Iterable[ECGInput], batch_size: int | None = None, num_workers: int | None = None,
                     progress: bool = False, loader: str = "thread") -> PredictionReport:
        """Predict files, folders, glob patterns and :class:`~ecgfm.ECG` objects; failures are collected, not raised."""
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
                  loader: str) -> Iterator[tuple[np.ndarray, str | None, str | None] | Failure]:
        """Loaded inputs (or failures) in input order, read inline, by worker processes or by threads."""
        if loader not in ("process", "thread"):
            raise ValueError(f"loader must be 'process' or 'thread', got {loader!r}")
        if num_workers <= 0:
            yield from (load_input(item, self.pipeline) for item in items)
        elif loader == "process":
            from torch.utils.data import DataLoader

            dataset = _LoadDataset(list(items), self.pipeline)
            if not len(dataset):
                return
            yield from DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_as_is,
                                  prefetch_factor=max(2, prefetch // num_workers))
        else:
            with ThreadPoolExecutor(num_workers, thread_name_prefix="ecgfm-load") as pool:
                pending: deque[Future] = deque()
                for item in items:
                    pending.append(pool.submit(load_input, item, self.pipeline))
                    if len(pending) >= prefetch:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()

    def _run_slots(self, slots: list) -> Iterator[Prediction | Failure]:
        """Run the model over the loaded slots (grouped by input shape) and yield results in slot order."""
        loaded = [(i, s) for i, s in enumerate(slots) if not isinstance(s, Failure)]
        results: dict[int, Prediction | Failure] = {}
        by_shape: dict[tuple[int, ...], list[tuple[int, Any]]] = {}
        for i, s in loaded:  # pipelines without a fixed length give differently sized inputs
            by_shape.setdefault(s[0].shape, []).append((i, s))
        for group in by_shape.values():
            results.update(self._run_group(group))
        for i, s in enumerate(slots):
            yield s if isinstance(s, Failure) else results[i]

    def _run_group(self, group: list[tuple[int, Any]]) -> dict[int, Prediction | Failure]:
        try:
            probs = self.predict_proba(np.stack([s[0] for _, s in group]))
        except Exception as exc:  # noqa: BLE001 - isolate the input that breaks the model, report it, keep the rest
            if len(group) == 1:
                i, (_, _, source) = group[0]
                return {i: Failure(str(source), f"model failed on this input: {type(exc).__name__}: {exc}")}
            return {k: v for one in group for k, v in self._run_group([one]).items()}
        return {i: self._prediction(p, rid, src) for (i, (_, rid, src)), p in zip(group, probs)}


def preprocess_input(item: ECGInput, pipeline: Pipeline) -> tuple[np.ndarray, str | None, str | None]:
    """Read (if a path) and preprocess one ECG with ``pipeline``: ``(model_input, record_id, source)``.

    Raises:
        ECGReadError: naming the file and the reason.
    """
    ecg = item if isinstance(item, ECG) else read(item)
    source = ecg.meta.get("source") or (None if isinstance(item, ECG) else str(item))
    record_id = ecg.meta.get("record_id") or (Path(source).stem if source else None)
    try:
        array = pipeline.to_array(ecg)
    except ECGReadError:
        raise
    except (ECGError, ValueError) as exc:  # preprocessing refused the content (units, missing leads, ...)
        raise ECGReadError(source, f"preprocessing failed: {exc}") from exc
    return array, (str(record_id) if record_id is not None else None), source


def load_input(item: ECGInput, pipeline: Pipeline) -> tuple[np.ndarray, str | None, str | None] | Failure:
    """:func:`preprocess_input`, with any failure returned as a :class:`Failure` (batch jobs report, never stop)."""
    try:
        return preprocess_input(item, pipeline)
    except ECGError as exc:
        return Failure(_source_of(item), getattr(exc, "reason", None) or str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad file must not stop a batch; the reason is reported
        return Failure(_source_of(item), f"{type(exc).__name__}: {exc}")


class _LoadDataset:
    """Inputs as a map-style dataset for a ``DataLoader``: item ``i`` is ``load_input(items[i])``."""

    def __init__(self, items: list[ECGInput], pipeline: Pipeline):
        self.items, self.pipeline = items, pipeline

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return load_input(self.items[index], self.pipeline)


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
            files, fails = discover_inputs([item])
            out.extend(files)
            failures.extend(Failure(source, reason) for source, reason in fails)
    return out, failures


# ----------------------------------------------------------------------------------------------------------------------
# Model loading and the PyTorch backend
# ----------------------------------------------------------------------------------------------------------------------

def load_model(name_or_path: str | os.PathLike | None = None, device: str = "cpu"):
    """``(model, info)`` from the shipped weights (``None``), a pretrained folder or a ``.pt`` training checkpoint."""
    from ecgfm.models import load_checkpoint, load_pretrained

    if name_or_path is None:
        return load_pretrained(map_location=device)
    path = Path(name_or_path)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path} (expected a folder with model.safetensors + config.json, "
                                "or a .pt checkpoint)")
    return load_checkpoint(path, map_location=device)


class TorchBackend:
    """PyTorch inference: the model wrapped in :class:`~ecgfm.inference.module.InferenceModule` (sliding windows)."""

    name = "torch"

    def __init__(self, model, info, device: str = "cpu", num_threads: int | None = None, channels_last: bool = False):
        """``channels_last`` switches ``model`` itself (in place) to 2-D channels-last execution."""
        import torch

        from ecgfm.inference.module import InferenceModule
        from ecgfm.models.layout import set_channels_last

        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        if channels_last:
            set_channels_last(model)
        self.device = torch.device(device)
        self.module = InferenceModule(model, info).to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            # np.require copies only when needed: preprocessed ECG signals are read-only arrays.
            x = torch.from_numpy(np.require(batch, dtype=np.float32, requirements=["C", "W"])).to(self.device)
            return self.module(x).float().cpu().numpy()
