"""PTB-XL (Wagner et al., Sci Data 2020): metadata, label tasks, patient-level folds and preprocessed arrays.

Works on the full database and on subsets where some records exist at only one rate: each record is read at the rate it
has (preferring the requested one) and resampled by the preprocessing pipeline; what was used is reported.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ecgfm.config import cache_dir, ptbxl_dir
from ecgfm.datasets.labelled import SPLITS, LabelledSet
from ecgfm.files import atomic_write
from ecgfm.errors import ECGError
from ecgfm.io import read
from ecgfm.labels.ptbxl import (TASKS, label_descriptions, parse_scp_codes, read_statements, statement_groups,
                                task_labels)
from ecgfm.signal import Pipeline

#: PTB-XL's recommended split: folds 1-8 train, 9 validation, 10 test (folds are patient-disjoint).
TRAIN_FOLDS = tuple(range(1, 9))
VAL_FOLDS = (9,)
TEST_FOLDS = (10,)
#: The two rates PTB-XL distributes and the metadata column naming each file.
RATE_COLUMNS = {500: "filename_hr", 100: "filename_lr"}


def split_of_fold(fold: int) -> str:
    """``train`` (folds 1-8), ``val`` (9) or ``test`` (10)."""
    return "train" if fold in TRAIN_FOLDS else "val" if fold in VAL_FOLDS else "test"


class PTBXL:
    """A PTB-XL folder (the one holding ``ptbxl_database.csv``, ``scp_statements.csv``, ``records100/``, ``records500/``)."""

    def __init__(self, root: str | os.PathLike | None = None):
        resolved = ptbxl_dir(root)
        if resolved is None:
            raise FileNotFoundError("PTB-XL location not set: pass a folder or set $ECGFM_PTBXL_DIR")
        self.root = resolved.resolve()
        for name in ("ptbxl_database.csv", "scp_statements.csv"):
            if not (self.root / name).exists():
                raise FileNotFoundError(f"{self.root / name} not found: is {self.root} a PTB-XL folder?")

    @cached_property
    def statements(self) -> pd.DataFrame:
        return read_statements(self.root / "scp_statements.csv")

    @cached_property
    def metadata(self) -> pd.DataFrame:
        """``ptbxl_database.csv`` indexed by ``ecg_id``, with parsed ``scp_codes`` and ``has_500``/``has_100`` flags."""
        table = pd.read_csv(self.root / "ptbxl_database.csv", index_col="ecg_id")
        table["scp_codes"] = table["scp_codes"].map(parse_scp_codes)
        for rate, column in RATE_COLUMNS.items():
            table[f"has_{rate}"] = [(self.root / f"{name}.hea").exists() and (self.root / f"{name}.dat").exists()
                                    for name in table[column]]
        table["split"] = table["strat_fold"].map(split_of_fold)
        return table

    def labels(self, task: str = "all") -> pd.Series:
        """Each record's label set for ``task``."""
        # task_labels is a per-statement union, so map each statement once and combine per record (fast).
        per_code = {code: task_labels({code: 0.0}, self.statements, task) for code in self.statements.index}
        return self.metadata["scp_codes"].map(lambda codes: set().union(*(per_code.get(c, ()) for c in codes)))

    @property
    def available(self) -> pd.Series:
        """Boolean per record: a signal file exists at 500 or 100 Hz."""
        return self.metadata["has_500"] | self.metadata["has_100"]

    def label_counts(self, task: str = "all", available_only: bool = True) -> pd.DataFrame:
        """Positives per label and split (train/val/test), most frequent first.

        ``available_only`` counts only records with a signal file (the ones :meth:`load_arrays` returns).
        """
        meta = self.metadata[self.available] if available_only else self.metadata
        labels = self.labels(task).loc[meta.index]
        rows = [(label, split) for labs, split in zip(labels, meta["split"]) for label in labs]
        counts = pd.DataFrame(rows, columns=["label", "split"]).value_counts().unstack(fill_value=0)
        counts = counts.reindex(columns=list(SPLITS), fill_value=0)
        counts["total"] = counts.sum(axis=1)
        return counts.sort_values(["total", "label"], ascending=[False, True]) if len(counts) else counts

    def label_names(self, task: str = "all", min_count: int = 1, folds=TRAIN_FOLDS,
                    exclude: tuple[str, ...] | list[str] = ()) -> list[str]:
        """Labels of ``task`` with at least ``min_count`` positives among available records in ``folds``."""
        meta = self.metadata
        labels = self.labels(task)[meta["strat_fold"].isin(list(folds)) & self.available]
        counts = pd.Series([lab for labs in labels for lab in labs], dtype=object).value_counts()
        unknown = set(exclude) - set(label_descriptions(self.statements, task))
        if unknown:
            raise ValueError(f"cannot exclude unknown {task} labels {sorted(unknown)}")
        return sorted(str(k) for k, v in counts.items() if v >= min_count and k not in set(exclude))

    def record_path(self, ecg_id: int, fs: float = 500) -> tuple[Path, int] | None:
        """The WFDB record for ``ecg_id`` and its rate, or ``None`` when neither file exists.

        Prefers the lowest rate >= ``fs`` (downsampling keeps information, upsampling cannot add it), then the highest
        rate below it: 100 Hz for ``fs=100``; 500 Hz for 250 or 500 Hz; 100 Hz only when no 500 Hz file exists.
        """
        row = self.metadata.loc[ecg_id]
        preferred = sorted(RATE_COLUMNS, key=lambda rate: (rate < fs, rate if rate >= fs else -rate))
        for rate in preferred:
            if row[f"has_{rate}"]:
                return self.root / f"{row[RATE_COLUMNS[rate]]}.hea", rate
        return None

    def read_record(self, ecg_id: int, fs: float = 500):
        """Read one record as an :class:`~ecgfm.ECG` with PTB-XL metadata (patient, age, sex, fold, labels)."""
        found = self.record_path(ecg_id, fs)
        if found is None:
            raise FileNotFoundError(f"PTB-XL record {ecg_id} has no signal file under {self.root}")
        row = self.metadata.loc[ecg_id]
        ecg = read(found[0])
        return ecg.replace(record_id=str(ecg_id), patient_id=str(int(row["patient_id"])), age=_float(row["age"]),
                           sex="M" if row["sex"] == 0 else "F", strat_fold=int(row["strat_fold"]),
                           scp=sorted(row["scp_codes"]))

    def summary(self, task: str = "all") -> dict:
        """Records found per rate, missing files, patients, records per fold/split and label counts per split."""
        meta = self.metadata
        both = meta["has_500"] & meta["has_100"]
        counts = self.label_counts(task)
        descriptions = label_descriptions(self.statements, task)
        split_counts = meta["split"].value_counts()
        return {
            "root": str(self.root),
            "records": int(len(meta)),
            "patients": int(meta["patient_id"].nunique()),
            "records_500hz": int(meta["has_500"].sum()),
            "records_100hz": int(meta["has_100"].sum()),
            "records_both_rates": int(both.sum()),
            "records_500hz_only": int((meta["has_500"] & ~meta["has_100"]).sum()),
            "records_100hz_only": int((meta["has_100"] & ~meta["has_500"]).sum()),
            "records_missing": int((~meta["has_500"] & ~meta["has_100"]).sum()),
            "missing_ids": [int(i) for i in meta.index[~meta["has_500"] & ~meta["has_100"]]],
            "records_per_split": {split: int(split_counts.get(split, 0)) for split in SPLITS},
            "records_per_fold": {int(k): int(v) for k, v in meta["strat_fold"].value_counts().sort_index().items()},
            "statements_present": int(len(self.label_counts("all"))),  # among records with a signal file
            "task": task,
            "label_counts": {str(label): {"description": descriptions.get(str(label), str(label)),
                                          **{col: int(row[col]) for col in (*SPLITS, "total")}}
                             for label, row in counts.iterrows()},
        }

    def load(self, labels: list[str] | None = None, pipeline: Pipeline | None = None, task: str = "all",
             train_folds=TRAIN_FOLDS, val_folds=VAL_FOLDS, test_folds=TEST_FOLDS, cache: bool = True,
             progress: bool = True, workers: int | None = None) -> LabelledSet:
        """Every available record, preprocessed by ``pipeline`` (default :meth:`Pipeline.default`), with multi-hot
        labels (default: every ``task`` label present in the training folds) and its split from its fold.

        Signals are cached on disk (a memory map). Records with no signal file at either rate are skipped (see
        :meth:`summary`); records that fail to read are skipped with a warning naming each file. ``workers``
        processes read in parallel (default: the idle CPUs, see :func:`default_workers`; 1 reads in this process).
        """
        pipeline = pipeline or Pipeline.default()
        fs = pipeline.fs or 100.0
        label_names = list(labels) if labels is not None else self.label_names(task, folds=train_folds)
        vocabulary = label_descriptions(self.statements, task)
        unknown = [name for name in label_names if name not in vocabulary]
        if unknown:
            raise ValueError(f"labels {unknown} are not {task} labels of PTB-XL")
        meta = self.metadata[self.available]
        X, ok = self._cached_signals(meta, pipeline, fs, cache, progress, workers)
        meta = meta[ok]
        record_labels = self.labels(task).loc[meta.index]
        Y = np.array([[name in labs for name in label_names] for labs in record_labels], dtype=np.float32)
        folds = meta["strat_fold"].to_numpy()
        split = np.full(len(meta), "", dtype=object)
        for name, chosen in (("train", train_folds), ("val", val_folds), ("test", test_folds)):
            split[np.isin(folds, list(chosen))] = name
        groups = {kind: [n for n in label_names if n in members]
                  for kind, members in statement_groups(self.statements).items()}
        source = {"kind": "ptbxl", "dataset": "PTB-XL", "root": str(self.root), "task": task,
                  "train_folds": list(train_folds), "val_folds": list(val_folds), "test_folds": list(test_folds)}
        return LabelledSet(X=X, Y=Y.reshape(len(meta), len(label_names)), labels=label_names,
                           ids=meta.index.to_numpy(), patient_ids=meta["patient_id"].astype(int).astype(str).to_numpy(),
                           split=split, folds=folds, preprocess=pipeline.to_dict(),
                           label_descriptions={n: vocabulary.get(n, n) for n in label_names}, label_groups=groups,
                           source=source)

    def _cached_signals(self, meta: pd.DataFrame, pipeline: Pipeline, fs: float, cache: bool, progress: bool,
                        workers: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The preprocessed signals of ``meta``'s records and a mask of those that could be read."""
        paths = [str(self.record_path(ecg_id, fs)[0]) for ecg_id in meta.index]
        key = hashlib.sha256(json.dumps([str(self.root), pipeline.to_dict(), fs, meta.index.tolist(), paths,
                                         (self.root / "ptbxl_database.csv").stat().st_mtime]).encode()).hexdigest()[:16]
        path = cache_dir() / "ptbxl" / f"signals-{key}.npy"
        mask_path = path.with_suffix(".ok.npy")
        if cache and path.exists() and mask_path.exists():
            return np.load(path, mmap_mode="r"), np.load(mask_path)
        signals, failures = read_preprocessed(paths, pipeline, workers=workers, progress=progress,
                                              desc=f"reading PTB-XL at {fs:g} Hz")
        if failures:
            listed = "; ".join(f"{name}: {reason}" for name, reason in list(failures.items())[:20])
            more = f" (and {len(failures) - 20} more)" if len(failures) > 20 else ""
            warnings.warn(f"skipped {len(failures)} unreadable PTB-XL records: {listed}{more}", stacklevel=3)
        ok = np.array([p not in failures for p in paths], dtype=bool)
        if not ok.any():
            raise ECGError(f"none of the {len(paths)} PTB-XL records under {self.root} could be read")
        X = np.stack([signal for signal in signals if signal is not None]).astype(np.float32)
        if cache:
            _atomic_save_npy(path, X)  # the array first: a mask without its array is never trusted
            _atomic_save_npy(mask_path, ok)
        return X, ok


#: Below this many records a process pool costs more (worker start-up, imports) than it saves.
MIN_RECORDS_FOR_POOL = 200
_CHUNK = 64


def _read_chunk(paths: list[str], spec: dict) -> list[tuple[str, np.ndarray | None, str | None]]:
    """Read and preprocess a chunk of records (runs in a worker process); failures come back as messages."""
    pipeline = Pipeline.from_dict(spec)
    out = []
    for path in paths:
        try:
            out.append((path, pipeline.to_array(read(path)), None))
        except ECGError as exc:
            out.append((path, None, str(exc)))
    return out


def default_workers() -> int:
    """Processes for reading: the CPUs not already busy (cpu_count - 1-minute load average), at least 1.

    On an oversubscribed machine extra processes only add start-up and pickling work (benchmarks/read.py: 2 workers
    ran at 0.96x the serial throughput at load average 8-10 on 2 cores), so busy cores are not counted.
    """
    cpus = os.cpu_count() or 1
    try:
        busy = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):  # no load average on this platform
        busy = 0
    return max(1, cpus - busy)


