"""Calibration: calibrators recover known miscalibration, never change a ranking, serialise to plain JSON; calibration
metrics against scikit-learn and hand computations; calibration in evaluation results and reports."""
import json

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from ecgfm.evaluation import evaluate_scores
from ecgfm.evaluation.calibration import (
    ECE_BINS,
    Calibration,
    LabelCalibrator,
    brier_score,
    calibration_metrics,
    calibration_slope_intercept,
    candidate_methods,
    equal_mass_bins,
    expected_calibration_error,
    fit_calibration,
    fit_isotonic,
    fit_platt,
    log_loss,
    logit,
    sigmoid,
)
from ecgfm.evaluation.report import evaluate_predictions


def _miscalibrated(n: int, seed: int, prevalence_logit: float = -1.5, slope: float = 2.0, shift: float = 1.0):
    """True probabilities, outcomes drawn from them, and an over-confident, shifted model score."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(prevalence_logit, 1.5, n)
    y = (rng.random(n) < sigmoid(true_logit)).astype(float)
    return y, sigmoid(slope * true_logit + shift), sigmoid(true_logit)


def test_platt_recovers_the_inverse_of_a_known_distortion():
    y, raw, _ = _miscalibrated(20000, 0)
    calibrator = fit_platt(y, raw)
    # raw logit = 2 z + 1, so the calibrated logit z = 0.5 * raw logit - 0.5
    assert calibrator.a == pytest.approx(0.5, abs=0.03) and calibrator.b == pytest.approx(-0.5, abs=0.06)


@pytest.mark.parametrize("fit", [fit_platt, fit_isotonic])
def test_calibrators_are_strictly_increasing_and_keep_the_auc(fit):
    y, raw, _ = _miscalibrated(3000, 1)
    calibrator = fit(y, raw)
    grid = np.sort(np.r_[raw, 0.0, 1.0, np.linspace(0, 1, 1001)])
    mapped = calibrator.apply(grid)
    assert np.all(np.diff(mapped)[np.diff(grid) > 0] > 0)
    assert np.all((mapped > 0) & (mapped < 1))
    y_test, raw_test, _ = _miscalibrated(3000, 2)
    assert roc_auc_score(y_test, calibrator.apply(raw_test)) == roc_auc_score(y_test, raw_test)


def test_isotonic_follows_a_curve_platt_cannot():
    rng = np.random.default_rng(3)
    raw = rng.random(20000)
    truth = np.where(raw < 0.5, 0.1, 0.9) * raw + 0.05  # a step: not a logistic function of logit(raw)
    y = (rng.random(raw.size) < truth).astype(float)
    iso, platt = fit_isotonic(y, raw), fit_platt(y, raw)
    test = rng.random(20000)
    y_test = (rng.random(test.size) < np.where(test < 0.5, 0.1, 0.9) * test + 0.05).astype(float)
    assert log_loss(y_test, iso.apply(test)) < log_loss(y_test, platt.apply(test)) - 0.005


def test_fit_calibration_chooses_per_label_and_records_why():
    y1, raw1, _ = _miscalibrated(2000, 4)                    # over-confident: needs recalibration
    rng = np.random.default_rng(5)
    p2 = rng.uniform(0.01, 0.6, 2000)
    y2 = (rng.random(2000) < p2).astype(float)                # already calibrated
    y3 = np.zeros(2000)
    y3[:3] = 1                                                # too few positives for any fit
    raw = np.c_[raw1, p2, p2]
    y = np.c_[y1, y2, y3]
    y[::7, 1] = np.nan                                        # unknown labels are left out
    patients = np.arange(2000) // 2
    calibration = fit_calibration(y, raw, ["A", "B", "C"], patient_ids=patients)
    assert calibration.methods["A"] in ("platt", "isotonic")
    assert calibration.methods["C"] == "identity" and calibration.selection["C"]["candidates"] == ["identity"]
    chosen = calibration.selection["A"]
    assert chosen["cv_log_loss"][chosen["chosen"]] == min(chosen["cv_log_loss"].values())
    assert chosen["cv_log_loss"]["identity"] > chosen["cv_log_loss"][chosen["chosen"]]
    assert calibration.selection["B"]["n_pos"] + calibration.selection["B"]["n_neg"] == int(np.sum(~np.isnan(y[:, 1])))
    y_test, raw_test, _ = _miscalibrated(5000, 6)
    before = expected_calibration_error(y_test, raw_test)
    after = expected_calibration_error(y_test, calibration.apply(np.c_[raw_test, raw_test, raw_test])[:, 0])
    assert after < before / 2


def test_candidates_follow_the_positive_counts():
    assert candidate_methods(4, 500) == ("identity",)
    assert candidate_methods(10, 500) == ("identity", "platt")
    assert candidate_methods(40, 500) == ("identity", "platt", "isotonic")
    assert candidate_methods(500, 3) == ("identity",)


def test_calibration_round_trips_through_plain_json_and_applies_without_the_fit():
    y, raw, _ = _miscalibrated(3000, 7)
    calibration = Calibration(["P", "I", "X"], [fit_platt(y, raw), fit_isotonic(y, raw), LabelCalibrator()])
    document = json.loads(json.dumps(calibration.to_dict(), allow_nan=False))
    again = Calibration.from_dict(document)
    probe = np.c_[raw, raw, raw]
    np.testing.assert_array_equal(again.apply(probe), calibration.apply(probe))
    np.testing.assert_array_equal(again.apply(probe)[:, 2], raw)
    # the isotonic map by hand: np.interp on the logit, plus the stored share of the Platt curve
    iso = document["labels"]["I"]
    by_hand = (1 - iso["weight"]) * np.interp(logit(raw), iso["nodes_logit"], iso["nodes_p"]) + \
        iso["weight"] * sigmoid(iso["a"] * logit(raw) + iso["b"])
    np.testing.assert_allclose(again.apply(probe)[:, 1], by_hand)


def test_bad_calibration_documents_are_refused():
    with pytest.raises(ValueError, match="unknown calibration method"):
        LabelCalibrator.from_dict({"method": "magic"})
    with pytest.raises(ValueError, match="increasing"):
        LabelCalibrator.from_dict({"method": "isotonic", "nodes_logit": [1, 0], "nodes_p": [0.1, 0.2]})
    with pytest.raises(ValueError, match="labels"):
        Calibration.identity(["A"]).apply(np.zeros((3, 2)))


def test_metrics_against_sklearn_and_by_hand():
    rng = np.random.default_rng(8)
    p = rng.random(1000)
    y = (rng.random(1000) < p).astype(float)
    assert brier_score(y, p) == pytest.approx(brier_score_loss(y, p))
    bins = equal_mass_bins(p, ECE_BINS)
    assert np.all(np.bincount(bins) == 100)
    by_hand = sum(np.sum(bins == b) * abs(y[bins == b].mean() - p[bins == b].mean()) for b in range(ECE_BINS)) / 1000
    assert expected_calibration_error(y, p) == pytest.approx(by_hand)
    inverted = expected_calibration_error(np.array([0, 0, 1, 1.0]), np.array([0.9, 0.9, 0.1, 0.1]), n_bins=2)
    assert inverted == pytest.approx(0.9)


def test_calibration_slope_and_intercept_recover_the_generating_model():
    rng = np.random.default_rng(9)
    p = sigmoid(rng.normal(-1, 1.5, 50000))
    y = (rng.random(p.size) < sigmoid(0.5 + 0.7 * logit(p))).astype(float)
    slope, intercept = calibration_slope_intercept(y, p)
    assert slope == pytest.approx(0.7, abs=0.03) and intercept == pytest.approx(0.5, abs=0.04)
    assert np.isnan(calibration_slope_intercept(np.zeros(5), p[:5])[0])
    metrics = calibration_metrics(np.r_[y[:100], np.nan], np.r_[p[:100], 0.5])
    assert set(metrics) == {"brier", "ece", "calibration_slope", "calibration_intercept"}


def _evaluation_data(seed: int = 10):
    y1, raw1, _ = _miscalibrated(1500, seed)
    y2, raw2, _ = _miscalibrated(1500, seed + 1, prevalence_logit=-3)
    y, raw = np.c_[y1, y2], np.c_[raw1, raw2]
    vy1, vraw1, _ = _miscalibrated(1500, seed + 2)
    vy2, vraw2, _ = _miscalibrated(1500, seed + 3, prevalence_logit=-3)
    calibration = fit_calibration(np.c_[vy1, vy2], np.c_[vraw1, vraw2], ["A", "B"])
    return y, raw, calibration.apply(raw)


def test_evaluation_reports_calibration_per_label_and_pooled_before_and_after(tmp_path):
    y, raw, calibrated = _evaluation_data()
    result, paths = evaluate_predictions(y, calibrated, ["A", "B"], tmp_path, thresholds=0.5, n_bootstrap=0,
                                         raw_score=raw)
    for j, row in enumerate(result.labels):
        assert row["brier"] == pytest.approx(brier_score_loss(y[:, j], calibrated[:, j]))
        assert row["ece_raw"] == pytest.approx(expected_calibration_error(y[:, j], raw[:, j]))
        assert row["ece"] < row["ece_raw"]
        assert row["auc"] == pytest.approx(roc_auc_score(y[:, j], raw[:, j]))
    pooled = result.summary["calibration"]
    assert pooled["calibrated"]["ece"] < pooled["raw"]["ece"] / 2
    assert pooled["raw"]["calibration_slope"] == pytest.approx(0.5, abs=0.1)
    document = json.loads(paths["json"].read_text())
    assert document["summary"]["calibration"]["raw"]["brier"] == pytest.approx(brier_score(y.ravel(), raw.ravel()))
    page = paths["html"].read_text()
    assert "reliability diagrams per label" in page and "raw &rarr; calibrated" in page


def test_scores_that_are_not_probabilities_get_no_calibration_metrics():
    y, raw, _ = _evaluation_data()
    result = evaluate_scores(y, logit(raw), ["A", "B"], thresholds=0.0, n_bootstrap=0)
    assert np.isnan(result.labels[0]["ece"])
    assert "not probabilities" in result.summary["calibration"]["calibrated"]["note"]
    assert result.reliability == {"calibrated": {}}


def test_reliability_curve_binnings():
    from ecgfm.evaluation.calibration import reliability_curve

    rng = np.random.default_rng(11)
    p = rng.beta(0.5, 5, 2000)
    y = (rng.random(2000) < p).astype(float)
    uniform = reliability_curve(y, p, 10, strategy="uniform", min_count=5)
    counts, _ = np.histogram(p, bins=np.linspace(0, 1, 11))
    np.testing.assert_array_equal(uniform.counts, counts[counts >= 5])
    quantile = reliability_curve(y, p, 10)
    assert np.all(quantile.counts == 200) and np.all(np.diff(quantile.mean_predicted) > 0)
    with pytest.raises(ValueError, match="binning"):
        reliability_curve(y, p, strategy="log")
