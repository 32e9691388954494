"""ECG embeddings: one vector per ECG, the model's pooled features averaged over test-time windows.

The vector is ``model.forward_features`` (concat max+mean pooling of the last feature maps, ``num_features`` values)
averaged over the sliding windows the model scores records with (``model.info.window`` / ``stride``), computed on
the input after the model's own preprocessing (``model.info.pipeline()``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from torch import nn

from ecgfm.datasets import LabelledSet, from_arrays
from ecgfm.files import atomic_write, atomic_write_text
from ecgfm.inference.predictor import Failure, InputReader
from ecgfm.io.discover import discover_inputs
from ecgfm.models.windowing import extract_features

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
            atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
        elif suffix == ".npz":
            def write_npz(tmp):
                with open(tmp, "wb") as fh:
                    np.savez(fh, embeddings=self.vectors, ids=np.array(self.ids, dtype=str))
            atomic_write(path, write_npz)
        elif suffix == ".npy":
            def write_npy(tmp):
                with open(tmp, "wb") as fh:
                    np.save(fh, self.vectors)
            atomic_write(path, write_npy)
            atomic_write_text(path.with_suffix(".ids.txt"), "".join(f"{i}\n" for i in self.ids))
        else:
            raise ValueError(f"cannot tell the embedding format of {str(path)!r}: use {', '.join(EMBEDDING_FORMATS)}")
        return path


def embed_set(model: nn.Module, data: LabelledSet, batch_size: int = 256, device: str = "cpu") -> Embeddings:
    """Embed every record of a :class:`~ecgfm.datasets.LabelledSet` (already preprocessed by the model's pipeline);
    adds ``patient_id``, ``split`` and, when known, ``fold`` columns."""
    if data.preprocess != model.info.preprocess:
        raise ValueError("the data were preprocessed differently from the model's training data; load them with "
                         "the model's pipeline (model.info.pipeline())")
    vectors = extract_features(model.to(device), data.torch(), batch_size=batch_size, device=device)
    columns = {"patient_id": list(data.patient_ids), "split": list(data.split)}
    if data.folds is not None:
        columns["fold"] = [int(f) for f in data.folds]
    return Embeddings(ids=list(data.ids), vectors=vectors, sources=[None] * len(data), columns=columns)


def embed_files(model: nn.Module, paths: Iterable[str | os.PathLike], batch_size: int = 256,
                device: str = "cpu") -> Embeddings:
    """Read ECG files / folders / globs, preprocess them as the model was trained, and embed them.

    Unreadable files are listed in ``Embeddings.failures`` with the reason; the others are embedded.
    """
    pipeline = model.info.pipeline()
    files, discovery_failures = discover_inputs(paths)
    failures = [(f.source, f.reason) for f in discovery_failures]
    reader = InputReader(pipeline, assess=False)
    loaded = [reader.load(path) for path in files]
    failures += [(f.source, f.reason) for f in loaded if isinstance(f, Failure)]
    loaded = [item for item in loaded if not isinstance(item, Failure)]
    if not loaded:
        return Embeddings(ids=[], vectors=np.zeros((0, model.num_features), np.float32), failures=failures)
    data = from_arrays(np.stack([item.array for item in loaded]), np.zeros((len(loaded), 0)), [],
                       preprocess=model.info.preprocess, ids=[item.record_id for item in loaded])
    vectors = extract_features(model.to(device), data.torch(), batch_size=batch_size, device=device)
    return Embeddings(ids=[str(item.record_id) for item in loaded], vectors=vectors,
                      sources=[item.source for item in loaded], failures=failures)
