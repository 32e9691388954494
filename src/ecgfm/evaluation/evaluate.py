"""Evaluate score matrices like a clinical paper: per-label metrics with CIs, validation-set thresholds, summaries.

:func:`evaluate_scores` reports one model; :func:`compare_scores` compares two models on the same records (paired).
Both work on arrays (``y_true (N, L)`` with NaN = unknown, scores ``(N, L)``) and return plain result objects that
:mod:`ecgfm.evaluation.report` writes as JSON, CSV and HTML.

Statistical choices, stated once here:

* AUC intervals: percentile bootstrap (default 1000 resamples, seeded), resampling patients when ``patient_ids`` is
  given (ECGs of one patient are correlated), records otherwise. DeLong's standard error/interval is reported too.
* Sensitivity, specificity, PPV, NPV: Wilson score intervals at the threshold fitted on the validation set.
* Summaries: median across evaluable labels (the paper's headline), macro (mean) and micro AUC. Interval of a median or
  mean = percentile interval of that statistic recomputed on every bootstrap replicate (labels resampled together).
* Labels without both classes in the test set have no AUC: reported with the reason and counted as excluded.
* Calibration (when the scores are probabilities, all in [0, 1]): Brier score, expected calibration error over
  ``ECE_BINS`` equal-mass bins, calibration slope and intercept (logistic recalibration fit of the label on
  ``logit(p)``), per label and pooled over every known (record, label) pair; see
  :mod:`ecgfm.evaluation.calibration`. Given ``raw_score`` too (the uncalibrated probabilities of the same model),
  the same metrics are reported for them, so a report shows calibration before and after.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import false_discovery_control

from ecgfm.evaluation.bootstrap import BootstrapReplicates, cluster_codes, label_design, run_bootstrap
from ecgfm.evaluation.calibration import (DIAGRAM_MIN_COUNT, ECE_BINS, ReliabilityCurve, calibration_metrics,
                                          pooled_calibration_metrics, reliability_curve)
from ecgfm.evaluation.delong import delong_auc_from_bins, delong_test_from_bins
from ecgfm.evaluation.intervals import percentile_interval, wilson_interval
from ecgfm.evaluation.metrics import (
    ScoreBins,
    check_targets,
    confusion_counts,
    degenerate_reason,
    micro_auc,
    nan_mean,
    nan_median,
    rates_from_counts,
)
from ecgfm.evaluation.thresholds import ThresholdRule, choose_thresholds, parse_threshold_rule

DEFAULT_N_BOOTSTRAP = 1000
#: Rates that get a Wilson interval (a proportion with a known denominator); F1 gets a bootstrap interval instead.
WILSON_RATES = {"sensitivity": ("tp", "fn"), "specificity": ("tn", "fp"), "ppv": ("tp", "fp"), "npv": ("tn", "fn")}

ThresholdSpec = str | float | ThresholdRule | Sequence[float] | np.ndarray | Mapping[str, float]


@dataclass
class EvaluationResult:
    """One model's evaluation: ``labels`` (one flat dict per label, also the CSV rows), ``summary`` and ``settings``.

    ``curves`` maps each evaluable label to its test ROC curve ``(fpr, tpr)`` for plotting; ``reliability`` maps
    ``"calibrated"`` (the scores evaluated) and, when raw scores were given, ``"raw"`` to ``{label: ReliabilityCurve}``
    plus the pooled curve under ``POOLED`` (neither is written to JSON).
    """

    labels: list[dict]
    summary: dict
    settings: dict
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    reliability: dict[str, dict[str, ReliabilityCurve]] = field(default_factory=dict, repr=False)


@dataclass
class ComparisonResult:
    """Paired comparison of models A and B on the same records; ``diff`` is always AUC(A) - AUC(B)."""

    labels: list[dict]
    summary: dict
    settings: dict
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict, repr=False)


def resolve_thresholds(
    spec: ThresholdSpec, label_names: list[str], val_true=None, val_score=None
) -> tuple[np.ndarray, list[str | None], str, str]:
    """Per-label thresholds ``(L,)``, per-label reasons, rule text and source ("validation", "fixed" or "given").

    Data-driven rules are fitted on the validation arrays only; without them this raises instead of silently fitting
    on the test set (which would overstate sensitivity and specificity).
    """
    n_labels = len(label_names)
    if isinstance(spec, Mapping):
        missing = [name for name in label_names if name not in spec]
        if missing:
            raise ValueError(f"thresholds mapping lacks labels: {', '.join(missing[:5])}")
        values = np.array([float(spec[name]) for name in label_names])
        return values, [None] * n_labels, "given per label", "given"
    if isinstance(spec, (list, tuple, np.ndarray)):
        values = np.asarray(spec, dtype=float)
        if values.shape != (n_labels,):
            raise ValueError(f"need one threshold per label ({n_labels}), got shape {values.shape}")
        return values, [None] * n_labels, "given per label", "given"
    rule = parse_threshold_rule(spec)
    if not rule.needs_validation:
        return np.full(n_labels, rule.value), [None] * n_labels, str(rule), "fixed"
    if val_true is None or val_score is None:
        raise ValueError(
            f"threshold rule '{rule}' is fitted on a validation set: pass val_true and val_score (thresholds are "
            "never fitted on the test set), or use a fixed threshold such as 0.5"
        )
    val_true, val_score, _ = check_targets(val_true, val_score, label_names)
    values, reasons = choose_thresholds(val_true, val_score, rule)
    return values, reasons, str(rule), "validation"


#: Grid resolution for stored ROC curves (plots): see :meth:`ScoreBins.roc_points`.
CURVE_RESOLUTION = 500


def _label_bins(y_true: np.ndarray, y_score: np.ndarray, j: int) -> tuple[ScoreBins | None, np.ndarray]:
    """Label ``j``'s :class:`ScoreBins` (None without known records) and its known-record mask: its single sort."""
    known = ~np.isnan(y_true[:, j])
    return (ScoreBins.from_scores(y_true[known, j], y_score[known, j]) if known.any() else None), known


