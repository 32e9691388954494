"""Benchmark: calibrated probabilities and findings-list operating points for the shipped model on PTB-XL.

Method. The shipped model's probabilities on fold 9 (validation, 479 records) and fold 10 (test, 487 records) come
from ``ecgfm.evaluation.model_eval.score_model`` (cached by ``benchmarks/trust_data.py``). Everything is fitted on
fold 9 and read once on fold 10.

* Calibration: ``fit_calibration`` on fold 9 (patient-grouped cross-validation); fold-10 pooled (over all 54 labels,
  and over the labels with >= 5 fold-10 positives that ``ecgfm evaluate`` and the model card score) Brier score,
  log-loss,
  expected calibration error (10 equal-mass bins: the evaluation's definition; 15, 20 and 30 bins and 10 equal-width
  bins as a sensitivity check), calibration slope and intercept, raw against calibrated; per label: the method chosen,
  AUC before and after (the largest change is the target's "no label's AUC changes"). The ECE of a *perfectly*
  calibrated model is not 0 on 487 records: the "noise floor" is the mean ECE over 200 label sets drawn from the
  calibrated probabilities themselves.
* Operating points: for each rule, per-label thresholds fitted on fold-9 calibrated probabilities with
  ``fit_thresholds`` (labels with < 5 fold-9 positives get the fixed 0.5), applied to fold 10: mean (and largest)
  number of flagged findings per ECG, share of flagged findings that are true, median per-label sensitivity and
  specificity (labels with >= 5 fold-10 positives, the model card's convention), share of true statements flagged;
  95% intervals by a patient-level bootstrap (1000 resamples, thresholds fixed). The shipped config's thresholds
  (Youden on fold 9) are the reference row.

Run: ``python benchmarks/calibration.py`` (writes ``benchmarks/results/calibration.json``; seconds once the cache is
filled, ~20 s of scoring otherwise).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, write_result  # noqa: E402
from trust_data import MODEL, model_scores, use_model  # noqa: E402

from ecgfm.evaluation.calibration import (  # noqa: E402
    Calibration,
    brier_score,
    calibration_slope_intercept,
    expected_calibration_error,
    fit_calibration,
    log_loss,
)
from ecgfm.evaluation.metrics import roc_auc  # noqa: E402
from ecgfm.evaluation.thresholds import fit_thresholds  # noqa: E402
from ecgfm.models import get_weights  # noqa: E402

RULES = ["youden", "f1", "ppv>=0.5", "ppv>=0.6", "ppv>=0.7", "spec>=0.95", "spec>=0.99", 0.5]
MIN_TEST_POSITIVES = 5


def equal_width_ece(y, p, n_bins: int = 10) -> float:
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = sum(np.sum(bins == b) * abs(y[bins == b].mean() - p[bins == b].mean())
                for b in range(n_bins) if np.any(bins == b))
    return float(total / y.size)


def pooled(y_true, score) -> dict:
    known = ~np.isnan(y_true)
    y, p = y_true[known], np.asarray(score, dtype=np.float64)[known]
    slope, intercept = calibration_slope_intercept(y, p)
    return {"brier": brier_score(y, p), "log_loss": log_loss(y, p),
            **{f"ece_{b}_equal_mass": expected_calibration_error(y, p, b) for b in (10, 15, 20, 30)},
            "ece_10_equal_width": equal_width_ece(y, p), "calibration_slope": slope,
            "calibration_intercept": intercept}


def ece_noise_floor(y_true, score, draws: int = 200, seed: int = 0) -> dict:
    """Mean pooled ECE when the labels are drawn from ``score`` itself (a perfectly calibrated model)."""
    rng = np.random.default_rng(seed)
    known = ~np.isnan(y_true)
    p = np.asarray(score, dtype=np.float64)[known]
    values = {b: [] for b in (10, 15, 20, 30)}
    for _ in range(draws):
        y = (rng.random(p.size) < p).astype(float)
        for b in values:
            values[b].append(expected_calibration_error(y, p, b))
    return {f"ece_{b}_equal_mass": float(np.mean(v)) for b, v in values.items()}


def calibration_section(d: dict) -> tuple[dict, object]:
    labels = list(d["labels"])
    calibration = fit_calibration(d["val_true"], d["val_score"], labels, patient_ids=d["val_patients"])
    raw = d["test_score"].astype(np.float64)
    calibrated = calibration.apply(raw)
    y = d["test_true"]
    per_label, auc_changes = [], []
    for j, label in enumerate(labels):
        known = ~np.isnan(y[:, j])
        yj = y[known, j]
        n_pos = int(yj.sum())
        row = {"label": label, "method": calibration.methods[label],
               "val_positives": calibration.selection[label]["n_pos"], "test_positives": n_pos}
        if 0 < n_pos < yj.size:
            auc_raw, auc_cal = roc_auc(yj, raw[known, j]), roc_auc(yj, calibrated[known, j])
            row.update(auc_raw=auc_raw, auc_calibrated=auc_cal, auc_change=auc_cal - auc_raw,
                       ece_raw=expected_calibration_error(yj, raw[known, j]),
                       ece_calibrated=expected_calibration_error(yj, calibrated[known, j]))
            auc_changes.append(abs(auc_cal - auc_raw))
        per_label.append(row)
    scored = [r for r in per_label if r["test_positives"] >= MIN_TEST_POSITIVES and "ece_raw" in r]
    columns = np.array([r["test_positives"] >= MIN_TEST_POSITIVES for r in per_label])
    section = {
        "fitted_on": "PTB-XL fold 9 (validation)", "evaluated_on": "PTB-XL fold 10 (test)",
        "methods_chosen": {m: sum(1 for r in per_label if r["method"] == m) for m in ("identity", "platt", "isotonic")},
        "pooled_raw": pooled(y, raw), "pooled_calibrated": pooled(y, calibrated),
        "pooled_fold9_raw": pooled(d["val_true"], d["val_score"]),
        "scored_labels": f"{int(columns.sum())} labels with >= {MIN_TEST_POSITIVES} fold-10 positives (the labels "
                         "ecgfm evaluate and the model card score)",
        "pooled_scored_labels_raw": pooled(y[:, columns], raw[:, columns]),
        "pooled_scored_labels_calibrated": pooled(y[:, columns], calibrated[:, columns]),
        "ece_noise_floor_calibrated": ece_noise_floor(y, calibrated),
        "macro_ece_raw": float(np.mean([r["ece_raw"] for r in scored])),
        "macro_ece_calibrated": float(np.mean([r["ece_calibrated"] for r in scored])),
        "macro_over": f"{len(scored)} labels with >= {MIN_TEST_POSITIVES} fold-10 positives",
        "largest_auc_change": float(max(auc_changes)),
        "per_label": per_label,
    }
    raw_ece, cal_ece = section["pooled_raw"]["ece_10_equal_mass"], section["pooled_calibrated"]["ece_10_equal_mass"]
    scored_ratio = (section["pooled_scored_labels_calibrated"]["ece_10_equal_mass"]
                    / section["pooled_scored_labels_raw"]["ece_10_equal_mass"])
    section["target"] = {"pooled_ece_ratio_10_equal_mass": cal_ece / raw_ece,
                         "pooled_ece_ratio_10_equal_mass_scored_labels": scored_ratio,
                         "met_all_54_labels": bool(cal_ece <= raw_ece / 2 and section["largest_auc_change"] == 0.0),
                         "met_scored_labels": bool(scored_ratio <= 0.5 and section["largest_auc_change"] == 0.0),
                         "ratios_other_binnings": {key: section["pooled_calibrated"][key] / section["pooled_raw"][key]
                                                   for key in section["pooled_raw"] if key.startswith("ece_")}}
    return section, calibration


def findings_stats(y, score, thresholds, patients, n_boot: int = 1000, seed: int = 0) -> dict:
    """Findings-list statistics at fixed thresholds, with patient-level bootstrap intervals."""
    flags = score >= thresholds
    true = y == 1
    known = ~np.isnan(y)
    n_pos = np.nansum(y, axis=0)
    scored = n_pos >= MIN_TEST_POSITIVES

    def stats(rows):
        f, t, k = flags[rows], true[rows], known[rows]
        pos = t.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            sens = (f & t).sum(axis=0) / pos
            spec = (~f & k & ~t).sum(axis=0) / (k & ~t).sum(axis=0)
        return {"flags_per_ecg": float(f.sum(axis=1).mean()),
                "flagged_true": float((f & t).sum() / max((f & k).sum(), 1)),
                "median_sensitivity": float(np.nanmedian(sens[scored])),
                "median_specificity": float(np.nanmedian(spec[scored])),
                "true_statements_flagged": float((f & t).sum() / t.sum())}

    point = stats(np.arange(len(y)))
    point["max_flags_per_ecg"] = int(flags.sum(axis=1).max())
    with np.errstate(invalid="ignore", divide="ignore"):
        sens_all = (flags & true).sum(axis=0) / n_pos
    point["median_sensitivity_labels_with_1_positive"] = float(np.nanmedian(sens_all[n_pos >= 1]))
    rng = np.random.default_rng(seed)
    ids, codes = np.unique(patients, return_inverse=True)
    members = [np.flatnonzero(codes == c) for c in range(ids.size)]
    reps = {key: [] for key in ("flags_per_ecg", "flagged_true", "median_sensitivity")}
    for _ in range(n_boot):
        rows = np.concatenate([members[c] for c in rng.integers(0, ids.size, ids.size)])
        s = stats(rows)
        for key in reps:
            reps[key].append(s[key])
    for key, values in reps.items():
        point[f"{key}_ci"] = [float(np.nanpercentile(values, 2.5)), float(np.nanpercentile(values, 97.5))]
    return point


def operating_points_section(d: dict, calibration) -> dict:
    labels = list(d["labels"])
    val = calibration.apply(d["val_score"])
    test = calibration.apply(d["test_score"])
    y, patients = d["test_true"], d["test_patients"]
    rows = {}
    info = get_weights(MODEL["name"]).info  # its own calibration and thresholds, as a prediction applies them
    shipped = np.array([info.thresholds[label] for label in labels])
    rows["shipped thresholds (calibrated probabilities)"] = {
        "rule": "shipped config thresholds",
        **findings_stats(y, Calibration.of(info).apply(d["test_score"]), shipped, patients)}
    for rule in RULES:
        fitted = fit_thresholds(d["val_true"], val, labels, rule)
        rows[str(rule)] = {"rule": str(rule), "labels_on_fallback": sum(n is not None for n in fitted.notes),
                           **findings_stats(y, test, fitted.thresholds, patients)}
    sensitivity = {}
    for min_positives in (1, 3, 5, 10):
        fitted = fit_thresholds(d["val_true"], val, labels, "f1", min_positives=min_positives)
        stats = findings_stats(y, test, fitted.thresholds, patients, n_boot=0)
        sensitivity[f"f1, fixed 0.5 below {min_positives} fold-9 positives"] = {
            k: stats[k] for k in ("flags_per_ecg", "flagged_true", "median_sensitivity")}
    true_per_ecg = float(np.nansum(y, axis=1).mean())
    return {"thresholds_fitted_on": "PTB-XL fold 9, calibrated probabilities (rules are rank-based: the same records "
                                    "are flagged on raw probabilities, except labels on the fixed fallback)",
            "evaluated_on": "PTB-XL fold 10", "true_statements_per_ecg": true_per_ecg,
            "median_over": f"labels with >= {MIN_TEST_POSITIVES} fold-10 positives", "rules": rows,
            "fallback_sensitivity": sensitivity}


def draw_reliability(d: dict, calibration, out_dir: str | Path, dpi: int = 80) -> Path:
    """Fold-10 reliability diagram, all labels pooled, raw against calibrated (the figure of docs/trust.md)."""
    from ecgfm.evaluation.calibration import reliability_curve
    from ecgfm.plotting.reliability import ReliabilityPanel, plot_reliability

    y = d["test_true"]
    known = ~np.isnan(y)
    curves = []
    for name, score in (("raw", d["test_score"]), ("calibrated", calibration.apply(d["test_score"]))):
        curve = reliability_curve(y[known], np.asarray(score, dtype=np.float64)[known], n_bins=10, strategy="uniform",
                                  min_count=5)
        curves.append((curve.mean_predicted, curve.fraction_positive, name))
    path = Path(out_dir) / "reliability_fold10.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_reliability(ReliabilityPanel("PTB-XL fold 10, 54 labels pooled (10 equal-width bins)", curves)).savefig(
        path, dpi=dpi)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "calibration.json"))
    parser.add_argument("--model", default="pretrained", help="shipped weights to measure (default: the default)")
    parser.add_argument("--figures", metavar="DIR", help="also draw the reliability diagram of docs/trust.md in DIR")
    args = parser.parse_args(argv)
    use_model(args.model)
    d = model_scores()
    cal_section, calibration = calibration_section(d)
    if args.figures:
        print(f"wrote {draw_reliability(d, calibration, args.figures)}")
    result = {"benchmark": "calibration and findings-list operating points of the shipped model",
              "command": command_line(argv), "calibration": cal_section,
              "operating_points": operating_points_section(d, calibration),
              "calibration_document": calibration.to_dict()}
    write_result(args.out, result)
    c = cal_section
    print(f"pooled ECE (10 equal-mass), 54 labels: raw {c['pooled_raw']['ece_10_equal_mass']:.4f} -> calibrated "
          f"{c['pooled_calibrated']['ece_10_equal_mass']:.4f}; scored labels: "
          f"{c['pooled_scored_labels_raw']['ece_10_equal_mass']:.4f} -> "
          f"{c['pooled_scored_labels_calibrated']['ece_10_equal_mass']:.4f}; largest AUC change "
          f"{c['largest_auc_change']:.2g}; methods {c['methods_chosen']}")
    for name, row in result["operating_points"]["rules"].items():
        print(f"{name:38s} flags/ECG {row['flags_per_ecg']:.2f} (max {row['max_flags_per_ecg']}) "
              f"true {row['flagged_true']:.3f} median sens {row['median_sensitivity']:.3f}")


if __name__ == "__main__":
    main()
