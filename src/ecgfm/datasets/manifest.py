"""Manifests: a table naming ECG files with their patient, split and labels, the input of ``ecgfm ingest``.

A manifest file is CSV or Parquet with one row per record:

* ``path`` (required): the ECG file, anything :func:`ecgfm.read` reads; relative paths are relative to the manifest.
* ``record_id``: unique id (default: the file name without extension, which must then be unique).
* ``patient_id``: the patient (default: the record id, i.e. one patient per record). Splits are patient-level.
* ``split``: ``train``/``val``/``test`` (default: assigned from a hash of the patient id, 80/10/10, see
  :func:`assign_splits`: stable when records are added, the same patient always lands in the same split).
* labels, either as a ``labels`` column (Parquet: a list of strings; CSV: labels separated by ``;``) or as one column
  per label holding 1/0 (blank = unknown, stored as NaN in the training targets). Label columns are named with
  ``label_columns=`` or found automatically: every other column whose values are all 0, 1 or blank.
* any other column (``age``, ``sex``, ``site``...) is kept as metadata and copied into a store's index.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")
#: Columns with a fixed meaning; everything else is a label column or metadata.
RESERVED_COLUMNS = ("path", "record_id", "patient_id", "split", "fold", "labels", "unknown_labels")
#: Separator of labels inside one CSV cell.
LABEL_SEPARATOR = ";"


def assign_splits(patient_ids: Iterable, val_fraction: float = 0.1, test_fraction: float = 0.1,
                  salt: str = "ecgfm") -> np.ndarray:
    """A ``train``/``val``/``test`` split per record from a hash of its patient id (patient-level, deterministic).

    Hashing rather than shuffling keeps every patient's split fixed when the dataset grows, so a model's test
    patients never leak into a later training set built from more data.
    """
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"split fractions must be >= 0 and sum below 1, got val={val_fraction}, test={test_fraction}")
    cut_test, cut_val = test_fraction, test_fraction + val_fraction
    out = []
    for pid in patient_ids:
        digest = hashlib.sha256(f"{salt}:{pid}".encode()).digest()
        u = int.from_bytes(digest[:8], "little") / 2**64  # uniform in [0, 1)
        out.append("test" if u < cut_test else "val" if u < cut_val else "train")
    return np.array(out, dtype=object)


def _parse_label_cell(value) -> list[str]:
    """A ``labels`` cell: a list (Parquet), a JSON list, or ``;``-separated text (CSV); blank = no labels."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    if isinstance(value, (list, tuple, np.ndarray)):
        return sorted({str(v).strip() for v in value if str(v).strip()})
    text = str(value).strip()
    if text.startswith("["):
        try:
            return sorted({str(v).strip() for v in json.loads(text) if str(v).strip()})
        except json.JSONDecodeError:
            raise ValueError(f"labels cell {text!r} looks like a JSON list but is not valid JSON") from None
    return sorted({part.strip() for part in text.split(LABEL_SEPARATOR) if part.strip()})


def _is_binary_column(values: pd.Series) -> bool:
    known = values.dropna()
    if len(known) == 0 or not (pd.api.types.is_numeric_dtype(known) or pd.api.types.is_bool_dtype(known)):
        return False
    return bool(np.isin(known.astype(float), (0.0, 1.0)).all())