def _label_counts(bins: ScoreBins | None, n_records: int) -> tuple[int, int, int]:
    """Known positives, known negatives and unknowns of one label."""
    n_pos, n_neg = (0, 0) if bins is None else (bins.n_pos, bins.n_neg)
    return n_pos, n_neg, n_records - n_pos - n_neg


def _roc_points(bins: ScoreBins) -> tuple[np.ndarray, np.ndarray]:
    """Test ROC curve of one label for plotting, thinned to what a plot can show."""
    fpr, tpr = bins.roc_points(CURVE_RESOLUTION)
    return fpr.astype(np.float32), tpr.astype(np.float32)


def _interval(replicates: np.ndarray | None, level: float) -> tuple[float, float]:
    """Percentile interval of a 1-D replicate vector as floats (NaN, NaN without replicates)."""
    if replicates is None:
        return float("nan"), float("nan")
    low, high = percentile_interval(replicates, level)
    return float(low), float(high)


def _rowwise(stat: Callable[[np.ndarray], float], replicates: np.ndarray, columns: np.ndarray) -> np.ndarray | None:
    """Apply a summary (median/mean over labels) to each bootstrap replicate row, over the chosen label columns."""
    if replicates is None or not np.any(columns):
        return None
    sub = replicates[:, columns]
    return np.array([stat(row) for row in sub])


def _f1_replicates(boot: BootstrapReplicates, model: int) -> np.ndarray:
    """F1 of every replicate and label from the bootstrap confusion counts."""
    rates = rates_from_counts(boot.tp[model], boot.fp[model], boot.tn[model], boot.fn[model])
    return rates["f1"]


