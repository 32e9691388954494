"""Inference speed on CPU: single-ECG latency and batch throughput for the PyTorch and ONNX Runtime backends.

Reports, for a 10-s 12-lead WFDB ECG (PTB-XL ``records500`` files, or synthetic ones when PTB-XL is absent):

- FLOPs per ECG of the deployed network (``ecgfm.models.count_flops`` on the model with its sliding windows) and the
  machine's measured peak float32 FLOP/s (median of large ``torch.matmul`` runs), hence the fraction of peak achieved;
- single-ECG latency on one core (``torch.set_num_threads(1)`` / one ONNX Runtime thread), end to end from the file,
  broken down into reading, preprocessing and the model;
- the PyTorch backend as ``Predictor.from_pretrained`` runs it on CPU (``torch``: channels-last convolutions where
  the architecture supports them, ``ecgfm.models.layout``) and on its plain 1-D path (``torch-1d``), in the same run;
- batch throughput (ECGs/s) of the model alone on preprocessed inputs (the compute ceiling) and end to end from files
  with reading/preprocessing in worker threads (the default), worker processes, or inline; the ratio end-to-end /
  model-only shows whether I/O is the bottleneck.

Targets (issue 7): batch throughput >= 80% of the model-only ceiling; one ECG end to end < 100 ms on one core.
Measurements alternate between variants in every repeat and the medians are reported, so background load affects
all variants alike. Results go to ``benchmarks/results/predict.json``.

Usage:  python benchmarks/predict.py [--model DIR|CKPT] [--threads N] [--files 128] [--batch-size 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import cpu_flags, write_result

from ecgfm import read
from ecgfm.config import ptbxl_dir
from ecgfm.inference.onnx import OnnxBackend, export_onnx
from ecgfm.inference.predictor import Predictor
from ecgfm.models import ModelInfo, count_flops, count_params, create, load
from ecgfm.models.layout import default_channels_last
from ecgfm.models.runner import TorchRunner
from ecgfm.models.windowing import WindowedModel
from ecgfm.signal import Pipeline

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "predict.json"


def _best_and_median(run, flops: float, repeats: int) -> dict:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return {"best": flops / min(times) / 1e9, "median": flops / statistics.median(times) / 1e9}


def peak_gflops(threads: int, n: int = 2048, repeats: int = 7) -> dict:
    """Float32 peak of this CPU: GFLOP/s of an ``n x n`` matmul (2 n^3 FLOPs) with ``threads`` threads.

    Measured with ``torch.matmul`` (MKL) and with ONNX Runtime's MatMul (MLAS): MKL's sgemm can run far below the
    hardware's peak on non-Intel CPUs, so the machine's peak is the better of the two. ``best`` (fastest run) is the
    capability; ``median`` shows how much background load took away. Fractions of peak use ``best`` (conservative).
    """
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    result = {"torch_matmul": _best_and_median(lambda: a @ b, 2 * n ** 3, repeats)}
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [n, n]) for name in "abc"]
        graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", spec[:2], spec[2:])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
                                       .SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = {"a": a.numpy(), "b": b.numpy()}
        result["onnxruntime_matmul"] = _best_and_median(lambda: session.run(None, feeds), 2 * n ** 3, repeats)
    except ImportError:
        pass
    result["best"] = max(v["best"] for v in result.values())
    return result


def load_model(name):
    model = load(name)
    return model, model.info


def benchmark_model(args):
    """(model, info, description): the given model, else the shipped one, else an untrained ``--arch`` network."""
    if args.model:
        model, info = load_model(args.model)
        return model, info, f"{args.model}"
    try:
        model, info = load_model(None)
        return model, info, "shipped foundation model"
    except FileNotFoundError:
        model = create(args.arch, num_labels=71).eval()
        info = ModelInfo.from_model(model, [f"label{i}" for i in range(71)], fs=100.0, window=250,
                                    preprocess=Pipeline.default(fs=100.0, seconds=10.0).to_dict())
        return model, info, f"untrained {args.arch} (71 labels, 100 Hz, 2.5-s windows; no shipped weights yet)"


def ecg_files(args, workdir: Path) -> tuple[list[Path], str]:
    """``--files`` 10-s 12-lead WFDB records: PTB-XL at 500 Hz if available, else synthetic 500 Hz files."""
    root = ptbxl_dir(args.data) or REPO.parent / "shared" / "data" / "ptbxl"
    files = sorted((root / "records500").glob("*/*.hea"))[:args.files]
    if len(files) == args.files:
        return files, f"PTB-XL records500 ({root})"
    import wfdb

    rng = np.random.default_rng(0)
    t = np.arange(5000) / 500
    files = []
    for i in range(args.files):
        signal = np.sin(2 * np.pi * 1.2 * t)[None] * rng.uniform(0.2, 1.5, (12, 1)) + rng.normal(0, 0.02, (12, 5000))
        wfdb.wrsamp(f"syn{i:04d}", fs=500, units=["mV"] * 12, sig_name=list(Pipeline.default().leads),
                    p_signal=signal.T, fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                    write_dir=str(workdir))
        files.append(workdir / f"syn{i:04d}.hea")
    return files, "synthetic 500 Hz WFDB files (PTB-XL not found)"


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def single_ecg_latency(predictor: Predictor, files: list[Path], repeats: int) -> dict:
    """One core: median ms to read, preprocess, run the model on, and fully predict one file."""
    return _median_latency([_latency_once(predictor, files[: max(repeats * 5, 15)])])


def paired_latency(predictors: dict[str, Predictor], files: list[Path], repeats: int, rounds: int = 5) -> dict:
    """:func:`single_ecg_latency` of several predictors in alternating rounds (each round times every predictor on
    the same files), so background load falls on all alike; medians over all rounds, and each one's ratio to the
    first predictor's end-to-end time."""
    sample = files[: max(repeats * 5, 15)]
    times: dict[str, list[dict]] = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            times[name].append(_latency_once(predictor, sample))
    out = {name: _median_latency(runs) for name, runs in times.items()}
    first = next(iter(out.values()))["end_to_end_ms"]
    for result in out.values():
        result["end_to_end_vs_first"] = result["end_to_end_ms"] / first
    return out


