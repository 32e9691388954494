"""Benchmark: the training store at scale, measured on synthetic ECG-like records (no real data needed).

Method.
1. Build synthetic stores (``ecgfm.datasets.synthetic``: Gaussian P/QRS/T waves from per-wave dipoles projected on the
   lead axes, random heart rate/axis/amplitude, baseline wander, noise) with ``ecgfm.datasets.ingest`` into
   ``--workdir`` (default /tmp, deleted afterwards): N_small and N records at 100 Hz x 10 s x 12 leads int16, plus a
   500 Hz store of ``--n-500`` records for bytes/record at the high rate. The large stores use a light pipeline
   (leads, rate, length; no filtering) to build quickly; ingest speed of the real path is measured separately.
2. Ingest rate of the real path: ``--n-files`` synthetic records written as WFDB files (500 Hz, 16 bit), ingested
   with the default pipeline (unit check, 0.5 Hz high-pass, resampling to 100 Hz) by ``--workers`` processes. When
   PTB-XL is available (``$ECGFM_PTBXL_DIR``) the bytes/record of real records at 100 and 500 Hz are measured too.
3. Random-read throughput: a shuffled DataLoader over ``StoreDataset`` (batch 128) with 0, 1 and 2 workers, records/s
   as the median of ``--repeats`` passes of ``--reads`` records; baselines in the same run: zarr-python's own reader
   (0 workers) and an uncompressed memory-mapped ``.npy`` of the same records.
4. Peak memory of read-only epochs (shuffled DataLoader, 2 workers, trivial consumer) over N_small and N records, after
   the same number of reads (N: 10 epochs of N_small, 1 of N; each worker's allocator grows to a plateau over the
   first ~10^5 reads whatever the store size). Footprint = main-process RSS + each worker's private memory (USS), so
   pages shared by main and workers (fork, libraries) count once; summed RSS and PSS are also recorded (PSS moves
   when unrelated processes on a shared machine map the same libraries).
5. CPU training throughput of the default model (``resnet1d``, 2.5-s crops at 100 Hz, batch 128, AdamW), median
   step time after warm-up, ``torch.set_num_threads(--threads)``.
6. Time per epoch at 1.6M records on 1 and 8 GPUs: records / min(GPU throughput, loader throughput). GPU throughput
   is ``--gpu-records-per-s`` if measured, else assumed from the model's FLOPs and ``--gpu-tflops`` effective TFLOP/s;
   loader throughput = ``--cores-per-gpu`` x the measured per-worker read rate; 8 GPUs at ``--scaling-efficiency``.

The machine's load average is recorded: on a shared machine throughput numbers are pessimistic.
Run: ``python benchmarks/scale.py --n 200000`` (writes ``benchmarks/results/scale.json`` and prints a markdown table);
``--quick`` for a small smoke run (N=20000, N_small=2000).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from common import write_result

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_RECORDS = 1_600_000


# ------------------------------------------------------------------------------------------------- memory sampling
def _children(pid: int) -> list[int]:
    """All descendant processes of ``pid`` (Linux /proc)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                kids = [int(k) for k in Path(f"/proc/{current}/task/{tid}/children").read_text().split()]
            except OSError:
                continue
            found.extend(kids)
            stack.extend(kids)
    return found