def evaluate_scores(
    y_true,
    y_score,
    label_names: Sequence[str] | None = None,
    *,
    val_true=None,
    val_score=None,
    thresholds: ThresholdSpec = "youden",
    patient_ids=None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
    progress: Callable[[int], None] | None = None,
    n_jobs: int = 1,
    raw_score=None,
) -> EvaluationResult:
    """Evaluate one model's test scores: per-label AUC/AP/sens/spec/PPV/NPV/F1 with CIs, calibration metrics and
    paper-style summaries.

    ``thresholds`` is a rule (``"youden"``, ``"f1"``, ``"ppv>=0.6"``, ``"sens>=0.9"``, ``"spec>=0.95"``) fitted on
    ``val_true``/``val_score``, a fixed number, or explicit per-label thresholds (array or ``{label: threshold}``).
    ``raw_score``: the same model's uncalibrated probabilities, for calibration before/after. ``n_bootstrap=0`` skips
    the bootstrap (DeLong and Wilson intervals are still given); ``n_jobs`` threads share the bootstrap's labels.
    """
    y_true, y_score, label_names = check_targets(y_true, y_score, label_names)
    if raw_score is not None:
        _, raw_score, _ = check_targets(y_true, raw_score, label_names)
    thr, thr_reasons, rule_text, thr_source = resolve_thresholds(thresholds, label_names, val_true, val_score)
    codes, n_clusters, unit = cluster_codes(patient_ids, y_true.shape[0])
    counts = confusion_counts(y_true, y_score, thr)
    rates = rates_from_counts(counts["tp"], counts["fp"], counts["tn"], counts["fn"])
    nan = float("nan")

    # Pass 1, label by label: point metrics and the label's bootstrap design; the per-record bins are then freed.
    rows, curves, designs = [], {}, []
    for j, name in enumerate(label_names):
        bins, known = _label_bins(y_true, y_score, j)
        n_pos, n_neg, n_unknown = _label_counts(bins, y_true.shape[0])
        reason = degenerate_reason(n_pos, n_neg)
        row = {"label": name, "n_pos": n_pos, "n_neg": n_neg, "n_unknown": n_unknown,
               "prevalence": n_pos / (n_pos + n_neg) if n_pos + n_neg else nan,
               "auc": nan, "auc_se_delong": nan, "auc_delong_ci_low": nan, "auc_delong_ci_high": nan,
               "auc_ci_low": nan, "auc_ci_high": nan, "bootstrap_undefined": 0,
               "average_precision": bins.average_precision() if n_pos else nan, "ap_ci_low": nan, "ap_ci_high": nan,
               "threshold": float(thr[j])}
        if reason is None:
            dl = delong_auc_from_bins(bins, level)
            row.update(auc=dl.auc, auc_se_delong=dl.se, auc_delong_ci_low=dl.ci_low, auc_delong_ci_high=dl.ci_high)
            curves[name] = _roc_points(bins)
        for key in ("tp", "fp", "tn", "fn"):
            row[key] = int(counts[key][j]) if np.isfinite(counts[key][j]) else nan
        for rate, (hit, miss) in WILSON_RATES.items():
            row[rate] = float(rates[rate][j])
            k, n = counts[hit][j], counts[hit][j] + counts[miss][j]
            low, high = wilson_interval(k, n, level) if np.isfinite(n) else (nan, nan)
            row[f"{rate}_ci_low"], row[f"{rate}_ci_high"] = float(low), float(high)
        row.update(f1=float(rates["f1"][j]), f1_ci_low=nan, f1_ci_high=nan, excluded=reason is not None,
                   reason=reason, threshold_reason=thr_reasons[j])
        rows.append(row)
        if n_bootstrap > 0:
            designs.append(None if bins is None else label_design(bins, codes[known], n_clusters, thr[j]))

    # Pass 2: all labels resampled together, then the bootstrap intervals.
    boot = None
    if n_bootstrap > 0:
        boot = run_bootstrap([designs], n_clusters, unit, n_bootstrap, seed, progress=progress, n_jobs=n_jobs)
        del designs
        f1_reps = _f1_replicates(boot, 0)
        for j, row in enumerate(rows):
            row["auc_ci_low"], row["auc_ci_high"] = _interval(boot.auc[0, :, j], level)
            # Resamples that drew no positive (or no negative) of this label: left out of its percentile interval.
            row["bootstrap_undefined"] = 0 if row["excluded"] else int(np.isnan(boot.auc[0, :, j]).sum())
            row["ap_ci_low"], row["ap_ci_high"] = _interval(boot.ap[0, :, j], level)
            row["f1_ci_low"], row["f1_ci_high"] = _interval(f1_reps[:, j], level)

    reliability = _add_calibration(rows, y_true, {"calibrated": y_score, "raw": raw_score})
    summary = _summary(rows, boot, y_true, y_score, level, rule_text, thr_source)
    summary["calibration"] = _calibration_summary(y_true, {"calibrated": y_score, "raw": raw_score})
    settings = {
        "n_records": int(y_true.shape[0]), "n_labels": len(label_names), "threshold_rule": rule_text,
        "threshold_source": thr_source, "n_bootstrap": int(n_bootstrap), "seed": int(seed), "ci_level": level,
        "bootstrap_unit": unit, "n_clusters": int(n_clusters), "ci_method": {
            "auc": "percentile bootstrap" + (" (patient-level)" if unit == "patient" else "") + "; DeLong also given",
            "sensitivity/specificity/ppv/npv": "Wilson score",
            "f1/average_precision/summaries": "percentile bootstrap"},
        "calibration": {
            "ece": f"expected calibration error over {ECE_BINS} equal-mass bins (each bin holds the same number of "
                   "predictions, so rare labels still get populated bins above 0)",
            "slope_intercept": "logistic recalibration fit: logit P(y=1) = intercept + slope * logit(p)",
            "pooled": "all known (record, label) pairs together",
            "diagrams": f"{ECE_BINS} equal-width bins, bins with fewer than {DIAGRAM_MIN_COUNT} predictions left out",
            "raw_scores_given": raw_score is not None},
    }
    return EvaluationResult(rows, summary, settings, curves, reliability)