def _median_latency(runs: list[dict]) -> dict:
    keys = ("read_ms", "preprocess_ms", "model_ms", "end_to_end_ms")
    return {**{k: statistics.median(v for run in runs for v in run[k]) for k in keys},
            "n": sum(len(run["end_to_end_ms"]) for run in runs)}


def _latency_once(predictor: Predictor, sample: list[Path]) -> dict:
    predictor.predict(sample[0])
    read_ms, prep_ms, model_ms, total_ms = [], [], [], []
    for path in sample:
        start = time.perf_counter()
        ecg = read(path)
        t_read = time.perf_counter()
        x = predictor.pipeline.to_array(ecg)
        t_prep = time.perf_counter()
        predictor.record_logits([x])
        t_model = time.perf_counter()
        predictor.predict(path)
        t_total = time.perf_counter()
        read_ms.append((t_read - start) * 1e3)
        prep_ms.append((t_prep - t_read) * 1e3)
        model_ms.append((t_model - t_prep) * 1e3)
        total_ms.append((t_total - t_model) * 1e3)
    return {"read_ms": read_ms, "preprocess_ms": prep_ms, "model_ms": model_ms, "end_to_end_ms": total_ms}


def batch_throughput(predictor: Predictor, files: list[Path], batch: np.ndarray, args) -> dict:
    """ECGs/s of the model alone and end to end with each loader; variants alternate within every repeat."""
    variants = {"model_only": None, "thread_workers": ("thread", args.workers),
                "process_workers": ("process", args.workers), "inline": ("thread", 0)}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    predictor.record_logits(batch)
    for _ in range(args.repeats):
        for name, loader in variants.items():
            if loader is None:
                seconds = median_time(lambda: predictor.record_logits(batch), 3)
                rates[name].append(len(batch) / seconds)
                continue
            start = time.perf_counter()
            report = predictor.predict_many(files, batch_size=args.batch_size, num_workers=loader[1], loader=loader[0])
            rates[name].append(len(report.predictions) / (time.perf_counter() - start))
            assert not report.failures, report.failures[:3]
    out = {f"{name}_ecg_per_s": statistics.median(values) for name, values in rates.items()}
    for name in ("thread_workers", "process_workers", "inline"):
        out[f"{name}_vs_model_only"] = out[f"{name}_ecg_per_s"] / out["model_only_ecg_per_s"]
    return out