def _kb(path: str, key: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _private_kb(pid: int) -> int:
    """Memory only this process uses (USS: private clean + private dirty pages)."""
    return _kb(f"/proc/{pid}/smaps_rollup", "Private_Clean:") + _kb(f"/proc/{pid}/smaps_rollup", "Private_Dirty:")


class MemoryMonitor(threading.Thread):
    """Samples the memory of this process and its descendants every ``interval`` seconds; keeps the peaks.

    The footprint is the main process's RSS plus each worker's private memory (USS): pages a worker shares with the
    main process (inherited at fork, shared libraries) are counted once. Unlike PSS it does not change when unrelated
    processes on a shared machine start or stop mapping the same libraries.
    """

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval, self.stop_event = interval, threading.Event()
        self.peak_main_rss = self.peak_worker_rss = self.peak_total_pss = self.peak_total_rss = 0
        self.peak_footprint = self.peak_worker_uss = 0
        self.samples = 0

    def run(self) -> None:
        pid = os.getpid()
        while not self.stop_event.is_set():
            kids = _children(pid)
            main_rss = _kb(f"/proc/{pid}/status", "VmRSS:")
            worker_rss = [_kb(f"/proc/{k}/status", "VmRSS:") for k in kids]
            worker_uss = [_private_kb(k) for k in kids]
            pss = sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in [pid, *kids])
            self.peak_main_rss = max(self.peak_main_rss, main_rss)
            self.peak_worker_rss = max([self.peak_worker_rss, *worker_rss])
            self.peak_worker_uss = max([self.peak_worker_uss, *worker_uss])
            self.peak_total_rss = max(self.peak_total_rss, main_rss + sum(worker_rss))
            self.peak_footprint = max(self.peak_footprint, main_rss + sum(worker_uss))
            self.peak_total_pss = max(self.peak_total_pss, pss)
            self.samples += 1
            self.stop_event.wait(self.interval)

    def __enter__(self) -> "MemoryMonitor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.join()

    def result_mb(self) -> dict:
        return {"peak_footprint_mb": self.peak_footprint / 1024, "peak_main_rss_mb": self.peak_main_rss / 1024,
                "peak_worker_rss_mb": self.peak_worker_rss / 1024, "peak_worker_uss_mb": self.peak_worker_uss / 1024,
                "peak_total_rss_mb": self.peak_total_rss / 1024, "peak_total_pss_mb": self.peak_total_pss / 1024,
                "samples": self.samples}


# ------------------------------------------------------------------------------------------------------- pieces
def light_pipeline(fs: float):
    from ecgfm.signal import CropOrPad, Pipeline, ReorderLeads, Resample

    return Pipeline((ReorderLeads(), Resample(float(fs)), CropOrPad(10.0)))


def build_synthetic_store(path: Path, n: int, fs: float, workers: int, light: bool = True, seed: int = 0) -> dict:
    from ecgfm.datasets.ingest import ingest
    from ecgfm.datasets.synthetic import SyntheticSource
    from ecgfm.signal import Pipeline

    pipeline = light_pipeline(fs) if light else Pipeline.default(fs=fs)
    report = ingest(SyntheticSource(n, seed=seed, fs=fs), path, pipeline=pipeline, workers=workers, progress=True)
    return {"n": n, "fs": fs, "pipeline": "light (leads, rate, length)" if light else "default",
            "records_per_s": report.records_per_s, "seconds": report.seconds,
            "bytes_per_record": report.bytes_per_record, "raw_int16_bytes_per_record": 2 * 12 * int(fs * 10)}


def ingest_files_rate(workdir: Path, n: int, workers: int) -> dict:
    """Ingest rate of the real path: WFDB files at 500 Hz -> default pipeline -> 100 Hz store."""
    from ecgfm.datasets.ingest import ingest
    from ecgfm.datasets.manifest import Manifest
    from ecgfm.datasets.synthetic import write_synthetic_wfdb

    files = workdir / "wfdb"
    start = time.perf_counter()
    table = write_synthetic_wfdb(files, n, fs=500.0)
    write_seconds = time.perf_counter() - start
    manifest = Manifest.from_table(table, root=files)
    report = ingest(manifest, workdir / "from_files", workers=workers, progress=True)
    shutil.rmtree(files)
    return {"n": n, "source": "WFDB 500 Hz 16-bit files", "pipeline": "default (units, 0.5 Hz high-pass, 100 Hz)",
            "workers": workers, "records_per_s": report.records_per_s, "seconds": report.seconds,
            "bytes_per_record": report.bytes_per_record, "failed": report.failed,
            "wfdb_write_seconds": write_seconds}


