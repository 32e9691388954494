"""Benchmark: does bf16 autocast (``ecgfm pretrain --amp``) pay on a CPU, and does it cost accuracy?

Method.
1. Speed: the shipped model's member network (``xresnet1d50``, 2.5-s crops at 100 Hz, batch 128, AdamW, BCE) on
   random inputs; one training step = forward, backward, optimiser step, as ``ecgfm.training.fit`` runs it (the same
   ``autocast_context``). Median of ``--repeats`` timed steps after ``--warmup`` untimed ones, fp32 and bf16
   alternating in rounds so drifting machine load hits both alike; inference (``eval``, no grad, batch 256) the same
   way. Reported: median seconds per step, ECGs/s and the fp32 / bf16 ratio of the medians (the speed-up), plus the
   CPU's instruction sets (``torch.backends.cpu.get_cpu_capability()`` and the /proc/cpuinfo flags avx512_bf16 /
   amx_bf16; a CPU without native bf16 emulates it and may run slower, which this machine cannot show: measure
   before using ``--amp``).
2. The whole training loop and accuracy (optional, ``--accuracy-runs DIR_FP32 DIR_BF16``): two finished
   ``ecgfm pretrain`` run folders that differ only in ``--amp``, read from their ``metrics.jsonl``: best validation
   macro-AUC and its epoch, wall time (validation included), median training ECGs/s (data loading and crops
   included, which bf16 does not speed up). Fold 10 is not read. The runs::

       ecgfm pretrain --ptbxl ../shared/data/ptbxl --recipe xresnet1d50 --seed 0 --threads 2 --out runs/amp/fp32
       ecgfm pretrain --ptbxl ../shared/data/ptbxl --recipe xresnet1d50 --amp --seed 0 --threads 2 --out runs/amp/bf16

3. Layout (optional, ``--channels-last``): the same steps with the convolutions run as 2-D channels-last ones
   (``ecgfm.models.layout``, ``TrainConfig.channels_last``), in both precisions, timed in the same rounds; reported
   as speed-ups over the plain fp32 step.
4. Compilation (optional, ``--compile``, implies ``--channels-last``): the bf16 channels-last step once more through
   ``torch.compile`` (``TrainConfig.compile``), timed in the same rounds; its first call, which compiles, is timed
   apart and reported as ``compile_seconds``: a run pays it again for every crop length and validation shape.

Run: ``python experiments/cpu_precision.py --threads 2 --accuracy-runs runs/amp/fp32 runs/amp/bf16`` (writes
``experiments/results/cpu_precision.json``); ``--channels-last`` adds the layout, ``--compile`` torch.compile;
``--quick`` for a smoke run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import command_line, cpu_flags, write_result

from ecgfm.leads import STANDARD_LEADS
from ecgfm.models import create
from ecgfm.models.layout import set_channels_last
from ecgfm.training.predict import autocast_context


def time_rounds(steps: dict, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each step function, interleaved round by round (after ``warmup`` untimed rounds)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(warmup + repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def new_model(labels: int, channels_last: bool):
    """A fresh xresnet1d50, optionally running as 2-D channels-last convolutions (``ecgfm.models.layout``)."""
    torch.manual_seed(0)
    model = create("xresnet1d50", num_labels=labels)
    return set_channels_last(model) if channels_last else model


def train_step_fn(amp: bool, batch: int, window: int, labels: int, channels_last: bool = False,
                  compiled: bool = False):
    """One ``fit``-style training step of a fresh xresnet1d50 (fp32 weights; bf16 autocast when ``amp``)."""
    model = new_model(labels, channels_last).train()
    forward = torch.compile(model) if compiled else model
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    x, y = torch.randn(batch, len(STANDARD_LEADS), window), (torch.rand(batch, labels) < 0.1).float()
    device = torch.device("cpu")

    def step():
        with autocast_context(device, amp):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(forward(x).float(), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    return step


def infer_fn(amp: bool, batch: int, window: int, labels: int, channels_last: bool = False, compiled: bool = False):
    """One inference batch of a fresh xresnet1d50 (eval mode, no grad; bf16 autocast when ``amp``)."""
    model = new_model(labels, channels_last).eval()
    forward = torch.compile(model) if compiled else model
    x, device = torch.randn(batch, len(STANDARD_LEADS), window), torch.device("cpu")

    @torch.no_grad()
    def step():
        with autocast_context(device, amp):
            forward(x)
    return step


def first_call_seconds(steps: dict, compiled: set[str]) -> dict[str, float]:
    """Run each compiled step once (outside the timed rounds) and return how long that compiling call took."""
    seconds = {}
    for name in sorted(compiled):
        start = time.perf_counter()
        steps[name]()
        seconds[name] = time.perf_counter() - start
        print(f"{name}: first call (compiles) {seconds[name]:.1f} s", flush=True)
    return seconds


def run_summary(run_dir: Path) -> dict:
    """Best validation macro-AUC (and its epoch), wall time and loop throughput of one ``ecgfm pretrain`` run."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("val_macro_auc") is not None]
    if not rows:
        raise SystemExit(f"{run_dir}/metrics.jsonl: no epoch with a validation macro-AUC")
    best = max(rows, key=lambda r: r["val_macro_auc"])
    training = json.loads((run_dir / "config.json").read_text())["training"]["config"]
    return {"run": str(run_dir), "amp": training.get("amp"), "channels_last": training.get("channels_last", False),
            "seed": training.get("seed"),
            "best_val_macro_auc": best["val_macro_auc"], "best_epoch": best["epoch"], "epochs": len(rows),
            "train_seconds": rows[-1]["elapsed_s"],  # elapsed_s is cumulative, validation included
            "median_train_ecgs_per_s": statistics.median(r["train_ecgs_per_s"] for r in rows),
            "median_val_seconds": statistics.median(r["val_seconds"] for r in rows)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--window", type=int, default=250, help="Crop length in samples (250 = 2.5 s at 100 Hz).")
    parser.add_argument("--labels", type=int, default=54)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--accuracy-runs", nargs=2, metavar=("FP32_RUN", "BF16_RUN"), type=Path,
                        help="two finished runs, fp32 then bf16 (the second may also be channels-last: recorded)")
    parser.add_argument("--channels-last", action="store_true", help="Also time both precisions with the "
                        "convolutions run as 2-D channels-last ones (TrainConfig.channels_last).")
    parser.add_argument("--compile", action="store_true", help="Also time the bf16 channels-last step through "
                        "torch.compile (TrainConfig.compile); implies --channels-last.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: batch 16, 1 warm-up, 2 repeats.")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cpu_precision.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.warmup, args.repeats = 16, 1, 2
    torch.set_num_threads(args.threads)
    shape = dict(batch=args.batch, window=args.window, labels=args.labels)
    load_before = os.getloadavg()
    args.channels_last = args.channels_last or args.compile
    variants = {"fp32": (False, False, False), "bf16": (True, False, False)}  # name: (amp, channels_last, compiled)
    if args.channels_last:
        variants.update({"fp32-channels-last": (False, True, False), "bf16-channels-last": (True, True, False)})
    if args.compile:
        variants["bf16-channels-last-compiled"] = (True, True, True)
    compiled = {name for name, (_, _, c) in variants.items() if c}
    train_steps = {name: train_step_fn(amp, **shape, channels_last=cl, compiled=c)
                   for name, (amp, cl, c) in variants.items()}
    infer_steps = {name: infer_fn(amp, **{**shape, "batch": 2 * args.batch}, channels_last=cl, compiled=c)
                   for name, (amp, cl, c) in variants.items()}
    compile_seconds = {"train_step": first_call_seconds(train_steps, compiled),
                       "inference": first_call_seconds(infer_steps, compiled)}
    train = time_rounds(train_steps, args.warmup, args.repeats)
    infer = time_rounds(infer_steps, args.warmup, args.repeats)
    results = {}
    for what, times, batch in (("train_step", train, args.batch), ("inference", infer, 2 * args.batch)):
        medians = {name: statistics.median(t) for name, t in times.items()}
        results[what] = {"median_seconds": medians, "ecgs_per_s": {n: batch / s for n, s in medians.items()},
                         "bf16_speedup": medians["fp32"] / medians["bf16"], "seconds": times, "batch": batch}
        if compiled:
            results[what]["compile_seconds"] = compile_seconds[what]
        print(f"{what:<10} fp32 {batch / medians['fp32']:7.0f} ECGs/s   bf16 {batch / medians['bf16']:7.0f} ECGs/s"
              f"   bf16 speed-up x{results[what]['bf16_speedup']:.2f}", flush=True)
        if args.channels_last:  # every variant against the plain 1-D fp32 step, timed in the same rounds
            results[what]["speedup_vs_fp32"] = {n: medians["fp32"] / s for n, s in medians.items()}
            print(" " * 11 + "   ".join(f"{n} x{r:.2f}" for n, r in results[what]["speedup_vs_fp32"].items()
                                         if "channels-last" in n), flush=True)
    document = {
        "benchmark": "cpu_precision",
        "command": command_line(argv),
        "model": "xresnet1d50", **shape, "threads": args.threads, "warmup": args.warmup, "repeats": args.repeats,
        "cpu": cpu_flags(),
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                        "platform": platform.platform(), "load_average_before": load_before,
                        "load_average_after": os.getloadavg()},
        "results": results,
    }
    if args.accuracy_runs:
        runs = [run_summary(d) for d in args.accuracy_runs]
        document["accuracy"] = {"fp32": runs[0], "bf16": runs[1], "score": "best validation (fold 9) macro-AUC"}
        for name, run in zip(("fp32", "bf16"), runs):
            print(f"{name}: best validation macro-AUC {run['best_val_macro_auc']:.4f} at epoch {run['best_epoch']}, "
                  f"{run['train_seconds'] / 60:.1f} min, median {run['median_train_ecgs_per_s']:.0f} training ECGs/s")
        document["accuracy"]["wall_speedup"] = runs[0]["train_seconds"] / runs[1]["train_seconds"]
    write_result(args.out, document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
