"""Point metrics, thresholds and Wilson intervals against scikit-learn, scipy and published values."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from ecgfm.evaluation.intervals import percentile_interval, wilson_interval
from ecgfm.evaluation.metrics import (
    ScoreBins,
    average_precision,
    check_targets,
    confusion_counts,
    micro_auc,
    rates_from_counts,
    roc_auc,
)
from ecgfm.evaluation.thresholds import choose_threshold, choose_thresholds, parse_threshold_rule


def _binary_case(rng, n, prevalence, ties):
    y = (rng.random(n) < prevalence).astype(float)
    y[0], y[1] = 1, 0  # both classes present
    s = rng.normal(size=n) + y
    return y, (np.round(s) if ties else s)


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("prevalence", [0.02, 0.3, 0.9])
def test_auc_and_ap_match_sklearn(ties, prevalence):
    rng = np.random.default_rng(1)
    y, s = _binary_case(rng, 2000, prevalence, ties)
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4)), min_size=2, max_size=40))
def test_auc_and_ap_match_sklearn_on_small_tied_inputs(pairs):
    y = np.array([p[0] for p in pairs], dtype=float)
    s = np.array([p[1] for p in pairs], dtype=float)  # heavy ties: only five distinct scores
    if 0 < y.sum() < y.size:
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    else:
        assert np.isnan(roc_auc(y, s))
    if y.sum() > 0:
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_single_class_and_all_positive_give_nan_not_a_crash():
    s = np.linspace(0, 1, 10)
    # No AUC without both classes (scikit-learn raises or warns, by version); the caller reports the reason.
    assert np.isnan(roc_auc(np.zeros(10), s))
    assert np.isnan(roc_auc(np.ones(10), s))
    assert np.isnan(average_precision(np.zeros(10), s))
    assert average_precision(np.ones(10), s) == pytest.approx(1.0)
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5  # all tied


def test_unknown_labels_are_left_out():
    rng = np.random.default_rng(2)
    y, s = _binary_case(rng, 500, 0.3, False)
    y_nan = y.copy()
    y_nan[::7] = np.nan
    keep = ~np.isnan(y_nan)
    assert roc_auc(y_nan, s) == pytest.approx(roc_auc_score(y[keep], s[keep]), abs=1e-12)
    assert average_precision(y_nan, s) == pytest.approx(average_precision_score(y[keep], s[keep]), abs=1e-12)


def test_roc_points_match_sklearn_and_thinning_keeps_the_curve():
    rng = np.random.default_rng(7)
    y, s = _binary_case(rng, 5000, 0.2, False)
    bins = ScoreBins.from_scores(y, s)
    fpr, tpr = bins.roc_points()
    ref_fpr, ref_tpr, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    thin_fpr, thin_tpr = bins.roc_points(resolution=100)
    assert thin_fpr.size < fpr.size / 5
    assert (thin_fpr[0], thin_tpr[0], thin_fpr[-1], thin_tpr[-1]) == (0, 0, 1, 1)
    # Trapezoidal area of the thinned curve stays within the grid resolution of the true AUC.
    assert np.trapezoid(thin_tpr, thin_fpr) == pytest.approx(roc_auc_score(y, s), abs=0.01)


def test_micro_auc_matches_sklearn_micro():
    rng = np.random.default_rng(3)
    y = (rng.random((400, 6)) < 0.2).astype(float)
    s = rng.normal(size=y.shape) + y
    assert micro_auc(y, s) == pytest.approx(roc_auc_score(y, s, average="micro"), abs=1e-12)


def test_confusion_metrics_match_sklearn():
    rng = np.random.default_rng(4)
    y = (rng.random((1000, 3)) < 0.25).astype(float)
    s = np.round(rng.random(y.shape) + 0.3 * y, 2)
    thr = np.array([0.5, 0.7, 0.3])
    counts = confusion_counts(y, s, thr)
    rates = rates_from_counts(counts["tp"], counts["fp"], counts["tn"], counts["fn"])
    for j in range(3):
        pred = s[:, j] >= thr[j]
        tn, fp, fn, tp = confusion_matrix(y[:, j], pred).ravel()
        assert (counts["tp"][j], counts["fp"][j], counts["tn"][j], counts["fn"][j]) == (tp, fp, tn, fn)
        assert rates["sensitivity"][j] == pytest.approx(recall_score(y[:, j], pred))
        assert rates["specificity"][j] == pytest.approx(recall_score(1 - y[:, j], ~pred))
        assert rates["ppv"][j] == pytest.approx(precision_score(y[:, j], pred))
        assert rates["npv"][j] == pytest.approx(precision_score(1 - y[:, j], ~pred))
        assert rates["f1"][j] == pytest.approx(f1_score(y[:, j], pred))


def test_check_targets_rejects_bad_input():
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        check_targets([[0.5]], [[0.1]])
    with pytest.raises(ValueError, match="finite"):
        check_targets([[1.0], [0.0]], [[np.inf], [0.0]])
    with pytest.raises(ValueError, match="label names"):
        check_targets(np.zeros((3, 2)), np.zeros((3, 2)), ["a"])
    with pytest.raises(ValueError, match="must both be"):
        check_targets(np.zeros((3, 2)), np.zeros((3, 3)))
    # A score may be NaN where the label is unknown.
    check_targets([[np.nan], [1.0]], [[np.nan], [0.3]])


# --- Wilson intervals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "k, n, low, high",
    # Newcombe (1998), Stat Med 17:857, Table I, method 3 (Wilson score without continuity correction).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_published_values(k, n, low, high):
    lo, hi = wilson_interval(k, n)
    assert round(float(lo), 4) == low and round(float(hi), 4) == high


def test_wilson_matches_scipy_vectorised():
    ks = np.array([0, 1, 5, 17, 50, 99, 100])
    lo, hi = wilson_interval(ks, 100, level=0.9)
    for k, a, b in zip(ks, lo, hi):
        ref = binomtest(int(k), 100).proportion_ci(confidence_level=0.9, method="wilson")
        assert a == pytest.approx(ref.low, abs=1e-12) and b == pytest.approx(ref.high, abs=1e-12)
    assert np.all(np.isnan(wilson_interval(0, 0)))


def test_percentile_interval_ignores_nan_replicates():
    reps = np.r_[np.arange(1000.0), np.nan]
    lo, hi = percentile_interval(reps, 0.9)
    assert lo == pytest.approx(np.quantile(np.arange(1000.0), 0.05))
    assert hi == pytest.approx(np.quantile(np.arange(1000.0), 0.95))
    assert np.isnan(percentile_interval(np.full((5, 2), np.nan))[0]).all()


# --- thresholds ------------------------------------------------------------------------------------------------


def test_parse_threshold_rules():
    assert str(parse_threshold_rule("youden")) == "youden"
    assert parse_threshold_rule("sens>=0.9").kind == "sensitivity"
    assert parse_threshold_rule("specificity >= 0.95").value == 0.95
    assert parse_threshold_rule(0.5).kind == "fixed"
    assert parse_threshold_rule("0.25").value == 0.25
    for bad in ("sens>=1.5", "magic", "spec<=0.9"):
        with pytest.raises(ValueError):
            parse_threshold_rule(bad)


@pytest.mark.parametrize("ties", [False, True])
def test_youden_matches_brute_force_over_sklearn_roc(ties):
    rng = np.random.default_rng(5)
    y, s = _binary_case(rng, 800, 0.2, ties)
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    expected = thresholds[np.argmax(tpr - fpr)]
    assert choose_threshold(y, s, "youden") == (expected, None)


@pytest.mark.parametrize("target", [0.5, 0.8, 0.9, 0.95, 1.0])
def test_sensitivity_and_specificity_targets_are_optimal(target):
    rng = np.random.default_rng(6)
    y, s = _binary_case(rng, 600, 0.3, True)
    candidates = np.unique(s)
    sens = np.array([np.mean(s[y == 1] >= t) for t in candidates])
    spec = np.array([np.mean(s[y == 0] < t) for t in candidates])

    thr, _ = choose_threshold(y, s, f"sens>={target}")
    got_sens, got_spec = np.mean(s[y == 1] >= thr), np.mean(s[y == 0] < thr)
    assert got_sens >= target
    assert got_spec == pytest.approx(spec[sens >= target].max())

    thr, _ = choose_threshold(y, s, f"spec>={target}")
    got_sens, got_spec = np.mean(s[y == 1] >= thr), np.mean(s[y == 0] < thr)
    assert got_spec >= target
    feasible = sens[spec >= target]
    assert got_sens == pytest.approx(feasible.max() if feasible.size else 0.0)


def test_exact_rate_target_counts_as_reached():
    y = np.r_[np.ones(10), np.zeros(10)]
    s = np.r_[np.arange(10.0), np.arange(10.0) - 5]
    thr, _ = choose_threshold(y, s, "sens>=0.9")  # 9 of 10 positives is exactly 0.9
    assert np.mean(s[y == 1] >= thr) == 0.9 and thr == 1.0


def test_threshold_on_degenerate_validation_label_is_nan_with_reason():
    thresholds, reasons = choose_thresholds(np.c_[np.zeros(5), [0, 1, 0, 1, 1]], np.random.rand(5, 2), "youden")
    assert np.isnan(thresholds[0]) and "no positive records in the validation set" in reasons[0]
    assert np.isfinite(thresholds[1]) and reasons[1] is None
