"""Findings-list operating points: F1-optimal and PPV-target rules against brute force, fallbacks, serialisation."""
import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from ecgfm.evaluation import evaluate_scores
from ecgfm.evaluation.thresholds import (
    FALLBACK_THRESHOLD,
    PPV_FALLBACK_SENSITIVITY,
    FittedThresholds,
    choose_threshold,
    fit_thresholds,
    parse_threshold_rule,
)


def _case(seed: int, n: int = 500, prevalence: float = 0.1, ties: bool = True):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(float)
    s = rng.normal(size=n) + 1.5 * y
    if ties:
        s = np.round(s, 1)
    return y, s


def _rates(y, s, t):
    called = s >= t
    tp, fp = np.sum(called & (y == 1)), np.sum(called & (y == 0))
    return tp / np.sum(y == 1), (tp / (tp + fp) if tp + fp else np.nan)


def test_parse_findings_rules():
    assert str(parse_threshold_rule("f1")) == "f1"
    assert parse_threshold_rule("F1").kind == "f1"
    rule = parse_threshold_rule("ppv >= 0.6")
    assert (rule.kind, rule.value, str(rule)) == ("ppv", 0.6, "ppv>=0.6")
    assert parse_threshold_rule("precision>=0.7").kind == "ppv"
    with pytest.raises(ValueError, match="ppv>=0.6"):
        parse_threshold_rule("ppv<=0.6")


@pytest.mark.parametrize("seed", range(4))
def test_f1_rule_is_the_brute_force_f1_maximum(seed):
    y, s = _case(seed)
    candidates = np.unique(s)
    f1 = np.array([f1_score(y, s >= t) for t in candidates])
    threshold, reason = choose_threshold(y, s, "f1")
    assert reason is None
    assert f1_score(y, s >= threshold) == pytest.approx(f1.max())
    assert threshold == candidates[f1 == f1.max()].max()  # ties: the highest threshold (fewer flags)


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("seed", range(3))
def test_ppv_rule_gives_the_best_sensitivity_reaching_the_target(seed, target):
    y, s = _case(seed)
    candidates = np.unique(s)
    rates = np.array([_rates(y, s, t) for t in candidates])
    feasible = rates[:, 1] >= target
    assert feasible.any()
    threshold, reason = choose_threshold(y, s, f"ppv>={target}")
    sens, ppv = _rates(y, s, threshold)
    assert reason is None and ppv >= target
    assert sens == pytest.approx(rates[feasible, 0].max())
    best = candidates[feasible & (rates[:, 0] == rates[feasible, 0].max())]
    assert threshold == best.max()


def test_unreachable_ppv_falls_back_to_the_sensitivity_floor_and_says_so():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(20), np.zeros(200)]
    s = np.r_[rng.normal(size=219), 100.0]  # no skill and a negative on top: PPV stays near 0.1
    threshold, reason = choose_threshold(y, s, "ppv>=0.9")
    assert reason is None and np.isfinite(threshold)
    assert threshold == choose_threshold(y, s, f"sens>={PPV_FALLBACK_SENSITIVITY}")[0]
    fitted = fit_thresholds(y[:, None], s[:, None], ["X"], "ppv>=0.9")
    assert fitted.rules == [f"sens>={PPV_FALLBACK_SENSITIVITY:g}"]
    assert "not reached" in fitted.notes[0]


def test_fit_thresholds_falls_back_for_labels_with_few_positives():
    y, s = _case(0, n=400, prevalence=0.2)
    rare = np.zeros(400)
    rare[:3] = 1
    fitted = fit_thresholds(np.c_[y, rare, np.zeros(400)], np.c_[s, s, s], ["common", "rare", "absent"], "f1",
                            min_positives=5)
    assert fitted.thresholds[0] == choose_threshold(y, s, "f1")[0]
    assert fitted.rules == ["f1", f"{FALLBACK_THRESHOLD:g}", f"{FALLBACK_THRESHOLD:g}"]
    assert fitted.thresholds[1] == fitted.thresholds[2] == FALLBACK_THRESHOLD
    assert fitted.notes[0] is None and "3 validation positives" in fitted.notes[1]


def test_unknown_validation_labels_are_left_out_of_the_fit():
    y, s = _case(1, n=300, prevalence=0.3)
    y_missing = y.copy()
    y_missing[::3] = np.nan
    keep = ~np.isnan(y_missing)
    assert fit_thresholds(y_missing[:, None], s[:, None], ["A"], "f1").thresholds[0] == \
        choose_threshold(y[keep], s[keep], "f1")[0]


def test_fitted_thresholds_round_trip_through_json_and_feed_evaluation():
    y, s = _case(2, n=300, prevalence=0.3)
    fitted = fit_thresholds(np.c_[y, y], np.c_[s, -s], ["A", "B"], "ppv>=0.5")
    again = FittedThresholds.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert again.labels == fitted.labels and again.rules == fitted.rules and again.rule == "ppv>=0.5"
    np.testing.assert_array_equal(again.thresholds, fitted.thresholds)
    result = evaluate_scores(np.c_[y, y], np.c_[s, -s], ["A", "B"], thresholds=again.as_mapping(), n_bootstrap=0)
    assert [row["threshold"] for row in result.labels] == list(fitted.thresholds)


def test_evaluate_scores_accepts_findings_rules():
    y, s = _case(4, n=400, prevalence=0.2)
    result = evaluate_scores(y, s, ["A"], val_true=y, val_score=s, thresholds="ppv>=0.6", n_bootstrap=0)
    assert result.summary["threshold_rule"] == "ppv>=0.6"
    assert result.labels[0]["ppv"] >= 0.6
