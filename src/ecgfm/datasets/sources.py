"""Where labelled ECGs come from: one entry point, :func:`load_labelled`, for every source.

- ``ptbxl``: a PTB-XL folder (splits from its stratified folds: 1-8 train, 9 val, 10 test unless told otherwise);
- ``manifest``: a CSV/Parquet table naming ECG files, patients, splits and labels (:mod:`ecgfm.datasets.manifest`);
  every file is read and preprocessed; unreadable files are listed in ``source["unreadable"]`` and skipped;
- ``store``: an ingested training store (``ecgfm ingest``); signals are read on demand;
- ``data``: any of these, recognised from what the path holds, or a folder of PhysioNet-Challenge-style records
  (WFDB headers with ``# Dx:`` SNOMED-CT codes), whose labels are mapped to SCP-ECG statements.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ecgfm.datasets.labelled import LabelledSet, parse_folds
from ecgfm.datasets.manifest import Manifest
from ecgfm.datasets.ptbxl import PTBXL, TEST_FOLDS, TRAIN_FOLDS, VAL_FOLDS, read_preprocessed
from ecgfm.signal import Pipeline

SOURCES = ("ptbxl", "manifest", "store", "data")


def load_labelled(*, ptbxl: str | os.PathLike | None = None, manifest: str | os.PathLike | None = None,
                  store: str | os.PathLike | None = None, data: str | os.PathLike | None = None,
                  labels: Sequence[str] | None = None, pipeline: Pipeline | None = None, task: str = "all",
                  min_count: int = 1, exclude: Sequence[str] = (), train_folds=TRAIN_FOLDS, val_folds=VAL_FOLDS,
                  test_folds=TEST_FOLDS, progress: bool = True, lazy: bool = False) -> LabelledSet:
    """Labelled ECGs from exactly one source (none given: PTB-XL at ``$ECGFM_PTBXL_DIR``), preprocessed by
    ``pipeline`` (a model's own, ``model.info.pipeline()``; default: a store's own preprocessing, else
    :meth:`Pipeline.default`).

    ``labels`` defaults to the source's labels with at least ``min_count`` training positives, minus ``exclude``.
    Folds (PTB-XL, and manifests with a ``fold`` column) take ``"1-8"``-style text or sequences. ``lazy`` (manifests
    and Challenge folders): files are read when a record is asked for, so memory stays flat in the number of records
    (what evaluating a large external folder needs); unreadable files then surface as they are read.
    """
    given = {name: value for name, value in (("ptbxl", ptbxl), ("manifest", manifest), ("store", store),
                                             ("data", data)) if value is not None}
    if len(given) > 1:
        raise ValueError(f"give one data source, not {' and '.join('--' + name for name in given)}")
    kind, path = next(iter(given.items()), ("ptbxl", None))
    if kind == "data":
        kind = detect_source(path)
    folds = {"train_folds": parse_folds(train_folds), "val_folds": parse_folds(val_folds),
             "test_folds": parse_folds(test_folds)}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = set(folds[f"{a}_folds"]) & set(folds[f"{b}_folds"])
        if shared:  # a record must be in one split: thresholds and model choices never see the test records
            raise ValueError(f"{a} and {b} folds overlap ({sorted(shared)}); give each fold to one split")
    if kind == "store":
        from ecgfm.datasets.store import ECGStore

        found = ECGStore(path)
        if pipeline is not None and found.spec.pipeline != pipeline.to_dict():
            raise ValueError(f"{path}: the store was preprocessed with {found.spec.pipeline}, but the model expects "
                             f"{pipeline.to_dict()}; ingest it again with the model's preprocessing")
        return found.load(labels, min_count=min_count, exclude=exclude)
    pipeline = pipeline or Pipeline.default()
    if kind == "ptbxl":
        root = PTBXL(path)
        names = labels if labels is not None else root.label_names(task, min_count, folds["train_folds"], exclude)
        if labels is None and not names:
            raise ValueError(f"no {task} labels with >= {min_count} training positives in {root.root}")
        data = root.load(list(names), pipeline, task=task, progress=progress, **folds)
        data.source.update(min_count=min_count, excluded_labels=sorted(exclude))
        return data
    table = Manifest.from_challenge(path) if kind == "challenge" else Manifest.read(path)
    return from_manifest(table, labels, pipeline, min_count=min_count, exclude=exclude, progress=progress,
                         lazy=lazy, **folds)


def detect_source(path: str | os.PathLike) -> str:
    """What a ``--data`` path holds: ``ptbxl``, ``store``, ``manifest`` or ``challenge`` (WFDB headers)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in (".csv", ".tsv", ".parquet"):
            return "manifest"
        raise ValueError(f"{path}: --data takes a folder (PTB-XL, a store, Challenge records) or a manifest "
                         f".csv/.tsv/.parquet, not a {path.suffix or 'file without extension'}")
    if not path.is_dir():
        raise FileNotFoundError(f"data not found: {path}")
    if (path / "ptbxl_database.csv").exists():
        return "ptbxl"
    if (path / "zarr.json").exists() and (path / "signals").exists():
        return "store"
    if next(path.rglob("*.hea"), None) is not None:
        return "challenge"
    raise ValueError(f"{path}: not a PTB-XL folder, an ecgfm store or a folder of WFDB records (*.hea)")


