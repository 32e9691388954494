"""Prediction outputs: a batch run's report, and the CSV / JSON / Parquet files it writes."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ecgfm.files import atomic_write, atomic_write_text
from ecgfm.inference.predictor import Failure, Prediction

#: Output formats by file extension.
OUTPUT_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}


def output_format(path: str | os.PathLike) -> str:
    """``csv`` / ``json`` / ``parquet`` from a file name; ``ValueError`` for anything else."""
    kind = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise ValueError(f"cannot tell the output format of {str(path)!r}: use one of {', '.join(OUTPUT_FORMATS)}")
    return kind


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
        """Write the predictions as CSV, JSON (nested findings) or Parquet, chosen by the file extension (atomic)."""
        path = Path(path)
        kind = output_format(path)
        if kind == "json":
            return atomic_write_text(path, json.dumps([p.to_dict() for p in self.predictions], indent=1) + "\n")
        frame = self.to_frame()
        if kind == "csv":
            return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))
        return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
