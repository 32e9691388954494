"""ONNX export and ONNX Runtime inference.

:func:`export_onnx` traces :class:`~ecgfm.models.windowing.WindowedModel` (model + sliding-window aggregation) with
``torch.onnx.export`` and a dynamic batch axis, and writes the model's ``config.json`` beside the ``.onnx`` file, so
an ONNX model folder is self-describing: preprocessing, labels, descriptions and thresholds travel with it.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import warnings
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

from ecgfm.config import cache_dir
from ecgfm.evaluation.release import VALIDATION_NAME
from ecgfm.files import atomic_write, atomic_write_text

#: The file name of an exported ONNX model inside a model folder (beside ``config.json``).
ONNX_NAME = "model.onnx"
#: Default ONNX opset (supported by onnxruntime >= 1.18 and the torch.export-based exporter).
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "ecg", "logits"


def _config_path(onnx_path: Path) -> Path:
    return onnx_path.parent / "config.json"


def export_onnx(model, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export ``model`` (with its test-time windowing; described by ``model.info``) to ``path`` and write
    ``config.json`` beside it.

    The graph maps a preprocessed float32 batch ``ecg`` ``(batch, leads, samples)`` to record logits ``(batch,
    labels)``; ``batch`` is dynamic. ``samples`` is fixed by the model's preprocessing (``crop_or_pad``).

    Raises:
        ValueError: if a different model's ``config.json`` already sits in the target folder.
    """
    import torch

    from ecgfm.models.windowing import WindowedModel

    info = model.info
    path = Path(path)
    config = _config_path(path)
    config_text = json.dumps(info.to_dict(), indent=2) + "\n"
    if config.exists() and json.loads(config.read_text()) != info.to_dict():
        raise ValueError(f"{config} describes a different model; export into a folder of its own")
    n_samples = info.pipeline().n_samples
    if n_samples is None:
        raise ValueError("the model's preprocessing does not fix the input length (no crop_or_pad step); "
                         "ONNX export needs a fixed number of samples")
    module = WindowedModel(model).cpu().eval()
    example = torch.zeros(2, info.in_leads, n_samples)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), redirect_stdout(io.StringIO()):  # the exporter narrates every stage
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            torch.onnx.export(module, (example,), tmp, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_shapes={"x": {0: batch}}, opset_version=opset, dynamo=True,
                              external_data=False, verbose=False)

    atomic_write(path, write)
    if not config.exists():
        atomic_write_text(config, config_text)
    validation = Path(getattr(model, "folder", "") or "") / VALIDATION_NAME
    if validation.is_file() and not (path.parent / VALIDATION_NAME).exists():  # threshold rules travel too
        atomic_write(path.parent / VALIDATION_NAME, lambda tmp: shutil.copyfile(validation, tmp))
    return path


def load_onnx_info(onnx_path: str | os.PathLike):
    """The :class:`~ecgfm.models.ModelInfo` stored in ``config.json`` beside an ``.onnx`` file."""
    from ecgfm.models import ModelInfo

    config = _config_path(Path(onnx_path))
    if not config.exists():
        raise FileNotFoundError(f"{config} not found: an ONNX model needs its config.json beside it "
                                "(export with `ecgfm export --onnx`)")
    return ModelInfo.from_dict(json.loads(config.read_text()))


def _fingerprint(name_or_path: str | os.PathLike | None) -> str:
    """Content hash of a model's files, naming its cached ONNX export (a retrained model gets a new one)."""
    from ecgfm.models.hub import CONFIG_NAME, DEFAULT_MODEL, PRETRAINED, WEIGHTS_NAME, get_weights

    shipped = name_or_path is None or str(name_or_path) in (DEFAULT_MODEL, *PRETRAINED)
    path = get_weights(str(name_or_path or DEFAULT_MODEL)).path if shipped else Path(name_or_path)
    files = [path / WEIGHTS_NAME, path / CONFIG_NAME] if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        if not file.exists():
            raise FileNotFoundError(f"model file missing: {file}")
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def onnx_model_for(name_or_path: str | os.PathLike | None = None) -> tuple[Path, Any]:
    """``(onnx_path, info)`` for a model given as an ``.onnx`` file, a folder, a ``.pt`` checkpoint or a shipped name.

    An ``.onnx`` file (or a folder holding ``model.onnx``) is used as is; any other model is exported once into
    the cache (``$ECGFM_CACHE_DIR/onnx/<content hash>/``) and reused from there.
    """
    from ecgfm.models import load
    from ecgfm.models.hub import DEFAULT_MODEL, PRETRAINED

    named = name_or_path is None or str(name_or_path) in (DEFAULT_MODEL, *PRETRAINED)
    path = None if named else Path(name_or_path)
    if path is not None and path.suffix.lower() == ".onnx":
        if not path.exists():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        return path, load_onnx_info(path)
    if path is not None and (path / ONNX_NAME).exists():
        return path / ONNX_NAME, load_onnx_info(path / ONNX_NAME)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    target = cache_dir() / "onnx" / _fingerprint(name_or_path) / ONNX_NAME
    if not target.exists():
        export_onnx(load(name_or_path), target)
    return target, load_onnx_info(target)


class OnnxBackend:
    """ONNX Runtime inference on CPU: float32 batch ``(B, leads, samples)`` -> logits ``(B, labels)``."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None,
                 providers: list[str] | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if num_threads is not None:
            options.intra_op_num_threads = int(num_threads)
            options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=options,
                                            providers=providers or ["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        return self.session.run(None, {self.input_name: batch})[0]


def max_abs_difference(model, onnx_path: str | os.PathLike, batch: np.ndarray | None = None) -> float:
    """Largest absolute logit difference between ONNX Runtime and PyTorch on ``batch`` (default: 4 random ECGs)."""
    import torch

    from ecgfm.models.windowing import WindowedModel

    if batch is None:
        n_samples = model.info.pipeline().n_samples
        batch = np.random.default_rng(0).normal(0, 0.3, (4, model.info.in_leads, n_samples)).astype(np.float32)
    module = WindowedModel(model).cpu().eval()
    with torch.inference_mode():
        expected = module(torch.from_numpy(np.require(batch, np.float32, ["C", "W"]))).numpy()
    actual = OnnxBackend(onnx_path)(batch)
    return float(np.abs(actual - expected).max())