def read_preprocessed(paths: list[str], pipeline: Pipeline, workers: int | None = None, progress: bool = True,
                      desc: str = "reading ECGs") -> tuple[list[np.ndarray | None], dict[str, str]]:
    """Read and preprocess many ECG files, in a process pool when it pays; failures are collected, not raised.

    Returns the arrays in input order (``None`` where reading failed) and ``{path: reason}`` for the failures.
    """
    workers = default_workers() if workers is None else max(1, int(workers))
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    results: dict[str, tuple[np.ndarray | None, str | None]] = {}
    bar = tqdm(total=len(paths), desc=desc, unit="ECG", disable=not progress)
    spec = pipeline.to_dict()
    if workers == 1 or len(paths) < MIN_RECORDS_FOR_POOL:
        for chunk in chunks:
            results.update({p: (x, err) for p, x, err in _read_chunk(chunk, spec)})
            bar.update(len(chunk))
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            futures = [pool.submit(_read_chunk, chunk, spec) for chunk in chunks]
            for future in as_completed(futures):
                chunk_result = future.result()
                results.update({p: (x, err) for p, x, err in chunk_result})
                bar.update(len(chunk_result))
    bar.close()
    failures = {p: results[p][1] for p in paths if results[p][1] is not None}
    return [results[p][0] for p in paths], failures


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: np.save would append ".npy" to a name
            np.save(fh, array)

    atomic_write(path, write)


def _float(value) -> float | None:
    return None if pd.isna(value) else float(value)


__all__ = ["PTBXL", "TASKS", "TRAIN_FOLDS", "VAL_FOLDS", "TEST_FOLDS", "SPLITS", "split_of_fold",
           "read_preprocessed", "default_workers"]
