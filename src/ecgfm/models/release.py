"""Turn a pre-training run into a released model: validation thresholds for every label, test metrics with CIs, and
a self-describing ``model.safetensors`` + ``config.json``.

The shipped foundation model in ``ecgfm/weights`` was made with::

    python -m ecgfm.models.release runs/shipped/pretrained --ptbxl ../shared/data/ptbxl --out src/ecgfm/weights
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ecgfm.evaluation.model_eval import evaluate_model, score_model
from ecgfm.evaluation.thresholds import choose_thresholds
from ecgfm.inference.predictor import load_model
from ecgfm.models.checkpoint import save_pretrained

#: Labels need this many positives in the test folds to be scored (the issue's and the model card's convention).
MIN_TEST_POSITIVES = 5


def validation_thresholds(model_dir: str | Path, ptbxl, rule: str = "youden") -> tuple[dict[str, float], dict]:
    """Per-label thresholds fitted on the validation folds; labels that cannot be fitted keep 0.5 (reason recorded)."""
    scored, info, _ = score_model(model_dir, ptbxl=ptbxl, progress=False)
    val = scored["val"]
    values, reasons = choose_thresholds(val.arrays.Y, val.scores, rule)
    thresholds, notes = {}, {}
    for label, value, reason in zip(val.arrays.label_names, values, reasons):
        thresholds[label] = float(value) if np.isfinite(value) else 0.5
        if reason or not np.isfinite(value):
            notes[label] = reason or "no threshold could be fitted; 0.5 used"
    return thresholds, notes


def release(model_dir: str | Path, out: str | Path, ptbxl=None, n_bootstrap: int = 1000,
            report_dir: str | Path = "runs/release-evaluation") -> Path:
    """Write the released model to ``out``: thresholds (fold 9, Youden) and fold-10 metrics in its ``config.json``;
    the full evaluation report (metrics.json/.csv, report.html) goes to ``report_dir``."""
    out = Path(out)
    model, info = load_model(model_dir)
    thresholds, notes = validation_thresholds(model_dir, ptbxl)
    result, _ = evaluate_model(model_dir, report_dir, ptbxl=ptbxl, min_test_positives=MIN_TEST_POSITIVES,
                               n_bootstrap=n_bootstrap, show_progress=False,
                               command=f"python -m ecgfm.models.release {model_dir} --out {out}")
    per_label = {row["label"]: {k: row[k] for k in ("n_pos", "auc", "auc_ci_low", "auc_ci_high", "sensitivity",
                                                     "specificity", "threshold")} for row in result.labels}
    summary = {k: v for k, v in result.summary.items() if k not in ("excluded", "without_threshold")}
    metrics = {**info.metrics, "test": {"split": "PTB-XL fold 10 (patient-disjoint)",
                                        "labels_scored": f">= {MIN_TEST_POSITIVES} test positives",
                                        "summary": summary, "per_label": per_label}}
    info = info.replace(thresholds=thresholds, metrics=metrics,
                        extra={**info.extra, "threshold_rule": "youden on PTB-XL fold 9", "threshold_notes": notes})
    return save_pretrained(model, info, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="pretrained folder (run_dir/pretrained) or checkpoint .pt")
    parser.add_argument("--ptbxl", default=None, help="PTB-XL folder (default $ECGFM_PTBXL_DIR)")
    parser.add_argument("--out", required=True, help="output folder (e.g. src/ecgfm/weights)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--report-dir", default="runs/release-evaluation", help="where the evaluation report goes")
    args = parser.parse_args(argv)
    path = release(args.model, args.out, ptbxl=args.ptbxl, n_bootstrap=args.bootstrap, report_dir=args.report_dir)
    info = json.loads((Path(path) / "config.json").read_text())
    print(info["metrics"]["test"]["summary"]["text"])
    print(f"released to {path}")


if __name__ == "__main__":
    main()
