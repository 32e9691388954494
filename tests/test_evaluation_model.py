"""``ecgfm evaluate --model``: scores a saved model on a dataset's validation/test folds and writes the report."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ecgfm.cli.main import app
from ecgfm.evaluation.predictions import load_predictions
from ecgfm.inference.predictor import Predictor
from predict_fixtures import make_tiny_model


def test_evaluate_model_on_ptbxl_folds(tmp_path, fake_ptbxl, monkeypatch):
    monkeypatch.setenv("ECGFM_CACHE_DIR", str(tmp_path / "cache"))
    model_dir = make_tiny_model(tmp_path / "model")
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(model_dir), "--ptbxl", str(fake_ptbxl),
                                      "--val-folds", "9", "--test-folds", "10", "--threshold", "0.5",
                                      "--bootstrap", "20", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("metrics.json", "metrics.csv", "report.html", "test_predictions.npz", "val_predictions.npz"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert "ecgfm evaluate --model" in json.dumps(metrics)  # the exact command is recorded
    # The scores written are the Predictor's own (same preprocessing and windows) on each record's file.
    test = load_predictions(out / "test_predictions.npz")
    predictor = Predictor.from_pretrained(model_dir)
    record_9 = list(test.record_ids).index("9")
    expected = predictor.predict(fake_ptbxl / "records100/00000/00009_lr.hea").probabilities
    got = dict(zip(test.label_names, test.y_score[record_9]))
    assert set(got) <= set(expected)
    np.testing.assert_allclose([got[k] for k in got], [expected[k] for k in got], atol=2e-3)


def test_evaluate_refuses_overlapping_folds(tmp_path, fake_ptbxl):
    model_dir = make_tiny_model(tmp_path / "model")
    result = CliRunner().invoke(app, ["evaluate", "--model", str(model_dir), "--ptbxl", str(fake_ptbxl),
                                      "--val-folds", "9", "--test-folds", "9,10", "--out", str(tmp_path / "e")])
    assert result.exit_code == 2
    assert "overlap" in result.output


def test_evaluate_defaults_to_the_shipped_model_and_takes_a_model_or_predictions(tmp_path, monkeypatch):
    import ecgfm.models

    asked = []

    def fake_load(name, device="cpu"):  # the real loading is tested above; here only which model is asked for
        asked.append(name)
        raise ValueError("stopped after choosing the model")

    monkeypatch.setattr(ecgfm.models, "load", fake_load)
    result = CliRunner().invoke(app, ["evaluate", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 2 and "stopped after choosing the model" in result.output
    assert asked == ["pretrained"]
    both = CliRunner().invoke(app, ["evaluate", "--model", "pretrained", "--predictions", str(tmp_path / "p.npz"),
                                    "--out", str(tmp_path)])
    assert both.exit_code == 2 and "not both" in both.output