class FileSignals:
    """ECG files read and preprocessed when asked: ``signals[i]`` is file ``i`` as the model input (float32 mV
    ``(leads, samples)``); nothing is held in memory. Raises the reader's ``ECGReadError`` for a bad file."""

    def __init__(self, paths: Sequence[str], pipeline: Pipeline):
        self.paths, self.pipeline = list(paths), pipeline

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        from ecgfm.io import read

        return self.pipeline.to_array(read(self.paths[int(i)]))


def from_manifest(manifest: Manifest, labels: Sequence[str] | None, pipeline: Pipeline, min_count: int = 1,
                  exclude: Sequence[str] = (), train_folds=TRAIN_FOLDS, val_folds=VAL_FOLDS, test_folds=TEST_FOLDS,
                  progress: bool = True, lazy: bool = False) -> LabelledSet:
    """Every file of a manifest, preprocessed: read now (unreadable files skipped with a warning naming them), or,
    with ``lazy``, when each record is asked for. Challenge folders' labels are SCP-ECG statements mapped from their
    SNOMED-CT codes: statements that SNOMED-CT cannot express are unknown (NaN), and codes that map to no statement
    are counted in ``source["unmapped_snomed"]``."""
    table = manifest.records
    where = manifest.description.get("source", "manifest")
    if labels is None:
        counts = {name: 0 for name in manifest.label_names}
        for present, split in zip(table["labels"], table["split"]):
            for name in present if split == "train" else ():
                counts[name] += 1
        labels = [n for n, c in counts.items() if c >= min_count and n not in set(exclude)] or manifest.label_names
    missing = [name for name in labels if name not in manifest.label_names]
    if missing and manifest.description.get("kind") != "challenge":
        raise ValueError(f"{where}: labels {missing} are not in the manifest (it has {manifest.label_names[:20]})")
    if lazy:
        signals, failures = [FileSignals(table["path"], pipeline)], {}
    else:
        signals, failures = read_preprocessed(list(table["path"]), pipeline, progress=progress,
                                              desc=f"reading {Path(str(where)).name}")
    if failures:
        listed = "; ".join(f"{name}: {reason}" for name, reason in list(failures.items())[:10])
        warnings.warn(f"{len(failures)} of {len(table)} ECG files could not be read and are skipped: {listed}",
                      stacklevel=2)
    ok = np.ones(len(table), bool) if lazy else np.array([x is not None for x in signals])
    if not ok.any():
        raise ValueError(f"{where}: none of the {len(table)} ECG files could be read")
    table = table[ok]
    Y = np.zeros((len(table), len(labels)), dtype=np.float32)
    for i, (present, unknown) in enumerate(zip(table["labels"], table["unknown_labels"])):
        for j, name in enumerate(labels):
            Y[i, j] = np.nan if name in unknown else float(name in present)
    folds = table["fold"].to_numpy() if "fold" in table.columns else None
    split = table["split"].to_numpy().astype(object)
    if folds is not None:  # a fold column (e.g. PTB-XL's) decides the split as for PTB-XL itself
        split = np.full(len(table), "", dtype=object)
        for name, chosen in (("train", train_folds), ("val", val_folds), ("test", test_folds)):
            split[np.isin(folds, list(parse_folds(chosen)))] = name
    source = {**manifest.description, "records_listed": int(len(ok)), "unreadable": len(failures),
              "unreadable_files": dict(list(failures.items())[:100])}
    if manifest.description.get("kind") == "challenge":
        Y, source["unmapped_snomed"] = _snomed_coverage(table, labels, Y)
    if lazy:
        X = signals[0]
    else:
        arrays = [x.astype(np.float32) for x in signals if x is not None]
        X = np.stack(arrays) if len({a.shape for a in arrays}) == 1 else arrays  # records of any length: a list
    return LabelledSet(X=X, Y=Y, labels=list(labels),
                       ids=table["record_id"].to_numpy(), patient_ids=table["patient_id"].astype(str).to_numpy(),
                       split=split, folds=folds, preprocess=pipeline.to_dict(),
                       label_descriptions={n: n for n in labels}, source=source)


def _snomed_coverage(table, labels: Sequence[str], Y: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """Challenge labels against a model vocabulary, as far as SNOMED-CT can say them: a statement no code implies is
    unknown (NaN) for every record; a record coded with a broader concept (SNOMED myocardial infarction for SCP
    inferior MI) has that statement unknown; and codes that imply none of the vocabulary's statements are counted."""
    from ecgfm.labels.snomed import mapping_table, snomed_to_scp

    relations = mapping_table()
    implied = {scp for code in set(relations["snomed_code"]) for scp in snomed_to_scp(code)}
    broader = relations[relations["relation"] == "scp_narrower"]
    vague = {}  # SNOMED code -> statements it is too broad to settle
    for code, scp in zip(broader["snomed_code"], broader["scp_code"]):
        vague.setdefault(code, set()).add(scp)
    Y = Y.copy()
    Y[:, [j for j, name in enumerate(labels) if name not in implied]] = np.nan
    column = {name: j for j, name in enumerate(labels)}
    unmapped: dict[str, int] = {}
    for i, codes in enumerate(table["snomed"]):
        for code in filter(None, str(codes).split(";")):
            for name in vague.get(code, ()):
                if name in column and Y[i, column[name]] != 1:
                    Y[i, column[name]] = np.nan
            if not set(snomed_to_scp(code)) & set(column):  # says nothing in the model's vocabulary
                unmapped[code] = unmapped.get(code, 0) + 1
    return Y, dict(sorted(unmapped.items(), key=lambda item: -item[1]))