@dataclass
class Manifest:
    """Records to ingest: a table with ``record_id, path, patient_id, split, labels, unknown_labels`` (+ metadata).

    ``path`` is absolute; ``labels`` / ``unknown_labels`` are sorted lists of label names; ``label_names`` is the
    label vocabulary (sorted, or the order of the manifest's label columns).
    """

    records: pd.DataFrame
    label_names: list[str]
    description: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in ("record_id", "path", "patient_id", "split", "labels", "unknown_labels")
                   if c not in self.records.columns]
        if missing:
            raise ValueError(f"manifest table lacks columns {missing}")
        dupes = self.records["record_id"][self.records["record_id"].duplicated()]
        if len(dupes):
            raise ValueError(f"manifest has {len(dupes)} duplicate record ids, e.g. {dupes.iloc[0]!r}; "
                             "give a unique record_id column")
        bad = sorted(set(self.records["split"]) - set(SPLITS))
        if bad:
            raise ValueError(f"manifest has unknown splits {bad}; expected {', '.join(SPLITS)}")
        unknown = {lab for labs in self.records["labels"] for lab in labs} - set(self.label_names)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)[:5]} are not in the label vocabulary")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def metadata_columns(self) -> list[str]:
        """Extra columns (age, sex, ...) carried into a store's index."""
        return [c for c in self.records.columns if c not in RESERVED_COLUMNS]

    @classmethod
    def from_table(cls, table: pd.DataFrame, root: str | os.PathLike | None = None,
                   label_columns: Sequence[str] | None = None, split_seed: str = "ecgfm",
                   description: dict | None = None) -> "Manifest":
        """Validate and normalise a manifest table (see the module docstring for the columns)."""
        if "path" not in table.columns:
            raise ValueError(f"a manifest needs a 'path' column; found columns {list(table.columns)}")
        table = table.reset_index(drop=True).copy()
        if table["path"].isna().any():
            raise ValueError(f"manifest row {int(table['path'].isna().idxmax())} has no path")
        root = Path(root) if root is not None else Path.cwd()
        table["path"] = [str(p if p.is_absolute() else (root / p)) for p in map(Path, table["path"].astype(str))]
        if "record_id" not in table.columns:
            table["record_id"] = [_record_name(p) for p in table["path"]]
        table["record_id"] = table["record_id"].astype(str)
        if "patient_id" not in table.columns:
            table["patient_id"] = table["record_id"]
        table["patient_id"] = [str(p) if not pd.isna(p) else r for p, r in zip(table["patient_id"], table["record_id"])]
        table["patient_id"] = table["patient_id"].map(_strip_float_suffix)
        if "split" not in table.columns or table["split"].isna().all():
            table["split"] = assign_splits(table["patient_id"], salt=split_seed)
        elif table["split"].isna().any():
            raise ValueError(f"manifest has {int(table['split'].isna().sum())} rows without a split; fill them all "
                             "or drop the column to have splits assigned by patient")
        table["split"] = table["split"].astype(str).str.strip().str.lower()
        table, label_names = _normalise_labels(table, label_columns)
        _check_patient_splits(table)
        return cls(table, label_names, dict(description or {}))

    @classmethod
    def read(cls, path: str | os.PathLike, label_columns: Sequence[str] | None = None) -> "Manifest":
        """Read a CSV or Parquet manifest; relative ``path`` entries are resolved against the manifest's folder."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"manifest {path} not found")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            table = pd.read_parquet(path)
        elif suffix in (".csv", ".tsv", ".txt"):
            table = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype={"record_id": str, "patient_id": str,
                                                                                  "path": str, "split": str})
        else:
            raise ValueError(f"{path}: a manifest must be .csv, .tsv or .parquet, not {suffix or 'no extension'}")
        try:
            return cls.from_table(table, root=path.parent.resolve(), label_columns=label_columns,
                                  description={"kind": "manifest", "source": str(path.resolve())})
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def write(self, path: str | os.PathLike) -> Path:
        """Write as Parquet (lists kept) or CSV (labels joined with ``;``); paths are written absolute."""
        from ecgfm.files import atomic_write

        table = self.records.copy()
        if Path(path).suffix.lower() == ".parquet":
            return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
        for column in ("labels", "unknown_labels"):
            table[column] = [LABEL_SEPARATOR.join(v) for v in table[column]]
        return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))

    @classmethod
    def from_ptbxl(cls, root=None, fs: float = 500, task: str = "all") -> "Manifest":
        """Every PTB-XL record with a signal file (at ``fs`` if present, else the other rate), labels of ``task``.

        Splits follow PTB-XL's recommendation (folds 1-8 train, 9 val, 10 test; folds are patient-disjoint).
        """
        from ecgfm.datasets.ptbxl import PTBXL

        ptbxl = root if isinstance(root, PTBXL) else PTBXL(root)
        meta = ptbxl.metadata
        meta = meta[meta["has_500"] | meta["has_100"]]
        labels = ptbxl.labels(task).loc[meta.index]
        table = pd.DataFrame({
            "record_id": [str(i) for i in meta.index],
            "path": [str(ptbxl.record_path(i, fs)[0]) for i in meta.index],
            "patient_id": meta["patient_id"].astype(int).astype(str).to_numpy(),
            "split": meta["split"].to_numpy(),
            "fold": meta["strat_fold"].astype(int).to_numpy(),
            "labels": [sorted(map(str, labs)) for labs in labels],
            "age": meta["age"].to_numpy(dtype=float),
            "sex": np.where(meta["sex"] == 0, "M", "F"),
        })
        names = sorted({lab for labs in table["labels"] for lab in labs})
        table["unknown_labels"] = [[] for _ in range(len(table))]
        return cls(table, names, {"kind": "ptbxl", "source": str(ptbxl.root), "task": task, "fs_preferred": fs})

    @classmethod
    def from_challenge(cls, folder: str | os.PathLike, labels: str = "scp") -> "Manifest":
        """A PhysioNet Challenge 2020/21-style folder: WFDB ``.hea`` (+ ``.mat``/``.dat``) with ``# Dx:`` SNOMED codes.

        ``labels="scp"`` maps the SNOMED codes to SCP-ECG statements (:func:`ecgfm.labels.snomed.snomed_to_scp`),
        the vocabulary of PTB-XL-trained models; ``"snomed"`` keeps the codes. The Challenge data has no patient
        ids, so each record is its own patient (record-level splits, see :func:`assign_splits`).
        """
        from ecgfm.io.wfdb_reader import parse_challenge_comments

        if labels not in ("scp", "snomed"):
            raise ValueError(f"labels must be 'scp' or 'snomed', got {labels!r}")
        folder = Path(folder).resolve()  # record paths are stored absolute
        if not folder.is_dir():
            raise FileNotFoundError(f"Challenge folder {folder} not found")
        headers = sorted(folder.rglob("*.hea"))
        if not headers:
            raise ValueError(f"{folder} holds no WFDB headers (*.hea)")
        rows = []
        for header in headers:
            comments = [line.lstrip("#").strip() for line in _read_text(header).splitlines() if line.startswith("#")]
            meta = parse_challenge_comments(comments)
            rows.append({"path": str(header), "record_id": _record_name(header),
                         "labels": meta.get(labels, []), "snomed": ";".join(meta.get("snomed", [])),
                         "age": meta.get("age"), "sex": meta.get("sex")})
        table = pd.DataFrame(rows)
        if table["record_id"].duplicated().any():  # same file name in two sub-folders: use the relative path
            table["record_id"] = [Path(p).relative_to(folder).with_suffix("").as_posix() for p in table["path"]]
        manifest = cls.from_table(table, root=folder, description={"kind": "challenge", "source": str(folder),
                                                                   "labels": labels})
        return manifest


def read_manifest(path: str | os.PathLike, label_columns: Sequence[str] | None = None) -> Manifest:
    """Read a CSV/Parquet manifest (see :class:`Manifest`)."""
    return Manifest.read(path, label_columns)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read header: {exc.strerror or exc}") from None


def _record_name(path) -> str:
    """A record id from a file name: the name up to its first dot (``A0001.hea`` -> ``A0001``)."""
    path = Path(path)
    return path.name.split(".")[0] if path.suffix else path.name


def _strip_float_suffix(value: str) -> str:
    """Patient ids read as floats by pandas (``'15709.0'``) back to their integer spelling."""
    return re.sub(r"^(-?\d+)\.0$", r"\1", value)


def _normalise_labels(table: pd.DataFrame, label_columns: Sequence[str] | None) -> tuple[pd.DataFrame, list[str]]:
    """Turn a ``labels`` column or per-label 0/1 columns into sorted ``labels`` / ``unknown_labels`` lists."""
    if label_columns is None:
        candidates = [c for c in table.columns if c not in RESERVED_COLUMNS]
        label_columns = [c for c in candidates if _is_binary_column(table[c])] if "labels" not in table.columns else []
    missing = [c for c in label_columns if c not in table.columns]
    if missing:
        raise ValueError(f"label columns {missing} not in the manifest")
    if label_columns and "labels" in table.columns:
        raise ValueError("give labels either as a 'labels' column or as per-label columns, not both")
    if label_columns:
        names = [str(c) for c in label_columns]
        values = table[list(label_columns)].apply(pd.to_numeric, errors="coerce")
        for column in label_columns:
            bad = values[column].notna() & ~values[column].isin((0, 1))
            if bad.any():
                raise ValueError(f"label column {column!r} must hold 0, 1 or blank; row {int(bad.idxmax())} has "
                                 f"{table[column][bad].iloc[0]!r}")
        matrix = values.to_numpy(dtype=float)
        table["labels"] = [[n for n, v in zip(names, row) if v == 1] for row in matrix]
        table["unknown_labels"] = [[n for n, v in zip(names, row) if np.isnan(v)] for row in matrix]
        table = table.drop(columns=list(label_columns))
        return table, names
    if "labels" in table.columns:
        table["labels"] = [_parse_label_cell(v) for v in table["labels"]]
    else:
        table["labels"] = [[] for _ in range(len(table))]
    table["unknown_labels"] = ([_parse_label_cell(v) for v in table["unknown_labels"]]
                               if "unknown_labels" in table.columns else [[] for _ in range(len(table))])
    names = sorted({lab for labs in table["labels"] for lab in labs}
                   | {lab for labs in table["unknown_labels"] for lab in labs})
    return table, names


def _check_patient_splits(table: pd.DataFrame) -> None:
    """Refuse a manifest whose patient appears in two splits (test patients would leak into training)."""
    per_patient = table.groupby("patient_id")["split"].nunique()
    leaking = per_patient[per_patient > 1]
    if len(leaking):
        raise ValueError(f"{len(leaking)} patients appear in more than one split (e.g. patient "
                         f"{leaking.index[0]!r}); splits must be patient-level")


__all__ = ["Manifest", "read_manifest", "assign_splits", "SPLITS", "LABEL_SEPARATOR"]
