"""The training store: millions of preprocessed ECGs on disk with random access by index, read on demand.

Layout of a store folder (written by :func:`ecgfm.datasets.ingest.ingest`, ``ecgfm ingest``)::

    zarr.json        Zarr v3 group; attribute "ecgfm_store" = the StoreSpec below (pipeline, dtype, gain, labels...)
    signals/         Zarr v3 array (records, leads, samples), int16 (``uv_per_lsb`` microvolts per count) or float16
                     (mV); one record per chunk, ``shard_size`` records per shard file, Blosc-Zstd + bit-shuffle
    index.parquet    one row per readable record: row (in signals), record_id, patient_id, split, labels,
                     unknown_labels, clipped (samples clipped to the int16 range), source path, metadata columns
    failures.csv     files that could not be ingested: row, record_id, path, reason
    progress/        one marker per finished shard (what makes an interrupted ingest resumable)

Any Zarr v3 reader opens ``signals`` (``zarr.open_array(store / "signals")``). For training, :class:`StoreSignals` (``ECGStore.load().X``)
reads a record with one ``pread`` of its compressed chunk through the shard index the Zarr v3 sharding specification
defines, then one Blosc decode: zarr-python's general-purpose path costs ~0.8 ms of CPU per record in its asyncio
machinery, 10-30x the decode itself, which would make reading, not the model, the bottleneck (see docs/scaling.md).
Anything the fast path does not recognise falls back to zarr-python; a test checks both agree on every record.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ecgfm.datasets.labelled import LabelledSet
from ecgfm.datasets.manifest import SPLITS
from ecgfm.ecg import ECG
from ecgfm.signal import Pipeline

STORE_FORMAT = "ecgfm-store"
STORE_VERSION = 1
SIGNALS = "signals"
INDEX_FILE = "index.parquet"
FAILURES_FILE = "failures.csv"
PROGRESS_DIR = "progress"
ATTRS_KEY = "ecgfm_store"
#: Zarr v3 sharding marks a chunk absent (all fill value, e.g. a failed record) with this offset and length.
_MISSING = np.uint64(2**64 - 1)


@dataclass
class StoreSpec:
    """What a store holds and how its samples decode to millivolts (saved in the Zarr group's attributes)."""

    n_rows: int
    leads: list[str]
    fs: float
    n_samples: int
    pipeline: dict
    dtype: str = "int16"  # "int16" (counts of uv_per_lsb microvolts) or "float16" (millivolts)
    uv_per_lsb: float | None = 1.0
    shard_size: int = 256
    compression: dict = field(default_factory=lambda: {"codec": "blosc", "cname": "zstd", "clevel": 5,
                                                        "shuffle": "bitshuffle"})
    label_names: list[str] = field(default_factory=list)
    source: dict = field(default_factory=dict)
    plan_digest: str = ""
    format: str = STORE_FORMAT
    version: int = STORE_VERSION
    complete: bool = False
    counts: dict = field(default_factory=dict)

    @property
    def mv_per_unit(self) -> float:
        """Multiply a stored sample by this to get millivolts."""
        return self.uv_per_lsb / 1000.0 if self.dtype == "int16" else 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StoreSpec":
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The fields fixed at creation: an ingest may resume a store only if these match."""
        keep = ("n_rows", "leads", "fs", "n_samples", "pipeline", "dtype", "uv_per_lsb", "shard_size", "compression",
                "label_names", "plan_digest", "format", "version")
        return {k: json.loads(json.dumps(getattr(self, k))) for k in keep}


def read_spec(path: str | os.PathLike) -> StoreSpec:
    """The :class:`StoreSpec` of the store at ``path`` (``FileNotFoundError``/``ValueError`` if it is not a store)."""
    path = Path(path)
    meta_file = path / "zarr.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{path} is not an ecgfm store (no zarr.json); create one with `ecgfm ingest`")
    attrs = json.loads(meta_file.read_text()).get("attributes", {})
    if ATTRS_KEY not in attrs:
        raise ValueError(f"{path} is a Zarr group but not an ecgfm store (no '{ATTRS_KEY}' attribute)")
    spec = StoreSpec.from_dict(attrs[ATTRS_KEY])
    if spec.version > STORE_VERSION:
        raise ValueError(f"{path} is an ecgfm store of version {spec.version}; this ecgfm reads up to {STORE_VERSION}")
    return spec


class ShardReader:
    """Reads single records of a store's ``signals`` array; safe to pickle into DataLoader workers.

    Files and caches are opened lazily in the process that reads (re-opened after a fork), and bounded: at most
    ``max_open_files`` shard files and ``max_cached_indexes`` shard indexes (16 bytes per record) per process.
    """

    def __init__(self, store_path: str | os.PathLike, spec: StoreSpec, mode: str = "auto",
                 max_open_files: int = 64, max_cached_indexes: int = 4096):
        if mode not in ("auto", "direct", "zarr"):
            raise ValueError(f"reader mode must be auto, direct or zarr, got {mode!r}")
        self.array_path = Path(store_path) / SIGNALS
        self.shape = (spec.n_rows, len(spec.leads), spec.n_samples)
        self.dtype = np.dtype(spec.dtype).newbyteorder("<")
        self.shard_size = spec.shard_size
        self.max_open_files, self.max_cached_indexes = max_open_files, max_cached_indexes
        layout = _direct_layout(self.array_path, self.shape, spec)
        if mode == "direct" and layout is None:
            raise ValueError(f"{self.array_path}: codec layout not supported by the direct reader; use mode='zarr'")
        self.mode = "direct" if layout is not None and mode != "zarr" else "zarr"
        self._key_separator = layout["separator"] if layout else "/"
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._files: OrderedDict[int, int] = OrderedDict()
        self._indexes: OrderedDict[int, np.ndarray] = OrderedDict()
        self._zarr = None
        self._blosc = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_files", "_indexes", "_zarr", "_blosc"):
            state[key] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    def close(self) -> None:
        """Close this process's open shard files."""
        if self._files and self._pid == os.getpid():
            for fd in self._files.values():
                os.close(fd)
        self._reset()

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass

    def read(self, row: int) -> np.ndarray:
        """Stored samples of ``row`` as an array ``(leads, samples)`` in the stored dtype."""
        if os.getpid() != self._pid:  # forked into a DataLoader worker: never share descriptors or caches
            self._reset()
        row = int(row)
        if not 0 <= row < self.shape[0]:
            raise IndexError(f"row {row} out of range for a store of {self.shape[0]} rows")
        if self.mode == "zarr":
            return self._read_zarr(row)
        return self._read_direct(row)

    def _read_zarr(self, row: int) -> np.ndarray:
        if self._zarr is None:
            import zarr

            self._zarr = zarr.open_array(self.array_path, mode="r")
        return np.asarray(self._zarr[row])

    def _read_direct(self, row: int) -> np.ndarray:
        shard, inner = divmod(row, self.shard_size)
        index = self._shard_index(shard)
        if index is None:  # shard file absent: every record in it failed to ingest
            return np.zeros(self.shape[1:], self.dtype)
        offset, nbytes = index[inner]
        if offset == _MISSING:  # chunk equal to the fill value everywhere (zarr omits it)
            return np.zeros(self.shape[1:], self.dtype)
        data = os.pread(self._file(shard), int(nbytes), int(offset))
        if len(data) != nbytes:
            raise OSError(f"{self._shard_path(shard)}: truncated shard (wanted {nbytes} bytes at {offset})")
        raw = self._decoder().decode(data)
        return np.frombuffer(raw, dtype=self.dtype).reshape(self.shape[1:])

    def _decoder(self):
        if self._blosc is None:
            from numcodecs import Blosc, blosc

            blosc.use_threads = False  # one record per call: threads only add overhead in DataLoader workers
            self._blosc = Blosc()
        return self._blosc

    def _shard_path(self, shard: int) -> Path:
        sep = self._key_separator
        return self.array_path / f"c{sep}{shard}{sep}0{sep}0"

    def _file(self, shard: int) -> int:
        fd = self._files.get(shard)
        if fd is not None:
            self._files.move_to_end(shard)
            return fd
        fd = os.open(self._shard_path(shard), os.O_RDONLY)
        self._files[shard] = fd
        while len(self._files) > self.max_open_files:
            os.close(self._files.popitem(last=False)[1])
        return fd

    def _shard_index(self, shard: int) -> np.ndarray | None:
        index = self._indexes.get(shard)
        if index is not None:
            self._indexes.move_to_end(shard)
            return index
        try:
            fd = self._file(shard)
        except FileNotFoundError:
            return None
        n_chunks = self.shard_size
        size = os.fstat(fd).st_size
        length = 16 * n_chunks + 4  # (offset, nbytes) uint64 pairs, then a CRC32C of them (Zarr v3 sharding)
        blob = os.pread(fd, length, size - length)
        if len(blob) != length or size < length:
            raise OSError(f"{self._shard_path(shard)}: shard too short for its index")
        import google_crc32c  # zarr's own CRC32C implementation (a zarr dependency)

        if int.from_bytes(blob[-4:], "little") != google_crc32c.value(blob[:-4]):
            raise OSError(f"{self._shard_path(shard)}: shard index checksum mismatch (corrupt or partial file)")
        index = np.frombuffer(blob[:-4], dtype="<u8").reshape(n_chunks, 2)
        self._indexes[shard] = index
        while len(self._indexes) > self.max_cached_indexes:
            self._indexes.popitem(last=False)
        return index


def _direct_layout(array_path: Path, shape: tuple[int, ...], spec: StoreSpec) -> dict | None:
    """The parameters of the direct reader if ``signals`` uses exactly the layout the ingest writes, else None."""
    try:
        meta = json.loads((array_path / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    try:
        codecs = meta["codecs"]
        sharding = codecs[0]
        config = sharding["configuration"]
        inner = [c["name"] for c in config["codecs"]]
        index_codecs = [c["name"] for c in config["index_codecs"]]
        encoding = meta["chunk_key_encoding"]
        ok = (len(codecs) == 1 and sharding["name"] == "sharding_indexed"
              and list(meta["shape"]) == list(shape)
              and list(meta["chunk_grid"]["configuration"]["chunk_shape"]) == [spec.shard_size, *shape[1:]]
              and list(config["chunk_shape"]) == [1, *shape[1:]]
              and inner == ["bytes", "blosc"]
              and config["codecs"][0].get("configuration", {}).get("endian", "little") == "little"
              and index_codecs == ["bytes", "crc32c"]
              and config.get("index_location", "end") == "end"
              and np.dtype(meta["data_type"]) == np.dtype(spec.dtype)
              and float(meta["fill_value"]) == 0.0
              and encoding["name"] == "default")
        separator = encoding.get("configuration", {}).get("separator", "/")
    except (KeyError, IndexError, TypeError):
        return None
    return {"separator": separator} if ok else None


def _label_csr(column: pa.ChunkedArray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """A list-of-labels column as a compressed sparse row structure (indptr, column indices) over ``names``.

    Computed with Arrow kernels, so no Python object is created per record (millions of records stay cheap).
    Labels not in ``names`` are dropped.
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(column)
    if flat.type != pa.string():  # e.g. list<null> when no record has any label in this column
        flat = flat.cast(pa.string())
    codes = pc.index_in(flat, value_set=pa.array(list(names), pa.string()))
    codes = codes.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    owners = np.repeat(np.arange(len(lengths)), lengths)
    keep = codes >= 0
    indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum(np.bincount(owners[keep], minlength=len(lengths)))
    return indptr, codes[keep].astype(np.int32)


class ECGStore:
    """An ingested training store (see the module docstring); ``store[i]`` is the i-th indexed record as an ECG."""

    def __init__(self, path: str | os.PathLike, reader: str = "auto"):
        self.path = Path(path)
        self.spec = read_spec(self.path)
        if not self.spec.complete or not (self.path / INDEX_FILE).exists():
            raise ValueError(f"{self.path} is an incomplete store: its ingest was interrupted; run the same "
                             "`ecgfm ingest` command again to finish it")
        self.reader = ShardReader(self.path, self.spec, mode=reader)

    @cached_property
    def index(self) -> pd.DataFrame:
        """One row per readable record (``row`` is its position in the signals array)."""
        return pd.read_parquet(self.path / INDEX_FILE)

    def index_table(self, columns: Sequence[str]) -> pa.Table:
        """Some columns of the index as an Arrow table (no per-record Python objects)."""
        return pq.read_table(self.path / INDEX_FILE, columns=list(columns))

    def index_columns(self, columns: Sequence[str]) -> pd.DataFrame:
        """Some columns of the index, without loading the others (memory stays small for millions of records)."""
        if "index" in self.__dict__:
            return self.index[list(columns)]
        return pd.read_parquet(self.path / INDEX_FILE, columns=list(columns))

    @cached_property
    def failures(self) -> pd.DataFrame:
        """Files that failed to ingest, with the reason."""
        return pd.read_csv(self.path / FAILURES_FILE, dtype=str, keep_default_na=False)

    @property
    def pipeline(self) -> Pipeline:
        """The preprocessing applied before storage (apply it to new ECGs to match the training data)."""
        return Pipeline.from_dict(self.spec.pipeline)

    @property
    def label_names(self) -> list[str]:
        return list(self.spec.label_names)

    @property
    def fs(self) -> float:
        return self.spec.fs

    @property
    def leads(self) -> tuple[str, ...]:
        return tuple(self.spec.leads)

    @property
    def n_samples(self) -> int:
        return self.spec.n_samples

    def __len__(self) -> int:
        counts = self.spec.counts
        return int(counts["written"]) if "written" in counts else len(self.index)

    def signal(self, i: int) -> np.ndarray:
        """Record ``i`` of the index as float32 millivolts ``(leads, samples)``."""
        return self.read_row(int(self.index["row"].iloc[i]))

    def read_row(self, row: int) -> np.ndarray:
        """Signals-array row ``row`` as float32 millivolts ``(leads, samples)``."""
        stored = self.reader.read(row)
        return stored.astype(np.float32) * np.float32(self.spec.mv_per_unit)

    def __getitem__(self, i: int) -> ECG:
        entry = self.index.iloc[i]
        meta = {k: (list(v) if isinstance(v, np.ndarray) else v) for k, v in entry.items() if k != "row"}
        meta["source"] = f"{self.path}#{entry['record_id']}"
        return ECG(self.read_row(int(entry["row"])), self.fs, self.leads, meta=meta)

    def positions(self, split: str | Sequence[str] | None = None) -> np.ndarray:
        """Index positions of the records in ``split`` (one name or several; None = all)."""
        if split is None:
            return np.arange(len(self))
        splits = [split] if isinstance(split, str) else list(split)
        unknown = set(splits) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; expected {', '.join(SPLITS)}")
        split_column = self.index_table(["split"]).column("split")
        return np.flatnonzero(pc.is_in(split_column, value_set=pa.array(splits, pa.string())).to_numpy(
            zero_copy_only=False))

    def label_counts(self) -> pd.DataFrame:
        """Positives per label and split, most frequent first (computed without per-record Python objects)."""
        table = self.index_table(["split", "labels"])
        indptr, indices = _label_csr(table.column("labels"), self.label_names)
        owners = np.repeat(np.arange(table.num_rows), np.diff(indptr))
        counts = pd.DataFrame(index=pd.Index(self.label_names, name="labels"))
        for split in SPLITS:
            in_split = pc.equal(table.column("split"), split).to_numpy(zero_copy_only=False)
            counts[split] = np.bincount(indices[in_split[owners]], minlength=len(self.label_names))
        counts = counts.loc[:, counts.sum(axis=0) > 0]
        counts["total"] = counts.sum(axis=1)
        counts = counts[counts["total"] > 0]
        return counts.sort_values("total", ascending=False, kind="stable")

    def frequent_labels(self, min_count: int = 1, split: str = "train") -> list[str]:
        """Labels with at least ``min_count`` positives in ``split`` (the usual training vocabulary)."""
        counts = self.label_counts()
        if split not in counts.columns:
            return []
        return sorted(counts.index[counts[split] >= min_count].astype(str))

    def load(self, labels: Sequence[str] | None = None, min_count: int = 1, exclude: Sequence[str] = ()) -> LabelledSet:
        """Every record as a :class:`~ecgfm.datasets.LabelledSet` whose signals are read on demand (memory stays
        small at millions of records: the label matrix, ids and splits, no Python object per record).

        Labels default to those with at least ``min_count`` positives in the train split, minus ``exclude``.
        """
        unknown = sorted(set(exclude) - set(self.label_names))
        if unknown:
            raise ValueError(f"cannot exclude labels {unknown}: not in the store {self.path}")
        names = list(labels) if labels is not None else [
            name for name in self.frequent_labels(min_count) if name not in set(exclude)]
        unknown = sorted(set(names) - set(self.label_names))
        if unknown:
            raise ValueError(f"labels {unknown[:5]} are not in the store's vocabulary of {len(self.label_names)}")
        if not names:
            raise ValueError(f"no labels with >= {min_count} positives in the train split of {self.path}")
        columns = ["row", "record_id", "patient_id", "split", "labels", "unknown_labels"]
        has_fold = "fold" in pq.read_schema(self.path / INDEX_FILE).names
        table = self.index_table(columns + (["fold"] if has_fold else []))
        Y = _dense_labels(table.column("labels"), table.column("unknown_labels"), names)
        source = {"kind": "store", "dataset": "ecgfm store", "path": str(self.path), "origin": self.spec.source,
                  "min_count": min_count, "excluded_labels": sorted(exclude)}
        data = LabelledSet(
            X=StoreSignals(self), rows=table.column("row").to_numpy().astype(np.int64), Y=Y, labels=names,
            ids=table.column("record_id").to_numpy(zero_copy_only=False).astype(str),
            patient_ids=table.column("patient_id").to_numpy(zero_copy_only=False).astype(str),
            split=table.column("split").to_numpy(zero_copy_only=False).astype(str),
            folds=table.column("fold").to_numpy(zero_copy_only=False) if has_fold else None,
            preprocess=self.spec.pipeline, label_descriptions={n: n for n in names}, source=source)
        del table
        pa.default_memory_pool().release_unused()  # hand Arrow's buffers back before DataLoader workers fork
        return data

    def summary(self) -> dict[str, Any]:
        """Records per split, failures, clipping, size on disk and bytes per record."""
        size = sum(f.stat().st_size for f in (self.path / SIGNALS).rglob("*") if f.is_file())
        return {
            "path": str(self.path), "records": len(self), "rows": self.spec.n_rows, "failed": len(self.failures),
            "records_per_split": {k: int(v) for k, v in self.index["split"].value_counts().items()},
            "fs": self.fs, "n_samples": self.n_samples, "leads": list(self.leads), "dtype": self.spec.dtype,
            "uv_per_lsb": self.spec.uv_per_lsb, "labels": len(self.label_names),
            "clipped_records": int((self.index["clipped"] > 0).sum()) if "clipped" in self.index else 0,
            "signal_bytes": size, "bytes_per_record": size / max(self.spec.n_rows, 1),
            "raw_int16_bytes_per_record": 2 * len(self.leads) * self.n_samples, "reader": self.reader.mode,
        }

    def __repr__(self) -> str:
        return (f"ECGStore({str(self.path)!r}, {len(self)} records, {len(self.leads)} leads x {self.n_samples} "
                f"samples at {self.fs:g} Hz, {self.spec.dtype})")


class StoreSignals:
    """A store's signals as a lazy array: ``signals[row]`` reads one record (float32 mV) from disk; pickles without
    open files, so every DataLoader worker opens its own."""

    def __init__(self, store: ECGStore):
        self.reader, self.scale = store.reader, np.float32(store.spec.mv_per_unit)
        self.shape = (store.spec.n_rows, len(store.spec.leads), store.spec.n_samples)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, row: int) -> np.ndarray:
        return self.reader.read(int(row)).astype(np.float32) * self.scale


def _dense_labels(positive: pa.ChunkedArray, unknown: pa.ChunkedArray, names: Sequence[str]) -> np.ndarray:
    """``(N, L)`` float32 label matrix from the index's label lists: 1 positive, 0 negative, NaN unknown."""
    n = len(positive)
    Y = np.zeros((n, len(names)), np.float32)
    for column, value in ((positive, 1.0), (unknown, np.nan)):
        indptr, indices = _label_csr(column, names)
        Y[np.repeat(np.arange(n), np.diff(indptr)), indices] = value
    return Y


__all__ = ["ECGStore", "StoreSignals", "StoreSpec", "ShardReader", "read_spec", "STORE_FORMAT", "STORE_VERSION"]
