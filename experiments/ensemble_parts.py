"""Measurement: what each part of a released ensemble contributes on the test fold (PTB-XL fold 10).

Scores, over the statements with >= 5 fold-10 positives, the released ensemble as it is, its members averaged without
abstentions (every member votes on every label), and the plain average of a chosen subset of its members. This is a
measurement after the fact: the shipped model was chosen on fold 9 by a rule fixed beforehand, and nothing here
chooses a model.

Run: ``python experiments/ensemble_parts.py --subset 0-5 --ptbxl ../shared/data/ptbxl`` (writes
``experiments/results/ensemble_parts.json``; ``--model`` defaults to the shipped weights).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import command_line, write_result

from ecgfm.inference.predictor import load_model
from ecgfm.models.ensemble import Ensemble
from ecgfm.training.metrics import per_label_auc
from ecgfm.training.predict import predict_logits
from ecgfm.training.pretrain import ptbxl_training_data

REPO = Path(__file__).resolve().parents[1]
MIN_POSITIVES = 5


def member_range(text: str) -> list[int]:
    """``"0-5"`` -> ``[0, 1, 2, 3, 4, 5]``; ``"0,2,7"`` -> ``[0, 2, 7]``."""
    first, dash, last = text.partition("-")
    return list(range(int(first), int(last) + 1)) if dash else [int(i) for i in text.split(",")]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="example: python experiments/ensemble_parts.py --subset 0-5")
    parser.add_argument("--model", default=str(REPO / "src" / "ecgfm" / "weights"), help="released ensemble folder")
    parser.add_argument("--subset", action="append", default=[], help="member indices to average, e.g. 0-5 "
                        "(repeatable)")
    parser.add_argument("--ptbxl", default=None, help="PTB-XL folder (default: $ECGFM_PTBXL_DIR)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ensemble_parts.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model, info = load_model(args.model)
    if not isinstance(model, Ensemble):
        raise SystemExit(f"{args.model}: not an ensemble ({info.arch})")
    data = ptbxl_training_data(args.ptbxl, fs=info.fs, min_count=10, progress=False)
    if list(data.labels) != list(info.labels):
        raise SystemExit(f"{args.model}: its labels differ from PTB-XL's {len(data.labels)} training labels")
    Y = data.test.Y
    keep = np.nansum(Y, axis=0) >= MIN_POSITIVES
    logits = np.stack([predict_logits(member, data.test, spec.get("window"), spec.get("stride"),
                                      spec.get("aggregate", "max")) for spec, member in zip(model.specs, model.members)])

    def score(S: np.ndarray) -> float:
        return float(np.nanmean(per_label_auc(Y[:, keep], S[:, keep])))

    results = {"as released": score(model.combine_logits([torch.from_numpy(l) for l in logits]).numpy()),
               "all members, every member votes on every label": score(logits.mean(0))}
    for text in args.subset:
        chosen = member_range(text)
        names = ", ".join(f"{i} {model.specs[i]['arch']}/{model.specs[i]['window']}" for i in chosen)
        results[f"members {text} ({names}), plain average"] = score(logits[chosen].mean(0))
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:{width}s}  {value:.5f}")
    write_result(args.out, {"benchmark": "ensemble_parts", "command": command_line(argv), "model": args.model,
                            "score": f"macro-AUC on PTB-XL fold 10 over statements with >= {MIN_POSITIVES} positives "
                                     f"({int(keep.sum())} labels); a measurement after the model was chosen",
                            "wall_s": time.perf_counter() - start, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
