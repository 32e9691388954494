"""Ingest: convert a PTB-XL folder, a manifest of ECG files or a Challenge-style folder into a training store.

Every record is read (:func:`ecgfm.read`), preprocessed by a :class:`~ecgfm.signal.Pipeline` to a fixed rate,
length and lead set, quantised (int16 at ``uv_per_lsb`` microvolts per count, clipping counted, or float16) and
written to a Zarr v3 sharded array (layout in :mod:`ecgfm.datasets.store`).

* Parallel: shards (``shard_size`` consecutive records) are the unit of work; each is written whole by one process,
  so writers never touch the same file.
* Resumable: a shard's marker (``progress/shard-NNNNNN.json``) is written, atomically, only after its data; a killed
  ingest re-run with the same arguments redoes only the shards without a marker.
* Idempotent: output depends only on the inputs and options (no timestamps), so re-running gives the same store.
* Failures (unreadable file, wrong leads, implausible units) are recorded in ``failures.csv`` and skipped.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ecgfm.datasets.manifest import Manifest, assign_splits
from ecgfm.datasets.store import (ATTRS_KEY, FAILURES_FILE, INDEX_FILE, PROGRESS_DIR, SIGNALS, StoreSpec,
                                  read_spec)
from ecgfm.ecg import ECG
from ecgfm.errors import ECGReadError
from ecgfm.signal import Pipeline
from ecgfm.signal.pipeline import Normalize

#: int16 range used for samples (symmetric, so clipping is the same for both polarities).
INT16_LIMIT = 32767
#: float16's largest finite value (mV); anything beyond it is clipped.
FLOAT16_LIMIT = 65504.0


def read_file(row: int, path: str) -> ECG:
    """The default record loader: any file :func:`ecgfm.read` reads."""
    from ecgfm.io import read

    return read(path)


@dataclass
class IngestReport:
    """What an ingest did: records written and failed, shards done now or skipped (already done), speed and size."""

    store: str
    records: int
    written: int
    failed: int
    shards_total: int
    shards_processed: int
    shards_skipped: int
    clipped_records: int
    clipped_samples: int
    seconds: float
    records_per_s: float
    signal_bytes: int
    bytes_per_record: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_source(source, fs: float = 500.0, task: str = "all", challenge_labels: str = "scp",
                   kind: str = "auto") -> tuple[Manifest, Callable[[int, str], ECG]]:
    """A :class:`Manifest` and a record loader from a Manifest, a ``SyntheticSource`` or a path.

    Paths: a folder with ``ptbxl_database.csv`` is PTB-XL; a ``.csv``/``.tsv``/``.parquet`` file a manifest; another
    folder a Challenge-style tree of WFDB headers. ``kind`` (``ptbxl``/``manifest``/``challenge``) forces one.
    """
    from ecgfm.datasets.synthetic import SyntheticSource

    if isinstance(source, Manifest):
        return source, read_file
    if isinstance(source, SyntheticSource):
        return synthetic_manifest(source), source.load_row
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"ingest source {path} not found")
    if kind == "auto":
        kind = ("ptbxl" if (path / "ptbxl_database.csv").exists() else
                "manifest" if path.is_file() else "challenge")
    if kind == "ptbxl":
        return Manifest.from_ptbxl(path, fs=fs, task=task), read_file
    if kind == "manifest":
        return Manifest.read(path), read_file
    if kind == "challenge":
        return Manifest.from_challenge(path, labels=challenge_labels), read_file
    raise ValueError(f"unknown source kind {kind!r}; expected auto, ptbxl, manifest or challenge")


def synthetic_manifest(source) -> Manifest:
    """The manifest of a ``SyntheticSource`` (patient-level hashed splits, rule-based labels)."""
    from ecgfm.datasets.synthetic import SYNTHETIC_LABELS

    table = source.table()
    table["split"] = assign_splits(table["patient_id"])
    table["unknown_labels"] = [[] for _ in range(len(table))]
    return Manifest(table, list(SYNTHETIC_LABELS), {"kind": "synthetic", "seed": source.seed, "fs": source.fs,
                                                    "n": source.n})


def _check_pipeline(pipeline: Pipeline, dtype: str) -> None:
    if pipeline.fs is None or pipeline.n_samples is None or pipeline.leads is None:
        raise ValueError("a store needs a pipeline fixing the rate, the length and the leads (resample, crop_or_pad "
                         "and reorder_leads steps), e.g. Pipeline.default(fs=100, seconds=10)")
    if dtype not in ("int16", "float16"):
        raise ValueError(f"dtype must be int16 or float16, got {dtype!r}")
    normalised = any(isinstance(s, Normalize) and s.method != "none" for s in pipeline.steps)
    if normalised and dtype == "int16":
        raise ValueError("int16 stores hold microvolts; a pipeline that normalises amplitudes needs dtype='float16'")


def _plan_digest(plan: pd.DataFrame) -> str:
    """A fingerprint of what is ingested (ids, files, patients, splits, labels), to refuse resuming another job."""
    digest = hashlib.sha256()
    for row in plan[["record_id", "path", "patient_id", "split", "labels", "unknown_labels"]].itertuples(index=False):
        digest.update(json.dumps([row[0], row[1], row[2], row[3], list(row[4]), list(row[5])]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _marker_path(out: Path, shard: int) -> Path:
    return out / PROGRESS_DIR / f"shard-{shard:06d}.json"


def _create_store(out: Path, spec: StoreSpec) -> None:
    import zarr
    from zarr.codecs import BloscCodec, BytesCodec

    n_leads = len(spec.leads)
    group = zarr.open_group(out, mode="w")
    group.create_array(
        SIGNALS, shape=(spec.n_rows, n_leads, spec.n_samples), dtype=spec.dtype,
        chunks=(1, n_leads, spec.n_samples), shards=(spec.shard_size, n_leads, spec.n_samples),
        serializer=BytesCodec(endian="little"),
        compressors=[BloscCodec(cname=spec.compression["cname"], clevel=spec.compression["clevel"],
                                shuffle=spec.compression["shuffle"])],
        fill_value=0, dimension_names=("record", "lead", "sample"),
        attributes={"leads": list(spec.leads), "fs": spec.fs,
                    "units": (f"int16 counts of {spec.uv_per_lsb:g} uV" if spec.dtype == "int16" else "mV")})
    (out / PROGRESS_DIR).mkdir(exist_ok=True)
    group.attrs[ATTRS_KEY] = spec.to_dict()  # last: a store with its spec attribute has its array


def _prepare_store(out: Path, spec: StoreSpec, overwrite: bool) -> None:
    """Create the store, or check that an existing one was started by the same job (then resume it)."""
    if out.exists() and any(out.iterdir()):
        try:
            existing = read_spec(out)
        except (FileNotFoundError, ValueError):
            raise ValueError(f"{out} exists and is not an ecgfm store; choose an empty or new folder") from None
        if existing.identity() == spec.identity() and not overwrite:
            for partial in (out / SIGNALS).rglob("*.partial"):  # temp files of a shard write that was killed
                partial.unlink()
            return
        if not overwrite:
            changed = [k for k, v in spec.identity().items() if existing.identity().get(k) != v]
            raise ValueError(f"{out} holds a store built with different inputs or options ({', '.join(changed)}); "
                             "use another folder or overwrite=True (--overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    _create_store(out, spec)


# ---------------------------------------------------------------- worker side (one process per worker)
_WORKER: dict[str, Any] = {}


def _init_worker(out: str, spec: dict, loader: Callable[[int, str], ECG]) -> None:
    import zarr

    spec_obj = StoreSpec.from_dict(spec)
    _WORKER.update(out=Path(out), spec=spec_obj, loader=loader, pipeline=Pipeline.from_dict(spec_obj.pipeline),
                   array=zarr.open_array(Path(out) / SIGNALS, mode="r+"))


def quantise(signal: np.ndarray, dtype: str, uv_per_lsb: float | None) -> tuple[np.ndarray, int]:
    """Stored samples from float mV and the number of samples clipped to the storable range."""
    if dtype == "int16":
        counts = np.rint(signal.astype(np.float64) * (1000.0 / uv_per_lsb))
        clipped = int(np.count_nonzero(np.abs(counts) > INT16_LIMIT))
        return np.clip(counts, -INT16_LIMIT, INT16_LIMIT).astype(np.int16), clipped
    clipped = int(np.count_nonzero(np.abs(signal) > FLOAT16_LIMIT))
    return np.clip(signal, -FLOAT16_LIMIT, FLOAT16_LIMIT).astype(np.float16), clipped


def _failure_reason(exc: Exception) -> str:
    if isinstance(exc, ECGReadError):
        return exc.reason
    return f"{type(exc).__name__}: {exc}"


def _ingest_shard(shard: int, start: int, stop: int, paths: list[str]) -> dict[str, Any]:
    """Read, preprocess and quantise rows ``start:stop``, write them as one shard, then its marker."""
    spec: StoreSpec = _WORKER["spec"]
    pipeline: Pipeline = _WORKER["pipeline"]
    expected = (len(spec.leads), spec.n_samples)
    block = np.zeros((stop - start, *expected), dtype=spec.dtype)
    ok, clipped, failures = [], [], []
    for offset, (row, path) in enumerate(zip(range(start, stop), paths)):
        try:
            signal = pipeline.to_array(_WORKER["loader"](row, path))
            if signal.shape != expected:
                raise ValueError(f"preprocessing gave shape {signal.shape}, expected {expected}")
            block[offset], n_clipped = quantise(signal, spec.dtype, spec.uv_per_lsb)
            ok.append(1)
            clipped.append(n_clipped)
        except Exception as exc:  # a batch job reports every failure and carries on with the rest
            ok.append(0)
            clipped.append(0)
            failures.append([row, _failure_reason(exc)])
    _WORKER["array"][start:stop] = block
    marker = {"shard": shard, "start": start, "stop": stop, "ok": ok, "clipped": clipped, "failures": failures}
    _atomic_write_text(_marker_path(_WORKER["out"], shard), json.dumps(marker))
    return marker


# ---------------------------------------------------------------- driver
def ingest(source, out: str | os.PathLike, *, pipeline: Pipeline | None = None, fs: float = 100.0,
           seconds: float = 10.0, dtype: str = "int16", uv_per_lsb: float = 1.0, shard_size: int = 256,
           clevel: int = 5, workers: int | None = None, overwrite: bool = False, progress: bool = True,
           task: str = "all", challenge_labels: str = "scp", kind: str = "auto",
           loader: Callable[[int, str], ECG] | None = None) -> IngestReport:
    """Convert ``source`` (PTB-XL folder, manifest file, Challenge folder, :class:`Manifest` or ``SyntheticSource``)
    into the training store ``out``; see the module docstring. Returns an :class:`IngestReport`.

    ``pipeline`` defaults to ``Pipeline.default(fs, seconds)``. ``uv_per_lsb`` is the int16 resolution: 1 uV per count
    (PTB-XL's own resolution) spans +-32.767 mV. ``workers`` defaults to the available CPUs; 1 runs in-process.
    ``loader(row, path) -> ECG`` replaces :func:`ecgfm.read` (e.g. for a custom database).
    """
    started = time.perf_counter()
    out = Path(out)
    pipeline = pipeline or Pipeline.default(fs=fs, seconds=seconds)
    _check_pipeline(pipeline, dtype)
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    manifest, default_loader = resolve_source(source, fs=pipeline.fs, task=task, challenge_labels=challenge_labels,
                                              kind=kind)
    loader = loader or default_loader
    plan = manifest.records.reset_index(drop=True)
    if len(plan) == 0:
        raise ValueError("nothing to ingest: the source has no records")
    spec = StoreSpec(n_rows=len(plan), leads=list(pipeline.leads), fs=float(pipeline.fs),
                     n_samples=int(pipeline.n_samples), pipeline=pipeline.to_dict(), dtype=dtype,
                     uv_per_lsb=float(uv_per_lsb) if dtype == "int16" else None, shard_size=int(shard_size),
                     compression={"codec": "blosc", "cname": "zstd", "clevel": int(clevel), "shuffle": "bitshuffle"},
                     label_names=list(manifest.label_names), source=json.loads(json.dumps(manifest.description,
                                                                                         default=str)),
                     plan_digest=_plan_digest(plan))
    _prepare_store(out, spec, overwrite)

    n_shards = -(-len(plan) // shard_size)
    todo = [s for s in range(n_shards) if not _marker_path(out, s).exists()]
    paths = plan["path"].astype(str).tolist()
    tasks = [(s, s * shard_size, min((s + 1) * shard_size, len(plan))) for s in todo]
    workers = max(1, min(workers or _available_cpus(), len(tasks) or 1))
    _run_tasks(tasks, paths, out, spec, loader, workers, progress)
    report_counts = _finalise(out, spec, plan)
    seconds_taken = time.perf_counter() - started
    processed_rows = sum(stop - start for _, start, stop in tasks)
    size = sum(f.stat().st_size for f in (out / SIGNALS).rglob("*") if f.is_file())
    return IngestReport(store=str(out), records=len(plan), written=report_counts["written"],
                        failed=report_counts["failed"], shards_total=n_shards, shards_processed=len(tasks),
                        shards_skipped=n_shards - len(tasks), clipped_records=report_counts["clipped_records"],
                        clipped_samples=report_counts["clipped_samples"], seconds=seconds_taken,
                        records_per_s=processed_rows / max(seconds_taken, 1e-9), signal_bytes=size,
                        bytes_per_record=size / len(plan))


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _run_tasks(tasks, paths, out: Path, spec: StoreSpec, loader, workers: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=sum(stop - start for _, start, stop in tasks), desc=f"ingest -> {out.name}", unit="ECG",
               disable=not progress or not tasks, dynamic_ncols=True)
    try:
        if workers == 1:
            _init_worker(str(out), spec.to_dict(), loader)
            for shard, start, stop in tasks:
                _ingest_shard(shard, start, stop, paths[start:stop])
                bar.update(stop - start)
            return
        # forkserver: workers start from a clean single-threaded process (zarr runs an I/O thread in this one)
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])  # import once in the server, not in every worker
        else:  # pragma: no cover - platforms without fork
            context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(str(out), spec.to_dict(), loader)) as pool:
            futures = {pool.submit(_ingest_shard, shard, start, stop, paths[start:stop]): stop - start
                       for shard, start, stop in tasks}
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update(futures[future])
            except BrokenProcessPool as exc:
                raise RuntimeError(
                    "an ingest worker process died (killed, out of memory, or unable to start: a program run from "
                    "stdin cannot start worker processes). Finished shards are kept: run the same ingest again to "
                    "resume, or use workers=1 (--workers 1) to ingest in this process.") from exc
    finally:
        bar.close()


def _finalise(out: Path, spec: StoreSpec, plan: pd.DataFrame) -> dict[str, int]:
    """Build index.parquet and failures.csv from the shard markers and mark the store complete (atomically)."""
    import zarr

    n_shards = -(-spec.n_rows // spec.shard_size)
    ok = np.zeros(spec.n_rows, dtype=bool)
    clipped = np.zeros(spec.n_rows, dtype=np.int64)
    failures = []
    for shard in range(n_shards):
        marker = json.loads(_marker_path(out, shard).read_text())
        ok[marker["start"]:marker["stop"]] = np.asarray(marker["ok"], dtype=bool)
        clipped[marker["start"]:marker["stop"]] = marker["clipped"]
        failures.extend(marker["failures"])
    index = plan.copy()
    index.insert(0, "row", np.arange(len(plan), dtype=np.int64))
    index["clipped"] = clipped
    index = index.rename(columns={"path": "source"})[ok].reset_index(drop=True)
    index["labels"] = [list(v) for v in index["labels"]]
    index["unknown_labels"] = [list(v) for v in index["unknown_labels"]]
    tmp = out / f".{INDEX_FILE}.{os.getpid()}.tmp"
    table = pa.Table.from_pandas(index, preserve_index=False)
    for column in ("labels", "unknown_labels"):  # list<string> even when every list is empty
        position = table.schema.get_field_index(column)
        table = table.set_column(position, column, table.column(column).cast(pa.list_(pa.string())))
    pq.write_table(table, tmp)
    os.replace(tmp, out / INDEX_FILE)
    failed = pd.DataFrame({"row": [f[0] for f in failures],
                           "record_id": [plan["record_id"].iloc[f[0]] for f in failures],
                           "path": [plan["path"].iloc[f[0]] for f in failures],
                           "reason": [f[1] for f in failures]})
    _atomic_write_text(out / FAILURES_FILE, failed.to_csv(index=False))
    counts = {"written": int(ok.sum()), "failed": len(failures), "clipped_records": int((clipped > 0).sum()),
              "clipped_samples": int(clipped.sum()),
              "per_split": {k: int(v) for k, v in index["split"].value_counts().sort_index().items()}}
    spec.complete, spec.counts = True, counts
    zarr.open_group(out, mode="r+").attrs[ATTRS_KEY] = spec.to_dict()
    return counts


__all__ = ["ingest", "IngestReport", "resolve_source", "synthetic_manifest", "quantise", "read_file"]