def ptbxl_bytes_per_record(workdir: Path, n: int, workers: int) -> dict | None:
    """Bytes/record of real PTB-XL records at 100 and 500 Hz (None when PTB-XL is not configured)."""
    from ecgfm.config import ptbxl_dir

    root = ptbxl_dir() or Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ptbxl"
    if root is None or not (root / "ptbxl_database.csv").exists():
        return None
    from ecgfm.datasets.ingest import ingest
    from ecgfm.datasets.manifest import Manifest

    out = {}
    for fs in (100.0, 500.0):
        full = Manifest.from_ptbxl(root, fs=fs)
        records = full.records
        records = records[records["path"].str.contains("records500" if fs == 500 else "records100")].iloc[:n]
        manifest = Manifest(records.reset_index(drop=True), full.label_names, full.description)
        report = ingest(manifest, workdir / f"ptbxl{int(fs)}", fs=fs, workers=workers, progress=True)
        out[f"{int(fs)}hz"] = {"n": report.written, "bytes_per_record": report.bytes_per_record,
                               "raw_int16_bytes_per_record": 2 * 12 * int(fs * 10),
                               "ratio": 2 * 12 * fs * 10 / report.bytes_per_record,
                               "records_per_s": report.records_per_s}
        shutil.rmtree(workdir / f"ptbxl{int(fs)}")
    return out


def _loader(dataset, workers: int, batch: int, seed: int = 0, shuffle: bool = True):
    import torch
    from torch.utils.data import DataLoader

    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch, shuffle=shuffle, num_workers=workers, generator=generator,
                      persistent_workers=False)


def read_rate(dataset, workers: int, reads: int, repeats: int, batch: int = 128) -> dict:
    """Records/s of a shuffled DataLoader pass over ``reads`` records (median of ``repeats`` passes)."""
    rates = []
    for r in range(repeats):
        seen, start = 0, time.perf_counter()
        for x, _ in _loader(dataset, workers, batch, seed=r):
            seen += len(x)
            if seen >= reads:
                break
        rates.append(seen / (time.perf_counter() - start))
    return {"workers": workers, "records_per_s": float(np.median(rates)), "runs": rates, "reads": reads}


class NpyDataset:
    """Baseline: uncompressed int16 records in one memory-mapped .npy (no compression, no index)."""

    def __init__(self, path: Path, Y: np.ndarray):
        self.path, self.Y, self._X = str(path), Y, None

    def __len__(self) -> int:
        return len(self.Y)

    def __getitem__(self, i: int):
        import torch

        if self._X is None:
            self._X = np.load(self.path, mmap_mode="r")
        return torch.from_numpy(self._X[i].astype(np.float32) * np.float32(0.001)), torch.from_numpy(self.Y[i])

    def __getstate__(self):
        return {**self.__dict__, "_X": None}


def npy_baseline(store_path: Path, workdir: Path, n: int, reads: int, repeats: int) -> dict:
    from ecgfm.datasets.store import StoreDataset

    data = StoreDataset(store_path)
    n = min(n, len(data))
    path = workdir / "baseline.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.int16, shape=(n, 12, data.spec.n_samples))
    for i in range(n):
        X[i] = data.reader.read(data.rows[i])
    X.flush()
    del X
    baseline = NpyDataset(path, data.Y[:n])
    out = {"n": n, "bytes_per_record": path.stat().st_size / n,
           "read_0_workers": read_rate(baseline, 0, reads, repeats)}
    path.unlink()
    return out


