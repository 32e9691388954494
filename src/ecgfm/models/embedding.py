"""ECG embeddings: one vector per ECG, the model's pooled features averaged over test-time windows.

The vector is ``model.forward_features`` (concat max+mean pooling of the last feature maps, ``num_features`` values)
averaged over the sliding windows the model scores records with (``info.window`` / ``info.stride``), computed on the
input after the model's own preprocessing (``info.preprocess``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from torch import nn

from ecgfm.models.checkpoint import atomic_write_bytes
from ecgfm.models.info import ModelInfo

#: Output formats of :meth:`Embeddings.write`, by file extension.
EMBEDDING_FORMATS = (".parquet", ".npy", ".npz")


@dataclass
class Embeddings:
    """Embedding vectors ``(N, D)`` with the id (and source file) of each ECG, plus inputs that failed."""

    ids: list[str]
    vectors: np.ndarray
    sources: list[str | None] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)  # extra per-ECG columns (patient_id, fold, ...)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input, reason)

    def to_frame(self):
        """A pandas table: ``id``, ``source``, extra columns, then ``f0 .. f{D-1}``."""
        import pandas as pd

        width = len(str(max(self.vectors.shape[1] - 1, 0)))
        features = pd.DataFrame(self.vectors, columns=[f"f{i:0{width}d}" for i in range(self.vectors.shape[1])])
        meta = pd.DataFrame({"id": self.ids, "source": self.sources or [None] * len(self.ids), **self.columns})
        return pd.concat([meta, features], axis=1)

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``.parquet`` (table, see :meth:`to_frame`), ``.npz`` (``embeddings``, ``ids``) or ``.npy``
        (the matrix; ids go to ``<name>.ids.txt`` beside it). Written atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            frame = self.to_frame()
            atomic_write_bytes(path, lambda tmp: frame.to_parquet(tmp, index=False))
        elif suffix == ".npz":
            def write_npz(tmp):
                with open(tmp, "wb") as fh:
                    np.savez(fh, embeddings=self.vectors, ids=np.array(self.ids, dtype=str))
            atomic_write_bytes(path, write_npz)
        elif suffix == ".npy":
            def write_npy(tmp):
                with open(tmp, "wb") as fh:
                    np.save(fh, self.vectors)
            atomic_write_bytes(path, write_npy)
            ids_text = "".join(f"{i}\n" for i in self.ids)
            atomic_write_bytes(path.with_suffix(".ids.txt"), lambda tmp: Path(tmp).write_text(ids_text))
        else:
            raise ValueError(f"cannot tell the embedding format of {str(path)!r}: use {', '.join(EMBEDDING_FORMATS)}")
        return path


def embed_arrays(model: nn.Module, info: ModelInfo, X: np.ndarray, batch_size: int = 256,
                 device: str = "cpu") -> np.ndarray:
    """Embeddings ``(N, model.num_features)`` of preprocessed ECGs ``X`` (N, leads, samples)."""
    from ecgfm.training.data import ArrayDataset
    from ecgfm.training.predict import extract_features

    dataset = ArrayDataset(X, np.zeros((len(X), 0), dtype=np.float32))
    model = model.to(device)
    return extract_features(model, dataset, info.window, info.stride, batch_size=batch_size, device=device)


def embed_files(model: nn.Module, info: ModelInfo, paths: Iterable[str | os.PathLike], batch_size: int = 256,
                device: str = "cpu") -> Embeddings:
    """Read ECG files / folders / globs, preprocess them as the model was trained, and embed them.

    Unreadable files are listed in ``Embeddings.failures`` with the reason; the others are embedded.
    """
    from ecgfm.errors import ECGError
    from ecgfm.inference.predictor import discover_inputs
    from ecgfm.io import read
    from ecgfm.signal import Pipeline

    if not info.preprocess:
        raise ValueError(f"model {info.arch!r} stores no preprocessing spec; cannot embed raw files")
    pipeline = Pipeline.from_dict(info.preprocess)
    files, discovery_failures = discover_inputs(paths)
    failures = [(f.source, f.reason) for f in discovery_failures]
    arrays, ids, sources = [], [], []
    for path in files:
        try:
            ecg = read(path)
            arrays.append(pipeline.to_array(ecg))
        except (ECGError, ValueError, OSError) as exc:
            failures.append((str(path), str(exc)))
            continue
        ids.append(str(ecg.record_id or Path(path).stem))
        sources.append(str(path))
    if not arrays:
        return Embeddings(ids=[], vectors=np.zeros((0, model.num_features), np.float32), failures=failures)
    lengths = {a.shape for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"preprocessing produced different shapes {sorted(lengths)}; the spec must fix the length")
    vectors = embed_arrays(model, info, np.stack(arrays), batch_size=batch_size, device=device)
    return Embeddings(ids=ids, vectors=vectors, sources=sources, failures=failures)


def embed_ptbxl(model: nn.Module, info: ModelInfo, root: str | os.PathLike | None = None, batch_size: int = 256,
                device: str = "cpu", progress: bool = True) -> Embeddings:
    """Embed every PTB-XL record (preprocessed with the model's spec); adds ``patient_id`` and ``strat_fold``."""
    from ecgfm.datasets.ptbxl import PTBXL
    from ecgfm.signal import Pipeline

    if not info.preprocess:
        raise ValueError(f"model {info.arch!r} stores no preprocessing spec; cannot embed PTB-XL")
    pipeline = Pipeline.from_dict(info.preprocess)
    arrays = PTBXL(root).load_arrays(fs=pipeline.fs or info.fs or 100, labels=[], pipeline=pipeline,
                                     progress=progress)
    vectors = embed_arrays(model, info, arrays.X, batch_size=batch_size, device=device)
    return Embeddings(ids=[str(i) for i in arrays.ids], vectors=vectors, sources=[None] * len(arrays.ids),
                      columns={"patient_id": [str(p) for p in arrays.patient_ids],
                               "strat_fold": [int(f) for f in arrays.folds]})