#: Key of the pooled curve in :attr:`EvaluationResult.reliability`.
POOLED = "all labels pooled"
_CALIBRATION_KEYS = ("brier", "ece", "calibration_slope", "calibration_intercept")


def _are_probabilities(score: np.ndarray, y_true: np.ndarray) -> bool:
    """Whether the scores of known labels all lie in [0, 1] (calibration metrics mean nothing otherwise)."""
    known = ~np.isnan(y_true)
    return bool(np.all((score[known] >= 0) & (score[known] <= 1)))


def _add_calibration(rows: list[dict], y_true: np.ndarray, scores: Mapping[str, np.ndarray | None]) -> dict:
    """Per-label calibration metrics into ``rows`` (``_raw`` suffix for raw scores) and the reliability curves."""
    curves: dict[str, dict[str, ReliabilityCurve]] = {}
    for kind, score in scores.items():
        if score is None:
            continue
        suffix = "" if kind == "calibrated" else "_raw"
        probabilities = _are_probabilities(score, y_true)
        curves[kind] = {}
        for j, row in enumerate(rows):
            known = ~np.isnan(y_true[:, j])
            usable = probabilities and known.any()
            metrics = calibration_metrics(y_true[known, j], score[known, j]) if usable else {}
            for key in _CALIBRATION_KEYS:
                row[f"{key}{suffix}"] = metrics.get(key, float("nan"))
            if usable and not row["excluded"]:
                curves[kind][row["label"]] = _diagram(y_true[known, j], score[known, j])
        known = ~np.isnan(y_true)
        if probabilities and known.any():
            curves[kind][POOLED] = _diagram(y_true[known], score[known])
    return curves


def _diagram(y: np.ndarray, p: np.ndarray) -> ReliabilityCurve:
    """Reliability-diagram points: equal-width bins (most predictions sit near 0, so equal-mass bins would put nearly
    every point there), leaving out bins with fewer than DIAGRAM_MIN_COUNT predictions."""
    return reliability_curve(y, p, ECE_BINS, strategy="uniform", min_count=DIAGRAM_MIN_COUNT)


def _calibration_summary(y_true: np.ndarray, scores: Mapping[str, np.ndarray | None]) -> dict:
    """Pooled calibration metrics of the evaluated scores (and of the raw ones when given)."""
    out = {}
    for kind, score in scores.items():
        if score is None:
            continue
        if _are_probabilities(score, y_true):
            out[kind] = pooled_calibration_metrics(y_true, score)
        else:
            out[kind] = {key: float("nan") for key in _CALIBRATION_KEYS}
            out[kind]["note"] = "scores outside [0, 1]: not probabilities"
    return out


def _summary(rows, boot, y_true, y_score, level, rule_text, thr_source) -> dict:
    """Median/macro/micro summaries with bootstrap intervals and the excluded-label accounting."""
    auc = np.array([r["auc"] for r in rows])
    evaluable = np.isfinite(auc)
    sens = np.array([r["sensitivity"] for r in rows])
    spec = np.array([r["specificity"] for r in rows])
    operating = evaluable & np.isfinite(sens) & np.isfinite(spec)
    ap = np.array([r["average_precision"] for r in rows])
    reps = {}
    if boot is not None:
        boot_rates = rates_from_counts(boot.tp[0], boot.fp[0], boot.tn[0], boot.fn[0])
        reps = {"auc": boot.auc[0], "ap": boot.ap[0], "sens": boot_rates["sensitivity"],
                "spec": boot_rates["specificity"]}

    def stat_with_ci(stat, values, key, columns):
        point = stat(values[columns]) if np.any(columns) else float("nan")
        low, high = _interval(_rowwise(stat, reps.get(key), columns), level)
        return {"value": point, "ci_low": low, "ci_high": high}

    summary = {
        "n_labels": len(rows),
        "n_evaluable": int(evaluable.sum()),
        "n_excluded": int((~evaluable).sum()),
        "excluded": [{"label": r["label"], "reason": r["reason"]} for r in rows if r["excluded"]],
        "n_with_operating_point": int(operating.sum()),
        "without_threshold": [{"label": r["label"], "reason": r["threshold_reason"]}
                              for r in rows if r["threshold_reason"]],
        "median_auc": stat_with_ci(nan_median, auc, "auc", evaluable),
        "macro_auc": stat_with_ci(nan_mean, auc, "auc", evaluable),
        # Micro pools every known (record, label) pair, degenerate labels included (scikit-learn's definition).
        # Not bootstrapped: each resample would need a fresh ranking of all N x L pairs.
        "micro_auc": {"value": micro_auc(y_true, y_score), "ci_low": float("nan"), "ci_high": float("nan")},
        "median_average_precision": stat_with_ci(nan_median, ap, "ap", evaluable),
        "median_sensitivity": stat_with_ci(nan_median, sens, "sens", operating),
        "median_specificity": stat_with_ci(nan_median, spec, "spec", operating),
        "threshold_rule": rule_text,
        "threshold_source": thr_source,
    }
    summary["text"] = summary_sentence(summary, level)
    return summary


