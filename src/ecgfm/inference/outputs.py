"""Prediction outputs: a batch run's report, and the CSV / JSON / Parquet files it writes."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ecgfm.files import atomic_write, atomic_write_text
from ecgfm.inference.results import Failure, Prediction

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


class PredictionWriter:
    """Stream predictions to ``path`` as they come (bounded memory), resumably.

    Rows go to ``<path>.partial/`` in small JSON-lines chunks, each written atomically; :meth:`close` joins them
    into ``path`` (CSV, JSON or Parquet by extension) and removes the folder, so a file under the final name is
    always complete. A killed run leaves the partial folder: the same command finds it, skips the inputs already
    predicted (:attr:`done`, absolute source paths) and continues, provided the model and labels are the same (else it starts over).
    """

    def __init__(self, path: str | os.PathLike, model_key: str, labels: list[str], chunk_rows: int = 256):
        self.path, self.kind = Path(path), output_format(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.chunk_rows, self.rows = chunk_rows, []
        header = {"model": model_key, "labels": list(labels)}
        marker = self.partial / "run.json"
        if marker.exists() and json.loads(marker.read_text()) != header:
            shutil.rmtree(self.partial)  # another model or label set: these rows cannot be continued
        self.partial.mkdir(parents=True, exist_ok=True)
        atomic_write_text(marker, json.dumps(header))
        self.chunks = sorted(self.partial.glob("part-*.jsonl"))
        self.done = {os.path.abspath(row["source"]) for row in self._stored_rows() if row["source"]}

    def write(self, prediction: Prediction) -> None:
        self.rows.append(prediction.to_dict())
        if len(self.rows) >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        chunk = self.partial / f"part-{len(self.chunks):06d}.jsonl"
        atomic_write_text(chunk, "".join(json.dumps(row) + "\n" for row in self.rows))
        self.chunks.append(chunk)
        self.rows = []

    def _stored_rows(self):
        for chunk in self.chunks:
            with open(chunk) as fh:
                yield from (json.loads(line) for line in fh)

    def close(self) -> Path:
        """Write the complete output under its final name (atomically) and remove the partial folder."""
        self.flush()
        if self.kind == "json":
            def write(tmp: str) -> None:
                with open(tmp, "w") as fh:
                    fh.write("[")
                    for i, row in enumerate(self._stored_rows()):
                        fh.write(("," if i else "") + "\n" + json.dumps(row))
                    fh.write("\n]\n")
        elif self.kind == "csv":
            def write(tmp: str) -> None:
                for i, frame in enumerate(self._frames()):
                    frame.to_csv(tmp, mode="w" if i == 0 else "a", header=i == 0, index=False, float_format="%.6g")
        else:
            def write(tmp: str) -> None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                writer = None
                for frame in self._frames():
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    writer = writer or pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table.cast(writer.schema))
                if writer is not None:
                    writer.close()
        atomic_write(self.path, write)
        shutil.rmtree(self.partial, ignore_errors=True)
        return self.path

    def _frames(self):
        """The stored rows as flat tables, one per chunk (memory bounded by the chunk size)."""
        import pandas as pd

        for chunk in self.chunks:
            with open(chunk) as fh:
                yield pd.DataFrame([Prediction.from_dict(json.loads(line)).to_row() for line in fh])
