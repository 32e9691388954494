"""Benchmark: the out-of-distribution score (``ecgfm.evaluation.ood``) on the shipped model's embeddings.

Method. Embeddings of every PTB-XL record under the shipped model (``benchmarks/trust_data.py``); the scorer is fitted
on folds 1-8 (training) and its threshold set at the 99th percentile of fold 9 (validation). Read on fold 10:

* flag rate of the genuine fold-10 records (about 1% by construction);
* AUROC separating each fold-10 record from its corrupted copy, for the corruptions of ``benchmarks/quality.py`` at
  their stated severities, and the share of corrupted copies flagged. Clean and corrupted copies go through the same
  path (the 500 Hz arrays of quality.py, the model's own preprocessing, ``embed_arrays``), so only the corruption
  differs. The model's preprocessing resamples to 100 Hz and high-passes at 0.5 Hz: 50/60 Hz interference and 0.3 Hz
  wander are removed before the model sees them, so the score cannot (and need not) react to them;
* flag rate on the genuine CPSC 2018 records (another country, devices and population; centre 10 s, as the model's
  preprocessing reads them).

Run: ``python benchmarks/ood.py`` (writes ``benchmarks/results/ood.json``; about 5 minutes on two cores the first
time, embeddings cached under /tmp/trust-cache).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, write_result  # noqa: E402
from quality import CORRUPTIONS, FS, load_ptbxl  # noqa: E402
from trust_data import _cached, cpsc_embeddings, embed_arrays, ptbxl_embeddings, shipped_model, use_model  # noqa: E402

from ecgfm import ECG, STANDARD_LEADS  # noqa: E402
from ecgfm.evaluation.metrics import roc_auc  # noqa: E402
from ecgfm.evaluation.ood import fit_ood  # noqa: E402


def corrupted_embeddings() -> dict[str, np.ndarray]:
    """Fold-10 embeddings of the clean 500 Hz arrays and of each corruption, through the model's preprocessing."""
    def compute():
        model = shipped_model()
        pipeline = model.info.pipeline()
        X, meta = load_ptbxl()
        rows = np.flatnonzero(meta["folds"] == 10)
        out = {"ids": meta["ids"][rows]}
        for name in ["clean", *CORRUPTIONS]:
            arrays = []
            for k in rows:
                x = np.asarray(X[k], dtype=np.float64)
                y = x if name == "clean" else CORRUPTIONS[name](x, np.random.default_rng(int(meta["ids"][k])))
                arrays.append(pipeline.to_array(ECG(y.astype(np.float32), FS, STANDARD_LEADS)))
            out[name] = embed_arrays(model, np.stack(arrays)).astype(np.float32)
            print(f"embedded {name}", flush=True)
        return out
    return _cached("ood_fold10_corrupted.npz", compute)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "ood.json"))
    parser.add_argument("--model", default="pretrained", help="shipped weights to measure (default: the default)")
    args = parser.parse_args(argv)
    use_model(args.model)
    emb = ptbxl_embeddings()
    folds = emb["folds"]
    scorer = fit_ood(emb["vectors"][folds <= 8], emb["vectors"][folds == 9])
    corrupted = corrupted_embeddings()
    clean_scores = scorer.score(corrupted["clean"])
    per_corruption = {}
    all_corrupted = []
    for name in CORRUPTIONS:
        scores = scorer.score(corrupted[name])
        all_corrupted.append(scores)
        labels = np.r_[np.zeros(clean_scores.size), np.ones(scores.size)]
        per_corruption[name] = {"auroc": roc_auc(labels, np.r_[clean_scores, scores]),
                                "flagged": float(np.mean(scores > scorer.threshold)),
                                "median_score": float(np.median(scores))}
    heavy = [n for n in ("zeroed_lead", "clipped_2mV", "swapped_la_ra", "white_noise_0db")]
    pooled_heavy = np.concatenate([scorer.score(corrupted[n]) for n in heavy])
    labels = np.r_[np.zeros(clean_scores.size), np.ones(pooled_heavy.size)]
    cpsc = cpsc_embeddings()
    cpsc_scores = scorer.score(cpsc["vectors"])
    document = scorer.to_dict()
    result = {
        "benchmark": "out-of-distribution score (PPCA Mahalanobis on the shipped model's embeddings)",
        "command": command_line(argv),
        "scorer": {"n_components": int(scorer.variances.size), "dim": int(scorer.mean.size),
                   "fitted_on": "PTB-XL folds 1-8", "n_train": scorer.n_train,
                   "threshold": scorer.threshold, "threshold_rule": "99th percentile of fold-9 scores",
                   "json_bytes": len(json.dumps(document))},
        "fold10_genuine_flagged": float(np.mean(scorer.score(emb["vectors"][folds == 10]) > scorer.threshold)),
        "fold10_clean_500hz_path_flagged": float(np.mean(clean_scores > scorer.threshold)),
        "fold10_median_score": float(np.median(clean_scores)),
        "corruptions": per_corruption,
        "auroc_clean_vs_heavily_corrupted": {"corruptions": heavy, "auroc": roc_auc(labels, np.r_[clean_scores,
                                                                                                   pooled_heavy])},
        "cpsc": {"records": int(cpsc_scores.size), "flagged": float(np.mean(cpsc_scores > scorer.threshold)),
                 "median_score": float(np.median(cpsc_scores))},
    }
    write_result(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "command"}, indent=1))


if __name__ == "__main__":
    main()
