"""External validation: a model on ECGs from other hospitals, reading whole records against the centre crop.

Scores every record of a PhysioNet-Challenge-style folder (default ``../shared/data/external/cpsc``: CPSC 2018, 203
12-lead ECGs of 10-74 s from 11 Chinese hospitals, SNOMED-CT labels mapped to the model's SCP-ECG vocabulary) twice in
one run with the same weights and thresholds:

- ``centre crop``: the model's stored preprocessing, which cuts every record to its middle 10 s (how ecgfm read long
  records before whole-record scoring);
- ``whole record``: every sample read, in 10-s segments over the whole record, segment scores combined per label by
  the model's reading rule (maximum for ectopic beats and paroxysms, mean for everything else).

Reports per-label AUC (DeLong 95% CI) for labels with >= ``--min-positives`` positives, the macro average, records
per second of each pass (reading + preprocessing + model), and the CPU.

    python benchmarks/external.py --data ../shared/data/external/cpsc --out benchmarks/results/external_cpsc.json
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import command_line, cpu_flags, write_result

from ecgfm.datasets import load_labelled
from ecgfm.evaluation.delong import delong_auc
from ecgfm.evaluation.model_eval import score
from ecgfm.models import load


def evaluate(model, data, min_positives: int) -> tuple[dict, float]:
    """Per-label AUCs (labels with enough positives) and the seconds scoring took."""
    start = time.perf_counter()
    probs = score(model, data, failures={})
    seconds = time.perf_counter() - start
    rows = {}
    for j, label in enumerate(data.labels):
        known = ~np.isnan(data.Y[:, j]) & np.isfinite(probs[:, model.info.labels.index(label)])
        y = data.Y[known, j]
        if y.sum() < min_positives or y.sum() == len(y):
            continue
        result = delong_auc(y, probs[known, model.info.labels.index(label)])
        rows[label] = {"n_pos": int(y.sum()), "auc": result.auc, "ci_low": result.ci_low, "ci_high": result.ci_high}
    return rows, seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/external/cpsc", help="Challenge-style folder")
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--min-positives", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/external_cpsc.json")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    model = load(args.model)
    result = {"command": command_line(argv), "cpu": cpu_flags(), "load_average": os.getloadavg()[0],
              "data": os.path.abspath(args.data), "model": args.model, "readings": {}}
    for name, pipeline in (("centre crop", model.info.pipeline()), ("whole record", model.info.pipeline().any_length())):
        data = load_labelled(data=args.data, labels=model.info.labels, pipeline=pipeline, lazy=True,
                             progress=False).with_split("test")
        rows, seconds = evaluate(model, data, args.min_positives)
        result["readings"][name] = {"labels": rows, "macro_auc": float(np.mean([r["auc"] for r in rows.values()])),
                                    "records": len(data), "seconds": seconds, "records_per_s": len(data) / seconds}
        print(f"{name}: macro AUC {result['readings'][name]['macro_auc']:.4f} over {len(rows)} labels, "
              f"{len(data) / seconds:.1f} records/s")
    result["unmapped_snomed"] = data.source.get("unmapped_snomed", {})
    write_result(args.out, result)


if __name__ == "__main__":
    main()