def read_preprocess_rate(pipeline: Pipeline, files: list[Path]) -> dict:
    """One core, no model: ECGs/s for reading and for reading + preprocessing."""
    sample = files[:64]
    read(sample[0])
    t_read = median_time(lambda: [read(f) for f in sample], 2) / len(sample)
    t_both = median_time(lambda: [pipeline.to_array(read(f)) for f in sample], 2) / len(sample)
    return {"read_ms_per_ecg": t_read * 1e3, "read_preprocess_ms_per_ecg": t_both * 1e3,
            "read_preprocess_ecg_per_s_one_core": 1 / t_both}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model folder or .pt checkpoint (default: shipped model, else untrained --arch)")
    parser.add_argument("--arch", default="resnet1d", help="architecture when no trained model is available")
    parser.add_argument("--data", help="PTB-XL folder (default: $ECGFM_PTBXL_DIR or ../shared/data/ptbxl)")
    parser.add_argument("--files", type=int, default=128, help="ECG files per end-to-end run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for batch inference")
    parser.add_argument("--workers", type=int, default=2, help="reading/preprocessing workers")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="torch,torch-1d,onnx",
                        help="torch (channels-last where the model supports it, as Predictor.from_pretrained "
                             "runs it on CPU), torch-1d (the plain 1-D path), onnx")
    parser.add_argument("--baseline", help="another model (name or folder) whose one-ECG, one-core latency is timed "
                        "in the same run, alternating with --model (PyTorch backend): the speed-up")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="ecgfm-bench-"))
    model, info, model_desc = benchmark_model(args)
    files, data_desc = ecg_files(args, workdir)
    pipeline = Pipeline.from_dict(info.preprocess)
    n_samples = pipeline.n_samples
    flops = count_flops(WindowedModel(model), (1, info.in_leads, n_samples))
    peak = {"1_thread": peak_gflops(1), f"{args.threads}_threads": peak_gflops(args.threads)}
    batch = np.stack([pipeline.to_array(read(f)) for f in files[: args.batch_size]])
    onnx_path = None
    if "onnx" in args.backends:
        onnx_path = export_onnx(model, info, workdir / "onnx" / "model.onnx")

    def make_predictor(backend: str, threads: int) -> Predictor:
        if backend in ("torch", "torch-1d"):  # a copy each: channels-last mode switches the model in place
            channels_last = backend == "torch" and default_channels_last(model, "cpu")  # as from_pretrained
            return Predictor(TorchRunner(copy.deepcopy(model), num_threads=threads, channels_last=channels_last),
                             info, batch_size=args.batch_size)
        return Predictor(OnnxBackend(onnx_path, num_threads=threads), info, batch_size=args.batch_size)

    results: dict = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/predict.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpu": cpu_flags()["model"], "cores": os.cpu_count(),
                    "load_average_before": load_before, "torch": torch.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__ if onnx_path else None},
        "model": {"description": model_desc, "arch": info.arch, "params": count_params(model),
                  "input": [info.in_leads, n_samples], "window": info.window, "stride": info.stride,
                  "gflops_per_ecg": flops / 1e9},
        "data": data_desc, "peak_gflops": peak, "settings": vars(args) | {"out": str(args.out)},
        "read_preprocess": read_preprocess_rate(pipeline, files), "backends": {},
    }
    for backend in [b for b in args.backends.split(",") if b]:
        single = single_ecg_latency(make_predictor(backend, 1), files, args.repeats)
        single["model_gflops_per_s"] = flops / 1e9 / (single["model_ms"] / 1e3)
        single["model_fraction_of_peak"] = single["model_gflops_per_s"] / peak["1_thread"]["best"]
        predictor = make_predictor(backend, args.threads)
        batched = batch_throughput(predictor, files, batch, args)
        batched["model_gflops_per_s"] = batched["model_only_ecg_per_s"] * flops / 1e9
        batched["model_fraction_of_peak"] = batched["model_gflops_per_s"] / peak[f"{args.threads}_threads"]["best"]
        results["backends"][backend] = {"single_ecg_one_core": single, f"batch_{args.threads}_threads": batched}
    if args.baseline:
        results["speedup"] = speedup(args, model, info, files)
    results["machine"]["load_average_after"] = os.getloadavg()
    torch_batch = results["backends"].get("torch", {}).get(f"batch_{args.threads}_threads", {})
    torch_single = results["backends"].get("torch", {}).get("single_ecg_one_core", {})
    results["targets"] = {
        "batch_throughput_vs_model_only": {"value": torch_batch.get("thread_workers_vs_model_only"),
                                           "target": ">= 0.8"},
        "single_ecg_end_to_end_ms_one_core": {"value": torch_single.get("end_to_end_ms"), "target": "< 100"},
    }
    write_result(args.out, results, indent=2)
    print_summary(results, args.threads)
    return results


