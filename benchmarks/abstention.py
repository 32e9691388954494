"""Is abstaining useful? The shipped model on PTB-XL fold 10 with 20% of its records corrupted.

Every fifth fold-10 record (a seeded draw) gets one of the targeted corruptions of ``benchmarks/quality.py`` (zeroed
lead, clipping at +-2 mV, LA/RA reversal, 50/60 Hz at 0.2 mV, 1 mV wander, white noise at 0 dB), in turn. The
shipped predictor (its signal-quality checks and out-of-distribution score, ``on_poor_quality="abstain"``) reads
every record; macro-AUC over the statements with >= 5 positives is reported on the clean fold, on the corrupted fold
predicting everything, and on the records it did not withhold; with which records it withheld.

    python benchmarks/abstention.py --out benchmarks/results/abstention.json
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, cpu_flags, write_result  # noqa: E402
from quality import CORRUPTIONS, FS, load_ptbxl  # noqa: E402

from ecgfm import ECG, STANDARD_LEADS  # noqa: E402
from ecgfm.datasets import load_labelled  # noqa: E402
from ecgfm.evaluation.metrics import per_label_auc  # noqa: E402
from ecgfm.inference.predictor import Predictor  # noqa: E402

SHARE = 0.2  # of fold-10 records corrupted
MIN_POSITIVES = 5


def fold10_labels(predictor: Predictor, ids: np.ndarray) -> np.ndarray:
    """PTB-XL statements of the fold-10 records ``ids`` (rows in that order) in the model's label order."""
    data = load_labelled(ptbxl=os.environ.get("ECGFM_PTBXL_DIR"), labels=predictor.labels,
                         pipeline=predictor.info.pipeline(), train_folds=(), progress=False).part("test")
    row = {str(i): k for k, i in enumerate(data.ids)}
    return data.Y[[row[str(i)] for i in ids]]


def macro(Y: np.ndarray, P: np.ndarray, scored: np.ndarray, keep: np.ndarray | None = None) -> float:
    keep = np.ones(len(Y), bool) if keep is None else keep
    return float(np.nanmean(per_label_auc(Y[keep][:, scored], P[keep][:, scored])))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="pretrained", help="shipped weights to measure (default: the default)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "abstention.json"))
    args = parser.parse_args(argv)
    X, meta = load_ptbxl()
    test = np.flatnonzero(meta["folds"] == 10)
    predictor = Predictor.from_pretrained(args.model, on_poor_quality="abstain")
    Y = fold10_labels(predictor, meta["ids"][test])
    scored = np.flatnonzero(np.nansum(Y == 1, axis=0) >= MIN_POSITIVES)
    rng = np.random.default_rng(args.seed)
    corrupted = np.zeros(len(test), bool)
    corrupted[rng.choice(len(test), int(round(SHARE * len(test))), replace=False)] = True
    names = list(CORRUPTIONS)
    kinds = np.array([""] * len(test), dtype=object)
    kinds[corrupted] = [names[k % len(names)] for k in range(corrupted.sum())]

    def read(k: int, corrupt: bool) -> ECG:
        x = np.asarray(X[test[k]], dtype=np.float64)
        if corrupt:
            x = CORRUPTIONS[kinds[k]](x, rng)
        return ECG(x.astype(np.float32), FS, STANDARD_LEADS)

    start = time.perf_counter()
    clean = [predictor.predict(read(k, False)) for k in range(len(test))]
    mixed = [predictor.predict(read(k, corrupted[k])) for k in range(len(test))]
    seconds = time.perf_counter() - start
    P_clean = np.array([[p.probabilities[lab] for lab in predictor.labels] for p in clean])
    P_mixed = np.array([[p.probabilities[lab] for lab in predictor.labels] for p in mixed])
    withheld = np.array([p.abstained is not None for p in mixed])
    result = {
        "command": command_line(argv), "cpu": cpu_flags(), "load_average": os.getloadavg()[0],
        "records": int(len(test)), "corrupted": int(corrupted.sum()), "labels_scored": int(len(scored)),
        "macro_auc": {"clean": macro(Y, P_clean, scored), "corrupted_all_predicted": macro(Y, P_mixed, scored),
                      "corrupted_not_withheld": macro(Y, P_mixed, scored, ~withheld)},
        "withheld": {"all": int(withheld.sum()), "of_corrupted": int((withheld & corrupted).sum()),
                     "of_clean": int((withheld & ~corrupted).sum()),
                     "by_corruption": {name: [int((withheld & (kinds == name)).sum()), int((kinds == name).sum())]
                                       for name in names}},
        "clean_withheld_on_clean_fold": int(sum(p.abstained is not None for p in clean)),
        "seconds": seconds,
    }
    m = result["macro_auc"]
    print(f"macro-AUC clean {m['clean']:.4f}; 20% corrupted, all predicted {m['corrupted_all_predicted']:.4f}; "
          f"not withheld {m['corrupted_not_withheld']:.4f} ({result['withheld']['all']} withheld: "
          f"{result['withheld']['of_corrupted']} of {result['corrupted']} corrupted, "
          f"{result['withheld']['of_clean']} clean)")
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
