"""Benchmark: are the shipped model's explanations (``ecgfm.explain``) exact, clinically plausible, and fast enough?

Method. A shipped model (``--model``; by default the shipped default), PTB-XL fold 10 (the test fold; each record read
from its WFDB file as a user would).

1. Face validity. For statements that cardiology localises to particular leads (``TEXTBOOK_LEADS``), each fold-10
   positive (at most ``--per-label``) is explained for that statement; per record, the share of the positive lead
   contributions that falls in the textbook leads, and whether the top lead is one of them. Reported: the mean share
   for integrated gradients and lead occlusion against two references: the share evidence spread evenly over the
   leads would give (textbook leads / 12), and the share of the records' absolute voltage in those leads (what an
   attribution that merely follows amplitude would give); and, as the model-randomisation sanity check of Adebayo et
   al. 2018, the same for the model with freshly initialised weights: an explanation that does not change when the
   model forgets what it learned explains nothing about the model.
2. Completeness of integrated gradients: ``|sum(attributions) - (logit - flat-ECG logit)| / |logit - flat-ECG logit|``
   over the first ``--completeness-per-label`` of those record-label pairs at each of ``--steps`` (median and 90th
   percentile).
3. Speed: median seconds per explanation of one label (integrated gradients at the default steps, lead occlusion)
   against one prediction of the same record (``Predictor.predict``), all in this process, ``--threads`` threads.

Run: ``python benchmarks/explain.py --ptbxl ../shared/data/ptbxl`` (writes ``benchmarks/results/explain.json``);
``--per-label 3 --steps 16,64`` for a smoke run.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common import command_line, write_result

from ecgfm import Predictor
from ecgfm.datasets.ptbxl import PTBXL
from ecgfm.explain import explain
from ecgfm.explain.attribution import DEFAULT_STEPS
from ecgfm.models import build_model
from ecgfm.models.runner import TorchRunner

RESULTS = Path(__file__).resolve().parent / "results"

#: Where the ECG criteria of each statement are read (standard ECG textbooks; e.g. Surawicz & Knilans, Chou's
#: Electrocardiography in Clinical Practice): Q waves of inferior MI in II, III, aVF; of anteroseptal MI in V1-V4;
#: rsR' of right bundle branch block in V1-V2; the broad QS/rS and notched R of left bundle branch block in V1 and in
#: I, aVL, V5, V6; the voltage criteria of LVH (Sokolow-Lyon S in V1, R in V5/V6; Cornell R in aVL).
TEXTBOOK_LEADS = {
    "IMI": ("II", "III", "aVF"),
    "ASMI": ("V1", "V2", "V3", "V4"),
    "CRBBB": ("V1", "V2"),
    "CLBBB": ("V1", "I", "aVL", "V5", "V6"),
    "LVH": ("V1", "V5", "V6", "aVL"),
}


def positives(ptbxl: PTBXL, label: str, limit: int) -> list:
    """Paths of the first ``limit`` fold-10 records (by ecg_id) carrying ``label``, as 100-Hz files where present."""
    meta, labels = ptbxl.metadata, ptbxl.labels("all")
    ids = [i for i in meta.index[meta["strat_fold"] == 10] if label in labels[i]]
    found = [ptbxl.record_path(i, fs=100) for i in ids]
    return [f[0] for f in found if f is not None][:limit]


def textbook_share(contribution: dict[str, float], leads: tuple[str, ...]) -> tuple[float, bool]:
    """Share of the positive lead contributions in ``leads``, and whether the top lead is one of them."""
    positive = {lead: max(value, 0.0) for lead, value in contribution.items()}
    total = sum(positive.values())
    share = sum(positive[lead] for lead in leads) / total if total > 0 else float("nan")
    return share, max(contribution, key=contribution.get) in leads


def randomised(predictor: Predictor, seed: int = 0) -> Predictor:
    """The same architecture and windows with freshly initialised weights (the randomisation sanity check)."""
    info = predictor.info
    torch.manual_seed(seed)
    return Predictor(TorchRunner(build_model(info).eval()), info)


def amplitude_share(explanation, leads: tuple[str, ...]) -> float:
    """Share of the record's absolute voltage (summed over samples) in ``leads``: what an "explanation" that only
    follows amplitude would put there (precordial leads are the largest, so this is not an even 1/12 per lead)."""
    per_lead = dict(zip(explanation.leads, np.abs(explanation.signal).sum(axis=1)))
    return float(sum(per_lead[lead] for lead in leads) / sum(per_lead.values()))


def face_validity(predictor: Predictor, files: dict[str, list], method: str, steps: int) -> dict:
    rows = {}
    for label, paths in files.items():
        shares, tops, amplitude = [], [], []
        for path in paths:
            explanation = explain(path, predictor, labels=[label], method=method, steps=steps)
            share, top = textbook_share(explanation[label].lead_contribution, TEXTBOOK_LEADS[label])
            shares.append(share)
            tops.append(top)
            amplitude.append(amplitude_share(explanation, TEXTBOOK_LEADS[label]))
        rows[label] = {"records": len(paths), "textbook_leads": list(TEXTBOOK_LEADS[label]),
                       "mean_share": float(np.nanmean(shares)), "even_share": len(TEXTBOOK_LEADS[label]) / 12,
                       "amplitude_share": float(np.mean(amplitude)), "top_lead_textbook": float(np.mean(tops))}
        print(f"  {method:<21} {label:<6} share in textbook leads {rows[label]['mean_share']:.2f} "
              f"(even: {rows[label]['even_share']:.2f}, by amplitude: {rows[label]['amplitude_share']:.2f}); "
              f"top lead textbook in {rows[label]['top_lead_textbook']:.0%} of {len(paths)}", flush=True)
    return rows


def completeness(predictor: Predictor, files: dict[str, list], steps_list: list[int]) -> dict:
    gaps: dict[int, list[float]] = {steps: [] for steps in steps_list}
    for label, paths in files.items():
        for path in paths:
            for steps in steps_list:
                item = explain(path, predictor, labels=[label], steps=steps)[label]
                change = item.logit - item.baseline_logit
                gaps[steps].append(abs(item.convergence_delta) / max(abs(change), 1e-6))
    out = {str(s): {"median": float(np.median(g)), "p90": float(np.percentile(g, 90)), "n": len(g)}
           for s, g in gaps.items()}
    for steps, row in out.items():
        print(f"  {steps:>4} steps: completeness gap median {row['median']:.3f}, 90th percentile {row['p90']:.3f}")
    return out


def timing(predictor: Predictor, paths: list, repeats: int) -> dict:
    """Median seconds of one prediction and of one single-label explanation per method, on the same records."""
    calls = {"predict": lambda p: predictor.predict(p),
             "integrated_gradients": lambda p: explain(p, predictor, max_labels=1),
             "lead_occlusion": lambda p: explain(p, predictor, max_labels=1, method="lead-occlusion")}
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for name, call in calls.items():
        call(paths[0])  # warm-up
    for _ in range(repeats):
        for path in paths:
            for name, call in calls.items():  # interleaved, so machine load hits all alike
                start = time.perf_counter()
                call(path)
                seconds[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    result = {"median_seconds": medians, "ratio_vs_predict": {n: medians[n] / medians["predict"] for n in medians},
              "calls": {n: len(s) for n, s in seconds.items()}, "steps": DEFAULT_STEPS}
    print("  " + ", ".join(f"{n} {medians[n] * 1000:.0f} ms" for n in medians))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ptbxl", default=None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)")
    parser.add_argument("--per-label", type=int, default=30, help="fold-10 positives explained per statement")
    parser.add_argument("--completeness-per-label", type=int, default=10, help="of those, how many are explained "
                        "at every --steps setting")
    parser.add_argument("--steps", default="16,32,64,128", help="integrated-gradients steps for the completeness "
                        "check")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="pretrained", help="shipped name or model folder (default: the default)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    ptbxl = PTBXL(args.ptbxl)
    files = {label: positives(ptbxl, label, args.per_label) for label in TEXTBOOK_LEADS}
    predictor = Predictor.from_pretrained(args.model)

    print("face validity (shipped model, fold-10 positives):", flush=True)
    validity = {method: face_validity(predictor, files, method, DEFAULT_STEPS)
                for method in ("integrated-gradients", "lead-occlusion")}
    print("the same with randomly initialised weights:", flush=True)
    validity["integrated-gradients, random weights"] = face_validity(randomised(predictor), files,
                                                                     "integrated-gradients", DEFAULT_STEPS)
    print("completeness of integrated gradients:", flush=True)
    subset = {label: paths[:args.completeness_per_label] for label, paths in files.items()}
    gaps = completeness(predictor, subset, [int(s) for s in args.steps.split(",")])
    print("speed (one label, one record):", flush=True)
    speed = timing(predictor, [paths[0] for paths in files.values() if paths], args.repeats)
    document = {
        "benchmark": "explain", "command": command_line(argv), "model": args.model,
        "records": "PTB-XL fold 10 positives of each statement, first by ecg_id, 100-Hz files where present",
        "face_validity": validity, "completeness_gap": gaps, "speed": speed,
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads},
        "wall_s": time.perf_counter() - start,
    }
    write_result(args.out or RESULTS / "explain.json", document)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