def speedup(args, model, info, files: list[Path]) -> dict:
    """One ECG end to end on one core, ``--model`` against ``--baseline`` in alternating rounds (PyTorch, each
    channels-last where it supports it, as ``Predictor.from_pretrained`` runs them on a CPU)."""
    base_model, base_info = load_model(args.baseline)
    predictors = {}
    for name, (m, i) in {"model": (model, info), "baseline": (base_model, base_info)}.items():
        predictors[name] = Predictor(TorchRunner(copy.deepcopy(m), num_threads=1,
                                                 channels_last=default_channels_last(m, "cpu")), i)
    times = paired_latency(predictors, files, args.repeats)
    base_flops = count_flops(WindowedModel(base_model), (1, base_info.in_leads, Pipeline.from_dict(
        base_info.preprocess).n_samples))
    return {"baseline": args.baseline, "baseline_gflops_per_ecg": base_flops / 1e9, "one_core": times,
            "end_to_end_speedup": times["baseline"]["end_to_end_ms"] / times["model"]["end_to_end_ms"]}


def print_summary(results: dict, threads: int) -> None:
    m, rp = results["model"], results["read_preprocess"]
    print(f"model: {m['description']}: {m['params'] / 1e6:.2f} M params, {m['gflops_per_ecg']:.2f} GFLOPs per ECG "
          f"(input {m['input']}, window {m['window']})")
    print(f"data: {results['data']}; load average before/after: {results['machine']['load_average_before'][0]:.1f}"
          f"/{results['machine']['load_average_after'][0]:.1f} on {results['machine']['cores']} cores")
    for threads_key, peaks in results["peak_gflops"].items():
        print(f"peak float32, {threads_key} (best/median GFLOP/s): " + ", ".join(
            f"{k} {v['best']:.1f}/{v['median']:.1f}" for k, v in peaks.items() if k != "best") +
              f" -> peak {peaks['best']:.1f}")
    print(f"read {rp['read_ms_per_ecg']:.1f} ms + preprocess -> {rp['read_preprocess_ms_per_ecg']:.1f} ms per ECG "
          f"on one core ({rp['read_preprocess_ecg_per_s_one_core']:.0f} ECG/s)")
    for backend, res in results["backends"].items():
        s, b = res["single_ecg_one_core"], res[f"batch_{threads}_threads"]
        print(f"[{backend}] one ECG, one core: end to end {s['end_to_end_ms']:.1f} ms (read {s['read_ms']:.1f}, "
              f"preprocess {s['preprocess_ms']:.1f}, model {s['model_ms']:.1f} = "
              f"{100 * s['model_fraction_of_peak']:.0f}% of peak)")
        print(f"[{backend}] batch, {threads} threads: model only {b['model_only_ecg_per_s']:.1f} ECG/s "
              f"({100 * b['model_fraction_of_peak']:.0f}% of peak); end to end: thread workers "
              f"{b['thread_workers_ecg_per_s']:.1f} ({100 * b['thread_workers_vs_model_only']:.0f}%), process workers "
              f"{b['process_workers_ecg_per_s']:.1f} ({100 * b['process_workers_vs_model_only']:.0f}%), inline "
              f"{b['inline_ecg_per_s']:.1f} ({100 * b['inline_vs_model_only']:.0f}%)")
    if "speedup" in results:
        sp = results["speedup"]
        print(f"one ECG, one core, same run: model {sp['one_core']['model']['end_to_end_ms']:.1f} ms, baseline "
              f"{sp['baseline']} {sp['one_core']['baseline']['end_to_end_ms']:.1f} ms: {sp['end_to_end_speedup']:.2f}x")
    print(f"wrote {results['settings']['out']}")


if __name__ == "__main__":
    main()