def _fmt(stat: Mapping, digits: int = 3) -> str:
    """``0.912 (95% CI 0.901-0.925)``-style text for a summary statistic (CI left out when unavailable)."""
    value = stat["value"]
    if not np.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    if np.isfinite(stat["ci_low"]) and np.isfinite(stat["ci_high"]):
        text += f" (CI {stat['ci_low']:.{digits}f}-{stat['ci_high']:.{digits}f})"
    return text


def summary_sentence(summary: Mapping, level: float = 0.95) -> str:
    """The abstract-style headline: median AUC, sensitivity and specificity with CIs across N labels."""
    ci = f"{level:.0%} CI"
    where = {"validation": "chosen on the validation set", "fixed": "fixed", "given": "given"}
    where = where[summary["threshold_source"]]
    text = (
        f"Median AUC {_fmt(summary['median_auc'])}, median sensitivity {_fmt(summary['median_sensitivity'])} and "
        f"median specificity {_fmt(summary['median_specificity'])} at {summary['threshold_rule']} thresholds {where}, "
        f"across {summary['n_evaluable']} labels"
    ).replace("(CI ", f"({ci} ")
    if summary["n_with_operating_point"] < summary["n_evaluable"]:
        text += (f" (sensitivity and specificity over the {summary['n_with_operating_point']} with a validation "
                 "threshold)")
    if summary["n_excluded"]:
        text += (f" ({summary['n_excluded']} of {summary['n_labels']} excluded: no positives or negatives in the "
                 "test set)")
    return text + "."