def epoch_memory(store_path: Path, workers: int, reads: int | None = None, batch: int = 256) -> dict:
    """Shuffled read-only epochs through the DataLoader with a trivial consumer; peak memory and speed.

    ``reads`` (default: one epoch) repeats epochs of a small store so that stores of different sizes are compared
    after the same number of reads: the allocator of each worker grows to a plateau over the first ~10^5 reads
    whatever the store size, and that warm-up must not be mistaken for growth with N.
    """
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from ecgfm.datasets.store import StoreDataset

    data = StoreDataset(store_path)
    reads = max(reads or len(data), len(data))
    sampler = RandomSampler(data, num_samples=reads, generator=torch.Generator().manual_seed(0))
    total = 0.0
    with MemoryMonitor() as monitor:
        start = time.perf_counter()
        seen = 0
        for x, y in DataLoader(data, batch_size=batch, sampler=sampler, num_workers=workers):
            total += float(x[:, 0, 0].sum())  # trivial consumer
            seen += len(x)
        seconds = time.perf_counter() - start
    return {"n": len(data), "reads": seen, "epochs": seen / len(data), "workers": workers, "batch": batch,
            "seconds": seconds, "records_per_s": seen / seconds, **monitor.result_mb()}


def training_rate(model_name: str, window: int, batch: int, steps: int, threads: int) -> dict:
    """CPU training throughput of ``model_name`` (records/s, median step after 2 warm-up steps)."""
    import torch

    from ecgfm.models import create
    from ecgfm.models.flops import count_flops, count_params
    from ecgfm.training.trainer import build_optimizer, masked_bce_with_logits

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create(model_name, num_labels=71)
    optimizer = build_optimizer(model, 1e-3, 1e-2)
    x, y = torch.randn(batch, 12, window) * 0.3, (torch.rand(batch, 71) < 0.1).float()
    model.train()
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        loss = masked_bce_with_logits(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    step = float(np.median(times[2:]))
    return {"model": model_name, "window_samples": window, "batch": batch, "threads": threads, "steps": steps,
            "records_per_s": batch / step, "median_step_s": step, "params": count_params(model),
            "forward_gflops_per_record": count_flops(model, (1, 12, window)) / 1e9}


def extrapolate(per_worker_read: float, cpu_train: dict, gpu_records_per_s: float | None, gpu_tflops: float,
                cores_per_gpu: int, scaling_efficiency: float) -> dict:
    """Epoch time at 1.6M records: bounded by the GPU or by the data loaders feeding it."""
    train_flops = 3 * cpu_train["forward_gflops_per_record"] * 1e9  # forward + backward ~ 3x forward
    assumed = gpu_records_per_s is None
    gpu = gpu_records_per_s or gpu_tflops * 1e12 / train_flops
    loader = cores_per_gpu * per_worker_read
    one = min(gpu, loader)
    eight = 8 * one * scaling_efficiency
    return {
        "records": TARGET_RECORDS,
        "gpu_records_per_s": gpu, "gpu_throughput_assumed": assumed,
        "gpu_assumption": (f"{gpu_tflops:g} effective TFLOP/s / (3 x forward FLOPs per record)" if assumed
                           else "measured (--gpu-records-per-s)"),
        "loader_records_per_s_per_gpu": loader, "cores_per_gpu": cores_per_gpu,
        "bound_by": "GPU" if gpu <= loader else "data loading",
        "epoch_minutes_1gpu": TARGET_RECORDS / one / 60, "epoch_minutes_8gpu": TARGET_RECORDS / eight / 60,
        "scaling_efficiency_8gpu": scaling_efficiency,
        "epoch_hours_cpu_only": TARGET_RECORDS / cpu_train["records_per_s"] / 3600,
    }


def markdown(result: dict) -> str:
    """The README/docs table."""
    big, small = result["epoch_memory"][-1], result["epoch_memory"][0]
    reads = {r["workers"]: r["records_per_s"] for r in result["read"]}
    ex = result["extrapolation"]
    b500 = result["store_500hz"]
    rows = [
        ("ingest, WFDB 500 Hz files -> 100 Hz store (default pipeline)",
         f"{result['ingest_files']['records_per_s']:.0f} records/s ({result['ingest_files']['workers']} workers)"),
        (f"store build, synthetic (light pipeline, N={big['n']:,})",
         f"{result['stores'][-1]['records_per_s']:.0f} records/s"),
        ("bytes/record, 100 Hz int16 (raw 24,000)", f"{result['stores'][-1]['bytes_per_record']:,.0f}"),
        ("bytes/record, 500 Hz int16 (raw 120,000)", f"{b500['bytes_per_record']:,.0f}"),
    ]
    if result.get("ptbxl"):
        for key, value in result["ptbxl"].items():
            rows.append((f"bytes/record, real PTB-XL at {key.replace('hz', ' Hz')} (n={value['n']})",
                         f"{value['bytes_per_record']:,.0f} ({value['ratio']:.2f}x smaller than raw)"))
    rows += [(f"random reads, DataLoader {w} worker{'s' if w != 1 else ''}", f"{reads[w]:,.0f} records/s")
             for w in sorted(reads)]
    rows.append(("random reads at 500 Hz (5x larger records), DataLoader 0 workers",
                 f"{result['read_500hz_0_workers']['records_per_s']:,.0f} records/s"))
    rows += [
        ("baseline: zarr-python reader, 0 workers", f"{result['read_zarr_baseline']['records_per_s']:,.0f} records/s"),
        ("baseline: uncompressed memory-mapped .npy, 0 workers",
         f"{result['npy_baseline']['read_0_workers']['records_per_s']:,.0f} records/s"),
        (f"CPU training, {result['train']['model']} ({result['train']['threads']} threads, batch "
         f"{result['train']['batch']}, 2.5-s crops)", f"{result['train']['records_per_s']:.0f} records/s"),
        ("read (2 workers) / CPU training", f"{reads[max(reads)] / result['train']['records_per_s']:.0f}x"),
        (f"peak memory, N={small['n']:,} ({small['epochs']:.0f} epochs, {small['reads']:,} reads; footprint / main RSS)",
         f"{small['peak_footprint_mb']:,.0f} MB / {small['peak_main_rss_mb']:,.0f} MB"),
        (f"peak memory, N={big['n']:,} (1 epoch; footprint / main RSS)",
         f"{big['peak_footprint_mb']:,.0f} MB / {big['peak_main_rss_mb']:,.0f} MB"),
        (f"read-only epoch, N={big['n']:,}, 2 workers", f"{big['seconds']:.0f} s ({big['records_per_s']:,.0f}/s)"),
        (f"epoch at 1.6M records, 1 GPU ({ex['bound_by']}-bound)", f"{ex['epoch_minutes_1gpu']:.1f} min"),
        ("epoch at 1.6M records, 8 GPUs", f"{ex['epoch_minutes_8gpu']:.1f} min"),
        ("epoch at 1.6M records, this CPU only", f"{ex['epoch_hours_cpu_only']:.1f} h"),
    ]
    lines = ["| measurement | value |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="records of the large 100 Hz store")
    parser.add_argument("--n-small", type=int, default=20_000, help="records of the small 100 Hz store")
    parser.add_argument("--n-500", type=int, default=2_000, help="records of the 500 Hz store (bytes/record)")
    parser.add_argument("--n-files", type=int, default=1_000, help="WFDB files for the real-path ingest rate")
    parser.add_argument("--n-ptbxl", type=int, default=1_000, help="PTB-XL records per rate (if available)")
    parser.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    parser.add_argument("--reads", type=int, default=20_000, help="records per random-read pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the CPU training measurement")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--gpu-records-per-s", type=float, default=None, help="measured GPU training throughput")
    parser.add_argument("--gpu-tflops", type=float, default=25.0, help="assumed effective TFLOP/s of one GPU")
    parser.add_argument("--cores-per-gpu", type=int, default=8, help="DataLoader workers (CPU cores) per GPU")
    parser.add_argument("--scaling-efficiency", type=float, default=0.9, help="8-GPU DDP scaling efficiency")
    parser.add_argument("--workdir", default=tempfile.gettempdir(), help="where the stores are built (deleted after)")
    parser.add_argument("--keep", action="store_true", help="keep the stores")
    parser.add_argument("--quick", action="store_true", help="smoke run: N=20000, N_small=2000, fewer reads")
    parser.add_argument("--out", default=str(RESULTS / "scale.json"))
    args = parser.parse_args()
    if args.quick:
        args.n, args.n_small, args.n_500, args.n_files, args.n_ptbxl, args.reads = 20_000, 2_000, 300, 200, 200, 4000
    import torch

    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="ecgfm-scale-", dir=args.workdir))
    result: dict = {"command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                "python": platform.python_version(), "torch": torch.__version__,
                                "loadavg_start": os.getloadavg()}}
    try:
        print("== ingest rate from WFDB files", flush=True)
        result["ingest_files"] = ingest_files_rate(workdir, args.n_files, args.workers)
        shutil.rmtree(workdir / "from_files")
        print("== PTB-XL bytes/record", flush=True)
        result["ptbxl"] = ptbxl_bytes_per_record(workdir, args.n_ptbxl, args.workers)
        print("== 500 Hz store", flush=True)
        result["store_500hz"] = build_synthetic_store(workdir / "s500", args.n_500, 500.0, args.workers, light=False)
        from ecgfm.datasets.store import StoreDataset

        result["read_500hz_0_workers"] = read_rate(StoreDataset(workdir / "s500"), 0, min(args.reads, args.n_500),
                                                   args.repeats)
        shutil.rmtree(workdir / "s500")
        result["stores"], result["epoch_memory"] = [], []
        for n in (args.n_small, args.n):
            path = workdir / f"s{n}"
            print(f"== {n} records at 100 Hz", flush=True)
            result["stores"].append(build_synthetic_store(path, n, 100.0, args.workers))
            if n == args.n:
                data = StoreDataset(path)
                print("== random reads", flush=True)
                result["read"] = [read_rate(data, w, args.reads, args.repeats) for w in (0, 1, 2)]
                result["read_zarr_baseline"] = read_rate(StoreDataset(path, reader="zarr"), 0,
                                                         min(args.reads, 5000), args.repeats)
                result["npy_baseline"] = npy_baseline(path, workdir, min(args.n_small, n), args.reads, args.repeats)
            print(f"== epochs over {n} records ({args.n} reads)", flush=True)
            result["epoch_memory"].append(epoch_memory(path, workers=2, reads=args.n))
            if not args.keep:
                shutil.rmtree(path)
        print("== CPU training throughput", flush=True)
        result["train"] = training_rate("resnet1d", 250, 128, args.train_steps, args.threads)
        per_worker = result["read"][1]["records_per_s"]  # one worker's read rate = one core's
        result["extrapolation"] = extrapolate(per_worker, result["train"], args.gpu_records_per_s, args.gpu_tflops,
                                              args.cores_per_gpu, args.scaling_efficiency)
        reads2 = result["read"][2]["records_per_s"]
        result["targets"] = {
            "read_ge_5x_cpu_training": reads2 >= 5 * result["train"]["records_per_s"],
            "read_ge_2000_per_s_on_2_cores": reads2 >= 2000,
            "bytes_500hz_le_raw": result["store_500hz"]["bytes_per_record"] <= 120_000,
            "memory_flat_in_n": result["epoch_memory"][1]["peak_footprint_mb"]
                                <= 1.2 * result["epoch_memory"][0]["peak_footprint_mb"],
            "memory_under_4gb": result["epoch_memory"][1]["peak_footprint_mb"] < 4096,
        }
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["loadavg_end"] = os.getloadavg()
    result["markdown"] = markdown(result)
    print(result["markdown"])
    print(json.dumps(result["targets"], indent=2))
    write_result(args.out, result, indent=2)


if __name__ == "__main__":
    main()
