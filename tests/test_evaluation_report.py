"""evaluate_scores / compare_scores end to end: values, degenerate labels, JSON/CSV/HTML outputs and the CLI."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from typer.testing import CliRunner

from ecgfm.cli.evaluate_cmd import compare_predictions, evaluate_predictions
from ecgfm.cli.main import app
from ecgfm.evaluation import compare_scores, evaluate_scores
from ecgfm.evaluation.predictions import load_predictions, save_predictions
from ecgfm.evaluation.thresholds import choose_thresholds

LABELS = ["NORM", "AFIB", "RARE", "NONE", "ALL"]


def _split(seed, n=600):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, len(LABELS))) < [0.4, 0.1, 0.02, 0.0, 1.0]).astype(float)
    y[:3, 2] = 1  # RARE has a few positives in every split
    y[rng.random(n) < 0.05, 1] = np.nan  # unknown AFIB labels
    s = rng.normal(size=y.shape) + 1.5 * np.nan_to_num(y)
    patients = np.repeat(np.arange(n // 2), 2)
    return y, s, patients


@pytest.fixture(scope="module")
def evaluated():
    y, s, patients = _split(0)
    vy, vs, _ = _split(1)
    vy[:, 3] = 0
    vy[0, 3] = 1  # NONE is fittable on validation but has no test positives
    result = evaluate_scores(y, s, LABELS, val_true=vy, val_score=vs, patient_ids=patients, n_bootstrap=200, seed=3)
    return result, (y, s, patients, vy, vs)


def test_per_label_values_match_sklearn_and_thresholds_come_from_validation(evaluated):
    result, (y, s, _, vy, vs) = evaluated
    rows = {r["label"]: r for r in result.labels}
    expected_thr, _ = choose_thresholds(vy, vs, "youden")
    for j, name in enumerate(LABELS):
        row = rows[name]
        known = ~np.isnan(y[:, j])
        assert row["threshold"] == pytest.approx(expected_thr[j], nan_ok=True)
        if name in ("NONE", "ALL"):
            continue
        assert row["auc"] == pytest.approx(roc_auc_score(y[known, j], s[known, j]))
        assert row["average_precision"] == pytest.approx(average_precision_score(y[known, j], s[known, j]))
        pred = s[known, j] >= row["threshold"]
        truth = y[known, j] == 1
        assert row["sensitivity"] == pytest.approx(np.mean(pred[truth]))
        assert row["specificity"] == pytest.approx(np.mean(~pred[~truth]))
        assert row["auc_ci_low"] < row["auc"] < row["auc_ci_high"]
        assert row["sensitivity_ci_low"] <= row["sensitivity"] <= row["sensitivity_ci_high"]
    assert rows["AFIB"]["n_unknown"] == int(np.isnan(y[:, 1]).sum())


def test_degenerate_labels_are_reported_and_excluded_from_summaries(evaluated):
    result, _ = evaluated
    rows = {r["label"]: r for r in result.labels}
    assert rows["NONE"]["excluded"] and rows["NONE"]["reason"] == "no positive records in the test set"
    assert rows["ALL"]["excluded"] and rows["ALL"]["reason"] == "no negative records in the test set"
    assert np.isnan(rows["NONE"]["auc"]) and np.isnan(rows["ALL"]["auc"])
    assert "no positive records in the validation set" not in (rows["NONE"]["threshold_reason"] or "")
    assert "no negative records in the validation set" in rows["ALL"]["threshold_reason"]
    s = result.summary
    assert (s["n_labels"], s["n_evaluable"], s["n_excluded"]) == (5, 3, 2)
    evaluable = [rows[n]["auc"] for n in ("NORM", "AFIB", "RARE")]
    assert s["median_auc"]["value"] == pytest.approx(np.median(evaluable))
    assert s["macro_auc"]["value"] == pytest.approx(np.mean(evaluable))
    assert s["median_auc"]["ci_low"] <= s["median_auc"]["value"] <= s["median_auc"]["ci_high"]
    assert "across 3 labels" in s["text"] and "2 of 5 excluded" in s["text"]
    assert result.settings["bootstrap_unit"] == "patient" and result.settings["n_clusters"] == 300


def test_micro_auc_matches_sklearn_over_known_pairs(evaluated):
    result, (y, s, *_) = evaluated
    known = ~np.isnan(y)
    assert result.summary["micro_auc"]["value"] == pytest.approx(roc_auc_score(y[known], s[known]))


def test_float32_inputs_give_the_float64_results(evaluated):
    result, (y, s, patients, vy, vs) = evaluated
    as32 = evaluate_scores(y.astype(np.float32), s.astype(np.float32), LABELS, val_true=vy.astype(np.float32),
                           val_score=vs.astype(np.float32), patient_ids=patients, n_bootstrap=200, seed=3)
    s32 = s.astype(np.float32).astype(np.float64)  # the same scores, rounded to float32 then widened
    vs32 = vs.astype(np.float32).astype(np.float64)
    as64 = evaluate_scores(y, s32, LABELS, val_true=vy, val_score=vs32, patient_ids=patients, n_bootstrap=200, seed=3)
    for a, b in zip(as32.labels, as64.labels):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], nan_ok=True), key
    assert as32.summary["text"] == as64.summary["text"]


def test_data_driven_threshold_without_validation_is_refused():
    y, s, _ = _split(0)
    with pytest.raises(ValueError, match="never fitted on the test set"):
        evaluate_scores(y, s, LABELS, thresholds="youden", n_bootstrap=0)
    fixed = evaluate_scores(y, s, LABELS, thresholds=0.5, n_bootstrap=0)
    assert all(r["threshold"] == 0.5 for r in fixed.labels)
    assert np.isnan(fixed.labels[0]["auc_ci_low"])  # no bootstrap asked
    given = evaluate_scores(y, s, LABELS, thresholds={n: 0.1 * i for i, n in enumerate(LABELS)}, n_bootstrap=0)
    assert given.labels[2]["threshold"] == pytest.approx(0.2)


def test_evaluate_predictions_writes_strict_json_csv_and_html(tmp_path, evaluated):
    _, (y, s, patients, vy, vs) = evaluated
    _, paths = evaluate_predictions(y, s, LABELS, tmp_path, val_true=vy, val_score=vs, patient_ids=patients,
                                    command="ecgfm evaluate --predictions t.npz", config={"model": "resnet"},
                                    n_bootstrap=50)
    doc = json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert doc["command"] == "ecgfm evaluate --predictions t.npz" and doc["config"] == {"model": "resnet"}
    assert doc["summary"]["n_excluded"] == 2 and len(doc["labels"]) == 5
    none_row = next(r for r in doc["labels"] if r["label"] == "NONE")
    assert none_row["auc"] is None and none_row["reason"]
    frame = pd.read_csv(paths["csv"])
    assert list(frame["label"]) == LABELS and {"auc", "auc_ci_low", "sensitivity_ci_high", "f1"} <= set(frame)
    html = paths["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    assert "Median AUC" in html and "ecgfm evaluate --predictions t.npz" in html
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")  # self-contained
    # Per-label table sorted by AUC, excluded labels last.
    order = [html.index(f"<td>{name}</td>") for name in LABELS]
    aucs = {r["label"]: r["auc"] for r in doc["labels"]}
    ranked = sorted((n for n in LABELS if aucs[n] is not None), key=lambda n: -aucs[n]) + ["ALL", "NONE"]
    assert sorted(LABELS, key=lambda n: order[LABELS.index(n)]) == ranked


def test_compare_scores_paired_difference(tmp_path):
    y, s, patients = _split(4)
    rng = np.random.default_rng(0)
    worse = s + rng.normal(scale=1.5, size=s.shape)
    result, paths = compare_predictions(y, s, worse, LABELS, tmp_path, patient_ids=patients,
                                        model_names=("good", "noisy"), n_bootstrap=200)
    rows = {r["label"]: r for r in result.labels}
    known = ~np.isnan(y[:, 0])
    assert rows["NORM"]["auc_a"] == pytest.approx(roc_auc_score(y[known, 0], s[known, 0]))
    assert rows["NORM"]["diff"] == pytest.approx(rows["NORM"]["auc_a"] - rows["NORM"]["auc_b"])
    assert rows["NORM"]["diff"] > 0 and rows["NORM"]["p_delong"] < 0.001
    assert rows["NORM"]["diff_boot_ci_low"] > 0 and rows["NORM"]["diff_delong_ci_low"] > 0
    assert rows["NORM"]["p_fdr_bh"] >= rows["NORM"]["p_delong"]
    assert rows["NONE"]["excluded"] and np.isnan(rows["NONE"]["p_fdr_bh"])
    assert result.summary["n_a_better"] >= 1 and result.summary["n_excluded"] == 2
    doc = json.loads(paths["json"].read_text())
    assert doc["kind"] == "comparison" and doc["settings"]["model_a"] == "good"
    assert "good" in paths["html"].read_text()
    self_compare = compare_scores(y, s, s, LABELS, n_bootstrap=20)
    assert all(r["p_delong"] == 1.0 for r in self_compare.labels if not r["excluded"])


def test_prediction_files_round_trip_and_errors(tmp_path):
    y, s, patients = _split(5, n=40)
    path = save_predictions(tmp_path / "p.npz", y, s, LABELS, record_ids=np.arange(40), patient_ids=patients)
    loaded = load_predictions(path)
    np.testing.assert_array_equal(loaded.y_true, y)
    assert loaded.label_names == LABELS and loaded.patient_ids is not None
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_predictions(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_predictions(tmp_path / "missing.npz")


def test_cli_evaluate_and_compare(tmp_path):
    y, s, patients = _split(6)
    vy, vs, _ = _split(7)
    save_predictions(tmp_path / "test.npz", y, s, LABELS, record_ids=np.arange(len(y)), patient_ids=patients)
    save_predictions(tmp_path / "val.npz", vy, vs, LABELS)
    save_predictions(tmp_path / "b.npz", y, s + np.random.default_rng(0).normal(size=s.shape), LABELS,
                     record_ids=np.arange(len(y)), patient_ids=patients)
    runner = CliRunner()
    out = tmp_path / "eval"
    res = runner.invoke(app, ["evaluate", "--predictions", str(tmp_path / "test.npz"), "--val-predictions",
                              str(tmp_path / "val.npz"), "--threshold", "sens>=0.8", "--bootstrap", "100",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Median AUC" in res.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["settings"]["threshold_rule"] == "sens>=0.8" and doc["settings"]["n_bootstrap"] == 100
    assert doc["command"].startswith("ecgfm evaluate --predictions") and "sens>=0.8" in doc["command"]
    assert (out / "metrics.csv").exists() and (out / "report.html").exists()

    res = runner.invoke(app, ["compare-models", "--predictions-a", str(tmp_path / "test.npz"), "--predictions-b",
                              str(tmp_path / "b.npz"), "--bootstrap", "50", "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cmp" / "comparison.html").exists()

    # Thresholds need a validation file; the error is one line, not a traceback.
    res = runner.invoke(app, ["evaluate", "--predictions", str(tmp_path / "test.npz"), "--out", str(out)])
    assert res.exit_code == 2 and "validation" in res.output
    save_predictions(tmp_path / "other.npz", y[:10], s[:10], LABELS)
    res = runner.invoke(app, ["compare-models", "--predictions-a", str(tmp_path / "test.npz"), "--predictions-b",
                              str(tmp_path / "other.npz"), "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 2 and "different numbers of records" in res.output