def compare_scores(
    y_true,
    score_a,
    score_b,
    label_names: Sequence[str] | None = None,
    *,
    model_names: tuple[str, str] = ("A", "B"),
    patient_ids=None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
    progress: Callable[[int], None] | None = None,
    n_jobs: int = 1,
) -> ComparisonResult:
    """Paired per-label comparison of two models on the same records: AUCs, difference A - B with DeLong CI/p-value,
    Benjamini-Hochberg adjusted p-values across labels, and a paired (cluster) bootstrap CI of the difference."""
    y_true, score_a, label_names = check_targets(y_true, score_a, label_names)
    _, score_b, _ = check_targets(y_true, score_b, label_names)
    codes, n_clusters, unit = cluster_codes(patient_ids, y_true.shape[0])
    nan = float("nan")
    rows, curves, designs = [], {}, ([], [])
    for j, name in enumerate(label_names):
        bins_a, known = _label_bins(y_true, score_a, j)
        bins_b, _ = _label_bins(y_true, score_b, j)
        n_pos, n_neg, n_unknown = _label_counts(bins_a, y_true.shape[0])
        reason = degenerate_reason(n_pos, n_neg)
        row = {"label": name, "n_pos": n_pos, "n_neg": n_neg, "n_unknown": n_unknown, "auc_a": nan, "auc_b": nan,
               "diff": nan, "diff_se_delong": nan, "diff_delong_ci_low": nan, "diff_delong_ci_high": nan,
               "z_delong": nan, "p_delong": nan, "auc_a_ci_low": nan, "auc_a_ci_high": nan, "auc_b_ci_low": nan,
               "auc_b_ci_high": nan, "diff_boot_ci_low": nan, "diff_boot_ci_high": nan,
               "excluded": reason is not None, "reason": reason}
        if reason is None:
            test = delong_test_from_bins(bins_a, bins_b, level)
            row.update(auc_a=test.auc_a, auc_b=test.auc_b, diff=test.diff, diff_se_delong=test.se,
                       diff_delong_ci_low=test.ci_low, diff_delong_ci_high=test.ci_high, z_delong=test.z,
                       p_delong=test.p_value)
            curves[name] = [_roc_points(bins_a), _roc_points(bins_b)]
        rows.append(row)
        if n_bootstrap > 0:
            for model, bins in enumerate((bins_a, bins_b)):
                designs[model].append(None if bins is None else label_design(bins, codes[known], n_clusters, nan))

    boot = None
    if n_bootstrap > 0:
        boot = run_bootstrap(list(designs), n_clusters, unit, n_bootstrap, seed, progress=progress, n_jobs=n_jobs)
        del designs
        for j, row in enumerate(rows):
            row["auc_a_ci_low"], row["auc_a_ci_high"] = _interval(boot.auc[0, :, j], level)
            row["auc_b_ci_low"], row["auc_b_ci_high"] = _interval(boot.auc[1, :, j], level)
            row["diff_boot_ci_low"], row["diff_boot_ci_high"] = _interval(boot.auc[0, :, j] - boot.auc[1, :, j], level)

    p = np.array([r["p_delong"] for r in rows])
    tested = np.isfinite(p)
    q = np.full(p.shape, np.nan)
    if tested.any():
        q[tested] = false_discovery_control(p[tested], method="bh")
    for row, q_value in zip(rows, q):
        row["p_fdr_bh"] = float(q_value)

    summary = _compare_summary(rows, boot, level, alpha, model_names)
    settings = {
        "n_records": int(y_true.shape[0]), "n_labels": len(label_names), "model_a": model_names[0],
        "model_b": model_names[1], "n_bootstrap": int(n_bootstrap), "seed": int(seed), "ci_level": level,
        "alpha": alpha, "bootstrap_unit": unit, "n_clusters": int(n_clusters),
        "ci_method": {"diff": "DeLong (Sun & Xu fast algorithm) and paired percentile bootstrap",
                      "p_fdr_bh": "Benjamini-Hochberg across evaluable labels"},
    }
    return ComparisonResult(rows, summary, settings, curves)


def _compare_summary(rows, boot, level, alpha, model_names) -> dict:
    """Median AUCs of both models, the median per-label difference with bootstrap CI and significance counts."""
    auc_a = np.array([r["auc_a"] for r in rows])
    auc_b = np.array([r["auc_b"] for r in rows])
    evaluable = np.isfinite(auc_a) & np.isfinite(auc_b)
    q = np.array([r["p_fdr_bh"] for r in rows])
    diff = auc_a - auc_b

    def stat_with_ci(values, reps):
        point = nan_median(values[evaluable]) if evaluable.any() else float("nan")
        low, high = _interval(_rowwise(nan_median, reps, evaluable), level)
        return {"value": point, "ci_low": low, "ci_high": high}

    reps_a = boot.auc[0] if boot is not None else None
    reps_b = boot.auc[1] if boot is not None else None
    summary = {
        "n_labels": len(rows),
        "n_evaluable": int(evaluable.sum()),
        "n_excluded": int((~evaluable).sum()),
        "excluded": [{"label": r["label"], "reason": r["reason"]} for r in rows if r["excluded"]],
        "median_auc_a": stat_with_ci(auc_a, reps_a),
        "median_auc_b": stat_with_ci(auc_b, reps_b),
        "median_diff": stat_with_ci(diff, None if boot is None else reps_a - reps_b),
        "n_a_better": int(np.sum(evaluable & (q < alpha) & (diff > 0))),
        "n_b_better": int(np.sum(evaluable & (q < alpha) & (diff < 0))),
        "n_a_higher_auc": int(np.sum(evaluable & (diff > 0))),
    }
    a, b = model_names
    summary["text"] = (
        f"Median AUC {a} {_fmt(summary['median_auc_a'])} vs {b} {_fmt(summary['median_auc_b'])}; median per-label "
        f"difference ({a} - {b}) {_fmt(summary['median_diff'])} across {summary['n_evaluable']} labels. "
        f"{a} had the higher AUC for {summary['n_a_higher_auc']} labels; significantly better (DeLong, "
        f"Benjamini-Hochberg q < {alpha:g}) for {summary['n_a_better']}, significantly worse for "
        f"{summary['n_b_better']}."
    ).replace("(CI ", f"({level:.0%} CI ")
    return summary
